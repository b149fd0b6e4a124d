// A client node: the SDK's sync mode. It holds an encrypted link (BOLT 8, net/link.ts) to each
// master of the genesis file, subscribes to address prefixes, takes one snapshot of what it may
// see, then follows the chain block by block, filtered by the masters to what its SUB list allows.
// It keeps that in a MemCache of its own, whose digest can be compared with a master's digest of
// the same filter.
//
// What it checks of every filtered block: the leader is a genesis master and signed the header;
// the header follows the last one (height, prevHash); every message's Merkle path leads to the
// signed txRoot; every message continues its address (previous = the last sequence held, sequence
// = previous + 1). A block that fails is dropped and the client resyncs from a snapshot of another
// master; a gap (a missing height, or an address whose sequence jumps) that the other masters'
// streams do not fill within `gapWaitMs` is healed the same way. Blocks come from every connected
// master, so one that goes away changes nothing but the count; its link reconnects with jittered
// backoff (0.5 s up to 30 s) and keep-alives every 3 s find a dead one.
//
// A snapshot is checked for its leader signature (on the header it stands at) and its own digest;
// it cannot be checked against the header's stateDigest, which covers the whole state. checkDigest()
// compares the local copy with what the other masters hold for the same filter at the same height.
import { EventEmitter } from 'node:events';
import { type KalimaErrorCode, isKalimaError, kalimaError } from '../errors.ts';
import type { Genesis } from '../access/genesis.ts';
import { bytesEqual, fromHex, toHex } from '../ledger/hash.ts';
import { type Message, type UnsignedMessage, canonicalProps, signMessage } from '../ledger/message.ts';
import type { KeyPair } from '../ledger/signature.ts';
import { type CloseReason, type Link, Peer } from '../net/link.ts';
import { staticKeyFromSecret } from '../net/noise.ts';
import { type ClientFrame, type ServerFrame, decodeServerFrame, encodeClientFrame } from '../net/sync-protocol.ts';
import { linkKeyOfMaster, linkSecretOf } from '../node/cluster.ts';
import type { CommitReceipt } from '../node/node.ts';
import { type Clock, type Logger, type Rng, type Scheduler, silentLogger, systemClock, systemRng, systemScheduler } from '../ports.ts';
import type { CacheEntry } from '../state/entry.ts';
import { RETRYABLE_CODES } from './retry.ts';
import { type CopyChange, FilteredCopy } from './filtered-copy.ts';
import type { WriteOptions } from './client.ts';

/** A master as the genesis file and the masters' configs name it: its x-only key and its client listener. */
export interface MasterEndpoint {
  key: string;
  host: string;
  port: number;
}

export interface SyncClientOptions {
  genesis: Genesis;
  key: KeyPair;
  masters: readonly MasterEndpoint[];
  /** The address prefixes to follow; each must be covered by the device's SUB list. */
  prefixes: readonly string[];
  clock?: Clock;
  rng?: Rng;
  scheduler?: Scheduler;
  logger?: Logger;
  /** Keep-alive: a ping after this long without sending. Kalima's: 3 s. */
  heartbeatMs?: number;
  /** A link that received nothing this long is taken as dead. */
  deadAfterMs?: number;
  /** Reconnection backoff: full jitter over base × 2^attempt, capped. Kalima's: 0.5 s up to 30 s. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** How long a missing block may stay missing (the other masters may still send it) before a resync. */
  gapWaitMs?: number;
  /** A request (snapshot, submit, digest) with no answer by then fails over. */
  requestTimeoutMs?: number;
  /** How long a write keeps trying (through leader changes and reconnections). */
  writeDeadlineMs?: number;
}

export interface DigestCheck {
  master: string;
  height: number;
  matches: boolean;
  local: string;
  remote: string;
}

interface Outstanding {
  resolve: (frame: ServerFrame) => void;
  reject: (error: unknown) => void;
  timer: unknown;
}

