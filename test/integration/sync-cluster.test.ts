// A client node on three masters in this process (Raft over BOLT 8 links on loopback), each master
// with its client listener. One master forges a value in the block it sends; the other two leave
// that block out: the only copy the client gets fails its Merkle proof, and the client resyncs
// from a snapshot of another master, never holding the forged value.
import { afterAll, describe, expect, it } from 'vitest';
import { ADDRESSES_ADDRESS, DEVICES_ADDRESS, encodeAddressRecord, encodeDeviceRecord } from '../../src/access/records.ts';
import type { Genesis } from '../../src/access/genesis.ts';
import { SyncServer, type SyncServerOptions } from '../../src/api/sync-server.ts';
import { isKalimaError } from '../../src/errors.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { generateKeyPair } from '../../src/ledger/signature.ts';
import { ClusterMaster, linkTransport } from '../../src/node/cluster.ts';
import { InlineVerifier } from '../../src/node/verifier.ts';
import { silentLogger, systemClock, systemScheduler } from '../../src/ports.ts';
import { SyncClient } from '../../src/sdk/sync.ts';
import type { CacheEntry } from '../../src/state/entry.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { makeChain, makeMessage, seededRng } from '../support/chain.ts';
import { freePort } from '../support/ports.ts';

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function until(what: string, condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

type Tamper = NonNullable<SyncServerOptions['tamperBlock']>;

describe('a client node on three masters, one of them lying', () => {
  it('drops the forged block, resyncs from another master, and agrees with all three', async () => {
    const base = makeChain('sync-cluster');
    const keys = Array.from({ length: 3 }, () => generateKeyPair(base.rng));
    const genesis: Genesis = { ...base.genesis, masters: keys.map((key) => key.publicKey) };
    const chain = { ...base, genesis, nodeKey: keys[0]! };
    const ports = await Promise.all(keys.map(() => freePort()));
    const directory = keys.map((key, index) => ({ key: key.publicKey, host: '127.0.0.1', port: ports[index]! }));
    const targets = (frame: Parameters<Tamper>[0]): boolean => frame.messages.some((proven) => proven.committed.message.key === 'target');
    const forge: Tamper = (frame) => ({
      ...frame,
      messages: frame.messages.map((proven) => (proven.committed.message.key !== 'target' ? proven : { ...proven, committed: { ...proven.committed, message: { ...proven.committed.message, body: new TextEncoder().encode('FORGED') } } })),
    });
    const withhold: Tamper = (frame) => (targets(frame) ? undefined : frame);
    const masters: ClusterMaster[] = [];
    const servers: SyncServer[] = [];
    for (const [index, key] of keys.entries()) {
      const transport = await linkTransport({ secretKey: key.secretKey, masters: directory, clock: systemClock, rng: seededRng(`links-${index}`), scheduler: systemScheduler, logger: silentLogger, heartbeatMs: 100, deadAfterMs: 1_000 }, ports[index]!);
      const master = await ClusterMaster.open({
        genesis, kv: new MemoryKvStore(), nodeKey: key, clock: systemClock, rng: seededRng(`sync-cluster-${index}`), scheduler: systemScheduler,
        verifier: new InlineVerifier(), logger: silentLogger, transport, tickMs: 10, newMember: true,
      });
      masters.push(master);
      const server = await SyncServer.start({
        node: master.node, nodeKey: key, clock: systemClock, rng: seededRng(`sync-server-${index}`), scheduler: systemScheduler, logger: silentLogger,
        tamperBlock: index === 0 ? forge : withhold,
      }, 0);
      servers.push(server);
      cleanups.push(async () => {
        await server.close();
        await master.close();
      });
    }
    for (const master of masters) master.start();
    await until('a leader', () => masters.some((master) => master.replicator.mayProduce()));
    const leader = masters.find((master) => master.replicator.mayProduce())!;
    const device = generateKeyPair(chain.rng);
    await leader.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/plant', body: encodeAddressRecord({ description: '' }) }));
    await leader.node.submit(makeMessage(chain, chain.admin, { address: DEVICES_ADDRESS, key: toHex(device.publicKey), body: encodeDeviceRecord({ name: 'sensor', pub: ['/plant'], sub: ['/plant'] }) }));
    await until('every master knows the device', () => masters.every((master) => master.node.mayRead(toHex(device.publicKey), '/plant')));

    const sync = new SyncClient({
      genesis, key: device, prefixes: ['/plant'], rng: seededRng('sync-cluster-client'), gapWaitMs: 200,
      masters: keys.map((key, index) => ({ key: toHex(key.publicKey), host: '127.0.0.1', port: servers[index]!.port })),
    });
    cleanups.push(() => sync.close());
    const faults: Array<{ master: string; error: unknown }> = [];
    const resyncs: Array<{ master: string | null; reason: unknown }> = [];
    const seen: string[] = [];
    sync.on('fault', (event: { master: string; error: unknown }) => faults.push(event));
    sync.on('resync', (event: { master: string | null; reason: unknown }) => resyncs.push(event));
    sync.on('put', (event: { key: string; entry: CacheEntry }) => seen.push(`${event.key}=${new TextDecoder().decode(event.entry.value)}`));
    await sync.start();
    await until('links to the three masters', () => sync.connectedMasters.length === 3);

    // Written through the client: it sends the write to all three masters, the first receipt wins.
    const receipt = await sync.put('/plant', 'target', 'TRUE');
    await sync.put('/plant', 'after', 'next');
    await until('the client past the forged height with the true value', () => sync.height >= receipt.height && sync.get('/plant', 'target') !== undefined && sync.get('/plant', 'after') !== undefined);
    await until('every master at the client\'s height', () => masters.every((master) => master.node.height === sync.height));

    const liar = toHex(keys[0]!.publicKey);
    expect(faults.length).toBeGreaterThan(0);
    expect(faults.every((fault) => fault.master === liar && isKalimaError(fault.error, 'KALIMA_ERR_SYNC_BAD_BLOCK'))).toBe(true);
    const afterFault = resyncs.find((resync) => isKalimaError(resync.reason, 'KALIMA_ERR_SYNC_BAD_BLOCK'));
    expect(afterFault?.master).toBeDefined();
    expect(afterFault!.master).not.toBe(liar);
    expect(seen).not.toContain('target=FORGED');
    expect(new TextDecoder().decode(sync.get('/plant', 'target')!.value)).toBe('TRUE');
    const checks = await sync.checkDigest();
    expect(checks).toHaveLength(3);
    for (const check of checks) expect(check, check.master).toMatchObject({ matches: true });
  });
});
