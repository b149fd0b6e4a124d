// End to end against a real bcoin regtest node: an anchor transaction spending a matured coinbase,
// broadcast and mined; its proof built from the mined block and verified through RPC, through a
// headers file written by `kalima headers`, and by the CLI; then the block is invalidated and a
// different chain mined, and the same proof must fail through RPC.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeFile, readFile } from 'node:fs/promises';
import { Block, networks, payments } from 'bitcoinjs-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChainTip, aggregationRoot } from '../../anchors/aggregate.ts';
import { parseHeadersFile } from '../../anchors/headers-file.ts';
import { type AnchorProof, buildProof } from '../../anchors/proof.ts';
import { encodeProofJson } from '../../anchors/proof-json.ts';
import { verifyProof } from '../../anchors/verify.ts';
import { KalimaError } from '../../src/errors.ts';
import { encodeHeader } from '../../src/ledger/block.ts';
import { BitcoinRpc } from '../../chains/bitcoin/rpc.ts';
import { type BcoinNode, startBcoin } from '../../regtest/bcoin.ts';
import { kalimaChain } from '../support/anchor-proof.ts';
import { signAnchorTx, testWallet } from '../support/bitcoin.ts';
import { seededRng } from '../unit/support/seeded-rng.ts';

const KALIMA = resolve('bin/kalima.mjs');
/** bcoin's regtest addresses are bech32 with the human-readable part "rb". */
const BCOIN_REGTEST = { ...networks.regtest, bech32: 'rb' };
const SEGWIT_ACTIVE_HEIGHT = 432;
const ANCHORED_HEIGHT = SEGWIT_ACTIVE_HEIGHT + 1;

