// The Lightning adapter (chains/lightning, over the real `lightning` package) against LND stand-ins
// (regtest/lnd) that share one simulated network, over gRPC with TLS and macaroons: invoices, hold
// invoices held then settled, canceled or auto-canceled by blocks, payments refused (expired, paid
// twice, no route, too little balance), malformed requests and LND's texts behind every coded error.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LndClient } from '../../chains/lightning/lnd.ts';
import { KalimaError } from '../../src/errors.ts';
import { ManualClock } from '../../src/ports.ts';
import { HOLD_EXPIRY_DELTA } from '../../regtest/lnd/invoices.ts';
import { seededRng } from '../unit/support/seeded-rng.ts';
import { preimageAndHash, startNodes, waitFor, type Nodes } from './support/lnd.ts';

const rng = seededRng('lnd-invoices');
const clock = new ManualClock(Date.now());
let nodes: Nodes;
let alice: LndClient;
let bob: LndClient;
let carol: LndClient;

beforeAll(async () => {
  nodes = await startNodes(['alice', 'bob', 'carol'], [['alice', 'bob', 1_000_000], ['carol', 'bob', 50_000]], { clock, rng });
  ({ alice, bob, carol } = nodes.clients as Record<'alice' | 'bob' | 'carol', LndClient>);
});

afterAll(async () => {
  await nodes?.close();
});

async function rejection(promise: Promise<unknown>): Promise<KalimaError> {
  const error = await promise.then(() => undefined, (thrown: unknown) => thrown);
  expect(error, 'expected a rejection').toBeInstanceOf(KalimaError);
  return error as KalimaError;
}

/** Pays without waiting: the outcome, caught at once so a failure is never an unhandled rejection. */
function payLater(client: LndClient, request: string) {
  return client.pay(request).then((paid) => ({ paid }), (error: KalimaError) => ({ error }));
}

async function held(client: LndClient, id: string) {
  await waitFor(async () => (await client.getInvoice(id)).state === 'held', `invoice ${id} held`);
  return client.getInvoice(id);
}

