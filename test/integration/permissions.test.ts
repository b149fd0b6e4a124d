// The permission matrix: every device kind × every address kind × (write, read, events), over
// REST (app.inject), over server-sent events on a real socket, and over the SDK. The expected
// outcome of each cell is written down as data below, not derived from the permission code under
// test, so a change in who may do what shows up as a failing cell.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { ERROR_CATALOGUE, KalimaError, type KalimaErrorCode } from '../../src/errors.ts';
import { DEVICES_ADDRESS, ONBOARDING_ADDRESS, type Permissions, encodeDeviceRecord } from '../../src/access/records.ts';
import { signRequest } from '../../src/api/auth.ts';
import { messageToJson } from '../../src/api/json.ts';
import { toHex } from '../../src/ledger/hash.ts';
import type { Message } from '../../src/ledger/message.ts';
import { type KeyPair, generateKeyPair } from '../../src/ledger/signature.ts';
import type { KalimaNode } from '../../src/node/node.ts';
import { systemRng } from '../../src/ports.ts';
import { KalimaClient } from '../../src/sdk/client.ts';
import { type TestChain, makeChain, openApi, openNode } from '../support/chain.ts';
import { genesisHashHex } from '../support/chain.ts';

// ---- the matrix, as data ----

type DeviceName = 'admin' | 'sensor' | 'reader' | 'onboarded' | 'unknown';
const DEVICE_NAMES: readonly DeviceName[] = ['admin', 'sensor', 'reader', 'onboarded', 'unknown'];

const CREATED_ADDRESSES = ['/sensors/plant1', '/sensors/plant2', '/alarms/fire', '/other'] as const;
/** Never created by the admin. */
const UNCREATED_ADDRESS = '/sensors/plant3';
type MatrixAddress = (typeof CREATED_ADDRESSES)[number] | typeof DEVICES_ADDRESS | typeof UNCREATED_ADDRESS;

const OK = 'ok';
/** A read of a key that holds no value: 404 KEY_NOT_FOUND over REST, `undefined` from the SDK. */
const ABSENT = 'absent';
const PUB_DENIED = 'KALIMA_ERR_ACCESS_PUB_DENIED';
const SUB_DENIED = 'KALIMA_ERR_ACCESS_SUB_DENIED';
const UNKNOWN_DEVICE = 'KALIMA_ERR_ACCESS_UNKNOWN_DEVICE';
const UNKNOWN_ADDRESS = 'KALIMA_ERR_ACCESS_UNKNOWN_ADDRESS';
const ADMIN_ONLY = 'KALIMA_ERR_ACCESS_ADMIN_ONLY';

type WriteOutcome = typeof OK | KalimaErrorCode;
type ReadOutcome = typeof OK | typeof ABSENT | KalimaErrorCode;

/** PUB and SUB of the registered devices; the admin is in the genesis, `unknown` nowhere. */
const PERMISSIONS: Record<'sensor' | 'reader' | 'onboarded', Permissions> = {
  sensor: { pub: ['/sensors'], sub: ['/sensors', '/alarms'] },
  reader: { pub: [], sub: ['/sensors/plant1'] },
  onboarded: { pub: ['/alarms'], sub: ['/alarms'] },
};

const WRITE_MATRIX: Record<DeviceName, Record<MatrixAddress, WriteOutcome>> = {
  admin: { '/sensors/plant1': OK, '/sensors/plant2': OK, '/alarms/fire': OK, '/other': OK, '/kalima/devices': OK, '/sensors/plant3': UNKNOWN_ADDRESS },
  sensor: { '/sensors/plant1': OK, '/sensors/plant2': OK, '/alarms/fire': PUB_DENIED, '/other': PUB_DENIED, '/kalima/devices': ADMIN_ONLY, '/sensors/plant3': UNKNOWN_ADDRESS },
  reader: { '/sensors/plant1': PUB_DENIED, '/sensors/plant2': PUB_DENIED, '/alarms/fire': PUB_DENIED, '/other': PUB_DENIED, '/kalima/devices': ADMIN_ONLY, '/sensors/plant3': PUB_DENIED },
  onboarded: { '/sensors/plant1': PUB_DENIED, '/sensors/plant2': PUB_DENIED, '/alarms/fire': OK, '/other': PUB_DENIED, '/kalima/devices': ADMIN_ONLY, '/sensors/plant3': PUB_DENIED },
  unknown: { '/sensors/plant1': UNKNOWN_DEVICE, '/sensors/plant2': UNKNOWN_DEVICE, '/alarms/fire': UNKNOWN_DEVICE, '/other': UNKNOWN_DEVICE, '/kalima/devices': UNKNOWN_DEVICE, '/sensors/plant3': UNKNOWN_DEVICE },
};

