// The anchor engine: each interval it aggregates the tips of the chains this node serves into one
// root, commits it in one transaction with a 32-byte OP_RETURN output, follows that transaction to
// the configured depth, and records it on every served chain at /kalima/anchors.
//
// Its life, one step at a time, each step written to disk (AnchorStore) before the next:
//   signed     the transaction is built and stored, not yet seen accepted: a crash here, or
//              between the broadcast and the record of it, sends the same bytes again at the next
//              start, so a commitment never gets two transactions that could both confirm;
//   mempool    accepted; if it leaves the mempool unconfirmed (evicted), it is sent again, and a
//              fee-rate refusal builds a version with a higher fee spending the same inputs;
//   confirmed  one of its versions is in a block of the best chain (found by scanning blocks);
//   recorded   at the configured depth, and the record is on every served chain.
// A reorg that takes a confirmed (or recorded) transaction out of the best chain puts the
// commitment back to mempool: it is sent again and recorded again where it confirms next.
//
// The wallet is the engine's own: it finds its outputs by scanning every block from its birth
// height (so it needs no wallet or index on the Bitcoin node), spends the previous anchor's change
// first, and builds and signs locally. At most one commitment is unconfirmed at a time: the next
// one waits for the previous one's first confirmation, so a fee bump never orphans a later anchor.
import { isKalimaError, kalimaError } from '../src/errors.ts';
import type { Clock, Logger } from '../src/ports.ts';
import type { AnchorRecord } from '../src/state/anchor-record.ts';
import { fromHex, toHex } from '../src/ledger/hash.ts';
import { type AnchorState, type AnchorStore, type AnchorTx, type Commitment, type Utxo, emptyState } from './state.ts';

/** A coinbase output is spendable in a block 100 blocks above its own. */
const COINBASE_MATURITY = 100;

/** The Bitcoin node, as the engine uses it (chains/bitcoin's RPC client, through an adapter). */
export interface BitcoinSource {
  readonly network: string;
  getBlockCount(): Promise<number>;
  getBlockHash(height: number): Promise<string>;
  getBlockHex(hash: string): Promise<string>;
  /** Whether the transaction is in the node's mempool. */
  inMempool(txid: string): Promise<boolean>;
  /** Resolves once the node holds it in its mempool; throws KALIMA_ERR_BITCOIN_TX_REJECTED (details.reason 'fee' | 'conflict' | 'missing-inputs' | 'other') if it does not. */
  broadcast(hex: string): Promise<void>;
  /** sat per 1000 vbytes for confirmation within `targetBlocks`, or undefined when the node has no estimate. */
  estimateFeeRate(targetBlocks: number): Promise<number | undefined>;
}

export interface ParsedBlock {
  hash: string;
  prevHash: string;
  txs: Array<{ txid: string; coinbase: boolean; inputs: string[]; outputs: Array<{ value: number; script: string }> }>;
}

/** The anchor wallet: its scripts and how it signs (chains/bitcoin, through an adapter). */
export interface EngineWallet {
  /** Output scripts (hex) the scan credits to the wallet. */
  readonly scripts: ReadonlySet<string>;
  /** The address to fund the wallet with. */
  readonly fundingAddress: string;
  parseBlock(hex: string): ParsedBlock;
  /** A signed transaction: the given outputs as inputs (in order, as many as needed), one OP_RETURN output with `commitment`, one change output. */
  build(input: { utxos: readonly Utxo[]; commitment: Uint8Array; feeRate: number }): Omit<AnchorTx, 'builtAtHeight'>;
  /** A BIP-125 replacement of `original`: the same inputs, a higher fee. */
  replace(input: { original: AnchorTx; utxos: readonly Utxo[]; feeRate: number }): Omit<AnchorTx, 'builtAtHeight'>;
}

