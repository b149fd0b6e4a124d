// Authorisation data (/kalima/devices, /kalima/onboarding) is for admins alone, whatever a
// device's SUB list says; "/" covers every address outside /kalima.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '../../src/api/auth.ts';
import { toHex } from '../../src/ledger/hash.ts';
import type { KeyPair } from '../../src/ledger/signature.ts';
import type { KalimaNode } from '../../src/node/node.ts';
import { createAddress, makeChain, makeMessage, openApi, openNode, registerDevice } from '../support/chain.ts';
import { genesisHashHex } from '../support/chain.ts';

const chain = makeChain('reserved-read');
let node: KalimaNode;
let api: Awaited<ReturnType<typeof openApi>>;
let everything: KeyPair;
let explicit: KeyPair;

beforeAll(async () => {
  node = await openNode(chain);
  api = await openApi(node);
  await createAddress(node, chain, '/plant');
  everything = await registerDevice(node, chain, { pub: ['/plant'], sub: ['/'] });
  explicit = await registerDevice(node, chain, { pub: [], sub: ['/kalima/devices', '/kalima/addresses'] });
  await node.submit(makeMessage(chain, everything, { address: '/plant', key: 'k', body: 'v' }));
});

afterAll(async () => {
  await api.app.close();
  await node.close();
});

async function read(device: KeyPair, address: string, key: string): Promise<{ status: number; code?: string }> {
  const url = `/transaction?${new URLSearchParams({ address, key })}`;
  const headers = signRequest({ method: 'GET', pathAndQuery: url, genesisHash: genesisHashHex(chain), timestampMs: Date.now(), secretKey: device.secretKey, publicKey: device.publicKey, auxRand: chain.rng.bytes(32) });
  const response = await api.app.inject({ method: 'GET', url, headers });
  return { status: response.statusCode, code: response.statusCode === 200 ? undefined : response.json().error.code };
}

describe('reading reserved addresses', () => {
  it.each([
    { who: 'SUB "/"', device: () => everything, address: '/plant', key: 'k', expected: 200 },
    { who: 'SUB "/"', device: () => everything, address: '/kalima/devices', key: () => toHex(everything.publicKey), expected: 'KALIMA_ERR_ACCESS_SUB_DENIED' },
    { who: 'SUB "/"', device: () => everything, address: '/kalima/addresses', key: '/plant', expected: 'KALIMA_ERR_ACCESS_SUB_DENIED' },
    { who: 'SUB naming /kalima/devices', device: () => explicit, address: '/kalima/devices', key: () => toHex(everything.publicKey), expected: 'KALIMA_ERR_ACCESS_SUB_DENIED' },
    { who: 'SUB naming /kalima/addresses', device: () => explicit, address: '/kalima/addresses', key: '/plant', expected: 200 },
    { who: 'admin', device: () => chain.admin, address: '/kalima/devices', key: () => toHex(everything.publicKey), expected: 200 },
  ])('$who reading $address gives $expected', async ({ device, address, key, expected }) => {
    const result = await read(device(), address, typeof key === 'function' ? key() : key);
    if (expected === 200) expect(result.status).toBe(200);
    else expect(result.code).toBe(expected);
  });
});
