// The Raft state machine, scenario by scenario, on a scripted network: every message is delivered
// at once unless a test cuts a link. test/sim/raft.test.ts runs it under random faults.
import { describe, expect, it } from 'vitest';
import { type Entry, type HardState, type Message, Raft, type RaftConfig, type SnapshotMeta } from '../../src/consensus/raft.ts';
import { seededRng } from '../support/chain.ts';

const ELECTION = 10;
const HEARTBEAT = 2;
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (data: Uint8Array): string => new TextDecoder().decode(data);

interface Restored {
  snapshot?: SnapshotMeta;
  hardState?: HardState;
  log?: Entry[];
  applied?: number;
  empty?: boolean;
  newMember?: boolean;
}

interface Member {
  raft: Raft;
  /** Snapshot requests the node handed out. */
  fetches: Array<SnapshotMeta & { from: string }>;
  hardState: HardState | undefined;
  log: Entry[];
  applied: Entry[];
}

/** Nodes on a perfect synchronous network, with links that can be cut one way or both. */
class Cluster {
  readonly members = new Map<string, Member>();
  readonly cut = new Set<string>();
  readonly sent: Message[] = [];

  constructor(readonly voters: string[], readonly learners: string[] = [], restored: Record<string, Restored> = {}) {
    for (const id of [...voters, ...learners]) this.start(id, restored[id]);
  }

  start(id: string, restored: Restored = {}): Raft {
    const config: RaftConfig = { id, voters: this.voters, learners: this.learners, electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng(`raft-${id}`), ...restored };
    const raft = new Raft(config);
    this.members.set(id, { raft, fetches: [], hardState: restored.hardState, log: [...(restored.log ?? [])], applied: [] });
    return raft;
  }

  node(id: string): Raft {
    return this.members.get(id)!.raft;
  }

