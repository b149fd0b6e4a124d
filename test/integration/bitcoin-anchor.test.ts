// Anchor transactions end to end on a real bcoin (one process for the file) from a P2WPKH wallet:
// coins found by parsing raw blocks, an anchor built and signed here, broadcast, seen in the
// mempool, mined, and proven by a Merkle branch against the block header; a chain of two
// unconfirmed anchors; the refusals the lifecycle must tell apart (fee, conflict, missing inputs,
// already confirmed, segwit not active yet); a fee-bumped replacement that the node accepts; and
// what bcoin does to a mined anchor on invalidateblock. bcoin 1.0.2 knows no Taproot, so P2TR
// signing is checked against the BIP-341 vectors in test/unit/bitcoin-keys.test.ts instead.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { script as bitcoinScript, Transaction } from 'bitcoinjs-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KalimaError } from '../../src/errors.ts';
import { sha256 } from '../../src/ledger/hash.ts';
import { merkleBranch, outputsPaying, parseBlock, spentOutpoints, verifyMerkleBranch, type ParsedBlock } from '../../chains/bitcoin/block.ts';
import { type AddressKind, type AnchorWallet, changeAddress, openAnchorWallet, receiveAddress, signerFor } from '../../chains/bitcoin/keys.ts';
import { buildReplacement } from '../../chains/bitcoin/replacement.ts';
import { type AnchorTx, type Utxo, CHANGE_VOUT, buildAnchorTx, opReturnScript } from '../../chains/bitcoin/tx.ts';
import { seededRng } from '../unit/support/seeded-rng.ts';
import { BCOIN_SEGWIT_HEIGHT, type BcoinNode, startBcoin } from '../../regtest/bcoin.ts';

let bcoin: BcoinNode;
let wallet: AnchorWallet;

beforeAll(async () => {
  bcoin = await startBcoin();
  wallet = await openAnchorWallet(join(mkdtempSync(join(tmpdir(), 'kalima-anchor-')), 'keys', 'anchor-wallet.json'), bcoin.network, seededRng('anchor-e2e'));
});

afterAll(async () => {
  await bcoin?.stop();
});

async function block(hashHex: string): Promise<ParsedBlock> {
  const parsed = parseBlock(await bcoin.rpc.getBlockHex(hashHex));
  expect(parsed.hashHex).toBe(hashHex);
  return parsed;
}

function commitment(label: string): Uint8Array {
  return sha256(new TextEncoder().encode(label));
}

function error(caught: KalimaError): Record<string, unknown> {
  return { code: caught.code, ...caught.details };
}

async function rejection(promise: Promise<unknown>): Promise<KalimaError> {
  const error = await promise.then(() => undefined, (caught: unknown) => caught);
  expect(error).toBeInstanceOf(KalimaError);
  return error as KalimaError;
}

