// A whole anchor proof from real pieces: Kalima chains whose headers carry the mmrRoot the node
// computes (src/ledger/mmr.ts), their tips aggregated, a signed anchor transaction committing to
// the root, and a mined regtest block holding it among other transactions.
import { type ChainTip, aggregationRoot } from '../../anchors/aggregate.ts';
import { MmrIndex, mmrPeaks, mmrProofLength, mmrProofSteps } from '../../anchors/mmr.ts';
import { applySteps } from '../../anchors/ops.ts';
import { type AnchorProof, buildProof } from '../../anchors/proof.ts';
import { type BlockHeader, blockHash, encodeHeader } from '../../src/ledger/block.ts';
import { EMPTY_MMR, type MmrState, mmrAppend, mmrRoot } from '../../src/ledger/mmr.ts';
import type { Rng } from '../../src/ports.ts';
import { bitcoinBlockHash, merkleRoot } from '../../chains/bitcoin/block.ts';
import { type HeadersChain, formatHeadersFile, parseHeadersFile } from '../../anchors/headers-file.ts';
import type { ProofVerdict } from '../../anchors/verify.ts';
import { isKalimaError } from '../../src/errors.ts';
import { type TestBitcoinBlock, coinbaseTx, fillerTx, mineBlock, mineHeader, signAnchorTx, testWallet } from './bitcoin.ts';

export interface TestKalimaChain {
  chain: string;
  /** Block h at index h-1. */
  headers: BlockHeader[];
  hashes: Uint8Array[];
  mmr: MmrIndex;
}

export function kalimaChain(chain: string, blockCount: number, rng: Rng): TestKalimaChain {
  const leader = rng.bytes(32);
  const headers: BlockHeader[] = [];
  const hashes: Uint8Array[] = [];
  const mmr = new MmrIndex();
  let state: MmrState = EMPTY_MMR;
  let prevHash = rng.bytes(32);
  for (let height = 1; height <= blockCount; height++) {
    const header: BlockHeader = {
      chain, height, prevHash, timeMs: 1_780_000_000_000 + height * 1000, leader, term: 1, messageCount: 1,
      txRoot: rng.bytes(32), stateDigest: rng.bytes(32), mmrRoot: mmrRoot(state),
    };
    const hash = blockHash(header);
    headers.push(header);
    hashes.push(hash);
    mmr.append(hash);
    state = mmrAppend(state, hash);
    prevHash = hash;
  }
  return { chain, headers, hashes, mmr };
}

export interface ProofFixture {
  proof: AnchorProof;
  chain: TestKalimaChain;
  tips: ChainTip[];
  block: TestBitcoinBlock;
  anchorTxBytes: Uint8Array;
}

export interface ProofFixtureOptions {
  rng: Rng;
  height: number;
  tipHeight: number;
  /** Other chains aggregated with this one. */
  otherChains?: number;
  /** Transactions in the Bitcoin block besides the coinbase and the anchor. */
  otherTxs?: number;
  bitcoinHeight?: number;
  /** The Bitcoin block's parent (internal byte order); random by default. */
  bitcoinPrevHash?: Uint8Array;
  withBlockHeader?: boolean;
}

export function proofFixture(options: ProofFixtureOptions): ProofFixture {
  const { rng } = options;
  const chain = kalimaChain('privachain', options.tipHeight, rng);
  const tipHeader = chain.headers[options.tipHeight - 1]!;
  const tips: ChainTip[] = [{ chain: chain.chain, height: options.tipHeight, blockHash: chain.hashes[options.tipHeight - 1]! }];
  for (let other = 0; other < (options.otherChains ?? 2); other++) tips.push({ chain: `plant-${other}`, height: 10 + other, blockHash: rng.bytes(32) });
  const wallet = testWallet(rng);
  const tx = signAnchorTx({ wallet, prevTxid: rng.bytes(32), prevIndex: 1, prevValueSat: 50_000n, payload: aggregationRoot(tips), feeSat: 300n });
  const bitcoinHeight = options.bitcoinHeight ?? 150;
  const others = Array.from({ length: options.otherTxs ?? 4 }, () => fillerTx(rng, wallet.outputScript));
  // The anchor in the middle of the block, so the branch has siblings on both sides.
  const middle = Math.floor(others.length / 2);
  const transactions = [coinbaseTx(bitcoinHeight, wallet.outputScript, 5_000_000_000n), ...others.slice(0, middle), tx, ...others.slice(middle)];
  const block = mineBlock(options.bitcoinPrevHash ?? rng.bytes(32), 1_780_000_100, transactions);
  const proof = buildProof({
    network: 'regtest',
    chain: chain.chain,
    height: options.height,
    blockHash: chain.hashes[options.height - 1]!,
    ...(options.withBlockHeader === true ? { blockHeader: encodeHeader(chain.headers[options.height - 1]!) } : {}),
    mmrPath: options.height === options.tipHeight ? [] : chain.mmr.proof(options.height - 1, options.tipHeight - 1),
    tipHeader: encodeHeader(tipHeader),
    aggregation: { tips },
    anchorTx: tx.toBuffer(),
    bitcoinBlock: { raw: block.raw },
    bitcoinHeight,
  });
  return { proof, chain, tips, block, anchorTxBytes: tx.toBuffer() };
}

