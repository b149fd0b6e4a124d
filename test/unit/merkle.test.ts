import { describe, expect, it } from 'vitest';
import { TAG, taggedHash } from '../../src/ledger/hash.ts';
import { EMPTY_MERKLE_ROOT, merkleLeafHash, merkleProof, merkleRoot, verifyMerkleProof } from '../../src/ledger/merkle.ts';
import { hex } from './support/seeded-rng.ts';

const MAX_SIZE = 40;
const leaves = Array.from({ length: MAX_SIZE }, (_, index) => merkleLeafHash(new TextEncoder().encode(`leaf-${index}`)));
const node = (left: Uint8Array, right: Uint8Array): Uint8Array => taggedHash(TAG.merkleNode, left, right);

/** RFC 6962 §2.1: MTH(D[n]) = HASH(MTH(D[0:k]) || MTH(D[k:n])), k the largest power of two < n. */
function referenceRoot(hashes: readonly Uint8Array[]): Uint8Array {
  if (hashes.length === 1) return hashes[0]!;
  let k = 1;
  while (k * 2 < hashes.length) k *= 2;
  return node(referenceRoot(hashes.slice(0, k)), referenceRoot(hashes.slice(k)));
}

/** The side each audit-path sibling sits on, from the leaf up, for leaf `index` of `size`. */
function referenceSides(index: number, size: number): Array<'left' | 'right'> {
  if (size === 1) return [];
  let k = 1;
  while (k * 2 < size) k *= 2;
  return index < k ? [...referenceSides(index, k), 'right'] : [...referenceSides(index - k, size - k), 'left'];
}

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  out[bit >> 3] = out[bit >> 3]! ^ (1 << (bit & 7));
  return out;
}

describe('merkleRoot', () => {
  const [l0, l1, l2, l3, l4, l5, l6] = leaves as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  const shapes: Array<{ size: number; shape: string; root: Uint8Array }> = [
    { size: 1, shape: 'l0', root: l0 },
    { size: 2, shape: '(l0 l1)', root: node(l0, l1) },
    { size: 3, shape: '((l0 l1) l2)', root: node(node(l0, l1), l2) },
    { size: 4, shape: '((l0 l1) (l2 l3))', root: node(node(l0, l1), node(l2, l3)) },
    { size: 5, shape: '(((l0 l1) (l2 l3)) l4)', root: node(node(node(l0, l1), node(l2, l3)), l4) },
    { size: 6, shape: '(((l0 l1) (l2 l3)) (l4 l5))', root: node(node(node(l0, l1), node(l2, l3)), node(l4, l5)) },
    { size: 7, shape: '(((l0 l1) (l2 l3)) ((l4 l5) l6))', root: node(node(node(l0, l1), node(l2, l3)), node(node(l4, l5), l6)) },
  ];

  it.each(shapes)('a tree of $size has the shape $shape (an odd leaf is promoted, never duplicated)', ({ size, root }) => {
    expect(hex(merkleRoot(leaves.slice(0, size)))).toBe(hex(root));
  });

  it('matches the RFC 6962 recursion for every size up to 40', () => {
    for (let size = 1; size <= MAX_SIZE; size++) {
      expect(hex(merkleRoot(leaves.slice(0, size))), `size ${size}`).toBe(hex(referenceRoot(leaves.slice(0, size))));
    }
  });

  it('the empty tree has the node-tagged hash of nothing as its root', () => {
    expect(merkleRoot([])).toEqual(taggedHash(TAG.merkleNode));
    expect(EMPTY_MERKLE_ROOT).toEqual(merkleRoot([]));
  });

  it('distinct sizes give distinct roots: no duplicated-leaf ambiguity (CVE-2012-2459)', () => {
    const roots = new Set<string>();
    for (let size = 0; size <= MAX_SIZE; size++) roots.add(hex(merkleRoot(leaves.slice(0, size))));
    expect(roots.size).toBe(MAX_SIZE + 1);
    // Bitcoin's tree would give [a, b, c] and [a, b, c, c] the same root.
    expect(hex(merkleRoot([l0, l1, l2]))).not.toBe(hex(merkleRoot([l0, l1, l2, l2])));
  });

  it('leaf and node hashes are domain-separated', () => {
    const bytes = new Uint8Array(64);
    expect(hex(merkleLeafHash(bytes))).not.toBe(hex(node(bytes.subarray(0, 32), bytes.subarray(32))));
    expect(merkleLeafHash(bytes)).toEqual(taggedHash(TAG.merkleLeaf, bytes));
  });
});

