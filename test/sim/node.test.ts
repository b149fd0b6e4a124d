// Three real masters (ClusterMaster: block producer, Raft runtime, block gate, forwarding, catch-up)
// under the seeded simulation of test/sim/node-sim.ts: crashes (writes in flight lost), graceful
// restarts, a lost disk now and then, symmetric and one-way partitions, loss, delay, reordering and
// duplication. Throughout: one leader per term, one entry committed per index, leader completeness,
// one block per height, no master stopping by itself. Once healed: every write acknowledged, each
// exactly once in the chain at its receipt, identical blocks and state digests everywhere, log
// matching. A share of the seeds (VALIDATOR_SHARE) adds a validation node, under the same faults:
// its chain a prefix of the masters' committed chain throughout and the whole of it once healed,
// every validation record on the chain checked from the blocks, no "wrong" report of an honest
// leader, and a leader elected and commits made after any bar. `npm run sim -- --node --seeds N`
// runs more seeds; `--node --profile P --seed N --trace` replays one.
import { describe, expect, it } from 'vitest';
import { NODE_SIM_PROFILES, type NodeSimProfile, type NodeSimResult, VALIDATOR_SHARE, runNodeSimulation } from './node-sim.ts';

/** Seeds per profile (2,000 in all), run in chunks of 500. */
const SEEDS: Record<NodeSimProfile, number> = { cluster: 1_500, hostile: 500 };
const CHUNK = 500;