const READ_MATRIX: Record<DeviceName, Record<MatrixAddress, ReadOutcome>> = {
  admin: { '/sensors/plant1': OK, '/sensors/plant2': OK, '/alarms/fire': OK, '/other': OK, '/kalima/devices': OK, '/sensors/plant3': ABSENT },
  sensor: { '/sensors/plant1': OK, '/sensors/plant2': OK, '/alarms/fire': OK, '/other': SUB_DENIED, '/kalima/devices': SUB_DENIED, '/sensors/plant3': ABSENT },
  reader: { '/sensors/plant1': OK, '/sensors/plant2': SUB_DENIED, '/alarms/fire': SUB_DENIED, '/other': SUB_DENIED, '/kalima/devices': SUB_DENIED, '/sensors/plant3': SUB_DENIED },
  onboarded: { '/sensors/plant1': SUB_DENIED, '/sensors/plant2': SUB_DENIED, '/alarms/fire': OK, '/other': SUB_DENIED, '/kalima/devices': SUB_DENIED, '/sensors/plant3': SUB_DENIED },
  unknown: { '/sensors/plant1': UNKNOWN_DEVICE, '/sensors/plant2': UNKNOWN_DEVICE, '/alarms/fire': UNKNOWN_DEVICE, '/other': UNKNOWN_DEVICE, '/kalima/devices': UNKNOWN_DEVICE, '/sensors/plant3': UNKNOWN_DEVICE },
};

/**
 * Event streams: a device subscribes to a prefix; either the subscription is refused with a code,
 * or exactly these addresses deliver events (each of them gets a probe write during the test, and
 * every other address gets one too, so a missing filter shows up as an extra address).
 */
const EVENT_ADDRESSES = [...CREATED_ADDRESSES, DEVICES_ADDRESS, ONBOARDING_ADDRESS, '/kalima/addresses'] as const;
type EventAddress = (typeof EVENT_ADDRESSES)[number];
const EVENT_MATRIX: Array<{ device: DeviceName; prefix: string; expected: readonly EventAddress[] | KalimaErrorCode }> = [
  { device: 'admin', prefix: '/', expected: EVENT_ADDRESSES },
  { device: 'admin', prefix: '/kalima', expected: [DEVICES_ADDRESS, ONBOARDING_ADDRESS, '/kalima/addresses'] },
  { device: 'admin', prefix: '/sensors', expected: ['/sensors/plant1', '/sensors/plant2'] },
  { device: 'sensor', prefix: '/', expected: ['/sensors/plant1', '/sensors/plant2', '/alarms/fire'] },
  { device: 'sensor', prefix: '/sensors/plant1', expected: ['/sensors/plant1'] },
  { device: 'sensor', prefix: '/other', expected: SUB_DENIED },
  { device: 'sensor', prefix: '/kalima', expected: SUB_DENIED },
  { device: 'reader', prefix: '/', expected: ['/sensors/plant1'] },
  { device: 'reader', prefix: '/sensors', expected: ['/sensors/plant1'] },
  { device: 'reader', prefix: '/sensors/plant2', expected: SUB_DENIED },
  { device: 'reader', prefix: '/alarms', expected: SUB_DENIED },
  { device: 'onboarded', prefix: '/', expected: ['/alarms/fire'] },
  { device: 'onboarded', prefix: '/alarms/fire', expected: ['/alarms/fire'] },
  { device: 'onboarded', prefix: '/sensors', expected: SUB_DENIED },
  { device: 'onboarded', prefix: '/kalima/devices', expected: SUB_DENIED },
  { device: 'unknown', prefix: '/', expected: UNKNOWN_DEVICE },
  { device: 'unknown', prefix: '/sensors/plant1', expected: UNKNOWN_DEVICE },
];

// ---- fixtures ----

const STREAM_TIMEOUT_MS = 8_000;

