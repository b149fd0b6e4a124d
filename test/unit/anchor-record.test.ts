// Anchor records (state/anchor-record.ts): the canonical body, who may write one, and what the
// chain checks of it, both as a pure check and through a node that takes it into a block.
import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/ledger/hash.ts';
import { generateKeyPair } from '../../src/ledger/signature.ts';
import { type Message, signMessage } from '../../src/ledger/message.ts';
import {
  ANCHORS_ADDRESS, type AnchorRecord, anchorRecordMessage, checkAnchorRecord, decodeAnchorBody, encodeAnchorBody,
} from '../../src/state/anchor-record.ts';
import { createAddress, makeChain, makeMessage, openNode } from '../support/chain.ts';
import { aggregationRoot } from '../../anchors/aggregate.ts';
import { codeOf } from '../support/errors.ts';

const fill = (byte: number) => new Uint8Array(32).fill(byte);
const chain = makeChain('anchor-record', 'plant');
const masters = new Set([toHex(chain.nodeKey.publicKey)]);

/** A record whose root is its tips' aggregation root unless `overrides` says otherwise. */
function record(overrides: Partial<AnchorRecord> = {}): AnchorRecord {
  const tips = overrides.tips ?? [{ chain: 'other', height: 9, hash: fill(4) }, { chain: 'plant', height: 3, hash: fill(5) }];
  const root = aggregationRoot(tips.map((tip) => ({ chain: tip.chain, height: tip.height, blockHash: tip.hash })));
  return { root, network: 'bcoin-regtest', txid: fill(2), bitcoinHeight: 105, bitcoinBlock: fill(3), ...overrides, tips };
}

function unsigned(value: AnchorRecord, device = chain.nodeKey.publicKey): Message {
  return { ...anchorRecordMessage('plant', device, value, 1), signature: new Uint8Array(64) };
}


describe('anchor records', () => {
  it('have one canonical body, and every other text is refused with a stable code', () => {
    const body = encodeAnchorBody(record({ root: fill(1) }));
    const text = new TextDecoder().decode(body);
    expect(text).toBe(`{"root":"${'01'.repeat(32)}","network":"bcoin-regtest","txid":"${'02'.repeat(32)}","bitcoinHeight":105,"bitcoinBlock":"${'03'.repeat(32)}","tips":[{"chain":"other","height":9,"hash":"${'04'.repeat(32)}"},{"chain":"plant","height":3,"hash":"${'05'.repeat(32)}"}]}`);
    expect(decodeAnchorBody(body)).toEqual(record({ root: fill(1) }));
    const variants = [
      text.replace('"root":', '"root" :'), // a space
      text.replace('01'.repeat(32), '01'.repeat(31)), // a short root
      text.replace('01'.repeat(32), 'AB'.repeat(32)), // upper case
      text.replace('"network":"bcoin-regtest"', '"network":"Bcoin"'),
      text.replace('"bitcoinHeight":105', '"bitcoinHeight":-1'),
      text.replace('"height":3', '"height":0'),
      text.replace('"chain":"other"', '"chain":"zzz"'), // tips out of order
      text.replace('"chain":"other"', '"chain":"plant"'), // a chain twice
      text.replace(/"tips":\[.*\]/, '"tips":[]'),
      'not json', '[]', '{}',
    ];
    for (const variant of variants) expect(codeOf(() => decodeAnchorBody(new TextEncoder().encode(variant))), variant).toBe('KALIMA_ERR_LEDGER_BAD_ANCHOR');
  });

  it('only a master writes one, under the root, as a put, naming this chain\'s block at an earlier height', () => {
    const context = { chain: 'plant', height: 4, masters, blockHashAt: (height: number) => (height === 3 ? fill(5) : undefined) };
    expect(checkAnchorRecord(unsigned(record()), context).bitcoinHeight).toBe(105);
    const stranger = generateKeyPair(chain.rng);
    expect(codeOf(() => checkAnchorRecord(unsigned(record(), stranger.publicKey), context))).toBe('KALIMA_ERR_ACCESS_MASTERS_ONLY');
    expect(codeOf(() => checkAnchorRecord({ ...unsigned(record()), key: 'ab'.repeat(32) }, context))).toBe('KALIMA_ERR_LEDGER_BAD_ANCHOR');
    // A root that is not the tips' aggregation root (under it as key, so only the root check can refuse it).
    expect(codeOf(() => checkAnchorRecord(unsigned(record({ root: fill(1) })), context))).toBe('KALIMA_ERR_LEDGER_BAD_ANCHOR');
    expect(codeOf(() => checkAnchorRecord({ ...unsigned(record()), ttlSeconds: 60 }, context))).toBe('KALIMA_ERR_LEDGER_BAD_ANCHOR');
    expect(codeOf(() => checkAnchorRecord({ ...unsigned(record()), body: new Uint8Array() }, context))).toBe('KALIMA_ERR_LEDGER_BAD_ANCHOR');
    // No tip of this chain; a tip at the carrying block or later; a tip that is another block.
    expect(codeOf(() => checkAnchorRecord(unsigned(record({ tips: [{ chain: 'other', height: 9, hash: fill(4) }] })), context))).toBe('KALIMA_ERR_LEDGER_BAD_ANCHOR');
    expect(codeOf(() => checkAnchorRecord(unsigned(record({ tips: [{ chain: 'plant', height: 4, hash: fill(5) }] })), context))).toBe('KALIMA_ERR_LEDGER_BAD_ANCHOR');
    expect(codeOf(() => checkAnchorRecord(unsigned(record({ tips: [{ chain: 'plant', height: 3, hash: fill(6) }] })), context))).toBe('KALIMA_ERR_LEDGER_BAD_ANCHOR');
  });

  it('a node takes a master\'s record into a block and refuses a forged one, changing nothing', async () => {
    const node = await openNode(chain);
    try {
      await createAddress(node, chain, '/sensors');
      await createAddress(node, chain, '/sensors/a');
      const tip = node.tipRecord;
      const good = record({ tips: [{ chain: 'plant', height: tip.height, hash: tip.hash }] });
      const receipt = await node.submit(signMessage(anchorRecordMessage('plant', chain.nodeKey.publicKey, good, 7), chain.nodeKey.secretKey, chain.rng.bytes(32)));
      expect(receipt.height).toBe(tip.height + 1);
      expect(decodeAnchorBody(node.cache.getEntry(ANCHORS_ADDRESS, toHex(good.root))!.value)).toEqual(good);

      const heightBefore = node.height;
      // The admin is not a master; a master's record of another block at that height.
      const byAdmin = makeMessage(chain, chain.admin, { address: ANCHORS_ADDRESS, key: toHex(good.root), body: encodeAnchorBody(good) });
      await expect(node.submit(byAdmin)).rejects.toMatchObject({ code: 'KALIMA_ERR_ACCESS_MASTERS_ONLY' });
      const wrong = record({ tips: [{ chain: 'plant', height: tip.height, hash: fill(0xee) }] });
      await expect(node.submit(signMessage(anchorRecordMessage('plant', chain.nodeKey.publicKey, wrong, 8), chain.nodeKey.secretKey, chain.rng.bytes(32)))).rejects.toMatchObject({ code: 'KALIMA_ERR_LEDGER_BAD_ANCHOR' });
      expect(node.height).toBe(heightBefore);
      expect(node.cache.getEntry(ANCHORS_ADDRESS, toHex(wrong.root))).toBeUndefined();
    } finally {
      await node.close();
    }
  });
});
