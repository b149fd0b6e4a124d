// The proof as an OpenTimestamps detached timestamp (.ots), readable by the OpenTimestamps tools.
// The format, as python-opentimestamps defines it (core/timestamp.py, op.py, notary.py, serialize.py):
//   magic    "\x00OpenTimestamps\x00\x00Proof\x00" bf 89 e2 e8 84 e8 92 94   (31 bytes)
//   version  one byte, major version 1
//   file hash operation tag (08 = SHA-256), then the file's digest (32 bytes)
//   the timestamp: operations, each a tag — 08 sha256; f0 append, f1 prepend, each followed by
//   varbytes (a varuint length, 1 … 4096, then the bytes) — ending in an attestation: 00, an
//   8-byte attestation tag, varbytes payload. Bitcoin's tag is 05 88 96 0d 73 d7 19 01 and its
//   payload is the block height as a varuint. A varuint is unsigned LEB128. ff before an item
//   opens a fork (several branches); an anchor proof is one path, so none is written or read.
// No message along the path may exceed 4096 bytes (Op.MAX_MSG_LENGTH / MAX_RESULT_LENGTH).
//
// The starting digest is the Kalima block hash. That hash is SHA256(tag prefix || header), so the
// file whose SHA-256 it is, `<height>.block` = tag prefix || encodeHeader(header), lets
// `ots verify -f <height>.block <height>.ots` check it like any timestamped file.
import { isKalimaError, kalimaError } from '../src/errors.ts';
import { TAG, concatBytes, tagPrefix, toHex } from '../src/ledger/hash.ts';
import type { ProofOp } from './ops.ts';
import { type AnchorProof, proofOps } from './proof.ts';

export const OTS_MAGIC = new Uint8Array([
  0x00, ...new TextEncoder().encode('OpenTimestamps'), 0x00, 0x00, ...new TextEncoder().encode('Proof'), 0x00,
  0xbf, 0x89, 0xe2, 0xe8, 0x84, 0xe8, 0x92, 0x94,
]);
const MAJOR_VERSION = 1;
const OP_SHA256 = 0x08;
const OP_APPEND = 0xf0;
const OP_PREPEND = 0xf1;
const ATTESTATION = 0x00;
const FORK = 0xff;
const BITCOIN_ATTESTATION_TAG = Uint8Array.from(Buffer.from('0588960d73d71901', 'hex'));
const PENDING_ATTESTATION_TAG = '83dfe30d2ef90c8e';
/** Operations OpenTimestamps knows that an anchor proof never uses. */
const OTHER_OPS: Record<number, string> = { 0x02: 'sha1', 0x03: 'ripemd160', 0x67: 'keccak256', 0xf2: 'reverse', 0xf3: 'hexlify' };
const MESSAGE_BYTES_MAX = 4096;
const ATTESTATION_PAYLOAD_BYTES_MAX = 8192;
/** A bound on the loop; an anchor proof has about 150. */
const OPS_MAX = 4096;
const DIGEST_BYTES = 32;

export interface OtsTimestamp {
  /** The SHA-256 the timestamp starts from: the Kalima block hash. */
  fileDigest: Uint8Array;
  ops: ProofOp[];
  /** The BitcoinBlockHeaderAttestation: the Merkle root the ops end in is that block's. */
  bitcoinHeight: number;
}

export function proofToOts(proof: AnchorProof): OtsTimestamp {
  return { fileDigest: proof.blockHash, ops: proofOps(proof), bitcoinHeight: proof.bitcoinHeight };
}

/** The bytes whose SHA-256 is the block hash: tag prefix || encodeHeader(header). */
export function blockFileBytes(headerEncoding: Uint8Array): Uint8Array {
  return concatBytes(tagPrefix(TAG.block), headerEncoding);
}

function varuint(value: number): number[] {
  const bytes: number[] = [];
  let remaining = value;
  while (remaining >= 0x80) {
    bytes.push((remaining % 0x80) | 0x80);
    remaining = Math.floor(remaining / 0x80);
  }
  bytes.push(remaining);
  return bytes;
}

export function encodeOts(timestamp: OtsTimestamp): Uint8Array {
  if (timestamp.fileDigest.length !== DIGEST_BYTES) throw kalimaError('KALIMA_ERR_PROOF_OTS_MALFORMED', { reason: 'the file digest is a 32-byte SHA-256' });
  const parts: Uint8Array[] = [OTS_MAGIC, Uint8Array.of(MAJOR_VERSION, OP_SHA256), timestamp.fileDigest];
  let messageBytes = DIGEST_BYTES;
  for (const op of timestamp.ops) {
    if (op.kind === 'sha256') {
      parts.push(Uint8Array.of(OP_SHA256));
      messageBytes = DIGEST_BYTES;
      continue;
    }
    messageBytes += op.data.length;
    if (op.data.length === 0 || messageBytes > MESSAGE_BYTES_MAX) {
      throw kalimaError('KALIMA_ERR_PROOF_OTS_UNSUPPORTED', { reason: `OpenTimestamps arguments are 1 to ${MESSAGE_BYTES_MAX} bytes and messages at most ${MESSAGE_BYTES_MAX}`, bytes: op.data.length });
    }
    parts.push(Uint8Array.of(op.kind === 'append' ? OP_APPEND : OP_PREPEND, ...varuint(op.data.length)), op.data);
  }
  const payload = varuint(timestamp.bitcoinHeight);
  parts.push(Uint8Array.of(ATTESTATION), BITCOIN_ATTESTATION_TAG, Uint8Array.of(...varuint(payload.length), ...payload));
  return concatBytes(...parts);
}

