// Client nodes against one master in this process, over real TCP and BOLT 8: the master's client
// listener (api/sync-server.ts) and the SDK's sync mode (sdk/sync.ts). What a device may not read
// never reaches its wire; a dropped, shortened or forged filtered block is found and healed by a
// resync; the client's digest equals the master's digest of the same filter.
import { afterEach, describe, expect, it } from 'vitest';
import { SyncServer, type SyncServerOptions } from '../../src/api/sync-server.ts';
import { isKalimaError } from '../../src/errors.ts';
import { DEVICES_ADDRESS, encodeDeviceRecord } from '../../src/access/records.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { generateKeyPair } from '../../src/ledger/signature.ts';
import type { ServerFrame } from '../../src/net/sync-protocol.ts';
import type { KalimaNode } from '../../src/node/node.ts';
import { silentLogger, systemClock, systemScheduler } from '../../src/ports.ts';
import { SyncClient } from '../../src/sdk/sync.ts';
import type { CacheEntry } from '../../src/state/entry.ts';
import { digestOfItems, filteredItems, visibleTo } from '../../src/state/filtered.ts';
import { createAddress, makeChain, makeMessage, openNode, registerDevice, seededRng } from '../support/chain.ts';
import { WireClient } from '../support/sync-wire.ts';
import { FaultProxy } from '../support/fault-proxy.ts';

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

let seed = 0;

/** One master with /plant and /secret, and a device that may read and write /plant only. */
async function setup(serverOptions: Partial<SyncServerOptions> = {}) {
  const chain = makeChain(`sync-${++seed}`);
  const node = await openNode(chain);
  await createAddress(node, chain, '/plant');
  await createAddress(node, chain, '/secret');
  const reader = await registerDevice(node, chain, { pub: ['/plant'], sub: ['/plant'] });
  const server = await SyncServer.start({ node, nodeKey: chain.nodeKey, clock: systemClock, rng: seededRng(`server-${seed}`), scheduler: systemScheduler, logger: silentLogger, ...serverOptions }, 0);
  cleanups.push(async () => {
    await server.close();
    await node.close();
  });
  const endpoint = { key: toHex(chain.nodeKey.publicKey), host: '127.0.0.1', port: server.port };
  const write = (address: string, key: string, body: string) => node.submit(makeMessage(chain, chain.admin, { address, key, body }));
  const client = (options: { key?: typeof reader; prefixes?: string[] } = {}): SyncClient => {
    const sync = new SyncClient({ genesis: chain.genesis, key: options.key ?? reader, masters: [endpoint], prefixes: options.prefixes ?? ['/plant'], rng: seededRng(`client-${seed}`), gapWaitMs: 200 });
    cleanups.push(() => sync.close());
    return sync;
  };
  const wire = async (device = reader): Promise<WireClient> => {
    const connection = await WireClient.connect({ host: '127.0.0.1', port: server.port, masterKey: chain.nodeKey.publicKey, device, seed: `wire-${seed}-${Math.random()}` });
    cleanups.push(() => connection.close());
    return connection;
  };
  return { chain, node, server, reader, write, client, wire };
}

/** The master's digest of what `device` sees under `prefixes`, now. */
function masterDigest(node: KalimaNode, device: string, prefixes: string[]): string {
  return toHex(digestOfItems(filteredItems(node.cache, (address) => visibleTo(node.cache, node.policy, device, prefixes, address))));
}

const value = (entry: CacheEntry | undefined): string | undefined => (entry === undefined ? undefined : text(entry.value));

