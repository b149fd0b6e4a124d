// Anchoring for a running node: the Bitcoin RPC client, the anchor wallet, the engine's store and
// its timer, the chain's anchor records, GET /anchors and proofs. Started by src/node/runtime.ts
// for a node whose config has a `bitcoin` section.
import { isKalimaError, kalimaError } from '../src/errors.ts';
import { blockHash, decodeBlockHeader, encodeHeader } from '../src/ledger/block.ts';
import { fromHex, toHex } from '../src/ledger/hash.ts';
import { parseBlock } from '../chains/bitcoin/block.ts';
import type { KeyPair } from '../src/ledger/signature.ts';
import type { Clock, Logger, Rng, Scheduler } from '../src/ports.ts';
import type { KalimaNode } from '../src/node/node.ts';
import type { AnchorsApi } from '../src/api/server.ts';
import type { KvStore } from '../src/store/kv.ts';
import { TABLE } from '../src/store/keys.ts';
import { BitcoinRpc } from '../chains/bitcoin/rpc.ts';
import { type BitcoinNetwork, parseBitcoinNetwork } from '../chains/bitcoin/network.ts';
import { openAnchorWallet } from '../chains/bitcoin/keys.ts';
import type { AnchorConfig } from './config.ts';
import { AnchorEngine, type AnchorStatus, type BitcoinSource } from './engine.ts';
import { AnchorStore } from './state.ts';
import { LocalWallet } from './wallet.ts';
import { NodeChain } from './node-chain.ts';
import { aggregationRoot } from './aggregate.ts';
import { MmrStore } from './mmr-store.ts';
import { type AnchorProof, buildProof } from './proof.ts';

/** How long a stopping node waits for an anchor pass in progress. */
const CLOSE_WAIT_MS = 5_000;

/** Bitcoin blocks kept for proofs. */
const BLOCK_CACHE_SIZE = 8;

/** While the Bitcoin node does not answer, passes back off up to this far apart (or pollMs if that is longer). */
const MAX_BACKOFF_MS = 300_000;

/** The MMR nodes' table in the node's store (anchors/mmr-store.ts). */
export const MMR_TABLE_PREFIX = Uint8Array.of(TABLE.anchorMmr);

/** The RPC client as the engine uses it; the network is checked once, at the first answer. */
class RpcSource implements BitcoinSource {
  readonly network: string;
  private checked = false;

  constructor(readonly rpc: BitcoinRpc, private readonly params: BitcoinNetwork) {
    this.network = params.name;
  }

  async getBlockCount(): Promise<number> {
    if (!this.checked) {
      await this.rpc.checkNetwork(this.params);
      this.checked = true;
    }
    return this.rpc.getBlockCount();
  }

  getBlockHash(height: number): Promise<string> {
    return this.rpc.getBlockHash(height);
  }

  getBlockHex(hash: string): Promise<string> {
    return this.rpc.getBlockHex(hash);
  }

  async inMempool(txid: string): Promise<boolean> {
    return (await this.rpc.getMempoolEntry(txid)) !== undefined;
  }

  async broadcast(hex: string): Promise<void> {
    await this.rpc.sendRawTransaction(hex);
  }

  async estimateFeeRate(targetBlocks: number): Promise<number | undefined> {
    const estimate = await this.rpc.estimateSmartFee(targetBlocks);
    return estimate === undefined ? undefined : Number(estimate);
  }
}

export interface AnchorServiceOptions {
  config: AnchorConfig;
  /** Where the engine keeps its state (a LevelDB of its own). */
  stateKv: KvStore;
  /** The node's own store, for the MMR table. */
  nodeKv: KvStore;
  node: KalimaNode;
  nodeKey: KeyPair;
  clock: Clock;
  rng: Rng;
  scheduler: Scheduler;
  logger: Logger;
  /** Names of failpoints that end the process (crash tests; KALIMA_FAILPOINTS). */
  failpoints?: ReadonlySet<string>;
}

export class AnchorService implements AnchorsApi {
  private engine: AnchorEngine | undefined;
  private openError: { code: string; message: string } | undefined;
  private timer: unknown;
  private stopped = false;
  private readonly chain: NodeChain;
  private readonly source: RpcSource;
  private readonly store: AnchorStore;
  private mmr: MmrStore | undefined;
  /** Passes in a row in which the Bitcoin node did not answer. */
  private failures = 0;
  private readonly blocks = new Map<string, { raw: Uint8Array; parsed: ReturnType<typeof parseBlock> }>();

