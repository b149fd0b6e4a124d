import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KalimaError, type KalimaErrorCode } from '../../src/errors.ts';
import { Writer } from '../../src/ledger/codec.ts';
import { NONCE_RECENT_MAX } from '../../src/ledger/limits.ts';
import { type NonceWindow, checkNonce, decodeNonceWindow, encodeNonceWindow, useNonce } from '../../src/state/nonce-window.ts';
import { expectKalimaError, outcomeOf } from './support/kalima-error.ts';
import { hex } from './support/seeded-rng.ts';

/**
 * The reference model: the set of every nonce the device used. The window remembers the
 * NONCE_RECENT_MAX largest of them; the floor is the largest one it has forgotten (-1 if none), and
 * nothing at or below the floor is accepted again.
 */
class ReferenceWindow {
  readonly used = new Set<number>();

  get floor(): number {
    const descending = [...this.used].sort((a, b) => b - a);
    return descending[NONCE_RECENT_MAX] ?? -1;
  }

  get recent(): number[] {
    return [...this.used].sort((a, b) => a - b).filter((nonce) => nonce > this.floor);
  }

  check(nonce: number): 'ok' | KalimaErrorCode {
    if (this.used.size === 0) return 'ok';
    if (nonce <= this.floor) return 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD';
    return this.used.has(nonce) ? 'KALIMA_ERR_LEDGER_NONCE_REPLAYED' : 'ok';
  }
}

function apply(nonces: readonly number[]): NonceWindow | undefined {
  let window: NonceWindow | undefined;
  for (const nonce of nonces) {
    checkNonce(window, nonce);
    window = useNonce(window, nonce);
  }
  return window;
}

const range = (from: number, count: number, stride = 1): number[] => Array.from({ length: count }, (_, index) => from + index * stride);

