// RaftRuntime: the order persist → send → apply, proposals settling, failures stopping the node,
// and snapshots installed only while still needed. On an in-memory store and a timer that only
// moves when the test says.
import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage } from '../../src/consensus/codec.ts';
import type { Entry, Message } from '../../src/consensus/raft.ts';
import { RaftRuntime, type RuntimeOptions } from '../../src/consensus/runtime.ts';
import { type Scheduler, silentLogger } from '../../src/ports.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { RaftLogStore } from '../../src/store/raft-log.ts';
import { seededRng } from '../support/chain.ts';

class ManualScheduler implements Scheduler {
  private timers = new Map<number, () => void>();
  private next = 0;
  setTimeout(callback: () => void): unknown {
    const id = this.next++;
    this.timers.set(id, callback);
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** Runs the timers due now (every timer is treated as due). */
  async fire(times = 1): Promise<void> {
    for (let round = 0; round < times; round++) {
      const due = [...this.timers.entries()];
      this.timers.clear();
      for (const [, callback] of due) callback();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

async function single(options: Partial<RuntimeOptions> = {}): Promise<{ runtime: RaftRuntime; scheduler: ManualScheduler; applied: Entry[]; sent: Array<[string, Uint8Array]> }> {
  const { store, hardState, log } = await RaftLogStore.open(new MemoryKvStore());
  const scheduler = new ManualScheduler();
  const applied: Entry[] = [];
  const sent: Array<[string, Uint8Array]> = [];
  const runtime = new RaftRuntime({
    raft: { id: 'a', voters: ['a'], electionTicks: 3, heartbeatTicks: 1, rng: seededRng('runtime'), hardState, log },
    store, scheduler, logger: silentLogger, tickMs: 10,
    send: (to, bytes) => sent.push([to, bytes]),
    apply: (entries) => void applied.push(...entries),
    ...options,
  });
  runtime.start();
  // A single voter elects itself after its election timeout.
  for (let tick = 0; tick < 10 && runtime.raft.role !== 'leader'; tick++) await scheduler.fire();
  await runtime.idle();
  expect(runtime.raft.role).toBe('leader');
  return { runtime, scheduler, applied, sent };
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('RaftRuntime', () => {
  it('resolves a proposal once it is committed and applied, and a proposal made from that resolution without waiting for a tick', async () => {
    const { runtime, applied } = await single();
    const second = runtime.propose(bytes('one')).then(() => runtime.propose(bytes('two')));
    // No timer fires from here on: the second proposal must not wait for one.
    await expect(second).resolves.toBeGreaterThan(0);
    expect(applied.filter((entry) => entry.data.length > 0).map((entry) => new TextDecoder().decode(entry.data))).toEqual(['one', 'two']);
  });

  it('refuses proposals after stop, and settles those that were waiting', async () => {
    const { runtime } = await single();
    runtime.stop();
    await expect(runtime.propose(bytes('late'))).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_STOPPING' });
  });

  it('stops taking part when applying fails, instead of going on without the entries', async () => {
    let failing = true;
    const { runtime } = await single({
      apply: (entries) => {
        if (failing && entries.some((entry) => entry.data.length > 0)) throw new Error('disk full');
      },
    });
    // It committed (a majority holds it: its proposer hears so), and then its apply failed here.
    await expect(runtime.propose(bytes('x'))).resolves.toBeGreaterThan(0);
    await runtime.idle();
    expect(runtime.isStopped).toBe(true);
    failing = false;
    await expect(runtime.propose(bytes('y'))).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY', details: { reason: 'applying committed entries failed' } });
  });

  it('stops taking part when the log cannot be written, and sends nothing the disk does not hold', async () => {
    const { store, hardState, log } = await RaftLogStore.open(new MemoryKvStore());
    const scheduler = new ManualScheduler();
    const sent: string[] = [];
    let broken = false;
    const persist = store.persist.bind(store);
    store.persist = async (...args) => {
      if (broken) throw new Error('I/O error');
      return persist(...args);
    };
    const runtime = new RaftRuntime({
      raft: { id: 'a', voters: ['a', 'b', 'c'], electionTicks: 3, heartbeatTicks: 1, rng: seededRng('broken'), hardState, log },
      store, scheduler, logger: silentLogger, tickMs: 10, send: (to) => sent.push(to), apply: () => undefined,
    });
    runtime.start();
    broken = true;
    await scheduler.fire(10);
    await runtime.idle();
    // It got as far as standing, and would have asked b and c for pre-votes: with its Ready not
    // durable, nothing went out.
    expect(runtime.raft.role).toBe('preCandidate');
    expect(sent).toEqual([]);
    await expect(runtime.propose(bytes('x'))).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY' });
  });

  it('installs a fetched snapshot only while the node still needs it', async () => {
    const { store, hardState, log } = await RaftLogStore.open(new MemoryKvStore());
    const scheduler = new ManualScheduler();
    const installed: number[] = [];
    let release!: () => void;
    const runtime = new RaftRuntime({
      raft: { id: 'b', voters: ['a', 'b', 'c'], electionTicks: 50, heartbeatTicks: 1, rng: seededRng('snap'), hardState, log },
      store, scheduler, logger: silentLogger, tickMs: 10, send: () => undefined, apply: () => undefined,
      fetchSnapshot: (meta) => new Promise((resolve) => {
        release = () => resolve(() => void installed.push(meta.index));
      }),
    });
    runtime.start();
    const deliver = (message: Message): void => runtime.receive(message.from, encodeMessage(message));
    // Leader a has compacted to 10 and asks b to fetch.
    deliver({ type: 'snapshot', from: 'a', to: 'b', term: 1, index: 10, snapshotTerm: 1 });
    await runtime.idle();
    // Meanwhile a new leader replicates and commits 1..12 the ordinary way.
    const entries = Array.from({ length: 12 }, (_, index) => ({ index: index + 1, term: 2, data: new Uint8Array([index]) }));
    deliver({ type: 'append', from: 'c', to: 'b', term: 2, prevLogIndex: 0, prevLogTerm: 0, entries, commit: 12 });
    await runtime.idle();
    expect(runtime.raft.commit).toBe(12);
    // The old fetch completes late: installing state at 10 now would undo entries 11 and 12.
    release();
    await new Promise((resolve) => setImmediate(resolve));
    await runtime.idle();
    expect(installed).toEqual([]);
    expect(runtime.raft.commit).toBe(12);
    expect(runtime.raft.firstIndex()).toBe(1);
  });

  it('acknowledges only the entries the gate admits, in order, however the appends interleave', async () => {
    const { store, hardState, log } = await RaftLogStore.open(new MemoryKvStore());
    const scheduler = new ManualScheduler();
    const sent: Message[] = [];
    const checked: number[] = [];
    const runtime = new RaftRuntime({
      raft: { id: 'b', voters: ['a', 'b', 'c'], electionTicks: 50, heartbeatTicks: 1, rng: seededRng('gate'), hardState, log },
      store, scheduler, logger: silentLogger, tickMs: 10,
      send: (_to, bytes) => sent.push(decodeMessage(bytes)),
      apply: () => undefined,
      admit: async (entries) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        let admitted = 0;
        for (const entry of entries) {
          checked.push(entry.index);
          if (new TextDecoder().decode(entry.data) === 'bad') return { admitted, refusal: new Error('a bad block') };
          admitted++;
        }
        return { admitted };
      },
    });
    runtime.start();
    const entry = (index: number, text: string): Entry => ({ index, term: 1, data: bytes(text) });
    const deliver = (message: Message): void => runtime.receive(message.from, encodeMessage(message));
    deliver({ type: 'append', from: 'a', to: 'b', term: 1, prevLogIndex: 0, prevLogTerm: 0, entries: [entry(1, 'one'), entry(2, 'two')], commit: 0 });
    // Sent before the first append's check finished: it must wait its turn, and not re-check 1 and 2.
    deliver({ type: 'append', from: 'a', to: 'b', term: 1, prevLogIndex: 0, prevLogTerm: 0, entries: [entry(1, 'one'), entry(2, 'two'), entry(3, 'bad'), entry(4, 'four')], commit: 2 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await runtime.idle();
    const responses = sent.filter((message) => message.type === 'appendResponse') as Array<Extract<Message, { type: 'appendResponse' }>>;
    expect(responses.map((response) => [response.success, response.index])).toEqual([[true, 2], [true, 2]]);
    expect(checked).toEqual([1, 2, 3]);
    expect(runtime.raft.lastIndex()).toBe(2);
    expect(runtime.raft.commit).toBe(2);
    runtime.stop();
  });

  it('holds messages while a snapshot is installed, so the commit cannot pass it meanwhile', async () => {
    const { store, hardState, log } = await RaftLogStore.open(new MemoryKvStore());
    const scheduler = new ManualScheduler();
    const applied: number[] = [];
    let finishInstall!: () => void;
    const runtime = new RaftRuntime({
      raft: { id: 'b', voters: ['a', 'b', 'c'], electionTicks: 50, heartbeatTicks: 1, rng: seededRng('hold'), hardState, log },
      store, scheduler, logger: silentLogger, tickMs: 10, send: () => undefined,
      apply: (entries) => void applied.push(...entries.map((entry) => entry.index)),
      fetchSnapshot: async () => () => new Promise<void>((resolve) => (finishInstall = resolve)),
    });
    runtime.start();
    const deliver = (message: Message): void => runtime.receive(message.from, encodeMessage(message));
    deliver({ type: 'snapshot', from: 'a', to: 'b', term: 1, index: 10, snapshotTerm: 1 });
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    // The install is under way; an append that would commit 1..12 arrives.
    const entries = Array.from({ length: 12 }, (_, index) => ({ index: index + 1, term: 1, data: new Uint8Array([index]) }));
    deliver({ type: 'append', from: 'a', to: 'b', term: 1, prevLogIndex: 0, prevLogTerm: 0, entries, commit: 12 });
    expect(runtime.raft.commit).toBe(0);
    finishInstall();
    await new Promise((resolve) => setTimeout(resolve, 10));
    await runtime.idle();
    // The state at 10 was installed; the append then brought 11 and 12, each applied once.
    expect(runtime.raft.firstIndex()).toBe(11);
    expect(runtime.raft.commit).toBe(12);
    expect(applied).toEqual([11, 12]);
    runtime.stop();
  });
});
