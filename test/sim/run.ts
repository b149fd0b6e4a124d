// npm run sim -- [--profile cluster|hostile|all] [--seeds N] [--from S] | [--seed N]
// RAFT_SIM_TRACE=T prints every node's role, term and vote and the messages delivered, each tick after T.
// Runs the seeded Raft simulation over many seeds, or replays one; prints each failure with the
// command that replays it, and exits non-zero if any seed failed.
//
// npm run sim -- --node [--profile cluster|hostile|all] [--seeds N] [--from S] [--jobs J] [--lenient] [--validator on|off] | --node [--profile P] --seed N [--trace]
// The seeded simulation of three real masters (test/sim/node-sim.ts). `--seed N` replays one seed
// and prints its result; with --trace (or NODE_SIM_TRACE=1) its trace, each event on its own line
// with its virtual time, and the masters' log lines; NODE_SIM_TRACE=2 adds every message delivered.
// `--jobs J` runs the seeds in J processes. `--lenient` retries refusals that should not happen
// (and lists them) instead of failing the seed, to look past a known bug. `--validator on|off` runs
// every seed with a validation node, or none (by default the seed decides, as in `npm test`).
//
// npm run sim -- --bridge [--seeds N] [--from S] | --bridge --seed N
// The seeded simulation of the bridge coordinator (test/sim/bridge-sim.ts); `--seed N` prints that seed's result.
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import { SIM_PROFILES, type SimProfile, runRaftSimulation } from './raft-sim.ts';
import { NODE_SIM_PROFILES, type NodeSimProfile, type NodeSimResult, runNodeSimulation } from './node-sim.ts';
import { runBridgeSimulation } from './bridge-sim.ts';

const { values } = parseArgs({
  options: {
    profile: { type: 'string', default: 'all' }, seeds: { type: 'string', default: '1000' }, from: { type: 'string', default: '1' }, seed: { type: 'string' },
    node: { type: 'boolean', default: false }, trace: { type: 'boolean', default: false }, jobs: { type: 'string', default: '1' }, child: { type: 'boolean', default: false },
    lenient: { type: 'boolean', default: false }, validator: { type: 'string' }, bridge: { type: 'boolean', default: false },
  },
});
const first = values.seed !== undefined ? Number(values.seed) : Number(values.from);
const count = values.seed !== undefined ? 1 : Number(values.seeds);
if (!Number.isInteger(first) || !Number.isInteger(count) || count < 1) {
  console.error('--seed, --from and --seeds take whole numbers');
  process.exit(2);
}

if (values.node) process.exit(await runNode());
if (values.bridge) process.exit(await runBridge());

