// The Lightning participant of a purchase: the buyer's payment to a hold invoice on the seller's LND.
//   prepare  votes yes once the HTLC is held for the full price, and far enough from its expiry:
//            LND cancels a held invoice on its own a few blocks before the HTLC's expiry
//            (LND_HOLD_EXPIRY_DELTA), and the decision must come earlier still, by a margin
//   commit   once the chain step is delivered (delivery.ts), settles the invoice with the preimage:
//            the seller is paid; a chain step refused after the decision cancels it instead
//   abort    cancels it: the buyer's HTLC goes back to the buyer
import { Reader, Writer } from '../../src/ledger/codec.ts';
import { toHex } from '../../src/ledger/hash.ts';
import type { Logger } from '../../src/ports.ts';
import type { Participant, ParticipantFactory, ParticipantState, PrepareVote } from '../participant.ts';
import type { DeliveryGate } from './delivery.ts';

export const LIGHTNING_PARTICIPANT = 'lightning-hold';

/** LND cancels a held invoice once the chain is this close to the earliest HTLC's expiry (its default hold expiry delta, 10 + 2). */
export const LND_HOLD_EXPIRY_DELTA = 12;

export type HoldInvoiceState = 'open' | 'held' | 'settled' | 'canceled';

export interface HoldInvoiceView {
  state: HoldInvoiceState;
  /** Sats held or received. */
  receivedSats: number;
  /** The lowest expiry height of the held HTLCs, when held. */
  expiryHeight?: number;
}

/** The seller's LND as the bridge needs it (chains/lightning implements it). */
export interface HoldInvoices {
  /** undefined when LND does not know the invoice. */
  invoice(paymentHash: string): Promise<HoldInvoiceView | undefined>;
  /** Settling a settled invoice resolves; one that is not held is refused. */
  settle(preimage: string): Promise<void>;
  /** Cancelling a cancelled (or unknown) invoice resolves. */
  cancel(paymentHash: string): Promise<void>;
  blockHeight(): Promise<number>;
}

export interface HoldArgs {
  paymentHash: Uint8Array;
  preimage: Uint8Array;
  sats: number;
}

export function encodeHoldArgs(args: HoldArgs): Uint8Array {
  return new Writer().fixed(args.paymentHash, 32).fixed(args.preimage, 32).varint(args.sats).finish();
}

export function decodeHoldArgs(bytes: Uint8Array): HoldArgs {
  const reader = new Reader(bytes);
  const args = { paymentHash: reader.fixed(32), preimage: reader.fixed(32), sats: reader.varint() };
  reader.end();
  return args;
}

export interface HoldDeps {
  lnd: HoldInvoices;
  gate: DeliveryGate;
  /** Blocks before LND's own cancel by which the decision must come. */
  marginBlocks: number;
  /** LND's hold expiry delta (LND_HOLD_EXPIRY_DELTA unless its operator changed it). */
  holdExpiryDelta: number;
  logger: Logger;
}

/** The last height at which a held HTLC expiring at `expiryHeight` may still be decided. */
export function decisionHeight(expiryHeight: number, marginBlocks: number, holdExpiryDelta = LND_HOLD_EXPIRY_DELTA): number {
  return expiryHeight - holdExpiryDelta - marginBlocks;
}

export class HoldInvoiceParticipant implements Participant {
  private readonly hash: string;

  constructor(private readonly deps: HoldDeps, private readonly args: HoldArgs, private readonly txId: string) {
    this.hash = toHex(args.paymentHash);
  }

  async prepare(): Promise<PrepareVote> {
    const [invoice, height] = await Promise.all([this.deps.lnd.invoice(this.hash), this.deps.lnd.blockHeight()]);
    if (invoice === undefined) return { vote: 'no', reason: 'LND does not know the invoice' };
    if (invoice.state === 'settled') return 'yes';
    if (invoice.state !== 'held') return { vote: 'no', reason: `the invoice is ${invoice.state}, not held` };
    if (invoice.receivedSats !== this.args.sats) return { vote: 'no', reason: `the HTLC holds ${invoice.receivedSats} sats, not the price of ${this.args.sats}` };
    if (invoice.expiryHeight === undefined || height > decisionHeight(invoice.expiryHeight, this.deps.marginBlocks, this.deps.holdExpiryDelta)) {
      return { vote: 'no', reason: `the HTLC expires at height ${invoice.expiryHeight}: too close to decide at ${height}` };
    }
    return 'yes';
  }

  async commit(): Promise<void> {
    const invoice = await this.deps.lnd.invoice(this.hash);
    if (invoice?.state === 'settled') return;
    if (invoice === undefined || invoice.state === 'canceled') {
      // LND cancelled it on its own (the coordinator was away past the HTLC's expiry margin): the
      // chain participant's guard refuses to deliver on a cancelled invoice, so nothing was given.
      this.deps.logger.error({ paymentHash: this.hash, state: invoice?.state ?? 'unknown' }, 'market: a committed hold invoice was cancelled before it could be settled');
      return;
    }
    const delivery = await this.deps.gate.wait(this.txId);
    if (delivery.outcome === 'delivered') await this.deps.lnd.settle(toHex(this.args.preimage));
    else await this.deps.lnd.cancel(this.hash);
  }

  async abort(): Promise<void> {
    const invoice = await this.deps.lnd.invoice(this.hash);
    if (invoice === undefined || invoice.state === 'canceled') return;
    if (invoice.state === 'settled') {
      this.deps.logger.error({ paymentHash: this.hash }, 'market: an aborted hold invoice was settled already');
      return;
    }
    await this.deps.lnd.cancel(this.hash);
  }

  async inquire(): Promise<ParticipantState> {
    const invoice = await this.deps.lnd.invoice(this.hash);
    if (invoice === undefined) return 'unknown';
    return invoice.state === 'held' ? 'prepared' : invoice.state === 'settled' ? 'committed' : invoice.state === 'canceled' ? 'aborted' : 'unknown';
  }
}

export function holdParticipantFactory(deps: HoldDeps): ParticipantFactory {
  return (args, context) => new HoldInvoiceParticipant(deps, decodeHoldArgs(args), context.txId);
}
