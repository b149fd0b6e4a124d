// A gRPC error as LND sends it: a status code and LND's own text in `details`. ln-service matches
// some of these texts exactly (settle_hodl_invoice.js, create_invoice.js, subscribe_to_past_payment.js),
// so they are LND's words, not ours.
import { status } from '@grpc/grpc-js';

export const LND_TEXT = {
  /** invoices.ErrDuplicateInvoice (AddInvoice, AddHoldInvoice). */
  duplicateInvoice: 'invoice with payment hash already exists',
  /** invoices.ErrInvoiceNotFound (LookupInvoice, SettleInvoice with an unknown preimage, CancelInvoice). */
  invoiceNotFound: 'unable to locate invoice',
  /** invoices.ErrInvoiceStillOpen: SettleInvoice of a hold invoice no HTLC is held for. */
  invoiceStillOpen: 'invoice still open',
  /** invoices.ErrInvoiceAlreadySettled: CancelInvoice of a settled invoice. */
  invoiceAlreadySettled: 'invoice already settled',
  /** invoices.ErrInvoiceAlreadyCanceled: SettleInvoice of a canceled invoice. */
  invoiceAlreadyCanceled: 'invoice already canceled',
  /** paymentsdb.ErrAlreadyPaid: SendPaymentV2 of a hash this node already paid. */
  alreadyPaid: 'invoice is already paid',
  /** paymentsdb.ErrPaymentInFlight: SendPaymentV2 of a hash this node is paying. */
  paymentInFlight: 'payment is in transition',
  /** paymentsdb.ErrPaymentNotInitiated: TrackPaymentV2 of a hash this node never paid. */
  paymentNotInitiated: `payment isn't initiated`,
  /** What LND answers a macaroon that does not verify with. */
  macaroonRefused: 'verification failed: signature mismatch after caveat verification',
  /** What a stream gets when LND shuts down. */
  shuttingDown: 'server shutting down',
} as const;

/** The text LND's router gives an invoice whose expiry has passed (ValidatePayReqExpiry). */
export function invoiceExpiredText(validUntilMs: number): string {
  return `invoice expired. Valid until ${new Date(validUntilMs).toUTCString()}`;
}

export class LndRpcError extends Error {
  constructor(readonly code: status, readonly details: string) {
    super(details);
    this.name = 'LndRpcError';
  }

  static unknown(details: string): LndRpcError {
    return new LndRpcError(status.UNKNOWN, details);
  }

  static notFound(details: string): LndRpcError {
    return new LndRpcError(status.NOT_FOUND, details);
  }

  static invalid(details: string): LndRpcError {
    return new LndRpcError(status.INVALID_ARGUMENT, details);
  }
}
