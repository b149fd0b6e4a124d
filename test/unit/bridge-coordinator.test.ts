// The presumed-commit coordinator on virtual time with in-process participants: the happy path,
// each way to abort (a no, an error, a timeout, the deadline), begin's refusals, inquiries,
// retries and idempotent re-delivery, crashes at failpoints and recovery, and the log's syncs.
import { describe, expect, it } from 'vitest';
import { BridgeCoordinator, type BridgeEvent, type CoordinatorOptions, type TxOutcome } from '../../bridge/coordinator.ts';
import { BRIDGE_FAILPOINTS, type BridgeFailpoint, processFailpoints } from '../../bridge/failpoints.ts';
import { failpointsFromEnv } from '../../bridge/service.ts';
import { BridgeLog } from '../../bridge/log.ts';
import { step, start } from '../../bridge/machine.ts';
import { DEFAULT_KEY_PREFIX } from '../../bridge/records.ts';
import { isKalimaError } from '../../src/errors.ts';
import type { KvOperation, KvRange, KvStore } from '../../src/store/kv.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { type Generation, SimWorld, VirtualTime, simParticipant } from '../support/bridge.ts';
import { expectKalimaError } from './support/kalima-error.ts';
import { seededRng } from './support/seeded-rng.ts';
import { prefixEnd } from '../../src/store/keys.ts';

