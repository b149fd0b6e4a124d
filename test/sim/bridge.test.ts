// The bridge coordinator under the seeded simulation (test/sim/bridge-sim.ts): crashes at every
// failpoint, restarts (some crashing again in recovery), power losses, flaky participants; every transaction
// ends with one outcome on all its participants and nothing is left in the log.
// BRIDGE_SIM_SEEDS=N runs more seeds (or `npm run sim -- --bridge --seeds N`); BRIDGE_SIM_SEED=S replays one
// (or `npm run sim -- --bridge --seed S`):
//   BRIDGE_SIM_SEED=17 npx vitest run test/sim/bridge.test.ts
import { describe, expect, it } from 'vitest';
import { BRIDGE_FAILPOINTS } from '../../bridge/failpoints.ts';
import { runBridgeSimulation } from './bridge-sim.ts';

const replay = process.env.BRIDGE_SIM_SEED === undefined ? undefined : Number(process.env.BRIDGE_SIM_SEED);
const SEEDS = Number(process.env.BRIDGE_SIM_SEEDS ?? 600);

describe('the bridge coordinator under a seeded simulation of crashes, restarts and flaky participants', () => {
  if (replay !== undefined) {
    it(`seed ${replay}`, async () => {
      const result = await runBridgeSimulation(replay);
      console.log(JSON.stringify(result, null, 2));
      expect(result.failure).toBeUndefined();
    });
    return;
  }

  it(`keeps every transaction atomic across ${SEEDS} seeds, and crashes at every failpoint`, async () => {
    const failures: string[] = [];
    const crashes = new Map<string, number>();
    const totals = { begun: 0, committed: 0, aborted: 0, calls: 0, restarts: 0, lostBatches: 0, inquiries: 0, duplicates: 0 };
    for (let seed = 1; seed <= SEEDS; seed++) {
      const result = await runBridgeSimulation(seed);
      if (!result.ok) {
        const line = `seed ${seed}: ${result.failure} (replay: npm run sim -- --bridge --seed ${seed}, or BRIDGE_SIM_SEED=${seed} npx vitest run test/sim/bridge.test.ts)`;
        console.error(line);
        failures.push(line);
      }
      for (const name of result.crashedAt) crashes.set(name, (crashes.get(name) ?? 0) + 1);
      totals.begun += result.begun;
      totals.committed += result.committed;
      totals.aborted += result.aborted;
      totals.calls += result.participantCalls;
      totals.restarts += result.crashedAt.length;
      totals.lostBatches += result.lostBatches;
      totals.inquiries += result.inquiries;
      totals.duplicates += result.duplicates;
    }
    expect(failures.slice(0, 5)).toEqual([]);
    // Every failpoint was a crash site in some seed.
    expect(BRIDGE_FAILPOINTS.filter((name) => !crashes.has(name))).toEqual([]);
    // The schedules meant something: both outcomes, many crashes.
    expect(totals.committed).toBeGreaterThan(SEEDS);
    expect(totals.aborted).toBeGreaterThan(SEEDS / 2);
    expect(totals.restarts).toBeGreaterThan(SEEDS / 2);
    expect(totals.lostBatches).toBeGreaterThan(SEEDS / 20);
    expect(totals.inquiries).toBeGreaterThan(SEEDS);
    expect(totals.duplicates).toBeGreaterThan(SEEDS / 10);
  });
});
