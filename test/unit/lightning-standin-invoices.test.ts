// The LND stand-in's invoice registry (regtest/lnd/invoices.ts) on its own: which HTLCs it takes,
// holds or fails back, LND's errors for settle and cancel in each state, the expiry of unpaid
// invoices, the auto-cancel margin of held HTLCs, and what each kind of subscriber is told.
import { describe, expect, it } from 'vitest';
import { HOLD_EXPIRY_DELTA, InvoiceRegistry, sha256, type IncomingHtlc, type StoredInvoice } from '../../regtest/lnd/invoices.ts';
import { LndRpcError } from '../../regtest/lnd/rpc-error.ts';
import { seededRng } from './support/seeded-rng.ts';

function registry() {
  const rng = seededRng('standin-invoices');
  const clock = { seconds: 1_780_000_000, height: 500 };
  const invoices = new InvoiceRegistry(() => clock.seconds, () => clock.height, () => 'lnbcrt-test', (n) => Buffer.from(rng.bytes(n)));
  const preimage = Buffer.from(rng.bytes(32));
  return { invoices, clock, preimage, hash: sha256(preimage) };
}

/** An HTLC for `invoice` and what it was released with (undefined: still held). */
function htlcFor(invoice: StoredInvoice, height: number, change: Partial<IncomingHtlc> = {}) {
  const outcome: { released?: Buffer | null } = {};
  const htlc: IncomingHtlc = {
    hash: invoice.hash, paymentAddr: invoice.paymentAddr, amountMsat: invoice.valueMsat, expiryHeight: height + invoice.cltvDelta, chanId: '1', htlcIndex: 1,
    release: (preimage) => {
      outcome.released = preimage;
    },
    ...change,
  };
  return { htlc, outcome };
}

const lndError = (action: () => unknown) => {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(LndRpcError);
    return (error as LndRpcError).details;
  }
  throw new Error('expected an LND error');
};

describe('the stand-in invoice registry', () => {
  it('a plain invoice settles its first HTLC and refuses a second', () => {
    const { invoices, clock, preimage } = registry();
    const invoice = invoices.add({ preimage, memo: 'm', valueMsat: 10_000n, expirySeconds: 3600, cltvDelta: 40 });
    const first = htlcFor(invoice, clock.height);
    invoices.receive(first.htlc);
    expect(first.outcome.released).toEqual(preimage);
    expect(invoice).toMatchObject({ state: 'SETTLED', amountPaidMsat: 10_000n, settleIndex: 1 });
    const second = htlcFor(invoice, clock.height);
    invoices.receive(second.htlc);
    expect(second.outcome.released).toBeNull();
  });

  it('fails back an HTLC with the wrong payment secret, too little, an unknown hash or an expiry too close', () => {
    const { invoices, clock, hash } = registry();
    const invoice = invoices.add({ hash, memo: '', valueMsat: 10_000n, expirySeconds: 3600, cltvDelta: 40 });
    for (const change of [
      { paymentAddr: Buffer.alloc(32, 7) },
      { amountMsat: 9_999n },
      { hash: Buffer.alloc(32, 9) },
      { expiryHeight: clock.height + 39 },
    ]) {
      const { htlc, outcome } = htlcFor(invoice, clock.height, change);
      invoices.receive(htlc);
      expect(outcome.released, JSON.stringify(Object.keys(change))).toBeNull();
    }
    expect(invoice.state).toBe('OPEN');
  });

  it('settle and cancel in every state, with LND\'s texts; repeats that LND allows are allowed', () => {
    const { invoices, clock, preimage, hash } = registry();
    const invoice = invoices.add({ hash, memo: '', valueMsat: 1_000n, expirySeconds: 3600, cltvDelta: 40 });
    expect(lndError(() => invoices.add({ hash, memo: '', valueMsat: 1n, expirySeconds: 1, cltvDelta: 40 }))).toBe('invoice with payment hash already exists');
    expect(lndError(() => invoices.settle(preimage))).toBe('invoice still open');
    expect(lndError(() => invoices.settle(Buffer.alloc(32)))).toBe('unable to locate invoice');
    const { htlc, outcome } = htlcFor(invoice, clock.height);
    invoices.receive(htlc);
    expect(invoice.state).toBe('ACCEPTED');
    expect(outcome.released).toBeUndefined();
    invoices.settle(preimage);
    invoices.settle(preimage);
    expect(outcome.released).toEqual(preimage);
    expect(lndError(() => invoices.cancel(hash))).toBe('invoice already settled');

    const other = registry();
    other.invoices.add({ hash: other.hash, memo: '', valueMsat: 1_000n, expirySeconds: 3600, cltvDelta: 40 });
    other.invoices.cancel(other.hash);
    other.invoices.cancel(other.hash);
    expect(lndError(() => other.invoices.settle(other.preimage))).toBe('invoice already canceled');
    expect(lndError(() => other.invoices.add({ hash: Buffer.alloc(32, 1), memo: '', valueMsat: 1n, expirySeconds: 1, cltvDelta: 17 }))).toMatch(/minimum of 18/);
  });

  it(`cancels a held HTLC at the first height h with h + ${HOLD_EXPIRY_DELTA} >= its expiry, and an unpaid invoice once expired`, () => {
    const { invoices, clock, hash } = registry();
    const held = invoices.add({ hash, memo: '', valueMsat: 1_000n, expirySeconds: 60, cltvDelta: 40 });
    const { htlc, outcome } = htlcFor(held, clock.height);
    invoices.receive(htlc);
    invoices.onBlock(htlc.expiryHeight - HOLD_EXPIRY_DELTA - 1);
    expect(held.state).toBe('ACCEPTED');
    clock.seconds += 3600; // a held invoice does not expire by time
    invoices.onBlock(htlc.expiryHeight - HOLD_EXPIRY_DELTA);
    expect(held).toMatchObject({ state: 'CANCELED', amountPaidMsat: 0n });
    expect(outcome.released).toBeNull();

    const open = invoices.add({ hash: Buffer.alloc(32, 2), memo: '', valueMsat: 1n, expirySeconds: 60, cltvDelta: 40 });
    clock.seconds += 59;
    expect(invoices.lookup(open.hash).state).toBe('OPEN');
    clock.seconds += 1;
    expect(invoices.lookup(open.hash).state).toBe('CANCELED');
  });

  it('a single-invoice subscriber sees every state; an all-invoices subscriber never a held or canceled one', () => {
    const { invoices, clock, preimage, hash } = registry();
    const single: string[] = [];
    const all: string[] = [];
    const stopSingle = invoices.subscribeSingle(hash, (invoice) => single.push(invoice.state));
    invoices.subscribeAll((invoice) => all.push(invoice.state));
    const invoice = invoices.add({ hash, memo: '', valueMsat: 1_000n, expirySeconds: 3600, cltvDelta: 40 });
    invoices.receive(htlcFor(invoice, clock.height).htlc);
    invoices.settle(preimage);
    invoices.add({ hash: Buffer.alloc(32, 3), memo: '', valueMsat: 1n, expirySeconds: 3600, cltvDelta: 40 });
    invoices.cancel(Buffer.alloc(32, 3));
    expect(single).toEqual(['OPEN', 'ACCEPTED', 'SETTLED']);
    expect(all).toEqual(['OPEN', 'SETTLED', 'OPEN']);
    stopSingle();
    invoices.add({ hash: sha256(Buffer.alloc(32, 4)), memo: '', valueMsat: 1n, expirySeconds: 3600, cltvDelta: 40 });
    expect(single).toHaveLength(3);
  });
});