describe('a client node on one master', () => {
  it('takes a snapshot, then follows live filtered blocks, and its digest equals the master\'s for the same filter', async () => {
    const { node, reader, write, client, chain } = await setup();
    await write('/plant', 'a', 'one');
    await write('/plant', 'b', 'two');
    await write('/secret', 's', 'TOP-SECRET');
    const sync = client();
    const blocks: number[] = [];
    const changes: string[] = [];
    let synchronized = 0;
    sync.on('block', (event: { height: number }) => blocks.push(event.height));
    sync.on('put', (event: { address: string; key: string; entry: CacheEntry }) => changes.push(`put ${event.address} ${event.key} ${text(event.entry.value)}`));
    sync.on('remove', (event: { address: string; key: string }) => changes.push(`remove ${event.address} ${event.key}`));
    sync.on('synchronized', () => synchronized++);
    await sync.start();
    const snapshotHeight = sync.height;
    expect(snapshotHeight).toBe(node.height);
    expect(value(sync.get('/plant', 'a'))).toBe('one');
    expect(value(sync.get('/plant', 'b'))).toBe('two');
    expect(sync.get('/secret', 's')).toBeUndefined();
    expect(sync.getAddresses()).toEqual(['/plant']);

    // A write through the link, and the admin's through the node: both come back as blocks.
    const receipt = await sync.put('/plant', 'c', 'three');
    expect(receipt.sequence).toBe(2);
    await node.submit(makeMessage(chain, chain.admin, { address: '/plant', key: 'a', body: new Uint8Array(0) }));
    await write('/secret', 's', 'STILL-SECRET');
    await until('the client at the master\'s height', () => sync.height === node.height);
    expect(value(sync.get('/plant', 'c'))).toBe('three');
    expect(sync.get('/plant', 'a')).toBeUndefined();
    expect(sync.getMemCache('/plant').map((entry) => entry.key)).toEqual(['b', 'c']);
    // Every block once, in order, from the snapshot's height on.
    expect(blocks).toEqual(Array.from({ length: node.height - snapshotHeight }, (_, index) => snapshotHeight + 1 + index));
    expect(changes).toEqual(['put /plant a one', 'put /plant b two', 'put /plant c three', 'remove /plant a']);
    expect(synchronized).toBe(1);

    expect(toHex(sync.digest())).toBe(masterDigest(node, toHex(reader.publicKey), ['/plant']));
    const [check] = await sync.checkDigest();
    expect(check).toMatchObject({ matches: true, height: node.height, local: toHex(sync.digest()) });
    // The filtered digest is not the whole state's.
    expect(toHex(sync.digest())).not.toBe(toHex(node.cache.digest()));
  });

  it('sends a device nothing of an address it may not read: on the wire, blocks carry only the headers of those writes', async () => {
    const { write, wire, chain } = await setup();
    await write('/secret', 'before', 'TOP-SECRET-BEFORE');
    const connection = await wire();
    connection.send({ type: 'subscribe', requestId: 1, prefixes: ['/secret'], snapshot: true });
    connection.send({ type: 'subscribe', requestId: 2, prefixes: ['/'], snapshot: true });
    connection.send({ type: 'subscribe', requestId: 3, prefixes: ['/plant', '/kalima/devices'], snapshot: true });
    connection.send({ type: 'digest', requestId: 4 });
    for (const requestId of [1, 2, 3]) {
      const refusal = await connection.waitFor((frame) => frame.requestId === requestId);
      expect(refusal).toMatchObject({ type: 'error', code: 'KALIMA_ERR_ACCESS_SUB_DENIED' });
    }
    expect(await connection.waitFor((frame) => frame.requestId === 4)).toMatchObject({ type: 'error', code: 'KALIMA_ERR_SYNC_NOT_SUBSCRIBED' });
    // What follows the refusals (which name only what the client asked for) is the data it is sent.
    const refusalsEnd = connection.plaintexts.length;
    connection.send({ type: 'subscribe', requestId: 5, prefixes: ['/plant'], snapshot: true });
    await connection.waitFor((frame) => frame.type === 'snapshot-end');
    const secretReceipt = await write('/secret', 'during', 'TOP-SECRET-DURING');
    const plantReceipt = await write('/plant', 'visible', 'PLANT-VALUE');
    const isBlockAt = (height: number) => (frame: ServerFrame): frame is Extract<ServerFrame, { type: 'block' }> => frame.type === 'block' && frame.header.height === height;
    const secretBlock = await connection.waitFor(isBlockAt(secretReceipt.height));
    const plantBlock = await connection.waitFor(isBlockAt(plantReceipt.height));
    // The secret write's block arrives as its signed header alone.
    expect(secretBlock.header.messageCount).toBe(1);
    expect(secretBlock.messages).toEqual([]);
    expect(plantBlock.messages.map((proven) => text(proven.committed.message.body))).toEqual(['PLANT-VALUE']);
    const wireText = connection.plaintexts.slice(refusalsEnd).map((bytes) => Buffer.from(bytes).toString('latin1')).join('\n');
    expect(wireText).toContain('PLANT-VALUE');
    expect(wireText).not.toContain('TOP-SECRET');
    expect(wireText).not.toContain('/secret');
    // Nor another device's registration.
    expect(wireText).not.toContain(toHex(chain.admin.publicKey));
  });

  it('takes writes over the link: a receipt, the same message again answers NONCE_REPLAYED with that receipt, refusals keep their codes', async () => {
    const { chain, reader, wire } = await setup();
    const connection = await wire();
    const message = makeMessage(chain, reader, { address: '/plant', key: 'w', body: 'written' });
    const answer = async (requestId: number, frame: Parameters<WireClient['send']>[0]): Promise<ServerFrame> => {
      connection.send(frame);
      return connection.waitFor((candidate) => candidate.requestId === requestId);
    };
    const first = await answer(1, { type: 'submit', requestId: 1, message });
    expect(first).toMatchObject({ type: 'receipt', receipt: { sequence: 0, previous: -1 } });
    const receipt = (first as Extract<ServerFrame, { type: 'receipt' }>).receipt;
    expect(await answer(2, { type: 'submit', requestId: 2, message })).toMatchObject({ type: 'error', code: 'KALIMA_ERR_LEDGER_NONCE_REPLAYED', details: { committed: receipt } });
    const refusals: Array<[string, Parameters<typeof makeMessage>[2], string]> = [
      ['an address outside its PUB list', { address: '/secret', key: 'x' }, 'KALIMA_ERR_ACCESS_PUB_DENIED'],
      ['an address no admin created', { address: '/plant/unknown', key: 'x' }, 'KALIMA_ERR_ACCESS_UNKNOWN_ADDRESS'],
      ['a delete of a missing key', { address: '/plant', key: 'missing', body: new Uint8Array(0) }, 'KALIMA_ERR_LEDGER_KEY_NOT_FOUND'],
    ];
    let requestId = 10;
    for (const [name, fields, code] of refusals) {
      requestId++;
      expect(await answer(requestId, { type: 'submit', requestId, message: makeMessage(chain, reader, fields) }), name).toMatchObject({ type: 'error', code });
    }
    const forged = { ...makeMessage(chain, reader, { address: '/plant', key: 'f' }), body: new TextEncoder().encode('changed after signing') };
    expect(await answer(20, { type: 'submit', requestId: 20, message: forged })).toMatchObject({ type: 'error', code: 'KALIMA_ERR_LEDGER_BAD_SIGNATURE' });
  });

  it('tells an unregistered key KALIMA_ERR_ACCESS_UNKNOWN_DEVICE and closes the link', async () => {
    const { wire, client } = await setup();
    const stranger = generateKeyPair(seededRng('stranger'));
    const connection = await wire(stranger);
    await connection.closed;
    expect(connection.frames).toEqual([{ type: 'error', requestId: 0, code: 'KALIMA_ERR_ACCESS_UNKNOWN_DEVICE', details: expect.objectContaining({ device: toHex(stranger.publicKey) }) }]);
    const sync = client({ key: stranger });
    const rejected = new Promise<{ code: string }>((resolve) => sync.once('rejected', resolve));
    void sync.start().catch(() => undefined);
    expect((await rejected).code).toBe('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE');
  });

  it('closes the link on a frame that does not decode, with KALIMA_ERR_SYNC_BAD_MESSAGE, and refuses the key for a while', async () => {
    const { wire, chain, node } = await setup({ penaltyMs: 60_000 });
    const offender = await registerDevice(node, chain, { pub: [], sub: ['/plant'] });
    const connection = await wire(offender);
    connection.sendRaw(Uint8Array.of(1, 77, 1, 2, 3));
    await connection.closed;
    expect(connection.frames).toHaveLength(1);
    expect(connection.frames[0]).toMatchObject({ type: 'error', requestId: 0, code: 'KALIMA_ERR_SYNC_BAD_MESSAGE' });
    // Penalised: the handshake completes (it proves the key) and the link is cut with nothing sent.
    const again = await wire(offender);
    await again.closed;
    expect(again.frames).toEqual([]);
    // Another device is served as before.
    const other = await wire();
    other.send({ type: 'subscribe', requestId: 1, prefixes: ['/plant'], snapshot: false });
    expect(await other.waitFor((frame) => frame.requestId === 1)).toMatchObject({ type: 'subscribed', height: node.height });
  });

  it('tells a client that reads too slowly KALIMA_ERR_SYNC_TOO_SLOW and disconnects it, instead of queueing without bound', async () => {
    // The keep-alive would otherwise close the link first: a client that reads nothing answers no ping.
    const { wire, write, server } = await setup({ outputBytesMax: 64 * 1024, deadAfterMs: 120_000 });
    const connection = await wire();
    connection.send({ type: 'subscribe', requestId: 1, prefixes: ['/plant'], snapshot: false });
    await connection.waitFor((frame) => frame.type === 'subscribed');
    connection.pause();
    const body = 'x'.repeat(6_000);
    // Far more than the socket buffers and the bound hold, while the client reads nothing.
    for (let round = 0; round < 100 && server.connectionCount > 0; round++) {
      await Promise.all(Array.from({ length: 50 }, (_, index) => write('/plant', `k-${round}-${index}`, body)));
    }
    expect(server.connectionCount).toBe(0);
    connection.resume();
    await connection.closed;
    const last = connection.frames[connection.frames.length - 1];
    expect(last).toMatchObject({ type: 'error', requestId: 0, code: 'KALIMA_ERR_SYNC_TOO_SLOW' });
  });
});