/** A chain this node serves. */
export interface AnchoredChain {
  readonly chain: string;
  tip(): { height: number; hash: Uint8Array };
  /** Blocks above `height` that hold anything other than anchor records. */
  newsSince(height: number): number;
  /** The record this chain holds for a root, if any. */
  recordOf(root: string): AnchorRecord | undefined;
  /** Writes a record and resolves once this chain has applied it. */
  writeRecord(record: AnchorRecord, nonce: number): Promise<void>;
}

export interface AnchorPolicy {
  intervalMs: number;
  /** A commitment is made only once some chain has this many new blocks (anchor records do not count). */
  minBlocks: number;
  /** Depth at which an anchor is recorded. */
  confirmations: number;
  feeTargetBlocks: number;
  /** sat/kvB when the node has no estimate. */
  fallbackFeeRate: number;
  minFeeRate: number;
  maxFeeRate: number;
  /** Fee bumps by BIP-125 replacement while unconfirmed. */
  rbf: boolean;
  /** A transaction unconfirmed this many blocks after it was built is bumped if the estimate has risen by bumpFactor. */
  bumpAfterBlocks: number;
  bumpFactor: number;
  /** Block hashes kept to find a fork point; a reorg deeper than this stops the engine with a coded error. */
  reorgWindow: number;
  /** Blocks scanned in one pass (a wallet born long ago catches up over several). */
  scanBatch: number;
  /** Recorded commitments kept for GET /anchors. */
  keepRecorded: number;
}

export const DEFAULT_POLICY: AnchorPolicy = {
  intervalMs: 600_000, minBlocks: 1, confirmations: 6, feeTargetBlocks: 6, fallbackFeeRate: 2_000, minFeeRate: 1_000, maxFeeRate: 200_000,
  rbf: true, bumpAfterBlocks: 3, bumpFactor: 1.25, reorgWindow: 144, scanBatch: 200, keepRecorded: 50,
};

export interface EngineOptions {
  store: AnchorStore;
  bitcoin: BitcoinSource;
  wallet: EngineWallet;
  chains: readonly AnchoredChain[];
  /** The aggregation root of the tips (anchors/aggregate.ts). */
  aggregate: (tips: ReadonlyArray<{ chain: string; height: number; hash: Uint8Array }>) => Uint8Array;
  policy: AnchorPolicy;
  clock: Clock;
  logger: Logger;
  /** The Bitcoin height the wallet's scan starts at, for a new store. */
  birthHeight: number;
  /** Failpoints for crash tests: `hit(name)` may end the process. */
  failpoint?: (name: string) => void;
}

export interface AnchorStatus {
  network: string;
  bitcoin: { reachable: boolean; tip: number | undefined; scannedHeight: number; lastError?: { code: string; message: string; atMs: number } };
  wallet: { fundingAddress: string; spendable: number; immature: number; utxos: number };
  /** Why no anchor is under way or why the one under way is late, in words; undefined when all is well. */
  late: string | undefined;
  nextDueAtMs: number | undefined;
  commitments: Array<Commitment & { depth: number }>;
}

function errorSummary(error: unknown, clock: Clock): { code: string; message: string; atMs: number } {
  const coded = error as { code?: string; message?: string };
  return { code: typeof coded.code === 'string' ? coded.code : 'KALIMA_ERR_NODE_INTERNAL', message: String(coded.message ?? error), atMs: clock.nowMs() };
}

/** The newest version of a commitment's transaction that no node refused (the first one if all were). */
function newestSendable(commitment: Commitment): AnchorTx {
  for (let index = commitment.txs.length - 1; index >= 0; index--) if (commitment.txs[index]!.refused !== true) return commitment.txs[index]!;
  return commitment.txs[0]!;
}

function outpoint(txid: string, vout: number): string {
  return `${txid}:${vout}`;
}

export class AnchorEngine {
  private state!: AnchorState;
  private tipHeight: number | undefined;
  private reachable = false;
  private bitcoinError: { code: string; message: string; atMs: number } | undefined;
  private late: string | undefined;
  private running: Promise<void> | undefined;

  private constructor(private readonly options: EngineOptions) {}

