import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Reader, Writer, utf8ByteLength, utf8Bytes } from '../../src/ledger/codec.ts';
import { KalimaError, type KalimaErrorCode } from '../../src/errors.ts';
import { expectKalimaError, outcomeOf } from './support/kalima-error.ts';
import { hex, unhex } from './support/seeded-rng.ts';

/** Unsigned LEB128 computed on bigints, independent of the Writer's float arithmetic. */
function referenceVarint(value: number): Uint8Array {
  const out: number[] = [];
  let remaining = BigInt(value);
  do {
    const group = Number(remaining & 0x7fn);
    remaining >>= 7n;
    out.push(remaining === 0n ? group : group | 0x80);
  } while (remaining !== 0n);
  return new Uint8Array(out);
}

function varintBytes(value: number): Uint8Array {
  return new Writer().varint(value).finish();
}

/** Well-formed text strings (U+FEFF included), whose round trip must hold. */
const wellFormedText = fc.string({ unit: 'grapheme', maxLength: 40 });

describe('varint', () => {
  const valid: Array<{ encoding: string; value: number }> = [
    { encoding: '00', value: 0 },
    { encoding: '01', value: 1 },
    { encoding: '7f', value: 127 },
    { encoding: '8001', value: 128 },
    { encoding: 'ff01', value: 255 },
    { encoding: 'ac02', value: 300 },
    { encoding: 'ffff03', value: 65_535 },
    { encoding: 'ffffffff0f', value: 2 ** 32 - 1 },
    { encoding: '8080808080808008', value: 2 ** 52 },
    { encoding: 'ffffffffffffff0f', value: Number.MAX_SAFE_INTEGER },
  ];

  it.each(valid)('encodes $value as $encoding and decodes it back', ({ encoding, value }) => {
    expect(hex(varintBytes(value))).toBe(encoding);
    const reader = new Reader(unhex(encoding));
    expect(reader.varint()).toBe(value);
    expect(reader.remaining).toBe(0);
  });

  const invalid: Array<{ encoding: string; code: KalimaErrorCode; why: string }> = [
    { encoding: '', code: 'KALIMA_ERR_CODEC_TRUNCATED', why: 'no byte at all' },
    { encoding: '80', code: 'KALIMA_ERR_CODEC_TRUNCATED', why: 'continuation bit on the last byte' },
    { encoding: 'ffff', code: 'KALIMA_ERR_CODEC_TRUNCATED', why: 'two continuation bytes then nothing' },
    { encoding: '8000', code: 'KALIMA_ERR_CODEC_NON_CANONICAL', why: 'zero padded to two bytes' },
    { encoding: '8100', code: 'KALIMA_ERR_CODEC_NON_CANONICAL', why: 'one padded to two bytes' },
    { encoding: 'ff8000', code: 'KALIMA_ERR_CODEC_NON_CANONICAL', why: '127 padded to three bytes' },
    { encoding: '8080808080808000', code: 'KALIMA_ERR_CODEC_NON_CANONICAL', why: 'zero padded to eight bytes' },
    { encoding: '8080808080808010', code: 'KALIMA_ERR_CODEC_OUT_OF_RANGE', why: '2^53' },
    { encoding: 'ffffffffffffff7f', code: 'KALIMA_ERR_CODEC_OUT_OF_RANGE', why: '2^56-1' },
    { encoding: '808080808080808001', code: 'KALIMA_ERR_CODEC_OUT_OF_RANGE', why: 'nine groups' },
    { encoding: 'ffffffffffffffff', code: 'KALIMA_ERR_CODEC_OUT_OF_RANGE', why: 'eight continuation bytes' },
  ];

  it.each(invalid)('rejects $encoding ($why) with $code', ({ encoding, code }) => {
    expectKalimaError(() => new Reader(unhex(encoding)).varint(), code);
  });

  it.each([
    { value: -1 }, { value: 1.5 }, { value: 2 ** 53 }, { value: Number.NaN }, { value: Number.POSITIVE_INFINITY },
  ])('the writer refuses $value with KALIMA_ERR_CODEC_OUT_OF_RANGE', ({ value }) => {
    expectKalimaError(() => new Writer().varint(value), 'KALIMA_ERR_CODEC_OUT_OF_RANGE');
  });

  it('round trips every safe integer through the minimal LEB128 encoding', () => {
    fc.assert(fc.property(fc.maxSafeNat(), (value) => {
      const bytes = varintBytes(value);
      expect(bytes).toEqual(referenceVarint(value));
      const reader = new Reader(bytes);
      expect(reader.varint()).toBe(value);
      expect(reader.remaining).toBe(0);
    }), { numRuns: 2000 });
  });

  it('accepts a byte string only as the one encoding the writer produces for its value', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 10 }), (bytes) => {
      const reader = new Reader(bytes);
      let value: number;
      try {
        value = reader.varint();
      } catch (error) {
        expect(error).toBeInstanceOf(KalimaError);
        return;
      }
      expect(varintBytes(value)).toEqual(bytes.slice(0, reader.position));
    }), { numRuns: 3000 });
  });

  it('peekVarint leaves the position where it was, also when it fails', () => {
    const reader = new Reader(unhex('ac02'));
    expect(reader.peekVarint()).toBe(300);
    expect(reader.position).toBe(0);
    expect(reader.varint()).toBe(300);

    const failing = new Reader(unhex('8000'));
    expectKalimaError(() => failing.peekVarint(), 'KALIMA_ERR_CODEC_NON_CANONICAL');
    expect(failing.position).toBe(0);
    expect(failing.u8()).toBe(0x80);
  });
});

