// The SDK against a node served on a real port: writes, reads and history round trip; the event
// subscription yields committed messages in order; and it resumes after the server drops its
// connections, or restarts, without a gap or a duplicate.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { KalimaError } from '../../src/errors.ts';
import { toHex } from '../../src/ledger/hash.ts';
import type { KeyPair } from '../../src/ledger/signature.ts';
import { generateKeyPair } from '../../src/ledger/signature.ts';
import type { KalimaNode } from '../../src/node/node.ts';
import { systemRng } from '../../src/ports.ts';
import { type ChainMessage, type CommitReceipt, KalimaClient } from '../../src/sdk/client.ts';
import { type TestChain, makeChain, makeMessage, openApi, openNode } from '../support/chain.ts';

const WAIT_MS_MAX = 15_000;
const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

let chain: TestChain;
let node: KalimaNode;
let app: FastifyInstance;
let baseUrl: string;
let port: number;
let admin: KalimaClient;
let device: KalimaClient;
/** Writes straight to the node, bypassing HTTP, with nonces of its own. */
let inProcessWriter: KeyPair;
let inProcessNonce = 0;

function clientFor(key: KeyPair): KalimaClient {
  return new KalimaClient({ url: baseUrl, key, chain: chain.genesis.chain });
}

async function serve(): Promise<void> {
  ({ app } = await openApi(node));
  baseUrl = await app.listen({ port, host: '127.0.0.1' });
  port = Number(new URL(baseUrl).port);
}

beforeAll(async () => {
  chain = makeChain('sdk');
  node = await openNode(chain);
  port = 0;
  await serve();
  admin = clientFor(chain.admin);
  device = clientFor(generateKeyPair(systemRng));
  for (const address of ['/sdk/roundtrip', '/sdk/order', '/sdk/drop', '/sdk/restart']) await admin.createAddress(address);
  await admin.registerDevice(device.deviceId, { name: 'sdk device', pub: ['/sdk'], sub: ['/sdk'] });
  inProcessWriter = generateKeyPair(systemRng);
  await admin.registerDevice(toHex(inProcessWriter.publicKey), { name: 'in-process writer', pub: ['/sdk'], sub: [] });
});

afterAll(async () => {
  await app?.close();
  await node?.close();
});