  static async open(options: EngineOptions): Promise<AnchorEngine> {
    const engine = new AnchorEngine(options);
    const stored = await options.store.load();
    if (stored !== undefined && stored.network !== options.bitcoin.network) {
      throw kalimaError('KALIMA_ERR_BITCOIN_WRONG_NETWORK', { store: stored.network, configured: options.bitcoin.network });
    }
    engine.state = stored ?? emptyState(options.bitcoin.network, options.birthHeight);
    if (stored === undefined) await options.store.save(engine.state);
    return engine;
  }

  /** One pass: follow Bitcoin, send what is unsent, bump, record, and start a new commitment if one is due. Passes never overlap. */
  tick(): Promise<void> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<void> {
    try {
      await this.follow();
      this.reachable = true;
      this.bitcoinError = undefined;
    } catch (error) {
      this.state = (await this.options.store.load().catch(() => undefined)) ?? this.state;
      const summary = errorSummary(error, this.options.clock);
      // A Bitcoin node that does not answer, or one whose chain the wallet cannot follow (a reorg too deep).
      const fromNode = summary.code.startsWith('KALIMA_ERR_BITCOIN_');
      this.reachable = !fromNode;
      this.bitcoinError = summary;
      this.late = fromNode ? `the Bitcoin node is not answering (${summary.code}: ${summary.message}); retrying` : `${summary.code}: ${summary.message}`;
      this.options.logger.warn({ code: summary.code, error: summary.message }, 'anchors: cannot follow Bitcoin');
      return;
    }
    this.late = undefined;
    try {
      await this.sendUnconfirmed();
      await this.bumpFees();
      await this.recordDeep();
      await this.commitIfDue();
    } catch (error) {
      // What is in memory may be ahead of the disk (a save that failed): go on from the disk.
      this.state = (await this.options.store.load().catch(() => undefined)) ?? this.state;
      const summary = errorSummary(error, this.options.clock);
      if (summary.code.startsWith('KALIMA_ERR_BITCOIN_')) {
        this.reachable = !['KALIMA_ERR_BITCOIN_UNREACHABLE', 'KALIMA_ERR_BITCOIN_TIMEOUT'].includes(summary.code);
        this.bitcoinError = summary;
      }
      this.late ??= `${summary.code}: ${summary.message}`;
      this.options.logger.warn({ code: summary.code, error: summary.message }, 'anchors: a step failed; retrying at the next pass');
    }
  }

  // ---- following Bitcoin -------------------------------------------------------------------------

  private async follow(): Promise<void> {
    const { bitcoin, policy } = this.options;
    const tip = await bitcoin.getBlockCount();
    this.tipHeight = tip;
    let changed = false;
    // Find how many of the scanned blocks are still on the best chain, then take back the others.
    const { hashes } = this.state.scan;
    let kept = hashes.length;
    while (kept > 0) {
      const height = this.state.scan.height - (hashes.length - kept);
      if (height <= tip && (await bitcoin.getBlockHash(height)) === hashes[kept - 1]) break;
      kept--;
    }
    if (kept === 0 && hashes.length >= policy.reorgWindow) {
      throw kalimaError('KALIMA_ERR_ANCHOR_REORG_TOO_DEEP', { window: policy.reorgWindow, height: this.state.scan.height });
    }
    for (let count = hashes.length - kept; count > 0; count--) {
      this.undoBlock();
      changed = true;
    }
    if (changed) await this.save();
    // Scan up to the tip in batches, each saved, so a wallet born long ago shows its progress and
    // keeps it over a restart.
    while (this.state.scan.height < tip) {
      const end = Math.min(tip, this.state.scan.height + policy.scanBatch);
      for (let height = this.state.scan.height + 1; height <= end; height++) {
        const hash = await bitcoin.getBlockHash(height);
        const block = this.options.wallet.parseBlock(await bitcoin.getBlockHex(hash));
        // A block that does not follow the last one scanned: the chain moved under the scan; the next pass finds the fork.
        if (this.state.scan.hashes.length > 0 && block.prevHash !== this.state.scan.hashes.at(-1)) {
          await this.save();
          throw kalimaError('KALIMA_ERR_BITCOIN_RPC', { method: 'getblock', reason: 'the chain changed during the scan', height });
        }
        this.applyBlock(height, hash, block);
      }
      await this.save();
      if (end < tip) this.options.logger.info({ scanned: end, tip }, 'anchors: scanning Bitcoin blocks for the wallet');
    }
  }

