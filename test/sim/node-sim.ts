// A seeded simulation of a Kalima cluster: three real masters (ClusterMaster: the block producer,
// Raft through its runtime, the follower block gate, forwarding and catch-up) in one process, on a
// simulated clock, network and disk. Everything random comes from the seed, so a failing seed
// replays exactly: `npm run sim -- --node --profile P --seed N --trace` (NODE_SIM_TRACE=2 adds every
// message delivered). A seed's result does not depend on what ran before it in the process.
//
// Time. A virtual clock and scheduler: every timer the masters set (Raft ticks, block delays, RPC
// timeouts, forward retries, catch-up retries), the network's deliveries, the disk's latencies and
// the clients' and faults' own waits are virtual timers. The loop waits until the process is
// quiescent (a setImmediate turn: every microtask has run, and nothing here waits on real I/O),
// then jumps to the next timer and fires it, one timer per turn, as Node's timers phase does. The
// clock reads whole milliseconds, as Date.now() does. The node code reads time only through the
// injected Clock and Scheduler, with one exception: KalimaNode.whenApplied (src/node/node.ts) polls
// with the global setTimeout(…, 1). While a simulation runs, global setTimeout calls made from
// src/node/node.ts are routed to the virtual scheduler (counted as `globalTimers` in the result);
// any other global timer is left alone.
//
// Network. Each message (a Raft message or a request between masters, net/rpc.ts) is delivered after
// its own random delay, so messages reorder; some are dropped or duplicated, per the seed's rates.
// Partitions cut the cluster symmetrically (one master alone) or one way (a half-open connection:
// what one side sends is lost, the other direction still works). A message to a master that is
// down cannot be sent (the transport says so, as a link that is down does); a message in flight to a
// master that restarts is lost with the connection it was on; what is sent to a master after it
// restarted reaches the new process (as on a redialled link).
//
// Disk. Each master's store is a SimDisk KvStore. The KvStore port makes durability explicit
// (`batch(…, { sync })`: with sync it returns once the batch is on disk), so the disk models it: a
// batch becomes visible and durable when its write completes (a random latency, in issue order, as
// LevelDB's log is), and a batch without sync is visible at once but durable only when a later
// synced batch completes. A crash keeps what was durable, plus, for the synced writes still in
// flight, a random prefix of them (the write reached the disk, its acknowledgement did not reach
// the process); every other batch is lost, whole (batches are atomic). The node writes every batch
// with sync today, so what a crash loses is the writes in flight (some crashes are timed to fall
// inside a write). A graceful shutdown loses nothing (the store's close waits for its writes). A
// disk loss (rare, and one at a time: only while every master is up and none is still recovering
// from an earlier loss) restarts a master on an empty store without the new-member mark, as a
// deleted data directory does, so it must rejoin.
//
// Masters. A crash drops the ClusterMaster without close(): its timers never fire again, its disk
// handle and connections are dead, and its pending work never resumes. A graceful restart runs
// beginClose() and close(). Either way a new ClusterMaster opens on the same store later; the
// new-member mark is cleared as `kalima node` clears it (src/node/runtime.ts: at the start on a
// store that holds state, or once a master has persisted a term).
// Signatures are checked through a verifier that remembers its answers across seeds, inline or, for
// a third of the seeds, answering later as a worker pool does; blocks are signed without
// InlineBlockSigner's check of the fresh signature (the followers check every block). Both only to
// save time: they are the two costliest things in a seed.
//
// Clients. The admin creates an address and registers the devices; each device then writes its
// messages, a few at a time, each to a random master (followers forward to the leader). A message
// refused with a retryable error (NOT_LEADER, OUTCOME_UNKNOWN, NODE_NOT_READY, NODE_STOPPING, any
// 503/504, a connection reset by a crash) is retried, as the same signed message, at a random
// master; NONCE_REPLAYED with the committed receipt of that very message acknowledges it. Any other
// refusal of these valid messages is a failure (with `lenient`, it is listed and retried instead).
//
// Checkers. Throughout: at most one leader per term (every election is seen as it happens); no two
// different entries committed at one index; a new leader holds every entry committed before it
// (leader completeness); no two different blocks ever applied at one height on any master; no
// master stops taking part by itself (no disk ever fails here); log matching every 250 ms. After
// the faults stop and the cluster converges: every write acknowledged (liveness), each exactly once
// in the chain, at its receipt's height and global sequence, and no message twice; every master
// with identical block bytes at every height and the same state digest; log matching.
//
// Validation node. In a share of the seeds (VALIDATOR_SHARE, drawn from a stream of its own, so that
// a seed without one runs exactly as before), a fourth ClusterMaster, v1, is the genesis file's one
// validation node (a Raft learner that runs the block gate, writes validation records through the
// leader and reports leaders), with validationLateMs and leaderBarTerms drawn per seed. It has a
// SimDisk and a link to each master like theirs, and the same faults: crashes (in a write too),
// graceful restarts, a lost disk, partitions (alone, or on the majority's side cut from a master),
// loss, delay and duplication. Its checkers: every block it applies is the one the masters
// committed at that height (its chain is a prefix of theirs); its commits match theirs (state
// machine safety, log matching); it never leads; every report it sends is seen (its log line, and
// its own count at each process's end): a "wrong" report fails the seed (every master is honest),
// a "late" one is counted and described, with the faults of its own (down, catching up, cut off
// from that leader) between the block's time and the report. Once healed: it holds every block
// and the same state digest; every validation record on the chain is checked from the blocks (its
// writer, key, nonce, exact body, the hash of the block at its height, the count); every master
// holds the last one; after every bar a leader of a later term leads, and an entry of a later term
// is committed, and no master bars the leader it follows; and the last record covers every block
// with news, or is carried by the tip (the chain takes no other record from it before another
// block comes, so the news between stay unvalidated: validationLag, validationStalled).
//
// Profiles (NODE_SIM_PROFILES): "cluster", the default mix, and "hostile", three times the fault
// rates for longer, with more lost disks. `sabotage: 'lying-disk'` (a disk that acknowledges
// writes before they are durable) shows that the checkers catch what that breaks.
import { createHash } from 'node:crypto';
import * as libsecp from 'tiny-secp256k1';
import { ADDRESSES_ADDRESS, DEVICES_ADDRESS, encodeAddressRecord, encodeDeviceRecord } from '../../src/access/records.ts';
import type { Genesis } from '../../src/access/genesis.ts';
import { decodeMessage as decodeRaftMessage } from '../../src/consensus/codec.ts';
import { isKalimaError, kalimaError } from '../../src/errors.ts';
import { blockHash, decodeBlock } from '../../src/ledger/block.ts';
import { bytesEqual, toHex } from '../../src/ledger/hash.ts';
import { type Message as SignedMessage, messageSigningHash } from '../../src/ledger/message.ts';
import { type KeyPair, generateKeyPair, verifySchnorr } from '../../src/ledger/signature.ts';
import { ClusterMaster, type ClusterTransport } from '../../src/node/cluster.ts';
import type { CommitReceipt } from '../../src/node/node.ts';
import type { SignatureVerifier } from '../../src/node/verifier.ts';
import { VALIDATIONS_ADDRESS } from '../../src/state/validation.ts';
import type { BlockSigner } from '../../src/node/block-signer.ts';
import type { Clock, Logger, Rng, Scheduler } from '../../src/ports.ts';
import { type KvOperation, type KvRange, type KvStore, compareBytes } from '../../src/store/kv.ts';
import { type TestChain, makeChain, makeMessage, seededRng } from '../support/chain.ts';
import { SeededRandom } from './raft-sim.ts';

export interface NodeSimOptions {
  seed: number;
  /** Virtual milliseconds with faults; then the faults stop and the cluster must converge within healMs. */
  faultMs?: number;
  healMs?: number;
  devices?: number;
  writesPerDevice?: number;
  /** Scales every fault rate (0: no faults at all, for a baseline). */
  faultScale?: number;
  /** Scales the rate of disk losses, and of crashes while a master recovers from one, on top of faultScale. */
  diskLossScale?: number;
  /** Receives the trace, one line per event (the seed's replay). */
  trace?: (line: string) => void;
  /** With trace: every message delivered too. */
  traceMessages?: boolean;
  /**
   * Breaks what the node relies on, to show the checkers catch it: "lying-disk" acknowledges synced
   * writes before they are durable (and a crash loses them).
   */
  sabotage?: 'lying-disk';
  /**
   * Exploration: a refusal that is not retryable is recorded (unexpectedRefusals) and retried like
   * any other instead of failing the seed, so that a seed goes on past a known bug to what follows.
   */
  lenient?: boolean;
  /**
   * A validation node (v1, in the genesis file's validators) beside the three masters, under the same
   * faults. Default: decided by the seed (VALIDATOR_SHARE of the seeds).
   */
  validator?: boolean;
  /**
   * Once healed, the validation node's last record must cover every block with news. By default a
   * record carried by the tip is enough (the chain then takes no other before another block).
   */
  strictValidationLiveness?: boolean;
}

