// BIP-340 verification on native libsecp256k1, with tiny-secp256k1's WASM build as the fallback.
// Plain JavaScript so that the verifier threads (src/node/verify-worker.js) load it without a
// TypeScript loader; the types are in bip340.d.ts.
//
// No npm package ships a prebuilt native binding of libsecp256k1's schnorrsig module. The
// `secp256k1` package (N-API, prebuilt for linux-x64 glibc and musl, darwin and win32) binds its
// ECDSA public-key recovery, whose one multi-scalar multiplication is the same one a BIP-340 check
// needs. For a 32-byte message m, x-only key P (px), signature (r, s), BIP-340 accepts iff
//   r < p, s < n, P = lift_x(px) exists, e = int(tagged_hash("BIP0340/challenge", r||px||m)) mod n,
//   R = s·G − e·P is not infinity, R has an even y and x(R) = r.
// ECDSA recovery with signature (ρ, σ), recovery id and message scalar μ computes
//   Q = ρ⁻¹·(σ·X − μ·G), where X is the point with x(X) = ρ (+ n when the id has bit 2) and the
//   parity of y given by the id's bit 1,
// so with X = lift_x(px) (even y: id 0, or 2 when px ≥ n), ρ = px mod n, σ = −e·ρ, μ = −s·ρ it gives
//   Q = ρ⁻¹·(−e·ρ·P + s·ρ·G) = s·G − e·P = R.
// What recovery cannot take (ρ = 0, σ = 0, that is e = 0, a key that is not on the curve, an
// infinite R) makes it fail, and every such case is decided by the WASM verifier instead: the fast
// path only answers when it has computed R itself. Range checks on r, s and px come first.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as wasm from 'tiny-secp256k1';

const P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn;
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const MASK64 = 0xffffffffffffffffn;

/** Loads the prebuilt addon itself: the package's own entry point would fall back to pure JS in silence. */
function loadNative() {
  if (process.env.KALIMA_SECP256K1 === 'wasm') return { addon: undefined, error: 'KALIMA_SECP256K1=wasm' };
  try {
    const require = createRequire(import.meta.url);
    const nodeGypBuild = require('node-gyp-build');
    const { Secp256k1 } = nodeGypBuild(dirname(require.resolve('secp256k1/package.json')));
    return { addon: new Secp256k1(), error: undefined };
  } catch (error) {
    return { addon: undefined, error: String(error?.message ?? error) };
  }
}

const native = loadNative();

/** 'native' when the libsecp256k1 addon loaded, else 'wasm'; nativeError says why not. */
export const backend = native.addon !== undefined ? 'native' : 'wasm';
export const nativeError = native.error;

// SHA-256 state after the 64-byte prefix sha256(tag) || sha256(tag); each challenge copies it.
const challengeTag = createHash('sha256').update('BIP0340/challenge').digest();
const challengePrefix = createHash('sha256').update(challengeTag).update(challengeTag);

// Scratch buffers: this runs on one thread at a time, and nothing keeps them across calls.
const recoverable = new Uint8Array(64);
const messageScalar = new Uint8Array(32);
const recovered = new Uint8Array(33);
const recoverableView = new DataView(recoverable.buffer);
const messageView = new DataView(messageScalar.buffer);

function readBig(bytes, offset) {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, 32);
  return (view.getBigUint64(0) << 192n) | (view.getBigUint64(8) << 128n) | (view.getBigUint64(16) << 64n) | view.getBigUint64(24);
}

function writeBig(view, offset, value) {
  view.setBigUint64(offset, value >> 192n);
  view.setBigUint64(offset + 8, (value >> 128n) & MASK64);
  view.setBigUint64(offset + 16, (value >> 64n) & MASK64);
  view.setBigUint64(offset + 24, value & MASK64);
}

/**
 * R = s·G − e·P computed by native recovery, compressed (33 bytes, in a scratch buffer that the
 * next call overwrites), or undefined when recovery refuses the inputs (see above). Exported for
 * the tests, which check it against an independent computation. r, s and px must be in range.
 */
export function nativeCommitment(messageHash, publicKey, signature) {
  const addon = native.addon;
  if (addon === undefined) return undefined;
  const s = readBig(signature, 32);
  const px = readBig(publicKey, 0);
  const digest = challengePrefix.copy().update(signature.subarray(0, 32)).update(publicKey).update(messageHash).digest();
  const e = readBig(digest, 0) % N;
  const rho = px % N;
  if (e === 0n || rho === 0n) return undefined;
  writeBig(recoverableView, 0, rho);
  writeBig(recoverableView, 32, N - ((e * rho) % N));
  const mu = (s * rho) % N;
  writeBig(messageView, 0, mu === 0n ? 0n : N - mu);
  // 0: recovered; 1: the signature does not parse; 2: recovery failed (no point, or infinity).
  return addon.ecdsaRecover(recovered, recoverable, px >= N ? 2 : 0, messageScalar) === 0 ? recovered : undefined;
}

/**
 * The native check: true or false when it decided, undefined when it cannot (no addon, or a case
 * that recovery refuses), for the WASM verifier to decide. Inputs must be 32, 32 and 64 bytes.
 */
export function verifyNative(messageHash, publicKey, signature) {
  if (native.addon === undefined) return undefined;
  if (readBig(signature, 0) >= P || readBig(signature, 32) >= N || readBig(publicKey, 0) >= P) return false;
  const commitment = nativeCommitment(messageHash, publicKey, signature);
  if (commitment === undefined) return undefined;
  if (commitment[0] !== 0x02) return false;
  for (let index = 0; index < 32; index++) if (commitment[index + 1] !== signature[index]) return false;
  return true;
}

/** tiny-secp256k1's WASM libsecp256k1; a key off the curve or an out-of-range value is a failed check. */
export function verifyWasm(messageHash, publicKey, signature) {
  // Checked first: tiny-secp256k1 rejects a key off the curve inside the WASM with a TypeError that
  // leaks some of its memory each time; a few thousand of them (sent by anyone, say as request
  // signatures) would break every later call in the thread, signing included. isXOnlyPoint does not leak.
  if (!wasm.isXOnlyPoint(publicKey)) return false;
  try {
    return wasm.verifySchnorr(messageHash, publicKey, signature);
  } catch (error) {
    if (error instanceof TypeError) return false;
    throw error;
  }
}

/** BIP-340 verification of a 32-byte hash; false for inputs of the wrong lengths. */
export function verifyBip340(messageHash, publicKey, signature) {
  if (messageHash.length !== 32 || publicKey.length !== 32 || signature.length !== 64) return false;
  return verifyNative(messageHash, publicKey, signature) ?? verifyWasm(messageHash, publicKey, signature);
}
