// A follower's check of the blocks a leader replicates, before it accepts and acknowledges them
// (design.md: "followers check every block: signatures, permissions, hashchain, size, state
// digest"). One Raft entry holds one block's bytes; an empty entry (a new leader's first) holds none.
//
// The gate keeps, for each log index it has admitted and the state machine has not yet applied,
// the chain tip and the state after it: a Draft over the previous entry's Draft, down to the
// MemCache, as the leader builds its own pipeline. An entry is checked against the state of the
// entry before it; an entry that replaces an admitted one (a new leader's log wins a conflict)
// drops everything admitted from that index on. What the gate admitted is what the follower
// applies, with no second execution: its changes and tip become the durable block's.
import type { Genesis } from '../access/genesis.ts';
import { adminSet } from '../access/permissions.ts';
import { type Block, blockHash, checkBlockIntegrity, decodeBlock, decodeBlockHeader } from '../ledger/block.ts';
import { bytesEqual, toHex } from '../ledger/hash.ts';
import { messageSigningHash } from '../ledger/message.ts';
import { mmrAppend, mmrRoot } from '../ledger/mmr.ts';
import { isKalimaError, kalimaError, type KalimaError } from '../errors.ts';
import { Draft, type DraftBase, type MemCache } from '../state/memcache.ts';
import { type ChainPolicy, executeBlock } from '../state/replay.ts';
import { VALIDATIONS_ADDRESS, decodeValidationBody } from '../state/validation.ts';
import { ANCHORS_ADDRESS, decodeAnchorBody } from '../state/anchor-record.ts';
import type { BlockWrite, TipRecord } from '../store/chain-store.ts';
import type { SignatureVerifier } from '../node/verifier.ts';
import type { Entry } from './raft.ts';

/** An admitted entry: the chain after it, and the block it holds, if any. */
export interface AdmittedEntry {
  index: number;
  term: number;
  tip: TipRecord;
  state: DraftBase;
  block: BlockWrite | undefined;
  /** The block was in this node's chain store already (a catch-up brought it): nothing to apply. */
  stored?: boolean;
}

export interface GateOptions {
  genesis: Genesis;
  verifier: SignatureVerifier;
  /** The MemCache the admitted entries are applied to. */
  cache: MemCache;
  /** Where the state machine stands at the start: the last Raft index applied, and the chain tip. */
  applied: { index: number; tip: TipRecord };
  /**
   * The entries this node's log holds from `from` to `to`. Entries it holds but never admitted (its
   * own proposals as a leader, or what it held before a restart) are checked from there when a later
   * entry needs them as its base.
   */
  held?: (from: number, to: number) => Entry[];
  /**
   * The chain store: its tip, and a stored block's bytes. A catch-up can take the chain past the
   * Raft log; entries whose blocks are stored already are admitted if they are those very blocks.
   */
  stored?: { tip: () => TipRecord; bytesAt: (height: number) => Promise<Uint8Array | undefined> };
  /** The hash of an applied block by height, where the node still knows it (for the check of validation records). */
  hashAt?: (height: number) => Uint8Array | undefined;
}

export interface Admission {
  /** How many of the entries (a prefix) may be accepted. */
  admitted: number;
  /** Why the next one may not, if one was refused. */
  refusal: KalimaError | undefined;
}

export class BlockGate {
  private readonly admittedByIndex = new Map<number, AdmittedEntry>();
  /** The last index applied and the tip after it; only applied() moves them. */
  private durableIndex: number;
  private durableTip: TipRecord;
  private readonly masters: ReadonlySet<string>;
  private readonly policy: ChainPolicy;

  constructor(private readonly options: GateOptions) {
    this.masters = new Set(options.genesis.masters.map(toHex));
    this.policy = { admins: adminSet(options.genesis.admins), chain: options.genesis.chain, validators: new Set(options.genesis.validators.map(toHex)), masters: this.masters };
    this.durableIndex = options.applied.index;
    this.durableTip = options.applied.tip;
  }

  /** The last index applied, as applied() was told. */
  get appliedIndex(): number {
    return this.durableIndex;
  }

  /** The admitted entry at `index`, for the state machine to apply once it is committed. */
  get(index: number): AdmittedEntry | undefined {
    return this.admittedByIndex.get(index);
  }

