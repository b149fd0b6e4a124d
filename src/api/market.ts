// The marketplace and KLX over REST. Every route is signed by a device (x-kalima-* headers).
//   GET  /market/listings            the listings on the chain (any registered device)
//   GET  /market/listings/:id        one listing
//   POST /market/purchases           {listing, amountSats?}: a hold invoice for the signing device (a node that sells)
//   GET  /market/purchases/:id       a purchase's state (its buyer, or an admin)
//   POST /klx/purchases              {klx, amountSats?}: a hold invoice for KLX from the treasury
//   GET  /klx                        the supply issued, and the treasury
//   GET  /klx/accounts/:account      a balance (the account's device, or an admin)
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { kalimaError } from '../errors.ts';
import { LISTINGS_ADDRESS, type ListingView, findListing, listingView } from '../access/market.ts';
import { roleOf } from '../access/permissions.ts';
import type { KalimaNode } from '../node/node.ts';
import { KLX_SUPPLY_ADDRESS, KLX_SUPPLY_KEY, accountOf, checkAccount, decodeIssue, isEscrowAccount, ownerOf } from '../state/klx.ts';

/** What a node that sells offers (bridge/market.ts). */
export interface MarketApi {
  buy(request: { listing: string; buyer: string; amountSats?: number }): Promise<{ id: string; buyer: string }>;
  buyKlx(request: { buyer: string; klx: number; amountSats?: number }): Promise<{ id: string; buyer: string }>;
  purchase(id: string): { id: string; buyer: string };
  listings(): Array<ListingView & { ours: boolean }>;
}

function body(request: FastifyRequest): Record<string, unknown> {
  const value = request.body;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { reason: 'the body must be a JSON object' });
  return value as Record<string, unknown>;
}

function optionalSats(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || (value as number) < 1) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'amountSats', reason: 'a whole number of sats, at least 1' });
  return value as number;
}

export function registerMarketRoutes(app: FastifyInstance, node: KalimaNode, deviceOf: (request: FastifyRequest) => string, market: MarketApi | undefined): void {
  const signed = { 'x-kalima-device': { type: 'string' }, 'x-kalima-timestamp': { type: 'string' }, 'x-kalima-signature': { type: 'string' } };
  const headers = { type: 'object', properties: signed };
  const known = (request: FastifyRequest): { device: string; admin: boolean } => {
    const device = deviceOf(request);
    const role = roleOf(node.cache, node.policy, device);
    if (role.kind === 'unknown') throw kalimaError('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE', { device });
    return { device, admin: role.kind === 'admin' };
  };
  const seller = (): MarketApi => {
    if (market === undefined) throw kalimaError('KALIMA_ERR_MARKET_NOT_CONFIGURED', {});
    return market;
  };
  const owned = (purchase: { buyer: string }, caller: { device: string; admin: boolean }, id: string): void => {
    // Someone else's purchase is as good as unknown.
    if (!caller.admin && purchase.buyer !== caller.device) throw kalimaError('KALIMA_ERR_MARKET_UNKNOWN_PURCHASE', { purchase: id });
  };

  app.get('/market/listings', { schema: { tags: ['market'], summary: 'The listings on the chain: an address prefix, a price in sats, an access period and the seller\'s LND; `ours` on a node that sells them', headers } }, async (request) => {
    known(request);
    if (market !== undefined) return { listings: market.listings() };
    return { listings: node.cache.entriesAt(LISTINGS_ADDRESS).map((entry) => listingView(entry.key, entry)) };
  });

  app.get('/market/listings/:id', { schema: { tags: ['market'], summary: 'One listing', headers } }, async (request) => {
    known(request);
    return findListing(node.cache, (request.params as { id: string }).id);
  });

  app.post('/market/purchases', { schema: { tags: ['market'], summary: 'Buy a listing for the signing device: answers a BOLT 11 hold invoice; once it is paid, the device gets SUB access to the prefix for the period and the invoice is settled, or it is cancelled and the payment refunded', headers } }, async (request, reply) => {
    // The market names a buyer that is no registered device itself (KALIMA_ERR_MARKET_UNKNOWN_BUYER).
    const device = deviceOf(request);
    const fields = body(request);
    if (typeof fields.listing !== 'string') throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'listing', reason: 'the listing id' });
    const purchase = await seller().buy({ listing: fields.listing, buyer: device, amountSats: optionalSats(fields.amountSats) });
    return reply.status(201).send(purchase);
  });

  app.get('/market/purchases/:id', { schema: { tags: ['market'], summary: 'A purchase: awaiting-payment, held, completed, refunded or expired (its buyer, or an admin)', headers } }, async (request) => {
    const caller = known(request);
    const { id } = request.params as { id: string };
    if (!/^[0-9a-f]{64}$/.test(id)) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'id', reason: 'a payment hash: 64 hex digits' });
    const purchase = seller().purchase(id);
    owned(purchase, caller, id);
    return purchase;
  });

  app.post('/klx/purchases', { schema: { tags: ['klx'], summary: 'Buy KLX for the signing device with sats: answers a BOLT 11 hold invoice; once it is paid the KLX moves from the treasury and the invoice is settled, atomically', headers } }, async (request, reply) => {
    const device = deviceOf(request);
    const fields = body(request);
    if (!Number.isSafeInteger(fields.klx) || (fields.klx as number) < 1) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'klx', reason: 'a whole number of KLX units, at least 1' });
    const purchase = await seller().buyKlx({ buyer: device, klx: fields.klx as number, amountSats: optionalSats(fields.amountSats) });
    return reply.status(201).send(purchase);
  });

  app.get('/klx', { schema: { tags: ['klx'], summary: 'The KLX supply issued and the treasury account', headers } }, async (request) => {
    known(request);
    const entry = node.cache.getEntry(KLX_SUPPLY_ADDRESS, KLX_SUPPLY_KEY);
    if (entry === undefined) throw kalimaError('KALIMA_ERR_KLX_NOT_ISSUED', {});
    const issue = decodeIssue(entry.value);
    return { supply: issue.amount, treasury: issue.treasury, treasuryBalance: accountOf(node.cache, issue.treasury)?.balance ?? 0 };
  });

  app.get('/klx/accounts/:account', { schema: { tags: ['klx'], summary: 'A KLX balance (the account\'s own device, or an admin)', headers } }, async (request) => {
    const caller = known(request);
    const { account } = request.params as { account: string };
    checkAccount(account);
    if (!caller.admin && (isEscrowAccount(account) || account !== caller.device)) throw kalimaError('KALIMA_ERR_ACCESS_SUB_DENIED', { device: caller.device, address: `/kalima/klx/accounts/${account}` });
    const found = accountOf(node.cache, account);
    return { account, balance: found?.balance ?? 0, owner: ownerOf(account) };
  });
}