export interface NodeSimResult {
  seed: number;
  ok: boolean;
  failure?: string;
  /** SHA-256 of the trace (every event and every delivery): equal for equal seeds. */
  traceHash: string;
  virtualMs: number;
  timersFired: number;
  terms: number;
  writes: number;
  acknowledged: number;
  acknowledgedByReplay: number;
  retries: number;
  height: number;
  crashes: number;
  /** Crashes timed to fall while one of the master's synced writes was in flight. */
  crashesInWrite: number;
  /** Crashes of a master that was still recovering from a lost disk. */
  recoveryCrashes: number;
  gracefulRestarts: number;
  diskLosses: number;
  /** Synced batches in flight at a crash that were lost, and that made it to the disk anyway. */
  inFlightLost: number;
  inFlightKept: number;
  partitions: number;
  oneWayPartitions: number;
  messages: number;
  dropped: number;
  duplicated: number;
  cutOff: number;
  clientTimeouts: number;
  /** Global setTimeout calls from src/node/node.ts routed to the virtual scheduler. */
  globalTimers: number;
  /** Error-level log lines the masters wrote (the first few, and how many). */
  errorLogs: string[];
  errorLogCount: number;
  /** With `lenient`: the refusals that are not retryable, which were retried. */
  unexpectedRefusals: string[];
  /** 1 when the seed ran a validation node. */
  validatorSeeds: number;
  /** The validation node's crashes (counted in crashes too), lost disks and graceful restarts. */
  validatorCrashes: number;
  validatorDiskLosses: number;
  validatorRestarts: number;
  /** Validation records in the final chain. */
  validationRecords: number;
  /** Blocks holding other messages than validations after the validation node's last record, at the end. */
  validationLag: number;
  /** 1 when such blocks were left at the end (the last record carried by the tip: the chain takes no other until another block). */
  validationStalled: number;
  /** Reports the validation node sent: "wrong" (always a failure here: every master is honest) and "late". */
  wrongReports: number;
  lateReports: number;
  /** Late reports of a block whose way to the validation node crossed a fault of the validation node's own (see lateReportNotes). */
  lateReportsOwnFault: number;
  /** Each late report: when, of which block, how late, and the faults around it. */
  lateReportNotes: string[];
  /** Masters barred from leading (distinct leader and bar end, as the masters hold them). */
  bars: number;
  settings: Record<string, number>;
}

/**
 * Named fault profiles. "cluster": the default mix. "hostile": three times the fault rates over a
 * longer faulty spell, and four times more lost disks on top, so that masters lose their disks and
 * crash again while they recover.
 */
export const NODE_SIM_PROFILES = {
  cluster: {},
  hostile: { faultScale: 3, diskLossScale: 4, faultMs: 3_000 },
} satisfies Record<string, Omit<NodeSimOptions, 'seed'>>;

export type NodeSimProfile = keyof typeof NODE_SIM_PROFILES;

// ---------------------------------------------------------------------------------------------
// Virtual time

interface Owner {
  alive: boolean;
}

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  owner: Owner;
  cancelled: boolean;
}

const FOREVER: Owner = { alive: true };

class VirtualTime {
  private readonly heap: Timer[] = [];
  private seq = 0;
  fired = 0;
  constructor(public now: number) {}

  after(delayMs: number, fn: () => void, owner: Owner = FOREVER): Timer {
    const timer: Timer = { at: this.now + delayMs, seq: this.seq++, fn, owner, cancelled: false };
    const heap = this.heap;
    heap.push(timer);
    let index = heap.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!earlier(heap[index]!, heap[parent]!)) break;
      [heap[index], heap[parent]] = [heap[parent]!, heap[index]!];
      index = parent;
    }
    return timer;
  }

  /** The next live timer, taken off the queue. */
  take(): Timer | undefined {
    for (;;) {
      const heap = this.heap;
      if (heap.length === 0) return undefined;
      const top = heap[0]!;
      const last = heap.pop()!;
      if (heap.length > 0) {
        heap[0] = last;
        let index = 0;
        for (;;) {
          const left = 2 * index + 1;
          const right = left + 1;
          let smallest = index;
          if (left < heap.length && earlier(heap[left]!, heap[smallest]!)) smallest = left;
          if (right < heap.length && earlier(heap[right]!, heap[smallest]!)) smallest = right;
          if (smallest === index) break;
          [heap[index], heap[smallest]] = [heap[smallest]!, heap[index]!];
          index = smallest;
        }
      }
      if (!top.cancelled && top.owner.alive) return top;
    }
  }

  /** A Scheduler whose timers die with their owner; delays as Node's setTimeout takes them. */
  scheduler(owner: Owner): Scheduler {
    return {
      setTimeout: (callback, delayMs) => {
        // Node: a delay below 1 ms or above 2^31 - 1 is 1 ms.
        const delay = delayMs >= 1 && delayMs <= 2_147_483_647 ? delayMs : 1;
        return this.after(delay, callback, owner);
      },
      clearTimeout: (handle) => {
        if (handle !== null && typeof handle === 'object' && 'cancelled' in handle) (handle as Timer).cancelled = true;
      },
    };
  }

  sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => this.after(ms, resolve));
  }
}

