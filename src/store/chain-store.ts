// Persistence of the chain: blocks by height with indexes by hash, time, address history, global
// sequence and message hash; the MemCache; the tip; and Raft's term and vote (kept for the
// cluster, which will read them). Every block goes to
// disk in one synced batch together with the state it produces, so after a crash the store is
// at a block boundary and never holds a block without its state or the reverse.
import { Reader, Writer, utf8Bytes } from '../ledger/codec.ts';
import { bytesEqual, sha256 } from '../ledger/hash.ts';
import { type Block, decodeBlock } from '../ledger/block.ts';
import type { CommittedMessage } from '../ledger/message.ts';
import type { MmrState } from '../ledger/mmr.ts';
import { type CacheEntry, decodeEntry, encodeEntry } from '../state/entry.ts';
import { MemCache, type StateChanges } from '../state/memcache.ts';
import { decodeNonceWindow, encodeNonceWindow, type NonceWindow } from '../state/nonce-window.ts';
import type { KvOperation, KvStore } from './kv.ts';
import { TABLE, keys, prefixEnd, readU64, u64 } from './keys.ts';
import { kalimaError } from '../errors.ts';

export interface TipRecord {
  height: number;
  hash: Uint8Array;
  timeMs: number;
  /** MMR over the hashes of blocks 1 .. height. */
  mmr: MmrState;
  nextGlobalSequence: number;
  stateDigest: Uint8Array;
}

export interface RaftMeta {
  term: number;
  votedFor: Uint8Array | undefined;
}

/** One block as commitBlocks writes it. */
export interface BlockWrite {
  block: Block;
  bytes: Uint8Array;
  hash: Uint8Array;
  messageHashes: readonly Uint8Array[];
  changes: StateChanges;
  tip: TipRecord;
}

export interface MessageLocation {
  height: number;
  index: number;
}

export interface LocatedMessage {
  committed: CommittedMessage;
  height: number;
  index: number;
  timeMs: number;
}

function encodeTip(tip: TipRecord): Uint8Array {
  const writer = new Writer(64 + tip.mmr.peaks.length * 32)
    .u8(1)
    .varint(tip.height)
    .fixed(tip.hash, 32)
    .varint(tip.timeMs)
    .varint(tip.nextGlobalSequence)
    .fixed(tip.stateDigest, 32)
    .varint(tip.mmr.leafCount)
    .varint(tip.mmr.peaks.length);
  for (const peak of tip.mmr.peaks) writer.fixed(peak, 32);
  return writer.finish();
}

function decodeTip(bytes: Uint8Array): TipRecord {
  const reader = new Reader(bytes);
  const version = reader.u8();
  if (version !== 1) throw kalimaError('KALIMA_ERR_CODEC_UNKNOWN_VERSION', { version, record: 'tip' });
  const height = reader.varint();
  const hash = reader.fixed(32);
  const timeMs = reader.varint();
  const nextGlobalSequence = reader.varint();
  const stateDigest = reader.fixed(32);
  const leafCount = reader.varint();
  const peakCount = reader.varint();
  const peaks: Uint8Array[] = [];
  for (let index = 0; index < peakCount; index++) peaks.push(reader.fixed(32));
  reader.end();
  return { height, hash, timeMs, nextGlobalSequence, stateDigest, mmr: { leafCount, peaks } };
}

function encodeLocation(location: MessageLocation): Uint8Array {
  return new Writer(16).varint(location.height).varint(location.index).finish();
}

function decodeLocation(bytes: Uint8Array): MessageLocation {
  const reader = new Reader(bytes);
  const location = { height: reader.varint(), index: reader.varint() };
  reader.end();
  return location;
}

const BLOCK_CACHE_MAX = 256;
const WINDOW_CHECKSUM_BYTES = 8;

/** A replay window as stored: its encoding, then a checksum that also binds the device. */
function encodeStoredWindow(deviceHex: string, window: NonceWindow): Uint8Array {
  const encoding = encodeNonceWindow(window);
  const stored = new Uint8Array(encoding.length + WINDOW_CHECKSUM_BYTES);
  stored.set(encoding, 0);
  stored.set(sha256(utf8Bytes(deviceHex), encoding).subarray(0, WINDOW_CHECKSUM_BYTES), encoding.length);
  return stored;
}

function decodeStoredWindow(deviceHex: string, stored: Uint8Array): NonceWindow {
  const encoding = stored.subarray(0, Math.max(0, stored.length - WINDOW_CHECKSUM_BYTES));
  const checksum = stored.subarray(encoding.length);
  if (!bytesEqual(checksum, sha256(utf8Bytes(deviceHex), encoding).subarray(0, WINDOW_CHECKSUM_BYTES))) {
    throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { reason: 'a replay window fails its checksum', device: deviceHex, repairable: true });
  }
  return decodeNonceWindow(encoding);
}

