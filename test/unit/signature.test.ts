import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as noble from '@noble/secp256k1';
import {
  generateKeyPair, isValidPublicKey, isValidSecretKey, publicKeyOf, signSchnorr, verifySchnorr, verifySchnorrNoble, verifySchnorrWasm,
  type KeyPair,
} from '../../src/ledger/signature.ts';
import { backend, nativeCommitment, nativeError, verifyNative, verifyWasm } from '../../src/ledger/bip340.js';
import { taggedHash } from '../../src/ledger/hash.ts';
import type { Rng } from '../../src/ports.ts';
import { hex, seededRng, unhex } from './support/seeded-rng.ts';

/**
 * BIP-340 test vectors 0-14, from bitcoin/bips bip-0340/test-vectors.csv (commit 7e8b5dfc, the
 * final even-y version). Vectors 15-18 sign messages that are not 32 bytes long; this node only
 * signs 32-byte tagged hashes, so verifySchnorr refuses other lengths by design.
 */
const BIP340_VECTORS: Array<{
  index: number; secretKey: string; publicKey: string; auxRand: string; message: string; signature: string;
  valid: boolean; comment: string;
}> = [
  { index: 0, secretKey: '0000000000000000000000000000000000000000000000000000000000000003', publicKey: 'F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9', auxRand: '0000000000000000000000000000000000000000000000000000000000000000', message: '0000000000000000000000000000000000000000000000000000000000000000', signature: 'E907831F80848D1069A5371B402410364BDF1C5F8307B0084C55F1CE2DCA821525F66A4A85EA8B71E482A74F382D2CE5EBEEE8FDB2172F477DF4900D310536C0', valid: true, comment: '' },
  { index: 1, secretKey: 'B7E151628AED2A6ABF7158809CF4F3C762E7160F38B4DA56A784D9045190CFEF', publicKey: 'DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659', auxRand: '0000000000000000000000000000000000000000000000000000000000000001', message: '243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89', signature: '6896BD60EEAE296DB48A229FF71DFE071BDE413E6D43F917DC8DCF8C78DE33418906D11AC976ABCCB20B091292BFF4EA897EFCB639EA871CFA95F6DE339E4B0A', valid: true, comment: '' },
  { index: 2, secretKey: 'C90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B14E5C9', publicKey: 'DD308AFEC5777E13121FA72B9CC1B7CC0139715309B086C960E18FD969774EB8', auxRand: 'C87AA53824B4D7AE2EB035A2B5BBBCCC080E76CDC6D1692C4B0B62D798E6D906', message: '7E2D58D8B3BCDF1ABADEC7829054F90DDA9805AAB56C77333024B9D0A508B75C', signature: '5831AAEED7B44BB74E5EAB94BA9D4294C49BCF2A60728D8B4C200F50DD313C1BAB745879A5AD954A72C45A91C3A51D3C7ADEA98D82F8481E0E1E03674A6F3FB7', valid: true, comment: '' },
  { index: 3, secretKey: '0B432B2677937381AEF05BB02A66ECD012773062CF3FA2549E44F58ED2401710', publicKey: '25D1DFF95105F5253C4022F628A996AD3A0D95FBF21D468A1B33F8C160D8F517', auxRand: 'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF', message: 'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF', signature: '7EB0509757E246F19449885651611CB965ECC1A187DD51B64FDA1EDC9637D5EC97582B9CB13DB3933705B32BA982AF5AF25FD78881EBB32771FC5922EFC66EA3', valid: true, comment: 'test fails if msg is reduced modulo p or n' },
  { index: 4, secretKey: '', publicKey: 'D69C3509BB99E412E68B0FE8544E72837DFA30746D8BE2AA65975F29D22DC7B9', auxRand: '', message: '4DF3C3F68FCC83B27E9D42C90431A72499F17875C81A599B566C9889B9696703', signature: '00000000000000000000003B78CE563F89A0ED9414F5AA28AD0D96D6795F9C6376AFB1548AF603B3EB45C9F8207DEE1060CB71C04E80F593060B07D28308D7F4', valid: true, comment: '' },
  { index: 5, secretKey: '', publicKey: 'EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34', auxRand: '', message: '243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89', signature: '6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E17776969E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B', valid: false, comment: 'public key not on the curve' },
  { index: 6, secretKey: '', publicKey: 'DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659', auxRand: '', message: '243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89', signature: 'FFF97BD5755EEEA420453A14355235D382F6472F8568A18B2F057A14602975563CC27944640AC607CD107AE10923D9EF7A73C643E166BE5EBEAFA34B1AC553E2', valid: false, comment: 'has_even_y(R) is false' },
  { index: 7, secretKey: '', publicKey: 'DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659', auxRand: '', message: '243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89', signature: '1FA62E331EDBC21C394792D2AB1100A7B432B013DF3F6FF4F99FCB33E0E1515F28890B3EDB6E7189B630448B515CE4F8622A954CFE545735AAEA5134FCCDB2BD', valid: false, comment: 'negated message' },
  { index: 8, secretKey: '', publicKey: 'DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659', auxRand: '', message: '243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89', signature: '6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E177769961764B3AA9B2FFCB6EF947B6887A226E8D7C93E00C5ED0C1834FF0D0C2E6DA6', valid: false, comment: 'negated s value' },
  { index: 9, secretKey: '', publicKey: 'DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659', auxRand: '', message: '243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89', signature: '0000000000000000000000000000000000000000000000000000000000000000123DDA8328AF9C23A94C1FEECFD123BA4FB73476F0D594DCB65C6425BD186051', valid: false, comment: 'sG - eP is infinite (x(inf) as 0)' },
  { index: 10, secretKey: '', publicKey: 'DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659', auxRand: '', message: '243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89', signature: '00000000000000000000000000000000000000000000000000000000000000017615FBAF5AE28864013C099742DEADB4DBA87F11AC6754F93780D5A1837CF197', valid: false, comment: 'sG - eP is infinite (x(inf) as 1)' },
  { index: 11, secretKey: '', publicKey: 'DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659', auxRand: '', message: '243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89', signature: '4A298DACAE57395A15D0795DDBFD1DCB564DA82B0F269BC70A74F8220429BA1D69E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B', valid: false, comment: 'sig[0:32] is not an X coordinate on the curve' },
  { index: 12, secretKey: '', publicKey: 'DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659', auxRand: '', message: '243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89', signature: 'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F69E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B', valid: false, comment: 'sig[0:32] is equal to field size' },
  { index: 13, secretKey: '', publicKey: 'DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659', auxRand: '', message: '243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89', signature: '6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E177769FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141', valid: false, comment: 'sig[32:64] is equal to curve order' },
  { index: 14, secretKey: '', publicKey: 'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC30', auxRand: '', message: '243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89', signature: '6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E17776969E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B', valid: false, comment: 'public key exceeds the field size' },
];

