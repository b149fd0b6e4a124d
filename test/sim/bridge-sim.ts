// The seeded simulation of the bridge coordinator: several concurrent transactions over
// in-process participants that keep durable state and fail, hang or answer late at random; the
// coordinator crashes at a random failpoint (sometimes again during recovery) and is opened again
// on the same store. Everything runs on virtual time from the seed, so a seed replays exactly.
//
// Checked at the end of every seed:
//   - every transaction ends with the same outcome on every participant it touched;
//   - a transaction commits anywhere only if every one of its participants voted yes, and its
//     commit was decided no later than its decision deadline;
//   - no participant is left prepared, and the log is empty;
//   - what a prepared participant is told when it inquires (a known state, or commit presumed) is the outcome;
//   - a second begin of a live id is KALIMA_ERR_BRIDGE_DUPLICATE_TX and reaches no participant;
//   - no coordinator reported two outcomes for one transaction, or an outcome its participants contradict;
//   - (half the crashes are power losses that drop a random suffix of the unsynced log writes)
//   - a crashed coordinator made no call after its crash; no participant was told to commit
//     unprepared or to abort after committing.
import { BridgeCoordinator, type TxOutcome } from '../../bridge/coordinator.ts';
import { BRIDGE_FAILPOINTS, type BridgeFailpoint } from '../../bridge/failpoints.ts';
import { DEFAULT_KEY_PREFIX } from '../../bridge/records.ts';
import { isKalimaError } from '../../src/errors.ts';
import type { Rng } from '../../src/ports.ts';
import { type Generation, PowerLossKv, SimWorld, VirtualTime, simParticipant } from '../support/bridge.ts';
import { seededRng } from '../unit/support/seeded-rng.ts';
import { prefixEnd } from '../../src/store/keys.ts';

export interface BridgeSimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly failure?: string;
  /** The failpoints this seed crashed the coordinator at, in order. */
  readonly crashedAt: readonly BridgeFailpoint[];
  readonly begun: number;
  readonly committed: number;
  readonly aborted: number;
  readonly participantCalls: number;
  /** Inquiries by prepared participants answered with a decision. */
  readonly inquiries: number;
  /** Begins of a live id, refused. */
  readonly duplicates: number;
  /** Unsynced log batches lost to power losses at the crashes. */
  readonly lostBatches: number;
}

const MARGIN_MS = 50;
const DEFAULT_DEADLINE_MS = 5_000;
const NAMES = ['lightning', 'grant', 'klx', 'tezos'];

function uniform(rng: Rng): number {
  const [a, b, c] = rng.bytes(3);
  return ((a! << 16) | (b! << 8) | c!) / 0x1000000;
}

function below(rng: Rng, count: number): number {
  return Math.floor(uniform(rng) * count);
}

interface PlannedTx {
  readonly id: string;
  readonly names: readonly string[];
  readonly voteNo: readonly boolean[];
  /** Participant deadlines as offsets from the begin (0 = none). */
  readonly deadlineOffsets: readonly number[];
  readonly startMs: number;
  deadlineMs?: number;
  begun: boolean;
}

