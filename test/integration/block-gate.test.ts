// The follower's block gate (src/consensus/block-gate.ts): blocks a real node produced, offered as
// Raft entries to a follower that starts from the same genesis. It admits the chain as produced and
// reaches the leader's state without executing anything twice, and refuses, with the reason, a block
// that does not follow: tampered, out of order, of the wrong term or leader, with a bad signature.
import { describe, expect, it } from 'vitest';
import { type Block, encodeBlock, signBlock, txRootOf } from '../../src/ledger/block.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { signMessage } from '../../src/ledger/message.ts';
import { generateKeyPair } from '../../src/ledger/signature.ts';
import { BlockGate } from '../../src/consensus/block-gate.ts';
import type { Entry } from '../../src/consensus/raft.ts';
import { InlineVerifier, type SignatureVerifier } from '../../src/node/verifier.ts';
import type { MemCache } from '../../src/state/memcache.ts';
import { type TestChain, createAddress, makeChain, makeMessage, openNode, registerDevice } from '../support/chain.ts';

async function producedChain(): Promise<{ chain: TestChain; blocks: Block[]; leaderCache: MemCache }> {
  const chain = makeChain('gate');
  const node = await openNode(chain);
  await createAddress(node, chain, '/plant');
  const device = await registerDevice(node, chain, { pub: ['/plant'], sub: ['/plant'] });
  for (let round = 0; round < 3; round++) {
    await Promise.all(Array.from({ length: 5 }, (_, index) => node.submit(makeMessage(chain, device, { address: '/plant', key: `k${index}`, body: `r${round}` }))));
  }
  const blocks: Block[] = [];
  for (let height = 1; height <= node.height; height++) blocks.push((await node.getBlock(height))!);
  const leaderCache = node.cache;
  await node.close();
  return { chain, blocks, leaderCache };
}

/** A follower at genesis, with a gate, and a way to apply what it admitted. */
async function follower(chain: TestChain, verifier: SignatureVerifier = new InlineVerifier()) {
  const empty = await openNode(chain);
  const cache = empty.cache;
  const gate = new BlockGate({ genesis: chain.genesis, verifier, cache, applied: { index: 0, tip: empty.tipRecord } });
  const apply = (index: number): void => {
    const admitted = gate.get(index)!;
    if (admitted.block !== undefined) cache.apply(admitted.block.changes);
    gate.applied(index);
  };
  return { gate, cache, apply, close: () => empty.close() };
}

const entries = (blocks: Block[], term = 1, first = 1): Entry[] => blocks.map((block, position) => ({ index: first + position, term, data: encodeBlock(block) }));

