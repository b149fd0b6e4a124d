// One node's outgoing payments, after LND's payment database (paymentsdb): one payment per hash,
// IN_FLIGHT while its HTLC is out, then SUCCEEDED with the preimage or FAILED with a reason. A
// failed payment may be tried again; a succeeded or in-flight one may not.
import { LND_TEXT, LndRpcError } from './rpc-error.ts';

export type PaymentStatus = 'IN_FLIGHT' | 'SUCCEEDED' | 'FAILED';
export type FailureReason =
  | 'FAILURE_REASON_NONE'
  | 'FAILURE_REASON_TIMEOUT'
  | 'FAILURE_REASON_NO_ROUTE'
  | 'FAILURE_REASON_ERROR'
  | 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS'
  | 'FAILURE_REASON_INSUFFICIENT_BALANCE'
  | 'FAILURE_REASON_CANCELED';

export interface PaymentRoute {
  chanId: string;
  capacitySat: bigint;
  destination: string;
  expiryHeight: number;
  paymentAddr: Buffer;
}

export interface StoredPayment {
  hash: string;
  request: string;
  valueMsat: bigint;
  creationTimeNs: bigint;
  index: number;
  status: PaymentStatus;
  failureReason: FailureReason;
  preimage: string;
  attemptId: number;
  attemptTimeNs: bigint;
  resolveTimeNs: bigint;
  /** Absent when no route was found: no HTLC went out. */
  route: PaymentRoute | null;
}

type Listener = (payment: StoredPayment) => void;

export class PaymentStore {
  private readonly byHash = new Map<string, StoredPayment>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private index = 0;

  constructor(private readonly nowNs: () => bigint) {}

  get(hash: string): StoredPayment | undefined {
    return this.byHash.get(hash);
  }

  /** Records a new attempt for `hash`, or LND's error when the hash is paid or being paid. */
  begin(hash: string, request: string, valueMsat: bigint): StoredPayment {
    const existing = this.byHash.get(hash);
    if (existing?.status === 'SUCCEEDED') throw LndRpcError.unknown(LND_TEXT.alreadyPaid);
    if (existing?.status === 'IN_FLIGHT') throw LndRpcError.unknown(LND_TEXT.paymentInFlight);
    const now = this.nowNs();
    const payment: StoredPayment = {
      hash, request, valueMsat, creationTimeNs: now, index: ++this.index, status: 'IN_FLIGHT', failureReason: 'FAILURE_REASON_NONE',
      preimage: '', attemptId: this.index, attemptTimeNs: now, resolveTimeNs: 0n, route: null,
    };
    this.byHash.set(hash, payment);
    return payment;
  }

  /** The HTLC is out on `route`. */
  sent(payment: StoredPayment, route: PaymentRoute): void {
    payment.route = route;
    this.notify(payment);
  }

  succeed(payment: StoredPayment, preimage: Buffer): void {
    payment.status = 'SUCCEEDED';
    payment.preimage = preimage.toString('hex');
    payment.resolveTimeNs = this.nowNs();
    this.notify(payment);
  }

  fail(payment: StoredPayment, reason: FailureReason): void {
    payment.status = 'FAILED';
    payment.failureReason = reason;
    payment.resolveTimeNs = this.nowNs();
    this.notify(payment);
  }

  subscribe(hash: string, listener: Listener): () => void {
    const set = this.listeners.get(hash) ?? new Set<Listener>();
    this.listeners.set(hash, set);
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(hash);
    };
  }

  private notify(payment: StoredPayment): void {
    for (const listener of [...(this.listeners.get(payment.hash) ?? [])]) listener(payment);
  }
}