  isolate(id: string): void {
    for (const other of this.members.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Delivers everything until the network is quiet. */
  flush(): void {
    for (let round = 0; round < 1_000; round++) {
      const outgoing: Message[] = [];
      for (const member of this.members.values()) {
        const ready = member.raft.ready();
        if (ready.snapshot !== undefined) member.log = ready.snapshot.discardLog ? [] : member.log.filter((entry) => entry.index > ready.snapshot!.index);
        if (ready.entries.length > 0) member.log = [...member.log.filter((entry) => entry.index < ready.entries[0]!.index), ...ready.entries];
        if (ready.hardState !== undefined) member.hardState = ready.hardState;
        member.applied.push(...ready.committed);
        if (ready.fetchSnapshot !== undefined) member.fetches.push(ready.fetchSnapshot);
        outgoing.push(...ready.messages);
      }
      if (outgoing.length === 0) return;
      for (const message of outgoing) {
        this.sent.push(message);
        if (!this.cut.has(`${message.from}>${message.to}`)) this.members.get(message.to)?.raft.step(message);
      }
    }
    throw new Error('the network never went quiet');
  }

  tick(times = 1, only?: string[]): void {
    for (let count = 0; count < times; count++) {
      for (const [id, member] of this.members) if (only === undefined || only.includes(id)) member.raft.tick();
      this.flush();
    }
  }

  /** Ticks until some node leads; returns it. */
  elect(within = 10 * ELECTION): Raft {
    for (let count = 0; count < within; count++) {
      this.tick();
      const leaders = [...this.members.values()].filter((member) => member.raft.role === 'leader');
      if (leaders.length > 0) return leaders[0]!.raft;
    }
    throw new Error('no leader was elected');
  }

  leaders(): string[] {
    return [...this.members.entries()].filter(([, member]) => member.raft.role === 'leader').map(([id]) => id);
  }

  appliedData(id: string): string[] {
    return this.members.get(id)!.applied.filter((entry) => entry.data.length > 0).map((entry) => text(entry.data));
  }
}

describe('Raft elections', () => {
  it('a single voter elects itself after its timeout and commits on its own', () => {
    const cluster = new Cluster(['a']);
    cluster.tick(ELECTION - 1);
    expect(cluster.node('a').role).toBe('follower');
    const leader = cluster.elect();
    expect(leader.id).toBe('a');
    expect(leader.term).toBe(1);
    leader.propose(bytes('block 1'));
    cluster.flush();
    expect(cluster.appliedData('a')).toEqual(['block 1']);
  });

  it('three voters elect exactly one leader, and its followers know it', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect();
    expect(cluster.leaders()).toEqual([leader.id]);
    for (const id of ['a', 'b', 'c']) {
      expect(cluster.node(id).term).toBe(leader.term);
      expect(cluster.node(id).leader).toBe(leader.id);
    }
    // Every vote in that term went to the leader, and each voter's vote is in its hard state.
    for (const id of ['a', 'b', 'c']) expect(cluster.members.get(id)!.hardState).toMatchObject({ term: leader.term, vote: leader.id });
  });

  it('grants one vote per term, and keeps it across a restart', () => {
    const voter = new Raft({ id: 'c', voters: ['a', 'b', 'c'], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('c') });
    voter.step({ type: 'vote', from: 'a', to: 'c', term: 5, lastLogIndex: 0, lastLogTerm: 0 });
    voter.step({ type: 'vote', from: 'b', to: 'c', term: 5, lastLogIndex: 0, lastLogTerm: 0 });
    const { messages, hardState } = voter.ready();
    expect(messages.map((message) => [message.to, 'granted' in message && message.granted])).toEqual([['a', true], ['b', false]]);
    expect(hardState).toEqual({ term: 5, vote: 'a', commit: 0 });
    const restarted = new Raft({ id: 'c', voters: ['a', 'b', 'c'], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('c2'), hardState });
    restarted.step({ type: 'vote', from: 'b', to: 'c', term: 5, lastLogIndex: 9, lastLogTerm: 4 });
    restarted.step({ type: 'vote', from: 'a', to: 'c', term: 5, lastLogIndex: 0, lastLogTerm: 0 });
    expect(restarted.ready().messages.map((message) => [message.to, 'granted' in message && message.granted])).toEqual([['b', false], ['a', true]]);
  });

  it('refuses its vote to a candidate whose log is behind its own', () => {
    const log: Entry[] = [{ index: 1, term: 1, data: bytes('x') }, { index: 2, term: 2, data: bytes('y') }];
    const voter = new Raft({ id: 'c', voters: ['a', 'b', 'c'], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('c'), hardState: { term: 2, vote: undefined, commit: 0 }, log });
    // Older last term, however long its log.
    voter.step({ type: 'vote', from: 'a', to: 'c', term: 3, lastLogIndex: 9, lastLogTerm: 1 });
    // Same last term, shorter log.
    voter.step({ type: 'vote', from: 'b', to: 'c', term: 4, lastLogIndex: 1, lastLogTerm: 2 });
    expect(voter.ready().messages.map((message) => 'granted' in message && message.granted)).toEqual([false, false]);
    voter.step({ type: 'vote', from: 'a', to: 'c', term: 5, lastLogIndex: 2, lastLogTerm: 2 });
    expect(voter.ready().messages.map((message) => 'granted' in message && message.granted)).toEqual([true]);
  });

  it('persists a vote granted in a term it had already adopted, before the grant goes out', () => {
    const log: Entry[] = [{ index: 1, term: 1, data: bytes('x') }, { index: 2, term: 2, data: bytes('y') }];
    const voter = new Raft({ id: 'c', voters: ['a', 'b', 'c'], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('c'), hardState: { term: 2, vote: undefined, commit: 0 }, log });
    voter.step({ type: 'vote', from: 'a', to: 'c', term: 5, lastLogIndex: 1, lastLogTerm: 1 });
    expect(voter.ready()).toMatchObject({ hardState: { term: 5, vote: undefined }, messages: [{ granted: false }] });
    voter.step({ type: 'vote', from: 'b', to: 'c', term: 5, lastLogIndex: 2, lastLogTerm: 2 });
    expect(voter.ready()).toMatchObject({ hardState: { term: 5, vote: 'b' }, messages: [{ to: 'b', granted: true }] });
  });

  it('a follower with a live leader ignores a vote request of a higher term', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect();
    const [follower, other] = ['a', 'b', 'c'].filter((id) => id !== leader.id) as [string, string];
    const raft = cluster.node(follower);
    raft.step({ type: 'vote', from: other, to: follower, term: leader.term + 1, lastLogIndex: raft.lastIndex(), lastLogTerm: raft.lastTerm() });
    const ready = raft.ready();
    expect(raft.term).toBe(leader.term);
    expect(ready.messages).toEqual([]);
    expect(ready.hardState).toBeUndefined();
  });

  it('does not count a pre-vote grant left over from an earlier round', () => {
    const voters = ['a', 'b', 'c', 'd', 'e'];
    const node = new Raft({ id: 'a', voters, electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('stale'), hardState: { term: 1, vote: undefined, commit: 0 } });
    const untilRole = (role: string): void => {
      for (let tick = 0; tick < 3 * ELECTION && node.role !== role; tick++) node.tick();
      expect(node.role).toBe(role);
    };
    untilRole('preCandidate');
    node.ready();
    for (const from of ['b', 'c']) node.step({ type: 'preVoteResponse', from, to: 'a', term: 2, granted: true });
    expect(node.role).toBe('candidate');
    expect(node.term).toBe(2);
    for (const from of ['b', 'c', 'd']) node.step({ type: 'voteResponse', from, to: 'a', term: 2, granted: false });
    expect(node.role).toBe('follower');
    untilRole('preCandidate');
    // Grants that were asked for term 2, arriving late: they say nothing about term 3.
    for (const from of ['d', 'e']) node.step({ type: 'preVoteResponse', from, to: 'a', term: 2, granted: true });
    expect(node.role).toBe('preCandidate');
    expect(node.term).toBe(2);
    for (const from of ['d', 'e']) node.step({ type: 'preVoteResponse', from, to: 'a', term: 3, granted: true });
    expect(node.role).toBe('candidate');
    expect(node.term).toBe(3);
  });

  it('refuses an entry larger than a block may be, and splits appends by bytes', () => {
    const cluster = new Cluster(['a', 'b']);
    const leader = cluster.elect();
    expect(() => leader.propose(new Uint8Array(16_385))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_CONSENSUS_ENTRY_TOO_LARGE' }));
    const follower = leader.id === 'a' ? 'b' : 'a';
    cluster.isolate(follower);
    for (let index = 0; index < 12; index++) leader.propose(new Uint8Array(16_000));
    cluster.flush();
    cluster.heal();
    cluster.sent.length = 0;
    cluster.tick(4 * HEARTBEAT);
    const appends = cluster.sent.filter((message) => message.type === 'append' && message.to === follower && message.entries.length > 0) as Array<Extract<Message, { type: 'append' }>>;
    expect(appends.length).toBeGreaterThan(1);
    for (const append of appends) expect(append.entries.reduce((sum, entry) => sum + entry.data.length, 0)).toBeLessThanOrEqual(48 * 1024);
    expect(cluster.node(follower).commit).toBe(leader.commit);
  });

  it('pre-vote: a node cut off from the others does not raise its term, and does not depose the leader when it returns', () => {
    const cluster = new Cluster(['a', 'b', 'c', 'd', 'e']);
    const leader = cluster.elect();
    const term = leader.term;
    const loner = ['a', 'b', 'c', 'd', 'e'].find((id) => id !== leader.id)!;
    cluster.isolate(loner);
    cluster.tick(20 * ELECTION);
    // It has tried to stand many times, each time only as a pre-candidate.
    expect(cluster.node(loner).term).toBe(term);
    expect(cluster.sent.filter((message) => message.from === loner && message.type === 'preVote').length).toBeGreaterThan(5);
    expect(cluster.sent.filter((message) => message.from === loner && message.type === 'vote')).toEqual([]);
    cluster.heal();
    cluster.tick(5 * ELECTION);
    expect(cluster.leaders()).toEqual([leader.id]);
    expect(leader.term).toBe(term);
    expect(cluster.node(loner).leader).toBe(leader.id);
  });

  it('check-quorum: a leader that cannot hear a majority steps down within an election timeout', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect();
    cluster.isolate(leader.id);
    cluster.tick(ELECTION - 1, [leader.id]);
    expect(leader.role).toBe('leader');
    cluster.tick(1, [leader.id]);
    expect(leader.role).toBe('follower');
    // The other two elect a leader of a later term; the old one follows it once it hears it.
    const others = ['a', 'b', 'c'].filter((id) => id !== leader.id);
    cluster.tick(6 * ELECTION, others);
    const next = others.map((id) => cluster.node(id)).find((raft) => raft.role === 'leader')!;
    expect(next.term).toBeGreaterThan(leader.term);
    cluster.heal();
    cluster.tick(2 * HEARTBEAT);
    expect(leader.leader).toBe(next.id);
    expect(leader.term).toBe(next.term);
  });
});