interface SnapshotInProgress {
  requestId: number;
  begin: Extract<ServerFrame, { type: 'snapshot-begin' }> | undefined;
  heads: Array<[string, number]>;
  entries: CacheEntry[];
  timer: unknown;
}

interface MasterState {
  index: number;
  endpoint: MasterEndpoint;
  peer: Peer;
  link: Link | undefined;
  /** Its stream is live on the current link (subscribed, with or without a snapshot). */
  subscribed: boolean;
  subscribeRequestId: number;
  snapshot: SnapshotInProgress | undefined;
  /** The highest block height it has sent. */
  lastHeight: number;
  requests: Map<number, Outstanding>;
}

type BlockFrame = Extract<ServerFrame, { type: 'block' }>;

const AHEAD_BLOCKS_MAX = 256;
/** Codes after which a write is sent again (the same signed message: its nonce makes it safe). */
const WRITE_RETRY_CODES: readonly KalimaErrorCode[] = [...RETRYABLE_CODES, 'KALIMA_ERR_NET_TIMEOUT', 'KALIMA_ERR_SYNC_NO_MASTER', 'KALIMA_ERR_NET_LINK_CLOSED', 'KALIMA_ERR_NET_QUEUE_FULL'];

/**
 * Events: 'synchronized' ({ height }) after each snapshot taken (the first is Kalima's "cache
 * synchronized"); 'put' ({ address, key, entry }) and 'remove' ({ address, key }) for every change of
 * the local copy; 'block' ({ height, messages }) for each block applied; 'resync' ({ reason, master });
 * 'rejected' ({ master, code, details }) when a master refuses this device or its subscription;
 * 'fault' ({ master, error }) when a master sends what does not verify; 'master up' / 'master down' ({ master }).
 */
export class SyncClient extends EventEmitter {
  readonly deviceId: string;
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly scheduler: Scheduler;
  private readonly logger: Logger;
  private readonly masters: MasterState[];
  private readonly prefixes: string[];
  private readonly copy: FilteredCopy;
  private synchronizedOnce = false;
  private readonly ahead = new Map<number, { frame: BlockFrame; master: MasterState }>();
  private gapTimer: unknown;
  /** The master a snapshot is being taken from, to heal a gap or to start. */
  private resyncFrom: MasterState | undefined;
  private needsSnapshot = true;
  private nextRequestId = 1;
  private lastNonce = 0;
  private closed = false;
  private readonly heightWaiters = new Set<() => void>();

