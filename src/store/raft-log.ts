// Raft's durable state in the node's key-value store: the hard state (term, vote, commit) and the
// log entries by index. Each Ready is persisted with one synced batch, before anything it carries
// is sent: the truncation of a replaced suffix, the new entries and the hard state together.
import type { Entry, HardState } from '../consensus/raft.ts';
import { decodeEntry, decodeHardState, encodeEntry, encodeHardState } from '../consensus/codec.ts';
import { kalimaError } from '../errors.ts';
import type { KvOperation, KvStore } from './kv.ts';
import { TABLE, keys, prefixEnd, tableKey, u64 } from './keys.ts';

const entryKey = (index: number): Uint8Array => tableKey(TABLE.raftEntry, u64(index));

export class RaftLogStore {
  private lastIndex = 0;

  private constructor(private readonly kv: KvStore) {}

  /** Opens the log and reads it back: the hard state and every entry, checked to be consecutive. */
  static async open(kv: KvStore): Promise<{ store: RaftLogStore; hardState: HardState | undefined; log: Entry[] }> {
    const store = new RaftLogStore(kv);
    const stateBytes = await kv.get(keys.meta('raftHardState'));
    const hardState = stateBytes === undefined ? undefined : decodeHardState(stateBytes);
    const log: Entry[] = [];
    const table = Uint8Array.of(TABLE.raftEntry);
    for await (const [, value] of kv.entries({ gte: table, lt: prefixEnd(table) })) {
      const entry = decodeEntry(value);
      if (entry.index !== log.length + 1) throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { what: 'raft log', index: entry.index, expected: log.length + 1 });
      log.push(entry);
    }
    if (hardState !== undefined && hardState.commit > log.length) throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { what: 'raft log', commit: hardState.commit, entries: log.length });
    store.lastIndex = log.length;
    return { store, hardState, log };
  }

  /** Entries replace the log from entries[0].index on. Durable when it returns. */
  async persist(hardState: HardState | undefined, entries: readonly Entry[]): Promise<void> {
    if (hardState === undefined && entries.length === 0) return;
    const operations: KvOperation[] = [];
    let lastIndex = this.lastIndex;
    if (entries.length > 0) {
      const first = entries[0]!.index;
      if (first > this.lastIndex + 1) throw kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'raft log: an append leaves a gap', first, last: this.lastIndex });
      for (let index = first; index <= this.lastIndex; index++) operations.push({ type: 'del', key: entryKey(index) });
      for (const entry of entries) operations.push({ type: 'put', key: entryKey(entry.index), value: encodeEntry(entry) });
      lastIndex = entries[entries.length - 1]!.index;
    }
    if (hardState !== undefined) operations.push({ type: 'put', key: keys.meta('raftHardState'), value: encodeHardState(hardState) });
    await this.kv.batch(operations, { sync: true });
    this.lastIndex = lastIndex;
  }
}