const SECP256K1_ORDER = 'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141';

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  out[bit >> 3] = out[bit >> 3]! ^ (1 << (bit & 7));
  return out;
}

describe('BIP-340 test vectors', () => {
  it.each(BIP340_VECTORS)('vector $index verifies as $valid with every backend $comment', ({ publicKey, message, signature, valid }) => {
    expect(verifySchnorr(unhex(message), unhex(publicKey), unhex(signature))).toBe(valid);
    expect(verifySchnorrWasm(unhex(message), unhex(publicKey), unhex(signature))).toBe(valid);
    expect(verifySchnorrNoble(unhex(message), unhex(publicKey), unhex(signature))).toBe(valid);
    // The native path either decides as the vector says or leaves it to the WASM one.
    expect([valid, undefined]).toContain(verifyNative(unhex(message), unhex(publicKey), unhex(signature)));
  });

  it.each(BIP340_VECTORS.filter((vector) => vector.valid))('vector $index is decided by the native path itself', ({ publicKey, message, signature }) => {
    expect(verifyNative(unhex(message), unhex(publicKey), unhex(signature))).toBe(true);
  });

  it.each(BIP340_VECTORS.filter((vector) => vector.secretKey !== ''))(
    'vector $index: the secret key gives the public key and signing gives the exact signature',
    ({ secretKey, publicKey, auxRand, message, signature }) => {
      expect(isValidSecretKey(unhex(secretKey))).toBe(true);
      expect(hex(publicKeyOf(unhex(secretKey)))).toBe(publicKey.toLowerCase());
      expect(hex(signSchnorr(unhex(message), unhex(secretKey), unhex(auxRand)))).toBe(signature.toLowerCase());
    },
  );

  it.each([
    { publicKey: BIP340_VECTORS[1]!.publicKey, valid: true },
    { publicKey: BIP340_VECTORS[5]!.publicKey, valid: false },
    { publicKey: BIP340_VECTORS[14]!.publicKey, valid: false },
    { publicKey: '00'.repeat(32), valid: false },
    { publicKey: BIP340_VECTORS[1]!.publicKey.slice(2), valid: false },
  ])('isValidPublicKey($publicKey) is $valid', ({ publicKey, valid }) => {
    expect(isValidPublicKey(unhex(publicKey))).toBe(valid);
  });
});

