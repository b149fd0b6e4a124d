// `npm run bench -- anchors`: what anchoring costs in Bitcoin, and what a proof weighs and costs to
// check, measured in one run. Prints a table and writes bench/results-anchors.json.
//
// (a) Bitcoin bytes: real signed anchor transactions (one P2WPKH input, OP_RETURN of 32 bytes,
//     P2WPKH change, built with bitcoinjs-lib): one per interval over the aggregated tips of every
//     chain, against the naive scheme of one such transaction per block, for intervals of 1, 10,
//     100 and 1000 blocks and for 1 and 5 chains. The naive transactions are built and signed too,
//     so the ratio compares measured sizes.
// (b) Proofs in a chain of 1,000,000 blocks: the MMR over 1,000,000 random block hashes in memory,
//     the tip header of block 1,000,000 committing to the first 999,999, aggregated with 4 other
//     chains, anchored in a regtest block of BITCOIN_BLOCK_TXS transactions (about a full mainnet
//     block). Sizes as the binary .kproof (anchors/proof-binary.ts), as JSON and as .ots, for random
//     blocks and the longest MMR path; verification time per proof (decode the JSON or the .kproof,
//     then every offline check; no header lookup), the two forms timed side by side.
//
//   --quick      100 timed proofs instead of 2,000
//   --proofs N   timed proofs
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type ChainTip, aggregationRoot } from '../anchors/aggregate.ts';
import { MmrIndex, mmrPeaks, mmrProofLength } from '../anchors/mmr.ts';
import { type AnchorProof, buildProof } from '../anchors/proof.ts';
import { decodeProofBinary, encodeProofBinary } from '../anchors/proof-binary.ts';
import { decodeProofJson, encodeProofJson } from '../anchors/proof-json.ts';
import { encodeOts, proofToOts } from '../anchors/ots.ts';
import { verifyProof } from '../anchors/verify.ts';
import { type BlockHeader, blockHash, encodeHeader } from '../src/ledger/block.ts';
import { seededRng } from '../test/unit/support/seeded-rng.ts';
import { mineHeader, signAnchorTx, testWallet } from '../test/support/bitcoin.ts';
import { merkleRoot } from '../chains/bitcoin/block.ts';
import { machineInfo } from './machine.ts';
import { REPO_ROOT } from './node-process.ts';

const CHAIN_LEAVES = 1_000_000;
const INTERVAL_BLOCKS = [1, 10, 100, 1000];
const CHAIN_COUNTS = [1, 5];
/** A full mainnet block of ~250-vbyte transactions. */
const BITCOIN_BLOCK_TXS = 4_000;
/** "A proof of at most 1.5 KB": 1,500 bytes, not 1,536 (KiB). */
const PROOF_BYTES_GOAL = 1_500;
const VERIFY_US_GOAL = 1_000;
const WARMUP_PROOFS = 200;

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const fmt = (value: number, digits = 0): string => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const verdict = (met: boolean): string => (met ? 'MET' : 'NOT MET');

function table(rows: string[][], align: Array<'l' | 'r'>): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (align[column] === 'l' ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ').trimEnd()).join('\n');
}

function percentileUs(sortedUs: Float64Array, quantile: number): number {
  return sortedUs[Math.min(sortedUs.length - 1, Math.max(0, Math.ceil(quantile * sortedUs.length) - 1))]!;
}

interface ProofSizes {
  height: number;
  mmrPathHashes: number;
  mmrPathBytes: number;
  /** The .kproof as `kalima proof --binary` and ?format=binary write it, without the optional blockHeader. */
  kproofBytes: number;
  kproofWithBlockHeaderBytes: number;
  jsonBytes: number;
  jsonWithBlockHeaderBytes: number;
  otsBytes: number;
}

