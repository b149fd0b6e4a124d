// The state digest: LtHash (Bellare–Micciancio's lattice hash as used by Facebook's
// "Securing Update Propagation with Homomorphic Hashing", 2019). An element expands into 1024
// lanes of 16 bits; the set's hash is the lane-wise sum mod 2^16. Adding or removing one element
// is O(1) whatever the size of the MemCache, and the order of changes does not matter, so any node
// can recompute it from its own copy.
//
// Expansion: the ChaCha20 keystream (RFC 8439, zero nonce and counter) under the key
// SHA-256(element), 2048 bytes read as little-endian 16-bit lanes. It is the paper's extendable
// output function built from a PRF keyed by a collision-resistant hash, and runs about twice as fast
// here as SHAKE256 to the same length.
import { createCipheriv } from 'node:crypto';
import { endianness } from 'node:os';
import { assert } from '../errors.ts';
import { TAG, sha256, taggedHash } from '../ledger/hash.ts';

export const LTHASH_LANES = 1024;
const EXPANSION_BYTES = LTHASH_LANES * 2;
const WORDS = EXPANSION_BYTES / 4;
const ZEROS = new Uint8Array(EXPANSION_BYTES);
/** ChaCha20 in OpenSSL takes a 16-byte IV: the 32-bit block counter, then the 96-bit nonce. */
const CHACHA_IV = new Uint8Array(16);

assert(endianness() === 'LE', 'lthash: lanes are read as little-endian 16-bit words');

/** The 1024 lanes of one element, as 512 words of two lanes each. */
export function expandElement(element: Uint8Array): Uint32Array {
  const bytes = createCipheriv('chacha20', sha256(element), CHACHA_IV).update(ZEROS);
  assert(bytes.length === EXPANSION_BYTES, 'lthash: short keystream');
  return new Uint32Array(bytes.buffer, bytes.byteOffset, WORDS);
}

export class LtHash {
  /** Two 16-bit lanes per word: lane 2i in the low half of word i (little-endian). */
  private readonly words: Uint32Array;

  constructor(lanes?: Uint16Array) {
    this.words = new Uint32Array(WORDS);
    if (lanes !== undefined) {
      assert(lanes.length === LTHASH_LANES, `lthash: wrong lane count ${lanes.length}`);
      this.lanes.set(lanes);
    }
  }

  /** The lanes as 16-bit numbers (a view, not a copy). */
  get lanes(): Uint16Array {
    return new Uint16Array(this.words.buffer, this.words.byteOffset, LTHASH_LANES);
  }

  // Two lanes per 32-bit step, without a carry from the low lane into the high one:
  // add:      ((a & 0x7fff7fff) + (b & 0x7fff7fff)) ^ ((a ^ b) & 0x80008000)
  // subtract: ((a | 0x80008000) - (b & 0x7fff7fff)) ^ ((a ^ ~b) & 0x80008000)
  add(element: Uint8Array): void {
    this.addExpansion(expandElement(element));
  }

  remove(element: Uint8Array): void {
    this.removeExpansion(expandElement(element));
  }

  /** add() with the element's expansion already made (expandElement). */
  addExpansion(vector: Uint32Array): void {
    const words = this.words;
    for (let index = 0; index < WORDS; index++) {
      const a = words[index]!;
      const b = vector[index]!;
      words[index] = ((a & 0x7fff7fff) + (b & 0x7fff7fff)) ^ ((a ^ b) & 0x80008000);
    }
  }

  /** remove() with the element's expansion already made (expandElement). */
  removeExpansion(vector: Uint32Array): void {
    const words = this.words;
    for (let index = 0; index < WORDS; index++) {
      const a = words[index]!;
      const b = vector[index]!;
      words[index] = ((a | 0x80008000) - (b & 0x7fff7fff)) ^ ((a ^ ~b) & 0x80008000);
    }
  }

  clone(): LtHash {
    return new LtHash(this.lanes);
  }

  /** The 32-byte digest that block headers carry. */
  digest(): Uint8Array {
    return taggedHash(TAG.stateDigest, new Uint8Array(this.words.buffer, this.words.byteOffset, EXPANSION_BYTES));
  }
}