  private constructor(private readonly options: AnchorServiceOptions, private readonly wallet: LocalWallet, private readonly network: BitcoinNetwork, chain: NodeChain) {
    const { config } = options;
    const rpc = new BitcoinRpc({ url: config.bitcoin.rpcUrl, auth: config.bitcoin.auth, dialect: network.name === 'bcoin-regtest' ? 'bcoin' : 'core', timeoutMs: config.bitcoin.rpcTimeoutMs, maxAttempts: 3 });
    this.source = new RpcSource(rpc, network);
    this.chain = chain;
    this.store = new AnchorStore(options.stateKv);
  }

  static async open(options: AnchorServiceOptions): Promise<AnchorService> {
    const network = parseBitcoinNetwork(options.config.bitcoin.network);
    const keystore = await openAnchorWallet(options.config.bitcoin.walletFile, network, options.rng);
    const wallet = new LocalWallet(keystore, options.config.bitcoin.addressKind, options.config.policy.rbf);
    const service = new AnchorService(options, wallet, network, await NodeChain.open(options.node, options.nodeKey, options.rng, options.scheduler));
    options.logger.info({ network: network.name, rpc: options.config.bitcoin.rpcUrl, fundingAddress: wallet.fundingAddress }, 'anchors: anchoring into Bitcoin');
    service.schedule(0);
    return service;
  }

  /** One pass now (tests drive the engine with this; the timer calls it too). */
  async tick(): Promise<void> {
    const engine = await this.openEngine();
    if (engine !== undefined) await engine.tick();
  }