describe('invoices and payments', () => {
  it('a plain invoice: decoded by the payer, paid, settled by LND itself, balances moved', async () => {
    const before = { alice: await alice.channelBalance(), bob: await bob.channelBalance() };
    const invoice = await bob.createInvoice({ sats: 1_000, description: 'oracle access' });
    expect(invoice.request).toMatch(/^lnbcrt10u1/);
    expect(createHash('sha256').update(Buffer.from(invoice.preimage!, 'hex')).digest('hex')).toBe(invoice.id);
    expect(await bob.getInvoice(invoice.id)).toMatchObject({ state: 'open', sats: 1_000n, receivedSats: 0n, description: 'oracle access', heldHtlcExpiryHeights: [] });

    const decoded = await alice.decodeInvoice(invoice.request);
    expect(decoded).toMatchObject({ id: invoice.id, destination: nodes.standIns.bob!.identityPubkey, sats: 1_000n, description: 'oracle access', cltvDelta: 80, isExpired: false });
    expect(decoded.paymentSecret).toMatch(/^[0-9a-f]{64}$/);

    const paid = await alice.pay(invoice.request);
    expect(paid).toMatchObject({ id: invoice.id, state: 'succeeded', preimage: invoice.preimage, sats: 1_000n, feeSats: 0n });
    expect(await bob.getInvoice(invoice.id)).toMatchObject({ state: 'settled', receivedSats: 1_000n, preimage: invoice.preimage });
    expect(await alice.getPayment(invoice.id)).toMatchObject({ state: 'succeeded', preimage: invoice.preimage });
    expect(await alice.trackPayment(invoice.id)).toMatchObject({ state: 'succeeded', preimage: invoice.preimage });
    expect((await alice.channelBalance()).localSats).toBe(before.alice.localSats - 1_000n);
    expect((await bob.channelBalance()).localSats).toBe(before.bob.localSats + 1_000n);
  });

  it('a hold invoice: held (payer in flight, HTLC expiry at height + delta), then settled: payer gets the preimage, balances move', async () => {
    const { preimage, id } = preimageAndHash(rng);
    const invoice = await bob.createHoldInvoice({ id, sats: 5_000, description: 'hold', cltvDelta: 40 });
    const before = { alice: await alice.channelBalance(), bob: await bob.channelBalance() };
    const height = nodes.network.height;
    const outcome = payLater(alice, invoice.request);

    const status = await held(bob, id);
    expect(status).toMatchObject({ state: 'held', receivedSats: 5_000n, heldHtlcExpiryHeights: [height + 40], heldHtlcAcceptHeights: [height] });
    expect(status.preimage).toBeUndefined();
    expect(await alice.getPayment(id)).toEqual({ id, state: 'pending' });
    expect(await alice.channelBalance()).toMatchObject({ localSats: before.alice.localSats - 5_000n, unsettledLocalSats: 5_000n });
    expect((await bob.channelBalance()).localSats).toBe(before.bob.localSats);
    // Paying again while the first is held: LND refuses, nothing moves twice.
    expect(await rejection(alice.pay(invoice.request))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_PAYMENT_IN_FLIGHT', details: { details: 'payment is in transition' } });

    await bob.settleHoldInvoice(preimage);
    expect(await outcome).toEqual({ paid: { id, state: 'succeeded', preimage, sats: 5_000n, feeSats: 0n } });
    expect(await bob.getInvoice(id)).toMatchObject({ state: 'settled', receivedSats: 5_000n, preimage, heldHtlcExpiryHeights: [] });
    expect(await alice.channelBalance()).toMatchObject({ localSats: before.alice.localSats - 5_000n, unsettledLocalSats: 0n });
    expect((await bob.channelBalance()).localSats).toBe(before.bob.localSats + 5_000n);

    // Retries: settling again is fine; cancelling a settled invoice is refused with LND's text.
    await bob.settleHoldInvoice(preimage);
    expect(await rejection(bob.cancelHoldInvoice(id))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_ALREADY_PAID', details: { details: 'invoice already settled' } });
  });

  it('a hold invoice held then canceled: the payer fails (incorrect payment details) and is refunded', async () => {
    const { preimage, id } = preimageAndHash(rng);
    const invoice = await bob.createHoldInvoice({ id, sats: 7_000, cltvDelta: 40 });
    const before = await alice.channelBalance();
    const outcome = payLater(alice, invoice.request);
    await held(bob, id);
    expect((await alice.channelBalance()).localSats).toBe(before.localSats - 7_000n);

    await bob.cancelHoldInvoice(id);
    const { error } = (await outcome) as { error: KalimaError };
    expect(error).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED', details: { failureReason: 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS', name: 'PaymentRejectedByDestination' } });
    expect(await alice.channelBalance()).toMatchObject({ localSats: before.localSats, unsettledLocalSats: 0n });
    expect(await bob.getInvoice(id)).toMatchObject({ state: 'canceled', receivedSats: 0n });
    expect(await alice.getPayment(id)).toEqual({ id, state: 'failed', failureReason: 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS' });

    await bob.cancelHoldInvoice(id);
    expect(await rejection(bob.settleHoldInvoice(preimage))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_INVOICE_CANCELED', details: { details: 'invoice already canceled' } });
  });

  it(`a held payment is canceled by LND once the height is within ${HOLD_EXPIRY_DELTA} blocks of the HTLC expiry; the payer is refunded`, async () => {
    const { id } = preimageAndHash(rng);
    const invoice = await bob.createHoldInvoice({ id, sats: 3_000, cltvDelta: 40 });
    const before = await alice.channelBalance();
    const outcome = payLater(alice, invoice.request);
    const expiry = (await held(bob, id)).heldHtlcExpiryHeights[0]!;

    nodes.network.mine(expiry - HOLD_EXPIRY_DELTA - 1 - nodes.network.height);
    expect((await bob.getInvoice(id)).state).toBe('held');
    nodes.network.mine(1);
    expect(nodes.network.height + HOLD_EXPIRY_DELTA).toBe(expiry);
    expect((await bob.getInvoice(id)).state).toBe('canceled');
    expect(((await outcome) as { error: KalimaError }).error).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED', details: { failureReason: 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS' } });
    expect((await alice.channelBalance()).localSats).toBe(before.localSats);
    expect((await alice.walletInfo()).blockHeight).toBe(nodes.network.height);
  });

  it('an invoice past its expiry is refused with LND\'s text, and the payee cancels it', async () => {
    const invoice = await bob.createInvoice({ sats: 2_000, expirySeconds: 60 });
    const before = await alice.channelBalance();
    clock.advance(61_000);
    const error = await rejection(alice.pay(invoice.request));
    expect(error.code).toBe('KALIMA_ERR_LIGHTNING_INVOICE_EXPIRED');
    expect(String(error.details.details)).toMatch(/^invoice expired\. Valid until /);
    expect((await bob.getInvoice(invoice.id)).state).toBe('canceled');
    expect((await alice.channelBalance()).localSats).toBe(before.localSats);
  });

  it('an invoice paid already: again from the same node is ALREADY_PAID, from another node a failed payment; nothing moves twice', async () => {
    const invoice = await bob.createInvoice({ sats: 1_500 });
    await alice.pay(invoice.request);
    const before = { alice: await alice.channelBalance(), carol: await carol.channelBalance(), bob: await bob.channelBalance() };
    expect(await rejection(alice.pay(invoice.request))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_ALREADY_PAID', details: { details: 'invoice is already paid' } });
    expect(await rejection(carol.pay(invoice.request))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED', details: { failureReason: 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS' } });
    expect((await alice.channelBalance()).localSats).toBe(before.alice.localSats);
    expect((await carol.channelBalance()).localSats).toBe(before.carol.localSats);
    expect((await bob.channelBalance()).localSats).toBe(before.bob.localSats);
  });

  it('no channel to the payee is FAILURE_REASON_NO_ROUTE; more than the channel holds is FAILURE_REASON_INSUFFICIENT_BALANCE', async () => {
    const toAlice = await alice.createInvoice({ sats: 100 });
    expect(await rejection(carol.pay(toAlice.request))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED', details: { failureReason: 'FAILURE_REASON_NO_ROUTE' } });
    const tooMuch = await bob.createInvoice({ sats: 60_000 });
    expect(await rejection(carol.pay(tooMuch.request))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED', details: { failureReason: 'FAILURE_REASON_INSUFFICIENT_BALANCE' } });
    expect(await carol.getPayment(tooMuch.id)).toMatchObject({ state: 'failed', failureReason: 'FAILURE_REASON_INSUFFICIENT_BALANCE' });
  });
});