export async function runAnchorsBench(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { quick: { type: 'boolean', default: false }, proofs: { type: 'string' } } });
  const timedProofs = values.proofs === undefined ? (values.quick === true ? 100 : 2_000) : Number(values.proofs);
  if (!Number.isInteger(timedProofs) || timedProofs < 1) throw new Error('--proofs must be a whole number of at least 1');
  const startedAt = new Date();
  const machine = await machineInfo();
  const rng = seededRng('bench-anchors');
  const wallet = testWallet(rng);
  const fundingValueSat = 100_000n;
  const feeSat = 500n;
  const anchorTx = (payload: Uint8Array) => signAnchorTx({ wallet, prevTxid: rng.bytes(32), prevIndex: 0, prevValueSat: fundingValueSat, payload, feeSat });

  // ---- (a) Bitcoin bytes per anchor and per anchored block ----
  log('anchors: signing anchor transactions');
  const oneTx = anchorTx(rng.bytes(32));
  const txSize = { rawBytes: oneTx.byteLength(), strippedBytes: oneTx.byteLength(false), weight: oneTx.weight(), vsize: oneTx.virtualSize() };
  const intervals = [];
  for (const chains of CHAIN_COUNTS) {
    for (const blocks of INTERVAL_BLOCKS) {
      // Aggregated: the tips of every chain after the interval, one transaction.
      const tips: ChainTip[] = Array.from({ length: chains }, (_, index) => ({ chain: `chain-${index}`, height: blocks, blockHash: rng.bytes(32) }));
      const aggregated = [anchorTx(aggregationRoot(tips))];
      // Naive: every block of every chain in its own transaction.
      const naive = Array.from({ length: blocks * chains }, () => anchorTx(rng.bytes(32)));
      const sum = (txs: typeof naive, size: (tx: (typeof naive)[number]) => number) => txs.reduce((total, tx) => total + size(tx), 0);
      const anchoredBlocks = blocks * chains;
      const aggregatedVbytesPerBlock = sum(aggregated, (tx) => tx.virtualSize()) / anchoredBlocks;
      const naiveVbytesPerBlock = sum(naive, (tx) => tx.virtualSize()) / anchoredBlocks;
      intervals.push({
        chains, blocksPerChain: blocks, anchoredBlocks,
        aggregatedTxs: aggregated.length, naiveTxs: naive.length,
        aggregatedRawBytesPerBlock: sum(aggregated, (tx) => tx.byteLength()) / anchoredBlocks,
        naiveRawBytesPerBlock: sum(naive, (tx) => tx.byteLength()) / anchoredBlocks,
        aggregatedVbytesPerBlock, naiveVbytesPerBlock,
        naiveOverAggregated: naiveVbytesPerBlock / aggregatedVbytesPerBlock,
      });
    }
  }
  const oneTxPerInterval = intervals.every((row) => row.aggregatedTxs === 1);

  // ---- (b) proofs in a chain of 1,000,000 blocks ----
  log(`anchors: the MMR of ${fmt(CHAIN_LEAVES)} block hashes`);
  const leaves = randomBytes(CHAIN_LEAVES * 32);
  const mmr = new MmrIndex();
  const buildStart = performance.now();
  for (let leaf = 0; leaf < CHAIN_LEAVES; leaf++) mmr.append(leaves.subarray(leaf * 32, leaf * 32 + 32));
  const mmrBuildMs = performance.now() - buildStart;
  const tipHeight = CHAIN_LEAVES;
  const mmrLeafCount = tipHeight - 1;
  const tipHeader: BlockHeader = {
    chain: 'privachain', height: tipHeight, prevHash: mmr.node({ level: 0, index: tipHeight - 2 }).slice(), timeMs: 1_780_000_000_000, leader: rng.bytes(32),
    term: 12, messageCount: 180, txRoot: rng.bytes(32), stateDigest: rng.bytes(32), mmrRoot: mmr.root(mmrLeafCount),
  };
  const tipEncoding = encodeHeader(tipHeader);
  const tips: ChainTip[] = [{ chain: 'privachain', height: tipHeight, blockHash: blockHash(tipHeader) }];
  for (let other = 0; other < 4; other++) tips.push({ chain: `plant-${other}`, height: 50_000 + other, blockHash: rng.bytes(32) });
  const tx = anchorTx(aggregationRoot(tips));
  const txids = Array.from({ length: BITCOIN_BLOCK_TXS }, () => rng.bytes(32));
  const anchorIndex = Math.floor(BITCOIN_BLOCK_TXS * 0.6);
  txids[anchorIndex] = tx.getHash();
  const bitcoinHeader = mineHeader({ prevHash: rng.bytes(32), merkleRoot: merkleRoot(txids), timeS: 1_780_000_600 });
  const proofOf = (height: number): AnchorProof => buildProof({
    network: 'regtest', chain: 'privachain', height, blockHash: mmr.node({ level: 0, index: height - 1 }).slice(),
    mmrPath: mmr.proof(height - 1, mmrLeafCount), tipHeader: tipEncoding, aggregation: { tips }, anchorTx: tx.toBuffer(),
    bitcoinBlock: { txids, header: bitcoinHeader }, bitcoinHeight: 880_000,
  });
  // The leaves are random, so no header hashes to them: the optional blockHeader field is sized
  // from the tip's header, which has the same fields (a block of this chain's header is as long).
  const blockHeaderFieldBytes = Buffer.byteLength(`,"blockHeader":"${Buffer.from(tipEncoding).toString('hex')}"`);
  const sizesOf = (proof: AnchorProof): ProofSizes => {
    const { height } = proof;
    const jsonBytes = Buffer.byteLength(encodeProofJson(proof));
    return {
      height,
      mmrPathHashes: proof.mmrPath.length,
      mmrPathBytes: 32 * proof.mmrPath.length,
      kproofBytes: encodeProofBinary(proof).length,
      // The encoder does not check the carried header against blockHash (the verifier does): the tip's stands in, as above.
      kproofWithBlockHeaderBytes: encodeProofBinary({ ...proof, blockHeader: tipEncoding }).length,
      jsonBytes,
      jsonWithBlockHeaderBytes: jsonBytes + blockHeaderFieldBytes,
      otsBytes: encodeOts(proofToOts(proof)).length,
    };
  };
  // The longest path: the first leaf of each peak is as long as any in it.
  const worstHeight = 1 + mmrPeaks(mmrLeafCount).map((peak) => peak.start).reduce((best, start) => (mmrProofLength(start, mmrLeafCount) > mmrProofLength(best, mmrLeafCount) ? start : best), 0);
  const heights = Array.from({ length: WARMUP_PROOFS + timedProofs }, () => 1 + (new DataView(rng.bytes(4).buffer).getUint32(0) % mmrLeafCount));
  log(`anchors: ${fmt(heights.length)} proofs`);
  const proofs = heights.map(proofOf);
  const texts = proofs.map((proof) => encodeProofJson(proof));
  const kproofs = proofs.map((proof) => encodeProofBinary(proof));
  const sampled = proofs.map(sizesOf);
  const random = sampled[0]!;
  const longest = sizesOf(proofOf(worstHeight));
  const largestOf = (key: keyof ProofSizes) => Math.max(longest[key], ...sampled.map((sizes) => sizes[key]));
  const largest: ProofSizes = {
    height: Number.NaN, mmrPathHashes: largestOf('mmrPathHashes'), mmrPathBytes: largestOf('mmrPathBytes'), kproofBytes: largestOf('kproofBytes'),
    kproofWithBlockHeaderBytes: largestOf('kproofWithBlockHeaderBytes'), jsonBytes: largestOf('jsonBytes'), jsonWithBlockHeaderBytes: largestOf('jsonWithBlockHeaderBytes'),
    otsBytes: largestOf('otsBytes'),
  };

  // A sample overlapping a garbage-collection pause is marked: on a shared 2-core machine the
  // tail is mostly those pauses and preemption, and the report shows the tail with and without them.
  log('anchors: timing verification');
  const gcPauses: Array<{ startMs: number; endMs: number }> = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcPauses.push({ startMs: entry.startTime, endMs: entry.startTime + entry.duration });
  });
  observer.observe({ entryTypes: ['gc'] });
  type Window = { startMs: number; decodedMs: number; endMs: number };
  const windows: Window[] = [];
  const binaryWindows: Window[] = [];
  const loadBefore = loadavg()[0]!;
  let invalid = 0;
  // The JSON and the .kproof of each proof one after the other, so that load on the machine falls on both alike.
  const timed = async (decode: () => Parameters<typeof verifyProof>[0]): Promise<Window> => {
    const startMs = performance.now();
    const shaped = decode();
    const decodedMs = performance.now();
    const result = await verifyProof(shaped, { kind: 'offline' });
    const endMs = performance.now();
    if (!result.valid) invalid++;
    return { startMs, decodedMs, endMs };
  };
  for (let index = 0; index < texts.length; index++) {
    const json = await timed(() => decodeProofJson(texts[index]!));
    const binary = await timed(() => decodeProofBinary(kproofs[index]!));
    if (index >= WARMUP_PROOFS) {
      windows.push(json);
      binaryWindows.push(binary);
    }
  }
  if (invalid > 0) throw new Error(`bench: ${invalid} proofs did not verify`);
  // GC entries are delivered asynchronously.
  await new Promise((resolve) => setTimeout(resolve, 100));
  observer.disconnect();
  const hitByGc = (window: { startMs: number; endMs: number }) => gcPauses.some((pause) => pause.startMs < window.endMs && pause.endMs > window.startMs);
  const summary = (valuesUs: number[]) => {
    const sorted = Float64Array.from(valuesUs).sort();
    return { samples: sorted.length, p50Us: percentileUs(sorted, 0.5), p99Us: percentileUs(sorted, 0.99), maxUs: sorted[sorted.length - 1]! };
  };
  const clean = windows.filter((window) => !hitByGc(window));
  const binaryClean = binaryWindows.filter((window) => !hitByGc(window));
  const totalUs = (window: Window) => (window.endMs - window.startMs) * 1000;
  const decodeUs = (window: Window) => (window.decodedMs - window.startMs) * 1000;
  const timing = {
    proofs: timedProofs,
    loadAverage1m: { before: loadBefore, after: loadavg()[0]! },
    gcPauses: gcPauses.length,
    samplesHitByGc: windows.length - clean.length + binaryWindows.length - binaryClean.length,
    decodeAndVerify: summary(windows.map(totalUs)),
    decodeAndVerifyWithoutGc: summary(clean.map(totalUs)),
    decodeOnly: summary(windows.map(decodeUs)),
    verifyOnly: summary(windows.map((window) => (window.endMs - window.decodedMs) * 1000)),
    binaryDecodeAndVerify: summary(binaryWindows.map(totalUs)),
    binaryDecodeAndVerifyWithoutGc: summary(binaryClean.map(totalUs)),
    binaryDecodeOnly: summary(binaryWindows.map(decodeUs)),
  };

  const goals = {
    oneTxPerInterval: { met: oneTxPerInterval },
    // Judged on the .kproof, the form the commands write, without the optional blockHeader.
    proofBytes: {
      goalBytes: PROOF_BYTES_GOAL, kproofLargest: largest.kproofBytes, jsonLargest: largest.jsonBytes, otsLargest: largest.otsBytes,
      met: largest.kproofBytes <= PROOF_BYTES_GOAL, jsonMet: largest.jsonBytes <= PROOF_BYTES_GOAL, otsMet: largest.otsBytes <= PROOF_BYTES_GOAL,
    },
    verifyTime: {
      goalUs: VERIFY_US_GOAL, p50Us: timing.decodeAndVerify.p50Us, p99Us: timing.decodeAndVerify.p99Us, p99WithoutGcUs: timing.decodeAndVerifyWithoutGc.p99Us,
      p50Met: timing.decodeAndVerify.p50Us <= VERIFY_US_GOAL, p99Met: timing.decodeAndVerify.p99Us <= VERIFY_US_GOAL, p99WithoutGcMet: timing.decodeAndVerifyWithoutGc.p99Us <= VERIFY_US_GOAL,
      binaryP50Us: timing.binaryDecodeAndVerify.p50Us, binaryP99Us: timing.binaryDecodeAndVerify.p99Us, binaryP99WithoutGcUs: timing.binaryDecodeAndVerifyWithoutGc.p99Us,
      binaryP50Met: timing.binaryDecodeAndVerify.p50Us <= VERIFY_US_GOAL, binaryP99Met: timing.binaryDecodeAndVerify.p99Us <= VERIFY_US_GOAL,
      binaryP99WithoutGcMet: timing.binaryDecodeAndVerifyWithoutGc.p99Us <= VERIFY_US_GOAL,
    },
  };

  // ---- the report ----
  const us = (value: number): string => fmt(value, 1);
  const output = [
    '',
    `Anchors (${machine.cores} cores, ${machine.cpuModel}, node ${machine.node})`,
    '',
    `One anchor transaction (1 P2WPKH input, OP_RETURN 32 bytes, P2WPKH change): ${txSize.rawBytes} bytes raw, ${txSize.strippedBytes} without witness, weight ${txSize.weight}, ${txSize.vsize} vbytes`,
    table([
      ['chains', 'blocks/chain', 'anchored blocks', 'txs aggregated', 'txs naive', 'vB/block aggregated', 'vB/block naive', 'raw B/block aggregated', 'raw B/block naive', 'naive ÷ aggregated'],
      ...intervals.map((row) => [
        String(row.chains), fmt(row.blocksPerChain), fmt(row.anchoredBlocks), String(row.aggregatedTxs), fmt(row.naiveTxs),
        fmt(row.aggregatedVbytesPerBlock, 2), fmt(row.naiveVbytesPerBlock, 2), fmt(row.aggregatedRawBytesPerBlock, 2), fmt(row.naiveRawBytesPerBlock, 2), `${fmt(row.naiveOverAggregated, 1)}×`,
      ]),
    ], ['r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']),
    '',
    `Proofs in a chain of ${fmt(CHAIN_LEAVES)} blocks (MMR built in memory in ${fmt(mmrBuildMs / 1000, 2)} s), tip ${fmt(tipHeight)}, 5 chains aggregated, a Bitcoin block of ${fmt(BITCOIN_BLOCK_TXS)} transactions`,
    table([
      ['block', 'height', 'MMR path', 'MMR path B', '.kproof B', '.kproof + blockHeader B', 'JSON B', 'JSON + blockHeader B', '.ots B'],
      ...([['a random block', random], ['the longest path', longest], [`largest of ${fmt(sampled.length + 1)}`, largest]] as const).map(([name, sizes]) => [
        name, Number.isNaN(sizes.height) ? '-' : fmt(sizes.height), String(sizes.mmrPathHashes), fmt(sizes.mmrPathBytes), fmt(sizes.kproofBytes), fmt(sizes.kproofWithBlockHeaderBytes),
        fmt(sizes.jsonBytes), fmt(sizes.jsonWithBlockHeaderBytes), fmt(sizes.otsBytes),
      ]),
    ], ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']),
    '  .kproof = anchors/proof-binary.ts (kalima proof --binary, ?format=binary): stripped anchor tx, no tip mmrRoot nor Merkle root (recomputed when decoding)',
    '',
    `Verification, ${fmt(timedProofs)} random proofs after ${WARMUP_PROOFS} warm-up, each as JSON then as .kproof (offline: every commitment and the header's proof of work; no header lookup);`,
    `  load average ${fmt(timing.loadAverage1m.before, 2)} before, ${fmt(timing.loadAverage1m.after, 2)} after, on ${machine.cores} cores; ` +
      `${timing.gcPauses} GC pauses overlapped ${timing.samplesHitByGc} of the ${fmt(2 * timedProofs)} samples`,
    table([
      ['', 'samples', 'p50 µs', 'p99 µs', 'max µs'],
      ...([
        ['decode JSON + verify', timing.decodeAndVerify], ['  the same, samples without a GC pause', timing.decodeAndVerifyWithoutGc], ['  decode JSON alone', timing.decodeOnly],
        ['decode .kproof + verify', timing.binaryDecodeAndVerify], ['  the same, samples without a GC pause', timing.binaryDecodeAndVerifyWithoutGc], ['  decode .kproof alone', timing.binaryDecodeOnly],
        ['verify a decoded proof', timing.verifyOnly],
      ] as const)
        .map(([name, row]) => [name, fmt(row.samples), us(row.p50Us), us(row.p99Us), us(row.maxUs)]),
    ], ['l', 'r', 'r', 'r', 'r']),
    '',
    'Goals (measured in this run)',
    `  one Bitcoin transaction per interval, whatever the blocks or chains: ${verdict(oneTxPerInterval)}`,
    `  a proof of at most ${fmt(PROOF_BYTES_GOAL)} bytes, the largest .kproof measured: ${fmt(largest.kproofBytes)} ${verdict(goals.proofBytes.met)} ` +
      `(for comparison: JSON ${fmt(largest.jsonBytes)} ${verdict(goals.proofBytes.jsonMet)}; .ots ${fmt(largest.otsBytes)} ${verdict(goals.proofBytes.otsMet)})`,
    `  verification in at most 1 ms, decode JSON + verify: p50 ${us(timing.decodeAndVerify.p50Us)} µs ${verdict(goals.verifyTime.p50Met)}; ` +
      `p99 ${us(timing.decodeAndVerify.p99Us)} µs ${verdict(goals.verifyTime.p99Met)}; p99 without GC pauses ${us(timing.decodeAndVerifyWithoutGc.p99Us)} µs ${verdict(goals.verifyTime.p99WithoutGcMet)}`,
    `  verification in at most 1 ms, decode .kproof + verify: p50 ${us(timing.binaryDecodeAndVerify.p50Us)} µs ${verdict(goals.verifyTime.binaryP50Met)}; ` +
      `p99 ${us(timing.binaryDecodeAndVerify.p99Us)} µs ${verdict(goals.verifyTime.binaryP99Met)}; p99 without GC pauses ${us(timing.binaryDecodeAndVerifyWithoutGc.p99Us)} µs ${verdict(goals.verifyTime.binaryP99WithoutGcMet)}`,
  ];
  process.stdout.write(`${output.join('\n')}\n`);

  const results = {
    startedAt: startedAt.toISOString(),
    command: `npm run bench -- anchors${args.length > 0 ? ` ${args.join(' ')}` : ''}`,
    machine,
    config: { chainLeaves: CHAIN_LEAVES, bitcoinBlockTxs: BITCOIN_BLOCK_TXS, timedProofs, warmupProofs: WARMUP_PROOFS, fundingValueSat: Number(fundingValueSat), feeSat: Number(feeSat) },
    bitcoin: { anchorTx: txSize, intervals },
    mmr: { leaves: CHAIN_LEAVES, buildMs: Math.round(mmrBuildMs) },
    proofSizes: { random, longestPath: longest, largest },
    verification: timing,
    goals,
  };
  const resultsFile = join(REPO_ROOT, 'bench', 'results-anchors.json');
  await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
  log(`\nwrote ${resultsFile}`);
}
