// The Raft state machine under the seeded simulation (test/sim/raft-sim.ts): safety throughout
// (one leader per term, log matching, one committed entry per index, no acknowledged entry lost)
// and liveness once the faults stop. `npm run sim -- --seeds N` runs more seeds; `--seed N` replays one.
import { describe, expect, it } from 'vitest';
import { SIM_PROFILES, type SimProfile, runRaftSimulation } from './raft-sim.ts';

const SEEDS: Record<SimProfile, number> = { cluster: 600, hostile: 1_400 };

describe('Raft under a seeded simulation of crashes, partitions, loss, delay, reordering and duplication', () => {
  for (const profile of Object.keys(SIM_PROFILES) as SimProfile[]) {
    it(`profile "${profile}": holds its safety properties and converges, for ${SEEDS[profile]} seeds`, () => {
      const failures: string[] = [];
      const totals = { terms: 0, acknowledged: 0, crashes: 0, partitions: 0 };
      for (let seed = 1; seed <= SEEDS[profile]; seed++) {
        const result = runRaftSimulation({ seed, ...SIM_PROFILES[profile] });
        if (!result.ok) failures.push(`${result.failure!} (replay: npm run sim -- --profile ${profile} --seed ${seed})`);
        totals.terms += result.terms;
        totals.acknowledged += result.acknowledged;
        totals.crashes += result.crashes;
        totals.partitions += result.partitions;
      }
      expect(failures.slice(0, 3)).toEqual([]);
      // The schedules were hostile enough to mean something.
      const seeds = SEEDS[profile];
      expect(totals.crashes).toBeGreaterThan(seeds * 5);
      expect(totals.partitions).toBeGreaterThan(seeds * 2);
      expect(totals.terms).toBeGreaterThan(seeds * 3);
      expect(totals.acknowledged).toBeGreaterThan(seeds * 20);
    });
  }

  it('replays a seed exactly', () => {
    expect(runRaftSimulation({ seed: 42 })).toEqual(runRaftSimulation({ seed: 42 }));
    expect(runRaftSimulation({ seed: 42, ...SIM_PROFILES.hostile })).toEqual(runRaftSimulation({ seed: 42, ...SIM_PROFILES.hostile }));
  });

  it('a cluster of three without faults elects one leader and commits every proposal', () => {
    const result = runRaftSimulation({ seed: 7, voters: 3, learners: 0, dropRate: 0, duplicateRate: 0, crashRate: 0, crashBeforePersistRate: 0, crashBeforeApplyRate: 0, crashAfterInstallRate: 0, partitionRate: 0 });
    expect(result).toMatchObject({ ok: true, crashes: 0, partitions: 0 });
    expect(result.terms).toBe(1);
    expect(result.acknowledged).toBe(result.proposals);
  });
});