describe('three masters under a seeded simulation of crashes, lost disks, partitions, loss, delay, reordering and duplication', () => {
  for (const profile of Object.keys(NODE_SIM_PROFILES) as NodeSimProfile[]) {
    for (let from = 1; from <= SEEDS[profile]; from += CHUNK) {
      const to = Math.min(SEEDS[profile], from + CHUNK - 1);
      it(`profile "${profile}", seeds ${from} to ${to}: safe throughout, and once healed every acknowledged write is in every master's chain at its receipt`, async () => {
        const failures: NodeSimResult[] = [];
        const totals = {
          terms: 0, acknowledged: 0, crashes: 0, crashesInWrite: 0, inFlightLost: 0, diskLosses: 0, gracefulRestarts: 0, partitions: 0, oneWayPartitions: 0, dropped: 0, duplicated: 0, retries: 0,
          validatorSeeds: 0, validationRecords: 0, validatorCrashes: 0, validatorRestarts: 0, wrongReports: 0, lateReports: 0, lateReportsOwnFault: 0, bars: 0,
        };
        for (let seed = from; seed <= to; seed++) {
          const result = await runNodeSimulation({ seed, ...NODE_SIM_PROFILES[profile] });
          if (!result.ok) failures.push(result);
          for (const key of Object.keys(totals) as Array<keyof typeof totals>) totals[key] += result[key];
        }
        const report = failures.map((result) => `${result.failure}\n    replay: npm run sim -- --node --profile ${profile} --seed ${result.seed} --trace`);
        // Soft: the checks below of the fault mix still run.
        expect.soft(report, `${failures.length} of ${to - from + 1} seeds failed (seeds ${failures.map((result) => result.seed).join(', ')})`).toEqual([]);
        // The schedules were hostile enough to mean something.
        const seeds = to - from + 1;
        expect(totals.crashes).toBeGreaterThan(seeds);
        expect(totals.crashesInWrite).toBeGreaterThan(seeds / 5);
        expect(totals.inFlightLost).toBeGreaterThan(seeds / 10);
        expect(totals.diskLosses).toBeGreaterThan(seeds / 20);
        expect(totals.gracefulRestarts).toBeGreaterThan(seeds / 4);
        expect(totals.partitions).toBeGreaterThan(seeds);
        expect(totals.oneWayPartitions).toBeGreaterThan(seeds / 4);
        expect(totals.dropped).toBeGreaterThan(seeds);
        expect(totals.duplicated).toBeGreaterThan(seeds);
        expect(totals.retries).toBeGreaterThan(seeds * 2);
        expect(totals.terms).toBeGreaterThan(seeds * 1.5);
        expect(totals.acknowledged).toBeGreaterThan(seeds * 15);
        // The validation node was there, wrote records, and went through the faults.
        const { validatorSeeds } = totals;
        console.log(`node sim, profile "${profile}", seeds ${from} to ${to}: a validation node in ${validatorSeeds} seeds, ${totals.validationRecords} validation records, `
          + `${totals.validatorCrashes} crashes and ${totals.validatorRestarts} graceful restarts of it, reports: ${totals.wrongReports} wrong, ${totals.lateReports} late (${totals.lateReportsOwnFault} across its own faults), ${totals.bars} bars`);
        expect(validatorSeeds).toBeGreaterThan(seeds * VALIDATOR_SHARE * 0.7);
        expect(totals.validationRecords).toBeGreaterThan(validatorSeeds * 2);
        expect(totals.validatorCrashes).toBeGreaterThan(validatorSeeds / 5);
        expect(totals.validatorRestarts).toBeGreaterThan(validatorSeeds / 10);
        expect(totals.wrongReports).toBe(0);
      }, 600_000);
    }
  }

  it('replays a seed exactly, whatever ran before it in the process', async () => {
    const first = await runNodeSimulation({ seed: 42 });
    await runNodeSimulation({ seed: 7 });
    expect(await runNodeSimulation({ seed: 42 })).toEqual(first);
    // And the first seed whose verifier answers as a worker pool does and where a master loses its
    // disk and another crashes with writes in flight.
    let seed = 1;
    let result = await runNodeSimulation({ seed });
    while (!(result.settings.verifierPool === 1 && result.diskLosses > 0 && result.inFlightLost + result.inFlightKept > 0) && seed < 400) result = await runNodeSimulation({ seed: ++seed });
    expect(seed).toBeLessThan(400);
    expect(await runNodeSimulation({ seed })).toEqual(result);
    // And the first with a validation node that crashed and wrote records.
    seed = 1;
    result = await runNodeSimulation({ seed });
    while (!(result.validatorSeeds === 1 && result.validatorCrashes > 0 && result.validationRecords > 1) && seed < 400) result = await runNodeSimulation({ seed: ++seed });
    expect(seed).toBeLessThan(400);
    expect(await runNodeSimulation({ seed })).toEqual(result);
  });

  it('without faults: one term, no crash, every write acknowledged', async () => {
    const result = await runNodeSimulation({ seed: 11, faultScale: 0 });
    expect(result).toMatchObject({ ok: true, terms: 1, crashes: 0, gracefulRestarts: 0, partitions: 0, dropped: 0, duplicated: 0, inFlightLost: 0 });
    expect(result.acknowledged).toBe(result.writes);
    expect(result.height).toBeGreaterThan(5);
    // With a validation node: it follows, its records keep up with every block of news, and it reports no one.
    const validated = await runNodeSimulation({ seed: 11, faultScale: 0, validator: true });
    expect(validated).toMatchObject({ ok: true, terms: 1, crashes: 0, validatorSeeds: 1, wrongReports: 0, lateReports: 0, bars: 0, validationLag: 0 });
    expect(validated.validationRecords).toBeGreaterThan(2);
  });

  it('the checkers catch what a disk that acknowledges writes before they are durable breaks', async () => {
    const failures: string[] = [];
    for (let seed = 1; seed <= 100; seed++) {
      const result = await runNodeSimulation({ seed, sabotage: 'lying-disk' });
      if (!result.ok) failures.push(result.failure!);
    }
    expect(failures.length).toBeGreaterThan(0);
    for (const failure of failures) expect(failure).toMatch(/election safety|leader completeness|state machine safety|log matching|two blocks (committed )?at height|acknowledged|differs|is at height|stopped taking part|could not open|not retryable|liveness|validation prefix|validation record|wrong report|holds another validation record/);
  }, 120_000);
});