function earlier(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

// ---------------------------------------------------------------------------------------------
// Disk

interface Group {
  operations: KvOperation[];
  sync: boolean;
  done: boolean;
}

/**
 * A master's disk across its processes: what is durable, what its current process sees, and the
 * writes in flight. `open()` gives the current process its handle; `crash()` ends that process.
 */
class SimDisk {
  private durable = new Map<string, [Uint8Array, Uint8Array]>();
  private visible = new Map<string, [Uint8Array, Uint8Array]>();
  /** Batches not yet durable, in issue order: in flight, or completed without sync. */
  private pending: Group[] = [];
  private lastCompletion = 0;
  private lastDurableAt = 0;
  lostAtCrash = 0;
  keptAtCrash = 0;

  /** `lying`: a disk that acknowledges a synced write before it is durable (to check that the checkers see what that breaks). */
  /** Every synced write's completion time, as it is issued (the simulation may crash the process before it). */
  onSyncedWrite: ((completeAt: number) => void) | undefined;

  constructor(private readonly time: VirtualTime, private readonly random: SeededRandom, private readonly latency: () => number, private readonly lying = false) {}

  get isEmpty(): boolean {
    return this.durable.size === 0;
  }

  /** The handle of a process (`owner`): it and its writes die with it. */
  open(owner: Owner): KvStore {
    let closed = false;
    const check = (): 'dead' | 'closed' | 'ok' => (!owner.alive ? 'dead' : closed ? 'closed' : 'ok');
    const usedAfterClose = (): Error => new Error('sim disk: used after close');
    return {
      get: async (key) => {
        const state = check();
        if (state === 'dead') return never();
        if (state === 'closed') throw usedAfterClose();
        return this.visible.get(idOf(key))?.[1].slice();
      },
      batch: (operations, options) => {
        const state = check();
        if (state === 'dead') return never();
        if (state === 'closed') return Promise.reject(usedAfterClose());
        // The store copies what it is given, as LevelDB does.
        const group: Group = {
          operations: operations.map((operation) => (operation.type === 'put' ? { type: 'put', key: operation.key.slice(), value: operation.value.slice() } : { type: 'del', key: operation.key.slice() })),
          sync: options.sync,
          done: false,
        };
        this.pending.push(group);
        const completeAt = Math.max(this.lastCompletion, this.time.now + (options.sync ? this.latency() : 0));
        this.lastCompletion = completeAt;
        if (options.sync) this.onSyncedWrite?.(completeAt);
        const durable = (): void => {
          // A synced write makes everything before it durable too.
          while (this.pending.length > 0) {
            const first = this.pending.shift()!;
            apply(this.durable, first.operations);
            if (first === group) break;
          }
        };
        if (this.lying && options.sync) {
          // Sabotage: acknowledged at once, durable only a while later (a write cache that lies).
          group.done = true;
          apply(this.visible, group.operations);
          const durableAt = Math.max(this.lastDurableAt, completeAt + 100 + this.random.next() * 200);
          this.lastDurableAt = durableAt;
          this.time.after(durableAt - this.time.now, durable, owner);
          return Promise.resolve();
        }
        return new Promise<void>((resolve) => {
          const complete = (): void => {
            group.done = true;
            apply(this.visible, group.operations);
            if (group.sync) durable();
            resolve();
          };
          if (completeAt <= this.time.now && !options.sync) complete();
          else this.time.after(Math.max(0, completeAt - this.time.now), complete, owner);
        });
      },
      entries: (range) => {
        const state = check();
        if (state === 'dead') return { [Symbol.asyncIterator]: () => ({ next: never }) } as AsyncIterable<[Uint8Array, Uint8Array]>;
        if (state === 'closed') throw usedAfterClose();
        return rangeOf(this.visible, range);
      },
      close: async () => {
        closed = true;
      },
    };
  }

  /** The process dies: its synced writes in flight land in order, each with even odds, until one does not; the rest is lost. */
  crash(): void {
    let lastLanded = -1;
    let landing = true;
    for (const [position, group] of this.pending.entries()) {
      if (!group.sync || group.done) continue;
      landing = landing && this.random.next() < 0.5;
      if (landing) {
        lastLanded = position;
        this.keptAtCrash++;
      } else {
        this.lostAtCrash++;
      }
    }
    for (let position = 0; position <= lastLanded; position++) apply(this.durable, this.pending[position]!.operations);
    this.pending = [];
    this.visible = new Map(this.durable);
    this.lastCompletion = this.time.now;
  }

  /** A clean shutdown: the store's close waits for the writes in flight, so all of them land. */
  shutdown(): void {
    for (const group of this.pending) apply(this.durable, group.operations);
    this.pending = [];
    this.visible = new Map(this.durable);
    this.lastCompletion = this.time.now;
  }

  /** The data directory is gone. */
  wipe(): void {
    this.pending = [];
    this.durable = new Map();
    this.visible = new Map();
    this.lastCompletion = this.time.now;
  }
}

function idOf(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

function apply(map: Map<string, [Uint8Array, Uint8Array]>, operations: readonly KvOperation[]): void {
  for (const operation of operations) {
    const id = idOf(operation.key);
    if (operation.type === 'put') map.set(id, [operation.key, operation.value]);
    else map.delete(id);
  }
}

async function* rangeOf(map: Map<string, [Uint8Array, Uint8Array]>, range: KvRange): AsyncIterable<[Uint8Array, Uint8Array]> {
  const selected = [...map.values()]
    .filter(([key]) => (range.gte === undefined || compareBytes(key, range.gte) >= 0) && (range.lt === undefined || compareBytes(key, range.lt) < 0))
    .sort(([a], [b]) => compareBytes(a, b));
  if (range.reverse) selected.reverse();
  const limited = range.limit === undefined ? selected : selected.slice(0, range.limit);
  for (const [key, value] of limited) yield [key.slice(), value.slice()];
}

// ---------------------------------------------------------------------------------------------
// Fixtures. The chain's keys are the same for every seed, and so is each message a client may send:
// signing and checking signatures is most of the cost of a seed, so messages are signed once per
// process (each with randomness of its own, so the same message has the same bytes in every seed)
// and the masters' verifier remembers what it checked. What is sent, when, where, and everything
// else that happens comes from the seed.

const MASTERS = 3;
const DEVICES_MAX = 6;

interface Fixture {
  chain: TestChain;
  masterKeys: KeyPair[];
  deviceKeys: KeyPair[];
  validatorKey: KeyPair;
  messages: Map<string, SignedMessage>;
}

let fixture: Fixture | undefined;

function fixtureOf(): Fixture {
  if (fixture !== undefined) return fixture;
  const base = makeChain('node-sim');
  const rng = seededRng('node-sim:keys');
  const masterKeys = Array.from({ length: MASTERS }, () => generateKeyPair(rng));
  const deviceKeys = Array.from({ length: DEVICES_MAX }, () => generateKeyPair(rng));
  const validatorKey = generateKeyPair(rng);
  // Without validators: a seed with a validation node lists it in its own copy (the messages do not
  // depend on the genesis file's lists, only on the chain's name).
  const genesis: Genesis = { ...base.genesis, masters: masterKeys.map((key) => key.publicKey) };
  fixture = { chain: { ...base, genesis, nodeKey: masterKeys[0]! }, masterKeys, deviceKeys, validatorKey, messages: new Map() };
  return fixture;
}

/** The signed message `name` stands for, signed the first time it is asked for. */
function signedMessage(name: string, key: KeyPair, fields: Parameters<typeof makeMessage>[2]): SignedMessage {
  const { chain, messages } = fixtureOf();
  let message = messages.get(name);
  if (message === undefined) {
    message = makeMessage({ ...chain, rng: seededRng(`node-sim:message:${name}`) }, key, fields);
    messages.set(name, message);
  }
  return message;
}

/**
 * The InlineVerifier's answers, remembered across seeds (a pure function of its arguments). With
 * `delay` undefined it answers in the same microtask turns as InlineVerifier, remembered or not (a
 * verifier that answered sooner from its memory would make a seed's schedule depend on the seeds
 * run before it); with `delay`, each answer comes that many virtual milliseconds later, on a timer
 * of the process that asked (a pool of worker threads answers so, in any order). Block signatures,
 * and the messages a restart re-checks in openVerified, are checked by the node itself
 * (verifySchnorr), not through this port.
 */
const verified = new Map<string, boolean>();

class RememberingVerifier implements SignatureVerifier {
  constructor(private readonly time: VirtualTime, private readonly owner: Owner, private readonly delay: (() => number) | undefined) {}

  async verify(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): Promise<boolean> {
    const id = `${toHex(signature)}${toHex(messageHash)}${toHex(publicKey)}`;
    let valid = verified.get(id);
    if (valid === undefined) {
      valid = verifySchnorr(messageHash, publicKey, signature);
      verified.set(id, valid);
    }
    if (this.delay === undefined) return valid;
    const answer = valid;
    return new Promise<boolean>((resolve) => this.time.after(this.delay!(), () => resolve(answer), this.owner));
  }
  async close(): Promise<void> {}
}

/**
 * The block signer: BIP-340 with the node's randomness, as InlineBlockSigner, without its check of
 * the fresh signature (a guard against faulty hardware; the followers' gates check every block's
 * signature anyway), which would be a fifth of a seed's time.
 */
class SimBlockSigner implements BlockSigner {
  constructor(private readonly key: KeyPair, private readonly rng: Rng) {}
  async sign(hash: Uint8Array): Promise<Uint8Array> {
    return libsecp.signSchnorr(hash, this.key.secretKey, this.rng.bytes(32));
  }
  async close(): Promise<void> {}
}

// ---------------------------------------------------------------------------------------------
// The global setTimeout of src/node/node.ts (KalimaNode.whenApplied), routed to the simulation.

let activeTime: { time: VirtualTime; count: number } | undefined;
const realSetTimeout = globalThis.setTimeout;

function simulatedSetTimeout(this: unknown, callback: unknown, delay?: number, ...args: unknown[]): unknown {
  if (activeTime !== undefined && typeof callback === 'function' && (new Error().stack ?? '').includes('/src/node/node.ts')) {
    activeTime.count++;
    return activeTime.time.scheduler(FOREVER).setTimeout(() => (callback as (...values: unknown[]) => void)(...args), delay ?? 0);
  }
  return (realSetTimeout as (...values: unknown[]) => unknown)(callback, delay, ...args);
}

// ---------------------------------------------------------------------------------------------
// The simulation

interface Process extends Owner {
  n: number;
  /** Called when the process ends (a crash, or the end of a graceful close): clients see their connections reset. */
  onDeath: Set<() => void>;
  /** The highest commit index of this process the checkers have looked at. */
  seenCommit: number;
}

interface Slot {
  name: string;
  id: string;
  key: KeyPair;
  disk: SimDisk;
  state: 'down' | 'starting' | 'up' | 'closing';
  master: ClusterMaster | undefined;
  process: Process | undefined;
  /** `kalima init` marked the data directory as a new chain's; cleared once a master opens it non-empty. */
  newMemberMark: boolean;
  incarnations: number;
  /** After a disk loss, until it has caught up: the height the cluster had reached when it lost it. */
  recoverTo: number | undefined;
}

interface Write {
  label: string;
  message: SignedMessage;
  hashHex: string;
  deviceHex: string;
  receipt?: CommitReceipt;
}

/** Retryable: the SDK retries 503s and 504s; NOT_LEADER names another master; a replay not yet committed is still in flight somewhere. */
function isRetryable(error: unknown): boolean {
  if (!isKalimaError(error)) return false;
  return error.status === 503 || error.status === 504 || error.code === 'KALIMA_ERR_CONSENSUS_NOT_LEADER' || error.code === 'KALIMA_ERR_LEDGER_NONCE_REPLAYED';
}

function describeError(error: unknown): string {
  if (isKalimaError(error)) return `${error.code} ${safeJson(error.details)}`;
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? item.toString() : item instanceof Error ? item.message : item instanceof Uint8Array ? toHex(item).slice(0, 16) : item)) ?? '';
  } catch {
    return String(value);
  }
}

/** The share of the seeds that run a validation node beside the masters. */
export const VALIDATOR_SHARE = 0.2;

/**
 * A seed's validation node, if it has one, and the genesis parameters that judge it: how late a
 * block may reach it (mostly well above the simulation's delays, so that a late report means a
 * block held back by the faults for that long; sometimes within reach of a slow disk and a slow
 * network), and how many terms a reported leader is barred for.
 */
function validationSettings(seed: number, wanted: boolean | undefined): { validationLateMs: number; leaderBarTerms: number } | undefined {
  const random = new SeededRandom(`node-sim:${seed}:validation`);
  const present = random.next() < VALIDATOR_SHARE;
  if (!(wanted ?? present)) return undefined;
  return { validationLateMs: [300, 1_000, 5_000][random.below(3)]!, leaderBarTerms: [0, 1, 3][random.below(3)]! };
}

const CLIENT_TIMEOUT_MS = 15_000;
const CLOSE_MAX_MS = 30_000;
const FAULT_STEP_MS = 100;
const LOG_MATCHING_EVERY_MS = 250;

