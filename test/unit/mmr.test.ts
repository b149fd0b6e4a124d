import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TAG, sha256, taggedHash } from '../../src/ledger/hash.ts';
import { EMPTY_MMR, EMPTY_MMR_ROOT, type MmrState, mmrAppend, mmrNodeHash, mmrRoot, popcount } from '../../src/ledger/mmr.ts';
import { hex } from './support/seeded-rng.ts';

const leafOf = (index: number): Uint8Array => sha256(new TextEncoder().encode(`block-${index}`));
const node = (left: Uint8Array, right: Uint8Array): Uint8Array => taggedHash(TAG.mmrNode, left, right);

function perfectRoot(hashes: readonly Uint8Array[]): Uint8Array {
  if (hashes.length === 1) return hashes[0]!;
  const half = hashes.length / 2;
  return node(perfectRoot(hashes.slice(0, half)), perfectRoot(hashes.slice(half)));
}

/** The peaks from scratch: one perfect subtree per set bit of the leaf count, largest (leftmost) first. */
function referencePeaks(leafHashes: readonly Uint8Array[]): Uint8Array[] {
  const peaks: Uint8Array[] = [];
  let start = 0;
  for (let bit = 52; bit >= 0; bit--) {
    const width = 2 ** bit;
    if (Math.floor(leafHashes.length / width) % 2 === 1) {
      peaks.push(perfectRoot(leafHashes.slice(start, start + width)));
      start += width;
    }
  }
  return peaks;
}

/** Bag the peaks right to left: root = bag(p0, bag(p1, ... p_last)). */
function referenceRoot(leafHashes: readonly Uint8Array[]): Uint8Array {
  const peaks = referencePeaks(leafHashes);
  if (peaks.length === 0) return new Uint8Array(32);
  return peaks.reduceRight((right, left) => taggedHash(TAG.mmrBag, left, right));
}

function build(leafHashes: readonly Uint8Array[]): MmrState {
  return leafHashes.reduce<MmrState>((state, leaf) => mmrAppend(state, leaf), EMPTY_MMR);
}

describe('popcount', () => {
  it.each([
    { value: 0, bits: 0 }, { value: 1, bits: 1 }, { value: 2, bits: 1 }, { value: 3, bits: 2 }, { value: 7, bits: 3 },
    { value: 8, bits: 1 }, { value: 255, bits: 8 }, { value: 2 ** 32, bits: 1 }, { value: 2 ** 32 + 1, bits: 2 },
    { value: Number.MAX_SAFE_INTEGER, bits: 53 },
  ])('popcount($value) = $bits', ({ value, bits }) => {
    expect(popcount(value)).toBe(bits);
  });

  it('counts the ones of the binary representation', () => {
    fc.assert(fc.property(fc.maxSafeNat(), (value) => {
      expect(popcount(value)).toBe([...value.toString(2)].filter((digit) => digit === '1').length);
    }));
  });
});

describe('mmrAppend and mmrRoot', () => {
  const leafHashes = Array.from({ length: 130 }, (_, index) => leafOf(index));

  it('matches the perfect-subtree reference for every leaf count from 0 to 130', () => {
    let state = EMPTY_MMR;
    for (let count = 0; count <= leafHashes.length; count++) {
      const prefix = leafHashes.slice(0, count);
      expect(state.leafCount).toBe(count);
      expect(state.peaks.length, `count ${count}`).toBe(popcount(count));
      expect(state.peaks.map(hex), `count ${count}`).toEqual(referencePeaks(prefix).map(hex));
      expect(hex(mmrRoot(state)), `count ${count}`).toBe(hex(referenceRoot(prefix)));
      if (count < leafHashes.length) state = mmrAppend(state, leafHashes[count]!);
    }
  });

  it('small ranges have the expected shape', () => {
    const [a, b, c, d, e] = leafHashes as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    const bag = (left: Uint8Array, right: Uint8Array): Uint8Array => taggedHash(TAG.mmrBag, left, right);
    const rows: Array<{ leaves: Uint8Array[]; root: Uint8Array }> = [
      { leaves: [], root: new Uint8Array(32) },
      { leaves: [a], root: a },
      { leaves: [a, b], root: mmrNodeHash(a, b) },
      { leaves: [a, b, c], root: bag(mmrNodeHash(a, b), c) },
      { leaves: [a, b, c, d], root: mmrNodeHash(mmrNodeHash(a, b), mmrNodeHash(c, d)) },
      { leaves: [a, b, c, d, e], root: bag(mmrNodeHash(mmrNodeHash(a, b), mmrNodeHash(c, d)), e) },
    ];
    for (const row of rows) expect(hex(mmrRoot(build(row.leaves))), `${row.leaves.length} leaves`).toBe(hex(row.root));
    expect(mmrRoot(EMPTY_MMR)).toEqual(EMPTY_MMR_ROOT);
    expect(EMPTY_MMR_ROOT).toEqual(new Uint8Array(32));
  });

  it('matches the reference for arbitrary leaf hashes', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 70 }), (hashes) => {
      const state = build(hashes);
      expect(state.peaks.length).toBe(popcount(hashes.length));
      expect(hex(mmrRoot(state))).toBe(hex(referenceRoot(hashes)));
    }), { numRuns: 100 });
  });

  it('does not change the state it appends to', () => {
    const before = build(leafHashes.slice(0, 7));
    const peaksBefore = before.peaks.map(hex);
    const after = mmrAppend(before, leafHashes[7]!);
    expect(before.leafCount).toBe(7);
    expect(before.peaks.map(hex)).toEqual(peaksBefore);
    expect(after.leafCount).toBe(8);
    expect(after.peaks).toHaveLength(1);
  });

  it('the root commits to the order and to every leaf', () => {
    const hashes = leafHashes.slice(0, 11);
    const root = hex(mmrRoot(build(hashes)));
    const swapped = [...hashes];
    [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
    expect(hex(mmrRoot(build(swapped)))).not.toBe(root);
    for (let index = 0; index < hashes.length; index++) {
      const changed = [...hashes];
      changed[index] = leafOf(1000 + index);
      expect(hex(mmrRoot(build(changed))), `leaf ${index}`).not.toBe(root);
    }
  });
});
