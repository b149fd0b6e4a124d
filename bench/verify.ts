// The machine's raw BIP-340 verification ceiling: libsecp256k1 as the node runs it (native, else
// WASM: src/ledger/bip340.js) on one thread and on every core, and tiny-secp256k1's WASM build and
// @noble/secp256k1 on one thread for comparison.
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import * as libsecp from 'tiny-secp256k1';
import { verifySchnorrNoble } from '../src/ledger/signature.ts';

const ITEM_BYTES = 128;

export interface VerifyRate {
  threads: number;
  verified: number;
  elapsedMs: number;
  /** Verifies per second of wall-clock time, all threads together: the measured ceiling. */
  perSecond: number;
  /** Verifies per CPU-second of one thread: what a core does when nothing else wants it. */
  perCpuSecond: number;
}

/** Pre-made signatures by `keyCount` keys over random 32-byte hashes, packed hash|pubkey|sig. */
export function makeSignatures(count: number, keyCount = 16): Uint8Array {
  const secretKeys: Uint8Array[] = [];
  while (secretKeys.length < keyCount) {
    const candidate = new Uint8Array(randomBytes(32));
    if (libsecp.isPrivate(candidate)) secretKeys.push(candidate);
  }
  const publicKeys = secretKeys.map((secretKey) => libsecp.xOnlyPointFromScalar(secretKey));
  const items = new Uint8Array(count * ITEM_BYTES);
  for (let item = 0; item < count; item++) {
    const hash = new Uint8Array(randomBytes(32));
    const signer = item % keyCount;
    items.set(hash, item * ITEM_BYTES);
    items.set(publicKeys[signer]!, item * ITEM_BYTES + 32);
    items.set(libsecp.signSchnorr(hash, secretKeys[signer]!, new Uint8Array(randomBytes(32))), item * ITEM_BYTES + 64);
  }
  return items;
}

/**
 * `threads` worker threads, each verifying its share of `items` until `durationMs` has passed, with
 * the node's backend ('node') or tiny-secp256k1's WASM build alone ('wasm').
 */
export async function libsecpVerifyRate(items: Uint8Array, threads: number, options: { durationMs: number; warmupMs: number }, backend: 'node' | 'wasm' = 'node'): Promise<VerifyRate> {
  const count = items.length / ITEM_BYTES;
  const share = Math.floor(count / threads);
  const workerUrl = new URL('./verify-worker.mjs', import.meta.url);
  const workers = Array.from({ length: threads }, (_, index) => new Worker(workerUrl, {
    workerData: { items: items.slice(index * share * ITEM_BYTES, (index + 1) * share * ITEM_BYTES), warmupMs: options.warmupMs, backend },
  }));
  try {
    const next = (worker: Worker): Promise<{ type: string; verified: number; elapsedMs: number; cpuMs: number; failures: number }> =>
      new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
    const ready = await Promise.all(workers.map(next));
    if (ready.some((message) => message.failures > 0)) throw new Error('a pre-made signature failed to verify');
    const done = Promise.all(workers.map(next));
    const start = performance.now();
    for (const worker of workers) worker.postMessage({ durationMs: options.durationMs });
    const results = await done;
    const wallMs = performance.now() - start;
    if (results.some((message) => message.failures > 0)) throw new Error('a pre-made signature failed to verify');
    const verified = results.reduce((sum, message) => sum + message.verified, 0);
    // Every thread runs for durationMs; dividing by the longest loop is the conservative rate.
    const longestMs = Math.max(...results.map((message) => message.elapsedMs));
    const cpuMs = results.reduce((sum, message) => sum + message.cpuMs, 0);
    return { threads, verified, elapsedMs: wallMs, perSecond: (verified * 1000) / longestMs, perCpuSecond: (verified * 1000) / cpuMs };
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
}

/** @noble/secp256k1's schnorr.verify on this thread: a small sample, it is much slower. */
export function nobleVerifyRate(items: Uint8Array, sample: number): VerifyRate {
  const count = Math.min(sample, items.length / ITEM_BYTES);
  const at = (item: number, from: number, to: number): Uint8Array => items.subarray(item * ITEM_BYTES + from, item * ITEM_BYTES + to);
  const verifyItem = (item: number): void => {
    if (!verifySchnorrNoble(at(item, 0, 32), at(item, 32, 64), at(item, 64, 128))) throw new Error('noble rejected a valid signature');
  };
  for (let item = 0; item < Math.min(count, 20); item++) verifyItem(item); // warm-up
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  for (let item = 0; item < count; item++) verifyItem(item);
  const elapsedMs = performance.now() - start;
  const cpu = process.cpuUsage(cpuBefore);
  return { threads: 1, verified: count, elapsedMs, perSecond: (count * 1000) / elapsedMs, perCpuSecond: (count * 1e6) / (cpu.user + cpu.system) };
}

export function coreCount(): number {
  return availableParallelism();
}
