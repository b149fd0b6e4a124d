// JSON at the HTTP edge: how messages, entries and blocks look to REST clients, after Kalima's
// own API (body in base64, props as key=value, date and time added by the master).
import { kalimaError } from '../errors.ts';
import type { BlockHeader } from '../ledger/block.ts';
import { fromHex, toHex } from '../ledger/hash.ts';
import { type CommittedMessage, type Message, type Props, canonicalProps } from '../ledger/message.ts';
import type { CacheEntry } from '../state/entry.ts';
import type { LocatedMessage } from '../store/chain-store.ts';

export interface MessageJson {
  chain: string;
  address: string;
  key: string;
  /** base64; "" deletes. */
  body: string;
  ttl?: number;
  props?: Record<string, string>;
  /** x-only public key, hex. */
  device: string;
  nonce: number;
  /** BIP-340 signature, hex. */
  signature: string;
}

const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function bad(field: string, reason: string): never {
  throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field, reason });
}

export function decodeBase64(value: unknown, field: string): Uint8Array {
  if (typeof value !== 'string' || !BASE64_PATTERN.test(value)) bad(field, 'must be base64');
  return new Uint8Array(Buffer.from(value, 'base64'));
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function hexField(value: unknown, field: string, bytes: number, code: 'KALIMA_ERR_LEDGER_BAD_DEVICE' | 'KALIMA_ERR_LEDGER_BAD_SIGNATURE'): Uint8Array {
  const decoded = typeof value === 'string' ? fromHex(value) : undefined;
  if (decoded === undefined || decoded.length !== bytes) throw kalimaError(code, { field, reason: `must be ${bytes * 2} hex digits` });
  return decoded;
}

/** Parses a message from its JSON form; the field bounds are the node's to check. */
export function messageFromJson(json: unknown): Message {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) bad('body', 'must be a JSON object');
  const raw = json as Record<string, unknown>;
  for (const field of ['chain', 'address', 'key'] as const) if (typeof raw[field] !== 'string') bad(field, 'must be a string');
  if (raw.ttl !== undefined && typeof raw.ttl !== 'number') bad('ttl', 'must be a number');
  if (typeof raw.nonce !== 'number') bad('nonce', 'must be a number');
  if (raw.props !== undefined && (typeof raw.props !== 'object' || raw.props === null || Array.isArray(raw.props))) bad('props', 'must be an object of strings');
  const props = raw.props as Record<string, unknown> | undefined;
  for (const value of Object.values(props ?? {})) if (typeof value !== 'string') bad('props', 'values must be strings');
  const message: Message = {
    chain: raw.chain as string,
    address: raw.address as string,
    key: raw.key as string,
    body: decodeBase64(raw.body ?? '', 'body'),
    ttlSeconds: (raw.ttl as number | undefined) ?? -1,
    props: canonicalProps((props ?? {}) as Record<string, string>),
    device: hexField(raw.device, 'device', 32, 'KALIMA_ERR_LEDGER_BAD_DEVICE'),
    nonce: raw.nonce as number,
    signature: hexField(raw.signature, 'signature', 64, 'KALIMA_ERR_LEDGER_BAD_SIGNATURE'),
  };
  // The node checks every field bound as it encodes the message (KalimaNode.submit).
  return message;
}

export function messageToJson(message: Message): MessageJson {
  return {
    chain: message.chain,
    address: message.address,
    key: message.key,
    body: encodeBase64(message.body),
    ttl: message.ttlSeconds,
    props: Object.fromEntries(message.props),
    device: toHex(message.device),
    nonce: message.nonce,
    signature: toHex(message.signature),
  };
}

/** Kalima's props "that the master node adds": date, time, submitter and ttl; and date and time alone. */
function stamped(props: Props, timeMs: number, device: Uint8Array, ttlSeconds: number): { props: Record<string, string>; date: string; time: string } {
  const iso = new Date(timeMs).toISOString();
  const date = iso.slice(0, 10);
  const time = iso.slice(11, 23);
  return { props: { ...Object.fromEntries(props), date, time, submitter: toHex(device), ttl: String(ttlSeconds) }, date, time };
}

/** A committed message as the ledger and the event stream show it. */
export function committedToJson(committed: CommittedMessage, located: { height: number; timeMs: number }, hash: Uint8Array): Record<string, unknown> {
  const { message } = committed;
  return {
    address: message.address,
    key: message.key,
    globalSequence: committed.globalSequence,
    sequence: committed.sequence,
    previous: committed.previous,
    body: encodeBase64(message.body),
    hash: toHex(hash),
    ...stamped(message.props, located.timeMs, message.device, message.ttlSeconds),
    timeMs: located.timeMs,
    height: located.height,
    ttl: message.ttlSeconds,
    device: toHex(message.device),
    nonce: message.nonce,
    deleted: message.body.length === 0,
  };
}

export function locatedToJson(located: LocatedMessage, hash: Uint8Array): Record<string, unknown> {
  return committedToJson(located.committed, located, hash);
}

/** A current MemCache value. */
export function entryToJson(entry: CacheEntry): Record<string, unknown> {
  return {
    address: entry.address,
    key: entry.key,
    globalSequence: entry.globalSequence,
    sequence: entry.sequence,
    body: encodeBase64(entry.value),
    hash: toHex(entry.messageHash),
    ...stamped(entry.props, entry.timeMs, entry.device, entry.ttlSeconds),
    timeMs: entry.timeMs,
    height: entry.height,
    ttl: entry.ttlSeconds,
    expiresAtMs: entry.ttlSeconds > 0 ? entry.timeMs + entry.ttlSeconds * 1000 : null,
  };
}

export function headerToJson(header: BlockHeader, hash: Uint8Array): Record<string, unknown> {
  return {
    chain: header.chain,
    height: header.height,
    hash: toHex(hash),
    prevHash: toHex(header.prevHash),
    timeMs: header.timeMs,
    leader: toHex(header.leader),
    term: header.term,
    messageCount: header.messageCount,
    txRoot: toHex(header.txRoot),
    stateDigest: toHex(header.stateDigest),
    mmrRoot: toHex(header.mmrRoot),
  };
}

