// A real node in its own process, as an operator runs it: `kalima init`, then `kalima node`.
// Also reads the process's CPU time from /proc, per thread, so a run can say where the time went.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

export interface NodeProcess {
  url: string;
  pid: number;
  directory: string;
  adminKeyFile: string;
  /** SIGTERM, and waits for a clean exit (which also writes a --cpu-prof profile). */
  stop(): Promise<number | null>;
}

function run(args: string[], root = REPO_ROOT): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolvePromise(output) : reject(new Error(`${args.join(' ')} exited with ${code}:\n${output}`))));
  });
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolvePromise(code);
    });
  });
}

/** Initialises a fresh chain in a temporary directory and starts a node on a free loopback port. */
export async function startNodeProcess(options: { chain: string; logLevel: string; cpuProfileDir?: string; env?: Record<string, string>; config?: Record<string, unknown>; root?: string }): Promise<NodeProcess> {
  // `root`: another checkout of this repository (an A/B of two commits); by default this one.
  const root = options.root ?? REPO_ROOT;
  const bin = join(root, 'bin', 'kalima.mjs');
  const directory = await mkdtemp(join(tmpdir(), 'kalima-bench-'));
  await run([bin, 'init', '--dir', directory, '--chain', options.chain], root);
  const configFile = join(directory, 'config.json');
  const config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;
  config.logLevel = options.logLevel;
  Object.assign(config, options.config);
  await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);

  const nodeArgs = options.cpuProfileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir];
  // For investigations: KALIMA_BENCH_NODE_ARGS="--trace-gc" adds V8 flags, KALIMA_BENCH_NODE_LOG=FILE keeps the node's stdout.
  if (process.env.KALIMA_BENCH_NODE_ARGS) nodeArgs.push(...process.env.KALIMA_BENCH_NODE_ARGS.split(' ').filter(Boolean));
  const logFile = process.env.KALIMA_BENCH_NODE_LOG;
  const child = spawn(process.execPath, [...nodeArgs, bin, 'node', '--config', configFile, '--port', '0', '--client-port', '0'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  let stderr = '';
  let stdout = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    if (logFile) appendFileSync(logFile, chunk);
    // warn-level logs only; keep the tail for an error report.
    stdout = (stdout + chunk.toString()).slice(-20_000);
  });
  const url = await new Promise<string>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`the node did not start within ${START_TIMEOUT_MS} ms:\n${stderr}`)), START_TIMEOUT_MS);
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-20_000);
      const match = /API on (http:\/\/[^\s,]+)/.exec(stderr);
      if (match !== null) {
        clearTimeout(timer);
        resolvePromise(match[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the node exited with ${code} before it listened:\n${stderr}\n${stdout}`));
    });
  });
  return {
    url,
    pid: child.pid!,
    directory,
    adminKeyFile: join(directory, 'keys', 'admin.json'),
    async stop() {
      child.kill('SIGTERM');
      return waitForExit(child, STOP_TIMEOUT_MS);
    },
  };
}

export async function removeDirectory(directory: string): Promise<void> {
  await rm(directory, { recursive: true, force: true });
}

// ---- CPU accounting from /proc (Linux); empty elsewhere ----

export interface ThreadCpu {
  /** "main" for the main thread, else the name in /proc/PID/task/TID/comm (Node names every thread "node"). */
  name: string;
  tid: number;
  /** User plus system time, in milliseconds. */
  cpuMs: number;
}

const CLOCK_TICKS_PER_SECOND = 100;

function cpuMsFromStat(stat: string): number {
  // Fields after the parenthesised name; utime and stime are fields 14 and 15 of the line.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
}

export async function threadCpu(pid: number): Promise<ThreadCpu[]> {
  try {
    const tids = await readdir(`/proc/${pid}/task`);
    const threads = await Promise.all(tids.map(async (tid) => {
      try {
        const [stat, comm] = await Promise.all([readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8'), readFile(`/proc/${pid}/task/${tid}/comm`, 'utf8')]);
        return { name: Number(tid) === pid ? 'main' : comm.trim(), tid: Number(tid), cpuMs: cpuMsFromStat(stat) };
      } catch {
        return undefined;
      }
    }));
    return threads.filter((thread): thread is ThreadCpu => thread !== undefined);
  } catch {
    return [];
  }
}

export interface CpuSplit {
  /** The event loop: HTTP, JSON, hashing, execution, block building. */
  main: number;
  /** Every other thread: signature workers, LevelDB's libuv pool, V8's GC and compiler helpers. */
  otherThreads: number;
  /**
   * The `busiest` busiest threads other than main. Node names every thread "node", so with as
   * many as there are signature workers this stands for the verifier pool.
   */
  busiestOthers: number;
  total: number;
}

/** CPU used between two snapshots, in cores (CPU seconds per second). */
export function cpuBetween(before: ThreadCpu[], after: ThreadCpu[], elapsedMs: number, busiest = 1): CpuSplit {
  const start = new Map(before.map((thread) => [thread.tid, thread.cpuMs]));
  let main = 0;
  const others: number[] = [];
  for (const thread of after) {
    const used = Math.max(0, thread.cpuMs - (start.get(thread.tid) ?? 0)) / elapsedMs;
    if (thread.name === 'main') main += used;
    else others.push(used);
  }
  others.sort((a, b) => b - a);
  const other = others.reduce((sum, used) => sum + used, 0);
  const top = others.slice(0, busiest).reduce((sum, used) => sum + used, 0);
  const round = (value: number): number => Math.round(value * 100) / 100;
  return { main: round(main), otherThreads: round(other), busiestOthers: round(top), total: round(main + other) };
}
