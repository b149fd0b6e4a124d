// The verifier against its header sources: a headers file, a Bitcoin RPC (an in-test server that
// speaks JSON-RPC, and the BitcoinHeaderRpc interface over a list of headers), and the .ots path.
import { once } from 'node:events';
import { type Server, createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bitcoinBlockHash, displayHex } from '../../chains/bitcoin/block.ts';
import { parseBitcoinNetwork } from '../../chains/bitcoin/network.ts';
import { BitcoinRpc } from '../../chains/bitcoin/rpc.ts';
import { formatHeadersFile, parseHeadersFile } from '../../anchors/headers-file.ts';
import { proofToOts } from '../../anchors/ots.ts';
import { type BitcoinHeaderRpc, verifierRpc, verifyOts, verifyProof } from '../../anchors/verify.ts';
import { KalimaError, type KalimaErrorCode, isKalimaError, kalimaError } from '../../src/errors.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { proofFixture } from '../support/anchor-proof.ts';
import { MAINNET_GENESIS, REGTEST_GENESIS, extendHeaders as extend, mineHeader, regtestHeaders as regtestChain } from '../support/bitcoin.ts';
import { seededRng } from './support/seeded-rng.ts';


async function rejection(promise: Promise<unknown>): Promise<KalimaError> {
  const error = await promise.then(() => undefined, (caught: unknown) => caught);
  expect(error).toBeInstanceOf(KalimaError);
  return error as KalimaError;
}

/** BitcoinHeaderRpc over a list of headers from height 0, as a node would answer. */
function listRpc(headers: Uint8Array[]): BitcoinHeaderRpc {
  return {
    getBlockCount: async () => headers.length - 1,
    getBlockHash: async (height) => displayHex(bitcoinBlockHash(headers[height]!)),
    getBlockHeaderHex: async (hash) => toHex(headers.find((header) => displayHex(bitcoinBlockHash(header)) === hash)!),
  };
}

describe('the network constants', () => {
  it('the genesis headers built from their fields hash to the genesis hashes the verifier knows', () => {
    expect(displayHex(bitcoinBlockHash(REGTEST_GENESIS))).toBe(parseBitcoinNetwork('regtest').genesisBlockHashHex);
    expect(displayHex(bitcoinBlockHash(MAINNET_GENESIS))).toBe(parseBitcoinNetwork('mainnet').genesisBlockHashHex);
  });
});