describe('the follower block gate', () => {
  it('admits the chain as produced, and applying what it admitted reaches the leader\'s state', async () => {
    const { chain, blocks, leaderCache } = await producedChain();
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    const { gate, cache, apply, close } = await follower(chain);
    const leader = { term: 1, keyHex: toHex(chain.nodeKey.publicKey) };
    // A new leader's empty entry first, then the blocks; admitted before anything is applied.
    const log: Entry[] = [{ index: 1, term: 1, data: new Uint8Array(0) }, ...entries(blocks, 1, 2)];
    expect(await gate.admit(log, leader)).toEqual({ admitted: log.length, refusal: undefined });
    // Offered again (a retransmission): admitted without a second check.
    expect(await gate.admit(log.slice(2), leader)).toMatchObject({ admitted: log.length - 2 });
    for (const entry of log) apply(entry.index);
    expect(cache.digest()).toEqual(leaderCache.digest());
    await close();
  });

  it('checks message signatures in the verifier it was given, all of a block\'s at once', async () => {
    const { chain, blocks } = await producedChain();
    let calls = 0;
    const inline = new InlineVerifier();
    const counting: SignatureVerifier = { verify: (...args) => (calls++, inline.verify(...args)), close: async () => undefined };
    const { gate, close } = await follower(chain, counting);
    await gate.admit(entries(blocks), { term: 1, keyHex: toHex(chain.nodeKey.publicKey) });
    expect(calls).toBe(blocks.reduce((sum, block) => sum + block.messages.length, 0));
    await close();
  });

  const cases: Array<{ name: string; offer: (blocks: Block[], chain: TestChain) => Entry[]; index: number; reason: RegExp }> = [
    {
      name: 'a block whose message body was changed',
      offer: (blocks) => {
        const log = entries(blocks);
        const data = log[2]!.data.slice();
        data[data.length - 80]! ^= 1;
        log[2] = { ...log[2]!, data };
        return log;
      },
      index: 3,
      reason: /txRoot|signature|does not|decode|encoding|KALIMA_ERR_CODEC/,
    },
    { name: 'a block out of order (one skipped)', offer: (blocks) => [entries(blocks)[0]!, { ...entries(blocks)[2]!, index: 2 }], index: 2, reason: /height|prevHash/ },
    { name: 'a block whose header term is not its entry\'s', offer: (blocks) => entries(blocks, 2), index: 1, reason: /term/ },
    {
      name: 'a message with another device\'s signature, in a block the leader re-signed',
      offer: (blocks, chain) => {
        const target = blocks[blocks.length - 1]!;
        const intruder = generateKeyPair(chain.rng);
        const [first, ...rest] = target.messages;
        const forgedMessage = { ...first!, message: { ...first!.message, signature: signMessage({ ...first!.message }, intruder.secretKey, new Uint8Array(32)).signature } };
        const messages = [forgedMessage, ...rest];
        const forged = signBlock({ ...target.header, txRoot: txRootOf(messages) }, messages, chain.nodeKey.secretKey, new Uint8Array(32));
        return entries([...blocks.slice(0, -1), forged]);
      },
      index: 0, // set below: the last
      reason: /message signature/,
    },
  ];
  for (const testCase of cases) {
    it(`refuses ${testCase.name}, and admits the entries before it`, async () => {
      const { chain, blocks } = await producedChain();
      const { gate, close } = await follower(chain);
      const log = testCase.offer(blocks, chain);
      const index = testCase.index === 0 ? log.length : testCase.index;
      const admission = await gate.admit(log, { term: testCase.name.includes('term') ? 2 : 1, keyHex: toHex(chain.nodeKey.publicKey) });
      expect(admission.admitted).toBe(index - 1);
      expect(admission.refusal).toMatchObject({ code: 'KALIMA_ERR_CONSENSUS_BAD_ENTRY', details: { index } });
      expect(JSON.stringify(admission.refusal!.details)).toMatch(testCase.reason);
      expect(gate.get(index)).toBeUndefined();
      await close();
    });
  }

  it('refuses a block of the current term that is not the current leader\'s', async () => {
    const { chain, blocks } = await producedChain();
    const { gate, close } = await follower(chain);
    const someoneElse = toHex(generateKeyPair(chain.rng).publicKey);
    const admission = await gate.admit(entries(blocks), { term: 1, keyHex: someoneElse });
    expect(admission).toMatchObject({ admitted: 0, refusal: { details: { index: 1 } } });
    expect(JSON.stringify(admission.refusal!.details)).toMatch(/leader/);
    await close();
  });

  it('an entry of a later term at an admitted index replaces it and everything after', async () => {
    const { chain, blocks } = await producedChain();
    const { gate, close } = await follower(chain);
    const leader = { term: 1, keyHex: toHex(chain.nodeKey.publicKey) };
    await gate.admit(entries(blocks), leader);
    expect(gate.get(3)).toBeDefined();
    // A new leader's log: its empty entry at index 2 wins over block 2.
    expect(await gate.admit([{ index: 2, term: 2, data: new Uint8Array(0) }], { term: 2, keyHex: leader.keyHex })).toEqual({ admitted: 1, refusal: undefined });
    expect(gate.get(2)!.block).toBeUndefined();
    expect(gate.get(2)!.tip.height).toBe(1);
    expect(gate.get(3)).toBeUndefined();
    await close();
  });
});
