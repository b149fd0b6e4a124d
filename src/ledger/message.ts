// A message (Kalima's "transaction"): a device's signed write of `body` at (address, key). An empty
// body means delete. The master side adds globalSequence (chain-wide), sequence and previous (per
// address); the block carries the time.
import { type KalimaErrorCode, kalimaError } from '../errors.ts';
import { Reader, Writer, utf8ByteLength } from './codec.ts';
import { TAG, taggedHash } from './hash.ts';
import {
  ADDRESS_BYTES_MAX, ADDRESS_PATTERN, CHAIN_BYTES_MAX, CHAIN_PATTERN, KEY_BYTES_MAX, KEY_PATTERN,
  MESSAGE_BODY_BYTES_MAX, PROPS_COUNT_MAX, PROP_KEY_BYTES_MAX, PROP_KEY_PATTERN, PROP_VALUE_BYTES_MAX,
  TTL_FOREVER, TTL_SECONDS_MAX,
} from './limits.ts';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES, signSchnorr } from './signature.ts';

const MESSAGE_VERSION = 1;

export type Props = ReadonlyArray<readonly [string, string]>;

export interface UnsignedMessage {
  chain: string;
  address: string;
  key: string;
  /** Empty means delete. */
  body: Uint8Array;
  /** Seconds until the system deletes the value; -1 keeps it forever. */
  ttlSeconds: number;
  /** key=value pairs, sorted by key, keys unique. */
  props: Props;
  /** The writer's x-only public key. */
  device: Uint8Array;
  nonce: number;
}

export interface Message extends UnsignedMessage {
  signature: Uint8Array;
}

export function isDelete(message: UnsignedMessage): boolean {
  return message.body.length === 0;
}

export function checkChainName(chain: string): void {
  if (utf8ByteLength(chain) > CHAIN_BYTES_MAX || !CHAIN_PATTERN.test(chain)) throw kalimaError('KALIMA_ERR_LEDGER_BAD_CHAIN', { chain });
}

export function checkAddress(address: string): void {
  if (typeof address !== 'string' || utf8ByteLength(address) > ADDRESS_BYTES_MAX || !ADDRESS_PATTERN.test(address)) {
    throw kalimaError('KALIMA_ERR_LEDGER_BAD_ADDRESS', { address });
  }
}

export function checkKey(key: string): void {
  if (typeof key !== 'string' || utf8ByteLength(key) > KEY_BYTES_MAX || !KEY_PATTERN.test(key)) {
    throw kalimaError('KALIMA_ERR_LEDGER_BAD_KEY', { key });
  }
}

/** Checks every field bound of a message. Throws the first coded error found. */
export function checkMessageFields(message: UnsignedMessage): void {
  checkChainName(message.chain);
  checkAddress(message.address);
  checkKey(message.key);
  if (message.body.length > MESSAGE_BODY_BYTES_MAX) {
    throw kalimaError('KALIMA_ERR_LEDGER_BODY_TOO_LARGE', { bytes: message.body.length, max: MESSAGE_BODY_BYTES_MAX });
  }
  const ttl = message.ttlSeconds;
  if (!Number.isSafeInteger(ttl) || (ttl !== TTL_FOREVER && (ttl < 1 || ttl > TTL_SECONDS_MAX))) {
    throw kalimaError('KALIMA_ERR_LEDGER_BAD_TTL', { ttlSeconds: ttl });
  }
  checkProps(message.props);
  if (message.device.length !== PUBLIC_KEY_BYTES) throw kalimaError('KALIMA_ERR_LEDGER_BAD_DEVICE', { bytes: message.device.length });
  if (!Number.isSafeInteger(message.nonce) || message.nonce < 0) throw kalimaError('KALIMA_ERR_LEDGER_BAD_NONCE', { nonce: message.nonce });
}

const LONE_SURROGATE = /\p{Surrogate}/u;

