// What a participant of a bridge transaction implements, and how the coordinator builds one.
//
// A participant is built by a factory registered under its kind, from args the coordinator logs
// in the initiation record, so recovery after a crash builds the same participant again. Every
// method may be called more than once, concurrently with itself, and after a crash of the
// coordinator by a new coordinator; each must be idempotent:
//
//   prepare(tx)  Make the commit possible and durable, then vote 'yes' (e.g. the buyer's HTLC is
//                held; the grant can be written; the amount is locked). Vote { vote: 'no', reason }
//                if it cannot; a throw, a rejection or no answer in time counts as 'no'. Once it
//                voted 'yes' it must be able to commit until the decision deadline.
//   commit(tx)   Make the prepared effect final (settle; write the grant; pay the recipient).
//                Resolve only once it is done durably. Only ever called after every participant
//                voted 'yes'. A participant that no longer knows tx must treat it as committed
//                earlier and forgotten (the presumption of commit), and resolve.
//   abort(tx)    Undo what prepare did (cancel the invoice; release the lock). Resolve once undone.
//                May come before, during or after prepare, or without any prepare: the participant
//                must remember the abort so that a prepare arriving late votes 'no'.
//   inquire(tx)  Optional: what the participant knows of tx. Recovery uses it to skip a call
//                already acknowledged before the crash; it never decides anything.
//
// A rejected commit or abort is retried with bounded exponential backoff until it resolves.
export type PrepareVote = 'yes' | { readonly vote: 'no'; readonly reason: string };

export type ParticipantState = 'prepared' | 'committed' | 'aborted' | 'unknown';

/** What a participant is told about the transaction on every call. */
export interface BridgeTx {
  /** The transaction id (lowercase hex). */
  readonly id: string;
  /** The decision deadline, ms since the epoch: the coordinator decides before it or aborts. */
  readonly deadlineMs: number;
  /** This participant's position in the transaction's participant list. */
  readonly index: number;
}

export interface Participant {
  /**
   * The latest time (ms since the epoch) at which this participant can still commit, if it has one
   * (a held HTLC's auto-cancel). The transaction's decision deadline is the earliest of them minus
   * the coordinator's margin. Read once, at begin.
   */
  readonly deadlineMs?: number | undefined;
  /**
   * This participant's own call timeouts, when the coordinator's defaults do not fit it (a Tezos
   * commit that waits for confirmation takes minutes): `prepareMs` bounds prepare, `callMs` each
   * commit, abort or inquire attempt.
   */
  readonly timeouts?: { readonly prepareMs?: number; readonly callMs?: number } | undefined;
  prepare(tx: BridgeTx): Promise<PrepareVote>;
  commit(tx: BridgeTx): Promise<void>;
  abort(tx: BridgeTx): Promise<void>;
  inquire?(tx: BridgeTx): Promise<ParticipantState>;
}

/** Builds a participant of one kind from its logged args. May throw on args it cannot read. */
export type ParticipantFactory = (args: Uint8Array, context: { readonly txId: string; readonly index: number }) => Participant;

/** The factories by kind. */
export type ParticipantRegistry = ReadonlyMap<string, ParticipantFactory>;

/** A participant as a transaction names it (and the log keeps it): a registered kind and its args. */
export type { ParticipantSpec } from './records.ts';
