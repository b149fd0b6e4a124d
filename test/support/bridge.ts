// What the bridge tests and the bridge simulation share: virtual time (a clock and a scheduler
// that only move when told to) and in-process participants with their own durable state, which
// can fail, answer late or never, and record everything that was asked of them.
import type { ParticipantFactory, ParticipantRegistry, ParticipantState, PrepareVote } from '../../bridge/participant.ts';
import { ManualClock, type Rng, type Scheduler } from '../../src/ports.ts';
import { Reader, Writer } from '../../src/ledger/codec.ts';
import type { KvOperation, KvRange, KvStore } from '../../src/store/kv.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';

interface Timer {
  at: number;
  seq: number;
  callback: () => void;
  cancelled: boolean;
}

/** A clock and a scheduler on virtual time: timers run in (time, order of arming) order when `run` says. */
export class VirtualTime implements Scheduler {
  readonly clock: ManualClock;
  private queue: Timer[] = [];
  private seq = 0;

  constructor(startMs = 1_700_000_000_000) {
    this.clock = new ManualClock(startMs);
  }

  get nowMs(): number {
    return this.clock.nowMs();
  }

  setTimeout(callback: () => void, delayMs: number): unknown {
    const timer: Timer = { at: this.clock.nowMs() + Math.max(0, delayMs), seq: this.seq++, callback, cancelled: false };
    // Sorted insert: after every timer due at or before it.
    let low = 0;
    let high = this.queue.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.queue[middle]!.at <= timer.at) low = middle + 1;
      else high = middle;
    }
    this.queue.splice(low, 0, timer);
    return timer;
  }

  clearTimeout(handle: unknown): void {
    (handle as Timer).cancelled = true;
  }

  /** Timers armed and not yet run or cancelled. */
  get pending(): number {
    return this.queue.filter((timer) => !timer.cancelled).length;
  }

  /** Lets every promise chain that can move without time move. */
  async settle(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /**
   * Runs timers in order, settling between each, until `until()` holds, no timer is left, or
   * virtual time would pass `maxMs` from now. Returns whether `until()` held.
   */
  async run(until: () => boolean = () => false, maxMs = 3_600_000): Promise<boolean> {
    const limit = this.clock.nowMs() + maxMs;
    for (;;) {
      await this.settle();
      if (until()) return true;
      const next = this.queue.shift();
      if (next === undefined) return false;
      if (next.cancelled) continue;
      if (next.at > limit) {
        this.queue.unshift(next);
        return false;
      }
      if (next.at > this.clock.nowMs()) this.clock.set(next.at);
      next.callback();
    }
  }

  /** Moves time forward by `deltaMs`, running what falls due on the way. */
  async advance(deltaMs: number): Promise<void> {
    const target = this.clock.nowMs() + deltaMs;
    await this.run(() => false, deltaMs);
    if (this.clock.nowMs() < target) this.clock.set(target);
    await this.settle();
  }
}

// ---- participants ----

export interface SimArgs {
  /** The participant's name: its durable state is kept under it. */
  readonly name: string;
  /** Vote no on prepare. */
  readonly voteNo?: boolean;
  /** The participant's own deadline (a held HTLC's auto-cancel), ms since the epoch. */
  readonly deadlineMs?: number;
}

export function encodeSimArgs(args: SimArgs): Uint8Array {
  return new Writer(32).text(args.name).u8(args.voteNo ? 1 : 0).varint(args.deadlineMs ?? 0).finish();
}

export function decodeSimArgs(bytes: Uint8Array): SimArgs {
  const reader = new Reader(bytes);
  const name = reader.text(64);
  const voteNo = reader.u8() === 1;
  const deadlineMs = reader.varint();
  reader.end();
  return { name, voteNo, ...(deadlineMs > 0 ? { deadlineMs } : {}) };
}

export type SimCall = 'prepare' | 'commit' | 'abort' | 'inquire';

/**
 * How a call behaves: `normal`, `fail-before` (rejects, nothing done), `fail-after` (done, then the
 * answer is lost: rejects), `hang` (nothing done, never answers), each after `delayMs` of virtual time.
 */
export type SimBehaviour = { kind: 'normal' | 'fail-before' | 'fail-after' | 'hang'; delayMs?: number };

export interface SimFaults {
  failBefore: number;
  failAfter: number;
  hang: number;
  /** Delays are uniform in [0, maxDelayMs]; with probability `slow`, in [0, slowDelayMs]. */
  maxDelayMs: number;
  slow: number;
  slowDelayMs: number;
}

