// A cluster of `kalima node` processes on loopback, for tests that crash, stop and cut masters:
// `kalima init --masters N` (initCluster), each master's config rewritten with free ports and a
// `cluster` section, and one process per master that can be killed, stopped, resumed and started
// again on the same config. Optionally every master reaches every other through a FaultProxy of its
// own for that ordered pair (test/support/fault-proxy.ts), so links can be cut one way or both.
import type { ConsensusStatus } from '../../src/node/cluster.ts';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initCluster } from '../../src/cli/init.ts';
import { isKalimaError } from '../../src/errors.ts';
import { retryable } from '../../src/sdk/retry.ts';
import { toHex } from '../../src/ledger/hash.ts';
import type { Message } from '../../src/ledger/message.ts';
import type { KeyPair } from '../../src/ledger/signature.ts';
import type { CommitReceipt, KalimaClient } from '../../src/sdk/client.ts';
import { tempDir } from './chain.ts';
import { FaultProxy } from './fault-proxy.ts';
import { freePort } from './ports.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(REPO, 'bin', 'kalima.mjs');
const TAIL_CHARS = 16_000;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One master's process, started again on the same config as often as a test likes. */
export class MasterProcess {
  child: ChildProcess | undefined;
  /** How many times it was started. */
  runs = 0;
  private output = '';
  /** Where the current run's output starts in `output` (which is trimmed from the front). */
  private runStart = 0;

  constructor(readonly name: string, readonly configFile: string, readonly url: string, readonly key: string, readonly dataDir: string, readonly clientPort = 0) {}

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last `chars` characters of its output, across its runs. */
  tail(chars = 3_000): string {
    return this.output.slice(-chars);
  }

  /** The current run's output (as much of it as is kept). */
  currentRunOutput(): string {
    return this.output.slice(Math.max(0, this.runStart));
  }

  private keep(text: string): void {
    this.output += text;
    if (this.output.length > TAIL_CHARS) {
      const cut = this.output.length - TAIL_CHARS;
      this.output = this.output.slice(cut);
      this.runStart -= cut;
    }
  }

  /**
   * Spawns it and waits until its API answers GET /status. With `mayEndAtFailpoint`, a process
   * killed by a failpoint of KALIMA_FAILPOINTS before it answered has started (and ended) as asked.
   */
  async start(timeoutMs = 20_000, env: Record<string, string> = {}, options: { mayEndAtFailpoint?: boolean } = {}): Promise<void> {
    if (this.running) throw new Error(`${this.name} is running already`);
    this.runs++;
    this.keep(`\n[${this.name}: run ${this.runs}]\n`);
    this.runStart = this.output.length;
    const child = spawn(process.execPath, [BIN, 'node', '--config', this.configFile], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.child = child;
    liveChildren.add(child);
    child.on('exit', () => liveChildren.delete(child));
    child.stdout!.on('data', (chunk: Buffer) => this.keep(chunk.toString('utf8')));
    child.stderr!.on('data', (chunk: Buffer) => this.keep(chunk.toString('utf8')));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (options.mayEndAtFailpoint === true && child.signalCode === 'SIGKILL' && this.tail().includes('failpoint reached')) return;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${this.name} exited while starting (${child.exitCode ?? child.signalCode}):\n${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`${this.name} did not answer GET /status within ${timeoutMs} ms:\n${this.tail()}`);
      try {
        if ((await fetch(`${this.url}/status`, { signal: AbortSignal.timeout(1_000) })).ok) return;
      } catch {
        // not yet listening
      }
      await sleep(50);
    }
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.running) throw new Error(`${this.name} is not running (signal ${signal})`);
    this.child!.kill(signal);
  }

  /** Sends `signal` (SIGKILL by default) and waits for the process to exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 15_000): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
    if (signal !== 'SIGKILL' && child.signalCode === 'SIGKILL') throw new Error(`${this.name} did not exit within ${timeoutMs} ms of ${signal}:\n${this.tail()}`);
  }
}

/** Every child spawned here that has not exited: killAll() ends them (afterAll). */
const liveChildren = new Set<ChildProcess>();

export function killAll(): void {
  for (const child of liveChildren) child.kill('SIGKILL');
}

/** A master's consensus state in its /status (older nodes lack `rejoining` and `peers`). */
export type ConsensusView = Omit<ConsensusStatus, 'rejoining' | 'peers'> & Partial<Pick<ConsensusStatus, 'rejoining' | 'peers'>>;

export interface StatusView {
  height: number;
  tipHash: string;
  stateDigest: string;
  consensus: ConsensusView;
}

/** GET /status (public), or undefined if the master does not answer within `timeoutMs`. */
export async function statusOf(url: string, timeoutMs = 1_000): Promise<StatusView | undefined> {
  try {
    const response = await fetch(`${url}/status`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) return undefined;
    return (await response.json()) as StatusView;
  } catch {
    return undefined;
  }
}

