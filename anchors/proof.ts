// An anchor proof: block hash → MMR path → tip header → aggregation path → anchor transaction →
// Bitcoin Merkle branch → Bitcoin block header. Every step is an append, a prepend or a SHA-256
// (anchors/ops.ts), so the same chain of operations is the OpenTimestamps timestamp (anchors/ots.ts).
//
// Three layers: the shape (every field decodes and has the length its position implies; a
// failure is KALIMA_ERR_PROOF_MALFORMED), the operations (derived from the shape alone), and the
// commitments (each stage's result is the value the next piece carries; a failure is a verdict,
// KALIMA_ERR_PROOF_INVALID, see anchors/verify.ts).
import { Block } from 'bitcoinjs-lib';
import { assert, isKalimaError, kalimaError } from '../src/errors.ts';
import { type BlockHeader, decodeHeader } from '../src/ledger/block.ts';
import { TAG, bytesEqual, concatBytes, tagPrefix, taggedHash, toHex } from '../src/ledger/hash.ts';
import { type AggregationProof, type ChainTip, aggregationProof, aggregationProofLength, aggregationSteps } from './aggregate.ts';
import { BLOCK_HEADER_BYTES, bitcoinBlockHash, decodeBitcoinHeader, merkleSiblings } from '../chains/bitcoin/block.ts';
import { type BitcoinNetworkName, isBitcoinNetworkName, parseBitcoinNetwork } from '../chains/bitcoin/network.ts';
import { type AnchorCommitment, anchorCommitment, merkleBranchOps, proofOfWorkFailure } from './bitcoin.ts';
import { mmrProofLength, mmrProofSteps } from './mmr.ts';
import { type ProofOp, evaluateOps, stepOps } from './ops.ts';

export const PROOF_VERSION = 1;
/** Bitcoin blocks hold far fewer than 2^32 transactions. */
export const MERKLE_BRANCH_MAX = 32;
/** The mmrRoot is the last field of the header encoding (src/ledger/block.ts). */
export const MMR_ROOT_BYTES = 32;

export interface AnchorProof {
  version: typeof PROOF_VERSION;
  network: BitcoinNetworkName;
  chain: string;
  height: number;
  blockHash: Uint8Array;
  /** The block's own header (encodeHeader), optional: it lets `.block` files be written. */
  blockHeader?: Uint8Array;
  /** From block `height` to the mmrRoot of the tip header; empty when the block is the tip. */
  mmrPath: Uint8Array[];
  /** encodeHeader of the tip the anchor committed to. */
  tipHeader: Uint8Array;
  aggregationIndex: number;
  aggregationLeafCount: number;
  aggregationPath: Uint8Array[];
  /** The anchor transaction as broadcast (with its witness); the operations use its stripped form. */
  anchorTx: Uint8Array;
  bitcoinTxIndex: number;
  /** Internal byte order, from the transaction up. */
  bitcoinMerkleBranch: Uint8Array[];
  bitcoinHeader: Uint8Array;
  bitcoinHeight: number;
}

/** A proof whose shape was checked, with what the check decoded. */
export interface ShapedProof {
  proof: AnchorProof;
  tip: BlockHeader;
  block: BlockHeader | undefined;
  commitment: AnchorCommitment;
}

export type ProofStageName = 'mmr' | 'tip' | 'aggregation' | 'transaction' | 'bitcoin-merkle';

export interface ProofStage {
  name: ProofStageName;
  ops: ProofOp[];
}

function malformed(field: string, reason: string, extra: Record<string, unknown> = {}) {
  return kalimaError('KALIMA_ERR_PROOF_MALFORMED', { field, reason, ...extra });
}

function decodeKalimaHeader(bytes: Uint8Array, field: string): BlockHeader {
  try {
    return decodeHeader(bytes);
  } catch (error) {
    if (!isKalimaError(error)) throw error;
    throw malformed(field, `the header does not decode: ${error.code}`);
  }
}

function checkHashes(hashes: readonly Uint8Array[], field: string): void {
  hashes.forEach((hash, position) => {
    if (hash.length !== 32) throw malformed(`${field}[${position}]`, 'a hash is 32 bytes');
  });
}

function isCount(value: unknown, min: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min;
}

