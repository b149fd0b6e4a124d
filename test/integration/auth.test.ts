// Request signatures: bound to the chain's genesis, to the stream cursor, and usable once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { signRequest } from '../../src/api/auth.ts';
import type { KalimaNode } from '../../src/node/node.ts';
import { createAddress, genesisHashHex, makeChain, makeMessage, openApi, openNode, registerDevice } from '../support/chain.ts';

const chain = makeChain('auth');
let node: KalimaNode;
let app: FastifyInstance;
let baseUrl: string;

beforeAll(async () => {
  node = await openNode(chain);
  ({ app } = await openApi(node));
  baseUrl = await app.listen({ port: 0, host: '127.0.0.1' });
  await createAddress(node, chain, '/x');
  const device = await registerDevice(node, chain, { pub: ['/x'], sub: ['/x'] });
  for (let index = 0; index < 3; index++) await node.submit(makeMessage(chain, device, { address: '/x', key: `k${index}` }));
});

afterAll(async () => {
  await app.close();
  await node.close();
});

function headersFor(pathAndQuery: string, options: { genesisHash?: string; lastEventId?: string } = {}): Record<string, string> {
  return signRequest({
    method: 'GET', pathAndQuery, timestampMs: Date.now(), genesisHash: options.genesisHash ?? genesisHashHex(chain), lastEventId: options.lastEventId,
    secretKey: chain.admin.secretKey, publicKey: chain.admin.publicKey, auxRand: chain.rng.bytes(32),
  });
}

async function codeOf(response: { statusCode: number; json: () => unknown }): Promise<string | number> {
  return response.statusCode === 200 ? 200 : (response.json() as { error: { code: string } }).error.code;
}

describe('request signatures', () => {
  it('are accepted once; the same headers again are a replay', async () => {
    const url = '/cache/list';
    const headers = headersFor(url);
    expect(await codeOf(await app.inject({ method: 'GET', url, headers }))).toBe(200);
    expect(await codeOf(await app.inject({ method: 'GET', url, headers }))).toBe('KALIMA_ERR_ACCESS_AUTH_REPLAYED');
  });

  it('are bound to the genesis hash, not only the chain name', async () => {
    const url = '/cache/list';
    const otherGenesis = genesisHashHex(makeChain('another-genesis'));
    expect(await codeOf(await app.inject({ method: 'GET', url, headers: headersFor(url, { genesisHash: otherGenesis }) }))).toBe('KALIMA_ERR_ACCESS_AUTH_BAD_SIGNATURE');
  });

  it('cover Last-Event-ID: a stream request cannot be re-pointed at older history', async () => {
    const url = '/events?address=%2Fx';
    const signedLive = headersFor(url);
    const response = await fetch(`${baseUrl}${url}`, { headers: { ...signedLive, 'last-event-id': '-1' } });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('KALIMA_ERR_ACCESS_AUTH_BAD_SIGNATURE');
  });

  it('a cursor beyond the newest message is refused, not silently skipped to', async () => {
    const ahead = String(node.cache.nextGlobalSequence + 5);
    const url = '/events?address=%2Fx';
    const response = await fetch(`${baseUrl}${url}`, { headers: { ...headersFor(url, { lastEventId: ahead }), 'last-event-id': ahead } });
    expect(response.status).toBe(409);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('KALIMA_ERR_API_CURSOR_AHEAD');
  });
});