function checkProps(props: Props): void {
  if (props.length > PROPS_COUNT_MAX) throw kalimaError('KALIMA_ERR_LEDGER_BAD_PROPS', { count: props.length });
  let previousKey: string | undefined;
  for (const [key, value] of props) {
    if (typeof key !== 'string' || typeof value !== 'string' || utf8ByteLength(key) > PROP_KEY_BYTES_MAX || !PROP_KEY_PATTERN.test(key)) {
      throw kalimaError('KALIMA_ERR_LEDGER_BAD_PROPS', { key });
    }
    // A lone surrogate has no UTF-8 form: it would be signed as U+FFFD and read back changed.
    if (LONE_SURROGATE.test(value)) throw kalimaError('KALIMA_ERR_LEDGER_BAD_PROPS', { key, reason: 'the value is not well-formed Unicode' });
    if (utf8ByteLength(value) > PROP_VALUE_BYTES_MAX) throw kalimaError('KALIMA_ERR_LEDGER_BAD_PROPS', { key, valueBytes: utf8ByteLength(value) });
    // Canonical: sorted, unique keys.
    if (previousKey !== undefined && key <= previousKey) throw kalimaError('KALIMA_ERR_LEDGER_BAD_PROPS', { key, reason: 'keys must be sorted and unique' });
    previousKey = key;
  }
}

