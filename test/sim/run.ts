// npm run sim -- [--profile cluster|hostile|all] [--seeds N] [--from S] | [--seed N]
// RAFT_SIM_TRACE=T prints every node's role, term and vote and the messages delivered, each tick after T.
// Runs the seeded Raft simulation over many seeds, or replays one; prints each failure with the
// command that replays it, and exits non-zero if any seed failed.
import { parseArgs } from 'node:util';
import { SIM_PROFILES, type SimProfile, runRaftSimulation } from './raft-sim.ts';

const { values } = parseArgs({ options: { profile: { type: 'string', default: 'all' }, seeds: { type: 'string', default: '1000' }, from: { type: 'string', default: '1' }, seed: { type: 'string' } } });
const profiles = values.profile === 'all' ? (Object.keys(SIM_PROFILES) as SimProfile[]) : [values.profile as SimProfile];
for (const profile of profiles) {
  if (!(profile in SIM_PROFILES)) {
    console.error(`unknown profile ${profile}; the profiles are ${Object.keys(SIM_PROFILES).join(', ')}`);
    process.exit(2);
  }
}
const first = values.seed !== undefined ? Number(values.seed) : Number(values.from);
const count = values.seed !== undefined ? 1 : Number(values.seeds);
if (!Number.isInteger(first) || !Number.isInteger(count) || count < 1) {
  console.error('--seed, --from and --seeds take whole numbers');
  process.exit(2);
}
let failed = 0;
for (const profile of profiles) {
  const started = performance.now();
  let lastReport = started;
  for (let seed = first; seed < first + count; seed++) {
    const result = runRaftSimulation({ seed, ...SIM_PROFILES[profile] });
    if (!result.ok) {
      failed++;
      console.log(`FAIL ${result.failure}\n  replay: npm run sim -- --profile ${profile} --seed ${seed}`);
    } else if (count === 1) {
      console.log(JSON.stringify(result));
    }
    if (performance.now() - lastReport > 5_000) {
      lastReport = performance.now();
      console.log(`${profile}: ${seed - first + 1}/${count} seeds, ${failed} failed`);
    }
  }
  console.log(`${profile}: ${count} seeds from ${first} in ${((performance.now() - started) / 1000).toFixed(1)} s, ${failed} failed so far`);
}
process.exit(failed > 0 ? 1 : 0);