  private applyBlock(height: number, hash: string, block: ParsedBlock): void {
    const { state } = this;
    const byOutpoint = new Map(state.utxos.map((utxo) => [outpoint(utxo.txid, utxo.vout), utxo]));
    const undo = { height, created: [] as string[], spent: [] as Utxo[] };
    const ours = new Map<string, Commitment>();
    for (const commitment of state.commitments) for (const tx of commitment.txs) ours.set(tx.txid, commitment);
    const createdHere = new Set<string>();
    const inputsOf = new Map<string, Commitment[]>();
    for (const commitment of state.commitments) {
      if (commitment.confirmed !== undefined) continue;
      for (const tx of commitment.txs) for (const input of tx.inputs) inputsOf.set(input, [...(inputsOf.get(input) ?? []), commitment]);
    }
    for (const tx of block.txs) {
      for (const input of tx.inputs) {
        const spent = byOutpoint.get(input);
        if (spent !== undefined) {
          byOutpoint.delete(input);
          // An output made and spent in this block is neither created nor spent by it, as undo sees it.
          if (createdHere.has(input)) undo.created.splice(undo.created.indexOf(input), 1);
          else undo.spent.push(spent);
        }
        // Spent by a transaction that is not one of the commitment's: none of its versions spending it can confirm.
        for (const commitment of inputsOf.get(input) ?? []) {
          if (commitment.txs.some((candidate) => candidate.txid === tx.txid)) continue;
          commitment.foreignSpends = { ...commitment.foreignSpends, [input]: { txid: tx.txid, height } };
        }
      }
      tx.outputs.forEach((output, vout) => {
        if (!this.options.wallet.scripts.has(output.script)) return;
        const utxo: Utxo = { txid: tx.txid, vout, value: output.value, script: output.script, height, coinbase: tx.coinbase };
        byOutpoint.set(outpoint(tx.txid, vout), utxo);
        undo.created.push(outpoint(tx.txid, vout));
        createdHere.add(outpoint(tx.txid, vout));
      });
      const commitment = ours.get(tx.txid);
      if (commitment !== undefined && commitment.confirmed === undefined) {
        commitment.confirmed = { txid: tx.txid, height, blockHash: hash };
        if (commitment.state !== 'recorded') commitment.state = 'confirmed';
        delete commitment.lastError;
        this.options.logger.info({ seq: commitment.seq, txid: tx.txid, height }, 'anchors: the anchor transaction is in a block');
      }
    }
    state.utxos = [...byOutpoint.values()];
    state.undo.push(undo);
    state.scan.height = height;
    state.scan.hashes.push(hash);
    const window = this.options.policy.reorgWindow;
    if (state.scan.hashes.length > window) state.scan.hashes.splice(0, state.scan.hashes.length - window);
    if (state.undo.length > window) state.undo.splice(0, state.undo.length - window);
  }

  private undoBlock(): void {
    const { state } = this;
    const height = state.scan.height;
    const undo = state.undo.pop();
    if (undo !== undefined && undo.height === height) {
      const created = new Set(undo.created);
      state.utxos = [...state.utxos.filter((utxo) => !created.has(outpoint(utxo.txid, utxo.vout))), ...undo.spent];
    }
    for (const commitment of state.commitments) {
      if (commitment.foreignSpends !== undefined) {
        for (const [input, spend] of Object.entries(commitment.foreignSpends)) if (spend.height >= height) delete commitment.foreignSpends[input];
      }
      if (commitment.confirmed !== undefined && commitment.confirmed.height >= height) {
        this.options.logger.warn({ seq: commitment.seq, txid: commitment.confirmed.txid, height }, 'anchors: a reorg took the anchor transaction out of the chain; sending it again');
        delete commitment.confirmed;
        commitment.state = 'mempool';
      }
    }
    state.scan.hashes.pop();
    state.scan.height = height - 1;
  }

