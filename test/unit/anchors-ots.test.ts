// The .ots form of a proof, against the byte layout of python-opentimestamps (the reference
// implementation): magic, version, file hash, LEB128 varuints, op tags 08/f0/f1, attestation 00 +
// 8-byte tag + varbytes payload. The official JavaScript library (npm `opentimestamps`) cannot be
// installed here (it depends on the `fs@0.0.1-security` placeholder, absent from the registry), so
// interop is held to the layout itself.
import { describe, expect, it } from 'vitest';
import { decodeBitcoinHeader } from '../../chains/bitcoin/block.ts';
import { evaluateOps } from '../../anchors/ops.ts';
import { OTS_MAGIC, type OtsTimestamp, blockFileBytes, decodeOts, encodeOts, proofToOts } from '../../anchors/ots.ts';
import { type KalimaErrorCode } from '../../src/errors.ts';
import { sha256 } from '../../src/ledger/hash.ts';
import { encodeHeader } from '../../src/ledger/block.ts';
import { outcomeOf } from './support/kalima-error.ts';
import { seededRng, unhex } from './support/seeded-rng.ts';
import { proofFixture } from '../support/anchor-proof.ts';

const DIGEST = unhex('11'.repeat(32));
const MAGIC_HEX = '004f70656e54696d657374616d7073000050726f6f6600bf89e2e884e89294';
const HEAD = `${MAGIC_HEX}01` + `08${'11'.repeat(32)}`;
/** Bitcoin attestation of block 700000: 700000 = 0x60 + 0x5c·2^7 + 0x2a·2^14, LEB128 e0 dc 2a. */
const BITCOIN_700000 = '00' + '0588960d73d71901' + '03' + 'e0dc2a';

const sample: OtsTimestamp = {
  fileDigest: DIGEST,
  ops: [{ kind: 'append', data: unhex('aabbccdd') }, { kind: 'sha256' }, { kind: 'prepend', data: unhex('0102') }, { kind: 'sha256' }],
  bitcoinHeight: 700_000,
};
const SAMPLE_HEX = HEAD + 'f004aabbccdd' + '08' + 'f1020102' + '08' + BITCOIN_700000;

const codeOf = (hex: string): 'ok' | KalimaErrorCode => outcomeOf(() => decodeOts(unhex(hex)));

describe('.ots byte layout', () => {
  it('the magic is "\\x00OpenTimestamps\\x00\\x00Proof\\x00" then bf 89 e2 e8 84 e8 92 94', () => {
    expect(Buffer.from(OTS_MAGIC).toString('hex')).toBe(MAGIC_HEX);
    expect(OTS_MAGIC.length).toBe(31);
  });

  it('a timestamp is written as the reference layout, and read back', () => {
    expect(Buffer.from(encodeOts(sample)).toString('hex')).toBe(SAMPLE_HEX);
    expect(decodeOts(unhex(SAMPLE_HEX))).toEqual(sample);
  });

  it('heights below 128 take one byte; 128 takes two (80 01)', () => {
    expect(Buffer.from(encodeOts({ ...sample, ops: [], bitcoinHeight: 127 })).toString('hex')).toBe(`${HEAD}000588960d73d71901017f`);
    expect(Buffer.from(encodeOts({ ...sample, ops: [], bitcoinHeight: 128 })).toString('hex')).toBe(`${HEAD}000588960d73d7190102${'8001'}`);
    expect(decodeOts(unhex(`${HEAD}000588960d73d719010100`)).bitcoinHeight).toBe(0);
  });

  it('an argument of 200 bytes has a two-byte length (c8 01)', () => {
    const data = new Uint8Array(200).fill(7);
    const hex = Buffer.from(encodeOts({ ...sample, ops: [{ kind: 'prepend', data }, { kind: 'sha256' }] })).toString('hex');
    expect(hex.startsWith(`${HEAD}f1c801${'07'.repeat(200)}08`)).toBe(true);
  });
});

describe('a proof as .ots', () => {
  const fixtures = [
    proofFixture({ rng: seededRng('ots-1'), height: 7, tipHeight: 50, withBlockHeader: true }),
    proofFixture({ rng: seededRng('ots-2'), height: 20, tipHeight: 20, otherChains: 0, otherTxs: 9 }),
  ];

  it.each(fixtures.map((fixture, index) => ({ index, fixture })))('proof $index: round trip; the ops end in the Merkle root; the .block file hashes to the block hash', ({ fixture }) => {
    const timestamp = proofToOts(fixture.proof);
    const bytes = encodeOts(timestamp);
    expect(decodeOts(bytes)).toEqual(timestamp);
    expect(timestamp.bitcoinHeight).toBe(fixture.proof.bitcoinHeight);
    expect(evaluateOps(timestamp.fileDigest, timestamp.ops)).toEqual(decodeBitcoinHeader(fixture.proof.bitcoinHeader).merkleRoot);
    const header = encodeHeader(fixture.chain.headers[fixture.proof.height - 1]!);
    expect(sha256(blockFileBytes(header))).toEqual(fixture.proof.blockHash);
  });

  it('a file cut at any byte is KALIMA_ERR_PROOF_OTS_TRUNCATED', () => {
    const bytes = encodeOts(proofToOts(fixtures[0]!.proof));
    for (let length = 0; length < bytes.length; length++) {
      expect(outcomeOf(() => decodeOts(bytes.subarray(0, length))), `cut at ${length}`).toBe('KALIMA_ERR_PROOF_OTS_TRUNCATED');
    }
    expect(outcomeOf(() => decodeOts(bytes))).toBe('ok');
  });

  it('an argument that would make a message longer than 4096 bytes cannot be written', () => {
    expect(outcomeOf(() => encodeOts({ ...sample, ops: [{ kind: 'append', data: new Uint8Array(4065) }] }))).toBe('KALIMA_ERR_PROOF_OTS_UNSUPPORTED');
    expect(outcomeOf(() => encodeOts({ ...sample, ops: [{ kind: 'append', data: new Uint8Array(4064) }] }))).toBe('ok');
  });
});

