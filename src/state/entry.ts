// A MemCache entry: the current value at (address, key) and where it came from.
import { Reader, Writer } from '../ledger/codec.ts';
import { sha256 } from '../ledger/hash.ts';
import { expandElement } from './lthash.ts';
import { ADDRESS_BYTES_MAX, KEY_BYTES_MAX, PROPS_COUNT_MAX, PROP_KEY_BYTES_MAX, PROP_VALUE_BYTES_MAX } from '../ledger/limits.ts';
import type { Props } from '../ledger/message.ts';
import { kalimaError } from '../errors.ts';

export interface CacheEntry {
  address: string;
  key: string;
  /** The current value. For ordinary addresses, the body of the message that wrote it. */
  value: Uint8Array;
  globalSequence: number;
  sequence: number;
  height: number;
  /** Block time of the write. */
  timeMs: number;
  ttlSeconds: number;
  device: Uint8Array;
  messageHash: Uint8Array;
  props: Props;
}

export function expiresAtMs(entry: Pick<CacheEntry, 'timeMs' | 'ttlSeconds'>): number | undefined {
  return entry.ttlSeconds > 0 ? entry.timeMs + entry.ttlSeconds * 1000 : undefined;
}

const ENTRY_VERSION = 1;
const VALUE_BYTES_MAX = 16_384;

export function encodeEntry(entry: CacheEntry): Uint8Array {
  const writer = new Writer(160 + entry.value.length)
    .u8(ENTRY_VERSION)
    .text(entry.address)
    .text(entry.key)
    .bytes(entry.value)
    .varint(entry.globalSequence)
    .varint(entry.sequence)
    .varint(entry.height)
    .varint(entry.timeMs)
    .varint(entry.ttlSeconds + 1)
    .fixed(entry.device, 32)
    .fixed(entry.messageHash, 32)
    .varint(entry.props.length);
  for (const [key, value] of entry.props) writer.text(key).text(value);
  return writer.finish();
}

export function decodeEntry(bytes: Uint8Array): CacheEntry {
  const reader = new Reader(bytes);
  const version = reader.u8();
  if (version !== ENTRY_VERSION) throw kalimaError('KALIMA_ERR_CODEC_UNKNOWN_VERSION', { version });
  const address = reader.text(ADDRESS_BYTES_MAX);
  const key = reader.text(KEY_BYTES_MAX);
  const value = reader.bytes(VALUE_BYTES_MAX);
  const globalSequence = reader.varint();
  const sequence = reader.varint();
  const height = reader.varint();
  const timeMs = reader.varint();
  const ttlSeconds = reader.varint() - 1;
  const device = reader.fixed(32);
  const messageHash = reader.fixed(32);
  const propsCount = reader.varint();
  if (propsCount > PROPS_COUNT_MAX) throw kalimaError('KALIMA_ERR_CODEC_OUT_OF_RANGE', { propsCount });
  const props: Array<[string, string]> = [];
  for (let index = 0; index < propsCount; index++) props.push([reader.text(PROP_KEY_BYTES_MAX), reader.text(PROP_VALUE_BYTES_MAX)]);
  reader.end();
  return { address, key, value, globalSequence, sequence, height, timeMs, ttlSeconds, device, messageHash, props };
}

const digestElements = new WeakMap<CacheEntry, Uint8Array>();

/**
 * The element an entry contributes to the state digest: all of it, so no stored field can drift.
 * Entries are immutable, so the element is kept once made (it is needed again when the entry is
 * replaced). `encoding` is the entry's encodeEntry, when the caller has it already.
 */
export function entryDigestElement(entry: CacheEntry, encoding?: Uint8Array): Uint8Array {
  let element = digestElements.get(entry);
  if (element === undefined) {
    element = new Writer(40).u8(1).fixed(sha256(encoding ?? encodeEntry(entry)), 32).finish();
    digestElements.set(entry, element);
  }
  return element;
}

/**
 * The expansions (expandElement of entryDigestElement) of the entries most recently written, so
 * that replacing one of them later takes it out of the digest without expanding it again: one
 * expansion per overwrite instead of two, for as long as the keys being overwritten are among the
 * last EXPANSIONS_KEPT written (the usual case for devices that update the same keys). 2 KB each.
 */
const EXPANSIONS_KEPT = 4096;
const expansions = new Map<CacheEntry, Uint32Array>();

/** The entry's digest expansion, made now (and kept) or taken from those kept. */
export function entryExpansion(entry: CacheEntry, encoding?: Uint8Array, keep = false): Uint32Array {
  const kept = expansions.get(entry);
  if (kept !== undefined) {
    if (!keep) expansions.delete(entry);
    return kept;
  }
  const vector = expandElement(entryDigestElement(entry, encoding));
  if (keep) {
    expansions.set(entry, vector);
    if (expansions.size > EXPANSIONS_KEPT) expansions.delete(expansions.keys().next().value!);
  }
  return vector;
}

/** The element an address's last sequence contributes to the state digest. */
export function headDigestElement(address: string, lastSequence: number): Uint8Array {
  return new Writer(64).u8(2).text(address).varint(lastSequence).finish();
}