export async function runBridgeSimulation(seed: number): Promise<BridgeSimResult> {
  const rng = seededRng(`bridge-sim/${seed}`);
  const time = new VirtualTime();
  const world = new SimWorld(time, seededRng(`bridge-sim/${seed}/participants`));
  const heavy = uniform(rng) < 0.3;
  world.faults = { failBefore: heavy ? 0.15 : 0.05, failAfter: heavy ? 0.15 : 0.05, hang: heavy ? 0.05 : 0.02, maxDelayMs: 40, slow: 0.05, slowDelayMs: 1_500 };
  const kv = new PowerLossKv();
  const crashedAt: BridgeFailpoint[] = [];
  const reported = new Map<string, TxOutcome>();
  const decidedCommitAt = new Map<string, number>();
  const problems: string[] = [];

  const plan: PlannedTx[] = [];
  const txCount = 2 + below(rng, 5);
  for (let index = 0; index < txCount; index++) {
    const count = 1 + below(rng, 4);
    const names = NAMES.slice(0, count);
    plan.push({
      id: `${seed.toString(16).padStart(8, '0')}${index.toString(16).padStart(2, '0')}`,
      names,
      voteNo: names.map(() => uniform(rng) < 0.1),
      deadlineOffsets: names.map(() => (uniform(rng) < 0.3 ? 100 + below(rng, 2_000) : 0)),
      startMs: below(rng, 300),
      begun: false,
    });
  }

  let generations = 0;
  let coordinator: BridgeCoordinator;
  let generation: Generation;
  const open = async (crash: { target: BridgeFailpoint; occurrence: number } | undefined): Promise<void> => {
    let seen = 0;
    generation = { number: generations++, crashed: false };
    const mine = generation;
    coordinator = await BridgeCoordinator.open({
      kv, participants: world.registry(mine), clock: time.clock, rng: seededRng(`bridge-sim/${seed}/coordinator/${mine.number}`), scheduler: time,
      prepareTimeoutMs: 400, callTimeoutMs: 300, retryInitialMs: 20, retryMaxMs: 400, deadlineMarginMs: MARGIN_MS, defaultDeadlineMs: DEFAULT_DEADLINE_MS,
      failpoint: crash === undefined ? undefined : (name) => {
        if (name === crash.target && ++seen === crash.occurrence) {
          mine.crashed = true;
          crashedAt.push(name);
          throw new Error(`simulated crash at ${name}`);
        }
      },
    });
    coordinator.on('decided', (event) => {
      if (event.outcome.outcome === 'committed' && !event.recovered) decidedCommitAt.set(event.id, time.nowMs);
    });
    coordinator.on('ended', (event) => {
      const earlier = reported.get(event.id);
      if (earlier !== undefined && earlier.outcome !== event.outcome.outcome) problems.push(`${event.id} reported ${earlier.outcome}, then ${event.outcome.outcome}`);
      reported.set(event.id, event.outcome);
    });
  };

  let duplicates = 0;
  const begin = (tx: PlannedTx): void => {
    if (coordinator.stopped) {
      // The client retries against the coordinator that comes back.
      time.setTimeout(() => begin(tx), 50);
      return;
    }
    const now = time.nowMs;
    const participants = tx.names.map((name, index) => simParticipant({
      name, voteNo: tx.voteNo[index]!, ...(tx.deadlineOffsets[index]! > 0 ? { deadlineMs: now + tx.deadlineOffsets[index]! } : {}),
    }));
    tx.deadlineMs = Math.min(now + DEFAULT_DEADLINE_MS, ...tx.deadlineOffsets.filter((offset) => offset > 0).map((offset) => now + offset - MARGIN_MS));
    try {
      coordinator.begin({ id: tx.id, participants });
      tx.begun = true;
    } catch (error) {
      problems.push(`begin ${tx.id} threw ${isKalimaError(error) ? error.code : String(error)}`);
    }
    // Now and then the client begins it again while it is live: refused, and nothing changes.
    if (uniform(rng) < 0.3) time.setTimeout(() => beginAgain(tx), below(rng, 100));
  };
  const beginAgain = (tx: PlannedTx): void => {
    if (coordinator.stopped || coordinator.outcome(tx.id) === undefined) return;
    const calls = world.calls.length;
    try {
      coordinator.begin({ id: tx.id, participants: [simParticipant({ name: 'intruder' })] });
      problems.push(`a second begin of live ${tx.id} was accepted`);
    } catch (error) {
      if (!isKalimaError(error, 'KALIMA_ERR_BRIDGE_DUPLICATE_TX')) problems.push(`a second begin of ${tx.id} threw ${isKalimaError(error) ? error.code : String(error)}`);
    }
    duplicates++;
    if (world.calls.length !== calls) problems.push(`a refused begin of ${tx.id} called a participant`);
  };

  // A participant in doubt (prepared) asks the coordinator now and then; what it is told must be
  // the final outcome: 'committed' (known, or presumed for an unknown id) or 'aborted'.
  const simStartMs = time.nowMs;
  const answers: Array<{ id: string; answer: 'committed' | 'aborted'; atMs: number }> = [];
  const poll = (): void => {
    if (!coordinator.stopped) {
      for (const tx of plan) {
        if (!tx.begun || !tx.names.some((name) => world.state(name, tx.id) === 'prepared')) continue;
        const { state } = coordinator.inquire(tx.id);
        if (state !== 'undecided') answers.push({ id: tx.id, answer: state, atMs: time.nowMs });
      }
    }
    if (time.nowMs - simStartMs < 20_000) time.setTimeout(poll, 5 + below(rng, 30));
  };
  time.setTimeout(poll, 10);

  const settledAll = (): boolean => coordinator.stopped || (plan.every((tx) => tx.begun) && coordinator.liveCount === 0);

  // First run: crash at a random failpoint, at its 1st to 3rd passage.
  await open({ target: BRIDGE_FAILPOINTS[below(rng, BRIDGE_FAILPOINTS.length)]!, occurrence: 1 + below(rng, 3) });
  for (const tx of plan) time.setTimeout(() => begin(tx), tx.startMs);
  await time.run(settledAll, 600_000);

  // Restarts: while the last one crashed, open again on the same store; a recovery may crash too.
  let lostBatches = 0;
  const afterCrash = async (): Promise<void> => {
    // Half the crashes are power losses: a random suffix of the unsynced log writes is gone.
    if (uniform(rng) < 0.5) {
      const keep = below(rng, kv.unsyncedBatches + 1);
      lostBatches += kv.unsyncedBatches - keep;
      await kv.powerLoss(keep);
    }
    // The dead process's in-flight calls play out at the participants for a while.
    await time.advance(below(rng, 400));
  };
  for (let restart = 0; coordinator!.stopped && restart < 4; restart++) {
    await afterCrash();
    const again = restart < 2 && uniform(rng) < 0.35;
    await open(again ? { target: BRIDGE_FAILPOINTS[below(rng, BRIDGE_FAILPOINTS.length)]!, occurrence: 1 + below(rng, 2) } : undefined);
    await time.run(settledAll, 600_000);
  }
  if (coordinator!.stopped) {
    await afterCrash();
    await open(undefined);
    await time.run(settledAll, 600_000);
  }
  if (!settledAll() || coordinator!.stopped) problems.push(`did not settle: ${coordinator!.liveCount} live, ${plan.filter((tx) => !tx.begun).length} never begun`);
  // Late answers to hung or delayed calls land; nothing may change an outcome.
  await time.run(() => false, 60_000);

  // ---- invariants ----
  problems.push(...world.violations);
  let logged = 0;
  for await (const _ of kv.entries({ gte: DEFAULT_KEY_PREFIX, lt: prefixEnd(DEFAULT_KEY_PREFIX) })) logged++;
  if (logged > 0) problems.push(`${logged} records left in the log`);
  if (world.states.has('intruder')) problems.push('a refused begin reached its participant');
  for (const [name, txId] of world.prepared()) problems.push(`${name} left prepared for ${txId}`);
  let committed = 0;
  let aborted = 0;
  for (const tx of plan) {
    const states = tx.names.map((name) => world.state(name, tx.id));
    const touched = states.filter((state) => state !== undefined);
    const anyCommitted = touched.includes('committed');
    if (anyCommitted) {
      committed++;
      if (!states.every((state) => state === 'committed')) problems.push(`${tx.id}: mixed outcome ${JSON.stringify(states)}`);
      const votes = world.votes.get(tx.id);
      for (const name of tx.names) if (votes?.get(name) !== 'yes') problems.push(`${tx.id} committed although ${name} voted ${votes?.get(name) ?? 'nothing'}`);
      const decidedAt = decidedCommitAt.get(tx.id);
      if (decidedAt !== undefined && tx.deadlineMs !== undefined && decidedAt > tx.deadlineMs) problems.push(`${tx.id} committed at ${decidedAt}, after its deadline ${tx.deadlineMs}`);
    } else if (touched.length > 0) {
      aborted++;
      if (!touched.every((state) => state === 'aborted')) problems.push(`${tx.id}: mixed outcome ${JSON.stringify(states)}`);
    }
    for (const { answer, atMs } of answers.filter((entry) => entry.id === tx.id)) {
      if ((answer === 'committed') !== anyCommitted) problems.push(`${tx.id}: a prepared participant was told ${answer} at ${atMs}, but the outcome is ${JSON.stringify(states)}`);
    }
    const outcome = reported.get(tx.id);
    if (outcome !== undefined && (outcome.outcome === 'committed') !== anyCommitted) problems.push(`${tx.id} reported ${outcome.outcome} but its participants are ${JSON.stringify(states)}`);
  }

  return {
    seed, ok: problems.length === 0, ...(problems.length > 0 ? { failure: problems.slice(0, 5).join('; ') } : {}),
    crashedAt, begun: plan.filter((tx) => tx.begun).length, committed, aborted, participantCalls: world.calls.length, lostBatches, inquiries: answers.length, duplicates,
  };
}
