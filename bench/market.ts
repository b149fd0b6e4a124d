// `npm run bench -- market`: the marketplace's two speed goals, measured in one run. Prints a table
// and writes bench/results-market.json.
//
// (a) Payment to access: a chain node and the market's store on LevelDB (synced writes), two LND
//     stand-ins in process, the production adapter over gRPC with TLS. For each purchase (made
//     first, not timed) the clock starts as the buyer's wallet sends the payment and stops once the
//     node serves the buyer's read of the listed prefix: the HTLC held, seen by the market's watch,
//     the presumed-commit transaction (initiation and decision synced), the grant committed in a
//     block. The settlement runs after the grant, and its time is reported beside.
// (b) Coordinator transactions per second with the log synced (bench/bridge.ts: LevelDB, two
//     in-process participants, 256 in flight), against the synced LevelDB batches per second of
//     the same disk, measured in the same run: the ratio is what group commit buys.
//
//   --quick           50 purchases and 3,000 coordinator transactions instead of 200 and 20,000
//   --purchases N
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { toHex } from '../src/ledger/hash.ts';
import { LISTING_ID, PREFIX, openMarket } from '../test/support/market.ts';
import { runBridgeTransactions } from './bridge.ts';
import { syncedWriteLatency } from './disk.ts';
import { machineInfo } from './machine.ts';
import { REPO_ROOT } from './node-process.ts';
import { summarize } from './stats.ts';

const ACCESS_P99_GOAL_MS = 200;
const COORDINATOR_GOAL_TX_PER_SECOND = 500;

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const fmt = (value: number, digits = 0): string => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ').trimEnd()).join('\n');
}

async function paymentToAccess(purchases: number): Promise<{ accessMs: number[]; settledMs: number[] }> {
  const directory = await mkdtemp(join(tmpdir(), 'kalima-bench-market-'));
  const market = await openMarket('bench-market', { levelDirectory: directory, settings: { sweepIntervalMs: 60_000 } });
  const accessMs: number[] = [];
  const settledMs: number[] = [];
  try {
    for (let index = 0; index < purchases; index++) {
      const buyer = await market.newBuyer();
      const buyerHex = toHex(buyer.publicKey);
      const purchase = await market.market.buy({ listing: LISTING_ID, buyer: buyerHex });
      // Checked at every block the node applies, and once at the start.
      let stopListening = (): void => {};
      const access = new Promise<number>((resolve) => {
        stopListening = market.node.onBlock(() => {
          if (market.node.mayRead(buyerHex, PREFIX)) resolve(performance.now());
        });
      });
      const started = performance.now();
      const paid = market.wallet.pay(purchase.invoice);
      paid.catch(() => undefined);
      const granted = await access;
      stopListening();
      await paid;
      const settled = performance.now();
      accessMs.push(granted - started);
      settledMs.push(settled - started);
      await market.market.idle();
      if ((index + 1) % 50 === 0) log(`market: ${index + 1} of ${purchases} purchases`);
    }
  } finally {
    await market.close();
    await rm(directory, { recursive: true, force: true });
  }
  return { accessMs, settledMs };
}