let chain: TestChain;
let node: KalimaNode;
let app: FastifyInstance;
let baseUrl: string;
const keys = {} as Record<DeviceName, KeyPair>;
/** One client per device: a client's nonces only increase, so a device never mixes two clients. */
const clients = {} as Record<DeviceName, KalimaClient>;
let onboardingCode: string;
let onboardingCodeId: string;
/** The value each address holds for the read matrix. */
const seeds = new Map<MatrixAddress, { key: string; body: Uint8Array }>();
let cellCounter = 0;

function clientFor(key: KeyPair): KalimaClient {
  return new KalimaClient({ url: baseUrl, key, chain: chain.genesis.chain, writeAttempts: 1 });
}

beforeAll(async () => {
  chain = makeChain('permissions');
  node = await openNode(chain);
  ({ app } = await openApi(node));
  baseUrl = await app.listen({ port: 0, host: '127.0.0.1' });

  keys.admin = chain.admin;
  for (const name of ['sensor', 'reader', 'onboarded', 'unknown'] as const) keys[name] = generateKeyPair(chain.rng);
  for (const name of DEVICE_NAMES) clients[name] = clientFor(keys[name]);
  const admin = clients.admin;

  for (const address of CREATED_ADDRESSES) await admin.createAddress(address, `matrix ${address}`);
  await admin.registerDevice(clients.sensor.deviceId, { name: 'sensor', ...PERMISSIONS.sensor });
  await admin.registerDevice(clients.reader.deviceId, { name: 'reader', ...PERMISSIONS.reader });
  const issued = await admin.issueOnboardingCode({ name: 'onboarded', ...PERMISSIONS.onboarded });
  onboardingCode = issued.code;
  onboardingCodeId = issued.codeId;
  await clients.onboarded.redeemOnboardingCode(onboardingCode);

  for (const address of CREATED_ADDRESSES) {
    const seed = { key: 'seed', body: new TextEncoder().encode(`seed of ${address}`) };
    await admin.put(address, seed.key, seed.body);
    seeds.set(address, seed);
  }
  seeds.set(DEVICES_ADDRESS, { key: clients.sensor.deviceId, body: encodeDeviceRecord({ name: 'sensor', ...PERMISSIONS.sensor }) });
  seeds.set(UNCREATED_ADDRESS, { key: 'seed', body: new Uint8Array() });
});

afterAll(async () => {
  await app?.close();
  await node?.close();
});

// ---- helpers ----

interface ErrorBody {
  error: { code: KalimaErrorCode; message: string; details: Record<string, unknown> };
}

/** Checks the error body shape and that the HTTP status is the catalogue's; returns the code. */
function errorCodeOf(response: { statusCode: number; json(): unknown }): KalimaErrorCode {
  const body = response.json() as ErrorBody;
  expect(body.error, `error body ${JSON.stringify(body)}`).toMatchObject({ code: expect.any(String), message: expect.any(String), details: expect.any(Object) });
  expect(Object.hasOwn(ERROR_CATALOGUE, body.error.code), `${body.error.code} is in the catalogue`).toBe(true);
  expect(response.statusCode).toBe(ERROR_CATALOGUE[body.error.code].status);
  return body.error.code;
}

async function signedGet(device: DeviceName, pathAndQuery: string) {
  const headers = signRequest({
    method: 'GET', pathAndQuery, genesisHash: genesisHashHex(chain), timestampMs: Date.now(),
    secretKey: keys[device].secretKey, publicKey: keys[device].publicKey, auxRand: systemRng.bytes(32),
  });
  return app.inject({ method: 'GET', url: pathAndQuery, headers });
}

async function restRead(device: DeviceName, address: string, key: string): Promise<{ outcome: ReadOutcome; body?: Uint8Array }> {
  const response = await signedGet(device, `/transaction?${new URLSearchParams({ address, key })}`);
  if (response.statusCode === 200) return { outcome: OK, body: new Uint8Array(Buffer.from((response.json() as { body: string }).body, 'base64')) };
  const code = errorCodeOf(response);
  return { outcome: code === 'KALIMA_ERR_LEDGER_KEY_NOT_FOUND' ? ABSENT : code };
}

