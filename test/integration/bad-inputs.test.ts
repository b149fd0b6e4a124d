// Bad inputs over REST, one row per error branch: each gives its catalogue code and HTTP status,
// answers with the {error: {code, message, details}} body, and changes nothing (the state digest,
// the height, the next global sequence and the MemCache size are the same before and after). The
// rows the SDK can express are sent through KalimaClient too, which must throw the same code.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { ERROR_CATALOGUE, KalimaError, type KalimaErrorCode } from '../../src/errors.ts';
import { DEVICES_ADDRESS } from '../../src/access/records.ts';
import { signRequest } from '../../src/api/auth.ts';
import { type MessageJson, messageToJson } from '../../src/api/json.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { MESSAGE_BODY_BYTES_MAX, NONCE_RECENT_MAX } from '../../src/ledger/limits.ts';
import { type Message, messageSigningHash } from '../../src/ledger/message.ts';
import { type KeyPair, generateKeyPair } from '../../src/ledger/signature.ts';
import { type CommitReceipt, DEVICE_IN_FLIGHT_MAX, type KalimaNode } from '../../src/node/node.ts';
import { type Clock, systemRng } from '../../src/ports.ts';
import { KalimaClient } from '../../src/sdk/client.ts';
import { type TestChain, createAddress, makeChain, makeMessage, openApi, openNode, registerDevice } from '../support/chain.ts';
import { genesisHashHex } from '../support/chain.ts';

const ADDRESS = '/sensors';
/** The nonce of the writer's committed message; the replay rows send it again. */
const HIGH_NONCE = 1_000_000;
const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

let chain: TestChain;
let node: KalimaNode;
let app: FastifyInstance;
let baseUrl: string;
let writer: KeyPair;
/** The writer's message committed at HIGH_NONCE, for the replay rows. */
let committed: Message;
let committedReceipt: CommitReceipt;

beforeAll(async () => {
  chain = makeChain('bad-inputs');
  node = await openNode(chain);
  ({ app } = await openApi(node));
  baseUrl = await app.listen({ port: 0, host: '127.0.0.1' });
  await createAddress(node, chain, ADDRESS);
  writer = await registerDevice(node, chain, { pub: [ADDRESS], sub: [ADDRESS] });
  // More writes than the window remembers, so its floor rises above the first nonces.
  // In chunks: a device may have at most DEVICE_IN_FLIGHT_MAX writes in flight.
  for (let start = 0; start <= NONCE_RECENT_MAX; start += DEVICE_IN_FLIGHT_MAX) {
    const count = Math.min(DEVICE_IN_FLIGHT_MAX, NONCE_RECENT_MAX + 1 - start);
    await Promise.all(Array.from({ length: count }, (_, offset) =>
      node.submit(makeMessage(chain, writer, { address: ADDRESS, key: `fill-${start + offset}`, body: utf8('fill'), nonce: start + offset + 1 }))));
  }
  committed = makeMessage(chain, writer, { address: ADDRESS, key: 'temp', body: utf8('21.5'), nonce: HIGH_NONCE });
  committedReceipt = await node.submit(committed);
  expect(floorOf(writer)).toBeGreaterThan(0);
});

afterAll(async () => {
  await app?.close();
  await node?.close();
});

// ---- inputs ----

let nonce = HIGH_NONCE;
/** A valid message from the writer with a fresh nonce; `fields` override before signing. */
function valid(fields: Partial<Parameters<typeof makeMessage>[2]> = {}): Message {
  return makeMessage(chain, writer, { address: ADDRESS, key: 'temp', body: utf8('22.0'), nonce: ++nonce, ...fields });
}

/** Nonces at or below the floor of a device's replay window are refused as too old. */
function floorOf(key: KeyPair): number {
  return node.cache.nonceWindow(toHex(key.publicKey))!.floor;
}

/** A valid message as JSON, then changed: the change is made after signing. */
function validJson(change: (json: MessageJson) => unknown): unknown {
  return change(messageToJson(valid()));
}

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const copy = bytes.slice();
  copy[bit >> 3] = copy[bit >> 3]! ^ (1 << (bit & 7));
  return copy;
}

