// The presumed-commit protocol of one transaction as a pure state machine: step(state, event)
// returns the next state and the actions the driver (coordinator.ts) performs: log writes,
// participant calls, timers and reports. Nothing here does I/O, reads a clock or draws randomness,
// so the same events always give the same actions.
//
//   initiating ──initiation-written──▶ collecting ──all yes──▶ deciding(commit) ──decision-written──▶ committing
//        │ (deadline already passed)        │ no / error / timeout / deadline                          │ every ack
//        └──────────────────────────────────┴──▶ deciding(abort) ──decision-written──▶ aborting ──every ack──▶ ending ──end-written──▶ ended
//
// Recovery starts a logged transaction in deciding(abort) (no decision in the log: presumed
// abort, since its initiation record exists), or in committing / aborting (its decision) with an
// inquiry to each participant first.

export type Decision = { readonly kind: 'commit' } | { readonly kind: 'abort'; readonly reason: string };

export type Phase = 'initiating' | 'collecting' | 'deciding' | 'committing' | 'aborting' | 'ending' | 'ended';

export type VoteState = 'pending' | 'yes' | 'no';

export interface TxState {
  readonly id: string;
  readonly participantCount: number;
  readonly deadlineMs: number;
  readonly phase: Phase;
  readonly votes: readonly VoteState[];
  readonly acks: readonly boolean[];
  /** The current commit/abort attempt per participant; only the current attempt's failure counts. */
  readonly attempts: readonly number[];
  readonly decision: Decision | undefined;
}

export type TxEvent =
  | { readonly type: 'initiation-written'; readonly nowMs: number }
  | { readonly type: 'vote'; readonly index: number; readonly vote: 'yes' }
  | { readonly type: 'vote'; readonly index: number; readonly vote: 'no'; readonly reason: string }
  | { readonly type: 'deadline' }
  | { readonly type: 'decision-written' }
  | { readonly type: 'inquired'; readonly index: number; readonly state: 'prepared' | 'committed' | 'aborted' | 'unknown' | 'failed' }
  | { readonly type: 'ack'; readonly index: number }
  | { readonly type: 'call-failed'; readonly index: number; readonly attempt: number }
  | { readonly type: 'retry-due'; readonly index: number; readonly attempt: number }
  | { readonly type: 'end-written' };

export type TxAction =
  | { readonly type: 'write-initiation' }
  | { readonly type: 'arm-deadline'; readonly atMs: number }
  | { readonly type: 'prepare'; readonly index: number }
  | { readonly type: 'write-decision'; readonly decision: Decision; readonly force: boolean }
  | { readonly type: 'decided'; readonly decision: Decision }
  | { readonly type: 'inquire'; readonly index: number }
  | { readonly type: 'send'; readonly index: number; readonly call: 'commit' | 'abort'; readonly attempt: number }
  | { readonly type: 'schedule-retry'; readonly index: number; readonly attempt: number }
  | { readonly type: 'write-end' }
  | { readonly type: 'ended'; readonly decision: Decision };

export interface Step {
  readonly state: TxState;
  readonly actions: readonly TxAction[];
}

const NONE: readonly TxAction[] = [];

function fresh(id: string, participantCount: number, deadlineMs: number, phase: Phase, decision: Decision | undefined): TxState {
  return {
    id, participantCount, deadlineMs, phase, decision,
    votes: new Array<VoteState>(participantCount).fill('pending'),
    acks: new Array<boolean>(participantCount).fill(false),
    attempts: new Array<number>(participantCount).fill(0),
  };
}

/** A new transaction: its first action is the forced initiation record. */
export function start(id: string, participantCount: number, deadlineMs: number): Step {
  return { state: fresh(id, participantCount, deadlineMs, 'initiating', undefined), actions: [{ type: 'write-initiation' }] };
}

/** A transaction found in the log after a crash. */
export function recover(id: string, participantCount: number, deadlineMs: number, logged: Decision | undefined): Step {
  if (logged === undefined) {
    // Initiated, never decided: some participants may have voted yes and wait. Presumed commit
    // does not apply here (the initiation record is the evidence); the transaction aborts.
    return decide(fresh(id, participantCount, deadlineMs, 'collecting', undefined), { kind: 'abort', reason: 'the coordinator restarted before deciding' });
  }
  const state = fresh(id, participantCount, deadlineMs, logged.kind === 'commit' ? 'committing' : 'aborting', logged);
  const actions: TxAction[] = [];
  for (let index = 0; index < participantCount; index++) actions.push({ type: 'inquire', index });
  return { state, actions };
}

