// The offline verifier. A proof is checked in two parts: the proof alone (every commitment from
// the block hash to the Bitcoin header's Merkle root, and the header's proof of work), then,
// given a header source, that the header is the one at its height in that source's best chain,
// which also gives the confirmations.
//
// Input that cannot be checked throws: a malformed proof (KALIMA_ERR_PROOF_MALFORMED), a source on
// another network (KALIMA_ERR_PROOF_WRONG_NETWORK), a source that fails (KALIMA_ERR_PROOF_RPC_FAILED,
// whatever the RPC client's own code for it: chains/bitcoin/rpc.ts's KALIMA_ERR_BITCOIN_* is kept
// in the details as bitcoinCode).
// A proof that was checked and fails is a verdict, `valid: false` with the failure's code:
// KALIMA_ERR_PROOF_INVALID (a commitment does not match) or KALIMA_ERR_PROOF_NOT_IN_CHAIN (the
// Bitcoin block is not, or no longer, at its height in the source's best chain).
import { type KalimaErrorCode, isKalimaError, kalimaError } from '../src/errors.ts';
import { bytesEqual, toHex } from '../src/ledger/hash.ts';
import { BLOCK_HEADER_BYTES, decodeBitcoinHeader, displayHex, headerHashHex } from '../chains/bitcoin/block.ts';
import { proofOfWorkFailure } from './bitcoin.ts';
import { type BitcoinNetworkName, networksWithGenesis, parseBitcoinNetwork } from '../chains/bitcoin/network.ts';
import type { HeadersChain } from './headers-file.ts';
import { evaluateOps } from './ops.ts';
import type { OtsTimestamp } from './ots.ts';
import { type AnchorProof, type ShapedProof, checkCommitments, checkProofShape } from './proof.ts';

/**
 * What the verifier asks of a Bitcoin node; hashes in display (RPC) byte order. The node's client,
 * chains/bitcoin/rpc.ts `BitcoinRpc`, is one.
 */
export interface BitcoinHeaderRpc {
  getBlockHash(height: number): Promise<string>;
  /** The 80-byte header in hex (getblockheader <hash> false). */
  getBlockHeaderHex(blockHash: string): Promise<string>;
  getBlockCount(): Promise<number>;
}

async function asked<T>(method: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (!isKalimaError(error) || !error.code.startsWith('KALIMA_ERR_BITCOIN_')) throw error;
    throw kalimaError('KALIMA_ERR_PROOF_RPC_FAILED', { method, ...error.details, bitcoinCode: error.code, reason: error.message });
  }
}

/**
 * `rpc` with the verifier's error semantics: a failure of the Bitcoin node or of the call (a
 * KALIMA_ERR_BITCOIN_* code) is KALIMA_ERR_PROOF_RPC_FAILED, its own code kept as bitcoinCode.
 */
export function verifierRpc(rpc: BitcoinHeaderRpc): BitcoinHeaderRpc {
  return {
    getBlockHash: (height) => asked('getblockhash', () => rpc.getBlockHash(height)),
    getBlockHeaderHex: (blockHash) => asked('getblockheader', () => rpc.getBlockHeaderHex(blockHash)),
    getBlockCount: () => asked('getblockcount', () => rpc.getBlockCount()),
  };
}

export type HeaderSource =
  | { kind: 'offline' }
  | { kind: 'rpc'; rpc: BitcoinHeaderRpc }
  | { kind: 'headers'; headers: HeadersChain };

export interface VerdictFailure {
  code: KalimaErrorCode;
  step: string;
  reason: string;
}

export interface ProofVerdict {
  valid: boolean;
  chain: string;
  height: number;
  /** Hex, as in the proof. */
  blockHash: string;
  tipHeight: number;
  network: BitcoinNetworkName;
  bitcoinHeight: number;
  /** Display byte order. */
  bitcoinBlockHash: string;
  anchorTxid: string;
  /** The Bitcoin header's time. */
  attestedTime: string;
  /** Undefined offline: the proof alone cannot tell how deep its block is. */
  confirmations: number | undefined;
  source: HeaderSource['kind'];
  /** What was checked, in order, for people. */
  checked: string[];
  failure?: VerdictFailure;
}

