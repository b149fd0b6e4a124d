// /blocks: by height, by hash and by time; a device sees only what its SUB list allows, and every
// message it sees comes with a Merkle proof that verifies against the header's txRoot.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { signRequest } from '../../src/api/auth.ts';
import { fromHex } from '../../src/ledger/hash.ts';
import { verifyMerkleProof } from '../../src/ledger/merkle.ts';
import type { KeyPair } from '../../src/ledger/signature.ts';
import type { KalimaNode } from '../../src/node/node.ts';
import { createAddress, genesisHashHex, makeChain, makeMessage, openApi, openNode, registerDevice } from '../support/chain.ts';

const chain = makeChain('blocks');
let node: KalimaNode;
let app: FastifyInstance;
let reader: KeyPair;
let height: number;

beforeAll(async () => {
  node = await openNode(chain);
  ({ app } = await openApi(node));
  await createAddress(node, chain, '/a');
  await createAddress(node, chain, '/b');
  const writer = await registerDevice(node, chain, { pub: ['/a', '/b'], sub: [] });
  reader = await registerDevice(node, chain, { pub: [], sub: ['/a'] });
  // Five writes in one block, three of them readable by `reader`.
  const receipts = await Promise.all(['/a', '/b', '/a', '/b', '/a'].map((address, index) => node.submit(makeMessage(chain, writer, { address, key: `k${index}` }))));
  height = receipts[0]!.height;
  expect(new Set(receipts.map((receipt) => receipt.height)).size).toBe(1);
});

afterAll(async () => {
  await app.close();
  await node.close();
});

async function get(key: KeyPair, url: string): Promise<{ status: number; body: Record<string, any> }> {
  const headers = signRequest({ method: 'GET', pathAndQuery: url, timestampMs: Date.now(), genesisHash: genesisHashHex(chain), secretKey: key.secretKey, publicKey: key.publicKey, auxRand: chain.rng.bytes(32) });
  const response = await app.inject({ method: 'GET', url, headers });
  return { status: response.statusCode, body: response.json() };
}

describe('/blocks', () => {
  it('by height: only readable messages, each with a proof against txRoot', async () => {
    const { status, body } = await get(reader, `/blocks/${height}`);
    expect(status).toBe(200);
    expect(body.complete).toBe(false);
    expect(body.messages.map((item: any) => item.message.address)).toEqual(['/a', '/a', '/a']);
    for (const item of body.messages) {
      const proof = item.proof.map((hex: string) => fromHex(hex)!);
      expect(verifyMerkleProof(fromHex(item.leaf)!, item.index, body.header.messageCount, proof, fromHex(body.header.txRoot)!)).toBe(true);
    }
  });

  it('by hash and by time reach the same block', async () => {
    const byHeight = await get(chain.admin, `/blocks/${height}`);
    expect(byHeight.body.complete).toBe(true);
    const byHash = await get(chain.admin, `/blocks/${byHeight.body.header.hash}`);
    expect(byHash.body.header).toEqual(byHeight.body.header);
    const byTime = await get(chain.admin, `/blocks/at?timeMs=${byHeight.body.header.timeMs}`);
    expect(byTime.body.header.height).toBeLessThanOrEqual(height);
    expect(byTime.body.header.timeMs).toBe(byHeight.body.header.timeMs);
  });

  it('unknown hashes, heights and times are not found; malformed ids are bad requests', async () => {
    expect((await get(chain.admin, `/blocks/${'0'.repeat(64)}`)).body.error.code).toBe('KALIMA_ERR_LEDGER_NOT_FOUND');
    expect((await get(chain.admin, `/blocks/${node.height + 1}`)).body.error.code).toBe('KALIMA_ERR_LEDGER_NOT_FOUND');
    expect((await get(chain.admin, `/blocks/at?timeMs=${Date.now() + 3_600_000}`)).body.error.code).toBe('KALIMA_ERR_LEDGER_NOT_FOUND');
    expect((await get(chain.admin, '/blocks/zz')).body.error.code).toBe('KALIMA_ERR_API_BAD_REQUEST');
  });
});
