// `npm run bench -- cluster`: a Kalima cluster of five masters against etcd with five members, on
// this machine's loopback, in one run. Both take writes of the same payload size at the same
// concurrency from the same lean HTTP client (bench/http-client.ts); the bench reports committed
// writes per second, p50 and p99 commit latency, the ratio Kalima ÷ etcd, and Kalima's p99 in an
// open loop at half of its measured maximum. Prints a table and writes bench/results-cluster.json.
//
// Kalima: `kalima init --masters 5` (initCluster) in a temporary directory, each master's config
// given free loopback ports, `verifierThreads: 1` and `logLevel: warn`, one `kalima node` process
// per master. Every write is a device message signed (BIP-340, in worker threads, before the clock
// starts) by one of the registered devices; a master checks its signature before it takes it (a
// follower before it forwards it to the leader), the leader puts it in a block, and every master
// checks every message's signature again when it applies the replicated block. A 200 from
// POST /transaction means the block holding it was committed by a majority, so its latency is the
// message's commit latency.
//
// etcd: five `etcd` members (Debian's etcd-server) on free loopback ports with temporary data
// directories, puts of a value of the same size through the v3 HTTP/JSON gateway
// (POST /v3/kv/put, base64 key and value); a 200 means the put was committed by a majority.
//
//   --quick            short runs (about 1 minute in all)
//   --duration S       seconds per timed run (default 10; quick 3)
//   --concurrency N    requests in flight (default 128)
//   --body-bytes N     payload bytes per write (default 200)
//   --devices N        device keys signing Kalima's messages (default 64; each may have 64 writes in flight)
//   --masters N        Kalima masters (default 5)
//   --members N        etcd members (default 5)
//   --etcd PATH        the etcd binary (default: etcd on PATH)
//   --no-etcd          run the Kalima half only
//   --wait-quiet S     before each timed run, wait up to S seconds for other work on the machine to
//                      drop below 0.25 cores (for shared machines; default 0)
//
// Both clusters run side by side, and the runs alternate (Kalima, then etcd the same way), so each
// pair is measured back to back on this shared machine; the system not under load idles. The load
// generator (this process) shares the machine's cores with every master and member: each run
// reports the CPU the servers, the client, the idle system and everything else used.
// KALIMA_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir DIR" adds V8 flags to every master (as in run.ts).
import { retrying } from '../src/sdk/retry.ts';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { type Server, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initCluster } from '../src/cli/init.ts';
import { isKalimaError } from '../src/errors.ts';
import { toHex } from '../src/ledger/hash.ts';
import { KalimaClient, generateDeviceKey } from '../src/sdk/client.ts';
import { type RawResponse, RawHttpPool } from './http-client.ts';
import { type LoadResult, openLoop } from './ingest.ts';
import { loadAverage, machineInfo } from './machine.ts';
import { type CpuSplit, REPO_ROOT, type ThreadCpu, cpuBetween, threadCpu } from './node-process.ts';
import { MessageSigner, PresignedQueue } from './signer.ts';
import { type LatencySummary, summarize } from './stats.ts';

const THROUGHPUT_RATIO_GOAL = 1.0;
const HALF_LOAD_P99_GOAL_MS = 100;
const CHAIN = 'benchcluster';
const ADDRESS = '/bench/cluster';
const KEYS_PER_DEVICE = 16;
const DEVICE_IN_FLIGHT_MAX = 64;
const BIN = join(REPO_ROOT, 'bin', 'kalima.mjs');
/** Setup writes wait out elections and overloads. */
const SETUP_RETRY = { deadlineMs: 60_000, pauseMs: 100 };
/** The servers count as settled below this many cores in all (timers, heartbeats), or after SETTLE_MAX_MS. */
const SETTLED_CORES = 0.12;
const SETTLE_MAX_MS = 15_000;
const NOISY_CORES = 0.2;
const QUIET_CORES = 0.25;
const installHint = (binary: string): string => [
  `etcd was not found (\`${binary} --version\` failed), so the etcd half is skipped and the ratio is unavailable. To install it on Debian or Ubuntu, as root:`,
  '  apt-get install etcd-server etcd-client    # etcd 3.4 as /usr/bin/etcd; the bench starts its own members, no etcd service needs to run',
  '  (or pass --etcd /path/to/etcd, with a release from https://github.com/etcd-io/etcd/releases)',
].join('\n');

// ---- output helpers ----

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const fmt = (value: number | string | undefined, digits = 0): string => (typeof value === 'number' && Number.isFinite(value) ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '-');
const round2 = (value: number): number => Math.round(value * 100) / 100;
const round3 = (value: number): number => Math.round(value * 1000) / 1000;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function table(rows: string[][], align: Array<'l' | 'r'>): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (align[column] === 'l' ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ').trimEnd()).join('\n');
}

function wholeNumber(value: string | undefined, fallback: number, name: string, min = 1): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min) throw new Error(`--${name} must be a whole number of at least ${min}`);
  return parsed;
}

// ---- child processes: every one is killed at the end, on an error and on Ctrl-C ----

const liveChildren = new Set<ChildProcess>();
const temporaryDirectories = new Set<string>();

