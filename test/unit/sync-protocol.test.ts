// The client-node sync protocol: its frames round-trip, every malformed frame is
// KALIMA_ERR_SYNC_BAD_MESSAGE (never another exception), and a filtered block verifies exactly when
// it is what the leader signed: the right height and prevHash, a genesis master's signature, and
// every message's Merkle path to txRoot.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { genesisHash } from '../../src/access/genesis.ts';
import { type BlockHeader, signBlock, txRootOf } from '../../src/ledger/block.ts';
import { proveMessages, verifyFilteredBlock } from '../../src/ledger/filtered-block.ts';
import { Writer } from '../../src/ledger/codec.ts';
import type { CommittedMessage } from '../../src/ledger/message.ts';
import { generateKeyPair } from '../../src/ledger/signature.ts';
import { type ClientFrame, type ServerFrame, SYNC_PREFIXES_MAX, decodeClientFrame, decodeServerFrame, encodeClientFrame, encodeServerFrame } from '../../src/net/sync-protocol.ts';
import { entryOfCommitted } from '../../src/state/filtered.ts';
import { makeChain, makeMessage } from '../support/chain.ts';
import { expectKalimaError, outcomeOf } from './support/kalima-error.ts';

const chain = makeChain('sync-protocol');

function committedAt(index: number, address: string): CommittedMessage {
  return { message: makeMessage(chain, chain.admin, { address, key: `k-${index}`, body: `value ${index}` }), globalSequence: 10 + index, sequence: index, previous: index - 1 };
}

/** A signed block of `count` messages at height 1. */
function block(count: number, signer = chain.nodeKey) {
  const messages = Array.from({ length: count }, (_, index) => committedAt(index, index % 2 === 0 ? '/plant/a' : '/plant/b'));
  const header: BlockHeader = {
    chain: chain.genesis.chain, height: 1, prevHash: genesisHash(chain.genesis), timeMs: 1_700_000_001_000, leader: signer.publicKey, term: 1,
    messageCount: count, txRoot: txRootOf(messages), stateDigest: new Uint8Array(32), mmrRoot: new Uint8Array(32),
  };
  return signBlock(header, messages, signer.secretKey, chain.rng.bytes(32));
}

const expected = { chain: chain.genesis.chain, height: 1, prevHash: genesisHash(chain.genesis), masters: chain.genesis.masters };

describe('sync frames', () => {
  const signed = block(5);
  const entry = entryOfCommitted(signed.messages[0]!, signed.header);
  const clientFrames: ClientFrame[] = [
    { type: 'subscribe', requestId: 1, prefixes: ['/plant', '/alarms/fire'], snapshot: true },
    { type: 'subscribe', requestId: 2 ** 40, prefixes: ['/'], snapshot: false },
    { type: 'submit', requestId: 3, message: signed.messages[1]!.message },
    { type: 'digest', requestId: 4 },
  ];
  const serverFrames: ServerFrame[] = [
    { type: 'error', requestId: 0, code: 'KALIMA_ERR_ACCESS_SUB_DENIED', details: { address: '/secret', device: 'ab' } },
    { type: 'snapshot-begin', requestId: 5, header: signed.header, signature: signed.signature, digest: new Uint8Array(32).fill(7), headCount: 2, entryCount: 1 },
    { type: 'snapshot-begin', requestId: 5, header: undefined, signature: undefined, digest: new Uint8Array(32), headCount: 0, entryCount: 0 },
    { type: 'snapshot-part', requestId: 5, heads: [['/plant/a', 4], ['/plant/b', 0]], entries: [entry] },
    { type: 'snapshot-end', requestId: 5 },
    { type: 'subscribed', requestId: 6, height: 99 },
    { type: 'block', requestId: 6, header: signed.header, signature: signed.signature, messages: proveMessages(signed, [0, 3]) },
    { type: 'block', requestId: 6, header: signed.header, signature: signed.signature, messages: [] },
    { type: 'receipt', requestId: 7, receipt: { messageHash: 'ab'.repeat(32), globalSequence: 12, sequence: 3, previous: -1, height: 9, timeMs: 1_700_000_000_123 } },
    { type: 'digest-answer', requestId: 8, height: 12, digest: new Uint8Array(32).fill(9) },
  ];

  it.each(clientFrames.map((frame) => [frame.type, frame] as const))('client frame %s round-trips', (_type, frame) => {
    expect(decodeClientFrame(encodeClientFrame(frame))).toEqual(frame);
  });

  it.each(serverFrames.map((frame) => [frame.type, frame] as const))('server frame %s round-trips', (_type, frame) => {
    expect(decodeServerFrame(encodeServerFrame(frame))).toEqual(frame);
  });

  const subscribe = (flag: number, prefixes: string[]): Uint8Array => {
    const writer = new Writer().u8(1).u8(1).varint(1).u8(flag).varint(prefixes.length);
    for (const prefix of prefixes) writer.text(prefix);
    return writer.finish();
  };
  const good = encodeClientFrame(clientFrames[0]!);
  const invalid: Array<{ name: string; bytes: Uint8Array }> = [
    { name: 'empty', bytes: new Uint8Array(0) },
    { name: 'unknown version', bytes: Uint8Array.of(2, 1, 1) },
    { name: 'unknown type', bytes: Uint8Array.of(1, 99, 1) },
    { name: 'a server frame type sent by a client', bytes: encodeServerFrame(serverFrames[5]!) },
    { name: 'truncated', bytes: good.subarray(0, good.length - 3) },
    { name: 'trailing bytes', bytes: Uint8Array.of(...good, 0) },
    { name: 'non-canonical request id', bytes: Uint8Array.of(1, 3, 0x81, 0x00) },
    { name: 'snapshot flag not 0 or 1', bytes: subscribe(2, ['/plant']) },
    { name: 'no prefixes', bytes: subscribe(1, []) },
    { name: 'too many prefixes', bytes: subscribe(1, Array.from({ length: SYNC_PREFIXES_MAX + 1 }, (_, index) => `/p${index}`)) },
    { name: 'a submit whose message does not decode', bytes: new Writer().u8(1).u8(2).varint(1).bytes(Uint8Array.of(1, 2, 3)).finish() },
  ];

  it.each(invalid.map((row) => [row.name, row.bytes] as const))('a client frame that is %s is KALIMA_ERR_SYNC_BAD_MESSAGE', (_name, bytes) => {
    expectKalimaError(() => decodeClientFrame(bytes), 'KALIMA_ERR_SYNC_BAD_MESSAGE');
  });

  it('a block frame that claims more messages than its header is refused', () => {
    const bytes = encodeServerFrame({ type: 'block', requestId: 1, header: { ...signed.header, messageCount: 1 }, signature: signed.signature, messages: proveMessages(signed, [0, 1]) });
    expectKalimaError(() => decodeServerFrame(bytes), 'KALIMA_ERR_SYNC_BAD_MESSAGE');
  });

  it('any bytes decode to a frame or fail with KALIMA_ERR_SYNC_BAD_MESSAGE, nothing else', () => {
    const frames = [...clientFrames.map(encodeClientFrame), ...serverFrames.map(encodeServerFrame)];
    fc.assert(fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        // Valid frames with one byte changed or cut short: deep into each decoder.
        fc.tuple(fc.nat(frames.length - 1), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()).map(([which, at, value, cut]) => {
          const bytes = frames[which]!.slice();
          const position = at % bytes.length;
          if (cut) return bytes.subarray(0, position);
          bytes[position] = value;
          return bytes;
        }),
      ),
      (bytes) => {
        for (const decode of [decodeClientFrame, decodeServerFrame]) {
          const outcome = outcomeOf(() => decode(bytes));
          expect(['ok', 'KALIMA_ERR_SYNC_BAD_MESSAGE']).toContain(outcome);
        }
      },
    ), { numRuns: 2_000 });
  });
});