async function sdkOutcome<T>(action: () => Promise<T>): Promise<{ outcome: 'ok'; value: T } | { outcome: KalimaErrorCode }> {
  try {
    return { outcome: OK, value: await action() };
  } catch (error) {
    if (error instanceof KalimaError) return { outcome: error.code };
    throw error;
  }
}

/** The write a cell makes: a plain value, or on /kalima/devices the registration of a fresh device. */
function cellWrite(address: MatrixAddress): { key: string; body: Uint8Array } {
  cellCounter++;
  if (address === DEVICES_ADDRESS) return { key: toHex(generateKeyPair(systemRng).publicKey), body: encodeDeviceRecord({ name: `cell ${cellCounter}`, pub: [], sub: [] }) };
  return { key: `cell-${cellCounter}`, body: new TextEncoder().encode(`cell ${cellCounter}`) };
}

async function restSubmit(message: Message) {
  return app.inject({ method: 'POST', url: '/transaction', payload: messageToJson(message) });
}

// ---- server-sent events ----

interface StreamEvent {
  event: string;
  id: string | undefined;
  data: string;
}

/** Splits a text/event-stream body into events; comments (keep-alives) are skipped. */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<StreamEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event: StreamEvent = { event: 'message', id: undefined, data: '' };
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':') || line === '') continue;
        const colon = line.indexOf(':');
        const field = line.slice(0, colon);
        const value = line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event.event = value;
        else if (field === 'id') event.id = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length === 0) continue;
      event.data = data.join('\n');
      yield event;
    }
  }
}

interface OpenStream {
  response: Response;
  controller: AbortController;
}

async function openEventStream(key: KeyPair, prefix: string, from?: number): Promise<OpenStream> {
  const query = new URLSearchParams({ address: prefix });
  if (from !== undefined) query.set('from', String(from));
  const pathAndQuery = `/events?${query}`;
  const headers = signRequest({
    method: 'GET', pathAndQuery, genesisHash: genesisHashHex(chain), timestampMs: Date.now(),
    secretKey: key.secretKey, publicKey: key.publicKey, auxRand: systemRng.bytes(32),
  });
  const controller = new AbortController();
  const response = await fetch(`${baseUrl}${pathAndQuery}`, { headers: { ...headers, accept: 'text/event-stream' }, signal: controller.signal });
  return { response, controller };
}

interface DeliveredMessage {
  address: string;
  key: string;
  globalSequence: number;
}

/** Waits for the `ready` event, so the stream is registered before anything else is written. */
async function awaitReady(stream: OpenStream): Promise<{ events: AsyncGenerator<StreamEvent>; cursor: number }> {
  const events = sseEvents(stream.response.body!);
  const first = await events.next();
  expect(first.done).toBe(false);
  expect(first.value!.event).toBe('ready');
  return { events, cursor: (JSON.parse(first.value!.data) as { cursor: number }).cursor };
}

/**
 * Writes one probe at every event address, then a marker every subscription in EVENT_MATRIX can
 * see. Events arrive in globalSequence order, so a stream that has delivered a marker has already
 * been offered every probe.
 */
async function writeProbesAndMarkers(): Promise<{ markerKey: string; probeSequences: number[] }> {
  const admin = clients.admin;
  const tag = `${Date.now()}-${cellCounter++}`;
  const probeSequences: number[] = [];
  for (const address of CREATED_ADDRESSES) probeSequences.push((await admin.put(address, `probe-${tag}`, 'probe')).globalSequence);
  probeSequences.push((await admin.registerDevice(toHex(generateKeyPair(systemRng).publicKey), { name: 'probe', pub: [], sub: [] })).globalSequence);
  probeSequences.push((await admin.issueOnboardingCode({ name: 'probe', pub: [], sub: [] })).receipt.globalSequence);
  probeSequences.push((await admin.createAddress(`/probe/p${tag}`)).globalSequence);
  const markerKey = `marker-${tag}`;
  await admin.put('/sensors/plant1', markerKey, 'marker');
  await admin.put('/alarms/fire', markerKey, 'marker');
  await admin.createAddress(`/${markerKey}`);
  return { markerKey, probeSequences };
}

function isMarker(markerKey: string): (message: DeliveredMessage) => boolean {
  return (message) => message.key === markerKey || message.key === `/${markerKey}`;
}

// ---- the tests ----

const transports = ['rest', 'sdk'] as const;

