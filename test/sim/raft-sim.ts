// A seeded simulation of a Raft cluster: the real state machine of src/consensus/raft.ts on a
// simulated clock, network and disk. The network drops, delays, reorders and duplicates messages and
// cuts the cluster into partitions (some of them one-way, as a half-open connection is); nodes crash
// and restart from what they had made durable. A client proposes entries to whoever leads. Checkers
// watch the safety properties throughout and liveness once the faults stop. Everything random comes
// from the seed, so a failing seed replays exactly.
import { createHash } from 'node:crypto';
import { type Entry, type HardState, type Message, Raft, type SnapshotMeta } from '../../src/consensus/raft.ts';
import type { Rng } from '../../src/ports.ts';

export interface SimOptions {
  seed: number;
  voters?: number;
  learners?: number;
  /** Ticks with faults, then ticks without, in which the cluster must converge. */
  faultTicks?: number;
  healTicks?: number;
  dropRate?: number;
  duplicateRate?: number;
  maxDelayTicks?: number;
  crashRate?: number;
  partitionRate?: number;
  /** Per delivered message: the receiver dies after the step and before its Ready is persisted. */
  crashBeforePersistRate?: number;
  /** Per Ready with committed entries: the node dies after persisting and sending, before applying. */
  crashBeforeApplyRate?: number;
  /** Entries per append message: small values make leaders replicate old terms' entries on their own. */
  maxEntriesPerAppend?: number;
  /** Proposals per tick while faults run. */
  proposalRate?: number;
  /** Each node compacts its log once it holds more than this many applied entries (0: never). */
  compactAbove?: number;
  /** A snapshot fetch completes 1 to this many ticks after it was asked for, as the runtime's does. */
  fetchDelayTicks?: number;
  /** A node dies after installing a fetched state and before Raft's log records it. */
  crashAfterInstallRate?: number;
}

/**
 * Named fault profiles. "cluster": five masters and a validation node, as in production.
 * "hostile": three voters, frequent crashes, one entry per append and many proposals, which makes
 * leaders replicate earlier terms' entries on their own (the schedules behind the paper's Figure 8).
 */
export const SIM_PROFILES = {
  cluster: { compactAbove: 40 },
  hostile: { voters: 3, learners: 0, crashRate: 0.03, maxEntriesPerAppend: 1, proposalRate: 0.6, compactAbove: 12 },
} satisfies Record<string, Omit<SimOptions, 'seed'>>;

export type SimProfile = keyof typeof SIM_PROFILES;

export interface SimResult {
  seed: number;
  ok: boolean;
  failure?: string;
  terms: number;
  proposals: number;
  acknowledged: number;
  committedIndex: number;
  crashes: number;
  crashesBeforePersist: number;
  crashesBeforeApply: number;
  crashesAfterInstall: number;
  snapshotsInstalled: number;
  partitions: number;
  messages: number;
}

/**
 * Deterministic random numbers: sfc32, seeded from SHA-256 of the seed text. Fast enough for
 * thousands of seeds; not for keys.
 */
export class SeededRandom implements Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: string) {
    const digest = createHash('sha256').update(seed).digest();
    [this.a, this.b, this.c, this.d] = [0, 4, 8, 12].map((offset) => digest.readUInt32LE(offset)) as [number, number, number, number];
    for (let round = 0; round < 12; round++) this.nextUint32();
  }
  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let offset = 0; offset < length; offset += 4) {
      const word = this.nextUint32();
      for (let byte = 0; byte < 4 && offset + byte < length; byte++) out[offset + byte] = (word >>> (byte * 8)) & 0xff;
    }
    return out;
  }
  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 2 ** 32;
  }
  below(limit: number): number {
    return Math.floor(this.next() * limit);
  }
}

interface Disk {
  snapshot: SnapshotMeta | undefined;
  hardState: HardState | undefined;
  /** Entries after the snapshot. */
  log: Entry[];
}

interface SimNode {
  id: string;
  raft: Raft | undefined;
  disk: Disk;
  /** The entries this node's state machine applied, in order (durable, as a real store's are). */
  applied: Entry[];
}

