// The whole purchase flow through the production adapter (chains/lightning over gRPC and TLS)
// against two LND stand-ins on one simulated network: a listing, a hold invoice, the buyer's
// payment, the grant and the settlement as one presumed-commit transaction, and the data arriving
// at the buyer; KLX bought with sats; the refunds; and a table of bad inputs, each with its code and
// no change of state.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GRANTS_ADDRESS, decodeGrant, grantKey } from '../../src/access/market.ts';
import { LISTINGS_ADDRESS } from '../../src/access/market.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { generateKeyPair, type KeyPair } from '../../src/ledger/signature.ts';
import { KalimaClient, type PurchaseView } from '../../src/sdk/client.ts';
import { accountOf, escrowAccount } from '../../src/state/klx.ts';
import { klxBase } from '../../bridge/market.ts';
import { KLX_SUPPLY, LISTING_ID, PREFIX, PRICE_SATS, SATS_PER_KLX, type MarketFixture, klxTotal, openMarket } from '../support/market.ts';
import { makeMessage } from '../support/chain.ts';
import { until } from '../support/wait.ts';

let market: MarketFixture;

beforeAll(async () => {
  market = await openMarket('market-flow');
});

afterAll(async () => {
  await market?.close();
});

function client(key: KeyPair): KalimaClient {
  return new KalimaClient({ url: market.url, key });
}


/** What `attempt` rejects with; fails the test if it resolves. */
async function refusal(attempt: Promise<unknown>): Promise<unknown> {
  try {
    await attempt;
  } catch (error) {
    return error;
  }
  throw new Error('expected a refusal');
}

const finalState = (purchase: PurchaseView): boolean => ['completed', 'refunded', 'expired'].includes(purchase.state);