describe('write matrix', () => {
  const rows = transports.flatMap((transport) =>
    DEVICE_NAMES.flatMap((device) =>
      (Object.entries(WRITE_MATRIX[device]) as Array<[MatrixAddress, WriteOutcome]>).map(([address, expected]) => ({ transport, device, address, expected }))));

  it.each(rows)('$transport: $device writes $address -> $expected', async ({ transport, device, address, expected }) => {
    const client = clients[device];
    const write = cellWrite(address);
    let outcome: WriteOutcome;
    if (transport === 'rest') {
      const response = await restSubmit(await client.sign(address, write.key, write.body));
      outcome = response.statusCode === 200 ? OK : errorCodeOf(response);
      if (outcome === OK) expect(response.json()).toMatchObject({ globalSequence: expect.any(Number), height: expect.any(Number) });
    } else {
      const result = await sdkOutcome(() => address === DEVICES_ADDRESS
        ? client.registerDevice(write.key, { name: 'cell', pub: [], sub: [] })
        : client.put(address, write.key, write.body));
      outcome = result.outcome;
    }
    expect(outcome).toBe(expected);

    // The admin sees the value exactly when the write was allowed.
    const seen = await restRead('admin', address, write.key);
    if (expected === OK) {
      expect(seen.outcome).toBe(OK);
      if (address !== DEVICES_ADDRESS) expect(seen.body).toEqual(write.body);
    } else {
      expect(seen.outcome).toBe(ABSENT);
    }
  });
});

describe('read matrix', () => {
  const rows = transports.flatMap((transport) =>
    DEVICE_NAMES.flatMap((device) =>
      (Object.entries(READ_MATRIX[device]) as Array<[MatrixAddress, ReadOutcome]>).map(([address, expected]) => ({ transport, device, address, expected }))));

  it.each(rows)('$transport: $device reads $address -> $expected', async ({ transport, device, address, expected }) => {
    const seed = seeds.get(address)!;
    let outcome: ReadOutcome;
    let body: Uint8Array | undefined;
    if (transport === 'rest') {
      ({ outcome, body } = await restRead(device, address, seed.key));
    } else {
      const result = await sdkOutcome(() => clients[device].get(address, seed.key));
      outcome = result.outcome === OK ? (result.value === undefined ? ABSENT : OK) : result.outcome;
      if (result.outcome === OK) body = result.value?.body;
    }
    expect(outcome).toBe(expected);
    if (expected === OK) expect(body).toEqual(seed.body);
  });

  // The other read routes apply the same SUB check as GET /transaction.
  const routeRows = [
    { device: 'reader', route: '/cache?address=%2Fsensors%2Fplant1', expected: 200 },
    { device: 'reader', route: '/cache?address=%2Fsensors%2Fplant2', expected: SUB_DENIED },
    { device: 'reader', route: '/cache/keys?address=%2Falarms%2Ffire', expected: SUB_DENIED },
    { device: 'onboarded', route: '/cache/keys?address=%2Falarms%2Ffire', expected: 200 },
    { device: 'onboarded', route: '/ledger/betweenSequences?address=%2Fsensors%2Fplant1', expected: SUB_DENIED },
    { device: 'sensor', route: '/ledger/fromLast?address=%2Fother', expected: SUB_DENIED },
    { device: 'sensor', route: '/ledger/fromLast?address=%2Falarms%2Ffire', expected: 200 },
    { device: 'sensor', route: '/ledger/bySequence?address=%2Fkalima%2Fdevices&sequence=0', expected: SUB_DENIED },
    { device: 'admin', route: '/ledger/bySequence?address=%2Fkalima%2Fdevices&sequence=0', expected: 200 },
    { device: 'unknown', route: '/cache/list', expected: 200 },
    { device: 'unknown', route: '/cache?address=%2Fsensors%2Fplant1', expected: UNKNOWN_DEVICE },
  ] as const satisfies ReadonlyArray<{ device: DeviceName; route: string; expected: 200 | KalimaErrorCode }>;

  it.each(routeRows)('$device GET $route -> $expected', async ({ device, route, expected }) => {
    const response = await signedGet(device, route);
    if (expected === 200) expect(response.statusCode, response.body).toBe(200);
    else expect(errorCodeOf(response)).toBe(expected);
  });

  // /cache/list is a filter rather than a check: each device sees only the addresses it may read.
  const listRows: Array<{ device: DeviceName; expected: string[] }> = [
    { device: 'sensor', expected: ['/alarms/fire', '/sensors/plant1', '/sensors/plant2'] },
    { device: 'reader', expected: ['/sensors/plant1'] },
    { device: 'onboarded', expected: ['/alarms/fire'] },
    { device: 'unknown', expected: [] },
  ];
  it.each(listRows)('/cache/list for $device holds exactly $expected', async ({ device, expected }) => {
    const listed = (await clients[device].addresses()).map((entry) => entry.address).sort();
    expect(listed).toEqual(expected);
  });

  it('/cache/list for the admin includes the reserved addresses', async () => {
    const listed = (await clients.admin.addresses()).map((entry) => entry.address);
    expect(listed).toEqual(expect.arrayContaining([...CREATED_ADDRESSES, DEVICES_ADDRESS, ONBOARDING_ADDRESS, '/kalima/addresses']));
  });
});

