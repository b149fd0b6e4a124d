// The sync protocol between a client node and a master, inside a BOLT 8 link (net/link.ts). Each
// link message is one frame: the protocol version, the frame type, a request id (0 for what the
// master says of its own accord), then the type's fields in the canonical binary codec
// (ledger/codec.ts). A frame that does not decode, or decodes with bytes left over, is
// KALIMA_ERR_SYNC_BAD_MESSAGE: the receiver closes the link (and a master penalises the sender).
//
// Client to master: subscribe (address prefixes; with or without a snapshot), submit (a signed
// message), digest (the master's digest of this subscription's filtered set, now).
// Master to client: error (a coded refusal), snapshot-begin / snapshot-part / snapshot-end, a
// subscription without snapshot (subscribed), block (a filtered block), receipt, digest-answer.
import { type KalimaErrorCode, isErrorCode, isKalimaError, kalimaError } from '../errors.ts';
import { type BlockHeader, decodeHeader, encodeHeader } from '../ledger/block.ts';
import { Reader, Writer } from '../ledger/codec.ts';
import { ADDRESS_BYTES_MAX, BLOCK_MESSAGES_MAX } from '../ledger/limits.ts';
import { type CommittedMessage, type Message, encodeMessage, readCommitted, readMessage, writeCommitted } from '../ledger/message.ts';
import { SIGNATURE_BYTES } from '../ledger/signature.ts';
import { type CacheEntry, decodeEntry, encodeEntry } from '../state/entry.ts';
import type { CommitReceipt } from '../node/node.ts';
import { fromHex, toHex } from '../ledger/hash.ts';

export const SYNC_PROTOCOL_VERSION = 1;
/** Prefixes one subscription may name. */
export const SYNC_PREFIXES_MAX = 16;
/** A frame fits one link message (65,534 bytes, net/link.ts). */
export const SYNC_FRAME_BYTES_MAX = 65_534;
/** What a snapshot part carries at most, so that it fits a frame with room to spare. */
export const SNAPSHOT_PART_BYTES_TARGET = 48 * 1024;
/** Items (heads and entries) a snapshot may announce; a bound for the client's memory. */
export const SNAPSHOT_ITEMS_MAX = 10_000_000;
const ERROR_DETAILS_BYTES_MAX = 4_096;
const MERKLE_PATH_MAX = 16;

const TYPE = {
  subscribe: 1, submit: 2, digest: 3,
  error: 16, snapshotBegin: 17, snapshotPart: 18, snapshotEnd: 19, subscribed: 20, block: 21, receipt: 22, digestAnswer: 23,
} as const;

/** One message of a filtered block: its index among the block's messages, and its audit path to txRoot. */
export interface ProvenMessage {
  index: number;
  committed: CommittedMessage;
  path: Uint8Array[];
}

export type ClientFrame =
  | { type: 'subscribe'; requestId: number; prefixes: string[]; snapshot: boolean }
  | { type: 'submit'; requestId: number; message: Message }
  | { type: 'digest'; requestId: number };

export type ServerFrame =
  | { type: 'error'; requestId: number; code: KalimaErrorCode; details: Record<string, unknown> }
  /** The latest block's header and signature (none before block 1), the filtered set's digest, and how many heads and entries follow. */
  | { type: 'snapshot-begin'; requestId: number; header: BlockHeader | undefined; signature: Uint8Array | undefined; digest: Uint8Array; headCount: number; entryCount: number }
  | { type: 'snapshot-part'; requestId: number; heads: Array<[string, number]>; entries: CacheEntry[] }
  | { type: 'snapshot-end'; requestId: number }
  /** A subscription without a snapshot: blocks after this height follow. */
  | { type: 'subscribed'; requestId: number; height: number }
  | { type: 'block'; requestId: number; header: BlockHeader; signature: Uint8Array; messages: ProvenMessage[] }
  | { type: 'receipt'; requestId: number; receipt: CommitReceipt }
  | { type: 'digest-answer'; requestId: number; height: number; digest: Uint8Array };

function badMessage(reason: string, extra: Record<string, unknown> = {}): Error {
  return kalimaError('KALIMA_ERR_SYNC_BAD_MESSAGE', { reason, ...extra });
}

function start(type: number, requestId: number, capacity = 64): Writer {
  return new Writer(capacity).u8(SYNC_PROTOCOL_VERSION).u8(type).varint(requestId);
}

function writeOptionalHeader(writer: Writer, header: BlockHeader | undefined, signature: Uint8Array | undefined): void {
  if (header === undefined || signature === undefined) {
    writer.u8(0);
    return;
  }
  writer.u8(1).bytes(encodeHeader(header)).fixed(signature, SIGNATURE_BYTES);
}