export const NO_FAULTS: SimFaults = { failBefore: 0, failAfter: 0, hang: 0, maxDelayMs: 0, slow: 0, slowDelayMs: 0 };

export interface CallRecord {
  readonly generation: number;
  readonly name: string;
  readonly call: SimCall;
  readonly txId: string;
  readonly atMs: number;
}

/** What a coordinator instance's participants see of it: once it crashed, they report any call it makes. */
export interface Generation {
  readonly number: number;
  crashed: boolean;
}

type TxParticipantState = 'prepared' | 'committed' | 'aborted';

/** In-process participants with durable state (it survives the coordinator's crashes), for tests. */
export class SimWorld {
  /** By participant name, then tx id. */
  readonly states = new Map<string, Map<string, TxParticipantState>>();
  /** The votes given, by tx id then participant name. */
  readonly votes = new Map<string, Map<string, 'yes' | 'no'>>();
  readonly calls: CallRecord[] = [];
  readonly violations: string[] = [];
  faults: SimFaults = NO_FAULTS;
  /** A per-call override, checked before the random faults. */
  script: ((name: string, call: SimCall, txId: string, attempt: number) => SimBehaviour | undefined) | undefined;

  constructor(private readonly time: VirtualTime, private readonly rng?: Rng) {}

  state(name: string, txId: string): TxParticipantState | undefined {
    return this.states.get(name)?.get(txId);
  }

  callsOf(name: string, call: SimCall, txId?: string): CallRecord[] {
    return this.calls.filter((record) => record.name === name && record.call === call && (txId === undefined || record.txId === txId));
  }

  /** Every (name, tx) still prepared. */
  prepared(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const [name, byTx] of this.states) for (const [txId, state] of byTx) if (state === 'prepared') out.push([name, txId]);
    return out;
  }

  registry(generation: Generation = { number: 0, crashed: false }): ParticipantRegistry {
    const factory: ParticipantFactory = (bytes) => {
      const args = decodeSimArgs(bytes);
      return {
        deadlineMs: args.deadlineMs,
        prepare: (tx) => this.perform(generation, args, 'prepare', tx.id, () => this.prepare(args, tx.id)),
        commit: (tx) => this.perform(generation, args, 'commit', tx.id, () => this.commit(args, tx.id)),
        abort: (tx) => this.perform(generation, args, 'abort', tx.id, () => this.abort(args, tx.id)),
        inquire: (tx) => this.perform(generation, args, 'inquire', tx.id, () => this.inquire(args, tx.id)),
      };
    };
    return new Map([['sim', factory]]);
  }

  private uniform(): number {
    if (this.rng === undefined) return 0;
    const [a, b, c] = this.rng.bytes(3);
    return ((a! << 16) | (b! << 8) | c!) / 0x1000000;
  }

  private behaviour(name: string, call: SimCall, txId: string): SimBehaviour {
    const attempt = this.callsOf(name, call, txId).length;
    const scripted = this.script?.(name, call, txId, attempt);
    if (scripted !== undefined) return scripted;
    const { failBefore, failAfter, hang, maxDelayMs, slow, slowDelayMs } = this.faults;
    const delayMs = Math.floor(this.uniform() * (this.uniform() < slow ? slowDelayMs : maxDelayMs));
    const draw = this.uniform();
    if (draw < failBefore) return { kind: 'fail-before', delayMs };
    if (draw < failBefore + failAfter) return { kind: 'fail-after', delayMs };
    if (draw < failBefore + failAfter + hang) return { kind: 'hang', delayMs };
    return { kind: 'normal', delayMs };
  }

  private perform<T>(generation: Generation, args: SimArgs, call: SimCall, txId: string, effect: () => T): Promise<T> {
    if (generation.crashed) this.violations.push(`coordinator generation ${generation.number} called ${call} on ${args.name} for ${txId} after it crashed`);
    const behaviour = this.behaviour(args.name, call, txId);
    this.calls.push({ generation: generation.number, name: args.name, call, txId, atMs: this.time.nowMs });
    return new Promise<T>((resolve, reject) => {
      const act = (): void => {
        switch (behaviour.kind) {
          case 'hang':
            return;
          case 'fail-before':
            reject(new Error(`${args.name}: ${call} failed before doing anything`));
            return;
          case 'fail-after':
            effect();
            reject(new Error(`${args.name}: ${call} was done, then its answer was lost`));
            return;
          case 'normal':
            try {
              resolve(effect());
            } catch (error) {
              reject(error);
            }
        }
      };
      if ((behaviour.delayMs ?? 0) > 0) this.time.setTimeout(act, behaviour.delayMs!);
      else void Promise.resolve().then(act);
    });
  }

  private table(name: string): Map<string, TxParticipantState> {
    let table = this.states.get(name);
    if (table === undefined) this.states.set(name, (table = new Map()));
    return table;
  }

  private recordVote(name: string, txId: string, vote: 'yes' | 'no'): void {
    let byName = this.votes.get(txId);
    if (byName === undefined) this.votes.set(txId, (byName = new Map()));
    byName.set(name, vote);
  }

  private prepare(args: SimArgs, txId: string): PrepareVote {
    const table = this.table(args.name);
    const state = table.get(txId);
    if (state === 'aborted') return { vote: 'no', reason: 'already aborted' };
    if (state === 'committed') return 'yes';
    if (args.voteNo) {
      table.set(txId, 'aborted');
      this.recordVote(args.name, txId, 'no');
      return { vote: 'no', reason: `${args.name} refuses` };
    }
    if (args.deadlineMs !== undefined && this.time.nowMs >= args.deadlineMs) {
      table.set(txId, 'aborted');
      this.recordVote(args.name, txId, 'no');
      return { vote: 'no', reason: `${args.name}: past its own deadline` };
    }
    table.set(txId, 'prepared');
    this.recordVote(args.name, txId, 'yes');
    return 'yes';
  }

  private commit(args: SimArgs, txId: string): void {
    const table = this.table(args.name);
    const state = table.get(txId);
    if (state === 'committed') return;
    if (state !== 'prepared') {
      this.violations.push(`${args.name} was told to commit ${txId} in state ${state ?? 'unknown'}`);
      return;
    }
    table.set(txId, 'committed');
  }

  private abort(args: SimArgs, txId: string): void {
    const table = this.table(args.name);
    const state = table.get(txId);
    if (state === 'committed') {
      this.violations.push(`${args.name} was told to abort ${txId} after it committed`);
      return;
    }
    // Remembered even without a prepare: a prepare arriving late then votes no.
    table.set(txId, 'aborted');
  }

  private inquire(args: SimArgs, txId: string): ParticipantState {
    return this.state(args.name, txId) ?? 'unknown';
  }
}