describe('a client node on one master, its limits', () => {
  it('gets a snapshot far larger than the output bound, in parts, as it reads', async () => {
    const { node, reader, write, client } = await setup({ outputBytesMax: 32 * 1024 });
    const body = 'y'.repeat(4_000);
    for (let round = 0; round < 6; round++) await Promise.all(Array.from({ length: 50 }, (_, index) => write('/plant', `big-${round}-${index}`, body)));
    const sync = client();
    await sync.start();
    expect(sync.getMemCache('/plant')).toHaveLength(300);
    expect(toHex(sync.digest())).toBe(masterDigest(node, toHex(reader.publicKey), ['/plant']));
  });

  it('lets one device run several client nodes at once', async () => {
    const { node, write, client } = await setup();
    const first = client();
    const second = client();
    await Promise.all([first.start(), second.start()]);
    await write('/plant', 'both', 'seen twice');
    await until('both clients at the master\'s height', () => first.height === node.height && second.height === node.height);
    expect([value(first.get('/plant', 'both')), value(second.get('/plant', 'both'))]).toEqual(['seen twice', 'seen twice']);
    expect(first.connectedMasters).toHaveLength(1);
    expect(second.connectedMasters).toHaveLength(1);
  });

  it('ends a subscription whose SUB list no longer covers it, and sends nothing of it after', async () => {
    const { node, chain, write, wire, client } = await setup();
    // Two devices: one watched on the wire, one through the SDK.
    const watched = await registerDevice(node, chain, { pub: [], sub: ['/plant'] });
    const synced = await registerDevice(node, chain, { pub: [], sub: ['/plant'] });
    const connection = await wire(watched);
    connection.send({ type: 'subscribe', requestId: 1, prefixes: ['/plant'], snapshot: false });
    await connection.waitFor((frame) => frame.type === 'subscribed');
    const sync = client({ key: synced });
    const rejected = new Promise<{ code: string; details: Record<string, unknown> }>((resolve) => sync.once('rejected', resolve));
    await sync.start();
    await write('/plant', 'seen', 'BEFORE-REVOKE');
    await until('the client has the first write', () => sync.get('/plant', 'seen') !== undefined);
    for (const device of [watched, synced]) {
      await node.submit(makeMessage(chain, chain.admin, { address: DEVICES_ADDRESS, key: toHex(device.publicKey), body: encodeDeviceRecord({ name: 'test', pub: [], sub: ['/elsewhere'] }) }));
    }
    const refusal = await connection.waitFor((frame) => frame.type === 'error');
    expect(refusal).toMatchObject({ requestId: 1, code: 'KALIMA_ERR_ACCESS_SUB_DENIED', details: { revoked: true } });
    await write('/plant', 'unseen', 'AFTER-REVOKE');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const wireText = connection.plaintexts.map((bytes) => Buffer.from(bytes).toString('latin1')).join('\n');
    expect(wireText).toContain('BEFORE-REVOKE');
    expect(wireText).not.toContain('AFTER-REVOKE');
    // Not even headers: the subscription is gone.
    expect(connection.frames.slice(connection.frames.indexOf(refusal) + 1)).toEqual([]);
    expect(connection.isClosed).toBe(false);
    expect(await rejected).toMatchObject({ code: 'KALIMA_ERR_ACCESS_SUB_DENIED', details: { revoked: true } });
    expect(sync.get('/plant', 'unseen')).toBeUndefined();
  });
});

