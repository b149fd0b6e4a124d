// The presumed-commit two-phase-commit coordinator: the driver around the pure state machine of
// machine.ts. It performs the machine's actions (log writes through BridgeLog, participant calls
// with timeouts, timers on the injected Scheduler) and feeds their results back as events.
//
// Protocol (DEVELOPERS.md, "Bridge (presumed commit)"):
//   1. force-write the initiation record (participants as kind + args, the decision deadline);
//   2. ask every participant to prepare, in parallel, each with a timeout; a no, an error, a
//      timeout or the deadline aborts;
//   3. all yes: force-write the commit decision, then commit every participant until each acks;
//   4. abort: write the abort decision (not forced), then abort every participant until each acks;
//   5. every ack: remove the transaction's records (not forced);
//   6. on open, recovery: initiated without a decision → abort; a decision → drive it again.
// An inquiry about a transaction the coordinator does not know is answered "committed".
//
// Failpoints (failpoints.ts) sit between every two steps. When the hook throws, or the log fails,
// the coordinator stops dead: a latch makes every pending continuation, timer and write of this
// instance do nothing more, as if the process had been killed.
import { isKalimaError, kalimaError } from '../src/errors.ts';
import type { Clock, Logger, Rng, Scheduler } from '../src/ports.ts';
import { silentLogger } from '../src/ports.ts';
import type { KvStore } from '../src/store/kv.ts';
import type { BridgeFailpoint, FailpointHook } from './failpoints.ts';
import { BridgeLog } from './log.ts';
import { type Decision, type TxAction, type TxEvent, type TxState, recover, start, step } from './machine.ts';
import type { BridgeTx, Participant, ParticipantRegistry, PrepareVote } from './participant.ts';
import {
  DEFAULT_KEY_PREFIX, MAX_ARGS_BYTES, MAX_KIND_BYTES, MAX_PARTICIPANTS, MAX_REASON_BYTES, type ParticipantSpec, TX_ID_PATTERN, clipText, encodeRecord,
} from './records.ts';

export interface CoordinatorOptions {
  /** The log's store: its own LevelDB (LevelKvStore) in production, MemoryKvStore in simulation. Not closed by the coordinator. */
  readonly kv: KvStore;
  /** The participant factories by kind; recovery builds logged participants through them. */
  readonly participants: ParticipantRegistry;
  readonly clock: Clock;
  readonly rng: Rng;
  readonly scheduler: Scheduler;
  readonly logger?: Logger;
  /** Called between every two steps; a throw stops this coordinator as a crash would. */
  readonly failpoint?: FailpointHook;
  /** Key prefix of the log's records (default `bridge/`). */
  readonly keyPrefix?: Uint8Array;
  /** How long a participant has to vote (default 10 s). */
  readonly prepareTimeoutMs?: number;
  /** How long a commit, abort or inquire call may take before it counts as failed (default 10 s). */
  readonly callTimeoutMs?: number;
  /** Retry backoff of commit and abort: doubles from the first delay up to the cap, with jitter (defaults 200 ms, 10 s). */
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  /** Subtracted from the earliest participant deadline to get the decision deadline (default 5 s). */
  readonly deadlineMarginMs?: number;
  /** The decision deadline when neither the request nor a participant gives one: now + this (default 60 s). */
  readonly defaultDeadlineMs?: number;
  /** Live transactions at most, recovered ones included; begin beyond it is KALIMA_ERR_BRIDGE_OVERLOADED (default 10,000). */
  readonly maxLive?: number;
}

export interface BeginRequest {
  /** Lowercase hex, 1 to 64 bytes (e.g. a payment hash); drawn from the Rng (16 bytes) when absent. */
  readonly id?: string;
  readonly participants: readonly ParticipantSpec[];
  /** The latest decision time the caller accepts; the participants' own deadlines minus the margin may make it earlier. */
  readonly deadlineMs?: number;
}

export type TxOutcome = { readonly outcome: 'committed' } | { readonly outcome: 'aborted'; readonly reason: string };

export interface BridgeEvent {
  readonly id: string;
  readonly outcome: TxOutcome;
  /** True for a transaction this coordinator found in the log at open. */
  readonly recovered: boolean;
}

/** What the coordinator answers a participant that asks about a transaction. */
export type InquiryAnswer = { readonly state: 'undecided' } | { readonly state: 'committed' } | { readonly state: 'aborted'; readonly reason: string };

