// Raft's durable state in the node's key-value store: the hard state (term, vote, commit) and the
// log entries by index. Each Ready is persisted with one batch, before anything it carries is sent:
// the truncation of a replaced suffix, the new entries and the hard state together. The batch is
// synced unless all it changes is the commit index: Raft's commit index is volatile state (a
// restarted node learns it again from the leader, and one whose chain store is ahead of the stored
// commit starts from what it applied, see raft.ts), and the node's next synced write, in the same
// key-value store, makes it durable anyway. That saves a synced write on the leader's commit path
// (the Ready after the acknowledgements) and on every follower when the commit reaches it.
import type { Entry, HardState, SnapshotMeta } from '../consensus/raft.ts';
import { decodeEntry, decodeHardState, decodeSnapshotMeta, encodeEntry, encodeHardState, encodeSnapshotMeta } from '../consensus/codec.ts';
import { kalimaError } from '../errors.ts';
import type { KvOperation, KvStore } from './kv.ts';
import { TABLE, keys, prefixEnd, tableKey, u64 } from './keys.ts';

const entryKey = (index: number): Uint8Array => tableKey(TABLE.raftEntry, u64(index));

export class RaftLogStore {
  /** The log holds entries firstIndex .. lastIndex. */
  private firstIndex = 1;
  private lastIndex = 0;
  /** The term and vote as last written: a batch that changes either is synced. */
  private term = 0;
  private vote: string | undefined;

  private constructor(private readonly kv: KvStore) {}

  /**
   * Opens the log and reads it back: where it starts (the snapshot), the hard state, and every
   * entry after the start, checked to be consecutive.
   */
  static async open(kv: KvStore): Promise<{ store: RaftLogStore; snapshot: SnapshotMeta | undefined; hardState: HardState | undefined; log: Entry[] }> {
    const store = new RaftLogStore(kv);
    const stateBytes = await kv.get(keys.meta('raftHardState'));
    const hardState = stateBytes === undefined ? undefined : decodeHardState(stateBytes);
    const snapshotBytes = await kv.get(keys.meta('raftSnapshot'));
    const snapshot = snapshotBytes === undefined ? undefined : decodeSnapshotMeta(snapshotBytes);
    const start = (snapshot?.index ?? 0) + 1;
    const log: Entry[] = [];
    const table = Uint8Array.of(TABLE.raftEntry);
    for await (const [, value] of kv.entries({ gte: table, lt: prefixEnd(table) })) {
      const entry = decodeEntry(value);
      if (entry.index !== start + log.length) throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { what: 'raft log', index: entry.index, expected: start + log.length });
      log.push(entry);
    }
    const last = start - 1 + log.length;
    if (hardState !== undefined && hardState.commit > last) throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { what: 'raft log', commit: hardState.commit, entries: last });
    store.firstIndex = start;
    store.lastIndex = last;
    store.term = hardState?.term ?? 0;
    store.vote = hardState?.vote;
    return { store, snapshot, hardState, log };
  }

  /**
   * One Ready, durable when it returns: the log's new start (dropping the entries it folds in, or
   * all of them after a restored snapshot), entries that replace the log from entries[0].index on,
   * and the hard state.
   */
  async persist(hardState: HardState | undefined, entries: readonly Entry[], snapshot?: SnapshotMeta & { discardLog: boolean }): Promise<void> {
    if (hardState === undefined && entries.length === 0 && snapshot === undefined) return;
    const operations: KvOperation[] = [];
    let { firstIndex, lastIndex } = this;
    if (snapshot !== undefined) {
      const dropTo = snapshot.discardLog ? lastIndex : Math.min(snapshot.index, lastIndex);
      for (let index = firstIndex; index <= dropTo; index++) operations.push({ type: 'del', key: entryKey(index) });
      operations.push({ type: 'put', key: keys.meta('raftSnapshot'), value: encodeSnapshotMeta(snapshot) });
      firstIndex = snapshot.index + 1;
      lastIndex = snapshot.discardLog ? snapshot.index : Math.max(lastIndex, snapshot.index);
    }
    if (entries.length > 0) {
      const first = entries[0]!.index;
      if (first > lastIndex + 1 || first < firstIndex) throw kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'raft log: an append outside the log', first, firstIndex, lastIndex });
      for (let index = first; index <= lastIndex; index++) operations.push({ type: 'del', key: entryKey(index) });
      for (const entry of entries) operations.push({ type: 'put', key: entryKey(entry.index), value: encodeEntry(entry) });
      lastIndex = entries[entries.length - 1]!.index;
    }
    if (hardState !== undefined) operations.push({ type: 'put', key: keys.meta('raftHardState'), value: encodeHardState(hardState) });
    const sync = snapshot !== undefined || entries.length > 0 || (hardState !== undefined && (hardState.term !== this.term || hardState.vote !== this.vote));
    await this.kv.batch(operations, { sync });
    this.firstIndex = firstIndex;
    this.lastIndex = lastIndex;
    if (hardState !== undefined) {
      this.term = hardState.term;
      this.vote = hardState.vote;
    }
  }
}