describe('a client node whose link goes half-open', () => {
  it('finds it by its keep-alives, reconnects with backoff once the path heals, and resyncs what it missed', async () => {
    const { node, reader, write, server, chain } = await setup({ heartbeatMs: 100, deadAfterMs: 600 });
    const proxy = await FaultProxy.start(server.port);
    cleanups.push(() => proxy.close());
    const sync = new SyncClient({
      genesis: chain.genesis, key: reader, prefixes: ['/plant'], rng: seededRng('half-open'), gapWaitMs: 200,
      masters: [{ key: toHex(chain.nodeKey.publicKey), host: '127.0.0.1', port: proxy.port }],
      heartbeatMs: 100, deadAfterMs: 600, backoffBaseMs: 50, backoffMaxMs: 400,
    });
    cleanups.push(() => sync.close());
    const downs: Array<{ reason: { kind: string } }> = [];
    const resyncs: unknown[] = [];
    sync.on('master down', (event: { reason: { kind: string } }) => downs.push(event));
    sync.on('resync', (event: { reason: unknown }) => resyncs.push(event.reason));
    await sync.start();
    await write('/plant', 'before', 'one');
    await until('the first write', () => sync.get('/plant', 'before') !== undefined);
    // Bytes vanish both ways, and no end closes the connection: only silence tells.
    proxy.cut('blackhole');
    await write('/plant', 'during', 'two');
    await until('the client to give the silent link up', () => downs.length > 0);
    expect(downs[0]!.reason.kind).toBe('dead');
    expect(sync.get('/plant', 'during')).toBeUndefined();
    proxy.heal({ resetStale: true });
    await until('the client linked again', () => sync.connectedMasters.length === 1);
    await write('/plant', 'after', 'three');
    await until('the client at the master\'s height with what it missed', () => sync.height === node.height && sync.get('/plant', 'during') !== undefined && sync.get('/plant', 'after') !== undefined);
    expect(resyncs.some((reason) => isKalimaError(reason, 'KALIMA_ERR_SYNC_GAP'))).toBe(true);
    expect(toHex(sync.digest())).toBe(masterDigest(node, toHex(reader.publicKey), ['/plant']));
  });
});

