// BIP-340 Schnorr signatures over secp256k1. A device id is its 32-byte x-only public key.
//
// Backends: verification, this node's throughput ceiling, runs on native libsecp256k1 (the prebuilt
// `secp256k1` addon, see bip340.js) and falls back to tiny-secp256k1's WASM build of it when the
// addon does not load or for the rare inputs the native path leaves undecided; tiny-secp256k1 signs;
// @noble/secp256k1 derives keys and serves as an independent cross-check in the tests. Every
// signature is verified right after it is made.
import * as noble from '@noble/secp256k1';
import * as libsecp from 'tiny-secp256k1';
import { assert } from '../errors.ts';
import { verifyBip340 } from './bip340.js';
import { sha256 } from './hash.ts';
import type { Rng } from '../ports.ts';

noble.hashes.sha256 = (message: Uint8Array) => sha256(message);

export const SECRET_KEY_BYTES = 32;
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

export interface KeyPair {
  secretKey: Uint8Array;
  /** x-only public key (BIP-340). */
  publicKey: Uint8Array;
}

export function generateKeyPair(rng: Rng): KeyPair {
  for (;;) {
    const secretKey = rng.bytes(SECRET_KEY_BYTES);
    if (noble.utils.isValidSecretKey(secretKey)) return { secretKey, publicKey: publicKeyOf(secretKey) };
  }
}

export function publicKeyOf(secretKey: Uint8Array): Uint8Array {
  return noble.schnorr.getPublicKey(secretKey);
}

export function isValidSecretKey(secretKey: Uint8Array): boolean {
  return secretKey.length === SECRET_KEY_BYTES && noble.utils.isValidSecretKey(secretKey);
}

/** True when the 32 bytes are the x coordinate of a point on the curve (BIP-340 lift_x). */
export function isValidPublicKey(publicKey: Uint8Array): boolean {
  return publicKey.length === PUBLIC_KEY_BYTES && libsecp.isXOnlyPoint(publicKey);
}

/**
 * Signs a 32-byte message hash. auxRand is BIP-340's auxiliary randomness. A caller that knows
 * the public key passes it to save deriving it; the fresh signature is verified against it.
 */
export function signSchnorr(messageHash: Uint8Array, secretKey: Uint8Array, auxRand: Uint8Array, publicKey?: Uint8Array): Uint8Array {
  assert(messageHash.length === 32, `signSchnorr: message hash must be 32 bytes, got ${messageHash.length}`);
  const signature = libsecp.signSchnorr(messageHash, secretKey, auxRand);
  const signer = publicKey ?? libsecp.xOnlyPointFromScalar(secretKey);
  assert(libsecp.verifySchnorr(messageHash, signer, signature), 'signSchnorr: fresh signature does not verify');
  return signature;
}

export function verifySchnorr(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): boolean {
  if (messageHash.length !== 32 || publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES) return false;
  try {
    return verifyBip340(messageHash, publicKey, signature);
  } catch {
    // tiny-secp256k1 throws on a public key that is not on the curve; that is a failed verification.
    return false;
  }
}

/** tiny-secp256k1's WASM build alone, to cross-check the native path in the tests. */
export function verifySchnorrWasm(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): boolean {
  if (messageHash.length !== 32 || publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES) return false;
  // A key off the curve is refused before the WASM sees it (see bip340.js, verifyWasm).
  if (!libsecp.isXOnlyPoint(publicKey)) return false;
  try {
    return libsecp.verifySchnorr(messageHash, publicKey, signature);
  } catch {
    return false;
  }
}

/** The pure-JS verifier, used to cross-check the WASM backend. */
export function verifySchnorrNoble(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): boolean {
  try {
    return noble.schnorr.verify(signature, messageHash, publicKey);
  } catch {
    return false;
  }
}
