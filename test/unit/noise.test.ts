// BOLT 8 against the test vectors published in lightning/bolts 08-transport.md (appendix A): the
// initiator's and responder's handshakes byte for byte, each failure case with its act and reason,
// and the message-encryption test through two key rotations. Then properties the vectors do not
// cover: any chunking of the byte stream, tampering, and the size bound.
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../src/ledger/hash.ts';
import { ACT_ONE_BYTES, MESSAGE_BYTES_MAX, NoiseInitiator, NoiseResponder, NoiseTransport, staticKeyFromSecret } from '../../src/net/noise.ts';
import { seededRng } from '../support/chain.ts';

const hex = (text: string): Uint8Array => fromHex(text.replace(/^0x/, ''))!;
const repeat = (byte: string): Uint8Array => hex(byte.repeat(32));

const INITIATOR_STATIC = staticKeyFromSecret(repeat('11'));
const INITIATOR_EPHEMERAL = repeat('12');
const RESPONDER_STATIC = staticKeyFromSecret(repeat('21'));
const RESPONDER_EPHEMERAL = repeat('22');
const rng = seededRng('noise');

const ACT_ONE = '0x00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a';
const ACT_TWO = '0x0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae';
const ACT_THREE = '0x00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba';
const INITIATOR_SENDING_KEY = '969ab31b4d288cedf6218839b27a3e2140827047f2c0f01bf5c04435d43511a9';
const INITIATOR_RECEIVING_KEY = 'bb9020b8965f4df047e07f955f3c4b88418984aadc5cdb35096b9ea8fa5c3442';
const FINAL_CHAINING_KEY = '919219dbb2920afa8db80f9a51787a840bcf111ed8d588caf9ab4be716e42b01';

const keysOf = (transport: NoiseTransport): { sending: string; receiving: string } => {
  const inner = transport as unknown as { sending: { key: Uint8Array }; receiving: { key: Uint8Array } };
  return { sending: toHex(inner.sending.key), receiving: toHex(inner.receiving.key) };
};

const initiator = (): NoiseInitiator => new NoiseInitiator(INITIATOR_STATIC, RESPONDER_STATIC.publicKey, rng, INITIATOR_EPHEMERAL);
const responder = (): NoiseResponder => new NoiseResponder(RESPONDER_STATIC, rng, RESPONDER_EPHEMERAL);