describe('secret keys', () => {
  it.each([
    { secretKey: '00'.repeat(32), valid: false, why: 'zero' },
    { secretKey: SECP256K1_ORDER, valid: false, why: 'the curve order n' },
    { secretKey: 'FF'.repeat(32), valid: false, why: 'above n' },
    { secretKey: `${SECP256K1_ORDER.slice(0, -2)}40`, valid: true, why: 'n - 1' },
    { secretKey: `${'00'.repeat(31)}01`, valid: true, why: 'one' },
    { secretKey: '01'.repeat(31), valid: false, why: '31 bytes' },
  ])('isValidSecretKey: $why is $valid', ({ secretKey, valid }) => {
    expect(isValidSecretKey(unhex(secretKey))).toBe(valid);
  });

  it('generateKeyPair is a function of the Rng: same seed, same key; another seed, another key', () => {
    const first = generateKeyPair(seededRng(7));
    expect(generateKeyPair(seededRng(7))).toEqual(first);
    expect(hex(generateKeyPair(seededRng(8)).secretKey)).not.toBe(hex(first.secretKey));
    expect(publicKeyOf(first.secretKey)).toEqual(first.publicKey);
  });

  it('generateKeyPair skips draws that are not valid secret keys', () => {
    const draws = [unhex('00'.repeat(32)), unhex(SECP256K1_ORDER), unhex('FF'.repeat(32)), unhex(BIP340_VECTORS[1]!.secretKey)];
    let drawn = 0;
    const rng: Rng = { bytes: (length) => { expect(length).toBe(32); return draws[drawn++]!; } };
    const pair = generateKeyPair(rng);
    expect(drawn).toBe(4);
    expect(hex(pair.publicKey)).toBe(BIP340_VECTORS[1]!.publicKey.toLowerCase());
  });
});

