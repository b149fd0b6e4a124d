// The data marketplace on the chain. Bodies in the canonical codec, each led by its kind byte.
//   /kalima/market/listings  key = listing id            body = Listing      (a seller offers an oracle)
//   /kalima/market/grants    key = <buyer hex>.<listing> body = MarketGrant  (a buyer paid for it)
//
// A listing sells SUB access to an address prefix for a period, at a price in sats, paid to the
// seller's LND. Its writer is its seller: an admin, or a device whose PUB list covers the prefix
// (whoever writes the data may sell it). Only its seller or an admin may change or withdraw it.
//
// A grant gives the buyer's device SUB access to the listing's prefix until `untilMs`. Only the
// listing's seller or an admin writes it (the seller's node does, once the buyer's payment is
// held; bridge/ makes the grant and the settlement one atomic step). It is written with a TTL that
// runs out at `untilMs`, so the chain deletes it on its own; readers also stop honouring it at
// `untilMs` by their clock, so access ends on time even before that delete is in a block.
import { kalimaError } from '../errors.ts';
import { Reader, Writer } from '../ledger/codec.ts';
import { toHex } from '../ledger/hash.ts';
import { type Message, isDelete } from '../ledger/message.ts';
import { checkPrefix, isReservedAddress } from './records.ts';

export const MARKET_ROOT = '/kalima/market';
export const LISTINGS_ADDRESS = '/kalima/market/listings';
export const GRANTS_ADDRESS = '/kalima/market/grants';

export const LISTING_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** The most a listing may ask, in sats (a whole bitcoin: far beyond a data subscription). */
export const PRICE_SATS_MAX = 100_000_000;
/** About ten years: the longest TTL (315,360,000 s) less a few days, so a grant renewed to the cap still fits in one. */
export const PERIOD_SECONDS_MAX = 315_000_000;
const TITLE_BYTES_MAX = 256;

const enum MarketKind {
  Listing = 1,
  Grant = 2,
}

export interface Listing {
  title: string;
  /** The address prefix whose data is sold. */
  prefix: string;
  priceSats: number;
  /** How long a purchase gives access. */
  periodSeconds: number;
  /** The seller's LND node: its identity key, compressed (33 bytes). */
  sellerNode: Uint8Array;
}

export interface MarketGrant {
  listing: string;
  prefix: string;
  /** Access ends at this time (ms since the epoch). */
  untilMs: number;
  /** The purchase it came from: the payment hash of the hold invoice. */
  purchase: Uint8Array;
}

function bad(code: 'KALIMA_ERR_MARKET_BAD_LISTING' | 'KALIMA_ERR_MARKET_BAD_GRANT', reason: string, details: Record<string, unknown> = {}): never {
  throw kalimaError(code, { reason, ...details });
}

export function checkListingId(id: string): void {
  if (!LISTING_ID_PATTERN.test(id)) bad('KALIMA_ERR_MARKET_BAD_LISTING', 'a listing id matches ^[a-z0-9][a-z0-9._-]{0,63}$', { listing: id });
}

export function checkListing(listing: Listing): void {
  const fail = (reason: string): never => bad('KALIMA_ERR_MARKET_BAD_LISTING', reason);
  if (new TextEncoder().encode(listing.title).length > TITLE_BYTES_MAX) fail(`the title is longer than ${TITLE_BYTES_MAX} bytes`);
  try {
    checkPrefix(listing.prefix);
  } catch {
    fail('the prefix must be an address such as /sensors/plant1, or /');
  }
  if (isReservedAddress(listing.prefix)) fail('the chain\'s own data under /kalima is not for sale');
  if (!Number.isSafeInteger(listing.priceSats) || listing.priceSats < 1 || listing.priceSats > PRICE_SATS_MAX) fail(`the price is a whole number of sats from 1 to ${PRICE_SATS_MAX}`);
  if (!Number.isSafeInteger(listing.periodSeconds) || listing.periodSeconds < 1 || listing.periodSeconds > PERIOD_SECONDS_MAX) fail(`the period is a whole number of seconds from 1 to ${PERIOD_SECONDS_MAX}`);
  if (listing.sellerNode.length !== 33 || (listing.sellerNode[0] !== 2 && listing.sellerNode[0] !== 3)) fail('the seller node is a compressed public key (33 bytes, 02 or 03 first)');
}