describe('buying data over Lightning', () => {
  it('lists, invoices, takes the payment, grants SUB for the period and settles; the data reaches the buyer', async () => {
    const buyerKey = await market.newBuyer();
    const buyer = client(buyerKey);
    const buyerHex = toHex(buyerKey.publicKey);
    const listings = await buyer.listings();
    expect(listings).toEqual([expect.objectContaining({ id: LISTING_ID, prefix: PREFIX, priceSats: PRICE_SATS, sellerNode: market.sellerLnd.identityPubkey, ours: true })]);
    await expect(buyer.get(PREFIX, 'temp')).rejects.toMatchObject({ code: 'KALIMA_ERR_ACCESS_SUB_DENIED' });

    const purchase = await buyer.buy(LISTING_ID);
    expect(purchase).toMatchObject({ kind: 'data', state: 'awaiting-payment', amountSats: PRICE_SATS, listing: LISTING_ID, buyer: buyerHex });
    const decoded = await market.wallet.decodeInvoice(purchase.invoice);
    expect(decoded).toMatchObject({ id: purchase.id, destination: market.sellerLnd.identityPubkey, sats: BigInt(PRICE_SATS) });
    const sellerBefore = market.network.balances(market.sellerLnd).localMsat;

    const paid = await market.wallet.pay(purchase.invoice);
    expect(paid.state).toBe('succeeded');
    const done = await until('the purchase to complete', () => buyer.purchase(purchase.id), finalState);
    expect(done.state).toBe('completed');
    expect(done.untilMs).toBeGreaterThan(Date.now() + 3_500_000);
    // Paid: the seller has the sats and the buyer the preimage; granted: the chain holds the grant.
    expect(market.network.balances(market.sellerLnd).localMsat - sellerBefore).toBe(BigInt(PRICE_SATS) * 1000n);
    const grant = decodeGrant(market.node.cache.getEntry(GRANTS_ADDRESS, grantKey(buyerHex, LISTING_ID))!.value);
    expect(grant).toMatchObject({ listing: LISTING_ID, prefix: PREFIX, untilMs: done.untilMs });
    expect(toHex(grant.purchase)).toBe(purchase.id);

    // The data arrives at the buyer, pushed.
    const stream = buyer.subscribe(PREFIX, { from: market.node.cache.nextGlobalSequence - 1 })[Symbol.asyncIterator]();
    const seller = client(market.seller);
    await seller.put(PREFIX, 'temp', '21.5');
    let arrived = await stream.next();
    while (arrived.value?.key !== 'temp') arrived = await stream.next();
    expect(new TextDecoder().decode(arrived.value.body)).toBe('21.5');
    await stream.return?.();
    expect((await buyer.get(PREFIX, 'temp'))?.body).toEqual(new TextEncoder().encode('21.5'));
  });

  it('buys KLX with sats: the treasury pays through escrow, atomically with the settlement, and the supply stays', async () => {
    const buyerKey = await market.newBuyer();
    const buyer = client(buyerKey);
    const treasuryHex = toHex(market.treasury.publicKey);
    const treasuryBefore = accountOf(market.node.cache, treasuryHex)!.balance;
    const purchase = await buyer.buyKlx(50);
    expect(purchase).toMatchObject({ kind: 'klx', klx: 50, amountSats: 50 * SATS_PER_KLX });
    await market.wallet.pay(purchase.invoice);
    expect((await until('the KLX purchase', () => buyer.purchase(purchase.id), finalState)).state).toBe('completed');
    expect(await buyer.klxBalance()).toBe(50);
    expect(accountOf(market.node.cache, treasuryHex)!.balance).toBe(treasuryBefore - 50);
    expect(market.node.cache.getEntry('/kalima/klx/accounts', escrowAccount(treasuryHex, klxBase(purchase.id)))).toBeUndefined();
    expect(klxTotal(market.node)).toBe(KLX_SUPPLY);
    expect((await buyer.klxSupply()).supply).toBe(KLX_SUPPLY);
  });

  it('refunds the buyer when the grant cannot be written: the listing was withdrawn after the invoice', async () => {
    const buyerKey = await market.newBuyer();
    const buyer = client(buyerKey);
    const purchase = await buyer.buy(LISTING_ID);
    const listing = market.node.cache.getEntry(LISTINGS_ADDRESS, LISTING_ID)!;
    await market.node.submit(makeMessage(market.chain, market.seller, { address: LISTINGS_ADDRESS, key: LISTING_ID, body: new Uint8Array() }));
    const buyerBefore = market.network.balances(market.buyerLnd).localMsat;
    const error = await refusal(market.wallet.pay(purchase.invoice));
    expect(error).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED' });
    const done = await until('the refund', () => buyer.purchase(purchase.id), finalState);
    expect(done).toMatchObject({ state: 'refunded' });
    expect(done.reason).toMatch(/withdrawn/);
    expect(market.network.balances(market.buyerLnd).localMsat).toBe(buyerBefore);
    expect(market.node.cache.getEntry(GRANTS_ADDRESS, grantKey(toHex(buyerKey.publicKey), LISTING_ID))).toBeUndefined();
    // List it again for the tests after.
    await market.node.submit(makeMessage(market.chain, market.seller, { address: LISTINGS_ADDRESS, key: LISTING_ID, body: listing.value }));
  });

  it('two purchases of one listing by one buyer, paid together, buy two periods: the second extends the first', async () => {
    const buyerKey = await market.newBuyer();
    const buyer = client(buyerKey);
    const first = await buyer.buy(LISTING_ID);
    const second = await buyer.buy(LISTING_ID);
    const startedAt = Date.now();
    await Promise.all([market.wallet.pay(first.invoice), market.wallet.pay(second.invoice)]);
    const [a, b] = await Promise.all([until('the first', () => buyer.purchase(first.id), finalState), until('the second', () => buyer.purchase(second.id), finalState)]);
    expect([a.state, b.state]).toEqual(['completed', 'completed']);
    const grant = decodeGrant(market.node.cache.getEntry(GRANTS_ADDRESS, grantKey(toHex(buyerKey.publicKey), LISTING_ID))!.value);
    expect(grant.untilMs).toBeGreaterThanOrEqual(startedAt + 2 * 3_600_000);
    expect(grant.untilMs).toBe(Math.max(a.untilMs!, b.untilMs!));
  });

  it('survives a restart of the seller\'s LND while an invoice is open: the payment made after it completes', async () => {
    const buyerKey = await market.newBuyer();
    const buyer = client(buyerKey);
    const purchase = await buyer.buy(LISTING_ID);
    await market.sellerLnd.kill();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await market.sellerLnd.restart();
    await market.wallet.pay(purchase.invoice);
    expect((await until('the purchase after the restart', () => buyer.purchase(purchase.id), finalState)).state).toBe('completed');
  });
});