  // ---- sending, bumping, recording ----------------------------------------------------------------

  private unconfirmed(): Commitment[] {
    return this.state.commitments.filter((commitment) => commitment.confirmed === undefined);
  }

  private async feeRate(): Promise<number> {
    const { policy } = this.options;
    const estimate = await this.options.bitcoin.estimateFeeRate(policy.feeTargetBlocks);
    return Math.min(policy.maxFeeRate, Math.max(policy.minFeeRate, estimate ?? policy.fallbackFeeRate));
  }

  private spendable(): Utxo[] {
    const tip = this.state.scan.height;
    const previousChange = this.lastChange();
    const mature = this.state.utxos.filter((utxo) => !utxo.coinbase || tip - utxo.height + 1 >= COINBASE_MATURITY);
    // The previous anchor's change first, then the oldest outputs.
    return mature.sort((a, b) => {
      const aFirst = outpoint(a.txid, a.vout) === previousChange ? 0 : 1;
      const bFirst = outpoint(b.txid, b.vout) === previousChange ? 0 : 1;
      return aFirst - bFirst || a.height - b.height || a.txid.localeCompare(b.txid) || a.vout - b.vout;
    });
  }

  private lastChange(): string | undefined {
    for (let index = this.state.commitments.length - 1; index >= 0; index--) {
      const confirmed = this.state.commitments[index]!.confirmed;
      if (confirmed !== undefined) {
        const tx = this.state.commitments[index]!.txs.find((candidate) => candidate.txid === confirmed.txid)!;
        return outpoint(tx.txid, tx.change.vout);
      }
    }
    return undefined;
  }

  private async sendUnconfirmed(): Promise<void> {
    for (const commitment of this.unconfirmed()) {
      if (commitment.state === 'mempool' && (await this.anyInMempool(commitment))) continue;
      // A refusal that leads to a new version sends that version at once (a few times at most).
      for (let attempt = 0; attempt < 3 && (await this.sendLatest(commitment)) === 'new-version'; attempt++);
    }
  }

  /** Sends the commitment's latest transaction; on a refusal, builds a new version when that can help. */
  private async sendLatest(commitment: Commitment): Promise<'sent' | 'new-version' | 'refused'> {
    const { bitcoin, logger, clock, policy } = this.options;
    const latest = newestSendable(commitment);
    try {
      await bitcoin.broadcast(latest.hex);
    } catch (error) {
      // In a block the scan has not reached yet: the next pass finds it there.
      if (isKalimaError(error, 'KALIMA_ERR_BITCOIN_TX_ALREADY_CONFIRMED')) return 'sent';
      if (!isKalimaError(error, 'KALIMA_ERR_BITCOIN_TX_REJECTED')) throw error;
      commitment.lastError = errorSummary(error, clock);
      const reason = (error.details as { reason?: string }).reason;
      logger.warn({ seq: commitment.seq, txid: latest.txid, reason, error: error.message }, 'anchors: the Bitcoin node refused the anchor transaction');
      this.late = `anchor ${commitment.seq} was refused by the Bitcoin node (${reason ?? 'other'}: ${error.message}); trying again`;
      if (reason === 'fee') {
        return (await this.addVersion(commitment, 'replace', Math.max(await this.feeRate(), Math.ceil(latest.feeRate * 1.5)))) ? 'new-version' : 'refused';
      }
      const dead = this.deadFor(commitment);
      if (dead !== undefined && dead >= policy.confirmations) {
        // Every version spends an input that a transaction not of this commitment spent, and that
        // spend is as deep as an anchor must be: no version can confirm any more.
        return (await this.addVersion(commitment, 'rebuild', await this.feeRate())) ? 'new-version' : 'refused';
      }
      if (dead !== undefined) this.late = `an input of anchor ${commitment.seq} was spent by another transaction; a new transaction is built once that spend is ${policy.confirmations} blocks deep`;
      else if (!this.inputsUnspent(latest)) this.late = `an input of anchor ${commitment.seq} is not in Bitcoin's chain (its block left it); waiting for it to come back, or for a transaction that spends it`;
      await this.save();
      return 'refused';
    }
    const firstSend = commitment.state === 'signed';
    this.options.failpoint?.('anchor.after-broadcast');
    commitment.state = 'mempool';
    delete commitment.lastError;
    await this.save();
    logger.info({ seq: commitment.seq, txid: latest.txid, feeRate: latest.feeRate }, firstSend ? 'anchors: anchor transaction sent' : 'anchors: anchor transaction sent again');
    return 'sent';
  }