describe('headers file', () => {
  const headers = [REGTEST_GENESIS, mineHeader({ prevHash: bitcoinBlockHash(REGTEST_GENESIS), merkleRoot: new Uint8Array(32).fill(1), timeS: 1_296_688_700 })];
  const valid = formatHeadersFile('regtest', 0, headers);

  it('round trip; heights from start', () => {
    const chain = parseHeadersFile(valid);
    expect(chain.tipHeight).toBe(1);
    expect(chain.headerAt(0)).toEqual(REGTEST_GENESIS);
    expect(chain.headerAt(2)).toBeUndefined();
    expect(valid.split('\n').slice(0, 2)).toEqual(['network regtest', 'start 0']);
  });

  const secondLine = valid.split('\n')[3]!;
  const ROWS: Array<{ name: string; text: string; line: number }> = [
    { name: 'no network line', text: valid.split('\n').slice(1).join('\n'), line: 1 },
    { name: 'an unknown network', text: valid.replace('regtest', 'testnet4'), line: 1 },
    { name: 'no start line', text: valid.replace('start 0\n', ''), line: 2 },
    { name: 'a start of 01', text: valid.replace('start 0', 'start 01'), line: 2 },
    { name: 'no headers', text: 'network regtest\nstart 0\n', line: 3 },
    { name: 'uppercase hex', text: valid.replace(secondLine, secondLine.toUpperCase()), line: 4 },
    { name: 'a blank line', text: `${valid}\n`, line: 5 },
    { name: 'headers that do not link', text: formatHeadersFile('regtest', 0, [REGTEST_GENESIS, mineHeader({ prevHash: new Uint8Array(32), merkleRoot: new Uint8Array(32), timeS: 1 })]), line: 4 },
    // Mainnet's difficulty (bits 0x1d00ffff) in a header mined at regtest's.
    { name: 'a header that misses its bits', text: valid.replace(secondLine, `${secondLine.slice(0, 144)}ffff001d${secondLine.slice(152)}`), line: 4 },
    { name: 'start 0 with another genesis', text: formatHeadersFile('regtest', 0, headers.slice(1)), line: 3 },
    { name: 'the mainnet genesis called regtest', text: formatHeadersFile('regtest', 0, [MAINNET_GENESIS]), line: 3 },
    { name: 'a regtest header called mainnet', text: formatHeadersFile('mainnet', 5, headers.slice(1)), line: 3 },
  ];

  it.each(ROWS)('$name: KALIMA_ERR_PROOF_HEADERS_MALFORMED at line $line', ({ text, line }) => {
    let thrown: unknown;
    try {
      parseHeadersFile(text);
    } catch (error) {
      thrown = error;
    }
    expect(isKalimaError(thrown, 'KALIMA_ERR_PROOF_HEADERS_MALFORMED')).toBe(true);
    expect((thrown as KalimaError).details.line).toBe(line);
  });

  it('a file that starts above 0 trusts its first header; the mainnet genesis alone is a valid mainnet file', () => {
    expect(parseHeadersFile(formatHeadersFile('regtest', 7, headers.slice(1))).headerAt(7)).toEqual(headers[1]);
    expect(parseHeadersFile(formatHeadersFile('mainnet', 0, [MAINNET_GENESIS])).tipHeight).toBe(0);
  });
});