export function encodeClientFrame(frame: ClientFrame): Uint8Array {
  switch (frame.type) {
    case 'subscribe': {
      const writer = start(TYPE.subscribe, frame.requestId).u8(frame.snapshot ? 1 : 0).varint(frame.prefixes.length);
      for (const prefix of frame.prefixes) writer.text(prefix);
      return writer.finish();
    }
    case 'submit':
      return start(TYPE.submit, frame.requestId, 512).bytes(encodeMessage(frame.message)).finish();
    case 'digest':
      return start(TYPE.digest, frame.requestId).finish();
  }
}

export function encodeServerFrame(frame: ServerFrame): Uint8Array {
  let writer: Writer;
  switch (frame.type) {
    case 'error':
      writer = start(TYPE.error, frame.requestId).text(frame.code).text(detailsText(frame.details));
      break;
    case 'snapshot-begin':
      writer = start(TYPE.snapshotBegin, frame.requestId, 512);
      writeOptionalHeader(writer, frame.header, frame.signature);
      writer.fixed(frame.digest, 32).varint(frame.headCount).varint(frame.entryCount);
      break;
    case 'snapshot-part':
      writer = start(TYPE.snapshotPart, frame.requestId, SNAPSHOT_PART_BYTES_TARGET + 1024).varint(frame.heads.length);
      for (const [address, lastSequence] of frame.heads) writer.text(address).varint(lastSequence);
      writer.varint(frame.entries.length);
      for (const entry of frame.entries) writer.bytes(encodeEntry(entry));
      break;
    case 'snapshot-end':
      writer = start(TYPE.snapshotEnd, frame.requestId);
      break;
    case 'subscribed':
      writer = start(TYPE.subscribed, frame.requestId).varint(frame.height);
      break;
    case 'block':
      writer = start(TYPE.block, frame.requestId, 4096).bytes(encodeHeader(frame.header)).fixed(frame.signature, SIGNATURE_BYTES).varint(frame.messages.length);
      for (const proven of frame.messages) {
        writer.varint(proven.index);
        writeCommitted(writer, proven.committed);
        writer.varint(proven.path.length);
        for (const sibling of proven.path) writer.fixed(sibling, 32);
      }
      break;
    case 'receipt': {
      const { receipt } = frame;
      writer = start(TYPE.receipt, frame.requestId).fixed(fromHex(receipt.messageHash) ?? new Uint8Array(0), 32)
        .varint(receipt.globalSequence).varint(receipt.sequence).varint(receipt.previous + 1).varint(receipt.height).varint(receipt.timeMs);
      break;
    }
    case 'digest-answer':
      writer = start(TYPE.digestAnswer, frame.requestId).varint(frame.height).fixed(frame.digest, 32);
      break;
  }
  const bytes = writer.finish();
  if (bytes.length > SYNC_FRAME_BYTES_MAX) throw kalimaError('KALIMA_ERR_NET_MESSAGE_TOO_LARGE', { bytes: bytes.length, max: SYNC_FRAME_BYTES_MAX, frame: frame.type });
  return bytes;
}

/** Decodes with the codec's errors turned into KALIMA_ERR_SYNC_BAD_MESSAGE (naming what failed). */
function decoding<T>(bytes: Uint8Array, read: (reader: Reader, type: number, requestId: number) => T): T {
  try {
    const reader = new Reader(bytes);
    const version = reader.u8();
    if (version !== SYNC_PROTOCOL_VERSION) throw badMessage('unknown protocol version', { version });
    const type = reader.u8();
    const requestId = reader.varint();
    const frame = read(reader, type, requestId);
    reader.end();
    return frame;
  } catch (error) {
    if (isKalimaError(error, 'KALIMA_ERR_SYNC_BAD_MESSAGE')) throw error;
    throw badMessage(isKalimaError(error) ? error.code : String(error), isKalimaError(error) ? error.details : {});
  }
}

export function decodeClientFrame(bytes: Uint8Array): ClientFrame {
  return decoding<ClientFrame>(bytes, (reader, type, requestId) => {
    switch (type) {
      case TYPE.subscribe: {
        const flag = reader.u8();
        if (flag > 1) throw badMessage('the snapshot flag is 0 or 1', { flag });
        const count = reader.varint();
        if (count === 0 || count > SYNC_PREFIXES_MAX) throw badMessage(`a subscription names 1 to ${SYNC_PREFIXES_MAX} prefixes`, { count });
        const prefixes: string[] = [];
        for (let index = 0; index < count; index++) prefixes.push(reader.text(ADDRESS_BYTES_MAX));
        return { type: 'subscribe', requestId, prefixes, snapshot: flag === 1 };
      }
      case TYPE.submit: {
        const inner = new Reader(reader.bytes(SYNC_FRAME_BYTES_MAX));
        const message = readMessage(inner);
        inner.end();
        return { type: 'submit', requestId, message };
      }
      case TYPE.digest:
        return { type: 'digest', requestId };
      default:
        throw badMessage('unknown frame type', { type });
    }
  });
}

