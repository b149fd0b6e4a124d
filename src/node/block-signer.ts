// Signing a block is two EC operations (sign, then the check of the fresh signature) and took about
// a tenth of the event loop's time: at a moderate load blocks hold a few messages each, and every
// block's signature sat in the commit latency of its messages. The node signs through this port:
// inline by default, or on a worker thread of its own when the config sets `signerThread` (on the
// 2-core bench machine that did not shorten the latency tail). The next block is built while one
// is being signed; blocks are written in order once signed.
import { Worker } from 'node:worker_threads';
import { kalimaError } from '../errors.ts';
import { type KeyPair, signSchnorr } from '../ledger/signature.ts';
import type { Rng } from '../ports.ts';

export interface BlockSigner {
  /** The node key's BIP-340 signature of a block hash, checked before it is returned. */
  sign(hash: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** Signs on the calling thread. */
export class InlineBlockSigner implements BlockSigner {
  constructor(private readonly key: KeyPair, private readonly rng: Rng) {}

  async sign(hash: Uint8Array): Promise<Uint8Array> {
    return signSchnorr(hash, this.key.secretKey, this.rng.bytes(32), this.key.publicKey);
  }

  async close(): Promise<void> {}
}

interface Waiter {
  resolve: (signature: Uint8Array) => void;
  reject: (error: unknown) => void;
}

/**
 * Signs on one worker thread, which holds a copy of the node key. It is idle but for a fraction of a
 * millisecond per block, so the scheduler runs it as soon as a block is ready. The auxiliary
 * randomness still comes from the node's injected Rng.
 */
export class WorkerBlockSigner implements BlockSigner {
  private worker: Worker;
  private readonly waiting = new Map<number, Waiter>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly key: KeyPair, private readonly rng: Rng) {
    this.worker = this.spawn();
  }

  private spawn(): Worker {
    const worker = new Worker(new URL('./sign-worker.js', import.meta.url), {
      workerData: { secretKey: this.key.secretKey.slice(), publicKey: this.key.publicKey.slice() },
    });
    worker.on('message', ({ id, signature, error }: { id: number; signature?: Uint8Array; error?: string }) => {
      const waiter = this.waiting.get(id);
      if (waiter === undefined) return;
      this.waiting.delete(id);
      if (signature !== undefined) waiter.resolve(signature);
      else waiter.reject(kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'block signing failed', cause: error }));
    });
    const fail = (cause: unknown): void => {
      const error = kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'the block signer thread stopped', cause: String(cause) });
      for (const waiter of this.waiting.values()) waiter.reject(error);
      this.waiting.clear();
      if (!this.closed) this.worker = this.spawn();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (!this.closed) fail(`exit code ${code}`);
    });
    worker.unref();
    return worker;
  }

  sign(hash: Uint8Array): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(kalimaError('KALIMA_ERR_NODE_STOPPING'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id, hash, aux: this.rng.bytes(32) });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const stopping = kalimaError('KALIMA_ERR_NODE_STOPPING');
    for (const waiter of this.waiting.values()) waiter.reject(stopping);
    this.waiting.clear();
    await this.worker.terminate();
  }
}
