// The marketplace and KLX on the chain, in a node in process: who may list, who may grant, a grant
// widening a buyer's SUB until it ends (by the reader's clock, then by the chain's own TTL delete),
// and KLX moving only by transfers, with escrow accounts and the supply kept.
import { describe, expect, it } from 'vitest';
import { GRANTS_ADDRESS, LISTINGS_ADDRESS, type Listing, encodeGrant, encodeListing, grantKey } from '../../src/access/market.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { Writer } from '../../src/ledger/codec.ts';
import { DEVICES_ADDRESS, encodeDeviceRecord } from '../../src/access/records.ts';
import { generateKeyPair, type KeyPair } from '../../src/ledger/signature.ts';
import { MemCache } from '../../src/state/memcache.ts';
import {
  KLX_ACCOUNTS_ADDRESS, KLX_SUPPLY_ADDRESS, KLX_SUPPLY_KEY, KLX_TRANSFERS_ADDRESS, accountOf, encodeIssue, encodeTransfer, escrowAccount, issuedSupply, transferKey,
} from '../../src/state/klx.ts';
import { ManualClock, systemClock } from '../../src/ports.ts';
import { createAddress, makeChain, makeMessage, openLevelNode, openNode, registerDevice, tempDir, type TestChain } from '../support/chain.ts';
import type { KalimaNode } from '../../src/node/node.ts';
import { LevelKvStore } from '../../src/store/level-kv.ts';
import { ChainStore } from '../../src/store/chain-store.ts';
import { repairState } from '../../src/store/repair.ts';

const SELLER_NODE = Uint8Array.from([2, ...new Uint8Array(32).fill(7)]);

function listing(overrides: Partial<Listing> = {}): Listing {
  return { title: 'Plant 1 temperatures', prefix: '/sensors/plant1', priceSats: 1_000, periodSeconds: 60, sellerNode: SELLER_NODE, ...overrides };
}

async function marketChain(seed: string, options: { clock?: ManualClock } = {}): Promise<{ chain: TestChain; node: KalimaNode; seller: KeyPair; buyer: KeyPair; other: KeyPair }> {
  const chain = makeChain(seed);
  const node = await openNode(chain, { clock: options.clock });
  await createAddress(node, chain, '/sensors');
  await createAddress(node, chain, '/sensors/plant1');
  const seller = await registerDevice(node, chain, { pub: ['/sensors/plant1'], sub: [] });
  const buyer = await registerDevice(node, chain, { pub: [], sub: ['/public'] });
  const other = await registerDevice(node, chain, { pub: ['/elsewhere'], sub: [] });
  return { chain, node, seller, buyer, other };
}

