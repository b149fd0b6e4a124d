// Anchor proofs from real pieces (a Kalima chain with the node's mmrRoot, a signed anchor
// transaction, a mined regtest block): the operations, each stage's result, the JSON, and every
// way a proof can be wrong.
import { describe, expect, it } from 'vitest';
import { Transaction } from 'bitcoinjs-lib';
import { aggregationRoot } from '../../anchors/aggregate.ts';
import { bitcoinBlockHash, decodeBitcoinHeader, displayHex } from '../../chains/bitcoin/block.ts';
import { evaluateOps } from '../../anchors/ops.ts';
import { type AnchorProof, buildProof, checkProofShape, proofOps, proofStages } from '../../anchors/proof.ts';
import { decodeProofJson, encodeProofJson } from '../../anchors/proof-json.ts';
import { verifyProof } from '../../anchors/verify.ts';
import { KalimaError, isKalimaError } from '../../src/errors.ts';
import { blockHash, encodeHeader } from '../../src/ledger/block.ts';
import { seededRng } from './support/seeded-rng.ts';
import { type ProofFixture, headersAround, proofFixture, verificationOutcome } from '../support/anchor-proof.ts';
import { coinbaseTx, mineBlock, signAnchorTx, testWallet } from '../support/bitcoin.ts';

const CASES = [
  { name: 'block deep under its tip, 3 chains, 7 transactions', options: { height: 7, tipHeight: 50, otherChains: 2, otherTxs: 5 } },
  { name: 'the block is the anchored tip', options: { height: 33, tipHeight: 33, otherChains: 4, otherTxs: 2 } },
  { name: 'one chain, anchor alone with its coinbase', options: { height: 1, tipHeight: 2, otherChains: 0, otherTxs: 0 } },
  { name: 'the block just below a tip of 2^k + 1 blocks', options: { height: 64, tipHeight: 65, otherChains: 1, otherTxs: 40 } },
] as const;

const fixtures = CASES.map(({ name, options }, index) => ({ name, fixture: proofFixture({ rng: seededRng(`proof-${index}`), ...options, withBlockHeader: true }) }));

describe('proof operations', () => {
  it.each(fixtures)('$name: the operations take the block hash to the Bitcoin header\'s Merkle root', ({ fixture }) => {
    const { proof } = fixture;
    expect(evaluateOps(proof.blockHash, proofOps(proof))).toEqual(decodeBitcoinHeader(proof.bitcoinHeader).merkleRoot);
    expect(proofOps(proof).every((op) => op.kind === 'sha256' || op.data.length > 0)).toBe(true);
  });

  it.each(fixtures)('$name: each stage ends in the value the next piece carries', ({ fixture }) => {
    const { proof, chain, tips, block } = fixture;
    const tip = chain.headers[checkProofShape(proof).tip.height - 1]!;
    let digest = proof.blockHash;
    const results = new Map<string, Uint8Array>();
    for (const stage of proofStages(checkProofShape(proof))) {
      digest = evaluateOps(digest, stage.ops);
      results.set(stage.name, digest);
    }
    expect(results.get('mmr')).toEqual(tip.height === proof.height ? blockHash(tip) : tip.mmrRoot);
    expect(results.get('tip')).toEqual(blockHash(tip));
    expect(results.get('aggregation')).toEqual(aggregationRoot(tips));
    expect(displayHex(results.get('transaction')!)).toBe(Transaction.fromBuffer(proof.anchorTx).getId());
    expect(results.get('bitcoin-merkle')).toEqual(decodeBitcoinHeader(block.header).merkleRoot);
  });
});

