// The Bitcoin RPC client against a real bcoin (one process for the file), and against loopback
// peers that misbehave in ways bcoin will not on demand: a server that never answers, one that
// warms up, a closed port. Each error row checks the catalogue code and how often the client tried.
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE, KalimaError, type KalimaErrorCode } from '../../src/errors.ts';
import { payments } from 'bitcoinjs-lib';
import { sha256 } from '../../src/ledger/hash.ts';
import { BitcoinRpc, type BitcoinRpcOptions } from '../../chains/bitcoin/rpc.ts';
import { parseBitcoinNetwork } from '../../chains/bitcoin/network.ts';
import { type BcoinNode, startBcoin } from '../../regtest/bcoin.ts';
import { buildAnchorTx } from '../../chains/bitcoin/tx.ts';
import { request as anchorRequest, walletUtxo } from '../support/bitcoin-wallet.ts';
import { freePort } from '../support/ports.ts';

let bcoin: BcoinNode;

beforeAll(async () => {
  bcoin = await startBcoin();
});

afterAll(async () => {
  await bcoin?.stop();
});

/** A client whose sleeps are recorded, not slept (a tiny real wait keeps the event loop fair). */
function recordingClient(options: Partial<BitcoinRpcOptions> = {}): { rpc: BitcoinRpc; sleeps: number[] } {
  const sleeps: number[] = [];
  const rpc = new BitcoinRpc({
    url: bcoin.rpcUrl, auth: { user: 'any', password: bcoin.apiKey }, dialect: 'bcoin',
    sleep: async (ms) => { sleeps.push(ms); await new Promise((resolve) => setTimeout(resolve, 1)); },
    random: () => 0.5,
    ...options,
  });
  return { rpc, sleeps };
}

async function codeOf(promise: Promise<unknown>): Promise<{ code: KalimaErrorCode; details: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(KalimaError);
    const { code, details } = error as KalimaError;
    expect(Object.hasOwn(ERROR_CATALOGUE, code)).toBe(true);
    return { code, details };
  }
  throw new Error('expected the call to fail');
}

/** Block hash (display hex) of an 80-byte header: double SHA-256, byte-reversed. */
function headerHashHex(headerHex: string): string {
  return Buffer.from(sha256(sha256(Buffer.from(headerHex, 'hex')))).reverse().toString('hex');
}

describe('BitcoinRpc against bcoin', () => {
  it('reads the chain of a fresh regtest node', async () => {
    const { rpc, sleeps } = recordingClient();
    expect(await rpc.getBlockCount()).toBe(0);
    const info = await rpc.getBlockchainInfo();
    expect(info).toMatchObject({ chain: 'regtest', blocks: 0, headers: 0 });
    expect(info.bestBlockHashHex).toBe(parseBitcoinNetwork('regtest').genesisBlockHashHex);
    expect(await rpc.getBlockHash(0)).toBe(info.bestBlockHashHex);
    expect(sleeps).toEqual([]);
    rpc.close();
  });

  it('gives the 80-byte header and the raw block, in bcoin\'s getblock arguments', async () => {
    const genesis = await bcoin.rpc.getBlockHash(0);
    const headerHex = await bcoin.rpc.getBlockHeaderHex(genesis);
    expect(headerHex).toHaveLength(160);
    expect(headerHashHex(headerHex)).toBe(genesis);
    const blockHex = await bcoin.rpc.getBlockHex(genesis);
    expect(blockHex.startsWith(headerHex)).toBe(true);
    expect(blockHex.length).toBeGreaterThan(160);
  });

  it('has no fee estimate on an empty regtest chain', async () => {
    expect(await bcoin.rpc.estimateSmartFee(2)).toBeUndefined();
    expect((await bcoin.rpc.getNetworkInfo()).relayFeeSatPerKvB).toBe(1000n);
  });

  it('answers undefined for a transaction that is not in the mempool', async () => {
    expect(await bcoin.rpc.getMempoolEntry('ab'.repeat(32))).toBeUndefined();
    expect(await bcoin.rpc.getRawMempool()).toEqual([]);
  });

  it('invalidates and reconsiders a block', async () => {
    const burn = payments.p2wpkh({ hash: new Uint8Array(20).fill(7), network: bcoin.network.bitcoinjs }).address!;
    expect(burn.startsWith('rb1q')).toBe(true);
    const start = await bcoin.rpc.getBlockCount();
    const hashes = await bcoin.mine(2, burn);
    expect(hashes).toHaveLength(2);
    expect(await bcoin.rpc.getBlockCount()).toBe(start + 2);
    await bcoin.rpc.invalidateBlock(hashes[1]!);
    expect(await bcoin.rpc.getBlockCount()).toBe(start + 1);
    // bcoin drops the mark but, unlike bitcoind, does not reconnect the block: the chain stays
    // one shorter until something longer is mined.
    await bcoin.rpc.reconsiderBlock(hashes[1]!);
    expect(await bcoin.rpc.getBlockCount()).toBe(start + 1);
    const [replacement] = await bcoin.mine(1, burn);
    expect(replacement).not.toBe(hashes[1]);
    expect(await bcoin.rpc.getBlockHash(start + 2)).toBe(replacement);
  });
});