describe('listings', () => {
  it('a device lists data it may publish; others may not list it, change it or withdraw it', async () => {
    const { chain, node, seller, other } = await marketChain('listings');
    await node.submit(makeMessage(chain, seller, { address: LISTINGS_ADDRESS, key: 'plant1', body: encodeListing(listing()) }));
    expect(toHex(node.cache.getEntry(LISTINGS_ADDRESS, 'plant1')!.device)).toBe(toHex(seller.publicKey));
    await expect(node.submit(makeMessage(chain, other, { address: LISTINGS_ADDRESS, key: 'theirs', body: encodeListing(listing()) }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_NOT_SELLER' });
    await expect(node.submit(makeMessage(chain, other, { address: LISTINGS_ADDRESS, key: 'plant1', body: encodeListing(listing({ prefix: '/elsewhere' })) }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_NOT_SELLER' });
    await expect(node.submit(makeMessage(chain, other, { address: LISTINGS_ADDRESS, key: 'plant1', body: new Uint8Array() }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_NOT_SELLER' });
    // The admin may list anything outside /kalima.
    await node.submit(makeMessage(chain, chain.admin, { address: LISTINGS_ADDRESS, key: 'all', body: encodeListing(listing({ prefix: '/' })) }));
    expect(node.cache.entriesAt(LISTINGS_ADDRESS).map((entry) => entry.key).sort()).toEqual(['all', 'plant1']);
    await node.close();
  });

  it.each([
    ['a price of 0', { priceSats: 0 }],
    ['a price above a bitcoin', { priceSats: 100_000_001 }],
    ['a period of 0', { periodSeconds: 0 }],
    ['a reserved prefix', { prefix: '/kalima/devices' }],
    ['a seller node that is not a key', { sellerNode: new Uint8Array(33) }],
  ])('refuses a listing with %s, here and on the chain, changing nothing', async (_, overrides) => {
    const bad = listing(overrides as Partial<Listing>);
    expect(() => encodeListing(bad)).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_MARKET_BAD_LISTING' }));
    // The same body made by hand, as a client that skips the check would send it.
    const body = new Writer().u8(1).text(bad.title).text(bad.prefix).varint(bad.priceSats).varint(bad.periodSeconds).fixed(bad.sellerNode, 33).finish();
    const { chain, node, seller } = await marketChain(`bad-listing-${JSON.stringify(overrides)}`);
    const before = node.cache.nextGlobalSequence;
    await expect(node.submit(makeMessage(chain, seller, { address: LISTINGS_ADDRESS, key: 'plant1', body }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_BAD_LISTING' });
    expect(node.cache.nextGlobalSequence).toBe(before);
    expect(node.cache.getEntry(LISTINGS_ADDRESS, 'plant1')).toBeUndefined();
    await node.close();
  });

  it('refuses a malformed listing body and a bad id on the chain', async () => {
    const { chain, node, seller } = await marketChain('listing-bodies');
    const before = node.cache.nextGlobalSequence;
    await expect(node.submit(makeMessage(chain, seller, { address: LISTINGS_ADDRESS, key: 'plant1', body: new Uint8Array([1, 2, 3]) }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_BAD_LISTING' });
    await expect(node.submit(makeMessage(chain, seller, { address: LISTINGS_ADDRESS, key: 'Bad Id', body: encodeListing(listing()) }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_BAD_LISTING' });
    expect(node.cache.nextGlobalSequence).toBe(before);
    await node.close();
  });
});

describe('grants', () => {
  it('widens the buyer\'s SUB to the listed prefix until the grant ends by the reader\'s clock', async () => {
    const clock = new ManualClock(Date.now());
    const { chain, node, seller, buyer, other } = await marketChain('grants', { clock });
    await node.submit(makeMessage(chain, seller, { address: LISTINGS_ADDRESS, key: 'plant1', body: encodeListing(listing()) }));
    const buyerHex = toHex(buyer.publicKey);
    expect(node.mayRead(buyerHex, '/sensors/plant1')).toBe(false);
    const untilMs = clock.nowMs() + 60_000;
    const grant = encodeGrant({ listing: 'plant1', prefix: '/sensors/plant1', untilMs, purchase: new Uint8Array(32).fill(1) });
    // Only the seller (or an admin) grants, for the listing's own prefix, with a TTL that lasts to the end.
    await expect(node.submit(makeMessage(chain, other, { address: GRANTS_ADDRESS, key: grantKey(buyerHex, 'plant1'), body: grant, ttlSeconds: 60 }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_NOT_SELLER' });
    await expect(node.submit(makeMessage(chain, seller, { address: GRANTS_ADDRESS, key: grantKey(buyerHex, 'plant1'), body: grant, ttlSeconds: 10 }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_BAD_GRANT' });
    await expect(node.submit(makeMessage(chain, seller, { address: GRANTS_ADDRESS, key: grantKey(buyerHex, 'plant1'), body: encodeGrant({ listing: 'plant1', prefix: '/sensors', untilMs, purchase: new Uint8Array(32) }), ttlSeconds: 60 }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_BAD_GRANT' });
    await expect(node.submit(makeMessage(chain, seller, { address: GRANTS_ADDRESS, key: grantKey(buyerHex, 'nosuch'), body: encodeGrant({ listing: 'nosuch', prefix: '/sensors/plant1', untilMs, purchase: new Uint8Array(32) }), ttlSeconds: 60 }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_UNKNOWN_LISTING' });
    const stranger = toHex(generateKeyPair(chain.rng).publicKey);
    await expect(node.submit(makeMessage(chain, seller, { address: GRANTS_ADDRESS, key: grantKey(stranger, 'plant1'), body: encodeGrant({ listing: 'plant1', prefix: '/sensors/plant1', untilMs, purchase: new Uint8Array(32) }), ttlSeconds: 60 }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_UNKNOWN_BUYER' });
    expect(node.mayRead(buyerHex, '/sensors/plant1')).toBe(false);

    await node.submit(makeMessage(chain, seller, { address: GRANTS_ADDRESS, key: grantKey(buyerHex, 'plant1'), body: grant, ttlSeconds: 60 }));
    expect(node.mayRead(buyerHex, '/sensors/plant1')).toBe(true);
    expect(() => node.checkRead(buyerHex, '/sensors/plant1')).not.toThrow();
    // Only the prefix sold, not its parent, and never a write.
    expect(node.mayRead(buyerHex, '/sensors')).toBe(false);
    await expect(node.submit(makeMessage(chain, buyer, { address: '/sensors/plant1', key: 'k' }))).rejects.toMatchObject({ code: 'KALIMA_ERR_ACCESS_PUB_DENIED' });
    // A seller whose PUB was revoked grants no more.
    const other2 = toHex((await registerDevice(node, chain, { pub: [], sub: [] })).publicKey);
    await node.submit(makeMessage(chain, chain.admin, { address: DEVICES_ADDRESS, key: toHex(seller.publicKey), body: encodeDeviceRecord({ name: 'seller', pub: [], sub: [] }) }));
    await expect(node.submit(makeMessage(chain, seller, { address: GRANTS_ADDRESS, key: grantKey(other2, 'plant1'), body: grant, ttlSeconds: 60 }))).rejects.toMatchObject({ code: 'KALIMA_ERR_MARKET_NOT_SELLER' });
    clock.advance(60_000);
    expect(node.mayRead(buyerHex, '/sensors/plant1')).toBe(false);
    expect(() => node.checkRead(buyerHex, '/sensors/plant1')).toThrow(expect.objectContaining({ code: 'KALIMA_ERR_ACCESS_SUB_DENIED' }));
    await node.close();
  });

  it('the chain deletes a grant when it ends, and a restarted node rebuilds its grants from the store', async () => {
    const chain = makeChain('grant-ttl');
    const directory = await tempDir();
    let node = await openLevelNode(chain, directory);
    await createAddress(node, chain, '/sensors/plant1');
    const seller = await registerDevice(node, chain, { pub: ['/sensors/plant1'], sub: [] });
    const buyer = await registerDevice(node, chain, { pub: [], sub: [] });
    const lasting = await registerDevice(node, chain, { pub: [], sub: [] });
    await node.submit(makeMessage(chain, seller, { address: LISTINGS_ADDRESS, key: 'plant1', body: encodeListing(listing()) }));
    const write = (device: KeyPair, seconds: number) => node.submit(makeMessage(chain, seller, {
      address: GRANTS_ADDRESS, key: grantKey(toHex(device.publicKey), 'plant1'), ttlSeconds: seconds,
      body: encodeGrant({ listing: 'plant1', prefix: '/sensors/plant1', untilMs: systemClock.nowMs() + seconds * 1000, purchase: new Uint8Array(32).fill(seconds) }),
    }));
    await write(buyer, 1);
    await write(lasting, 3600);
    expect(node.mayRead(toHex(buyer.publicKey), '/sensors/plant1')).toBe(true);
    await expect.poll(() => node.cache.getEntry(GRANTS_ADDRESS, grantKey(toHex(buyer.publicKey), 'plant1')), { timeout: 5_000 }).toBeUndefined();
    expect(node.cache.grantKeysOf(toHex(buyer.publicKey))).toBeUndefined();
    await node.close();
    node = await openLevelNode(chain, directory);
    expect(node.mayRead(toHex(lasting.publicKey), '/sensors/plant1')).toBe(true);
    expect(node.mayRead(toHex(buyer.publicKey), '/sensors/plant1')).toBe(false);
    await node.close();
  });
});

describe('KLX', () => {
  it('balances survive a restart and a repair (they are the chain\'s own entries, with no address head)', async () => {
    const chain = makeChain('klx-repair');
    const directory = await tempDir();
    let node = await openLevelNode(chain, directory);
    const treasury = await registerDevice(node, chain, { pub: [], sub: [] });
    const treasuryHex = toHex(treasury.publicKey);
    const buyerHex = toHex((await registerDevice(node, chain, { pub: [], sub: [] })).publicKey);
    await node.submit(makeMessage(chain, chain.admin, { address: KLX_SUPPLY_ADDRESS, key: KLX_SUPPLY_KEY, body: encodeIssue({ treasury: treasuryHex, amount: 5_000 }) }));
    await node.submit(makeMessage(chain, treasury, { address: KLX_TRANSFERS_ADDRESS, key: transferKey(treasuryHex, 'gift'), body: encodeTransfer({ from: treasuryHex, to: buyerHex, amount: 70 }) }));
    await node.close();
    node = await openLevelNode(chain, directory);
    expect(accountOf(node.cache, buyerHex)?.balance).toBe(70);
    await node.close();
    const kv = await LevelKvStore.open(directory);
    await repairState(new ChainStore(kv), chain.genesis);
    await kv.close();
    node = await openLevelNode(chain, directory);
    expect(accountOf(node.cache, buyerHex)?.balance).toBe(70);
    expect(accountOf(node.cache, treasuryHex)?.balance).toBe(4_930);
    await node.close();
  });

  async function klxChain(seed: string) {
    const base = await marketChain(seed);
    const treasury = await registerDevice(base.node, base.chain, { pub: [], sub: [] });
    return { ...base, treasury, treasuryHex: toHex(treasury.publicKey) };
  }
  const balance = (cache: MemCache, account: string): number => accountOf(cache, account)?.balance ?? 0;
  const total = (cache: MemCache): number => cache.entriesAt(KLX_ACCOUNTS_ADDRESS).reduce((sum, entry) => sum + (accountOf(cache, entry.key)?.balance ?? 0), 0);

  it('is issued once by an admin, to a treasury', async () => {
    const { chain, node, treasury, treasuryHex, seller } = await klxChain('klx-issue');
    await expect(node.submit(makeMessage(chain, treasury, { address: KLX_SUPPLY_ADDRESS, key: KLX_SUPPLY_KEY, body: encodeIssue({ treasury: treasuryHex, amount: 1_000 }) }))).rejects.toMatchObject({ code: 'KALIMA_ERR_ACCESS_ADMIN_ONLY' });
    await node.submit(makeMessage(chain, chain.admin, { address: KLX_SUPPLY_ADDRESS, key: KLX_SUPPLY_KEY, body: encodeIssue({ treasury: treasuryHex, amount: 1_000_000 }) }));
    expect(balance(node.cache, treasuryHex)).toBe(1_000_000);
    expect(issuedSupply(node.cache)).toBe(1_000_000);
    await expect(node.submit(makeMessage(chain, chain.admin, { address: KLX_SUPPLY_ADDRESS, key: KLX_SUPPLY_KEY, body: encodeIssue({ treasury: treasuryHex, amount: 1 }) }))).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_ALREADY_ISSUED' });
    // Balances are the chain's own: nobody writes them.
    await expect(node.submit(makeMessage(chain, chain.admin, { address: KLX_ACCOUNTS_ADDRESS, key: toHex(seller.publicKey), body: new Uint8Array([3, 1, 0]) }))).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_BAD_TRANSFER' });
    await node.close();
  });

  it('moves only by its owner\'s transfers, through escrow and back, and the supply never changes', async () => {
    const { chain, node, treasury, treasuryHex, buyer, other } = await klxChain('klx-moves');
    const buyerHex = toHex(buyer.publicKey);
    const otherHex = toHex(other.publicKey);
    await node.submit(makeMessage(chain, chain.admin, { address: KLX_SUPPLY_ADDRESS, key: KLX_SUPPLY_KEY, body: encodeIssue({ treasury: treasuryHex, amount: 10_000 }) }));
    const transfer = (signer: KeyPair, id: string, from: string, to: string, amount: number, keyOwner = toHex(signer.publicKey)) =>
      node.submit(makeMessage(chain, signer, { address: KLX_TRANSFERS_ADDRESS, key: transferKey(keyOwner, id), body: encodeTransfer({ from, to, amount }) }));
    const escrow1 = escrowAccount(treasuryHex, 't1');
    // Lock, then pay on (commit) …
    await transfer(treasury, 't1.lock', treasuryHex, escrow1, 600);
    expect(balance(node.cache, escrow1)).toBe(600);
    await expect(transfer(other, 'steal', escrow1, otherHex, 600)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_NOT_OWNER' });
    await expect(transfer(other, 'stuff', otherHex, escrow1, 1)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_NOT_OWNER' });
    // Nobody takes another device's transfer ids, nor an escrow account named for another owner.
    await expect(transfer(other, 't1.pay', otherHex, otherHex, 0, treasuryHex)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_NOT_OWNER' });
    await expect(transfer(other, 'squat', otherHex, escrowAccount(treasuryHex, 't9'), 1)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_NOT_OWNER' });
    await transfer(treasury, 't1.commit', escrow1, buyerHex, 600);
    expect(accountOf(node.cache, escrow1)).toBeUndefined();
    expect(balance(node.cache, buyerHex)).toBe(600);
    // … or lock, then release (abort).
    await transfer(treasury, 't2.lock', treasuryHex, escrowAccount(treasuryHex, 't2'), 300);
    await transfer(treasury, 't2.abort', escrowAccount(treasuryHex, 't2'), treasuryHex, 300);
    expect(balance(node.cache, treasuryHex)).toBe(9_400);
    // A retried transfer is a duplicate, not a second payment; a record is never deleted by hand.
    await expect(transfer(treasury, 't1.commit', treasuryHex, buyerHex, 600)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_DUPLICATE_TRANSFER' });
    await expect(node.submit(makeMessage(chain, chain.admin, { address: KLX_TRANSFERS_ADDRESS, key: transferKey(treasuryHex, 't1.commit'), body: new Uint8Array() }))).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_BAD_TRANSFER' });
    await expect(transfer(buyer, 'too-much', buyerHex, treasuryHex, 601)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_INSUFFICIENT_FUNDS' });
    await expect(transfer(buyer, 'mine', treasuryHex, buyerHex, 1)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_NOT_OWNER' });
    await expect(transfer(buyer, 'self', buyerHex, buyerHex, 1)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_BAD_TRANSFER' });
    await expect(transfer(buyer, 'zero', buyerHex, treasuryHex, 0)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_BAD_TRANSFER' });
    const late = makeMessage(chain, treasury, { address: KLX_TRANSFERS_ADDRESS, key: transferKey(treasuryHex, 'late'), body: encodeTransfer({ from: treasuryHex, to: buyerHex, amount: 1, notAfterMs: Date.now() - 1 }) });
    await expect(node.submit(late)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_TRANSFER_EXPIRED' });
    // A void takes an id and moves nothing: the transfer meant for it can no longer land.
    await transfer(treasury, 't3.lock', treasuryHex, treasuryHex, 0);
    await expect(transfer(treasury, 't3.lock', treasuryHex, escrowAccount(treasuryHex, 't3'), 10)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_DUPLICATE_TRANSFER' });
    await expect(transfer(buyer, 'void-of-another', treasuryHex, treasuryHex, 0)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_NOT_OWNER' });
    expect(balance(node.cache, treasuryHex)).toBe(9_400);
    await transfer(buyer, 'back', buyerHex, treasuryHex, 100);
    expect(balance(node.cache, buyerHex)).toBe(500);
    expect(total(node.cache)).toBe(10_000);
    await node.close();
  });
});