describe('a client node finds what a master leaves out or forges, and resyncs', () => {
  type Tamper = NonNullable<SyncServerOptions['tamperBlock']>;
  const cases: Array<{ name: string; code: string; tamper: (key: string) => Tamper }> = [
    {
      name: 'a dropped filtered block (a height gap)', code: 'KALIMA_ERR_SYNC_GAP',
      tamper: (key) => { let done = false; return (frame) => (!done && frame.messages.some((proven) => proven.committed.message.key === key) ? ((done = true), undefined) : frame); },
    },
    {
      name: 'a message left out of its block (a sequence gap at the address)', code: 'KALIMA_ERR_SYNC_GAP',
      tamper: (key) => { let done = false; return (frame) => { if (done || !frame.messages.some((proven) => proven.committed.message.key === key)) return frame; done = true; return { ...frame, messages: frame.messages.filter((proven) => proven.committed.message.key !== key) }; }; },
    },
    {
      name: 'a forged value (its Merkle proof fails)', code: 'KALIMA_ERR_SYNC_BAD_BLOCK',
      tamper: (key) => (frame) => ({
        ...frame,
        messages: frame.messages.map((proven) => (proven.committed.message.key !== key ? proven : { ...proven, committed: { ...proven.committed, message: { ...proven.committed.message, body: new TextEncoder().encode('FORGED') } } })),
      }),
    },
  ];

  it.each(cases.map((row) => [row.name, row] as const))('%s', async (_name, row) => {
    const { node, reader, write, client } = await setup({ tamperBlock: row.tamper('target') });
    const sync = client();
    const resyncs: unknown[] = [];
    const seen: string[] = [];
    sync.on('resync', (event: { reason: unknown }) => resyncs.push(event.reason));
    sync.on('put', (event: { key: string; entry: CacheEntry }) => seen.push(`${event.key}=${text(event.entry.value)}`));
    await sync.start();
    await write('/plant', 'target', 'TRUE');
    // The next write shows the gap (a later height, or a sequence that does not follow).
    await write('/plant', 'after', 'next');
    await until('a resync and the client at the master\'s height with every value', () => resyncs.length > 0 && sync.height === node.height && sync.get('/plant', 'after') !== undefined);
    expect(isKalimaError(resyncs[0]) && resyncs[0].code).toBe(row.code);
    expect(value(sync.get('/plant', 'target'))).toBe('TRUE');
    expect(seen).not.toContain('target=FORGED');
    expect(toHex(sync.digest())).toBe(masterDigest(node, toHex(reader.publicKey), ['/plant']));
  });
});