describe('verifyProof with a header source', () => {
  // Heights 0 … 149, the anchoring block at 150, five more on top.
  const below = regtestChain(150);
  const fixture = proofFixture({ rng: seededRng('verify'), height: 12, tipHeight: 40, bitcoinHeight: 150, bitcoinPrevHash: bitcoinBlockHash(below[149]!) });
  const chain = extend([...below, fixture.block.header], 5, 0xee);
  const headersSource = { kind: 'headers' as const, headers: parseHeadersFile(formatHeadersFile('regtest', 0, chain)) };

  it('offline: valid, with no confirmations', async () => {
    const verdict = await verifyProof(fixture.proof, { kind: 'offline' });
    expect(verdict).toMatchObject({ valid: true, confirmations: undefined, bitcoinHeight: 150, height: 12, tipHeight: 40, attestedTime: '2026-05-28T20:28:20.000Z' });
  });

  it('a headers file: valid with 6 confirmations (150 … 155)', async () => {
    const verdict = await verifyProof(fixture.proof, headersSource);
    expect(verdict).toMatchObject({ valid: true, confirmations: 6, bitcoinBlockHash: displayHex(fixture.block.hash) });
    expect(verdict.checked.at(-1)).toMatch(/at height 150 in the headers file/);
  });

  it('an RPC: valid with the same confirmations', async () => {
    expect(await verifyProof(fixture.proof, { kind: 'rpc', rpc: listRpc(chain) })).toMatchObject({ valid: true, confirmations: 6 });
  });

  it('another block at that height (a reorg), or a chain that ends before it, is KALIMA_ERR_PROOF_NOT_IN_CHAIN', async () => {
    const reorganised = extend([...below], 6, 0x09);
    for (const source of [
      { kind: 'rpc' as const, rpc: listRpc(reorganised) },
      { kind: 'headers' as const, headers: parseHeadersFile(formatHeadersFile('regtest', 0, reorganised)) },
      { kind: 'rpc' as const, rpc: listRpc(chain.slice(0, 150)) },
      { kind: 'headers' as const, headers: parseHeadersFile(formatHeadersFile('regtest', 0, chain.slice(0, 150))) },
      { kind: 'headers' as const, headers: parseHeadersFile(formatHeadersFile('regtest', 151, chain.slice(151))) },
    ]) {
      const verdict = await verifyProof(fixture.proof, source);
      expect(verdict.valid).toBe(false);
      expect(verdict.failure?.code).toBe('KALIMA_ERR_PROOF_NOT_IN_CHAIN');
    }
  });

  it('a source on another network is KALIMA_ERR_PROOF_WRONG_NETWORK, by its genesis', async () => {
    const mainnetFile = { kind: 'headers' as const, headers: parseHeadersFile(formatHeadersFile('mainnet', 0, [MAINNET_GENESIS])) };
    expect((await rejection(verifyProof(fixture.proof, mainnetFile))).code).toBe('KALIMA_ERR_PROOF_WRONG_NETWORK');
    const mainnetNode = { kind: 'rpc' as const, rpc: listRpc([MAINNET_GENESIS]) };
    expect((await rejection(verifyProof(fixture.proof, mainnetNode))).code).toBe('KALIMA_ERR_PROOF_WRONG_NETWORK');
    // bcoin's regtest is Bitcoin Core's regtest: a bcoin-regtest proof verifies against either.
    expect((await verifyProof({ ...fixture.proof, network: 'bcoin-regtest' }, headersSource)).valid).toBe(true);
  });

  it('a node that answers a header which does not hash to the block hash is KALIMA_ERR_PROOF_RPC_FAILED', async () => {
    const lying: BitcoinHeaderRpc = { ...listRpc(chain), getBlockHeaderHex: async () => toHex(chain[3]!) };
    expect((await rejection(verifyProof(fixture.proof, { kind: 'rpc', rpc: lying }))).code).toBe('KALIMA_ERR_PROOF_RPC_FAILED');
  });

  it('a .ots is checked against the Merkle root of the block at its height', async () => {
    const timestamp = proofToOts(fixture.proof);
    expect(await verifyOts(timestamp, headersSource)).toMatchObject({ valid: true, confirmations: 6, network: 'regtest', attestedTime: '2026-05-28T20:28:20.000Z' });
    expect(await verifyOts(timestamp, { kind: 'rpc', rpc: listRpc(chain) })).toMatchObject({ valid: true, confirmations: 6 });
    const elsewhere = await verifyOts({ ...timestamp, bitcoinHeight: 151 }, headersSource);
    expect(elsewhere).toMatchObject({ valid: false, failure: { code: 'KALIMA_ERR_PROOF_NOT_IN_CHAIN' } });
    const tampered = await verifyOts({ ...timestamp, fileDigest: new Uint8Array(32) }, headersSource);
    expect(tampered.valid).toBe(false);
    expect((await verifyOts({ ...timestamp, bitcoinHeight: 170 }, headersSource)).failure?.code).toBe('KALIMA_ERR_PROOF_NOT_IN_CHAIN');
  });
});