  /**
   * Checks entries in log order. An entry already admitted with the same term passes; one with
   * another term replaces it and everything after. `leaderHex` (x-only, hex) is the key of the
   * leader that sent them: entries of its term must be its blocks.
   */
  async admit(entries: readonly Entry[], leader: { term: number; keyHex: string }): Promise<Admission> {
    let admitted = 0;
    for (const entry of entries) {
      const durable = { index: this.durableIndex, tip: this.durableTip, state: this.options.cache as DraftBase };
      if (entry.index <= durable.index) {
        // Applied already: Raft holds it, and a leader cannot change a committed entry.
        admitted++;
        continue;
      }
      const known = this.admittedByIndex.get(entry.index);
      if (known !== undefined && known.term === entry.term) {
        admitted++;
        continue;
      }
      if (known !== undefined) this.dropFrom(entry.index);
      let base = entry.index - 1 === durable.index ? { tip: durable.tip, state: durable.state } : this.admittedByIndex.get(entry.index - 1);
      if (base === undefined && this.options.held !== undefined) {
        // The entries before it are in this node's log but were never admitted: check them first
        // (no leader to match: they are older than this append).
        const gap = this.options.held(durable.index + 1, entry.index - 1).filter((held) => !this.admittedByIndex.has(held.index) || this.admittedByIndex.get(held.index)!.term !== held.term);
        if (gap.length > 0 && (await this.admit(gap, { term: -1, keyHex: '' })).refusal === undefined) base = this.admittedByIndex.get(entry.index - 1);
      }
      if (base === undefined) {
        return { admitted, refusal: kalimaError('KALIMA_ERR_CONSENSUS_BAD_ENTRY', { index: entry.index, reason: 'the entry before it was not admitted' }) };
      }
      try {
        this.admittedByIndex.set(entry.index, await this.check(entry, base, leader));
      } catch (error) {
        if (!isKalimaError(error)) throw error;
        return { admitted, refusal: kalimaError('KALIMA_ERR_CONSENSUS_BAD_ENTRY', { index: entry.index, term: entry.term, reason: String(error.details.reason ?? error.message), code: error.code }) };
      }
      admitted++;
    }
    return { admitted, refusal: undefined };
  }

  /**
   * The state machine applied the entry at `index` (after the one before it): forget what was
   * admitted up to it, and read the next through the MemCache. `tip` is needed only for an entry the
   * gate did not admit (this node's own block, produced while it led).
   */
  applied(index: number, tip?: TipRecord): void {
    const cache = this.options.cache;
    const admitted = this.admittedByIndex.get(index);
    const appliedState = admitted?.state;
    this.durableIndex = Math.max(this.durableIndex, index);
    if (admitted !== undefined) this.durableTip = admitted.tip;
    else if (tip !== undefined) this.durableTip = tip;
    for (const key of [...this.admittedByIndex.keys()]) if (key <= index) this.admittedByIndex.delete(key);
    // The first Draft built on the state just applied (empty entries share that state) now reads
    // through the MemCache, which holds it.
    for (let next = index + 1; this.admittedByIndex.has(next); next++) {
      const { state } = this.admittedByIndex.get(next)!;
      if (state === appliedState) continue;
      if (state instanceof Draft) state.rebase(cache);
      break;
    }
  }

  /**
   * A committed block fetched from a peer (a catch-up), on the chain as it stands: the same checks
   * as for a replicated entry, with no log entry or leader to match.
   */
  async checkCommitted(bytes: Uint8Array, base: { tip: TipRecord; state: DraftBase }): Promise<BlockWrite> {
    if (bytes.length === 0) throw kalimaError('KALIMA_ERR_LEDGER_BAD_BLOCK', { height: base.tip.height + 1, reason: 'an empty block' });
    const checked = await this.check({ index: -1, term: -1, data: bytes }, base, { term: -2, keyHex: '' }, false, false);
    return checked.block!;
  }

  /** The state machine now stands at `index` with `tip` (a snapshot was installed): nothing admitted before holds. */
  restore(index: number, tip: TipRecord): void {
    this.admittedByIndex.clear();
    this.durableIndex = index;
    this.durableTip = tip;
  }

