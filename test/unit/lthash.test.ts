import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { TAG, taggedHash } from '../../src/ledger/hash.ts';
import { LTHASH_LANES, LtHash } from '../../src/state/lthash.ts';
import { hex } from './support/seeded-rng.ts';

const emptyDigest = hex(new LtHash().digest());
const element = (text: string): Uint8Array => new TextEncoder().encode(text);

function digestOf(elements: readonly Uint8Array[]): string {
  const hash = new LtHash();
  for (const item of elements) hash.add(item);
  return hex(hash.digest());
}

/** ChaCha20 block function in plain JavaScript (RFC 8439 §2.3), independent of OpenSSL. */
function chachaBlock(key: Uint8Array, counter: number, nonce: Uint8Array): Uint8Array {
  const word = (bytes: Uint8Array, offset: number): number => (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
  const initial = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574];
  for (let index = 0; index < 8; index++) initial.push(word(key, 4 * index));
  initial.push(counter >>> 0, word(nonce, 0), word(nonce, 4), word(nonce, 8));
  const x = initial.slice();
  const rotl = (value: number, bits: number): number => ((value << bits) | (value >>> (32 - bits))) >>> 0;
  const quarter = (a: number, b: number, c: number, d: number): void => {
    x[a] = (x[a]! + x[b]!) >>> 0; x[d] = rotl(x[d]! ^ x[a]!, 16);
    x[c] = (x[c]! + x[d]!) >>> 0; x[b] = rotl(x[b]! ^ x[c]!, 12);
    x[a] = (x[a]! + x[b]!) >>> 0; x[d] = rotl(x[d]! ^ x[a]!, 8);
    x[c] = (x[c]! + x[d]!) >>> 0; x[b] = rotl(x[b]! ^ x[c]!, 7);
  };
  for (let round = 0; round < 10; round++) {
    quarter(0, 4, 8, 12); quarter(1, 5, 9, 13); quarter(2, 6, 10, 14); quarter(3, 7, 11, 15);
    quarter(0, 5, 10, 15); quarter(1, 6, 11, 12); quarter(2, 7, 8, 13); quarter(3, 4, 9, 14);
  }
  const out = new Uint8Array(64);
  for (let index = 0; index < 16; index++) {
    const value = (x[index]! + initial[index]!) >>> 0;
    out[4 * index] = value & 0xff; out[4 * index + 1] = (value >>> 8) & 0xff; out[4 * index + 2] = (value >>> 16) & 0xff; out[4 * index + 3] = value >>> 24;
  }
  return out;
}

/** The lattice hash from its definition: ChaCha20(key = SHA-256(element), nonce 0, counter 0) into 1024 little-endian 16-bit lanes, summed mod 2^16. */
function referenceLanes(added: readonly Uint8Array[], removed: readonly Uint8Array[] = []): number[] {
  const lanes = new Array<number>(LTHASH_LANES).fill(0);
  const accumulate = (item: Uint8Array, sign: 1 | -1): void => {
    const key = new Uint8Array(createHash('sha256').update(item).digest());
    const expansion = Buffer.alloc(2 * LTHASH_LANES);
    for (let block = 0; block < (2 * LTHASH_LANES) / 64; block++) expansion.set(chachaBlock(key, block, new Uint8Array(12)), 64 * block);
    for (let lane = 0; lane < LTHASH_LANES; lane++) lanes[lane] = (lanes[lane]! + sign * expansion.readUInt16LE(2 * lane) + 0x10000) % 0x10000;
  };
  for (const item of added) accumulate(item, 1);
  for (const item of removed) accumulate(item, -1);
  return lanes;
}

function referenceDigest(lanes: readonly number[]): string {
  const bytes = new Uint8Array(2 * LTHASH_LANES);
  lanes.forEach((value, lane) => {
    bytes[2 * lane] = value & 0xff;
    bytes[2 * lane + 1] = value >> 8;
  });
  return hex(taggedHash(TAG.stateDigest, bytes));
}

const elementArb = fc.uint8Array({ maxLength: 48 });
const setArb = fc.uniqueArray(elementArb, { selector: hex, maxLength: 24 });

describe('the ChaCha20 reference', () => {
  it('matches the RFC 8439 §2.3.2 block test vector', () => {
    const key = Uint8Array.from({ length: 32 }, (_, index) => index);
    const nonce = Uint8Array.from([0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0]);
    expect(hex(chachaBlock(key, 1, nonce))).toBe(
      '10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4ed2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e',
    );
  });
});