describe('coded errors with LND\'s text kept', () => {
  it('a malformed BOLT 11 request is BAD_INVOICE, through DecodePayReq and through pay', async () => {
    const decoded = await rejection(alice.decodeInvoice('lnbcrt1qqqqqqqq'));
    expect(decoded).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_BAD_INVOICE', details: { method: 'decodePaymentRequest' } });
    expect(String(decoded.details.details)).toMatch(/invalid payment request/);
    const valid = await bob.createInvoice({ sats: 10 });
    expect((await rejection(alice.decodeInvoice(`${valid.request.slice(0, -6)}qqqqqq`))).code).toBe('KALIMA_ERR_LIGHTNING_BAD_INVOICE');
    expect(await rejection(alice.pay('not-an-invoice'))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_BAD_INVOICE', details: { method: 'decodePaymentRequest' } });
    const anyAmount = await bob.createInvoice({ sats: 0 });
    expect(await rejection(alice.pay(anyAmount.request))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_BAD_INVOICE', details: { reason: expect.stringMatching(/any-amount/) } });
    expect((await rejection(alice.decodeInvoice(''))).code).toBe('KALIMA_ERR_LIGHTNING_BAD_INVOICE');
  });

  it('settling an open hold invoice is INVOICE_NOT_HELD (`invoice still open`); unknown invoices and payments are NOT_FOUND', async () => {
    const { preimage, id } = preimageAndHash(rng);
    await bob.createHoldInvoice({ id, sats: 1_000, cltvDelta: 40 });
    expect(await rejection(bob.settleHoldInvoice(preimage))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_HELD', details: { details: 'invoice still open', name: 'CannotSettleHtlcBeforeHtlcReceived' } });
    expect((await bob.getInvoice(id)).state).toBe('open');
    const unknown = preimageAndHash(rng);
    expect(await rejection(bob.settleHoldInvoice(unknown.preimage))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND', details: { details: 'unable to locate invoice' } });
    expect(await rejection(bob.getInvoice(unknown.id))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND', details: { details: 'unable to locate invoice', grpcCode: 5 } });
    expect(await rejection(bob.cancelHoldInvoice(unknown.id))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND' });
    expect(await rejection(alice.getPayment(unknown.id))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_PAYMENT_NOT_FOUND', details: { details: `payment isn't initiated` } });
    expect(await rejection(alice.trackPayment(unknown.id))).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_PAYMENT_NOT_FOUND' });
  });

  it('a hold invoice made again: the same terms return the same invoice (a safe retry), other terms are DUPLICATE_INVOICE', async () => {
    const { id } = preimageAndHash(rng);
    const first = await bob.createHoldInvoice({ id, sats: 4_000, description: 'once', cltvDelta: 40 });
    expect(await bob.createHoldInvoice({ id, sats: 4_000, description: 'once', cltvDelta: 40 })).toEqual(first);
    expect(await rejection(bob.createHoldInvoice({ id, sats: 4_001, description: 'once', cltvDelta: 40 }))).toMatchObject({
      code: 'KALIMA_ERR_LIGHTNING_DUPLICATE_INVOICE', details: { details: 'invoice with payment hash already exists' },
    });
  });

  it('malformed arguments are BAD_ARGUMENT before LND is asked', async () => {
    expect((await rejection(bob.getInvoice('abc'))).code).toBe('KALIMA_ERR_LIGHTNING_BAD_ARGUMENT');
    expect((await rejection(bob.settleHoldInvoice('zz'.repeat(32)))).code).toBe('KALIMA_ERR_LIGHTNING_BAD_ARGUMENT');
    expect((await rejection(bob.createHoldInvoice({ id: '00'.repeat(32), sats: -1 }))).code).toBe('KALIMA_ERR_LIGHTNING_BAD_ARGUMENT');
    expect((await rejection(bob.createInvoice({ sats: 1.5 }))).code).toBe('KALIMA_ERR_LIGHTNING_BAD_ARGUMENT');
  });
});