describe('anchors from a P2WPKH wallet on bcoin', () => {
  const kind: AddressKind = 'p2wpkh';
  const receive = () => receiveAddress(wallet, kind, 0);
  const change = () => changeAddress(wallet, kind, 0);
  const signer = (utxo: Utxo) => signerFor(wallet, utxo.derivation);
  const anchor = (utxos: Utxo[], label: string, feeRateSatPerKvB = 2000n, extra: Partial<Parameters<typeof buildAnchorTx>[0]> = {}): AnchorTx =>
    buildAnchorTx({ utxos, commitment: commitment(label), feeRateSatPerKvB, change: { script: change().script, derivation: change().derivation }, signer, rbf: true, ...extra });
  const changeUtxo = (tx: AnchorTx): Utxo => ({ txid: tx.txid, vout: CHANGE_VOUT, valueSat: tx.changeValueSat, script: tx.change.script, derivation: tx.change.derivation });

  let coinbase: Utxo;
  let first: AnchorTx;
  let second: AnchorTx;
  let third: AnchorTx;

  it('finds the coinbase paid to the wallet by parsing the raw block', async () => {
    expect(receive().address.startsWith('rb1q')).toBe(true);
    const hashes = await bcoin.mine(101, receive().address);
    const paid = outputsPaying(await block(hashes[0]!), [receive().script]);
    expect(paid).toHaveLength(1);
    expect(paid[0]!.valueSat).toBe(50n * 100_000_000n);
    coinbase = { ...paid[0]!, derivation: receive().derivation };
  });

  it('is refused before segwit activates (reason other), and held by the mempool after, with the fee and size computed here', async () => {
    first = anchor([coinbase], 'anchor 1');
    const early = await rejection(bcoin.rpc.sendRawTransaction(first.hex));
    expect(error(early)).toMatchObject({ code: 'KALIMA_ERR_BITCOIN_TX_REJECTED', reason: 'other', txid: first.txid });
    await bcoin.mine(BCOIN_SEGWIT_HEIGHT - 1 - (await bcoin.rpc.getBlockCount()), receive().address);
    expect(error(await rejection(bcoin.rpc.sendRawTransaction(first.hex)))).toMatchObject({ code: 'KALIMA_ERR_BITCOIN_TX_REJECTED', reason: 'other' });
    await bcoin.mine(1, receive().address);
    expect(await bcoin.rpc.getBlockCount()).toBe(BCOIN_SEGWIT_HEIGHT);
    expect(await bcoin.rpc.sendRawTransaction(first.hex)).toBe(first.txid);
    expect(await bcoin.rpc.getRawMempool()).toContain(first.txid);
    const entry = await bcoin.rpc.getMempoolEntry(first.txid);
    expect(entry?.feeSat).toBe(first.feeSat);
    expect(entry?.vsize).toBe(first.vsize);
    expect(first.changeValueSat).toBe(coinbase.valueSat - first.feeSat);
  });

  it('chains a second anchor on the first one\'s unconfirmed change', async () => {
    second = anchor([changeUtxo(first)], 'anchor 2');
    expect(await bcoin.rpc.sendRawTransaction(second.hex)).toBe(second.txid);
    expect((await bcoin.rpc.getMempoolEntry(second.txid))?.depends).toEqual([first.txid]);
  });

  it('mines both; each has a Merkle branch to the header, and the OP_RETURN holds the commitment', async () => {
    const [blockHash] = await bcoin.mine(1, receive().address);
    const mined = await block(blockHash!);
    expect(await bcoin.rpc.getRawMempool()).toEqual([]);
    const header = Buffer.from(await bcoin.rpc.getBlockHeaderHex(blockHash!), 'hex');
    expect(Buffer.from(mined.header).equals(header)).toBe(true);
    for (const [tx, label] of [[first, 'anchor 1'], [second, 'anchor 2']] as const) {
      const index = mined.txids.indexOf(tx.txid);
      expect(index).toBeGreaterThan(0);
      const branch = merkleBranch(mined.txids, index);
      expect(verifyMerkleBranch(tx.txid, branch, header)).toBe(true);
      const forged = { index: branch.index, siblings: branch.siblings.map((sibling, level) => level === 0 ? sibling.map((byte, at) => at === 0 ? byte ^ 1 : byte) : sibling) };
      expect(verifyMerkleBranch(tx.txid, forged, header)).toBe(false);
      expect(verifyMerkleBranch(coinbase.txid, branch, header)).toBe(false);
      const onChain = mined.transactions[index]!;
      expect(onChain.outs).toHaveLength(2);
      expect(Buffer.from(onChain.outs[0]!.script).equals(opReturnScript(commitment(label)))).toBe(true);
      const [opcode, payload] = bitcoinScript.decompile(onChain.outs[0]!.script)!;
      expect(opcode).toBe(bitcoinScript.OPS.OP_RETURN);
      expect(Buffer.from(payload as Uint8Array).equals(commitment(label))).toBe(true);
      expect(onChain.ins.every((input) => input.sequence === 0xfffffffd)).toBe(true);
    }
    expect(outputsPaying(mined, [change().script]).map(({ txid, vout, valueSat }) => ({ txid, vout, valueSat })))
      .toEqual([first, second].map((tx) => ({ txid: tx.txid, vout: CHANGE_VOUT, valueSat: tx.changeValueSat })));
    // The first change is paid and spent in this block: a scanner nets the two out.
    const spent = spentOutpoints(mined);
    expect(spent).toContainEqual({ txid: coinbase.txid, vout: coinbase.vout, spendingTxid: first.txid, inputIndex: 0 });
    expect(spent).toContainEqual({ txid: first.txid, vout: CHANGE_VOUT, spendingTxid: second.txid, inputIndex: 0 });
  });

  it('refuses a fee below the minimum relay fee: TX_REJECTED, reason fee', async () => {
    third = anchor([changeUtxo(second)], 'anchor 3');
    await bcoin.rpc.sendRawTransaction(third.hex);
    // bcoin relays a low-fee transaction of high coin-age priority for free; an unconfirmed input has none.
    const cheap = anchor([changeUtxo(third)], 'too cheap', 100n, { policy: { minRelayFeeSatPerKvB: 0n } });
    expect(cheap.feeSat * 1000n).toBeLessThan(1000n * BigInt(cheap.vsize));
    const error = await rejection(bcoin.rpc.sendRawTransaction(cheap.hex));
    expect(error.code).toBe('KALIMA_ERR_BITCOIN_TX_REJECTED');
    expect(error.details).toMatchObject({ reason: 'fee', txid: cheap.txid, feeSat: Number(cheap.feeSat), relayFeeSatPerKvB: 1000 });
    expect(await bcoin.rpc.getRawMempool()).not.toContain(cheap.txid);
  });

  it('refuses a double spend of an input a mempool transaction spends: TX_REJECTED, reason conflict', async () => {
    const rival = anchor([changeUtxo(second)], 'rival of anchor 3', 5000n);
    const error = await rejection(bcoin.rpc.sendRawTransaction(rival.hex));
    expect(error.code).toBe('KALIMA_ERR_BITCOIN_TX_REJECTED');
    expect(error.details).toMatchObject({ reason: 'conflict', conflictingTxid: third.txid });
  });

  it('refuses a double spend of an input spent in a block: TX_REJECTED, reason missing-inputs', async () => {
    const late = anchor([coinbase], 'spends the coinbase again');
    const error = await rejection(bcoin.rpc.sendRawTransaction(late.hex));
    expect(error.code).toBe('KALIMA_ERR_BITCOIN_TX_REJECTED');
    expect(error.details).toMatchObject({ reason: 'missing-inputs', outpoint: { txid: coinbase.txid, vout: coinbase.vout } });
  });

  it('says TX_ALREADY_CONFIRMED for a rebroadcast of a mined anchor', async () => {
    const [blockHash] = await bcoin.mine(1, receive().address);
    expect((await block(blockHash!)).txids).toContain(third.txid);
    const error = await rejection(bcoin.rpc.sendRawTransaction(third.hex));
    expect(error.code).toBe('KALIMA_ERR_BITCOIN_TX_ALREADY_CONFIRMED');
    expect(error.details).toMatchObject({ txid: third.txid, blockHash });
  });

  it('accepts a fee-bumped replacement (broadcast in place of its original: bcoin has no RBF)', async () => {
    const original = anchor([changeUtxo(third)], 'anchor 4', 1000n);
    const bumped = buildReplacement({ original, feeRateSatPerKvB: 3000n, signer });
    expect(bumped.inputs).toEqual(original.inputs);
    expect(bumped.feeSat).toBeGreaterThan(original.feeSat);
    expect(await bcoin.rpc.sendRawTransaction(bumped.hex)).toBe(bumped.txid);
    expect((await bcoin.rpc.getMempoolEntry(bumped.txid))?.feeSat).toBe(bumped.feeSat);
    const decoded = Transaction.fromHex(bumped.hex);
    expect(decoded.ins.map((input) => input.sequence)).toEqual([0xfffffffd]);
    // What the lifecycle sees of a reorg on bcoin: invalidateblock empties the mempool and does not
    // give the block's transactions back to it; the anchor must be broadcast again.
    const [blockHash] = await bcoin.mine(1, receive().address);
    await bcoin.rpc.invalidateBlock(blockHash!);
    expect(await bcoin.rpc.getRawMempool()).toEqual([]);
    expect(await bcoin.rpc.sendRawTransaction(bumped.hex)).toBe(bumped.txid);
    await bcoin.mine(1, receive().address);
  });
});

describe('P2TR on bcoin 1.0.2', () => {
  it('is unknown: bcoin refuses a bech32m address as a bad parameter', async () => {
    const taproot = receiveAddress(wallet, 'p2tr', 0).address;
    expect(taproot.startsWith('rb1p')).toBe(true);
    expect(await bcoin.rpc.validateAddress(taproot)).toBe(false);
    const refused = await rejection(bcoin.mine(1, taproot));
    expect(error(refused)).toMatchObject({ code: 'KALIMA_ERR_BITCOIN_BAD_PARAMETER', rpcCode: -5 });
  });
});
