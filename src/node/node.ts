// A single master node: it takes signed messages, orders them into blocks, makes each block
// durable with one synced write, then applies it to the MemCache, acknowledges its messages and
// tells subscribers. A message is acknowledged only once the block that holds it is on disk.
//
// Blocks are pipelined: while one block is being written, the next is built on the state the first
// leaves (a Draft over its sealed Draft), and blocks that are ready when a write finishes go to disk
// together in the next synced write (group commit). Writes stay in height order, one at a time, and
// nothing of a block is visible to readers, acknowledged or streamed before it is durable.
import { kalimaError, isKalimaError, assert } from '../errors.ts';
import { type Genesis, genesisHash } from '../access/genesis.ts';
import { type AccessPolicy, adminSet, mayRead, checkRead, roleOf } from '../access/permissions.ts';
import { ONBOARDING_ADDRESS } from '../access/records.ts';
import { type Block, type BlockHeader, assembleBlock, blockOverheadBytes, encodeHeader } from '../ledger/block.ts';
import { TAG, bytesEqual, taggedHash, toHex } from '../ledger/hash.ts';
import { BLOCK_BYTES_MAX, BLOCK_MESSAGES_MAX, EXPIRIES_PER_BLOCK_MAX, NONCE_RECENT_MAX } from '../ledger/limits.ts';
import { merkleLeafHash, merkleRoot } from '../ledger/merkle.ts';
import { type CommittedMessage, type Message, type UnsignedMessage, encodeCommittedFrom, encodeUnsignedMessage, signingHashOfEncoding } from '../ledger/message.ts';
import { mmrAppend, mmrRoot } from '../ledger/mmr.ts';
import { ANCHORS_ADDRESS, decodeAnchorBody } from '../state/anchor-record.ts';
import { type KeyPair, SIGNATURE_BYTES, signSchnorr } from '../ledger/signature.ts';
import type { Clock, Logger, Rng, Scheduler } from '../ports.ts';
import type { CacheEntry } from '../state/entry.ts';
import { SYSTEM_REASON_PROP, SYSTEM_REASON_TTL, type ExecutionContext, checkMessage, executeMessage } from '../state/execute.ts';
import { Draft, type DraftBase, type MemCache, type StateChanges } from '../state/memcache.ts';
import type { ExpiryItem } from '../state/expiry-queue.ts';
import { type Rewards, VALIDATIONS_ADDRESS, decodeValidationBody, rewardsOf } from '../state/validation.ts';
import type { BlockWrite, ChainStore, LocatedMessage, TipRecord } from '../store/chain-store.ts';
import { type BlockSigner, InlineBlockSigner } from './block-signer.ts';
import { type VerifyProgress, openVerified } from '../store/verify.ts';
import type { SignatureVerifier } from './verifier.ts';

export interface CommitReceipt {
  messageHash: string;
  globalSequence: number;
  sequence: number;
  previous: number;
  height: number;
  timeMs: number;
}

export interface CommittedBlock {
  block: Block;
  hash: Uint8Array;
  messageHashes: Uint8Array[];
}

export interface NodeOptions {
  genesis: Genesis;
  store: ChainStore;
  /** The key this node signs blocks and TTL deletes with; must be one of the genesis masters. */
  nodeKey: KeyPair;
  clock: Clock;
  rng: Rng;
  scheduler: Scheduler;
  verifier: SignatureVerifier;
  /** Signs blocks with nodeKey; inline on the calling thread unless given (the runtime gives a worker thread when `signerThread` is set). */
  signer?: BlockSigner;
  logger: Logger;
  /** Messages waiting for a block beyond this are refused with KALIMA_ERR_API_OVERLOADED. */
  pendingMessagesMax?: number;
  blockDelayMs?: number;
  onVerifyProgress?: (progress: VerifyProgress) => void;
  /**
   * In a cluster: blocks go through consensus before they are durable here. Without it the node is
   * the chain's only master and its own store is the commit.
   */
  replicator?: BlockReplicator;
  /**
   * In a cluster: hands a message whose signature this node checked to the leader, and resolves
   * with the leader's receipt. A follower given one forwards instead of refusing with NOT_LEADER.
   */
  forwarder?: (message: Message, hash: Uint8Array) => Promise<CommitReceipt>;
}

/** What the block producer needs from the consensus layer (consensus/replicator.ts). */
export interface BlockReplicator {
  /** The term blocks are produced in: their header's `term`. */
  readonly term: number;
  /** Whether this node may produce now: it leads, and its term's first entry is applied here. */
  mayProduce(): boolean;
  /** Who leads, as far as this node knows, for a refusal's details. */
  leaderHint(): string | undefined;
  /** The leader's API URL, if the configuration names it. */
  leaderApi?(): string | undefined;
  /** Set when this node's consensus stopped (a failure): writes are refused with it, not redirected. */
  unavailable?(): unknown;
  /**
   * Commits the blocks through the cluster, in order (each proposed once, however often it is
   * passed). Resolves once the first one's outcome is known, with how many of them, from the first,
   * are committed by then, and whether the next was refused (`lost`: this node lost its
   * leadership). The rest, neither, come again in the next call.
   */
  replicate(blocks: readonly BlockWrite[]): Promise<{ committed: number; lost: boolean }>;
  /**
   * Proposes a block now, ahead of the write that will replicate() it (each block is proposed once,
   * in the order given): followers check it while the blocks before it finish.
   */
  propose?(block: BlockWrite): void;
  /** Blocks this node produced and will not apply itself (it lost its leadership): if they commit after all, they come back as anyone else's. */
  abandon(blocks: readonly BlockWrite[]): void;
  /** The node stopped producing after a failure: it must not go on leading (or standing), so another master takes over. */
  nodeFailed?(error: unknown): void;
}

