// A client node's copy (src/sdk/filtered-copy.ts), without sockets: it takes a snapshot and then
// signed filtered blocks, and refuses, changing nothing, a block that does not continue every
// address it touches, a delete of what it does not hold, a message outside its prefixes, and a
// snapshot whose items do not give the announced digest or whose header no master signed.
import { describe, expect, it } from 'vitest';
import { genesisHash } from '../../src/access/genesis.ts';
import { type Block, type BlockHeader, blockHash, signBlock, txRootOf } from '../../src/ledger/block.ts';
import { proveMessages } from '../../src/ledger/filtered-block.ts';
import { toHex } from '../../src/ledger/hash.ts';
import type { CommittedMessage } from '../../src/ledger/message.ts';
import { generateKeyPair } from '../../src/ledger/signature.ts';
import { FilteredCopy } from '../../src/sdk/filtered-copy.ts';
import { digestOfItems, entryOfCommitted } from '../../src/state/filtered.ts';
import { makeChain, makeMessage } from '../support/chain.ts';
import { expectKalimaError } from './support/kalima-error.ts';

const chain = makeChain('filtered-copy');
let globalSequence = 0;

function committed(address: string, key: string, body: string, sequence: number, previous = sequence - 1): CommittedMessage {
  return { message: makeMessage(chain, chain.admin, { address, key, body: new TextEncoder().encode(body) }), globalSequence: globalSequence++, sequence, previous };
}

function block(height: number, prevHash: Uint8Array, messages: CommittedMessage[], signer = chain.nodeKey): Block {
  const header: BlockHeader = {
    chain: chain.genesis.chain, height, prevHash, timeMs: 1_700_000_000_000 + height, leader: signer.publicKey, term: 1,
    messageCount: messages.length, txRoot: txRootOf(messages), stateDigest: new Uint8Array(32), mmrRoot: new Uint8Array(32),
  };
  return signBlock(header, messages, signer.secretKey, chain.rng.bytes(32));
}

/** Every message of the block that is under /plant, proven: what a master sends a /plant subscriber. */
const filtered = (signed: Block, all = false) => ({
  header: signed.header, signature: signed.signature,
  messages: proveMessages(signed, signed.messages.flatMap((message, index) => (all || message.message.address.startsWith('/plant') ? [index] : []))),
});