describe('proof JSON', () => {
  it.each(fixtures)('$name: round trip, one canonical text', ({ fixture }) => {
    const text = encodeProofJson(fixture.proof);
    const decoded = decodeProofJson(text).proof;
    expect(decoded).toEqual(fixture.proof);
    expect(encodeProofJson(decoded)).toBe(text);
    const json = JSON.parse(text) as Record<string, unknown>;
    expect(json.anchorTxid).toBe(Transaction.fromBuffer(fixture.anchorTxBytes).getId());
    expect(json.bitcoinBlockHash).toBe(displayHex(fixture.block.hash));
  });

  it('the block header is optional', () => {
    const { blockHeader: _omitted, ...rest } = fixtures[0]!.fixture.proof;
    const text = encodeProofJson(rest);
    expect(text).not.toContain('blockHeader');
    expect(decodeProofJson(text).proof).toEqual(rest);
  });

  const base = JSON.parse(encodeProofJson(fixtures[0]!.fixture.proof)) as Record<string, unknown>;
  const MALFORMED: Array<{ name: string; change: (json: Record<string, unknown>) => unknown; field: string }> = [
    { name: 'not JSON', change: () => '{"format":', field: '(document)' },
    { name: 'an array', change: () => [], field: '(document)' },
    { name: 'an unknown field', change: (json) => ({ ...json, extra: 1 }), field: 'extra' },
    { name: 'no tipHeader', change: ({ tipHeader: _gone, ...json }) => json, field: 'tipHeader' },
    { name: 'another format', change: (json) => ({ ...json, format: 'ots' }), field: 'format' },
    { name: 'version 2', change: (json) => ({ ...json, version: 2 }), field: 'version' },
    { name: 'an unknown network', change: (json) => ({ ...json, network: 'testnet4' }), field: 'network' },
    { name: 'a height of 0', change: (json) => ({ ...json, height: 0 }), field: 'height' },
    { name: 'a fractional height', change: (json) => ({ ...json, height: 7.5 }), field: 'height' },
    { name: 'a height as a string', change: (json) => ({ ...json, height: '7' }), field: 'height' },
    { name: 'uppercase hex', change: (json) => ({ ...json, blockHash: String(json.blockHash).toUpperCase() }), field: 'blockHash' },
    { name: 'odd-length hex', change: (json) => ({ ...json, bitcoinHeader: `${String(json.bitcoinHeader)}0` }), field: 'bitcoinHeader' },
    { name: 'a short block hash', change: (json) => ({ ...json, blockHash: String(json.blockHash).slice(2) }), field: 'blockHash' },
    { name: 'a path that is not an array', change: (json) => ({ ...json, mmrPath: 'ab' }), field: 'mmrPath' },
    { name: 'a path hash of 31 bytes', change: (json) => ({ ...json, mmrPath: [String((json.mmrPath as string[])[0]).slice(2), ...(json.mmrPath as string[]).slice(1)] }), field: 'mmrPath[0]' },
    { name: 'one path hash too few', change: (json) => ({ ...json, mmrPath: (json.mmrPath as string[]).slice(1) }), field: 'mmrPath' },
    { name: 'a tip header that does not decode', change: (json) => ({ ...json, tipHeader: String(json.tipHeader).slice(0, 40) }), field: 'tipHeader' },
    { name: 'a tip below the block', change: (json) => ({ ...json, height: 51 }), field: 'tipHeader' },
    { name: 'an aggregation index past the leaves', change: (json) => ({ ...json, aggregationIndex: 3 }), field: 'aggregationIndex' },
    { name: 'an aggregation count of 0', change: (json) => ({ ...json, aggregationLeafCount: 0 }), field: 'aggregationLeafCount' },
    { name: 'an aggregation path of the wrong length', change: (json) => ({ ...json, aggregationPath: [] }), field: 'aggregationPath' },
    { name: 'a transaction that does not decode', change: (json) => ({ ...json, anchorTx: '0200' }), field: 'anchorTx' },
    { name: 'an anchorTxid that is not the transaction\'s', change: (json) => ({ ...json, anchorTxid: '00'.repeat(32) }), field: 'anchorTxid' },
    { name: 'a bitcoinBlockHash that is not the header\'s', change: (json) => ({ ...json, bitcoinBlockHash: '00'.repeat(32) }), field: 'bitcoinBlockHash' },
    { name: 'a header of 79 bytes', change: (json) => ({ ...json, bitcoinHeader: String(json.bitcoinHeader).slice(2) }), field: 'bitcoinHeader' },
    { name: 'a transaction index the branch cannot reach', change: (json) => ({ ...json, bitcoinTxIndex: 2 ** (json.bitcoinMerkleBranch as string[]).length }), field: 'bitcoinTxIndex' },
    { name: 'a negative Bitcoin height', change: (json) => ({ ...json, bitcoinHeight: -1 }), field: 'bitcoinHeight' },
  ];

  it.each(MALFORMED)('$name is KALIMA_ERR_PROOF_MALFORMED on field $field', ({ change, field }) => {
    const changed = change(structuredClone(base));
    const text = typeof changed === 'string' ? changed : JSON.stringify(changed);
    let thrown: unknown;
    try {
      decodeProofJson(text);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(KalimaError);
    expect((thrown as KalimaError).code).toBe('KALIMA_ERR_PROOF_MALFORMED');
    expect((thrown as KalimaError).details.field).toBe(field);
  });

  it('the unchanged base decodes, so each row above fails for its own change', () => {
    expect(() => decodeProofJson(JSON.stringify(base))).not.toThrow();
  });
});

/** decode + verify against a headers file: a KalimaError code, 'invalid: <code>', or 'valid'. */
function outcome(text: string, fixture: ProofFixture): Promise<string> {
  return verificationOutcome(async () => verifyProof(decodeProofJson(text), { kind: 'headers', headers: headersAround(fixture) }));
}

describe('tampering', () => {
  it.each(fixtures)('$name: a flipped byte in any committed piece never verifies', async ({ fixture }) => {
    const json = JSON.parse(encodeProofJson(fixture.proof)) as Record<string, unknown>;
    expect(await outcome(JSON.stringify(json), fixture)).toBe('valid');
    const stripped = checkProofShape(fixture.proof).commitment.stripped;
    // The witness is not committed by the txid (BIP 141): the stripped bytes are what is tampered
    // with (and stand in for the whole transaction).
    const strippedHex = Buffer.from(stripped).toString('hex');
    const targets: Array<{ field: string; item?: number }> = [
      { field: 'blockHash' }, { field: 'blockHeader' }, { field: 'tipHeader' }, { field: 'bitcoinHeader' }, { field: 'anchorTx' },
      ...['mmrPath', 'aggregationPath', 'bitcoinMerkleBranch'].flatMap((field) => (json[field] as string[]).map((_, item) => ({ field, item }))),
    ];
    let tried = 0;
    for (const { field, item } of targets) {
      const original = item === undefined ? (json[field] as string) : (json[field] as string[])[item]!;
      const bytes = Buffer.from(field === 'anchorTx' ? strippedHex : original, 'hex');
      for (let position = 0; position < bytes.length; position++) {
        const tampered = Buffer.from(bytes);
        tampered[position]! ^= 0x01;
        const hex = tampered.toString('hex');
        const copy = structuredClone(json);
        if (item === undefined) copy[field] = hex;
        else (copy[field] as string[])[item] = hex;
        const result = await outcome(JSON.stringify(copy), fixture);
        expect(result, `${field}${item === undefined ? '' : `[${item}]`} byte ${position}`).not.toBe('valid');
        tried++;
      }
    }
    expect(tried).toBeGreaterThan(500);
  });

  it('every number in the proof is bound: a changed height, index, count or Bitcoin height never verifies', async () => {
    for (const { fixture } of fixtures) {
      const json = JSON.parse(encodeProofJson(fixture.proof)) as Record<string, number>;
      for (const field of ['height', 'aggregationIndex', 'aggregationLeafCount', 'bitcoinTxIndex', 'bitcoinHeight']) {
        for (const delta of [-1, 1]) {
          const result = await outcome(JSON.stringify({ ...json, [field]: json[field]! + delta }), fixture);
          expect(result, `${field} ${delta}`).not.toBe('valid');
        }
      }
    }
  });

  it('the witness is not committed: changing the signature leaves the proof valid (Bitcoin\'s txid excludes it)', async () => {
    const { fixture } = fixtures[0]!;
    const tx = Transaction.fromBuffer(fixture.anchorTxBytes);
    tx.ins[0]!.witness[0]![10]! ^= 1;
    const json = JSON.parse(encodeProofJson(fixture.proof)) as Record<string, unknown>;
    expect(await outcome(JSON.stringify({ ...json, anchorTx: tx.toHex() }), fixture)).toBe('valid');
  });
});

describe('structural checks', () => {
  const rng = seededRng('structural');
  const wallet = testWallet(rng);
  const { fixture } = fixtures[0]!;
  const tipHeader = fixture.proof.tipHeader;

  /** A proof around a given anchor transaction, in a freshly mined block. */
  function aroundTx(tx: Transaction, extra: Partial<AnchorProof> = {}): AnchorProof {
    const block = mineBlock(rng.bytes(32), 1_780_000_300, [coinbaseTx(150, wallet.outputScript, 1n), tx]);
    return {
      ...fixture.proof, anchorTx: tx.toBuffer(), bitcoinTxIndex: 1, bitcoinMerkleBranch: [block.txids[0]!], bitcoinHeader: block.header, ...extra,
    };
  }

  const verdictOf = async (proof: AnchorProof) => verifyProof(proof, { kind: 'offline' });

  it('the OP_RETURN must hold exactly the aggregation root', async () => {
    const tx = signAnchorTx({ wallet, prevTxid: rng.bytes(32), prevIndex: 0, prevValueSat: 10_000n, payload: rng.bytes(32), feeSat: 200n });
    const verdict = await verdictOf(aroundTx(tx));
    expect(verdict.valid).toBe(false);
    expect(verdict.failure).toMatchObject({ code: 'KALIMA_ERR_PROOF_INVALID', step: 'aggregation' });
    // The same transaction with the right root verifies, so the row above fails for the root alone.
    const right = signAnchorTx({ wallet, prevTxid: rng.bytes(32), prevIndex: 0, prevValueSat: 10_000n, payload: aggregationRoot(fixture.tips), feeSat: 200n });
    expect((await verdictOf(aroundTx(right))).valid).toBe(true);
  });

  it('a transaction with two OP_RETURN outputs, or none, or one of 31 bytes, is malformed', () => {
    const two = signAnchorTx({ wallet, prevTxid: rng.bytes(32), prevIndex: 0, prevValueSat: 10_000n, payload: aggregationRoot(fixture.tips), feeSat: 200n });
    two.addOutput(Uint8Array.of(0x6a, 0x01, 0x00), 0n);
    const none = new Transaction();
    none.addInput(rng.bytes(32), 0);
    none.addOutput(wallet.outputScript, 1n);
    const short = new Transaction();
    short.addInput(rng.bytes(32), 0);
    short.addOutput(Uint8Array.of(0x6a, 0x1f, ...rng.bytes(31)), 0n);
    for (const tx of [two, none, short]) {
      const error = (() => { try { checkProofShape(aroundTx(tx)); } catch (caught) { return caught; } })();
      expect(isKalimaError(error, 'KALIMA_ERR_PROOF_MALFORMED') && (error as KalimaError).details.field === 'anchorTx').toBe(true);
    }
  });

  it('a tip header of another chain, with the chain name changed in the proof, is refused', async () => {
    const verdict = await verdictOf({ ...fixture.proof, chain: 'other-chain', blockHeader: undefined } as AnchorProof);
    expect(verdict.failure).toMatchObject({ code: 'KALIMA_ERR_PROOF_INVALID', step: 'tip' });
  });

  it('a header that misses its own bits is invalid', async () => {
    const header = fixture.proof.bitcoinHeader.slice();
    const view = new DataView(header.buffer);
    // Find a nonce whose hash is above the regtest target.
    for (let nonce = 0; ; nonce++) {
      view.setUint32(76, nonce, true);
      if (BigInt(`0x${displayHex(bitcoinBlockHash(header))}`) > 0x7fffffn << 232n) break;
    }
    const verdict = await verdictOf({ ...fixture.proof, bitcoinHeader: header });
    expect(verdict.failure).toMatchObject({ code: 'KALIMA_ERR_PROOF_INVALID', step: 'bitcoin-header', reason: 'the header hash is above its target' });
  });

  it('a mainnet proof at regtest difficulty is invalid offline: its bits are below the network\'s minimum', async () => {
    const verdict = await verdictOf({ ...fixture.proof, network: 'mainnet' });
    expect(verdict.failure).toMatchObject({ code: 'KALIMA_ERR_PROOF_INVALID', step: 'bitcoin-header' });
    expect(verdict.failure!.reason).toMatch(/minimum difficulty/);
  });

  it('an index past the end of an odd level (Bitcoin\'s duplicated last node) is refused', async () => {
    // Three transactions, the anchor last: its level-0 sibling is itself, on the right.
    const anchor = Transaction.fromBuffer(fixture.anchorTxBytes);
    const block = mineBlock(rng.bytes(32), 1_780_000_400, [coinbaseTx(150, wallet.outputScript, 1n), coinbaseTx(151, wallet.outputScript, 2n), anchor]);
    const proof = buildProof({
      network: 'regtest', chain: fixture.proof.chain, height: fixture.proof.height, blockHash: fixture.proof.blockHash, mmrPath: fixture.proof.mmrPath,
      tipHeader, aggregation: { tips: fixture.tips }, anchorTx: fixture.anchorTxBytes, bitcoinBlock: { raw: block.raw }, bitcoinHeight: 150,
    });
    expect(proof.bitcoinTxIndex).toBe(2);
    expect((await verdictOf(proof)).valid).toBe(true);
    const verdict = await verdictOf({ ...proof, bitcoinTxIndex: 3 });
    expect(verdict.failure).toMatchObject({ code: 'KALIMA_ERR_PROOF_INVALID', step: 'bitcoin-merkle' });
  });

  it('buildProof refuses pieces that do not fit together', () => {
    const pieces = {
      network: 'regtest' as const, chain: fixture.proof.chain, height: fixture.proof.height, blockHash: fixture.proof.blockHash, mmrPath: fixture.proof.mmrPath,
      tipHeader, aggregation: { tips: fixture.tips }, anchorTx: fixture.anchorTxBytes, bitcoinBlock: { raw: fixture.block.raw }, bitcoinHeight: 150,
    };
    expect(() => buildProof(pieces)).not.toThrow();
    const otherBlock = mineBlock(rng.bytes(32), 1, [coinbaseTx(1, wallet.outputScript, 1n)]);
    const cases: Array<[string, object]> = [
      ['a block without the transaction', { bitcoinBlock: { raw: otherBlock.raw } }],
      ['a path to another root', { mmrPath: [...fixture.proof.mmrPath.slice(1), fixture.proof.mmrPath[0]!] }],
      ['another chain\'s tips', { aggregation: { tips: fixture.tips.map((tip) => ({ ...tip, blockHash: rng.bytes(32) })) } }],
      ['txids with the header of another block', { bitcoinBlock: { txids: fixture.block.txids, header: otherBlock.header } }],
    ];
    for (const [name, change] of cases) {
      const error = (() => { try { buildProof({ ...pieces, ...change }); } catch (caught) { return caught; } })();
      expect(isKalimaError(error, 'KALIMA_ERR_PROOF_INVALID'), name).toBe(true);
    }
    expect(encodeHeader(fixture.chain.headers[fixture.proof.height - 1]!)).toEqual(fixture.proof.blockHeader);
  });
});