function kalima(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [KALIMA, ...args], { cwd, timeout: 60_000 }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

let bcoin: BcoinNode;
let directory: string;
let proof: AnchorProof;
let anchoredHash: string;
const rng = seededRng('bcoin-e2e');
const wallet = testWallet(rng);
const address = payments.p2wpkh({ pubkey: wallet.publicKey, network: BCOIN_REGTEST }).address!;

beforeAll(async () => {
  bcoin = await startBcoin();
  directory = await mkdtemp(join(tmpdir(), 'kalima-bcoin-proof-'));
  // Segregated witness activates on bcoin's regtest through BIP 9 signalling: active from block 432
  // (three 144-block windows), and the anchor spends a P2WPKH output. Block 1's coinbase is mature.
  const mined = (await bcoin.rpc.call('generatetoaddress', [SEGWIT_ACTIVE_HEIGHT, address])) as string[];
  const firstBlock = Block.fromHex((await bcoin.rpc.call('getblock', [mined[0], false])) as string);
  const coinbase = firstBlock.transactions![0]!;
  const vout = coinbase.outs.findIndex((output) => Buffer.from(output.script).equals(Buffer.from(wallet.outputScript)));
  expect(vout).toBeGreaterThanOrEqual(0);

  const chain = kalimaChain('privachain', 30, rng);
  const tips: ChainTip[] = [
    { chain: 'privachain', height: 30, blockHash: chain.hashes[29]! },
    { chain: 'plant-7', height: 1_234, blockHash: rng.bytes(32) },
  ];
  const tx = signAnchorTx({ wallet, prevTxid: coinbase.getHash(), prevIndex: vout, prevValueSat: coinbase.outs[vout]!.value, payload: aggregationRoot(tips), feeSat: 2_000n });
  const txid = (await bcoin.rpc.call('sendrawtransaction', [tx.toHex()])) as string;
  expect(txid).toBe(tx.getId());
  // bcoin answers sendrawtransaction before the mempool has taken the transaction (or refused it).
  for (let attempt = 0; !((await bcoin.rpc.call('getrawmempool', [])) as string[]).includes(txid); attempt++) {
    if (attempt > 100) throw new Error('the anchor transaction did not reach the mempool');
    await new Promise((done) => setTimeout(done, 100));
  }
  anchoredHash = ((await bcoin.rpc.call('generatetoaddress', [1, address])) as string[])[0]!;
  const bitcoinHeight = SEGWIT_ACTIVE_HEIGHT + 1;
  await bcoin.rpc.call('generatetoaddress', [2, address]);
  const raw = new Uint8Array(Buffer.from((await bcoin.rpc.call('getblock', [anchoredHash, false])) as string, 'hex'));
  proof = buildProof({
    network: 'bcoin-regtest', chain: 'privachain', height: 9, blockHash: chain.hashes[8]!, blockHeader: encodeHeader(chain.headers[8]!),
    mmrPath: chain.mmr.proof(8, 29), tipHeader: encodeHeader(chain.headers[29]!), aggregation: { tips }, anchorTx: tx.toBuffer(),
    bitcoinBlock: { raw }, bitcoinHeight,
  });
  await writeFile(join(directory, 'proof.json'), encodeProofJson(proof));
}, 120_000);

afterAll(async () => {
  await bcoin?.stop();
  if (directory !== undefined) await rm(directory, { recursive: true, force: true });
});

describe('an anchor on a real bcoin regtest chain', () => {
  it('the transaction was mined at height 433 and the proof verifies through RPC, 3 confirmations', async () => {
    expect(proof.bitcoinTxIndex).toBe(1);
    const verdict = await verifyProof(proof, { kind: 'rpc', rpc: bcoin.rpc });
    expect(verdict).toMatchObject({ valid: true, confirmations: 3, bitcoinHeight: ANCHORED_HEIGHT, bitcoinBlockHash: anchoredHash, height: 9, tipHeight: 30 });
  });

  it('the CLI verifies it through RPC (api key as the password)', async () => {
    const run = await kalima(['verify-proof', 'proof.json', '--rpc', bcoin.rpcUrl, '--rpc-user', 'x', '--rpc-password', bcoin.apiKey], directory);
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/confirmations\s+3 \(Bitcoin RPC\)/);
    expect(run.stdout).toMatch(/VALID$/m);
  });

  it('kalima headers writes a headers file from the node, and the proof verifies against it', async () => {
    const run = await kalima(['headers', '--rpc', bcoin.rpcUrl, '--rpc-user', 'x', '--rpc-password', bcoin.apiKey, '--out', 'regtest.headers'], directory);
    expect(run.code).toBe(0);
    const headers = parseHeadersFile(await readFile(join(directory, 'regtest.headers'), 'utf8'));
    expect([headers.network, headers.startHeight, headers.tipHeight]).toEqual(['regtest', 0, ANCHORED_HEIGHT + 2]);
    expect(await verifyProof(proof, { kind: 'headers', headers })).toMatchObject({ valid: true, confirmations: 3 });
  });

  it('wrong credentials are KALIMA_ERR_PROOF_RPC_FAILED (bitcoinCode KALIMA_ERR_BITCOIN_UNAUTHORIZED), from the CLI too; a proof for mainnet is KALIMA_ERR_PROOF_WRONG_NETWORK', async () => {
    const wrongKey = new BitcoinRpc({ url: bcoin.rpcUrl, auth: { user: 'x', password: 'not-the-key' }, maxAttempts: 1 });
    const refused = await verifyProof(proof, { kind: 'rpc', rpc: wrongKey }).catch((error: unknown) => error);
    wrongKey.close();
    expect((refused as KalimaError).code).toBe('KALIMA_ERR_PROOF_RPC_FAILED');
    expect((refused as KalimaError).details).toMatchObject({ method: 'getblockhash', bitcoinCode: 'KALIMA_ERR_BITCOIN_UNAUTHORIZED', httpStatus: 401 });
    const run = await kalima(['verify-proof', 'proof.json', '--rpc', bcoin.rpcUrl, '--rpc-user', 'x', '--rpc-password', 'not-the-key'], directory);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/KALIMA_ERR_PROOF_RPC_FAILED/);
    expect(run.stderr).toMatch(/"bitcoinCode": "KALIMA_ERR_BITCOIN_UNAUTHORIZED"/);
    const mainnet = await verifyProof({ ...proof, network: 'mainnet' }, { kind: 'rpc', rpc: bcoin.rpc }).catch((error: unknown) => error);
    expect((mainnet as KalimaError).code).toBe('KALIMA_ERR_PROOF_WRONG_NETWORK');
  });

  it('after invalidateblock and a different chain, the old proof fails through RPC: KALIMA_ERR_PROOF_NOT_IN_CHAIN', async () => {
    await bcoin.rpc.call('invalidateblock', [anchoredHash]);
    expect(await bcoin.rpc.getBlockCount()).toBe(ANCHORED_HEIGHT - 1);
    const other = payments.p2wpkh({ pubkey: testWallet(rng).publicKey, network: BCOIN_REGTEST }).address!;
    await bcoin.rpc.call('generatetoaddress', [4, other]);
    expect(await bcoin.rpc.getBlockCount()).toBe(ANCHORED_HEIGHT + 3);
    expect(await bcoin.rpc.getBlockHash(ANCHORED_HEIGHT)).not.toBe(anchoredHash);
    // Offline the proof is still internally sound: only the chain can say it lost its block.
    expect((await verifyProof(proof, { kind: 'offline' })).valid).toBe(true);
    const verdict = await verifyProof(proof, { kind: 'rpc', rpc: bcoin.rpc });
    expect(verdict.valid).toBe(false);
    expect(verdict.failure).toMatchObject({ code: 'KALIMA_ERR_PROOF_NOT_IN_CHAIN', step: 'bitcoin-chain' });
    const run = await kalima(['verify-proof', 'proof.json', '--rpc', bcoin.rpcUrl, '--rpc-user', 'x', '--rpc-password', bcoin.apiKey], directory);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/KALIMA_ERR_PROOF_NOT_IN_CHAIN/);
  });
});
