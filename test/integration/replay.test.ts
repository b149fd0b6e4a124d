// replayBlock re-executes a stored or received block and refuses one whose contents do not follow
// from the state before it: the checks a follower (and `kalima repair`) relies on.
import { describe, expect, it } from 'vitest';
import { type Block, blockHash, signBlock } from '../../src/ledger/block.ts';
import { messageSigningHash, signMessage } from '../../src/ledger/message.ts';
import { adminSet } from '../../src/access/permissions.ts';
import { MemCache } from '../../src/state/memcache.ts';
import { type ChainPolicy, replayBlock } from '../../src/state/replay.ts';
import { ManualClock } from '../../src/ports.ts';
import { isKalimaError } from '../../src/errors.ts';
import { generateKeyPair } from '../../src/ledger/signature.ts';
import { createAddress, makeChain, makeMessage, openNode, registerDevice } from '../support/chain.ts';

async function chainWithExpiry() {
  const chain = makeChain('replay');
  const clock = new ManualClock(chain.genesis.timeMs + 1_000);
  const node = await openNode(chain, { clock });
  await createAddress(node, chain, '/x');
  const device = await registerDevice(node, chain, { pub: ['/x'], sub: ['/x'] });
  await node.submit(makeMessage(chain, device, { address: '/x', key: 'short', ttlSeconds: 5 }));
  clock.advance(6_000);
  await node.flush();
  const blocks: Block[] = [];
  for (let height = 1; height <= node.height; height++) blocks.push((await node.getBlock(height))!);
  return { chain, node, blocks };
}

/** The state after `count` blocks, rebuilt by replay. */
function stateAfter(blocks: Block[], count: number, policy: ChainPolicy): MemCache {
  const cache = new MemCache();
  for (const block of blocks.slice(0, count)) cache.apply(replayBlock(cache, block, policy).changes);
  return cache;
}

describe('replayBlock', () => {
  it('accepts the chain as produced, TTL delete included', async () => {
    const { chain, node, blocks } = await chainWithExpiry();
    const policy = { admins: adminSet(chain.genesis.admins), chain: chain.genesis.chain, validators: new Set<string>() };
    const last = blocks[blocks.length - 1]!;
    expect(last.messages[0]!.message.props).toEqual([['reason', 'ttl']]);
    expect(stateAfter(blocks, blocks.length, policy).digest()).toEqual(node.cache.digest());
    await node.close();
  });

  it.each([
    { name: 'a TTL delete dated before the deadline', tamper: (block: Block) => ({ ...block.header, timeMs: block.header.timeMs - 3_000 }), reason: /KALIMA_ERR_LEDGER_BAD_BLOCK/ },
    { name: 'a state digest that does not follow', tamper: (block: Block) => ({ ...block.header, stateDigest: new Uint8Array(32) }), reason: /stateDigest/ },
  ])('refuses $name, even when the leader signs it', async ({ tamper, reason }) => {
    const { chain, node, blocks } = await chainWithExpiry();
    const policy = { admins: adminSet(chain.genesis.admins), chain: chain.genesis.chain, validators: new Set<string>() };
    const last = blocks[blocks.length - 1]!;
    const header = tamper(last);
    const forged = signBlock(header, last.messages, chain.nodeKey.secretKey, new Uint8Array(32));
    expect(blockHash(forged.header)).not.toEqual(blockHash(last.header));
    const before = stateAfter(blocks, blocks.length - 1, policy);
    let caught: unknown;
    try {
      replayBlock(before, forged, policy);
    } catch (error) {
      caught = error;
    }
    expect(isKalimaError(caught, 'KALIMA_ERR_LEDGER_BAD_BLOCK')).toBe(true);
    expect(JSON.stringify((caught as { details: unknown }).details)).toMatch(reason);
    await node.close();
  });

  it('refuses a TTL delete signed by a key that is not the block leader', async () => {
    const { chain, node, blocks } = await chainWithExpiry();
    const policy = { admins: adminSet(chain.genesis.admins), chain: chain.genesis.chain, validators: new Set<string>() };
    const last = blocks[blocks.length - 1]!;
    // A key with no right to delete there (an admin's delete would be an ordinary, valid admin write).
    const intruder = generateKeyPair(chain.rng);
    const original = last.messages[0]!;
    const message = signMessage({ ...original.message, device: intruder.publicKey }, intruder.secretKey, new Uint8Array(32));
    expect(messageSigningHash(message)).not.toEqual(messageSigningHash(original.message));
    const forged = signBlock(last.header, [{ ...original, message }, ...last.messages.slice(1)], chain.nodeKey.secretKey, new Uint8Array(32));
    expect(() => replayBlock(stateAfter(blocks, blocks.length - 1, policy), forged, policy)).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_LEDGER_BAD_BLOCK' }));
    await node.close();
  });
});