/** A source's best chain as the verifier sees it. */
interface SourceView {
  networks: BitcoinNetworkName[];
  tipHeight: number;
  headerAt(height: number): Promise<Uint8Array | undefined>;
  describe: string;
}

async function openSource(source: Exclude<HeaderSource, { kind: 'offline' }>): Promise<SourceView> {
  if (source.kind === 'headers') {
    const { headers } = source;
    return {
      networks: networksWithGenesis(parseBitcoinNetwork(headers.network).genesisBlockHashHex),
      tipHeight: headers.tipHeight,
      headerAt: async (height) => headers.headerAt(height),
      describe: `the headers file (${headers.network}, heights ${headers.startHeight} to ${headers.tipHeight})`,
    };
  }
  const rpc = verifierRpc(source.rpc);
  const networks = networksWithGenesis(await rpc.getBlockHash(0));
  const tipHeight = await rpc.getBlockCount();
  return {
    networks,
    tipHeight,
    headerAt: async (height) => {
      if (height > tipHeight) return undefined;
      const hash = await rpc.getBlockHash(height);
      const header = new Uint8Array(Buffer.from(await rpc.getBlockHeaderHex(hash), 'hex'));
      if (header.length !== BLOCK_HEADER_BYTES || headerHashHex(header) !== hash) {
        throw kalimaError('KALIMA_ERR_PROOF_RPC_FAILED', { method: 'getblockheader', reason: `the header the node gave for ${hash} does not hash to it` });
      }
      return header;
    },
    describe: `the Bitcoin node (best chain at height ${tipHeight})`,
  };
}

function isoTime(header: Uint8Array): string {
  return new Date(decodeBitcoinHeader(header).timestampSec * 1000).toISOString();
}

export async function verifyProof(input: AnchorProof | ShapedProof, source: HeaderSource): Promise<ProofVerdict> {
  const shaped = 'commitment' in input ? input : checkProofShape(input);
  const { proof, tip } = shaped;
  // The network first: a proof put to a node of another network is told so, whatever else fails.
  const view = source.kind === 'offline' ? undefined : await openSource(source);
  if (view !== undefined && !view.networks.includes(proof.network)) {
    throw kalimaError('KALIMA_ERR_PROOF_WRONG_NETWORK', { proofNetwork: proof.network, sourceNetworks: view.networks });
  }
  const commitments = checkCommitments(shaped);
  const verdict: ProofVerdict = {
    valid: false,
    chain: proof.chain,
    height: proof.height,
    blockHash: toHex(proof.blockHash),
    tipHeight: tip.height,
    network: proof.network,
    bitcoinHeight: proof.bitcoinHeight,
    bitcoinBlockHash: displayHex(commitments.bitcoinBlockHash),
    anchorTxid: displayHex(commitments.txid),
    attestedTime: isoTime(proof.bitcoinHeader),
    confirmations: undefined,
    source: source.kind,
    checked: [],
  };
  if (commitments.failure !== undefined) {
    return { ...verdict, failure: { code: 'KALIMA_ERR_PROOF_INVALID', ...commitments.failure } };
  }
  verdict.checked.push(
    tip.height === proof.height ? `block ${proof.height} is the anchored tip itself` : `block ${proof.height} is under the mmrRoot of tip ${tip.height} (MMR path of ${proof.mmrPath.length} hashes)`,
    `tip ${tip.height} of chain ${proof.chain} is leaf ${proof.aggregationIndex} of ${proof.aggregationLeafCount} in the aggregation root`,
    `the anchor transaction ${verdict.anchorTxid} holds that root in its OP_RETURN`,
    `the transaction is in Bitcoin block ${verdict.bitcoinBlockHash} (Merkle branch of ${proof.bitcoinMerkleBranch.length} hashes)`,
    'the Bitcoin header meets its proof of work',
  );
  if (view === undefined) return { ...verdict, valid: true };
  const found = await view.headerAt(proof.bitcoinHeight);
  if (found === undefined || !bytesEqual(found, proof.bitcoinHeader)) {
    const reason = found === undefined
      ? `${view.describe} has no block at height ${proof.bitcoinHeight}`
      : `the block at height ${proof.bitcoinHeight} in ${view.describe} is ${headerHashHex(found)}, not the proof's`;
    return { ...verdict, failure: { code: 'KALIMA_ERR_PROOF_NOT_IN_CHAIN', step: 'bitcoin-chain', reason } };
  }
  verdict.checked.push(`the Bitcoin block is at height ${proof.bitcoinHeight} in ${view.describe}`);
  return { ...verdict, valid: true, confirmations: view.tipHeight - proof.bitcoinHeight + 1 };
}