  /**
   * The next pass: after pollMs, or, while the Bitcoin node does not answer, after a delay that
   * doubles with each failed pass (with jitter) up to MAX_BACKOFF_MS.
   */
  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = this.options.scheduler.setTimeout(() => {
      void this.tick().catch((error: unknown) => {
        this.options.logger.error({ error: String((error as { message?: string }).message ?? error) }, 'anchors: a pass failed');
      }).finally(() => {
        const { pollMs } = this.options.config;
        const failing = this.engine === undefined || !this.engine.status().bitcoin.reachable;
        this.failures = failing ? this.failures + 1 : 0;
        const backoff = Math.min(Math.max(pollMs, MAX_BACKOFF_MS), pollMs * 2 ** Math.min(this.failures, 16));
        const jitter = 0.5 + (this.options.rng.bytes(1)[0]! / 255) * 0.5;
        this.schedule(this.failures === 0 ? pollMs : Math.round(backoff * jitter));
      });
    }, delayMs);
  }

  /** The engine, once its store is open; a new store needs the Bitcoin tip for its birth height, so it waits for the node to answer. */
  private async openEngine(): Promise<AnchorEngine | undefined> {
    if (this.engine !== undefined || this.stopped) return this.engine;
    const { config, clock, logger, failpoints } = this.options;
    try {
      const fresh = (await this.store.load()) === undefined;
      const birthHeight = !fresh ? 0 : config.bitcoin.birthHeight ?? (await this.source.getBlockCount());
      this.engine = await AnchorEngine.open({
        store: this.store, bitcoin: this.source, wallet: this.wallet, chains: [this.chain], policy: config.policy, clock, logger, birthHeight,
        aggregate: (tips) => aggregationRoot(tips.map((tip) => ({ chain: tip.chain, height: tip.height, blockHash: tip.hash }))),
        failpoint: (name) => {
          if (failpoints?.has(name)) {
            logger.error({ failpoint: name }, 'anchors: failpoint reached; the process ends here');
            process.kill(process.pid, 'SIGKILL');
          }
        },
      });
      this.openError = undefined;
    } catch (error) {
      this.openError = { code: (error as { code?: string }).code ?? 'KALIMA_ERR_NODE_INTERNAL', message: String((error as { message?: string }).message ?? error) };
      logger.warn(this.openError, 'anchors: cannot start yet');
    }
    return this.engine;
  }

  status(): AnchorStatus | { network: string; starting: true; late: string; wallet: { fundingAddress: string } } {
    if (this.engine !== undefined) return this.engine.status();
    return {
      network: this.network.name, starting: true, wallet: { fundingAddress: this.wallet.fundingAddress },
      late: this.openError === undefined ? 'starting' : `waiting for the Bitcoin node (${this.openError.code}: ${this.openError.message})`,
    };
  }

  /**
   * The proof of block `height` under the recorded anchor of this chain with the lowest tip at or
   * above it, read from the chain's records (so proofs outlive the engine's history) and from the
   * Bitcoin node: the record's block must still be in its best chain.
   */
  async proof(height: number): Promise<AnchorProof> {
    const { node } = this.options;
    const candidates = this.chain.records()
      .map((record) => ({ record, tip: record.tips.find((tip) => tip.chain === node.chain) }))
      .filter((candidate) => candidate.tip !== undefined && candidate.tip.height >= height && candidate.record.network === this.network.name)
      .sort((a, b) => a.tip!.height - b.tip!.height);
    for (const { record, tip } of candidates) {
      const bitcoinBlock = toHex(record.bitcoinBlock);
      // A reorg deeper than the record's depth took it out, and it is not recorded again yet.
      // (The Bitcoin node's errors pass through: "unreachable" is not "not anchored".)
      const atHeight = await this.source.getBlockHash(record.bitcoinHeight).catch((error: unknown) => {
        if (isKalimaError(error, 'KALIMA_ERR_BITCOIN_BAD_PARAMETER') || isKalimaError(error, 'KALIMA_ERR_BITCOIN_NOT_FOUND')) return undefined;
        throw error;
      });
      if (atHeight !== bitcoinBlock) continue;
      const { raw, parsed } = await this.bitcoinBlock(bitcoinBlock);
      const index = parsed.txids.indexOf(toHex(record.txid));
      if (index < 0) continue;
      const store = node.store;
      const block = await store.getBlock(height);
      const tipBlock = await store.getBlock(tip!.height);
      if (block === undefined || tipBlock === undefined) throw kalimaError('KALIMA_ERR_LEDGER_NOT_FOUND', { height });
      this.mmr ??= await MmrStore.open({
        kv: this.options.nodeKv, prefix: MMR_TABLE_PREFIX,
        blockHashAt: async (at) => {
          const bytes = await store.getBlockBytes(at);
          return bytes === undefined ? undefined : blockHash(decodeBlockHeader(bytes));
        },
      });
      const { path } = await this.mmr.proof(height, tip!.height);
      let proof: AnchorProof;
      try {
        proof = buildProof({
          network: this.network.name, chain: node.chain, height, blockHash: blockHash(block.header), blockHeader: encodeHeader(block.header), mmrPath: path,
          tipHeader: encodeHeader(tipBlock.header),
          aggregation: { tips: record.tips.map((entry) => ({ chain: entry.chain, height: entry.height, blockHash: entry.hash })) },
          anchorTx: new Uint8Array(parsed.transactions[index]!.toBuffer()), bitcoinBlock: { raw }, bitcoinHeight: record.bitcoinHeight,
        });
      } catch (error) {
        // A record whose pieces do not fit together proves nothing; a later one may.
        if (!isKalimaError(error, 'KALIMA_ERR_PROOF_INVALID')) throw error;
        this.options.logger.warn({ root: toHex(record.root), height, error: error.message }, 'anchors: an anchor record does not give a valid proof; trying the next');
        continue;
      }
      return proof;
    }
    throw kalimaError('KALIMA_ERR_ANCHOR_NOT_ANCHORED', { height, chain: node.chain });
  }

  /** A Bitcoin block, raw and parsed, from a small cache: proofs of nearby blocks share their anchor's block. */
  private async bitcoinBlock(hash: string): Promise<{ raw: Uint8Array; parsed: ReturnType<typeof parseBlock> }> {
    let entry = this.blocks.get(hash);
    if (entry === undefined) {
      const hex = await this.source.getBlockHex(hash);
      entry = { raw: fromHex(hex)!, parsed: parseBlock(hex) };
      this.blocks.set(hash, entry);
      if (this.blocks.size > BLOCK_CACHE_SIZE) this.blocks.delete(this.blocks.keys().next().value!);
    }
    return entry;
  }

  async close(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.options.scheduler.clearTimeout(this.timer);
    // A pass in progress may be waiting for a record to commit; the node stops without waiting long.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.engine?.close(), new Promise((resolve) => { timer = setTimeout(resolve, CLOSE_WAIT_MS); })]);
    clearTimeout(timer);
    this.chain.close();
    this.source.rpc.close();
    await this.store.close();
  }
}
