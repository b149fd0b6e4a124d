// The binary encoding of Raft messages and log state, for the wire and the store. Canonical (the
// ledger codec's varints and length-prefixed fields), versioned, and bounded, so a peer's frame
// is either one well-formed message or a coded error.
import { kalimaError } from '../errors.ts';
import { Reader, Writer } from '../ledger/codec.ts';
import type { Entry, HardState, Message, SnapshotMeta } from './raft.ts';

const VERSION = 1;
/** A node id is the hex of its 33-byte node key. */
const NODE_ID_BYTES_MAX = 128;
/** A block is at most 16 KB; the empty entry of a new leader is empty. */
export const ENTRY_BYTES_MAX = 16_384;
export const ENTRIES_PER_MESSAGE_MAX = 1_024;

const TYPES = ['preVote', 'vote', 'preVoteResponse', 'voteResponse', 'append', 'appendResponse', 'snapshot', 'termProbe', 'termProbeResponse'] as const;

function writeEntry(writer: Writer, entry: Entry): void {
  writer.varint(entry.index).varint(entry.term).bytes(entry.data);
}

function readEntry(reader: Reader): Entry {
  return { index: reader.varint(), term: reader.varint(), data: reader.bytes(ENTRY_BYTES_MAX) };
}

export function encodeMessage(message: Message): Uint8Array {
  const writer = new Writer(64).u8(VERSION).u8(TYPES.indexOf(message.type)).text(message.from).text(message.to).varint(message.term);
  switch (message.type) {
    case 'preVote':
    case 'vote':
      writer.varint(message.lastLogIndex).varint(message.lastLogTerm);
      break;
    case 'preVoteResponse':
    case 'voteResponse':
      writer.u8(message.granted ? 1 : 0);
      break;
    case 'append':
      writer.varint(message.prevLogIndex).varint(message.prevLogTerm).varint(message.commit).varint(message.entries.length);
      for (const entry of message.entries) writeEntry(writer, entry);
      break;
    case 'appendResponse':
      writer.u8(message.success ? 1 : 0).varint(message.index);
      break;
    case 'snapshot':
      writer.varint(message.index).varint(message.snapshotTerm);
      break;
    case 'termProbe':
    case 'termProbeResponse':
      break;
  }
  return writer.finish();
}

export function decodeMessage(bytes: Uint8Array): Message {
  const reader = new Reader(bytes);
  const version = reader.u8();
  if (version !== VERSION) throw kalimaError('KALIMA_ERR_CODEC_UNKNOWN_VERSION', { version });
  const typeCode = reader.u8();
  const type = TYPES[typeCode];
  if (type === undefined) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { what: 'raft message type', value: typeCode });
  const from = reader.text(NODE_ID_BYTES_MAX);
  const to = reader.text(NODE_ID_BYTES_MAX);
  const term = reader.varint();
  const flag = (): boolean => {
    const value = reader.u8();
    if (value > 1) throw kalimaError('KALIMA_ERR_CODEC_NON_CANONICAL', { what: 'boolean', value });
    return value === 1;
  };
  let message: Message;
  switch (type) {
    case 'preVote':
    case 'vote':
      message = { type, from, to, term, lastLogIndex: reader.varint(), lastLogTerm: reader.varint() };
      break;
    case 'preVoteResponse':
    case 'voteResponse':
      message = { type, from, to, term, granted: flag() };
      break;
    case 'append': {
      const prevLogIndex = reader.varint();
      const prevLogTerm = reader.varint();
      const commit = reader.varint();
      const count = reader.varint();
      if (count > ENTRIES_PER_MESSAGE_MAX) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { what: 'entries per append', value: count, max: ENTRIES_PER_MESSAGE_MAX });
      const entries: Entry[] = [];
      for (let position = 0; position < count; position++) {
        const entry = readEntry(reader);
        // Consecutive, right after prevLogIndex: anything else is a malformed append.
        if (entry.index !== prevLogIndex + 1 + position) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { what: 'entry index', value: entry.index, expected: prevLogIndex + 1 + position });
        entries.push(entry);
      }
      message = { type, from, to, term, prevLogIndex, prevLogTerm, commit, entries };
      break;
    }
    case 'appendResponse':
      message = { type, from, to, term, success: flag(), index: reader.varint() };
      break;
    case 'snapshot':
      message = { type, from, to, term, index: reader.varint(), snapshotTerm: reader.varint() };
      break;
    case 'termProbe':
    case 'termProbeResponse':
      message = { type, from, to, term };
      break;
  }
  reader.end();
  return message;
}

export function encodeEntry(entry: Entry): Uint8Array {
  const writer = new Writer(16 + entry.data.length).u8(VERSION);
  writeEntry(writer, entry);
  return writer.finish();
}

export function decodeEntry(bytes: Uint8Array): Entry {
  const reader = new Reader(bytes);
  const version = reader.u8();
  if (version !== VERSION) throw kalimaError('KALIMA_ERR_CODEC_UNKNOWN_VERSION', { version });
  const entry = readEntry(reader);
  reader.end();
  return entry;
}

export function encodeHardState(state: HardState): Uint8Array {
  const writer = new Writer(80).u8(VERSION).varint(state.term).varint(state.commit);
  if (state.vote === undefined) writer.u8(0);
  else writer.u8(1).text(state.vote);
  return writer.finish();
}

export function decodeHardState(bytes: Uint8Array): HardState {
  const reader = new Reader(bytes);
  const version = reader.u8();
  if (version !== VERSION) throw kalimaError('KALIMA_ERR_CODEC_UNKNOWN_VERSION', { version });
  const term = reader.varint();
  const commit = reader.varint();
  const hasVote = reader.u8();
  if (hasVote > 1) throw kalimaError('KALIMA_ERR_CODEC_NON_CANONICAL', { what: 'vote flag', value: hasVote });
  const vote = hasVote === 1 ? reader.text(NODE_ID_BYTES_MAX) : undefined;
  reader.end();
  return { term, vote, commit };
}

export function encodeSnapshotMeta(meta: SnapshotMeta): Uint8Array {
  return new Writer(24).u8(VERSION).varint(meta.index).varint(meta.term).finish();
}

export function decodeSnapshotMeta(bytes: Uint8Array): SnapshotMeta {
  const reader = new Reader(bytes);
  const version = reader.u8();
  if (version !== VERSION) throw kalimaError('KALIMA_ERR_CODEC_UNKNOWN_VERSION', { version });
  const meta = { index: reader.varint(), term: reader.varint() };
  reader.end();
  return meta;
}