export class ChainStore {
  private readonly blockCache = new Map<number, Block>();

  constructor(readonly kv: KvStore) {}

  async readGenesisHash(): Promise<Uint8Array | undefined> {
    return this.kv.get(keys.meta('genesis'));
  }

  /** The store's format version; undefined for a store written before versions were recorded. */
  async readFormat(): Promise<number | undefined> {
    const bytes = await this.kv.get(keys.meta('format'));
    return bytes === undefined ? undefined : readU64(bytes);
  }

  /** Binds a new store to its genesis and records the format, in one write. */
  async initialise(genesisHash: Uint8Array, format: number): Promise<void> {
    await this.kv.batch([
      { type: 'put', key: keys.meta('genesis'), value: genesisHash },
      { type: 'put', key: keys.meta('format'), value: u64(format) },
    ], { sync: true });
  }

  async readTip(): Promise<TipRecord | undefined> {
    const bytes = await this.kv.get(keys.meta('tip'));
    return bytes === undefined ? undefined : decodeTip(bytes);
  }

  async readRaftMeta(): Promise<RaftMeta> {
    const bytes = await this.kv.get(keys.meta('raft'));
    if (bytes === undefined) return { term: 0, votedFor: undefined };
    const reader = new Reader(bytes);
    const term = reader.varint();
    const voted = reader.u8() === 1 ? reader.fixed(32) : undefined;
    return { term, votedFor: voted };
  }

  async writeRaftMeta(meta: RaftMeta): Promise<void> {
    const writer = new Writer(48).varint(meta.term);
    if (meta.votedFor === undefined) writer.u8(0);
    else writer.u8(1).fixed(meta.votedFor, 32);
    await this.kv.batch([{ type: 'put', key: keys.meta('raft'), value: writer.finish() }], { sync: true });
  }

  /**
   * Writes consecutive blocks, each with its indexes and the state it produces, and the last one's
   * tip, in one synced batch (group commit): after a crash the store holds all of them or none.
   */
  async commitBlocks(blocks: readonly BlockWrite[]): Promise<void> {
    const operations: KvOperation[] = [];
    for (const { block, bytes, hash, messageHashes, changes } of blocks) {
      const { header } = block;
      operations.push(
        { type: 'put', key: keys.block(header.height), value: bytes },
        { type: 'put', key: keys.hash(hash), value: u64(header.height) },
        { type: 'put', key: keys.time(header.timeMs, header.height), value: new Uint8Array() },
      );
      const first = block.messages[0];
      if (first !== undefined) operations.push({ type: 'put', key: keys.globalSequence(first.globalSequence), value: u64(header.height) });
      block.messages.forEach((committed, index) => {
        const location = encodeLocation({ height: header.height, index });
        operations.push({ type: 'put', key: keys.history(committed.message.address, committed.sequence), value: location });
        operations.push({ type: 'put', key: keys.messageHash(messageHashes[index]!), value: location });
      });
      // Later blocks' state operations come later in the batch, so they win.
      operations.push(...ChainStore.stateOperations(changes));
    }
    const last = blocks[blocks.length - 1];
    if (last === undefined) return;
    operations.push({ type: 'put', key: keys.meta('tip'), value: encodeTip(last.tip) });
    await this.kv.batch(operations, { sync: true });
    for (const { block } of blocks) this.remember(block.header.height, block);
  }

  private static stateOperations(changes: StateChanges): KvOperation[] {
    const operations: KvOperation[] = [];
    for (const change of changes.entries) {
      const key = keys.entry(change.address, change.key);
      operations.push(change.after === undefined ? { type: 'del', key } : { type: 'put', key, value: change.afterEncoding ?? encodeEntry(change.after) });
    }
    for (const head of changes.heads) operations.push({ type: 'put', key: keys.head(head.address), value: u64(head.after) });
    for (const { deviceHex, window } of changes.nonces) operations.push({ type: 'put', key: keys.nonce(deviceHex), value: encodeStoredWindow(deviceHex, window) });
    return operations;
  }

  private remember(height: number, block: Block): void {
    this.blockCache.set(height, block);
    if (this.blockCache.size > BLOCK_CACHE_MAX) this.blockCache.delete(this.blockCache.keys().next().value!);
  }

  async getBlockBytes(height: number): Promise<Uint8Array | undefined> {
    return this.kv.get(keys.block(height));
  }

  async getBlock(height: number): Promise<Block | undefined> {
    const cached = this.blockCache.get(height);
    if (cached !== undefined) return cached;
    const bytes = await this.getBlockBytes(height);
    if (bytes === undefined) return undefined;
    const block = decodeBlock(bytes);
    this.remember(height, block);
    return block;
  }