/** Three voters, a leader, three blocks committed; a follower and what it holds. */
function threeBlocksCommitted(): { cluster: Cluster; leader: Raft; follower: string; saved: Member } {
  const cluster = new Cluster(['a', 'b', 'c']);
  const leader = cluster.elect();
  for (let index = 1; index <= 3; index++) leader.propose(bytes(`block ${index}`));
  cluster.flush();
  const follower = ['a', 'b', 'c'].find((id) => id !== leader.id)!;
  return { cluster, leader, follower, saved: cluster.members.get(follower)! };
}

describe('Raft replication', () => {
  it('commits on a majority and applies the same entries everywhere, in order', () => {
    const cluster = new Cluster(['a', 'b', 'c', 'd', 'e']);
    const leader = cluster.elect();
    const [down1, down2] = ['a', 'b', 'c', 'd', 'e'].filter((id) => id !== leader.id);
    cluster.isolate(down1!);
    cluster.isolate(down2!);
    for (let index = 1; index <= 5; index++) leader.propose(bytes(`block ${index}`));
    cluster.flush();
    // Three of five hold them: committed and applied there.
    expect(cluster.appliedData(leader.id)).toEqual(['block 1', 'block 2', 'block 3', 'block 4', 'block 5']);
    expect(cluster.appliedData(down1!)).toEqual([]);
    // The two that were away catch up from the leader's log.
    cluster.heal();
    cluster.tick(2 * HEARTBEAT);
    for (const id of ['a', 'b', 'c', 'd', 'e']) expect(cluster.appliedData(id)).toEqual(['block 1', 'block 2', 'block 3', 'block 4', 'block 5']);
  });

  it('does not commit without a majority', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect();
    const commit = leader.commit;
    for (const id of ['a', 'b', 'c']) if (id !== leader.id) cluster.isolate(id);
    leader.propose(bytes('lonely'));
    cluster.tick(HEARTBEAT * 2, [leader.id]);
    expect(leader.commit).toBe(commit);
    expect(cluster.appliedData(leader.id)).toEqual([]);
  });

  it('a leader commits an entry of an earlier term only through one of its own (the Figure 8 rule)', () => {
    // c leads term 3 with an entry of term 2 at index 2 that it never got to a majority.
    const log: Entry[] = [{ index: 1, term: 1, data: bytes('one') }, { index: 2, term: 2, data: bytes('two') }];
    const c = new Raft({ id: 'c', voters: ['a', 'b', 'c'], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('c'), hardState: { term: 2, vote: 'c', commit: 1 }, log });
    c.step({ type: 'vote', from: 'a', to: 'c', term: 3, lastLogIndex: 1, lastLogTerm: 1 }); // a stale request: refused, term 3
    for (let tick = 0; tick < 3 * ELECTION && c.role === 'follower'; tick++) c.tick();
    // Pre-vote then vote: b grants both.
    for (const message of c.ready().messages) if (message.type === 'preVote') c.step({ type: 'preVoteResponse', from: 'b', to: 'c', term: message.term, granted: true });
    for (const message of c.ready().messages) if (message.type === 'vote') c.step({ type: 'voteResponse', from: 'b', to: 'c', term: message.term, granted: true });
    expect(c.role).toBe('leader');
    expect(c.lastIndex()).toBe(3); // its own empty entry of its term
    // b acknowledges index 2 only: a majority holds the term-2 entry, but it must not commit by counting.
    c.step({ type: 'appendResponse', from: 'b', to: 'c', term: c.term, success: true, index: 2 });
    expect(c.commit).toBe(1);
    // Once b holds the leader's own entry, both commit.
    c.step({ type: 'appendResponse', from: 'b', to: 'c', term: c.term, success: true, index: 3 });
    expect(c.commit).toBe(3);
    expect(c.ready().committed.map((entry) => entry.index)).toEqual([2, 3]);
  });

  it('replaces a follower\'s conflicting uncommitted entries with the leader\'s', () => {
    const shared: Entry[] = [{ index: 1, term: 1, data: bytes('one') }];
    const stale: Entry[] = [...shared, { index: 2, term: 2, data: bytes('lost 2') }, { index: 3, term: 2, data: bytes('lost 3') }, { index: 4, term: 2, data: bytes('lost 4') }];
    const winning: Entry[] = [...shared, { index: 2, term: 3, data: bytes('kept 2') }];
    const cluster = new Cluster(['a', 'b', 'c'], [], {
      a: { hardState: { term: 2, vote: 'a', commit: 1 }, log: stale, applied: 1 },
      b: { hardState: { term: 3, vote: 'b', commit: 1 }, log: winning, applied: 1 },
      c: { hardState: { term: 3, vote: 'b', commit: 1 }, log: winning, applied: 1 },
    });
    // Only b or c can win: their last term (3) is newer than a's (2).
    const leader = cluster.elect();
    expect(['b', 'c']).toContain(leader.id);
    leader.propose(bytes('new'));
    cluster.flush();
    cluster.tick(2 * HEARTBEAT);
    const logOf = (id: string): string[] => cluster.members.get(id)!.log.map((entry) => `${entry.term}:${text(entry.data)}`);
    expect(logOf('a')).toEqual(logOf(leader.id));
    expect(logOf('a')).not.toContain('2:lost 3');
    // 'one' was committed, and applied, before the restart this cluster starts from.
    expect(cluster.appliedData('a')).toEqual(['kept 2', 'new']);
  });

  it('learners receive and apply the log but never vote, stand or count for a commit', () => {
    const cluster = new Cluster(['a', 'b', 'c'], ['v']);
    cluster.tick(30 * ELECTION, ['v']); // alone, for a long time
    expect(cluster.node('v').role).toBe('follower');
    expect(cluster.sent.filter((message) => message.from === 'v')).toEqual([]);
    const leader = cluster.elect();
    expect(cluster.sent.filter((message) => (message.type === 'vote' || message.type === 'preVote') && message.to === 'v')).toEqual([]);
    leader.propose(bytes('block'));
    cluster.flush();
    expect(cluster.appliedData('v')).toEqual(['block']);
    // With both other voters away, the learner's acknowledgement does not make a majority.
    for (const id of ['a', 'b', 'c']) if (id !== leader.id) cluster.isolate(id);
    const commit = leader.commit;
    leader.propose(bytes('not committed'));
    cluster.flush();
    expect(leader.commit).toBe(commit);
  });

  it('a follower that fell behind the leader\'s compacted log is sent a snapshot, fetches the state, and catches up', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect();
    const [away, other] = ['a', 'b', 'c'].filter((id) => id !== leader.id) as [string, string];
    cluster.isolate(away);
    for (let index = 1; index <= 10; index++) leader.propose(bytes(`block ${index}`));
    cluster.flush();
    leader.compact(leader.commit - 2);
    cluster.node(other).compact(cluster.node(other).commit - 2);
    cluster.flush();
    expect(leader.firstIndex()).toBe(leader.commit - 1);
    expect(() => leader.entries(1)).toThrow(/compacted/);
    cluster.heal();
    cluster.tick(3 * HEARTBEAT);
    // The leader cannot send what it dropped: it sends a snapshot, and the follower asks for the state.
    expect(cluster.sent.some((message) => message.type === 'snapshot' && message.to === away)).toBe(true);
    const request = cluster.members.get(away)!.fetches[0];
    expect(request).toMatchObject({ index: leader.firstIndex() - 1, from: leader.id });
    // The application installs the state at that index (here: the leader's applied entries), then says so.
    const member = cluster.members.get(away)!;
    member.applied = cluster.members.get(leader.id)!.applied.filter((entry) => entry.index <= request!.index);
    cluster.node(away).restoreSnapshot(request!.index, request!.term);
    const restored = cluster.node(away).ready();
    expect(restored.snapshot).toEqual({ index: request!.index, term: request!.term, discardLog: true });
    for (const message of restored.messages) cluster.node(message.to).step(message);
    cluster.flush();
    leader.propose(bytes('after'));
    cluster.flush();
    cluster.tick(HEARTBEAT);
    expect(cluster.appliedData(away)).toEqual([...Array.from({ length: 10 }, (_, index) => `block ${index + 1}`), 'after']);
    expect(cluster.node(away).commit).toBe(leader.commit);
    // Restarting from the snapshot and the entries after it.
    const restarted = cluster.start(away, { snapshot: { index: request!.index, term: request!.term }, hardState: member.hardState, log: member.log.filter((entry) => entry.index > request!.index), applied: member.applied.length });
    expect(restarted.firstIndex()).toBe(request!.index + 1);
    expect(restarted.lastIndex()).toBe(leader.lastIndex());
  });

  it('hands out again, after a restart, committed entries the state machine had not applied', () => {
    const { cluster, leader, follower, saved } = threeBlocksCommitted();
    expect(saved.hardState!.commit).toBe(leader.commit);
    // It died after persisting the commit and before applying the last two blocks.
    const appliedBefore = saved.applied.filter((entry) => entry.data.length === 0 || text(entry.data) === 'block 1').length;
    const restarted = cluster.start(follower, { hardState: saved.hardState, log: saved.log, applied: appliedBefore });
    expect(restarted.ready().committed.map((entry) => text(entry.data))).toEqual(['block 2', 'block 3']);
  });

  it('does not install a snapshot it no longer needs: once it holds that entry, on a leader, or past the commit', () => {
    const follower = (): Raft => new Raft({ id: 'f', voters: ['a', 'b', 'f'], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('f'), hardState: { term: 2, vote: undefined, commit: 0 } });
    const entries = (term: number, count: number): Entry[] => Array.from({ length: count }, (_, index) => ({ index: index + 1, term, data: bytes(`e${index + 1}`) }));
    // Asked by a's snapshot at (10, term 2); then b, the next leader, sends entries 1..15 including
    // (10, term 2), and f acknowledges them before the fetched state arrives.
    const f = follower();
    f.step({ type: 'snapshot', from: 'a', to: 'f', term: 2, index: 10, snapshotTerm: 2 });
    expect(f.ready().fetchSnapshot).toMatchObject({ index: 10, term: 2 });
    f.step({ type: 'append', from: 'b', to: 'f', term: 3, prevLogIndex: 0, prevLogTerm: 0, entries: [...entries(2, 10), ...entries(3, 15).slice(10)], commit: 0 });
    expect(f.needsSnapshot(10, 2)).toBe(false);
    expect(f.restoreSnapshot(10, 2)).toBe(false);
    expect(f.lastIndex()).toBe(15);
    // The same request, overtaken by the commit.
    const g = follower();
    g.step({ type: 'snapshot', from: 'a', to: 'f', term: 2, index: 4, snapshotTerm: 2 });
    g.step({ type: 'append', from: 'a', to: 'f', term: 2, prevLogIndex: 0, prevLogTerm: 0, entries: entries(2, 6), commit: 6 });
    expect(g.restoreSnapshot(4, 2)).toBe(false);
    expect(g.commit).toBe(6);
    // A leader never installs one.
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect();
    leader.step({ type: 'snapshot', from: 'b', to: leader.id, term: leader.term - 1, index: 10, snapshotTerm: 1 });
    expect(leader.restoreSnapshot(10, 1)).toBe(false);
    expect(leader.role).toBe('leader');
  });

  it('restarts with a state machine ahead of the commit as from a snapshot there, and refuses one it cannot place', () => {
    const log: Entry[] = Array.from({ length: 6 }, (_, index) => ({ index: index + 1, term: 1, data: bytes(`e${index + 1}`) }));
    const config = { id: 'a', voters: ['a', 'b', 'c'], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('a'), hardState: { term: 1, vote: undefined, commit: 2 }, log };
    // It installed the state at 9 (term 1) and died before the log's new start was stored.
    const ahead = new Raft({ ...config, applied: 9, appliedTerm: 1 });
    expect(ahead.commit).toBe(9);
    expect(ahead.firstIndex()).toBe(10);
    expect(ahead.ready()).toMatchObject({ snapshot: { index: 9, term: 1, discardLog: true }, committed: [] });
    // Ahead, but still holding that entry: the entries after it stay.
    const holding = new Raft({ ...config, applied: 4, appliedTerm: 1 });
    expect([holding.commit, holding.firstIndex(), holding.lastIndex()]).toEqual([4, 5, 6]);
    expect(() => new Raft({ ...config, applied: 9 })).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_STORE_CORRUPT' }));
    // Behind the log's start: entries it never applied are gone.
    expect(() => new Raft({ ...config, snapshot: { index: 3, term: 1 }, log: log.slice(3), applied: 1 })).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_STORE_CORRUPT' }));
  });

  it('refuses a proposal on a follower with the leader it knows', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect();
    const follower = ['a', 'b', 'c'].find((id) => id !== leader.id)!;
    expect(() => cluster.node(follower).propose(bytes('x'))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_CONSENSUS_NOT_LEADER', details: expect.objectContaining({ leader: leader.id }) }));
  });

  it('a restarted node keeps its log and term and rejoins without losing committed entries', () => {
    const { cluster, leader, follower, saved } = threeBlocksCommitted();
    const restarted = cluster.start(follower, { hardState: saved.hardState, log: saved.log, applied: saved.applied.length });
    expect(restarted.term).toBe(leader.term);
    expect(restarted.lastIndex()).toBe(leader.lastIndex());
    leader.propose(bytes('block 4'));
    cluster.flush();
    cluster.tick(HEARTBEAT);
    // Entries committed before the restart were applied by the old instance; the new one applies what follows.
    expect(cluster.appliedData(follower)).toEqual(['block 4']);
    expect(restarted.commit).toBe(leader.commit);
  });
});