async function waitFor(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS_MAX;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

describe('put, get, remove and history', () => {
  it('round trips values, replacements, deletes and their history', async () => {
    const address = '/sdk/roundtrip';
    const first = await device.put(address, 'temp', '21.5', { ttl: 3600, props: { unit: 'celsius' } });
    expect(first).toMatchObject({ sequence: 0, previous: -1 });

    const value = await device.get(address, 'temp');
    expect(value).toBeDefined();
    expect(text(value!.body)).toBe('21.5');
    expect(value).toMatchObject({ address, key: 'temp', sequence: 0, globalSequence: first.globalSequence, ttl: 3600, hash: first.messageHash });
    expect(value!.props).toMatchObject({ unit: 'celsius', submitter: device.deviceId, ttl: '3600' });
    expect(value!.expiresAtMs).toBe(value!.timeMs + 3_600_000);

    const second = await device.put(address, 'temp', new Uint8Array([0, 255, 1]));
    expect(second).toMatchObject({ sequence: 1, previous: 0 });
    expect(second.globalSequence).toBeGreaterThan(first.globalSequence);
    expect((await device.get(address, 'temp'))!.body).toEqual(new Uint8Array([0, 255, 1]));
    await device.put(address, 'other', 'x');
    expect((await device.keys(address)).sort()).toEqual(['other', 'temp']);
    const cache = await device.cache(address);
    expect(cache).toMatchObject({ address, size: 2, lowestSequence: 1, highestSequence: 2 });

    const removed = await device.remove(address, 'temp');
    expect(removed).toMatchObject({ sequence: 3, previous: 2 });
    expect(await device.get(address, 'temp')).toBeUndefined();
    await expect(device.remove(address, 'temp')).rejects.toMatchObject({ code: 'KALIMA_ERR_LEDGER_KEY_NOT_FOUND' });
    await expect(device.put(address, 'temp', '')).rejects.toMatchObject({ code: 'KALIMA_ERR_API_BAD_REQUEST' });

    const history = await collect(device.history(address));
    expect(history.map((message) => [message.key, message.sequence, message.previous, message.deleted, text(message.body)])).toEqual([
      ['temp', 0, -1, false, '21.5'],
      ['temp', 1, 0, false, '\u0000\uFFFD\u0001'],
      ['other', 2, 1, false, 'x'],
      ['temp', 3, 2, true, ''],
    ]);
    expect(history[1]!.body).toEqual(new Uint8Array([0, 255, 1]));
    expect(history.map((message) => message.hash)).toEqual([first.messageHash, second.messageHash, expect.any(String), removed.messageHash]);
    // Paging one message at a time gives the same history; a range gives its slice.
    expect(await collect(device.history(address, { pageSize: 1 }))).toEqual(history);
    expect((await collect(device.history(address, { fromSequence: 1, toSequence: 2 }))).map((message) => message.sequence)).toEqual([1, 2]);
  });

  it('throws the node\'s code for a refused write, and nothing is written', async () => {
    const reader = clientFor(generateKeyPair(systemRng));
    await admin.registerDevice(reader.deviceId, { pub: [], sub: ['/sdk'] });
    const error = await reader.put('/sdk/roundtrip', 'intruder', 'x').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(KalimaError);
    expect(error).toMatchObject({ code: 'KALIMA_ERR_ACCESS_PUB_DENIED', status: 403 });
    expect(await reader.get('/sdk/roundtrip', 'intruder')).toBeUndefined();
  });
});

describe('subscribe', () => {
  it('yields every committed message under the prefix, in order, from the next commit', async () => {
    const address = '/sdk/order';
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), WAIT_MS_MAX);
    const received: ChainMessage[] = [];
    const subscribersBefore = (await admin.status()).subscribers as number;
    const consumer = (async () => {
      for await (const message of device.subscribe(address, { signal: controller.signal })) {
        received.push(message);
        if (message.key === 'last') break;
      }
    })();
    // Without `from` the stream starts at the next commit: write only once it is registered.
    await waitFor(async () => ((await admin.status()).subscribers as number) > subscribersBefore, 'the subscription');

    // Concurrent writers: the stream order is the chain order, whatever order the writes started.
    const writers = [device, clientFor(generateKeyPair(systemRng)), clientFor(generateKeyPair(systemRng))];
    for (const writer of writers.slice(1)) await admin.registerDevice(writer.deviceId, { pub: ['/sdk/order'], sub: [] });
    const receipts = await Promise.all(Array.from({ length: 30 }, (_, index) => writers[index % writers.length]!.put(address, `key-${index % 7}`, `value ${index}`)));
    receipts.push(await device.put(address, 'last', 'done'));
    await consumer;
    clearTimeout(timer);

    const expected = receipts.map((receipt) => receipt.globalSequence).sort((a, b) => a - b);
    expect(received.map((message) => message.globalSequence)).toEqual(expected);
    // Per address, each message names the one before it.
    received.forEach((message, index) => {
      expect(message.address).toBe(address);
      if (index > 0) expect(message.previous).toBe(received[index - 1]!.sequence);
      expect(message.sequence).toBe(message.previous + 1);
    });
    const byHash = new Map(receipts.map((receipt) => [receipt.messageHash, receipt]));
    for (const message of received) expect(byHash.get(message.hash)?.globalSequence).toBe(message.globalSequence);
    expect(text(received.at(-1)!.body)).toBe('done');
  });

  // Two ways the connection dies mid-stream while writes go on.
  const disruptions = [
    { name: 'the server drops every connection', address: '/sdk/drop', disrupt: async () => app.server.closeAllConnections() },
    {
      name: 'the API restarts on the same port',
      address: '/sdk/restart',
      disrupt: async () => {
        await app.close();
        await new Promise((resolve) => setTimeout(resolve, 200));
        await serve();
      },
    },
  ];

  it.each(disruptions)('resumes without a gap or a duplicate when $name', async ({ address, disrupt }) => {
    const from = ((await admin.status()).nextGlobalSequence as number) - 1;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), WAIT_MS_MAX);
    const received: number[] = [];
    const reconnects: unknown[] = [];
    /** How many events had arrived when the subscription last noticed its stream was gone. */
    let receivedAtReconnect = -1;
    const onReconnect = (_attempt: number, cause: unknown): void => {
      reconnects.push(cause);
      receivedAtReconnect = received.length;
    };
    const reader = clientFor(device.key);
    const consumer = (async () => {
      for await (const message of reader.subscribe(address, { from, signal: controller.signal, onReconnect })) {
        received.push(message.globalSequence);
        if (message.key === 'last') break;
      }
    })();

    // Two writers go on through the disruption: one in-process, which never stalls, so messages
    // commit while the stream is down; one through the SDK, whose writes retry with the same nonce.
    const receipts: CommitReceipt[] = [];
    let writtenWhileDown = 0;
    const inProcess = (async () => {
      for (let index = 0; index < 150; index++) {
        receipts.push(await node.submit(makeMessage(chain, inProcessWriter, { address, key: `node-${index}`, body: new Uint8Array([index]), nonce: ++inProcessNonce })));
        // Committed after the stream was lost and before the resumed stream delivered anything.
        if (reconnects.length > 0 && received.length === receivedAtReconnect) writtenWhileDown++;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const overSdk = (async () => {
      for (let index = 0; index < 30; index++) {
        receipts.push(await device.put(address, `sdk-${index}`, `value ${index}`));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    // Awaited below; a failure while the disruption runs must not surface as an unhandled rejection.
    for (const task of [consumer, inProcess, overSdk]) task.catch(() => undefined);

    await waitFor(() => received.length >= 5, 'the first events');
    const writtenAtDisruption = receipts.length;
    await disrupt();
    await Promise.all([inProcess, overSdk]);
    receipts.push(await device.put(address, 'last', 'done'));
    await consumer;
    clearTimeout(timer);

    // The disruption really cut the stream mid-way: events came before it, messages committed
    // while it was down, and the subscription had to reconnect.
    expect(controller.signal.aborted, 'finished before the timeout').toBe(false);
    expect(writtenAtDisruption).toBeLessThan(receipts.length / 2);
    expect(writtenWhileDown).toBeGreaterThan(0);
    expect(reconnects.length).toBeGreaterThanOrEqual(1);
    // Exactly every globalSequence once, in order.
    expect(received).toEqual(receipts.map((receipt) => receipt.globalSequence).sort((a, b) => a - b));
    expect(new Set(received).size).toBe(150 + 30 + 1);
  });

  it('stops when its signal aborts', async () => {
    const controller = new AbortController();
    const iterator = device.subscribe('/sdk', { signal: controller.signal })[Symbol.asyncIterator]();
    const next = iterator.next();
    setTimeout(() => controller.abort(), 100);
    await expect(next).resolves.toEqual({ done: true, value: undefined });
  });
});
