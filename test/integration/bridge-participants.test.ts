// The bridge's participants, one at a time, against the real things: the KLX transfer and the grant
// on a chain node in process, the hold invoice on an LND stand-in through the production adapter.
// Every call is idempotent, an abort before the prepare leaves the prepare nothing to do, and
// inquire reports what the participant holds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GRANTS_ADDRESS, LISTINGS_ADDRESS, grantKey } from '../../src/access/market.ts';
import { DEVICES_ADDRESS } from '../../src/access/records.ts';
import { sha256, toHex } from '../../src/ledger/hash.ts';
import { systemClock, silentLogger, systemScheduler } from '../../src/ports.ts';
import { KLX_TRANSFERS_ADDRESS, accountOf, encodeTransfer, escrowAccount, transferKey } from '../../src/state/klx.ts';
import { NodeChainAccess } from '../../bridge/chain.ts';
import { GrantParticipant } from '../../bridge/participants/kalima-grant.ts';
import { KlxTransferParticipant } from '../../bridge/participants/klx-transfer.ts';
import { DeliveryGate } from '../../bridge/participants/delivery.ts';
import { HoldInvoiceParticipant, LND_HOLD_EXPIRY_DELTA } from '../../bridge/participants/lightning-hold.ts';
import type { BridgeTx } from '../../bridge/participant.ts';
import { KLX_SUPPLY, LISTING_ID, PREFIX, PRICE_SATS, type MarketFixture, klxTotal, openMarket } from '../support/market.ts';
import { makeMessage } from '../support/chain.ts';
import { LndSeller } from '../../chains/lightning/seller.ts';

let market: MarketFixture;
let chain: NodeChainAccess;
const tx: BridgeTx = { id: '00', deadlineMs: Number.MAX_SAFE_INTEGER, index: 0 };

beforeAll(async () => {
  market = await openMarket('participants');
  chain = new NodeChainAccess(market.node, systemClock, market.chain.rng, systemScheduler);
});

afterAll(async () => {
  await market?.close();
});

describe('the KLX transfer participant', () => {
  const treasuryHex = () => toHex(market.treasury.publicKey);
  const klxDeps = (guard: () => Promise<string | undefined> = async () => undefined) => ({ chain, payer: market.treasury, gate: new DeliveryGate(), guard, logger: silentLogger });

  it('a commit whose HTLC can no longer be settled delivers nothing: the lock goes back, and the gate says refused', async () => {
    const before = accountOf(market.node.cache, treasuryHex())!.balance;
    const deps = klxDeps(async () => 'LND is about to cancel the HTLC');
    const buyer = toHex((await market.newBuyer()).publicKey);
    const participant = new KlxTransferParticipant(deps, { base: 'k5', from: treasuryHex(), to: buyer, amount: 25 }, 'k5');
    expect(await participant.prepare()).toBe('yes');
    await participant.commit();
    expect(deps.gate.settled('k5')).toEqual({ outcome: 'refused', reason: 'LND is about to cancel the HTLC' });
    expect(accountOf(market.node.cache, buyer)).toBeUndefined();
    expect(accountOf(market.node.cache, treasuryHex())!.balance).toBe(before);
    expect(await participant.inquire()).toBe('aborted');
  });

  it('prepare locks into escrow, commit pays the recipient, each once however often it is called', async () => {
    const buyer = toHex((await market.newBuyer()).publicKey);
    const participant = new KlxTransferParticipant(klxDeps(), { base: 'k1', from: treasuryHex(), to: buyer, amount: 30 }, 'k1');
    expect(await participant.inquire()).toBe('unknown');
    expect(await Promise.all([participant.prepare(), participant.prepare()])).toEqual(['yes', 'yes']);
    expect(accountOf(market.node.cache, escrowAccount(treasuryHex(), 'k1'))).toEqual({ balance: 30 });
    expect(await participant.inquire()).toBe('prepared');
    await participant.commit();
    await participant.commit();
    expect(accountOf(market.node.cache, buyer)?.balance).toBe(30);
    expect(accountOf(market.node.cache, escrowAccount(treasuryHex(), 'k1'))).toBeUndefined();
    expect(await participant.inquire()).toBe('committed');
    expect(klxTotal(market.node)).toBe(KLX_SUPPLY);
  });

  it('abort after prepare releases the lock to the payer', async () => {
    const before = accountOf(market.node.cache, treasuryHex())!.balance;
    const participant = new KlxTransferParticipant(klxDeps(), { base: 'k2', from: treasuryHex(), to: treasuryHex().replace(/^./, 'f'), amount: 40 }, 'k2');
    expect(await participant.prepare()).toBe('yes');
    expect(accountOf(market.node.cache, treasuryHex())!.balance).toBe(before - 40);
    await participant.abort();
    await participant.abort();
    expect(accountOf(market.node.cache, treasuryHex())!.balance).toBe(before);
    expect(await participant.inquire()).toBe('aborted');
  });

  it('abort before any prepare voids the lock\'s id, so a late prepare votes no and a lock in flight cannot land', async () => {
    const before = accountOf(market.node.cache, treasuryHex())!.balance;
    const participant = new KlxTransferParticipant(klxDeps(), { base: 'k3', from: treasuryHex(), to: treasuryHex(), amount: 10 }, 'k3');
    await participant.abort();
    expect(await participant.inquire()).toBe('aborted');
    expect(await participant.prepare()).toEqual({ vote: 'no', reason: 'aborted before the lock' });
    // The lock an earlier coordinator had in flight: refused, its id is taken.
    const late = makeMessage(market.chain, market.treasury, { address: KLX_TRANSFERS_ADDRESS, key: transferKey(treasuryHex(), 'k3.lock'), body: encodeTransfer({ from: treasuryHex(), to: escrowAccount(treasuryHex(), 'k3'), amount: 10 }) });
    await expect(market.node.submit(late)).rejects.toMatchObject({ code: 'KALIMA_ERR_KLX_DUPLICATE_TRANSFER' });
    expect(accountOf(market.node.cache, treasuryHex())!.balance).toBe(before);
  });

  it('votes no when the payer lacks the amount', async () => {
    const participant = new KlxTransferParticipant(klxDeps(), { base: 'k4', from: treasuryHex(), to: treasuryHex().replace(/^./, 'e'), amount: KLX_SUPPLY + 1 }, 'k4');
    expect(await participant.prepare()).toEqual({ vote: 'no', reason: 'the lock was refused: KALIMA_ERR_KLX_INSUFFICIENT_FUNDS' });
    expect(await participant.inquire()).toBe('unknown');
  });
});

