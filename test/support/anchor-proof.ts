// A whole anchor proof from real pieces: Kalima chains whose headers carry the mmrRoot the node
// computes (src/ledger/mmr.ts), their tips aggregated, a signed anchor transaction committing to
// the root, and a mined regtest block holding it among other transactions.
import { type ChainTip, aggregationRoot } from '../../anchors/aggregate.ts';
import { MmrIndex } from '../../anchors/mmr.ts';
import { type AnchorProof, buildProof } from '../../anchors/proof.ts';
import { type BlockHeader, blockHash, encodeHeader } from '../../src/ledger/block.ts';
import { EMPTY_MMR, type MmrState, mmrAppend, mmrRoot } from '../../src/ledger/mmr.ts';
import type { Rng } from '../../src/ports.ts';
import { type TestBitcoinBlock, coinbaseTx, fillerTx, mineBlock, signAnchorTx, testWallet } from './bitcoin.ts';

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
