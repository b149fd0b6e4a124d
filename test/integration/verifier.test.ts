// The worker-pool verifier: real worker threads over the shared ring, cross-checked against
// @noble/secp256k1 on the main thread.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { generateKeyPair, signSchnorr, verifySchnorrNoble } from '../../src/ledger/signature.ts';
import { QUEUE_LAYOUT, WorkerPoolVerifier } from '../../src/node/verifier.ts';
import { seededRng } from '../support/chain.ts';

interface Case {
  hash: Uint8Array;
  publicKey: Uint8Array;
  signature: Uint8Array;
  /** What @noble/secp256k1 says. */
  valid: boolean;
}

/** Signatures by a few keys, one in three damaged in the hash, the key or the signature. */
function makeCases(count: number, seed: string): Case[] {
  const rng = seededRng(seed);
  const keys = Array.from({ length: 4 }, () => generateKeyPair(rng));
  const offCurve = new Uint8Array(32).fill(0xff); // above the field size: not an x coordinate
  return Array.from({ length: count }, (_, index) => {
    const key = keys[index % keys.length]!;
    const hash = rng.bytes(32);
    let signature = signSchnorr(hash, key.secretKey, rng.bytes(32), key.publicKey);
    let publicKey = key.publicKey;
    let signedHash = hash;
    switch (index % 6) {
      case 1: signature = signature.slice(); signature[index % 64]! ^= 1; break;
      case 3: publicKey = keys[(index + 1) % keys.length]!.publicKey; break;
      case 5: signedHash = hash.slice(); signedHash[0]! ^= 0x80; break;
      default: if (index % 50 === 7) publicKey = offCurve;
    }
    return { hash: signedHash, publicKey, signature, valid: verifySchnorrNoble(signedHash, publicKey, signature) };
  });
}

const workersOf = (verifier: WorkerPoolVerifier): Worker[] => (verifier as unknown as { workers: Worker[] }).workers;

let open: WorkerPoolVerifier[] = [];
const pool = (threads: number): WorkerPoolVerifier => {
  const verifier = new WorkerPoolVerifier(threads);
  open.push(verifier);
  return verifier;
};
afterEach(async () => {
  await Promise.all(open.map((verifier) => verifier.close()));
  open = [];
});

