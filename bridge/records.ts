// The records of the bridge log and their keys, in the canonical binary codec (src/ledger/codec.ts).
//
// A live transaction has one or two records, each under its own key:
//
//   key   = prefix ‖ u8 idLength ‖ id (1..64 bytes) ‖ u8 type        (type 1 = initiation, 2 = decision)
//
//   initiation (force-written before any participant is asked to prepare)
//         = u8 version (1) ‖ u8 type (1) ‖ bytes id ‖ varint createdMs ‖ varint deadlineMs
//           ‖ varint participantCount (1..16) ‖ participantCount × (text kind ‖ bytes args)
//   decision (commit: force-written before any participant is told; abort: written, not forced)
//         = u8 version (1) ‖ u8 type (2) ‖ bytes id ‖ u8 outcome (1 commit, 2 abort)
//           ‖ text reason (empty for a commit) ‖ varint decidedMs
//
// Both keys of a transaction sort together, the initiation first, so recovery is one range scan.
// The end of a transaction deletes both. A record that does not decode, whose id differs from its
// key's, or a decision without its initiation is KALIMA_ERR_BRIDGE_BAD_RECORD.
import { isKalimaError, kalimaError } from '../src/errors.ts';
import { Reader, Writer, utf8Bytes } from '../src/ledger/codec.ts';

export const RECORD_VERSION = 1;
export const RECORD_TYPE = { initiation: 1, decision: 2 } as const;
export const MAX_PARTICIPANTS = 16;
export const MAX_KIND_BYTES = 64;
export const MAX_ARGS_BYTES = 4_096;
export const MAX_REASON_BYTES = 1_024;
export const MAX_ID_BYTES = 64;
/** The default key prefix of the bridge log; it has its own database, and the prefix lets it share one. */
export const DEFAULT_KEY_PREFIX = utf8Bytes('bridge/');

/** A transaction id: 1 to 64 bytes as lowercase hex (a 32-byte payment hash, or 16 random bytes). */
export const TX_ID_PATTERN = /^(?:[0-9a-f]{2}){1,64}$/;

/** A participant as the log keeps it: enough for a registered factory to build it again after a crash. */
export interface ParticipantSpec {
  readonly kind: string;
  readonly args: Uint8Array;
}

export interface InitiationRecord {
  readonly type: 'initiation';
  readonly id: string;
  readonly createdMs: number;
  readonly deadlineMs: number;
  readonly participants: readonly ParticipantSpec[];
}

export type DecisionRecord =
  | { readonly type: 'decision'; readonly id: string; readonly outcome: 'commit'; readonly decidedMs: number }
  | { readonly type: 'decision'; readonly id: string; readonly outcome: 'abort'; readonly reason: string; readonly decidedMs: number };

export type BridgeRecord = InitiationRecord | DecisionRecord;

function badRecord(reason: string, details: Record<string, unknown> = {}): Error {
  return kalimaError('KALIMA_ERR_BRIDGE_BAD_RECORD', { reason, ...details });
}

/** Truncates `text` to at most `maxBytes` UTF-8 bytes without splitting a character. */
export function clipText(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  let out = '';
  let bytes = 0;
  for (const character of text) {
    const size = Buffer.byteLength(character, 'utf8');
    if (bytes + size > maxBytes) break;
    out += character;
    bytes += size;
  }
  return out;
}

function idBytes(id: string): Uint8Array {
  if (!TX_ID_PATTERN.test(id)) throw kalimaError('KALIMA_ERR_BRIDGE_BAD_REQUEST', { id, reason: 'the id must be 2 to 128 lowercase hex digits' });
  return new Uint8Array(Buffer.from(id, 'hex'));
}

export function recordKey(prefix: Uint8Array, id: string, type: 'initiation' | 'decision'): Uint8Array {
  const bytes = idBytes(id);
  const key = new Uint8Array(prefix.length + 2 + bytes.length);
  key.set(prefix, 0);
  key[prefix.length] = bytes.length;
  key.set(bytes, prefix.length + 1);
  key[key.length - 1] = RECORD_TYPE[type];
  return key;
}

