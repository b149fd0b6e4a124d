// A block: a header, the committed messages, and the leader's BIP-340 signature over the block hash.
// The hashchain: header.prevHash is the previous block's hash (the genesis hash for height 1).
import { kalimaError } from '../errors.ts';
import { Reader, Writer } from './codec.ts';
import { TAG, bytesEqual, taggedHash, toHex } from './hash.ts';
import { BLOCK_BYTES_MAX, BLOCK_MESSAGES_MAX, CHAIN_BYTES_MAX } from './limits.ts';
import { merkleLeafHash, merkleRoot } from './merkle.ts';
import { type CommittedMessage, encodeCommitted, readCommitted, writeCommitted } from './message.ts';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES, signSchnorr, verifySchnorr } from './signature.ts';

const HEADER_VERSION = 1;

export interface BlockHeader {
  chain: string;
  /** 1 for the first block. */
  height: number;
  prevHash: Uint8Array;
  /** The leader's timestamp, ms since the Unix epoch. */
  timeMs: number;
  leader: Uint8Array;
  term: number;
  messageCount: number;
  txRoot: Uint8Array;
  /** Digest of the whole MemCache after this block. */
  stateDigest: Uint8Array;
  /** MMR root over the hashes of blocks 1 .. height-1. */
  mmrRoot: Uint8Array;
}

export interface Block {
  header: BlockHeader;
  messages: CommittedMessage[];
  signature: Uint8Array;
}

export function encodeHeader(header: BlockHeader): Uint8Array {
  return new Writer(256)
    .u8(HEADER_VERSION)
    .text(header.chain)
    .varint(header.height)
    .fixed(header.prevHash, 32)
    .varint(header.timeMs)
    .fixed(header.leader, PUBLIC_KEY_BYTES)
    .varint(header.term)
    .varint(header.messageCount)
    .fixed(header.txRoot, 32)
    .fixed(header.stateDigest, 32)
    .fixed(header.mmrRoot, 32)
    .finish();
}

function readHeader(reader: Reader): BlockHeader {
  const version = reader.u8();
  if (version !== HEADER_VERSION) throw kalimaError('KALIMA_ERR_CODEC_UNKNOWN_VERSION', { version });
  return {
    chain: reader.text(CHAIN_BYTES_MAX),
    height: reader.varint(),
    prevHash: reader.fixed(32),
    timeMs: reader.varint(),
    leader: reader.fixed(PUBLIC_KEY_BYTES),
    term: reader.varint(),
    messageCount: reader.varint(),
    txRoot: reader.fixed(32),
    stateDigest: reader.fixed(32),
    mmrRoot: reader.fixed(32),
  };
}

/** The header at the start of an encoded block (the rest is not read). */
export function decodeBlockHeader(bytes: Uint8Array): BlockHeader {
  return readHeader(new Reader(bytes));
}

/** A header alone (a client node's filtered block carries the header, not the whole block). */
export function decodeHeader(bytes: Uint8Array): BlockHeader {
  const reader = new Reader(bytes);
  const header = readHeader(reader);
  reader.end();
  return header;
}

export function blockHash(header: BlockHeader): Uint8Array {
  return taggedHash(TAG.block, encodeHeader(header));
}

export function encodeBlock(block: Block): Uint8Array {
  const writer = new Writer(4096);
  writer.raw(encodeHeader(block.header));
  for (const committed of block.messages) writeCommitted(writer, committed);
  writer.fixed(block.signature, SIGNATURE_BYTES);
  const bytes = writer.finish();
  if (bytes.length > BLOCK_BYTES_MAX) throw kalimaError('KALIMA_ERR_LEDGER_BLOCK_TOO_LARGE', { bytes: bytes.length, max: BLOCK_BYTES_MAX });
  return bytes;
}

/** encodeBlock from encodings already made: the header's and each committed message's. */
export function assembleBlock(headerEncoding: Uint8Array, committedEncodings: readonly Uint8Array[], signature: Uint8Array): Uint8Array {
  let length = headerEncoding.length + SIGNATURE_BYTES;
  for (const encoding of committedEncodings) length += encoding.length;
  if (length > BLOCK_BYTES_MAX) throw kalimaError('KALIMA_ERR_LEDGER_BLOCK_TOO_LARGE', { bytes: length, max: BLOCK_BYTES_MAX });
  const writer = new Writer(length).raw(headerEncoding);
  for (const encoding of committedEncodings) writer.raw(encoding);
  return writer.fixed(signature, SIGNATURE_BYTES).finish();
}

export function decodeBlock(bytes: Uint8Array): Block {
  if (bytes.length > BLOCK_BYTES_MAX) throw kalimaError('KALIMA_ERR_LEDGER_BLOCK_TOO_LARGE', { bytes: bytes.length, max: BLOCK_BYTES_MAX });
  const reader = new Reader(bytes);
  const header = readHeader(reader);
  if (header.messageCount > BLOCK_MESSAGES_MAX) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { messageCount: header.messageCount });
  const messages: CommittedMessage[] = [];
  for (let index = 0; index < header.messageCount; index++) messages.push(readCommitted(reader));
  const signature = reader.fixed(SIGNATURE_BYTES);
  reader.end();
  return { header, messages, signature };
}

/** Bytes a header and signature take, to size blocks while filling them. */
export function blockOverheadBytes(chain: string): number {
  return encodeHeader({
    chain, height: Number.MAX_SAFE_INTEGER, prevHash: new Uint8Array(32), timeMs: Number.MAX_SAFE_INTEGER,
    leader: new Uint8Array(32), term: Number.MAX_SAFE_INTEGER, messageCount: BLOCK_MESSAGES_MAX,
    txRoot: new Uint8Array(32), stateDigest: new Uint8Array(32), mmrRoot: new Uint8Array(32),
  }).length + SIGNATURE_BYTES;
}

export function txRootOf(messages: readonly CommittedMessage[]): Uint8Array {
  return merkleRoot(messages.map((committed) => merkleLeafHash(encodeCommitted(committed))));
}

export function signBlock(header: BlockHeader, messages: CommittedMessage[], secretKey: Uint8Array, auxRand: Uint8Array): Block {
  return { header, messages, signature: signSchnorr(blockHash(header), secretKey, auxRand) };
}

/**
 * The checks that need nothing but the block and its predecessor: size, encoding, hashchain,
 * txRoot, message count and the leader's signature. State checks (sequences, permissions, the
 * state digest) belong to the executor.
 */
export function checkBlockIntegrity(block: Block, expected: { chain: string; height: number; prevHash: Uint8Array; mmrRoot: Uint8Array }): void {
  const { header } = block;
  const fail = (reason: string, extra: Record<string, unknown> = {}): never => {
    throw kalimaError('KALIMA_ERR_LEDGER_BAD_BLOCK', { height: header.height, reason, ...extra });
  };
  if (header.chain !== expected.chain) fail('wrong chain', { chain: header.chain });
  if (header.height !== expected.height) fail('wrong height', { expectedHeight: expected.height });
  if (!bytesEqual(header.prevHash, expected.prevHash)) fail('prevHash does not match the previous block', { prevHash: toHex(header.prevHash), expected: toHex(expected.prevHash) });
  if (!bytesEqual(header.mmrRoot, expected.mmrRoot)) fail('mmrRoot does not match the earlier blocks');
  if (header.messageCount !== block.messages.length) fail('messageCount does not match');
  if (!bytesEqual(header.txRoot, txRootOf(block.messages))) fail('txRoot does not match the messages');
  if (!verifySchnorr(blockHash(header), header.leader, block.signature)) fail('the leader signature does not verify');
}