describe('checkNonce and useNonce', () => {
  /** An offset from the largest nonce used so far: near it, a window's length behind, or a sparse jump ahead. */
  const step = fc.oneof(
    { arbitrary: fc.integer({ min: -20, max: 20 }), weight: 6 },
    { arbitrary: fc.integer({ min: -(NONCE_RECENT_MAX * 3), max: -(NONCE_RECENT_MAX - 20) }), weight: 2 },
    { arbitrary: fc.integer({ min: 1, max: 5_000_000 }), weight: 1 },
  );

  it('agree with the reference model on any sequence of nonces', () => {
    fc.assert(fc.property(fc.nat({ max: 1_000_000 }), fc.array(step, { minLength: 1, maxLength: 400 }), (start, steps) => {
      const model = new ReferenceWindow();
      let window: NonceWindow | undefined;
      let largest = start;
      for (const offset of steps) {
        const nonce = Math.max(0, largest + offset);
        const expected = model.check(nonce);
        expect(outcomeOf(() => checkNonce(window, nonce)), `nonce ${nonce}, floor ${model.floor}`).toBe(expected);
        if (expected !== 'ok') continue;
        const before = window === undefined ? undefined : encodeNonceWindow(window);
        const next = useNonce(window, nonce);
        // useNonce returns a new window and leaves the old one as it was.
        if (window !== undefined) expect(encodeNonceWindow(window)).toEqual(before);
        model.used.add(nonce);
        largest = Math.max(largest, nonce);
        window = next;
        expect(window.floor).toBe(model.floor);
        expect(window.recent).toEqual(model.recent);
        expect(window.recent.length).toBeLessThanOrEqual(NONCE_RECENT_MAX);
        expect(decodeNonceWindow(encodeNonceWindow(window))).toEqual(window);
      }
    }), { numRuns: 150 });
  });

  it('accept any nonce when the device has no window yet, then refuse it as a replay', () => {
    fc.assert(fc.property(fc.maxSafeNat(), (nonce) => {
      expect(() => checkNonce(undefined, nonce)).not.toThrow();
      const window = useNonce(undefined, nonce);
      expect(window).toEqual({ floor: -1, recent: [nonce] });
      expectKalimaError(() => checkNonce(window, nonce), 'KALIMA_ERR_LEDGER_NONCE_REPLAYED');
    }));
  });

  const full = range(1, NONCE_RECENT_MAX); // 1 .. 128: nothing forgotten yet
  const overflowing = range(1, NONCE_RECENT_MAX + 1); // 1 .. NONCE_RECENT_MAX+1: 1 is forgotten, the floor is 1
  const sparse = range(10, NONCE_RECENT_MAX + 1, 10); // 10, 20, ..: the floor is 10
  const micros = range(1_700_000_000_000_000, 3, 1_000_000); // microsecond timestamps, as the SDK sends
  const rows: Array<{ name: string; used: number[]; nonce: number; expected: 'ok' | KalimaErrorCode }> = [
    { name: 'a replay of the only nonce', used: [5], nonce: 5, expected: 'KALIMA_ERR_LEDGER_NONCE_REPLAYED' },
    { name: 'a lower nonce while nothing is forgotten', used: [5], nonce: 0, expected: 'ok' },
    { name: 'the oldest of 128 is still remembered', used: full, nonce: 1, expected: 'KALIMA_ERR_LEDGER_NONCE_REPLAYED' },
    { name: 'below 128 remembered nonces, never used', used: full, nonce: 0, expected: 'ok' },
    { name: 'one use past the window forgets the oldest: it becomes the floor', used: overflowing, nonce: 1, expected: 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD' },
    { name: 'below the floor', used: overflowing, nonce: 0, expected: 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD' },
    { name: 'just above the floor, remembered', used: overflowing, nonce: 2, expected: 'KALIMA_ERR_LEDGER_NONCE_REPLAYED' },
    { name: 'the next nonce after the last used', used: overflowing, nonce: NONCE_RECENT_MAX + 2, expected: 'ok' },
    { name: 'sparse: at the floor', used: sparse, nonce: 10, expected: 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD' },
    { name: 'sparse: an unused gap just above the floor', used: sparse, nonce: 11, expected: 'ok' },
    { name: 'sparse: an unused gap between remembered nonces', used: sparse, nonce: 655, expected: 'ok' },
    { name: 'sparse: a remembered nonce', used: sparse, nonce: 20, expected: 'KALIMA_ERR_LEDGER_NONCE_REPLAYED' },
    { name: 'microseconds: the latest again', used: micros, nonce: micros[2]!, expected: 'KALIMA_ERR_LEDGER_NONCE_REPLAYED' },
    { name: 'microseconds: an earlier, unused timestamp (reordered delivery)', used: micros, nonce: micros[0]! + 1, expected: 'ok' },
    { name: 'the largest safe nonce, then one below', used: [Number.MAX_SAFE_INTEGER], nonce: Number.MAX_SAFE_INTEGER - 1, expected: 'ok' },
  ];

  it.each(rows)('$name: $expected', ({ used, nonce, expected }) => {
    expect(outcomeOf(() => checkNonce(apply(used), nonce))).toBe(expected);
  });

  it('an unused nonce below the remembered ones, accepted into a full window, becomes the floor', () => {
    const window = useNonce(apply(sparse)!, 15);
    expect(window.floor).toBe(15);
    expect(window.recent).toEqual(range(20, NONCE_RECENT_MAX, 10));
    expectKalimaError(() => checkNonce(window, 15), 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD');
  });

  it('the too-old error carries the nonce and the floor', () => {
    const error = expectKalimaError(() => checkNonce(apply(overflowing), 0), 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD');
    expect(error.details).toMatchObject({ nonce: 0, floor: 1 });
    expect(error.status).toBe(409);
  });
});

describe('encodeNonceWindow and decodeNonceWindow', () => {
  /** Any valid window: a floor and up to NONCE_RECENT_MAX distinct nonces above it, ascending. */
  const windowArb: fc.Arbitrary<NonceWindow> = fc
    .tuple(
      fc.oneof(fc.constant(-1), fc.nat({ max: 1_000_000 }), fc.constant(Number.MAX_SAFE_INTEGER - 200)),
      fc.uniqueArray(fc.nat({ max: 199 }), { maxLength: NONCE_RECENT_MAX }),
      fc.oneof(fc.constant(1), fc.constant(1_000_000)),
    )
    .map(([floor, offsets, scale]) => ({
      floor,
      recent: offsets
        .map((offset) => floor + 1 + offset * (floor + 1 + 200 * scale < Number.MAX_SAFE_INTEGER ? scale : 1))
        .sort((a, b) => a - b),
    }));

  it('round trip any window, canonically', () => {
    fc.assert(fc.property(windowArb, (window) => {
      const bytes = encodeNonceWindow(window);
      expect(decodeNonceWindow(bytes)).toEqual(window);
      expect(encodeNonceWindow(decodeNonceWindow(bytes))).toEqual(bytes);
    }), { numRuns: 300 });
  });

  it('lay out floor+1, the count, then ascending gaps', () => {
    expect(hex(encodeNonceWindow({ floor: -1, recent: [] }))).toBe('0000');
    expect(hex(encodeNonceWindow({ floor: -1, recent: [0, 5, 6] }))).toBe('0003000400');
    expect(hex(encodeNonceWindow({ floor: 9, recent: [10, 138] }))).toBe('0a02007f');
  });

  const bad: Array<{ name: string; bytes: () => Uint8Array; code: KalimaErrorCode }> = [
    { name: 'empty', bytes: () => new Uint8Array(0), code: 'KALIMA_ERR_CODEC_TRUNCATED' },
    { name: 'count without nonces', bytes: () => new Writer().varint(0).varint(2).varint(0).finish(), code: 'KALIMA_ERR_CODEC_TRUNCATED' },
    { name: 'more than 128 nonces', bytes: () => new Writer().varint(0).varint(NONCE_RECENT_MAX + 1).finish(), code: 'KALIMA_ERR_CODEC_OUT_OF_RANGE' },
    { name: 'a nonce past 2^53-1', bytes: () => new Writer().varint(Number.MAX_SAFE_INTEGER).varint(1).varint(1).finish(), code: 'KALIMA_ERR_CODEC_OUT_OF_RANGE' },
    { name: 'gaps that add up past 2^53-1', bytes: () => new Writer().varint(0).varint(2).varint(2 ** 52).varint(2 ** 52).finish(), code: 'KALIMA_ERR_CODEC_OUT_OF_RANGE' },
    { name: 'a trailing byte', bytes: () => Uint8Array.of(...encodeNonceWindow({ floor: 3, recent: [4, 9] }), 0), code: 'KALIMA_ERR_CODEC_TRAILING_BYTES' },
    { name: 'a padded varint', bytes: () => Uint8Array.of(0x80, 0x00, 0x00), code: 'KALIMA_ERR_CODEC_NON_CANONICAL' },
  ];

  it.each(bad)('refuse $name with $code', ({ bytes, code }) => {
    expectKalimaError(() => decodeNonceWindow(bytes()), code);
  });

  it('refuse every truncation of a valid encoding', () => {
    const bytes = encodeNonceWindow(apply(range(1_000, NONCE_RECENT_MAX + 5, 977))!);
    for (let length = 0; length < bytes.length; length++) {
      expectKalimaError(() => decodeNonceWindow(bytes.subarray(0, length)), 'KALIMA_ERR_CODEC_TRUNCATED');
    }
  });

  it('any byte string either decodes to a window that re-encodes to it, or throws a KalimaError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      let window: NonceWindow;
      try {
        window = decodeNonceWindow(bytes);
      } catch (error) {
        expect(error).toBeInstanceOf(KalimaError);
        return;
      }
      expect(window.recent.length).toBeLessThanOrEqual(NONCE_RECENT_MAX);
      expect(window.recent.every((nonce, index) => nonce > (index === 0 ? window.floor : window.recent[index - 1]!))).toBe(true);
      expect(encodeNonceWindow(window)).toEqual(bytes);
    }), { numRuns: 1000 });
  });
});
