// The aggregation tree: each interval, the tips of every chain the node serves become one 32-byte
// root, the payload of one OP_RETURN. The shape is RFC 6962 §2.1 (as in src/ledger/merkle.ts):
// split at the largest power of two below n, no leaf duplicated, so a (index, size, path) proof
// has one meaning.
//
// A leaf is the tip's block hash itself. That hash is taggedHash(TAG.block, header), and the
// header encodes the chain name and the height, so the block hash already binds both; a leaf
// wrapper would add a hash per proof and bind nothing more. It cannot be confused with an inner
// node either: a node is taggedHash(TAG.anchorNode, …), and a block hash under another tag equal
// to it would be a SHA-256 collision. Leaves are sorted by the chain name's UTF-8 bytes, so the
// root does not depend on the order the tips were gathered in.
//
// The anchored root is taggedHash(TAG.anchorRoot, leafCount as 4 bytes big-endian, tree root).
// In the RFC 6962 shape one audit path can fit several tree sizes (leaf 0 of 3 and of 4 climb the
// same way), so without the count a proof's (index, leafCount) could be altered and still verify;
// with it, every number in the proof is bound by the hash.
import { assert } from '../src/errors.ts';
import { TAG, bytesEqual, taggedHash } from '../src/ledger/hash.ts';
import { type HashStep, applySteps } from './ops.ts';
import { largestPowerOfTwoBelow, rfc6962Path, rfc6962Root } from '../src/ledger/merkle.ts';

export interface ChainTip {
  chain: string;
  height: number;
  blockHash: Uint8Array;
}

export interface AggregationProof {
  index: number;
  leafCount: number;
  /** Sibling hashes from the leaf up (RFC 6962 audit path). */
  path: Uint8Array[];
}

const utf8 = new TextEncoder();

/** The tips in leaf order. Two tips of one chain are a programmer error. */
export function sortTips(tips: readonly ChainTip[]): ChainTip[] {
  assert(tips.length > 0, 'aggregate: no tips');
  const sorted = [...tips].sort((a, b) => Buffer.compare(utf8.encode(a.chain), utf8.encode(b.chain)));
  for (let position = 1; position < sorted.length; position++) {
    assert(sorted[position - 1]!.chain !== sorted[position]!.chain, `aggregate: two tips of chain ${sorted[position]!.chain}`);
  }
  for (const tip of sorted) assert(tip.blockHash.length === 32, 'aggregate: a block hash is 32 bytes');
  return sorted;
}

const LEAF_COUNT_BYTES = 4;

function leafCountBytes(leafCount: number): Uint8Array {
  const bytes = new Uint8Array(LEAF_COUNT_BYTES);
  new DataView(bytes.buffer).setUint32(0, leafCount);
  return bytes;
}

function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return taggedHash(TAG.anchorNode, left, right);
}

function subtreeRoot(leaves: readonly Uint8Array[], start: number, end: number): Uint8Array {
  return rfc6962Root(leaves, start, end, nodeHash);
}

/** The 32 bytes an anchor commits to. */
export function aggregationRoot(tips: readonly ChainTip[]): Uint8Array {
  const leaves = sortTips(tips).map((tip) => tip.blockHash);
  return taggedHash(TAG.anchorRoot, leafCountBytes(leaves.length), subtreeRoot(leaves, 0, leaves.length));
}

/** The proof for `chain`'s tip among `tips`. */
export function aggregationProof(tips: readonly ChainTip[], chain: string): AggregationProof {
  const sorted = sortTips(tips);
  const index = sorted.findIndex((tip) => tip.chain === chain);
  assert(index >= 0, `aggregate: no tip of chain ${chain}`);
  const leaves = sorted.map((tip) => tip.blockHash);
  return { index, leafCount: leaves.length, path: rfc6962Path(leaves.length, index, (start, end) => subtreeRoot(leaves, start, end)) };
}

/** Hashes in the proof of leaf `index` among `leafCount`: its depth in the RFC 6962 shape. */
export function aggregationProofLength(index: number, leafCount: number): number {
  let length = 0;
  let start = 0;
  let end = leafCount;
  while (end - start > 1) {
    const split = start + largestPowerOfTwoBelow(end - start);
    if (index < split) end = split;
    else start = split;
    length++;
  }
  return length;
}

/**
 * The tagged steps from the leaf to the anchored root (the last one adds the leaf count), sides from the tree's shape (RFC 9162 §2.1.3.2
 * walks the same shape bottom-up); undefined when the position or the path length is wrong.
 */
export function aggregationSteps(index: number, leafCount: number, path: readonly Uint8Array[]): HashStep[] | undefined {
  if (!Number.isSafeInteger(leafCount) || !Number.isSafeInteger(index) || leafCount < 1 || leafCount > 0xffffffff || index < 0 || index >= leafCount) return undefined;
  if (path.length !== aggregationProofLength(index, leafCount)) return undefined;
  // Top-down, the sides of the leaf's ancestors; the path runs bottom-up.
  const sides: Array<'left' | 'right'> = [];
  let start = 0;
  let end = leafCount;
  while (end - start > 1) {
    const split = start + largestPowerOfTwoBelow(end - start);
    if (index < split) {
      sides.push('right');
      end = split;
    } else {
      sides.push('left');
      start = split;
    }
  }
  sides.reverse();
  const steps: HashStep[] = path.map((sibling, level) => ({ tag: TAG.anchorNode, side: sides[level]!, sibling }));
  steps.push({ tag: TAG.anchorRoot, side: 'left', sibling: leafCountBytes(leafCount) });
  return steps;
}

export function verifyAggregationProof(leaf: Uint8Array, proof: AggregationProof, root: Uint8Array): boolean {
  const steps = aggregationSteps(proof.index, proof.leafCount, proof.path);
  return steps !== undefined && bytesEqual(applySteps(leaf, steps), root);
}
