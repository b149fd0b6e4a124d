// The binary proof (.kproof, anchors/proof-binary.ts): its layout written out field by field, round
// trips with the JSON for many proofs, one encoding per proof, every cut or flipped byte refused
// or failing, the two roots it recomputes, and the size of a proof from a long chain.
import fc from 'fast-check';
import { Transaction } from 'bitcoinjs-lib';
import { describe, expect, it } from 'vitest';
import { decodeBitcoinHeader } from '../../chains/bitcoin/block.ts';
import { PROOF_BINARY_BYTES_MAX, PROOF_BINARY_MAGIC, decodeProofBinary, encodeProofBinary, isProofBinary } from '../../anchors/proof-binary.ts';
import { PROOF_JSON_BYTES_MAX, decodeProofJson, encodeProofJson } from '../../anchors/proof-json.ts';
import { aggregationRoot } from '../../anchors/aggregate.ts';
import { type AnchorProof, buildProof, checkProofShape } from '../../anchors/proof.ts';
import { encodeOts, proofToOts } from '../../anchors/ots.ts';
import { type HeaderSource, verifyProof } from '../../anchors/verify.ts';
import { type KalimaErrorCode, isKalimaError } from '../../src/errors.ts';
import { Writer } from '../../src/ledger/codec.ts';
import { type ProofFixture, deepProof, headersAround, proofFixture, verificationOutcome } from '../support/anchor-proof.ts';
import { coinbaseTx, mineBlock } from '../support/bitcoin.ts';
import { outcomeOf } from './support/kalima-error.ts';
import { seededRng } from './support/seeded-rng.ts';

const CASES = [
  { name: 'block deep under its tip, with its header', options: { height: 7, tipHeight: 50, otherChains: 2, otherTxs: 5, withBlockHeader: true } },
  { name: 'the block is the anchored tip', options: { height: 33, tipHeight: 33, otherChains: 4, otherTxs: 2 } },
  { name: 'one chain, anchor alone with its coinbase', options: { height: 1, tipHeight: 2, otherChains: 0, otherTxs: 0, withBlockHeader: true } },
  { name: 'the block just below a tip of 2^k + 1 blocks', options: { height: 64, tipHeight: 65, otherChains: 1, otherTxs: 40 } },
] as const;

const fixtures = CASES.map(({ name, options }, index) => ({ name, fixture: proofFixture({ rng: seededRng(`binary-${index}`), ...options }) }));

/** The proof as the binary form gives it back: the anchor transaction without its witness. */
function stripped(proof: AnchorProof): AnchorProof {
  return { ...proof, anchorTx: checkProofShape(proof).commitment.stripped };
}

const varint = (value: number): Uint8Array => new Writer(16).varint(value).finish();
const hashList = (hashes: readonly Uint8Array[]): Uint8Array => {
  const writer = new Writer(1024).varint(hashes.length);
  for (const hash of hashes) writer.raw(hash);
  return writer.finish();
};

type Part = [field: string, bytes: Uint8Array];

/** The layout of anchors/proof-binary.ts's header comment, one part per field, written here by hand. */
function layout(proof: AnchorProof): Part[] {
  const tipHeight = checkProofShape(proof).tip.height;
  const networkCodes = { mainnet: 0, testnet: 1, signet: 2, regtest: 3, 'bcoin-regtest': 4 } as const;
  const chain = new TextEncoder().encode(proof.chain);
  const tipPrefix = proof.tipHeader.subarray(0, proof.tipHeader.length - 32);
  const anchorTx = checkProofShape(proof).commitment.stripped;
  const parts: Part[] = [
    ['magic', new TextEncoder().encode('KLMPRF')],
    ['version', Uint8Array.of(1)],
    ['flags', Uint8Array.of(proof.blockHeader === undefined ? 0 : 1)],
    ['network', Uint8Array.of(networkCodes[proof.network])],
    ['chain', Uint8Array.of(...varint(chain.length), ...chain)],
    ['height', varint(proof.height)],
    ['blockHash', proof.blockHash],
    ...(proof.blockHeader === undefined ? [] : [['blockHeader', Uint8Array.of(...varint(proof.blockHeader.length), ...proof.blockHeader)] as Part]),
    ['mmrPath', hashList(proof.mmrPath)],
    ['tipHeader', Uint8Array.of(...varint(tipPrefix.length), ...tipPrefix)],
    ...(tipHeight === proof.height ? [['tipMmrRoot', proof.tipHeader.subarray(proof.tipHeader.length - 32)] as Part] : []),
    ['aggregationIndex', varint(proof.aggregationIndex)],
    ['aggregationLeafCount', varint(proof.aggregationLeafCount)],
    ['aggregationPath', hashList(proof.aggregationPath)],
    ['anchorTx', Uint8Array.of(...varint(anchorTx.length), ...anchorTx)],
    ['bitcoinTxIndex', varint(proof.bitcoinTxIndex)],
    ['bitcoinMerkleBranch', hashList(proof.bitcoinMerkleBranch)],
    ['bitcoinHeader', Uint8Array.of(...proof.bitcoinHeader.subarray(0, 36), ...proof.bitcoinHeader.subarray(68))],
    ['bitcoinHeight', varint(proof.bitcoinHeight)],
  ];
  return parts;
}