describe('the Kalima grant participant', () => {
  const purchase = () => sha256(new TextEncoder().encode(`purchase-${Math.random()}`));

  it('prepare changes nothing; commit writes the grant once; a buyer gone or a listing withdrawn is a no', async () => {
    const buyerKey = await market.newBuyer();
    const buyer = toHex(buyerKey.publicKey);
    const gate = new DeliveryGate();
    const deps = { chain, gate, guard: async () => undefined, seller: market.seller, clock: systemClock, logger: silentLogger };
    const args = { buyerHex: buyer, listing: LISTING_ID, prefix: PREFIX, untilMs: Date.now() + 60_000, purchase: purchase() };
    const participant = new GrantParticipant(deps, args, 'g1');
    const height = market.node.height;
    expect(await participant.prepare()).toBe('yes');
    expect(market.node.height).toBe(height);
    expect(await participant.inquire()).toBe('unknown');
    await participant.commit();
    const after = market.node.height;
    await participant.commit();
    expect(market.node.height).toBe(after);
    expect(await participant.inquire()).toBe('committed');
    expect(market.node.mayRead(buyer, PREFIX)).toBe(true);

    expect(await new GrantParticipant(deps, { ...args, prefix: '/sensors', purchase: purchase() }, 'g0').prepare()).toMatchObject({ vote: 'no' });
    // An access that ended already is a no (for a buyer whose running grant does not cover it).
    const late = toHex((await market.newBuyer()).publicKey);
    expect(await new GrantParticipant(deps, { ...args, buyerHex: late, untilMs: Date.now() - 1, purchase: purchase() }, 'g0').prepare()).toMatchObject({ vote: 'no', reason: 'the access period is over already' });
    const goneKey = await market.newBuyer();
    await market.node.submit(makeMessage(market.chain, market.chain.admin, { address: DEVICES_ADDRESS, key: toHex(goneKey.publicKey), body: new Uint8Array() }));
    expect(await new GrantParticipant(deps, { ...args, buyerHex: toHex(goneKey.publicKey), purchase: purchase() }, 'g0').prepare()).toMatchObject({ vote: 'no', reason: expect.stringMatching(/not a registered device/) });
    expect(market.node.cache.getEntry(GRANTS_ADDRESS, grantKey(toHex(goneKey.publicKey), LISTING_ID))).toBeUndefined();
    expect(market.node.cache.getEntry(LISTINGS_ADDRESS, LISTING_ID)).toBeDefined();
  });

  it('a commit the chain refuses for good, or whose HTLC can no longer be settled, is reported refused and writes nothing', async () => {
    const buyer = toHex((await market.newBuyer()).publicKey);
    const gate = new DeliveryGate();
    const args = { buyerHex: buyer, listing: LISTING_ID, prefix: PREFIX, untilMs: Date.now() + 60_000, purchase: purchase() };
    const unpayable = new GrantParticipant({ chain, gate, guard: async () => 'the invoice is canceled', seller: market.seller, clock: systemClock, logger: silentLogger }, args, 'r1');
    await unpayable.commit();
    expect(gate.settled('r1')).toEqual({ outcome: 'refused', reason: 'the invoice is canceled' });
    // The listing withdrawn between the decision and the commit: the chain's refusal is final.
    const listing = market.node.cache.getEntry(LISTINGS_ADDRESS, LISTING_ID)!;
    await market.node.submit(makeMessage(market.chain, market.seller, { address: LISTINGS_ADDRESS, key: LISTING_ID, body: new Uint8Array() }));
    const withdrawn = new GrantParticipant({ chain, gate, guard: async () => undefined, seller: market.seller, clock: systemClock, logger: silentLogger }, args, 'r2');
    await withdrawn.commit();
    expect(gate.settled('r2')).toEqual({ outcome: 'refused', reason: 'the chain refused the grant: KALIMA_ERR_MARKET_UNKNOWN_LISTING' });
    expect(market.node.cache.getEntry(GRANTS_ADDRESS, grantKey(buyer, LISTING_ID))).toBeUndefined();
    await market.node.submit(makeMessage(market.chain, market.seller, { address: LISTINGS_ADDRESS, key: LISTING_ID, body: listing.value }));
  });
});