describe('FilteredCopy', () => {
  it('follows blocks from the genesis: puts, replacements, deletes, and a digest equal to the same items\' digest', () => {
    const copy = new FilteredCopy(chain.genesis, ['/plant']);
    const first = block(1, genesisHash(chain.genesis), [committed('/plant', 'a', 'one', 0), committed('/secret', 's', 'x', 0), committed('/plant', 'b', 'two', 1)]);
    expect(copy.apply(filtered(first)).map((change) => `${change.kind} ${change.key}`)).toEqual(['put a', 'put b']);
    const second = block(2, blockHash(first.header), [committed('/plant', 'a', 'uno', 2), committed('/plant', 'b', '', 3)]);
    expect(copy.apply(filtered(second)).map((change) => `${change.kind} ${change.key}`)).toEqual(['put a', 'remove b']);
    expect(copy.height).toBe(2);
    expect(new TextDecoder().decode(copy.get('/plant', 'a')!.value)).toBe('uno');
    expect(copy.get('/plant', 'b')).toBeUndefined();
    const expected = digestOfItems({ heads: [['/plant', 3]], entries: [entryOfCommitted(second.messages[0]!, second.header)] });
    expect(toHex(copy.digest())).toBe(toHex(expected));
    expect(copy.digestAt(2)).toBe(toHex(expected));
    expect(copy.digestAt(1)).not.toBe(copy.digestAt(2));
  });

  const start = block(1, genesisHash(chain.genesis), [committed('/plant', 'a', 'one', 0)]);
  const next = (messages: CommittedMessage[]) => block(2, blockHash(start.header), messages);
  const refused: Array<{ name: string; code: 'KALIMA_ERR_SYNC_GAP' | 'KALIMA_ERR_SYNC_BAD_BLOCK'; frame: () => ReturnType<typeof filtered> }> = [
    { name: 'a message whose previous is not the last sequence held (one left out before it)', code: 'KALIMA_ERR_SYNC_GAP', frame: () => filtered(next([committed('/plant', 'a', 'two', 2, 1)])) },
    { name: 'a message whose sequence does not follow its previous', code: 'KALIMA_ERR_SYNC_GAP', frame: () => filtered(next([committed('/plant', 'a', 'two', 3, 0)])) },
    { name: 'the first message at a new address that claims a previous one', code: 'KALIMA_ERR_SYNC_GAP', frame: () => filtered(next([committed('/plant/new', 'n', 'v', 5, 4)])) },
    { name: 'a delete of a key the copy does not hold', code: 'KALIMA_ERR_SYNC_GAP', frame: () => filtered(next([committed('/plant', 'zz', '', 1, 0)])) },
    { name: 'a message outside the prefixes', code: 'KALIMA_ERR_SYNC_BAD_BLOCK', frame: () => filtered(next([committed('/secret', 's', 'x', 0, -1)]), true) },
    { name: 'a block that skips a height', code: 'KALIMA_ERR_SYNC_BAD_BLOCK', frame: () => filtered(block(3, blockHash(start.header), [committed('/plant', 'a', 'two', 1)])) },
    { name: 'a block on another parent', code: 'KALIMA_ERR_SYNC_BAD_BLOCK', frame: () => filtered(block(2, new Uint8Array(32), [committed('/plant', 'a', 'two', 1)])) },
    { name: 'a block signed by a key that is not a master', code: 'KALIMA_ERR_SYNC_BAD_BLOCK', frame: () => filtered(block(2, blockHash(start.header), [committed('/plant', 'a', 'two', 1)], generateKeyPair(chain.rng))) },
  ];

  it.each(refused.map((row) => [row.name, row] as const))('refuses %s, and the copy stays as it was', (_name, row) => {
    const copy = new FilteredCopy(chain.genesis, ['/plant']);
    copy.apply(filtered(start));
    const before = { height: copy.height, digest: toHex(copy.digest()), a: copy.get('/plant', 'a') };
    const frame = row.frame();
    expectKalimaError(() => copy.apply(frame), row.code);
    expect({ height: copy.height, digest: toHex(copy.digest()), a: copy.get('/plant', 'a') }).toEqual(before);
    // The right next block still applies.
    expect(() => copy.apply(filtered(next([committed('/plant', 'a', 'two', 1)])))).not.toThrow();
  });

  it('refuses a block whose later message fails after an earlier one passed, applying neither', () => {
    const copy = new FilteredCopy(chain.genesis, ['/plant']);
    copy.apply(filtered(start));
    const digest = toHex(copy.digest());
    expectKalimaError(() => copy.apply(filtered(next([committed('/plant', 'b', 'fine', 1), committed('/plant', 'c', 'gap', 5, 4)]))), 'KALIMA_ERR_SYNC_GAP');
    expect(copy.get('/plant', 'b')).toBeUndefined();
    expect(toHex(copy.digest())).toBe(digest);
  });

  describe('snapshots', () => {
    const entry = entryOfCommitted(start.messages[0]!, start.header);
    const items = { heads: [['/plant', 0]] as Array<[string, number]>, entries: [entry] };
    const good = { header: start.header, signature: start.signature, digest: digestOfItems(items), ...items };

    it('takes a snapshot that checks, then the block after it', () => {
      const copy = new FilteredCopy(chain.genesis, ['/plant']);
      expect(copy.restore(good).map((change) => `${change.kind} ${change.key}`)).toEqual(['put a']);
      expect(copy.height).toBe(1);
      expect(toHex(copy.digest())).toBe(toHex(good.digest));
      expect(copy.apply(filtered(next([committed('/plant', 'a', 'two', 1)])))).toHaveLength(1);
    });

    const other = generateKeyPair(chain.rng);
    const forged = block(1, genesisHash(chain.genesis), start.messages, other);
    it.each([
      ['a digest the items do not give', { ...good, digest: new Uint8Array(32) }],
      ['an item outside the prefixes', { ...good, heads: [...good.heads, ['/secret', 0] as [string, number]] }],
      ['a header no master signed', { ...good, header: forged.header, signature: forged.signature }],
      ['a header without its signature', { ...good, signature: undefined }],
      ['a header of another chain', { ...good, header: { ...start.header, chain: 'otherchain' } }],
    ])('refuses %s (KALIMA_ERR_SYNC_BAD_BLOCK) and keeps the copy', (_name, snapshot) => {
      const copy = new FilteredCopy(chain.genesis, ['/plant']);
      expectKalimaError(() => copy.restore(snapshot), 'KALIMA_ERR_SYNC_BAD_BLOCK');
      expect(copy.height).toBe(0);
      expect(copy.addresses()).toEqual([]);
    });
  });
});
