// Runs a Raft state machine against the world: ticks from the injected scheduler, messages in and
// out through a transport callback, durable state in a RaftLogStore, committed entries to an apply
// callback. The order per Ready is the one raft.ts requires: persist (synced), then send, then
// apply. One Ready is handled at a time.
import { kalimaError } from '../errors.ts';
import type { Clock, Logger, Scheduler } from '../ports.ts';
import type { RaftLogStore } from '../store/raft-log.ts';
import { decodeMessage, encodeMessage } from './codec.ts';
import { type Entry, type Message, Raft, type RaftConfig, type SnapshotMeta } from './raft.ts';

export interface RuntimeOptions {
  raft: RaftConfig;
  store: RaftLogStore;
  scheduler: Scheduler;
  logger: Logger;
  /** Milliseconds per Raft tick. */
  tickMs: number;
  /** Hands an encoded message to the link to `to`; may drop it (Raft retries). */
  send(to: string, bytes: Uint8Array): void;
  /** Called with committed entries, in order, once they are durable here. */
  apply(entries: Entry[]): void | Promise<void>;
  /**
   * The leader no longer has the entries this node needs: fetch the state machine's state at
   * `index` (blocks and state, from `from` or another peer) without installing it yet, and resolve
   * with a function that installs it. The runtime installs it between two Readys, and only if this
   * node's commit has not reached that index meanwhile. Reject to wait for the leader to ask again.
   */
  fetchSnapshot?(meta: SnapshotMeta & { from: string }, control: FetchControl): Promise<() => void | Promise<void>>;
  /**
   * Followers: checks entries a leader sends before this node accepts (and so acknowledges) them
   * (the block gate). Called in log order with the entries this node does not already hold;
   * resolves with how many of them, as a prefix, are acceptable, and why the next one is not.
   */
  admit?(entries: Entry[], sender: AppendSender): Promise<{ admitted: number; refusal?: unknown }>;
  /** Stamps when each append arrived (AppendSender.receivedAtMs); without it, the stamp is undefined. */
  clock?: Clock;
  /** A snapshot fetch that has not resolved after this long is given up (the leader asks again). */
  fetchTimeoutMs?: number;
  /**
   * The fetch itself brings the state machine forward (a catch-up that applies committed blocks as
   * they arrive), so nothing else may apply meanwhile: from its `control.pause()` (called before it
   * changes anything) until its install (or its failure) this node's Raft is paused, with no ticks
   * and incoming messages held. The fetch must settle by itself, bounding its own requests; there
   * is no fetch timeout. It may reject only while it has changed nothing.
   */
  pauseWhileFetching?: boolean;
  /** Called after a Ready in which this node stopped leading. */
  onLeadershipLost?(): void;
}

/** Who sent the entries admit() is asked about, and how they came. */
export interface AppendSender {
  /** The leader of `term`, which sent them. */
  id: string;
  term: number;
  /** The leader's commit index as the append carried it: entries at or below it were committed before they were sent (resent). */
  commit: number;
  /** When the append reached this node (before it waited for the appends ahead of it), by the runtime's clock. */
  receivedAtMs: number | undefined;
  /** This node's log holds the entry the append follows (prevLogIndex, prevLogTerm), as Raft will require. */
  follows: boolean;
}

/** What a fetch may ask of the runtime (pauseWhileFetching). */
export interface FetchControl {
  /** Pauses Raft (no ticks, messages held) once the Ready in progress is done; resolves then. */
  pause(): Promise<void>;
}