  async heightOfHash(hash: Uint8Array): Promise<number | undefined> {
    const bytes = await this.kv.get(keys.hash(hash));
    return bytes === undefined ? undefined : readU64(bytes);
  }

  async locateMessage(messageHash: Uint8Array): Promise<MessageLocation | undefined> {
    const bytes = await this.kv.get(keys.messageHash(messageHash));
    return bytes === undefined ? undefined : decodeLocation(bytes);
  }

  async messageAt(location: MessageLocation): Promise<LocatedMessage | undefined> {
    const block = await this.getBlock(location.height);
    const committed = block?.messages[location.index];
    if (block === undefined || committed === undefined) return undefined;
    return { committed, height: location.height, index: location.index, timeMs: block.header.timeMs };
  }

  /** Messages at an address by sequence: ascending from `fromSequence`, or descending from it. */
  async history(address: string, options: { fromSequence: number; toSequence?: number; limit: number; reverse?: boolean }): Promise<LocatedMessage[]> {
    const prefix = keys.historyPrefix(address);
    const range = options.reverse
      ? { gte: prefix, lt: keys.history(address, options.fromSequence + 1), reverse: true, limit: options.limit }
      : { gte: keys.history(address, options.fromSequence), lt: options.toSequence === undefined ? prefixEnd(prefix) : keys.history(address, options.toSequence + 1), limit: options.limit };
    const found: LocatedMessage[] = [];
    for await (const [, value] of this.kv.entries(range)) {
      const located = await this.messageAt(decodeLocation(value));
      if (located === undefined) throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { reason: 'history points at a missing message', address });
      found.push(located);
    }
    return found;
  }

  /** The height of the block holding `globalSequence`, if it is committed. */
  async heightOfGlobalSequence(globalSequence: number): Promise<number | undefined> {
    for await (const [, value] of this.kv.entries({ gte: keys.table(TABLE.heightByGlobalSequence), lt: keys.globalSequence(globalSequence + 1), reverse: true, limit: 1 })) {
      return readU64(value);
    }
    return undefined;
  }

  /** The first block at or after `timeMs`. */
  async heightAtOrAfterTime(timeMs: number): Promise<number | undefined> {
    for await (const [key] of this.kv.entries({ gte: keys.time(timeMs, 0), lt: prefixEnd(keys.table(TABLE.heightByTime)), limit: 1 })) {
      return readU64(key, 9);
    }
    return undefined;
  }

  async loadState(nextGlobalSequence: number): Promise<MemCache> {
    const entries: CacheEntry[] = [];
    for await (const [, value] of this.kv.entries({ gte: keys.table(TABLE.cacheEntry), lt: prefixEnd(keys.table(TABLE.cacheEntry)) })) entries.push(decodeEntry(value));
    const heads: Array<[string, number]> = [];
    for await (const [key, value] of this.kv.entries({ gte: keys.table(TABLE.addressHead), lt: prefixEnd(keys.table(TABLE.addressHead)) })) {
      heads.push([Buffer.from(key.subarray(1)).toString('utf8'), readU64(value)]);
    }
    const nonces: Array<[string, NonceWindow]> = [];
    for await (const [key, value] of this.kv.entries({ gte: keys.table(TABLE.nonceWindow), lt: prefixEnd(keys.table(TABLE.nonceWindow)) })) {
      const deviceHex = Buffer.from(key.subarray(1)).toString('utf8');
      nonces.push([deviceHex, decodeStoredWindow(deviceHex, value)]);
    }
    return MemCache.restore({ entries, heads, nonces, nextGlobalSequence });
  }

  /** Replaces the persisted MemCache (entries, address heads, replay windows) and the tip, for repair. */
  async replaceState(cache: MemCache, tip: TipRecord): Promise<void> {
    const operations: KvOperation[] = [];
    for (const table of [TABLE.cacheEntry, TABLE.addressHead, TABLE.nonceWindow]) {
      for await (const [key] of this.kv.entries({ gte: keys.table(table), lt: prefixEnd(keys.table(table)) })) operations.push({ type: 'del', key });
    }
    for (const address of cache.entryAddresses()) {
      for (const entry of cache.entriesAt(address)) operations.push({ type: 'put', key: keys.entry(address, entry.key), value: encodeEntry(entry) });
    }
    for (const address of cache.addresses()) operations.push({ type: 'put', key: keys.head(address), value: u64(cache.lastSequence(address)) });
    for (const [deviceHex, window] of cache.nonceWindows()) operations.push({ type: 'put', key: keys.nonce(deviceHex), value: encodeStoredWindow(deviceHex, window) });
    operations.push({ type: 'put', key: keys.meta('tip'), value: encodeTip(tip) });
    await this.kv.batch(operations, { sync: true });
  }

  async close(): Promise<void> {
    await this.kv.close();
  }
}
