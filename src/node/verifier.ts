// Signature verification is this node's throughput ceiling, so it runs off the event loop, on a pool
// of worker threads (libsecp256k1, native or WASM: src/ledger/bip340.js) that share one queue.
//
// The queue is a ring in a SharedArrayBuffer. The event loop writes an item into the next slot and
// publishes it by advancing `tail`; any idle worker claims the item at `head` with a compare-and-swap,
// then takes the slot with a second one on its state (pending → owned by that worker). So no item is
// bound to a worker before that worker is running, and a slot has one owner whatever dies when.
//
// On a small machine the threads share the cores with the event loop, LevelDB and the clients, and a
// worker can be off its core for a scheduler tick or more: with per-worker batches, everything queued
// behind it waited as well; here another worker takes the rest. A worker reports the slots it
// finished in one message when the queue is empty or every `reportItems` items, so under full load
// the event loop sends no message at all and gets one per `reportItems` results.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { assert, kalimaError } from '../errors.ts';
import { verifySchnorr } from '../ledger/signature.ts';

export interface SignatureVerifier {
  verify(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): Promise<boolean>;
  close(): Promise<void>;
}

/** Verifies on the calling thread; for tests, simulation and tools. */
export class InlineVerifier implements SignatureVerifier {
  async verify(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): Promise<boolean> {
    return verifySchnorr(messageHash, publicKey, signature);
  }
  async close(): Promise<void> {}
}

/** The ring's layout; verify-worker.js receives it with its workerData. */
export const QUEUE_LAYOUT = {
  /** Slots in the ring; a power of two, so a wrapping 32-bit position maps onto a slot with a mask. */
  slots: 4096,
  itemBytes: 32 + 32 + 64,
  /** Int32 control words. */
  controlWords: 3,
  tail: 0,
  head: 1,
  stop: 2,
  /** Results a worker collects before it reports them while the queue still has items. */
  reportItems: 16,
  workersMax: 256,
  /** Items that may wait beyond the ring; more are refused with KALIMA_ERR_API_OVERLOADED. */
  overflowMax: 65_536,
  /** A worker that stops before it is ready this many times in a row takes the pool down. */
  startFailuresMax: 3,
  /**
   * Slot states. A worker moves a pending slot to ownedBase + its index, verifies the item and
   * writes valid or invalid; the event loop takes back a slot that a lost worker left (takenBack).
   */
  pending: 0,
  valid: 1,
  invalid: 2,
  takenBack: 3,
  ownedBase: 16,
} as const;

const SLOT_MASK = QUEUE_LAYOUT.slots - 1;
const CONTROL_WORDS = QUEUE_LAYOUT.controlWords;
const { pending: SLOT_PENDING, valid: SLOT_VALID, invalid: SLOT_INVALID, takenBack: SLOT_TAKEN_BACK, ownedBase: SLOT_OWNED_BASE } = QUEUE_LAYOUT;
const isAnswered = (state: number): boolean => state === SLOT_VALID || state === SLOT_INVALID;

interface Waiter {
  resolve: (valid: boolean) => void;
  reject: (error: unknown) => void;
}

interface Overflow extends Waiter {
  messageHash: Uint8Array;
  publicKey: Uint8Array;
  signature: Uint8Array;
}

export class WorkerPoolVerifier implements SignatureVerifier {
  private readonly control: Int32Array;
  private readonly states: Int32Array;
  private readonly items: Uint8Array;
  private readonly shared: SharedArrayBuffer;
  private readonly workers: Worker[] = [];
  /** The waiter of each slot's item, until its result is read. */
  private readonly waiters: Array<Waiter | undefined> = new Array(QUEUE_LAYOUT.slots).fill(undefined);
  /** Items published so far (its low 32 bits are the control word) and the oldest still unresolved. */
  private published = 0;
  private oldest = 0;
  /** Items that found the ring full, published in order as slots free up: overflow[overflowNext...]. */
  private overflow: Overflow[] = [];
  private overflowNext = 0;
  /** Workers in a row that stopped before they were ready; a ready worker resets it. */
  private startFailures = 0;
  private readonly respawnTimers = new Set<NodeJS.Timeout>();
  /** Set when the worker threads cannot start: every item is refused with it. */
  private broken: unknown;
  private closed = false;

