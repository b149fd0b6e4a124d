import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Writer } from '../../src/ledger/codec.ts';
import {
  type Block, type BlockHeader, blockHash, blockOverheadBytes, checkBlockIntegrity, decodeBlock, encodeBlock, encodeHeader,
  signBlock, txRootOf,
} from '../../src/ledger/block.ts';
import { BLOCK_BYTES_MAX } from '../../src/ledger/limits.ts';
import { type CommittedMessage, type Message, encodeCommitted, signMessage } from '../../src/ledger/message.ts';
import { generateKeyPair, verifySchnorr } from '../../src/ledger/signature.ts';
import { expectKalimaError, outcomeOf } from './support/kalima-error.ts';
import { bytesArb, chainArb, messageArb, testDevices } from './support/message-arbitraries.ts';
import { hex, seededRng } from './support/seeded-rng.ts';

const leader = generateKeyPair(seededRng('leader'));
const otherLeader = generateKeyPair(seededRng('other-leader'));
const device = testDevices[0]!;
const CHAIN = 'plant-1';

function message(nonce: number, body: Uint8Array = Uint8Array.of(nonce & 0xff)): Message {
  return signMessage(
    { chain: CHAIN, address: '/sensors/plant1', key: `k${nonce}`, body, ttlSeconds: -1, props: [], device: device.publicKey, nonce },
    device.secretKey,
    new Uint8Array(32),
  );
}

function committedList(bodies: Uint8Array[]): CommittedMessage[] {
  return bodies.map((body, index) => ({ message: message(index, body), globalSequence: 100 + index, sequence: index, previous: index - 1 }));
}

const PREV_HASH = new Uint8Array(32).fill(0xa1);
const MMR_ROOT = new Uint8Array(32).fill(0xb2);

function headerFor(messages: readonly CommittedMessage[], change: Partial<BlockHeader> = {}): BlockHeader {
  return {
    chain: CHAIN, height: 5, prevHash: PREV_HASH, timeMs: 1_700_000_000_000, leader: leader.publicKey, term: 3,
    messageCount: messages.length, txRoot: txRootOf(messages), stateDigest: new Uint8Array(32).fill(0xc3), mmrRoot: MMR_ROOT,
    ...change,
  };
}

function makeBlock(messages: CommittedMessage[], change: Partial<BlockHeader> = {}): Block {
  return signBlock(headerFor(messages, change), messages, leader.secretKey, new Uint8Array(32));
}

function encodedSize(block: Block): number {
  return encodeHeader(block.header).length + block.messages.reduce((sum, committed) => sum + encodeCommitted(committed).length, 0) + 64;
}

describe('encode and decode', () => {
  const headerArb = fc.record({
    chain: chainArb,
    height: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    prevHash: bytesArb(32),
    timeMs: fc.maxSafeNat(),
    term: fc.maxSafeNat(),
    stateDigest: bytesArb(32),
    mmrRoot: bytesArb(32),
  });
  const committedArb = fc.record({
    message: messageArb,
    globalSequence: fc.maxSafeNat(),
    sequence: fc.maxSafeNat(),
    previous: fc.integer({ min: -1, max: 1_000_000 }),
  });

  it('round trips any block up to 16384 bytes and refuses any larger one', () => {
    fc.assert(fc.property(headerArb, fc.array(committedArb, { maxLength: 4 }), bytesArb(32), (fields, messages, auxRand) => {
      const header: BlockHeader = { ...fields, leader: leader.publicKey, messageCount: messages.length, txRoot: txRootOf(messages) };
      const block = signBlock(header, messages, leader.secretKey, auxRand);
      const size = encodedSize(block);
      expect(encodeHeader(header).length + 64).toBeLessThanOrEqual(blockOverheadBytes(header.chain));
      if (size > BLOCK_BYTES_MAX) {
        expectKalimaError(() => encodeBlock(block), 'KALIMA_ERR_LEDGER_BLOCK_TOO_LARGE');
        return;
      }
      const bytes = encodeBlock(block);
      expect(bytes.length).toBe(size);
      const decoded = decodeBlock(bytes);
      expect(decoded.header).toEqual(header);
      expect(decoded.signature).toEqual(block.signature);
      expect(decoded.messages.map((committed) => hex(encodeCommitted(committed)))).toEqual(messages.map((committed) => hex(encodeCommitted(committed))));
      expect(encodeBlock(decoded)).toEqual(bytes);
      expect(verifySchnorr(blockHash(decoded.header), decoded.header.leader, decoded.signature)).toBe(true);
    }), { numRuns: 100 });
  });

  it('every truncation gives KALIMA_ERR_CODEC_TRUNCATED; an extra byte gives KALIMA_ERR_CODEC_TRAILING_BYTES', () => {
    const bytes = encodeBlock(makeBlock(committedList([Uint8Array.of(1), Uint8Array.of(2, 3)])));
    for (let length = 0; length < bytes.length; length++) {
      expect(outcomeOf(() => decodeBlock(bytes.subarray(0, length))), `cut at ${length}`).toBe('KALIMA_ERR_CODEC_TRUNCATED');
    }
    expectKalimaError(() => decodeBlock(Uint8Array.of(...bytes, 0)), 'KALIMA_ERR_CODEC_TRAILING_BYTES');
  });

  it('refuses an unknown header version', () => {
    const bytes = encodeBlock(makeBlock([]));
    bytes[0] = 2;
    expectKalimaError(() => decodeBlock(bytes), 'KALIMA_ERR_CODEC_UNKNOWN_VERSION');
  });

  it('refuses a header announcing more than 512 messages before reading them', () => {
    const header = encodeHeader(headerFor([], { messageCount: 513 }));
    const bytes = new Writer().raw(header).raw(new Uint8Array(64)).finish();
    expectKalimaError(() => decodeBlock(bytes), 'KALIMA_ERR_CODEC_OUT_OF_RANGE');
  });
});

