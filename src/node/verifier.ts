// Signature verification is this node's throughput ceiling, so it runs off the event loop: a pool
// of worker threads, one per core, each running libsecp256k1 (tiny-secp256k1's WASM build) over
// batches collected during one turn of the event loop.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { verifySchnorr } from '../ledger/signature.ts';
import { kalimaError } from '../errors.ts';

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

const ITEM_BYTES = 32 + 32 + 64;
const BATCH_MAX = 512;
/** Items a worker may have queued (a few milliseconds of work) before the next worker is used. */
const WORKER_QUEUE_ROOM = 16;

interface Waiter {
  resolve: (valid: boolean) => void;
  reject: (error: unknown) => void;
}

interface PendingBatch {
  waiters: Waiter[];
  count: number;
}

interface PoolWorker {
  worker: Worker;
  inFlight: Map<number, Waiter[]>;
  queuedItems: number;
}

export class WorkerPoolVerifier implements SignatureVerifier {
  private readonly workers: PoolWorker[] = [];
  private batch: PendingBatch | undefined;
  /** Where the items of the batch being collected are laid out; one exact-size copy is sent. */
  private readonly staging = new Uint8Array(BATCH_MAX * ITEM_BYTES);
  private nextBatchId = 1;
  private flushScheduled = false;
  private closed = false;

  constructor(threadCount = availableParallelism()) {
    for (let index = 0; index < Math.max(1, threadCount); index++) this.workers.push(this.spawn());
  }

  private spawn(): PoolWorker {
    const entry: PoolWorker = { worker: new Worker(new URL('./verify-worker.js', import.meta.url)), inFlight: new Map(), queuedItems: 0 };
    entry.worker.on('message', ({ id, results }: { id: number; results: Uint8Array }) => {
      const waiters = entry.inFlight.get(id);
      if (waiters === undefined) return;
      entry.inFlight.delete(id);
      entry.queuedItems -= waiters.length;
      waiters.forEach((waiter, item) => waiter.resolve(results[item] === 1));
    });
    const fail = (cause: unknown): void => {
      // A lost verifier is the node's fault, not the message's: refuse with a retryable 503 (never
      // as a bad signature) and put a fresh worker in its place.
      const error = kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'a signature verifier thread stopped', cause: String(cause) });
      for (const waiters of entry.inFlight.values()) for (const waiter of waiters) waiter.reject(error);
      entry.inFlight.clear();
      const index = this.workers.indexOf(entry);
      if (!this.closed && index >= 0) this.workers[index] = this.spawn();
    };
    entry.worker.on('error', fail);
    entry.worker.on('exit', (code) => {
      if (!this.closed) fail(`exit code ${code}`);
    });
    entry.worker.unref();
    return entry;
  }

  verify(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): Promise<boolean> {
    if (messageHash.length !== 32 || publicKey.length !== 32 || signature.length !== 64) return Promise.resolve(false);
    if (this.closed) return Promise.reject(kalimaError('KALIMA_ERR_NODE_STOPPING'));
    return new Promise((resolve, reject) => {
      let batch = this.batch;
      if (batch === undefined) {
        batch = { waiters: [], count: 0 };
        this.batch = batch;
      }
      const offset = batch.count * ITEM_BYTES;
      this.staging.set(messageHash, offset);
      this.staging.set(publicKey, offset + 32);
      this.staging.set(signature, offset + 64);
      batch.count++;
      batch.waiters.push({ resolve, reject });
      if (batch.count === BATCH_MAX) this.flush();
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.batch;
    if (batch === undefined || batch.count === 0) return;
    this.batch = undefined;
    // The first worker with room takes the batch; the least loaded one when none has room. At a
    // moderate load the work stays on few threads, which then compete less with the event loop
    // for the cores; under full load every worker is busy either way.
    let target = this.workers.find((candidate) => candidate.queuedItems + batch.count <= WORKER_QUEUE_ROOM);
    if (target === undefined) {
      target = this.workers[0]!;
      for (const candidate of this.workers) if (candidate.queuedItems < target.queuedItems) target = candidate;
    }
    const id = this.nextBatchId++;
    target.inFlight.set(id, batch.waiters);
    target.queuedItems += batch.count;
    const payload = this.staging.slice(0, batch.count * ITEM_BYTES);
    target.worker.postMessage({ id, count: batch.count, payload }, [payload.buffer]);
  }

  async close(): Promise<void> {
    this.flush();
    this.closed = true;
    const stopping = kalimaError('KALIMA_ERR_NODE_STOPPING');
    for (const entry of this.workers) {
      for (const waiters of entry.inFlight.values()) for (const waiter of waiters) waiter.reject(stopping);
      entry.inFlight.clear();
    }
    await Promise.all(this.workers.map((entry) => entry.worker.terminate()));
  }
}