describe('event matrix', () => {
  it.each(EVENT_MATRIX)('sse: $device subscribes to $prefix', async ({ device, prefix, expected }) => {
    // From -1: the whole history is replayed, then the probes arrive live.
    const stream = await openEventStream(keys[device], prefix, -1);
    if (typeof expected === 'string') {
      expect(stream.response.status).toBe(403);
      const body = (await stream.response.json()) as ErrorBody;
      expect(body.error.code).toBe(expected);
      expect(ERROR_CATALOGUE[body.error.code].status).toBe(403);
      return;
    }
    expect(stream.response.status).toBe(200);
    expect(stream.response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const { events, cursor } = await awaitReady(stream);
    expect(cursor).toBe(-1);
    const { markerKey, probeSequences } = await writeProbesAndMarkers();
    const messages: DeliveredMessage[] = [];
    const timer = setTimeout(() => stream.controller.abort(), STREAM_TIMEOUT_MS);
    try {
      for await (const event of events) {
        if (event.event !== 'message') continue;
        const message = JSON.parse(event.data) as DeliveredMessage;
        // The event id is the resume cursor: the message's globalSequence.
        expect(event.id).toBe(String(message.globalSequence));
        messages.push(message);
        if (isMarker(markerKey)(message)) break;
      }
    } finally {
      clearTimeout(timer);
      stream.controller.abort();
    }
    expect(messages.some(isMarker(markerKey)), 'the marker arrived').toBe(true);
    const delivered = new Set(messages.map((message) => message.address));
    expect([...delivered].sort()).toEqual([...expected].sort());
    // In order, once each.
    const sequences = messages.map((message) => message.globalSequence);
    expect(sequences).toEqual([...new Set(sequences)].sort((a, b) => a - b));
    // Exactly one probe per visible address was delivered.
    expect(probeSequences.filter((sequence) => sequences.includes(sequence))).toHaveLength(expected.length);
  });

  it.each(EVENT_MATRIX)('sdk: $device subscribes to $prefix', async ({ device, prefix, expected }) => {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), STREAM_TIMEOUT_MS);
    const status = await clients.admin.status();
    const from = (status.nextGlobalSequence as number) - 1;
    const iterator = clients[device].subscribe(prefix, { from, signal: controller.signal })[Symbol.asyncIterator]();
    try {
      if (typeof expected === 'string') {
        await expect(iterator.next()).rejects.toMatchObject({ name: 'KalimaError', code: expected });
        return;
      }
      const first = iterator.next();
      const { markerKey, probeSequences } = await writeProbesAndMarkers();
      const messages: DeliveredMessage[] = [];
      for (let next = await first; !next.done; next = await iterator.next()) {
        messages.push(next.value);
        if (isMarker(markerKey)(next.value)) break;
      }
      expect(messages.some(isMarker(markerKey)), `the marker arrived; got ${JSON.stringify(messages)}`).toBe(true);
      const delivered = new Set(messages.map((message) => message.address));
      expect([...delivered].sort()).toEqual([...expected].sort());
      expect(messages.map((message) => message.globalSequence).filter((sequence) => probeSequences.includes(sequence))).toHaveLength(expected.length);
    } finally {
      clearTimeout(timer);
      controller.abort();
      await iterator.return?.();
    }
  });
});