  constructor(private readonly options: SyncClientOptions) {
    super();
    if (options.masters.length === 0) throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { reason: 'a sync client needs at least one master endpoint' });
    this.deviceId = toHex(options.key.publicKey);
    this.clock = options.clock ?? systemClock;
    this.rng = options.rng ?? systemRng;
    this.scheduler = options.scheduler ?? systemScheduler;
    this.logger = options.logger ?? silentLogger;
    this.prefixes = [...options.prefixes];
    this.copy = new FilteredCopy(options.genesis, this.prefixes);
    const key = staticKeyFromSecret(linkSecretOf(options.key.secretKey));
    this.masters = options.masters.map((endpoint, index) => {
      const masterKey = fromHex(endpoint.key);
      if (masterKey === undefined || masterKey.length !== 32 || !options.genesis.masters.some((master) => bytesEqual(master, masterKey))) {
        throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { reason: 'a master endpoint key is not one of the genesis masters', key: endpoint.key });
      }
      const peer = new Peer({
        clock: this.clock, rng: this.rng, scheduler: this.scheduler, key, remote: linkKeyOfMaster(masterKey), host: endpoint.host, port: endpoint.port,
        heartbeatMs: options.heartbeatMs ?? 3_000, deadAfterMs: options.deadAfterMs ?? 10_000,
        backoffBaseMs: options.backoffBaseMs ?? 500, backoffMaxMs: options.backoffMaxMs ?? 30_000,
      });
      const state: MasterState = { index, endpoint, peer, link: undefined, subscribed: false, subscribeRequestId: 0, snapshot: undefined, lastHeight: 0, requests: new Map() };
      peer.on('link', (link: Link) => this.linkUp(state, link));
      return state;
    });
  }

  /** Connects to every master; resolves once the first snapshot is taken. */
  start(): Promise<void> {
    for (const master of this.masters) master.peer.start();
    return this.whenSynchronized();
  }

  private whenSynchronized(): Promise<void> {
    if (this.synchronizedOnce) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (this.closed) {
          this.heightWaiters.delete(check);
          reject(kalimaError('KALIMA_ERR_SYNC_CLOSED'));
        } else if (this.synchronizedOnce) {
          this.heightWaiters.delete(check);
          resolve();
        }
      };
      this.heightWaiters.add(check);
    });
  }

  // ---- reads of the local copy ----

  get height(): number {
    return this.copy.height;
  }

  get isSynchronized(): boolean {
    return this.synchronizedOnce;
  }

  /** Masters with a live stream now. */
  get connectedMasters(): string[] {
    return this.masters.filter((master) => master.link !== undefined && master.subscribed).map((master) => master.endpoint.key);
  }

  get(address: string, key: string): CacheEntry | undefined {
    return this.copy.get(address, key);
  }

  getMemCache(address: string): CacheEntry[] {
    return this.copy.entriesAt(address);
  }

  getAddresses(): string[] {
    return this.copy.addresses();
  }

  /** The digest of the local copy: the filtered-set digest a master computes for this subscription. */
  digest(): Uint8Array {
    return this.copy.digest();
  }

  /**
   * Asks each connected master (or the one named) for its digest of this subscription's filtered
   * set, and compares it with the local digest at the same height (waiting for the local copy to
   * get there, or asking again if the master answered for a height the client has passed).
   */
  async checkDigest(options: { master?: string; timeoutMs?: number } = {}): Promise<DigestCheck[]> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const targets = this.masters.filter((master) => master.link !== undefined && master.subscribed && (options.master === undefined || master.endpoint.key === options.master));
    if (targets.length === 0) throw kalimaError('KALIMA_ERR_SYNC_NO_MASTER');
    return Promise.all(targets.map(async (master) => {
      const started = this.clock.nowMs();
      for (;;) {
        const answer = await this.request(master, (requestId) => ({ type: 'digest', requestId }));
        if (answer.type !== 'digest-answer') throw kalimaError('KALIMA_ERR_SDK_BAD_RESPONSE', { expected: 'digest-answer', got: answer.type });
        await this.waitForHeight(answer.height, Math.max(0, timeoutMs - (this.clock.nowMs() - started)));
        const local = this.copy.digestAt(answer.height);
        const remote = toHex(answer.digest);
        if (local !== undefined) return { master: master.endpoint.key, height: answer.height, matches: local === remote, local, remote };
        if (this.clock.nowMs() - started > timeoutMs) throw kalimaError('KALIMA_ERR_NET_TIMEOUT', { reason: 'no common height to compare digests at', master: master.endpoint.key });
        // The master is behind what the client still remembers: ask again once it has moved on.
        await new Promise<void>((resolve) => this.scheduler.setTimeout(resolve, 50));
      }
    }));
  }

  private waitForHeight(height: number, timeoutMs: number): Promise<void> {
    if (this.copy.height >= height) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = this.scheduler.setTimeout(() => done(), timeoutMs);
      const check = (): void => {
        if (this.copy.height >= height || this.closed) done();
      };
      const done = (): void => {
        this.scheduler.clearTimeout(timer);
        this.heightWaiters.delete(check);
        resolve();
      };
      this.heightWaiters.add(check);
    });
  }

  private heightChanged(): void {
    for (const waiter of [...this.heightWaiters]) waiter();
  }

  // ---- writes ----

  /** Signs a put from this device and sends it to every connected master; resolves on the first receipt. */
  async put(address: string, key: string, body: Uint8Array | string, options: WriteOptions = {}): Promise<CommitReceipt> {
    return this.submit(this.sign(address, key, typeof body === 'string' ? new TextEncoder().encode(body) : body, options));
  }

  /** An empty body: Kalima's delete. */
  async remove(address: string, key: string): Promise<CommitReceipt> {
    return this.submit(this.sign(address, key, new Uint8Array(0)));
  }

  sign(address: string, key: string, body: Uint8Array, options: WriteOptions = {}): Message {
    // Microseconds since the epoch, strictly increasing within this client (as KalimaClient's).
    this.lastNonce = Math.max(this.lastNonce + 1, this.clock.nowMs() * 1000);
    const unsigned: UnsignedMessage = {
      chain: this.options.genesis.chain, address, key, body, ttlSeconds: options.ttl ?? -1,
      props: canonicalProps(options.props ?? {}), device: this.options.key.publicKey, nonce: this.lastNonce,
    };
    return signMessage(unsigned, this.options.key.secretKey, this.rng.bytes(32));
  }

  /**
   * Sends a signed message to every connected master and resolves with the first receipt (a copy
   * that comes second is answered NONCE_REPLAYED with the same receipt, which counts as one). Sent
   * again while every answer is retryable, until `writeDeadlineMs`.
   */
  async submit(message: Message): Promise<CommitReceipt> {
    const deadline = this.clock.nowMs() + (this.options.writeDeadlineMs ?? 30_000);
    let last: unknown = kalimaError('KALIMA_ERR_SYNC_NO_MASTER');
    for (;;) {
      if (this.closed) throw kalimaError('KALIMA_ERR_SYNC_CLOSED');
      const up = this.masters.filter((master) => master.link !== undefined);
      if (up.length > 0) {
        const outcome = await this.firstReceipt(up, message);
        if ('receipt' in outcome) return outcome.receipt;
        last = outcome.errors.find((error) => !isKalimaError(error) || !WRITE_RETRY_CODES.includes(error.code)) ?? outcome.errors[0];
        if (!isKalimaError(last) || !WRITE_RETRY_CODES.includes(last.code)) throw last;
      }
      if (this.clock.nowMs() >= deadline) throw last;
      await new Promise<void>((resolve) => this.scheduler.setTimeout(resolve, 200));
    }
  }

  private firstReceipt(masters: MasterState[], message: Message): Promise<{ receipt: CommitReceipt } | { errors: unknown[] }> {
    return new Promise((resolve) => {
      const errors: unknown[] = [];
      let settled = false;
      for (const master of masters) {
        this.request(master, (requestId) => ({ type: 'submit', requestId, message })).then((answer) => {
          if (answer.type === 'receipt') return answer.receipt;
          throw kalimaError('KALIMA_ERR_SDK_BAD_RESPONSE', { expected: 'receipt', got: answer.type });
        }).then((receipt) => {
          if (!settled) {
            settled = true;
            resolve({ receipt });
          }
        }, (error: unknown) => {
          // A copy that came second: the chain already holds this message, and says where.
          const committed = isKalimaError(error) && (error.code === 'KALIMA_ERR_LEDGER_NONCE_REPLAYED' || error.code === 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD') ? error.details.committed as CommitReceipt | undefined : undefined;
          if (committed !== undefined && !settled) {
            settled = true;
            resolve({ receipt: committed });
            return;
          }
          errors.push(error);
          if (errors.length === masters.length && !settled) {
            settled = true;
            resolve({ errors });
          }
        });
      }
    });
  }

  private request(master: MasterState, build: (requestId: number) => ClientFrame): Promise<ServerFrame> {
    const link = master.link;
    if (link === undefined) return Promise.reject(kalimaError('KALIMA_ERR_SYNC_NO_MASTER', { master: master.endpoint.key }));
    const requestId = this.nextRequestId++;
    return new Promise((resolve, reject) => {
      const timer = this.scheduler.setTimeout(() => {
        if (master.requests.delete(requestId)) reject(kalimaError('KALIMA_ERR_NET_TIMEOUT', { master: master.endpoint.key }));
      }, this.options.requestTimeoutMs ?? 15_000);
      master.requests.set(requestId, { resolve, reject, timer });
      try {
        link.send(encodeClientFrame(build(requestId)));
      } catch (error) {
        master.requests.delete(requestId);
        this.scheduler.clearTimeout(timer);
        reject(error);
      }
    });
  }

  // ---- links ----

  private linkUp(master: MasterState, link: Link): void {
    if (this.closed) {
      link.close();
      return;
    }
    master.link = link;
    master.subscribed = false;
    link.on('message', (bytes: Uint8Array) => this.receive(master, link, bytes));
    link.once('close', (reason: CloseReason) => this.linkDown(master, link, reason));
    this.emit('master up', { master: master.endpoint.key });
    // One snapshot at a time: the first link takes it; the others only stream.
    const snapshot = this.needsSnapshot && this.resyncFrom === undefined;
    this.subscribe(master, snapshot);
  }

  private linkDown(master: MasterState, link: Link, reason: CloseReason): void {
    if (master.link !== link) return;
    master.link = undefined;
    master.subscribed = false;
    const snapshotLost = this.resyncFrom === master;
    this.cancelSnapshot(master);
    for (const [requestId, waiting] of master.requests) {
      master.requests.delete(requestId);
      this.scheduler.clearTimeout(waiting.timer);
      waiting.reject(kalimaError('KALIMA_ERR_NET_LINK_CLOSED', { master: master.endpoint.key, reason }));
    }
    this.emit('master down', { master: master.endpoint.key, reason });
    // The master a snapshot was coming from went away: take it from another.
    if (snapshotLost) this.resync(kalimaError('KALIMA_ERR_NET_LINK_CLOSED', { master: master.endpoint.key }), master);
  }

  private subscribe(master: MasterState, snapshot: boolean): void {
    const link = master.link;
    if (link === undefined) return;
    const requestId = this.nextRequestId++;
    master.subscribeRequestId = requestId;
    if (snapshot) {
      this.resyncFrom = master;
      this.needsSnapshot = false;
      const timer = this.scheduler.setTimeout(() => {
        if (master.snapshot?.requestId !== requestId) return;
        this.cancelSnapshot(master);
        this.resync(kalimaError('KALIMA_ERR_NET_TIMEOUT', { master: master.endpoint.key, reason: 'no snapshot in time' }), master);
      }, this.options.requestTimeoutMs ?? 15_000);
      master.snapshot = { requestId, begin: undefined, heads: [], entries: [], timer };
    }
    try {
      link.send(encodeClientFrame({ type: 'subscribe', requestId, prefixes: this.prefixes, snapshot }));
    } catch {
      // The link is going: linkDown takes it from here.
    }
  }

  private cancelSnapshot(master: MasterState): void {
    if (master.snapshot === undefined) return;
    this.scheduler.clearTimeout(master.snapshot.timer);
    master.snapshot = undefined;
    if (this.resyncFrom === master) {
      this.resyncFrom = undefined;
      this.needsSnapshot = true;
    }
  }

  /** Takes a snapshot again, from the master furthest ahead other than `avoid` if there is one. */
  private resync(reason: unknown, avoid?: MasterState): void {
    if (this.closed || this.resyncFrom !== undefined) return;
    this.clearGapTimer();
    this.needsSnapshot = true;
    const candidates = this.masters.filter((master) => master.link !== undefined);
    const others = candidates.filter((master) => master !== avoid);
    const pool = others.length > 0 ? others : candidates;
    const from = pool.sort((a, b) => b.lastHeight - a.lastHeight)[0];
    this.emit('resync', { reason, master: from?.endpoint.key ?? null });
    this.logger.warn({ reason: isKalimaError(reason) ? { code: reason.code, details: reason.details } : String(reason), from: from?.endpoint.key }, 'sync: resyncing from a snapshot');
    // Without a link now, the next link that comes up takes the snapshot.
    if (from !== undefined) this.subscribe(from, true);
  }

  private receive(master: MasterState, link: Link, bytes: Uint8Array): void {
    if (master.link !== link || this.closed) return;
    let frame: ServerFrame;
    try {
      frame = decodeServerFrame(bytes);
    } catch (error) {
      this.fault(master, error);
      link.close({ kind: 'bad frame', detail: 'undecodable sync frame from the master' });
      return;
    }
    const waiting = frame.requestId === 0 ? undefined : master.requests.get(frame.requestId);
    if (waiting !== undefined) {
      master.requests.delete(frame.requestId);
      this.scheduler.clearTimeout(waiting.timer);
      if (frame.type === 'error') waiting.reject(kalimaError(frame.code, frame.details));
      else waiting.resolve(frame);
      return;
    }
    switch (frame.type) {
      case 'error':
        this.refused(master, frame);
        return;
      case 'subscribed':
        if (frame.requestId === master.subscribeRequestId) {
          master.subscribed = true;
          master.lastHeight = Math.max(master.lastHeight, frame.height);
        }
        return;
      case 'snapshot-begin':
      case 'snapshot-part':
      case 'snapshot-end':
        this.snapshotFrame(master, frame);
        return;
      case 'block':
        if (frame.requestId === master.subscribeRequestId) this.blockFrame(master, frame);
        return;
      default:
        // An answer to a request that timed out already.
        return;
    }
  }

  private refused(master: MasterState, frame: Extract<ServerFrame, { type: 'error' }>): void {
    this.emit('rejected', { master: master.endpoint.key, code: frame.code, details: frame.details });
    if (frame.requestId !== 0 && frame.requestId === master.subscribeRequestId) {
      master.subscribed = false;
      if (master.snapshot?.requestId === frame.requestId) this.cancelSnapshot(master);
      // The chain moved on while the master took the snapshot: ask again.
      if (this.needsSnapshot && this.resyncFrom === undefined && frame.code === 'KALIMA_ERR_API_OVERLOADED') this.resync(kalimaError(frame.code, frame.details), master);
    }
  }

  private fault(master: MasterState, error: unknown): void {
    this.logger.warn({ master: master.endpoint.key, err: error }, 'sync: a master sent what does not verify');
    this.emit('fault', { master: master.endpoint.key, error });
  }

  // ---- snapshots ----

  private snapshotFrame(master: MasterState, frame: Extract<ServerFrame, { type: 'snapshot-begin' | 'snapshot-part' | 'snapshot-end' }>): void {
    const snapshot = master.snapshot;
    if (snapshot === undefined || snapshot.requestId !== frame.requestId) return;
    const fail = (reason: string): void => {
      this.cancelSnapshot(master);
      const error = kalimaError('KALIMA_ERR_SYNC_BAD_BLOCK', { reason, snapshot: true });
      this.fault(master, error);
      this.resync(error, master);
    };
    if (frame.type === 'snapshot-begin') {
      if (snapshot.begin !== undefined) return fail('a second snapshot-begin');
      snapshot.begin = frame;
      return;
    }
    const begin = snapshot.begin;
    if (begin === undefined) return fail('snapshot parts before its beginning');
    if (frame.type === 'snapshot-part') {
      snapshot.heads.push(...frame.heads);
      snapshot.entries.push(...frame.entries);
      if (snapshot.heads.length > begin.headCount || snapshot.entries.length > begin.entryCount) fail('more items than the snapshot announced');
      return;
    }
    this.cancelSnapshot(master);
    if (snapshot.heads.length !== begin.headCount || snapshot.entries.length !== begin.entryCount) return fail('fewer items than the snapshot announced');
    let changes: CopyChange[];
    try {
      changes = this.copy.restore({ header: begin.header, signature: begin.signature, digest: begin.digest, heads: snapshot.heads, entries: snapshot.entries });
    } catch (error) {
      this.fault(master, error);
      this.resync(error, master);
      return;
    }
    master.subscribed = true;
    master.lastHeight = Math.max(master.lastHeight, this.copy.height);
    this.resyncFrom = undefined;
    this.needsSnapshot = false;
    this.synchronizedOnce = true;
    this.emitChanges(changes);
    this.emit('synchronized', { height: this.copy.height, master: master.endpoint.key });
    this.heightChanged();
    this.drainAhead();
  }

  private emitChanges(changes: readonly CopyChange[]): void {
    for (const change of changes) {
      if (change.kind === 'put') this.emit('put', { address: change.address, key: change.key, entry: change.entry });
      else this.emit('remove', { address: change.address, key: change.key });
    }
  }

  // ---- blocks ----

  private blockFrame(master: MasterState, frame: BlockFrame): void {
    const { height } = frame.header;
    master.lastHeight = Math.max(master.lastHeight, height);
    if (height <= this.copy.height && this.resyncFrom === undefined) return; // another master's copy came first
    if (!this.ahead.has(height)) {
      if (this.ahead.size >= AHEAD_BLOCKS_MAX) {
        this.ahead.clear();
        this.resync(kalimaError('KALIMA_ERR_SYNC_GAP', { reason: 'too many blocks ahead of a missing one', height: this.copy.height + 1 }));
        return;
      }
      this.ahead.set(height, { frame, master });
    }
    if (this.resyncFrom !== undefined || !this.synchronizedOnce) return;
    this.drainAhead();
  }

  private drainAhead(): void {
    for (const height of this.ahead.keys()) if (height <= this.copy.height) this.ahead.delete(height);
    for (;;) {
      if (this.resyncFrom !== undefined) return;
      const next = this.ahead.get(this.copy.height + 1);
      if (next === undefined) break;
      this.ahead.delete(this.copy.height + 1);
      let changes: CopyChange[];
      try {
        changes = this.copy.apply(next.frame);
      } catch (error) {
        if (isKalimaError(error, 'KALIMA_ERR_SYNC_BAD_BLOCK')) this.fault(next.master, error);
        this.resync(error, next.master);
        return;
      }
      this.emitChanges(changes);
      this.emit('block', { height: next.frame.header.height, messages: next.frame.messages.map((proven) => proven.committed) });
      this.heightChanged();
    }
    if (this.ahead.size === 0) this.clearGapTimer();
    else if (this.gapTimer === undefined) {
      // A block is missing: another master's stream may still bring it.
      this.gapTimer = this.scheduler.setTimeout(() => {
        this.gapTimer = undefined;
        if (this.ahead.size > 0 && !this.ahead.has(this.copy.height + 1)) this.resync(kalimaError('KALIMA_ERR_SYNC_GAP', { reason: 'a block is missing', height: this.copy.height + 1 }));
        else this.drainAhead();
      }, this.options.gapWaitMs ?? 1_000);
    }
  }

  private clearGapTimer(): void {
    if (this.gapTimer === undefined) return;
    this.scheduler.clearTimeout(this.gapTimer);
    this.gapTimer = undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clearGapTimer();
    for (const master of this.masters) {
      master.peer.stop();
      this.cancelSnapshot(master);
      for (const [requestId, waiting] of master.requests) {
        master.requests.delete(requestId);
        this.scheduler.clearTimeout(waiting.timer);
        waiting.reject(kalimaError('KALIMA_ERR_SYNC_CLOSED'));
      }
    }
    this.heightChanged();
  }
}