/** A participant spec of the sim kind. */
export function simParticipant(args: SimArgs): { kind: string; args: Uint8Array } {
  return { kind: 'sim', args: encodeSimArgs(args) };
}

// ---- a store that can lose power ----

/**
 * A KvStore with LevelDB's durability on a machine that loses power: a batch written without
 * `sync` is visible at once but durable only once a later synced batch lands (LevelDB's log is
 * sequential, so a sync makes everything before it durable). `powerLoss(keep)` throws away every
 * unsynced batch but the first `keep`: a suffix of the writes is lost, never a middle.
 * A process crash without power loss loses nothing that reached `batch`.
 */
export class PowerLossKv implements KvStore {
  private visible = new MemoryKvStore();
  private readonly durable = new MemoryKvStore();
  private unsynced: KvOperation[][] = [];

  get unsyncedBatches(): number {
    return this.unsynced.length;
  }

  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.visible.get(key);
  }

  async batch(operations: KvOperation[], options: { sync: boolean }): Promise<void> {
    const copy = operations.map((operation) => (operation.type === 'put' ? { ...operation, key: operation.key.slice(), value: operation.value.slice() } : { ...operation, key: operation.key.slice() }));
    await this.visible.batch(copy);
    if (!options.sync) {
      this.unsynced.push(copy);
      return;
    }
    for (const pending of this.unsynced) await this.durable.batch(pending);
    this.unsynced = [];
    await this.durable.batch(copy);
  }

  entries(range: KvRange): AsyncIterable<[Uint8Array, Uint8Array]> {
    return this.visible.entries(range);
  }

  async close(): Promise<void> {}

  /** The machine lost power: what is visible becomes what was durable plus the first `keep` unsynced batches. */
  async powerLoss(keep: number): Promise<void> {
    const kept = this.unsynced.slice(0, Math.max(0, keep));
    for (const pending of kept) await this.durable.batch(pending);
    this.unsynced = [];
    this.visible = new MemoryKvStore();
    const all: KvOperation[] = [];
    for await (const [key, value] of this.durable.entries({})) all.push({ type: 'put', key, value });
    await this.visible.batch(all);
  }
}