class OtsReader {
  offset = 0;
  constructor(private readonly bytes: Uint8Array) {}

  take(count: number): Uint8Array {
    if (this.offset + count > this.bytes.length) throw kalimaError('KALIMA_ERR_PROOF_OTS_TRUNCATED', { offset: this.offset, needed: count });
    // A copy, and a plain Uint8Array even when the input is a Buffer.
    const slice = new Uint8Array(this.bytes.subarray(this.offset, this.offset + count));
    this.offset += count;
    return slice;
  }

  u8(): number {
    return this.take(1)[0]!;
  }

  /** Unsigned LEB128, minimal, at most 2^53 - 1. */
  varuint(): number {
    const start = this.offset;
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = this.u8();
      value += (byte & 0x7f) * 2 ** shift;
      if (!Number.isSafeInteger(value)) throw kalimaError('KALIMA_ERR_PROOF_OTS_MALFORMED', { offset: start, reason: 'a varuint beyond 2^53' });
      if ((byte & 0x80) === 0) {
        if (byte === 0 && shift > 0) throw kalimaError('KALIMA_ERR_PROOF_OTS_MALFORMED', { offset: start, reason: 'a varuint that is not minimal' });
        return value;
      }
    }
  }

  varbytes(min: number, max: number): Uint8Array {
    const start = this.offset;
    const length = this.varuint();
    if (length < min || length > max) throw kalimaError('KALIMA_ERR_PROOF_OTS_MALFORMED', { offset: start, reason: `a length of ${length}, outside ${min} … ${max}` });
    return this.take(length);
  }

  get done(): boolean {
    return this.offset === this.bytes.length;
  }
}

/** The payload of a Bitcoin attestation: exactly one varuint. */
function attestedHeight(payload: Uint8Array, offset: number): number {
  const reader = new OtsReader(payload);
  let height: number;
  try {
    height = reader.varuint();
  } catch (error) {
    if (isKalimaError(error, 'KALIMA_ERR_PROOF_OTS_TRUNCATED')) throw kalimaError('KALIMA_ERR_PROOF_OTS_MALFORMED', { offset, reason: 'the Bitcoin attestation holds no complete height' });
    throw error;
  }
  if (!reader.done) throw kalimaError('KALIMA_ERR_PROOF_OTS_MALFORMED', { offset, reason: 'bytes after the height in the Bitcoin attestation' });
  return height;
}

/** Strict parse of a single-path timestamp ending in a Bitcoin attestation. */
export function decodeOts(bytes: Uint8Array): OtsTimestamp {
  const magicPresent = bytes.subarray(0, OTS_MAGIC.length);
  if (!magicPresent.every((byte, index) => byte === OTS_MAGIC[index])) throw kalimaError('KALIMA_ERR_PROOF_OTS_BAD_MAGIC', { start: toHex(magicPresent) });
  const reader = new OtsReader(bytes);
  reader.take(OTS_MAGIC.length);
  const unsupported = (reason: string) => kalimaError('KALIMA_ERR_PROOF_OTS_UNSUPPORTED', { offset: reader.offset, reason });
  const version = reader.u8();
  if (version !== MAJOR_VERSION) throw unsupported(`major version ${version}`);
  const fileHashOp = reader.u8();
  if (fileHashOp !== OP_SHA256) throw unsupported(`file hash ${OTHER_OPS[fileHashOp] ?? `0x${fileHashOp.toString(16)}`}; only SHA-256 files are anchored`);
  const fileDigest = reader.take(DIGEST_BYTES);
  const ops: ProofOp[] = [];
  let messageBytes = DIGEST_BYTES;
  for (;;) {
    if (ops.length > OPS_MAX) throw kalimaError('KALIMA_ERR_PROOF_OTS_MALFORMED', { offset: reader.offset, reason: `more than ${OPS_MAX} operations` });
    const tag = reader.u8();
    if (tag === OP_SHA256) {
      ops.push({ kind: 'sha256' });
      messageBytes = DIGEST_BYTES;
    } else if (tag === OP_APPEND || tag === OP_PREPEND) {
      const data = reader.varbytes(1, MESSAGE_BYTES_MAX);
      messageBytes += data.length;
      if (messageBytes > MESSAGE_BYTES_MAX) throw kalimaError('KALIMA_ERR_PROOF_OTS_MALFORMED', { offset: reader.offset, reason: `a message longer than ${MESSAGE_BYTES_MAX} bytes` });
      ops.push({ kind: tag === OP_APPEND ? 'append' : 'prepend', data });
    } else if (tag === ATTESTATION) {
      const attestationTag = reader.take(8);
      const payload = reader.varbytes(0, ATTESTATION_PAYLOAD_BYTES_MAX);
      if (toHex(attestationTag) !== toHex(BITCOIN_ATTESTATION_TAG)) {
        throw unsupported(toHex(attestationTag) === PENDING_ATTESTATION_TAG ? 'a pending (calendar) attestation, not a Bitcoin one' : `attestation ${toHex(attestationTag)}`);
      }
      const bitcoinHeight = attestedHeight(payload, reader.offset);
      if (!reader.done) throw kalimaError('KALIMA_ERR_PROOF_OTS_TRAILING_BYTES', { offset: reader.offset, bytes: bytes.length - reader.offset });
      return { fileDigest, ops, bitcoinHeight };
    } else if (tag === FORK) {
      throw unsupported('a fork: this verifier reads one path');
    } else {
      throw unsupported(`operation ${OTHER_OPS[tag] ?? `0x${tag.toString(16)}`}`);
    }
  }
}