describe('filtered block verification', () => {
  const signed = block(7);
  const frame = (messages = proveMessages(signed, [1, 4, 6])) => ({ header: signed.header, signature: signed.signature, messages });

  it('a filtered block with proofs for some of its messages verifies, for every subset of a block', () => {
    for (const indexes of [[], [0], [6], [1, 4, 6], [0, 1, 2, 3, 4, 5, 6]]) {
      expect(() => verifyFilteredBlock(frame(proveMessages(signed, indexes)), expected), indexes.join(',')).not.toThrow();
    }
  });

  const flip = (bytes: Uint8Array): Uint8Array => {
    const copy = bytes.slice();
    copy[0] = copy[0]! ^ 1;
    return copy;
  };
  const tampered: Array<{ name: string; make: () => Parameters<typeof verifyFilteredBlock>[0]; expect?: Partial<typeof expected> }> = [
    { name: 'a sibling of a proof flipped', make: () => { const f = frame(); f.messages[1] = { ...f.messages[1]!, path: f.messages[1]!.path.map((sibling, level) => (level === 0 ? flip(sibling) : sibling)) }; return f; } },
    { name: 'a proof cut short', make: () => { const f = frame(); f.messages[0] = { ...f.messages[0]!, path: f.messages[0]!.path.slice(1) }; return f; } },
    { name: 'a message body changed', make: () => { const f = frame(); const proven = f.messages[2]!; f.messages[2] = { ...proven, committed: { ...proven.committed, message: { ...proven.committed.message, body: new TextEncoder().encode('forged') } } }; return f; } },
    { name: 'a sequence changed', make: () => { const f = frame(); const proven = f.messages[0]!; f.messages[0] = { ...proven, committed: { ...proven.committed, sequence: proven.committed.sequence + 1 } }; return f; } },
    { name: 'a message moved to another index', make: () => { const f = frame(); f.messages[0] = { ...f.messages[0]!, index: 0 }; return f; } },
    { name: 'indexes out of order', make: () => frame([...proveMessages(signed, [4, 1])]) },
    { name: 'an index past the message count', make: () => { const f = frame(); f.messages[2] = { ...f.messages[2]!, index: 7 }; return f; } },
    { name: 'the header changed after signing', make: () => ({ ...frame(), header: { ...signed.header, timeMs: signed.header.timeMs + 1 } }) },
    { name: 'the signature flipped', make: () => ({ ...frame(), signature: flip(signed.signature) }) },
    { name: 'signed by a key that is not a master', make: () => { const other = block(7, generateKeyPair(chain.rng)); return { header: other.header, signature: other.signature, messages: proveMessages(other, [1]) }; } },
    { name: 'not the next height', make: () => frame(), expect: { height: 2 } },
    { name: 'not after the previous block', make: () => frame(), expect: { prevHash: new Uint8Array(32) } },
    { name: 'another chain', make: () => frame(), expect: { chain: 'otherchain' } },
  ];

  it.each(tampered.map((row) => [row.name, row] as const))('refused when %s (KALIMA_ERR_SYNC_BAD_BLOCK)', (_name, row) => {
    expectKalimaError(() => verifyFilteredBlock(row.make(), { ...expected, ...row.expect }), 'KALIMA_ERR_SYNC_BAD_BLOCK');
  });
});