describe('addresses that do not exist', () => {
  const rows: Array<{ device: DeviceName; address: string; expected: KalimaErrorCode }> = [
    { device: 'admin', address: '/nowhere', expected: UNKNOWN_ADDRESS },
    { device: 'admin', address: '/sensors/plant1/sub', expected: UNKNOWN_ADDRESS },
    { device: 'sensor', address: '/sensors/plant9', expected: UNKNOWN_ADDRESS },
    { device: 'onboarded', address: '/alarms/flood', expected: UNKNOWN_ADDRESS },
  ];
  it.each(rows)('$device writes $address -> $expected', async ({ device, address, expected }) => {
    const before = node.tipRecord.nextGlobalSequence;
    const result = await sdkOutcome(() => clients[device].put(address, 'k', 'v'));
    expect(result.outcome).toBe(expected);
    expect(node.tipRecord.nextGlobalSequence).toBe(before);
  });
});

describe('onboarding codes', () => {
  it('the onboarded device holds exactly the grant of its code', async () => {
    const redeemed = await restRead('admin', ONBOARDING_ADDRESS, onboardingCodeId);
    expect(redeemed.outcome).toBe(OK);
    // The redeemed record names the device that spent the code.
    expect(toHex(redeemed.body!.subarray(redeemed.body!.length - 32))).toBe(clients.onboarded.deviceId);
  });

  // Each row redeems a code in some state; the expected code, or 'ok'.
  const rows: Array<{ name: string; redeemer: 'fresh' | 'onboarded' | 'sensor' | 'admin'; code: 'spent' | 'fresh' | 'never-issued' | 'expired'; expected: WriteOutcome }> = [
    { name: 'a new device redeems the spent code', redeemer: 'fresh', code: 'spent', expected: 'KALIMA_ERR_ACCESS_BAD_ONBOARDING_CODE' },
    { name: 'the same device redeems its spent code again', redeemer: 'onboarded', code: 'spent', expected: 'KALIMA_ERR_ACCESS_BAD_ONBOARDING_CODE' },
    { name: 'the onboarded device redeems a second code', redeemer: 'onboarded', code: 'fresh', expected: 'KALIMA_ERR_ACCESS_ALREADY_REGISTERED' },
    { name: 'an admin-registered device redeems a code', redeemer: 'sensor', code: 'fresh', expected: 'KALIMA_ERR_ACCESS_ALREADY_REGISTERED' },
    { name: 'a new device redeems a code never issued', redeemer: 'fresh', code: 'never-issued', expected: 'KALIMA_ERR_ACCESS_BAD_ONBOARDING_CODE' },
    { name: 'a new device redeems an expired code', redeemer: 'fresh', code: 'expired', expected: 'KALIMA_ERR_ACCESS_BAD_ONBOARDING_CODE' },
    { name: 'a new device redeems a fresh code', redeemer: 'fresh', code: 'fresh', expected: OK },
  ];

  it.each(rows)('$name -> $expected', async ({ redeemer, code, expected }) => {
    let secret: string;
    let freshCode: string | undefined;
    if (code === 'spent') secret = onboardingCode;
    else if (code === 'never-issued') secret = toHex(systemRng.bytes(32));
    else {
      const issued = await clients.admin.issueOnboardingCode({ name: code, pub: ['/alarms'], sub: ['/alarms'], expiresAtMs: code === 'expired' ? Date.now() - 1 : 0 });
      secret = issued.code;
      if (code === 'fresh') freshCode = secret;
    }
    const client = redeemer === 'fresh' ? clientFor(generateKeyPair(systemRng)) : clients[redeemer];
    const result = await sdkOutcome(() => client.redeemOnboardingCode(secret));
    expect(result.outcome).toBe(expected);
    if (expected === OK) {
      // The code made the device: it may now write where the grant says, and only there.
      expect((await sdkOutcome(() => client.put('/alarms/fire', 'onboarded-write', 'x'))).outcome).toBe(OK);
      expect((await sdkOutcome(() => client.put('/sensors/plant1', 'onboarded-write', 'x'))).outcome).toBe(PUB_DENIED);
    } else if (freshCode !== undefined) {
      // A refused redemption leaves the code unspent: a new device can still redeem it.
      expect((await sdkOutcome(() => clientFor(generateKeyPair(systemRng)).redeemOnboardingCode(freshCode))).outcome).toBe(OK);
    }
  });

  it('a code is redeemed once even when two devices race for it', async () => {
    const issued = await clients.admin.issueOnboardingCode({ name: 'race', pub: [], sub: ['/alarms'] });
    const racers = [clientFor(generateKeyPair(systemRng)), clientFor(generateKeyPair(systemRng))];
    const outcomes = await Promise.all(racers.map((racer) => sdkOutcome(() => racer.redeemOnboardingCode(issued.code))));
    expect(outcomes.map((outcome) => outcome.outcome).sort()).toEqual(['KALIMA_ERR_ACCESS_BAD_ONBOARDING_CODE', OK].sort());
  });
});