interface Waiting {
  term: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class RaftRuntime {
  readonly raft: Raft;
  private timer: unknown;
  private processing: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private failure: unknown;
  private fetching = false;
  /** A pausing fetch is under way (pauseWhileFetching): no ticks, messages held. */
  private paused = false;
  private wasLeader = false;
  /** Appends wait here, in arrival order, while their entries are checked. */
  private inbound: Promise<void> = Promise.resolve();
  /** While a snapshot is installed, messages wait here: nothing may move the commit meanwhile. */
  private held: Array<[string, Uint8Array]> | undefined;
  private fetched: { meta: SnapshotMeta; install: () => void | Promise<void> } | undefined;
  /** Proposals waiting for their commit, by index. */
  private readonly waiting = new Map<number, Waiting>();

  constructor(private readonly options: RuntimeOptions) {
    this.raft = new Raft(options.raft);
  }

  start(): void {
    const tick = (): void => {
      this.timer = this.options.scheduler.setTimeout(() => {
        if (this.stopped) return;
        if (this.paused) {
          tick();
          return;
        }
        this.raft.tick();
        this.kick();
        tick();
      }, this.options.tickMs);
    };
    tick();
  }

  /** A frame from the authenticated peer `from` (the link proved who it is). */
  receive(from: string, bytes: Uint8Array): void {
    if (this.stopped) return;
    if (this.held !== undefined) {
      this.held.push([from, bytes]);
      return;
    }
    let message: Message;
    try {
      message = decodeMessage(bytes);
    } catch (error) {
      this.options.logger.warn({ peer: from, error: String(error) }, 'raft: dropped an undecodable message');
      return;
    }
    // A peer may speak only for itself.
    if (message.from !== from) {
      this.options.logger.warn({ peer: from, claimed: message.from }, 'raft: dropped a message that claims another sender');
      return;
    }
    if (message.type === 'append' && this.options.admit !== undefined) {
      const append = message;
      const receivedAtMs = this.options.clock?.nowMs();
      this.inbound = this.inbound.then(() => this.admitThenStep(append, bytes, receivedAtMs)).catch((error: unknown) => this.fail(error, 'checking replicated entries failed'));
      return;
    }
    if (message.type === 'snapshot' && this.options.admit !== undefined) {
      // In order with the appends still being checked, which it must not overtake.
      const snapshot = message;
      this.inbound = this.inbound.then(() => {
        if (this.stopped) return;
        if (this.held !== undefined) {
          this.held.push([from, bytes]);
          return;
        }
        this.raft.step(snapshot);
        this.kick();
      });
      return;
    }
    this.raft.step(message);
    this.kick();
  }

  /** Steps an append with only the entries the gate accepts: the rest are never acknowledged. */
  private async admitThenStep(message: Extract<Message, { type: 'append' }>, bytes: Uint8Array, receivedAtMs?: number): Promise<void> {
    if (this.stopped) return;
    // The entries this node already holds (same index and term) were checked when they came.
    let held = 0;
    while (held < message.entries.length && this.raft.termAt(message.entries[held]!.index) === message.entries[held]!.term) held++;
    let accepted = message.entries.length;
    if (held < message.entries.length && message.term >= this.raft.term) {
      const follows = message.prevLogIndex === 0 || this.raft.termAt(message.prevLogIndex) === message.prevLogTerm;
      const { admitted, refusal } = await this.options.admit!(message.entries.slice(held), { id: message.from, term: message.term, commit: message.commit, receivedAtMs, follows });
      accepted = held + admitted;
      if (refusal !== undefined) this.options.logger.warn({ leader: message.from, term: message.term, index: message.entries[accepted]?.index, refusal: String((refusal as { message?: string }).message ?? refusal), details: (refusal as { details?: unknown }).details }, 'raft: refused a replicated entry');
    }
    if (this.stopped) return;
    if (this.held !== undefined) {
      // A pause (a catch-up) or an install began while the entries were checked: nothing may move
      // the commit now. The append waits with the rest, and is checked again after.
      this.held.push([message.from, bytes]);
      return;
    }
    this.raft.step(accepted === message.entries.length ? message : { ...message, entries: message.entries.slice(0, accepted) });
    this.kick();
  }

  /** Bars voter `id` from leading through term `untilTerm` (Raft.bar): a majority of the validation nodes reported it. */
  bar(id: string, untilTerm: number): boolean {
    if (this.stopped) return false;
    const changed = this.raft.bar(id, untilTerm);
    if (changed && !this.paused) this.kick();
    return changed;
  }

  /** Proposes an entry; resolves once it is committed (just before it is applied here), rejects if another replaced it. */
  propose(data: Uint8Array): Promise<number> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.stopped) return Promise.reject(kalimaError('KALIMA_ERR_NODE_STOPPING'));
    let index: number;
    try {
      index = this.raft.propose(data);
    } catch (error) {
      return Promise.reject(error);
    }
    const term = this.raft.term;
    const committed = new Promise<number>((resolve, reject) => this.waiting.set(index, { term, resolve: () => resolve(index), reject }));
    this.kick();
    return committed;
  }

  private kick(): void {
    if (this.processing !== undefined) {
      this.again = true;
      return;
    }
    this.processing = this.processAll().finally(() => {
      this.processing = undefined;
      // A kick that came after the loop's last look.
      if (this.again && !this.stopped) this.kick();
    });
  }

  private async processAll(): Promise<void> {
    do {
      this.again = false;
      if (this.stopped) return;
      if (this.fetched !== undefined) {
        const { meta, install } = this.fetched;
        this.fetched = undefined;
        // Only while this node still needs it (a follower, below that commit, without that entry):
        // applied or acknowledged entries past that index must not be undone.
        if (this.raft.needsSnapshot(meta.index, meta.term)) {
          this.held ??= [];
          try {
            await install();
          } catch (error) {
            this.held = undefined;
            this.fail(error, 'installing a snapshot failed');
            return;
          }
          this.raft.restoreSnapshot(meta.index, meta.term);
          this.resume();
        } else if (this.paused) {
          // Paused, nothing could move this node past the snapshot: something is badly wrong.
          this.fail(new Error(`a snapshot at ${meta.index} fetched while paused is no longer needed`), 'installing a snapshot failed');
          return;
        }
      }
      const ready = this.raft.ready();
      if (ready.fetchSnapshot !== undefined) this.startFetch(ready.fetchSnapshot);
      if (ready.hardState === undefined && ready.entries.length === 0 && ready.messages.length === 0 && ready.committed.length === 0 && ready.snapshot === undefined) continue;
      try {
        await this.options.store.persist(ready.hardState, ready.entries, ready.snapshot);
      } catch (error) {
        // Nothing may be sent that the disk does not hold: stop taking part.
        this.fail(error, 'the raft log could not be written');
        return;
      }
      if (this.stopped) return;
      for (const message of ready.messages) this.options.send(message.to, encodeMessage(message));
      if (ready.committed.length > 0) {
        // Proposals hear first that they committed (held by a majority, durable here): the node's
        // pipeline applies its own blocks itself, and the apply below may wait for that.
        for (const entry of ready.committed) {
          const waiter = this.waiting.get(entry.index);
          if (waiter === undefined) continue;
          this.waiting.delete(entry.index);
          if (entry.term === waiter.term) waiter.resolve();
          else waiter.reject(kalimaError('KALIMA_ERR_CONSENSUS_NOT_LEADER', { reason: 'another leader replaced the entry; retry', index: entry.index }));
        }
      }
      if (this.wasLeader && this.raft.role !== 'leader') this.options.onLeadershipLost?.();
      this.wasLeader = this.raft.role === 'leader';
      // A proposal whose index was overwritten by a later leader's shorter log never commits as is.
      if (this.raft.role !== 'leader') {
        for (const [index, waiter] of this.waiting) {
          if (index < this.raft.firstIndex()) {
            // Folded into a snapshot this node installed: committed there or replaced, nobody here knows.
            this.waiting.delete(index);
            waiter.reject(kalimaError('KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN', { index, reason: 'the entry was folded into a snapshot before this node saw it commit' }));
          } else if (this.raft.termAt(index) !== waiter.term) {
            this.waiting.delete(index);
            waiter.reject(kalimaError('KALIMA_ERR_CONSENSUS_NOT_LEADER', { reason: 'leadership changed before the entry committed; retry', index, leader: this.raft.leader ?? null }));
          } else {
            // Still in the log, but this node no longer leads: the next leader decides. Whoever
            // proposed it hears now, not whenever that happens; if it commits, it is applied as
            // anyone else's entry would be.
            this.waiting.delete(index);
            waiter.reject(kalimaError('KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN', { reason: 'this node lost its leadership before the entry committed; it may still commit', index, leader: this.raft.leader ?? null }));
          }
        }
      }
      // Applied last: the apply may wait for the node's own pipeline, which waits for the outcome
      // of its proposals (settled above).
      if (ready.committed.length > 0) {
        try {
          await this.options.apply(ready.committed);
        } catch (error) {
          // Raft counts these as applied: carrying on would skip them.
          this.fail(error, 'applying committed entries failed');
          return;
        }
      }
    } while (this.again && !this.stopped);
  }

  /** Drops applied entries up to `index` from the log (the caller's store holds their blocks). */
  compact(index: number): void {
    this.raft.compact(index);
    this.kick();
  }

  private startFetch(meta: SnapshotMeta & { from: string }): void {
    if (this.options.fetchSnapshot === undefined) {
      this.options.logger.warn({ index: meta.index, from: meta.from }, 'raft: the leader no longer holds the entries this node needs, and this node cannot fetch a snapshot');
      return;
    }
    if (this.fetching) return;
    this.fetching = true;
    let settled = false;
    const pausing = this.options.pauseWhileFetching === true;
    const control: FetchControl = {
      pause: async () => {
        if (!pausing || settled || this.stopped) return;
        this.paused = true;
        this.held ??= [];
        await this.idle();
      },
    };
    const timer = pausing ? undefined : this.options.scheduler.setTimeout(() => {
      if (settled) return;
      settled = true;
      this.fetching = false;
      this.options.logger.warn({ index: meta.index, from: meta.from }, 'raft: fetching the snapshot timed out; the leader will ask again');
    }, this.options.fetchTimeoutMs ?? 60_000);
    this.options.fetchSnapshot(meta, control).then(
      (install) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) this.options.scheduler.clearTimeout(timer);
        this.fetching = false;
        if (this.stopped) return;
        this.fetched = { meta, install };
        this.kick();
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) this.options.scheduler.clearTimeout(timer);
        this.fetching = false;
        this.options.logger.warn({ index: meta.index, from: meta.from, error: String(error) }, 'raft: fetching the snapshot failed; the leader will ask again');
        if (this.paused) this.resume();
      },
    );
  }

  /** Ends a pause (or an install's hold): the messages that waited are handled in order. */
  private resume(): void {
    this.paused = false;
    const held = this.held ?? [];
    this.held = undefined;
    for (const [from, bytes] of held) this.receive(from, bytes);
    this.kick();
  }

  /** The caller's state machine failed: this node stops taking part, as if the runtime had failed. */
  abort(error: unknown, reason: string): void {
    if (this.stopped) return;
    this.fail(error, reason);
  }

  private fail(error: unknown, reason: string): void {
    this.failure = kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason, cause: String(error) });
    this.options.logger.error({ error: String(error) }, `raft: ${reason}; this node stops taking part`);
    this.stop();
  }

  /** Whether this node has stopped taking part (stopped, or failed). */
  get isStopped(): boolean {
    return this.stopped;
  }

  /** Why it stopped, if a failure stopped it. */
  get failureReason(): unknown {
    return this.failure;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.options.scheduler.clearTimeout(this.timer);
    for (const waiter of this.waiting.values()) waiter.reject(this.failure ?? kalimaError('KALIMA_ERR_NODE_STOPPING'));
    this.waiting.clear();
  }

  /** Resolves once the Ready in progress, if any, is done. */
  async idle(): Promise<void> {
    while (this.processing !== undefined) await this.processing;
  }
}
