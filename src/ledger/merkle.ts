// The block's txRoot: a Merkle tree in the shape of RFC 6962 §2.1 (split at the largest power of
// two below n), so an odd leaf is never duplicated (the CVE-2012-2459 ambiguity of Bitcoin's tree)
// and every inclusion proof has one meaning. Leaves and nodes use separate tagged hashes.
import { TAG, taggedHash, bytesEqual } from './hash.ts';

export const EMPTY_MERKLE_ROOT = taggedHash(TAG.merkleNode);

export function merkleLeafHash(leafBytes: Uint8Array): Uint8Array {
  return taggedHash(TAG.merkleLeaf, leafBytes);
}

function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return taggedHash(TAG.merkleNode, left, right);
}

/** RFC 6962 §2.1's split: the largest power of two below `count` (for count ≥ 2). */
export function largestPowerOfTwoBelow(count: number): number {
  let split = 1;
  while (split * 2 < count) split *= 2;
  return split;
}

/** The RFC 6962 root of leaves[start, end) with the node hash `node` (the anchor aggregation tree has its own). */
export function rfc6962Root(leaves: readonly Uint8Array[], start: number, end: number, node: (left: Uint8Array, right: Uint8Array) => Uint8Array): Uint8Array {
  const count = end - start;
  if (count === 1) return leaves[start]!;
  const split = largestPowerOfTwoBelow(count);
  return node(rfc6962Root(leaves, start, start + split, node), rfc6962Root(leaves, start + split, end, node));
}

export function merkleRoot(leafHashes: readonly Uint8Array[]): Uint8Array {
  if (leafHashes.length === 0) return EMPTY_MERKLE_ROOT;
  return rfc6962Root(leafHashes, 0, leafHashes.length, nodeHash);
}

/** Sibling hashes from the leaf up (RFC 6962 §2.1.1 audit path). */
export function merkleProof(leafHashes: readonly Uint8Array[], index: number): Uint8Array[] {
  return merkleProofs(leafHashes, [index])[0]!;
}

/** Audit paths for several leaves of one tree; each subtree is hashed once, whatever the count. */
export function merkleProofs(leafHashes: readonly Uint8Array[], indexes: readonly number[]): Uint8Array[][] {
  const subtrees = new Map<string, Uint8Array>();
  const subtreeRoot = (start: number, end: number): Uint8Array => {
    const id = `${start}:${end}`;
    let root = subtrees.get(id);
    if (root === undefined) {
      const count = end - start;
      if (count === 1) root = leafHashes[start]!;
      else {
        const split = largestPowerOfTwoBelow(count);
        root = nodeHash(subtreeRoot(start, start + split), subtreeRoot(start + split, end));
      }
      subtrees.set(id, root);
    }
    return root;
  };
  return indexes.map((index) => rfc6962Path(leafHashes.length, index, subtreeRoot));
}

/** The audit path of leaf `index` in a tree of `size` leaves, siblings from the leaf up, each subtree's root from `subtreeRoot`. */
export function rfc6962Path(size: number, index: number, subtreeRoot: (start: number, end: number) => Uint8Array): Uint8Array[] {
  const path: Uint8Array[] = [];
  const walk = (start: number, end: number): void => {
    const count = end - start;
    if (count === 1) return;
    const split = largestPowerOfTwoBelow(count);
    if (index < start + split) {
      walk(start, start + split);
      path.push(subtreeRoot(start + split, end));
    } else {
      walk(start + split, end);
      path.push(subtreeRoot(start, start + split));
    }
  };
  walk(0, size);
  return path;
}

/** RFC 9162 §2.1.3.2: verifies an inclusion proof for leaf `index` of a tree of `size` leaves. */
export function verifyMerkleProof(leafHash: Uint8Array, index: number, size: number, path: readonly Uint8Array[], root: Uint8Array): boolean {
  if (index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let hash = leafHash;
  for (const sibling of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      hash = nodeHash(sibling, hash);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      hash = nodeHash(hash, sibling);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesEqual(hash, root);
}
