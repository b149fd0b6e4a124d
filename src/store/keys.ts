// The key layout of the node's LevelDB. One prefix byte per table; integers are 8-byte big-endian
// so they sort numerically.
import { utf8Bytes } from '../ledger/codec.ts';
import { concatBytes } from '../ledger/hash.ts';

export const TABLE = {
  meta: 0x01,
  blockByHeight: 0x02,
  heightByHash: 0x03,
  heightByTime: 0x04,
  addressHistory: 0x05,
  heightByGlobalSequence: 0x06,
  locationByMessageHash: 0x07,
  cacheEntry: 0x08,
  addressHead: 0x09,
  nonceWindow: 0x0a,
  raftEntry: 0x0b,
  /** The anchor MMR's nodes (anchors/mmr-store.ts), derived from the blocks and rebuilt lazily. */
  anchorMmr: 0x0c,
} as const;

/** 8-byte big-endian of a non-negative safe integer. */
function writeU64(bytes: Uint8Array, offset: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`u64: ${value} is not a non-negative safe integer`);
  const high = Math.floor(value / 0x1_0000_0000);
  const low = value >>> 0;
  bytes[offset] = high >>> 24;
  bytes[offset + 1] = (high >>> 16) & 0xff;
  bytes[offset + 2] = (high >>> 8) & 0xff;
  bytes[offset + 3] = high & 0xff;
  bytes[offset + 4] = low >>> 24;
  bytes[offset + 5] = (low >>> 16) & 0xff;
  bytes[offset + 6] = (low >>> 8) & 0xff;
  bytes[offset + 7] = low & 0xff;
}

export function u64(value: number): Uint8Array {
  const bytes = new Uint8Array(8);
  writeU64(bytes, 0, value);
  return bytes;
}

export function readU64(bytes: Uint8Array, offset = 0): number {
  return Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(offset));
}

export function tableKey(table: number, ...parts: Uint8Array[]): Uint8Array {
  return concatBytes(Uint8Array.of(table), ...parts);
}

/** The first key after every key of the table (or of the prefix within it). */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  const end = prefix.slice();
  for (let index = end.length - 1; index >= 0; index--) {
    if (end[index]! < 0xff) {
      end[index]! += 1;
      return end.subarray(0, index + 1);
    }
  }
  return Uint8Array.of(0xff, 0xff);
}

const SEPARATOR = Uint8Array.of(0);

/** table, utf8(text), 0, u64(value): one allocation (history keys are written for every message). */
function textU64Key(table: number, text: string, value: number): Uint8Array {
  const textBytes = Buffer.byteLength(text, 'utf8');
  const key = new Uint8Array(1 + textBytes + 1 + 8);
  key[0] = table;
  Buffer.from(key.buffer, key.byteOffset, key.byteLength).write(text, 1, textBytes, 'utf8');
  key[1 + textBytes] = 0;
  writeU64(key, 2 + textBytes, value);
  return key;
}

export const keys = {
  meta: (name: string) => tableKey(TABLE.meta, utf8Bytes(name)),
  block: (height: number) => tableKey(TABLE.blockByHeight, u64(height)),
  hash: (hash: Uint8Array) => tableKey(TABLE.heightByHash, hash),
  time: (timeMs: number, height: number) => tableKey(TABLE.heightByTime, u64(timeMs), u64(height)),
  history: (address: string, sequence: number) => textU64Key(TABLE.addressHistory, address, sequence),
  historyPrefix: (address: string) => tableKey(TABLE.addressHistory, utf8Bytes(address), SEPARATOR),
  globalSequence: (firstGlobalSequence: number) => tableKey(TABLE.heightByGlobalSequence, u64(firstGlobalSequence)),
  messageHash: (hash: Uint8Array) => tableKey(TABLE.locationByMessageHash, hash),
  entry: (address: string, key: string) => tableKey(TABLE.cacheEntry, utf8Bytes(address), SEPARATOR, utf8Bytes(key)),
  head: (address: string) => tableKey(TABLE.addressHead, utf8Bytes(address)),
  nonce: (deviceHex: string) => tableKey(TABLE.nonceWindow, utf8Bytes(deviceHex)),
  table: (table: number) => Uint8Array.of(table),
};
