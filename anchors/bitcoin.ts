// The Bitcoin side of an anchor proof, on top of chains/bitcoin/block.ts (the header, its hash, the
// block's Merkle tree): the header's proof of work against the network's limit, the anchor
// transaction's commitment, and the Merkle branch as proof operations.
import { Transaction } from 'bitcoinjs-lib';
import { decodeBitcoinHeader, hash256, headerHashHex } from '../chains/bitcoin/block.ts';
import type { ProofOp } from './ops.ts';

/** OP_RETURN, push of 32 bytes. */
const OP_RETURN = 0x6a;
const PUSH_32 = 0x20;

/** The target a compact `bits` encodes; undefined for a negative or zero one, or one past 256 bits. */
export function targetFromBits(bits: number): bigint | undefined {
  const exponent = bits >>> 24;
  const mantissa = bits & 0x007fffff;
  if ((bits & 0x00800000) !== 0 || mantissa === 0) return undefined;
  const target = exponent <= 3 ? BigInt(mantissa >>> (8 * (3 - exponent))) : BigInt(mantissa) << BigInt(8 * (exponent - 3));
  return target === 0n || target >= 1n << 256n ? undefined : target;
}

/** Why the header's proof of work fails (its hash above its own target, or a target above `powLimit`), or undefined. */
export function proofOfWorkFailure(header: Uint8Array, powLimit: bigint): string | undefined {
  const { bits } = decodeBitcoinHeader(header);
  const target = targetFromBits(bits);
  if (target === undefined) return `bits 0x${bits.toString(16)} encode no valid target`;
  if (target > powLimit) return `bits 0x${bits.toString(16)} are below the network's minimum difficulty`;
  const hashValue = BigInt(`0x${headerHashHex(header)}`);
  if (hashValue > target) return 'the header hash is above its target';
  return undefined;
}

// ---- the anchor transaction ----

/** The serialization without witness data: what the txid hashes. */
export function strippedTx(tx: Transaction): Uint8Array {
  const copy = tx.clone();
  for (const input of copy.ins) input.witness = [];
  return copy.toBuffer();
}

export interface AnchorCommitment {
  tx: Transaction;
  /** Non-witness serialization. */
  stripped: Uint8Array;
  /** Where the 32 committed bytes start in `stripped`. */
  payloadOffset: number;
  payload: Uint8Array;
  /** Internal byte order. */
  txid: Uint8Array;
}

function compactSizeBytes(value: number): number {
  return value < 0xfd ? 1 : value <= 0xffff ? 3 : value <= 0xffffffff ? 5 : 9;
}

/**
 * The one OP_RETURN output of `txBytes` and where its 32-byte payload sits in the stripped
 * serialization; a string says why there is none.
 */
export function anchorCommitment(txBytes: Uint8Array): AnchorCommitment | string {
  let tx: Transaction;
  try {
    tx = Transaction.fromBuffer(txBytes);
  } catch (error) {
    return `the transaction does not decode: ${(error as Error).message}`;
  }
  const opReturns = tx.outs.map((output, index) => ({ output, index })).filter(({ output }) => output.script[0] === OP_RETURN);
  if (opReturns.length !== 1) return `the transaction has ${opReturns.length} OP_RETURN outputs, not one`;
  const { output, index } = opReturns[0]!;
  if (output.script.length !== 34 || output.script[1] !== PUSH_32) return 'the OP_RETURN output does not hold exactly 32 bytes';
  // Offsets in the stripped serialization: version, inputs, outputs (value, script length, script), lock time.
  let offset = 4 + compactSizeBytes(tx.ins.length);
  for (const input of tx.ins) offset += 36 + compactSizeBytes(input.script.length) + input.script.length + 4;
  offset += compactSizeBytes(tx.outs.length);
  for (const earlier of tx.outs.slice(0, index)) offset += 8 + compactSizeBytes(earlier.script.length) + earlier.script.length;
  offset += 8 + compactSizeBytes(output.script.length) + 2;
  const stripped = strippedTx(tx);
  return { tx, stripped, payloadOffset: offset, payload: stripped.slice(offset, offset + 32), txid: hash256(stripped) };
}

// ---- the block's Merkle tree ----

/** The branch as operations: at each level the sibling goes left when the index bit is 1. */
export function merkleBranchOps(index: number, branch: readonly Uint8Array[]): ProofOp[] {
  const ops: ProofOp[] = [];
  branch.forEach((sibling, level) => {
    ops.push(Math.floor(index / 2 ** level) % 2 === 1 ? { kind: 'prepend', data: sibling } : { kind: 'append', data: sibling });
    ops.push({ kind: 'sha256' }, { kind: 'sha256' });
  });
  return ops;
}