function decide(state: TxState, decision: Decision): Step {
  // A commit is forced before anyone hears of it. An abort is not: if it is lost, recovery finds
  // the initiation record without a decision and aborts anyway; it is written so that the reason
  // survives a crash and for the order of the log.
  return { state: { ...state, phase: 'deciding', decision }, actions: [{ type: 'write-decision', decision, force: decision.kind === 'commit' }] };
}

function callOf(state: TxState): 'commit' | 'abort' {
  return state.decision!.kind === 'commit' ? 'commit' : 'abort';
}

function send(state: TxState, index: number): Step {
  const attempts = state.attempts.slice();
  attempts[index] = attempts[index]! + 1;
  return { state: { ...state, attempts }, actions: [{ type: 'send', index, call: callOf(state), attempt: attempts[index]! }] };
}

function acknowledge(state: TxState, index: number): Step {
  if (state.acks[index]) return { state, actions: NONE };
  const acks = state.acks.slice();
  acks[index] = true;
  if (acks.every(Boolean)) return { state: { ...state, acks, phase: 'ending' }, actions: [{ type: 'write-end' }] };
  return { state: { ...state, acks }, actions: NONE };
}

function validIndex(state: TxState, index: number): boolean {
  return Number.isInteger(index) && index >= 0 && index < state.participantCount;
}

export function step(state: TxState, event: TxEvent): Step {
  const ignore: Step = { state, actions: NONE };
  switch (event.type) {
    case 'initiation-written': {
      if (state.phase !== 'initiating') return ignore;
      const collecting: TxState = { ...state, phase: 'collecting' };
      if (event.nowMs >= state.deadlineMs) return decide(collecting, { kind: 'abort', reason: 'the decision deadline passed before the votes were asked for' });
      const actions: TxAction[] = [{ type: 'arm-deadline', atMs: state.deadlineMs }];
      for (let index = 0; index < state.participantCount; index++) actions.push({ type: 'prepare', index });
      return { state: collecting, actions };
    }
    case 'vote': {
      if (state.phase !== 'collecting' || !validIndex(state, event.index) || state.votes[event.index] !== 'pending') return ignore;
      const votes = state.votes.slice();
      votes[event.index] = event.vote;
      const next: TxState = { ...state, votes };
      if (event.vote === 'no') return decide(next, { kind: 'abort', reason: `participant ${event.index}: ${event.reason}` });
      if (votes.every((vote) => vote === 'yes')) return decide(next, { kind: 'commit' });
      return { state: next, actions: NONE };
    }
    case 'deadline':
      if (state.phase !== 'collecting') return ignore;
      return decide(state, { kind: 'abort', reason: 'the decision deadline passed before every participant voted yes' });
    case 'decision-written': {
      if (state.phase !== 'deciding') return ignore;
      const decision = state.decision!;
      let next: TxState = { ...state, phase: decision.kind === 'commit' ? 'committing' : 'aborting' };
      const actions: TxAction[] = [{ type: 'decided', decision }];
      for (let index = 0; index < state.participantCount; index++) {
        const sent = send(next, index);
        next = sent.state;
        actions.push(...sent.actions);
      }
      return { state: next, actions };
    }
    case 'inquired': {
      if ((state.phase !== 'committing' && state.phase !== 'aborting') || !validIndex(state, event.index) || state.acks[event.index] || state.attempts[event.index] !== 0) return ignore;
      // Only a definite answer skips the call. 'unknown' during an abort is not enough: a prepare
      // of the crashed coordinator may still be on its way, and the abort leaves the tombstone
      // that makes it vote no.
      const done = state.phase === 'committing' ? event.state === 'committed' : event.state === 'aborted';
      return done ? acknowledge(state, event.index) : send(state, event.index);
    }
    case 'ack':
      if ((state.phase !== 'committing' && state.phase !== 'aborting') || !validIndex(state, event.index)) return ignore;
      return acknowledge(state, event.index);
    case 'call-failed':
      if ((state.phase !== 'committing' && state.phase !== 'aborting') || !validIndex(state, event.index)) return ignore;
      if (state.acks[event.index] || event.attempt !== state.attempts[event.index]) return ignore;
      return { state, actions: [{ type: 'schedule-retry', index: event.index, attempt: event.attempt }] };
    case 'retry-due':
      if ((state.phase !== 'committing' && state.phase !== 'aborting') || !validIndex(state, event.index)) return ignore;
      if (state.acks[event.index] || event.attempt !== state.attempts[event.index]) return ignore;
      return send(state, event.index);
    case 'end-written':
      if (state.phase !== 'ending') return ignore;
      return { state: { ...state, phase: 'ended' }, actions: [{ type: 'ended', decision: state.decision! }] };
  }
}
