// A pool of threads that pre-sign benchmark messages, so no signing happens while a run is timed.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { KeyPair } from '../src/ledger/signature.ts';
import { toHex } from '../src/ledger/hash.ts';

export interface SignerOptions {
  chain: string;
  address: string;
  devices: KeyPair[];
  bodyBytes: number;
  /** Each device cycles over this many keys at the address, so the MemCache stays bounded. */
  keysPerDevice: number;
  threads?: number;
}

export class MessageSigner {
  private readonly workers: Worker[];
  private readonly ready: Promise<unknown>;
  private nextId = 1;
  /** The index of the next message never handed out: indexes, and so nonces, are never reused. */
  private nextIndex = 0;

  constructor(options: SignerOptions) {
    const workerUrl = new URL('./sign-worker.mjs', import.meta.url);
    const workerData = {
      chain: options.chain, address: options.address, bodyBytes: options.bodyBytes, keysPerDevice: options.keysPerDevice,
      devices: options.devices.map((device) => ({ secretKey: toHex(device.secretKey), publicKey: toHex(device.publicKey) })),
    };
    this.workers = Array.from({ length: Math.max(1, options.threads ?? availableParallelism()) }, () => new Worker(workerUrl, { workerData }));
    this.ready = Promise.all(this.workers.map((worker) => new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    })));
  }

  /** `count` fresh messages as JSON strings, in nonce order per device. */
  async sign(count: number): Promise<string[]> {
    await this.ready;
    const start = this.nextIndex;
    this.nextIndex += count;
    const share = Math.ceil(count / this.workers.length);
    const parts = await Promise.all(this.workers.map((worker, index) => {
      const partStart = start + index * share;
      const partCount = Math.max(0, Math.min(share, start + count - partStart));
      if (partCount === 0) return Promise.resolve([] as string[]);
      const id = this.nextId++;
      return new Promise<string[]>((resolve, reject) => {
        const onMessage = (message: { id: number; messages: string[] }): void => {
          if (message.id !== id) return;
          worker.off('message', onMessage);
          worker.off('error', reject);
          resolve(message.messages);
        };
        worker.on('message', onMessage);
        worker.once('error', reject);
        worker.postMessage({ id, start: partStart, count: partCount });
      });
    }));
    return parts.flat();
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}

/**
 * Pre-signed messages for the timed runs, in nonce order: take() signs what is missing (before
 * the run starts), giveBack() puts what a run did not send back at the front for the next one.
 */
export class PresignedQueue {
  private queue: string[] = [];
  private signingMs = 0;
  private signed = 0;

  constructor(private readonly signer: MessageSigner, private readonly log: (line: string) => void) {}

  async take(count: number): Promise<string[]> {
    if (this.queue.length < count) {
      const need = count - this.queue.length;
      this.log(`  signing ${need.toLocaleString('en-US')} messages`);
      const start = performance.now();
      this.queue = this.queue.concat(await this.signer.sign(need));
      this.signingMs += performance.now() - start;
      this.signed += need;
    }
    return this.queue.splice(0, count);
  }

  giveBack(messages: string[]): void {
    this.queue = messages.concat(this.queue);
  }

  /** Messages signed per second of signing so far. */
  get signingPerSecond(): number {
    return (this.signed * 1000) / Math.max(1, this.signingMs);
  }
}