/** Every structural check: throws KALIMA_ERR_PROOF_MALFORMED naming the field. */
export function checkProofShape(proof: AnchorProof): ShapedProof {
  if (proof.version !== PROOF_VERSION) throw malformed('version', `only version ${PROOF_VERSION} is known`);
  if (!isBitcoinNetworkName(proof.network)) throw malformed('network', 'not a known Bitcoin network');
  if (typeof proof.chain !== 'string' || proof.chain.length === 0) throw malformed('chain', 'a chain name is required');
  if (!isCount(proof.height, 1)) throw malformed('height', 'a block height is a whole number from 1');
  if (proof.blockHash.length !== 32) throw malformed('blockHash', 'a hash is 32 bytes');
  const block = proof.blockHeader === undefined ? undefined : decodeKalimaHeader(proof.blockHeader, 'blockHeader');
  const tip = decodeKalimaHeader(proof.tipHeader, 'tipHeader');
  if (tip.height < proof.height) throw malformed('tipHeader', 'the tip is below the block', { tipHeight: tip.height });
  checkHashes(proof.mmrPath, 'mmrPath');
  const mmrLength = tip.height === proof.height ? 0 : mmrProofLength(proof.height - 1, tip.height - 1);
  if (proof.mmrPath.length !== mmrLength) throw malformed('mmrPath', `block ${proof.height} under tip ${tip.height} has a path of ${mmrLength} hashes`, { length: proof.mmrPath.length });
  if (!isCount(proof.aggregationLeafCount, 1) || proof.aggregationLeafCount > 0xffffffff) throw malformed('aggregationLeafCount', 'a whole number from 1 to 2^32-1');
  if (!isCount(proof.aggregationIndex, 0) || proof.aggregationIndex >= proof.aggregationLeafCount) throw malformed('aggregationIndex', 'a leaf index below aggregationLeafCount');
  checkHashes(proof.aggregationPath, 'aggregationPath');
  const aggregationLength = aggregationProofLength(proof.aggregationIndex, proof.aggregationLeafCount);
  if (proof.aggregationPath.length !== aggregationLength) throw malformed('aggregationPath', `leaf ${proof.aggregationIndex} of ${proof.aggregationLeafCount} has a path of ${aggregationLength} hashes`, { length: proof.aggregationPath.length });
  const commitment = anchorCommitment(proof.anchorTx);
  if (typeof commitment === 'string') throw malformed('anchorTx', commitment);
  if (proof.bitcoinMerkleBranch.length > MERKLE_BRANCH_MAX) throw malformed('bitcoinMerkleBranch', `at most ${MERKLE_BRANCH_MAX} hashes`);
  checkHashes(proof.bitcoinMerkleBranch, 'bitcoinMerkleBranch');
  if (!isCount(proof.bitcoinTxIndex, 0) || proof.bitcoinTxIndex >= 2 ** proof.bitcoinMerkleBranch.length) throw malformed('bitcoinTxIndex', 'a transaction index the branch can reach');
  if (proof.bitcoinHeader.length !== BLOCK_HEADER_BYTES) throw malformed('bitcoinHeader', `a Bitcoin header is ${BLOCK_HEADER_BYTES} bytes`);
  if (!isCount(proof.bitcoinHeight, 0)) throw malformed('bitcoinHeight', 'a whole number from 0');
  return { proof, tip, block, commitment };
}

/** The operations from the block hash to the Bitcoin block's Merkle root, stage by stage. */
export function proofStages({ proof, tip, commitment }: ShapedProof): ProofStage[] {
  const underTip = tip.height > proof.height;
  const mmrSteps = underTip ? mmrProofSteps(proof.height - 1, tip.height - 1, proof.mmrPath) : [];
  const aggregation = aggregationSteps(proof.aggregationIndex, proof.aggregationLeafCount, proof.aggregationPath);
  assert(mmrSteps !== undefined && aggregation !== undefined, 'proof: the shape was checked');
  // The tip hash is taggedHash(TAG.block, header) and the header ends with mmrRoot: the MMR root
  // is the message, everything before it is prepended.
  const tipOps: ProofOp[] = underTip
    ? [{ kind: 'prepend', data: concatBytes(tagPrefix(TAG.block), proof.tipHeader.subarray(0, proof.tipHeader.length - MMR_ROOT_BYTES)) }, { kind: 'sha256' }]
    : [];
  const { stripped, payloadOffset } = commitment;
  return [
    { name: 'mmr', ops: mmrSteps.flatMap(stepOps) },
    { name: 'tip', ops: tipOps },
    { name: 'aggregation', ops: aggregation.flatMap(stepOps) },
    {
      name: 'transaction',
      ops: [
        { kind: 'prepend', data: stripped.slice(0, payloadOffset) },
        { kind: 'append', data: stripped.slice(payloadOffset + 32) },
        { kind: 'sha256' },
        { kind: 'sha256' },
      ],
    },
    { name: 'bitcoin-merkle', ops: merkleBranchOps(proof.bitcoinTxIndex, proof.bitcoinMerkleBranch) },
  ];
}

