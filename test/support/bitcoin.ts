// Real Bitcoin data for anchor tests and the anchors bench, built with bitcoinjs-lib: a signed
// P2WPKH anchor transaction (OP_RETURN of 32 bytes, change), coinbases, and blocks whose header
// meets regtest's proof of work (bits 0x207fffff: about one nonce in two).
import { Transaction, payments, script } from 'bitcoinjs-lib';
import * as ecc from 'tiny-secp256k1';
import { bitcoinBlockHash, merkleRoot } from '../../chains/bitcoin/block.ts';
import { proofOfWorkFailure } from '../../anchors/bitcoin.ts';
import { parseBitcoinNetwork } from '../../chains/bitcoin/network.ts';
import type { Rng } from '../../src/ports.ts';

export const REGTEST_BITS = 0x207fffff;

export interface TestWallet {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
  /** The P2WPKH output script. */
  outputScript: Uint8Array;
}

export function testWallet(rng: Rng): TestWallet {
  for (;;) {
    const secretKey = rng.bytes(32);
    if (!ecc.isPrivate(secretKey)) continue;
    const publicKey = ecc.pointFromScalar(secretKey, true)!;
    return { secretKey, publicKey, outputScript: payments.p2wpkh({ pubkey: publicKey }).output! };
  }
}

export interface AnchorTxInput {
  wallet: TestWallet;
  /** The spent output, txid in internal byte order. */
  prevTxid: Uint8Array;
  prevIndex: number;
  prevValueSat: bigint;
  /** The 32 bytes the OP_RETURN commits to. */
  payload: Uint8Array;
  feeSat: bigint;
}

/** One input, OP_RETURN <32 bytes>, change back to the wallet; signed and checked. */
export function signAnchorTx(input: AnchorTxInput): Transaction {
  const tx = new Transaction();
  tx.version = 2;
  tx.addInput(input.prevTxid, input.prevIndex, 0xfffffffd);
  tx.addOutput(payments.embed({ data: [input.payload] }).output!, 0n);
  tx.addOutput(input.wallet.outputScript, input.prevValueSat - input.feeSat);
  const scriptCode = payments.p2pkh({ pubkey: input.wallet.publicKey }).output!;
  const sighash = tx.hashForWitnessV0(0, scriptCode, input.prevValueSat, Transaction.SIGHASH_ALL);
  const signature = ecc.sign(sighash, input.wallet.secretKey);
  if (!ecc.verify(sighash, input.wallet.publicKey, signature)) throw new Error('test fixture: the anchor signature does not verify');
  tx.setWitness(0, [script.signature.encode(signature, Transaction.SIGHASH_ALL), input.wallet.publicKey]);
  return tx;
}

export function coinbaseTx(height: number, outputScript: Uint8Array, valueSat: bigint): Transaction {
  const tx = new Transaction();
  tx.version = 2;
  // BIP 34: the coinbase script starts with the height.
  tx.addInput(new Uint8Array(32), 0xffffffff, 0xffffffff, script.compile([script.number.encode(height), Uint8Array.of(0)]));
  tx.addOutput(outputScript, valueSat);
  return tx;
}

/** A transaction that stands for someone else's payment in a block. */
export function fillerTx(rng: Rng, outputScript: Uint8Array): Transaction {
  const tx = new Transaction();
  tx.version = 2;
  tx.addInput(rng.bytes(32), 0);
  tx.addOutput(outputScript, 1_000n);
  return tx;
}

export interface MinedHeader {
  version?: number;
  prevHash: Uint8Array;
  merkleRoot: Uint8Array;
  timeS: number;
  bits?: number;
}

/** An 80-byte header whose hash meets its bits, by trying nonces. */
export function mineHeader(fields: MinedHeader): Uint8Array {
  const header = new Uint8Array(80);
  const view = new DataView(header.buffer);
  view.setInt32(0, fields.version ?? 0x20000000, true);
  header.set(fields.prevHash, 4);
  header.set(fields.merkleRoot, 36);
  view.setUint32(68, fields.timeS, true);
  view.setUint32(72, fields.bits ?? REGTEST_BITS, true);
  for (let nonce = 0; nonce <= 0xffffffff; nonce++) {
    view.setUint32(76, nonce, true);
    if (proofOfWorkFailure(header, parseBitcoinNetwork('regtest').powLimit) === undefined) return header;
  }
  throw new Error('test fixture: no nonce meets the bits');
}

export interface TestBitcoinBlock {
  raw: Uint8Array;
  header: Uint8Array;
  /** Internal byte order, block order. */
  txids: Uint8Array[];
  hash: Uint8Array;
}

/** A block of `transactions` (the coinbase first) on top of `prevHash`. */
export function mineBlock(prevHash: Uint8Array, timeS: number, transactions: readonly Transaction[]): TestBitcoinBlock {
  const txids = transactions.map((tx) => tx.getHash());
  const header = mineHeader({ prevHash, merkleRoot: merkleRoot(txids), timeS });
  const count = transactions.length;
  const countBytes = count < 0xfd ? [count] : [0xfd, count & 0xff, count >> 8];
  const raw = Buffer.concat([header, Uint8Array.from(countBytes), ...transactions.map((tx) => tx.toBuffer())]);
  return { raw: new Uint8Array(raw), header, txids, hash: bitcoinBlockHash(header) };
}

/** Genesis headers from their published fields: version 1, no parent, the same coinbase Merkle root. */
const GENESIS_MERKLE_ROOT = '3ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a';
export const REGTEST_GENESIS = Uint8Array.from(Buffer.from(`01000000${'00'.repeat(32)}${GENESIS_MERKLE_ROOT}dae5494dffff7f2002000000`, 'hex'));
export const MAINNET_GENESIS = Uint8Array.from(Buffer.from(`01000000${'00'.repeat(32)}${GENESIS_MERKLE_ROOT}29ab5f49ffff001d1dac2b7c`, 'hex'));

/** Regtest headers from genesis, `count` of them. */
export function regtestHeaders(count: number): Uint8Array[] {
  return extendHeaders([REGTEST_GENESIS], count - 1, 0x01);
}

/** Mines `count` headers on top of `headers` (in place), their Merkle roots filled with `fill`. */
export function extendHeaders(headers: Uint8Array[], count: number, fill: number): Uint8Array[] {
  for (let added = 0; added < count; added++) {
    headers.push(mineHeader({ prevHash: bitcoinBlockHash(headers[headers.length - 1]!), merkleRoot: new Uint8Array(32).fill(fill), timeS: 1_780_000_000 + headers.length }));
  }
  return headers;
}
