// Starts bcoin (a full node in JavaScript) on regtest as a stand-in for bitcoind: its JSON-RPC is
// Core's, in the `bcoin` dialect (chains/bitcoin/rpc.ts), on 127.0.0.1 only. One process per
// handle; it logs to a file, and it never outlives its parent (see bcoin-process.cjs).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { BitcoinRpc } from '../chains/bitcoin/rpc.ts';
import { type BitcoinNetwork, parseBitcoinNetwork } from '../chains/bitcoin/network.ts';
import { freePort } from '../src/cli/free-port.ts';

export type BcoinLogLevel = 'none' | 'error' | 'warning' | 'info' | 'debug' | 'spam';

export interface StartBcoinOptions {
  /** Chain in memory (the default), or in LevelDB under `prefix`, which then survives a restart. */
  memory?: boolean;
  /** bcoin's data directory; a new temporary directory when absent. */
  prefix?: string;
  /** The HTTP and RPC port on 127.0.0.1; a free one when absent. */
  port?: number;
  /** The RPC password (any user name is accepted); random when absent. */
  apiKey?: string;
  logLevel?: BcoinLogLevel;
  startTimeoutMs?: number;
}

/**
 * bcoin's regtest activates segwit by BIP-9 signalling (lib/protocol/networks.js: windows of 144
 * blocks, threshold 108): its mempool takes a witness spend once the tip is at this height, and
 * refuses it before ("no-witness-yet"); Core's regtest has segwit from block 1. bcoin 1.0.2
 * predates Taproot and bech32m: no P2TR at all.
 */
export const BCOIN_SEGWIT_HEIGHT = 432;

const SCRIPT = fileURLToPath(new URL('./bcoin-process.cjs', import.meta.url));
const STOP_TIMEOUT_MS = 20_000;
const LOG_TAIL_LINES = 40;
/** A port picked free can be taken before bcoin binds it (parallel tests): pick again this often. */
const PORT_PICKS_MAX = 3;

/** Every bcoin this process started and that has not exited, killed if this process exits first. */
const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

export class BcoinNode {
  readonly network: BitcoinNetwork = parseBitcoinNetwork('bcoin-regtest');
  readonly rpc: BitcoinRpc;
  readonly rpcUrl: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  private constructor(
    readonly port: number,
    readonly apiKey: string,
    readonly prefix: string,
    readonly memory: boolean,
    readonly logFile: string,
    private readonly logLevel: BcoinLogLevel,
    private readonly startTimeoutMs: number,
  ) {
    this.rpcUrl = `http://127.0.0.1:${port}/`;
    // bcoin adds a broadcast transaction to its mempool within milliseconds, or never.
    this.rpc = new BitcoinRpc({ url: this.rpcUrl, auth: { user: 'kalima', password: apiKey }, dialect: 'bcoin', mempoolAcceptanceWaitMs: 1_000 });
  }

  static async start(options: StartBcoinOptions = {}): Promise<BcoinNode> {
    const workDir = mkdtempSync(join(tmpdir(), 'kalima-bcoin-'));
    const prefix = options.prefix ?? join(workDir, 'data');
    const apiKey = options.apiKey ?? randomBytes(16).toString('hex');
    for (let pick = 1; ; pick++) {
      const port = options.port ?? await freePort();
      const node = new BcoinNode(port, apiKey, prefix, options.memory ?? true, join(workDir, 'bcoin.log'),
        options.logLevel ?? 'info', options.startTimeoutMs ?? 60_000);
      try {
        await node.launch();
        return node;
      } catch (error) {
        const portTaken = /EADDRINUSE/.test(node.logTail());
        if (options.port !== undefined || !portTaken || pick >= PORT_PICKS_MAX) throw error;
      }
    }
  }

  get pid(): number {
    if (this.child?.pid === undefined) throw new Error('bcoin is not running');
    return this.child.pid;
  }

  /** Mines `blocks` blocks to `address` (an rb1… or base58 bcoin-regtest address). */
  mine(blocks: number, address: string): Promise<string[]> {
    return this.rpc.generateToAddress(blocks, address);
  }

  /** SIGTERM (bcoin closes its database), then SIGKILL if it has not exited in time. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /** Sends `signal`; waits for the exit unless the signal only pauses or resumes the process. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    child.kill(signal);
    if (signal !== 'SIGSTOP' && signal !== 'SIGCONT') await this.exited;
  }

  /** Stops and starts again on the same port, key and data directory (an in-memory chain starts over). */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** The last lines bcoin logged. */
  logTail(lines = LOG_TAIL_LINES): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines - 1).join('\n');
    } catch {
      return '';
    }
  }

  private async launch(): Promise<void> {
    const logFd = openSync(this.logFile, 'a');
    const child = spawn(process.execPath, [SCRIPT, ...this.flags()], {
      stdio: ['pipe', logFd, logFd],
      // bcoin's native add-ons are not built (install scripts stay off): use its JavaScript backends.
      env: { PATH: process.env.PATH ?? '', NODE_BACKEND: 'js' },
    });
    closeSync(logFd);
    this.child = child;
    liveChildren.add(child);
    let exitedEarly = false;
    this.exited = once(child, 'exit').then(() => {
      exitedEarly = true;
      liveChildren.delete(child);
      if (this.child === child) this.child = undefined;
      this.rpc.close();
    });
    const probe = new BitcoinRpc({ url: this.rpcUrl, auth: { user: 'kalima', password: this.apiKey }, dialect: 'bcoin', maxAttempts: 1, timeoutMs: 2_000 });
    const deadline = Date.now() + this.startTimeoutMs;
    try {
      for (;;) {
        if (exitedEarly) throw new Error(`bcoin exited while starting (log ${this.logFile}):\n${this.logTail()}`);
        try {
          await probe.getBlockCount();
          return;
        } catch {
          if (Date.now() > deadline) {
            child.kill('SIGKILL');
            throw new Error(`bcoin did not answer RPC on ${this.rpcUrl} within ${this.startTimeoutMs} ms (log ${this.logFile}):\n${this.logTail()}`);
          }
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    } finally {
      probe.close();
    }
  }

  private flags(): string[] {
    return [
      '--network=regtest',
      `--memory=${this.memory}`,
      `--prefix=${this.prefix}`,
      '--workers=false',
      // No listening socket; bcoin-process.cjs never connects out either.
      '--listen=false',
      '--index-tx=true',
      // Accept transactions that signal BIP-125 replaceability, as Bitcoin Core does: without this
      // bcoin refuses them as non-standard (replace-by-fee). It still replaces none.
      '--replace-by-fee=true',
      '--http-host=127.0.0.1',
      `--http-port=${this.port}`,
      `--api-key=${this.apiKey}`,
      `--log-level=${this.logLevel}`,
    ];
  }
}

export function startBcoin(options: StartBcoinOptions = {}): Promise<BcoinNode> {
  return BcoinNode.start(options);
}
