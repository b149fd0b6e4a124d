// The aggregation tree over chain tips: its root against a from-scratch RFC 6962 reference, proofs
// for every leaf of every size, order independence, and the checks that must fail.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { type ChainTip, aggregationProof, aggregationRoot, sortTips, verifyAggregationProof } from '../../anchors/aggregate.ts';
import { TAG, sha256, taggedHash } from '../../src/ledger/hash.ts';

const tipOf = (name: string, height = 1): ChainTip => ({ chain: name, height, blockHash: sha256(new TextEncoder().encode(`${name}/${height}`)) });

/** RFC 6962 §2.1: MTH(D[n]) = H(MTH(D[0:k]) || MTH(D[k:n])), k the largest power of two below n. */
function referenceTreeRoot(leaves: readonly Uint8Array[]): Uint8Array {
  if (leaves.length === 1) return leaves[0]!;
  let split = 1;
  while (split * 2 < leaves.length) split *= 2;
  return taggedHash(TAG.anchorNode, referenceTreeRoot(leaves.slice(0, split)), referenceTreeRoot(leaves.slice(split)));
}

/** The anchored root: the leaf count (4 bytes big-endian), then the tree root. */
function referenceRoot(leaves: readonly Uint8Array[]): Uint8Array {
  return taggedHash(TAG.anchorRoot, Uint8Array.of(leaves.length >>> 24, (leaves.length >>> 16) & 0xff, (leaves.length >>> 8) & 0xff, leaves.length & 0xff), referenceTreeRoot(leaves));
}

describe('aggregation', () => {
  it('one chain: the root commits to its tip\'s block hash and a count of 1, and the path is empty', () => {
    const tip = tipOf('solo', 9);
    expect(aggregationRoot([tip])).toEqual(taggedHash(TAG.anchorRoot, Uint8Array.of(0, 0, 0, 1), tip.blockHash));
    expect(aggregationProof([tip], 'solo')).toEqual({ index: 0, leafCount: 1, path: [] });
  });

  it('leaves are sorted by the chain name\'s UTF-8 bytes, not by JavaScript string order', () => {
    // U+FF5E sorts before U+1F600 in UTF-16 code units (0xFF5E < 0xD83D is false; 0xD83D < 0xFF5E)
    // but after it in UTF-8 bytes (EF BD 9E < F0 9F 98 80).
    const sorted = sortTips([tipOf('\u{1F600}'), tipOf('\uFF5E'), tipOf('B'), tipOf('a')]).map((tip) => tip.chain);
    expect(sorted).toEqual(['B', 'a', '\uFF5E', '\u{1F600}']);
  });

  it('for 1 to 33 chains, the root matches the reference and every leaf proves, in any gathering order', () => {
    for (let count = 1; count <= 33; count++) {
      const tips = Array.from({ length: count }, (_, index) => tipOf(`chain-${String(index).padStart(2, '0')}`, index + 1));
      const root = aggregationRoot(tips);
      expect(root).toEqual(referenceRoot(tips.map((tip) => tip.blockHash)));
      expect(aggregationRoot([...tips].reverse())).toEqual(root);
      tips.forEach((tip, index) => {
        const proof = aggregationProof([...tips].reverse(), tip.chain);
        expect(proof.index).toBe(index);
        expect(verifyAggregationProof(tip.blockHash, proof, root)).toBe(true);
        // Another position or count fails, even where the RFC 6962 shape would be the same
        // (leaf 0 of 3 and of 4): the count is committed in the root.
        if (count > 1) expect(verifyAggregationProof(tip.blockHash, { ...proof, index: (index + 1) % count }, root)).toBe(false);
        expect(verifyAggregationProof(tip.blockHash, { ...proof, leafCount: count + 1 }, root)).toBe(false);
      });
    }
  });

  it('a tampered leaf, path hash or root fails', () => {
    fc.assert(fc.property(fc.integer({ min: 2, max: 40 }), fc.nat(), fc.nat(), (count, pick, bit) => {
      const tips = Array.from({ length: count }, (_, index) => tipOf(`c${index}`));
      const root = aggregationRoot(tips);
      const tip = tips[pick % count]!;
      const proof = aggregationProof(tips, tip.chain);
      const flip = (bytes: Uint8Array) => {
        const copy = bytes.slice();
        copy[(bit >> 3) % 32]! ^= 1 << (bit % 8);
        return copy;
      };
      const target = bit % (proof.path.length + 2);
      if (target < proof.path.length) {
        expect(verifyAggregationProof(tip.blockHash, { ...proof, path: proof.path.map((hash, index) => (index === target ? flip(hash) : hash)) }, root)).toBe(false);
      } else if (target === proof.path.length) {
        expect(verifyAggregationProof(flip(tip.blockHash), proof, root)).toBe(false);
      } else {
        expect(verifyAggregationProof(tip.blockHash, proof, flip(root))).toBe(false);
      }
    }), { numRuns: 300 });
  });

  it('nodes are domain-separated from txRoot nodes: the same leaves give another root than merkle.ts would', () => {
    const tips = [tipOf('a'), tipOf('b')];
    expect(referenceTreeRoot(tips.map((tip) => tip.blockHash))).not.toEqual(taggedHash(TAG.merkleNode, tips[0]!.blockHash, tips[1]!.blockHash));
    expect(aggregationRoot(tips)).toEqual(referenceRoot(tips.map((tip) => tip.blockHash)));
  });

  it('two tips of one chain, or none, are programmer errors', () => {
    expect(() => aggregationRoot([tipOf('x', 1), tipOf('x', 2)])).toThrow(/two tips of chain x/);
    expect(() => aggregationRoot([])).toThrow(/no tips/);
    expect(() => aggregationProof([tipOf('x')], 'y')).toThrow(/no tip of chain y/);
  });
});