describe('BOLT 8 handshake: the specification test vectors', () => {
  it('derives the static keys of the vectors', () => {
    expect(toHex(INITIATOR_STATIC.publicKey)).toBe('034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa');
    expect(toHex(RESPONDER_STATIC.publicKey)).toBe('028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7');
  });

  it('initiator: successful handshake, byte for byte, and the final keys', () => {
    const side = initiator();
    expect(`0x${toHex(side.actOne())}`).toBe(ACT_ONE);
    const { actThree, transport } = side.actTwoThenThree(hex(ACT_TWO));
    expect(`0x${toHex(actThree)}`).toBe(ACT_THREE);
    expect(keysOf(transport)).toEqual({ sending: INITIATOR_SENDING_KEY, receiving: INITIATOR_RECEIVING_KEY });
    expect(toHex(transport.remoteStatic)).toBe(toHex(RESPONDER_STATIC.publicKey));
  });

  it('responder: successful handshake, byte for byte, the final keys and the initiator it learnt', () => {
    const side = responder();
    expect(`0x${toHex(side.actOneThenTwo(hex(ACT_ONE)))}`).toBe(ACT_TWO);
    const { remoteStatic, transport } = side.actThree(hex(ACT_THREE));
    expect(toHex(remoteStatic)).toBe(toHex(INITIATOR_STATIC.publicKey));
    // The responder's sending key is the initiator's receiving key, and the other way round.
    expect(keysOf(transport)).toEqual({ sending: INITIATOR_RECEIVING_KEY, receiving: INITIATOR_SENDING_KEY });
  });

  const initiatorFailures: Array<[string, string, Record<string, unknown>]> = [
    ['act2 short read', '0x0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730', { act: 'act2', reason: 'short read' }],
    ['act2 bad version', '0x0102466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae', { act: 'act2', reason: 'bad version', version: 1 }],
    ['act2 bad key serialization', '0x0004466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae', { act: 'act2', reason: 'bad public key' }],
    ['act2 bad MAC', '0x0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730af', { act: 'act2', reason: 'bad tag' }],
  ];
  for (const [name, actTwo, details] of initiatorFailures) {
    it(`initiator: ${name} is refused with its reason`, () => {
      const side = initiator();
      expect(`0x${toHex(side.actOne())}`).toBe(ACT_ONE);
      expect(() => side.actTwoThenThree(hex(actTwo))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_NET_HANDSHAKE_FAILED', details: expect.objectContaining(details) }));
    });
  }

  const responderActOneFailures: Array<[string, string, Record<string, unknown>]> = [
    ['act1 short read', '0x00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c', { act: 'act1', reason: 'short read' }],
    ['act1 bad version', '0x01036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a', { act: 'act1', reason: 'bad version', version: 1 }],
    ['act1 bad key serialization', '0x00046360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a', { act: 'act1', reason: 'bad public key' }],
    ['act1 bad MAC', '0x00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6b', { act: 'act1', reason: 'bad tag' }],
  ];
  for (const [name, actOne, details] of responderActOneFailures) {
    it(`responder: ${name} is refused with its reason`, () => {
      expect(() => responder().actOneThenTwo(hex(actOne))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_NET_HANDSHAKE_FAILED', details: expect.objectContaining(details) }));
    });
  }

  const responderActThreeFailures: Array<[string, string, Record<string, unknown>]> = [
    ['act3 bad version', '0x01b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba', { act: 'act3', reason: 'bad version', version: 1 }],
    ['act3 short read', '0x00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139', { act: 'act3', reason: 'short read' }],
    ['act3 bad MAC for ciphertext', '0x00c9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba', { act: 'act3', reason: 'bad ciphertext' }],
    ['act3 bad rs', '0x00bfe3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa2235536ad09a8ee351870c2bb7f78b754a26c6cef79a98d25139c856d7efd252c2ae73c', { act: 'act3', reason: 'bad public key' }],
    ['act3 bad MAC', '0x00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139bb', { act: 'act3', reason: 'bad tag' }],
  ];
  for (const [name, actThree, details] of responderActThreeFailures) {
    it(`responder: ${name} is refused with its reason`, () => {
      const side = responder();
      expect(`0x${toHex(side.actOneThenTwo(hex(ACT_ONE)))}`).toBe(ACT_TWO);
      expect(() => side.actThree(hex(actThree))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_NET_HANDSHAKE_FAILED', details: expect.objectContaining(details) }));
    });
  }

  it('refuses acts out of order', () => {
    const side = initiator();
    expect(() => side.actTwoThenThree(hex(ACT_TWO))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_NET_HANDSHAKE_FAILED', details: expect.objectContaining({ reason: 'out of order' }) }));
    expect(() => responder().actThree(hex(ACT_THREE))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_NET_HANDSHAKE_FAILED', details: expect.objectContaining({ reason: 'out of order' }) }));
  });
});

describe('BOLT 8 messages', () => {
  const handshake = (): { initiator: NoiseTransport; responder: NoiseTransport } => {
    const left = initiator();
    const right = responder();
    const actTwo = right.actOneThenTwo(left.actOne());
    const { actThree, transport } = left.actTwoThenThree(actTwo);
    return { initiator: transport, responder: right.actThree(actThree).transport };
  };

  it('encrypts "hello" 1,001 times as the specification shows, through two key rotations', () => {
    const { initiator: sender, responder: receiver } = handshake();
    expect(toHex((sender as unknown as { sending: { chainingKey: Uint8Array } }).sending.chainingKey)).toBe(FINAL_CHAINING_KEY);
    const expected: Record<number, string> = {
      0: 'cf2b30ddf0cf3f80e7c35a6e6730b59fe802473180f396d88a8fb0db8cbcf25d2f214cf9ea1d95',
      1: '72887022101f0b6753e0c7de21657d35a4cb2a1f5cde2650528bbc8f837d0f0d7ad833b1a256a1',
      500: '178cb9d7387190fa34db9c2d50027d21793c9bc2d40b1e14dcf30ebeeeb220f48364f7a4c68bf8',
      501: '1b186c57d44eb6de4c057c49940d79bb838a145cb528d6e8fd26dbe50a60ca2c104b56b60e45bd',
      1000: '4a2f3cc3b5e78ddb83dcb426d9863d9d9a723b0337c89dd0b005d89f8d3c05c52b76b29b740f09',
      1001: '2ecd8c8a5629d0d02ab457a0fdd0f7b90a192cd46be5ecb6ca570bfc5e268338b1a16cf4ef2d36',
    };
    const hello = new TextEncoder().encode('hello');
    for (let index = 0; index <= 1001; index++) {
      const frame = sender.encrypt(hello);
      if (expected[index] !== undefined) expect(toHex(frame), `output ${index}`).toBe(expected[index]);
      // The other side follows the same rotations.
      expect(receiver.decrypt(frame).map((message) => new TextDecoder().decode(message))).toEqual(['hello']);
    }
  });

  it('reads messages from a byte stream cut anywhere, in both directions', () => {
    const { initiator: left, responder: right } = handshake();
    const random = seededRng('chunks');
    const messages = Array.from({ length: 200 }, (_, index) => random.bytes(index % 7 === 0 ? 0 : (index * 37) % 3000));
    for (const [sender, receiver] of [[left, right], [right, left]] as const) {
      const stream = Buffer.concat(messages.map((message) => sender.encrypt(message)));
      const received: Uint8Array[] = [];
      for (let at = 0; at < stream.length;) {
        const size = 1 + (random.bytes(1)[0]! % 97);
        received.push(...receiver.decrypt(stream.subarray(at, at + size)));
        at += size;
      }
      expect(received.map(toHex)).toEqual(messages.map(toHex));
    }
  });

  it('refuses a tampered or replayed frame, and nothing after it', () => {
    for (const position of [0, 5, 17, 18, 25, 40]) {
      const { initiator: sender, responder: receiver } = handshake();
      const frame = sender.encrypt(new TextEncoder().encode('a reading'));
      frame[position]! ^= 1;
      expect(() => receiver.decrypt(frame)).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_NET_BAD_FRAME' }));
      expect(() => receiver.decrypt(sender.encrypt(new Uint8Array(1)))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_NET_BAD_FRAME' }));
    }
    const { initiator: sender, responder: receiver } = handshake();
    const frame = sender.encrypt(new Uint8Array(3));
    expect(receiver.decrypt(frame)).toHaveLength(1);
    expect(() => receiver.decrypt(frame)).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_NET_BAD_FRAME' }));
  });

  it('bounds a message at 65,535 bytes', () => {
    const { initiator: sender, responder: receiver } = handshake();
    const largest = new Uint8Array(MESSAGE_BYTES_MAX).fill(7);
    expect(receiver.decrypt(sender.encrypt(largest))[0]).toHaveLength(MESSAGE_BYTES_MAX);
    expect(() => sender.encrypt(new Uint8Array(MESSAGE_BYTES_MAX + 1))).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_NET_MESSAGE_TOO_LARGE' }));
  });

  it('a handshake with fresh random ephemeral keys agrees on keys, and a wrong responder key fails it', () => {
    const left = new NoiseInitiator(INITIATOR_STATIC, RESPONDER_STATIC.publicKey, seededRng('fresh-a'));
    const right = new NoiseResponder(RESPONDER_STATIC, seededRng('fresh-b'));
    const actOne = left.actOne();
    expect(actOne).toHaveLength(ACT_ONE_BYTES);
    const { actThree, transport } = left.actTwoThenThree(right.actOneThenTwo(actOne));
    const accepted = right.actThree(actThree);
    expect(toHex(accepted.remoteStatic)).toBe(toHex(INITIATOR_STATIC.publicKey));
    expect(accepted.transport.decrypt(transport.encrypt(Uint8Array.of(1, 2, 3)))).toEqual([Uint8Array.of(1, 2, 3)]);

    // An initiator that pinned another key for this responder cannot get past act one.
    const impostor = staticKeyFromSecret(repeat('31'));
    const misled = new NoiseInitiator(INITIATOR_STATIC, impostor.publicKey, seededRng('fresh-c'));
    expect(() => new NoiseResponder(RESPONDER_STATIC, seededRng('fresh-d')).actOneThenTwo(misled.actOne())).toThrow(expect.objectContaining({ details: expect.objectContaining({ act: 'act1', reason: 'bad tag' }) }));
  });
});