  private async anyInMempool(commitment: Commitment): Promise<boolean> {
    for (const tx of commitment.txs) if (await this.options.bitcoin.inMempool(tx.txid)) return true;
    return false;
  }

  /**
   * How deep the shallowest of the foreign spends is that kill every version of the commitment
   * (each version spends some input that a transaction not of this commitment spent in a scanned
   * block); undefined while some version could still confirm.
   */
  private deadFor(commitment: Commitment): number | undefined {
    const spends = commitment.foreignSpends ?? {};
    let deepest: number | undefined;
    for (const tx of commitment.txs) {
      const killers = tx.inputs.map((input) => spends[input]).filter((spend) => spend !== undefined);
      if (killers.length === 0) return undefined;
      // This version dies with its deepest killer; the commitment with its youngest version's.
      const depth = Math.max(...killers.map((spend) => this.state.scan.height - spend!.height + 1));
      deepest = deepest === undefined ? depth : Math.min(deepest, depth);
    }
    return deepest;
  }

  /** Whether every input of `tx` is an unspent output of the chain as scanned. */
  private inputsUnspent(tx: AnchorTx): boolean {
    const unspent = new Set(this.state.utxos.map((utxo) => outpoint(utxo.txid, utxo.vout)));
    return tx.inputs.every((input) => unspent.has(input));
  }

  /**
   * A new version of a commitment's transaction. `replace` spends the same inputs (so at most one
   * version can ever confirm); `rebuild` chooses inputs afresh and is used only when an input of the
   * latest version was spent by a transaction that is not one of ours, so no earlier version can
   * confirm any more.
   */
  private async addVersion(commitment: Commitment, how: 'replace' | 'rebuild', feeRate: number): Promise<boolean> {
    const { wallet, logger, clock, policy } = this.options;
    const latest = newestSendable(commitment);
    if (how === 'replace' && latest.feeRate >= policy.maxFeeRate) {
      this.late = `anchor ${commitment.seq} pays the highest fee rate allowed (${policy.maxFeeRate} sat/kvB) and is still refused`;
      await this.save();
      return false;
    }
    let added = false;
    try {
      const built = how === 'replace'
        ? wallet.replace({ original: latest, utxos: this.state.utxos, feeRate: Math.min(feeRate, policy.maxFeeRate) })
        : wallet.build({ utxos: this.spendable(), commitment: fromHex(commitment.root)!, feeRate });
      commitment.txs.push({ ...built, builtAtHeight: this.state.scan.height });
      commitment.state = 'signed';
      added = true;
      logger.info({ seq: commitment.seq, txid: built.txid, feeRate: built.feeRate, how }, 'anchors: new version of the anchor transaction');
    } catch (error) {
      commitment.lastError = errorSummary(error, clock);
    }
    await this.save();
    return added;
  }