describe('the Lightning hold-invoice participant', () => {
  it('votes yes only on a held HTLC of the price, far enough from its expiry; commit settles, abort cancels, both idempotent', async () => {
    const lnd = new LndSeller(market.sellerLnd.credentials);
    try {
      const gate = new DeliveryGate();
      const deps = { lnd, gate, marginBlocks: 6, holdExpiryDelta: LND_HOLD_EXPIRY_DELTA, logger: silentLogger };
      const open = async () => {
        const preimage = market.chain.rng.bytes(32);
        const hash = toHex(sha256(preimage));
        const { request } = await lnd.createHoldInvoice({ paymentHash: hash, sats: PRICE_SATS, description: 'test', expirySeconds: 600, cltvDelta: 40 });
        return { participant: new HoldInvoiceParticipant(deps, { paymentHash: sha256(preimage), preimage, sats: PRICE_SATS }, hash), request, hash };
      };
      const held = async (hash: string) => {
        for (;;) {
          if ((await lnd.invoice(hash))?.state === 'held') return;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      };

      const first = await open();
      expect(await first.participant.prepare()).toEqual({ vote: 'no', reason: 'the invoice is open, not held' });
      // An LND still catching up with the chain gives no height to decide by (a throw counts as no).
      market.sellerLnd.syncedToChain = false;
      await expect(first.participant.prepare()).rejects.toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_NOT_SYNCED' });
      market.sellerLnd.syncedToChain = true;
      const paid = market.wallet.pay(first.request);
      await held(first.hash);
      expect(await first.participant.prepare()).toBe('yes');
      expect(await first.participant.inquire()).toBe('prepared');
      // It settles only once the chain step is delivered.
      gate.report(first.hash, { outcome: 'delivered' });
      await first.participant.commit();
      await first.participant.commit();
      await expect(paid).resolves.toMatchObject({ state: 'succeeded' });
      expect(await first.participant.inquire()).toBe('committed');

      const second = await open();
      const refused = market.wallet.pay(second.request).then(() => 'paid', (error: { code?: string }) => error.code);
      await held(second.hash);
      // 40 blocks of CLTV delta: past the decision height (expiry − 12 − 6), not yet at LND's own cancel.
      market.network.mine(40 - LND_HOLD_EXPIRY_DELTA - 6 + 1);
      expect(await second.participant.prepare()).toMatchObject({ vote: 'no', reason: expect.stringMatching(/too close to decide/) });
      await second.participant.abort();
      await second.participant.abort();
      expect(await refused).toBe('KALIMA_ERR_LIGHTNING_PAYMENT_FAILED');
      expect(await second.participant.inquire()).toBe('aborted');

      // Committed, but the chain refused its step after the decision: the HTLC is cancelled, not settled.
      const third = await open();
      const compensated = market.wallet.pay(third.request).then(() => 'paid', (error: { code?: string }) => error.code);
      await held(third.hash);
      expect(await third.participant.prepare()).toBe('yes');
      const committing = third.participant.commit();
      gate.report(third.hash, { outcome: 'refused', reason: 'the listing was withdrawn' });
      await committing;
      expect(await compensated).toBe('KALIMA_ERR_LIGHTNING_PAYMENT_FAILED');
      expect(await third.participant.inquire()).toBe('aborted');
    } finally {
      lnd.close();
    }
  });
});
