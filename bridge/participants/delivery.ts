// The order of a purchase's commit: the chain step first (the grant, or the KLX paid to the buyer),
// the settlement after it. The chain can refuse a step for good after the commit decision (the
// listing withdrawn, the seller's PUB revoked, the HTLC about to be cancelled by LND); settling
// first would then leave a buyer charged for nothing. So the chain participant reports what became
// of its step here, and the hold-invoice participant settles only a delivered step and cancels a
// refused one: either way the buyer is charged exactly when it got what it paid for.
//
// A refusal is final: the chain participant refuses again on every later call (the gate in this
// process, and after a restart the cancelled invoice its guard finds).
import { isKalimaError } from '../../src/errors.ts';
import { RETRYABLE_CODES } from '../../src/sdk/retry.ts';

export type Delivery = { readonly outcome: 'delivered' } | { readonly outcome: 'refused'; readonly reason: string };

interface Slot {
  promise: Promise<Delivery>;
  resolve: (delivery: Delivery) => void;
  settled: Delivery | undefined;
}

export class DeliveryGate {
  private readonly slots = new Map<string, Slot>();

  private slot(txId: string): Slot {
    let slot = this.slots.get(txId);
    if (slot === undefined) {
      let resolve!: (delivery: Delivery) => void;
      const promise = new Promise<Delivery>((done) => (resolve = done));
      slot = { promise, resolve, settled: undefined };
      this.slots.set(txId, slot);
    }
    return slot;
  }

  /** What the chain participant found; the first report stands. */
  report(txId: string, delivery: Delivery): Delivery {
    const slot = this.slot(txId);
    if (slot.settled === undefined) {
      slot.settled = delivery;
      slot.resolve(delivery);
    }
    return slot.settled;
  }

  settled(txId: string): Delivery | undefined {
    return this.slots.get(txId)?.settled;
  }

  /** Resolves once the chain participant reported (the coordinator's call timeout bounds the wait). */
  wait(txId: string): Promise<Delivery> {
    return this.slot(txId).promise;
  }

  forget(txId: string): void {
    this.slots.delete(txId);
  }
}

/** A refusal the same write would meet again: not a lost answer, a busy node or a change of leader. */
export function isPermanentRefusal(error: unknown): boolean {
  if (!isKalimaError(error)) return false;
  return !RETRYABLE_CODES.includes(error.code) && !error.code.startsWith('KALIMA_ERR_NET_') && error.code !== 'KALIMA_ERR_LEDGER_NONCE_REPLAYED' && error.code !== 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD';
}

/** Whether the buyer's HTLC may still be settled after a chain step: a reason when it may not. */
export type DeliveryGuard = (txId: string) => Promise<string | undefined>;