describe('WorkerPoolVerifier', () => {
  it('gives every item its own result, as noble does, with valid and invalid items mixed', async () => {
    const cases = makeCases(300, 'mixed');
    expect(cases.some((item) => item.valid) && cases.some((item) => !item.valid)).toBe(true);
    const verifier = pool(2);
    const results = await Promise.all(cases.map((item) => verifier.verify(item.hash, item.publicKey, item.signature)));
    expect(results).toEqual(cases.map((item) => item.valid));
  });

  it('answers false for items of the wrong sizes without queueing them', async () => {
    const verifier = pool(1);
    const [item] = makeCases(1, 'sizes');
    await expect(verifier.verify(item!.hash.subarray(1), item!.publicKey, item!.signature)).resolves.toBe(false);
    await expect(verifier.verify(item!.hash, item!.publicKey.subarray(1), item!.signature)).resolves.toBe(false);
    await expect(verifier.verify(item!.hash, item!.publicKey, new Uint8Array(65))).resolves.toBe(false);
    await expect(verifier.verify(item!.hash, item!.publicKey, item!.signature)).resolves.toBe(true);
  });

  it('takes more items than the ring holds and still answers each one correctly', async () => {
    const distinct = makeCases(64, 'overflow');
    const total = QUEUE_LAYOUT.slots + 700;
    const verifier = pool(2);
    const results = await Promise.all(Array.from({ length: total }, (_, index) => {
      const item = distinct[index % distinct.length]!;
      return verifier.verify(item.hash, item.publicKey, item.signature);
    }));
    expect(results).toEqual(Array.from({ length: total }, (_, index) => distinct[index % distinct.length]!.valid));
    // The ring wrapped round and keeps working.
    const again = makeCases(20, 'after-wrap');
    expect(await Promise.all(again.map((item) => verifier.verify(item.hash, item.publicKey, item.signature)))).toEqual(again.map((item) => item.valid));
  });

  it('keeps verifying with one thread as well as many', async () => {
    const cases = makeCases(60, 'threads');
    for (const threads of [1, 3]) {
      const verifier = pool(threads);
      expect(await Promise.all(cases.map((item) => verifier.verify(item.hash, item.publicKey, item.signature)))).toEqual(cases.map((item) => item.valid));
    }
  });

  it('when its only worker thread dies, refuses at most the item it held with a retryable code, and a replacement answers the rest', async () => {
    const cases = makeCases(120, 'crash');
    const verifier = pool(1);
    const work = Array.from({ length: 1_500 }, (_, index) => cases[index % cases.length]!);
    const pending = work.map((item) => verifier.verify(item.hash, item.publicKey, item.signature));
    const settled = Promise.allSettled(pending);
    const dead = workersOf(verifier)[0]!;
    await dead.terminate();
    const outcomes = await settled;
    expect(workersOf(verifier)[0]).not.toBe(dead);
    const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(refused.length).toBeLessThanOrEqual(1);
    for (const outcome of refused) expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY' });
    outcomes.forEach((outcome, index) => {
      if (outcome.status === 'fulfilled') expect(outcome.value).toBe(work[index]!.valid);
    });
    // Most of the work was still queued when the thread died: only the replacement can have done it.
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled').length).toBeGreaterThan(1_000);
    const after = await Promise.all(cases.map((item) => verifier.verify(item.hash, item.publicKey, item.signature)));
    expect(after).toEqual(cases.map((item) => item.valid));
  });

  it('refuses an item a lost worker had claimed but not yet taken, instead of leaving it waiting for ever', async () => {
    const [item] = makeCases(1, 'orphan');
    const verifier = pool(1);
    await expect(verifier.verify(item!.hash, item!.publicKey, item!.signature)).resolves.toBe(true);
    // The state a worker leaves when it dies between its claim at `head` and taking the slot: the
    // next position is claimed, and no worker owns it.
    const control = (verifier as unknown as { control: Int32Array }).control;
    Atomics.add(control, QUEUE_LAYOUT.head, 1);
    const orphan = verifier.verify(item!.hash, item!.publicKey, item!.signature);
    const outcome = Promise.race([orphan.then(() => 'answered', () => 'refused'), new Promise((resolve) => setTimeout(() => resolve('waiting'), 100))]);
    expect(await outcome).toBe('waiting');
    const settled = orphan.catch((error: unknown) => error);
    await workersOf(verifier)[0]!.terminate();
    expect(await settled).toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY' });
    // The replacement takes the queue from there.
    await expect(verifier.verify(item!.hash, item!.publicKey, item!.signature)).resolves.toBe(true);
  });

  it('refuses everything with a retryable code when its worker threads cannot start, instead of respawning them for ever', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'kalima-verifier-'));
    const broken = join(directory, 'broken-worker.mjs');
    await writeFile(broken, "throw new Error('a broken install');\n");
    const verifier = new WorkerPoolVerifier(2, pathToFileURL(broken));
    open.push(verifier);
    const [item] = makeCases(1, 'broken');
    const started = performance.now();
    await expect(verifier.verify(item!.hash, item!.publicKey, item!.signature)).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY', details: { reason: 'the signature verifier threads cannot start' } });
    // Three failed starts in a row with backoff between them, then it gives up.
    expect(performance.now() - started).toBeLessThan(5_000);
    await expect(verifier.verify(item!.hash, item!.publicKey, item!.signature)).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY' });
  });

  it('refuses an item with API_OVERLOADED once the ring and the overflow behind it are full', async () => {
    const [item] = makeCases(1, 'bounded');
    const verifier = pool(1);
    const room = QUEUE_LAYOUT.slots + QUEUE_LAYOUT.overflowMax;
    const queued = Array.from({ length: room }, () => verifier.verify(item!.hash, item!.publicKey, item!.signature).catch((error: unknown) => error));
    await expect(verifier.verify(item!.hash, item!.publicKey, item!.signature)).rejects.toMatchObject({ code: 'KALIMA_ERR_API_OVERLOADED' });
    await verifier.close();
    const outcomes = await Promise.all(queued);
    expect(outcomes.filter((outcome) => (outcome as { code?: string }).code === 'KALIMA_ERR_API_OVERLOADED')).toHaveLength(0);
  });

  it('on close refuses what is still queued and everything after, with NODE_STOPPING', async () => {
    const cases = makeCases(30, 'close');
    const verifier = pool(1);
    const pending = Array.from({ length: 3_000 }, (_, index) => {
      const item = cases[index % cases.length]!;
      return verifier.verify(item.hash, item.publicKey, item.signature);
    });
    const settled = Promise.allSettled(pending);
    await verifier.close();
    const outcomes = await settled;
    expect(outcomes.some((outcome) => outcome.status === 'rejected' && (outcome.reason as { code?: string }).code === 'KALIMA_ERR_NODE_STOPPING')).toBe(true);
    await expect(verifier.verify(cases[0]!.hash, cases[0]!.publicKey, cases[0]!.signature)).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_STOPPING' });
  });
});