export async function runMarketBench(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { quick: { type: 'boolean', default: false }, purchases: { type: 'string' } } });
  const quick = values.quick === true;
  const purchases = values.purchases === undefined ? (quick ? 50 : 200) : Number(values.purchases);
  if (!Number.isInteger(purchases) || purchases < 1) throw new Error('--purchases must be a whole number of at least 1');
  const startedAt = new Date();
  // The node's and the adapter's timers do not hold the process open (they are unref'd): this does, until the end.
  const keepAlive = setInterval(() => {}, 60_000);
  const machine = await machineInfo();
  log(`kalima market bench: ${machine.cores} cores, ${machine.cpuModel}, node ${machine.node}`);

  log('market: warm-up (10 purchases)');
  await paymentToAccess(10);
  log(`market: ${purchases} purchases, one at a time, payment to access`);
  const { accessMs, settledMs } = await paymentToAccess(purchases);
  const access = summarize(accessMs);
  const settled = summarize(settledMs);

  const transactions = quick ? 3_000 : 20_000;
  log('coordinator: warm-up');
  await runBridgeTransactions({ transactions: 2_000, inFlight: 256 });
  log(`coordinator: ${fmt(transactions)} transactions, 256 in flight, and 500 one at a time`);
  const coordinator = await runBridgeTransactions({ transactions, inFlight: 256 });
  const alone = await runBridgeTransactions({ transactions: 500, inFlight: 1 });
  log('disk: 300 synced LevelDB batches');
  const disk = await syncedWriteLatency(300);
  const syncsPerSecond = 1000 / disk.meanMs;

  const accessMet = access.p99Ms <= ACCESS_P99_GOAL_MS;
  const coordinatorMet = coordinator.txPerSecond >= COORDINATOR_GOAL_TX_PER_SECOND;
  const output = [
    '',
    `Payment to access (${purchases} purchases, one at a time; LevelDB synced; LND stand-ins over gRPC and TLS)`,
    table([
      ['', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
      ['payment sent → buyer may read the prefix', fmt(access.p50Ms, 1), fmt(access.p90Ms, 1), fmt(access.p99Ms, 1), fmt(access.maxMs, 1)],
      ['payment sent → payment settled at the buyer', fmt(settled.p50Ms, 1), fmt(settled.p90Ms, 1), fmt(settled.p99Ms, 1), fmt(settled.maxMs, 1)],
    ]),
    '',
    'Coordinator on LevelDB, log synced (two in-process participants)',
    table([
      ['', 'tx/s', 'p50 ms', 'p99 ms', 'forced writes per sync'],
      ['256 in flight', fmt(coordinator.txPerSecond), fmt(coordinator.p50Ms, 2), fmt(coordinator.p99Ms, 2), fmt((2 * coordinator.transactions) / Math.max(1, coordinator.syncedBatches), 1)],
      ['1 in flight', fmt(alone.txPerSecond), fmt(alone.p50Ms, 2), fmt(alone.p99Ms, 2), fmt((2 * alone.transactions) / Math.max(1, alone.syncedBatches), 1)],
      ['synced LevelDB batches alone (same disk)', fmt(syncsPerSecond), fmt(disk.p50Ms, 2), fmt(disk.p99Ms, 2), '1.0'],
    ]),
    `  ratio: ${fmt(coordinator.txPerSecond / syncsPerSecond, 2)} coordinator transactions (256 in flight) per synced batch the disk writes alone; ${fmt(alone.txPerSecond / syncsPerSecond, 2)} one at a time`,
    '',
    `Goal: p99 payment to access ≤ ${ACCESS_P99_GOAL_MS} ms: ${fmt(access.p99Ms, 1)} ms ${accessMet ? 'MET' : 'NOT MET'}`,
    `Goal: ≥ ${COORDINATOR_GOAL_TX_PER_SECOND} coordinator tx/s with the log synced: ${fmt(coordinator.txPerSecond)} ${coordinatorMet ? 'MET' : 'NOT MET'}`,
  ];
  process.stdout.write(`${output.join('\n')}\n`);
  const resultsFile = join(REPO_ROOT, 'bench', 'results-market.json');
  await writeFile(resultsFile, `${JSON.stringify({
    startedAt: startedAt.toISOString(), command: `npm run bench -- market ${args.join(' ')}`.trim(), machine,
    paymentToAccess: access, paymentToSettled: settled, coordinator, coordinatorAlone: alone, disk: { ...disk, syncsPerSecond },
    ratios: { coordinatorPerSync: coordinator.txPerSecond / syncsPerSecond, aloneCoordinatorPerSync: alone.txPerSecond / syncsPerSecond },
    goals: { paymentToAccessP99Ms: { goal: ACCESS_P99_GOAL_MS, met: accessMet }, coordinatorTxPerSecond: { goal: COORDINATOR_GOAL_TX_PER_SECOND, met: coordinatorMet } },
  }, null, 2)}\n`);
  log(`\nwrote ${resultsFile}`);
  clearInterval(keepAlive);
}
