// Raw Bitcoin blocks, parsed with bitcoinjs-lib: the header, the txids, the outputs paying given
// scripts and the outpoints spent (for scanning the anchor wallet's coins), and Merkle branches;
// and the header and tree primitives the anchor proofs build on (anchors/bitcoin.ts, proof.ts).
// Hashes in display hex are byte-reversed (as RPC shows them); Merkle siblings are in internal
// order (as the block serializes them), which is what SHA-256 is applied to.
import { Block, type Transaction } from 'bitcoinjs-lib';
import { kalimaError } from '../../src/errors.ts';
import { bytesEqual, fromHex, sha256, toHex } from '../../src/ledger/hash.ts';
import type { Outpoint } from './tx.ts';

export const BLOCK_HEADER_BYTES = 80;

export interface ParsedBlock {
  hashHex: string;
  header: Uint8Array;
  prevHashHex: string;
  /** Display order, like the hashes. */
  merkleRootHex: string;
  timestampSec: number;
  transactions: Transaction[];
  txids: string[];
}

export interface PaidOutput extends Outpoint {
  valueSat: bigint;
  script: Uint8Array;
}

export interface SpentOutpoint extends Outpoint {
  spendingTxid: string;
  inputIndex: number;
}

/** A transaction's place in a block: its index and the sibling at each level, leaf first. */
export interface MerkleBranch {
  index: number;
  siblings: Uint8Array[];
}

/** The 80-byte header's fields; hashes in internal byte order. */
export interface BitcoinHeader {
  version: number;
  prevHash: Uint8Array;
  merkleRoot: Uint8Array;
  timestampSec: number;
  bits: number;
  nonce: number;
}

/** Internal byte order to the display order of RPC and explorers. */
export function displayHex(hash: Uint8Array): string {
  return toHex(Uint8Array.from(hash).reverse());
}

function internalOrder(hashHex: string): Uint8Array {
  const bytes = fromHex(hashHex);
  if (bytes?.length !== 32) throw new Error(`assertion failed: block: ${hashHex} is not a 32-byte hash in hex`);
  return bytes.reverse();
}

function checkHeaderLength(header: Uint8Array): void {
  if (header.length !== BLOCK_HEADER_BYTES) throw new Error(`assertion failed: block: a header is 80 bytes, not ${header.length}`);
}

/** SHA-256d, Bitcoin's hash of a header, a transaction and a Merkle node. */
export function hash256(...parts: Uint8Array[]): Uint8Array {
  return sha256(sha256(...parts));
}

/** version (int32), prevHash, merkleRoot, time, bits, nonce (uint32), all little-endian. */
export function decodeBitcoinHeader(header: Uint8Array): BitcoinHeader {
  checkHeaderLength(header);
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  return {
    version: view.getInt32(0, true),
    prevHash: header.slice(4, 36),
    merkleRoot: header.slice(36, 68),
    timestampSec: view.getUint32(68, true),
    bits: view.getUint32(72, true),
    nonce: view.getUint32(76, true),
  };
}

/** The block hash of an 80-byte header, internal byte order. */
export function bitcoinBlockHash(header: Uint8Array): Uint8Array {
  checkHeaderLength(header);
  return hash256(header);
}

/** Parses a serialized block; one whose transactions do not match its Merkle root is refused. */
export function parseBlock(raw: string | Uint8Array): ParsedBlock {
  let block: Block;
  try {
    block = typeof raw === 'string' ? Block.fromHex(raw) : Block.fromBuffer(raw);
  } catch (error) {
    throw kalimaError('KALIMA_ERR_BITCOIN_BAD_RESPONSE', { what: 'block', cause: (error as Error).message });
  }
  const transactions = block.transactions ?? [];
  if (transactions.length === 0 || !block.checkTxRoots()) throw kalimaError('KALIMA_ERR_BITCOIN_BAD_RESPONSE', { what: 'block', hash: block.getId(), cause: 'the transactions do not match the Merkle root or the witness commitment' });
  return {
    hashHex: block.getId(),
    header: block.toBuffer(true),
    prevHashHex: displayHex(block.prevHash!),
    merkleRootHex: displayHex(block.merkleRoot!),
    timestampSec: block.timestamp,
    transactions,
    txids: transactions.map((tx) => tx.getId()),
  };
}