export interface BeginHandle {
  readonly id: string;
  /** Resolves once the transaction is decided, every participant acknowledged and its records are removed. Rejects with KALIMA_ERR_BRIDGE_STOPPED if the coordinator stops first. */
  readonly outcome: Promise<TxOutcome>;
}

interface Live {
  state: TxState;
  readonly participants: readonly Participant[];
  readonly recovered: boolean;
  /** The encoded initiation record, for a transaction begun here. */
  readonly initiation: Uint8Array | undefined;
  readonly timers: Set<unknown>;
  readonly outcome: Promise<TxOutcome>;
  readonly resolve: (outcome: TxOutcome) => void;
  readonly reject: (error: unknown) => void;
}

type Listener = (event: BridgeEvent) => void;

const DEFAULTS = {
  prepareTimeoutMs: 10_000, callTimeoutMs: 10_000, retryInitialMs: 200, retryMaxMs: 10_000, deadlineMarginMs: 5_000, defaultDeadlineMs: 60_000, maxLive: 10_000,
};

function outcomeOf(decision: Decision): TxOutcome {
  return decision.kind === 'commit' ? { outcome: 'committed' } : { outcome: 'aborted', reason: decision.reason };
}

function describe(error: unknown): string {
  if (isKalimaError(error)) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return error.message;
  return String(error);
}

function normaliseVote(vote: unknown): PrepareVote {
  if (vote === 'yes') return 'yes';
  if (typeof vote === 'object' && vote !== null && (vote as { vote?: unknown }).vote === 'no') {
    const reason = (vote as { reason?: unknown }).reason;
    return { vote: 'no', reason: typeof reason === 'string' && reason.length > 0 ? reason : 'no reason given' };
  }
  return { vote: 'no', reason: 'the participant answered something other than a vote' };
}

