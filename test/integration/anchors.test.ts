// Anchoring end to end on a real bcoin (regtest): a node's blocks, one anchor transaction with the
// tip's commitment, mining, the record on the chain, a proof verified through RPC and from a
// headers file; then a reorg made with invalidateblock, which makes the old proof fail and leads to
// the same commitment confirmed (and recorded) in the new chain, exactly once.
import { join } from 'node:path';
import { Transaction } from 'bitcoinjs-lib';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '../../src/ledger/hash.ts';
import type { KalimaNode } from '../../src/node/node.ts';
import { silentLogger, systemClock, systemRng, systemScheduler } from '../../src/ports.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { ANCHORS_ADDRESS, decodeAnchorBody } from '../../src/state/anchor-record.ts';
import { BCOIN_SEGWIT_HEIGHT, type BcoinNode, startBcoin } from '../../regtest/bcoin.ts';
import { parseBlock } from '../../chains/bitcoin/block.ts';
import { AnchorService } from '../../anchors/service.ts';
import { aggregationRoot } from '../../anchors/aggregate.ts';
import { DEFAULT_POLICY, type AnchorStatus } from '../../anchors/engine.ts';
import type { AnchorConfig } from '../../anchors/config.ts';
import { decodeProofJson } from '../../anchors/proof-json.ts';
import { decodeProofBinary, encodeProofBinary } from '../../anchors/proof-binary.ts';
import { checkProofShape } from '../../anchors/proof.ts';
import { buildApi } from '../../src/api/server.ts';
import { verifyOts, verifyProof } from '../../anchors/verify.ts';
import { decodeOts, encodeOts, proofToOts } from '../../anchors/ots.ts';
import { formatHeadersFile, parseHeadersFile } from '../../anchors/headers-file.ts';
import { anchorsInChain } from '../support/bcoin.ts';
import { createAddress, makeChain, makeMessage, openNode, registerDevice, tempDir } from '../support/chain.ts';

let bcoin: BcoinNode;
let node: KalimaNode;
let service: AnchorService;
let api: FastifyInstance;
const chain = makeChain('anchors-e2e', 'plant');

function config(directory: string): AnchorConfig {
  return {
    bitcoin: {
      network: 'bcoin-regtest', rpcUrl: bcoin.rpcUrl, auth: { user: 'kalima', password: bcoin.apiKey }, rpcTimeoutMs: 15_000, walletFile: join(directory, 'anchor-wallet.json'),
      stateDir: join(directory, 'anchors'), addressKind: 'p2wpkh', birthHeight: 0,
    },
    // Every pass may anchor; recorded at depth 2; passes only when the test asks (the timer waits an hour).
    policy: { ...DEFAULT_POLICY, intervalMs: 0, minBlocks: 1, confirmations: 2 },
    pollMs: 3_600_000,
  };
}

const anchorStatus = (): AnchorStatus => service.status() as AnchorStatus;

async function headersFile(): Promise<string> {
  const tip = await bcoin.rpc.getBlockCount();
  const headers: Uint8Array[] = [];
  for (let height = 0; height <= tip; height++) headers.push(Uint8Array.from(Buffer.from(await bcoin.rpc.getBlockHeaderHex(await bcoin.rpc.getBlockHash(height)), 'hex')));
  return formatHeadersFile('bcoin-regtest', 0, headers);
}

beforeAll(async () => {
  bcoin = await startBcoin();
  node = await openNode(chain);
  await createAddress(node, chain, '/sensors');
  const device = await registerDevice(node, chain, { pub: ['/sensors'], sub: ['/sensors'] });
  for (let reading = 0; reading < 3; reading++) await node.submit(makeMessage(chain, device, { address: '/sensors', key: `t${reading}`, body: `${20 + reading}` }));
  const directory = await tempDir('kalima-anchors-');
  service = await AnchorService.open({
    config: config(directory), stateKv: new MemoryKvStore(), nodeKv: new MemoryKvStore(), node, nodeKey: chain.nodeKey,
    clock: systemClock, rng: systemRng, scheduler: systemScheduler, logger: silentLogger,
  });
  ({ app: api } = await buildApi({ node, logger: false, version: 'test', anchors: service }));
}, 60_000);

afterAll(async () => {
  await api?.close();
  await service?.close();
  await node?.close();
  await bcoin?.stop();
});

