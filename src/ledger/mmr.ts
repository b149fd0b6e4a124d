// A Merkle Mountain Range over block hashes: block h's header commits, in mmrRoot, to the hashes
// of every block before it, so "block i is under tip t" is a proof of O(log n) hashes. Only the
// peaks are needed to append and to compute the root.
import { TAG, taggedHash } from './hash.ts';

export interface MmrState {
  /** Number of leaves appended. */
  leafCount: number;
  /** Peak hashes, highest (leftmost) first; one per set bit of leafCount. */
  peaks: Uint8Array[];
}

export const EMPTY_MMR: MmrState = { leafCount: 0, peaks: [] };
export const EMPTY_MMR_ROOT = new Uint8Array(32);

export function mmrNodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return taggedHash(TAG.mmrNode, left, right);
}

export function mmrAppend(state: MmrState, leafHash: Uint8Array): MmrState {
  const peaks = state.peaks.slice();
  let hash = leafHash;
  // Each trailing set bit of the old count is a peak of equal height to merge with.
  for (let count = state.leafCount; count % 2 === 1; count = Math.floor(count / 2)) {
    hash = mmrNodeHash(peaks.pop()!, hash);
  }
  peaks.push(hash);
  return { leafCount: state.leafCount + 1, peaks };
}

/** Bags peak hashes (highest first) from right to left into one root. No peaks: the all-zero root. */
export function bagPeaks(peakHashes: readonly Uint8Array[]): Uint8Array {
  if (peakHashes.length === 0) return EMPTY_MMR_ROOT;
  let root = peakHashes[peakHashes.length - 1]!;
  for (let index = peakHashes.length - 2; index >= 0; index--) root = taggedHash(TAG.mmrBag, peakHashes[index]!, root);
  return root;
}

export function mmrRoot(state: MmrState): Uint8Array {
  return bagPeaks(state.peaks);
}

export function popcount(value: number): number {
  let count = 0;
  for (let remaining = value; remaining > 0; remaining = Math.floor(remaining / 2)) count += remaining % 2;
  return count;
}