export async function runNodeSimulation(options: NodeSimOptions): Promise<NodeSimResult> {
  const { seed } = options;
  const random = new SeededRandom(`node-sim:${seed}`);
  const pick = <T>(values: readonly T[]): T => values[random.below(values.length)]!;
  const scale = options.faultScale ?? 1;
  const { chain, masterKeys, deviceKeys, validatorKey } = fixtureOf();
  // The validation node: whether the seed has one and its genesis parameters come from a stream of
  // their own, so that a seed without one runs exactly as it did before validation nodes.
  const validation = validationSettings(seed, options.validator);
  const genesis: Genesis = validation === undefined ? chain.genesis : {
    ...chain.genesis, validators: [validatorKey.publicKey], params: { ...chain.genesis.params, validationLateMs: validation.validationLateMs, leaderBarTerms: validation.leaderBarTerms },
  };
  const time = new VirtualTime(genesis.timeMs + 60_000);
  const startedAt = time.now;
  // Whole milliseconds, as Date.now() gives them (block times are whole numbers).
  const clock: Clock = { nowMs: () => Math.floor(time.now) };

  // The seed's settings.
  const settings = {
    tickMs: pick([10, 20, 50]),
    logRetention: pick([2, 6, 10_000]),
    blockDelayMs: pick([2, 10, 40]),
    netDelayMaxMs: pick([2, 10, 40]),
    dropRate: random.next() * 0.08 * scale,
    duplicateRate: random.next() * 0.04 * scale,
    diskLatencyMaxMs: pick([0.5, 3, 15]),
    /** 1: signatures are checked as a worker pool does, each answer a little later, in any order; 0: inline. */
    verifierPool: random.below(3) === 0 ? 1 : 0,
    crashRate: (0.008 + random.next() * 0.024) * scale,
    gracefulRate: 0.01 * scale,
    /** Per synced write: the master dies before it completes. */
    crashInWriteRate: 0.006 * scale,
    /** A master that lost its disk crashes again soon after it restarts, before it has caught up. */
    recoveryCrashRate: Math.min(1, 0.25 * scale * (options.diskLossScale ?? 1)),
    diskLossRate: 0.006 * scale * (options.diskLossScale ?? 1),
    partitionRate: (0.05 + random.next() * 0.15) * scale,
    faultMs: options.faultMs ?? 2_000,
    healMs: options.healMs ?? 60_000,
    devices: Math.min(DEVICES_MAX, options.devices ?? 2 + random.below(2)),
    writesPerDevice: options.writesPerDevice ?? 4 + random.below(4),
    ...(validation === undefined ? {} : { validator: 1, validationLateMs: validation.validationLateMs, leaderBarTerms: validation.leaderBarTerms }),
  };
  const faultEnd = startedAt + settings.faultMs;
  const deadline = faultEnd + settings.healMs;

  // Trace: every event into a hash (the replay check), and to options.trace if given.
  const traceHash = createHash('sha256');
  let deliveryHash = 0x811c9dc5;
  const stamp = (): string => `${(time.now - startedAt).toFixed(1).padStart(8)} ms`;
  const trace = (line: string): void => {
    traceHash.update(`${time.now - startedAt}|${line}\n`);
    options.trace?.(`${stamp()}  ${line}`);
  };
  const stats = {
    retries: 0, crashes: 0, crashesInWrite: 0, recoveryCrashes: 0, gracefulRestarts: 0, diskLosses: 0, partitions: 0, oneWayPartitions: 0, messages: 0, dropped: 0, duplicated: 0, cutOff: 0, clientTimeouts: 0, acknowledgedByReplay: 0,
    validatorCrashes: 0, validatorDiskLosses: 0, validatorRestarts: 0, wrongReports: 0, lateReports: 0, lateReportsOwnFault: 0, bars: 0, validationRecords: 0, validationLag: 0, validationStalled: 0,
  };
  const lateReportNotes: string[] = [];
  const errorLogs: string[] = [];
  let errorLogCount = 0;
  const unexpectedRefusals: string[] = [];

  let failure: string | undefined;
  const fail = (text: string): void => {
    if (failure !== undefined) return;
    failure = `seed ${seed}, at ${(time.now - startedAt).toFixed(1)} ms: ${text}`;
    trace(`FAILURE ${text}`);
  };

  const slotOf = (name: string, key: KeyPair): Slot => ({
    name, id: toHex(key.publicKey), key, state: 'down', master: undefined, process: undefined, newMemberMark: true, incarnations: 0, recoverTo: undefined,
    disk: new SimDisk(time, random, () => (random.next() < 0.02 ? 20 : 1) * random.next() * settings.diskLatencyMaxMs, options.sabotage === 'lying-disk'),
  });
  /** The masters. */
  const slots: Slot[] = masterKeys.map((key, index) => slotOf(`m${index + 1}`, key));
  /** The validation node, if the seed has one: a ClusterMaster too (a Raft learner), under the same faults. */
  const validator: Slot | undefined = validation === undefined ? undefined : slotOf('v1', validatorKey);
  /** Every node: the masters, then the validation node. */
  const members: Slot[] = validator === undefined ? slots : [...slots, validator];
  const slotById = new Map(members.map((slot) => [slot.id, slot]));
  const nameOf = (id: string): string => slotById.get(id)?.name ?? id.slice(0, 8);

  // ---- network
  const endpoints = new Map<string, { process: Process; handler: (from: string, bytes: Uint8Array) => void }>();
  /** Directed links that are cut: "a>b" loses what a sends to b. */
  let cut = new Set<string>();
  let healing = false;
  const networkDelay = (): number => (random.next() < 0.03 ? 5 : 1) * (0.1 + random.next() * settings.netDelayMaxMs);
  const deliver = (from: string, to: string, process: Process, frame: Uint8Array): void => {
    const endpoint = endpoints.get(to);
    // Lost with its connection if the receiver restarted (or stopped) meanwhile.
    if (endpoint === undefined || endpoint.process !== process || !process.alive) return;
    deliveryHash = Math.imul(deliveryHash ^ (Math.round(time.now * 10) + 31 * frame.length + 977 * (frame[1] ?? 0) + 7919 * (frame[frame.length - 1] ?? 0)), 16_777_619) >>> 0;
    if (options.traceMessages === true && options.trace !== undefined) options.trace(`${stamp()}    ${describeFrame(from, to, frame, nameOf)}`);
    endpoint.handler(from, frame);
  };
  const transportFor = (slot: Slot, process: Process): ClusterTransport => ({
    send(to, bytes) {
      if (!process.alive) return false;
      const endpoint = endpoints.get(to);
      // No link up to a master that is down.
      if (endpoint === undefined || !endpoint.process.alive) return false;
      stats.messages++;
      if (cut.has(`${slot.id}>${to}`)) {
        stats.cutOff++;
        return true;
      }
      if (!healing && random.next() < settings.dropRate) {
        stats.dropped++;
        return true;
      }
      const copies = !healing && random.next() < settings.duplicateRate ? 2 : 1;
      if (copies > 1) stats.duplicated++;
      for (let copy = 0; copy < copies; copy++) {
        const frame = bytes.slice();
        time.after(networkDelay(), () => deliver(slot.id, to, endpoint.process, frame));
      }
      return true;
    },
    onMessage(handler) {
      endpoints.set(slot.id, { process, handler });
    },
    async close() {
      if (endpoints.get(slot.id)?.process === process) endpoints.delete(slot.id);
    },
  });

  // Now and then a master dies while a synced write of its is in flight, before the write completes.
  for (const slot of members) {
    slot.disk.onSyncedWrite = (completeAt) => {
      if (healing || random.next() >= settings.crashInWriteRate) return;
      const process = slot.process;
      time.after(random.next() * (completeAt - time.now), () => {
        if (!healing && slot.process === process && (slot.state === 'up' || slot.state === 'starting')) {
          stats.crashesInWrite++;
          crash(slot, false);
        }
      });
    };
  }

  // ---- checkers' state
  const leaderOfTerm = new Map<number, string>();
  const committedAt = new Map<number, { term: number; data: Uint8Array; by: string }>();
  const blockAt = new Map<number, { hash: string; by: string }>();
  /**
   * The validation node's checker: the block each height holds in the masters' committed chain
   * (committed entries, and blocks a master applied), as its hash and signature (the hash covers
   * the header, whose txRoot covers the messages: the two stand for the block's bytes).
   */
  const committedBlockAt = new Map<number, string>();
  const masterCommitted = (height: number, hex: string, by: string): void => {
    const known = committedBlockAt.get(height);
    if (known === undefined) committedBlockAt.set(height, hex);
    else if (known !== hex) fail(`two blocks committed at height ${height}: ${known.slice(0, 12)}, and ${hex.slice(0, 12)} on ${by}`);
  };
  /** The highest block with other messages than validations that a master applied: the validation node's records must come to cover it. */
  let lastBusyHeight = 0;
  /** The height the validation node's last record on a master's chain covers (0: none), and the block that carries it. */
  const recordOn = (master: ClusterMaster): { height: number; carriedAt: number } => {
    const entry = master.node.cache.getEntry(VALIDATIONS_ADDRESS, validator!.id);
    if (entry === undefined) return { height: 0, carriedAt: 0 };
    const height = (JSON.parse(new TextDecoder().decode(entry.value)) as { height?: unknown }).height;
    return { height: typeof height === 'number' ? height : 0, carriedAt: entry.height };
  };
  /** Once healed: everything else converged, only the validation records lag behind (for the liveness failure's text). */
  let recordsBehind = false;
  /** Distinct bars the masters hold (leader:untilTerm), with the term reported and the highest commit when the first master held it. */
  const bars = new Map<string, { id: string; reportTerm: number; commit: number; at: number }>();

  const checkLeaderCompleteness = (slot: Slot, master: ClusterMaster): void => {
    const { raft } = master.runtime;
    for (const [index, committed] of committedAt) {
      if (index < raft.firstIndex()) continue; // folded into its state: applied
      if (index > raft.lastIndex() || raft.termAt(index) !== committed.term || !bytesEqual(raft.entries(index, index)[0]!.data, committed.data)) {
        fail(`leader completeness: ${slot.name} leads term ${raft.term} without the entry committed at ${index} (term ${committed.term}, seen committed on ${committed.by}); its log ends at ${raft.lastIndex()}/${raft.lastTerm()}`);
        return;
      }
    }
  };

  /** Election safety, and leader completeness at the moment a leader is elected. */
  const becameLeader = (slot: Slot, master: ClusterMaster): void => {
    const { raft } = master.runtime;
    const known = leaderOfTerm.get(raft.term);
    if (known !== undefined && known !== slot.id) fail(`election safety: ${nameOf(known)} and ${slot.name} both lead term ${raft.term}`);
    if (known !== undefined) return;
    leaderOfTerm.set(raft.term, slot.id);
    trace(`${slot.name} leads term ${raft.term} (log ${raft.firstIndex()}..${raft.lastIndex()}, commit ${raft.commit})`);
    checkLeaderCompleteness(slot, master);
  };

  /**
   * Every election as it happens (a leader may step down before the loop next looks): Raft's
   * becomeLeader on this instance, wrapped. The loop's look after each step covers it too, should
   * the method ever change its name.
   */
  const watchElections = (slot: Slot, master: ClusterMaster, process: Process): void => {
    const raft = master.runtime.raft as unknown as { becomeLeader?: () => void };
    const become = raft.becomeLeader;
    if (typeof become !== 'function') return;
    raft.becomeLeader = function (this: unknown) {
      become.call(this);
      if (process.alive) becameLeader(slot, master);
    };
  };

  const observe = (): void => {
    for (const slot of members) {
      const { master, process } = slot;
      if (master === undefined || process === undefined || !process.alive) continue;
      const { runtime } = master;
      const { raft } = runtime;
      if (runtime.isStopped) {
        if (slot.state === 'up') fail(`${slot.name} stopped taking part by itself: ${describeError(runtime.failureReason)}`);
        continue;
      }
      if (raft.role === 'leader') {
        if (slot === validator) fail(`${slot.name}, a validation node, leads term ${raft.term}`);
        else becameLeader(slot, master);
      }
      if (raft.commit > process.seenCommit) {
        for (let index = Math.max(process.seenCommit + 1, raft.firstIndex()); index <= raft.commit; index++) {
          const entry = raft.entries(index, index)[0]!;
          const known = committedAt.get(index);
          if (known === undefined) committedAt.set(index, { term: entry.term, data: entry.data, by: slot.name });
          else if (known.term !== entry.term || !bytesEqual(known.data, entry.data)) fail(`state machine safety: index ${index} committed as term ${known.term} on ${known.by} and as term ${entry.term} on ${slot.name}`);
          if (validator !== undefined && slot !== validator && entry.data.length > 0) {
            const block = decodeBlock(entry.data);
            masterCommitted(block.header.height, `${toHex(blockHash(block.header))}:${toHex(block.signature)}`, slot.name);
          }
        }
        process.seenCommit = raft.commit;
      }
      if (validator !== undefined && slot !== validator) {
        for (const [id, untilTerm] of raft.bars) {
          const key = `${id}:${untilTerm}`;
          if (bars.has(key)) continue;
          const reportTerm = untilTerm - validation!.leaderBarTerms;
          const commit = Math.max(...slots.map((other) => other.master?.runtime.raft.commit ?? 0));
          bars.set(key, { id, reportTerm, commit, at: time.now });
          stats.bars++;
          trace(`${slot.name} bars ${nameOf(id)} from leading through term ${untilTerm} (reported for term ${reportTerm}; commit ${commit})`);
        }
      }
    }
  };

  const checkLogMatching = (): void => {
    const live = members.filter((slot) => slot.master !== undefined && slot.process?.alive === true);
    for (let a = 0; a < live.length; a++) {
      for (let b = a + 1; b < live.length; b++) {
        const left = live[a]!.master!.runtime.raft;
        const right = live[b]!.master!.runtime.raft;
        const from = Math.max(left.firstIndex(), right.firstIndex());
        const to = Math.min(left.lastIndex(), right.lastIndex());
        let agree = -1;
        for (let index = to; index >= from; index--) {
          if (left.termAt(index) === right.termAt(index)) {
            agree = index;
            break;
          }
        }
        for (let index = from; index <= agree; index++) {
          const x = left.entries(index, index)[0]!;
          const y = right.entries(index, index)[0]!;
          if (x.term !== y.term || !bytesEqual(x.data, y.data)) {
            fail(`log matching: ${live[a]!.name} and ${live[b]!.name} agree on the term at ${agree} but differ at ${index} (terms ${x.term} and ${y.term})`);
            return;
          }
        }
      }
    }
  };

  // ---- the validation node's reports
  /** Spells when the validation node could not get the leader's blocks on time: down, cut off, catching up (`to` open while it lasts). */
  const validatorFaults: Array<{ from: number; to: number; what: string }> = [];
  const validatorFault = (what: string): { from: number; to: number; what: string } => {
    const spell = { from: time.now, to: Number.POSITIVE_INFINITY, what };
    validatorFaults.push(spell);
    return spell;
  };
  const endFaults = (what: (text: string) => boolean): void => {
    for (const spell of validatorFaults) if (spell.to === Number.POSITIVE_INFINITY && what(spell.what)) spell.to = time.now;
  };
  let reportsThisProcess = 0;
  /** A report the validation node sends (its log line says so, with what it reports). */
  const reported = (object: Record<string, unknown>): void => {
    reportsThisProcess++;
    const leader = typeof object.leader === 'string' ? nameOf(object.leader) : '?';
    const { term, height, reason, detail } = object;
    if (reason === 'wrong') {
      stats.wrongReports++;
      trace(`v1 reports ${leader} (term ${String(term)}, block ${String(height)}) wrong: ${String(detail)}`);
      fail(`wrong report: the validation node reports ${leader}'s block ${String(height)} of term ${String(term)} as wrong, and every master is honest: ${String(detail)}`);
      return;
    }
    stats.lateReports++;
    const lateBy = Number(/(\d+) ms after/.exec(String(detail))?.[1] ?? Number.NaN);
    const blockTime = time.now - (Number.isNaN(lateBy) ? 0 : lateBy);
    // Its own spells down or catching up, and cuts of its links with the reported leader.
    const crossed = validatorFaults.filter((spell) => spell.from <= time.now && spell.to >= blockTime && (!spell.what.startsWith('cut') || spell.what.includes(`${leader}>`) || spell.what.includes(`>${leader}`)));
    if (crossed.length > 0) stats.lateReportsOwnFault++;
    const at = (ms: number): string => (ms === Number.POSITIVE_INFINITY ? 'on' : `${(ms - startedAt).toFixed(0)}`);
    const note = `seed ${seed} at ${(time.now - startedAt).toFixed(1)} ms: ${leader}'s block ${String(height)} of term ${String(term)} ${Number.isNaN(lateBy) ? '' : `${lateBy} ms late `}(limit ${validation!.validationLateMs} ms); `
      + `${crossed.length === 0 ? 'no fault of the validation node\'s own meanwhile' : `meanwhile the validation node was ${crossed.map((spell) => `${spell.what} ${at(spell.from)}..${at(spell.to)} ms`).join(', ')}`}`;
    lateReportNotes.push(note);
    trace(`v1 reports ${leader} late: ${note}`);
  };

  /** What the validation node's own count of its reports says, against the reports seen in its log. */
  const checkReportCount = (): void => {
    const master = validator?.master;
    if (master === undefined || validator?.process?.alive !== true) return;
    const counted = master.status().validation?.reports;
    if (counted !== reportsThisProcess) fail(`${validator.name} counts ${String(counted)} reports, and its log showed ${reportsThisProcess} (the simulation no longer sees its reports)`);
  };

  // ---- masters
  const loggerFor = (slot: Slot, process: Process): Logger => {
    const line = (level: string) => (object: object, message?: string): void => {
      if (!process.alive) return;
      if (slot === validator) {
        if (message === 'validation: reporting the leader to the masters') reported(object as Record<string, unknown>);
        else if (message === 'catching up: fetching committed blocks from the masters') validatorFault('catching up');
        else if (message === 'caught up') endFaults((what) => what === 'catching up');
      }
      if (level === 'error') {
        errorLogCount++;
        if (errorLogs.length < 5) errorLogs.push(`${slot.name} at ${(time.now - startedAt).toFixed(1)} ms: ${message ?? ''} ${safeJson(object)}`);
      }
      // Not part of the trace hash: only printed.
      options.trace?.(`${stamp()}    ${slot.name} ${level}: ${message ?? ''} ${safeJson(object)}`);
    };
    return { debug() {}, info: line('info'), warn: line('warn'), error: line('error') };
  };

  const start = async (slot: Slot, why: string): Promise<void> => {
    const process: Process = { alive: true, n: ++slot.incarnations, onDeath: new Set(), seenCommit: 0 };
    slot.process = process;
    slot.state = 'starting';
    const newMember = slot.newMemberMark;
    trace(`${slot.name} opens (#${process.n}, ${why}, ${slot.disk.isEmpty ? 'empty store' : 'its store'}${newMember ? ', marked new member' : ''})`);
    const rng = seededRng(`node-sim:${seed}:${slot.name}:${process.n}`);
    let master: ClusterMaster;
    try {
      master = await ClusterMaster.open({
        genesis, kv: slot.disk.open(process), nodeKey: slot.key, clock, rng, scheduler: time.scheduler(process), signer: new SimBlockSigner(slot.key, rng),
        verifier: new RememberingVerifier(time, process, settings.verifierPool === 1 ? () => 0.01 + random.next() * 0.5 : undefined), logger: loggerFor(slot, process), transport: transportFor(slot, process), tickMs: settings.tickMs, logRetention: settings.logRetention,
        blockDelayMs: settings.blockDelayMs, newMember,
      });
    } catch (error) {
      if (process.alive) fail(`${slot.name} could not open its store: ${describeError(error)}`);
      return;
    }
    if (!process.alive) return;
    // As `kalima node` does (src/node/runtime.ts): the mark goes at once if the store held state, or
    // else once a term of its own is persisted (looked at every half second).
    if (newMember && !master.startedEmpty) slot.newMemberMark = false;
    else if (newMember) {
      const look = (): void => {
        time.after(500, () => {
          if (master.runtime.raft.term === 0) {
            look();
            return;
          }
          master.runtime.idle().then(() => {
            if (process.alive) slot.newMemberMark = false;
          }, () => undefined);
        }, process);
      };
      look();
    }
    master.node.onBlock(({ block, hash }) => {
      if (!process.alive) return;
      const height = block.header.height;
      const hex = toHex(hash);
      const known = blockAt.get(height);
      if (known === undefined) {
        blockAt.set(height, { hash: hex, by: slot.name });
        trace(`block ${height} ${hex.slice(0, 12)} (term ${block.header.term}, ${block.messages.length} messages) first applied on ${slot.name}`);
      } else if (known.hash !== hex) {
        fail(`two blocks at height ${height}: ${known.hash.slice(0, 12)} on ${known.by}, ${hex.slice(0, 12)} on ${slot.name}`);
      }
      if (validator === undefined) return;
      const id = `${hex}:${toHex(block.signature)}`;
      if (slot !== validator) {
        masterCommitted(height, id, slot.name);
        if (block.messages.some((committed) => committed.message.address !== VALIDATIONS_ADDRESS)) lastBusyHeight = Math.max(lastBusyHeight, height);
      } else {
        // The validation node's chain is a prefix of the masters' committed chain.
        const committed = committedBlockAt.get(height);
        if (committed === undefined) fail(`validation prefix: ${slot.name} applied block ${height} (${hex.slice(0, 12)}), which no master has committed`);
        else if (committed !== id) fail(`validation prefix: ${slot.name} applied block ${height} ${hex.slice(0, 12)}, and the masters committed ${committed.slice(0, 12)} (or another signature) at that height`);
      }
    });
    watchElections(slot, master, process);
    slot.master = master;
    slot.state = 'up';
    if (slot === validator) {
      endFaults((what) => what === 'down');
      reportsThisProcess = 0;
    }
    master.start();
    // A master recovering from a lost disk may well crash again before it has caught up (a crash loop).
    if (!healing && slot.recoverTo !== undefined && random.next() < settings.recoveryCrashRate) {
      time.after(random.next() * 400, () => {
        if (!healing && slot.process === process && slot.state === 'up' && recovering(slot)) {
          stats.recoveryCrashes++;
          crash(slot, false);
        }
      });
    }
    trace(`${slot.name} started at height ${master.node.height}, raft ${master.runtime.raft.firstIndex()}..${master.runtime.raft.lastIndex()} commit ${master.runtime.raft.commit} term ${master.runtime.raft.term}${master.runtime.raft.rejoining ? ', rejoining' : ''}`);
  };

  const restartLater = (slot: Slot, delayMs: number): void => {
    time.after(delayMs, () => {
      if (slot.state === 'down' && failure === undefined) start(slot, 'restart').catch((error: unknown) => fail(`restart: ${describeError(error)}`));
    });
  };

  const endProcess = (slot: Slot): void => {
    const process = slot.process!;
    if (slot === validator) {
      checkReportCount();
      endFaults((what) => what === 'catching up');
      validatorFault('down');
    }
    process.alive = false;
    if (endpoints.get(slot.id)?.process === process) endpoints.delete(slot.id);
    for (const reset of [...process.onDeath]) reset();
    slot.master = undefined;
    slot.process = undefined;
    slot.state = 'down';
  };

  const crash = (slot: Slot, loseDisk: boolean): void => {
    stats.crashes++;
    if (slot === validator) stats.validatorCrashes++;
    if (loseDisk) {
      stats.diskLosses++;
      if (slot === validator) stats.validatorDiskLosses++;
      slot.recoverTo = Math.max(0, ...slots.map((other) => other.master?.node.height ?? 0));
      slot.disk.wipe();
      slot.newMemberMark = false;
    } else {
      slot.disk.crash();
    }
    trace(`${slot.name} ${loseDisk ? 'crashes and loses its disk' : 'crashes'}${slot.master === undefined ? ' while opening' : ` at height ${slot.master.node.height}, raft ${slot.master.runtime.raft.role} term ${slot.master.runtime.raft.term} last ${slot.master.runtime.raft.lastIndex()} commit ${slot.master.runtime.raft.commit}`}`);
    endProcess(slot);
    restartLater(slot, 50 + random.next() * 1_200);
  };

  const gracefulRestart = async (slot: Slot): Promise<void> => {
    const master = slot.master!;
    stats.gracefulRestarts++;
    if (slot === validator) stats.validatorRestarts++;
    slot.state = 'closing';
    trace(`${slot.name} shuts down`);
    master.beginClose();
    const hung = time.after(CLOSE_MAX_MS, () => fail(`${slot.name}: close() did not finish within ${CLOSE_MAX_MS} ms`));
    try {
      await master.close();
    } catch (error) {
      fail(`${slot.name}: close() failed: ${describeError(error)}`);
    }
    hung.cancelled = true;
    slot.disk.shutdown();
    trace(`${slot.name} stopped`);
    endProcess(slot);
    restartLater(slot, 20 + random.next() * 300);
  };

  // ---- faults
  // One lost disk at a time: only while every master is up, and none is still recovering from a loss
  // (by the simulation's account: back at the height the cluster had then, and no longer rejoining).
  const recovering = (slot: Slot): boolean => {
    if (slot.recoverTo === undefined) return false;
    const master = slot.master;
    if (master !== undefined && slot.state === 'up' && master.node.height >= slot.recoverTo && !master.runtime.raft.rejoining) slot.recoverTo = undefined;
    return slot.recoverTo !== undefined;
  };
  const mayLoseDisk = (): boolean => members.every((other) => other.state === 'up' && other.master !== undefined && !other.master.runtime.raft.rejoining && !recovering(other));
  const faults = async (): Promise<void> => {
    let partitionEndsAt = 0;
    while (failure === undefined) {
      await time.sleep(FAULT_STEP_MS);
      if (healing || failure !== undefined) return;
      for (const slot of members) {
        if (slot.state !== 'up' && slot.state !== 'starting') continue;
        const draw = random.next();
        if (draw < settings.crashRate) {
          // At a random moment of the step, not on its edge.
          const process = slot.process;
          time.after(random.next() * FAULT_STEP_MS, () => {
            if (!healing && slot.process === process && (slot.state === 'up' || slot.state === 'starting')) crash(slot, false);
          });
        }
        else if (draw < settings.crashRate + settings.diskLossRate && mayLoseDisk()) crash(slot, true);
        else if (draw < settings.crashRate + settings.diskLossRate + settings.gracefulRate && slot.state === 'up') gracefulRestart(slot).catch((error: unknown) => fail(`graceful restart: ${describeError(error)}`));
      }
      if (cut.size > 0 && time.now >= partitionEndsAt) {
        cut = new Set();
        endFaults((what) => what.startsWith('cut'));
        trace('partition heals');
      }
      if (cut.size === 0 && random.next() < settings.partitionRate) {
        stats.partitions++;
        partitionEndsAt = time.now + 100 + random.next() * 1_400;
        // Any node alone, the validation node too (on the others' side when a master is alone).
        const alone = pick(members);
        const others = members.filter((slot) => slot !== alone);
        const kind = random.below(4);
        if (kind <= 1) {
          for (const other of others) cut.add(`${alone.id}>${other.id}`).add(`${other.id}>${alone.id}`);
          trace(`partition: ${alone.name} | ${others.map((slot) => slot.name).join(' ')}`);
        } else {
          stats.oneWayPartitions++;
          // Half-open: one direction only, to both others or to one.
          const targets = random.next() < 0.5 ? others : [pick(others)];
          const outbound = kind === 2;
          for (const other of targets) cut.add(outbound ? `${alone.id}>${other.id}` : `${other.id}>${alone.id}`);
          trace(`one-way partition: ${outbound ? `${alone.name} cannot reach ${targets.map((slot) => slot.name).join(' ')}` : `${targets.map((slot) => slot.name).join(' ')} cannot reach ${alone.name}`}`);
        }
        if (validator !== undefined) {
          const into = members.filter((slot) => cut.has(`${slot.id}>${validator.id}`)).map((slot) => slot.name);
          const from = members.filter((slot) => cut.has(`${validator.id}>${slot.id}`)).map((slot) => slot.name);
          if (into.length + from.length > 0) validatorFault(`cut off (${[...into.map((name) => `${name}>v1`), ...from.map((name) => `v1>${name}`)].join(' ')})`);
        }
      }
    }
  };

  // ---- clients
  const writes: Write[] = [];
  let acknowledged = 0;
  const makeWrite = (label: string, name: string, key: KeyPair, fields: Parameters<typeof makeMessage>[2]): Write => {
    const message = signedMessage(name, key, fields);
    const write: Write = { label, message, hashHex: toHex(messageSigningHash(message)), deviceHex: toHex(key.publicKey) };
    writes.push(write);
    return write;
  };

  /** One try at one master, as an HTTP client sees it: its answer, or a reset if the master dies first, or a timeout. */
  const submitOnce = (slot: Slot, message: SignedMessage): Promise<CommitReceipt> => {
    const { master, process } = slot;
    if (master === undefined || process === undefined || slot.state !== 'up') return Promise.reject(kalimaError('KALIMA_ERR_SDK_UNREACHABLE', { reason: `${slot.name} is ${slot.state}` }));
    return new Promise<CommitReceipt>((resolve, reject) => {
      let settled = false;
      const finish = (settle: () => void): void => {
        if (settled) return;
        settled = true;
        process.onDeath.delete(reset);
        timeout.cancelled = true;
        settle();
      };
      const reset = (): void => finish(() => reject(kalimaError('KALIMA_ERR_SDK_UNREACHABLE', { reason: `connection reset: ${slot.name} went down` })));
      process.onDeath.add(reset);
      const timeout = time.after(CLIENT_TIMEOUT_MS, () => {
        stats.clientTimeouts++;
        finish(() => reject(kalimaError('KALIMA_ERR_SDK_UNREACHABLE', { reason: `no answer from ${slot.name} in ${CLIENT_TIMEOUT_MS} ms` })));
      });
      master.node.submit(message).then((receipt) => finish(() => resolve(receipt)), (error: unknown) => finish(() => reject(error)));
    });
  };

  const acknowledge = (write: Write, receipt: CommitReceipt, how: string): void => {
    if (receipt.messageHash !== write.hashHex) {
      fail(`${write.label} acknowledged with the receipt of another message (${receipt.messageHash.slice(0, 12)})`);
      return;
    }
    write.receipt = receipt;
    acknowledged++;
    trace(`ack ${write.label} ${how}: height ${receipt.height} global ${receipt.globalSequence}`);
  };

  const runWrite = async (write: Write): Promise<void> => {
    for (;;) {
      if (failure !== undefined) return;
      const slot = pick(slots);
      try {
        acknowledge(write, await submitOnce(slot, write.message), `via ${slot.name}`);
        return;
      } catch (error) {
        const committed = isKalimaError(error, 'KALIMA_ERR_LEDGER_NONCE_REPLAYED') ? (error.details.committed as CommitReceipt | undefined) : undefined;
        if (committed !== undefined && committed.messageHash === write.hashHex) {
          stats.acknowledgedByReplay++;
          acknowledge(write, committed, `via ${slot.name} (already committed)`);
          return;
        }
        if (!isRetryable(error)) {
          const text = `${write.label} refused by ${slot.name} with an error that is not retryable: ${describeError(error)}`;
          if (options.lenient !== true) {
            fail(text);
            return;
          }
          unexpectedRefusals.push(`at ${(time.now - startedAt).toFixed(1)} ms: ${text}`);
          trace(`UNEXPECTED ${text}`);
        }
        stats.retries++;
        trace(`${write.label} via ${slot.name}: ${isKalimaError(error) ? error.code : 'error'}; retry`);
        await time.sleep(20 + random.next() * 200);
      }
    }
  };

  const admin = chain.admin;
  const address = '/plant';
  const addressWrite = makeWrite('admin:address', 'address', admin, { address: ADDRESSES_ADDRESS, key: address, body: encodeAddressRecord({ description: 'simulated plant' }), nonce: 1 });
  const devices = deviceKeys.slice(0, settings.devices);
  const registrations = devices.map((device, index) => makeWrite(`admin:register-d${index + 1}`, `register-d${index + 1}`, admin, {
    address: DEVICES_ADDRESS, key: toHex(device.publicKey), body: encodeDeviceRecord({ name: `d${index + 1}`, pub: [address], sub: [address] }), nonce: 2 + index,
  }));
  const extraAddresses = [0, 1].map((index) => makeWrite(`admin:address-${index}`, `address-${index}`, admin, { address: ADDRESSES_ADDRESS, key: `/extra/${index}`, body: encodeAddressRecord({ description: '' }), nonce: 2 + DEVICES_MAX + index }));
  const deviceWrites = devices.map((device, deviceIndex) => Array.from({ length: settings.writesPerDevice }, (_, index) => {
    // One of a few variants of each (device, nonce): which key it writes, and whether it expires
    // (so that the leaders write TTL deletes).
    const key = random.below(5);
    const expires = random.next() < 0.15;
    return makeWrite(`d${deviceIndex + 1}#${index + 1}`, `d${deviceIndex + 1}:${index + 1}:${key}:${expires}`, device, {
      address, key: `k${key}`, body: `d${deviceIndex + 1} write ${index + 1} ${expires ? 'for a second' : 'for ever'}`, nonce: index + 1, ttlSeconds: expires ? 1 : -1,
    });
  }));

  const clients = async (): Promise<void> => {
    const addressDone = runWrite(addressWrite);
    const extras = Promise.all(extraAddresses.map(async (write) => {
      await time.sleep(random.next() * settings.faultMs);
      await runWrite(write);
    }));
    const deviceRuns = devices.map(async (_device, index) => {
      await Promise.all([addressDone, runWrite(registrations[index]!)]);
      const queue = [...deviceWrites[index]!];
      const concurrency = 2 + random.below(3);
      await Promise.all(Array.from({ length: concurrency }, async () => {
        for (let write = queue.shift(); write !== undefined; write = queue.shift()) {
          await time.sleep(random.next() * 120);
          await runWrite(write);
        }
      }));
    });
    await Promise.all([addressDone, extras, ...deviceRuns]);
  };

  // ---- convergence and the final checks
  const converged = (): boolean => {
    if (acknowledged < writes.length) return false;
    const masters = slots.map((slot) => (slot.state === 'up' ? slot.master : undefined));
    if (masters.some((master) => master === undefined)) return false;
    const leaders = masters.filter((master) => master!.runtime.raft.role === 'leader');
    if (leaders.length !== 1 || !leaders[0]!.replicator.mayProduce()) return false;
    const leader = leaders[0]!;
    const { commit, term } = leader.runtime.raft;
    if (leader.runtime.raft.lastIndex() !== commit) return false;
    // The validation node too, once it is back: every committed block applied.
    if (validator !== undefined && (validator.state !== 'up' || validator.master === undefined)) return false;
    const agreed = [...masters, ...(validator === undefined ? [] : [validator.master])].every((master) => {
      const { raft } = master!.runtime;
      return raft.term === term && raft.commit === commit && master!.gate.appliedIndex === commit && master!.node.height === leader.node.height && !raft.rejoining;
    });
    if (!agreed || validator === undefined) return agreed;
    // And the validation node's records have caught up: its last one on the chain covers every block
    // with news, or (unless strictValidationLiveness) it is carried by the tip, so that the chain
    // takes no record from it before another block comes (a record must cover a block after the
    // one that carried the previous one), and the news between stay unvalidated (validationLag).
    const record = recordOn(leader);
    recordsBehind = record.height < lastBusyHeight && (options.strictValidationLiveness === true || record.carriedAt < leader.node.height);
    return !recordsBehind;
  };

  const finalChecks = async (): Promise<number> => {
    checkLogMatching();
    // The masters, and the validation node: the whole chain, the same state.
    const masters = members.map((slot) => slot.master!);
    const reference = masters[0]!;
    const height = reference.node.height;
    const digest = toHex(reference.node.cache.digest());
    for (const [index, master] of masters.entries()) {
      if (master.node.height !== height) fail(`${members[index]!.name} is at height ${master.node.height}, ${slots[0]!.name} at ${height}`);
      if (toHex(master.node.cache.digest()) !== digest) fail(`${members[index]!.name}'s state digest differs from ${slots[0]!.name}'s`);
    }
    const located = new Map<string, Array<{ height: number; globalSequence: number; hashHex: string }>>();
    const records = validationRecords();
    for (let blockHeight = 1; blockHeight <= height; blockHeight++) {
      const bytes = await reference.node.store.getBlockBytes(blockHeight);
      if (bytes === undefined) {
        fail(`${slots[0]!.name} has no block ${blockHeight} below its tip ${height}`);
        break;
      }
      for (const [index, master] of masters.entries()) {
        if (index === 0) continue;
        const other = await master.node.store.getBlockBytes(blockHeight);
        if (other === undefined || !bytesEqual(other, bytes)) fail(`block ${blockHeight} differs between ${slots[0]!.name} and ${members[index]!.name}`);
      }
      const block = decodeBlock(bytes);
      records.block(blockHeight, block);
      for (const committed of block.messages) {
        const id = `${toHex(committed.message.device)}:${committed.message.nonce}`;
        const list = located.get(id) ?? [];
        list.push({ height: blockHeight, globalSequence: committed.globalSequence, hashHex: toHex(messageSigningHash(committed.message)) });
        located.set(id, list);
      }
    }
    for (const [id, list] of located) if (list.length > 1) fail(`${id} is in the chain ${list.length} times (heights ${list.map((item) => item.height).join(', ')})`);
    for (const write of writes) {
      const list = located.get(`${write.deviceHex}:${write.message.nonce}`) ?? [];
      const receipt = write.receipt!;
      if (list.length !== 1) {
        fail(`acknowledged ${write.label} (height ${receipt.height}, global ${receipt.globalSequence}) is in the chain ${list.length} times`);
        continue;
      }
      const at = list[0]!;
      if (at.hashHex !== write.hashHex) fail(`${write.label}'s nonce is in the chain with another message`);
      if (at.height !== receipt.height || at.globalSequence !== receipt.globalSequence) fail(`acknowledged ${write.label} was answered at height ${receipt.height}, global ${receipt.globalSequence}, and is at height ${at.height}, global ${at.globalSequence}`);
    }
    if (validator !== undefined) {
      records.end(masters);
      checkReportCount();
      checkBars();
    }
    return height;
  };

  /**
   * Every validation record on the chain, checked from the blocks alone (the chain checks them as it
   * executes them; this is a second opinion): only the validation node writes at
   * /kalima/validations, under its own id, with the height as nonce, a record for an earlier block
   * that names that block's hash, and a count of the blocks validated that grows by the heights
   * between its records. At the end, every node holds the last one.
   */
  const validationRecords = () => {
    const hashes: string[] = [''];
    let previous: { height: number; validated: number; body: Uint8Array | undefined } = { height: 0, validated: 0, body: undefined };
    const busy = new Set<number>();
    let count = 0;
    return {
      block: (height: number, block: ReturnType<typeof decodeBlock>): void => {
        hashes[height] = toHex(blockHash(block.header));
        if (block.messages.some((committed) => committed.message.address !== VALIDATIONS_ADDRESS)) busy.add(height);
        for (const { message } of block.messages) {
          if (message.address !== VALIDATIONS_ADDRESS) continue;
          count++;
          const where = `the validation record in block ${height} (nonce ${message.nonce})`;
          const device = toHex(message.device);
          if (validator === undefined || device !== validator.id) fail(`${where} is from ${nameOf(device)}, not from the validation node`);
          if (message.key !== device) fail(`${where} is under the key ${message.key.slice(0, 12)}, not its writer's id`);
          if (message.ttlSeconds !== -1) fail(`${where} expires`);
          const text = new TextDecoder().decode(message.body);
          let parsed: { height?: unknown; hash?: unknown; validated?: unknown } = {};
          try {
            parsed = JSON.parse(text) as typeof parsed;
          } catch {
            fail(`${where} is not JSON: ${text.slice(0, 80)}`);
            continue;
          }
          const { height: validatedHeight, hash, validated } = parsed;
          if (typeof validatedHeight !== 'number' || typeof hash !== 'string' || typeof validated !== 'number' || text !== `{"height":${validatedHeight},"hash":"${hash}","validated":${validated}}`) {
            fail(`${where} is not {"height":H,"hash":"…","validated":N}: ${text.slice(0, 120)}`);
            continue;
          }
          if (message.nonce !== validatedHeight) fail(`${where} validates height ${validatedHeight} with another nonce`);
          if (validatedHeight >= height) fail(`${where} validates height ${validatedHeight}, not a block before the one that carries it`);
          else if (hashes[validatedHeight] !== hash) fail(`${where} names ${hash.slice(0, 12)} for block ${validatedHeight}, which is ${hashes[validatedHeight]?.slice(0, 12)}`);
          if (validatedHeight <= previous.height) fail(`${where} validates height ${validatedHeight}, not after the previous record's ${previous.height}`);
          if (validated !== previous.validated + validatedHeight - previous.height) fail(`${where} counts ${validated} blocks validated; the previous record (height ${previous.height}) counted ${previous.validated}, so ${previous.validated + validatedHeight - previous.height} is due`);
          previous = { height: validatedHeight, validated, body: message.body };
        }
      },
      end: (nodes: readonly ClusterMaster[]): void => {
        stats.validationRecords = count;
        stats.validationLag = [...busy].filter((height) => height > previous.height).length;
        stats.validationStalled = stats.validationLag > 0 ? 1 : 0;
        for (const [index, node] of nodes.entries()) {
          const entry = node.node.cache.getEntry(VALIDATIONS_ADDRESS, validator!.id);
          if ((entry === undefined) !== (previous.body === undefined) || (entry !== undefined && !bytesEqual(entry.value, previous.body!))) fail(`${members[index]!.name} holds another validation record for v1 than the chain's last`);
        }
        trace(`validation: ${count} records on the chain, the last for height ${previous.height} (${previous.validated} validated) of ${hashes.length - 1}; ${stats.lateReports} late reports, ${stats.bars} bars`);
      },
    };
  };

  /** After a bar, a leader of a later term, and an entry of a later term committed; and no master bars the leader it follows. */
  const checkBars = (): void => {
    const leader = slots.find((slot) => slot.master?.runtime.raft.role === 'leader');
    if (leader === undefined) return;
    const { raft } = leader.master!.runtime;
    for (const bar of bars.values()) {
      if (raft.term <= bar.reportTerm || raft.termAt(raft.commit) <= bar.reportTerm) {
        fail(`liveness after a bar: ${nameOf(bar.id)} was barred for term ${bar.reportTerm}, and the cluster converged in term ${raft.term} with commit ${raft.commit} of term ${raft.termAt(raft.commit)}`);
      }
    }
    for (const slot of slots) {
      if (slot.master!.runtime.raft.isBarred(leader.id, raft.term)) fail(`${leader.name} leads term ${raft.term}, and ${slot.name} bars it from leading that term`);
    }
  };

  // ---- the run
  const previousSetTimeout = globalThis.setTimeout;
  activeTime = { time, count: 0 };
  globalThis.setTimeout = simulatedSetTimeout as typeof globalThis.setTimeout;
  const unhandled = (reason: unknown): void => fail(`unhandled rejection: ${describeError(reason)}`);
  process.on('unhandledRejection', unhandled);
  let height = 0;
  try {
    trace(`settings ${safeJson(settings)}`);
    for (const slot of members) start(slot, 'new chain').catch((error: unknown) => fail(`start: ${describeError(error)}`));
    faults().catch((error: unknown) => fail(`faults: ${describeError(error)}`));
    clients().catch((error: unknown) => fail(`clients: ${describeError(error)}`));
    time.after(settings.faultMs, () => {
      healing = true;
      cut = new Set();
      endFaults((what) => what.startsWith('cut'));
      trace('the faults stop: the network heals, every master comes back');
      for (const slot of members) if (slot.state === 'down') start(slot, 'heal').catch((error: unknown) => fail(`heal: ${describeError(error)}`));
    });
    let nextLogMatching = time.now + LOG_MATCHING_EVERY_MS;
    const hop = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));
    for (;;) {
      await hop();
      if (failure !== undefined) break;
      observe();
      if (time.now >= nextLogMatching) {
        nextLogMatching = time.now + LOG_MATCHING_EVERY_MS;
        checkLogMatching();
      }
      if (failure !== undefined) break;
      if (healing && converged()) {
        trace('converged');
        height = await finalChecks();
        break;
      }
      const timer = time.take();
      if (timer === undefined) {
        fail('nothing left to happen, and the cluster has not converged');
        break;
      }
      if (timer.at > deadline) {
        const describe = members.map((slot) => {
          const master = slot.master;
          if (master === undefined) return `${slot.name} ${slot.state}`;
          const { raft } = master.runtime;
          return `${slot.name} ${slot.state} ${raft.role} term ${raft.term} leader ${raft.leader === undefined ? '-' : nameOf(raft.leader)} log ${raft.firstIndex()}..${raft.lastIndex()} commit ${raft.commit} applied ${master.gate.appliedIndex} height ${master.node.height}${raft.rejoining ? ' rejoining' : ''}${master.runtime.isStopped ? ' STOPPED' : ''}`;
        }).join('; ');
        if (recordsBehind) {
          const leader = slots.find((slot) => slot.master?.runtime.raft.role === 'leader')!;
          const record = recordOn(leader.master!);
          fail(`validation liveness: ${settings.healMs} ms after the faults stopped, every node agrees, and the validation node's last record on the chain covers height ${record.height} (carried in block ${record.carriedAt}) while blocks up to ${lastBusyHeight} hold news: ${describe}`);
          break;
        }
        const barred = [...bars.values()].map((bar) => `${nameOf(bar.id)} barred for term ${bar.reportTerm}`).join(', ');
        fail(`liveness: ${settings.healMs} ms after the faults stopped, ${writes.length - acknowledged} of ${writes.length} writes are not acknowledged or the ${validator === undefined ? 'masters' : 'nodes'} disagree: ${describe}${barred === '' ? '' : `; ${barred}`}`);
        break;
      }
      time.now = Math.max(time.now, timer.at);
      time.fired++;
      try {
        timer.fn();
      } catch (error) {
        fail(`a timer's callback threw: ${describeError(error)}`);
      }
    }
  } finally {
    process.off('unhandledRejection', unhandled);
    globalThis.setTimeout = previousSetTimeout;
  }
  const globalTimers = activeTime.count;
  activeTime = undefined;
  traceHash.update(`deliveries ${deliveryHash}`);
  const disks = members.map((slot) => slot.disk);
  return {
    seed,
    ok: failure === undefined,
    ...(failure === undefined ? {} : { failure }),
    traceHash: traceHash.digest('hex'),
    virtualMs: Math.round(time.now - startedAt),
    timersFired: time.fired,
    terms: leaderOfTerm.size,
    writes: writes.length,
    acknowledged,
    height,
    inFlightLost: disks.reduce((sum, disk) => sum + disk.lostAtCrash, 0),
    inFlightKept: disks.reduce((sum, disk) => sum + disk.keptAtCrash, 0),
    globalTimers,
    errorLogs,
    errorLogCount,
    unexpectedRefusals,
    validatorSeeds: validator === undefined ? 0 : 1,
    lateReportNotes,
    settings: Object.fromEntries(Object.entries(settings).map(([key, value]) => [key, Math.round(value * 1000) / 1000])),
    ...stats,
  };
}