describe('the 16384-byte bound', () => {
  // Two messages: the first with an 8192-byte body, the second sized so the block lands exactly on the bound.
  const blockWithSecondBody = (bytes: number): Block => makeBlock(committedList([new Uint8Array(8192).fill(1), new Uint8Array(bytes).fill(2)]));
  // From 128 to 16383 bytes the body's length prefix is two bytes, so the size grows one for one.
  const exactBody = 200 + BLOCK_BYTES_MAX - encodedSize(blockWithSecondBody(200));

  it('a block of exactly 16384 bytes encodes and decodes', () => {
    expect(exactBody).toBeGreaterThan(128);
    const block = blockWithSecondBody(exactBody);
    expect(encodedSize(block)).toBe(BLOCK_BYTES_MAX);
    const bytes = encodeBlock(block);
    expect(bytes.length).toBe(BLOCK_BYTES_MAX);
    expect(decodeBlock(bytes).header).toEqual(block.header);
  });

  it('a block of 16385 bytes is refused by the encoder with KALIMA_ERR_LEDGER_BLOCK_TOO_LARGE', () => {
    const block = blockWithSecondBody(exactBody + 1);
    expect(encodedSize(block)).toBe(BLOCK_BYTES_MAX + 1);
    const error = expectKalimaError(() => encodeBlock(block), 'KALIMA_ERR_LEDGER_BLOCK_TOO_LARGE');
    expect(error.details).toMatchObject({ bytes: BLOCK_BYTES_MAX + 1, max: BLOCK_BYTES_MAX });
  });

  it('16385 hand-built bytes are refused by the decoder with KALIMA_ERR_LEDGER_BLOCK_TOO_LARGE before parsing', () => {
    const bytes = encodeBlock(blockWithSecondBody(exactBody));
    expectKalimaError(() => decodeBlock(Uint8Array.of(...bytes, 0)), 'KALIMA_ERR_LEDGER_BLOCK_TOO_LARGE');
    expectKalimaError(() => decodeBlock(new Uint8Array(BLOCK_BYTES_MAX + 1)), 'KALIMA_ERR_LEDGER_BLOCK_TOO_LARGE');
    expectKalimaError(() => decodeBlock(new Uint8Array(BLOCK_BYTES_MAX)), 'KALIMA_ERR_CODEC_UNKNOWN_VERSION');
  });
});