function props(count: number): Record<string, string> {
  return Object.fromEntries(Array.from({ length: count }, (_, index) => [`p${index}`, 'v']));
}

function signedHeaders(pathAndQuery: string, options: { key?: KeyPair; timestampMs?: number; signedPath?: string } = {}): Record<string, string> {
  const key = options.key ?? chain.admin;
  return signRequest({
    method: 'GET', pathAndQuery: options.signedPath ?? pathAndQuery, genesisHash: genesisHashHex(chain), timestampMs: options.timestampMs ?? Date.now(),
    secretKey: key.secretKey, publicKey: key.publicKey, auxRand: systemRng.bytes(32),
  });
}

function signedGet(pathAndQuery: string, options: Parameters<typeof signedHeaders>[1] = {}): InjectOptions {
  return { method: 'GET', url: pathAndQuery, headers: signedHeaders(pathAndQuery, options) };
}

const postJson = (payload: unknown): InjectOptions => ({ method: 'POST', url: '/transaction', payload: payload as InjectOptions['payload'] });
const postRaw = (payload: string, contentType = 'application/json'): InjectOptions => ({ method: 'POST', url: '/transaction', payload, headers: { 'content-type': contentType } });

function clientFor(key: KeyPair, clock?: Clock): KalimaClient {
  return new KalimaClient({ url: baseUrl, key, chain: chain.genesis.chain, writeAttempts: 1, clock });
}

const skewedClock = (offsetMs: number): Clock => ({ nowMs: () => Date.now() + offsetMs });
const OLD_MS = -61_000;
const missingKeyPath = `/transaction?${new URLSearchParams({ address: ADDRESS, key: 'missing' })}`;

interface Row {
  name: string;
  status: number;
  code: KalimaErrorCode;
  /** The request over REST. */
  rest: () => InjectOptions;
  /** The same input through the SDK, where the SDK can express it. */
  sdk?: () => Promise<unknown>;
  /** Further checks of the error details. */
  details?: (details: Record<string, unknown>) => void;
}

/** A row whose input is a Message: POST as JSON over REST, and KalimaClient.submit over the SDK. */
function messageRow(name: string, status: number, code: KalimaErrorCode, build: () => Message, details?: Row['details']): Row {
  let message: Message | undefined;
  const built = (): Message => (message ??= build());
  return { name, status, code, rest: () => postJson(messageToJson(built())), sdk: () => clientFor(writer).submit(built()), details };
}