/** A delivered frame, for the trace: a Raft message, or a request or response between masters. */
function describeFrame(from: string, to: string, frame: Uint8Array, nameOf: (id: string) => string): string {
  const route = `${nameOf(from)}>${nameOf(to)}`;
  if (frame[0] === 0) {
    try {
      const message = decodeRaftMessage(frame.subarray(1));
      // Generically: the message kinds may grow (raft.ts).
      const fields = message as unknown as Record<string, unknown>;
      const detail = message.type === 'append'
        ? ` prev ${message.prevLogIndex}/${message.prevLogTerm} entries ${message.entries.length} commit ${message.commit}`
        : Object.entries(fields).filter(([key]) => !['type', 'from', 'to', 'term', 'entries'].includes(key)).map(([key, value]) => ` ${key} ${String(value)}`).join('');
      return `${route} ${message.type} t${message.term}${detail}`;
    } catch {
      return `${route} raft (undecodable)`;
    }
  }
  const id = frame.length >= 5 ? new DataView(frame.buffer, frame.byteOffset + 1, 4).getUint32(0) : -1;
  return `${route} ${frame[0] === 1 ? `request #${id} method ${frame[5]}` : `response #${id} ${frame[5] === 0 ? 'ok' : 'error'}`} (${frame.length} bytes)`;
}
