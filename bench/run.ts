// `npm run bench`: the node's ingest throughput and commit latency against the machine's
// signature-verification ceiling, measured in one run. Prints a table and writes
// bench/results.json. `npm run bench -- --quick` is a smoke run (about 13 s); a full run takes about 90 s.
//
//   --quick                 short runs, small samples
//   --profile               run the node under --cpu-prof and summarise its main thread
//   --wait-quiet S          before each timed run, wait up to S seconds for other work on the
//                           machine to drop below 0.25 cores (for shared machines; default 0)
//   --duration S            seconds per ingest run (default 10; quick 1)
//   --concurrency N         requests in flight for POST /transaction (default 256)
//   --batch-size N          messages per POST /transactions (default 64)
//   --batch-concurrency N   batches in flight (default 8)
//   --devices N             registered device keys signing the messages (default 64)
//
// `npm run bench -- cluster [options]` runs the cluster bench instead (bench/cluster.ts), and
// `npm run bench -- anchors [options]` the anchoring and proof bench (bench/anchors.ts), and
// `npm run bench -- bridge [options]` the presumed-commit coordinator bench (bench/bridge.ts).
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { KalimaClient, generateDeviceKey, loadDeviceKey } from '../src/sdk/client.ts';
import { toHex } from '../src/ledger/hash.ts';
import { syncedWriteLatency } from './disk.ts';
import { type LoadResult, closedLoop, openLoop } from './ingest.ts';
import { loadAverage, machineCpu, machineInfo } from './machine.ts';
import { type CpuSplit, REPO_ROOT, cpuBetween, removeDirectory, startNodeProcess, threadCpu } from './node-process.ts';
import { type ProfileSummary, summarizeProfileFile } from './profile-summary.ts';
import { MessageSigner, PresignedQueue } from './signer.ts';
import { type VerifyRate, coreCount, libsecpVerifyRate, makeSignatures, nobleVerifyRate } from './verify.ts';
import { backend as verifyBackend } from '../src/ledger/bip340.js';

const INGEST_RATIO_GOAL = 0.5;
const HALF_LOAD_P99_GOAL_MS = 50;
const CHAIN = 'bench';
const ADDRESS = '/bench/sensors';
const BODY_BYTES = 200;
const KEYS_PER_DEVICE = 16;
const QUIET_CORES = 0.25;
const NOISY_CORES = 0.2;
/** The node counts as idle below this many cores (its timers, the demo-free event loop); it gets this long to get there. */
const NODE_IDLE_CORES = 0.05;
const NODE_SETTLE_MAX_MS = 30_000;

const clusterBench = process.argv[2] === 'cluster';
const anchorsBench = process.argv[2] === 'anchors';
const bridgeBench = process.argv[2] === 'bridge';
const marketBench = process.argv[2] === 'market';
const { values } = parseArgs({
  args: clusterBench || anchorsBench || bridgeBench || marketBench ? [] : process.argv.slice(2),
  options: {
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'wait-quiet': { type: 'string' },
    duration: { type: 'string' },
    concurrency: { type: 'string' },
    'batch-size': { type: 'string' },
    'batch-concurrency': { type: 'string' },
    devices: { type: 'string' },
  },
});

function wholeNumber(value: string | undefined, fallback: number, name: string, min = 1): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min) throw new Error(`--${name} must be a whole number of at least ${min}`);
  return parsed;
}

