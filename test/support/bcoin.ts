// A real bcoin regtest node for tests, in memory, RPC on loopback. bcoin's native addons are not
// built (install scripts stay off), so it runs on its JavaScript backends (NODE_BACKEND=js).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { JsonRpcHeaderClient } from '../../anchors/header-rpc.ts';
import { freePort } from './ports.ts';

const BCOIN = resolve('node_modules/bcoin/bin/node');
const START_TIMEOUT_MS = 30_000;

export interface Bcoin {
  url: string;
  apiKey: string;
  rpc: JsonRpcHeaderClient;
  /** Any RPC call, as bcoin answers it. */
  call(method: string, params?: unknown[]): Promise<unknown>;
  stop(): Promise<void>;
}

export async function startBcoin(): Promise<Bcoin> {
  const port = await freePort();
  const apiKey = `test-${port}`;
  const prefix = await mkdtemp(join(tmpdir(), 'kalima-bcoin-'));
  const child: ChildProcess = spawn(process.execPath, [
    BCOIN, '--network=regtest', '--memory=true', '--workers=false', '--listen=false', '--index-tx=true', '--replace-by-fee=true',
    '--http-host=127.0.0.1', `--http-port=${port}`, `--api-key=${apiKey}`, `--prefix=${prefix}`, '--log-level=error',
    // No wallet: the tests sign their own transactions, and its HTTP port would be fixed (48334).
    '--no-wallet=true',
  ], { env: { ...process.env, NODE_BACKEND: 'js' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = `http://127.0.0.1:${port}/`;
  const rpc = new JsonRpcHeaderClient({ url, user: 'x', password: apiKey, timeoutMs: 30_000 });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(prefix, { recursive: true, force: true });
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    try {
      await rpc.getBlockCount();
      break;
    } catch (error) {
      if (child.exitCode !== null || Date.now() > deadline) {
        await stop();
        throw new Error(`bcoin did not start: ${(error as Error).message}\n${stderr}`);
      }
      await new Promise((done) => setTimeout(done, 200));
    }
  }
  return { url, apiKey, rpc, call: (method, params = []) => rpc.call(method, params), stop };
}