  private async bumpFees(): Promise<void> {
    const { policy, bitcoin, logger, clock } = this.options;
    if (!policy.rbf) return;
    const commitment = this.unconfirmed().at(-1);
    if (commitment === undefined || commitment.state !== 'mempool') return;
    const latest = newestSendable(commitment);
    if (this.state.scan.height - latest.builtAtHeight < policy.bumpAfterBlocks) return;
    const rate = await this.feeRate();
    if (rate < latest.feeRate * policy.bumpFactor) return;
    let replacement: AnchorTx;
    try {
      replacement = { ...this.options.wallet.replace({ original: latest, utxos: this.state.utxos, feeRate: rate }), builtAtHeight: this.state.scan.height };
    } catch (error) {
      commitment.lastError = errorSummary(error, clock);
      await this.save();
      return;
    }
    // Stored before it is sent: if this process stops after the send, the replacement is known.
    commitment.txs.push(replacement);
    await this.save();
    try {
      await bitcoin.broadcast(replacement.hex);
      logger.info({ seq: commitment.seq, txid: replacement.txid, feeRate: replacement.feeRate, replaces: latest.txid }, 'anchors: fee bumped by replacement');
    } catch (error) {
      if (!isKalimaError(error, 'KALIMA_ERR_BITCOIN_TX_REJECTED')) throw error;
      // Refused (a node without replacement, or a rule it applies): the original stands. The
      // replacement is kept, marked, in case a node took it after all and it confirms.
      replacement.refused = true;
      latest.builtAtHeight = this.state.scan.height;
      commitment.lastError = errorSummary(error, clock);
      logger.warn({ seq: commitment.seq, error: error.message }, 'anchors: the fee bump was refused; keeping the original');
    }
    await this.save();
  }

  private async recordDeep(): Promise<void> {
    const { policy, chains, clock } = this.options;
    const tip = this.state.scan.height;
    let changed = false;
    for (const commitment of this.state.commitments) {
      const confirmed = commitment.confirmed;
      if (confirmed === undefined || commitment.state === 'recorded' || tip - confirmed.height + 1 < policy.confirmations) continue;
      const record: AnchorRecord = {
        root: fromHex(commitment.root)!, network: this.state.network, txid: fromHex(confirmed.txid)!, bitcoinHeight: confirmed.height,
        bitcoinBlock: fromHex(confirmed.blockHash)!, tips: commitment.tips.map((tip) => ({ chain: tip.chain, height: tip.height, hash: fromHex(tip.hash)! })),
      };
      try {
        for (const chain of chains) {
          const existing = chain.recordOf(commitment.root);
          if (existing !== undefined && toHex(existing.txid) === confirmed.txid && toHex(existing.bitcoinBlock) === confirmed.blockHash) continue;
          this.state.lastNonce = Math.max(this.state.lastNonce + 1, clock.nowMs() * 1_000);
          await this.save();
          this.options.failpoint?.('anchor.before-record');
          await chain.writeRecord(record, this.state.lastNonce);
        }
      } catch (error) {
        commitment.lastError = errorSummary(error, clock);
        this.late = `anchor ${commitment.seq} is confirmed but its record was not taken (${commitment.lastError.code}); trying again`;
        changed = true;
        continue;
      }
      commitment.state = 'recorded';
      delete commitment.lastError;
      changed = true;
      this.options.logger.info({ seq: commitment.seq, txid: confirmed.txid, height: confirmed.height }, 'anchors: anchor recorded on the chain');
    }
    // Recorded commitments are kept while a reorg the scan can still see could take them out.
    const recorded = this.state.commitments.filter((commitment) => commitment.state === 'recorded');
    if (recorded.length > policy.keepRecorded) {
      const drop = new Set(recorded.slice(0, recorded.length - policy.keepRecorded).filter((commitment) => tip - commitment.confirmed!.height + 1 > policy.reorgWindow));
      this.state.commitments = this.state.commitments.filter((commitment) => !drop.has(commitment));
      changed = true;
    }
    if (changed) await this.save();
  }

  // ---- new commitments ----------------------------------------------------------------------------