interface Pending {
  message: Message;
  unsignedEncoding: Uint8Array;
  hash: Uint8Array;
  encodedBytes: number;
  nonceId: string;
  deviceHex: string;
  promise: Promise<CommitReceipt>;
  resolve: (receipt: CommitReceipt) => void;
  reject: (error: unknown) => void;
}

/** A block produced and not yet durable. */
interface ProducedBlock {
  /** The block and its bytes, once signed. */
  block: Block | undefined;
  bytes: Uint8Array | undefined;
  /** Settles when the block is signed; rejects if signing failed. */
  signing: Promise<void>;
  hash: Uint8Array;
  messageHashes: Uint8Array[];
  changes: StateChanges;
  tip: TipRecord;
  draft: Draft;
  /** The submitted messages it holds (TTL deletes are not among them), in block order. */
  included: Pending[];
  /** The expiries its TTL deletes took from the MemCache's queue: put back if the block is dropped. */
  expiries: ExpiryItem[];
  /** Proposed to the cluster ahead of its write (proposeAhead): it may commit even if this node stops. */
  proposed?: boolean;
}

/** Blocks that may be built ahead of the disk; beyond this the producer waits for a write. */
const BLOCKS_AHEAD_MAX = 4;
/** Blocks one synced write may carry. */
const BLOCKS_PER_WRITE_MAX = 8;

/** Bytes a committed message adds beyond its message encoding, at most: version and three varints. */
const COMMITTED_OVERHEAD_BYTES_MAX = 1 + 3 * 8;
const TERM = 1;
/** Block hashes kept by height for the check of validation records (older ones are looked up in the store). */
const RECENT_HASHES = 4_096;
/** Half the replay window, so a device's own writes in flight never push each other out of it. */
export const DEVICE_IN_FLIGHT_MAX = NONCE_RECENT_MAX / 2;

export class KalimaNode {
  readonly chain: string;
  readonly genesisHashHex: string;
  readonly policy: AccessPolicy & { chain: string; validators: ReadonlySet<string>; masters: ReadonlySet<string> };
  private readonly nodeKeyHex: string;
  /** Hashes of the latest blocks applied here, by height (RECENT_HASHES of them), for the check of validations. */
  private readonly recentHashes = new Map<number, Uint8Array>();
  private readonly queue: Pending[] = [];
  private readonly pendingByNonce = new Map<string, Pending>();
  private readonly blockListeners = new Set<(committed: CommittedBlock) => void>();
  private readonly pendingMessagesMax: number;
  private readonly blockDelayMs: number;
  private readonly overheadBytes: number;
  private readonly signer: BlockSigner;
  private blockTimer: unknown;
  private expiryTimer: unknown;
  private producing: Promise<void> | undefined;
  /** Produced blocks waiting for their write or in it, in height order. */
  private readonly undurable: ProducedBlock[] = [];
  private writing: Promise<void> | undefined;
  /** The blocks inside the synced write in progress: only the write's outcome settles them. */
  private writingBatch: ProducedBlock[] | undefined;
  private closed: Promise<void> | undefined;
  /** The chain's head as produced: the last undurable block, or the durable tip. */
  private head: { tip: TipRecord; state: DraftBase };
  private readonly inFlightByDevice = new Map<string, number>();
  private queuedBytes = 0;
  private closing = false;
  private failure: unknown;
  private committedMessages = 0;
  /** Callers of whenApplied(), each waiting for its height. */
  private readonly appliedWaiters: Array<{ height: number; resolve: () => void }> = [];

  private constructor(
    private readonly options: NodeOptions,
    private tip: TipRecord,
    readonly cache: MemCache,
  ) {
    this.chain = options.genesis.chain;
    this.genesisHashHex = toHex(genesisHash(options.genesis));
    this.policy = { admins: adminSet(options.genesis.admins), clock: options.clock, chain: this.chain, validators: new Set(options.genesis.validators.map(toHex)), masters: new Set(options.genesis.masters.map(toHex)) };
    this.nodeKeyHex = toHex(options.nodeKey.publicKey);
    this.pendingMessagesMax = options.pendingMessagesMax ?? 20_000;
    this.blockDelayMs = options.blockDelayMs ?? options.genesis.params.blockDelayMs;
    this.overheadBytes = blockOverheadBytes(this.chain);
    this.head = { tip, state: cache };
    this.signer = options.signer ?? new InlineBlockSigner(options.nodeKey, options.rng);
  }