const ROWS: Row[] = [
  // sizes
  messageRow('body of 8193 bytes', 413, 'KALIMA_ERR_LEDGER_BODY_TOO_LARGE', () => ({ ...valid(), body: new Uint8Array(MESSAGE_BODY_BYTES_MAX + 1).fill(7) })),
  { name: 'request larger than the 2 MiB body limit', status: 413, code: 'KALIMA_ERR_API_PAYLOAD_TOO_LARGE', rest: () => postRaw(JSON.stringify(validJson((json) => ({ ...json, body: 'A'.repeat(3 * 1024 * 1024) })))) },
  // signatures
  messageRow('signature with one bit flipped', 401, 'KALIMA_ERR_LEDGER_BAD_SIGNATURE', () => { const message = valid(); return { ...message, signature: flipBit(message.signature, 100) }; }),
  messageRow('body changed after signing', 401, 'KALIMA_ERR_LEDGER_BAD_SIGNATURE', () => { const message = valid(); return { ...message, body: flipBit(message.body, 3) }; }),
  messageRow('signed by another key', 401, 'KALIMA_ERR_LEDGER_BAD_SIGNATURE', () => ({ ...valid(), signature: makeMessage(chain, chain.admin, { address: ADDRESS, key: 'temp' }).signature })),
  { name: 'signature of 63 bytes', status: 401, code: 'KALIMA_ERR_LEDGER_BAD_SIGNATURE', rest: () => postJson(validJson((json) => ({ ...json, signature: json.signature.slice(2) }))) },
  // nonces
  {
    name: 'the committed message sent again', status: 409, code: 'KALIMA_ERR_LEDGER_NONCE_REPLAYED', rest: () => postJson(messageToJson(committed)),
    details: (details) => {
      expect(details.nonce).toBe(HIGH_NONCE);
      expect(details.committed).toEqual(committedReceipt);
      expect((details.committed as CommitReceipt).messageHash).toBe(toHex(messageSigningHash(committed)));
    },
  },
  messageRow('another message reusing a committed nonce', 409, 'KALIMA_ERR_LEDGER_NONCE_REPLAYED', () => valid({ nonce: HIGH_NONCE, body: utf8('other') }), (details) => {
    expect(details.nonce).toBe(HIGH_NONCE);
    // Only a replay of the very same message says where it committed.
    expect(details.committed).toBeUndefined();
  }),
  messageRow('nonce at the floor of the window', 409, 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD', () => valid({ nonce: floorOf(writer) }), (details) => {
    expect(details.floor).toBe(floorOf(writer));
  }),
  messageRow('nonce 0, long evicted', 409, 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD', () => valid({ nonce: 0 })),
  messageRow('negative nonce', 400, 'KALIMA_ERR_LEDGER_BAD_NONCE', () => ({ ...valid(), nonce: -1 })),
  messageRow('nonce of 2^53', 400, 'KALIMA_ERR_LEDGER_BAD_NONCE', () => ({ ...valid(), nonce: 2 ** 53 })),
  { name: 'fractional nonce', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => postJson(validJson((json) => ({ ...json, nonce: 1.5 }))) },
  // devices, chains, addresses
  messageRow('unknown device', 403, 'KALIMA_ERR_ACCESS_UNKNOWN_DEVICE', () => makeMessage(chain, generateKeyPair(systemRng), { address: ADDRESS, key: 'temp' })),
  messageRow('device of 31 bytes', 400, 'KALIMA_ERR_LEDGER_BAD_DEVICE', () => ({ ...valid(), device: valid().device.slice(1) })),
  messageRow('wrong chain id', 400, 'KALIMA_ERR_LEDGER_WRONG_CHAIN', () => valid({ chain: 'otherchain' }), (details) => {
    expect(details).toMatchObject({ chain: 'otherchain', expected: 'testchain' });
  }),
  messageRow('malformed chain id', 400, 'KALIMA_ERR_LEDGER_BAD_CHAIN', () => ({ ...valid(), chain: 'Bad Chain' })),
  messageRow('address not created, inside the PUB list', 404, 'KALIMA_ERR_ACCESS_UNKNOWN_ADDRESS', () => valid({ address: `${ADDRESS}/not-created` })),
  messageRow('address not created, outside the PUB list', 403, 'KALIMA_ERR_ACCESS_PUB_DENIED', () => valid({ address: '/nowhere' })),
  messageRow('address without a leading slash', 400, 'KALIMA_ERR_LEDGER_BAD_ADDRESS', () => ({ ...valid(), address: 'sensors' })),
  messageRow('address with a trailing slash', 400, 'KALIMA_ERR_LEDGER_BAD_ADDRESS', () => ({ ...valid(), address: '/sensors/' })),
  messageRow('malformed body on a reserved address', 400, 'KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', () => makeMessage(chain, chain.admin, { address: DEVICES_ADDRESS, key: toHex(generateKeyPair(systemRng).publicKey), body: utf8('junk'), nonce: 5_000_000 + ++nonce })),
  // keys, ttl, props, body
  messageRow('key with a character outside the set', 400, 'KALIMA_ERR_LEDGER_BAD_KEY', () => ({ ...valid(), key: 'temp!' })),
  messageRow('key with a newline', 400, 'KALIMA_ERR_LEDGER_BAD_KEY', () => ({ ...valid(), key: 'a\nb' })),
  messageRow('empty key', 400, 'KALIMA_ERR_LEDGER_BAD_KEY', () => ({ ...valid(), key: '' })),
  messageRow('key of 257 bytes', 400, 'KALIMA_ERR_LEDGER_BAD_KEY', () => ({ ...valid(), key: 'k'.repeat(257) })),
  messageRow('ttl 0', 400, 'KALIMA_ERR_LEDGER_BAD_TTL', () => ({ ...valid(), ttlSeconds: 0 })),
  messageRow('ttl -2', 400, 'KALIMA_ERR_LEDGER_BAD_TTL', () => ({ ...valid(), ttlSeconds: -2 })),
  messageRow('ttl over ten years', 400, 'KALIMA_ERR_LEDGER_BAD_TTL', () => ({ ...valid(), ttlSeconds: 315_360_001 })),
  { name: 'ttl as a string', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => postJson(validJson((json) => ({ ...json, ttl: '60' }))) },
  { name: 'fractional ttl', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => postJson(validJson((json) => ({ ...json, ttl: 1.5 }))) },
  { name: 'body not base64', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => postJson(validJson((json) => ({ ...json, body: '***' }))), details: (details) => expect(details.field).toBe('body') },
  { name: 'body base64 without padding', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => postJson(validJson((json) => ({ ...json, body: 'YWJj' + 'ZA' }))) },
  messageRow('prop key in upper case', 400, 'KALIMA_ERR_LEDGER_BAD_PROPS', () => ({ ...valid(), props: [['Unit', 'c']] })),
  messageRow('17 props', 400, 'KALIMA_ERR_LEDGER_BAD_PROPS', () => ({ ...valid(), props: Object.entries(props(17)).sort() })),
  messageRow('prop value of 257 bytes', 400, 'KALIMA_ERR_LEDGER_BAD_PROPS', () => ({ ...valid(), props: [['unit', 'v'.repeat(257)]] })),
  { name: 'prop value not a string', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => postJson(validJson((json) => ({ ...json, props: { unit: 5 } }))) },
  { name: 'props as an array', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => postJson(validJson((json) => ({ ...json, props: [['unit', 'c']] }))) },
  // shape of the request
  ...(['chain', 'address', 'key', 'device', 'nonce', 'signature'] as const).map((field): Row => ({
    name: `missing ${field}`, status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST',
    rest: () => postJson(validJson((json) => { const copy: Record<string, unknown> = { ...json }; delete copy[field]; return copy; })),
  })),
  { name: 'body is a JSON array', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => postJson([validJson((json) => json)]) },
  { name: 'malformed JSON', status: 400, code: 'KALIMA_ERR_API_BAD_JSON', rest: () => postRaw('{"chain":') },
  { name: 'empty body with a JSON content type', status: 400, code: 'KALIMA_ERR_API_BAD_JSON', rest: () => postRaw('') },
  { name: 'a bare JSON string', status: 400, code: 'KALIMA_ERR_API_BAD_JSON', rest: () => postRaw('hello') },
  { name: 'an empty batch', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => ({ method: 'POST', url: '/transactions', payload: [] }) },
  // deletes
  messageRow('delete of a key with no value', 404, 'KALIMA_ERR_LEDGER_KEY_NOT_FOUND', () => valid({ key: 'never-written', body: new Uint8Array() })),
  { name: 'DELETE with a body', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => ({ method: 'DELETE', url: '/transaction', payload: messageToJson(valid({ key: 'temp' })) }) },
  // signed reads
  {
    name: 'unsigned GET', status: 401, code: 'KALIMA_ERR_ACCESS_AUTH_MISSING', rest: () => ({ method: 'GET', url: missingKeyPath }),
  },
  { name: 'GET with two of the three auth headers', status: 401, code: 'KALIMA_ERR_ACCESS_AUTH_MISSING', rest: () => { const headers = signedHeaders(missingKeyPath); delete headers['x-kalima-signature']; return { method: 'GET', url: missingKeyPath, headers }; } },
  {
    name: 'GET with a timestamp 61 s old', status: 401, code: 'KALIMA_ERR_ACCESS_AUTH_EXPIRED', rest: () => signedGet(missingKeyPath, { timestampMs: Date.now() + OLD_MS }),
    sdk: () => clientFor(writer, skewedClock(OLD_MS)).get(ADDRESS, 'temp'),
  },
  {
    name: 'GET with a timestamp 61 s ahead', status: 401, code: 'KALIMA_ERR_ACCESS_AUTH_EXPIRED', rest: () => signedGet(missingKeyPath, { timestampMs: Date.now() - OLD_MS }),
    sdk: () => clientFor(writer, skewedClock(-OLD_MS)).keys(ADDRESS),
  },
  { name: 'GET signed for another path', status: 401, code: 'KALIMA_ERR_ACCESS_AUTH_BAD_SIGNATURE', rest: () => signedGet(missingKeyPath, { signedPath: '/cache/list' }) },
  { name: 'GET with a malformed device header', status: 401, code: 'KALIMA_ERR_ACCESS_AUTH_BAD_SIGNATURE', rest: () => ({ method: 'GET', url: missingKeyPath, headers: { ...signedHeaders(missingKeyPath), 'x-kalima-device': 'zz' } }) },
  {
    name: 'GET of a missing key', status: 404, code: 'KALIMA_ERR_LEDGER_KEY_NOT_FOUND', rest: () => signedGet(missingKeyPath),
    details: (details) => expect(details).toEqual({ address: ADDRESS, key: 'missing' }),
  },
  { name: 'GET without the key parameter', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => signedGet(`/transaction?address=${encodeURIComponent(ADDRESS)}`) },
  { name: 'GET with a malformed address', status: 400, code: 'KALIMA_ERR_LEDGER_BAD_ADDRESS', rest: () => signedGet('/transaction?address=sensors&key=temp') },
  {
    name: 'GET by an unknown device', status: 403, code: 'KALIMA_ERR_ACCESS_UNKNOWN_DEVICE', rest: () => signedGet(missingKeyPath, { key: generateKeyPair(systemRng) }),
    sdk: () => clientFor(generateKeyPair(systemRng)).get(ADDRESS, 'temp'),
  },
  { name: 'GET of a sequence not yet written', status: 404, code: 'KALIMA_ERR_LEDGER_NOT_FOUND', rest: () => signedGet(`/ledger/bySequence?address=${encodeURIComponent(ADDRESS)}&sequence=999`) },
  { name: 'GET of a block beyond the tip', status: 404, code: 'KALIMA_ERR_LEDGER_NOT_FOUND', rest: () => signedGet('/blocks/999999') },
  { name: 'GET with a non-numeric page size', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => signedGet(`/ledger/betweenSequences?address=${encodeURIComponent(ADDRESS)}&pageSize=ten`) },
  { name: 'events with a malformed cursor', status: 400, code: 'KALIMA_ERR_API_BAD_REQUEST', rest: () => signedGet('/events?from=abc') },
  { name: 'unknown route', status: 404, code: 'KALIMA_ERR_API_NOT_FOUND', rest: () => ({ method: 'GET', url: '/no/such/route' }) },
  { name: 'unknown method on a known route', status: 404, code: 'KALIMA_ERR_API_NOT_FOUND', rest: () => ({ method: 'PUT', url: '/transaction', payload: {} }) },
];