/** The parts joined, with some replaced. */
function join(parts: Part[], replaced: Record<string, Uint8Array> = {}): Uint8Array {
  return Uint8Array.from(parts.flatMap(([field, bytes]) => [...(replaced[field] ?? bytes)]));
}

/** decode + verify: a KalimaError code, 'invalid: <code>', or 'valid'. */
function outcome(bytes: Uint8Array, source: HeaderSource): Promise<string> {
  return verificationOutcome(async () => verifyProof(decodeProofBinary(bytes), source));
}

const headersOf = (fixture: ProofFixture): HeaderSource => ({ kind: 'headers', headers: headersAround(fixture) });

describe('the .kproof layout', () => {
  it.each(fixtures)('$name: the bytes are the documented layout, field by field', ({ fixture }) => {
    expect(encodeProofBinary(fixture.proof)).toEqual(join(layout(fixture.proof)));
  });

  it('the magic is "KLMPRF"; isProofBinary tells it from JSON and .ots', () => {
    expect(Buffer.from(PROOF_BINARY_MAGIC).toString('hex')).toBe('4b4c4d505246');
    const { proof } = fixtures[0]!.fixture;
    expect(isProofBinary(encodeProofBinary(proof))).toBe(true);
    expect(isProofBinary(new TextEncoder().encode(encodeProofJson(proof)))).toBe(false);
    expect(isProofBinary(encodeOts(proofToOts(proof)))).toBe(false);
    expect(isProofBinary(new Uint8Array(0))).toBe(false);
  });

  it('the block header is carried only with flag 1, and costs its length and its length\'s varint', () => {
    const { proof } = fixtures[0]!.fixture;
    const { blockHeader, ...without } = proof;
    const withHeader = encodeProofBinary(proof);
    const withoutHeader = encodeProofBinary(without);
    expect(withHeader[7]).toBe(1);
    expect(withoutHeader[7]).toBe(0);
    expect(withHeader.length - withoutHeader.length).toBe(blockHeader!.length + varint(blockHeader!.length).length);
    expect(decodeProofBinary(withoutHeader).proof.blockHeader).toBeUndefined();
    expect(decodeProofBinary(withHeader).proof.blockHeader).toEqual(blockHeader);
  });
});

/**
 * binary → proof → binary is byte-exact, the proof is the JSON's less the witness, JSON → binary
 * gives the same bytes, and the two verdicts are the same and valid.
 */
async function expectRoundTrip(fixture: ProofFixture, source: HeaderSource): Promise<void> {
  const bytes = encodeProofBinary(fixture.proof);
  const json = encodeProofJson(fixture.proof);
  const decoded = decodeProofBinary(bytes);
  expect(decoded.proof).toEqual(stripped(fixture.proof));
  expect(encodeProofBinary(decoded.proof)).toEqual(bytes);
  expect(encodeProofBinary(decodeProofJson(json).proof)).toEqual(bytes);
  expect(encodeProofJson(decoded.proof)).toBe(encodeProofJson(stripped(fixture.proof)));
  expect(bytes.length).toBeLessThan(json.length / 2);
  const viaBinary = await verifyProof(decoded, source);
  expect(viaBinary.valid).toBe(true);
  expect(viaBinary).toEqual(await verifyProof(decodeProofJson(json), source));
}