  /** Opens the store, checks the whole chain and the MemCache, and starts serving. */
  static async open(options: NodeOptions): Promise<KalimaNode> {
    // A validation node opens its chain the same way; it never produces (it never leads).
    const isMember = [...options.genesis.masters, ...options.genesis.validators].some((member) => bytesEqual(member, options.nodeKey.publicKey));
    if (!isMember) throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { reason: 'the node key is not one of the genesis masters or validation nodes', node: toHex(options.nodeKey.publicKey) });
    const { tip, cache } = await openVerified(options.store, options.genesis, options.onVerifyProgress);
    const node = new KalimaNode(options, tip, cache);
    node.scheduleExpiry();
    options.logger.info({ chain: node.chain, height: tip.height, entries: cache.size }, 'node open');
    return node;
  }

  get height(): number {
    return this.tip.height;
  }

  /** The height of the last block produced, durable or still being written (≥ height). */
  get producedHeight(): number {
    return this.head.tip.height;
  }

  get tipRecord(): Readonly<TipRecord> {
    return this.tip;
  }

  get pendingCount(): number {
    return this.queue.length;
  }

  get committedMessageCount(): number {
    return this.committedMessages;
  }

  get store(): ChainStore {
    return this.options.store;
  }

  get clock(): Clock {
    return this.options.clock;
  }

  onBlock(listener: (committed: CommittedBlock) => void): () => void {
    this.blockListeners.add(listener);
    return () => this.blockListeners.delete(listener);
  }

  /**
   * Submits a signed message; resolves once it is committed in a durable block. A retry of the
   * same message while it waits joins the first submission. Throws a coded error for anything
   * the chain refuses, and then nothing has changed.
   */
  async submit(message: Message, options: { forwarded?: boolean } = {}): Promise<CommitReceipt> {
    // A follower forwards to the leader, unless the message was forwarded to it (never twice).
    const forwardable = this.options.forwarder !== undefined && options.forwarded !== true;
    let forward = this.checkServing(forwardable);
    // Checks every field bound, then encodes: the one encoding this node makes of the message.
    const unsignedEncoding = encodeUnsignedMessage(message);
    if (message.chain !== this.chain) throw kalimaError('KALIMA_ERR_LEDGER_WRONG_CHAIN', { chain: message.chain, expected: this.chain });
    const encodedBytes = unsignedEncoding.length + SIGNATURE_BYTES;
    if (encodedBytes + COMMITTED_OVERHEAD_BYTES_MAX + this.overheadBytes > BLOCK_BYTES_MAX) {
      throw kalimaError('KALIMA_ERR_LEDGER_MESSAGE_TOO_LARGE', { bytes: encodedBytes });
    }
    const deviceHex = toHex(message.device);
    // Refuse an unknown key before paying for a signature check (redemptions come from new keys).
    // Not when forwarding: a follower's state may be a block behind the leader's.
    const isValidation = message.address === VALIDATIONS_ADDRESS && this.policy.validators.has(deviceHex);
    const isAnchorRecord = message.address === ANCHORS_ADDRESS && this.policy.masters.has(deviceHex);
    if (!forward && message.address !== ONBOARDING_ADDRESS && !isValidation && !isAnchorRecord && roleOf(this.cache, this.policy, deviceHex).kind === 'unknown') {
      throw kalimaError('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE', { device: deviceHex });
    }
    const hash = signingHashOfEncoding(unsignedEncoding);
    // Verify before the nonce is claimed: a forged copy must not block the genuine message.
    const valid = await this.options.verifier.verify(hash, message.device, message.signature);
    if (!valid) throw kalimaError('KALIMA_ERR_LEDGER_BAD_SIGNATURE', { device: deviceHex });
    forward = this.checkServing(forwardable);
    if (forward) return this.options.forwarder!(message, hash);

    const nonceId = `${deviceHex}:${message.nonce}`;
    const waiting = this.pendingByNonce.get(nonceId);
    if (waiting !== undefined) {
      // The same signed message again (a client retry) joins the first submission.
      if (bytesEqual(waiting.hash, hash)) return waiting.promise;
      throw kalimaError('KALIMA_ERR_LEDGER_NONCE_REPLAYED', { nonce: message.nonce });
    }
    if (this.pendingByNonce.size >= this.pendingMessagesMax) throw kalimaError('KALIMA_ERR_API_OVERLOADED', { pending: this.pendingByNonce.size });
    // More in flight than the replay window remembers could push a device's own nonces out of it.
    const inFlight = this.inFlightByDevice.get(deviceHex) ?? 0;
    if (inFlight >= DEVICE_IN_FLIGHT_MAX) throw kalimaError('KALIMA_ERR_API_OVERLOADED', { device: deviceHex, inFlight });
    try {
      // Fail fast against the committed state; the block producer checks again, in order.
      if (isValidation) await this.checkValidationHash(message);
      if (isAnchorRecord) await this.checkAnchorTipHash(message);
      checkMessage(this.cache, message, this.executionContext(this.options.clock.nowMs()));
    } catch (error) {
      throw await this.explain(error, hash);
    }

    let resolve!: (receipt: CommitReceipt) => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<CommitReceipt>((onResolve, onReject) => {
      resolve = onResolve;
      reject = onReject;
    });
    const pending: Pending = { message, unsignedEncoding, hash, encodedBytes, nonceId, deviceHex, promise, resolve, reject };
    this.pendingByNonce.set(nonceId, pending);
    this.inFlightByDevice.set(deviceHex, inFlight + 1);
    this.queue.push(pending);
    this.queuedBytes += encodedBytes;
    this.scheduleBlock();
    return promise;
  }

  /** Settles a pending message, one way or the other, and forgets it. */
  private settle(pending: Pending, outcome: { receipt: CommitReceipt } | { error: unknown }): void {
    if (this.pendingByNonce.get(pending.nonceId) !== pending) return; // settled already
    this.pendingByNonce.delete(pending.nonceId);
    const inFlight = (this.inFlightByDevice.get(pending.deviceHex) ?? 1) - 1;
    if (inFlight <= 0) this.inFlightByDevice.delete(pending.deviceHex);
    else this.inFlightByDevice.set(pending.deviceHex, inFlight);
    if ('receipt' in outcome) pending.resolve(outcome.receipt);
    else pending.reject(outcome.error);
  }

  /**
   * A replay of an already committed message says where it was committed. It never throws: a store
   * that cannot answer leaves the refusal as it was, so the message is still settled.
   */
  private async explain(error: unknown, hash: Uint8Array): Promise<unknown> {
    if (!isKalimaError(error, 'KALIMA_ERR_LEDGER_NONCE_REPLAYED') && !isKalimaError(error, 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD')) return error;
    try {
      const location = await this.options.store.locateMessage(hash);
      if (location === undefined) return error;
      const located = await this.options.store.messageAt(location);
      if (located === undefined) return error;
      return kalimaError(error.code, { ...error.details, committed: receiptOf(located, hash) });
    } catch (lookupError) {
      this.options.logger.warn({ err: lookupError }, 'could not look up where a replayed message was committed');
      return error;
    }
  }

  /** Throws unless this node takes messages now; true (instead of NOT_LEADER) if it should forward them. */
  private checkServing(forwardable = false): boolean {
    if (this.failure !== undefined) throw kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'the node stopped producing blocks after a storage or internal failure (see its log); restart it' });
    if (this.closing) throw kalimaError('KALIMA_ERR_NODE_STOPPING');
    const { replicator } = this.options;
    const unavailable = replicator?.unavailable?.();
    if (unavailable !== undefined) throw kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'this master stopped taking part in consensus (see its log); restart it', cause: String((unavailable as { message?: string }).message ?? unavailable) });
    if (replicator !== undefined && !replicator.mayProduce()) {
      if (forwardable) return true;
      throw kalimaError('KALIMA_ERR_CONSENSUS_NOT_LEADER', { leader: replicator.leaderHint() ?? null, leaderApi: replicator.leaderApi?.() ?? null, term: replicator.term });
    }
    return false;
  }

  /** Resolves once the chain here reaches `height` (its own pipeline or a replicated block), or the node stops. */
  async whenApplied(height: number): Promise<void> {
    if (this.tip.height >= height || this.failure !== undefined || this.closing) return;
    // Woken by the apply that reaches the height, or by a failure or the close (no timer: the
    // node's time is the injected scheduler's, and a seeded simulation must not see real time).
    await new Promise<void>((resolve) => this.appliedWaiters.push({ height, resolve }));
  }

  /** Wakes whenApplied() callers whose height is reached (all of them once the node stops). */
  private wakeApplied(all = false): void {
    if (this.appliedWaiters.length === 0) return;
    const waiting = this.appliedWaiters.splice(0);
    for (const waiter of waiting) {
      if (all || waiter.height <= this.tip.height) waiter.resolve();
      else this.appliedWaiters.push(waiter);
    }
  }

  /**
   * The replicator says this node no longer leads. Blocks in a write are settled by that write's
   * outcome (writeReady), and a block being built gives up when it is written; with neither under
   * way, what waits here is refused now instead of waiting for a leadership that may not return.
   */
  leadershipLost(): void {
    if (this.options.replicator === undefined || this.writing !== undefined || this.producing !== undefined) return;
    if (this.queue.length > 0 || this.undurable.length > 0) this.yieldLeadership();
  }

  /** The replicator says this node may produce again (it became leader): pick up what waits. */
  resumeProducing(): void {
    if (this.queue.length > 0) this.scheduleBlock();
    else this.scheduleExpiry();
  }

  /** The context a block at `height` (by default the next durable one) executes in. */
  private executionContext(blockTimeMs: number, height = this.tip.height + 1): ExecutionContext {
    return { admins: this.policy.admins, chain: this.chain, height, blockTimeMs, leaderHex: this.nodeKeyHex, validators: this.policy.validators, masters: this.policy.masters, blockHashAt: (at) => this.knownHashAt(at) };
  }

  /** The rewards counted on the chain at its tip (state/validation.ts). */
  rewards(): Rewards {
    return rewardsOf(this.tip.height, this.options.genesis.masters.map(toHex), this.options.genesis.validators.map(toHex), (id) => this.cache.getEntry(VALIDATIONS_ADDRESS, id));
  }

  /** The hash of the block at `height` on this node's chain as produced (undurable blocks included), if it is one of the latest. */
  knownHashAt(height: number): Uint8Array | undefined {
    if (height === this.head.tip.height) return this.head.tip.hash;
    for (const produced of this.undurable) if (produced.tip.height === height) return produced.tip.hash;
    return this.recentHashes.get(height) ?? (height === this.tip.height ? this.tip.hash : undefined);
  }

  private rememberHash(tip: TipRecord): void {
    this.recentHashes.set(tip.height, tip.hash);
    this.recentHashes.delete(tip.height - RECENT_HASHES);
  }

  /** Whether `hash` is this chain's block at `height` (looked up in the store when it is not one of the latest). */
  private async isBlockAt(height: number, hash: Uint8Array): Promise<boolean> {
    const known = this.knownHashAt(height);
    return known !== undefined ? bytesEqual(known, hash) : (await this.options.store.heightOfHash(hash)) === height;
  }

  /** An anchor record's tip of this chain is a block this node has. */
  private async checkAnchorTipHash(message: Message): Promise<void> {
    const tip = decodeAnchorBody(message.body).tips.find((entry) => entry.chain === this.chain);
    if (tip === undefined || tip.height > this.tip.height) return; // refused when it is executed
    if (!(await this.isBlockAt(tip.height, tip.hash))) throw kalimaError('KALIMA_ERR_LEDGER_BAD_ANCHOR', { reason: 'the tip is not this chain\'s block at that height', height: tip.height });
  }

  /** A validation names a block this node has. */
  private async checkValidationHash(message: Message): Promise<void> {
    const record = decodeValidationBody(message.body);
    if (!(await this.isBlockAt(record.height, record.hash))) throw kalimaError('KALIMA_ERR_LEDGER_BAD_VALIDATION', { reason: 'the hash is not this chain\'s block at that height', height: record.height });
  }

  /** `afterWrite`: a write just finished, and the messages queued during it have waited long enough. */
  private scheduleBlock(afterWrite = false): void {
    if (this.producing !== undefined || this.blockTimer !== undefined || this.closing || this.failure !== undefined) return;
    // Far enough ahead of the disk: the write that finishes next schedules the block.
    if (this.undurable.length >= BLOCKS_AHEAD_MAX) return;
    const full = this.queuedBytes + this.overheadBytes >= BLOCK_BYTES_MAX || this.queue.length >= BLOCK_MESSAGES_MAX;
    // Only full blocks are built ahead of the disk. A partial one waits for the write in progress,
    // and takes whatever arrives meanwhile: under a moderate load blocks grow with the disk's
    // latency instead of each paying for its own signature and sync.
    if (!full && this.undurable.length > 0) return;
    this.blockTimer = this.options.scheduler.setTimeout(() => {
      this.blockTimer = undefined;
      void this.startProducing();
    }, full || afterWrite ? 0 : this.blockDelayMs);
  }

  /** The only way a block is produced: at most one producer runs at a time. */
  private startProducing(): Promise<void> {
    if (this.producing !== undefined) return this.producing;
    const included: Pending[] = [];
    const run = this.produceBlock(included).catch((error: unknown) => {
      // A bug, not bad input (bad input is refused message by message): stop producing rather
      // than build on a state nobody can vouch for, and refuse what this block had taken.
      this.stop(error, 'block production failed; the node stops producing', kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'block production failed' }), included);
    }).finally(() => {
      this.producing = undefined;
      if (this.queue.length > 0) this.scheduleBlock();
      else if (this.undurable.length === 0) this.scheduleExpiry();
    });
    this.producing = run;
    return run;
  }

  private scheduleExpiry(): void {
    if (this.expiryTimer !== undefined) this.options.scheduler.clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const next = this.cache.nextExpiryMs();
    if (next === undefined || this.closing) return;
    const delayMs = Math.max(0, next - this.options.clock.nowMs());
    this.expiryTimer = this.options.scheduler.setTimeout(() => {
      this.expiryTimer = undefined;
      this.scheduleBlock();
    }, Math.min(delayMs, 2_147_000_000));
  }

  /** The producer's delete of an expired entry, unsigned: it is signed only once it fits the block. */
  private expiryDelete(entry: CacheEntry, globalSequence: number): UnsignedMessage {
    return {
      chain: this.chain, address: entry.address, key: entry.key, body: new Uint8Array(), ttlSeconds: -1,
      props: [[SYSTEM_REASON_PROP, SYSTEM_REASON_TTL]], device: this.options.nodeKey.publicKey, nonce: globalSequence,
    };
  }

  /** Builds the next block on the head; `included` collects the submitted messages it takes. */
  private async produceBlock(included: Pending[]): Promise<void> {
    if (this.failure !== undefined || this.closing || this.undurable.length >= BLOCKS_AHEAD_MAX) return;
    // Not leading (or not yet caught up as a new leader): resumeProducing() starts again. What
    // waits from an earlier leadership is refused now (retryable), not left for one that may never
    // return; a write in progress does that itself when it finishes.
    if (this.options.replicator !== undefined && !this.options.replicator.mayProduce()) {
      if (this.writing === undefined && (this.queue.length > 0 || this.undurable.length > 0)) this.yieldLeadership();
      return;
    }
    const { tip: headTip, state: base } = this.head;
    const timeMs = Math.max(this.options.clock.nowMs(), headTip.timeMs);
    const context = this.executionContext(timeMs, headTip.height + 1);
    const draft = new Draft(base);
    const messages: CommittedMessage[] = [];
    const messageHashes: Uint8Array[] = [];
    const leafHashes: Uint8Array[] = [];
    const encodings: Uint8Array[] = [];
    let blockBytes = this.overheadBytes;

    const add = (committed: CommittedMessage, hash: Uint8Array, unsignedEncoding: Uint8Array): void => {
      const encoded = encodeCommittedFrom(committed, unsignedEncoding);
      messages.push(committed);
      messageHashes.push(hash);
      encodings.push(encoded);
      leafHashes.push(merkleLeafHash(encoded));
      blockBytes += encoded.length;
    };

    // TTL expiries first: "When it runs out, the system writes a delete transaction itself."
    const expired = this.cache.takeExpired(timeMs, EXPIRIES_PER_BLOCK_MAX);
    const expiries: ExpiryItem[] = [];
    for (const [index, item] of expired.entries()) {
      const entry = draft.getEntry(item.address, item.key);
      // A block still being written may have replaced or deleted the entry; its new value, if it
      // has a TTL, joins the expiry queue when that block is applied.
      if (entry === undefined || entry.globalSequence !== item.globalSequence) continue;
      const unsigned = this.expiryDelete(entry, draft.nextGlobalSequence);
      // Deletes of long addresses and keys fill a block before EXPIRIES_PER_BLOCK_MAX do; the rest wait for the next block.
      const unsignedEncoding = encodeUnsignedMessage(unsigned);
      if (blockBytes + unsignedEncoding.length + SIGNATURE_BYTES + COMMITTED_OVERHEAD_BYTES_MAX > BLOCK_BYTES_MAX) {
        this.cache.returnExpired(expired.slice(index));
        break;
      }
      const hash = signingHashOfEncoding(unsignedEncoding);
      const { nodeKey } = this.options;
      const deletion: Message = { ...unsigned, signature: signSchnorr(hash, nodeKey.secretKey, this.options.rng.bytes(32), nodeKey.publicKey) };
      add(executeMessage(draft, deletion, hash, context), hash, unsignedEncoding);
      expiries.push(item);
    }

    while (this.queue.length > 0 && messages.length < BLOCK_MESSAGES_MAX) {
      const pending = this.queue[0]!;
      if (blockBytes + pending.encodedBytes + COMMITTED_OVERHEAD_BYTES_MAX > BLOCK_BYTES_MAX) break;
      this.queue.shift();
      this.queuedBytes -= pending.encodedBytes;
      try {
        add(executeMessage(draft, pending.message, pending.hash, context), pending.hash, pending.unsignedEncoding);
        included.push(pending);
      } catch (error) {
        this.settle(pending, { error: await this.explain(error, pending.hash) });
      }
    }
    if (messages.length === 0 || this.failure !== undefined || this.closing) {
      // Nothing to write, or the node stopped while a refusal was being explained.
      for (const pending of included) this.settle(pending, { error: kalimaError(this.failure !== undefined ? 'KALIMA_ERR_NODE_NOT_READY' : 'KALIMA_ERR_NODE_STOPPING') });
      return;
    }
    if (this.head.tip !== headTip && this.options.replicator !== undefined) {
      // The node lost its leadership while this block was built (yieldLeadership reset the head).
      const refusal = kalimaError('KALIMA_ERR_CONSENSUS_NOT_LEADER', { reason: 'leadership changed before the block was built; retry with the same message', leader: this.options.replicator.leaderHint() ?? null });
      for (const pending of included.splice(0)) this.settle(pending, { error: refusal });
      this.cache.returnExpired(expiries);
      return;
    }
    assert(this.head.tip === headTip, 'produceBlock: the head moved while the block was built');

    const changes = draft.changes();
    const header: BlockHeader = {
      chain: this.chain,
      height: headTip.height + 1,
      prevHash: headTip.hash,
      timeMs,
      leader: this.options.nodeKey.publicKey,
      term: this.options.replicator?.term ?? TERM,
      messageCount: messages.length,
      txRoot: merkleRoot(leafHashes),
      stateDigest: changes.digest.digest(),
      mmrRoot: mmrRoot(headTip.mmr),
    };
    const headerEncoding = encodeHeader(header);
    const hash = taggedHash(TAG.block, headerEncoding);
    const last = messages[messages.length - 1]!;
    const tip: TipRecord = {
      height: header.height, hash, timeMs, mmr: mmrAppend(headTip.mmr, hash), nextGlobalSequence: last.globalSequence + 1, stateDigest: header.stateDigest,
    };
    // The hash is all the next block needs: it is built while this one is signed.
    const produced: ProducedBlock = { block: undefined, bytes: undefined, signing: Promise.resolve(), hash, messageHashes, changes, tip, draft, included, expiries };
    produced.signing = this.signer.sign(hash).then((signature) => {
      produced.block = { header, messages, signature };
      produced.bytes = assembleBlock(headerEncoding, encodings, signature);
      this.proposeAhead();
    });
    // The writer takes the failure up in order; until then it is not an unhandled rejection.
    produced.signing.catch(() => undefined);
    this.head = { tip, state: draft };
    this.undurable.push(produced);
    this.startWriting();
  }

  /**
   * In a cluster: proposes the signed blocks at the front that are not proposed yet, in height
   * order, without waiting for the write in progress, so that Raft pipelines them (the followers
   * check a block while the one before it commits). The writer still commits them in order.
   */
  private proposeAhead(): void {
    const propose = this.options.replicator?.propose;
    if (propose === undefined || this.failure !== undefined || this.closing) return;
    for (const produced of this.undurable) {
      if (produced.block === undefined || produced.bytes === undefined) break;
      if (produced.proposed === true) continue;
      produced.proposed = true;
      propose.call(this.options.replicator, produced as ProducedBlock & BlockWrite);
    }
  }

  /** The single writer: takes the blocks ready now, writes them in one synced batch, repeats. */
  private startWriting(): void {
    if (this.writing !== undefined) return;
    this.writing = this.writeReady().finally(() => {
      this.writing = undefined;
      if (this.undurable.length > 0 && this.failure === undefined) this.startWriting();
      else if (this.queue.length > 0) this.scheduleBlock();
      else if (this.producing === undefined) this.scheduleExpiry();
    });
  }

  private async writeReady(): Promise<void> {
    const first = this.undurable[0];
    if (first === undefined || this.failure !== undefined) return;
    try {
      await first.signing;
    } catch (error) {
      if (this.undurable[0] === first) this.stop(error, 'block signing failed; the node stops producing', kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'block signing failed' }), []);
      return;
    }
    if (this.undurable[0] !== first || this.failure !== undefined) return;
    // The signed blocks at the front, in height order.
    const batch: Array<ProducedBlock & BlockWrite> = [];
    for (const produced of this.undurable) {
      if (batch.length === BLOCKS_PER_WRITE_MAX || produced.block === undefined || produced.bytes === undefined) break;
      batch.push(produced as ProducedBlock & BlockWrite);
    }
    this.writingBatch = batch;
    let committed = batch;
    let lost = false;
    try {
      // In a cluster, committed by a majority first (a prefix: those known committed now, up to
      // one refused if leadership was lost); then durable in this node's chain store.
      if (this.options.replicator !== undefined) {
        const outcome = await this.options.replicator.replicate(batch);
        committed = batch.slice(0, outcome.committed);
        lost = outcome.lost;
      }
      if (committed.length > 0) await this.options.store.commitBlocks(committed);
    } catch (error) {
      this.writingBatch = undefined;
      this.stop(error, 'block write failed; the node stops producing', kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'storage failed' }), [], batch[0]!.tip.height);
      return;
    }
    this.writingBatch = undefined;
    // Durable, even if the node stopped producing meanwhile (stop() leaves a write in progress to
    // its outcome): apply, acknowledge and stream these blocks.
    this.undurable.splice(0, committed.length);
    try {
      for (const produced of committed) this.applyDurable(produced);
    } catch (error) {
      // A bug: the cache may now be behind the disk. Refuse what is not yet applied; a restart re-checks the store.
      this.stop(error, 'applying a durable block failed; the node stops producing', kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'applying a block failed' }), committed.flatMap((produced) => produced.included));
      return;
    }
    if (this.failure !== undefined && this.undurable.length > 0) {
      // The node stopped producing during this write: what it did not commit stays unsettled
      // otherwise (nothing writes again). Proposed already, it may still commit in the cluster.
      const refusal = kalimaError('KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN', { reason: 'this node stopped before the block committed; it may still commit; a retry with the same nonce is safe' });
      for (const produced of this.undurable.splice(0)) for (const pending of produced.included) this.settle(pending, { error: refusal });
      return;
    }
    if (lost) {
      this.yieldLeadership();
      return;
    }
    // The next undurable block, if any, was built on the last of these; it now reads the cache.
    // (Blocks of this batch not yet known committed stay at the front, for the next write.)
    if (committed.length > 0) this.undurable[0]?.draft.rebase(this.cache);
    if (this.undurable.length === 0) this.head = { tip: this.tip, state: this.cache };
    // Room ahead of the disk again, and the messages that queued during the write go now.
    if (this.queue.length > 0) this.scheduleBlock(true);
  }

  private notifyListeners(event: CommittedBlock): void {
    this.wakeApplied();
    for (const listener of this.blockListeners) {
      try {
        listener(event);
      } catch (error) {
        this.options.logger.error({ err: error }, 'block listener failed');
      }
    }
  }

  /**
   * This node lost its leadership with blocks not yet committed: drop them and everything queued,
   * and go back to the durable tip. Their messages are refused with a retryable code: the next
   * leader may still commit those blocks (they are in the log it inherits), and a retry of the same
   * message is safe either way (it answers NONCE_REPLAYED with the receipt if it did commit).
   */
  private yieldLeadership(): void {
    const replicator = this.options.replicator!;
    const refusal = kalimaError('KALIMA_ERR_CONSENSUS_NOT_LEADER', { reason: 'leadership changed before the block committed; retry with the same message', leader: replicator.leaderHint() ?? null });
    const dropped = this.undurable.splice(0);
    replicator.abandon(dropped.filter((produced): produced is ProducedBlock & BlockWrite => produced.block !== undefined && produced.bytes !== undefined));
    for (const produced of dropped) for (const pending of produced.included) this.settle(pending, { error: refusal });
    // Their TTL deletes are due again (stale ones drop out when taken, should a dropped block commit after all).
    for (const produced of dropped) this.cache.returnExpired(produced.expiries);
    for (const pending of this.queue.splice(0)) this.settle(pending, { error: refusal });
    this.queuedBytes = 0;
    this.head = { tip: this.tip, state: this.cache };
    this.options.logger.warn({ height: this.tip.height, dropped: dropped.length }, 'lost the leadership with blocks in flight; they are left to the next leader');
  }

  /** A durable block: apply it, acknowledge its messages, tell the listeners. */
  private applyDurable(produced: ProducedBlock): void {
    const { block, hash, messageHashes, changes, tip, included } = produced;
    assert(block !== undefined, 'applyDurable: a block written before it was signed');
    const { header, messages } = block;
    this.cache.apply(changes);
    this.tip = tip;
    this.rememberHash(tip);
    this.committedMessages += messages.length;
    const receiptBase = { height: header.height, timeMs: header.timeMs };
    const firstIncluded = messages.length - included.length;
    included.forEach((pending, index) => {
      const committed = messages[firstIncluded + index]!;
      assert(committed.message === pending.message, 'produceBlock: receipts out of step with the block');
      this.settle(pending, { receipt: { ...receiptBase, messageHash: toHex(pending.hash), globalSequence: committed.globalSequence, sequence: committed.sequence, previous: committed.previous } });
    });
    const event: CommittedBlock = { block, hash, messageHashes };
    this.notifyListeners(event);
  }

  /**
   * A follower's path: a block the cluster committed, as this node's block gate checked and
   * executed it. Durable here first, then applied to the MemCache and streamed, as a block this node
   * produced would be. A message still waiting here (submitted while this node led) gets its receipt.
   * A block at or below the tip was applied before a restart and is skipped.
   */
  async applyReplicated(write: BlockWrite): Promise<void> {
    // A block this node produced just before it lost the leadership may still be on its way to
    // the store: the next block waits for it (and for a block being built to give up).
    while (this.producing !== undefined || this.writing !== undefined) await Promise.allSettled([this.producing, this.writing]);
    if (write.tip.height <= this.tip.height) return;
    assert(this.undurable.length === 0, 'applyReplicated: this node holds blocks of its own not yet durable');
    assert(write.tip.height === this.tip.height + 1 && bytesEqual(write.block.header.prevHash, this.tip.hash), `applyReplicated: block ${write.tip.height} does not follow the tip ${this.tip.height}`);
    await this.options.store.commitBlocks([write]);
    const { block, hash, messageHashes, changes, tip } = write;
    this.cache.apply(changes);
    this.tip = tip;
    this.rememberHash(tip);
    this.head = { tip, state: this.cache };
    this.committedMessages += block.messages.length;
    block.messages.forEach((committed, index) => {
      const pending = this.pendingByNonce.get(`${toHex(committed.message.device)}:${committed.message.nonce}`);
      if (pending === undefined || !bytesEqual(pending.hash, messageHashes[index]!)) return;
      this.settle(pending, { receipt: { height: block.header.height, timeMs: block.header.timeMs, messageHash: toHex(pending.hash), globalSequence: committed.globalSequence, sequence: committed.sequence, previous: committed.previous } });
    });
    const event: CommittedBlock = { block, hash, messageHashes: [...messageHashes] };
    this.notifyListeners(event);
    this.scheduleExpiry();
  }

  /**
   * The disk refused a write, or producing a block failed: nothing not yet durable is acknowledged,
   * and the node stops producing rather than guess what is on disk. A restart re-checks the store.
   */
  private stop(error: unknown, message: string, refusal: unknown, taken: Pending[], height = this.head.tip.height + 1): void {
    this.failure ??= error;
    this.wakeApplied(true);
    this.options.logger.error({ err: error, height }, message);
    this.options.replicator?.nodeFailed?.(error);
    for (const pending of taken) this.settle(pending, { error: refusal });
    // A synced write in progress may yet succeed: its blocks wait for its outcome (writeReady).
    const writing = this.writingBatch ?? [];
    // A block proposed ahead of its write may still commit in the cluster.
    const unknown = kalimaError('KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN', { reason: 'this node stopped before the block committed; it may still commit; a retry with the same nonce is safe' });
    for (const produced of this.undurable.splice(writing.length)) for (const pending of produced.included) this.settle(pending, { error: produced.proposed === true ? unknown : refusal });
    for (const pending of this.queue.splice(0)) this.settle(pending, { error: refusal });
    this.queuedBytes = 0;
    this.head = { tip: this.tip, state: this.cache };
  }

  // ---- reads (permission checks live in the API layer, which knows the requesting device) ----

  getEntry(address: string, key: string): CacheEntry | undefined {
    return this.cache.getEntry(address, key);
  }

  checkRead(deviceHex: string, address: string): void {
    checkRead(this.cache, this.policy, deviceHex, address);
  }

  mayRead(deviceHex: string, address: string): boolean {
    return mayRead(this.cache, this.policy, deviceHex, address);
  }

  async history(address: string, options: { fromSequence: number; toSequence?: number; limit: number; reverse?: boolean }): Promise<LocatedMessage[]> {
    return this.options.store.history(address, options);
  }

  async getBlock(height: number): Promise<Block | undefined> {
    return height >= 1 && height <= this.tip.height ? this.options.store.getBlock(height) : undefined;
  }

  /** Stops taking messages, lets the block in progress finish, and closes the store. */
  close(): Promise<void> {
    this.closed ??= this.closeOnce();
    return this.closed;
  }

  private async closeOnce(): Promise<void> {
    this.closing = true;
    this.wakeApplied(true);
    if (this.blockTimer !== undefined) this.options.scheduler.clearTimeout(this.blockTimer);
    if (this.expiryTimer !== undefined) this.options.scheduler.clearTimeout(this.expiryTimer);
    this.blockTimer = undefined;
    await this.producing;
    // Blocks already produced are written and acknowledged.
    while (this.writing !== undefined) await this.writing;
    // Messages still queued were never acknowledged; their clients retry with the same nonce.
    for (const pending of this.queue.splice(0)) this.settle(pending, { error: kalimaError('KALIMA_ERR_NODE_STOPPING') });
    this.queuedBytes = 0;
    await this.options.verifier.close();
    await this.signer.close();
    await this.options.store.close();
  }

  /**
   * Produces one block of what is queued now (and of the TTL deletes due) and waits until every
   * block produced so far is durable; for tests and tools that drive time themselves. Throws
   * KALIMA_ERR_NODE_NOT_READY once the node has stopped producing after a failure.
   */
  async flush(): Promise<void> {
    for (;;) {
      this.clearBlockTimer();
      if (this.producing !== undefined) await this.producing;
      else if (this.undurable.length >= BLOCKS_AHEAD_MAX && this.writing !== undefined) await this.writing;
      else break;
    }
    this.clearBlockTimer();
    await this.startProducing();
    while (this.writing !== undefined) await this.writing;
    // What it produced was refused, not written: say so rather than return as if all were durable.
    if (this.failure !== undefined) throw kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'the node stopped producing blocks after a storage or internal failure (see its log); restart it' });
  }

  private clearBlockTimer(): void {
    if (this.blockTimer === undefined) return;
    this.options.scheduler.clearTimeout(this.blockTimer);
    this.blockTimer = undefined;
  }
}

export function receiptOf(located: LocatedMessage, hash: Uint8Array): CommitReceipt {
  return {
    messageHash: toHex(hash),
    globalSequence: located.committed.globalSequence,
    sequence: located.committed.sequence,
    previous: located.committed.previous,
    height: located.height,
    timeMs: located.timeMs,
  };
}
