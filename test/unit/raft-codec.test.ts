// The Raft wire and store encodings: round trips of every message type, and malformed input refused
// with its code. The log store: persisted Readys read back, a replaced suffix truncated, corruption found.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeEntry, decodeHardState, decodeMessage, encodeEntry, encodeHardState, encodeMessage } from '../../src/consensus/codec.ts';
import type { Entry, Message } from '../../src/consensus/raft.ts';
import type { KvStore } from '../../src/store/kv.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { RaftLogStore } from '../../src/store/raft-log.ts';
import { TABLE, tableKey, u64 } from '../../src/store/keys.ts';

const id = fc.uint8Array({ minLength: 33, maxLength: 33 }).map((bytes) => Buffer.from(bytes).toString('hex'));
const count = fc.nat({ max: 2 ** 40 });
const entryAt = (index: number): fc.Arbitrary<Entry> => fc.record({ index: fc.constant(index), term: count, data: fc.uint8Array({ maxLength: 300 }) });
const message: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ type: fc.constantFrom('preVote' as const, 'vote' as const), from: id, to: id, term: count, lastLogIndex: count, lastLogTerm: count }),
  fc.record({ type: fc.constantFrom('preVoteResponse' as const, 'voteResponse' as const), from: id, to: id, term: count, granted: fc.boolean() }),
  fc.record({ type: fc.constant('appendResponse' as const), from: id, to: id, term: count, success: fc.boolean(), index: count }),
  fc.record({ type: fc.constant('snapshot' as const), from: id, to: id, term: count, index: count, snapshotTerm: count }),
  fc.tuple(id, id, count, fc.nat({ max: 1e6 }), count, count, fc.nat({ max: 5 })).chain(([from, to, term, prevLogIndex, prevLogTerm, commit, length]) =>
    fc.tuple(...Array.from({ length }, (_, position) => entryAt(prevLogIndex + 1 + position))).map((entries) => ({ type: 'append' as const, from, to, term, prevLogIndex, prevLogTerm, commit, entries }))),
);

