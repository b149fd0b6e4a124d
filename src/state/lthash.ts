// The state digest: LtHash (Bellare–Micciancio's lattice hash as used by Facebook's
// "Securing Update Propagation with Homomorphic Hashing", 2019). An element expands through
// SHAKE256 into 1024 lanes of 16 bits; the set's hash is the lane-wise sum mod 2^16. Adding or
// removing one element is O(1) whatever the size of the MemCache, and the order of changes does
// not matter, so any node can recompute it from its own copy.
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { assert } from '../errors.ts';
import { TAG, taggedHash } from '../ledger/hash.ts';

export const LTHASH_LANES = 1024;
const EXPANSION_BYTES = LTHASH_LANES * 2;

assert(endianness() === 'LE', 'lthash: lanes are read as little-endian 16-bit words');

function expand(element: Uint8Array): Uint16Array {
  const bytes = createHash('shake256', { outputLength: EXPANSION_BYTES }).update(element).digest();
  return new Uint16Array(bytes.buffer, bytes.byteOffset, LTHASH_LANES);
}

export class LtHash {
  readonly lanes: Uint16Array;

  constructor(lanes?: Uint16Array) {
    this.lanes = lanes ? new Uint16Array(lanes) : new Uint16Array(LTHASH_LANES);
    assert(this.lanes.length === LTHASH_LANES, 'lthash: wrong lane count');
  }

  add(element: Uint8Array): void {
    const vector = expand(element);
    const lanes = this.lanes;
    for (let index = 0; index < LTHASH_LANES; index++) lanes[index] = lanes[index]! + vector[index]!;
  }

  remove(element: Uint8Array): void {
    const vector = expand(element);
    const lanes = this.lanes;
    for (let index = 0; index < LTHASH_LANES; index++) lanes[index] = lanes[index]! - vector[index]!;
  }

  clone(): LtHash {
    return new LtHash(this.lanes);
  }

  /** The 32-byte digest that block headers carry. */
  digest(): Uint8Array {
    return taggedHash(TAG.stateDigest, new Uint8Array(this.lanes.buffer, this.lanes.byteOffset, EXPANSION_BYTES));
  }
}
