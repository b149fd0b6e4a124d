// Validation records (state/validation.ts): who may write them, what they must say, and the rewards
// the chain counts from them; leader reports (consensus/leader-report.ts): signed by a validation node.
import { describe, expect, it } from 'vitest';
import { signReport, openReport, type LeaderReport } from '../../src/consensus/leader-report.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { generateKeyPair, signSchnorr } from '../../src/ledger/signature.ts';
import type { Message } from '../../src/ledger/message.ts';
import type { CacheEntry } from '../../src/state/entry.ts';
import {
  UNITS_PER_KLX, VALIDATIONS_ADDRESS, checkValidation, decodeValidationBody, encodeValidationBody, formatKlx, rewardsOf, validationMessage,
} from '../../src/state/validation.ts';
import { makeChain } from '../support/chain.ts';
import { codeOf } from '../support/errors.ts';

const chain = makeChain('validation-unit');
const validator = generateKeyPair(chain.rng);
const stranger = generateKeyPair(chain.rng);
const validators = new Set([toHex(validator.publicKey)]);
const hash = (byte: number) => new Uint8Array(32).fill(byte);

function record(height: number, validated: number, byte = height): Message {
  const unsigned = validationMessage(chain.genesis.chain, validator.publicKey, height, hash(byte), validated === height ? undefined : { height: 0, hash: hash(0), validated: validated - height });
  return { ...unsigned, signature: new Uint8Array(64) };
}

function entryOf(message: Message): CacheEntry {
  return { address: VALIDATIONS_ADDRESS, key: message.key, value: message.body, globalSequence: 1, sequence: 1, height: 1, timeMs: 0, ttlSeconds: -1, device: message.device, messageHash: hash(9), props: [] };
}


describe('validation records', () => {
  it('the body is exactly one canonical text, and anything else is refused with a stable code', () => {
    const body = encodeValidationBody({ height: 7, hash: hash(0xab), validated: 7 });
    expect(new TextDecoder().decode(body)).toBe(`{"height":7,"hash":"${'ab'.repeat(32)}","validated":7}`);
    expect(decodeValidationBody(body)).toEqual({ height: 7, hash: hash(0xab), validated: 7 });
    for (const text of ['{"height": 7,"hash":"' + 'ab'.repeat(32) + '","validated":7}', `{"height":7,"hash":"${'AB'.repeat(32)}","validated":7}`, '{"height":0,"hash":"' + 'ab'.repeat(32) + '","validated":1}', 'not json', `{"height":7,"hash":"ab","validated":7}`]) {
      expect(codeOf(() => decodeValidationBody(new TextEncoder().encode(text))), text).toBe('KALIMA_ERR_LEDGER_BAD_VALIDATION');
    }
  });

  it('only a validation node writes one, under its own id, for an earlier block, following its previous record and counting the blocks between', () => {
    const context = { height: 11, validators };
    expect(checkValidation(record(10, 10), undefined, context)).toMatchObject({ height: 10, validated: 10 });
    // Not a validation node of the genesis file (an admin, a device, anyone).
    expect(codeOf(() => checkValidation({ ...record(10, 10), device: stranger.publicKey, key: toHex(stranger.publicKey) }, undefined, context))).toBe('KALIMA_ERR_ACCESS_VALIDATORS_ONLY');
    // Under another key, with another nonce, for the block that carries it or later, as a delete, with a TTL.
    expect(codeOf(() => checkValidation({ ...record(10, 10), key: toHex(stranger.publicKey) }, undefined, context))).toBe('KALIMA_ERR_LEDGER_BAD_VALIDATION');
    expect(codeOf(() => checkValidation({ ...record(10, 10), nonce: 3 }, undefined, context))).toBe('KALIMA_ERR_LEDGER_BAD_VALIDATION');
    expect(codeOf(() => checkValidation(record(11, 11), undefined, context))).toBe('KALIMA_ERR_LEDGER_BAD_VALIDATION');
    expect(codeOf(() => checkValidation({ ...record(10, 10), body: new Uint8Array() }, undefined, context))).toBe('KALIMA_ERR_LEDGER_BAD_VALIDATION');
    expect(codeOf(() => checkValidation({ ...record(10, 10), ttlSeconds: 60 }, undefined, context))).toBe('KALIMA_ERR_LEDGER_BAD_VALIDATION');
    // After a record at 4 (4 blocks): a record at 10 counts 10; one that claims more, or goes back, is refused.
    const previous = entryOf(record(4, 4));
    expect(checkValidation(record(10, 10), previous, context).validated).toBe(10);
    expect(codeOf(() => checkValidation(record(10, 12), previous, context))).toBe('KALIMA_ERR_LEDGER_BAD_VALIDATION');
    expect(codeOf(() => checkValidation(record(4, 8), previous, context))).toBe('KALIMA_ERR_LEDGER_BAD_VALIDATION');
    // It must cover a block after the one that carried the previous record (no records of records).
    const carriedAt10 = { ...entryOf(record(4, 4)), height: 10 };
    expect(codeOf(() => checkValidation(record(10, 10), carriedAt10, context))).toBe('KALIMA_ERR_LEDGER_BAD_VALIDATION');
    expect(checkValidation(record(10, 10), { ...carriedAt10, height: 9 }, context).validated).toBe(10);
    // A first record counts from the chain's start.
    expect(codeOf(() => checkValidation(record(10, 3), undefined, context))).toBe('KALIMA_ERR_LEDGER_BAD_VALIDATION');
    // Where this node knows the block at that height, the hash must be its hash.
    expect(checkValidation(record(10, 10, 5), undefined, { ...context, blockHashAt: (height) => (height === 10 ? hash(5) : undefined) }).height).toBe(10);
    expect(codeOf(() => checkValidation(record(10, 10, 6), undefined, { ...context, blockHashAt: (height) => (height === 10 ? hash(5) : undefined) }))).toBe('KALIMA_ERR_LEDGER_BAD_VALIDATION');
  });

  it('rewards: 1 KLX per block for each master, 0.1 KLX per validated block for each validation node, in whole units', () => {
    const masters = ['aa', 'bb'];
    const recordOf = (id: string) => (id === toHex(validator.publicKey) ? entryOf(record(30, 30)) : undefined);
    const rewards = rewardsOf(42, masters, [toHex(validator.publicKey), 'cc'], recordOf);
    expect(rewards.masters).toEqual(masters.map((id) => ({ id, blocks: 42, units: 42 * UNITS_PER_KLX, klx: '42' })));
    expect(rewards.validators).toEqual([
      { id: toHex(validator.publicKey), validated: 30, lastHeight: 30, units: 3 * UNITS_PER_KLX, klx: '3' },
      { id: 'cc', validated: 0, lastHeight: 0, units: 0, klx: '0' },
    ]);
    expect(formatKlx(UNITS_PER_KLX / 10)).toBe('0.1');
    expect(formatKlx(12 * UNITS_PER_KLX + 30_000_000)).toBe('12.3');
    expect(formatKlx(1)).toBe('0.00000001');
  });
});