describe('raft codec', () => {
  it('round-trips every message type', () => {
    fc.assert(fc.property(message, (original) => {
      expect(decodeMessage(encodeMessage(original))).toEqual(original);
    }), { numRuns: 500 });
  });

  it('refuses truncated, extended and mangled messages with a code', () => {
    fc.assert(fc.property(message, fc.nat(), (original, cut) => {
      const bytes = encodeMessage(original);
      expect(() => decodeMessage(bytes.subarray(0, cut % bytes.length))).toThrow(expect.objectContaining({ code: expect.stringMatching(/^KALIMA_ERR_CODEC_/) }));
      expect(() => decodeMessage(Uint8Array.of(...bytes, 0))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_CODEC_TRAILING_BYTES' }));
    }), { numRuns: 300 });
    const vote = encodeMessage({ type: 'voteResponse', from: 'a', to: 'b', term: 1, granted: true });
    expect(() => decodeMessage(Uint8Array.of(2, ...vote.subarray(1)))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_CODEC_UNKNOWN_VERSION' }));
    expect(() => decodeMessage(Uint8Array.of(1, 9, ...vote.subarray(2)))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_CODEC_OUT_OF_RANGE' }));
    const mangledFlag = vote.slice();
    mangledFlag[mangledFlag.length - 1] = 2;
    expect(() => decodeMessage(mangledFlag)).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_CODEC_NON_CANONICAL' }));
    // Entries that do not follow prevLogIndex one by one: the entry's index byte is the one just
    // after the entry count (one-byte varints throughout here).
    const append = encodeMessage({ type: 'append', from: 'a', to: 'b', term: 2, prevLogIndex: 3, prevLogTerm: 1, commit: 3, entries: [{ index: 4, term: 2, data: new Uint8Array(1) }] });
    const at = append.length - 4; // index, term, length, one data byte
    expect(append[at]).toBe(4);
    const shifted = append.slice();
    shifted[at] = 6;
    expect(() => decodeMessage(shifted)).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_CODEC_OUT_OF_RANGE', details: expect.objectContaining({ what: 'entry index', value: 6, expected: 4 }) }));
  });

  it('round-trips entries and hard states', () => {
    fc.assert(fc.property(fc.nat({ max: 1e9 }).chain((index) => entryAt(index)), (entry) => {
      expect(decodeEntry(encodeEntry(entry))).toEqual(entry);
    }));
    for (const state of [{ term: 0, vote: undefined, commit: 0 }, { term: 7, vote: 'ab'.repeat(33), commit: 123 }]) expect(decodeHardState(encodeHardState(state))).toEqual(state);
  });
});

describe('raft log store', () => {
  const entry = (index: number, term: number, text = `e${index}t${term}`): Entry => ({ index, term, data: new TextEncoder().encode(text) });

  it('reads back what was persisted, with a replaced suffix gone', async () => {
    const kv = new MemoryKvStore();
    const { store } = await RaftLogStore.open(kv);
    await store.persist({ term: 1, vote: 'a', commit: 0 }, [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)]);
    await store.persist({ term: 2, vote: 'b', commit: 2 }, [entry(3, 2)]);
    const reopened = await RaftLogStore.open(kv);
    expect(reopened.hardState).toEqual({ term: 2, vote: 'b', commit: 2 });
    expect(reopened.log).toEqual([entry(1, 1), entry(2, 1), entry(3, 2)]);
    await reopened.store.persist(undefined, [entry(4, 2)]);
    expect((await RaftLogStore.open(kv)).log.map((item) => item.term)).toEqual([1, 1, 2, 2]);
  });

  it('compacts to a snapshot and restarts after it, and a restored snapshot discards the whole log', async () => {
    const kv = new MemoryKvStore();
    const { store } = await RaftLogStore.open(kv);
    await store.persist({ term: 1, vote: 'a', commit: 4 }, [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1), entry(5, 1)]);
    await store.persist(undefined, [], { index: 3, term: 1, discardLog: false });
    let reopened = await RaftLogStore.open(kv);
    expect(reopened.snapshot).toEqual({ index: 3, term: 1 });
    expect(reopened.log.map((item) => item.index)).toEqual([4, 5]);
    await reopened.store.persist({ term: 2, vote: 'b', commit: 9 }, [], { index: 9, term: 2, discardLog: true });
    reopened = await RaftLogStore.open(kv);
    expect(reopened.snapshot).toEqual({ index: 9, term: 2 });
    expect(reopened.log).toEqual([]);
    await reopened.store.persist(undefined, [entry(10, 2)]);
    expect((await RaftLogStore.open(kv)).log.map((item) => item.index)).toEqual([10]);
    await expect(reopened.store.persist(undefined, [entry(8, 2)])).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_INTERNAL' });
  });

  it('syncs every batch that holds entries, a snapshot, a term or a vote, and not one that only moves the commit', async () => {
    const memory = new MemoryKvStore();
    const synced: boolean[] = [];
    const kv: KvStore = {
      get: (key) => memory.get(key),
      batch: async (operations, options) => {
        synced.push(options.sync);
        await memory.batch(operations);
      },
      entries: (range) => memory.entries(range),
      close: () => memory.close(),
    };
    const { store } = await RaftLogStore.open(kv);
    await store.persist({ term: 1, vote: 'a', commit: 0 }, []);
    await store.persist(undefined, [entry(1, 1), entry(2, 1)]);
    await store.persist({ term: 1, vote: 'a', commit: 1 }, []);
    await store.persist({ term: 1, vote: 'a', commit: 2 }, [entry(3, 1)]);
    await store.persist({ term: 2, vote: undefined, commit: 2 }, []);
    await store.persist({ term: 2, vote: 'b', commit: 2 }, []);
    await store.persist({ term: 2, vote: 'b', commit: 3 }, []);
    await store.persist(undefined, [], { index: 2, term: 1, discardLog: false });
    expect(synced).toEqual([true, true, false, true, true, true, false, true]);
    // After a restart the stored term and vote are known: a commit-only batch is still not synced.
    const reopened = await RaftLogStore.open(kv);
    expect(reopened.hardState).toEqual({ term: 2, vote: 'b', commit: 3 });
    await reopened.store.persist({ term: 2, vote: 'b', commit: 3 }, []);
    await reopened.store.persist({ term: 3, vote: 'b', commit: 3 }, []);
    expect(synced.slice(-2)).toEqual([false, true]);
  });

  it('refuses a log with a hole, or a commit beyond its entries', async () => {
    const kv = new MemoryKvStore();
    const { store } = await RaftLogStore.open(kv);
    await store.persist({ term: 1, vote: undefined, commit: 3 }, [entry(1, 1), entry(2, 1), entry(3, 1)]);
    await kv.batch([{ type: 'del', key: tableKey(TABLE.raftEntry, u64(2)) }]);
    await expect(RaftLogStore.open(kv)).rejects.toMatchObject({ code: 'KALIMA_ERR_STORE_CORRUPT', details: { index: 3, expected: 2 } });
    await kv.batch([{ type: 'del', key: tableKey(TABLE.raftEntry, u64(3)) }]);
    await expect(RaftLogStore.open(kv)).rejects.toMatchObject({ code: 'KALIMA_ERR_STORE_CORRUPT', details: { commit: 3, entries: 1 } });
  });
});