describe('bad inputs: a coded error, and nothing changes', () => {
  interface Snapshot { purchases: number; height: number; buyerMsat: bigint; sellerMsat: bigint; klx: number }
  const snapshot = (): Snapshot => ({
    purchases: market.market.allPurchases().length, height: market.node.height,
    buyerMsat: market.network.balances(market.buyerLnd).localMsat, sellerMsat: market.network.balances(market.sellerLnd).localMsat, klx: klxTotal(market.node),
  });

  it.each([
    ['an unknown listing', 'KALIMA_ERR_MARKET_UNKNOWN_LISTING', async (buyer: KalimaClient) => buyer.buy('no-such-listing')],
    ['a malformed listing id', 'KALIMA_ERR_MARKET_BAD_LISTING', async (buyer: KalimaClient) => buyer.buy('Not A Listing')],
    ['a buyer without a device', 'KALIMA_ERR_MARKET_UNKNOWN_BUYER', async () => client(generateKeyPair(market.chain.rng)).buy(LISTING_ID)],
    ['a buyer without a device, for KLX', 'KALIMA_ERR_MARKET_UNKNOWN_BUYER', async () => client(generateKeyPair(market.chain.rng)).buyKlx(1)],
    ['a wrong amount', 'KALIMA_ERR_MARKET_WRONG_AMOUNT', async (buyer: KalimaClient) => buyer.buy(LISTING_ID, { amountSats: PRICE_SATS - 1 })],
    ['a wrong amount for KLX', 'KALIMA_ERR_MARKET_WRONG_AMOUNT', async (buyer: KalimaClient) => buyer.buyKlx(10, { amountSats: 10 })],
    ['more KLX than the treasury holds', 'KALIMA_ERR_KLX_INSUFFICIENT_FUNDS', async (buyer: KalimaClient) => buyer.buyKlx(KLX_SUPPLY + 1)],
    ['a malformed BOLT 11 string', 'KALIMA_ERR_LIGHTNING_BAD_INVOICE', async () => market.wallet.pay('lnbcrt1thisisnotaninvoice')],
  ])('%s is %s', async (_, code, attempt) => {
    const buyer = client(await market.newBuyer());
    const before = snapshot();
    expect(await refusal(attempt(buyer))).toMatchObject({ code });
    expect(snapshot()).toEqual(before);
  });

  it('an invoice paid twice is KALIMA_ERR_LIGHTNING_ALREADY_PAID, and the seller is paid once', async () => {
    const buyer = client(await market.newBuyer());
    const purchase = await buyer.buy(LISTING_ID);
    await market.wallet.pay(purchase.invoice);
    await until('the purchase', () => buyer.purchase(purchase.id), finalState);
    const before = snapshot();
    expect(await refusal(market.wallet.pay(purchase.invoice))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_ALREADY_PAID' });
    expect(snapshot()).toEqual(before);
  });

  it('an expired invoice is KALIMA_ERR_LIGHTNING_INVOICE_EXPIRED; the purchase expires, and no access is granted', async () => {
    const short = await openMarket('market-expiry', { settings: { invoiceExpirySeconds: 1 } });
    try {
      const buyerKey = await short.newBuyer();
      const buyer = new KalimaClient({ url: short.url, key: buyerKey });
      const purchase = await buyer.buy(LISTING_ID);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const buyerBefore = short.network.balances(short.buyerLnd).localMsat;
      expect(await refusal(short.wallet.pay(purchase.invoice))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_INVOICE_EXPIRED' });
      expect(short.network.balances(short.buyerLnd).localMsat).toBe(buyerBefore);
      expect((await until('the purchase to expire', () => buyer.purchase(purchase.id), finalState)).state).toBe('expired');
      expect(short.node.mayRead(toHex(buyerKey.publicKey), PREFIX)).toBe(false);
    } finally {
      await short.close();
    }
  });

  it('someone else\'s purchase is unknown to a device', async () => {
    const buyer = client(await market.newBuyer());
    const purchase = await buyer.buy(LISTING_ID);
    const other = client(await market.newBuyer());
    expect(await refusal(other.purchase(purchase.id))).toMatchObject({ code: 'KALIMA_ERR_MARKET_UNKNOWN_PURCHASE' });
  });
});

describe('access ends on its own', () => {
  it('when the period is over, by the reader\'s clock at once, and on the chain by the grant\'s TTL', async () => {
    const brief = await openMarket('market-period', { periodSeconds: 2 });
    try {
      const buyerKey = await brief.newBuyer();
      const buyer = new KalimaClient({ url: brief.url, key: buyerKey });
      const purchase = await buyer.buy(LISTING_ID);
      await brief.wallet.pay(purchase.invoice);
      const done = await until('the purchase', () => buyer.purchase(purchase.id), finalState);
      expect(done.state).toBe('completed');
      const buyerHex = toHex(buyerKey.publicKey);
      expect(brief.node.mayRead(buyerHex, PREFIX)).toBe(true);
      await until('access to end', () => brief.node.mayRead(buyerHex, PREFIX), (may) => !may, 5_000);
      expect(Date.now()).toBeGreaterThanOrEqual(done.untilMs!);
      await expect(buyer.get(PREFIX, 'temp')).rejects.toMatchObject({ code: 'KALIMA_ERR_ACCESS_SUB_DENIED' });
      await until('the chain to delete the grant', () => brief.node.cache.getEntry(GRANTS_ADDRESS, grantKey(buyerHex, LISTING_ID)), (entry) => entry === undefined, 10_000);
    } finally {
      await brief.close();
    }
  }, 30_000);
});