describe('anchoring into bcoin', () => {
  it('says the wallet must be funded, then anchors the tip in one transaction, records it at depth, and proves a block through RPC and a headers file', async () => {
    await service.tick();
    const unfunded = anchorStatus();
    expect(unfunded.wallet.fundingAddress).toMatch(/^rb1/);
    expect(unfunded.late).toMatch(/cannot pay for an anchor: 0 sats spendable/);
    expect(unfunded.commitments).toEqual([]);

    // bcoin's regtest activates segwit by BIP 9 at height 432; the wallet's first coinbases are mature by then.
    await bcoin.mine(BCOIN_SEGWIT_HEIGHT, unfunded.wallet.fundingAddress);
    await service.tick();
    const sent = anchorStatus();
    expect(sent.commitments).toHaveLength(1);
    const [commitment] = sent.commitments;
    expect(commitment).toMatchObject({ seq: 1, state: 'mempool', tips: [{ chain: 'plant', height: node.height, hash: toHex(node.tipRecord.hash) }] });
    const txid = commitment!.txs[0]!.txid;
    expect(await bcoin.rpc.getRawMempool()).toContain(txid);
    // One OP_RETURN of the aggregation root of the tip, the change back to the wallet.
    const tx = Transaction.fromHex(commitment!.txs[0]!.hex);
    expect(tx.outs).toHaveLength(2);
    expect(tx.outs[0]!.script[0]).toBe(0x6a);
    expect(toHex(tx.outs[0]!.script.subarray(2))).toBe(commitment!.root);
    expect(commitment!.root).toBe(toHex(aggregationRoot([{ chain: 'plant', height: node.height, blockHash: node.tipRecord.hash }])));
    expect(toHex(tx.outs[1]!.script)).toBe(commitment!.txs[0]!.change.script);

    await bcoin.mine(1, sent.wallet.fundingAddress);
    await service.tick();
    expect(anchorStatus().commitments[0]).toMatchObject({ state: 'confirmed', depth: 1 });
    expect(node.cache.getEntry(ANCHORS_ADDRESS, commitment!.root)).toBeUndefined();

    await bcoin.mine(1, sent.wallet.fundingAddress);
    await service.tick();
    const recorded = anchorStatus().commitments[0]!;
    expect(recorded).toMatchObject({ state: 'recorded', depth: 2 });
    const record = decodeAnchorBody(node.cache.getEntry(ANCHORS_ADDRESS, commitment!.root)!.value);
    expect(toHex(record.txid)).toBe(txid);
    expect(toHex(record.bitcoinBlock)).toBe(recorded.confirmed!.blockHash);

    // Block 1 is under the anchored tip: MMR path, tip header, aggregation, transaction, Merkle branch, header;
    // served as JSON (the default) and as the binary .kproof, which is the same proof without the witness.
    const served = await api.inject({ method: 'GET', url: '/anchors/proof/1' });
    expect(served.statusCode).toBe(200);
    expect(served.headers['content-type']).toMatch(/^application\/json/);
    const proof = decodeProofJson(served.body);
    const servedBinary = await api.inject({ method: 'GET', url: '/anchors/proof/1?format=binary' });
    expect(servedBinary.statusCode).toBe(200);
    expect(servedBinary.headers['content-type']).toBe('application/octet-stream');
    expect(new Uint8Array(servedBinary.rawPayload)).toEqual(encodeProofBinary(proof.proof));
    expect(servedBinary.rawPayload.length).toBeLessThan(served.body.length / 2);
    expect(await verifyProof(decodeProofBinary(servedBinary.rawPayload), { kind: 'rpc', rpc: bcoin.rpc })).toMatchObject({ valid: true, height: 1, anchorTxid: txid, confirmations: 2 });
    const unknownFormat = await api.inject({ method: 'GET', url: '/anchors/proof/1?format=xml' });
    expect(unknownFormat.statusCode).toBe(400);
    expect(unknownFormat.json()).toMatchObject({ error: { code: 'KALIMA_ERR_API_BAD_REQUEST', details: { field: 'format' } } });
    const viaRpc = await verifyProof(proof, { kind: 'rpc', rpc: bcoin.rpc });
    expect(viaRpc).toMatchObject({ valid: true, chain: 'plant', height: 1, bitcoinHeight: recorded.confirmed!.height, anchorTxid: txid, confirmations: 2 });
    const header = parseBlock(await bcoin.rpc.getBlockHex(recorded.confirmed!.blockHash));
    expect(viaRpc.attestedTime).toBe(new Date(header.timestampSec * 1000).toISOString());
    const viaFile = await verifyProof(proof, { kind: 'headers', headers: parseHeadersFile(await headersFile()) });
    expect(viaFile).toMatchObject({ valid: true, confirmations: 2 });
    // The same proof as an OpenTimestamps file: from the block hash, appends, prepends and SHA-256s to the Merkle root of that Bitcoin block.
    const ots = decodeOts(encodeOts(proofToOts(proof.proof)));
    expect(toHex(ots.fileDigest)).toBe(toHex(proof.proof.blockHash));
    expect(await verifyOts(ots, { kind: 'rpc', rpc: bcoin.rpc })).toMatchObject({ valid: true, bitcoinHeight: recorded.confirmed!.height, confirmations: 2, bitcoinBlockHash: recorded.confirmed!.blockHash });
    // The same for the tip itself (an empty MMR path).
    const tipProof = checkProofShape(await service.proof(commitment!.tips[0]!.height));
    expect(tipProof.proof.mmrPath).toEqual([]);
    expect(await verifyProof(tipProof, { kind: 'rpc', rpc: bcoin.rpc })).toMatchObject({ valid: true });
    // A block after the anchored tip is not anchored yet.
    await expect(service.proof(commitment!.tips[0]!.height + 1)).rejects.toMatchObject({ code: 'KALIMA_ERR_ANCHOR_NOT_ANCHORED' });
    expect(await anchorsInChain(bcoin, commitment!.root)).toEqual([txid]);
  });

  it('after invalidateblock takes the anchor out of Bitcoin, the old proof fails and the same commitment is confirmed and recorded again, once', async () => {
    const before = anchorStatus().commitments[0]!;
    const oldProof = checkProofShape(await service.proof(1));
    await bcoin.rpc.invalidateBlock(before.confirmed!.blockHash);
    const failed = await verifyProof(oldProof, { kind: 'rpc', rpc: bcoin.rpc });
    expect(failed.valid).toBe(false);
    expect(failed.failure?.code).toBe('KALIMA_ERR_PROOF_NOT_IN_CHAIN');

    await service.tick();
    const reorged = anchorStatus().commitments[0]!;
    expect(reorged.state).toBe('mempool');
    expect(reorged.confirmed).toBeUndefined();
    expect(await bcoin.rpc.getRawMempool()).toContain(before.confirmed!.txid);

    const address = anchorStatus().wallet.fundingAddress;
    await bcoin.mine(2, address);
    await service.tick();
    const again = anchorStatus().commitments;
    expect(again).toHaveLength(1);
    expect(again[0]).toMatchObject({ state: 'recorded', depth: 2 });
    expect(again[0]!.confirmed!.blockHash).not.toBe(before.confirmed!.blockHash);
    const record = decodeAnchorBody(node.cache.getEntry(ANCHORS_ADDRESS, before.root)!.value);
    expect(toHex(record.bitcoinBlock)).toBe(again[0]!.confirmed!.blockHash);
    const newProof = checkProofShape(await service.proof(1));
    expect(await verifyProof(newProof, { kind: 'rpc', rpc: bcoin.rpc })).toMatchObject({ valid: true, bitcoinHeight: again[0]!.confirmed!.height });
    expect(await anchorsInChain(bcoin, before.root)).toEqual([before.confirmed!.txid]);
  });

  it('two anchors, the second spending the first one\'s change, mined in one block after a reorg, then reorganised away together: the wallet is as before that block, and each anchor confirms once', async () => {
    const device = await registerDevice(node, chain, { pub: ['/sensors'], sub: [] });
    await node.submit(makeMessage(chain, device, { address: '/sensors', key: 'second', body: '2' }));
    await service.tick();
    const [first, second] = anchorStatus().commitments;
    expect([first!.state, second!.state]).toEqual(['recorded', 'mempool']);
    expect(second!.txs[0]!.inputs[0]).toBe(`${first!.confirmed!.txid}:${first!.txs.find((tx) => tx.txid === first!.confirmed!.txid)!.change.vout}`);

    // Both out of Bitcoin's chain and its mempool; both sent again; mined together.
    await bcoin.rpc.invalidateBlock(first!.confirmed!.blockHash);
    await service.tick();
    expect(await bcoin.rpc.getRawMempool()).toEqual(expect.arrayContaining([first!.confirmed!.txid, second!.txs[0]!.txid]));
    const walletBefore = anchorStatus().wallet;
    const [together] = await bcoin.mine(1, walletBefore.fundingAddress);
    await service.tick();
    const both = anchorStatus().commitments;
    expect(both.map((commitment) => commitment.confirmed?.blockHash)).toEqual([together, together]);

    // That block taken away: the first anchor's change, made and spent in it, is not left behind as an output.
    await bcoin.rpc.invalidateBlock(together!);
    await service.tick();
    expect(anchorStatus().wallet).toMatchObject({ utxos: walletBefore.utxos, spendable: walletBefore.spendable, immature: walletBefore.immature });
    expect(anchorStatus().commitments.map((commitment) => commitment.confirmed)).toEqual([undefined, undefined]);

    await bcoin.mine(2, walletBefore.fundingAddress);
    await service.tick();
    const done = anchorStatus().commitments;
    expect(done.map((commitment) => commitment.state)).toEqual(['recorded', 'recorded']);
    for (const commitment of done) expect(await anchorsInChain(bcoin, commitment.root)).toEqual([commitment.confirmed!.txid]);
  });
});