  /** When the next commitment may be made, and what it waits for. */
  private due(): { atMs: number; waitingFor: string | undefined } {
    const { policy, chains } = this.options;
    const last = this.state.commitments.at(-1);
    const atMs = last === undefined ? 0 : last.createdAtMs + policy.intervalMs;
    const pending = this.unconfirmed()[0];
    if (pending !== undefined) return { atMs, waitingFor: `anchor ${pending.seq} to confirm` };
    const news = chains.some((chain) => {
      const committed = last?.tips.find((tip) => tip.chain === chain.chain)?.height ?? 0;
      return chain.tip().height > 0 && chain.newsSince(committed) >= policy.minBlocks;
    });
    return { atMs, waitingFor: news ? undefined : `${policy.minBlocks} new block(s)` };
  }

  private async commitIfDue(): Promise<void> {
    const { clock, chains, wallet, logger } = this.options;
    const due = this.due();
    if (due.waitingFor !== undefined || clock.nowMs() < due.atMs) return;
    const tips = chains.map((chain) => ({ chain: chain.chain, ...chain.tip() })).sort((a, b) => (a.chain < b.chain ? -1 : 1));
    const root = this.options.aggregate(tips);
    const feeRate = await this.feeRate();
    const utxos = this.spendable();
    let built;
    try {
      built = wallet.build({ utxos, commitment: root, feeRate });
    } catch (error) {
      if (!isKalimaError(error, 'KALIMA_ERR_BITCOIN_INSUFFICIENT_FUNDS')) throw error;
      const { spendable, immature } = this.balances();
      this.late = `the anchor wallet cannot pay for an anchor: ${spendable} sats spendable, ${immature} immature; send bitcoin to ${wallet.fundingAddress}`;
      return;
    }
    const commitment: Commitment = {
      seq: this.state.nextSeq++, root: toHex(root), tips: tips.map((tip) => ({ chain: tip.chain, height: tip.height, hash: toHex(tip.hash) })),
      createdAtMs: clock.nowMs(), state: 'signed', txs: [{ ...built, builtAtHeight: this.state.scan.height }],
    };
    this.state.commitments.push(commitment);
    // On disk before it is sent: after a crash the same bytes go out again.
    await this.save();
    logger.info({ seq: commitment.seq, root: commitment.root, tips: commitment.tips, txid: built.txid, fee: built.fee }, 'anchors: new commitment');
    this.options.failpoint?.('anchor.before-broadcast');
    await this.sendUnconfirmed();
  }

  // ---- status -------------------------------------------------------------------------------------

  private balances(): { spendable: number; immature: number } {
    const spendable = this.spendable();
    const total = this.state.utxos.reduce((sum, utxo) => sum + utxo.value, 0);
    const spendableTotal = spendable.reduce((sum, utxo) => sum + utxo.value, 0);
    return { spendable: spendableTotal, immature: total - spendableTotal };
  }

  status(): AnchorStatus {
    const { wallet } = this.options;
    const tip = this.state.scan.height;
    const due = this.due();
    const { spendable, immature } = this.balances();
    return {
      network: this.state.network,
      bitcoin: { reachable: this.reachable, tip: this.tipHeight, scannedHeight: tip, ...(this.bitcoinError === undefined ? {} : { lastError: this.bitcoinError }) },
      wallet: { fundingAddress: wallet.fundingAddress, spendable, immature, utxos: this.state.utxos.length },
      late: this.late ?? this.unconfirmed().find((commitment) => commitment.lastError !== undefined)?.lastError?.message,
      nextDueAtMs: due.waitingFor === undefined ? due.atMs : undefined,
      commitments: this.state.commitments.map((commitment) => ({ ...commitment, depth: commitment.confirmed === undefined ? 0 : tip - commitment.confirmed.height + 1 })),
    };
  }

  private save(): Promise<void> {
    return this.options.store.save(this.state);
  }

  async close(): Promise<void> {
    await this.running;
  }
}