describe('sign and verify', () => {
  const keys: KeyPair[] = Array.from({ length: 6 }, (_, seed) => generateKeyPair(seededRng(`signature-${seed}`)));
  const keyIndex = fc.integer({ min: 0, max: keys.length - 1 });
  const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

  it('a signature verifies under both backends, and only for its own hash and key', () => {
    fc.assert(fc.property(keyIndex, keyIndex, bytes32, bytes32, (signer, other, messageHash, auxRand) => {
      const { secretKey, publicKey } = keys[signer]!;
      const signature = signSchnorr(messageHash, secretKey, auxRand);
      expect(signature.length).toBe(64);
      expect(verifySchnorr(messageHash, publicKey, signature)).toBe(true);
      expect(verifySchnorrNoble(messageHash, publicKey, signature)).toBe(true);
      const otherKey = keys[other]!.publicKey;
      const expectedForOther = other === signer;
      expect(verifySchnorr(messageHash, otherKey, signature)).toBe(expectedForOther);
      expect(verifySchnorrNoble(messageHash, otherKey, signature)).toBe(expectedForOther);
    }), { numRuns: 120 });
  });

  it('the backends agree on tampered signatures, hashes and keys: all refused', () => {
    const tamper = fc.record({
      target: fc.constantFrom('signature', 'messageHash', 'publicKey'),
      bit: fc.integer({ min: 0, max: 511 }),
    });
    fc.assert(fc.property(keyIndex, bytes32, bytes32, tamper, (signer, messageHash, auxRand, { target, bit }) => {
      const { secretKey, publicKey } = keys[signer]!;
      const signature = signSchnorr(messageHash, secretKey, auxRand);
      const inputs: Record<'signature' | 'messageHash' | 'publicKey', Uint8Array> = { signature, messageHash, publicKey };
      inputs[target] = flipBit(inputs[target], bit % (inputs[target].length * 8));
      const libsecp = verifySchnorr(inputs.messageHash, inputs.publicKey, inputs.signature);
      const noble = verifySchnorrNoble(inputs.messageHash, inputs.publicKey, inputs.signature);
      expect(libsecp).toBe(false);
      expect(noble).toBe(false);
    }), { numRuns: 200 });
  });

  it('the backends agree on arbitrary bytes', () => {
    fc.assert(fc.property(bytes32, bytes32, fc.uint8Array({ minLength: 64, maxLength: 64 }), (messageHash, publicKey, signature) => {
      expect(verifySchnorr(messageHash, publicKey, signature)).toBe(verifySchnorrNoble(messageHash, publicKey, signature));
    }), { numRuns: 200 });
  });

  const pair = keys[0]!;
  const messageHash = new Uint8Array(32).fill(0x42);
  const signature = signSchnorr(messageHash, pair.secretKey, new Uint8Array(32));

  it.each([
    { name: '31-byte hash', messageHash: messageHash.subarray(1), publicKey: pair.publicKey, signature },
    { name: '33-byte hash', messageHash: new Uint8Array([...messageHash, 0]), publicKey: pair.publicKey, signature },
    { name: '31-byte key', messageHash, publicKey: pair.publicKey.subarray(1), signature },
    { name: '33-byte compressed key', messageHash, publicKey: new Uint8Array([2, ...pair.publicKey]), signature },
    { name: '63-byte signature', messageHash, publicKey: pair.publicKey, signature: signature.subarray(1) },
    { name: '65-byte signature', messageHash, publicKey: pair.publicKey, signature: new Uint8Array([...signature, 1]) },
  ])('verifySchnorr returns false, without throwing, for a $name', (row) => {
    expect(verifySchnorr(messageHash, pair.publicKey, signature)).toBe(true);
    expect(verifySchnorr(row.messageHash, row.publicKey, row.signature)).toBe(false);
  });

  it('signSchnorr asserts that it is given a 32-byte hash', () => {
    expect(() => signSchnorr(new Uint8Array(31), pair.secretKey, new Uint8Array(32))).toThrow(/assertion failed: signSchnorr/);
  });

  it('auxiliary randomness changes the signature, and each one verifies', () => {
    const a = signSchnorr(messageHash, pair.secretKey, new Uint8Array(32).fill(1));
    const b = signSchnorr(messageHash, pair.secretKey, new Uint8Array(32).fill(2));
    expect(hex(a)).not.toBe(hex(b));
    expect(verifySchnorr(messageHash, pair.publicKey, a)).toBe(true);
    expect(verifySchnorr(messageHash, pair.publicKey, b)).toBe(true);
  });
});

const CURVE_ORDER = BigInt(`0x${SECP256K1_ORDER}`);
const FIELD_SIZE = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn;
const toBytes32 = (value: bigint): Uint8Array => unhex(value.toString(16).padStart(64, '0'));
const toBig = (bytes: Uint8Array): bigint => BigInt(`0x${hex(bytes)}`);

/** s·G − e·P with @noble/secp256k1's point arithmetic, compressed, or undefined for infinity. */
function commitmentByNoble(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): string | undefined {
  const e = toBig(taggedHash('BIP0340/challenge', signature.subarray(0, 32), publicKey, messageHash)) % CURVE_ORDER;
  const point = noble.Point.fromHex(`02${hex(publicKey)}`);
  const s = toBig(signature.subarray(32));
  const sG = s === 0n ? noble.Point.ZERO : noble.Point.BASE.multiplyUnsafe(s);
  const eP = e === 0n ? noble.Point.ZERO : point.multiplyUnsafe(e);
  const r = sG.subtract(eP);
  return r.is0() ? undefined : hex(r.toBytes(true));
}