export interface DeepProofOptions {
  rng: Rng;
  /** The anchored tip's height; the proven block is the one with the longest MMR path under it. */
  tipHeight: number;
  /** Chains aggregated, this one included. */
  chains: number;
  /** Transactions in the Bitcoin block (only their txids: the block itself is not built). */
  bitcoinBlockTxs: number;
}

/**
 * A proof of the size a long-lived chain has, without building its MMR: the proven block's hash
 * and its path are random, and the tip header commits to the root they lead to (all the verifier
 * sees of the MMR). The Bitcoin block is `bitcoinBlockTxs` random txids around the anchor's.
 */
export function deepProof(options: DeepProofOptions): AnchorProof {
  const { rng, tipHeight } = options;
  const leafCount = tipHeight - 1;
  const start = mmrPeaks(leafCount).map((peak) => peak.start).reduce((best, leaf) => (mmrProofLength(leaf, leafCount) > mmrProofLength(best, leafCount) ? leaf : best), 0);
  const provenHash = rng.bytes(32);
  const mmrPath = Array.from({ length: mmrProofLength(start, leafCount) }, () => rng.bytes(32));
  const tipHeader: BlockHeader = {
    chain: 'privachain', height: tipHeight, prevHash: rng.bytes(32), timeMs: 1_780_000_000_000, leader: rng.bytes(32), term: 12, messageCount: 180,
    txRoot: rng.bytes(32), stateDigest: rng.bytes(32), mmrRoot: applySteps(provenHash, mmrProofSteps(start, leafCount, mmrPath)!),
  };
  const tips: ChainTip[] = [{ chain: 'privachain', height: tipHeight, blockHash: blockHash(tipHeader) }];
  for (let other = 1; other < options.chains; other++) tips.push({ chain: `plant-${other}`, height: 50_000 + other, blockHash: rng.bytes(32) });
  const wallet = testWallet(rng);
  const tx = signAnchorTx({ wallet, prevTxid: rng.bytes(32), prevIndex: 0, prevValueSat: 100_000n, payload: aggregationRoot(tips), feeSat: 500n });
  const txids = Array.from({ length: options.bitcoinBlockTxs }, () => rng.bytes(32));
  txids[Math.floor(options.bitcoinBlockTxs * 0.6)] = tx.getHash();
  return buildProof({
    network: 'regtest', chain: 'privachain', height: start + 1, blockHash: provenHash, mmrPath, tipHeader: encodeHeader(tipHeader), aggregation: { tips },
    anchorTx: tx.toBuffer(), bitcoinBlock: { txids, header: mineHeader({ prevHash: rng.bytes(32), merkleRoot: merkleRoot(txids), timeS: 1_780_000_600 }) },
    bitcoinHeight: 880_000,
  });
}

/** A headers file in which the fixture's block is at its height, with a few blocks on top. */
export function headersAround(fixture: ProofFixture, blocksAfter = 2): HeadersChain {
  const headers = [fixture.block.header];
  for (let count = 0; count < blocksAfter; count++) headers.push(mineHeader({ prevHash: bitcoinBlockHash(headers[headers.length - 1]!), merkleRoot: new Uint8Array(32).fill(count + 1), timeS: 1_780_000_200 + count }));
  return parseHeadersFile(formatHeadersFile('regtest', fixture.proof.bitcoinHeight, headers));
}

/** What decoding and verifying come to, as data: a KalimaError code thrown, 'invalid: <code>', or 'valid'. */
export async function verificationOutcome(verify: () => Promise<ProofVerdict>): Promise<string> {
  try {
    const verdict = await verify();
    return verdict.valid ? 'valid' : `invalid: ${verdict.failure!.code}`;
  } catch (error) {
    if (isKalimaError(error)) return error.code;
    throw error;
  }
}