/** The whole chain of operations: applied to the block hash, it gives the Bitcoin block's Merkle root. */
export function proofOps(proof: AnchorProof): ProofOp[] {
  return proofStages(checkProofShape(proof)).flatMap((stage) => stage.ops);
}

export interface CommitmentFailure {
  step: ProofStageName | 'block-header' | 'bitcoin-header';
  reason: string;
}

export interface CommitmentResult {
  /** The first commitment that does not match, if any. */
  failure: CommitmentFailure | undefined;
  /** Internal byte order. */
  txid: Uint8Array;
  /** Internal byte order. */
  bitcoinBlockHash: Uint8Array;
}

/**
 * Runs the operations stage by stage and checks each result against the piece that carries it:
 * the tip header's mmrRoot, the tip's hash, the OP_RETURN payload, the txid, the header's Merkle
 * root; then the header's proof of work against its bits and the network's limit.
 */
export function checkCommitments(shaped: ShapedProof): CommitmentResult {
  const { proof, tip, block, commitment } = shaped;
  const header = decodeBitcoinHeader(proof.bitcoinHeader);
  const tipHash = taggedHash(TAG.block, proof.tipHeader);
  const result = (failure: CommitmentFailure | undefined): CommitmentResult => ({ failure, txid: commitment.txid, bitcoinBlockHash: bitcoinBlockHash(proof.bitcoinHeader) });
  if (block !== undefined) {
    if (!bytesEqual(taggedHash(TAG.block, proof.blockHeader!), proof.blockHash)) return result({ step: 'block-header', reason: 'the block header does not hash to blockHash' });
    if (block.chain !== proof.chain || block.height !== proof.height) return result({ step: 'block-header', reason: `the block header is block ${block.height} of chain ${block.chain}` });
  }
  if (tip.chain !== proof.chain) return result({ step: 'tip', reason: `the tip header is of chain ${tip.chain}, the proof of chain ${proof.chain}` });
  let digest = proof.blockHash;
  for (const stage of proofStages(shaped)) {
    const evaluated = evaluateStage(stage, digest);
    if (evaluated.leftDuplicate) {
      return result({ step: stage.name, reason: 'the branch pairs a node with itself from the left: Bitcoin only duplicates the last node of a level on its right, so the index is not canonical' });
    }
    digest = evaluated.digest;
    const failure = stageFailure(stage.name, digest, shaped, tipHash, header.merkleRoot);
    if (failure !== undefined) return result({ step: stage.name, reason: failure });
  }
  const powFailure = proofOfWorkFailure(proof.bitcoinHeader, parseBitcoinNetwork(proof.network).powLimit);
  if (powFailure !== undefined) return result({ step: 'bitcoin-header', reason: powFailure });
  return result(undefined);
}

/**
 * Runs a stage's operations. In the Bitcoin branch it also refuses a node paired with itself from
 * the left: Bitcoin pairs the last node of an odd level with itself on its right, so such a
 * branch claims a position past the end of the level (the CVE-2012-2459 ambiguity: the same
 * root, another index). Refusing it leaves one index per transaction.
 */
function evaluateStage(stage: ProofStage, start: Uint8Array): { digest: Uint8Array; leftDuplicate: boolean } {
  if (stage.name !== 'bitcoin-merkle') return { digest: evaluateOps(start, stage.ops), leftDuplicate: false };
  let digest = start;
  for (const op of stage.ops) {
    if (op.kind === 'prepend' && bytesEqual(op.data, digest)) return { digest, leftDuplicate: true };
    digest = evaluateOps(digest, [op]);
  }
  return { digest, leftDuplicate: false };
}