const quick = values.quick === true;
const config = {
  quick,
  waitQuietMs: wholeNumber(values['wait-quiet'], 0, 'wait-quiet', 0) * 1000,
  verify: {
    signatures: quick ? 512 : 4_096,
    warmupMs: quick ? 200 : 1_000,
    durationMs: quick ? 500 : 3_000,
    nobleSample: quick ? 20 : 200,
  },
  ingest: {
    devices: wholeNumber(values.devices, quick ? 16 : 64, 'devices'),
    keysPerDevice: KEYS_PER_DEVICE,
    bodyBytes: BODY_BYTES,
    durationMs: wholeNumber(values.duration, quick ? 1 : 10, 'duration') * 1000,
    concurrency: wholeNumber(values.concurrency, 256, 'concurrency'),
    batchSize: wholeNumber(values['batch-size'], 64, 'batch-size'),
    batchConcurrency: wholeNumber(values['batch-concurrency'], 8, 'batch-concurrency'),
    warmupMessages: quick ? 300 : 4_000,
    /** Pre-signed messages per closed-loop run are sized from the warm-up's rate, within these bounds. */
    minMessages: quick ? 500 : 5_000,
    maxMessages: quick ? 3_000 : 40_000,
    openLoopConnections: 256,
  },
};

// ---- output helpers ----

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const fmt = (value: number, digits = 0): string => (Number.isFinite(value) ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '-');
const round2 = (value: number): number => Math.round(value * 100) / 100;
const round3 = (value: number): number => Math.round(value * 1000) / 1000;

function table(rows: string[][], align: Array<'l' | 'r'>): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (align[column] === 'l' ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ').trimEnd()).join('\n');
}

// ---- how busy the machine is ----

interface LoadWindow {
  wallMs: number;
  /** CPU of the node process, by thread group, in cores. */
  node: CpuSplit | undefined;
  /** CPU of this process (the load generator, or the verify threads), in cores. */
  selfCores: number;
  /** Busy cores on the machine outside the node and this process. */
  otherLoadCores: number;
  /** Cores' worth of time the hypervisor gave to other guests. */
  stealCores: number;
}

/** Starts a measurement window; the returned function ends it. */
async function loadWindow(nodePid?: number, verifierThreads = 1): Promise<() => Promise<LoadWindow>> {
  const [threadsBefore, machineBefore] = await Promise.all([nodePid === undefined ? [] : threadCpu(nodePid), machineCpu()]);
  const selfBefore = process.cpuUsage();
  const start = performance.now();
  return async () => {
    const wallMs = performance.now() - start;
    const self = process.cpuUsage(selfBefore);
    const [threadsAfter, machineAfter] = await Promise.all([nodePid === undefined ? [] : threadCpu(nodePid), machineCpu()]);
    const node = nodePid === undefined ? undefined : cpuBetween(threadsBefore, threadsAfter, wallMs, verifierThreads);
    const selfCores = (self.user + self.system) / 1000 / wallMs;
    const known = machineBefore !== undefined && machineAfter !== undefined;
    const machineCores = known ? (machineAfter.busyMs - machineBefore.busyMs) / wallMs : Number.NaN;
    return {
      wallMs, node, selfCores: round2(selfCores),
      otherLoadCores: round2(Math.max(0, machineCores - (node?.total ?? 0) - selfCores)),
      stealCores: known ? round2((machineAfter.stealMs - machineBefore.stealMs) / wallMs) : Number.NaN,
    };
  };
}

/** With --wait-quiet, waits (up to the budget) until other work uses less than QUIET_CORES. */
async function waitQuiet(what: string, nodePid?: number): Promise<number> {
  if (config.waitQuietMs === 0) return 0;
  const start = performance.now();
  for (;;) {
    const end = await loadWindow(nodePid);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const { otherLoadCores } = await end();
    const waitedMs = performance.now() - start;
    if (otherLoadCores < QUIET_CORES || Number.isNaN(otherLoadCores)) {
      if (waitedMs > 1_500) log(`  waited ${fmt(waitedMs / 1000, 1)} s for a quiet machine before ${what}`);
      return waitedMs;
    }
    if (waitedMs >= config.waitQuietMs) {
      log(`  the machine stayed busy (${fmt(otherLoadCores, 2)} cores of other work); running ${what} anyway`);
      return waitedMs;
    }
  }
}

// ---- phases ----