describe('the native backend (libsecp256k1 ECDSA recovery computing BIP-340 R = s·G − e·P)', () => {
  const keys: KeyPair[] = Array.from({ length: 4 }, (_, seed) => generateKeyPair(seededRng(`native-${seed}`)));
  // x-only keys at or above the curve order n (recovery id 2), on the curve: a few exist just above n.
  const highKeys: Uint8Array[] = [];
  for (let x = CURVE_ORDER; highKeys.length < 3; x++) if (isValidPublicKey(toBytes32(x))) highKeys.push(toBytes32(x));
  const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

  it('loads on this machine (a prebuilt addon; the WASM build is only the fallback)', () => {
    expect(nativeError).toBeUndefined();
    expect(backend).toBe('native');
  });

  it('decides valid signatures itself, and agrees with the WASM and noble backends on tampered ones', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: keys.length - 1 }), bytes32, bytes32, fc.integer({ min: 0, max: 1023 }), (signer, messageHash, auxRand, bit) => {
      const { secretKey, publicKey } = keys[signer]!;
      const signature = signSchnorr(messageHash, secretKey, auxRand);
      expect(verifyNative(messageHash, publicKey, signature)).toBe(true);
      const inputs = [messageHash, publicKey, signature];
      const target = bit < 256 ? 0 : bit < 512 ? 1 : 2;
      inputs[target] = flipBit(inputs[target]!, bit % (inputs[target]!.length * 8));
      const [m, p, sig] = inputs as [Uint8Array, Uint8Array, Uint8Array];
      const expected = verifySchnorrWasm(m, p, sig);
      expect(expected).toBe(false);
      expect(verifySchnorrNoble(m, p, sig)).toBe(false);
      expect([expected, undefined]).toContain(verifyNative(m, p, sig));
      expect(verifySchnorr(m, p, sig)).toBe(false);
    }), { numRuns: 300 });
  });

  it('computes R = s·G − e·P exactly as noble does, for keys below and above the curve order', () => {
    const publicKeys = [...keys.map((pair) => pair.publicKey), ...highKeys];
    fc.assert(fc.property(fc.integer({ min: 0, max: publicKeys.length - 1 }), bytes32, bytes32, fc.bigInt({ min: 0n, max: CURVE_ORDER - 1n }), (index, messageHash, r, s) => {
      const publicKey = publicKeys[index]!;
      const signature = new Uint8Array([...r, ...toBytes32(s)]);
      const expected = commitmentByNoble(messageHash, publicKey, signature);
      const native = nativeCommitment(messageHash, publicKey, signature);
      if (native !== undefined) expect(hex(native)).toBe(expected);
      else expect(expected === undefined || s === 0n || toBig(publicKey) % CURVE_ORDER === 0n).toBe(true);
    }), { numRuns: 300 });
  });

  it('agrees with the WASM and noble backends on arbitrary bytes and on range edges', () => {
    const edges = [0n, 1n, CURVE_ORDER - 1n, CURVE_ORDER, FIELD_SIZE - 1n, FIELD_SIZE, 2n ** 256n - 1n].map(toBytes32);
    const edgeOr = (arbitrary: fc.Arbitrary<Uint8Array>) => fc.oneof(arbitrary, fc.constantFrom(...edges, ...highKeys, ...keys.map((pair) => pair.publicKey)));
    fc.assert(fc.property(bytes32, edgeOr(bytes32), edgeOr(bytes32), edgeOr(bytes32), (messageHash, publicKey, r, s) => {
      const signature = new Uint8Array([...r, ...s]);
      const expected = verifySchnorrWasm(messageHash, publicKey, signature);
      expect(verifySchnorrNoble(messageHash, publicKey, signature)).toBe(expected);
      expect([expected, undefined]).toContain(verifyNative(messageHash, publicKey, signature));
      expect(verifySchnorr(messageHash, publicKey, signature)).toBe(expected);
    }), { numRuns: 400 });
  });
});

describe('keys off the curve', () => {
  it('are refused without harming the WASM backend: after 5,000 of them, signing and verifying still work (each used to leak WASM memory until every call failed)', () => {
    // x = 5 is not the x coordinate of a point on secp256k1 (BIP-340 test vector 5 uses it).
    const offCurve = unhex('0000000000000000000000000000000000000000000000000000000000000005');
    const rng = seededRng('off-curve');
    const key = generateKeyPair(rng);
    const hash = rng.bytes(32);
    const signature = signSchnorr(hash, key.secretKey, rng.bytes(32));
    for (let index = 0; index < 5_000; index++) {
      expect(verifySchnorrWasm(hash, offCurve, signature)).toBe(false);
      expect(verifyWasm(hash, offCurve, signature)).toBe(false);
    }
    expect(verifySchnorr(hash, offCurve, signature)).toBe(false);
    expect(verifySchnorrWasm(hash, key.publicKey, signature)).toBe(true);
    expect(verifyWasm(hash, key.publicKey, signature)).toBe(true);
    expect(verifySchnorr(hash, key.publicKey, signSchnorr(hash, key.secretKey, rng.bytes(32)))).toBe(true);
  });
});