// ---- state ----

interface StateSnapshot {
  stateDigest: string;
  height: number;
  nextGlobalSequence: number;
  entries: number;
  cacheSize: number;
  pendingMessages: number;
}

async function snapshot(): Promise<StateSnapshot> {
  const response = await app.inject({ method: 'GET', url: '/status' });
  expect(response.statusCode).toBe(200);
  const status = response.json() as Record<string, unknown>;
  return {
    stateDigest: status.stateDigest as string,
    height: status.height as number,
    nextGlobalSequence: status.nextGlobalSequence as number,
    entries: status.entries as number,
    cacheSize: node.cache.size,
    pendingMessages: node.pendingCount,
  };
}

/** Asserts the catalogue body shape and returns the error. */
function errorOf(response: { statusCode: number; json(): unknown }): { code: KalimaErrorCode; message: string; details: Record<string, unknown> } {
  const body = response.json() as { error: { code: KalimaErrorCode; message: string; details: Record<string, unknown> } };
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'details', 'message']);
  expect(typeof body.error.code).toBe('string');
  expect(Object.hasOwn(ERROR_CATALOGUE, body.error.code), `${body.error.code} is in the catalogue`).toBe(true);
  expect(body.error.message).toBe(ERROR_CATALOGUE[body.error.code].message);
  expect(body.error.details).toBeTypeOf('object');
  expect(body.error.details).not.toBeNull();
  expect(response.statusCode).toBe(ERROR_CATALOGUE[body.error.code].status);
  return body.error;
}