export class BridgeCoordinator {
  private readonly live = new Map<string, Live>();
  private readonly listeners = { decided: new Set<Listener>(), ended: new Set<Listener>() };
  private readonly idleWaiters: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];
  private readonly log: BridgeLog;
  private readonly logger: Logger;
  private readonly settings: typeof DEFAULTS;
  private stoppedReason: string | undefined;

  private constructor(private readonly options: CoordinatorOptions) {
    this.log = new BridgeLog(options.kv, options.keyPrefix ?? DEFAULT_KEY_PREFIX);
    this.logger = options.logger ?? silentLogger;
    this.settings = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS) as Array<keyof typeof DEFAULTS>) {
      const value = options[key];
      if (value === undefined) continue;
      if (!Number.isSafeInteger(value) || value < (key === 'deadlineMarginMs' ? 0 : 1)) throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { option: key, value });
      this.settings[key] = value;
    }
  }

  /**
   * Opens the coordinator on its log and starts recovery: every logged transaction is driven to
   * its end again (aborted if it was never decided). Resolves once recovery has started; the
   * recovered transactions end on their own (`outcome(id)`, `idle()`, the 'ended' event).
   * Rejects with KALIMA_ERR_BRIDGE_BAD_RECORD on a log it cannot read, and with
   * KALIMA_ERR_BRIDGE_UNKNOWN_PARTICIPANT if a logged kind has no factory.
   */
  static async open(options: CoordinatorOptions): Promise<BridgeCoordinator> {
    const coordinator = new BridgeCoordinator(options);
    await coordinator.recoverAll();
    return coordinator;
  }

  /** Ids of the transactions recovery found in the log at open. */
  readonly recoveredIds: string[] = [];

  /** Whether this coordinator stopped (closed, crashed at a failpoint, or its log failed). */
  get stopped(): boolean {
    return this.stoppedReason !== undefined;
  }

  /** Live transactions (begun or recovered, not ended). */
  get liveCount(): number {
    return this.live.size;
  }

  /** Log batch counters: how well group commit shares syncs. */
  get logStats(): { readonly batches: number; readonly syncedBatches: number; readonly writes: number } {
    return this.log.stats;
  }

  /**
   * Starts a transaction. Throws (and changes nothing) KALIMA_ERR_BRIDGE_BAD_REQUEST,
   * KALIMA_ERR_BRIDGE_UNKNOWN_PARTICIPANT, KALIMA_ERR_BRIDGE_DUPLICATE_TX (the id is live),
   * KALIMA_ERR_BRIDGE_DEADLINE_PASSED, KALIMA_ERR_BRIDGE_OVERLOADED or KALIMA_ERR_BRIDGE_STOPPED.
   */
  begin(request: BeginRequest): BeginHandle {
    this.throwIfStopped();
    const { participants: specs } = request;
    if (!Array.isArray(specs) || specs.length < 1 || specs.length > MAX_PARTICIPANTS) {
      throw kalimaError('KALIMA_ERR_BRIDGE_BAD_REQUEST', { reason: `1 to ${MAX_PARTICIPANTS} participants`, count: Array.isArray(specs) ? specs.length : undefined });
    }
    const id = request.id ?? Buffer.from(this.options.rng.bytes(16)).toString('hex');
    if (typeof id !== 'string' || !TX_ID_PATTERN.test(id)) throw kalimaError('KALIMA_ERR_BRIDGE_BAD_REQUEST', { reason: 'the id must be 2 to 128 lowercase hex digits', id });
    if (this.live.has(id)) throw kalimaError('KALIMA_ERR_BRIDGE_DUPLICATE_TX', { id });
    if (this.live.size >= this.settings.maxLive) throw kalimaError('KALIMA_ERR_BRIDGE_OVERLOADED', { live: this.live.size });
    for (const [index, spec] of specs.entries()) {
      if (typeof spec?.kind !== 'string' || spec.kind.length === 0 || Buffer.byteLength(spec.kind, 'utf8') > MAX_KIND_BYTES) {
        throw kalimaError('KALIMA_ERR_BRIDGE_BAD_REQUEST', { reason: `a participant kind is 1 to ${MAX_KIND_BYTES} bytes`, index });
      }
      if (!(spec.args instanceof Uint8Array) || spec.args.length > MAX_ARGS_BYTES) {
        throw kalimaError('KALIMA_ERR_BRIDGE_BAD_REQUEST', { reason: `participant args are bytes, at most ${MAX_ARGS_BYTES}`, index });
      }
    }
    const participants = this.build(id, specs, 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
    const nowMs = this.options.clock.nowMs();
    let deadlineMs = request.deadlineMs ?? nowMs + this.settings.defaultDeadlineMs;
    for (const participant of participants) {
      if (participant.deadlineMs !== undefined) deadlineMs = Math.min(deadlineMs, participant.deadlineMs - this.settings.deadlineMarginMs);
    }
    if (!Number.isFinite(deadlineMs)) throw kalimaError('KALIMA_ERR_BRIDGE_BAD_REQUEST', { reason: 'the deadline is not a number of ms', id });
    deadlineMs = Math.floor(deadlineMs);
    if (deadlineMs <= nowMs) throw kalimaError('KALIMA_ERR_BRIDGE_DEADLINE_PASSED', { id, deadlineMs, nowMs });
    if (!Number.isSafeInteger(deadlineMs)) throw kalimaError('KALIMA_ERR_BRIDGE_BAD_REQUEST', { reason: 'the deadline is beyond 2^53 ms', id });

    // Encoded here, so that a request the log cannot hold is refused before anything changes.
    const initiation = encodeRecord({ type: 'initiation', id, createdMs: nowMs, deadlineMs, participants: specs });
    const first = start(id, participants.length, deadlineMs);
    const live = this.track(id, first.state, participants, false, initiation);
    this.perform(live, first.actions);
    return { id, outcome: live.outcome };
  }

  /** begin, then its outcome; begin's errors come as a rejection. */
  async run(request: BeginRequest): Promise<TxOutcome> {
    return this.begin(request).outcome;
  }

  /** The outcome of a live transaction (begun or recovered), or undefined if it is not live. */
  outcome(id: string): Promise<TxOutcome> | undefined {
    return this.live.get(id)?.outcome;
  }

  /**
   * The answer to a participant in doubt. Unknown → committed (the presumption: a transaction ends
   * only once every participant acknowledged, and an aborted one is known until then). Throws
   * KALIMA_ERR_BRIDGE_STOPPED on a stopped coordinator: it no longer knows what is live.
   */
  inquire(id: string): InquiryAnswer {
    this.throwIfStopped();
    if (typeof id !== 'string' || !TX_ID_PATTERN.test(id)) throw kalimaError('KALIMA_ERR_BRIDGE_BAD_REQUEST', { reason: 'the id must be 2 to 128 lowercase hex digits', id });
    const live = this.live.get(id);
    if (live === undefined) return { state: 'committed' };
    const { phase, decision } = live.state;
    // An abort decided in memory is final even before its record lands (recovery aborts without
    // it); a commit is only once its record is on disk.
    if (decision?.kind === 'abort') return { state: 'aborted', reason: decision.reason };
    if (decision?.kind === 'commit' && phase !== 'deciding') return { state: 'committed' };
    return { state: 'undecided' };
  }

  /** Subscribes to 'decided' (the decision is in the log) or 'ended' (every ack; records removed). Returns the unsubscribe. */
  on(event: 'decided' | 'ended', listener: Listener): () => void {
    this.listeners[event].add(listener);
    return () => void this.listeners[event].delete(listener);
  }

  /** Resolves once no transaction is live; rejects with KALIMA_ERR_BRIDGE_STOPPED if the coordinator stops first. */
  idle(): Promise<void> {
    if (this.stoppedReason !== undefined) return Promise.reject(kalimaError('KALIMA_ERR_BRIDGE_STOPPED', { reason: this.stoppedReason }));
    if (this.live.size === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.idleWaiters.push({ resolve, reject }));
  }

  /**
   * Stops dead, as a killed process would: no timer fires, no call is made, no write is queued,
   * and no continuation of this instance does anything after this. Pending outcomes reject with
   * KALIMA_ERR_BRIDGE_STOPPED. The log keeps what reached it; the next open recovers from it.
   */
  crash(reason = 'crashed'): void {
    this.halt(reason);
  }

  /** Stops like `crash` and waits for a log batch already handed to the store. Live transactions end on the next open. */
  async close(): Promise<void> {
    this.halt('closed');
    await this.log.settled();
  }

  // ---- the driver ----

  private async recoverAll(): Promise<void> {
    const logged = await this.log.load();
    for (const { initiation, decision } of logged) {
      const participants = this.build(initiation.id, initiation.participants, 'KALIMA_ERR_BRIDGE_BAD_RECORD');
      const first = recover(initiation.id, participants.length, initiation.deadlineMs,
        decision === undefined ? undefined : decision.outcome === 'commit' ? { kind: 'commit' } : { kind: 'abort', reason: decision.reason });
      const live = this.track(initiation.id, first.state, participants, true);
      this.recoveredIds.push(initiation.id);
      this.logger.info({ id: initiation.id, decision: decision?.outcome ?? 'none' }, 'bridge: recovering a transaction');
      this.perform(live, first.actions);
    }
  }

  private build(id: string, specs: readonly ParticipantSpec[], badArgsCode: 'KALIMA_ERR_BRIDGE_BAD_REQUEST' | 'KALIMA_ERR_BRIDGE_BAD_RECORD'): Participant[] {
    return specs.map((spec, index) => {
      const factory = this.options.participants.get(spec.kind);
      if (factory === undefined) throw kalimaError('KALIMA_ERR_BRIDGE_UNKNOWN_PARTICIPANT', { id, kind: spec.kind, index });
      try {
        return factory(spec.args, { txId: id, index });
      } catch (error) {
        throw kalimaError(badArgsCode, { reason: 'the participant factory refused its args', id, kind: spec.kind, index, cause: describe(error) });
      }
    });
  }

  private track(id: string, state: TxState, participants: readonly Participant[], recovered: boolean, initiation?: Uint8Array): Live {
    let resolve!: (outcome: TxOutcome) => void;
    let reject!: (error: unknown) => void;
    const outcome = new Promise<TxOutcome>((yes, no) => {
      resolve = yes;
      reject = no;
    });
    // A caller that drops the handle must not turn a stop into an unhandled rejection.
    outcome.catch(() => {});
    const live: Live = { state, participants, recovered, initiation, timers: new Set(), outcome, resolve, reject };
    this.live.set(id, live);
    return live;
  }

  private throwIfStopped(): void {
    if (this.stoppedReason !== undefined) throw kalimaError('KALIMA_ERR_BRIDGE_STOPPED', { reason: this.stoppedReason });
  }

  private halt(reason: string): void {
    if (this.stoppedReason !== undefined) return;
    this.stoppedReason = reason;
    this.log.halt(reason);
    const error = kalimaError('KALIMA_ERR_BRIDGE_STOPPED', { reason });
    for (const live of this.live.values()) {
      for (const timer of live.timers) this.options.scheduler.clearTimeout(timer);
      live.timers.clear();
      live.reject(error);
    }
    this.live.clear();
    for (const waiter of this.idleWaiters.splice(0)) waiter.reject(error);
  }

  /** Runs the failpoint `name`; false (and stopped) if this coordinator is, or just got, stopped. */
  private hit(name: BridgeFailpoint, id: string): boolean {
    if (this.stoppedReason !== undefined) return false;
    if (this.options.failpoint === undefined) return true;
    try {
      this.options.failpoint(name, id);
      return true;
    } catch {
      this.halt(`failpoint ${name}`);
      return false;
    }
  }

  private dispatch(live: Live, event: TxEvent): void {
    if (this.stoppedReason !== undefined) return;
    const next = step(live.state, event);
    live.state = next.state;
    this.perform(live, next.actions);
  }

  /** A log write's failure stops the coordinator: nothing may be decided on top of a write whose fate is unknown. */
  private logFailed(error: unknown): void {
    if (this.stoppedReason !== undefined) return;
    this.logger.error({ error: describe(error) }, 'bridge: the log write failed; the coordinator stops');
    this.halt(`the log write failed: ${describe(error)}`);
  }

  private perform(live: Live, actions: readonly TxAction[]): void {
    const { id } = live.state;
    for (const action of actions) {
      if (this.stoppedReason !== undefined) return;
      switch (action.type) {
        case 'write-initiation': {
          if (!this.hit('bridge.before-initiation', id)) return;
          this.log.writeInitiation(id, live.initiation!).then(() => {
            if (!this.hit('bridge.after-initiation', id)) return;
            this.dispatch(live, { type: 'initiation-written', nowMs: this.options.clock.nowMs() });
          }, (error) => this.logFailed(error));
          break;
        }
        case 'arm-deadline':
          this.timer(live, Math.max(0, action.atMs - this.options.clock.nowMs()), () => this.dispatch(live, { type: 'deadline' }));
          break;
        case 'prepare': {
          const { index } = action;
          this.call(live, index, (participant, tx) => participant.prepare(tx), this.timeoutOf(live, index, 'prepareMs'), 'prepare').then((vote) => {
            if (!this.hit('bridge.after-vote', id)) return;
            const normal = normaliseVote(vote);
            this.dispatch(live, normal === 'yes' ? { type: 'vote', index, vote: 'yes' } : { type: 'vote', index, vote: 'no', reason: clipText(normal.reason, MAX_REASON_BYTES / 2) });
          }, (error) => {
            if (!this.hit('bridge.after-vote', id)) return;
            this.dispatch(live, { type: 'vote', index, vote: 'no', reason: clipText(describe(error), MAX_REASON_BYTES / 2) });
          });
          break;
        }
        case 'write-decision': {
          const { decision, force } = action;
          const commit = decision.kind === 'commit';
          if (!this.hit(commit ? 'bridge.before-commit-decision' : 'bridge.before-abort-decision', id)) return;
          const decidedMs = this.options.clock.nowMs();
          const record = commit ? { type: 'decision' as const, id, outcome: 'commit' as const, decidedMs } : { type: 'decision' as const, id, outcome: 'abort' as const, reason: decision.reason, decidedMs };
          this.log.writeDecision(record, force).then(() => {
            if (!this.hit(commit ? 'bridge.after-commit-decision' : 'bridge.after-abort-decision', id)) return;
            this.dispatch(live, { type: 'decision-written' });
          }, (error) => this.logFailed(error));
          break;
        }
        case 'decided':
          if (action.decision.kind === 'abort') this.logger.info({ id, reason: action.decision.reason }, 'bridge: aborting');
          this.emit('decided', { id, outcome: outcomeOf(action.decision), recovered: live.recovered });
          break;
        case 'inquire': {
          const { index } = action;
          const inquire = live.participants[index]!.inquire;
          if (inquire === undefined) {
            void Promise.resolve().then(() => this.dispatch(live, { type: 'inquired', index, state: 'failed' }));
            break;
          }
          this.call(live, index, (participant, tx) => participant.inquire!(tx), this.timeoutOf(live, index, 'callMs'), 'inquire').then(
            (state) => this.dispatch(live, { type: 'inquired', index, state: state === 'prepared' || state === 'committed' || state === 'aborted' ? state : 'unknown' }),
            () => this.dispatch(live, { type: 'inquired', index, state: 'failed' }),
          );
          break;
        }
        case 'send': {
          const { index, call, attempt } = action;
          this.call(live, index, (participant, tx) => (call === 'commit' ? participant.commit(tx) : participant.abort(tx)), this.timeoutOf(live, index, 'callMs'), call).then(() => {
            if (!this.hit(call === 'commit' ? 'bridge.after-commit-ack' : 'bridge.after-abort-ack', id)) return;
            this.dispatch(live, { type: 'ack', index });
          }, (error) => {
            if (this.stoppedReason !== undefined) return;
            const log = attempt >= 4 && (attempt & (attempt - 1)) === 0 ? this.logger.warn : this.logger.debug;
            log.call(this.logger, { id, index, call, attempt, error: describe(error) }, 'bridge: a participant call failed; it is retried');
            this.dispatch(live, { type: 'call-failed', index, attempt });
          });
          break;
        }
        case 'schedule-retry':
          this.timer(live, this.backoff(action.attempt), () => this.dispatch(live, { type: 'retry-due', index: action.index, attempt: action.attempt }));
          break;
        case 'write-end':
          if (!this.hit('bridge.before-end', id)) return;
          this.log.writeEnd(id).then(() => {
            if (!this.hit('bridge.after-end', id)) return;
            this.dispatch(live, { type: 'end-written' });
          }, (error) => this.logFailed(error));
          break;
        case 'ended': {
          for (const timer of live.timers) this.options.scheduler.clearTimeout(timer);
          live.timers.clear();
          this.live.delete(id);
          const outcome = outcomeOf(action.decision);
          live.resolve(outcome);
          this.emit('ended', { id, outcome, recovered: live.recovered });
          if (this.live.size === 0) for (const waiter of this.idleWaiters.splice(0)) waiter.resolve();
          break;
        }
      }
    }
  }

  private timeoutOf(live: Live, index: number, which: 'prepareMs' | 'callMs'): number {
    const own = live.participants[index]!.timeouts?.[which];
    if (own !== undefined && Number.isFinite(own) && own > 0) return own;
    return which === 'prepareMs' ? this.settings.prepareTimeoutMs : this.settings.callTimeoutMs;
  }

  private timer(live: Live, delayMs: number, run: () => void): void {
    const handle = this.options.scheduler.setTimeout(() => {
      live.timers.delete(handle);
      if (this.stoppedReason === undefined) run();
    }, delayMs);
    live.timers.add(handle);
  }

  /** Calls a participant with a timeout; settles once, and never after this coordinator stopped. */
  private call<T>(live: Live, index: number, run: (participant: Participant, tx: BridgeTx) => Promise<T>, timeoutMs: number, what: string): Promise<T> {
    const tx: BridgeTx = { id: live.state.id, deadlineMs: live.state.deadlineMs, index };
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const handle = this.options.scheduler.setTimeout(() => {
        live.timers.delete(handle);
        if (settled || this.stoppedReason !== undefined) return;
        settled = true;
        reject(new Error(`${what} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      live.timers.add(handle);
      const finish = (): boolean => {
        if (settled || this.stoppedReason !== undefined) return false;
        settled = true;
        this.options.scheduler.clearTimeout(handle);
        live.timers.delete(handle);
        return true;
      };
      let pending: Promise<T>;
      try {
        pending = Promise.resolve(run(live.participants[index]!, tx));
      } catch (error) {
        pending = Promise.reject(error);
      }
      pending.then((value) => finish() && resolve(value), (error: unknown) => finish() && reject(error));
    });
  }

  private backoff(attempt: number): number {
    const { retryInitialMs, retryMaxMs } = this.settings;
    const base = Math.min(retryMaxMs, retryInitialMs * 2 ** Math.min(attempt - 1, 30));
    const [high, low] = this.options.rng.bytes(2);
    const jitter = ((high! << 8) | low!) / 0xffff;
    return Math.max(1, Math.round(base / 2 + (base / 2) * jitter));
  }

  private emit(event: 'decided' | 'ended', payload: BridgeEvent): void {
    for (const listener of this.listeners[event]) {
      try {
        listener(payload);
      } catch (error) {
        this.logger.warn({ event, id: payload.id, error: describe(error) }, 'bridge: a listener threw');
      }
    }
  }
}