describe('LtHash', () => {
  it('the empty digest is the state-tagged hash of 2048 zero bytes', () => {
    expect(emptyDigest).toBe(hex(taggedHash(TAG.stateDigest, new Uint8Array(2 * LTHASH_LANES))));
  });

  it('matches the definition lane by lane, with wrap-around mod 2^16', () => {
    fc.assert(fc.property(fc.array(elementArb, { maxLength: 12 }), fc.array(elementArb, { maxLength: 6 }), (added, removed) => {
      const hash = new LtHash();
      for (const item of added) hash.add(item);
      for (const item of removed) hash.remove(item);
      const lanes = referenceLanes(added, removed);
      expect(Array.from(hash.lanes)).toEqual(lanes);
      expect(hex(hash.digest())).toBe(referenceDigest(lanes));
    }), { numRuns: 100 });
  });

  it('is independent of the order in which elements are added', () => {
    fc.assert(fc.property(
      fc.array(elementArb, { maxLength: 24 }).chain((items) => fc.tuple(fc.constant(items), fc.shuffledSubarray(items, { minLength: items.length }))),
      ([items, shuffled]) => {
        expect(digestOf(shuffled)).toBe(digestOf(items));
      },
    ), { numRuns: 200 });
  });

  it('is independent of how adds and removes interleave, even a remove before its add', () => {
    type Step = { op: 'add' | 'remove'; item: Uint8Array };
    const scenario = fc.tuple(setArb, setArb).chain(([kept, dropped]) => {
      const steps: Step[] = [
        ...kept.map((item) => ({ op: 'add' as const, item })),
        ...dropped.flatMap((item) => [{ op: 'add' as const, item }, { op: 'remove' as const, item }]),
      ];
      return fc.tuple(fc.constant(kept), fc.shuffledSubarray(steps, { minLength: steps.length }));
    });
    fc.assert(fc.property(scenario, ([kept, steps]) => {
      const hash = new LtHash();
      for (const { op, item } of steps) hash[op](item);
      expect(hex(hash.digest())).toBe(digestOf(kept));
    }), { numRuns: 100 });
  });

  it('adding then removing the same elements returns to the empty digest', () => {
    fc.assert(fc.property(fc.array(elementArb, { maxLength: 24 }), (items) => {
      const hash = new LtHash();
      for (const item of items) hash.add(item);
      for (const item of [...items].reverse()) hash.remove(item);
      expect(hex(hash.digest())).toBe(emptyDigest);
      expect(hash.lanes.every((lane) => lane === 0)).toBe(true);
    }), { numRuns: 100 });
  });

  it('different sets give different digests', () => {
    fc.assert(fc.property(setArb, setArb, (a, b) => {
      const same = new Set(a.map(hex));
      const equalSets = a.length === b.length && b.every((item) => same.has(hex(item)));
      fc.pre(!equalSets);
      expect(digestOf(a)).not.toBe(digestOf(b));
    }), { numRuns: 200 });
  });

  const distinctions: Array<{ name: string; a: Uint8Array[]; b: Uint8Array[] }> = [
    { name: 'empty set vs the empty element', a: [], b: [new Uint8Array(0)] },
    { name: 'one element vs the same element twice (a multiset)', a: [element('x')], b: [element('x'), element('x')] },
    { name: 'two elements vs their concatenation', a: [element('ab'), element('c')], b: [element('abc')] },
    { name: 'one byte apart', a: [element('temp=21')], b: [element('temp=22')] },
    { name: 'split differently', a: [element('a'), element('bc')], b: [element('ab'), element('c')] },
  ];

  it.each(distinctions)('distinguishes $name', ({ a, b }) => {
    expect(digestOf(a)).not.toBe(digestOf(b));
  });

  it('clone and the lanes constructor copy: changing one leaves the other', () => {
    const original = new LtHash();
    original.add(element('a'));
    const before = hex(original.digest());
    const copy = original.clone();
    copy.add(element('b'));
    expect(hex(original.digest())).toBe(before);
    const fromLanes = new LtHash(original.lanes);
    fromLanes.remove(element('a'));
    expect(hex(original.digest())).toBe(before);
    expect(hex(fromLanes.digest())).toBe(emptyDigest);
  });

  it('refuses lanes of the wrong length', () => {
    expect(() => new LtHash(new Uint16Array(LTHASH_LANES - 1))).toThrow(/assertion failed: lthash/);
  });
});