  /**
   * The hashes of the blocks the block's validation and anchor records name, on the chain that ends
   * at `tip`: admitted ancestors (`onAdmitted`: the block extends them), then what the node applied,
   * then the store. Every honest node finds every one of them, so a record is checked alike everywhere.
   */
  private async recordHashes(block: Block, tip: TipRecord, onAdmitted: boolean): Promise<Map<number, Uint8Array>> {
    const hashes = new Map<number, Uint8Array>();
    for (const committed of block.messages) {
      const { address } = committed.message;
      if (address !== VALIDATIONS_ADDRESS && address !== ANCHORS_ADDRESS) continue;
      let height: number;
      try {
        height = address === VALIDATIONS_ADDRESS
          ? decodeValidationBody(committed.message.body).height
          : decodeAnchorBody(committed.message.body).tips.find((tip) => tip.chain === block.header.chain)?.height ?? Number.NaN;
      } catch {
        continue; // the execution refuses it
      }
      if (!Number.isSafeInteger(height)) continue;
      if (height > tip.height || hashes.has(height)) continue;
      let hash: Uint8Array | undefined = height === tip.height ? tip.hash : undefined;
      if (hash === undefined && onAdmitted) {
        for (const admitted of this.admittedByIndex.values()) if (admitted.tip.height === height && admitted.tip.height < tip.height) hash = admitted.tip.hash;
      }
      hash ??= this.options.hashAt?.(height);
      if (hash === undefined && this.options.stored !== undefined && height <= this.options.stored.tip().height) {
        const bytes = await this.options.stored.bytesAt(height);
        if (bytes !== undefined) hash = blockHash(decodeBlockHeader(bytes));
      }
      if (hash !== undefined) hashes.set(height, hash);
    }
    return hashes;
  }

  private dropFrom(index: number): void {
    for (const key of [...this.admittedByIndex.keys()]) if (key >= index) this.admittedByIndex.delete(key);
  }

  private async check(entry: Entry, base: { tip: TipRecord; state: DraftBase }, leader: { term: number; keyHex: string }, matchTerm = true, onAdmitted = true): Promise<AdmittedEntry> {
    if (entry.data.length === 0) return { index: entry.index, term: entry.term, tip: base.tip, state: base.state, block: undefined };
    const block: Block = decodeBlock(entry.data);
    const { header } = block;
    const stored = this.options.stored;
    if (stored !== undefined && header.height <= stored.tip().height) {
      // Stored already: it must be that block. The chain after it is the node's, whose state the
      // MemCache holds.
      const bytes = await stored.bytesAt(header.height);
      if (bytes === undefined || !bytesEqual(bytes, entry.data)) throw kalimaError('KALIMA_ERR_LEDGER_BAD_BLOCK', { height: header.height, reason: 'another block is stored at this height' });
      return { index: entry.index, term: entry.term, tip: stored.tip(), state: this.options.cache, block: undefined, stored: true };
    }
    checkBlockIntegrity(block, { chain: this.options.genesis.chain, height: base.tip.height + 1, prevHash: base.tip.hash, mmrRoot: mmrRoot(base.tip.mmr) });
    const fail = (reason: string): never => {
      throw kalimaError('KALIMA_ERR_LEDGER_BAD_BLOCK', { height: header.height, reason });
    };
    const leaderHex = toHex(header.leader);
    if (!this.masters.has(leaderHex)) fail('the block was signed by a key that is not a master');
    if (matchTerm && header.term !== entry.term) fail(`the block says term ${header.term}, its log entry term ${entry.term}`);
    if (entry.term === leader.term && leaderHex !== leader.keyHex) fail('the block of this term was not signed by this term\'s leader');
    if (header.timeMs < base.tip.timeMs) fail('the block time goes backwards');
    // Every message signature in the verifier pool at once, then the execution on the state before.
    const signingHashes = block.messages.map((committed) => messageSigningHash(committed.message));
    const signaturesValid = await Promise.all(block.messages.map((committed, index) => this.options.verifier.verify(signingHashes[index]!, committed.message.device, committed.message.signature)));
    const hashes = await this.recordHashes(block, base.tip, onAdmitted);
    const { result, draft } = executeBlock(base.state, block, { ...this.policy, blockHashAt: (height) => hashes.get(height) }, signaturesValid, signingHashes);
    const hash = blockHash(header);
    const last = block.messages[block.messages.length - 1];
    const tip: TipRecord = {
      height: header.height, hash, timeMs: header.timeMs, mmr: mmrAppend(base.tip.mmr, hash),
      nextGlobalSequence: last === undefined ? base.tip.nextGlobalSequence : last.globalSequence + 1,
      stateDigest: header.stateDigest,
    };
    return { index: entry.index, term: entry.term, tip, state: draft, block: { block, bytes: entry.data, hash, messageHashes: result.messageHashes, changes: result.changes, tip } };
  }
}
