// `kalima verify-proof`, `kalima proof` and their files, run as the real command. A small fastify
// server stands in for the node's GET /anchors/proof/:height (it is not the code under test).
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bitcoinBlockHash } from '../../chains/bitcoin/block.ts';
import { formatHeadersFile } from '../../anchors/headers-file.ts';
import { decodeOts, encodeOts, proofToOts } from '../../anchors/ots.ts';
import { encodeProofJson } from '../../anchors/proof-json.ts';
import { decodeProofBinary, encodeProofBinary } from '../../anchors/proof-binary.ts';
import { sha256, toHex } from '../../src/ledger/hash.ts';
import { proofFixture } from '../support/anchor-proof.ts';
import { extendHeaders, regtestHeaders } from '../support/bitcoin.ts';
import { seededRng } from '../unit/support/seeded-rng.ts';

const KALIMA = resolve('bin/kalima.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function kalima(args: string[], cwd: string): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [KALIMA, ...args], { cwd, timeout: 60_000 }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

const below = regtestHeaders(150);
const fixture = proofFixture({ rng: seededRng('cli'), height: 12, tipHeight: 40, bitcoinHeight: 150, bitcoinPrevHash: bitcoinBlockHash(below[149]!), withBlockHeader: true });
const chain = extendHeaders([...below, fixture.block.header], 5, 0xee);
const proofJson = encodeProofJson(fixture.proof);
const proofBinary = encodeProofBinary(fixture.proof);

let directory: string;
let app: FastifyInstance;
let nodeUrl: string;
/** The URLs the stand-in node was asked for. */
const requested: string[] = [];

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'kalima-proof-cli-'));
  await writeFile(join(directory, '12.json'), proofJson);
  await writeFile(join(directory, 'chain.headers'), formatHeadersFile('regtest', 0, chain));
  await writeFile(join(directory, 'reorg.headers'), formatHeadersFile('regtest', 0, extendHeaders([...below], 6, 0x09)));
  await writeFile(join(directory, '12.ots'), encodeOts(proofToOts(fixture.proof)));
  await writeFile(join(directory, '12.kproof'), proofBinary);
  app = Fastify();
  app.get<{ Params: { height: string }; Querystring: { format?: string } }>('/anchors/proof/:height', async (request, reply) => {
    requested.push(request.url);
    if (request.params.height === '12' && request.query.format === 'binary') return reply.type('application/octet-stream').send(Buffer.from(proofBinary));
    if (request.params.height === '12') return reply.type('application/json').send(proofJson);
    return reply.code(404).send({ error: { code: 'KALIMA_ERR_ANCHOR_NOT_ANCHORED', message: 'no confirmed anchor covers this block yet', details: { height: Number(request.params.height) } } });
  });
  nodeUrl = await app.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await app.close();
  await rm(directory, { recursive: true, force: true });
});

describe('kalima verify-proof', () => {
  it('offline: the proof holds together, but it is not called valid (exit 3): its header is not checked against Bitcoin and its time is only claimed', async () => {
    const run = await kalima(['verify-proof', '12.json'], directory);
    expect(run.code).toBe(3);
    expect(run.stdout).toMatch(/block\s+privachain height 12, hash [0-9a-f]{64}/);
    expect(run.stdout).toMatch(/bitcoin block\s+height 150, hash [0-9a-f]{64}/);
    expect(run.stdout).toMatch(/claimed time\s+2026-05-28T20:28:20\.000Z/);
    expect(run.stdout).not.toMatch(/attested time/);
    expect(run.stdout).toMatch(/confirmations\s+unknown/);
    expect(run.stdout).toMatch(/^CONSISTENT, NOT CHECKED AGAINST BITCOIN/m);
    expect(run.stdout).not.toMatch(/^VALID$/m);
  });

  it('against a headers file: the confirmations', async () => {
    const run = await kalima(['verify-proof', '12.json', '--headers', 'chain.headers'], directory);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/confirmations\s+6 \(headers file\)/);
  });

  it('--json prints the verdict', async () => {
    const run = await kalima(['verify-proof', '12.json', '--headers', 'chain.headers', '--json'], directory);
    expect(JSON.parse(run.stdout)).toMatchObject({ valid: true, height: 12, bitcoinHeight: 150, confirmations: 6, blockHash: toHex(fixture.proof.blockHash) });
  });

  it('a reorganised chain: NOT VALID, exit 1 with KALIMA_ERR_PROOF_NOT_IN_CHAIN', async () => {
    const run = await kalima(['verify-proof', '12.json', '--headers', 'reorg.headers'], directory);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/NOT VALID/);
    expect(run.stderr).toMatch(/KALIMA_ERR_PROOF_NOT_IN_CHAIN/);
  });

  it('a malformed proof: exit 1 with KALIMA_ERR_PROOF_MALFORMED and the field', async () => {
    await writeFile(join(directory, 'bad.json'), proofJson.replace('"height":12', '"height":"12"'));
    const run = await kalima(['verify-proof', 'bad.json'], directory);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/KALIMA_ERR_PROOF_MALFORMED/);
    expect(run.stderr).toMatch(/"field": "height"/);
  });

  it('an .ots against the headers file is valid; alone it is a usage error; truncated it is coded', async () => {
    const valid = await kalima(['verify-proof', '12.ots', '--headers', 'chain.headers'], directory);
    expect(valid.code).toBe(0);
    expect(valid.stdout).toMatch(/OpenTimestamps/);
    expect(valid.stdout).toMatch(/confirmations\s+6/);
    expect(valid.stdout).toMatch(/not checked from an \.ots alone/);
    const alone = await kalima(['verify-proof', '12.ots'], directory);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/give --rpc or --headers/);
    await writeFile(join(directory, 'cut.ots'), (await readFile(join(directory, '12.ots'))).subarray(0, 100));
    const cut = await kalima(['verify-proof', 'cut.ots', '--headers', 'chain.headers'], directory);
    expect(cut.code).toBe(1);
    expect(cut.stderr).toMatch(/KALIMA_ERR_PROOF_OTS_TRUNCATED/);
  });
});