/** A KvStore that records its batches and can be made to fail. */
class RecordingKv implements KvStore {
  readonly batches: Array<{ operations: KvOperation[]; sync: boolean }> = [];
  failing = false;
  constructor(readonly inner: KvStore = new MemoryKvStore()) {}
  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.inner.get(key);
  }
  async batch(operations: KvOperation[], options: { sync: boolean }): Promise<void> {
    if (this.failing) throw new Error('disk full');
    this.batches.push({ operations, sync: options.sync });
    await this.inner.batch(operations, options);
  }
  entries(range: KvRange): AsyncIterable<[Uint8Array, Uint8Array]> {
    return this.inner.entries(range);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

async function logSize(kv: KvStore): Promise<number> {
  let count = 0;
  for await (const _ of kv.entries({ gte: DEFAULT_KEY_PREFIX, lt: prefixEnd(DEFAULT_KEY_PREFIX) })) count++;
  return count;
}

interface Setup {
  time: VirtualTime;
  world: SimWorld;
  kv: RecordingKv;
  coordinator: BridgeCoordinator;
  generation: Generation;
  events: Array<['decided' | 'ended', BridgeEvent]>;
  open: (options?: Partial<CoordinatorOptions>) => Promise<BridgeCoordinator>;
}

async function setup(options: Partial<CoordinatorOptions> = {}): Promise<Setup> {
  const time = new VirtualTime();
  const world = new SimWorld(time);
  const kv = new RecordingKv();
  const events: Setup['events'] = [];
  let generationNumber = 0;
  const self = { time, world, kv, events } as Setup;
  self.open = async (more = {}) => {
    const generation: Generation = { number: generationNumber++, crashed: false };
    const coordinator = await BridgeCoordinator.open({
      kv, participants: world.registry(generation), clock: time.clock, rng: seededRng('bridge-unit'), scheduler: time,
      prepareTimeoutMs: 1_000, callTimeoutMs: 1_000, retryInitialMs: 10, retryMaxMs: 200, deadlineMarginMs: 100, defaultDeadlineMs: 10_000,
      ...options, ...more,
    });
    coordinator.on('decided', (event) => events.push(['decided', event]));
    coordinator.on('ended', (event) => events.push(['ended', event]));
    self.coordinator = coordinator;
    self.generation = generation;
    return coordinator;
  };
  await self.open();
  return self;
}

/** Runs virtual time until `promise` settles; its value, or its error thrown. */
async function settled<T>(time: VirtualTime, promise: Promise<T>): Promise<T> {
  let done = false;
  let value: T | undefined;
  let error: unknown;
  promise.then((result) => {
    done = true;
    value = result;
  }, (failure: unknown) => {
    done = true;
    error = failure;
  });
  await time.run(() => done);
  if (!done) throw new Error('the promise never settled');
  if (error !== undefined) throw error;
  return value as T;
}

const A = simParticipant({ name: 'a' });
const B = simParticipant({ name: 'b' });
const ID = '11'.repeat(32);

describe('bridge coordinator', () => {
  it('commits when every participant votes yes, with two forced writes, then removes its records', async () => {
    const { time, world, kv, coordinator, events } = await setup();
    const handle = coordinator.begin({ id: ID, participants: [A, B] });
    expect(handle.id).toBe(ID);
    expect(await settled(time, handle.outcome)).toEqual({ outcome: 'committed' });
    expect(world.state('a', ID)).toBe('committed');
    expect(world.state('b', ID)).toBe('committed');
    expect(world.violations).toEqual([]);
    expect(await logSize(kv)).toBe(0);
    expect(coordinator.liveCount).toBe(0);
    // initiation (forced), commit decision (forced), end (not forced).
    expect(kv.batches.map((batch) => [batch.operations.map((operation) => operation.type).join('+'), batch.sync])).toEqual([['put', true], ['put', true], ['del+del', false]]);
    expect(events).toEqual([['decided', { id: ID, outcome: { outcome: 'committed' }, recovered: false }], ['ended', { id: ID, outcome: { outcome: 'committed' }, recovered: false }]]);
    // Every prepare came after the initiation record, every commit after the decision.
    expect(world.calls.map((call) => call.call)).toEqual(['prepare', 'prepare', 'commit', 'commit']);
  });

  it('draws an id from the Rng when none is given, and run resolves with the outcome', async () => {
    const { time, coordinator } = await setup();
    const handle = coordinator.begin({ participants: [A] });
    expect(handle.id).toMatch(/^[0-9a-f]{32}$/);
    await settled(time, handle.outcome);
    expect(await settled(time, coordinator.run({ participants: [A, B] }))).toEqual({ outcome: 'committed' });
  });

  it('aborts on a no vote, tells every participant, and never commits', async () => {
    const { time, world, kv, coordinator, events } = await setup();
    const outcome = await settled(time, coordinator.run({ id: ID, participants: [A, simParticipant({ name: 'refuser', voteNo: true })] }));
    expect(outcome).toEqual({ outcome: 'aborted', reason: 'participant 1: refuser refuses' });
    expect(world.state('a', ID)).toBe('aborted');
    expect(world.state('refuser', ID)).toBe('aborted');
    expect(world.calls.filter((call) => call.call === 'commit')).toEqual([]);
    expect(await logSize(kv)).toBe(0);
    // The abort record is written, not forced.
    expect(kv.batches.map((batch) => batch.sync)).toEqual([true, false, false]);
    expect(events.map(([name, event]) => [name, event.outcome.outcome])).toEqual([['decided', 'aborted'], ['ended', 'aborted']]);
  });

  it('counts an error from prepare as a no', async () => {
    const { time, world, coordinator } = await setup();
    world.script = (name, call) => (name === 'b' && call === 'prepare' ? { kind: 'fail-before' } : undefined);
    const outcome = await settled(time, coordinator.run({ id: ID, participants: [A, B] }));
    expect(outcome.outcome).toBe('aborted');
    expect((outcome as { reason: string }).reason).toContain('participant 1: b: prepare failed');
    expect(world.state('a', ID)).toBe('aborted');
    expect(world.state('b', ID)).toBe('aborted');
  });

  it('aborts a participant that does not vote in time, and its late prepare then votes no', async () => {
    const { time, world, coordinator } = await setup();
    world.script = (name, call) => (name === 'b' && call === 'prepare' ? { kind: 'normal', delayMs: 5_000 } : undefined);
    const began = time.nowMs;
    const outcome = await settled(time, coordinator.run({ id: ID, participants: [A, B] }));
    expect(outcome).toEqual({ outcome: 'aborted', reason: 'participant 1: prepare timed out after 1000 ms' });
    expect(time.nowMs - began).toBe(1_000);
    expect(world.state('b', ID)).toBe('aborted');
    // The prepare lands after the abort: the participant remembered the abort and refuses.
    await time.run();
    expect(world.state('b', ID)).toBe('aborted');
    expect(world.votes.get(ID)?.get('b')).toBeUndefined();
    expect(world.prepared()).toEqual([]);
  });

  it('aborts at the decision deadline: the earliest participant deadline minus the margin', async () => {
    const { time, world, coordinator } = await setup({ prepareTimeoutMs: 60_000 });
    const htlcExpiry = time.nowMs + 500;
    world.script = (name, call) => (name === 'b' && call === 'prepare' ? { kind: 'normal', delayMs: 450 } : undefined);
    const began = time.nowMs;
    const outcome = await settled(time, coordinator.run({ id: ID, participants: [A, simParticipant({ name: 'b', deadlineMs: htlcExpiry })] }));
    expect(outcome).toEqual({ outcome: 'aborted', reason: 'the decision deadline passed before every participant voted yes' });
    expect(time.nowMs - began).toBe(400);
    await time.run();
    expect(world.prepared()).toEqual([]);
    // A request deadline earlier than every participant's wins.
    world.script = (name, call) => (name === 'slow' && call === 'prepare' ? { kind: 'normal', delayMs: 10 } : undefined);
    const early = await settled(time, coordinator.run({ id: '22', participants: [simParticipant({ name: 'slow' })], deadlineMs: time.nowMs + 1 }));
    expect(early.outcome).toBe('aborted');
  });

  it('refuses a deadline that has passed, and changes nothing', async () => {
    const { time, kv, coordinator, world } = await setup();
    expectKalimaError(() => coordinator.begin({ id: ID, participants: [A, simParticipant({ name: 'b', deadlineMs: time.nowMs + 100 })] }), 'KALIMA_ERR_BRIDGE_DEADLINE_PASSED');
    expectKalimaError(() => coordinator.begin({ id: ID, participants: [A], deadlineMs: time.nowMs }), 'KALIMA_ERR_BRIDGE_DEADLINE_PASSED');
    await time.run();
    expect(kv.batches).toEqual([]);
    expect(world.calls).toEqual([]);
    expect(coordinator.liveCount).toBe(0);
  });

  it('refuses a duplicate begin of a live id, and changes nothing; the id is free again once it ended', async () => {
    const { time, kv, coordinator, world } = await setup();
    const first = coordinator.begin({ id: ID, participants: [A] });
    const error = expectKalimaError(() => coordinator.begin({ id: ID, participants: [B] }), 'KALIMA_ERR_BRIDGE_DUPLICATE_TX');
    expect(error.details).toEqual({ id: ID });
    expect(await settled(time, first.outcome)).toEqual({ outcome: 'committed' });
    expect(world.calls.filter((call) => call.name === 'b')).toEqual([]);
    expect(kv.batches.length).toBe(3);
    expect(await settled(time, coordinator.run({ id: ID, participants: [B] }))).toEqual({ outcome: 'committed' });
  });

  it('refuses malformed requests with coded errors', async () => {
    const { coordinator, kv } = await setup();
    expectKalimaError(() => coordinator.begin({ participants: [] }), 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
    expectKalimaError(() => coordinator.begin({ participants: Array.from({ length: 17 }, () => A) }), 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
    expectKalimaError(() => coordinator.begin({ id: 'ABCD', participants: [A] }), 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
    expectKalimaError(() => coordinator.begin({ id: 'abc', participants: [A] }), 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
    expectKalimaError(() => coordinator.begin({ participants: [{ kind: 'tezos', args: new Uint8Array() }] }), 'KALIMA_ERR_BRIDGE_UNKNOWN_PARTICIPANT');
    expectKalimaError(() => coordinator.begin({ participants: [{ kind: 'sim', args: new Uint8Array([0xff]) }] }), 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
    expectKalimaError(() => coordinator.begin({ participants: [A], deadlineMs: Number.NaN }), 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
    expectKalimaError(() => coordinator.begin({ participants: [A], deadlineMs: 2 ** 60 }), 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
    await expect(coordinator.run({ participants: [] })).rejects.toMatchObject({ code: 'KALIMA_ERR_BRIDGE_BAD_REQUEST' });
    expect(coordinator.liveCount).toBe(0);
    expect(kv.batches).toEqual([]);
  });

  it('refuses to begin beyond maxLive', async () => {
    const { time, coordinator } = await setup({ maxLive: 2 });
    const first = coordinator.begin({ participants: [A] });
    coordinator.begin({ participants: [A] });
    expectKalimaError(() => coordinator.begin({ participants: [A] }), 'KALIMA_ERR_BRIDGE_OVERLOADED');
    await settled(time, first.outcome);
    await settled(time, coordinator.idle());
    coordinator.begin({ participants: [A] });
  });

  it('answers an inquiry about an unknown transaction with commit, and a live one with its state', async () => {
    const { time, world, coordinator } = await setup();
    expect(coordinator.inquire('ff'.repeat(32))).toEqual({ state: 'committed' });
    expectKalimaError(() => coordinator.inquire('nope'), 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
    // Hold b's commit so the committed state can be seen while live.
    world.script = (name, call) => (name === 'b' && call === 'commit' ? { kind: 'normal', delayMs: 500 } : name === 'b' && call === 'prepare' ? { kind: 'normal', delayMs: 100 } : undefined);
    const handle = coordinator.begin({ id: ID, participants: [A, B] });
    expect(coordinator.inquire(ID)).toEqual({ state: 'undecided' });
    await time.advance(50);
    expect(coordinator.inquire(ID)).toEqual({ state: 'undecided' });
    await time.advance(100);
    expect(coordinator.inquire(ID)).toEqual({ state: 'committed' });
    await settled(time, handle.outcome);
    world.script = (name, call) => (name === 'a' && call === 'abort' ? { kind: 'normal', delayMs: 100 } : undefined);
    const refused = coordinator.begin({ id: '33', participants: [A, simParticipant({ name: 'no', voteNo: true })] });
    await time.advance(10);
    expect(coordinator.inquire('33')).toEqual({ state: 'aborted', reason: 'participant 1: no refuses' });
    await settled(time, refused.outcome);
    expect(coordinator.inquire('33')).toEqual({ state: 'committed' });
  });

  it('retries a failing commit with backoff until it is acknowledged; a commit done twice is done once', async () => {
    const { time, world, coordinator } = await setup();
    world.script = (name, call, _tx, attempt) => {
      if (name !== 'b' || call !== 'commit') return undefined;
      if (attempt === 0) return { kind: 'fail-after' };
      if (attempt === 1) return { kind: 'hang' };
      if (attempt < 4) return { kind: 'fail-before' };
      return undefined;
    };
    expect(await settled(time, coordinator.run({ id: ID, participants: [A, B] }))).toEqual({ outcome: 'committed' });
    expect(world.callsOf('b', 'commit', ID).length).toBe(5);
    expect(world.callsOf('a', 'commit', ID).length).toBe(1);
    expect(world.state('b', ID)).toBe('committed');
    expect(world.violations).toEqual([]);
    // Retries are spaced by the bounded backoff (10 ms doubling, cap 200, jittered to half to full).
    const times = world.callsOf('b', 'commit', ID).map((call) => call.atMs);
    const gaps = times.slice(1).map((at, index) => at - times[index]!);
    expect(gaps[1]).toBeGreaterThanOrEqual(1_000); // the hung call timed out first
    for (const gap of gaps) expect(gap).toBeGreaterThan(0);
  });

  it('crashed at a failpoint, does nothing more; recovery commits a logged commit again, idempotently', async () => {
    const crashAt = (target: BridgeFailpoint, occurrence = 1) => {
      let seen = 0;
      return (name: BridgeFailpoint): void => {
        if (name === target && ++seen === occurrence) throw new Error(`crash at ${name}`);
      };
    };
    const { time, world, kv, coordinator, generation, open } = await setup({ failpoint: crashAt('bridge.after-commit-ack') });
    world.script = (name, call, _tx, attempt) => (name === 'b' && call === 'commit' && attempt === 0 ? { kind: 'fail-before', delayMs: 5 } : undefined);
    const handle = coordinator.begin({ id: ID, participants: [A, B] });
    const failure = await settled(time, handle.outcome).catch((error: unknown) => error);
    expect(isKalimaError(failure, 'KALIMA_ERR_BRIDGE_STOPPED')).toBe(true);
    generation.crashed = true;
    expect(coordinator.stopped).toBe(true);
    expectKalimaError(() => coordinator.begin({ participants: [A] }), 'KALIMA_ERR_BRIDGE_STOPPED');
    expectKalimaError(() => coordinator.inquire(ID), 'KALIMA_ERR_BRIDGE_STOPPED');
    await time.run();
    const callsAtCrash = world.calls.length;
    expect(world.violations).toEqual([]);
    expect(await logSize(kv)).toBe(2);

    const recovered = await open({ failpoint: undefined });
    expect(recovered.recoveredIds).toEqual([ID]);
    expect(recovered.inquire(ID)).toEqual({ state: 'committed' });
    expect(await settled(time, recovered.outcome(ID)!)).toEqual({ outcome: 'committed' });
    // Recovery asked first; a participant that answered 'committed' was not told again.
    const after = world.calls.slice(callsAtCrash);
    expect(after.filter((call) => call.call === 'inquire').length).toBe(2);
    expect(after.filter((call) => call.call === 'commit').map((call) => call.name)).toEqual(['b']);
    expect(world.state('a', ID)).toBe('committed');
    expect(world.state('b', ID)).toBe('committed');
    expect(await logSize(kv)).toBe(0);
    expect(world.violations).toEqual([]);
  });

  it('recovery aborts a transaction initiated but never decided, and re-delivers a logged abort', async () => {
    let armed = true;
    const { time, world, kv, coordinator, generation, open, events } = await setup({
      failpoint: (name) => {
        if (armed && name === 'bridge.before-commit-decision') throw new Error('crash');
      },
    });
    coordinator.begin({ id: ID, participants: [A, B] });
    await time.run();
    generation.crashed = true;
    expect(world.state('a', ID)).toBe('prepared');
    expect(world.state('b', ID)).toBe('prepared');
    armed = false;
    const recovered = await open();
    expect(recovered.inquire(ID)).toEqual({ state: 'aborted', reason: 'the coordinator restarted before deciding' });
    await settled(time, recovered.idle());
    expect(world.state('a', ID)).toBe('aborted');
    expect(world.state('b', ID)).toBe('aborted');
    expect(await logSize(kv)).toBe(0);
    expect(events.at(-1)).toEqual(['ended', { id: ID, outcome: { outcome: 'aborted', reason: 'the coordinator restarted before deciding' }, recovered: true }]);

    // A logged abort whose acks were lost is driven again.
    const third = await open({ failpoint: (name) => {
      if (name === 'bridge.after-abort-ack') throw new Error('crash');
    } });
    third.begin({ id: '44', participants: [A, simParticipant({ name: 'no', voteNo: true })] });
    await time.run();
    generation.crashed = true;
    expect(await logSize(kv)).toBe(2);
    const fourth = await open({ failpoint: undefined });
    await settled(time, fourth.idle());
    expect(world.state('a', '44')).toBe('aborted');
    expect(await logSize(kv)).toBe(0);
    expect(world.violations).toEqual([]);
  });

  it('every failpoint is reached on a commit and an abort, and each crash leaves a recoverable log', async () => {
    for (const target of BRIDGE_FAILPOINTS) {
      const { time, world, kv, coordinator, generation, open } = await setup({ failpoint: (name) => {
        if (name === target) throw new Error(`crash at ${name}`);
      } });
      const commitId = 'c0';
      const abortId = 'a0';
      coordinator.begin({ id: commitId, participants: [A, B] });
      if (!coordinator.stopped) coordinator.begin({ id: abortId, participants: [A, simParticipant({ name: 'no', voteNo: true })] });
      await time.run();
      expect(coordinator.stopped, target).toBe(true);
      generation.crashed = true;
      const recovered = await open({ failpoint: undefined });
      await settled(time, recovered.idle());
      await time.run();
      expect(await logSize(kv), target).toBe(0);
      expect(world.prepared(), target).toEqual([]);
      expect(world.violations, target).toEqual([]);
      // Whatever ran, the participants agree per transaction.
      for (const id of [commitId, abortId]) {
        const states = new Set(['a', 'b', 'no'].map((name) => world.state(name, id)).filter((state) => state !== undefined));
        expect(states.size, `${target} ${id}: ${[...states]}`).toBeLessThanOrEqual(1);
      }
    }
  });

  it('a failed log write stops the coordinator: nothing is decided on top of it', async () => {
    const { time, world, kv, coordinator } = await setup();
    kv.failing = true;
    const failure = await settled(time, coordinator.run({ id: ID, participants: [A] })).catch((error: unknown) => error);
    expect(isKalimaError(failure, 'KALIMA_ERR_BRIDGE_STOPPED')).toBe(true);
    expect(coordinator.stopped).toBe(true);
    expect(world.calls).toEqual([]);
  });

  it('group commit: concurrent transactions share synced batches', async () => {
    const { time, kv, coordinator } = await setup();
    const outcomes: Array<Promise<TxOutcome>> = [];
    for (let index = 0; index < 50; index++) outcomes.push(coordinator.run({ participants: [A, B] }));
    await settled(time, Promise.all(outcomes));
    const synced = kv.batches.filter((batch) => batch.sync).length;
    expect(synced).toBeLessThanOrEqual(4);
    expect(kv.batches.reduce((sum, batch) => sum + batch.operations.length, 0)).toBe(50 * 4);
    expect(coordinator.logStats.writes).toBe(150);
    expect(await logSize(kv)).toBe(0);
  });

  it('close stops like a crash and the log resumes on the next open', async () => {
    const { time, world, coordinator, open } = await setup();
    world.script = (_name, call) => (call === 'commit' ? { kind: 'hang' } : undefined);
    const handle = coordinator.begin({ id: ID, participants: [A] });
    await time.advance(10);
    await coordinator.close();
    await expect(handle.outcome).rejects.toMatchObject({ code: 'KALIMA_ERR_BRIDGE_STOPPED' });
    world.script = undefined;
    const next = await open();
    expect(await settled(time, next.outcome(ID)!)).toEqual({ outcome: 'committed' });
  });

  it('refuses to open on a log naming a participant kind nobody registered', async () => {
    const kv = new MemoryKvStore();
    const log = new BridgeLog(kv);
    await log.writeInitiation({ type: 'initiation', id: ID, createdMs: 1, deadlineMs: 2, participants: [{ kind: 'gone', args: new Uint8Array() }] });
    const time = new VirtualTime();
    const error = await BridgeCoordinator.open({ kv, participants: new Map(), clock: time.clock, rng: seededRng(1), scheduler: time }).catch((failure: unknown) => failure);
    expect(isKalimaError(error, 'KALIMA_ERR_BRIDGE_UNKNOWN_PARTICIPANT')).toBe(true);
  });
});

describe('bridge coordinator: participants and listeners', () => {
  it('a participant may set its own timeouts: a slow commit is not cut short and retried', async () => {
    const time = new VirtualTime();
    const calls: string[] = [];
    const registry = new Map([['slow', () => ({
      timeouts: { prepareMs: 5_000, callMs: 120_000 },
      prepare: () => new Promise<'yes'>((resolve) => time.setTimeout(() => resolve('yes'), 3_000)),
      commit: () => {
        calls.push('commit');
        return new Promise<void>((resolve) => time.setTimeout(resolve, 60_000));
      },
      abort: async () => void calls.push('abort'),
    })]]);
    const coordinator = await BridgeCoordinator.open({ kv: new MemoryKvStore(), participants: registry, clock: time.clock, rng: seededRng(2), scheduler: time, prepareTimeoutMs: 1_000, callTimeoutMs: 1_000 });
    const began = time.nowMs;
    expect(await settled(time, coordinator.run({ participants: [{ kind: 'slow', args: new Uint8Array() }] }))).toEqual({ outcome: 'committed' });
    expect(calls).toEqual(['commit']);
    expect(time.nowMs - began).toBe(63_000);
  });

  it('a listener that throws is logged and changes nothing', async () => {
    const { time, coordinator } = await setup();
    const warnings: object[] = [];
    const quiet = await BridgeCoordinator.open({
      kv: new MemoryKvStore(), participants: new SimWorld(time).registry(), clock: time.clock, rng: seededRng(3), scheduler: time,
      logger: { debug() {}, info() {}, warn: (object) => void warnings.push(object), error() {} },
    });
    quiet.on('decided', () => {
      throw new Error('listener bug');
    });
    const unsubscribe = quiet.on('ended', () => {
      throw new Error('listener bug');
    });
    expect(await settled(time, quiet.run({ participants: [A] }))).toEqual({ outcome: 'committed' });
    expect(warnings.length).toBe(2);
    unsubscribe();
    await settled(time, quiet.run({ participants: [A] }));
    expect(warnings.length).toBe(3);
    expect(coordinator.liveCount).toBe(0);
  });

  it('KALIMA_FAILPOINTS: only bridge names make a hook, and the hook fires only at the names listed', () => {
    expect(failpointsFromEnv({ KALIMA_FAILPOINTS: ' bridge.after-vote, anchor.before-broadcast ,,' })).toEqual(new Set(['bridge.after-vote', 'anchor.before-broadcast']));
    expect(failpointsFromEnv({})).toEqual(new Set());
    const logger = { debug() {}, info() {}, warn() {}, error() {} };
    expect(processFailpoints(new Set(['anchor.before-broadcast']), logger)).toBeUndefined();
    const hook = processFailpoints(new Set(['bridge.after-end']), logger);
    expect(hook).toBeTypeOf('function');
    // A name not listed passes (the listed one would end this process; the child-process test covers it).
    hook!('bridge.after-vote', 'aa');
  });
});

describe('bridge state machine', () => {
  it('ignores events that do not belong to its phase', () => {
    let { state } = start('aa', 2, 100);
    expect(step(state, { type: 'vote', index: 0, vote: 'yes' }).actions).toEqual([]);
    expect(step(state, { type: 'deadline' }).actions).toEqual([]);
    state = step(state, { type: 'initiation-written', nowMs: 0 }).state;
    state = step(state, { type: 'vote', index: 0, vote: 'yes' }).state;
    // A second vote from the same participant, an index out of range: nothing.
    expect(step(state, { type: 'vote', index: 0, vote: 'no', reason: 'x' }).actions).toEqual([]);
    expect(step(state, { type: 'vote', index: 7, vote: 'yes' }).actions).toEqual([]);
    const decided = step(state, { type: 'vote', index: 1, vote: 'yes' });
    expect(decided.actions).toEqual([{ type: 'write-decision', decision: { kind: 'commit' }, force: true }]);
    // The deadline after all yes (the commit record on its way) changes nothing.
    expect(step(decided.state, { type: 'deadline' }).actions).toEqual([]);
    const committing = step(decided.state, { type: 'decision-written' });
    expect(committing.actions.map((action) => action.type)).toEqual(['decided', 'send', 'send']);
    // A stale failure (an older attempt) does not start a second retry chain.
    expect(step(committing.state, { type: 'call-failed', index: 0, attempt: 0 }).actions).toEqual([]);
    expect(step(committing.state, { type: 'call-failed', index: 0, attempt: 1 }).actions).toEqual([{ type: 'schedule-retry', index: 0, attempt: 1 }]);
  });

  it('is deterministic: the same events give the same actions', () => {
    const run = () => {
      let { state, actions } = start('aa', 3, 100);
      const all = [...actions];
      for (const event of [
        { type: 'initiation-written', nowMs: 5 }, { type: 'vote', index: 2, vote: 'yes' }, { type: 'vote', index: 0, vote: 'yes' }, { type: 'vote', index: 1, vote: 'yes' },
        { type: 'decision-written' }, { type: 'ack', index: 1 }, { type: 'call-failed', index: 0, attempt: 1 }, { type: 'retry-due', index: 0, attempt: 1 },
        { type: 'ack', index: 0 }, { type: 'ack', index: 2 }, { type: 'end-written' },
      ] as const) {
        ({ state, actions } = step(state, event));
        all.push(...actions);
      }
      return { state, all };
    };
    expect(run()).toEqual(run());
    expect(run().state.phase).toBe('ended');
  });
});