// ---- tests ----

describe('bad inputs over REST', () => {
  it('a valid message does change the compared state, so the rows below can fail', async () => {
    const before = await snapshot();
    // The largest body allowed, at the boundary the oversized row crosses.
    const response = await app.inject(postJson(messageToJson(valid({ body: new Uint8Array(MESSAGE_BODY_BYTES_MAX).fill(1), key: 'largest' }))));
    expect(response.statusCode, response.body).toBe(200);
    const after = await snapshot();
    expect(after.height).toBe(before.height + 1);
    expect(after.nextGlobalSequence).toBe(before.nextGlobalSequence + 1);
    expect(after.cacheSize).toBe(before.cacheSize + 1);
    expect(after.stateDigest).not.toBe(before.stateDigest);
  });

  it('an unused nonce above the floor is accepted, far below the highest used', async () => {
    // Pairs with the NONCE_TOO_OLD row: the floor itself is refused. The nonce is far below the
    // highest one used (HIGH_NONCE and up), which the window allows.
    const fresh = floorOf(writer) + NONCE_RECENT_MAX + 10;
    expect(fresh).toBeLessThan(HIGH_NONCE);
    const response = await app.inject(postJson(messageToJson(valid({ nonce: fresh, key: 'edge' }))));
    expect(response.statusCode, response.body).toBe(200);
  });

  it.each(ROWS)('$name -> $status $code', async (row) => {
    const before = await snapshot();
    const response = await app.inject(row.rest());
    expect(response.statusCode, response.body).toBe(row.status);
    const error = errorOf(response);
    expect(error.code).toBe(row.code);
    row.details?.(error.details);
    expect(await snapshot()).toEqual(before);
  });
});