describe('the verifier through BitcoinRpc (chains/bitcoin/rpc.ts)', () => {
  let server: Server;
  let url: string;
  const clients: BitcoinRpc[] = [];
  const headers = regtestChain(3);
  const { proof } = proofFixture({ rng: seededRng('verify-rpc'), height: 2, tipHeight: 3 });
  const seen: Array<{ authorization: string | undefined; method: string; params: unknown[] }> = [];
  const answers: Record<string, (params: unknown[]) => { status?: number; body: unknown }> = {
    getblockcount: () => ({ body: { result: 155, error: null, id: 1 } }),
    getblockhash: ([height]) => (height === 999 ? { status: 500, body: { result: null, error: { code: -8, message: 'Block height out of range' }, id: 1 } } : { body: { result: 'ab'.repeat(32), error: null, id: 1 } }),
    getblockheader: ([hash]) => ({ body: { result: hash === 'ee'.repeat(32) ? 'not a header' : 'cd'.repeat(80), error: null, id: 1 } }),
  };
  const client = (password = 'secret', target?: string): BitcoinRpc => {
    const rpc = new BitcoinRpc({ url: target ?? url, auth: { user: 'user', password }, maxAttempts: 1, timeoutMs: 2_000 });
    clients.push(rpc);
    return rpc;
  };

  beforeAll(async () => {
    server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk) => (body += chunk));
      request.on('end', () => {
        const { method, params } = JSON.parse(body) as { method: string; params: unknown[] };
        seen.push({ authorization: request.headers.authorization, method, params });
        if (request.headers.authorization !== `Basic ${Buffer.from('user:secret').toString('base64')}`) {
          response.writeHead(401).end();
          return;
        }
        const answer = answers[method]?.(params) ?? { status: 404, body: { result: null, error: { code: -32601, message: 'Method not found' } } };
        response.writeHead(answer.status ?? 200, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
      });
    }).listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  });
  afterAll(async () => {
    for (const rpc of clients) rpc.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('sends JSON-RPC 1.0 with basic auth and reads the three answers', async () => {
    const rpc = verifierRpc(client());
    expect(await rpc.getBlockCount()).toBe(155);
    expect(await rpc.getBlockHash(3)).toBe('ab'.repeat(32));
    expect(await rpc.getBlockHeaderHex('ab'.repeat(32))).toBe('cd'.repeat(80));
    expect(seen.at(-1)).toMatchObject({ authorization: `Basic ${Buffer.from('user:secret').toString('base64')}`, method: 'getblockheader', params: ['ab'.repeat(32), false] });
  });

  const failures: Array<{ name: string; run: () => Promise<unknown>; details: Record<string, unknown> }> = [
    { name: 'an RPC error (bitcoind\'s HTTP 500 with the error in the body)', run: () => verifierRpc(client()).getBlockHash(999), details: { method: 'getblockhash', bitcoinCode: 'KALIMA_ERR_BITCOIN_BAD_PARAMETER', rpcCode: -8 } },
    { name: 'wrong credentials', run: () => verifierRpc(client('wrong')).getBlockCount(), details: { method: 'getblockcount', bitcoinCode: 'KALIMA_ERR_BITCOIN_UNAUTHORIZED', httpStatus: 401 } },
    { name: 'an answer that is not a header', run: () => verifierRpc(client()).getBlockHeaderHex('ee'.repeat(32)), details: { method: 'getblockheader', bitcoinCode: 'KALIMA_ERR_BITCOIN_BAD_RESPONSE' } },
    { name: 'nothing listening', run: () => verifierRpc(client('secret', 'http://127.0.0.1:1/')).getBlockCount(), details: { method: 'getblockcount', bitcoinCode: 'KALIMA_ERR_BITCOIN_UNREACHABLE' } },
  ];

  it.each(failures)('$name is KALIMA_ERR_PROOF_RPC_FAILED, the RPC client\'s code kept', async ({ run, details }) => {
    const error = await rejection(run());
    expect(error.code).toBe('KALIMA_ERR_PROOF_RPC_FAILED' satisfies KalimaErrorCode);
    expect(error.details).toMatchObject(details);
  });

  it('verifyProof through a BitcoinRpc source: a refused call is KALIMA_ERR_PROOF_RPC_FAILED, not a verdict', async () => {
    const error = await rejection(verifyProof(proof, { kind: 'rpc', rpc: client('wrong') }));
    expect(error.code).toBe('KALIMA_ERR_PROOF_RPC_FAILED');
    expect(error.details).toMatchObject({ bitcoinCode: 'KALIMA_ERR_BITCOIN_UNAUTHORIZED' });
  });

  it('an error that is not the RPC client\'s passes through as it is', async () => {
    const broken: BitcoinHeaderRpc = { ...listRpc(headers), getBlockCount: async () => { throw new RangeError('not an RPC failure'); } };
    await expect(verifierRpc(broken).getBlockCount()).rejects.toThrow(RangeError);
    const own = kalimaError('KALIMA_ERR_PROOF_WRONG_NETWORK', {});
    await expect(verifierRpc({ ...listRpc(headers), getBlockHash: async () => { throw own; } }).getBlockHash(0)).rejects.toBe(own);
  });
});