describe('Raft with a member that lost its disk', () => {
  it('the leader notices that a follower no longer holds what it acknowledged, and replicates it all again', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect();
    for (let index = 0; index < 5; index++) leader.propose(bytes(`block ${index}`));
    cluster.flush();
    const follower = ['a', 'b', 'c'].find((id) => id !== leader.id)!;
    expect(cluster.node(follower).lastIndex()).toBe(leader.lastIndex());
    // It comes back with nothing: no hard state, no log.
    cluster.start(follower, { empty: true });
    leader.propose(bytes('after'));
    cluster.tick(HEARTBEAT * 3);
    expect(cluster.node(follower).lastIndex()).toBe(leader.lastIndex());
    expect(cluster.appliedData(follower)).toEqual(['block 0', 'block 1', 'block 2', 'block 3', 'block 4', 'after']);
  });

  it('a member that started empty (not a new chain\'s) asks the others\' terms, and neither votes nor stands until it has caught up to the first leader\'s commit', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect();
    for (let index = 0; index < 4; index++) leader.propose(bytes(`block ${index}`));
    cluster.flush();
    const other = ['a', 'b', 'c'].find((id) => id !== leader.id)!;
    const wiped = ['a', 'b', 'c'].find((id) => id !== leader.id && id !== other)!;
    // It lost its disk; while it is cut off, nothing lets it vote or stand.
    const node = cluster.start(wiped, { empty: true });
    expect(node.rejoining).toBe(true);
    node.step({ type: 'vote', from: other, to: wiped, term: leader.term, lastLogIndex: 0, lastLogTerm: 0 });
    expect(node.ready().messages.find((message) => message.type === 'voteResponse')).toMatchObject({ granted: false });
    cluster.isolate(wiped);
    const before = cluster.sent.length;
    cluster.tick(4 * ELECTION, [wiped]);
    expect(node.role).toBe('follower');
    const asked = cluster.sent.slice(before).filter((message) => message.from === wiped);
    expect(asked.some((message) => message.type === 'preVote' || message.type === 'vote')).toBe(false);
    expect(asked.filter((message) => message.type === 'termProbe').map((message) => message.to).sort()).toEqual(expect.arrayContaining([leader.id, other].sort()));
    // Back in touch: the others tell it their terms, the leader brings it up to its commit, and it
    // is a full member again.
    cluster.heal();
    cluster.tick(HEARTBEAT * 4);
    expect(node.rejoining).toBe(false);
    expect(node.term).toBe(leader.term);
    expect(node.commit).toBeGreaterThanOrEqual(5);
    expect(cluster.appliedData(wiped)).toEqual(['block 0', 'block 1', 'block 2', 'block 3']);
  });

  it('a rejoining member that cannot hear a quorum of the others takes nothing from a deposed leader of an older term', () => {
    // c leads term 1 and commits; then it stalls. a and b elect a in term 2 and commit x there.
    const cluster = new Cluster(['a', 'b', 'c']);
    let c = cluster.elect();
    for (let attempt = 0; c.id !== 'c' && attempt < 20; attempt++) {
      // Make c the first leader: restart the others until it wins (deterministic seeds).
      cluster.isolate(c.id);
      cluster.tick(3 * ELECTION, ['a', 'b', 'c'].filter((id) => id !== c.id));
      cluster.heal();
      c = cluster.elect();
    }
    if (c.id !== 'c') throw new Error('c never led');
    c.propose(bytes('y0'));
    cluster.flush();
    const staleTerm = c.term;
    // c stalls: no ticks, nothing in or out.
    cluster.isolate('c');
    let a = cluster.node('a');
    for (let tick = 0; tick < 10 * ELECTION && cluster.leaders().filter((id) => id !== 'c').length === 0; tick++) cluster.tick(1, ['a', 'b']);
    const second = cluster.node(cluster.leaders().find((id) => id !== 'c')!);
    expect(second.term).toBeGreaterThan(staleTerm);
    const xIndex = second.propose(bytes('x'));
    cluster.flush();
    expect(second.commit).toBeGreaterThanOrEqual(xIndex);
    // The second leader goes down (disk intact); the other of a and b loses its disk and comes back.
    const down = second.id;
    const wiped = down === 'a' ? 'b' : 'a';
    cluster.members.delete(down);
    const rejoining = cluster.start(wiped, { empty: true });
    cluster.heal();
    // c resumes, still leading term 1 as far as it knows, and proposes y1 at x's index.
    cluster.cut.add(`c>${down}`);
    const yIndex = c.propose(bytes('y1'));
    for (let tick = 0; tick < 3 * ELECTION; tick++) cluster.tick(1, ['c', wiped]);
    // The rejoining member never answered c: y1 did not commit, and nothing committed at x's index but x.
    expect(rejoining.rejoining).toBe(true);
    expect(cluster.members.get('c')!.applied.filter((entry) => entry.index === yIndex && text(entry.data) === 'y1')).toEqual([]);
    expect(cluster.appliedData(wiped)).toEqual([]);
    a = cluster.node(wiped);
    expect(a.term).toBeLessThanOrEqual(staleTerm);
  });

  it('members of a new chain (empty, newMember) elect at once; empty members that may have lost their disks elect nobody', () => {
    const fresh = new Cluster(['a', 'b', 'c']);
    for (const id of ['a', 'b', 'c']) fresh.start(id, { empty: true, newMember: true });
    expect(fresh.elect(20 * ELECTION).term).toBe(1);
    // Three members with no disk and no word that the chain is new: safety first, no leader.
    const lost = new Cluster(['a', 'b', 'c']);
    for (const id of ['a', 'b', 'c']) lost.start(id, { empty: true });
    expect(() => lost.elect(20 * ELECTION)).toThrow('no leader');
  });
});