describe('the same codes through the SDK', () => {
  const sdkRows = ROWS.filter((row) => row.sdk !== undefined);

  it('covers enough rows to matter', () => {
    expect(sdkRows.length).toBeGreaterThanOrEqual(10);
  });

  it.each(sdkRows)('$name -> $code', async (row) => {
    const before = await snapshot();
    let thrown: unknown;
    try {
      await row.sdk!();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(KalimaError);
    const error = thrown as KalimaError;
    expect(error.code).toBe(row.code);
    expect(error.status).toBe(row.status);
    row.details?.(error.details);
    expect(await snapshot()).toEqual(before);
  });

  it('a replay of its own committed message is the commit, not an error', async () => {
    // The SDK retries with the same nonce; NONCE_REPLAYED carrying its own hash means it committed.
    const before = await snapshot();
    await expect(clientFor(writer).submit(committed)).resolves.toEqual(committedReceipt);
    expect(await snapshot()).toEqual(before);
  });

  it('a GET of a missing key is undefined, not an error', async () => {
    await expect(clientFor(writer).get(ADDRESS, 'missing')).resolves.toBeUndefined();
  });
});

describe('the error catalogue', () => {
  it.each(Object.entries(ERROR_CATALOGUE))('%s has a status and a message', (code, entry) => {
    expect(code).toMatch(/^KALIMA_ERR_[A-Z]+_[A-Z0-9_]+$/);
    expect(Number.isInteger(entry.status)).toBe(true);
    expect(entry.status).toBeGreaterThanOrEqual(400);
    expect(entry.status).toBeLessThan(600);
    expect(entry.message.trim().length).toBeGreaterThan(0);
    const error = new KalimaError(code as KalimaErrorCode, { probe: 1 });
    expect(error.toJSON()).toEqual({ error: { code, message: entry.message, details: { probe: 1 } } });
    expect(error.status).toBe(entry.status);
  });

  it('every code the rows expect is one the catalogue holds with that status', () => {
    for (const row of ROWS) expect(ERROR_CATALOGUE[row.code].status, row.name).toBe(row.status);
  });
});
