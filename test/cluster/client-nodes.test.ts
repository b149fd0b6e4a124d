// A client node on a cluster of three `kalima node` processes, each with its client listener
// (clientPort in its config): it syncs from all three, writes through all three, loses the leader
// to kill -9 and goes on with the other two (writes through the election included), and its
// MemCache digest equals every master's digest of the same filter; the restarted master is
// reconnected and agrees too. A second device, that may read only /plant/public, gets exactly that.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadGenesis } from '../../src/node/config.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { KalimaClient, generateDeviceKey } from '../../src/sdk/client.ts';
import { retrying } from '../../src/sdk/retry.ts';
import { SyncClient } from '../../src/sdk/sync.ts';
import { type ProcessCluster, createProcessCluster, killAll, sleep, statusOf } from '../support/cluster-processes.ts';

let cluster: ProcessCluster;
const clients: SyncClient[] = [];

afterAll(async () => {
  for (const client of clients) await client.close();
  killAll();
  await cluster?.shutdown();
});

async function waitUntil(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${cluster.describe()}`);
    await sleep(50);
  }
}

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

describe('client nodes on a cluster of three master processes', () => {
  const device = generateDeviceKey();
  const viewer = generateDeviceKey();

  beforeAll(async () => {
    cluster = await createProcessCluster({ chain: 'clients', masters: 3, tickMs: 50 });
    // Generous: on a loaded machine three processes starting at once take a while.
    await Promise.all(cluster.masters.map((master) => master.start(60_000)));
    const admin = new KalimaClient({ url: cluster.masters[0]!.url, key: cluster.admin });
    const setup = { deadlineMs: 30_000, pauseMs: 100 };
    for (const address of ['/plant', '/plant/public', '/plant/private']) await retrying(() => admin.createAddress(address), setup);
    await retrying(() => admin.registerDevice(toHex(device.publicKey), { name: 'controller', pub: ['/plant'], sub: ['/plant'] }), setup);
    await retrying(() => admin.registerDevice(toHex(viewer.publicKey), { name: 'viewer', pub: [], sub: ['/plant/public'] }), setup);
  });

  it('syncs, writes to every master, fails over when the leader is killed, and its digest equals each master\'s', async () => {
    const genesis = await loadGenesis(join(cluster.root, 'genesis.json'));
    const endpoints = cluster.masters.map((master) => ({ key: master.key, host: '127.0.0.1', port: master.clientPort }));
    const options = { genesis, masters: endpoints, backoffBaseMs: 100, backoffMaxMs: 1_000 };
    const sync = new SyncClient({ ...options, key: device, prefixes: ['/plant'] });
    const view = new SyncClient({ ...options, key: viewer, prefixes: ['/plant/public'] });
    clients.push(sync, view);
    const heights: number[] = [];
    sync.on('block', (event: { height: number }) => heights.push(event.height));
    await Promise.all([sync.start(), view.start()]);
    await waitUntil('links to all three masters', () => sync.connectedMasters.length === 3 && view.connectedMasters.length === 3);

    const receipts = [];
    for (let index = 0; index < 10; index++) {
      receipts.push(await sync.put(index % 2 === 0 ? '/plant/public' : '/plant/private', `k${index % 4}`, `before-${index}`));
    }
    // Sent to all three masters, each write committed once: one receipt per nonce, consecutive sequences.
    expect(new Set(receipts.map((receipt) => receipt.globalSequence)).size).toBe(10);

    const leaderId = (await statusOf(cluster.masters[0]!.url))!.consensus.leader;
    const leader = cluster.masters[cluster.indexOfKey(leaderId)]!;
    await leader.kill('SIGKILL');
    await waitUntil('the client to drop the killed leader', () => sync.connectedMasters.length === 2);
    // Writes go on through the election: sent to the two that are left, retried until one commits.
    for (let index = 0; index < 10; index++) await sync.put(index % 2 === 0 ? '/plant/public' : '/plant/private', `k${index % 4}`, `after-${index}`);
    await sync.remove('/plant/private', 'k1');

    const survivors = cluster.masters.filter((master) => master !== leader);
    const survivorHeight = async (): Promise<number> => Math.min(...(await Promise.all(survivors.map(async (master) => (await statusOf(master.url))?.height ?? -1))));
    await waitUntil('the client at the survivors\' height', async () => sync.height > 0 && sync.height === await survivorHeight() && view.height === sync.height);
    // Every block applied once, in order, though three masters sent each.
    expect(heights).toEqual(Array.from({ length: heights.length }, (_, index) => heights[0]! + index));

    for (const check of await sync.checkDigest()) expect(check, `digest of ${check.master}`).toMatchObject({ matches: true });
    for (const check of await view.checkDigest()) expect(check, `viewer digest of ${check.master}`).toMatchObject({ matches: true });
    expect(text(sync.get('/plant/public', 'k0')!.value)).toBe('after-8');
    expect(sync.get('/plant/private', 'k1')).toBeUndefined();
    // The viewer holds /plant/public only.
    expect(view.getAddresses()).toEqual(['/plant/public']);
    expect(view.getMemCache('/plant/public').map((entry) => [entry.key, text(entry.value)])).toEqual(sync.getMemCache('/plant/public').map((entry) => [entry.key, text(entry.value)]));

    // The killed master comes back; the client reconnects to it and it agrees once it has caught up.
    await leader.start(60_000);
    await waitUntil('the client linked to all three again', () => sync.connectedMasters.length === 3, 30_000);
    await sync.put('/plant/public', 'k0', 'last');
    await waitUntil('the restarted master at the client\'s height', async () => (await statusOf(leader.url))?.height === sync.height, 30_000);
    const [check] = await sync.checkDigest({ master: leader.key });
    expect(check).toMatchObject({ matches: true, master: leader.key });
  });
});