/** The block hash (display hex) of an 80-byte header. */
export function headerHashHex(header: Uint8Array): string {
  return displayHex(bitcoinBlockHash(header));
}

/** The Merkle root (display hex) a header commits to: bytes 36..68. */
export function headerMerkleRootHex(header: Uint8Array): string {
  return displayHex(decodeBitcoinHeader(header).merkleRoot);
}

/** Every output in `block` whose script is one of `scripts`. */
export function outputsPaying(block: ParsedBlock, scripts: Uint8Array[]): PaidOutput[] {
  const wanted = new Set(scripts.map(toHex));
  const paid: PaidOutput[] = [];
  block.transactions.forEach((tx, txIndex) => {
    tx.outs.forEach((out, vout) => {
      if (wanted.has(toHex(out.script))) paid.push({ txid: block.txids[txIndex]!, vout, valueSat: out.value, script: out.script });
    });
  });
  return paid;
}

/** Every outpoint the block's transactions spend (the coinbase spends none). */
export function spentOutpoints(block: ParsedBlock): SpentOutpoint[] {
  const spent: SpentOutpoint[] = [];
  block.transactions.forEach((tx, txIndex) => {
    if (txIndex === 0) return;
    tx.ins.forEach((input, inputIndex) => {
      spent.push({ txid: displayHex(input.hash), vout: input.index, spendingTxid: block.txids[txIndex]!, inputIndex });
    });
  });
  return spent;
}

/** Bitcoin's tree: each level pairs neighbours, and a level of odd length pairs its last hash with itself. */
function parentLevel(level: readonly Uint8Array[]): Uint8Array[] {
  const parents: Uint8Array[] = [];
  for (let pair = 0; pair < level.length; pair += 2) parents.push(hash256(level[pair]!, level[pair + 1] ?? level[pair]!));
  return parents;
}

/** The siblings from txids[index] (internal byte order, block order) up to the root, leaf first. */
export function merkleSiblings(txids: readonly Uint8Array[], index: number): Uint8Array[] {
  if (!Number.isInteger(index) || index < 0 || index >= txids.length) throw new Error(`assertion failed: block: index ${index} not in 0..${txids.length - 1}`);
  const siblings: Uint8Array[] = [];
  let level = txids.slice();
  for (let position = index; level.length > 1; position >>= 1) {
    siblings.push(level[position ^ 1] ?? level[position]!);
    level = parentLevel(level);
  }
  return siblings;
}

/** The Merkle root (internal byte order) of txids in internal byte order. */
export function merkleRoot(txids: readonly Uint8Array[]): Uint8Array {
  if (txids.length === 0) throw new Error('assertion failed: block: a block has at least one transaction');
  let level = txids.slice();
  while (level.length > 1) level = parentLevel(level);
  return level[0]!;
}

/** The branch from txids[index] (display hex) to the root of Bitcoin's tree. */
export function merkleBranch(txids: string[], index: number): MerkleBranch {
  return { index, siblings: merkleSiblings(txids.map(internalOrder), index) };
}

/** The root (display hex) `branch` leads to from `txid`. */
export function merkleRootFromBranch(txid: string, branch: MerkleBranch): string {
  let node = internalOrder(txid);
  let position = branch.index;
  for (const sibling of branch.siblings) {
    node = position & 1 ? hash256(sibling, node) : hash256(node, sibling);
    position >>= 1;
  }
  return displayHex(node);
}

/**
 * Whether `branch` proves `txid` under the header's Merkle root. The caller checks that the
 * transaction's bytes hash to `txid` and are not 64 bytes long: a 64-byte transaction could pose
 * as an inner node of the tree.
 */
export function verifyMerkleBranch(txid: string, branch: MerkleBranch, header: Uint8Array): boolean {
  if (branch.index >= 2 ** branch.siblings.length) return false;
  return bytesEqual(fromHex(merkleRootFromBranch(txid, branch))!, fromHex(headerMerkleRootHex(header))!);
}
