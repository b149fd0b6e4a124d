// The canonical binary codec for everything that is hashed or signed. One value has exactly one
// encoding: unsigned LEB128 varints must be minimal, text is UTF-8 with a length prefix, byte
// strings carry a length prefix, and a decoder rejects trailing bytes. JSON lives only at the
// HTTP edge.
import { kalimaError } from '../errors.ts';

const utf8Encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is text like any other; dropping it would give two encodings one value.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class Writer {
  private buffer: Uint8Array;
  private length = 0;

  constructor(initialCapacity = 256) {
    this.buffer = new Uint8Array(Math.max(16, initialCapacity));
  }

  private reserve(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    let capacity = this.buffer.length * 2;
    while (capacity < this.length + extra) capacity *= 2;
    const next = new Uint8Array(capacity);
    next.set(this.buffer.subarray(0, this.length));
    this.buffer = next;
  }

  u8(value: number): this {
    this.reserve(1);
    this.buffer[this.length++] = value & 0xff;
    return this;
  }

  /** Unsigned varint, 0 .. 2^53-1. */
  varint(value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { value });
    this.reserve(8);
    let remaining = value;
    while (remaining >= 0x80) {
      this.buffer[this.length++] = (remaining % 0x80) | 0x80;
      remaining = Math.floor(remaining / 0x80);
    }
    this.buffer[this.length++] = remaining;
    return this;
  }

  /** Fixed-width bytes; the reader must know the width. */
  fixed(bytes: Uint8Array, width: number): this {
    if (bytes.length !== width) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { expected: width, bytes: bytes.length });
    this.reserve(width);
    this.buffer.set(bytes, this.length);
    this.length += width;
    return this;
  }

  bytes(bytes: Uint8Array): this {
    this.varint(bytes.length);
    this.reserve(bytes.length);
    this.buffer.set(bytes, this.length);
    this.length += bytes.length;
    return this;
  }

  text(value: string): this {
    // Encoded in place: the length first (Buffer.byteLength counts a lone surrogate as U+FFFD's three
    // bytes, as encodeInto writes it), then the bytes, with no intermediate copy.
    const length = Buffer.byteLength(value, 'utf8');
    this.varint(length);
    this.reserve(length);
    const { written } = utf8Encoder.encodeInto(value, this.buffer.subarray(this.length, this.length + length));
    if (written !== length) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { reason: 'text encoding length mismatch' });
    this.length += length;
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.reserve(bytes.length);
    this.buffer.set(bytes, this.length);
    this.length += bytes.length;
    return this;
  }

  /** The bytes written; the Writer must not be used after. A view when it fills most of the buffer, else a copy. */
  finish(): Uint8Array {
    return this.length * 2 >= this.buffer.length ? this.buffer.subarray(0, this.length) : this.buffer.slice(0, this.length);
  }
}

export class Reader {
  private offset = 0;

  constructor(private readonly buffer: Uint8Array) {}

  get position(): number {
    return this.offset;
  }

  get remaining(): number {
    return this.buffer.length - this.offset;
  }

  private need(count: number): void {
    if (this.offset + count > this.buffer.length) {
      throw kalimaError('KALIMA_ERR_CODEC_TRUNCATED', { offset: this.offset, need: count, have: this.remaining });
    }
  }

  u8(): number {
    this.need(1);
    return this.buffer[this.offset++]!;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let index = 0; ; index++) {
      // 2^53 needs at most 8 groups of 7 bits.
      if (index >= 8) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { offset: this.offset });
      const byte = this.u8();
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) {
        if (byte === 0 && index > 0) throw kalimaError('KALIMA_ERR_CODEC_NON_CANONICAL', { offset: this.offset - 1, what: 'varint with a zero last group' });
        break;
      }
      scale *= 0x80;
    }
    if (!Number.isSafeInteger(value)) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { offset: this.offset });
    return value;
  }

  /** Reads a varint without consuming it. */
  peekVarint(): number {
    const saved = this.offset;
    try {
      return this.varint();
    } finally {
      this.offset = saved;
    }
  }

  fixed(width: number): Uint8Array {
    this.need(width);
    const out = this.buffer.slice(this.offset, this.offset + width);
    this.offset += width;
    return out;
  }

  bytes(maxLength: number): Uint8Array {
    const start = this.offset;
    const length = this.varint();
    if (length > maxLength) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { offset: start, length, max: maxLength });
    return this.fixed(length);
  }

  text(maxBytes: number): string {
    const start = this.offset;
    const bytes = this.bytes(maxBytes);
    try {
      return utf8Decoder.decode(bytes);
    } catch {
      throw kalimaError('KALIMA_ERR_CODEC_BAD_UTF8', { offset: start });
    }
  }

  end(): void {
    if (this.offset !== this.buffer.length) {
      throw kalimaError('KALIMA_ERR_CODEC_TRAILING_BYTES', { offset: this.offset, trailing: this.buffer.length - this.offset });
    }
  }
}

export function utf8Bytes(value: string): Uint8Array {
  return utf8Encoder.encode(value);
}

export function utf8ByteLength(value: string): number {
  return Buffer.byteLength(value, 'utf8');
}
