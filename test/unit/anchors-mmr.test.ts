// MMR inclusion proofs against the mmrRoot the node puts in its headers (src/ledger/mmr.ts), the
// in-memory index, and the persistent store with its lazy, crash-safe extension.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MmrIndex, mmrProofLength, verifyMmrProof } from '../../anchors/mmr.ts';
import { MmrStore } from '../../anchors/mmr-store.ts';
import { isKalimaError } from '../../src/errors.ts';
import { sha256 } from '../../src/ledger/hash.ts';
import { EMPTY_MMR, type MmrState, mmrAppend, mmrRoot } from '../../src/ledger/mmr.ts';
import type { KvOperation, KvStore } from '../../src/store/kv.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';

const leafOf = (index: number): Uint8Array => sha256(new TextEncoder().encode(`block-${index + 1}`));
const PREFIX = Uint8Array.of(0x42);

/** The node's roots: roots[n] is the mmrRoot of block n+1 (over the hashes of blocks 1 … n). */
function nodeRoots(count: number): Uint8Array[] {
  const roots = [mmrRoot(EMPTY_MMR)];
  let state: MmrState = EMPTY_MMR;
  for (let index = 0; index < count; index++) {
    state = mmrAppend(state, leafOf(index));
    roots.push(mmrRoot(state));
  }
  return roots;
}

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const copy = bytes.slice();
  copy[Math.floor(bit / 8) % copy.length]! ^= 1 << (bit % 8);
  return copy;
}

describe('MMR proofs against the header mmrRoot', () => {
  const roots = nodeRoots(70);
  const index = new MmrIndex();
  for (let leaf = 0; leaf < 70; leaf++) index.append(leafOf(leaf));

  it('the index computes the node\'s root for every leaf count from 1 to 70', () => {
    for (let count = 1; count <= 70; count++) expect(index.root(count)).toEqual(roots[count]);
  });

  it('every leaf of every MMR of 1 to 70 leaves proves against that root, and only at its own position', () => {
    for (let count = 1; count <= 70; count++) {
      for (let leaf = 0; leaf < count; leaf++) {
        const path = index.proof(leaf, count);
        expect(path.length).toBe(mmrProofLength(leaf, count));
        expect(verifyMmrProof(leafOf(leaf), leaf, count, path, roots[count]!)).toBe(true);
        // The same path claimed for a neighbour, for another leaf, under another count, fails.
        if (leaf + 1 < count) expect(verifyMmrProof(leafOf(leaf), leaf + 1, count, path, roots[count]!)).toBe(false);
        expect(verifyMmrProof(leafOf(leaf + 1), leaf, count, path, roots[count]!)).toBe(false);
        if (count < 70) expect(verifyMmrProof(leafOf(leaf), leaf, count + 1, path, roots[count + 1]!)).toBe(false);
      }
    }
  });

  it('path lengths stay within log2 n + popcount n', () => {
    for (let count = 1; count <= 70; count++) {
      for (let leaf = 0; leaf < count; leaf++) expect(mmrProofLength(leaf, count)).toBeLessThanOrEqual(Math.ceil(Math.log2(count)) + count.toString(2).split('1').length - 1);
    }
  });

  it('a flipped bit anywhere in the path, the leaf or the root fails', () => {
    fc.assert(fc.property(fc.integer({ min: 2, max: 70 }), fc.nat(), fc.nat(), (count, leafSeed, bit) => {
      const leaf = leafSeed % count;
      const path = index.proof(leaf, count);
      const pieces = [...path, leafOf(leaf), roots[count]!];
      const target = bit % pieces.length;
      const tampered = pieces.map((piece, position) => (position === target ? flipBit(piece, bit >> 3) : piece));
      expect(verifyMmrProof(tampered[path.length]!, leaf, count, tampered.slice(0, path.length), tampered[path.length + 1]!)).toBe(false);
    }), { numRuns: 300 });
  });

  it('a path of the wrong length, or a position outside the MMR, fails', () => {
    const path = index.proof(5, 40);
    expect(verifyMmrProof(leafOf(5), 5, 40, path.slice(0, -1), roots[40]!)).toBe(false);
    expect(verifyMmrProof(leafOf(5), 5, 40, [...path, path[0]!], roots[40]!)).toBe(false);
    expect(verifyMmrProof(leafOf(5), 40, 40, path, roots[40]!)).toBe(false);
    expect(verifyMmrProof(leafOf(5), -1, 40, path, roots[40]!)).toBe(false);
    expect(verifyMmrProof(leafOf(5), 5, 0, path, roots[40]!)).toBe(false);
  });

  it('property: for random sizes, a proof from the index verifies against the mmrAppend root', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 600 }), fc.nat(), (count, leafSeed) => {
      const leaves = Array.from({ length: count }, (_, position) => sha256(Uint8Array.of(position & 0xff, position >> 8, count & 0xff)));
      const built = new MmrIndex();
      let state: MmrState = EMPTY_MMR;
      for (const leaf of leaves) {
        built.append(leaf);
        state = mmrAppend(state, leaf);
      }
      const leaf = leafSeed % count;
      expect(verifyMmrProof(leaves[leaf]!, leaf, count, built.proof(leaf), mmrRoot(state))).toBe(true);
    }), { numRuns: 60 });
  });
});

