// The bcoin launcher: a persistent node keeps its chain over a stop, a SIGKILL and a restart on the
// same port; a start that fails says why with bcoin's log; a bcoin never outlives its parent.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { payments } from 'bitcoinjs-lib';
import { afterAll, describe, expect, it } from 'vitest';
import { type BcoinNode, startBcoin } from '../../regtest/bcoin.ts';

const started: BcoinNode[] = [];
afterAll(async () => {
  for (const node of started) await node.stop();
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

describe('startBcoin', () => {
  it('a persistent node keeps its height over stop, SIGKILL and restart, on the same port', async () => {
    const node = await startBcoin({ memory: false });
    started.push(node);
    const burn = payments.p2wpkh({ hash: new Uint8Array(20).fill(1), network: node.network.bitcoinjs }).address!;
    const hashes = await node.mine(5, burn);
    const firstPid = node.pid;
    await node.restart();
    expect(node.pid).not.toBe(firstPid);
    expect(isAlive(firstPid)).toBe(false);
    expect(await node.rpc.getBlockCount()).toBe(5);
    expect(await node.rpc.getBlockHash(5)).toBe(hashes[4]);
    await node.mine(1, burn);
    await node.kill('SIGKILL');
    await node.restart();
    expect(await node.rpc.getBlockCount()).toBe(6);
    expect(node.rpcUrl).toBe(`http://127.0.0.1:${node.port}/`);
  });

  it('an in-memory node starts over on restart', async () => {
    const node = await startBcoin();
    started.push(node);
    const burn = payments.p2wpkh({ hash: new Uint8Array(20).fill(2), network: node.network.bitcoinjs }).address!;
    await node.mine(2, burn);
    await node.restart();
    expect(await node.rpc.getBlockCount()).toBe(0);
  });

  it('a start that fails says why, with the tail of bcoin\'s log', async () => {
    const blocker = createServer().listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const { port } = blocker.address() as { port: number };
    try {
      await expect(startBcoin({ port })).rejects.toThrow(/bcoin exited while starting[\s\S]*EADDRINUSE/);
    } finally {
      blocker.close();
    }
  });

  it('a bcoin does not outlive a parent killed with SIGKILL', async () => {
    const script = fileURLToPath(new URL('../support/bcoin-child.ts', import.meta.url));
    const parent = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    parent.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    expect(await waitUntil(() => output.includes('\n'), 30_000)).toBe(true);
    const bcoinPid = Number(output.trim());
    expect(isAlive(bcoinPid)).toBe(true);
    parent.kill('SIGKILL');
    await once(parent, 'exit');
    expect(await waitUntil(() => !isAlive(bcoinPid), 10_000)).toBe(true);
  });
});