function stageFailure(stage: ProofStageName, digest: Uint8Array, { proof, tip, commitment }: ShapedProof, tipHash: Uint8Array, merkleRoot: Uint8Array): string | undefined {
  switch (stage) {
    case 'mmr':
      if (tip.height === proof.height) return bytesEqual(digest, tipHash) ? undefined : 'the block is the tip, but the tip header does not hash to blockHash';
      return bytesEqual(digest, tip.mmrRoot) ? undefined : 'the MMR path does not lead to the tip header\'s mmrRoot';
    case 'tip':
      return bytesEqual(digest, tipHash) ? undefined : 'the operations do not give the tip header\'s hash';
    case 'aggregation':
      return bytesEqual(digest, commitment.payload) ? undefined : 'the OP_RETURN output does not hold the aggregation root';
    case 'transaction':
      return bytesEqual(digest, commitment.txid) ? undefined : 'the operations do not give the txid';
    case 'bitcoin-merkle':
      return bytesEqual(digest, merkleRoot) ? undefined : 'the Merkle branch does not lead to the Bitcoin header\'s Merkle root';
  }
}

// ---- building ----

export interface ProofPieces {
  network: BitcoinNetworkName;
  chain: string;
  height: number;
  blockHash: Uint8Array;
  blockHeader?: Uint8Array;
  mmrPath: Uint8Array[];
  tipHeader: Uint8Array;
  /** The tips the anchor aggregated (the proof is computed), or the proof itself. */
  aggregation: { tips: readonly ChainTip[] } | AggregationProof;
  anchorTx: Uint8Array;
  /** The raw Bitcoin block, or its txids (internal byte order, block order) and header. */
  bitcoinBlock: { raw: Uint8Array } | { txids: readonly Uint8Array[]; header: Uint8Array };
  bitcoinHeight: number;
}

/**
 * Assembles a proof and checks it before handing it out: pieces that do not fit together (a
 * transaction not in the block, a path to another root) are KALIMA_ERR_PROOF_INVALID.
 */
export function buildProof(pieces: ProofPieces): AnchorProof {
  const tip = decodeKalimaHeader(pieces.tipHeader, 'tipHeader');
  const aggregation = 'tips' in pieces.aggregation ? aggregationProof(pieces.aggregation.tips, tip.chain) : pieces.aggregation;
  let txids: readonly Uint8Array[];
  let header: Uint8Array;
  if ('raw' in pieces.bitcoinBlock) {
    const block = Block.fromBuffer(pieces.bitcoinBlock.raw);
    txids = (block.transactions ?? []).map((tx) => tx.getHash());
    header = pieces.bitcoinBlock.raw.slice(0, BLOCK_HEADER_BYTES);
  } else {
    ({ txids, header } = pieces.bitcoinBlock);
  }
  const commitment = anchorCommitment(pieces.anchorTx);
  if (typeof commitment === 'string') throw kalimaError('KALIMA_ERR_PROOF_INVALID', { step: 'transaction', reason: commitment });
  const txIndex = txids.findIndex((txid) => bytesEqual(txid, commitment.txid));
  if (txIndex < 0) throw kalimaError('KALIMA_ERR_PROOF_INVALID', { step: 'bitcoin-merkle', reason: 'the anchor transaction is not in the Bitcoin block', txid: toHex(commitment.txid) });
  const proof: AnchorProof = {
    version: PROOF_VERSION,
    network: pieces.network,
    chain: pieces.chain,
    height: pieces.height,
    blockHash: pieces.blockHash,
    ...(pieces.blockHeader === undefined ? {} : { blockHeader: pieces.blockHeader }),
    mmrPath: pieces.mmrPath,
    tipHeader: pieces.tipHeader,
    aggregationIndex: aggregation.index,
    aggregationLeafCount: aggregation.leafCount,
    aggregationPath: aggregation.path,
    anchorTx: pieces.anchorTx,
    bitcoinTxIndex: txIndex,
    bitcoinMerkleBranch: merkleSiblings(txids, txIndex),
    bitcoinHeader: header,
    bitcoinHeight: pieces.bitcoinHeight,
  };
  const { failure } = checkCommitments(checkProofShape(proof));
  if (failure !== undefined) throw kalimaError('KALIMA_ERR_PROOF_INVALID', { ...failure });
  return proof;
}
