// A three-master cluster as three `kalima node` processes on loopback (`kalima init --masters 3`):
// a device streams writes to whichever master leads, the leader is killed with SIGKILL under it,
// the device goes on with the same signed messages at the others, and the killed master restarts.
// Every acknowledged write is then on every master, each once, and all three hold the same chain.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { initCluster } from '../../src/cli/init.ts';
import { isKalimaError } from '../../src/errors.ts';
import { toHex } from '../../src/ledger/hash.ts';
import type { Message } from '../../src/ledger/message.ts';
import { type CommitReceipt, KalimaClient, generateDeviceKey } from '../../src/sdk/client.ts';
import { tempDir } from '../support/chain.ts';
import { freePort } from '../support/ports.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(REPO, 'bin', 'kalima.mjs');
const ADDRESS = '/cluster/stream';
const children = new Set<ChildProcess>();

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
});

interface Running {
  child: ChildProcess;
  url: string;
  tail: () => string;
}

async function start(configFile: string, url: string): Promise<Running> {
  const child = spawn(process.execPath, [BIN, 'node', '--config', configFile], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let tail = '';
  const keep = (chunk: Buffer): void => void (tail = (tail + chunk.toString('utf8')).slice(-8_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`a master exited while starting:\n${tail}`);
    if (Date.now() > deadline) throw new Error(`a master did not answer within 20 s:\n${tail}`);
    try {
      if ((await fetch(`${url}/status`)).ok) break;
    } catch {
      // not yet listening
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, url, tail: () => tail };
}

const retryable = (error: unknown): boolean => isKalimaError(error) && ['KALIMA_ERR_CONSENSUS_NOT_LEADER', 'KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN', 'KALIMA_ERR_SDK_UNREACHABLE', 'KALIMA_ERR_NODE_STOPPING', 'KALIMA_ERR_NODE_NOT_READY'].includes(error.code);

/** Submits one signed message until some master commits it; the same message every time. */
async function submitAnywhere(clients: KalimaClient[], message: Message, deadlineMs = 30_000): Promise<CommitReceipt> {
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    const client = clients[attempt % clients.length]!;
    try {
      return await client.submit(message);
    } catch (error) {
      // It committed on an earlier attempt whose answer was lost: the chain says so.
      if (isKalimaError(error, 'KALIMA_ERR_LEDGER_NONCE_REPLAYED') && error.details.committed !== undefined) return error.details.committed as CommitReceipt;
      if (!retryable(error) || Date.now() - started > deadlineMs) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

it('three master processes: SIGKILL the leader under a stream of writes; every acknowledged write is on every master, once', async () => {
  const root = await tempDir('kalima-cluster-');
  const cluster = await initCluster({ directory: root, chain: 'crashcluster', masters: 3 });
  // Free ports for every API and link, written into each master's config.
  const ports = await Promise.all(cluster.masters.map(async () => ({ api: await freePort(), link: await freePort() })));
  const directory = cluster.masters.map((master, index) => ({ key: toHex(master.key.publicKey), host: '127.0.0.1', port: ports[index]!.link, api: `http://127.0.0.1:${ports[index]!.api}` }));
  for (const [index, master] of cluster.masters.entries()) {
    const config = JSON.parse(await readFile(master.configFile, 'utf8')) as Record<string, unknown>;
    config.port = ports[index]!.api;
    config.clientPort = 0;
    config.logLevel = 'warn';
    config.cluster = { linkHost: '127.0.0.1', linkPort: ports[index]!.link, masters: directory, tickMs: 20 };
    await writeFile(master.configFile, JSON.stringify(config));
  }
  const urls = ports.map((port) => `http://127.0.0.1:${port.api}`);
  const running = await Promise.all(cluster.masters.map((master, index) => start(master.configFile, urls[index]!)));
  const admins = urls.map((url) => new KalimaClient({ url, key: cluster.admin }));
  const device = generateDeviceKey();
  // One attempt per master and a short timeout: failing over is this test's job (submitAnywhere).
  const devices = urls.map((url) => new KalimaClient({ url, key: device, writeAttempts: 1, requestTimeoutMs: 2_000 }));
  // Through whichever master leads: the address, then the device.
  const viaLeader = async (action: (admin: KalimaClient) => Promise<unknown>): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      try {
        await action(admins[attempt % admins.length]!);
        return;
      } catch (error) {
        if (!retryable(error) || attempt > 1_000) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  await viaLeader((admin) => admin.createAddress(ADDRESS));
  // With a leader in place, every master takes writes: the followers forward them to the leader.
  const probes = await Promise.all(admins.map((admin, index) => admin.createAddress(`/cluster/probe-${index}`)));
  expect(new Set(probes.map((receipt) => receipt.globalSequence)).size).toBe(3);
  // And every master's status names the same leader and term.
  const consensus = await Promise.all(urls.map(async (url) => ((await (await fetch(`${url}/status`)).json()) as { consensus: { role: string; term: number; leader: string; leaderApi: string } }).consensus));
  expect(consensus.filter((status) => status.role === 'leader')).toHaveLength(1);
  expect(new Set(consensus.map((status) => `${status.term}:${status.leader}:${status.leaderApi}`)).size).toBe(1);
  expect(urls).toContain(consensus[0]!.leaderApi);
  await viaLeader((admin) => admin.registerDevice(toHex(device.publicKey), { name: 'streamer', pub: [ADDRESS], sub: [ADDRESS] }));

  // Four writers, each with one write in flight, before, during and after the leader's death.
  const acknowledged: Array<{ key: string; value: string; receipt: CommitReceipt }> = [];
  let stop = false;
  const writers = Array.from({ length: 4 }, async (_, writer) => {
    for (let index = 0; !stop; index++) {
      const key = `w${writer}-${index % 5}`;
      const value = `writer ${writer} write ${index}`;
      const message = await devices[0]!.sign(ADDRESS, key, new TextEncoder().encode(value));
      acknowledged.push({ key, value, receipt: await submitAnywhere(devices, message) });
    }
  });
  await new Promise((resolve) => setTimeout(resolve, 800));
  // The leader, as the masters' status says.
  const leaderApi = ((await (await fetch(`${urls[0]}/status`)).json()) as { consensus: { leaderApi: string } }).consensus.leaderApi;
  const leaderIndex = urls.indexOf(leaderApi);
  expect(leaderIndex).toBeGreaterThanOrEqual(0);
  const beforeKill = acknowledged.length;
  running[leaderIndex]!.child.kill('SIGKILL');
  await once(running[leaderIndex]!.child, 'exit');
  // The survivors elect a new leader and the writers go on.
  const resumedBy = Date.now() + 15_000;
  while (acknowledged.length < beforeKill + 10 && Date.now() < resumedBy) await new Promise((resolve) => setTimeout(resolve, 50));
  expect(acknowledged.length).toBeGreaterThanOrEqual(beforeKill + 10);
  running[leaderIndex] = await start(cluster.masters[leaderIndex]!.configFile, urls[leaderIndex]!);
  await new Promise((resolve) => setTimeout(resolve, 500));
  stop = true;
  await Promise.all(writers);

  // All three masters converge on one chain that holds every acknowledged write, each once.
  const deadline = Date.now() + 20_000;
  let heights: number[] = [];
  for (;;) {
    const statuses = await Promise.all(urls.map(async (url) => (await (await fetch(`${url}/status`)).json()) as { height: number; tipHash: string }));
    heights = statuses.map((status) => status.height);
    if (statuses.every((status) => status.tipHash === statuses[0]!.tipHash)) break;
    if (Date.now() > deadline) throw new Error(`the masters did not converge: heights ${heights.join(', ')}\n${running.map((node) => node.tail()).join('\n---\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(acknowledged.length).toBeGreaterThan(20);
  const lastValue = new Map<string, string>();
  for (const write of [...acknowledged].sort((a, b) => a.receipt.globalSequence - b.receipt.globalSequence)) lastValue.set(write.key, write.value);
  for (const client of devices) {
    for (const [key, value] of lastValue) expect(new TextDecoder().decode((await client.get(ADDRESS, key))!.body)).toBe(value);
  }
  // Each acknowledged write has its own place in the chain.
  expect(new Set(acknowledged.map((write) => write.receipt.globalSequence)).size).toBe(acknowledged.length);
  for (const node of running) node.child.kill('SIGTERM');
}, 120_000);