describe('Raft bars (a leader the validation nodes reported)', () => {
  it('a barred leader steps down, no one takes its appends or votes for it, and it does not stand until its bar is over', () => {
    const cluster = new Cluster(['a', 'b', 'c', 'd', 'e'], ['v']);
    const first = cluster.elect();
    const term = first.term;
    for (const id of ['a', 'b', 'c', 'd', 'e']) expect(cluster.node(id).bar(first.id, term + 2)).toBe(true);
    expect(first.role).toBe('follower');
    expect(first.leader).toBeUndefined();
    // Alone and leaderless, a barred master does not stand.
    cluster.isolate(first.id);
    cluster.tick(3 * ELECTION, [first.id]);
    expect(first.role).toBe('follower');
    expect(first.term).toBe(term);
    cluster.heal();
    const second = cluster.elect();
    expect(second.id).not.toBe(first.id);
    expect(second.term).toBeGreaterThan(term);
    // Two more elections (the new leaders cut off in turn): terms term+1 .. term+2 never have the barred one as leader.
    const leadersByTerm = new Map<number, string>([[second.term, second.id]]);
    let current = second;
    while (current.term < term + 3) {
      cluster.isolate(current.id);
      cluster.tick(3 * ELECTION);
      cluster.heal();
      current = cluster.elect();
      leadersByTerm.set(current.term, current.id);
      cluster.tick(2);
    }
    for (const [leaderTerm, id] of leadersByTerm) if (leaderTerm <= term + 2) expect(id).not.toBe(first.id);
    // Its bar over, it stands again once its timeout runs out and it hears no leader.
    cluster.isolate(first.id);
    cluster.tick(3 * ELECTION, [first.id]);
    expect(first.role).toBe('preCandidate');
  });

  it('bars lapse on masters that keep standing, when a bar and a failure together leave no one electable', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect();
    const [down, behind] = ['a', 'b', 'c'].filter((id) => id !== leader.id) as [string, string];
    // An entry committed by the leader and `down`, which `behind` never got.
    cluster.cut.add(`${leader.id}>${behind}`);
    leader.propose(bytes('block 1'));
    cluster.flush();
    expect(cluster.appliedData(leader.id)).toEqual(['block 1']);
    cluster.heal();
    // The leader is barred everywhere, and `down` goes away: `behind` may not win (its log lacks a
    // committed entry) and the leader may not stand; without the lapse nobody ever leads.
    for (const id of ['a', 'b', 'c']) cluster.node(id).bar(leader.id, leader.term + 5);
    cluster.isolate(down);
    const next = cluster.elect(8 * ELECTION);
    expect(next.id).toBe(leader.id);
    expect(cluster.node(behind).bars.size).toBe(0);
  });

  it('a follower ignores appends from a barred leader, and refuses it pre-votes and votes for the barred terms', () => {
    const voter = new Raft({ id: 'c', voters: ['a', 'b', 'c'], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('c') });
    expect(voter.bar('a', 4)).toBe(true);
    voter.step({ type: 'append', from: 'a', to: 'c', term: 3, prevLogIndex: 0, prevLogTerm: 0, entries: [{ index: 1, term: 3, data: bytes('x') }], commit: 0 });
    expect(voter.lastIndex()).toBe(0);
    voter.step({ type: 'preVote', from: 'a', to: 'c', term: 4, lastLogIndex: 5, lastLogTerm: 3 });
    voter.step({ type: 'vote', from: 'a', to: 'c', term: 4, lastLogIndex: 5, lastLogTerm: 3 });
    voter.step({ type: 'vote', from: 'b', to: 'c', term: 5, lastLogIndex: 5, lastLogTerm: 3 });
    const answers = voter.ready().messages.map((message) => [message.type, message.to, 'granted' in message ? message.granted : undefined]);
    expect(answers).toEqual([['preVoteResponse', 'a', false], ['voteResponse', 'a', false], ['voteResponse', 'b', true]]);
    // Past its bar, a vote for it counts again.
    const later = new Raft({ id: 'c', voters: ['a', 'b', 'c'], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('c2') });
    later.bar('a', 4);
    later.step({ type: 'vote', from: 'a', to: 'c', term: 5, lastLogIndex: 0, lastLogTerm: 0 });
    expect(later.ready().messages).toMatchObject([{ type: 'voteResponse', to: 'a', granted: true }]);
  });

  it('bars at most as many voters as may fail, makes room by lifting the bar nearest its end, and lets every bar lapse in a long silence', () => {
    const single = new Raft({ id: 'a', voters: ['a'], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('s') });
    expect(single.bar('a', 10)).toBe(false);
    const five = new Raft({ id: 'e', voters: ['a', 'b', 'c', 'd', 'e'], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, rng: seededRng('e') });
    expect(five.bar('x', 10)).toBe(false); // not a voter
    expect(five.bar('a', 5)).toBe(true);
    expect(five.bar('b', 9)).toBe(true);
    expect(five.bar('b', 7)).toBe(false); // barred longer already
    expect(five.bar('c', 8)).toBe(true); // room for two: a (ends soonest) is lifted
    expect([...five.bars.keys()].sort()).toEqual(['b', 'c']);
    // A barred node does not stand; after 4 election timeouts without a leader every bar lapses, and it does.
    expect(five.bar('e', 9)).toBe(true);
    for (let tick = 0; tick < 3 * ELECTION; tick++) five.tick();
    expect(five.role).toBe('follower');
    for (let tick = 0; tick < 2 * ELECTION + 1; tick++) five.tick();
    expect(five.bars.size).toBe(0);
    for (let tick = 0; tick < 2 * ELECTION; tick++) five.tick();
    expect(five.role).toBe('preCandidate');
  });
});