describe('revocation', () => {
  // A device is revoked by deleting the record that made it: its /kalima/devices entry, or the
  // redeemed /kalima/onboarding entry for a device that joined with a code.
  const rows = [
    { name: 'registered by the admin', joined: 'registered' },
    { name: 'onboarded with a code', joined: 'onboarded' },
  ] as const;

  it.each(rows)('a device $name loses reads, writes and its event stream', async ({ joined }) => {
    const admin = clients.admin;
    const victim = clientFor(generateKeyPair(systemRng));
    const grant = { name: 'victim', pub: ['/sensors'], sub: ['/sensors'] };
    let revoke: () => Promise<unknown>;
    if (joined === 'registered') {
      await admin.registerDevice(victim.deviceId, grant);
      revoke = () => admin.unregisterDevice(victim.deviceId);
    } else {
      const issued = await admin.issueOnboardingCode(grant);
      await victim.redeemOnboardingCode(issued.code);
      revoke = async () => admin.submit(await admin.sign(ONBOARDING_ADDRESS, issued.codeId, new Uint8Array()), 'DELETE');
    }

    // Before: the victim reads, writes and is notified.
    expect((await sdkOutcome(() => victim.get('/sensors/plant1', 'seed'))).outcome).toBe(OK);
    expect((await sdkOutcome(() => victim.put('/sensors/plant2', 'victim', 'before'))).outcome).toBe(OK);
    const stream = await openEventStream(victim.key, '/sensors');
    const { events } = await awaitReady(stream);
    const beforeReceipt = await admin.put('/sensors/plant1', 'revocation', 'before');
    const sdkController = new AbortController();
    const sdkIterator = victim.subscribe('/sensors', { from: beforeReceipt.globalSequence - 1, signal: sdkController.signal })[Symbol.asyncIterator]();
    expect((await sdkIterator.next()).value).toMatchObject({ globalSequence: beforeReceipt.globalSequence, address: '/sensors/plant1' });

    const revokeReceipt = (await revoke()) as { globalSequence: number };
    const afterReceipt = await admin.put('/sensors/plant1', 'revocation', 'after');
    expect(afterReceipt.globalSequence).toBeGreaterThan(revokeReceipt.globalSequence);

    // The live stream delivered the write before revocation, then ended without the one after.
    const delivered: number[] = [];
    const timer = setTimeout(() => stream.controller.abort(), STREAM_TIMEOUT_MS);
    let ended = false;
    try {
      for await (const event of events) if (event.event === 'message') delivered.push((JSON.parse(event.data) as DeliveredMessage).globalSequence);
      ended = true;
    } catch {
      ended = false;
    } finally {
      clearTimeout(timer);
    }
    expect(ended, 'the node closed the revoked device\'s stream').toBe(true);
    expect(delivered).toEqual([beforeReceipt.globalSequence]);

    // The SDK subscription reconnects and is then refused.
    await expect(sdkIterator.next()).rejects.toMatchObject({ code: UNKNOWN_DEVICE });
    sdkController.abort();

    // After: reads, writes and new subscriptions are refused as from an unknown device.
    expect((await sdkOutcome(() => victim.get('/sensors/plant1', 'seed'))).outcome).toBe(UNKNOWN_DEVICE);
    expect((await sdkOutcome(() => victim.put('/sensors/plant2', 'victim', 'after'))).outcome).toBe(UNKNOWN_DEVICE);
    const refused = await openEventStream(victim.key, '/sensors');
    expect(refused.response.status).toBe(403);
    expect(((await refused.response.json()) as ErrorBody).error.code).toBe(UNKNOWN_DEVICE);
  });
});