export interface OtsVerdict {
  valid: boolean;
  /** The starting digest: the Kalima block hash. */
  fileDigest: string;
  operations: number;
  /** What the operations end in, internal byte order. */
  merkleRoot: string;
  bitcoinHeight: number;
  bitcoinBlockHash: string | undefined;
  attestedTime: string | undefined;
  confirmations: number | undefined;
  network: BitcoinNetworkName | undefined;
  checked: string[];
  failure?: VerdictFailure;
}

/**
 * A .ots holds the operations and the attested height, not the pieces they came from: it is
 * checked by running the operations and comparing their result with the Merkle root of the block
 * the source has at that height. It names no network; the source's is reported.
 */
export async function verifyOts(timestamp: OtsTimestamp, source: Exclude<HeaderSource, { kind: 'offline' }>): Promise<OtsVerdict> {
  const digest = evaluateOps(timestamp.fileDigest, timestamp.ops);
  const view = await openSource(source);
  const verdict: OtsVerdict = {
    valid: false,
    fileDigest: toHex(timestamp.fileDigest),
    operations: timestamp.ops.length,
    merkleRoot: toHex(digest),
    bitcoinHeight: timestamp.bitcoinHeight,
    bitcoinBlockHash: undefined,
    attestedTime: undefined,
    confirmations: undefined,
    network: view.networks[0],
    checked: [`the ${timestamp.ops.length} operations take the block hash to ${toHex(digest)}`],
  };
  const header = await view.headerAt(timestamp.bitcoinHeight);
  if (header === undefined) {
    return { ...verdict, failure: { code: 'KALIMA_ERR_PROOF_NOT_IN_CHAIN', step: 'bitcoin-chain', reason: `${view.describe} has no block at height ${timestamp.bitcoinHeight}` } };
  }
  const found = { ...verdict, bitcoinBlockHash: headerHashHex(header), attestedTime: isoTime(header) };
  if (!bytesEqual(decodeBitcoinHeader(header).merkleRoot, digest)) {
    return { ...found, failure: { code: 'KALIMA_ERR_PROOF_NOT_IN_CHAIN', step: 'bitcoin-chain', reason: `the block at height ${timestamp.bitcoinHeight} in ${view.describe} has another Merkle root` } };
  }
  const powFailure = view.networks[0] === undefined ? 'the source is on no known network' : proofOfWorkFailure(header, parseBitcoinNetwork(view.networks[0]).powLimit);
  if (powFailure !== undefined) return { ...found, failure: { code: 'KALIMA_ERR_PROOF_INVALID', step: 'bitcoin-header', reason: powFailure } };
  found.checked.push(`that is the Merkle root of the block at height ${timestamp.bitcoinHeight} in ${view.describe}`, 'the Bitcoin header meets its proof of work');
  return { ...found, valid: true, confirmations: view.tipHeight - timestamp.bitcoinHeight + 1 };
}