describe('BitcoinRpc errors from bcoin', () => {
  it.each([
    { name: 'unknown method', call: (rpc: BitcoinRpc) => rpc.call('nosuchmethod'), code: 'KALIMA_ERR_BITCOIN_METHOD_NOT_FOUND', rpcCode: -32601 },
    { name: 'height out of range', call: (rpc: BitcoinRpc) => rpc.getBlockHash(1_000_000), code: 'KALIMA_ERR_BITCOIN_BAD_PARAMETER', rpcCode: -8 },
    { name: 'a parameter of the wrong type', call: (rpc: BitcoinRpc) => rpc.call('getblockhash', ['zero']), code: 'KALIMA_ERR_BITCOIN_BAD_PARAMETER', rpcCode: -3 },
    { name: 'unknown block', call: (rpc: BitcoinRpc) => rpc.getBlockHex('00'.repeat(32)), code: 'KALIMA_ERR_BITCOIN_NOT_FOUND', rpcCode: -1 },
    { name: 'unknown transaction', call: (rpc: BitcoinRpc) => rpc.getRawTransaction('00'.repeat(32)), code: 'KALIMA_ERR_BITCOIN_NOT_FOUND', rpcCode: -1 },
  ])('$name: $code, not retried', async ({ call, code, rpcCode }) => {
    const { rpc, sleeps } = recordingClient();
    const error = await codeOf(call(rpc));
    expect(error.code).toBe(code);
    expect(error.details).toMatchObject({ rpcCode });
    expect(typeof error.details.rpcMessage).toBe('string');
    expect(typeof error.details.method).toBe('string');
    expect(sleeps).toEqual([]);
    rpc.close();
  });

  it('a wrong API key is UNAUTHORIZED at once', async () => {
    const { rpc, sleeps } = recordingClient({ auth: { user: 'any', password: 'wrong' } });
    const error = await codeOf(rpc.getBlockCount());
    expect(error.code).toBe('KALIMA_ERR_BITCOIN_UNAUTHORIZED');
    expect(error.details).toMatchObject({ method: 'getblockcount', httpStatus: 401 });
    expect(sleeps).toEqual([]);
    rpc.close();
  });

  it('refuses an endpoint of another network', async () => {
    await bcoin.rpc.checkNetwork(parseBitcoinNetwork('bcoin-regtest'));
    // Core's regtest has the same genesis block, but bcoin refuses its bcrt1 addresses.
    const sameGenesis = await codeOf(bcoin.rpc.checkNetwork(parseBitcoinNetwork('regtest')));
    expect(sameGenesis.code).toBe('KALIMA_ERR_BITCOIN_WRONG_NETWORK');
    expect(String(sameGenesis.details.probeAddress)).toMatch(/^bcrt1q/);
    const otherGenesis = await codeOf(bcoin.rpc.checkNetwork(parseBitcoinNetwork('mainnet')));
    expect(otherGenesis.code).toBe('KALIMA_ERR_BITCOIN_WRONG_NETWORK');
    expect(otherGenesis.details).toMatchObject({ network: 'mainnet', actualGenesis: parseBitcoinNetwork('regtest').genesisBlockHashHex });
  });
});