describe('.ots parse errors', () => {
  const ROWS: Array<{ name: string; hex: string; code: 'ok' | KalimaErrorCode }> = [
    { name: 'the reference sample', hex: SAMPLE_HEX, code: 'ok' },
    { name: 'a JSON proof', hex: Buffer.from('{"format":"kalima-anchor-proof"}').toString('hex'), code: 'KALIMA_ERR_PROOF_OTS_BAD_MAGIC' },
    { name: 'a changed magic byte', hex: `01${SAMPLE_HEX.slice(2)}`, code: 'KALIMA_ERR_PROOF_OTS_BAD_MAGIC' },
    { name: 'a short file that is not a magic prefix', hex: '0050', code: 'KALIMA_ERR_PROOF_OTS_BAD_MAGIC' },
    { name: 'major version 2', hex: `${MAGIC_HEX}02${HEAD.slice(MAGIC_HEX.length + 2)}${BITCOIN_700000}`, code: 'KALIMA_ERR_PROOF_OTS_UNSUPPORTED' },
    { name: 'a SHA-1 file hash', hex: `${MAGIC_HEX}0102${'11'.repeat(20)}${BITCOIN_700000}`, code: 'KALIMA_ERR_PROOF_OTS_UNSUPPORTED' },
    { name: 'a fork', hex: `${HEAD}ff08${BITCOIN_700000}08${BITCOIN_700000}`, code: 'KALIMA_ERR_PROOF_OTS_UNSUPPORTED' },
    { name: 'a ripemd160 op', hex: `${HEAD}03${BITCOIN_700000}`, code: 'KALIMA_ERR_PROOF_OTS_UNSUPPORTED' },
    { name: 'an unknown op tag', hex: `${HEAD}55${BITCOIN_700000}`, code: 'KALIMA_ERR_PROOF_OTS_UNSUPPORTED' },
    { name: 'a pending (calendar) attestation', hex: `${HEAD}0083dfe30d2ef90c8e${'0b'}${'0a'}${Buffer.from('https://a.b').toString('hex').slice(0, 20)}`, code: 'KALIMA_ERR_PROOF_OTS_UNSUPPORTED' },
    { name: 'an unknown attestation', hex: `${HEAD}0001020304050607080100`, code: 'KALIMA_ERR_PROOF_OTS_UNSUPPORTED' },
    { name: 'a byte after the attestation', hex: `${SAMPLE_HEX}00`, code: 'KALIMA_ERR_PROOF_OTS_TRAILING_BYTES' },
    { name: 'an empty append', hex: `${HEAD}f000${BITCOIN_700000}`, code: 'KALIMA_ERR_PROOF_OTS_MALFORMED' },
    { name: 'an append of 4097 bytes', hex: `${HEAD}f08120${'00'.repeat(4097)}${BITCOIN_700000}`, code: 'KALIMA_ERR_PROOF_OTS_MALFORMED' },
    { name: 'a message growing past 4096 bytes', hex: `${HEAD}f0e01f${'00'.repeat(4064)}f001ff${BITCOIN_700000}`, code: 'KALIMA_ERR_PROOF_OTS_MALFORMED' },
    { name: 'a non-minimal varuint', hex: `${HEAD}f08400aabbccdd${BITCOIN_700000}`, code: 'KALIMA_ERR_PROOF_OTS_MALFORMED' },
    { name: 'an attestation payload with a byte after the height', hex: `${HEAD}000588960d73d71901020700`, code: 'KALIMA_ERR_PROOF_OTS_MALFORMED' },
    { name: 'an empty attestation payload', hex: `${HEAD}000588960d73d7190100`, code: 'KALIMA_ERR_PROOF_OTS_MALFORMED' },
  ];

  it.each(ROWS)('$name: $code', ({ hex, code }) => {
    expect(codeOf(hex)).toBe(code);
  });

  it('the message-length row sits at the limit: 4096 bytes exactly is accepted', () => {
    expect(codeOf(`${HEAD}f0e01f${'00'.repeat(4064)}${BITCOIN_700000}`)).toBe('ok');
  });
});