describe('checkBlockIntegrity', () => {
  const messages = committedList([Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(3)]);
  const expected = { chain: CHAIN, height: 5, prevHash: PREV_HASH, mmrRoot: MMR_ROOT };

  it('accepts a well-formed block, also after an encode/decode trip', () => {
    const block = makeBlock(messages);
    expect(() => checkBlockIntegrity(block, expected)).not.toThrow();
    expect(() => checkBlockIntegrity(decodeBlock(encodeBlock(block)), expected)).not.toThrow();
    expect(() => checkBlockIntegrity(makeBlock([]), expected)).not.toThrow();
  });

  const resign = (block: Block, secretKey = leader.secretKey): Block => signBlock(block.header, block.messages, secretKey, new Uint8Array(32));
  const flip = (bytes: Uint8Array): Uint8Array => Uint8Array.from(bytes, (byte, index) => (index === 0 ? byte ^ 1 : byte));

  const rows: Array<{ name: string; block: () => Block; expect?: Partial<typeof expected>; reason: string }> = [
    { name: 'wrong chain', block: () => makeBlock(messages, { chain: 'plant-2' }), reason: 'wrong chain' },
    { name: 'expected another chain', block: () => makeBlock(messages), expect: { chain: 'plant-2' }, reason: 'wrong chain' },
    { name: 'height one ahead', block: () => makeBlock(messages, { height: 6 }), reason: 'wrong height' },
    { name: 'height repeated', block: () => makeBlock(messages), expect: { height: 6 }, reason: 'wrong height' },
    { name: 'wrong prevHash in the header', block: () => makeBlock(messages, { prevHash: flip(PREV_HASH) }), reason: 'prevHash does not match the previous block' },
    { name: 'expected another prevHash', block: () => makeBlock(messages), expect: { prevHash: new Uint8Array(32) }, reason: 'prevHash does not match the previous block' },
    { name: 'wrong mmrRoot', block: () => makeBlock(messages, { mmrRoot: flip(MMR_ROOT) }), reason: 'mmrRoot does not match the earlier blocks' },
    { name: 'messageCount too high', block: () => makeBlock(messages, { messageCount: 4 }), reason: 'messageCount does not match' },
    { name: 'a message dropped after signing', block: () => ({ ...makeBlock(messages), messages: messages.slice(0, 2) }), reason: 'messageCount does not match' },
    { name: 'wrong txRoot, correctly signed', block: () => makeBlock(messages, { txRoot: txRootOf(messages.slice(0, 2)) }), reason: 'txRoot does not match the messages' },
    { name: 'messages reordered after signing', block: () => ({ ...makeBlock(messages), messages: [messages[1]!, messages[0]!, messages[2]!] }), reason: 'txRoot does not match the messages' },
    { name: 'a message replaced after signing', block: () => ({ ...makeBlock(messages), messages: [...messages.slice(0, 2), { ...messages[2]!, globalSequence: 999 }] }), reason: 'txRoot does not match the messages' },
    { name: 'a flipped signature bit', block: () => { const block = makeBlock(messages); return { ...block, signature: flip(block.signature) }; }, reason: 'the leader signature does not verify' },
    { name: 'signed by another key', block: () => resign(makeBlock(messages), otherLeader.secretKey), reason: 'the leader signature does not verify' },
    { name: 'leader field swapped after signing', block: () => { const block = makeBlock(messages); return { ...block, header: { ...block.header, leader: otherLeader.publicKey } }; }, reason: 'the leader signature does not verify' },
    { name: 'timeMs changed after signing', block: () => { const block = makeBlock(messages); return { ...block, header: { ...block.header, timeMs: block.header.timeMs + 1 } }; }, reason: 'the leader signature does not verify' },
    { name: 'term changed after signing', block: () => { const block = makeBlock(messages); return { ...block, header: { ...block.header, term: 4 } }; }, reason: 'the leader signature does not verify' },
    { name: 'stateDigest changed after signing', block: () => { const block = makeBlock(messages); return { ...block, header: { ...block.header, stateDigest: new Uint8Array(32) } }; }, reason: 'the leader signature does not verify' },
    { name: 'leader key not on the curve', block: () => { const block = makeBlock(messages); return { ...block, header: { ...block.header, leader: new Uint8Array(32).fill(0xff) } }; }, reason: 'the leader signature does not verify' },
  ];

  it.each(rows)('$name: KALIMA_ERR_LEDGER_BAD_BLOCK ($reason)', (row) => {
    const block = row.block();
    const error = expectKalimaError(() => checkBlockIntegrity(block, { ...expected, ...row.expect }), 'KALIMA_ERR_LEDGER_BAD_BLOCK');
    expect(error.details.reason).toBe(row.reason);
    expect(error.details.height).toBe(block.header.height);
  });

  it('the block hash covers every header field', () => {
    const header = headerFor(messages);
    const changes: Array<Partial<BlockHeader>> = [
      { chain: 'plant-2' }, { height: 6 }, { prevHash: new Uint8Array(32) }, { timeMs: header.timeMs + 1 },
      { leader: otherLeader.publicKey }, { term: 4 }, { messageCount: 2 }, { txRoot: new Uint8Array(32) },
      { stateDigest: new Uint8Array(32) }, { mmrRoot: new Uint8Array(32) },
    ];
    const hashes = new Set([hex(blockHash(header)), ...changes.map((change) => hex(blockHash({ ...header, ...change })))]);
    expect(hashes.size).toBe(changes.length + 1);
  });
});