describe('fixed and length-prefixed bytes', () => {
  it('refuses to write fixed bytes of the wrong width', () => {
    expectKalimaError(() => new Writer().fixed(new Uint8Array(31), 32), 'KALIMA_ERR_CODEC_OUT_OF_RANGE');
    expectKalimaError(() => new Writer().fixed(new Uint8Array(33), 32), 'KALIMA_ERR_CODEC_OUT_OF_RANGE');
  });

  it('reads fixed bytes as a copy and reports truncation', () => {
    const source = unhex('0102030405');
    const reader = new Reader(source);
    const first = reader.fixed(3);
    expect(hex(first)).toBe('010203');
    first[0] = 0xff;
    expect(source[0]).toBe(0x01);
    expectKalimaError(() => reader.fixed(3), 'KALIMA_ERR_CODEC_TRUNCATED');
  });

  const cases: Array<{ name: string; encoding: string; maxLength: number; expected: string | KalimaErrorCode }> = [
    { name: 'empty', encoding: '00', maxLength: 0, expected: '' },
    { name: 'exactly the maximum', encoding: '03aabbcc', maxLength: 3, expected: 'aabbcc' },
    { name: 'one over the maximum', encoding: '04aabbccdd', maxLength: 3, expected: 'KALIMA_ERR_CODEC_OUT_OF_RANGE' },
    { name: 'length announces more than is there', encoding: '03aabb', maxLength: 8, expected: 'KALIMA_ERR_CODEC_TRUNCATED' },
    { name: 'non-canonical length', encoding: '8300aabbcc', maxLength: 8, expected: 'KALIMA_ERR_CODEC_NON_CANONICAL' },
    { name: 'huge length is refused before allocation', encoding: 'ffffffffffffff0f', maxLength: 8192, expected: 'KALIMA_ERR_CODEC_OUT_OF_RANGE' },
  ];

  it.each(cases)('bytes(): $name', ({ encoding, maxLength, expected }) => {
    const reader = new Reader(unhex(encoding));
    if (expected.startsWith('KALIMA_ERR_')) {
      expectKalimaError(() => reader.bytes(maxLength), expected as KalimaErrorCode);
    } else {
      expect(hex(reader.bytes(maxLength))).toBe(expected);
      expect(reader.remaining).toBe(0);
    }
  });
});

describe('text', () => {
  it('round trips well-formed strings and measures the bound in UTF-8 bytes', () => {
    fc.assert(fc.property(wellFormedText, (text) => {
      const encoded = new Writer().text(text).finish();
      const byteLength = utf8ByteLength(text);
      expect(byteLength).toBe(utf8Bytes(text).length);
      expect(new Reader(encoded).text(byteLength)).toBe(text);
      if (byteLength > 0) expectKalimaError(() => new Reader(encoded).text(byteLength - 1), 'KALIMA_ERR_CODEC_OUT_OF_RANGE');
    }), { numRuns: 1000 });
  });

  it('counts bytes, not characters: "é" is two bytes', () => {
    const encoded = new Writer().text('é').finish();
    expect(hex(encoded)).toBe('02c3a9');
    expectKalimaError(() => new Reader(encoded).text(1), 'KALIMA_ERR_CODEC_OUT_OF_RANGE');
  });

  const badUtf8: Array<{ payload: string; why: string }> = [
    { payload: '80', why: 'lone continuation byte' },
    { payload: 'ff', why: 'byte never valid in UTF-8' },
    { payload: 'c080', why: 'overlong NUL' },
    { payload: 'c1bf', why: 'overlong two-byte form' },
    { payload: 'e08080', why: 'overlong three-byte form' },
    { payload: 'f0808080', why: 'overlong four-byte form' },
    { payload: 'eda080', why: 'UTF-16 surrogate U+D800' },
    { payload: 'edbfbf', why: 'UTF-16 surrogate U+DFFF' },
    { payload: 'f4908080', why: 'above U+10FFFF' },
    { payload: 'e282', why: 'sequence cut short' },
    { payload: '61e2', why: 'sequence cut short after ASCII' },
  ];

  it.each(badUtf8)('rejects $payload ($why) with KALIMA_ERR_CODEC_BAD_UTF8', ({ payload }) => {
    const encoded = new Writer().bytes(unhex(payload)).finish();
    expectKalimaError(() => new Reader(encoded).text(64), 'KALIMA_ERR_CODEC_BAD_UTF8');
  });

  // A decoder that strips a leading EF BB BF would read two byte strings as one value.
  it('keeps a leading U+FEFF (byte order mark) through a round trip', () => {
    const encoded = new Writer().text('\uFEFFkalima').finish();
    expect(new Reader(encoded).text(64)).toBe('\uFEFFkalima');
  });
});