const profiles = values.profile === 'all' ? (Object.keys(SIM_PROFILES) as SimProfile[]) : [values.profile as SimProfile];
for (const profile of profiles) {
  if (!(profile in SIM_PROFILES)) {
    console.error(`unknown profile ${profile}; the profiles are ${Object.keys(SIM_PROFILES).join(', ')}`);
    process.exit(2);
  }
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

/** The node simulation, for each profile: one seed with its trace, or a range (in `--jobs` processes); the exit code. */
async function runNode(): Promise<number> {
  const names = values.profile === 'all' ? (Object.keys(NODE_SIM_PROFILES) as NodeSimProfile[]) : [values.profile as NodeSimProfile];
  for (const name of names) {
    if (!(name in NODE_SIM_PROFILES)) {
      console.error(`unknown profile ${name}; the node simulation's profiles are ${Object.keys(NODE_SIM_PROFILES).join(', ')}`);
      return 2;
    }
  }
  let failed = 0;
  for (const name of names) failed += await runNodeProfile(name);
  return failed > 0 ? 1 : 0;
}

async function runNodeProfile(profile: NodeSimProfile): Promise<number> {
  const options = { ...NODE_SIM_PROFILES[profile], ...(values.lenient ? { lenient: true } : {}), ...(values.validator === undefined ? {} : { validator: values.validator === 'on' }) };
  const replay = (seed: number): string => `npm run sim -- --node --profile ${profile} --seed ${seed}${values.validator === undefined ? '' : ` --validator ${values.validator}`}`;
  const traceLevel = values.trace ? Math.max(1, Number(process.env.NODE_SIM_TRACE ?? 1)) : Number(process.env.NODE_SIM_TRACE ?? 0);
  if (values.seed !== undefined) {
    const result = await runNodeSimulation({
      seed: first, ...options,
      ...(traceLevel > 0 ? { trace: (line: string) => console.log(line), traceMessages: traceLevel > 1 } : {}),
    });
    console.log(`${profile}: ${JSON.stringify(result)}`);
    if (!result.ok) console.log(`FAIL ${result.failure}${traceLevel > 0 ? '' : `\n  trace: ${replay(first)} --trace`}`);
    return result.ok ? 0 : 1;
  }
  if (values.child) {
    // A job of a parent run: results go back to it, one message per seed.
    for (let seed = first; seed < first + count; seed++) process.send!(await runNodeSimulation({ seed, ...options }));
    return 0;
  }
  const jobs = Math.max(1, Math.min(Number(values.jobs) || 1, count));
  const started = performance.now();
  const totals = new Map<string, number>();
  let failed = 0;
  let done = 0;
  let lastReport = started;
  const take = (result: NodeSimResult): void => {
    done++;
    for (const [key, value] of Object.entries(result)) if (typeof value === 'number' && key !== 'seed') totals.set(key, (totals.get(key) ?? 0) + value);
    if (!result.ok) {
      failed++;
      console.log(`FAIL ${result.failure}\n  replay: ${replay(result.seed)} --trace`);
    }
    for (const refusal of result.unexpectedRefusals) console.log(`UNEXPECTED seed ${result.seed} ${refusal}\n  replay: ${replay(result.seed)} --lenient --trace`);
    // Not a failure by itself, but worth a look.
    for (const line of result.errorLogs) console.log(`ERROR LOG seed ${result.seed}: ${line}`);
    for (const note of result.lateReportNotes) console.log(`LATE REPORT ${note}\n  replay: ${replay(result.seed)} --trace`);
    if (performance.now() - lastReport > 5_000) {
      lastReport = performance.now();
      console.log(`node ${profile}: ${done}/${count} seeds, ${failed} failed`);
    }
  };
  if (jobs === 1) {
    for (let seed = first; seed < first + count; seed++) take(await runNodeSimulation({ seed, ...options }));
  } else {
    const per = Math.ceil(count / jobs);
    await Promise.all(Array.from({ length: jobs }, (_, job) => {
      const from = first + job * per;
      const seeds = Math.min(per, first + count - from);
      if (seeds <= 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const args = ['--node', '--child', '--profile', profile, '--from', String(from), '--seeds', String(seeds), ...(values.lenient ? ['--lenient'] : []), ...(values.validator === undefined ? [] : ['--validator', values.validator])];
        const child = fork(process.argv[1]!, args, { execArgv: process.execArgv });
        child.on('message', (result) => take(result as NodeSimResult));
        child.on('error', reject);
        child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`the job for seeds ${from} to ${from + seeds - 1} exited with ${code}`))));
      });
    }));
  }
  const seconds = (performance.now() - started) / 1000;
  const mean = (key: string, digits = 1): string => ((totals.get(key) ?? 0) / count).toFixed(digits);
  console.log(`node ${profile}: ${count} seeds from ${first} in ${seconds.toFixed(1)} s (${((seconds * 1000) / count).toFixed(1)} ms a seed${jobs > 1 ? `, ${jobs} jobs` : ''}), ${failed} failed`);
  console.log(`  per seed: ${mean('writes')} writes (${mean('retries')} retries), height ${mean('height')}, ${mean('terms')} terms, `
    + `${mean('crashes', 2)} crashes (${mean('crashesInWrite', 2)} during a write, ${mean('recoveryCrashes', 2)} while recovering a lost disk, ${mean('diskLosses', 2)} with the disk lost), ${mean('gracefulRestarts', 2)} graceful restarts, `
    + `${mean('partitions', 2)} partitions (${mean('oneWayPartitions', 2)} one-way), ${mean('messages', 0)} messages `
    + `(${mean('dropped')} dropped, ${mean('duplicated')} duplicated, ${mean('cutOff')} cut off), `
    + `${mean('inFlightLost', 2)} writes in flight lost at a crash, ${mean('virtualMs', 0)} virtual ms`);
  const total = (key: string): number => totals.get(key) ?? 0;
  const validatorSeeds = total('validatorSeeds');
  if (validatorSeeds > 0) {
    const per = (key: string, digits = 2): string => (total(key) / validatorSeeds).toFixed(digits);
    console.log(`  validation node in ${validatorSeeds} seeds; per such seed: ${per('validationRecords')} records on the chain (at the end, ${total('validationStalled')} seeds with blocks of news after the last record, ${per('validationLag')} such blocks a seed), `
      + `${per('validatorCrashes')} crashes (${per('validatorDiskLosses')} with the disk lost), ${per('validatorRestarts')} graceful restarts; `
      + `reports in all: ${total('wrongReports')} wrong, ${total('lateReports')} late (${total('lateReportsOwnFault')} across a fault of the validation node's own); ${total('bars')} bars`);
  }
  return failed;
}

/** The bridge simulation over a range of seeds, or one; the exit code. */
async function runBridge(): Promise<number> {
  const started = performance.now();
  const crashes = new Map<string, number>();
  let failed = 0;
  for (let seed = first; seed < first + count; seed++) {
    const result = await runBridgeSimulation(seed);
    for (const name of result.crashedAt) crashes.set(name, (crashes.get(name) ?? 0) + 1);
    if (count === 1) console.log(JSON.stringify(result));
    if (!result.ok) {
      failed++;
      console.log(`FAIL seed ${seed}: ${result.failure}\n  replay: npm run sim -- --bridge --seed ${seed}`);
    }
  }
  console.log(`bridge: ${count} seeds from ${first} in ${((performance.now() - started) / 1000).toFixed(1)} s, ${failed} failed; crashes by failpoint: ${JSON.stringify(Object.fromEntries([...crashes].sort()))}`);
  return failed > 0 ? 1 : 0;
}
