// `kalima init --masters N` marks each master's data directory as a new chain's: an empty store is
// expected there. The mark goes once the store holds something; a master whose data directory was
// deleted starts without it, and is taken as one that lost its disk (it waits to catch up before it
// votes), as its status says.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { initCluster } from '../../src/cli/init.ts';
import { fileExists, loadConfig, NEW_MEMBER_MARKER } from '../../src/node/config.ts';
import { type RunningNode, createLogger, startNode } from '../../src/node/runtime.ts';
import { tempDir } from '../support/chain.ts';
import { freePort } from '../support/ports.ts';

async function consensusOf(url: string): Promise<{ role: string; rejoining: boolean; leader: string | null; term: number }> {
  return ((await (await fetch(`${url}/status`)).json()) as { consensus: { role: string; rejoining: boolean; leader: string | null; term: number } }).consensus;
}

it('marks a new chain\'s data directories, drops the mark once the store holds state, and a master with its data deleted rejoins', async () => {
  const root = await tempDir('kalima-init-cluster-');
  const cluster = await initCluster({ directory: root, chain: 'marked', masters: 3 });
  for (const master of cluster.masters) expect(await fileExists(join(master.directory, 'data', NEW_MEMBER_MARKER))).toBe(true);
  const ports = await Promise.all(cluster.masters.map(async () => ({ api: await freePort(), link: await freePort() })));
  const directory = cluster.masters.map((master, index) => ({ key: Buffer.from(master.key.publicKey).toString('hex'), host: '127.0.0.1', port: ports[index]!.link, api: `http://127.0.0.1:${ports[index]!.api}` }));
  for (const [index, master] of cluster.masters.entries()) {
    const config = JSON.parse(await readFile(master.configFile, 'utf8')) as Record<string, unknown>;
    Object.assign(config, { port: ports[index]!.api, clientPort: 0, logLevel: 'warn', verifierThreads: 1, cluster: { linkHost: '127.0.0.1', linkPort: ports[index]!.link, masters: directory, tickMs: 20 } });
    await writeFile(master.configFile, JSON.stringify(config));
  }
  const logger = createLogger('warn', join(root, 'log.json'));
  const open = async (index: number): Promise<RunningNode> => startNode(await loadConfig(cluster.masters[index]!.configFile), { logger });
  const running = await Promise.all(cluster.masters.map((_, index) => open(index)));
  const until = async (what: string, condition: () => Promise<boolean>): Promise<void> => {
    const deadline = Date.now() + 20_000;
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  // New members elect at once.
  await until('a leader', async () => (await Promise.all(running.map((node) => consensusOf(node.url)))).some((status) => status.role === 'leader'));
  for (const node of running) expect((await consensusOf(node.url)).rejoining).toBe(false);
  // Once the store holds state (a term), the mark goes, while the master runs.
  await until('the marks to go', async () => (await Promise.all(cluster.masters.map((master) => fileExists(join(master.directory, 'data', NEW_MEMBER_MARKER))))).every((exists) => !exists));
  await Promise.all(running.map((node) => node.close()));
  // Restarted with state in the store, they are members as before.
  running.splice(0, 3, ...(await Promise.all(cluster.masters.map((_, index) => open(index)))));
  for (const node of running) expect((await consensusOf(node.url)).rejoining).toBe(false);
  // A master whose data directory is deleted starts unmarked: it rejoins, and is a full member once caught up.
  await running[2]!.close();
  await rm(join(cluster.masters[2]!.directory, 'data'), { recursive: true, force: true });
  running[2] = await open(2);
  await until('the rejoining master to catch up', async () => !(await consensusOf(running[2]!.url)).rejoining);
  expect((await consensusOf(running[2].url)).leader).not.toBeNull();
  await Promise.all(running.map((node) => node.close()));
  logger.flush();
  await new Promise((resolve) => setTimeout(resolve, 100));
  // It said why it waited (once: the others started marked, or with state).
  const warnings = (await readFile(join(root, 'log.json'), 'utf8')).split('\n').filter((line) => line.includes('taken as one that lost its disk'));
  expect(warnings).toHaveLength(1);
}, 60_000);
