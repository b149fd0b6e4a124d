// Raft (Ongaro and Ousterhout, "In Search of an Understandable Consensus Algorithm", extended
// version; pre-vote and check-quorum from Ongaro's thesis, section 9.6) as a deterministic state
// machine in the manner of etcd's raft: the caller feeds it ticks and messages, and collects what
// to persist, what to send and what is committed. It keeps no timers, reads no clock, draws its
// randomness from an injected Rng, and does no I/O, so a seeded simulation can run it.
//
// The contract, per `ready()` (which hands each thing out once): persist `snapshot`, `hardState` and
// `entries` (entries replace the log from their first index on) durably, then send `messages`,
// then apply `committed` in order. A vote or an acknowledgement that went out before its state was
// durable could elect two leaders in one term or lose a committed entry after a crash. The caller's
// state machine keeps its own durable applied index and passes it back at a restart (`applied`), so
// entries committed but not yet applied when the process died are handed out again.
//
// One log entry is one block (opaque bytes here). A new leader appends an empty entry of its own
// term, since entries of earlier terms are committed only through one of the current term.
// Learners (Kalima's validation nodes) receive the log but neither vote nor count for a quorum.
import { assert, kalimaError } from '../errors.ts';
import type { Rng } from '../ports.ts';
import { ENTRIES_PER_MESSAGE_MAX, ENTRY_BYTES_MAX } from './codec.ts';

const ENTRY_HEADER_BYTES_MAX = 19;
const MESSAGE_HEADER_BYTES_MAX = 320;
/** A Raft message on a link (net/link.ts carries 65,534 bytes a frame; net/rpc.ts adds a channel byte). */
const FRAME_BYTES_MAX = 65_533;

export type NodeId = string;

export interface Entry {
  index: number;
  term: number;
  /** A block's bytes; empty for the entry a new leader appends. */
  data: Uint8Array;
}

export interface HardState {
  term: number;
  /** Whom this node voted for in `term`, if anyone. */
  vote: NodeId | undefined;
  commit: number;
}

/** Where the log starts: every entry up to `index` (of `term`) is folded into the state machine. */
export interface SnapshotMeta {
  index: number;
  term: number;
}

export type Message =
  | { type: 'preVote' | 'vote'; from: NodeId; to: NodeId; term: number; lastLogIndex: number; lastLogTerm: number }
  | { type: 'preVoteResponse' | 'voteResponse'; from: NodeId; to: NodeId; term: number; granted: boolean }
  | { type: 'append'; from: NodeId; to: NodeId; term: number; prevLogIndex: number; prevLogTerm: number; entries: Entry[]; commit: number }
  /**
   * A member that started empty asks the others for their terms before it takes part at all; an
   * answer carries the answerer's term and changes nothing there.
   */
  | { type: 'termProbe' | 'termProbeResponse'; from: NodeId; to: NodeId; term: number }
  /** The leader no longer holds the entries this follower needs: it is to fetch the state at `index`. */
  | { type: 'snapshot'; from: NodeId; to: NodeId; term: number; index: number; snapshotTerm: number }
  | {
    type: 'appendResponse'; from: NodeId; to: NodeId; term: number; success: boolean;
    /** On success, the last index now known to match; on a refusal, where the leader should try next. */
    index: number;
  };

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export interface Ready {
  hardState: HardState | undefined;
  /** To persist before anything is sent; they replace the log from entries[0].index on. */
  entries: Entry[];
  messages: Message[];
  /** Newly committed entries, in order, to apply once the above is durable. */
  committed: Entry[];
  /**
   * The log's new start, to persist with the rest: entries up to `index` are dropped (all of them
   * with `discardLog`, after a restored snapshot).
   */
  snapshot: (SnapshotMeta & { discardLog: boolean }) | undefined;
  /**
   * The leader compacted past this node's log: fetch the state machine's state at `index` (from
   * `from` or any peer that has it), install it, then call restoreSnapshot(index, term).
   */
  fetchSnapshot: (SnapshotMeta & { from: NodeId }) | undefined;
}