describe('BitcoinRpc cookie authentication', () => {
  it('authenticates with a cookie file holding user:apikey', async () => {
    const cookieFile = join(mkdtempSync(join(tmpdir(), 'kalima-cookie-')), '.cookie');
    writeFileSync(cookieFile, `__cookie__:${bcoin.apiKey}\n`);
    const { rpc } = recordingClient({ auth: { cookieFile } });
    expect(await rpc.getBlockCount()).toBeGreaterThanOrEqual(0);
    writeFileSync(cookieFile, '__cookie__:stale');
    // The header read before still works: the file is read again only after a 401.
    expect(await rpc.getBlockCount()).toBeGreaterThanOrEqual(0);
    rpc.close();
  });

  it('reads the cookie again after a 401, as after a restart of the node with a new cookie', async () => {
    const cookieFile = join(mkdtempSync(join(tmpdir(), 'kalima-cookie-')), '.cookie');
    const first = await startBcoin({ apiKey: 'first-key' });
    writeFileSync(cookieFile, '__cookie__:first-key');
    const { rpc, sleeps } = recordingClient({ url: first.rpcUrl, auth: { cookieFile } });
    expect(await rpc.getBlockCount()).toBe(0);
    await first.stop();
    const second = await startBcoin({ port: first.port, apiKey: 'second-key' });
    writeFileSync(cookieFile, '__cookie__:second-key');
    expect(await rpc.getBlockCount()).toBe(0);
    expect(sleeps.length).toBeLessThanOrEqual(1); // at most a reconnect after the old socket closed
    await second.stop();
    // A cookie that is still wrong after the re-read is UNAUTHORIZED.
    const third = await startBcoin({ port: first.port, apiKey: 'third-key' });
    try {
      const error = await codeOf(rpc.getBlockCount());
      expect(error.code).toBe('KALIMA_ERR_BITCOIN_UNAUTHORIZED');
      expect(error.details).toMatchObject({ httpStatus: 401 });
    } finally {
      rpc.close();
      await third.stop();
    }
  });

  it('a missing cookie file is waited for, then UNAUTHORIZED', async () => {
    const cookieFile = join(mkdtempSync(join(tmpdir(), 'kalima-cookie-')), '.cookie');
    const { rpc, sleeps } = recordingClient({ auth: { cookieFile }, maxAttempts: 3 });
    const error = await codeOf(rpc.getBlockCount());
    expect(error.code).toBe('KALIMA_ERR_BITCOIN_UNAUTHORIZED');
    expect(error.details).toMatchObject({ cookieFile, cookieError: 'ENOENT', attempts: 3 });
    expect(sleeps).toHaveLength(2);
    rpc.close();
  });
});

