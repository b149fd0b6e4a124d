// Raw block parsing and Bitcoin Merkle branches: the branch of every transaction of blocks of 1 to
// 17 transactions leads to the root bitcoinjs-lib computes on its own, odd levels included; a
// changed sibling, txid or position fails; a block whose Merkle root was altered is refused.
import { Block, Transaction } from 'bitcoinjs-lib';
import { describe, expect, it } from 'vitest';
import { KalimaError } from '../../src/errors.ts';
import {
  BLOCK_HEADER_BYTES, bitcoinBlockHash, decodeBitcoinHeader, displayHex, headerHashHex, headerMerkleRootHex, merkleBranch, merkleRoot, merkleRootFromBranch,
  parseBlock, spentOutpoints, verifyMerkleBranch,
} from '../../chains/bitcoin/block.ts';
import { parseBitcoinNetwork } from '../../chains/bitcoin/network.ts';

/** Core's regtest genesis block (also bcoin's), as getblock serializes it. */
const REGTEST_GENESIS_HEX = '0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4adae5494dffff7f20020000000101000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000';

/** `count` distinct transactions, the first a coinbase, each later one spending the one before. */
function transactions(count: number): Transaction[] {
  const txs: Transaction[] = [];
  for (let index = 0; index < count; index++) {
    const tx = new Transaction();
    tx.addInput(index === 0 ? new Uint8Array(32) : txs[index - 1]!.getHash(), index === 0 ? 0xffffffff : 0);
    tx.addOutput(new Uint8Array([0x51]), BigInt(index + 1));
    tx.locktime = index;
    txs.push(tx);
  }
  return txs;
}

/** A block holding `txs` whose header commits to their Merkle root (no proof of work needed here). */
function blockOf(txs: Transaction[]): Block {
  const block = new Block();
  block.version = 4;
  block.prevHash = new Uint8Array(32).fill(1);
  block.merkleRoot = Block.calculateMerkleRoot(txs);
  block.timestamp = 1_700_000_000;
  block.bits = 0x207fffff;
  block.nonce = 0;
  block.transactions = txs;
  return block;
}

describe('parseBlock', () => {
  it('parses the regtest genesis block', () => {
    const genesis = parseBlock(REGTEST_GENESIS_HEX);
    expect(genesis.hashHex).toBe(parseBitcoinNetwork('regtest').genesisBlockHashHex);
    expect(genesis.header).toHaveLength(BLOCK_HEADER_BYTES);
    expect(headerHashHex(genesis.header)).toBe(genesis.hashHex);
    expect(genesis.merkleRootHex).toBe('4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b');
    expect(headerMerkleRootHex(genesis.header)).toBe(genesis.merkleRootHex);
    expect(genesis.txids).toEqual([genesis.merkleRootHex]);
    expect(genesis.prevHashHex).toBe('00'.repeat(32));
    expect(spentOutpoints(genesis)).toEqual([]);
    expect(displayHex(bitcoinBlockHash(genesis.header))).toBe(genesis.hashHex);
    // The published fields of the genesis block: version 1, time 1296688602, bits 0x207fffff, nonce 2.
    expect(decodeBitcoinHeader(genesis.header)).toMatchObject({ version: 1, prevHash: new Uint8Array(32), timestampSec: 1_296_688_602, bits: 0x207fffff, nonce: 2 });
  });

  it('lists the outpoints spent, not the coinbase\'s', () => {
    const txs = transactions(3);
    const parsed = parseBlock(blockOf(txs).toHex());
    expect(spentOutpoints(parsed)).toEqual([
      { txid: txs[0]!.getId(), vout: 0, spendingTxid: txs[1]!.getId(), inputIndex: 0 },
      { txid: txs[1]!.getId(), vout: 0, spendingTxid: txs[2]!.getId(), inputIndex: 0 },
    ]);
  });

  it.each([
    { name: 'a block whose Merkle root does not match its transactions', hex: () => { const block = blockOf(transactions(3)); block.merkleRoot = new Uint8Array(32).fill(7); return block.toHex(); } },
    { name: 'a truncated block', hex: () => REGTEST_GENESIS_HEX.slice(0, 200) },
    { name: 'a header alone', hex: () => REGTEST_GENESIS_HEX.slice(0, 160) },
  ])('refuses $name as BAD_RESPONSE', ({ hex }) => {
    expect(() => parseBlock(hex())).toThrow(KalimaError);
    try {
      parseBlock(hex());
    } catch (error) {
      expect((error as KalimaError).code).toBe('KALIMA_ERR_BITCOIN_BAD_RESPONSE');
    }
  });
});

describe('Merkle branches', () => {
  it.each(Array.from({ length: 17 }, (_, index) => index + 1))('every branch of a %i-transaction block verifies against its header', (count) => {
    const block = blockOf(transactions(count));
    const parsed = parseBlock(block.toHex());
    const expectedRoot = Buffer.from(Block.calculateMerkleRoot(block.transactions!)).reverse().toString('hex');
    expect(parsed.merkleRootHex).toBe(expectedRoot);
    expect(displayHex(merkleRoot(block.transactions!.map((tx) => tx.getHash())))).toBe(expectedRoot);
    for (let index = 0; index < count; index++) {
      const branch = merkleBranch(parsed.txids, index);
      expect(branch.siblings).toHaveLength(Math.ceil(Math.log2(count)));
      expect(merkleRootFromBranch(parsed.txids[index]!, branch)).toBe(expectedRoot);
      expect(verifyMerkleBranch(parsed.txids[index]!, branch, parsed.header)).toBe(true);
      if (count > 1) {
        const other = parsed.txids[(index + 1) % count]!;
        expect(verifyMerkleBranch(other, branch, parsed.header)).toBe(false);
        const bent = branch.siblings.map((sibling, level) => (level === branch.siblings.length - 1 ? Uint8Array.from(sibling, (byte, at) => (at === 31 ? byte ^ 0x80 : byte)) : sibling));
        expect(verifyMerkleBranch(parsed.txids[index]!, { index, siblings: bent }, parsed.header)).toBe(false);
      }
    }
  });

  it('refuses a position beyond what the branch can express', () => {
    const parsed = parseBlock(blockOf(transactions(4)).toHex());
    const branch = merkleBranch(parsed.txids, 1);
    expect(verifyMerkleBranch(parsed.txids[1]!, { index: 1 + 4, siblings: branch.siblings }, parsed.header)).toBe(false);
  });
});