interface InFlight {
  deliverAt: number;
  order: number;
  message: Message;
}

class SafetyViolation extends Error {}

const ELECTION_TICKS = 10;
const HEARTBEAT_TICKS = 2;

export function runRaftSimulation(options: SimOptions): SimResult {
  const random = new SeededRandom(`raft-sim:${options.seed}`);
  const voterCount = options.voters ?? 5;
  const learnerCount = options.learners ?? 1;
  const faultTicks = options.faultTicks ?? 600;
  const healTicks = options.healTicks ?? 400;
  const dropRate = options.dropRate ?? 0.05;
  const duplicateRate = options.duplicateRate ?? 0.02;
  const maxDelay = options.maxDelayTicks ?? 3;
  const crashRate = options.crashRate ?? 0.004;
  const partitionRate = options.partitionRate ?? 0.01;
  const crashBeforePersistRate = options.crashBeforePersistRate ?? 0.0005;
  const crashBeforeApplyRate = options.crashBeforeApplyRate ?? 0.0005;

  const voters = Array.from({ length: voterCount }, (_, index) => `m${index + 1}`);
  const learners = Array.from({ length: learnerCount }, (_, index) => `v${index + 1}`);
  const everyone = [...voters, ...learners];
  const start = (node: SimNode): void => {
    node.raft = new Raft({
      id: node.id, voters, learners, electionTicks: ELECTION_TICKS, heartbeatTicks: HEARTBEAT_TICKS, maxEntriesPerAppend: options.maxEntriesPerAppend ?? 8,
      rng: new SeededRandom(`raft-sim:${options.seed}:${node.id}:${random.below(1e9)}`),
      snapshot: node.disk.snapshot, hardState: node.disk.hardState, log: node.disk.log,
      applied: node.applied.length, appliedTerm: node.applied[node.applied.length - 1]?.term ?? 0,
    });
  };
  const nodes = new Map<string, SimNode>(everyone.map((id) => [id, { id, raft: undefined, disk: { snapshot: undefined, hardState: undefined, log: [] }, applied: [] }]));
  for (const node of nodes.values()) start(node);

  let now = 0;
  let order = 0;
  let network: InFlight[] = [];
  /** Directed links that are cut: "a>b" drops what a sends to b. */
  let cut = new Set<string>();
  let partitionEndsAt = 0;
  let healing = false;
  const stats = { crashes: 0, crashesBeforePersist: 0, crashesBeforeApply: 0, crashesAfterInstall: 0, partitions: 0, messages: 0, snapshotsInstalled: 0 };
  /** Snapshot fetches in flight: due at a tick, for the Raft instance (process) that asked. */
  const fetches = new Map<string, SnapshotMeta & { dueAt: number; raft: Raft }>();

  // Checker state.
  const leaderOfTerm = new Map<number, string>();
  /** What was committed at each index, as first seen applied anywhere: term and data. */
  const committedAt = new Map<number, string>();
  const proposals = new Map<string, { proposedAt: number }>();
  const acknowledged = new Set<string>();
  let proposalCounter = 0;
  const fail = (text: string): never => {
    throw new SafetyViolation(`seed ${options.seed}, tick ${now}: ${text}`);
  };
  const entryKey = (entry: Entry): string => `${entry.term}:${Buffer.from(entry.data).toString('hex')}`;

  const processReady = (node: SimNode, deliver: boolean): void => {
    const raft = node.raft!;
    const ready = raft.ready();
    // 1. Durable: the log's new start, entries that replace the log from their first index, the hard state.
    if (ready.snapshot !== undefined) {
      const { index, term, discardLog } = ready.snapshot;
      node.disk.log = discardLog ? [] : node.disk.log.filter((entry) => entry.index > index);
      node.disk.snapshot = { index, term };
    }
    if (ready.entries.length > 0) {
      const first = ready.entries[0]!.index;
      node.disk.log = [...node.disk.log.filter((entry) => entry.index < first), ...ready.entries];
    }
    if (ready.hardState !== undefined) node.disk.hardState = { ...ready.hardState };
    // 2. Send.
    if (deliver) {
      for (const message of ready.messages) send(message);
    }
    // 3. Apply (unless the node dies first: the committed entries are then handed out again at the restart).
    if (ready.committed.length > 0 && !healing && random.next() < crashBeforeApplyRate) {
      node.raft = undefined;
      stats.crashes++;
      stats.crashesBeforeApply++;
      return;
    }
    for (const entry of ready.committed) {
      if (entry.index !== node.applied.length + 1) fail(`${node.id} applied index ${entry.index} after ${node.applied.length}`);
      const key = entryKey(entry);
      const seen = committedAt.get(entry.index);
      if (seen === undefined) committedAt.set(entry.index, key);
      else if (seen !== key) fail(`state machine safety: index ${entry.index} committed as ${seen} and applied by ${node.id} as ${key}`);
      node.applied.push(entry);
      if (raft.role === 'leader' && entry.data.length > 0) acknowledged.add(Buffer.from(entry.data).toString('utf8'));
    }
    // 4. The state machine keeps its own record of what it applied; the log need not.
    const compactAbove = options.compactAbove ?? 0;
    if (compactAbove > 0 && node.applied.length - raft.firstIndex() + 1 > compactAbove) raft.compact(node.applied.length - Math.floor(compactAbove / 2));
    // 5. A snapshot to fetch: it arrives some ticks later, as the runtime's fetch does (one at a time).
    if (ready.fetchSnapshot !== undefined && !fetches.has(node.id)) {
      fetches.set(node.id, { index: ready.fetchSnapshot.index, term: ready.fetchSnapshot.term, dueAt: now + 1 + random.below(options.fetchDelayTicks ?? 6), raft });
    }
    if (raft.role === 'leader') {
      const known = leaderOfTerm.get(raft.term);
      if (known !== undefined && known !== node.id) fail(`election safety: ${known} and ${node.id} both lead term ${raft.term}`);
      if (known === undefined) {
        // Leader completeness: a new leader holds every entry committed so far (as far as any node has applied it).
        const held = new Map<number, string>();
        for (const entry of node.applied) held.set(entry.index, entryKey(entry));
        for (const entry of node.disk.log) held.set(entry.index, entryKey(entry));
        for (const [index, key] of committedAt) {
          if (held.get(index) !== key) fail(`leader completeness: ${node.id} leads term ${raft.term} without the entry committed at ${index}`);
        }
      }
      leaderOfTerm.set(raft.term, node.id);
    }
  };

  const send = (message: Message): void => {
    stats.messages++;
    if (cut.has(`${message.from}>${message.to}`)) return;
    // Once the faults stop, the network delivers everything (still with delays and reordering).
    if (healing) {
      network.push({ deliverAt: now + 1 + random.below(maxDelay), order: order++, message: structuredCloneMessage(message) });
      return;
    }
    if (random.next() < dropRate) return;
    const copies = random.next() < duplicateRate ? 2 : 1;
    for (let copy = 0; copy < copies; copy++) {
      network.push({ deliverAt: now + 1 + random.below(maxDelay), order: order++, message: structuredCloneMessage(message) });
    }
  };

  // Entries are shared by reference in memory; a real network copies them.
  const structuredCloneMessage = (message: Message): Message => (message.type === 'append' ? { ...message, entries: message.entries.map((entry) => ({ ...entry })) } : { ...message });

  const checkLogMatching = (): void => {
    // Each node's log by index: the entries it holds, and over them what its state machine applied
    // (the compacted part). Applied entries win: a node that crashed after installing a snapshot and
    // before its log's new start was persisted still holds older entries below it on disk, which
    // its restart discards (Raft's constructor takes the state machine's applied index as a snapshot).
    const logs = [...nodes.values()].map((node) => {
      const byIndex = new Map<number, Entry>();
      for (const entry of node.disk.log) byIndex.set(entry.index, entry);
      for (const entry of node.applied) byIndex.set(entry.index, entry);
      return { id: node.id, byIndex };
    });
    for (let a = 0; a < logs.length; a++) {
      for (let b = a + 1; b < logs.length; b++) {
        const left = logs[a]!.byIndex;
        const right = logs[b]!.byIndex;
        const common = [...left.keys()].filter((index) => right.has(index)).sort((x, y) => y - x);
        // The highest index where the terms agree: every index below it held by both must be identical.
        const agree = common.find((index) => left.get(index)!.term === right.get(index)!.term);
        if (agree === undefined) continue;
        for (const index of common) {
          if (index <= agree && entryKey(left.get(index)!) !== entryKey(right.get(index)!)) fail(`log matching: ${logs[a]!.id} and ${logs[b]!.id} agree on the term at ${agree} but differ at ${index}`);
        }
      }
    }
  };

  const propose = (): void => {
    const leader = [...nodes.values()].find((node) => node.raft?.role === 'leader');
    if (leader === undefined) return;
    const id = `p${++proposalCounter}`;
    leader.raft!.propose(new TextEncoder().encode(id));
    proposals.set(id, { proposedAt: now });
  };

  const step = (faults: boolean): void => {
    now++;
    if (faults) {
      // Crashes: a node loses everything not on its disk (its in-memory state and what it had
      // not yet sent); it comes back a few ticks later.
      for (const node of nodes.values()) {
        if (node.raft !== undefined && random.next() < crashRate) {
          node.raft = undefined;
          stats.crashes++;
        } else if (node.raft === undefined && random.next() < 0.1) {
          start(node);
        }
      }
      if (now >= partitionEndsAt && cut.size > 0) cut = new Set();
      if (cut.size === 0 && random.next() < partitionRate) {
        stats.partitions++;
        partitionEndsAt = now + 20 + random.below(80);
        const side = new Set(everyone.filter(() => random.next() < 0.5));
        const oneWay = random.next() < 0.3;
        for (const from of everyone) {
          for (const to of everyone) {
            if (side.has(from) !== side.has(to) && (!oneWay || side.has(from))) cut.add(`${from}>${to}`);
          }
        }
      }
      if (random.next() < (options.proposalRate ?? 0.3)) propose();
    } else {
      healing = true;
      cut = new Set();
      for (const node of nodes.values()) if (node.raft === undefined) start(node);
      // Proposals until the last 50 ticks, which are quiet so that everything can settle.
      if (now % 25 === 0 && now < faultTicks + healTicks - 50) propose();
    }
    for (const node of nodes.values()) {
      node.raft?.tick();
    }
    // Deliver what is due, in delivery order (ties broken by send order: reordering comes from
    // the random delays).
    const due = network.filter((item) => item.deliverAt <= now).sort((a, b) => a.deliverAt - b.deliverAt || a.order - b.order);
    network = network.filter((item) => item.deliverAt > now);
    for (const { message } of due) {
      const target = nodes.get(message.to);
      if (target?.raft === undefined) continue; // delivered to a crashed node: lost
      target.raft.step(message);
      // Now and then the node dies after taking the message in and before its Ready reached the
      // disk: whatever the step decided (a vote, appended entries, a commit) is lost, and nothing
      // of it was sent.
      if (!healing && random.next() < crashBeforePersistRate) {
        target.raft = undefined;
        stats.crashes++;
        stats.crashesBeforePersist++;
        continue;
      }
      processReady(target, true);
    }
    for (const node of nodes.values()) if (node.raft !== undefined) processReady(node, true);
    // Fetched snapshots: installed between Readys, only if Raft still needs them (the runtime's rule).
    for (const [id, fetch] of [...fetches]) {
      if (fetch.dueAt > now) continue;
      fetches.delete(id);
      const node = nodes.get(id)!;
      if (node.raft !== fetch.raft) continue; // the process that asked has died
      const donor = [...nodes.values()].find((other) => other !== node && other.raft !== undefined && other.applied.length >= fetch.index);
      if (donor === undefined) continue; // the fetch failed: the leader asks again
      if (donor.applied[fetch.index - 1]!.term !== fetch.term) fail(`snapshot: ${donor.id} applied term ${donor.applied[fetch.index - 1]!.term} at ${fetch.index}, the leader's snapshot says ${fetch.term}`);
      if (!node.raft.needsSnapshot(fetch.index, fetch.term)) continue;
      if (node.applied.length > fetch.index) fail(`snapshot: ${node.id} had applied ${node.applied.length} entries, beyond the snapshot at ${fetch.index}`);
      // install(): the state machine holds the state at the index from here on.
      node.applied = donor.applied.slice(0, fetch.index);
      stats.snapshotsInstalled++;
      if (!healing && random.next() < (options.crashAfterInstallRate ?? 0.05)) {
        node.raft = undefined;
        stats.crashes++;
        stats.crashesAfterInstall++;
        continue;
      }
      if (!node.raft.restoreSnapshot(fetch.index, fetch.term)) fail(`snapshot: ${node.id} needed the state at ${fetch.index} and then did not take it`);
      processReady(node, true);
    }
    if (now % 100 === 0) checkLogMatching();
    if (process.env.RAFT_SIM_TRACE && now > Number(process.env.RAFT_SIM_TRACE)) {
      console.log(now, [...nodes.values()].map((node) => `${node.id}:${node.raft?.role}/${node.raft?.term}/${node.raft?.vote ?? '-'}`).join(' '), due.map(({ message }) => `${message.type}${'granted' in message ? (message.granted ? '+' : '-') : ''}(${message.from}>${message.to} t${message.term})`).join(' '));
    }
  };

  try {
    for (let tick = 0; tick < faultTicks; tick++) step(true);
    for (let tick = 0; tick < healTicks; tick++) step(false);
    checkLogMatching();
    // Liveness and durability once healed: one leader, and every node has applied every
    // acknowledged proposal, at the same index everywhere.
    const leaders = [...nodes.values()].filter((node) => node.raft?.role === 'leader');
    const describe = (): string => [...nodes.values()].map((node) => `${node.id} ${node.raft?.role} term ${node.raft?.term} vote ${node.raft?.vote} leader ${node.raft?.leader} last ${node.raft?.lastIndex()}/${node.raft?.lastTerm()} commit ${node.raft?.commit}`).join('; ');
    if (leaders.length !== 1) fail(`after ${healTicks} ticks without faults there are ${leaders.length} leaders: ${describe()}`);
    const leader = leaders[0]!;
    const finalCommit = leader.raft!.commit;
    for (const node of nodes.values()) {
      if (node.applied.length !== finalCommit) fail(`${node.id} applied ${node.applied.length} of ${finalCommit} entries after healing`);
    }
    if (leader.raft!.lastIndex() !== finalCommit) fail(`the leader holds ${leader.raft!.lastIndex()} entries but committed ${finalCommit} after a quiet spell`);
    const appliedSomewhere = new Set([...nodes.values()].flatMap((node) => node.applied).map((entry) => Buffer.from(entry.data).toString('utf8')));
    for (const id of acknowledged) {
      if (!appliedSomewhere.has(id)) fail(`acknowledged proposal ${id} is not applied on any node`);
      if (!leader.applied.some((entry) => Buffer.from(entry.data).toString('utf8') === id)) fail(`acknowledged proposal ${id} is missing from the final leader's state`);
    }
    if (acknowledged.size === 0 && proposals.size > 0) fail('no proposal was ever acknowledged');
    return { seed: options.seed, ok: true, terms: leaderOfTerm.size, proposals: proposals.size, acknowledged: acknowledged.size, committedIndex: finalCommit, ...stats };
  } catch (error) {
    if (!(error instanceof SafetyViolation) && !(error instanceof Error)) throw error;
    return { seed: options.seed, ok: false, failure: error instanceof Error ? `${error.message}${error instanceof SafetyViolation ? '' : `\n${error.stack}`}` : String(error), terms: leaderOfTerm.size, proposals: proposals.size, acknowledged: acknowledged.size, committedIndex: 0, ...stats };
  }
}
