// The devnet's Bitcoin (what `npm start` runs): bcoin on regtest, its chain kept under the devnet's
// directory so a restart resumes it, on the port after the devnet's ports (or a free one), handed to
// `runDevnet` so that m1 anchors the chain into it. The core never imports this file:
// bin/kalima.mjs composes it with src/cli/devnet.ts.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { DevnetBitcoin } from '../src/cli/devnet.ts';
import { portIsFree } from '../src/cli/free-port.ts';
import { startBcoin } from './bcoin.ts';

/** Starts the devnet's bcoin; `basePort` is the devnet's first API port (0: a free port). */
export async function startDevnetBitcoin(directory: string, basePort: number, out: NodeJS.WriteStream): Promise<DevnetBitcoin> {
  const home = join(resolve(directory), 'bitcoin');
  await mkdir(home, { recursive: true });
  // One API key per devnet, kept beside its chain so the nodes' configs stay valid across restarts.
  const keyFile = join(home, 'api-key');
  let apiKey: string;
  try {
    apiKey = (await readFile(keyFile, 'utf8')).trim();
  } catch {
    apiKey = randomBytes(16).toString('hex');
    await writeFile(keyFile, `${apiKey}\n`, { mode: 0o600 });
  }
  const preferred = basePort === 0 ? undefined : basePort + 300;
  const port = preferred !== undefined && (await portIsFree(preferred)) ? preferred : undefined;
  out.write(`kalima devnet: starting bcoin (regtest) with its chain in ${join(home, 'chain')}\n`);
  const node = await startBcoin({ memory: false, prefix: join(home, 'chain'), port, apiKey, logLevel: 'warning' });
  return {
    network: node.network.name,
    rpcUrl: node.rpcUrl,
    rpcUser: 'kalima',
    rpcPassword: apiKey,
    mine: (blocks, address) => node.mine(blocks, address),
    stop: () => node.stop(),
  };
}