/** Sorts props into their canonical order; duplicate keys stay and are refused by the check. */
export function canonicalProps(props: Record<string, string> | Props): Props {
  const entries = Array.isArray(props) ? [...(props as Props)] : Object.entries(props as Record<string, string>);
  return entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function writeUnsigned(writer: Writer, message: UnsignedMessage): void {
  writer.u8(MESSAGE_VERSION)
    .text(message.chain)
    .text(message.address)
    .text(message.key)
    .bytes(message.body)
    .varint(message.ttlSeconds + 1)
    .varint(message.props.length);
  for (const [key, value] of message.props) writer.text(key).text(value);
  writer.fixed(message.device, PUBLIC_KEY_BYTES).varint(message.nonce);
}

export function encodeUnsignedMessage(message: UnsignedMessage): Uint8Array {
  checkMessageFields(message);
  const writer = new Writer(128 + message.body.length);
  writeUnsigned(writer, message);
  return writer.finish();
}

export function writeMessage(writer: Writer, message: Message): void {
  writeUnsigned(writer, message);
  writer.fixed(message.signature, SIGNATURE_BYTES);
}

export function encodeMessage(message: Message): Uint8Array {
  checkMessageFields(message);
  if (message.signature.length !== SIGNATURE_BYTES) throw kalimaError('KALIMA_ERR_LEDGER_BAD_SIGNATURE', { bytes: message.signature.length });
  const writer = new Writer(192 + message.body.length);
  writeMessage(writer, message);
  return writer.finish();
}

export function readMessage(reader: Reader): Message {
  const version = reader.u8();
  if (version !== MESSAGE_VERSION) throw kalimaError('KALIMA_ERR_CODEC_UNKNOWN_VERSION', { version });
  const chain = readBoundedText(reader, CHAIN_BYTES_MAX, 'KALIMA_ERR_LEDGER_BAD_CHAIN', 'chain');
  const address = readBoundedText(reader, ADDRESS_BYTES_MAX, 'KALIMA_ERR_LEDGER_BAD_ADDRESS', 'address');
  const key = readBoundedText(reader, KEY_BYTES_MAX, 'KALIMA_ERR_LEDGER_BAD_KEY', 'key');
  const bodyLength = reader.peekVarint();
  if (bodyLength > MESSAGE_BODY_BYTES_MAX) throw kalimaError('KALIMA_ERR_LEDGER_BODY_TOO_LARGE', { bytes: bodyLength, max: MESSAGE_BODY_BYTES_MAX });
  const body = reader.bytes(MESSAGE_BODY_BYTES_MAX);
  const ttlSeconds = reader.varint() - 1;
  const propsCount = reader.varint();
  if (propsCount > PROPS_COUNT_MAX) throw kalimaError('KALIMA_ERR_LEDGER_BAD_PROPS', { count: propsCount });
  const props: Array<[string, string]> = [];
  for (let index = 0; index < propsCount; index++) {
    props.push([
      readBoundedText(reader, PROP_KEY_BYTES_MAX, 'KALIMA_ERR_LEDGER_BAD_PROPS', 'props'),
      readBoundedText(reader, PROP_VALUE_BYTES_MAX, 'KALIMA_ERR_LEDGER_BAD_PROPS', 'props'),
    ]);
  }
  const device = reader.fixed(PUBLIC_KEY_BYTES);
  const nonce = reader.varint();
  const signature = reader.fixed(SIGNATURE_BYTES);
  const message: Message = { chain, address, key, body, ttlSeconds, props, device, nonce, signature };
  checkMessageFields(message);
  return message;
}

/** Reads a text field, giving an over-long one the field's own code rather than the codec's. */
function readBoundedText(reader: Reader, maxBytes: number, code: KalimaErrorCode, field: string): string {
  const length = reader.peekVarint();
  if (length > maxBytes) throw kalimaError(code, { field, bytes: length, max: maxBytes });
  return reader.text(maxBytes);
}

export function decodeMessage(bytes: Uint8Array): Message {
  const reader = new Reader(bytes);
  const message = readMessage(reader);
  reader.end();
  return message;
}

/** The hash a device signs, and the message's id: BIP-340 tagged hash of the unsigned encoding. */
export function messageSigningHash(message: UnsignedMessage): Uint8Array {
  return signingHashOfEncoding(encodeUnsignedMessage(message));
}

/** messageSigningHash, from an unsigned encoding already made. */
export function signingHashOfEncoding(unsignedEncoding: Uint8Array): Uint8Array {
  return taggedHash(TAG.message, unsignedEncoding);
}

export function signMessage(message: UnsignedMessage, secretKey: Uint8Array, auxRand: Uint8Array): Message {
  const signature = signSchnorr(messageSigningHash(message), secretKey, auxRand);
  return { ...message, signature };
}

/** A message as the chain committed it. */
export interface CommittedMessage {
  message: Message;
  globalSequence: number;
  /** Per address, from 0. */
  sequence: number;
  /** The previous sequence at this address; -1 for the first. */
  previous: number;
}

const COMMITTED_VERSION = 1;

export function writeCommitted(writer: Writer, committed: CommittedMessage): void {
  writer.u8(COMMITTED_VERSION).varint(committed.globalSequence).varint(committed.sequence).varint(committed.previous + 1);
  writeMessage(writer, committed.message);
}

export function readCommitted(reader: Reader): CommittedMessage {
  const version = reader.u8();
  if (version !== COMMITTED_VERSION) throw kalimaError('KALIMA_ERR_CODEC_UNKNOWN_VERSION', { version });
  const globalSequence = reader.varint();
  const sequence = reader.varint();
  const previous = reader.varint() - 1;
  const message = readMessage(reader);
  return { message, globalSequence, sequence, previous };
}

/** encodeCommitted, reusing the message's unsigned encoding (the hot path encodes each message once). */
export function encodeCommittedFrom(committed: CommittedMessage, unsignedEncoding: Uint8Array): Uint8Array {
  return new Writer(40 + unsignedEncoding.length + SIGNATURE_BYTES)
    .u8(COMMITTED_VERSION)
    .varint(committed.globalSequence)
    .varint(committed.sequence)
    .varint(committed.previous + 1)
    .raw(unsignedEncoding)
    .fixed(committed.message.signature, SIGNATURE_BYTES)
    .finish();
}

export function encodeCommitted(committed: CommittedMessage): Uint8Array {
  const writer = new Writer(256 + committed.message.body.length);
  writeCommitted(writer, committed);
  return writer.finish();
}

export function decodeCommitted(bytes: Uint8Array): CommittedMessage {
  const reader = new Reader(bytes);
  const committed = readCommitted(reader);
  reader.end();
  return committed;
}