/** A KvStore whose batches fail from the `failAt`-th on, as a process that dies mid-extension. */
class CrashingKv implements KvStore {
  batches = 0;
  constructor(private readonly inner: KvStore, private readonly failAt: number) {}
  get(key: Uint8Array) {
    return this.inner.get(key);
  }
  async batch(operations: KvOperation[], options: { sync: boolean }) {
    if (++this.batches >= this.failAt) throw new Error('crash');
    await this.inner.batch(operations, options);
  }
  entries(range: Parameters<KvStore['entries']>[0]) {
    return this.inner.entries(range);
  }
  close() {
    return this.inner.close();
  }
}

describe('MmrStore', () => {
  const chainLength = 300;
  const roots = nodeRoots(chainLength);
  const blockHashAt = async (height: number) => (height >= 1 && height <= chainLength ? leafOf(height - 1) : undefined);

  it('extends lazily to the tip a proof needs and answers block h under tip t', async () => {
    const kv = new MemoryKvStore();
    const store = await MmrStore.open({ kv, prefix: PREFIX, blockHashAt, batchLeaves: 16 });
    expect(store.leafCount).toBe(0);
    const answer = await store.proof(10, 101);
    expect(store.leafCount).toBe(100);
    expect(answer.mmrRoot).toEqual(roots[100]);
    expect(verifyMmrProof(leafOf(9), 9, 100, answer.path, roots[100]!)).toBe(true);
    // A proof under an earlier tip needs nothing new and still matches that tip's root.
    const earlier = await store.proof(3, 20);
    expect(store.leafCount).toBe(100);
    expect(verifyMmrProof(leafOf(2), 2, 19, earlier.path, roots[19]!)).toBe(true);
  });

  it('the block that is the tip has an empty path', async () => {
    const store = await MmrStore.open({ kv: new MemoryKvStore(), prefix: PREFIX, blockHashAt });
    const answer = await store.proof(57, 57);
    expect(answer.path).toEqual([]);
    expect(answer.mmrRoot).toEqual(roots[56]);
  });

  it('answers the same paths as the in-memory index for every block under tip 300', async () => {
    const index = new MmrIndex();
    for (let leaf = 0; leaf < chainLength; leaf++) index.append(leafOf(leaf));
    const store = await MmrStore.open({ kv: new MemoryKvStore(), prefix: PREFIX, blockHashAt, batchLeaves: 7 });
    for (let height = 1; height < chainLength; height++) expect((await store.proof(height, chainLength)).path).toEqual(index.proof(height - 1, chainLength - 1));
  });

  it('concurrent proofs extend once, in order', async () => {
    let reads = 0;
    const counting = async (height: number) => {
      reads++;
      return blockHashAt(height);
    };
    const store = await MmrStore.open({ kv: new MemoryKvStore(), prefix: PREFIX, blockHashAt: counting, batchLeaves: 8 });
    const answers = await Promise.all([store.proof(5, 200), store.proof(150, 250), store.proof(1, 100)]);
    expect(reads).toBe(249);
    expect(verifyMmrProof(leafOf(149), 149, 249, answers[1]!.path, roots[249]!)).toBe(true);
  });

  it('persists: a reopened store continues from where it was', async () => {
    const kv = new MemoryKvStore();
    await (await MmrStore.open({ kv, prefix: PREFIX, blockHashAt, batchLeaves: 32 })).extendTo(77);
    const reopened = await MmrStore.open({ kv, prefix: PREFIX, blockHashAt, batchLeaves: 32 });
    expect(reopened.leafCount).toBe(77);
    expect(verifyMmrProof(leafOf(76), 76, 199, (await reopened.proof(77, 200)).path, roots[199]!)).toBe(true);
  });

  it('a crash in the middle of an extension leaves a prefix that the next extension completes', async () => {
    const memory = new MemoryKvStore();
    for (let failAt = 1; failAt <= 6; failAt++) {
      const crashing = new CrashingKv(memory, failAt);
      const store = await MmrStore.open({ kv: crashing, prefix: Uint8Array.of(0x50 + failAt), blockHashAt, batchLeaves: 10 });
      await expect(store.extendTo(55)).rejects.toThrow('crash');
      // The object stays as the disk is, and so does a reopened one.
      expect(store.leafCount).toBe((failAt - 1) * 10);
      const reopened = await MmrStore.open({ kv: memory, prefix: Uint8Array.of(0x50 + failAt), blockHashAt, batchLeaves: 10 });
      expect(reopened.leafCount).toBe((failAt - 1) * 10);
      await reopened.extendTo(55);
      expect(await reopened.root(55)).toEqual(roots[55]);
      expect(verifyMmrProof(leafOf(41), 41, 55, (await reopened.proof(42, 56)).path, roots[55]!)).toBe(true);
    }
  });

  it('a store built from another chain is detected when it is opened', async () => {
    const kv = new MemoryKvStore();
    await (await MmrStore.open({ kv, prefix: PREFIX, blockHashAt })).extendTo(40);
    const otherChain = async (height: number) => sha256(new TextEncoder().encode(`other-${height}`));
    const error = await MmrStore.open({ kv, prefix: PREFIX, blockHashAt: otherChain }).catch((caught: unknown) => caught);
    expect(isKalimaError(error, 'KALIMA_ERR_STORE_CORRUPT')).toBe(true);
    // A chain shorter than the store (the store outlived a reset chain) too.
    const shorter = async (height: number) => (height <= 30 ? leafOf(height - 1) : undefined);
    expect(isKalimaError(await MmrStore.open({ kv, prefix: PREFIX, blockHashAt: shorter }).catch((caught: unknown) => caught), 'KALIMA_ERR_STORE_CORRUPT')).toBe(true);
  });

  it('a lost peak node is detected when the store is opened', async () => {
    const kv: KvStore = new MemoryKvStore();
    await (await MmrStore.open({ kv, prefix: PREFIX, blockHashAt })).extendTo(48);
    // 48 leaves: peaks (5, 0) and (4, 2).
    await kv.batch([{ type: 'del', key: Uint8Array.of(...PREFIX, 4, 0, 0, 0, 0, 0, 0, 0, 2) }], { sync: false });
    const error = await MmrStore.open({ kv, prefix: PREFIX, blockHashAt }).catch((caught: unknown) => caught);
    expect(isKalimaError(error, 'KALIMA_ERR_STORE_CORRUPT')).toBe(true);
  });

  it('a tip beyond the chain is KALIMA_ERR_LEDGER_NOT_FOUND, and the store keeps what it had', async () => {
    const store = await MmrStore.open({ kv: new MemoryKvStore(), prefix: PREFIX, blockHashAt, batchLeaves: 100 });
    const error = await store.proof(5, chainLength + 50).catch((caught: unknown) => caught);
    expect(isKalimaError(error, 'KALIMA_ERR_LEDGER_NOT_FOUND')).toBe(true);
    expect(store.leafCount).toBe(chainLength);
    expect(verifyMmrProof(leafOf(4), 4, chainLength - 1, (await store.proof(5, chainLength)).path, roots[chainLength - 1]!)).toBe(true);
  });
});