function removeDirectory(directory: string): void {
  rmSync(directory, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  temporaryDirectories.delete(directory);
}

let interrupted = false;

/** After an error: whatever still runs is killed, and every data directory left is removed. */
async function cleanUp(): Promise<void> {
  const exits = [...liveChildren].map((child) => once(child, 'exit'));
  for (const child of liveChildren) child.kill('SIGKILL');
  await Promise.race([Promise.all(exits), sleep(5_000)]);
  for (const directory of [...temporaryDirectories]) removeDirectory(directory);
}

/** Ctrl-C or SIGTERM: every server is killed and has exited before its data directory goes. */
function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) return;
  interrupted = true;
  log(`\n${signal}: killing ${liveChildren.size} server processes and removing their data directories`);
  const exits = [...liveChildren].map((child) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : once(child, 'exit').then(() => undefined)));
  for (const child of liveChildren) child.kill('SIGKILL');
  void Promise.race([Promise.all(exits), sleep(5_000)]).then(() => {
    for (const directory of [...temporaryDirectories]) {
      try {
        removeDirectory(directory);
      } catch (error) {
        log(`could not remove ${directory}: ${(error as Error).message}`);
      }
    }
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

class ServerProcess {
  readonly child: ChildProcess;
  private output = '';

  constructor(readonly name: string, command: string, args: string[], cwd: string) {
    this.child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    liveChildren.add(this.child);
    this.child.once('exit', () => liveChildren.delete(this.child));
    this.child.once('error', (error) => this.keep(`spawn error: ${error.message}\n`));
    const keep = (chunk: Buffer): void => this.keep(chunk.toString('utf8'));
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
  }

  private keep(text: string): void {
    this.output = (this.output + text).slice(-8_000);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  tail(chars = 2_000): string {
    return this.output.slice(-chars);
  }

  /** SIGTERM, SIGKILL after `timeoutMs`; resolves once it exited. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (!this.running) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }
}

/** `count` distinct free loopback ports (all listened on at once, so none is handed out twice). */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let index = 0; index < count; index++) {
      const server = createServer().listen(0, '127.0.0.1');
      await once(server, 'listening');
      servers.push(server);
    }
    return servers.map((server) => (server.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

// ---- CPU accounting from /proc ----

const CLOCK_TICKS_PER_SECOND = 100;

/** A process's user and system time (all its threads, living and exited), in ms; NaN if unknown. */
async function processCpu(pid: number): Promise<{ userMs: number; systemMs: number }> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { userMs: (Number(fields[11]) * 1000) / CLOCK_TICKS_PER_SECOND, systemMs: (Number(fields[12]) * 1000) / CLOCK_TICKS_PER_SECOND };
  } catch {
    return { userMs: Number.NaN, systemMs: Number.NaN };
  }
}

/** The machine's CPU time from /proc/stat, in ms: user + nice, system, irq + softirq, steal. */
async function machineStat(): Promise<{ userMs: number; systemMs: number; irqMs: number; stealMs: number } | undefined> {
  try {
    const fields = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map((field) => (Number(field) * 1000) / CLOCK_TICKS_PER_SECOND);
    return { userMs: fields[0]! + fields[1]!, systemMs: fields[2]!, irqMs: fields[5]! + fields[6]!, stealMs: fields[7]! };
  } catch {
    return undefined;
  }
}

interface CpuWindow {
  wallMs: number;
  /** Cores used by each server process, in the order given. */
  servers: number[];
  serversTotal: number;
  /** The servers' kernel time (system calls: sockets, fsync), in cores; inside serversTotal. */
  serversSystem: number;
  /**
   * Kalima only, by thread: the leader's and one follower's event loop (main), busiest other thread
   * (with verifierThreads 1, the verifier), and the rest (LevelDB's libuv pool, V8's helpers).
   */
  threads?: { leader: CpuSplit; follower: CpuSplit | undefined };
  /** This process: the load generator. */
  client: number;
  /** The servers of the system not under load, idling meanwhile. */
  idleServers: number;
  /** Busy cores outside the servers and this process: otherUser + otherKernel. */
  other: number;
  /** User time of other processes: other programs on the machine. */
  otherUser: number;
  /**
   * Kernel time charged to no process measured here: interrupts and softirqs (loopback packets are
   * delivered in softirqs), kernel threads (the ext4 journal, block I/O workers), and other
   * programs' system calls.
   */
  otherKernel: number;
  steal: number;
}

/**
 * Starts a CPU window over the servers `pids` (the system under load); the other servers in
 * `allPids` (the idle system) are counted apart. The returned function ends the window.
 */
async function cpuWindow(pids: number[], allPids: number[] = pids, leaderPid?: number): Promise<() => Promise<CpuWindow>> {
  const idlePids = allPids.filter((pid) => !pids.includes(pid));
  const followerPid = leaderPid === undefined ? undefined : pids.find((pid) => pid !== leaderPid);
  const threadsOf = (pid: number | undefined): Promise<ThreadCpu[]> => (pid === undefined ? Promise.resolve([]) : threadCpu(pid));
  const [before, idleBefore, machineBefore, leaderBefore, followerBefore] = await Promise.all([Promise.all(pids.map(processCpu)), Promise.all(idlePids.map(processCpu)), machineStat(), threadsOf(leaderPid), threadsOf(followerPid)]);
  const selfBefore = process.cpuUsage();
  const start = performance.now();
  return async () => {
    const wallMs = performance.now() - start;
    const self = process.cpuUsage(selfBefore);
    const [after, idleAfter, machineAfter, leaderAfter, followerAfter] = await Promise.all([Promise.all(pids.map(processCpu)), Promise.all(idlePids.map(processCpu)), machineStat(), threadsOf(leaderPid), threadsOf(followerPid)]);
    const used = after.map((cpu, index) => ({ user: (cpu.userMs - before[index]!.userMs) / wallMs, system: (cpu.systemMs - before[index]!.systemMs) / wallMs }));
    const finite = (value: number): number => (Number.isFinite(value) ? value : 0);
    const serversUser = used.reduce((sum, cpu) => sum + finite(cpu.user), 0);
    const serversSystem = used.reduce((sum, cpu) => sum + finite(cpu.system), 0);
    const clientUser = self.user / 1000 / wallMs;
    const clientSystem = self.system / 1000 / wallMs;
    const known = machineBefore !== undefined && machineAfter !== undefined;
    const delta = (key: 'userMs' | 'systemMs' | 'irqMs' | 'stealMs'): number => (known ? (machineAfter[key] - machineBefore[key]) / wallMs : Number.NaN);
    const idleUser = idleAfter.reduce((sum, cpu, index) => sum + finite((cpu.userMs - idleBefore[index]!.userMs) / wallMs), 0);
    const idleSystem = idleAfter.reduce((sum, cpu, index) => sum + finite((cpu.systemMs - idleBefore[index]!.systemMs) / wallMs), 0);
    const otherUser = Math.max(0, delta('userMs') - serversUser - clientUser - idleUser);
    const otherKernel = Math.max(0, delta('systemMs') + delta('irqMs') - serversSystem - clientSystem - idleSystem);
    return {
      wallMs, servers: used.map((cpu) => round2(cpu.user + cpu.system)), serversTotal: round2(serversUser + serversSystem), serversSystem: round2(serversSystem),
      client: round2(clientUser + clientSystem),
      ...(leaderPid === undefined ? {} : { threads: { leader: cpuBetween(leaderBefore, leaderAfter, wallMs), follower: followerPid === undefined ? undefined : cpuBetween(followerBefore, followerAfter, wallMs) } }),
      idleServers: round2(idleUser + idleSystem),
      other: round2(otherUser + otherKernel), otherUser: round2(otherUser), otherKernel: round2(otherKernel),
      steal: round2(delta('stealMs')),
    };
  };
}

/** Waits until the servers are idle (LevelDB compaction, bbolt, the tail of the last run), up to SETTLE_MAX_MS. */
async function waitSettled(pids: number[], what: string): Promise<void> {
  const start = performance.now();
  for (;;) {
    const end = await cpuWindow(pids);
    await sleep(500);
    const { serversTotal } = await end();
    const waitedMs = performance.now() - start;
    if (serversTotal < SETTLED_CORES || waitedMs >= SETTLE_MAX_MS) {
      if (waitedMs > 1_000) log(`  waited ${fmt(waitedMs / 1000, 1)} s for the servers to settle before ${what}${serversTotal >= SETTLED_CORES ? ` (still ${fmt(serversTotal, 2)} cores)` : ''}`);
      return;
    }
  }
}

/** With --wait-quiet: waits (up to `budgetMs`) until work outside the servers and this process, plus steal, drops below QUIET_CORES. */
async function waitQuiet(pids: number[], what: string, budgetMs: number): Promise<void> {
  if (budgetMs === 0) return;
  const start = performance.now();
  for (;;) {
    const end = await cpuWindow(pids);
    await sleep(1_000);
    const { other, steal } = await end();
    const busy = other + (Number.isFinite(steal) ? steal : 0);
    const waitedMs = performance.now() - start;
    if (busy < QUIET_CORES || Number.isNaN(busy)) {
      if (waitedMs > 1_500) log(`  waited ${fmt(waitedMs / 1000, 1)} s for a quiet machine before ${what}`);
      return;
    }
    if (waitedMs >= budgetMs) {
      log(`  the machine stayed busy (${fmt(other, 2)} cores of other work, ${fmt(steal, 2)} stolen, load average ${loadAverage()}); running ${what} anyway`);
      return;
    }
  }
}

// ---- the load generator: closed loop over one or more servers ----

interface RunResult {
  label: string;
  mode: 'closed' | 'open';
  targets: number;
  concurrency: number;
  sent: number;
  committed: number;
  errors: Record<string, number>;
  elapsedMs: number;
  committedPerSecond: number;
  latency: LatencySummary;
  offeredPerSecond?: number;
  sendLagP99Ms?: number;
  cpu: CpuWindow;
  loadAverage: number;
  /** Kalima: the leader, its term, blocks and messages on its chain during the run. etcd: the leader, its WAL fsyncs and backend commits. */
  server: Record<string, number | string>;
}

type LoopResult = Omit<RunResult, 'label' | 'cpu' | 'loadAverage' | 'server'>;
type Check = (response: RawResponse) => string | undefined;

const kalimaCheck: Check = (response) => {
  if (response.status === 200) return undefined;
  try {
    return (JSON.parse(response.body.toString('utf8')) as { error?: { code?: string } }).error?.code ?? `HTTP_${response.status}`;
  } catch {
    return `HTTP_${response.status}`;
  }
};

const etcdCheck: Check = (response) => (response.status === 200 ? undefined : `HTTP_${response.status}`);

/**
 * `concurrency` senders, sender i posting to target i mod targets, each sending its next request as
 * soon as the previous one is answered, until the bodies run out or `durationMs` has passed.
 */
async function closedLoopMany(urls: string[], path: string, bodies: Buffer[], options: { concurrency: number; durationMs: number; check: Check }): Promise<LoopResult> {
  const pools = urls.map((url, index) => new RawHttpPool(url, Math.ceil((options.concurrency - index) / urls.length)));
  const errors: Record<string, number> = {};
  const latencies: number[] = [];
  const count = (code: string): void => void (errors[code] = (errors[code] ?? 0) + 1);
  let next = 0;
  let committed = 0;
  const start = performance.now();
  const deadline = start + options.durationMs;
  let lastDone = start;
  const sender = async (index: number): Promise<void> => {
    const pool = pools[index % pools.length]!;
    while (next < bodies.length && performance.now() < deadline) {
      const body = bodies[next++]!;
      const sentAt = performance.now();
      try {
        const error = options.check(await pool.post(path, body));
        if (error === undefined) {
          committed++;
          latencies.push(performance.now() - sentAt);
        } else count(error);
      } catch (error) {
        count(`NETWORK_${(error as { code?: string }).code ?? 'ERROR'}`);
      }
      lastDone = performance.now();
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, (_, index) => sender(index)));
  } finally {
    for (const pool of pools) pool.close();
  }
  const elapsedMs = lastDone - start;
  return {
    mode: 'closed', targets: urls.length, concurrency: options.concurrency, sent: next, committed, errors, elapsedMs,
    committedPerSecond: (committed * 1000) / Math.max(1, elapsedMs), latency: summarize(latencies),
  };
}

// ---- Kalima ----

interface StatusJson {
  height: number;
  nextGlobalSequence: number;
  consensus?: { role: string; term: number; leader: string | null; leaderApi: string | null; commitIndex?: number };
}

async function statusOf(url: string): Promise<StatusJson | undefined> {
  try {
    const response = await fetch(`${url}/status`, { signal: AbortSignal.timeout(2_000) });
    return response.ok ? ((await response.json()) as StatusJson) : undefined;
  } catch {
    return undefined;
  }
}

interface KalimaCluster {
  root: string;
  masters: Array<{ process: ServerProcess; url: string; key: string }>;
  /** The index of the master that led when last asked. */
  leader: number;
  admin: KalimaClient;
  describe(): string;
}

async function startKalima(count: number): Promise<KalimaCluster> {
  const root = await mkdtemp(join(tmpdir(), 'kalima-bench-cluster-'));
  temporaryDirectories.add(root);
  const init = await initCluster({ directory: root, chain: CHAIN, masters: count });
  const ports = await freePorts(2 * count);
  const urls = init.masters.map((_, index) => `http://127.0.0.1:${ports[2 * index]!}`);
  const keys = init.masters.map((master) => toHex(master.key.publicKey));
  const directory = init.masters.map((_, index) => ({ key: keys[index]!, host: '127.0.0.1', port: ports[2 * index + 1]!, api: urls[index]! }));
  for (const [index, master] of init.masters.entries()) {
    const config = JSON.parse(await readFile(master.configFile, 'utf8')) as Record<string, unknown>;
    Object.assign(config, { port: ports[2 * index]!, clientPort: 0, logLevel: 'warn', verifierThreads: 1 });
    config.cluster = { linkHost: '127.0.0.1', linkPort: ports[2 * index + 1]!, masters: directory, tickMs: 50 };
    await writeFile(master.configFile, `${JSON.stringify(config, null, 2)}\n`);
  }
  const nodeArgs = (process.env.KALIMA_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const masters = init.masters.map((master, index) => ({
    process: new ServerProcess(`m${index + 1}`, process.execPath, [...nodeArgs, BIN, 'node', '--config', master.configFile], REPO_ROOT), url: urls[index]!, key: keys[index]!,
  }));
  const describe = (): string => masters.map((master) => `--- ${master.process.name} ---\n${master.process.tail()}`).join('\n');
  const cluster: KalimaCluster = { root, masters, leader: -1, admin: new KalimaClient({ url: urls[0]!, key: init.admin }), describe };
  await findLeader(cluster, 90_000);
  cluster.admin = new KalimaClient({ url: urls[cluster.leader]!, key: init.admin });
  return cluster;
}

/** Waits until every master answers /status and all of them name the same leader; sets `cluster.leader`. */
async function findLeader(cluster: KalimaCluster, timeoutMs = 30_000): Promise<{ leader: number; term: number }> {
  const deadline = Date.now() + timeoutMs;
  const keys = cluster.masters.map((master) => master.key);
  for (;;) {
    for (const master of cluster.masters) if (!master.process.running) throw new Error(`Kalima master ${master.process.name} exited:\n${cluster.describe()}`);
    if (Date.now() > deadline) throw new Error(`the Kalima masters did not agree on a leader within ${timeoutMs} ms:\n${cluster.describe()}`);
    const statuses = await Promise.all(cluster.masters.map((master) => statusOf(master.url)));
    const leader = statuses.findIndex((status) => status?.consensus?.role === 'leader');
    if (leader >= 0 && statuses.every((status) => status !== undefined && status.consensus?.leader === keys[leader])) {
      if (cluster.leader >= 0 && cluster.leader !== leader) log(`  the leader is now ${cluster.masters[leader]!.process.name} (term ${statuses[leader]!.consensus!.term})`);
      cluster.leader = leader;
      return { leader, term: statuses[leader]!.consensus!.term };
    }
    await sleep(200);
  }
}

/** Waits until every master has applied as much of the chain as the leader has. */
async function waitReplicated(cluster: KalimaCluster, timeoutMs = 30_000): Promise<{ nextGlobalSequence: number; height: number; inStepMs: number }> {
  const start = performance.now();
  for (;;) {
    const statuses = await Promise.all(cluster.masters.map((master) => statusOf(master.url)));
    const leader = statuses[cluster.leader];
    if (leader !== undefined && statuses.every((status) => status?.nextGlobalSequence === leader.nextGlobalSequence)) {
      return { nextGlobalSequence: leader.nextGlobalSequence, height: leader.height, inStepMs: Math.round(performance.now() - start) };
    }
    if (performance.now() - start > timeoutMs) {
      throw new Error(`the masters did not reach the same chain within ${timeoutMs} ms: ${statuses.map((status) => `${status?.height ?? '-'}/${status?.nextGlobalSequence ?? '-'}`).join(' ')}`);
    }
    await sleep(100);
  }
}

interface ChainCheck {
  setupMessages: number;
  messagesOnChain: number;
  benchMessagesOnChain: number;
  acknowledged: number;
  height: number;
  mastersInStepAfterMs: number;
}

// ---- etcd ----

interface EtcdCluster {
  root: string;
  version: string;
  members: Array<{ process: ServerProcess; url: string; name: string; id?: string }>;
  leader: number;
}

function etcdBinary(candidate: string): { path: string; version: string } | undefined {
  const probe = spawnSync(candidate, ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined || probe.status !== 0) return undefined;
  const version = /etcd Version:\s*(\S+)/.exec(probe.stdout)?.[1] ?? probe.stdout.split('\n')[0]!.trim();
  return { path: candidate, version };
}

async function etcdStatus(url: string): Promise<{ memberId: string; leader: string } | undefined> {
  try {
    const response = await fetch(`${url}/v3/maintenance/status`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(2_000) });
    if (!response.ok) return undefined;
    const json = (await response.json()) as { header?: { member_id?: string }; leader?: string };
    return json.header?.member_id === undefined || json.leader === undefined ? undefined : { memberId: json.header.member_id, leader: json.leader };
  } catch {
    return undefined;
  }
}

async function startEtcd(binary: { path: string; version: string }, count: number): Promise<EtcdCluster> {
  const root = await mkdtemp(join(tmpdir(), 'etcd-bench-cluster-'));
  temporaryDirectories.add(root);
  const ports = await freePorts(2 * count);
  const names = Array.from({ length: count }, (_, index) => `e${index + 1}`);
  const peerUrl = (index: number): string => `http://127.0.0.1:${ports[2 * index + 1]!}`;
  const clientUrl = (index: number): string => `http://127.0.0.1:${ports[2 * index]!}`;
  const initialCluster = names.map((name, index) => `${name}=${peerUrl(index)}`).join(',');
  const token = `kalima-bench-${toHex(randomBytes(6))}`;
  const members: Array<{ process: ServerProcess; url: string; name: string }> = [];
  for (const [index, name] of names.entries()) {
    const dataDir = join(root, name);
    await mkdir(dataDir, { recursive: true });
    const args = [
      '--name', name, '--data-dir', dataDir,
      '--listen-client-urls', clientUrl(index), '--advertise-client-urls', clientUrl(index),
      '--listen-peer-urls', peerUrl(index), '--initial-advertise-peer-urls', peerUrl(index),
      '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', token,
      '--logger', 'zap', '--log-level', 'warn',
    ];
    members.push({ process: new ServerProcess(name, binary.path, args, root), url: clientUrl(index), name });
  }
  const describe = (): string => members.map((member) => `--- ${member.name} ---\n${member.process.tail()}`).join('\n');
  const deadline = Date.now() + 60_000;
  for (;;) {
    for (const member of members) if (!member.process.running) throw new Error(`etcd member ${member.name} exited while starting:\n${describe()}`);
    if (Date.now() > deadline) throw new Error(`etcd did not elect a leader within 60 s:\n${describe()}`);
    const statuses = await Promise.all(members.map((member) => etcdStatus(member.url)));
    const leaderId = statuses[0]?.leader;
    const leader = statuses.findIndex((status) => status !== undefined && status.memberId === leaderId);
    if (leaderId !== undefined && leaderId !== '0' && leader >= 0 && statuses.every((status) => status?.leader === leaderId)) {
      return { root, version: binary.version, members: members.map((member, index) => ({ ...member, id: statuses[index]!.memberId })), leader };
    }
    await sleep(200);
  }
}

/** The index of the member all members name as leader (waits up to `timeoutMs` for them to agree). */
async function findEtcdLeader(cluster: EtcdCluster, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const statuses = await Promise.all(cluster.members.map((member) => etcdStatus(member.url)));
    const leaderId = statuses[0]?.leader;
    const leader = statuses.findIndex((status) => status !== undefined && status.memberId === leaderId);
    if (leaderId !== undefined && leader >= 0 && statuses.every((status) => status?.leader === leaderId)) {
      cluster.leader = leader;
      return leader;
    }
    if (Date.now() > deadline) throw new Error(`the etcd members did not agree on a leader within ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** Counters from an etcd member's Prometheus /metrics. */
async function etcdMetrics(url: string): Promise<Record<string, number>> {
  const wanted = {
    walFsyncs: 'etcd_disk_wal_fsync_duration_seconds_count',
    backendCommits: 'etcd_disk_backend_commit_duration_seconds_count',
    proposalsCommitted: 'etcd_server_proposals_committed_total',
  };
  const result: Record<string, number> = {};
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2_000) })).text();
    for (const [name, metric] of Object.entries(wanted)) {
      const match = new RegExp(`^${metric}\\s+(\\S+)$`, 'm').exec(text);
      if (match !== null) result[name] = Number(match[1]);
    }
  } catch {
    // no metrics: the columns stay empty
  }
  return result;
}

// ---- the two systems under load ----

type BeforeRun = (pids: number[], what: string) => Promise<void>;

interface KalimaResults {
  warmup: RunResult;
  leader: RunResult;
  spread: RunResult;
  halfLoad: RunResult;
  chain: ChainCheck;
  signingPerSecond: number;
}

interface EtcdResults {
  version: string;
  warmup: RunResult;
  leader: RunResult;
  spread: RunResult;
}

interface KalimaSide {
  closed(label: string, count: number, toLeader: boolean): Promise<RunResult>;
  open(ratePerSecond: number): Promise<RunResult>;
  /** Waits until every master holds the same chain, and counts the bench's messages on it. */
  check(runs: RunResult[]): Promise<ChainCheck>;
  signingPerSecond(): number;
  stop(): Promise<void>;
}

interface EtcdSide {
  version: string;
  closed(label: string, count: number, toLeader: boolean): Promise<RunResult>;
  stop(): Promise<void>;
}

/** Starts the masters, registers the devices, and returns the runs it can make. Adds its pids to `allPids`. */
async function setUpKalima(config: BenchConfig, allPids: number[], beforeRun: BeforeRun): Promise<KalimaSide> {
  const cluster = await startKalima(config.masters);
  const stop = async (): Promise<void> => {
    await Promise.all(cluster.masters.map((master) => master.process.stop()));
    removeDirectory(cluster.root);
  };
  try {
    const pids = cluster.masters.map((master) => master.process.pid);
    allPids.push(...pids);
    const urls = cluster.masters.map((master) => master.url);
    const nameOf = (index: number): string => cluster.masters[index]!.process.name;
    log(`kalima: ${nameOf(cluster.leader)} leads; creating ${ADDRESS} and registering ${config.devices} devices`);
    await retrying(() => cluster.admin.createAddress(ADDRESS, 'cluster benchmark'), SETUP_RETRY);
    const devices = Array.from({ length: config.devices }, () => generateDeviceKey());
    for (let from = 0; from < devices.length; from += 32) {
      await Promise.all(devices.slice(from, from + 32).map((device, index) =>
        retrying(() => cluster.admin.registerDevice(toHex(device.publicKey), { name: `bench-${from + index}`, pub: [ADDRESS], sub: [ADDRESS] }), SETUP_RETRY)));
    }
    const setup = await waitReplicated(cluster);
    const signer = new MessageSigner({ chain: CHAIN, address: ADDRESS, devices, bodyBytes: config.bodyBytes, keysPerDevice: config.keysPerDevice });
    const presigned = new PresignedQueue(signer, log);
    const take = (count: number): Promise<string[]> => presigned.take(count);
    /** One timed run against the leader of the moment (`toLeader`) or every master. */
    const measured = async (label: string, toLeader: boolean, run: (targets: string[]) => Promise<LoopResult>): Promise<RunResult> => {
      await beforeRun(pids, label);
      const { leader, term } = await findLeader(cluster);
      const leaderUrl = urls[leader]!;
      log(`kalima: ${label}${toLeader ? ` (${nameOf(leader)})` : ''}`);
      const before = await statusOf(leaderUrl);
      const end = await cpuWindow(pids, allPids, pids[leader]);
      const result = await run(toLeader ? [leaderUrl] : urls);
      const cpu = await end();
      const after = await statusOf(leaderUrl);
      const blocks = (after?.height ?? Number.NaN) - (before?.height ?? Number.NaN);
      const messages = (after?.nextGlobalSequence ?? Number.NaN) - (before?.nextGlobalSequence ?? Number.NaN);
      const server = {
        leader: nameOf(leader), termBefore: term, termAfter: after?.consensus?.term ?? Number.NaN, leaderAfter: after?.consensus?.role === 'leader' ? nameOf(leader) : 'changed',
        blocks, messagesOnChain: messages, blocksPerSecond: round2((blocks * 1000) / cpu.wallMs), messagesPerBlock: round2(messages / Math.max(1, blocks)),
      };
      if (server.termAfter !== term) log(`  warning: the Raft term moved from ${term} to ${server.termAfter} during this run (a leader election)`);
      return { label, ...result, cpu, loadAverage: loadAverage(), server };
    };
    return {
      async closed(label, count, toLeader) {
        const messages = await take(count);
        const bodies = messages.map((message) => Buffer.from(message, 'utf8'));
        const result = await measured(label, toLeader, (targets) => closedLoopMany(targets, '/transaction', bodies, { concurrency: config.concurrency, durationMs: config.durationMs, check: kalimaCheck }));
        // What a run did not send goes back to the front of the queue, in nonce order.
        presigned.giveBack(messages.slice(result.sent));
        return result;
      },
      async open(rate) {
        const messages = await take(Math.ceil((rate * config.durationMs) / 1000));
        return measured(`open loop at ${fmt(rate)}/s (half of the leader row) to the leader`, true, async ([target]) => {
          const result: LoadResult = await openLoop(target!, messages, { ratePerSecond: rate, connections: config.openLoopConnections, drainTimeoutMs: 30_000 });
          return {
            mode: 'open', targets: 1, concurrency: result.concurrency, sent: result.sent, committed: result.committed, errors: result.errors, elapsedMs: result.elapsedMs,
            committedPerSecond: result.committedPerSecond, latency: result.latency, offeredPerSecond: result.offeredPerSecond, sendLagP99Ms: result.sendLagP99Ms,
          };
        });
      },
      async check(runs) {
        const end = await waitReplicated(cluster);
        const acknowledged = runs.reduce((sum, run) => sum + run.committed, 0);
        return { setupMessages: setup.nextGlobalSequence, messagesOnChain: end.nextGlobalSequence, benchMessagesOnChain: end.nextGlobalSequence - setup.nextGlobalSequence, acknowledged, height: end.height, mastersInStepAfterMs: end.inStepMs };
      },
      signingPerSecond: () => Math.round(presigned.signingPerSecond),
      async stop() {
        await signer.close();
        await stop();
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function setUpEtcd(config: BenchConfig, binary: { path: string; version: string }, allPids: number[], beforeRun: BeforeRun): Promise<EtcdSide> {
  const members = await startEtcd(binary, config.members);
  const stop = async (): Promise<void> => {
    await Promise.all(members.members.map((member) => member.process.stop()));
    removeDirectory(members.root);
  };
  const pids = members.members.map((member) => member.process.pid);
  allPids.push(...pids);
  const urls = members.members.map((member) => member.url);
  log(`etcd: ${members.members[members.leader]!.name} leads`);
  // Keys like Kalima's (each of the devices cycling over its keys), values of the same size.
  let written = 0;
  const bodiesFor = (count: number): Buffer[] => Array.from({ length: count }, () => {
    const index = written++;
    const key = `${ADDRESS}/d${index % config.devices}-s${Math.floor(index / config.devices) % config.keysPerDevice}`;
    return Buffer.from(JSON.stringify({ key: Buffer.from(key).toString('base64'), value: randomBytes(config.bodyBytes).toString('base64') }), 'utf8');
  });
  return {
    version: binary.version,
    async closed(label, count, toLeader) {
      const bodies = bodiesFor(count);
      await beforeRun(pids, label);
      const leader = await findEtcdLeader(members);
      const leaderUrl = urls[leader]!;
      log(`etcd: ${label}${toLeader ? ` (${members.members[leader]!.name})` : ''}`);
      const before = await etcdMetrics(leaderUrl);
      const end = await cpuWindow(pids, allPids);
      const result = await closedLoopMany(toLeader ? [leaderUrl] : urls, '/v3/kv/put', bodies, { concurrency: config.concurrency, durationMs: config.durationMs, check: etcdCheck });
      const cpu = await end();
      const after = await etcdMetrics(leaderUrl);
      const delta = (name: string): number => (after[name] ?? Number.NaN) - (before[name] ?? Number.NaN);
      const server = {
        leader: members.members[leader]!.name, leaderAfter: (await findEtcdLeader(members)) === leader ? members.members[leader]!.name : 'changed',
        leaderWalFsyncs: delta('walFsyncs'), leaderBackendCommits: delta('backendCommits'), leaderProposalsCommitted: delta('proposalsCommitted'),
        walFsyncsPerSecond: round2((delta('walFsyncs') * 1000) / cpu.wallMs), putsPerWalFsync: round2(result.committed / Math.max(1, delta('walFsyncs'))),
      };
      return { label, ...result, cpu, loadAverage: loadAverage(), server };
    },
    stop,
  };
}

// ---- the bench ----

const OPTIONS = {
  quick: { type: 'boolean', default: false },
  duration: { type: 'string' },
  concurrency: { type: 'string' },
  'body-bytes': { type: 'string' },
  devices: { type: 'string' },
  masters: { type: 'string' },
  members: { type: 'string' },
  etcd: { type: 'string' },
  'no-etcd': { type: 'boolean', default: false },
  'wait-quiet': { type: 'string' },
} as const;

function benchConfig(argv: string[]) {
  const { values } = parseArgs({ args: argv, options: OPTIONS });
  const quick = values.quick === true;
  const concurrency = wholeNumber(values.concurrency, 128, 'concurrency');
  return {
    quick,
    waitQuietMs: wholeNumber(values['wait-quiet'], 0, 'wait-quiet', 0) * 1000,
    durationMs: wholeNumber(values.duration, quick ? 3 : 10, 'duration') * 1000,
    concurrency,
    bodyBytes: wholeNumber(values['body-bytes'], 200, 'body-bytes'),
    devices: Math.max(wholeNumber(values.devices, 64, 'devices'), Math.ceil(concurrency / DEVICE_IN_FLIGHT_MAX)),
    keysPerDevice: KEYS_PER_DEVICE,
    masters: wholeNumber(values.masters, 5, 'masters'),
    members: wholeNumber(values.members, 5, 'members'),
    etcd: values['no-etcd'] === true ? null : values.etcd ?? 'etcd',
    warmupMessages: quick ? 1_000 : 3_000,
    /** Pre-signed messages per closed-loop run: 1.5 × the warm-up's rate × the duration, within these bounds. */
    minMessages: quick ? 1_000 : 4_000,
    maxMessages: quick ? 10_000 : 40_000,
    openLoopConnections: 256,
    verifierThreads: 1,
    tickMs: 50,
  };
}

type BenchConfig = ReturnType<typeof benchConfig>;

export async function runClusterBench(argv: string[]): Promise<void> {
  const config = benchConfig(argv);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.once('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
  });
  try {
    await clusterBench(argv, config);
  } finally {
    await cleanUp();
  }
}

async function clusterBench(argv: string[], config: BenchConfig): Promise<void> {
  const startedAt = new Date();
  const loadAverageAtStart = loadAverage();
  const machine = await machineInfo();
  log(`kalima cluster bench${config.quick ? ' (quick)' : ''}: ${machine.cores} cores, ${machine.cpuModel}, node ${machine.node}, load average ${loadAverage()}`);
  log(`  ${config.masters} Kalima masters and ${config.members} etcd members on loopback; ${config.bodyBytes}-byte payloads, ${config.concurrency} writes in flight, ${config.durationMs / 1000} s per run`);
  log(`  the load generator (this process) shares the ${machine.cores} cores with the masters and the members`);
  const backgroundEnd = await cpuWindow([]);
  await sleep(1_000);
  const background = (await backgroundEnd()).other;
  if (background > NOISY_CORES) log(`warning: ${fmt(background, 2)} cores are busy with other work (load average ${loadAverage()}); the figures will be lower and noisier`);

  const etcd = config.etcd === null ? undefined : etcdBinary(config.etcd);
  if (etcd === undefined && config.etcd !== null) log(installHint(config.etcd));
  const systemEtcd = (await Promise.all([2379, 2380].map(portAnswers))).some(Boolean);
  if (systemEtcd) log('note: something listens on 127.0.0.1:2379/2380 (a system etcd?); this bench uses its own ports, but that process may take CPU');

  const ratePerSecond = (result: { committedPerSecond: number }): number => result.committedPerSecond;
  const clamp = (value: number): number => Math.min(config.maxMessages, Math.max(config.minMessages, Math.ceil(value)));
  // etcd's bodies are cheap to make, so there are twice as many as the warm-up's rate asks for.
  const etcdCount = (rate: number): number => Math.min(400_000, Math.max(config.minMessages, Math.ceil(rate * 2 * (config.durationMs / 1000))));

  // Both systems run side by side (the one not under load idles) so that each Kalima run and the
  // etcd run it is compared with come back to back, in the same stretch of this shared machine.
  // Before each timed run: every server idle, and (with --wait-quiet) the rest of the machine too.
  const allPids: number[] = [];
  const beforeRun = async (pids: number[], what: string): Promise<void> => {
    await waitSettled(allPids, what);
    await waitQuiet(allPids, what, config.waitQuietMs);
  };
  const durationS = config.durationMs / 1000;

  log(`kalima: starting ${config.masters} masters`);
  const kalimaSide = await setUpKalima(config, allPids, beforeRun);
  let etcdSide: EtcdSide | undefined;
  let kalima: KalimaResults | undefined;
  let etcdResult: EtcdResults | undefined;
  try {
    if (etcd !== undefined) {
      log(`etcd ${etcd.version}: starting ${config.members} members`);
      etcdSide = await setUpEtcd(config, etcd, allPids, beforeRun);
    }
    const kWarmup = await kalimaSide.closed(`warm-up, ${config.concurrency} in flight to the leader`, config.warmupMessages, true);
    const eWarmup = await etcdSide?.closed(`warm-up, ${config.concurrency} in flight to the leader`, config.warmupMessages, true);
    // The headline pair: each system's leader, closed loop.
    const kLeader = await kalimaSide.closed(`closed loop, ${config.concurrency} in flight to the leader`, clamp(ratePerSecond(kWarmup) * 1.5 * durationS), true);
    const eLeader = eWarmup === undefined ? undefined : await etcdSide!.closed(`closed loop, ${config.concurrency} in flight to the leader`, etcdCount(ratePerSecond(eWarmup)), true);
    // Kalima's latency goal at half of the headline rate, then the second pair: writes spread over
    // every master / member, which followers forward to the leader.
    const halfLoad = await kalimaSide.open(Math.max(1, ratePerSecond(kLeader) / 2));
    const kSpread = await kalimaSide.closed(`closed loop, ${config.concurrency} in flight spread over all ${config.masters} masters`, clamp(Math.max(ratePerSecond(kLeader), ratePerSecond(kWarmup)) * 1.5 * durationS), false);
    const eSpread = eLeader === undefined ? undefined : await etcdSide!.closed(`closed loop, ${config.concurrency} in flight spread over all ${config.members} members`, etcdCount(Math.max(ratePerSecond(eLeader), ratePerSecond(eWarmup!))), false);
    const chain = await kalimaSide.check([kWarmup, kLeader, halfLoad, kSpread]);
    kalima = { warmup: kWarmup, leader: kLeader, spread: kSpread, halfLoad, chain, signingPerSecond: kalimaSide.signingPerSecond() };
    if (etcdSide !== undefined) etcdResult = { version: etcdSide.version, warmup: eWarmup!, leader: eLeader!, spread: eSpread! };
  } finally {
    log('stopping the servers');
    await Promise.all([kalimaSide.stop(), etcdSide?.stop()]);
  }

  // ---- 3. Ratios, goals, report ----
  if (kalima === undefined) throw new Error('the Kalima runs did not finish');
  const { leader, spread, halfLoad } = kalima;
  const ratioLeader = etcdResult === undefined ? undefined : leader.committedPerSecond / etcdResult.leader.committedPerSecond;
  const ratioSpread = etcdResult === undefined ? undefined : spread.committedPerSecond / etcdResult.spread.committedPerSecond;
  const totalErrors = (run: RunResult): number => Object.values(run.errors).reduce((sum, count) => sum + count, 0);
  const halfLoadMet = halfLoad.latency.p99Ms <= HALF_LOAD_P99_GOAL_MS && halfLoad.committed === halfLoad.sent;
  const goals = {
    throughputRatio: { goal: THROUGHPUT_RATIO_GOAL, headline: 'Kalima writes to the leader ÷ etcd puts to its leader', ratio: ratioLeader === undefined ? null : round3(ratioLeader), spreadRatio: ratioSpread === undefined ? null : round3(ratioSpread), met: ratioLeader === undefined ? null : ratioLeader >= THROUGHPUT_RATIO_GOAL },
    halfLoadP99: { goalMs: HALF_LOAD_P99_GOAL_MS, offeredPerSecond: halfLoad.offeredPerSecond, p99Ms: halfLoad.latency.p99Ms, allCommitted: halfLoad.committed === halfLoad.sent, met: halfLoadMet },
    everyMessageSignedAndVerified: {
      devices: config.devices, acknowledged: kalima.chain.acknowledged, benchMessagesOnChain: kalima.chain.benchMessagesOnChain,
      met: kalima.chain.benchMessagesOnChain >= kalima.chain.acknowledged,
    },
  };
  const verdict = (met: boolean | null): string => (met === null ? 'unavailable' : met ? 'MET' : 'NOT MET');
  const serverCores = (run: RunResult): string => run.cpu.servers.map((cores) => fmt(cores, 2)).join(' ');
  /** CPU per committed write, in µs, of `cores` over the run's CPU window. */
  const usPerWrite = (cores: number, run: RunResult): number => (cores * run.cpu.wallMs * 1000) / Math.max(1, run.committed);
  const threadSplit = (run: RunResult, which: 'leader' | 'follower'): string => {
    const split = run.cpu.threads?.[which];
    if (split === undefined) return '-';
    return `${fmt(usPerWrite(split.total, run))} (event loop ${fmt(usPerWrite(split.main, run))}, verifier thread ${fmt(usPerWrite(split.busiestOthers, run))}, other threads ${fmt(usPerWrite(split.otherThreads - split.busiestOthers, run))})`;
  };
  const leaderCell = (run: RunResult): string => `${run.server.leader}${run.server.leaderAfter === 'changed' ? ' (lost it)' : ''}`;
  const row = (system: string, run: RunResult, disk: string): string[] => [
    system, run.label, leaderCell(run), fmt(run.committed), fmt(run.elapsedMs / 1000, 1), fmt(run.committedPerSecond), fmt(run.latency.p50Ms, 1), fmt(run.latency.p99Ms, 1), fmt(run.latency.maxMs, 1),
    fmt(totalErrors(run)), serverCores(run), fmt(usPerWrite(run.cpu.serversTotal, run)), fmt(run.cpu.client, 2), fmt(run.cpu.idleServers, 2), `${fmt(run.cpu.otherUser, 2)}/${fmt(run.cpu.otherKernel, 2)}/${fmt(run.cpu.steal, 2)}`, disk,
  ];
  const kalimaDisk = (run: RunResult): string => `${fmt(run.server.blocksPerSecond)} blocks/s, ${fmt(run.server.messagesPerBlock, 1)} msgs/block`;
  const etcdDisk = (run: RunResult): string => `${fmt(run.server.walFsyncsPerSecond)} WAL fsyncs/s, ${fmt(run.server.putsPerWalFsync, 1)} puts/fsync`;
  const rows = [
    ['system', 'run', 'leader', 'committed', 's', 'per s', 'p50 ms', 'p99 ms', 'max ms', 'errors', 'cores per server process', 'servers µs/write', 'client', 'idle system', 'other user/kernel/steal', 'leader disk'],
    row('Kalima', leader, kalimaDisk(leader)),
    ...(etcdResult === undefined ? [] : [row(`etcd ${etcdResult.version}`, etcdResult.leader, etcdDisk(etcdResult.leader))]),
    row('Kalima', halfLoad, kalimaDisk(halfLoad)),
    row('Kalima', spread, kalimaDisk(spread)),
    ...(etcdResult === undefined ? [] : [row(`etcd ${etcdResult.version}`, etcdResult.spread, etcdDisk(etcdResult.spread))]),
  ];
  const errorsOf = (run: RunResult): string => Object.entries(run.errors).map(([code, count]) => `${code} ×${count}`).join(', ');
  const errorLines = [leader, spread, halfLoad, ...(etcdResult === undefined ? [] : [etcdResult.leader, etcdResult.spread])]
    .filter((run) => totalErrors(run) > 0).map((run) => `  errors in "${run.label}": ${errorsOf(run)}`);
  const maxOther = Math.max(...[leader, spread, halfLoad, ...(etcdResult === undefined ? [] : [etcdResult.leader, etcdResult.spread])].map((run) => run.cpu.otherUser + (Number.isFinite(run.cpu.steal) ? run.cpu.steal : 0)));
  const output = [
    '',
    `Cluster on loopback (${machine.cores} cores, ${machine.cpuModel}, node ${machine.node}): ${config.masters} Kalima masters (verifierThreads 1, tickMs ${config.tickMs}) and ${etcdResult === undefined ? 'no etcd' : `etcd ${etcdResult.version} with ${config.members} members`}`,
    `${config.bodyBytes}-byte payloads, ${config.concurrency} writes in flight (closed loop), ${config.durationMs / 1000} s per run; latency = request sent → commit acknowledged, as the client sees it`,
    table(rows, ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l', 'r', 'r', 'r', 'r', 'l']),
    `  Before the runs, other work kept ${fmt(background, 2)} cores busy (load average ${loadAverageAtStart} at the start). "other user" is other programs; "other kernel" is kernel time no measured process is charged for:`,
    '  loopback packets (softirqs), the ext4 journal and block I/O threads, and other programs\' system calls; "steal" is CPU the hypervisor gave to other guests.',
    `  cores = CPU-seconds per second: each server process (Kalima m1…m${config.masters}, leader ${leader.server.leader}${etcdResult === undefined ? '' : `; etcd e1…e${config.members}, leader ${etcdResult.leader.server.leader}`}), the load generator, the other system's servers (idle meanwhile), and other work.`,
    `  The load generator shares the ${machine.cores} cores with the ${config.masters} masters and the ${config.members} etcd members. Both systems run side by side and take turns in the order of the rows, so each Kalima closed-loop row and the etcd row under it are measured back to back.`,
    `  Kalima, leader row, µs of CPU per committed message: leader ${threadSplit(leader, 'leader')}; a follower ${threadSplit(leader, 'follower')}; the masters' kernel time (sockets, fsync) ${fmt(usPerWrite(leader.cpu.serversSystem, leader))} in all.`,
    `  Every Kalima write is a device message signed with BIP-340 (${config.devices} devices, pre-signed at ${fmt(kalima.signingPerSecond)}/s before each run); the receiving master checks it, and every master checks it again in the replicated block.`,
    `  Chain: ${fmt(kalima.chain.acknowledged)} writes acknowledged, ${fmt(kalima.chain.benchMessagesOnChain)} bench messages on every master's chain (all ${config.masters} in step ${fmt(kalima.chain.mastersInStepAfterMs)} ms after the last run).`,
    ...errorLines,
    '',
    'Goals (measured in this run)',
    table([
      ['goal', 'figure', 'verdict'],
      [`Kalima msgs/s ÷ etcd puts/s ≥ ${THROUGHPUT_RATIO_GOAL.toFixed(1)} (headline: both to their leader)`, ratioLeader === undefined ? 'unavailable (no etcd)' : `${fmt(ratioLeader, 3)} (${fmt(leader.committedPerSecond)} ÷ ${fmt(etcdResult!.leader.committedPerSecond)})`, verdict(goals.throughputRatio.met)],
      ['  the same, spread over every master / member', ratioSpread === undefined ? 'unavailable (no etcd)' : `${fmt(ratioSpread, 3)} (${fmt(spread.committedPerSecond)} ÷ ${fmt(etcdResult!.spread.committedPerSecond)})`, ratioSpread === undefined ? 'unavailable' : ratioSpread >= THROUGHPUT_RATIO_GOAL ? 'MET' : 'NOT MET'],
      [`Kalima p99 commit latency at half of max ≤ ${HALF_LOAD_P99_GOAL_MS} ms`, `${fmt(halfLoad.latency.p99Ms, 1)} ms at ${fmt(halfLoad.offeredPerSecond)}/s offered (${fmt(halfLoad.committed)} of ${fmt(halfLoad.sent)} committed)`, verdict(halfLoadMet)],
      ['every Kalima message signed and verified', `${fmt(kalima.chain.acknowledged)} signed messages acknowledged, ${fmt(kalima.chain.benchMessagesOnChain)} on chain`, verdict(goals.everyMessageSignedAndVerified.met)],
    ], ['l', 'l', 'l']),
  ];
  if (etcd === undefined && config.etcd !== null) output.push('', installHint(config.etcd));
  if (maxOther > NOISY_CORES) output.push(`  warning: other programs (user time) and the hypervisor (steal) took up to ${fmt(maxOther, 2)} cores during a run; the rows may have met different conditions, so the ratio is less reliable.`);
  process.stdout.write(`${output.join('\n')}\n`);

  const results = {
    startedAt: startedAt.toISOString(),
    command: `npm run bench -- cluster${argv.length > 0 ? ` ${argv.join(' ')}` : ''}`,
    machine,
    loadAverageAtStart,
    backgroundLoadCores: background,
    maxOtherLoadCores: maxOther,
    config,
    kalima,
    etcd: etcdResult ?? { unavailable: config.etcd === null ? '--no-etcd' : installHint(config.etcd) },
    goals,
  };
  const resultsFile = join(REPO_ROOT, 'bench', 'results-cluster.json');
  await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
  log(`\nwrote ${resultsFile}`);
}
