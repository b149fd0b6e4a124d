// Inclusion proofs in the chain's Merkle Mountain Range (src/ledger/mmr.ts): block h's hash is
// leaf h-1, and the mmrRoot in block t's header is the root of the first t-1 leaves. The root bags
// the peaks from right to left: root = bag(p0, bag(p1, … bag(p_{k-2}, p_{k-1}))), so a leaf in peak
// j climbs its perfect subtree (TAG.mmrNode), is bagged with the one hash of every peak to its
// right (TAG.mmrBag), then with each peak to its left, nearest first.
//
// A node is named by (level, index): it covers leaves index·2^level … (index+1)·2^level - 1. Nodes
// never change once their subtree is complete, so one store of nodes answers proofs for every
// leaf count up to the number of leaves appended.
import { assert } from '../src/errors.ts';
import { TAG, bytesEqual } from '../src/ledger/hash.ts';
import { bagPeaks, mmrNodeHash } from '../src/ledger/mmr.ts';
import { type HashStep, applySteps } from './ops.ts';

export interface MmrNodeId {
  level: number;
  index: number;
}

interface Peak extends MmrNodeId {
  /** The first leaf under the peak. */
  start: number;
}

/** The peaks of an MMR of `leafCount` leaves, leftmost (highest) first: one per set bit. */
export function mmrPeaks(leafCount: number): Peak[] {
  const peaks: Peak[] = [];
  let start = 0;
  for (let level = 52; level >= 0; level--) {
    const width = 2 ** level;
    if (Math.floor(leafCount / width) % 2 === 1) {
      peaks.push({ level, index: start / width, start });
      start += width;
    }
  }
  return peaks;
}

/** The nodes a proof of `leafIndex` is made of, in the order the verifier applies them. */
export interface MmrProofNodes {
  /** Siblings inside the leaf's peak, from the leaf up. */
  siblings: MmrNodeId[];
  /** The peaks right of the leaf's, bagged into one hash by the prover (none if it is the last peak). */
  rightPeaks: MmrNodeId[];
  /** The peaks left of the leaf's, nearest first. */
  leftPeaks: MmrNodeId[];
}

function checkPosition(leafIndex: number, leafCount: number): void {
  assert(Number.isSafeInteger(leafCount) && leafCount >= 1, `mmr: leaf count ${leafCount}`);
  assert(Number.isSafeInteger(leafIndex) && leafIndex >= 0 && leafIndex < leafCount, `mmr: leaf ${leafIndex} of ${leafCount}`);
}

export function mmrProofNodes(leafIndex: number, leafCount: number): MmrProofNodes {
  checkPosition(leafIndex, leafCount);
  const peaks = mmrPeaks(leafCount);
  const peakPosition = peaks.findIndex((peak) => leafIndex < peak.start + 2 ** peak.level);
  const peak = peaks[peakPosition]!;
  const siblings: MmrNodeId[] = [];
  for (let level = 0; level < peak.level; level++) {
    const index = Math.floor(leafIndex / 2 ** level);
    siblings.push({ level, index: index % 2 === 0 ? index + 1 : index - 1 });
  }
  return {
    siblings,
    rightPeaks: peaks.slice(peakPosition + 1).map(({ level, index }) => ({ level, index })),
    leftPeaks: peaks.slice(0, peakPosition).reverse().map(({ level, index }) => ({ level, index })),
  };
}

/** Number of hashes in the proof of `leafIndex` among `leafCount` leaves. */
export function mmrProofLength(leafIndex: number, leafCount: number): number {
  const nodes = mmrProofNodes(leafIndex, leafCount);
  return nodes.siblings.length + (nodes.rightPeaks.length > 0 ? 1 : 0) + nodes.leftPeaks.length;
}


/** The path of `leafIndex` from the node hashes the proof needs. */
export function assembleMmrPath(nodes: MmrProofNodes, hashOf: (node: MmrNodeId) => Uint8Array): Uint8Array[] {
  const path = nodes.siblings.map(hashOf);
  if (nodes.rightPeaks.length > 0) path.push(bagPeaks(nodes.rightPeaks.map(hashOf)));
  for (const peak of nodes.leftPeaks) path.push(hashOf(peak));
  return path;
}

