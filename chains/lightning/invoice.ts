// What the Lightning adapter says about invoices and payments, read from what the `lightning`
// package returns. Pure: no gRPC here, so every rule is unit-tested on its own.
import { kalimaError } from '../../src/errors.ts';

export type InvoiceState = 'open' | 'held' | 'settled' | 'canceled';

export interface InvoiceStatus {
  /** The payment hash, hex. */
  id: string;
  state: InvoiceState;
  /** What the invoice asks, sat (0: any amount). */
  sats: bigint;
  /** What is held or was received, sat: the HTLCs LND holds (held) or settled (settled); 0 when open or canceled. */
  receivedSats: bigint;
  description: string;
  /** The BOLT 11 string, when LND has one. */
  request?: string;
  createdAt: string;
  expiresAt: string;
  /** The final CLTV delta the invoice asks of its HTLCs. */
  cltvDelta: number;
  /** The expiry heights of the HTLCs held now (only while held); the earliest is the deadline to settle or cancel by. */
  heldHtlcExpiryHeights: number[];
  /** The heights at which those HTLCs were accepted. */
  heldHtlcAcceptHeights: number[];
  /** When it was settled. */
  settledAt?: string;
  /** The preimage, hex, when LND knows it (a plain invoice always; a hold invoice once settled). */
  preimage?: string;
}

/** The fields of ln-service's invoice (getInvoice, subscribeToInvoice) that are read here. */
export interface LnServiceInvoice {
  id: string;
  is_confirmed: boolean;
  is_held?: boolean;
  is_canceled?: boolean;
  tokens: number;
  received: number;
  description?: string;
  request?: string;
  created_at: string;
  expires_at: string;
  cltv_delta?: number;
  confirmed_at?: string;
  secret?: string;
  payments: { is_held: boolean; timeout: number; created_height: number; tokens: number }[];
}

const HASH = /^[0-9a-f]{64}$/;

export function invoiceState(invoice: Pick<LnServiceInvoice, 'is_confirmed' | 'is_held' | 'is_canceled'>): InvoiceState {
  if (invoice.is_confirmed) return 'settled';
  if (invoice.is_canceled) return 'canceled';
  if (invoice.is_held) return 'held';
  return 'open';
}

export function invoiceStatus(invoice: LnServiceInvoice): InvoiceStatus {
  const state = invoiceState(invoice);
  const held = state === 'held' ? invoice.payments.filter((htlc) => htlc.is_held) : [];
  const preimage = invoice.secret && HASH.test(invoice.secret) && !/^0+$/.test(invoice.secret) ? invoice.secret : undefined;
  return {
    id: invoice.id,
    state,
    sats: BigInt(invoice.tokens),
    // LND's amt_paid counts the HTLCs it accepted; a canceled invoice keeps none.
    receivedSats: state === 'held' || state === 'settled' ? BigInt(invoice.received) : 0n,
    description: invoice.description ?? '',
    ...(invoice.request ? { request: invoice.request } : {}),
    createdAt: invoice.created_at,
    expiresAt: invoice.expires_at,
    cltvDelta: invoice.cltv_delta ?? 0,
    heldHtlcExpiryHeights: held.map((htlc) => htlc.timeout),
    heldHtlcAcceptHeights: held.map((htlc) => htlc.created_height),
    ...(state === 'settled' && invoice.confirmed_at ? { settledAt: invoice.confirmed_at } : {}),
    ...(preimage ? { preimage } : {}),
  };
}

/** open < held < settled = canceled: an invoice only moves forward, so a late, older answer never undoes a newer one. */
export function invoiceRank(state: InvoiceState): number {
  return state === 'open' ? 0 : state === 'held' ? 1 : 2;
}

export function isFinal(state: InvoiceState): boolean {
  return state === 'settled' || state === 'canceled';
}

/** Whether `next` says something `previous` did not: a later state, or the same state with other HTLCs or amounts. */
export function isNews(previous: InvoiceStatus | undefined, next: InvoiceStatus): boolean {
  if (!previous) return true;
  const [before, after] = [invoiceRank(previous.state), invoiceRank(next.state)];
  if (after !== before) return after > before;
  if (next.state !== previous.state) return false; // settled vs canceled: the first final word stands
  return previous.receivedSats !== next.receivedSats || previous.heldHtlcExpiryHeights.join() !== next.heldHtlcExpiryHeights.join();
}

/** A payment hash or preimage: 32 bytes, hex. Anything else is refused before LND sees it. */
export function checkHash(value: string, what: 'id' | 'preimage'): string {
  if (typeof value !== 'string' || !HASH.test(value.toLowerCase())) throw kalimaError('KALIMA_ERR_LIGHTNING_BAD_ARGUMENT', { [what]: value, expected: '32 bytes, hex' });
  return value.toLowerCase();
}

/** An amount of sat for an invoice: a whole number, 0 (any amount) up to 21 million BTC. */
export function checkSats(value: bigint | number, what = 'sats'): number {
  const sats = typeof value === 'bigint' ? value : Number.isInteger(value) ? BigInt(value) : -1n;
  if (sats < 0n || sats > 2_100_000_000_000_000n) throw kalimaError('KALIMA_ERR_LIGHTNING_BAD_ARGUMENT', { [what]: String(value), expected: 'a whole number of sat, 0 to 21e14' });
  return Number(sats);
}

/** The LND PaymentFailureReason behind the flags ln-service gives a failed payment. */
export function failureReason(failed: { is_canceled?: boolean; is_insufficient_balance?: boolean; is_invalid_payment?: boolean; is_pathfinding_timeout?: boolean; is_route_not_found?: boolean }): string {
  if (failed.is_canceled) return 'FAILURE_REASON_CANCELED';
  if (failed.is_insufficient_balance) return 'FAILURE_REASON_INSUFFICIENT_BALANCE';
  if (failed.is_invalid_payment) return 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS';
  if (failed.is_pathfinding_timeout) return 'FAILURE_REASON_TIMEOUT';
  if (failed.is_route_not_found) return 'FAILURE_REASON_NO_ROUTE';
  return 'FAILURE_REASON_ERROR';
}

/**
 * LND's default hold expiry delta (`--invoices.holdexpirydelta`, 12): LND cancels a held HTLC by
 * itself once the chain is this many blocks from the HTLC's expiry height.
 */
export const LND_HOLD_EXPIRY_DELTA = 12;

/**
 * The height at which LND cancels a held invoice by itself (the earliest held HTLC's expiry less
 * the hold expiry delta): a settle must reach LND before a block of this height does. Undefined
 * when nothing is held.
 */
export function autoCancelHeight(status: Pick<InvoiceStatus, 'heldHtlcExpiryHeights'>, holdExpiryDelta = LND_HOLD_EXPIRY_DELTA): number | undefined {
  if (status.heldHtlcExpiryHeights.length === 0) return undefined;
  return Math.min(...status.heldHtlcExpiryHeights) - holdExpiryDelta;
}

/**
 * The default fee limit of a payment: 1% of the amount, at least 10 sat. ln-service sets no limit
 * when given none; this keeps a route that costs more than the payment from being taken.
 */
export function defaultMaxFeeSats(sats: bigint): number {
  const onePercent = (sats + 99n) / 100n;
  return Number(onePercent > 10n ? onePercent : 10n);
}

/** Capped exponential backoff, the upper half jittered: attempt 0 waits about `initialMs`. */
export function backoffMs(attempt: number, initialMs: number, maxMs: number, random: number): number {
  const full = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(full / 2 + (full / 2) * random);
}