describe('inclusion proofs, sizes 1 to 40, every index', () => {
  const cases = Array.from({ length: MAX_SIZE }, (_, sizeIndex) => sizeIndex + 1).flatMap((size) =>
    Array.from({ length: size }, (_, index) => ({ size, index })),
  );
  const treeOf = (size: number) => {
    const tree = leaves.slice(0, size);
    return { tree, root: merkleRoot(tree) };
  };

  it('each proof verifies, has one sibling per level of its path, and fails for any other index', () => {
    for (const { size, index } of cases) {
      const { tree, root } = treeOf(size);
      const proof = merkleProof(tree, index);
      const label = `size ${size} index ${index}`;
      expect(proof.length, label).toBe(referenceSides(index, size).length);
      expect(verifyMerkleProof(tree[index]!, index, size, proof, root), label).toBe(true);
      for (let other = 0; other < size; other++) {
        if (other !== index) expect(verifyMerkleProof(tree[index]!, other, size, proof, root), `${label} as ${other}`).toBe(false);
      }
      expect(verifyMerkleProof(tree[index]!, -1, size, proof, root), label).toBe(false);
      expect(verifyMerkleProof(tree[index]!, size, size, proof, root), label).toBe(false);
    }
  });

  it('fails for another leaf, another root, or any flipped bit in any sibling', () => {
    for (const { size, index } of cases) {
      const { tree, root } = treeOf(size);
      const proof = merkleProof(tree, index);
      const leaf = tree[index]!;
      const label = `size ${size} index ${index}`;
      expect(verifyMerkleProof(leaves[(index + 1) % MAX_SIZE]!, index, size, proof, root), label).toBe(false);
      expect(verifyMerkleProof(leaf, index, size, proof, flipBit(root, index % 256)), label).toBe(false);
      proof.forEach((sibling, level) => {
        const tampered = proof.slice();
        tampered[level] = flipBit(sibling, (index * 7 + level) % 256);
        expect(verifyMerkleProof(leaf, index, size, tampered, root), `${label} level ${level}`).toBe(false);
      });
    }
  });

  it('fails when a sibling is dropped, added, or the path is reordered', () => {
    for (const { size, index } of cases) {
      const { tree, root } = treeOf(size);
      const proof = merkleProof(tree, index);
      const leaf = tree[index]!;
      const label = `size ${size} index ${index}`;
      if (proof.length > 0) {
        expect(verifyMerkleProof(leaf, index, size, proof.slice(1), root), `${label} first dropped`).toBe(false);
        expect(verifyMerkleProof(leaf, index, size, proof.slice(0, -1), root), `${label} last dropped`).toBe(false);
      }
      expect(verifyMerkleProof(leaf, index, size, [...proof, leaves[0]!], root), `${label} extra`).toBe(false);
      if (proof.length > 1) {
        expect(verifyMerkleProof(leaf, index, size, [...proof].reverse(), root), `${label} reversed`).toBe(false);
      }
    }
  });

  it('a wrong size verifies only when the path has exactly the same shape (the size must come from a signed header)', () => {
    let accepted = 0;
    let refused = 0;
    for (const { size, index } of cases) {
      const { tree, root } = treeOf(size);
      const proof = merkleProof(tree, index);
      const sides = referenceSides(index, size).join(',');
      for (let claimedSize = 1; claimedSize <= MAX_SIZE + 1; claimedSize++) {
        if (claimedSize === size) continue;
        const sameShape = index < claimedSize && referenceSides(index, claimedSize).join(',') === sides;
        const verified = verifyMerkleProof(tree[index]!, index, claimedSize, proof, root);
        expect(verified, `size ${size} index ${index} claimed ${claimedSize}`).toBe(sameShape);
        if (verified) accepted++;
        else refused++;
      }
    }
    expect(refused).toBeGreaterThan(accepted);
    // The simplest such case: leaf 0 of 4 and leaf 0 of 3 both sit left, left.
    const four = leaves.slice(0, 4);
    expect(verifyMerkleProof(four[0]!, 0, 3, merkleProof(four, 0), merkleRoot(four))).toBe(true);
    expect(verifyMerkleProof(four[3]!, 3, 5, merkleProof(four, 3), merkleRoot(four))).toBe(false);
  });
});