/**
 * The tagged steps that take leaf `leafIndex` to the root of `leafCount` leaves along `path`;
 * undefined when the path has the wrong length for that position.
 */
export function mmrProofSteps(leafIndex: number, leafCount: number, path: readonly Uint8Array[]): HashStep[] | undefined {
  const nodes = mmrProofNodes(leafIndex, leafCount);
  if (path.length !== mmrProofLength(leafIndex, leafCount)) return undefined;
  const steps: HashStep[] = nodes.siblings.map(({ level }, position) => ({
    tag: TAG.mmrNode,
    // Bit `level` of the leaf index says whether the subtree climbed so far is a right child.
    side: Math.floor(leafIndex / 2 ** level) % 2 === 1 ? 'left' : 'right',
    sibling: path[position]!,
  }));
  let position = nodes.siblings.length;
  if (nodes.rightPeaks.length > 0) steps.push({ tag: TAG.mmrBag, side: 'right', sibling: path[position++]! });
  for (let count = 0; count < nodes.leftPeaks.length; count++) steps.push({ tag: TAG.mmrBag, side: 'left', sibling: path[position++]! });
  return steps;
}

export function verifyMmrProof(leafHash: Uint8Array, leafIndex: number, leafCount: number, path: readonly Uint8Array[], root: Uint8Array): boolean {
  if (!Number.isSafeInteger(leafIndex) || !Number.isSafeInteger(leafCount) || leafIndex < 0 || leafIndex >= leafCount) return false;
  const steps = mmrProofSteps(leafIndex, leafCount, path);
  return steps !== undefined && bytesEqual(applySteps(leafHash, steps), root);
}

const HASH_BYTES = 32;

/**
 * Every node of an MMR in memory, one flat buffer per level: append is O(1) amortised, a proof
 * O(log n). 1,000,000 leaves take about 64 MB.
 */
export class MmrIndex {
  private readonly levels: Uint8Array[] = [];
  private readonly counts: number[] = [];

  get leafCount(): number {
    return this.counts[0] ?? 0;
  }

  append(leafHash: Uint8Array): void {
    assert(leafHash.length === HASH_BYTES, 'mmr: a leaf is a 32-byte hash');
    this.push(0, leafHash);
    for (let level = 0; this.counts[level]! % 2 === 0; level++) {
      const right = this.counts[level]! - 1;
      this.push(level + 1, mmrNodeHash(this.node({ level, index: right - 1 }), this.node({ level, index: right })));
    }
  }

  node({ level, index }: MmrNodeId): Uint8Array {
    assert(index < (this.counts[level] ?? 0), `mmr: no node (${level}, ${index})`);
    return this.levels[level]!.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES);
  }

  /** The root of the first `leafCount` leaves (by default all): the mmrRoot of block leafCount+1. */
  root(leafCount = this.leafCount): Uint8Array {
    assert(leafCount <= this.leafCount, `mmr: ${leafCount} leaves asked, ${this.leafCount} held`);
    return bagPeaks(mmrPeaks(leafCount).map((peak) => this.node(peak)));
  }

  /** The path of leaf `leafIndex` to the root of the first `leafCount` leaves. */
  proof(leafIndex: number, leafCount = this.leafCount): Uint8Array[] {
    assert(leafCount <= this.leafCount, `mmr: ${leafCount} leaves asked, ${this.leafCount} held`);
    return assembleMmrPath(mmrProofNodes(leafIndex, leafCount), (node) => this.node(node).slice());
  }

  private push(level: number, hash: Uint8Array): void {
    const count = this.counts[level] ?? 0;
    let buffer = this.levels[level];
    if (buffer === undefined || buffer.length < (count + 1) * HASH_BYTES) {
      const grown = new Uint8Array(Math.max(64, count * 2) * HASH_BYTES);
      if (buffer !== undefined) grown.set(buffer);
      buffer = grown;
      this.levels[level] = buffer;
    }
    buffer.set(hash, count * HASH_BYTES);
    this.counts[level] = count + 1;
  }
}