describe('round trips', () => {
  it.each(fixtures)('$name: binary → proof → binary is byte-exact; the proof is the JSON\'s, less the witness; the verdicts agree', async ({ fixture }) => {
    await expectRoundTrip(fixture, headersOf(fixture));
  });

  it('for any proof (positions, tips, aggregated chains, block sizes, with or without the block header)', async () => {
    await fc.assert(fc.asyncProperty(
      fc.record({ tipHeight: fc.integer({ min: 1, max: 90 }), below: fc.nat(), otherChains: fc.integer({ min: 0, max: 6 }), otherTxs: fc.integer({ min: 0, max: 30 }), withBlockHeader: fc.boolean(), seed: fc.nat() }),
      async ({ tipHeight, below, otherChains, otherTxs, withBlockHeader, seed }) => {
        const height = tipHeight - (below % tipHeight);
        const fixture = proofFixture({ rng: seededRng(`binary-property-${seed}`), height, tipHeight, otherChains, otherTxs, withBlockHeader });
        await expectRoundTrip(fixture, { kind: 'offline' });
      },
    ), { numRuns: 40 });
  });
});

describe('tampering', () => {
  it.each(fixtures)('$name: a proof cut at any byte is KALIMA_ERR_PROOF_TRUNCATED', ({ fixture }) => {
    const bytes = encodeProofBinary(fixture.proof);
    for (let length = 0; length < bytes.length; length++) {
      expect(outcomeOf(() => decodeProofBinary(bytes.subarray(0, length))), `cut at ${length}`).toBe('KALIMA_ERR_PROOF_TRUNCATED');
    }
    expect(outcomeOf(() => decodeProofBinary(bytes))).toBe('ok');
  });

  it.each(fixtures)('$name: every byte flipped (xor 01, xor 80) is refused or does not verify; what decodes re-encodes to itself', async ({ fixture }) => {
    const bytes = encodeProofBinary(fixture.proof);
    const source = headersOf(fixture);
    expect(await outcome(bytes, source)).toBe('valid');
    const outcomes = new Map<string, number>();
    for (let position = 0; position < bytes.length; position++) {
      for (const mask of [0x01, 0x80]) {
        const tampered = bytes.slice();
        tampered[position]! ^= mask;
        const result = await outcome(tampered, source);
        expect(result, `byte ${position} xor ${mask.toString(16)}`).not.toBe('valid');
        outcomes.set(result, (outcomes.get(result) ?? 0) + 1);
        const decoded = (() => {
          try {
            return decodeProofBinary(tampered);
          } catch {
            return undefined;
          }
        })();
        // One encoding per proof: bytes that decode are the canonical encoding of what they decode to.
        if (decoded !== undefined) expect(encodeProofBinary(decoded.proof), `byte ${position} xor ${mask.toString(16)}`).toEqual(tampered);
      }
    }
    // Both kinds of failure occur: bytes refused by the decoder, and decoded proofs the verifier rejects.
    expect(outcomes.get('KALIMA_ERR_PROOF_MALFORMED')).toBeGreaterThan(0);
    expect([...outcomes.keys()].some((key) => key.startsWith('invalid: '))).toBe(true);
  });

  it('a tampered MMR path decodes to a tip header with another mmrRoot, and fails at the aggregation (as its JSON does)', async () => {
    const { fixture } = fixtures[0]!;
    const parts = layout(fixture.proof);
    const path = fixture.proof.mmrPath.map((hash, position) => (position === 2 ? hash.map((byte, at) => (at === 0 ? byte ^ 1 : byte)) : hash));
    const decoded = decodeProofBinary(join(parts, { mmrPath: hashList(path) }));
    expect(decoded.tip.mmrRoot).not.toEqual(checkProofShape(fixture.proof).tip.mmrRoot);
    const verdict = await verifyProof(decoded, { kind: 'offline' });
    expect(verdict.failure).toMatchObject({ code: 'KALIMA_ERR_PROOF_INVALID', step: 'aggregation' });
    expect((await verifyProof(decodeProofJson(encodeProofJson(decoded.proof)), { kind: 'offline' })).failure).toEqual(verdict.failure);
  });

  it('a tampered Bitcoin branch decodes to a header with another Merkle root, which is not the chain\'s block', async () => {
    const { fixture } = fixtures[3]!;
    const branch = fixture.proof.bitcoinMerkleBranch.map((hash, level) => (level === 1 ? hash.map((byte, at) => (at === 5 ? byte ^ 0x40 : byte)) : hash));
    const decoded = decodeProofBinary(join(layout(fixture.proof), { bitcoinMerkleBranch: hashList(branch) }));
    expect(decodeBitcoinHeader(decoded.proof.bitcoinHeader).merkleRoot).not.toEqual(decodeBitcoinHeader(fixture.proof.bitcoinHeader).merkleRoot);
    const verdict = await verifyProof(decoded, headersOf(fixture));
    expect(verdict.failure?.code).toMatch(/^KALIMA_ERR_PROOF_(NOT_IN_CHAIN|INVALID)$/);
  });

  it('a proof above the size bound cannot be written (an anchor transaction of 800 inputs): KALIMA_ERR_PROOF_MALFORMED; its JSON is past the JSON\'s bound too', () => {
    const { fixture } = fixtures[2]!;
    const rng = seededRng('binary-huge');
    const tx = new Transaction();
    for (let input = 0; input < 800; input++) tx.addInput(rng.bytes(32), 0);
    tx.addOutput(Uint8Array.of(0x6a, 0x20, ...aggregationRoot(fixture.tips)), 0n);
    const block = mineBlock(rng.bytes(32), 1_780_000_400, [coinbaseTx(150, Uint8Array.of(0x51), 1n), tx]);
    const proof = buildProof({
      network: 'regtest', chain: fixture.chain.chain, height: 1, blockHash: fixture.proof.blockHash, mmrPath: fixture.proof.mmrPath, tipHeader: fixture.proof.tipHeader,
      aggregation: { tips: fixture.tips }, anchorTx: tx.toBuffer(), bitcoinBlock: { raw: block.raw }, bitcoinHeight: 150,
    });
    expect(Buffer.byteLength(encodeProofJson(proof))).toBeGreaterThan(PROOF_JSON_BYTES_MAX);
    expect(outcomeOf(() => decodeProofJson(encodeProofJson(proof)))).toBe('KALIMA_ERR_PROOF_MALFORMED');
    let thrown: unknown;
    try {
      encodeProofBinary(proof);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ code: 'KALIMA_ERR_PROOF_MALFORMED', details: { field: 'anchorTx' } });
  });

  it('a proof whose roots are not what its operations give cannot be written: KALIMA_ERR_PROOF_INVALID', () => {
    const { proof } = fixtures[0]!.fixture;
    const wrongPath = { ...proof, mmrPath: [proof.mmrPath[1]!, ...proof.mmrPath.slice(1)] };
    expect(outcomeOf(() => encodeProofBinary(wrongPath))).toBe('KALIMA_ERR_PROOF_INVALID');
    const wrongBranch = { ...proof, bitcoinMerkleBranch: proof.bitcoinMerkleBranch.map((hash) => hash.slice().reverse()) };
    expect(outcomeOf(() => encodeProofBinary(wrongBranch))).toBe('KALIMA_ERR_PROOF_INVALID');
  });
});