describe('kalima verify-proof with a binary proof (.kproof)', () => {
  it('against the headers file: valid, the same verdict as the JSON proof\'s', async () => {
    const run = await kalima(['verify-proof', '12.kproof', '--headers', 'chain.headers'], directory);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/proof\s+12\.kproof \(binary proof, Bitcoin regtest\)/);
    expect(run.stdout).toMatch(/confirmations\s+6 \(headers file\)/);
    expect(run.stdout).toMatch(/VALID$/m);
    const binaryVerdict = JSON.parse((await kalima(['verify-proof', '12.kproof', '--headers', 'chain.headers', '--json'], directory)).stdout) as unknown;
    const jsonVerdict = JSON.parse((await kalima(['verify-proof', '12.json', '--headers', 'chain.headers', '--json'], directory)).stdout) as unknown;
    expect(binaryVerdict).toEqual(jsonVerdict);
    expect(binaryVerdict).toMatchObject({ valid: true, height: 12, confirmations: 6 });
  });

  it('is recognised by its magic, whatever the file is called', async () => {
    await writeFile(join(directory, 'proof.bin'), proofBinary);
    const run = await kalima(['verify-proof', 'proof.bin', '--headers', 'chain.headers'], directory);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/\(binary proof, Bitcoin regtest\)/);
    expect(run.stdout).toMatch(/^VALID$/m);
  });

  it('cut short: exit 1 with KALIMA_ERR_PROOF_TRUNCATED; a reorganised chain: KALIMA_ERR_PROOF_NOT_IN_CHAIN', async () => {
    await writeFile(join(directory, 'cut.kproof'), proofBinary.subarray(0, 300));
    const cut = await kalima(['verify-proof', 'cut.kproof'], directory);
    expect(cut.code).toBe(1);
    expect(cut.stderr).toMatch(/KALIMA_ERR_PROOF_TRUNCATED/);
    const reorg = await kalima(['verify-proof', '12.kproof', '--headers', 'reorg.headers'], directory);
    expect(reorg.code).toBe(1);
    expect(reorg.stderr).toMatch(/KALIMA_ERR_PROOF_NOT_IN_CHAIN/);
  });

  it('an RPC URL that is not http:// is a usage error', async () => {
    const run = await kalima(['verify-proof', '12.kproof', '--rpc', 'https://127.0.0.1:1/'], directory);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--rpc takes an http:\/\/ URL/);
  });
});

describe('kalima proof', () => {
  it('--binary writes HEIGHT.kproof (fetched with ?format=binary) instead of the JSON', async () => {
    const binaryDirectory = join(directory, 'binary');
    await mkdir(binaryDirectory);
    const run = await kalima(['proof', '12', '--url', nodeUrl, '--binary'], binaryDirectory);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^12\.kproof  binary proof of privachain block 12/);
    expect(new Uint8Array(await readFile(join(binaryDirectory, '12.kproof')))).toEqual(proofBinary);
    expect(await readdir(binaryDirectory)).toEqual(['12.kproof']);
    expect(requested.at(-1)).toBe('/anchors/proof/12?format=binary');
    expect(proofBinary.length).toBeLessThan(proofJson.length / 2);
  });

  it('--binary --ots: FILE.kproof, FILE.ots and FILE.block from the binary answer', async () => {
    const run = await kalima(['proof', '12', '--url', nodeUrl, '--binary', '--ots', '--out', 'compact.kproof'], directory);
    expect(run.code).toBe(0);
    expect(decodeProofBinary(await readFile(join(directory, 'compact.kproof'))).proof.height).toBe(12);
    expect(decodeOts(await readFile(join(directory, 'compact.ots')))).toEqual(proofToOts(fixture.proof));
    expect(sha256(await readFile(join(directory, 'compact.block')))).toEqual(fixture.proof.blockHash);
  });

  it('writes the JSON, the .ots and the .block of a block the node has anchored', async () => {
    const run = await kalima(['proof', '12', '--url', nodeUrl, '--out', 'fetched.json', '--ots'], directory);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect((await readFile(join(directory, 'fetched.json'), 'utf8')).trim()).toBe(proofJson);
    const timestamp = decodeOts(await readFile(join(directory, 'fetched.ots')));
    expect(timestamp).toEqual(proofToOts(fixture.proof));
    expect(sha256(await readFile(join(directory, 'fetched.block')))).toEqual(fixture.proof.blockHash);
    expect(run.stdout).toMatch(/ots verify -f fetched\.block fetched\.ots/);
  });

  it('a block no anchor covers yet: exit 1 with the node\'s KALIMA_ERR_ANCHOR_NOT_ANCHORED, nothing written', async () => {
    const run = await kalima(['proof', '13', '--url', nodeUrl], directory);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/KALIMA_ERR_ANCHOR_NOT_ANCHORED/);
    await expect(readFile(join(directory, '13.json'))).rejects.toThrow();
  });
});