type VerifyResult = VerifyRate & { otherLoadCores: number; stealCores: number };

async function verifyPhase(what: string, run: () => Promise<VerifyRate> | VerifyRate): Promise<VerifyResult> {
  await waitQuiet(what);
  const end = await loadWindow();
  const rate = await run();
  const window = await end();
  return { ...rate, otherLoadCores: window.otherLoadCores, stealCores: window.stealCores };
}

interface PhaseResult extends LoadResult {
  label: string;
  blocks: number;
  messagesPerBlock: number;
  nodeCpu: CpuSplit;
  /** Node CPU per committed message, in microseconds. */
  nodeCpuUsPerMessage: { main: number; otherThreads: number; verifyWorkers: number; total: number };
  /** The load generator (this process), in cores and per committed message. */
  clientCores: number;
  clientUsPerMessage: number;
  otherLoadCores: number;
  stealCores: number;
  loadAverage: number;
}

/**
 * Waits (up to NODE_SETTLE_MAX_MS) until the node itself is idle: LevelDB compacts what a run wrote
 * for seconds after it, and a run that started during that would pay for the one before it.
 */
async function waitNodeSettled(nodePid: number): Promise<void> {
  const start = performance.now();
  let first: number | undefined;
  for (;;) {
    const end = await loadWindow(nodePid, coreCount());
    await new Promise((resolve) => setTimeout(resolve, 500));
    const nodeCores = (await end()).node?.total ?? 0;
    first ??= nodeCores;
    const waitedMs = performance.now() - start;
    if (nodeCores < NODE_IDLE_CORES || waitedMs >= NODE_SETTLE_MAX_MS) {
      if (first >= NODE_IDLE_CORES) log(`  the node was still busy after the last run (${fmt(first, 2)} cores: compaction); waited ${fmt(waitedMs / 1000, 1)} s${nodeCores >= NODE_IDLE_CORES ? ', and it is still busy' : ''}`);
      return;
    }
  }
}