export function encodeListing(listing: Listing): Uint8Array {
  checkListing(listing);
  return new Writer().u8(MarketKind.Listing).text(listing.title).text(listing.prefix).varint(listing.priceSats).varint(listing.periodSeconds).fixed(listing.sellerNode, 33).finish();
}

export function decodeListing(bytes: Uint8Array): Listing {
  let listing: Listing;
  try {
    const reader = new Reader(bytes);
    if (reader.u8() !== MarketKind.Listing) bad('KALIMA_ERR_MARKET_BAD_LISTING', 'not a listing');
    listing = { title: reader.text(TITLE_BYTES_MAX), prefix: reader.text(256), priceSats: reader.varint(), periodSeconds: reader.varint(), sellerNode: reader.fixed(33) };
    reader.end();
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'KALIMA_ERR_MARKET_BAD_LISTING') throw error;
    bad('KALIMA_ERR_MARKET_BAD_LISTING', error instanceof Error ? error.message : String(error));
  }
  checkListing(listing);
  return listing;
}

export function encodeGrant(grant: MarketGrant): Uint8Array {
  checkListingId(grant.listing);
  if (grant.purchase.length !== 32) bad('KALIMA_ERR_MARKET_BAD_GRANT', 'the purchase is a 32-byte payment hash');
  return new Writer().u8(MarketKind.Grant).text(grant.listing).text(grant.prefix).varint(grant.untilMs).fixed(grant.purchase, 32).finish();
}

export function decodeGrant(bytes: Uint8Array): MarketGrant {
  try {
    const reader = new Reader(bytes);
    if (reader.u8() !== MarketKind.Grant) bad('KALIMA_ERR_MARKET_BAD_GRANT', 'not a grant');
    const grant = { listing: reader.text(64), prefix: reader.text(256), untilMs: reader.varint(), purchase: reader.fixed(32) };
    reader.end();
    checkListingId(grant.listing);
    checkPrefix(grant.prefix);
    return grant;
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'KALIMA_ERR_MARKET_BAD_GRANT') throw error;
    return bad('KALIMA_ERR_MARKET_BAD_GRANT', error instanceof Error ? error.message : String(error));
  }
}

/** The key of a buyer's grant for a listing. */
export function grantKey(buyerHex: string, listing: string): string {
  return `${buyerHex}.${listing}`;
}

/** The buyer and the listing of a grant's key, or undefined when the key is not one. */
export function parseGrantKey(key: string): { buyerHex: string; listing: string } | undefined {
  const match = /^([0-9a-f]{64})\.(.+)$/.exec(key);
  if (match === null || !LISTING_ID_PATTERN.test(match[2]!)) return undefined;
  return { buyerHex: match[1]!, listing: match[2]! };
}

/** What the checks of a market message need from the chain's state. */
export interface MarketState {
  listing(id: string): { listing: Listing; sellerHex: string } | undefined;
  /** True when the device is registered (an admin needs no grant). */
  isDevice(deviceHex: string): boolean;
  isAdmin(deviceHex: string): boolean;
  /** True when the device's PUB list covers the address. */
  mayPublish(deviceHex: string, address: string): boolean;
}

/**
 * Every check of a message on /kalima/market/… (put or delete), by its writer; throws the coded
 * error, changing nothing. `existingSellerHex` is the writer of the entry it replaces, if any.
 */
