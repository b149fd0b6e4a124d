// watchInvoice across restarts of the receiving LND stand-in: the stream breaks (a crash, or a clean
// shutdown), the watcher subscribes again and reads the invoice, and reports what changed while it
// was away: a payment held and settled meanwhile, or a held payment LND canceled at startup because
// blocks mined while it was down brought the HTLC within its expiry margin.
import { afterEach, describe, expect, it } from 'vitest';
import type { InvoiceState, LndClient } from '../../chains/lightning/lnd.ts';
import type { KalimaError } from '../../src/errors.ts';
import { HOLD_EXPIRY_DELTA } from '../../regtest/lnd/invoices.ts';
import { seededRng } from '../unit/support/seeded-rng.ts';
import { ManualScheduler, preimageAndHash, reachable, startNodes, waitFor, type Nodes } from './support/lnd.ts';

const rng = seededRng('lnd-restart');
let nodes: Nodes | undefined;

afterEach(async () => {
  await nodes?.close();
  nodes = undefined;
});

function payLater(client: LndClient, request: string) {
  return client.pay(request).then((paid) => ({ paid }), (error: KalimaError) => ({ error }));
}

/** alice pays bob over one channel; bob's adapter watches with `scheduler`. */
async function setUp(scheduler?: ManualScheduler) {
  nodes = await startNodes(['alice', 'bob'], [['alice', 'bob', 100_000]], { rng, client: { reconcileEveryMs: 0, ...(scheduler ? { scheduler } : {}) } });
  const { alice, bob } = nodes.clients as Record<'alice' | 'bob', LndClient>;
  const { preimage, id } = preimageAndHash(rng);
  const invoice = await bob.createHoldInvoice({ id, sats: 2_500, description: 'watched', cltvDelta: 40 });
  const states: InvoiceState[] = [];
  const errors: (KalimaError | undefined)[] = [];
  const watch = bob.watchInvoice(id, (status) => states.push(status.state), { onError: (error) => errors.push(error) });
  await waitFor(() => states.length === 1, 'the first state');
  return { nodes, alice, bob, id, preimage, invoice, states, errors, watch, standIn: nodes.standIns.bob! };
}