function readOptionalHeader(reader: Reader): { header: BlockHeader | undefined; signature: Uint8Array | undefined } {
  const present = reader.u8();
  if (present === 0) return { header: undefined, signature: undefined };
  if (present !== 1) throw badMessage('the header flag is 0 or 1', { present });
  return { header: decodeHeader(reader.bytes(1024)), signature: reader.fixed(SIGNATURE_BYTES) };
}

export function decodeServerFrame(bytes: Uint8Array): ServerFrame {
  return decoding<ServerFrame>(bytes, (reader, type, requestId) => {
    switch (type) {
      case TYPE.error: {
        const code = reader.text(128);
        const details = parseDetails(reader.text(ERROR_DETAILS_BYTES_MAX));
        return { type: 'error', requestId, code: isErrorCode(code) ? code : 'KALIMA_ERR_NODE_INTERNAL', details: isErrorCode(code) ? details : { ...details, unknownCode: code } };
      }
      case TYPE.snapshotBegin: {
        const { header, signature } = readOptionalHeader(reader);
        const digest = reader.fixed(32);
        const headCount = reader.varint();
        const entryCount = reader.varint();
        if (headCount > SNAPSHOT_ITEMS_MAX || entryCount > SNAPSHOT_ITEMS_MAX) throw badMessage('a snapshot too large to take', { headCount, entryCount });
        return { type: 'snapshot-begin', requestId, header, signature, digest, headCount, entryCount };
      }
      case TYPE.snapshotPart: {
        const heads: Array<[string, number]> = [];
        const headCount = reader.varint();
        for (let index = 0; index < headCount; index++) heads.push([reader.text(ADDRESS_BYTES_MAX), reader.varint()]);
        const entries: CacheEntry[] = [];
        const entryCount = reader.varint();
        for (let index = 0; index < entryCount; index++) entries.push(decodeEntry(reader.bytes(SYNC_FRAME_BYTES_MAX)));
        return { type: 'snapshot-part', requestId, heads, entries };
      }
      case TYPE.snapshotEnd:
        return { type: 'snapshot-end', requestId };
      case TYPE.subscribed:
        return { type: 'subscribed', requestId, height: reader.varint() };
      case TYPE.block: {
        const header = decodeHeader(reader.bytes(1024));
        const signature = reader.fixed(SIGNATURE_BYTES);
        const count = reader.varint();
        if (count > BLOCK_MESSAGES_MAX || count > header.messageCount) throw badMessage('more messages than the block holds', { count, messageCount: header.messageCount });
        const messages: ProvenMessage[] = [];
        for (let item = 0; item < count; item++) {
          const index = reader.varint();
          const committed = readCommitted(reader);
          const pathLength = reader.varint();
          if (pathLength > MERKLE_PATH_MAX) throw badMessage('a Merkle path longer than any block needs', { pathLength });
          const path: Uint8Array[] = [];
          for (let level = 0; level < pathLength; level++) path.push(reader.fixed(32));
          messages.push({ index, committed, path });
        }
        return { type: 'block', requestId, header, signature, messages };
      }
      case TYPE.receipt: {
        const messageHash = toHex(reader.fixed(32));
        const globalSequence = reader.varint();
        const sequence = reader.varint();
        const previous = reader.varint() - 1;
        const height = reader.varint();
        const timeMs = reader.varint();
        return { type: 'receipt', requestId, receipt: { messageHash, globalSequence, sequence, previous, height, timeMs } };
      }
      case TYPE.digestAnswer:
        return { type: 'digest-answer', requestId, height: reader.varint(), digest: reader.fixed(32) };
      default:
        throw badMessage('unknown frame type', { type });
    }
  });
}

/** An error frame from any error: a coded one as it is; anything else as an internal error (its text stays in the log). */
export function errorFrame(requestId: number, error: unknown): ServerFrame {
  if (isKalimaError(error)) return { type: 'error', requestId, code: error.code, details: error.details };
  return { type: 'error', requestId, code: 'KALIMA_ERR_NODE_INTERNAL', details: {} };
}

function detailsText(details: Record<string, unknown>): string {
  let text: string;
  try {
    text = JSON.stringify(details, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
  } catch {
    text = '{}';
  }
  return Buffer.byteLength(text) > ERROR_DETAILS_BYTES_MAX ? '{"truncated":true}' : text;
}

function parseDetails(text: string): Record<string, unknown> {
  try {
    const parsed = JSON.parse(text) as unknown;
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed as Record<string, unknown> : {};
  } catch {
    throw badMessage('error details are not a JSON object');
  }
}