describe('decoding errors', () => {
  const { fixture } = fixtures[0]!;
  const parts = layout(fixture.proof);
  const fullTx = fixture.anchorTxBytes;
  const ROWS: Array<{ name: string; bytes: () => Uint8Array; code: 'ok' | KalimaErrorCode; field?: string }> = [
    { name: 'the layout as written', bytes: () => join(parts), code: 'ok' },
    { name: 'nothing', bytes: () => new Uint8Array(0), code: 'KALIMA_ERR_PROOF_TRUNCATED', field: 'magic' },
    { name: 'half the magic', bytes: () => new TextEncoder().encode('KLM'), code: 'KALIMA_ERR_PROOF_TRUNCATED', field: 'magic' },
    { name: 'another magic', bytes: () => join(parts, { magic: new TextEncoder().encode('KLMPRG') }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'magic' },
    { name: 'a JSON proof', bytes: () => new TextEncoder().encode(encodeProofJson(fixture.proof)), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'magic' },
    { name: 'version 2', bytes: () => join(parts, { version: Uint8Array.of(2) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'version' },
    { name: 'an unknown flag bit', bytes: () => join(parts, { flags: Uint8Array.of(0x03) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'flags' },
    { name: 'network code 5', bytes: () => join(parts, { network: Uint8Array.of(5) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'network' },
    { name: 'a chain name that is not UTF-8', bytes: () => join(parts, { chain: Uint8Array.of(2, 0xff, 0xfe) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'chain' },
    { name: 'a chain name of 65 bytes', bytes: () => join(parts, { chain: Uint8Array.of(65, ...new Uint8Array(65).fill(0x61)) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'chain' },
    { name: 'a height in a non-minimal varint', bytes: () => join(parts, { height: Uint8Array.of(0x87, 0x00) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'height' },
    { name: 'height 0', bytes: () => join(parts, { height: Uint8Array.of(0) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'height' },
    { name: 'an MMR path of 129 hashes', bytes: () => join(parts, { mmrPath: varint(129) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'mmrPath' },
    { name: 'an MMR path one hash short', bytes: () => join(parts, { mmrPath: hashList(fixture.proof.mmrPath.slice(1)) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'mmrPath' },
    { name: 'a tip header that does not decode', bytes: () => join(parts, { tipHeader: Uint8Array.of(3, 1, 0, 0) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'tipHeader' },
    { name: 'an aggregation index past the leaves', bytes: () => join(parts, { aggregationIndex: varint(3) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'aggregationIndex' },
    { name: 'an aggregation path of 33 hashes', bytes: () => join(parts, { aggregationPath: varint(33) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'aggregationPath' },
    { name: 'the anchor transaction with its witness', bytes: () => join(parts, { anchorTx: Uint8Array.of(...varint(fullTx.length), ...fullTx) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'anchorTx' },
    { name: 'an anchor transaction that does not decode', bytes: () => join(parts, { anchorTx: Uint8Array.of(2, 2, 0) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'anchorTx' },
    { name: 'a Bitcoin branch of 33 hashes', bytes: () => join(parts, { bitcoinMerkleBranch: varint(33) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'bitcoinMerkleBranch' },
    { name: 'a transaction index the branch cannot reach', bytes: () => join(parts, { bitcoinTxIndex: varint(2 ** fixture.proof.bitcoinMerkleBranch.length) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'bitcoinTxIndex' },
    { name: 'a Bitcoin height in a non-minimal varint', bytes: () => join(parts, { bitcoinHeight: Uint8Array.of(0x96, 0x81, 0x00) }), code: 'KALIMA_ERR_PROOF_MALFORMED', field: 'bitcoinHeight' },
    { name: 'a byte after the end', bytes: () => Uint8Array.of(...join(parts), 0), code: 'KALIMA_ERR_PROOF_TRAILING_BYTES' },
    { name: 'more than the size bound', bytes: () => Uint8Array.of(...PROOF_BINARY_MAGIC, ...new Uint8Array(PROOF_BINARY_BYTES_MAX)), code: 'KALIMA_ERR_PROOF_MALFORMED', field: '(document)' },
  ];

  it.each(ROWS)('$name: $code $field', ({ bytes, code, field }) => {
    let thrown: unknown;
    try {
      decodeProofBinary(bytes());
    } catch (error) {
      thrown = error;
    }
    if (code === 'ok') {
      expect(thrown).toBeUndefined();
      return;
    }
    expect(isKalimaError(thrown) ? thrown.code : thrown).toBe(code);
    if (field !== undefined) expect((thrown as { details: { field?: string } }).details.field).toBe(field);
  });
});

describe('size', () => {
  it('a proof in a chain of 1,000,000 blocks (20-hash MMR path), 5 chains aggregated, a Bitcoin block of 4,000 transactions: under 1,500 bytes', async () => {
    const proof = deepProof({ rng: seededRng('binary-size'), tipHeight: 1_000_000, chains: 5, bitcoinBlockTxs: 4_000 });
    // The chain sorts last of the five ("plant-…" < "privachain"): leaf 4 of 5 has a path of one.
    expect([proof.mmrPath.length, proof.aggregationPath.length, proof.bitcoinMerkleBranch.length]).toEqual([20, 1, 12]);
    const bytes = encodeProofBinary(proof);
    expect(bytes.length).toBeLessThan(1_500);
    expect(Buffer.byteLength(encodeProofJson(proof))).toBeGreaterThan(2 * bytes.length);
    expect(await verifyProof(decodeProofBinary(bytes), { kind: 'offline' })).toMatchObject({ valid: true, height: proof.height, tipHeight: 1_000_000 });
  });
});