/** Errors after which the same signed message may be sent again, to any master. */
export { RETRYABLE_CODES, retryable } from '../../src/sdk/retry.ts';

/**
 * Submits one signed message until some master commits it; the same message every time, to the
 * masters in turn from `first` on. Resolves with the receipt and the index of the master that gave it.
 */
export async function submitAnywhere(clients: readonly KalimaClient[], message: Message, options: { first?: number; deadlineMs?: number; pauseMs?: number; describe?: () => string } = {}): Promise<{ receipt: CommitReceipt; via: number }> {
  const started = Date.now();
  const deadlineMs = options.deadlineMs ?? 30_000;
  let last: unknown;
  for (let attempt = 0; ; attempt++) {
    const via = ((options.first ?? 0) + attempt) % clients.length;
    try {
      return { receipt: await clients[via]!.submit(message), via };
    } catch (error) {
      last = error;
      if (!retryable(error)) throw error;
    }
    if (Date.now() - started > deadlineMs) {
      const code = isKalimaError(last) ? `${last.code} ${JSON.stringify(last.details)}` : String(last);
      throw new Error(`a signed message was not committed by any master within ${deadlineMs} ms (${attempt + 1} tries; last: ${code})${options.describe === undefined ? '' : `\n${options.describe()}`}`);
    }
    await sleep(options.pauseMs ?? 20);
  }
}

export interface ProcessCluster {
  root: string;
  admin: KeyPair;
  masters: MasterProcess[];
  /** proxies[from][to]: what master `from` dials to reach master `to` (undefined on the diagonal, or without proxies). */
  proxies: Array<Array<FaultProxy | undefined>>;
  /** The index of the master with this key (x-only, hex), or -1. */
  indexOfKey(key: string | null | undefined): number;
  /** Every master's output tail, for an error message. */
  describe(chars?: number): string;
  /** Kills every process and closes the proxies. */
  shutdown(): Promise<void>;
}

/**
 * `kalima init --masters N` in a temporary directory, each config given free ports, a `cluster`
 * section and `logLevel`; with `proxied`, every master's entry for another master points at a
 * FaultProxy of that ordered pair. The processes are not started (start() each, or startAll()).
 */
export async function createProcessCluster(options: { chain: string; masters: number; tickMs: number; proxied?: boolean; logLevel?: string; logRetention?: number }): Promise<ProcessCluster> {
  const root = await tempDir('kalima-cluster-');
  const cluster = await initCluster({ directory: root, chain: options.chain, masters: options.masters });
  const ports = await Promise.all(cluster.masters.map(async () => ({ api: await freePort(), link: await freePort(), client: await freePort() })));
  const keys = cluster.masters.map((master) => toHex(master.key.publicKey));
  const urls = ports.map((port) => `http://127.0.0.1:${port.api}`);
  const proxies: Array<Array<FaultProxy | undefined>> = [];
  for (let from = 0; from < ports.length; from++) {
    proxies.push(await Promise.all(ports.map(async (port, to) => (options.proxied && to !== from ? FaultProxy.start(port.link) : undefined))));
  }
  const masters: MasterProcess[] = [];
  for (const [index, master] of cluster.masters.entries()) {
    const config = JSON.parse(await readFile(master.configFile, 'utf8')) as Record<string, unknown>;
    config.port = ports[index]!.api;
    // The client listener (client nodes), on a free port as well: init's fixed ones may be taken.
    config.clientPort = ports[index]!.client;
    config.logLevel = options.logLevel ?? 'warn';
    const directory = ports.map((port, to) => ({ key: keys[to]!, host: '127.0.0.1', port: proxies[index]![to]?.port ?? port.link, api: urls[to]!, clientPort: port.client }));
    config.cluster = { linkHost: '127.0.0.1', linkPort: ports[index]!.link, masters: directory, tickMs: options.tickMs, ...(options.logRetention === undefined ? {} : { logRetention: options.logRetention }) };
    await writeFile(master.configFile, JSON.stringify(config));
    const dataDir = resolve(dirname(master.configFile), typeof config.dataDir === 'string' ? config.dataDir : 'data');
    masters.push(new MasterProcess(`m${index + 1}`, master.configFile, urls[index]!, keys[index]!, dataDir, ports[index]!.client));
  }
  return {
    root,
    admin: cluster.admin,
    masters,
    proxies,
    indexOfKey: (key) => (key === null || key === undefined ? -1 : keys.indexOf(key)),
    describe: (chars = 3_000) => masters.map((master) => `--- ${master.name} (${master.running ? 'running' : 'not running'}) ---\n${master.tail(chars)}`).join('\n'),
    async shutdown() {
      await Promise.all(masters.map((master) => master.kill('SIGKILL')));
      await Promise.all(proxies.flat().map((proxy) => proxy?.close()));
    },
  };
}