export interface RaftConfig {
  id: NodeId;
  /** Every voting member, this node included if it votes. */
  voters: readonly NodeId[];
  /** Non-voting members that receive the log. */
  learners?: readonly NodeId[];
  /** A follower that hears no leader for electionTicks (plus a random part of as much again) stands. */
  electionTicks: number;
  heartbeatTicks: number;
  /** The most entries in one append message. */
  maxEntriesPerAppend?: number;
  /** The most entry bytes in one append message (it always carries at least one entry): it must fit a link frame. */
  maxBytesPerAppend?: number;
  rng: Rng;
  /** What the store holds after a restart: where the log starts, the hard state, the entries after it. */
  snapshot?: SnapshotMeta;
  hardState?: HardState;
  log?: readonly Entry[];
  /**
   * The last index the caller's state machine applied durably, and that entry's term (default: the
   * snapshot's). A state machine ahead of the stored commit (it installed a snapshot and the process
   * died before the log's new start was persisted) is taken as a snapshot at that point.
   */
  applied?: number;
  appliedTerm?: number;
  /**
   * The store held nothing at all. With `newMember` (a member of a new chain, as `kalima init`
   * made it), nothing changes. Without it, the node may have lost its disk: it may have acknowledged
   * entries a majority needs, and voted in the current term. It then neither votes nor stands until
   * it has caught up to the commit index of the first leader it hears, and after that votes only in
   * terms above those it saw meanwhile: it cannot help elect a leader that lacks committed entries,
   * nor vote twice in a term it forgot.
   */
  empty?: boolean;
  newMember?: boolean;
}

const NONE = undefined;
/** Election timeouts without a leader after which every bar lapses (see bar()). */
const BAR_LAPSE_ELECTIONS = 4;

export class Raft {
  readonly id: NodeId;
  role: Role = 'follower';
  term = 0;
  vote: NodeId | undefined = NONE;
  leader: NodeId | undefined = NONE;
  commit = 0;
  /** Entries snapshotIndex+1 .. lastIndex(); log[i - snapshotIndex - 1] has index i. */
  private readonly log: Entry[] = [];
  private snapshotIndex = 0;
  private snapshotTerm = 0;
  readonly voters: ReadonlySet<NodeId>;
  private readonly learners: ReadonlySet<NodeId>;
  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly maxEntriesPerAppend: number;
  private readonly maxBytesPerAppend: number;
  private readonly rng: Rng;

  private ticksSinceHeard = 0;
  private randomizedElectionTicks = 0;
  /**
   * A member that may have lost its disk (config.empty, not newMember), until it has caught up: the
   * highest term it saw, the terms the other voters told it (until a quorum of them did), and the
   * commit it must reach.
   */
  private rejoin: { maxTerm: number; probed: Map<NodeId, number> | undefined; target: number | undefined; ticks: number } | undefined;
  /** Votes are granted only in terms above this (set when a rejoining member has caught up). */
  private voteFloor = 0;
  /** Voters barred from leading (validation nodes reported them), each through the term given. */
  private readonly barred = new Map<NodeId, number>();
  /** Ticks since this node last heard a leader's append or snapshot (or led): what lets bars lapse. */
  private ticksWithoutLeader = 0;
  private ticksSinceHeartbeat = 0;
  /** Votes (or pre-votes) received in this election, by voter. */
  private votes = new Map<NodeId, boolean>();
  /** Leader only: per peer, the next index to send and the highest index known to match. */
  private next = new Map<NodeId, number>();
  private match = new Map<NodeId, number>();
  /** Leader only: its own tick count, and the tick at which it last heard from each peer. */
  private leaderTicks = 0;
  private lastHeard = new Map<NodeId, number>();

  // What ready() hands out.
  private outbox: Message[] = [];
  private unstableFrom: number | undefined;
  private applied: number;
  private hardStateDirty = false;
  private snapshotChanged: (SnapshotMeta & { discardLog: boolean }) | undefined;
  private fetching: (SnapshotMeta & { from: NodeId }) | undefined;
  /** A new snapshot request that the next Ready hands out. */
  private fetchRequested = false;

