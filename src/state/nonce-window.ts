// Replay protection per device. The node remembers the most recent NONCE_RECENT_MAX nonces a
// device used and a floor below which every nonce is refused. A nonce is accepted once, if it is
// above the floor and not among the recent ones. The window is counted in messages, not in nonce
// values, so a device may use sparse nonces (the SDK uses microseconds since the epoch) and still
// have writes in flight and reordered (the node allows half the window: DEVICE_IN_FLIGHT_MAX).
import { kalimaError } from '../errors.ts';
import { NONCE_RECENT_MAX } from '../ledger/limits.ts';
import { Reader, Writer } from '../ledger/codec.ts';

export interface NonceWindow {
  /** Nonces at or below this are refused; -1 before any eviction. */
  floor: number;
  /** Used nonces above the floor, ascending, at most NONCE_RECENT_MAX. */
  recent: readonly number[];
}

function indexOf(recent: readonly number[], nonce: number): { found: boolean; index: number } {
  let low = 0;
  let high = recent.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (recent[middle]! < nonce) low = middle + 1;
    else high = middle;
  }
  return { found: recent[low] === nonce, index: low };
}

/** Throws the coded error when the nonce was used or is at or below the floor. */
export function checkNonce(window: NonceWindow | undefined, nonce: number): void {
  if (window === undefined) return;
  if (nonce <= window.floor) throw kalimaError('KALIMA_ERR_LEDGER_NONCE_TOO_OLD', { nonce, floor: window.floor });
  if (indexOf(window.recent, nonce).found) throw kalimaError('KALIMA_ERR_LEDGER_NONCE_REPLAYED', { nonce });
}

/** `recent` without its first `drop` items, with `nonce` inserted at `index` (of the original). One allocation. */
function withNonce(recent: readonly number[], drop: number, index: number, nonce: number): number[] {
  const next: number[] = new Array<number>(recent.length - drop + 1);
  let out = 0;
  for (let from = drop; from < index; from++) next[out++] = recent[from]!;
  next[out++] = nonce;
  for (let from = index; from < recent.length; from++) next[out++] = recent[from]!;
  return next;
}

/** Returns the window after `nonce` is used; the nonce must have passed checkNonce. */
export function useNonce(window: NonceWindow | undefined, nonce: number): NonceWindow {
  const current = window ?? { floor: -1, recent: [] };
  const { index } = indexOf(current.recent, nonce);
  if (current.recent.length < NONCE_RECENT_MAX) return { floor: current.floor, recent: withNonce(current.recent, 0, index, nonce) };
  // Full: the smallest of the recent nonces and this one is forgotten and becomes the floor.
  if (index === 0) return { floor: nonce, recent: current.recent };
  return { floor: current.recent[0]!, recent: withNonce(current.recent, 1, index, nonce) };
}

const encodings = new WeakMap<NonceWindow, Uint8Array>();

/** floor+1, the count, then the nonces as ascending deltas. Windows are immutable: encoded once. */
export function encodeNonceWindow(window: NonceWindow): Uint8Array {
  let encoded = encodings.get(window);
  if (encoded === undefined) {
    const writer = new Writer(16 + window.recent.length * 4).varint(window.floor + 1).varint(window.recent.length);
    let previous = window.floor;
    for (const nonce of window.recent) {
      writer.varint(nonce - previous - 1);
      previous = nonce;
    }
    encoded = writer.finish();
    encodings.set(window, encoded);
  }
  return encoded;
}

export function decodeNonceWindow(bytes: Uint8Array): NonceWindow {
  const reader = new Reader(bytes);
  const floor = reader.varint() - 1;
  const count = reader.varint();
  if (count > NONCE_RECENT_MAX) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { count });
  const recent: number[] = [];
  let previous = floor;
  for (let index = 0; index < count; index++) {
    previous = previous + reader.varint() + 1;
    if (!Number.isSafeInteger(previous)) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { nonce: previous });
    recent.push(previous);
  }
  reader.end();
  return { floor, recent };
}