async function ingestPhase(label: string, nodePid: number, height: () => Promise<number>, run: () => Promise<LoadResult>): Promise<PhaseResult> {
  await waitNodeSettled(nodePid);
  await waitQuiet(label, nodePid);
  log(`ingest: ${label}`);
  const heightBefore = await height();
  const end = await loadWindow(nodePid, coreCount());
  const result = await run();
  const window = await end();
  const blocks = (await height()) - heightBefore;
  const nodeCpu = window.node!;
  const perMessage = (cores: number): number => Math.round((cores * window.wallMs * 1000) / Math.max(1, result.committed));
  return {
    label, ...result, blocks, messagesPerBlock: round2(result.committed / Math.max(1, blocks)),
    nodeCpu, nodeCpuUsPerMessage: {
      main: perMessage(nodeCpu.main), otherThreads: perMessage(nodeCpu.otherThreads), verifyWorkers: perMessage(nodeCpu.busiestOthers), total: perMessage(nodeCpu.total),
    },
    clientCores: window.selfCores, clientUsPerMessage: perMessage(window.selfCores),
    otherLoadCores: window.otherLoadCores, stealCores: window.stealCores, loadAverage: loadAverage(),
  };
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, Math.ceil(value)));
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const machine = await machineInfo();
  log(`kalima bench${quick ? ' (quick)' : ''}: ${machine.cores} cores, ${machine.cpuModel}, node ${machine.node}, load average ${loadAverage()}`);
  const backgroundEnd = await loadWindow();
  await new Promise((resolve) => setTimeout(resolve, quick ? 500 : 1_000));
  const background = (await backgroundEnd()).otherLoadCores;
  if (background > NOISY_CORES) log(`warning: ${fmt(background, 2)} cores are busy with other work; the figures will be lower and noisier than on an idle machine`);

  // 1. The verification ceiling (measured again after the ingest runs).
  log('verification ceiling: making signatures');
  const signatures = makeSignatures(config.verify.signatures);
  const cores = coreCount();
  log(`verification ceiling: libsecp256k1 on 1 thread, then ${cores}; @noble/secp256k1 on ${config.verify.nobleSample} signatures`);
  const libsecpOne = await verifyPhase('the 1-thread verify run', () => libsecpVerifyRate(signatures, 1, config.verify));
  const libsecpAllBefore = await verifyPhase('the all-core verify run', () => libsecpVerifyRate(signatures, cores, config.verify));
  const wasmOne = await verifyPhase('the 1-thread WASM verify run', () => libsecpVerifyRate(signatures, 1, config.verify, 'wasm'));
  const noble = await verifyPhase('the noble verify run', () => nobleVerifyRate(signatures, config.verify.nobleSample));

  // The disk's part of a commit: one synced block-sized LevelDB write.
  await waitQuiet('the disk probe');
  log('disk: synced LevelDB writes of 16 KB');
  const disk = await syncedWriteLatency(quick ? 50 : 300);

  // 2. A real node in its own process.
  const profileDir = values.profile ? join(REPO_ROOT, 'bench', 'profiles', startedAt.toISOString().replace(/[:.]/g, '-')) : undefined;
  log('ingest: starting a node');
  const node = await startNodeProcess({ chain: CHAIN, logLevel: 'warn', cpuProfileDir: profileDir });
  let phases: { warmup: PhaseResult[]; single: PhaseResult; batch: PhaseResult; halfLoad: PhaseResult };
  let signingRate = 0;
  try {
    const admin = new KalimaClient({ url: node.url, key: await loadDeviceKey(node.adminKeyFile) });
    await admin.createAddress(ADDRESS, 'benchmark sensors');
    const devices = Array.from({ length: config.ingest.devices }, () => generateDeviceKey());
    await Promise.all(devices.map((device, index) => admin.registerDevice(toHex(device.publicKey), { name: `bench-${index}`, pub: [ADDRESS], sub: [ADDRESS] })));
    const height = async (): Promise<number> => (await admin.status()).height;

    // Messages are pre-signed before each run; what a run does not send goes back to the front of
    // the queue for the next one, in nonce order.
    const signer = new MessageSigner({ chain: CHAIN, address: ADDRESS, devices, bodyBytes: config.ingest.bodyBytes, keysPerDevice: config.ingest.keysPerDevice });
    const presigned = new PresignedQueue(signer, log);
    const take = (count: number): Promise<string[]> => presigned.take(count);
    const closed = async (label: string, count: number, concurrency: number, batchSize: number): Promise<PhaseResult> => {
      const messages = await take(count);
      const result = await ingestPhase(label, node.pid, height, () => closedLoop(node.url, messages, { concurrency, batchSize, durationMs: config.ingest.durationMs }));
      presigned.giveBack(messages.slice(result.sent));
      return result;
    };

    try {
      const { durationMs, concurrency, batchSize, batchConcurrency, warmupMessages, minMessages, maxMessages } = config.ingest;
      const durationS = durationMs / 1000;
      // Warm-up: the node's JIT, connections, LevelDB; its rate also sizes the timed runs.
      const warmSingle = await closed('warm-up POST /transaction', warmupMessages, concurrency, 1);
      const warmBatch = await closed('warm-up POST /transactions', Math.ceil(warmupMessages / 2), batchConcurrency, batchSize);
      const single = await closed(`POST /transaction, ${concurrency} in flight`, clamp(warmSingle.committedPerSecond * 1.5 * durationS, minMessages, maxMessages), concurrency, 1);
      const batchRate = Math.max(warmBatch.committedPerSecond, single.committedPerSecond);
      const batch = await closed(`POST /transactions x${batchSize}, ${batchConcurrency} in flight`, clamp(batchRate * 1.5 * durationS, minMessages, maxMessages), batchConcurrency, batchSize);
      const rate = Math.max(1, single.committedPerSecond / 2);
      const openMessages = await take(Math.ceil(rate * durationS));
      const halfLoad = await ingestPhase(`POST /transaction, open loop at ${fmt(rate)}/s`, node.pid, height, () =>
        openLoop(node.url, openMessages, { ratePerSecond: rate, connections: config.ingest.openLoopConnections, drainTimeoutMs: 30_000 }));
      phases = { warmup: [warmSingle, warmBatch], single, batch, halfLoad };
      signingRate = presigned.signingPerSecond;
    } finally {
      await signer.close();
    }
  } finally {
    log('ingest: stopping the node');
    const exitCode = await node.stop();
    if (exitCode !== 0) log(`warning: the node exited with ${exitCode}`);
    await removeDirectory(node.directory);
  }
  log('verification ceiling: all cores again');
  const libsecpAllAfter = await verifyPhase('the second all-core verify run', () => libsecpVerifyRate(signatures, cores, config.verify));

  // 3. The profile of the node's main thread, if asked for.
  let profile: (ProfileSummary & { file: string }) | undefined;
  if (profileDir !== undefined) {
    const files = (await readdir(profileDir)).filter((file) => file.endsWith('.cpuprofile')).sort();
    // Node names profiles CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is the main thread.
    const mainFile = files.find((file) => file.split('.')[4] === '0') ?? files[0];
    if (mainFile !== undefined) profile = { file: join(profileDir, mainFile), ...(await summarizeProfileFile(join(profileDir, mainFile), 20)) };
  }

  // 4. Ratios and goals. The ceiling is the higher of the two all-core runs, so a dip in one of
  // them cannot flatter the ratio.
  const { single, batch, halfLoad } = phases;
  const libsecpAll = libsecpAllBefore.perSecond >= libsecpAllAfter.perSecond ? libsecpAllBefore : libsecpAllAfter;
  const ceiling = libsecpAll.perSecond;
  const ratioSingle = single.committedPerSecond / ceiling;
  const ratioBatch = batch.committedPerSecond / ceiling;
  const goals = {
    ingestRatio: { goal: INGEST_RATIO_GOAL, ceiling, single: round3(ratioSingle), batch: round3(ratioBatch), singleMet: ratioSingle >= INGEST_RATIO_GOAL, batchMet: ratioBatch >= INGEST_RATIO_GOAL },
    halfLoadP99: { goalMs: HALF_LOAD_P99_GOAL_MS, p99Ms: halfLoad.latency.p99Ms, met: halfLoad.latency.p99Ms <= HALF_LOAD_P99_GOAL_MS && halfLoad.committed === halfLoad.requests },
  };
  // The CPU-time view: a verify costs X µs of CPU; a committed message costs the node Y (main
  // thread M) and the load generator C. CPU-bound on an otherwise idle machine, ingest ≤
  // min(cores / (Y + C), 1 / M) while the ceiling is cores / X.
  const verifyCpuUs = 1e6 / Math.max(libsecpAllBefore.perCpuSecond, libsecpAllAfter.perCpuSecond);
  const cpuView = (phase: PhaseResult) => ({
    nodeUsPerMessage: phase.nodeCpuUsPerMessage.total,
    mainUsPerMessage: phase.nodeCpuUsPerMessage.main,
    clientUsPerMessage: phase.clientUsPerMessage,
    verifyShareOfNodeCpu: round3(verifyCpuUs / phase.nodeCpuUsPerMessage.total),
    idleMachineRatioEstimate: round2(Math.min(verifyCpuUs / (phase.nodeCpuUsPerMessage.total + phase.clientUsPerMessage), verifyCpuUs / (cores * phase.nodeCpuUsPerMessage.main))),
  });
  const cpuTime = { verifyCpuUs: Math.round(verifyCpuUs), single: cpuView(single), batch: cpuView(batch) };
  // The ceiling run that was not used cannot skew the verdicts, so it does not count here.
  const measuredPhases = [libsecpOne, libsecpAll, single, batch, halfLoad];
  const maxOtherLoad = Math.max(...measuredPhases.map((phase) => phase.otherLoadCores));
  // Independent threads should scale with the cores; when the all-core rate falls well short of
  // cores × the one-thread rate, something (other work, the host) took CPU from that run.
  const ceilingScaling = round2(libsecpAll.perSecond / libsecpOne.perSecond);
  const ceilingScaledPoorly = ceilingScaling < 0.9 * cores;
  const maxSteal = Math.max(...measuredPhases.map((phase) => phase.stealCores));

  // 5. The report.
  const verdict = (met: boolean): string => (met ? 'MET' : 'NOT MET');
  const verifyRow = (name: string, rate: VerifyResult): string[] => [
    name, String(rate.threads), fmt(rate.verified), fmt(rate.perSecond), fmt(rate.perCpuSecond), fmt(rate.otherLoadCores, 2),
  ];
  const ingestRow = (phase: PhaseResult): string[] => [
    phase.label, fmt(phase.committed), fmt(phase.elapsedMs / 1000, 1), fmt(phase.committedPerSecond), fmt(phase.latency.p50Ms, 1), fmt(phase.latency.p99Ms, 1),
    fmt(phase.messagesPerBlock, 1), `${fmt(phase.nodeCpu.main, 2)}/${fmt(phase.nodeCpu.otherThreads, 2)}`,
    `${fmt(phase.nodeCpuUsPerMessage.main)}/${fmt(phase.nodeCpuUsPerMessage.verifyWorkers)}/${fmt(phase.nodeCpuUsPerMessage.otherThreads - phase.nodeCpuUsPerMessage.verifyWorkers)}`,
    fmt(phase.clientCores, 2), fmt(phase.otherLoadCores, 2),
    String(Object.values(phase.errors).reduce((sum, count) => sum + count, 0)),
  ];
  const output = [
    '',
    `BIP-340 verification ceiling (${machine.cores} cores, ${machine.cpuModel}, node ${machine.node})`,
    table([
      ['implementation', 'threads', 'verified', 'verifies/s', 'per CPU-second', 'other load'],
      verifyRow(`libsecp256k1 (the node's backend: ${verifyBackend})`, libsecpOne),
      verifyRow(`libsecp256k1 (${verifyBackend}), all cores`, libsecpAllBefore),
      verifyRow('  the same, after the ingest runs', libsecpAllAfter),
      verifyRow('libsecp256k1 (tiny-secp256k1 WASM alone)', wasmOne),
      verifyRow('@noble/secp256k1 schnorr.verify', noble),
    ], ['l', 'r', 'r', 'r', 'r', 'r']),
    '',
    `Disk: a synced 16 KB LevelDB write (one block) takes p50 ${fmt(disk.p50Ms, 2)} ms, p99 ${fmt(disk.p99Ms, 2)} ms, max ${fmt(disk.maxMs, 2)} ms (${disk.count} writes)`,
    '',
    `Ingest over HTTP: ${BODY_BYTES}-byte bodies, ${config.ingest.devices} devices, each message acknowledged once its block is fsynced`,
    table([
      ['run', 'committed', 's', 'msgs/s', 'p50 ms', 'p99 ms', 'msgs/block', 'node cores main/other', 'node µs/msg main/verify/rest', 'client cores', 'other load', 'errors'],
      ingestRow(single),
      ingestRow(batch),
      ingestRow(halfLoad),
    ], ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']),
    `  cores = CPU-seconds per second; µs/msg = node CPU per committed message (verify = its ${cores} busiest non-main threads, the verifier pool;`,
    `  rest = LevelDB, GC and other helper threads); "other load" = busy cores outside the node and this process.`,
    `  Batch latency is per request: every message of a batch is acknowledged at that latency. Open-loop latency runs from each message's due time.`,
    '',
    'Goals (measured in this run)',
    `  ingest ÷ all-core verify ceiling (${fmt(ceiling)}/s) ≥ ${INGEST_RATIO_GOAL}: POST /transaction ${fmt(ratioSingle, 3)} ${verdict(goals.ingestRatio.singleMet)}; ` +
      `POST /transactions x${config.ingest.batchSize} ${fmt(ratioBatch, 3)} ${verdict(goals.ingestRatio.batchMet)}`,
    `  p99 commit latency at half load ≤ ${HALF_LOAD_P99_GOAL_MS} ms: ${fmt(halfLoad.latency.p99Ms, 1)} ms at ${fmt(halfLoad.offeredPerSecond ?? 0)} msgs/s offered ${verdict(goals.halfLoadP99.met)}`,
  ];
  if (ceilingScaledPoorly) {
    output.push(`  warning: the all-core ceiling is only ${fmt(ceilingScaling, 2)}× the one-thread rate on ${cores} cores; the machine was probably disturbed, so the ratios are not reliable.`);
  }
  if (maxOtherLoad > NOISY_CORES || maxSteal > NOISY_CORES) {
    output.push(`  warning: other work kept up to ${fmt(maxOtherLoad, 2)} cores busy (steal up to ${fmt(maxSteal, 2)}) during this run; it depresses the runs unequally, so treat these verdicts with care.`);
  }
  output.push(
    '',
    `CPU-time view: one verify costs ${fmt(verifyCpuUs)} µs of CPU; per committed message`,
    ...([['POST /transaction', cpuTime.single], [`POST /transactions x${config.ingest.batchSize}`, cpuTime.batch]] as const).map(([name, view]) =>
      `  ${name}: node ${fmt(view.nodeUsPerMessage)} µs (main thread ${fmt(view.mainUsPerMessage)}), load generator ${fmt(view.clientUsPerMessage)} µs; ` +
      `verification is ${fmt(view.verifyShareOfNodeCpu * 100)}% of the node's CPU; CPU-bound estimate of ingest ÷ ceiling ${fmt(view.idleMachineRatioEstimate, 2)}`),
  );
  if (profile !== undefined) {
    output.push('', `Node main thread profile (${profile.file}): busy ${fmt(profile.totalMs - profile.idleMs)} ms of ${fmt(profile.totalMs)} ms`);
    output.push(table([['self %', 'function', 'where'], ...profile.functions.slice(0, 15).map((entry) => [fmt(entry.share, 1), entry.name, entry.where])], ['r', 'l', 'l']));
  }
  process.stdout.write(`${output.join('\n')}\n`);

  const results = {
    startedAt: startedAt.toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    machine,
    backgroundLoadCores: background,
    maxOtherLoadCores: maxOtherLoad,
    maxStealCores: maxSteal,
    ceilingScaling,
    config,
    disk: { syncedBlockWrite: disk },
    verify: { backend: verifyBackend, libsecpOneThread: libsecpOne, libsecpAllCores: libsecpAllBefore, libsecpAllCoresAfterIngest: libsecpAllAfter, wasmOneThread: wasmOne, nobleOneThread: noble },
    ingest: phases,
    signing: { messagesPerSecond: Math.round(signingRate) },
    goals,
    cpuTime,
    profile,
  };
  const resultsFile = join(REPO_ROOT, 'bench', 'results.json');
  await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
  log(`\nwrote ${resultsFile}`);
}

if (clusterBench) await (await import('./cluster.ts')).runClusterBench(process.argv.slice(3));
else if (anchorsBench) await (await import('./anchors.ts')).runAnchorsBench(process.argv.slice(3));
else if (bridgeBench) await (await import('./bridge.ts')).runBridgeBench(process.argv.slice(3));
else if (marketBench) await (await import('./market.ts')).runMarketBench(process.argv.slice(3));
else await main();
