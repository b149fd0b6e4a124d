// The Lightning adapter's pure rules (chains/lightning/invoice.ts): an ln-service invoice read as
// open, held, settled or canceled with its held HTLCs; states that only move forward; the
// argument checks; the reconnect backoff.
import { describe, expect, it } from 'vitest';
import { autoCancelHeight, backoffMs, checkHash, defaultMaxFeeSats, checkSats, failureReason, invoiceStatus, isNews, type InvoiceStatus, type LnServiceInvoice } from '../../chains/lightning/invoice.ts';
import { KalimaError } from '../../src/errors.ts';

const base: LnServiceInvoice = {
  id: 'aa'.repeat(32), is_confirmed: false, tokens: 1000, received: 0, description: 'd', request: 'lnbcrt1', created_at: '2026-01-01T00:00:00.000Z',
  expires_at: '2026-01-02T00:00:00.000Z', cltv_delta: 40, secret: '', payments: [],
};
const htlc = (isHeld: boolean, timeout: number, height = 100) => ({ is_held: isHeld, timeout, created_height: height, tokens: 1000 });

describe('invoiceStatus', () => {
  it('open: nothing received, no HTLCs, no preimage', () => {
    expect(invoiceStatus(base)).toEqual({
      id: base.id, state: 'open', sats: 1000n, receivedSats: 0n, description: 'd', request: 'lnbcrt1', createdAt: base.created_at, expiresAt: base.expires_at,
      cltvDelta: 40, heldHtlcExpiryHeights: [], heldHtlcAcceptHeights: [],
    });
  });

  it('held: the amount and the expiry and accept heights of the HTLCs still held only', () => {
    const status = invoiceStatus({ ...base, is_held: true, received: 1000, payments: [htlc(true, 140), htlc(false, 130, 90)] });
    expect(status).toMatchObject({ state: 'held', receivedSats: 1000n, heldHtlcExpiryHeights: [140], heldHtlcAcceptHeights: [100] });
    expect(status.preimage).toBeUndefined();
  });

  it('settled: the preimage and when; canceled: nothing received, whatever LND still counts', () => {
    const secret = 'bb'.repeat(32);
    expect(invoiceStatus({ ...base, is_confirmed: true, received: 1000, secret, confirmed_at: '2026-01-01T01:00:00.000Z', payments: [htlc(false, 140)] }))
      .toMatchObject({ state: 'settled', receivedSats: 1000n, preimage: secret, settledAt: '2026-01-01T01:00:00.000Z', heldHtlcExpiryHeights: [] });
    expect(invoiceStatus({ ...base, is_canceled: true, received: 1000 })).toMatchObject({ state: 'canceled', receivedSats: 0n });
    // A settled flag wins over the others; an all-zero preimage is no preimage.
    expect(invoiceStatus({ ...base, is_confirmed: true, is_held: true, secret: '00'.repeat(32) }).state).toBe('settled');
    expect(invoiceStatus({ ...base, secret: '00'.repeat(32) }).preimage).toBeUndefined();
  });
});

describe('isNews', () => {
  const at = (state: InvoiceStatus['state'], extra: Partial<InvoiceStatus> = {}): InvoiceStatus => ({ ...invoiceStatus(base), state, ...extra });
  it('moves forward only: open → held → settled or canceled; never back, never from one final state to the other', () => {
    expect(isNews(undefined, at('open'))).toBe(true);
    expect(isNews(at('open'), at('held'))).toBe(true);
    expect(isNews(at('held'), at('settled'))).toBe(true);
    expect(isNews(at('open'), at('canceled'))).toBe(true);
    expect(isNews(at('held'), at('open'))).toBe(false);
    expect(isNews(at('settled'), at('held'))).toBe(false);
    expect(isNews(at('settled'), at('canceled'))).toBe(false);
    expect(isNews(at('canceled'), at('settled'))).toBe(false);
  });

  it('the same state is news only when its amounts or held HTLCs changed', () => {
    expect(isNews(at('held', { receivedSats: 1n }), at('held', { receivedSats: 1n }))).toBe(false);
    expect(isNews(at('held', { receivedSats: 1n }), at('held', { receivedSats: 2n }))).toBe(true);
    expect(isNews(at('held', { heldHtlcExpiryHeights: [140] }), at('held', { heldHtlcExpiryHeights: [140, 150] }))).toBe(true);
  });
});

describe('argument checks', () => {
  it('a hash or preimage is 32 bytes of hex (any case, returned lower case)', () => {
    expect(checkHash('AB'.repeat(32), 'id')).toBe('ab'.repeat(32));
    for (const bad of ['', 'ab', 'zz'.repeat(32), 'ab'.repeat(33), 42 as unknown as string]) {
      expect(() => checkHash(bad, 'id')).toThrow(KalimaError);
    }
  });

  it('an amount is a whole number of sat from 0 to 21e14', () => {
    expect(checkSats(0)).toBe(0);
    expect(checkSats(2_100_000_000_000_000n)).toBe(2_100_000_000_000_000);
    for (const bad of [-1, 1.5, Number.NaN, 2_100_000_000_000_001n]) expect(() => checkSats(bad)).toThrow(KalimaError);
  });
});

describe('failureReason and backoffMs', () => {
  it('names LND\'s PaymentFailureReason from the package\'s flags', () => {
    expect(failureReason({ is_invalid_payment: true })).toBe('FAILURE_REASON_INCORRECT_PAYMENT_DETAILS');
    expect(failureReason({ is_route_not_found: true })).toBe('FAILURE_REASON_NO_ROUTE');
    expect(failureReason({ is_insufficient_balance: true })).toBe('FAILURE_REASON_INSUFFICIENT_BALANCE');
    expect(failureReason({ is_pathfinding_timeout: true })).toBe('FAILURE_REASON_TIMEOUT');
    expect(failureReason({ is_canceled: true })).toBe('FAILURE_REASON_CANCELED');
    expect(failureReason({})).toBe('FAILURE_REASON_ERROR');
  });

  it('doubles from the first wait up to the cap, with the upper half jittered', () => {
    expect([0, 1, 2, 3, 10, 1000].map((attempt) => backoffMs(attempt, 100, 1000, 1))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(backoffMs(0, 100, 1000, 0)).toBe(50);
    expect(backoffMs(3, 100, 1000, 0.5)).toBe(600);
  });
});

describe('autoCancelHeight and defaultMaxFeeSats', () => {
  it('LND cancels a held invoice at the earliest held HTLC\'s expiry less its hold delta (12 by default)', () => {
    expect(autoCancelHeight({ heldHtlcExpiryHeights: [150, 140] })).toBe(128);
    expect(autoCancelHeight({ heldHtlcExpiryHeights: [140] }, 20)).toBe(120);
    expect(autoCancelHeight({ heldHtlcExpiryHeights: [] })).toBeUndefined();
  });

  it('limits fees to 1% of the amount, rounded up, and never below 10 sat', () => {
    expect(defaultMaxFeeSats(1n)).toBe(10);
    expect(defaultMaxFeeSats(1_000n)).toBe(10);
    expect(defaultMaxFeeSats(1_001n)).toBe(11);
    expect(defaultMaxFeeSats(100_000n)).toBe(1_000);
  });
});