  /** `workerUrl` is the worker's script; tests give a broken one to see the pool fail cleanly. */
  constructor(threadCount = availableParallelism(), private readonly workerUrl = new URL('./verify-worker.js', import.meta.url)) {
    const count = Math.min(QUEUE_LAYOUT.workersMax, Number.isFinite(threadCount) ? Math.max(1, Math.floor(threadCount)) : 1);
    const controlBytes = CONTROL_WORDS * 4;
    this.shared = new SharedArrayBuffer(controlBytes + QUEUE_LAYOUT.slots * 4 + QUEUE_LAYOUT.slots * QUEUE_LAYOUT.itemBytes);
    this.control = new Int32Array(this.shared, 0, CONTROL_WORDS);
    this.states = new Int32Array(this.shared, controlBytes, QUEUE_LAYOUT.slots);
    this.items = new Uint8Array(this.shared, controlBytes + QUEUE_LAYOUT.slots * 4);
    for (let index = 0; index < count; index++) this.workers.push(this.spawn(index));
  }

  private spawn(index: number): Worker {
    const worker = new Worker(this.workerUrl, { workerData: { shared: this.shared, index, layout: QUEUE_LAYOUT } });
    let ready = false;
    worker.on('message', (message: Int32Array | 'ready') => {
      if (message !== 'ready') this.resolveSlots(message);
      else {
        ready = true;
        this.startFailures = 0;
      }
    });
    let failed = false;
    const fail = (cause: unknown): void => {
      // 'error' is followed by 'exit': one failure.
      if (failed || this.workers[index] !== worker) return;
      failed = true;
      this.workerLost(index, cause);
      if (this.closed || this.broken !== undefined) return;
      if (ready) {
        this.respawn(index);
        return;
      }
      // A worker that cannot even start (a broken install, no memory) would fail again at once:
      // back off, and after a few in a row refuse everything rather than spin.
      this.startFailures++;
      if (this.startFailures >= QUEUE_LAYOUT.startFailuresMax) {
        this.breakPool(kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'the signature verifier threads cannot start', cause: String(cause) }));
        return;
      }
      const timer = setTimeout(() => {
        this.respawnTimers.delete(timer);
        if (!this.closed && this.broken === undefined) this.respawn(index);
      }, 100 * 2 ** (this.startFailures - 1));
      timer.unref();
      this.respawnTimers.add(timer);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (!this.closed) fail(`exit code ${code}`);
    });
    worker.unref();
    return worker;
  }

  private respawn(index: number): void {
    try {
      this.workers[index] = this.spawn(index);
    } catch (error) {
      this.breakPool(kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'a signature verifier thread cannot be started', cause: String(error) }));
    }
  }

  /** The pool cannot verify any more: everything waiting, and everything after, is refused. */
  private breakPool(error: unknown): void {
    this.broken = error;
    this.rejectAll(error);
  }

  private rejectAll(error: unknown): void {
    const overflow = this.overflow.slice(this.overflowNext);
    this.overflow = [];
    this.overflowNext = 0;
    for (const waiter of overflow) waiter.reject(error);
    for (let slot = 0; slot < QUEUE_LAYOUT.slots; slot++) {
      const waiter = this.waiters[slot];
      if (waiter === undefined) continue;
      this.waiters[slot] = undefined;
      waiter.reject(error);
    }
  }

  verify(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): Promise<boolean> {
    if (messageHash.length !== 32 || publicKey.length !== 32 || signature.length !== 64) return Promise.resolve(false);
    if (this.closed) return Promise.reject(kalimaError('KALIMA_ERR_NODE_STOPPING'));
    if (this.broken !== undefined) return Promise.reject(this.broken);
    const overflowing = this.overflow.length - this.overflowNext;
    if (overflowing >= QUEUE_LAYOUT.overflowMax) return Promise.reject(kalimaError('KALIMA_ERR_API_OVERLOADED', { verifying: QUEUE_LAYOUT.slots + overflowing }));
    return new Promise((resolve, reject) => {
      if (overflowing > 0 || this.published - this.oldest >= QUEUE_LAYOUT.slots) {
        this.overflow.push({ messageHash, publicKey, signature, resolve, reject });
      } else {
        this.publish(messageHash, publicKey, signature, { resolve, reject });
      }
    });
  }

  private publish(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array, waiter: Waiter): void {
    const slot = this.published & SLOT_MASK;
    assert(this.waiters[slot] === undefined, `verify queue: slot ${slot} reused before its result was read`);
    const offset = slot * QUEUE_LAYOUT.itemBytes;
    this.items.set(messageHash, offset);
    this.items.set(publicKey, offset + 32);
    this.items.set(signature, offset + 64);
    Atomics.store(this.states, slot, SLOT_PENDING);
    this.waiters[slot] = waiter;
    this.published++;
    // The store publishes the item's bytes (Atomics are sequentially consistent); the notify wakes
    // one waiting worker, if any waits.
    Atomics.store(this.control, QUEUE_LAYOUT.tail, this.published | 0);
    Atomics.notify(this.control, QUEUE_LAYOUT.tail, 1);
  }

  private resolveSlots(slots: Int32Array): void {
    for (const slot of slots) this.resolveIfAnswered(slot);
    this.advance();
  }

  /** Resolves the slot's waiter if a worker has answered it; says whether the slot is now free. */
  private resolveIfAnswered(slot: number): boolean {
    const waiter = this.waiters[slot];
    if (waiter === undefined) return true;
    const state = Atomics.load(this.states, slot);
    if (!isAnswered(state)) return false;
    this.waiters[slot] = undefined;
    waiter.resolve(state === SLOT_VALID);
    return true;
  }

  /** Moves `oldest` past resolved slots, and publishes what overflowed into the room made. */
  private advance(): void {
    while (this.oldest < this.published && this.waiters[this.oldest & SLOT_MASK] === undefined) this.oldest++;
    while (this.overflowNext < this.overflow.length && this.published - this.oldest < QUEUE_LAYOUT.slots && !this.closed) {
      const next = this.overflow[this.overflowNext++]!;
      this.publish(next.messageHash, next.publicKey, next.signature, next);
    }
    // Drop the published front now and then, not an element at a time (shift() is O(n)).
    if (this.overflowNext === this.overflow.length) {
      this.overflow = [];
      this.overflowNext = 0;
    } else if (this.overflowNext >= 4096 && this.overflowNext * 2 >= this.overflow.length) {
      this.overflow = this.overflow.slice(this.overflowNext);
      this.overflowNext = 0;
    }
  }

  /**
   * A worker stopped. Results it finished but had not reported are read from the ring. The item it
   * owned is refused with a retryable 503 (the node's fault, not the message's, and never a bad
   * signature), and so is an item it had claimed at `head` but not yet owned: taking such a slot
   * back with a compare-and-swap leaves it to nobody else. The rest of the queue is left to the
   * other workers and the replacement.
   */
  private workerLost(index: number, cause: unknown): void {
    const error = kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'a signature verifier thread stopped', cause: String(cause) });
    const head = Atomics.load(this.control, QUEUE_LAYOUT.head);
    const owned = SLOT_OWNED_BASE + index;
    for (let position = this.oldest; position < this.published; position++) {
      const slot = position & SLOT_MASK;
      if (this.resolveIfAnswered(slot)) continue;
      const waiter = this.waiters[slot]!;
      const state = Atomics.load(this.states, slot);
      // Claimed: behind `head` (positions wrap at 32 bits; their difference does not).
      const claimed = ((head - (position | 0)) | 0) > 0;
      const orphaned = state === owned || (state === SLOT_PENDING && claimed);
      if (orphaned && Atomics.compareExchange(this.states, slot, state, SLOT_TAKEN_BACK) === state) {
        this.waiters[slot] = undefined;
        waiter.reject(error);
      }
    }
    this.advance();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.respawnTimers) clearTimeout(timer);
    this.respawnTimers.clear();
    this.rejectAll(kalimaError('KALIMA_ERR_NODE_STOPPING'));
    Atomics.store(this.control, QUEUE_LAYOUT.stop, 1);
    Atomics.notify(this.control, QUEUE_LAYOUT.tail);
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}
