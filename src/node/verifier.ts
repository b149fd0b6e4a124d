// Signature verification is this node's throughput ceiling, so it runs off the event loop: a pool
// of worker threads, one per core, each running libsecp256k1 (tiny-secp256k1's WASM build) over
// batches collected during one turn of the event loop.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
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

const ITEM_BYTES = 32 + 32 + 64;
const BATCH_MAX = 512;

interface PendingBatch {
  resolvers: Array<(valid: boolean) => void>;
  buffer: Uint8Array;
  count: number;
}

interface PoolWorker {
  worker: Worker;
  inFlight: Map<number, Array<(valid: boolean) => void>>;
  queuedItems: number;
}

export class WorkerPoolVerifier implements SignatureVerifier {
  private readonly workers: PoolWorker[] = [];
  private batch: PendingBatch | undefined;
  private nextBatchId = 1;
  private flushScheduled = false;
  private closed = false;

  constructor(threadCount = availableParallelism()) {
    const workerUrl = new URL('./verify-worker.js', import.meta.url);
    for (let index = 0; index < Math.max(1, threadCount); index++) {
      const entry: PoolWorker = { worker: new Worker(workerUrl), inFlight: new Map(), queuedItems: 0 };
      entry.worker.on('message', ({ id, results }: { id: number; results: Uint8Array }) => {
        const resolvers = entry.inFlight.get(id);
        if (resolvers === undefined) return;
        entry.inFlight.delete(id);
        entry.queuedItems -= resolvers.length;
        resolvers.forEach((resolve, item) => resolve(results[item] === 1));
      });
      entry.worker.on('error', (error) => {
        // A crashed verifier must not hang callers: fail what it held, closed or not.
        for (const resolvers of entry.inFlight.values()) for (const resolve of resolvers) resolve(false);
        entry.inFlight.clear();
        if (!this.closed) throw error;
      });
      entry.worker.unref();
      this.workers.push(entry);
    }
  }

  get threadCount(): number {
    return this.workers.length;
  }

  verify(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): Promise<boolean> {
    if (messageHash.length !== 32 || publicKey.length !== 32 || signature.length !== 64) return Promise.resolve(false);
    return new Promise((resolve) => {
      let batch = this.batch;
      if (batch === undefined) {
        batch = { resolvers: [], buffer: new Uint8Array(BATCH_MAX * ITEM_BYTES), count: 0 };
        this.batch = batch;
      }
      const offset = batch.count * ITEM_BYTES;
      batch.buffer.set(messageHash, offset);
      batch.buffer.set(publicKey, offset + 32);
      batch.buffer.set(signature, offset + 64);
      batch.count++;
      batch.resolvers.push(resolve);
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
    let target = this.workers[0]!;
    for (const candidate of this.workers) if (candidate.queuedItems < target.queuedItems) target = candidate;
    const id = this.nextBatchId++;
    target.inFlight.set(id, batch.resolvers);
    target.queuedItems += batch.count;
    const payload = batch.buffer.slice(0, batch.count * ITEM_BYTES);
    target.worker.postMessage({ id, count: batch.count, payload }, [payload.buffer]);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.flush();
    await Promise.all(this.workers.map((entry) => entry.worker.terminate()));
  }
}