describe('Writer and Reader together', () => {
  type Op =
    | { kind: 'u8'; value: number }
    | { kind: 'varint'; value: number }
    | { kind: 'fixed'; value: Uint8Array }
    | { kind: 'bytes'; value: Uint8Array }
    | { kind: 'text'; value: string };

  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.integer({ min: 0, max: 255 }).map((value) => ({ kind: 'u8' as const, value })),
    fc.maxSafeNat().map((value) => ({ kind: 'varint' as const, value })),
    fc.uint8Array({ maxLength: 40 }).map((value) => ({ kind: 'fixed' as const, value })),
    fc.uint8Array({ maxLength: 300 }).map((value) => ({ kind: 'bytes' as const, value })),
    wellFormedText.map((value) => ({ kind: 'text' as const, value })),
  );

  function write(writer: Writer, ops: readonly Op[]): Uint8Array {
    for (const step of ops) {
      if (step.kind === 'u8') writer.u8(step.value);
      else if (step.kind === 'varint') writer.varint(step.value);
      else if (step.kind === 'fixed') writer.fixed(step.value, step.value.length);
      else if (step.kind === 'bytes') writer.bytes(step.value);
      else writer.text(step.value);
    }
    return writer.finish();
  }

  it('reads back any sequence of values, whatever the initial capacity, and then ends', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 20 }), fc.integer({ min: 1, max: 16 }), (ops, capacity) => {
      const bytes = write(new Writer(capacity), ops);
      expect(bytes).toEqual(write(new Writer(), ops));
      const reader = new Reader(bytes);
      for (const step of ops) {
        if (step.kind === 'u8') expect(reader.u8()).toBe(step.value);
        else if (step.kind === 'varint') expect(reader.varint()).toBe(step.value);
        else if (step.kind === 'fixed') expect(reader.fixed(step.value.length)).toEqual(step.value);
        else if (step.kind === 'bytes') expect(reader.bytes(step.value.length)).toEqual(step.value);
        else expect(reader.text(utf8ByteLength(step.value))).toBe(step.value);
      }
      reader.end();
      if (bytes.length > 0) {
        // One byte cut off the end leaves the last value truncated.
        const cut = new Reader(bytes.subarray(0, bytes.length - 1));
        expect(outcomeOf(() => {
          for (const step of ops) {
            if (step.kind === 'u8') cut.u8();
            else if (step.kind === 'varint') cut.varint();
            else if (step.kind === 'fixed') cut.fixed(step.value.length);
            else if (step.kind === 'bytes') cut.bytes(step.value.length);
            else cut.text(utf8ByteLength(step.value));
          }
        })).toBe('KALIMA_ERR_CODEC_TRUNCATED');
      }
    }), { numRuns: 300 });
  });

  it('end() reports trailing bytes with their count', () => {
    const reader = new Reader(unhex('0102ff'));
    reader.u8();
    reader.u8();
    const error = expectKalimaError(() => reader.end(), 'KALIMA_ERR_CODEC_TRAILING_BYTES');
    expect(error.details).toMatchObject({ offset: 2, trailing: 1 });
    reader.u8();
    expect(() => reader.end()).not.toThrow();
  });

  it('reports truncation with the offset and the shortfall', () => {
    const reader = new Reader(unhex('01'));
    reader.u8();
    const error = expectKalimaError(() => reader.u8(), 'KALIMA_ERR_CODEC_TRUNCATED');
    expect(error.details).toMatchObject({ offset: 1, need: 1, have: 0 });
    expect(error.status).toBe(400);
  });
});