describe('leader reports', () => {
  const report: LeaderReport = { chain: chain.genesis.chain, leader: 'ab'.repeat(32), term: 4, height: 9, reason: 'late', detail: '6000 ms', validator: toHex(validator.publicKey), timeMs: 1 };

  it('a validation node\'s signed report opens; anyone else\'s, a tampered one, or one for another chain is refused', () => {
    const bytes = signReport(report, validator.secretKey, chain.rng.bytes(32));
    expect(openReport(bytes, chain.genesis.chain, validators)).toEqual(report);
    expect(codeOf(() => openReport(bytes, 'otherchain', validators))).toBe('KALIMA_ERR_CONSENSUS_BAD_REPORT');
    const tampered = new TextEncoder().encode(new TextDecoder().decode(bytes).replace('"term":4', '"term":5'));
    expect(codeOf(() => openReport(tampered, chain.genesis.chain, validators))).toBe('KALIMA_ERR_CONSENSUS_BAD_REPORT');
    const byStranger = signReport({ ...report, validator: toHex(stranger.publicKey) }, stranger.secretKey, chain.rng.bytes(32));
    expect(codeOf(() => openReport(byStranger, chain.genesis.chain, validators))).toBe('KALIMA_ERR_CONSENSUS_BAD_REPORT');
    const forged = new TextEncoder().encode(JSON.stringify({ ...report, signature: toHex(signSchnorr(hash(1), stranger.secretKey, hash(2))) }));
    expect(codeOf(() => openReport(forged, chain.genesis.chain, validators))).toBe('KALIMA_ERR_CONSENSUS_BAD_REPORT');
    expect(codeOf(() => openReport(new TextEncoder().encode('{'), chain.genesis.chain, validators))).toBe('KALIMA_ERR_CONSENSUS_BAD_REPORT');
  });
});