describe('watchInvoice survives a restart of LND', () => {
  it('after a crash: a payment held and settled while the watcher was away is reported when it subscribes again', async () => {
    const scheduler = new ManualScheduler();
    const { alice, bob, id, preimage, invoice, states, errors, watch, standIn } = await setUp(scheduler);
    expect(states).toEqual(['open']);

    standIn.kill();
    await waitFor(() => scheduler.pending === 1, 'a re-subscribe scheduled');
    expect(errors.map((error) => error?.code)).toEqual(['KALIMA_ERR_LIGHTNING_UNREACHABLE']);

    await standIn.restart();
    await reachable(bob);
    const outcome = payLater(alice, invoice.request);
    await waitFor(async () => (await bob.getInvoice(id)).state === 'held', 'held');
    await bob.settleHoldInvoice(preimage);
    expect(await outcome).toMatchObject({ paid: { state: 'succeeded', preimage } });
    expect(states).toEqual(['open']);

    scheduler.fire();
    await waitFor(() => watch.closed, 'the watch to end after settled');
    expect(states).toEqual(['open', 'settled']);
    expect(watch.last).toMatchObject({ state: 'settled', receivedSats: 2_500n, preimage });
    expect(scheduler.pending).toBe(0);
  });

  it(`after a clean stop: blocks mined while LND was down bring the held HTLC within ${HOLD_EXPIRY_DELTA} blocks of expiry; LND cancels it at startup and the watcher reports it`, async () => {
    const scheduler = new ManualScheduler();
    const { nodes, alice, invoice, states, errors, watch, standIn } = await setUp(scheduler);
    const before = await alice.channelBalance();
    const outcome = payLater(alice, invoice.request);
    await waitFor(() => states.length === 2, 'held');
    expect(states).toEqual(['open', 'held']);
    const expiry = watch.last!.heldHtlcExpiryHeights[0]!;

    await standIn.stop();
    await waitFor(() => scheduler.pending === 1, 'a re-subscribe scheduled');
    expect(errors[0]).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_UNREACHABLE', details: { details: 'server shutting down' } });

    nodes.network.mine(expiry - HOLD_EXPIRY_DELTA - nodes.network.height);
    // LND is down: nothing cancels the HTLC yet, and the payer is still in flight.
    expect(standIn.node.invoices.find(Buffer.from(invoice.id, 'hex'))?.state).toBe('ACCEPTED');
    expect(await alice.getPayment(invoice.id)).toMatchObject({ state: 'pending' });

    await standIn.restart();
    expect(((await outcome) as { error: KalimaError }).error).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED', details: { failureReason: 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS' } });
    expect((await alice.channelBalance()).localSats).toBe(before.localSats);
    expect(states).toEqual(['open', 'held']);

    scheduler.fire();
    await waitFor(() => watch.closed, 'the watch to end after canceled');
    expect(states).toEqual(['open', 'held', 'canceled']);
  });

  it('on real timers: the watcher comes back by itself soon after LND does and reports the payment held after the restart', async () => {
    const { alice, bob, preimage, invoice, states, errors, watch, standIn } = await setUp();
    standIn.kill();
    await waitFor(() => errors.length > 0, 'the stream to break');
    // Down for a while: the watcher keeps trying at its capped backoff.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(errors.length).toBeGreaterThan(1);
    expect(new Set(errors.map((error) => error?.code))).toEqual(new Set(['KALIMA_ERR_LIGHTNING_UNREACHABLE']));

    await standIn.restart();
    const back = Date.now();
    const outcome = payLater(alice, invoice.request);
    await waitFor(() => states.includes('held'), 'held reported', 3_000);
    expect(Date.now() - back).toBeLessThan(2_500);
    await bob.settleHoldInvoice(preimage);
    await waitFor(() => watch.closed, 'settled reported');
    expect(states).toEqual(['open', 'held', 'settled']);
    expect(await outcome).toMatchObject({ paid: { state: 'succeeded' } });
  });

  it('a payer that crashes mid-payment: pay is UNREACHABLE, a retry is PAYMENT_IN_FLIGHT then ALREADY_PAID, and the payment is made once', async () => {
    const { nodes, alice, bob, preimage, invoice } = await setUp();
    const payer = nodes.standIns.alice!;
    const before = await alice.channelBalance();
    const outcome = payLater(alice, invoice.request);
    await waitFor(async () => (await bob.getInvoice(invoice.id)).state === 'held', 'held');
    payer.kill();
    expect(((await outcome) as { error: KalimaError }).error.code).toBe('KALIMA_ERR_LIGHTNING_UNREACHABLE');

    await payer.restart();
    await reachable(alice);
    expect(await alice.getPayment(invoice.id)).toMatchObject({ state: 'pending' });
    expect((await payLater(alice, invoice.request) as { error: KalimaError }).error.code).toBe('KALIMA_ERR_LIGHTNING_PAYMENT_IN_FLIGHT');
    await bob.settleHoldInvoice(preimage);
    expect(await alice.trackPayment(invoice.id)).toMatchObject({ state: 'succeeded', preimage });
    expect((await payLater(alice, invoice.request) as { error: KalimaError }).error.code).toBe('KALIMA_ERR_LIGHTNING_ALREADY_PAID');
    expect(await alice.getPayment(invoice.id)).toMatchObject({ state: 'succeeded', preimage });
    expect((await alice.channelBalance()).localSats).toBe(before.localSats - 2_500n);
  });

  it('a payee down past the HTLC expiry: the payer takes the HTLC back at the expiry height; the payee cancels the invoice when it comes back', async () => {
    const { nodes, alice, bob, invoice, standIn } = await setUp();
    const before = await alice.channelBalance();
    const outcome = payLater(alice, invoice.request);
    await waitFor(async () => (await bob.getInvoice(invoice.id)).state === 'held', 'held');
    const expiry = (await bob.getInvoice(invoice.id)).heldHtlcExpiryHeights[0]!;
    standIn.kill();
    expect(nodes.standIns.alice!.running).toBe(true);

    nodes.network.mine(expiry - nodes.network.height - 1);
    expect(await alice.getPayment(invoice.id)).toMatchObject({ state: 'pending' });
    nodes.network.mine(1);
    expect(((await outcome) as { error: KalimaError }).error).toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED', details: { failureReason: 'FAILURE_REASON_ERROR' } });
    expect(await alice.channelBalance()).toMatchObject({ localSats: before.localSats, unsettledLocalSats: 0n });

    await standIn.restart();
    await reachable(bob);
    expect(await bob.getInvoice(invoice.id)).toMatchObject({ state: 'canceled', receivedSats: 0n });
    expect((await bob.channelBalance()).localSats).toBe(0n);
  });

  it('close() stops a watch: no more reports, no re-subscribe', async () => {
    const { alice, invoice, states, watch, standIn } = await setUp();
    watch.close();
    expect(watch.closed).toBe(true);
    const outcome = payLater(alice, invoice.request);
    await waitFor(() => standIn.node.invoices.find(Buffer.from(invoice.id, 'hex'))?.state === 'ACCEPTED', 'held');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(states).toEqual(['open']);
    await nodes!.clients.bob!.cancelHoldInvoice(invoice.id);
    expect(await outcome).toMatchObject({ error: { code: 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED' } });
  });
});
