// Replay protection per device: a sliding window over nonces, as IPsec's anti-replay window
// (RFC 4303 §3.4.3). Nonces may arrive out of order within the window; each is accepted once.
import { kalimaError } from '../errors.ts';
import { NONCE_WINDOW } from '../ledger/limits.ts';
import { Reader, Writer } from '../ledger/codec.ts';

const BITMAP_BYTES = NONCE_WINDOW / 8;

export interface NonceWindow {
  highest: number;
  /** Bit i is set when nonce (highest - i) was used. */
  bitmap: Uint8Array;
}

function bitIsSet(bitmap: Uint8Array, bit: number): boolean {
  return (bitmap[bit >> 3]! & (1 << (bit & 7))) !== 0;
}

function setBit(bitmap: Uint8Array, bit: number): void {
  bitmap[bit >> 3] = bitmap[bit >> 3]! | (1 << (bit & 7));
}

/** Throws the coded error when the nonce was used or has left the window. */
export function checkNonce(window: NonceWindow | undefined, nonce: number): void {
  if (window === undefined || nonce > window.highest) return;
  const age = window.highest - nonce;
  if (age >= NONCE_WINDOW) throw kalimaError('KALIMA_ERR_LEDGER_NONCE_TOO_OLD', { nonce, oldestAccepted: window.highest - NONCE_WINDOW + 1 });
  if (bitIsSet(window.bitmap, age)) throw kalimaError('KALIMA_ERR_LEDGER_NONCE_REPLAYED', { nonce });
}

/** Returns the window after `nonce` is used; the nonce must have passed checkNonce. */
export function useNonce(window: NonceWindow | undefined, nonce: number): NonceWindow {
  if (window === undefined) {
    const bitmap = new Uint8Array(BITMAP_BYTES);
    setBit(bitmap, 0);
    return { highest: nonce, bitmap };
  }
  if (nonce <= window.highest) {
    const bitmap = window.bitmap.slice();
    setBit(bitmap, window.highest - nonce);
    return { highest: window.highest, bitmap };
  }
  const shift = nonce - window.highest;
  const bitmap = new Uint8Array(BITMAP_BYTES);
  if (shift < NONCE_WINDOW) {
    for (let bit = 0; bit + shift < NONCE_WINDOW; bit++) if (bitIsSet(window.bitmap, bit)) setBit(bitmap, bit + shift);
  }
  setBit(bitmap, 0);
  return { highest: nonce, bitmap };
}

export function encodeNonceWindow(window: NonceWindow): Uint8Array {
  return new Writer(BITMAP_BYTES + 10).varint(window.highest).fixed(window.bitmap, BITMAP_BYTES).finish();
}

export function decodeNonceWindow(bytes: Uint8Array): NonceWindow {
  const reader = new Reader(bytes);
  const window = { highest: reader.varint(), bitmap: reader.fixed(BITMAP_BYTES) };
  reader.end();
  return window;
}
