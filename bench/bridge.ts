// `npm run bench -- bridge`: the presumed-commit coordinator's throughput and latency with its log
// on LevelDB in a temp dir, every forced write synced, against two trivial in-process participants.
// Prints a table and writes bench/results-bridge.json.
//
//   --quick               fewer transactions
//   --transactions N      transactions per timed run (default 20,000; quick 3,000)
//   --in-flight K         transactions in flight in the main run (default 256)
//
// `runBridgeTransactions` is the reusable part: N transactions, K in flight, any participants.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BridgeCoordinator } from '../bridge/coordinator.ts';
import type { ParticipantFactory, ParticipantRegistry } from '../bridge/participant.ts';
import type { ParticipantSpec } from '../bridge/records.ts';
import { silentLogger, systemClock, systemRng, systemScheduler } from '../src/ports.ts';
import { LevelKvStore } from '../src/store/level-kv.ts';
import { tempDir } from '../test/support/chain.ts';
import { machineInfo } from './machine.ts';
import { REPO_ROOT } from './node-process.ts';
import { summarize } from './stats.ts';

const GOAL_TX_PER_SECOND = 500;

export interface BridgeBenchOptions {
  /** Transactions to run. */
  readonly transactions: number;
  /** Transactions in flight at once (a closed loop of this many clients). */
  readonly inFlight: number;
  /** The LevelDB directory; a fresh temp dir (removed after) when absent. */
  readonly directory?: string;
  /** Participants other than the two trivial ones: their registry and the specs of each transaction. */
  readonly participants?: { readonly registry: ParticipantRegistry; readonly specs: (index: number) => readonly ParticipantSpec[] };
}

export interface BridgeBenchResult {
  readonly txPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly transactions: number;
  readonly inFlight: number;
  readonly committed: number;
  readonly elapsedMs: number;
  /** Log batches written, of which synced: how many transactions shared a sync. */
  readonly batches: number;
  readonly syncedBatches: number;
}

/** A participant that votes yes and acknowledges at once (after a microtask, like any in-process call). */
const trivial: ParticipantFactory = () => ({
  prepare: async () => 'yes',
  commit: async () => {},
  abort: async () => {},
  inquire: async () => 'unknown',
});

const TRIVIAL: NonNullable<BridgeBenchOptions['participants']> = {
  registry: new Map([['trivial', trivial]]),
  specs: () => [{ kind: 'trivial', args: new Uint8Array([1]) }, { kind: 'trivial', args: new Uint8Array([2]) }],
};

/** Runs `transactions` coordinator transactions, `inFlight` at once, on LevelDB; latency is begin to outcome. */
export async function runBridgeTransactions(options: BridgeBenchOptions): Promise<BridgeBenchResult> {
  const { transactions, inFlight } = options;
  const participants = options.participants ?? TRIVIAL;
  const directory = options.directory ?? (await tempDir('kalima-bench-bridge-'));
  const kv = await LevelKvStore.open(directory);
  try {
    const coordinator = await BridgeCoordinator.open({
      kv, participants: participants.registry, clock: systemClock, rng: systemRng, scheduler: systemScheduler, logger: silentLogger,
      maxLive: Math.max(10_000, inFlight * 2),
    });
    const before = { ...coordinator.logStats };
    const latencies = new Float64Array(transactions);
    let next = 0;
    let committed = 0;
    const start = performance.now();
    const client = async (): Promise<void> => {
      while (next < transactions) {
        const index = next++;
        const began = performance.now();
        const outcome = await coordinator.run({ participants: participants.specs(index) });
        latencies[index] = performance.now() - began;
        if (outcome.outcome === 'committed') committed++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(inFlight, transactions) }, client));
    const elapsedMs = performance.now() - start;
    const after = coordinator.logStats;
    await coordinator.close();
    const latency = summarize(latencies);
    return {
      txPerSecond: Math.round((transactions / elapsedMs) * 1000), p50Ms: latency.p50Ms, p99Ms: latency.p99Ms,
      transactions, inFlight, committed, elapsedMs: Math.round(elapsedMs),
      batches: after.batches - before.batches, syncedBatches: after.syncedBatches - before.syncedBatches,
    };
  } finally {
    await kv.close();
    if (options.directory === undefined) await rm(directory, { recursive: true, force: true });
  }
}

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const fmt = (value: number, digits = 0): string => (Number.isFinite(value) ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '-');

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ').trimEnd()).join('\n');
}

export async function runBridgeBench(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { quick: { type: 'boolean', default: false }, transactions: { type: 'string' }, 'in-flight': { type: 'string' } } });
  const quick = values.quick === true;
  const transactions = values.transactions === undefined ? (quick ? 3_000 : 20_000) : Number(values.transactions);
  const inFlight = values['in-flight'] === undefined ? 256 : Number(values['in-flight']);
  if (!Number.isInteger(transactions) || transactions < 1) throw new Error('--transactions must be a whole number of at least 1');
  if (!Number.isInteger(inFlight) || inFlight < 1) throw new Error('--in-flight must be a whole number of at least 1');
  const startedAt = new Date();
  const machine = await machineInfo();
  log(`kalima bridge bench: ${machine.cores} cores, ${machine.cpuModel}, node ${machine.node}`);

  log('bridge: warm-up');
  await runBridgeTransactions({ transactions: Math.min(2_000, transactions), inFlight });
  const runs: BridgeBenchResult[] = [];
  for (const [count, concurrency] of [[Math.min(500, transactions), 1], [transactions, 16], [transactions, inFlight]] as const) {
    log(`bridge: ${fmt(count)} transactions, ${concurrency} in flight`);
    runs.push(await runBridgeTransactions({ transactions: count, inFlight: concurrency }));
  }
  const main = runs.at(-1)!;
  const met = main.txPerSecond >= GOAL_TX_PER_SECOND;
  const output = [
    '',
    'Bridge coordinator on LevelDB (two in-process participants; initiation and commit records synced, group commit)',
    table([
      ['in flight', 'transactions', 's', 'tx/s', 'p50 ms', 'p99 ms', 'synced batches', 'forced writes per sync'],
      ...runs.map((run) => [
        String(run.inFlight), fmt(run.transactions), fmt(run.elapsedMs / 1000, 1), fmt(run.txPerSecond), fmt(run.p50Ms, 2), fmt(run.p99Ms, 2),
        fmt(run.syncedBatches), fmt((2 * run.transactions) / Math.max(1, run.syncedBatches), 1),
      ]),
    ]),
    '',
    `Goal: ≥ ${GOAL_TX_PER_SECOND} tx/s with the log synced: ${fmt(main.txPerSecond)} tx/s at ${main.inFlight} in flight ${met ? 'MET' : 'NOT MET'}`,
  ];
  process.stdout.write(`${output.join('\n')}\n`);
  const resultsFile = join(REPO_ROOT, 'bench', 'results-bridge.json');
  await writeFile(resultsFile, `${JSON.stringify({ startedAt: startedAt.toISOString(), command: `npm run bench -- bridge ${args.join(' ')}`.trim(), machine, runs, goal: { txPerSecond: GOAL_TX_PER_SECOND, met } }, null, 2)}\n`);
  log(`\nwrote ${resultsFile}`);
}