describe('BitcoinRpc transport failures', () => {
  it('a closed port is UNREACHABLE after the bounded retries, with growing backoff', async () => {
    const port = await freePort();
    const { rpc, sleeps } = recordingClient({ url: `http://127.0.0.1:${port}/`, maxAttempts: 5, backoffBaseMs: 100, backoffMaxMs: 300 });
    const error = await codeOf(rpc.getBlockCount());
    expect(error.code).toBe('KALIMA_ERR_BITCOIN_UNREACHABLE');
    expect(error.details).toMatchObject({ method: 'getblockcount', cause: 'ECONNREFUSED', attempts: 5 });
    // random() = 0.5: three quarters of min(max, base × 2^retry).
    expect(sleeps).toEqual([75, 150, 225, 225]);
    rpc.close();
  });

  it('a server that never answers is a TIMEOUT after one attempt', async () => {
    const sockets: Socket[] = [];
    const server = createTcpServer((socket) => sockets.push(socket)).listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    const { rpc, sleeps } = recordingClient({ url: `http://127.0.0.1:${port}/`, timeoutMs: 300 });
    const startedMs = Date.now();
    const error = await codeOf(rpc.getBlockCount());
    const elapsedMs = Date.now() - startedMs;
    expect(error.code).toBe('KALIMA_ERR_BITCOIN_TIMEOUT');
    expect(error.details).toMatchObject({ method: 'getblockcount', timeoutMs: 300 });
    expect(elapsedMs).toBeGreaterThanOrEqual(290);
    expect(elapsedMs).toBeLessThan(5_000);
    expect(sockets).toHaveLength(1);
    expect(sleeps).toEqual([]);
    rpc.close();
    for (const socket of sockets) socket.destroy();
    server.close();
  });

  it('retries warm-up (-28) and a full work queue (503), then answers', async () => {
    const answers: Array<(res: ServerResponse) => void> = [
      (res) => res.writeHead(500).end(JSON.stringify({ result: null, error: { code: -28, message: 'Loading block index…' }, id: 1 })),
      (res) => res.writeHead(503).end('Work queue depth exceeded'),
      (res) => res.writeHead(200).end(JSON.stringify({ result: 7, error: null, id: 1 })),
    ];
    let requests = 0;
    const server = createHttpServer((req: IncomingMessage, res) => {
      req.resume();
      req.on('end', () => answers[Math.min(requests++, answers.length - 1)]!(res));
    }).listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    const { rpc, sleeps } = recordingClient({ url: `http://127.0.0.1:${port}/`, dialect: 'core' });
    expect(await rpc.getBlockCount()).toBe(7);
    expect(requests).toBe(3);
    expect(sleeps).toHaveLength(2);
    rpc.close();
    server.close();
  });

  it('warm-up that outlasts the retries is WARMING_UP', async () => {
    let requests = 0;
    const server = createHttpServer((req, res) => {
      requests++;
      req.resume();
      res.writeHead(500).end(JSON.stringify({ result: null, error: { code: -28, message: 'Verifying blocks…' }, id: 1 }));
    }).listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    const { rpc } = recordingClient({ url: `http://127.0.0.1:${port}/`, dialect: 'core', maxAttempts: 4 });
    const error = await codeOf(rpc.getBlockCount());
    expect(error.code).toBe('KALIMA_ERR_BITCOIN_WARMING_UP');
    expect(error.details).toMatchObject({ rpcCode: -28, rpcMessage: 'Verifying blocks…', attempts: 4 });
    expect(requests).toBe(4);
    rpc.close();
    server.close();
  });

  it('a Core refusal of a broadcast carries Core\'s reason; Core\'s "not in mempool" (-5) is undefined', async () => {
    const tx = buildAnchorTx(anchorRequest('p2wpkh', [walletUtxo('p2wpkh', 100_000_000n)], 1000n));
    const methods: string[] = [];
    const server = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => { body += chunk.toString(); });
      req.on('end', () => {
        const { method, id } = JSON.parse(body) as { method: string; id: number };
        methods.push(method);
        const error = method === 'sendrawtransaction'
          ? { code: -26, message: 'min relay fee not met, 100 < 153' }
          : { code: -5, message: 'Transaction not in mempool' };
        res.writeHead(500).end(JSON.stringify({ result: null, error, id }));
      });
    }).listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    const { rpc, sleeps } = recordingClient({ url: `http://127.0.0.1:${port}/`, dialect: 'core' });
    expect(await rpc.getMempoolEntry(tx.txid)).toBeUndefined();
    const error = await codeOf(rpc.sendRawTransaction(tx.hex));
    expect(error).toEqual({ code: 'KALIMA_ERR_BITCOIN_TX_REJECTED', details: { method: 'sendrawtransaction', rpcCode: -26, rpcMessage: 'min relay fee not met, 100 < 153', reason: 'fee' } });
    expect(methods).toEqual(['getmempoolentry', 'sendrawtransaction']);
    expect(sleeps).toEqual([]);
    rpc.close();
    server.close();
  });
});