  constructor(config: RaftConfig) {
    this.id = config.id;
    if (config.empty === true && config.newMember !== true) this.rejoin = { maxTerm: 0, probed: new Map(), target: undefined, ticks: 0 };
    this.voters = new Set(config.voters);
    this.learners = new Set(config.learners ?? []);
    assert(this.voters.size > 0, 'raft: a cluster needs at least one voter');
    for (const learner of this.learners) assert(!this.voters.has(learner), `raft: ${learner} is both a voter and a learner`);
    assert(config.electionTicks > config.heartbeatTicks && config.heartbeatTicks > 0, 'raft: electionTicks must exceed heartbeatTicks, which must be positive');
    this.electionTicks = config.electionTicks;
    this.heartbeatTicks = config.heartbeatTicks;
    this.maxEntriesPerAppend = config.maxEntriesPerAppend ?? 64;
    this.maxBytesPerAppend = config.maxBytesPerAppend ?? 48 * 1024;
    // An append must fit one link frame and the codec's bounds, with its largest entry and the
    // per-entry header (index, term, length: at most 8 + 8 + 3 bytes) on top of the budget.
    assert(Number.isInteger(this.maxEntriesPerAppend) && this.maxEntriesPerAppend >= 1 && this.maxEntriesPerAppend <= ENTRIES_PER_MESSAGE_MAX, `raft: maxEntriesPerAppend must be 1 to ${ENTRIES_PER_MESSAGE_MAX}`);
    assert(this.maxBytesPerAppend >= 1 && Math.max(this.maxBytesPerAppend, ENTRY_BYTES_MAX) + this.maxEntriesPerAppend * ENTRY_HEADER_BYTES_MAX + MESSAGE_HEADER_BYTES_MAX <= FRAME_BYTES_MAX, 'raft: maxBytesPerAppend and maxEntriesPerAppend make appends larger than a link frame');
    this.rng = config.rng;
    if (config.snapshot !== undefined) {
      this.snapshotIndex = config.snapshot.index;
      this.snapshotTerm = config.snapshot.term;
    }
    for (const [position, entry] of (config.log ?? []).entries()) {
      assert(entry.index === this.snapshotIndex + position + 1, `raft: the stored log has index ${entry.index} at position ${this.snapshotIndex + position + 1}`);
      assert(entry.term >= (position === 0 ? this.snapshotTerm : this.log[position - 1]!.term), 'raft: the stored log has decreasing terms');
      this.log.push(entry);
    }
    if (config.hardState !== undefined) {
      this.term = config.hardState.term;
      this.vote = config.hardState.vote;
      this.commit = Math.min(config.hardState.commit, this.lastIndex());
    }
    // Entries folded into a snapshot were committed and applied.
    this.commit = Math.max(this.commit, this.snapshotIndex);
    const applied = config.applied ?? this.snapshotIndex;
    if (applied < this.snapshotIndex) {
      throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { what: 'raft log', reason: 'the state machine is behind the start of the raft log: the entries between are gone; restore the node from a peer', applied, logStart: this.snapshotIndex + 1 });
    }
    if (applied > this.commit) {
      // Only a snapshot installed just before a crash puts the state machine ahead of the commit.
      if (config.appliedTerm === undefined) throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { what: 'raft log', reason: 'the state machine is ahead of the raft commit and its term is unknown', applied, commit: this.commit });
      if (this.termAt(applied) === config.appliedTerm) {
        this.log.splice(0, applied - this.snapshotIndex);
      } else {
        this.log.length = 0;
      }
      this.snapshotIndex = applied;
      this.snapshotTerm = config.appliedTerm;
      this.commit = applied;
      this.hardStateDirty = true;
      this.snapshotChanged = { index: applied, term: config.appliedTerm, discardLog: this.log.length === 0 };
    }
    // Committed entries beyond what the state machine applied are handed out again.
    this.applied = Math.max(applied, this.snapshotIndex);
    this.resetElectionTimer();
  }

  // ---- queries ----

  lastIndex(): number {
    return this.snapshotIndex + this.log.length;
  }

  /** The first index this node still holds the entry of. */
  firstIndex(): number {
    return this.snapshotIndex + 1;
  }

  lastTerm(): number {
    return this.termAt(this.lastIndex());
  }

  /** The term of the entry at `index`; -1 if this node does not hold it (compacted away or beyond). */
  termAt(index: number): number {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex) return -1;
    return this.log[index - this.snapshotIndex - 1]?.term ?? -1;
  }

  entries(from: number, to = this.lastIndex()): Entry[] {
    assert(from > this.snapshotIndex, `raft: entries from ${from} are compacted (the log starts after ${this.snapshotIndex})`);
    return this.log.slice(from - this.snapshotIndex - 1, Math.max(0, to - this.snapshotIndex));
  }

  /**
   * Drops the entries up to `index` from memory and the store: the caller's state machine holds
   * them (its blocks and state). Only applied entries may go.
   */
  compact(index: number): void {
    if (index <= this.snapshotIndex) return;
    assert(index <= this.applied, `raft: cannot compact to ${index}, beyond what was applied (${this.applied})`);
    this.snapshotTerm = this.termAt(index);
    this.log.splice(0, index - this.snapshotIndex);
    this.snapshotIndex = index;
    this.snapshotChanged = { index, term: this.snapshotTerm, discardLog: false };
  }

  /**
   * The caller installed the state machine's state at (index, term), as a snapshot request asked:
   * the log restarts after it, and the leader hears that this node holds everything up to it.
   */
  restoreSnapshot(index: number, term: number): boolean {
    const pending = this.fetching;
    // Only the snapshot this follower asked for and still needs: not on a leader, not once the
    // commit passed it, and not once this node holds that very entry (its entries after it may have
    // been acknowledged: discarding them could lose a committed entry; it catches up normally).
    if (!this.needsSnapshot(index, term)) return false;
    this.fetching = undefined;
    this.log.length = 0;
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.commit = index;
    this.applied = index;
    this.hardStateDirty = true;
    this.snapshotChanged = { index, term, discardLog: true };
    this.checkRejoined();
    const leader = this.leader ?? pending?.from;
    if (leader !== undefined) this.send({ type: 'appendResponse', from: this.id, to: leader, term: this.term, success: true, index });
    return true;
  }

  /** Whether installing the state at (index, term) is still wanted; ask before installing it. */
  needsSnapshot(index: number, term: number): boolean {
    const pending = this.fetching;
    return this.role === 'follower' && pending !== undefined && pending.index === index && pending.term === term && index > this.commit && this.termAt(index) !== term;
  }

  /** Commit moved: a snapshot request that it passed is void (the entries came another way). */
  private setCommit(commit: number): void {
    this.commit = commit;
    this.hardStateDirty = true;
    this.checkRejoined();
    if (this.fetching !== undefined && this.fetching.index <= commit) {
      this.fetching = undefined;
      this.fetchRequested = false;
    }
  }

  isVoter(id: NodeId = this.id): boolean {
    return this.voters.has(id);
  }

  private quorum(): number {
    return Math.floor(this.voters.size / 2) + 1;
  }

  private peers(): NodeId[] {
    return [...this.voters, ...this.learners].filter((id) => id !== this.id);
  }

  // ---- inputs ----

  /** One tick of logical time. */
  tick(): void {
    if (this.role === 'leader') this.ticksWithoutLeader = 0;
    else this.ticksWithoutLeader++;
    // Bars only choose who may lead; should they ever leave no one able to (a master down, the
    // others barred or behind), a long enough time without any leader lifts them all. Standing
    // and voting do not count as hearing a leader.
    if (this.barred.size > 0 && this.ticksWithoutLeader >= BAR_LAPSE_ELECTIONS * this.electionTicks) this.barred.clear();
    if (this.role === 'leader') {
      this.ticksSinceHeartbeat++;
      this.leaderTicks++;
      // Check-quorum: a leader that has not heard from a majority within an election timeout may
      // be on the wrong side of a partition; it steps down rather than hold clients waiting for
      // commits that cannot happen (and the others may elect a leader meanwhile).
      let active = this.isVoter() ? 1 : 0;
      for (const voter of this.voters) {
        if (voter !== this.id && this.leaderTicks - (this.lastHeard.get(voter) ?? 0) < this.electionTicks) active++;
      }
      if (active < this.quorum()) {
        this.becomeFollower(this.term, NONE);
        return;
      }
      if (this.ticksSinceHeartbeat >= this.heartbeatTicks) {
        this.ticksSinceHeartbeat = 0;
        for (const peer of this.peers()) this.sendAppend(peer, true);
      }
      return;
    }
    this.ticksSinceHeard++;
    // A rejoining member first asks the others for their terms, again every heartbeat until enough answered.
    if (this.rejoin?.probed !== undefined && this.rejoin.ticks++ % this.heartbeatTicks === 0) {
      for (const voter of this.voters) if (voter !== this.id && !this.rejoin.probed.has(voter)) this.send({ type: 'termProbe', from: this.id, to: voter, term: this.term });
    }
    // A rejoining member does not stand before it has caught up.
    if (this.ticksSinceHeard >= this.randomizedElectionTicks && this.isVoter() && this.rejoin === undefined && !this.isBarred(this.id, this.term + 1)) this.startPreVote();
  }

  /**
   * Bars voter `id` from leading through term `untilTerm` (a majority of the validation nodes
   * reported it). A barred leader steps down; a follower stops taking its appends, and grants it no
   * vote until the bar is over. Only who may lead changes, never what is committed. At most as
   * many voters are barred at once as may fail (voters − quorum); the bar nearest its end makes
   * room. Returns false when nothing changed.
   */
  bar(id: NodeId, untilTerm: number): boolean {
    if (!this.voters.has(id)) return false;
    for (const [other, until] of this.barred) if (until < this.term) this.barred.delete(other);
    if ((this.barred.get(id) ?? -1) >= untilTerm || untilTerm < this.term) return false;
    const room = this.voters.size - this.quorum();
    if (room === 0) return false;
    if (!this.barred.has(id) && this.barred.size >= room) {
      const [soonest] = [...this.barred.entries()].sort((a, b) => a[1] - b[1])[0]!;
      this.barred.delete(soonest);
    }
    this.barred.set(id, untilTerm);
    if (id === this.id && this.role === 'leader') this.becomeFollower(this.term, NONE);
    else if (id === this.leader) {
      // Its lease ends here: this node may stand, or grant another's pre-vote, once its election timer runs out.
      this.leader = NONE;
    }
    return true;
  }

  /** Whether `id` is barred from leading in `term`. */
  isBarred(id: NodeId, term: number): boolean {
    const until = this.barred.get(id);
    return until !== undefined && term <= until;
  }

  /** The barred voters and the last term of each one's bar. */
  get bars(): ReadonlyMap<NodeId, number> {
    return this.barred;
  }

  /** Whether this node may vote in `term` (a rejoining member may not yet, see config.empty). */
  private mayVoteIn(term: number): boolean {
    return this.rejoin === undefined && term > this.voteFloor;
  }

  /** Whether this node is a member that started empty and has not yet caught up (it neither votes nor stands). */
  get rejoining(): boolean {
    return this.rejoin !== undefined;
  }

  /**
   * Another voter's term, for a rejoining member: once a quorum of the others answered (a quorum
   * counted without this node, so it meets every majority that committed anything), it takes the
   * highest, and from then on hears only leaders of that term or later, which hold every committed
   * entry.
   */
  private takeProbeResponse(from: NodeId, term: number): void {
    const probed = this.rejoin?.probed;
    if (probed === undefined || !this.voters.has(from) || from === this.id) return;
    probed.set(from, term);
    if (probed.size < this.quorum()) return;
    const highest = Math.max(...probed.values());
    this.rejoin!.probed = undefined;
    if (highest > this.term) this.becomeFollower(highest, NONE);
  }

  /** A rejoining member whose commit reached the first leader's is a full member again. */
  private checkRejoined(): void {
    if (this.rejoin === undefined || this.rejoin.target === undefined || this.commit < this.rejoin.target) return;
    this.voteFloor = Math.max(this.rejoin.maxTerm, this.term);
    this.rejoin = undefined;
  }

  /** Appends a block to the log; only the leader takes proposals. Returns the entry's index. */
  propose(data: Uint8Array): number {
    if (this.role !== 'leader') throw kalimaError('KALIMA_ERR_CONSENSUS_NOT_LEADER', { leader: this.leader ?? null, term: this.term });
    if (data.length > ENTRY_BYTES_MAX) throw kalimaError('KALIMA_ERR_CONSENSUS_ENTRY_TOO_LARGE', { bytes: data.length, max: ENTRY_BYTES_MAX });
    const entry: Entry = { index: this.lastIndex() + 1, term: this.term, data };
    this.appendLocal([entry]);
    for (const peer of this.peers()) this.sendAppend(peer, false);
    this.maybeCommit();
    return entry.index;
  }

  step(message: Message): void {
    if (message.to !== this.id) return;
    const known = this.voters.has(message.from) || this.learners.has(message.from);
    if (!known) return;
    // The terms someone may have voted in: a pre-vote's (and a pre-vote grant's) term is only the
    // one its candidate would stand for, and counting it would refuse that very term for ever.
    const prospective = message.type === 'preVote' || (message.type === 'preVoteResponse' && message.granted);
    if (this.rejoin !== undefined && !prospective) this.rejoin.maxTerm = Math.max(this.rejoin.maxTerm, message.term);
    if (message.type === 'termProbe') {
      this.send({ type: 'termProbeResponse', from: this.id, to: message.from, term: this.term });
      return;
    }
    if (message.type === 'termProbeResponse') {
      this.takeProbeResponse(message.from, message.term);
      return;
    }
    // Until a quorum of the others has told it their terms, a rejoining member takes nothing from a
    // leader: a deposed leader of an older term (stalled, say) must not count it towards a commit.
    if (this.rejoin?.probed !== undefined && (message.type === 'append' || message.type === 'snapshot')) return;
    // Nothing is taken from a barred leader (it was told to step down).
    if ((message.type === 'append' || message.type === 'snapshot') && this.isBarred(message.from, message.term)) return;
    if ((message.type === 'append' || message.type === 'snapshot') && message.term >= this.term) this.ticksWithoutLeader = 0;

    if (message.term > this.term) {
      const inLease = this.leader !== NONE && this.ticksSinceHeard < this.electionTicks;
      if (message.type === 'preVote') {
        // A pre-vote never changes a term. It is granted only if this node has no live leader
        // and the candidate's log is at least as up to date.
        const granted = !inLease && this.role !== 'leader' && this.mayVoteIn(message.term) && !this.isBarred(message.from, message.term) && this.upToDate(message.lastLogIndex, message.lastLogTerm);
        // A grant carries the term asked for; a refusal carries this node's own term, which tells
        // a pre-candidate from a higher term that it is behind.
        this.send({ type: 'preVoteResponse', from: this.id, to: message.from, term: granted ? message.term : this.term, granted });
        return;
      }
      if (message.type === 'vote' && (inLease || this.role === 'leader')) {
        // Check-quorum's other half: while a leader is live here, a higher-term vote request is
        // ignored, so a node that was partitioned away cannot depose it on its return.
        return;
      }
      if (message.type === 'preVoteResponse' && message.granted) {
        // A grant at the term this pre-candidate asked for: counted, no term change.
        if (this.role === 'preCandidate' && message.term === this.term + 1) this.countVote(message.from, true, true);
        return;
      } else {
        this.becomeFollower(message.term, message.type === 'append' || message.type === 'snapshot' ? message.from : NONE);
      }
    } else if (message.term < this.term) {
      // A stale leader or candidate: tell it the term, so it steps down. (Pre-votes at a lower
      // term are refused the same way.)
      if (message.type === 'append' || message.type === 'snapshot') this.send({ type: 'appendResponse', from: this.id, to: message.from, term: this.term, success: false, index: this.lastIndex() + 1 });
      else if (message.type === 'preVote') this.send({ type: 'preVoteResponse', from: this.id, to: message.from, term: this.term, granted: false });
      else if (message.type === 'vote') this.send({ type: 'voteResponse', from: this.id, to: message.from, term: this.term, granted: false });
      return;
    }

    switch (message.type) {
      case 'preVote': {
        // Same term as ours: only a candidate of this very term asks that, and pre-votes ask for
        // term + 1; refuse.
        this.send({ type: 'preVoteResponse', from: this.id, to: message.from, term: this.term, granted: false });
        return;
      }
      case 'vote': {
        const canVote = this.vote === message.from || (this.vote === NONE && this.leader === NONE);
        const granted = canVote && this.mayVoteIn(message.term) && !this.isBarred(message.from, message.term) && this.upToDate(message.lastLogIndex, message.lastLogTerm);
        if (granted) {
          this.vote = message.from;
          this.hardStateDirty = true;
          this.ticksSinceHeard = 0;
        }
        this.send({ type: 'voteResponse', from: this.id, to: message.from, term: this.term, granted });
        return;
      }
      case 'preVoteResponse':
        // Grants come at the term asked for (term + 1, counted above); one at this term belongs to
        // an earlier round. A refusal at this term counts.
        if (this.role === 'preCandidate' && !message.granted) this.countVote(message.from, false, true);
        return;
      case 'voteResponse':
        if (this.role === 'candidate') this.countVote(message.from, message.granted, false);
        return;
      case 'append':
        this.handleAppend(message);
        return;
      case 'snapshot':
        this.handleSnapshot(message);
        return;
      case 'appendResponse':
        if (this.role === 'leader') this.handleAppendResponse(message);
        return;
    }
  }

  /** What to persist, send and apply since the last call; call advance() once it is done. */
  ready(): Ready {
    const entries = this.unstableFrom === undefined || this.unstableFrom > this.lastIndex() ? [] : this.entries(Math.max(this.unstableFrom, this.firstIndex()));
    const committed = this.commit > this.applied ? this.entries(this.applied + 1, this.commit) : [];
    const ready: Ready = {
      hardState: this.hardStateDirty ? { term: this.term, vote: this.vote, commit: this.commit } : undefined,
      entries,
      messages: this.outbox,
      committed,
      snapshot: this.snapshotChanged,
      fetchSnapshot: this.fetchRequested ? this.fetching : undefined,
    };
    this.fetchRequested = false;
    this.outbox = [];
    this.unstableFrom = undefined;
    this.hardStateDirty = false;
    this.snapshotChanged = undefined;
    this.applied = this.commit;
    return ready;
  }

  // ---- elections ----

  private resetElectionTimer(): void {
    this.ticksSinceHeard = 0;
    const random = this.rng.bytes(4);
    const draw = ((random[0]! << 24) | (random[1]! << 16) | (random[2]! << 8) | random[3]!) >>> 0;
    this.randomizedElectionTicks = this.electionTicks + (draw % this.electionTicks);
  }

  private upToDate(lastLogIndex: number, lastLogTerm: number): boolean {
    return lastLogTerm > this.lastTerm() || (lastLogTerm === this.lastTerm() && lastLogIndex >= this.lastIndex());
  }

  private startPreVote(): void {
    this.role = 'preCandidate';
    this.leader = NONE;
    this.votes = new Map();
    this.resetElectionTimer();
    this.countVote(this.id, true, true);
    if (this.role !== 'preCandidate') return; // a cluster of one
    for (const voter of this.voters) {
      if (voter !== this.id) this.send({ type: 'preVote', from: this.id, to: voter, term: this.term + 1, lastLogIndex: this.lastIndex(), lastLogTerm: this.lastTerm() });
    }
  }

  private startElection(): void {
    this.role = 'candidate';
    // Above any term a rejoined member may have voted in before it lost its disk (voteFloor).
    this.term = Math.max(this.term, this.voteFloor) + 1;
    this.vote = this.id;
    this.leader = NONE;
    this.hardStateDirty = true;
    this.votes = new Map();
    this.resetElectionTimer();
    this.countVote(this.id, true, false);
    if (this.role !== 'candidate') return;
    for (const voter of this.voters) {
      if (voter !== this.id) this.send({ type: 'vote', from: this.id, to: voter, term: this.term, lastLogIndex: this.lastIndex(), lastLogTerm: this.lastTerm() });
    }
  }

  private countVote(from: NodeId, granted: boolean, preVote: boolean): void {
    if (!this.voters.has(from)) return;
    this.votes.set(from, granted);
    let yes = 0;
    let no = 0;
    for (const vote of this.votes.values()) {
      if (vote) yes++;
      else no++;
    }
    if (yes >= this.quorum()) {
      if (preVote) this.startElection();
      else this.becomeLeader();
    } else if (no >= this.quorum()) {
      this.becomeFollower(this.term, NONE);
    }
  }

  private becomeFollower(term: number, leader: NodeId | undefined): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = NONE;
      this.hardStateDirty = true;
    }
    this.role = 'follower';
    this.leader = leader;
    this.resetElectionTimer();
  }

  private becomeLeader(): void {
    this.role = 'leader';
    this.ticksWithoutLeader = 0;
    this.fetching = undefined;
    this.fetchRequested = false;
    this.leader = this.id;
    this.next = new Map();
    this.match = new Map();
    for (const peer of this.peers()) {
      this.next.set(peer, this.lastIndex() + 1);
      this.match.set(peer, 0);
    }
    // Each peer has a full election timeout to be heard from.
    this.leaderTicks = 0;
    this.lastHeard = new Map(this.peers().map((peer) => [peer, 0]));
    this.ticksSinceHeartbeat = 0;
    // The entry that lets earlier terms' entries commit (section 5.4.2).
    this.appendLocal([{ index: this.lastIndex() + 1, term: this.term, data: new Uint8Array(0) }]);
    for (const peer of this.peers()) this.sendAppend(peer, false);
    this.maybeCommit();
  }

  // ---- replication ----

  private appendLocal(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    assert(first <= this.lastIndex() + 1, 'raft: an append leaves a gap');
    assert(first > this.commit, 'raft: an append would replace a committed entry');
    this.log.length = first - this.snapshotIndex - 1;
    this.log.push(...entries);
    this.unstableFrom = this.unstableFrom === undefined ? first : Math.min(this.unstableFrom, first);
  }

  private sendAppend(peer: NodeId, heartbeat: boolean): void {
    const next = this.next.get(peer) ?? this.lastIndex() + 1;
    if (next <= this.snapshotIndex) {
      // What the peer needs next is folded into the snapshot: it must fetch the state instead.
      this.send({ type: 'snapshot', from: this.id, to: peer, term: this.term, index: this.snapshotIndex, snapshotTerm: this.snapshotTerm });
      return;
    }
    const entries = this.entries(next, Math.min(this.lastIndex(), next + this.maxEntriesPerAppend - 1));
    // Within the byte budget, and never empty if there is anything to send.
    let bytes = 0;
    for (let position = 0; position < entries.length; position++) {
      bytes += entries[position]!.data.length + ENTRY_HEADER_BYTES_MAX;
      if (position > 0 && bytes > this.maxBytesPerAppend) {
        entries.length = position;
        break;
      }
    }
    if (!heartbeat && entries.length === 0) return;
    const prevLogIndex = next - 1;
    // The follower applies the commit only as far as the entries it has checked against this log.
    this.send({ type: 'append', from: this.id, to: peer, term: this.term, prevLogIndex, prevLogTerm: this.termAt(prevLogIndex), entries, commit: this.commit });
    // Optimistic pipelining: the next append carries what follows. A loss shows as a refusal
    // (a gap), which moves `next` back to the follower's hint.
    if (entries.length > 0) this.next.set(peer, entries[entries.length - 1]!.index + 1);
  }

  private handleAppend(message: Extract<Message, { type: 'append' }>): void {
    // Equal term: this is the term's leader.
    if (this.role !== 'follower' || this.leader !== message.from) this.becomeFollower(this.term, message.from);
    this.ticksSinceHeard = 0;
    const reply = (success: boolean, index: number): void => this.send({ type: 'appendResponse', from: this.id, to: message.from, term: this.term, success, index });

    // A rejoining member must reach what the first leader it hears has committed.
    if (this.rejoin !== undefined && this.rejoin.probed === undefined && this.rejoin.target === undefined) {
      this.rejoin.target = message.commit;
      this.checkRejoined();
    }
    let { prevLogIndex, prevLogTerm, entries } = message;
    if (prevLogIndex < this.commit) {
      // Entries up to this.commit are committed here, so they match the leader's: start after them.
      if (prevLogIndex + entries.length <= this.commit) {
        reply(true, this.commit);
        return;
      }
      entries = entries.slice(this.commit - prevLogIndex);
      prevLogIndex = this.commit;
      prevLogTerm = this.termAt(this.commit);
    }
    if (this.termAt(prevLogIndex) !== prevLogTerm) {
      // A gap or a conflict. Hint: the first index of the conflicting term (or just past our log),
      // so the leader skips a whole term per round trip instead of one entry.
      if (prevLogIndex > this.lastIndex()) {
        reply(false, this.lastIndex() + 1);
        return;
      }
      const conflictTerm = this.termAt(prevLogIndex);
      let hint = prevLogIndex;
      while (hint - 1 > this.commit && this.termAt(hint - 1) === conflictTerm) hint--;
      reply(false, hint);
      return;
    }
    // Skip the entries already held; replace from the first one that differs.
    let position = 0;
    while (position < entries.length) {
      const entry = entries[position]!;
      if (entry.index > this.lastIndex() || this.termAt(entry.index) !== entry.term) break;
      position++;
    }
    if (position < entries.length) this.appendLocal(entries.slice(position));
    const lastNew = prevLogIndex + entries.length;
    const commit = Math.min(message.commit, lastNew);
    if (commit > this.commit) this.setCommit(commit);
    reply(true, lastNew);
  }

  private handleSnapshot(message: Extract<Message, { type: 'snapshot' }>): void {
    if (this.role !== 'follower' || this.leader !== message.from) this.becomeFollower(this.term, message.from);
    this.ticksSinceHeard = 0;
    if (message.index <= this.commit) {
      this.send({ type: 'appendResponse', from: this.id, to: message.from, term: this.term, success: true, index: this.commit });
      return;
    }
    if (this.termAt(message.index) === message.snapshotTerm) {
      // This node holds that entry: by log matching everything before it matches too, and the
      // leader compacts only what is committed.
      this.setCommit(message.index);
      this.send({ type: 'appendResponse', from: this.id, to: message.from, term: this.term, success: true, index: message.index });
      return;
    }
    // Asked again with every snapshot message while the state has not arrived: the caller runs one
    // fetch at a time, and a failed one is retried at the leader's heartbeat pace.
    if (this.fetching === undefined || this.fetching.index <= message.index) this.fetching = { index: message.index, term: message.snapshotTerm, from: message.from };
    this.fetchRequested = true;
    // Say what is needed, so the leader hears from this node (check-quorum) while the state
    // travels; the leader answers a refusal below its snapshot with the next heartbeat, not at once.
    this.send({ type: 'appendResponse', from: this.id, to: message.from, term: this.term, success: false, index: this.lastIndex() + 1 });
  }

  private handleAppendResponse(message: Extract<Message, { type: 'appendResponse' }>): void {
    this.lastHeard.set(message.from, this.leaderTicks);
    if (message.success) {
      if (message.index > (this.match.get(message.from) ?? 0)) this.match.set(message.from, message.index);
      this.next.set(message.from, Math.max(this.next.get(message.from) ?? 1, message.index + 1));
      this.maybeCommit();
      if ((this.next.get(message.from) ?? 0) <= this.lastIndex()) this.sendAppend(message.from, false);
      return;
    }
    // Refused: back off to the hint.
    const match = this.match.get(message.from) ?? 0;
    let next: number;
    if (message.index <= match) {
      // It lacks what it acknowledged: it lost its disk and started empty (or the refusal is an old
      // one, overtaken). Going back costs a resend at worst, never safety: a lower match only
      // holds commits back, and the commit never moves back.
      this.match.set(message.from, message.index - 1);
      next = message.index;
    } else {
      next = Math.min(message.index, this.next.get(message.from) ?? message.index);
    }
    this.next.set(message.from, next);
    // A peer that needs the snapshot gets it with the next heartbeat; answering every refusal at
    // once would bounce snapshot messages back and forth while it fetches.
    if (next > this.snapshotIndex) this.sendAppend(message.from, true);
  }

  private maybeCommit(): void {
    // The highest index held by a majority of voters, counting this leader.
    const matched = [...this.voters].map((voter) => (voter === this.id ? this.lastIndex() : this.match.get(voter) ?? 0)).sort((a, b) => b - a);
    const candidate = matched[this.quorum() - 1]!;
    // Only an entry of the current term commits by counting (section 5.4.2).
    if (candidate > this.commit && this.termAt(candidate) === this.term) {
      this.setCommit(candidate);
      for (const peer of this.peers()) this.sendAppend(peer, true);
    }
  }

  private send(message: Message): void {
    this.outbox.push(message);
  }
}
