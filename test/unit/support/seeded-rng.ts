// A deterministic Rng for tests: SHA-256 in counter mode over a seed, so every key pair and
// auxiliary randomness a test draws replays from the seed that produced it.
import { createHash } from 'node:crypto';
import type { Rng } from '../../../src/ports.ts';

export function seededRng(seed: number | string): Rng {
  const seedBytes = new TextEncoder().encode(`kalima-test-rng/${seed}`);
  let counter = 0;
  let pool = new Uint8Array(0);
  return {
    bytes(length: number): Uint8Array {
      while (pool.length < length) {
        const counterBytes = new Uint8Array(8);
        new DataView(counterBytes.buffer).setBigUint64(0, BigInt(counter++));
        const block = new Uint8Array(createHash('sha256').update(seedBytes).update(counterBytes).digest());
        const next = new Uint8Array(pool.length + block.length);
        next.set(pool, 0);
        next.set(block, pool.length);
        pool = next;
      }
      const out = pool.slice(0, length);
      pool = pool.slice(length);
      return out;
    },
  };
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

export function unhex(text: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/i.test(text)) throw new Error(`test fixture: not hex: ${text}`);
  return new Uint8Array(Buffer.from(text, 'hex'));
}