/** The id and record type a key names; KALIMA_ERR_BRIDGE_BAD_RECORD if it is not a bridge key under `prefix`. */
export function parseRecordKey(prefix: Uint8Array, key: Uint8Array): { id: string; type: 'initiation' | 'decision' } {
  const length = key[prefix.length];
  const ownPrefix = key.length > prefix.length && Buffer.compare(key.subarray(0, prefix.length), prefix) === 0;
  if (!ownPrefix || length === undefined || length < 1 || length > MAX_ID_BYTES || key.length !== prefix.length + 2 + length) {
    throw badRecord('the key is not a bridge record key', { key: Buffer.from(key).toString('hex') });
  }
  const typeByte = key[key.length - 1];
  const type = typeByte === RECORD_TYPE.initiation ? 'initiation' : typeByte === RECORD_TYPE.decision ? 'decision' : undefined;
  if (type === undefined) throw badRecord('unknown record type in the key', { key: Buffer.from(key).toString('hex') });
  return { id: Buffer.from(key.subarray(prefix.length + 1, key.length - 1)).toString('hex'), type };
}


export function encodeRecord(record: BridgeRecord): Uint8Array {
  const writer = new Writer(record.type === 'initiation' ? 128 : 64);
  writer.u8(RECORD_VERSION).u8(RECORD_TYPE[record.type]).bytes(idBytes(record.id));
  if (record.type === 'initiation') {
    const count = record.participants.length;
    if (count < 1 || count > MAX_PARTICIPANTS) throw kalimaError('KALIMA_ERR_BRIDGE_BAD_REQUEST', { reason: `1 to ${MAX_PARTICIPANTS} participants`, count });
    writer.varint(record.createdMs).varint(record.deadlineMs).varint(count);
    for (const participant of record.participants) {
      if (participant.kind.length === 0 || Buffer.byteLength(participant.kind, 'utf8') > MAX_KIND_BYTES) {
        throw kalimaError('KALIMA_ERR_BRIDGE_BAD_REQUEST', { reason: `a participant kind is 1 to ${MAX_KIND_BYTES} bytes`, kind: participant.kind });
      }
      if (participant.args.length > MAX_ARGS_BYTES) throw kalimaError('KALIMA_ERR_BRIDGE_BAD_REQUEST', { reason: `participant args are at most ${MAX_ARGS_BYTES} bytes`, bytes: participant.args.length });
      writer.text(participant.kind).bytes(participant.args);
    }
  } else {
    writer.u8(record.outcome === 'commit' ? 1 : 2);
    writer.text(record.outcome === 'abort' ? clipText(record.reason, MAX_REASON_BYTES) : '');
    writer.varint(record.decidedMs);
  }
  return writer.finish();
}

/** Decodes a record; any malformation (codec or shape) is KALIMA_ERR_BRIDGE_BAD_RECORD with the cause in its details. */
export function decodeRecord(bytes: Uint8Array): BridgeRecord {
  try {
    const reader = new Reader(bytes);
    const version = reader.u8();
    if (version !== RECORD_VERSION) throw badRecord('unknown record version', { version });
    const type = reader.u8();
    const rawId = reader.bytes(MAX_ID_BYTES);
    if (rawId.length === 0) throw badRecord('empty transaction id');
    const id = Buffer.from(rawId).toString('hex');
    let record: BridgeRecord;
    if (type === RECORD_TYPE.initiation) {
      const createdMs = reader.varint();
      const deadlineMs = reader.varint();
      const count = reader.varint();
      if (count < 1 || count > MAX_PARTICIPANTS) throw badRecord('participant count out of range', { count });
      const participants: ParticipantSpec[] = [];
      for (let index = 0; index < count; index++) {
        const kind = reader.text(MAX_KIND_BYTES);
        if (kind.length === 0) throw badRecord('empty participant kind', { index });
        participants.push({ kind, args: reader.bytes(MAX_ARGS_BYTES) });
      }
      record = { type: 'initiation', id, createdMs, deadlineMs, participants };
    } else if (type === RECORD_TYPE.decision) {
      const outcome = reader.u8();
      if (outcome !== 1 && outcome !== 2) throw badRecord('unknown decision', { outcome });
      const reason = reader.text(MAX_REASON_BYTES);
      if (outcome === 1 && reason.length > 0) throw badRecord('a commit decision carries no reason');
      const decidedMs = reader.varint();
      record = outcome === 1 ? { type: 'decision', id, outcome: 'commit', decidedMs } : { type: 'decision', id, outcome: 'abort', reason, decidedMs };
    } else {
      throw badRecord('unknown record type', { type });
    }
    reader.end();
    return record;
  } catch (error) {
    if (isKalimaError(error, 'KALIMA_ERR_BRIDGE_BAD_RECORD')) throw error;
    if (isKalimaError(error)) throw badRecord('the record does not decode', { cause: error.code, ...error.details });
    throw error;
  }
}