export function checkMarketMessage(message: Message, state: MarketState, context: { blockTimeMs: number; existingSellerHex?: string }): void {
  const deviceHex = toHex(message.device);
  const admin = state.isAdmin(deviceHex);
  if (message.address === LISTINGS_ADDRESS) {
    checkListingId(message.key);
    if (context.existingSellerHex !== undefined && !admin && context.existingSellerHex !== deviceHex) {
      throw kalimaError('KALIMA_ERR_MARKET_NOT_SELLER', { listing: message.key, device: deviceHex });
    }
    if (isDelete(message)) return;
    const listing = decodeListing(message.body);
    if (!admin && !state.mayPublish(deviceHex, listing.prefix)) throw kalimaError('KALIMA_ERR_MARKET_NOT_SELLER', { listing: message.key, device: deviceHex, reason: 'a seller lists only data it may publish' });
    return;
  }
  if (message.address === GRANTS_ADDRESS) {
    const parsed = parseGrantKey(message.key);
    if (parsed === undefined) bad('KALIMA_ERR_MARKET_BAD_GRANT', 'the key is <buyer device id, hex>.<listing id>', { key: message.key });
    const found = state.listing(parsed.listing);
    if (isDelete(message)) {
      // A withdrawn listing's grants may still be ended by an admin, or by its seller while it is listed.
      if (!admin && found?.sellerHex !== deviceHex) throw kalimaError('KALIMA_ERR_MARKET_NOT_SELLER', { listing: parsed.listing, device: deviceHex });
      return;
    }
    if (found === undefined) throw kalimaError('KALIMA_ERR_MARKET_UNKNOWN_LISTING', { listing: parsed.listing });
    if (!admin && found.sellerHex !== deviceHex) throw kalimaError('KALIMA_ERR_MARKET_NOT_SELLER', { listing: parsed.listing, device: deviceHex });
    // A seller whose PUB no longer covers the prefix (revoked, or unregistered) sells it no more.
    if (!admin && !state.mayPublish(deviceHex, found.listing.prefix)) throw kalimaError('KALIMA_ERR_MARKET_NOT_SELLER', { listing: parsed.listing, device: deviceHex, reason: 'the seller may no longer publish the prefix' });
    if (!state.isDevice(parsed.buyerHex)) throw kalimaError('KALIMA_ERR_MARKET_UNKNOWN_BUYER', { buyer: parsed.buyerHex });
    const grant = decodeGrant(message.body);
    if (grant.listing !== parsed.listing) bad('KALIMA_ERR_MARKET_BAD_GRANT', 'the grant names another listing than its key', { key: message.key, listing: grant.listing });
    if (grant.prefix !== found.listing.prefix) bad('KALIMA_ERR_MARKET_BAD_GRANT', 'the grant\'s prefix is not the listing\'s', { prefix: grant.prefix, listed: found.listing.prefix });
    if (grant.untilMs <= context.blockTimeMs) bad('KALIMA_ERR_MARKET_BAD_GRANT', 'the grant ends before the block that would write it', { untilMs: grant.untilMs, blockTimeMs: context.blockTimeMs });
    // The chain deletes the grant on its own: its TTL must run out no earlier than the access ends.
    if (message.ttlSeconds === -1 || context.blockTimeMs + message.ttlSeconds * 1000 < grant.untilMs) {
      bad('KALIMA_ERR_MARKET_BAD_GRANT', 'a grant is written with a TTL that lasts to its end, so the chain deletes it then', { ttl: message.ttlSeconds });
    }
    return;
  }
  throw kalimaError('KALIMA_ERR_ACCESS_ADMIN_ONLY', { device: deviceHex, address: message.address });
}

export function isMarketAddress(address: string): boolean {
  return address === LISTINGS_ADDRESS || address === GRANTS_ADDRESS;
}

/** A listing as REST, the SDK and the CLI show it. */
export interface ListingView {
  id: string;
  title: string;
  prefix: string;
  priceSats: number;
  periodSeconds: number;
  /** The seller's LND node key, hex. */
  sellerNode: string;
  /** The device that listed it, hex. */
  seller: string;
}

/** The listing `id` on the chain; KALIMA_ERR_MARKET_UNKNOWN_LISTING when there is none. */
export function findListing(state: { getEntry(address: string, key: string): { value: Uint8Array; device: Uint8Array } | undefined }, id: string): ListingView {
  checkListingId(id);
  const entry = state.getEntry(LISTINGS_ADDRESS, id);
  if (entry === undefined) throw kalimaError('KALIMA_ERR_MARKET_UNKNOWN_LISTING', { listing: id });
  return listingView(id, entry);
}

export function listingView(id: string, entry: { value: Uint8Array; device: Uint8Array }): ListingView {
  const listing = decodeListing(entry.value);
  return { id, title: listing.title, prefix: listing.prefix, priceSats: listing.priceSats, periodSeconds: listing.periodSeconds, sellerNode: toHex(listing.sellerNode), seller: toHex(entry.device) };
}
