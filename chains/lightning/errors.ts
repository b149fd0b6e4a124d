// What the `lightning` package throws, in the error catalogue. It throws either an array
// [httpCode, 'NameOfTheProblem', {err: <the gRPC error>}] or, for a few arguments it checks itself
// (a payment request it cannot parse), a plain Error. Some of LND's texts it turns into its own
// names (`invoice still open` → CannotSettleHtlcBeforeHtlcReceived); most it passes on inside
// `err.details`. Both are looked at here, and both are kept in the error's details.
import { kalimaError, type KalimaError, type KalimaErrorCode } from '../../src/errors.ts';

/** gRPC status codes that matter here. */
const GRPC = { DEADLINE_EXCEEDED: 4, UNAVAILABLE: 14 } as const;

/** LND's texts (err.details) and the codes they mean. Matched exactly, or as a prefix where LND appends a value. */
const BY_LND_TEXT: readonly (readonly [text: string, code: KalimaErrorCode, prefix?: true])[] = [
  ['invoice with payment hash already exists', 'KALIMA_ERR_LIGHTNING_DUPLICATE_INVOICE'],
  ['invoice still open', 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_HELD'],
  ['unable to locate invoice', 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND'],
  // What LND on bbolt answers instead while it has never made an invoice (new, restored or lost database).
  ['there are no existing invoices', 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND'],
  ['invoice already settled', 'KALIMA_ERR_LIGHTNING_ALREADY_PAID'],
  ['invoice already canceled', 'KALIMA_ERR_LIGHTNING_INVOICE_CANCELED'],
  ['invoice is already paid', 'KALIMA_ERR_LIGHTNING_ALREADY_PAID'],
  ['payment is in transition', 'KALIMA_ERR_LIGHTNING_PAYMENT_IN_FLIGHT'],
  [`payment isn't initiated`, 'KALIMA_ERR_LIGHTNING_PAYMENT_NOT_FOUND'],
  ['invoice expired', 'KALIMA_ERR_LIGHTNING_INVOICE_EXPIRED', true],
];

/** The `lightning` package's own names for problems, and the codes they mean. */
const BY_NAME: Readonly<Record<string, KalimaErrorCode>> = {
  InvoiceWithGivenHashAlreadyExists: 'KALIMA_ERR_LIGHTNING_DUPLICATE_INVOICE',
  CannotSettleHtlcBeforeHtlcReceived: 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_HELD',
  SecretDoesNotMatchAnyExistingHodlInvoice: 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND',
  SentPaymentNotFound: 'KALIMA_ERR_LIGHTNING_PAYMENT_NOT_FOUND',
  ExpectedValidPaymentRequestToMakePayment: 'KALIMA_ERR_LIGHTNING_BAD_INVOICE',
  ExpectedPaymentRequestToPayViaPaymentRequest: 'KALIMA_ERR_LIGHTNING_BAD_INVOICE',
  ExpectedPaymentRequestToDecode: 'KALIMA_ERR_LIGHTNING_BAD_INVOICE',
  // LND could not decode it: DecodePayReq has no other way to fail on a request it was given.
  UnexpectedDecodePaymentRequestError: 'KALIMA_ERR_LIGHTNING_BAD_INVOICE',
};

/** The names the package puts in place of LND's text (it matched the text exactly), with that text back. */
const LND_TEXT_OF_NAME: Readonly<Record<string, string>> = {
  InvoiceWithGivenHashAlreadyExists: 'invoice with payment hash already exists',
  CannotSettleHtlcBeforeHtlcReceived: 'invoice still open',
  SecretDoesNotMatchAnyExistingHodlInvoice: 'unable to locate invoice',
  SentPaymentNotFound: `payment isn't initiated`,
};

/**
 * How a payment failed (finished_payment.js names it after LND's failure_reason), with LND's
 * reason back, so the details say what LND said.
 */
export const PAYMENT_FAILURES: Readonly<Record<string, string>> = {
  PaymentRejectedByDestination: 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS',
  PaymentPathfindingFailedToFindPossibleRoute: 'FAILURE_REASON_NO_ROUTE',
  InsufficientBalanceToAttemptPayment: 'FAILURE_REASON_INSUFFICIENT_BALANCE',
  PaymentAttemptsTimedOut: 'FAILURE_REASON_TIMEOUT',
  PaymentExecutionCanceled: 'FAILURE_REASON_CANCELED',
  FailedToFindPayableRouteToDestination: 'FAILURE_REASON_ERROR',
};

export interface ErrorContext {
  /** Whether the gRPC channel was connected when a deadline passed: a deadline with no connection is an unreachable node. */
  connected?: boolean;
  /** Anything else worth keeping (the payment hash, …). */
  [key: string]: unknown;
}

/** The pieces of a `lightning` error: its HTTP-like status, its name, and the gRPC error inside. */
export function lightningErrorParts(error: unknown): { status?: number; name?: string; grpcCode?: number; details?: string } {
  if (Array.isArray(error)) {
    const [status, name, extra] = error as [unknown, unknown, { err?: { code?: unknown; details?: unknown } } | undefined];
    const grpc = extra?.err;
    return {
      ...(typeof status === 'number' ? { status } : {}),
      ...(typeof name === 'string' ? { name } : {}),
      ...(typeof grpc?.code === 'number' ? { grpcCode: grpc.code } : {}),
      ...(typeof grpc?.details === 'string' ? { details: grpc.details } : {}),
    };
  }
  if (error instanceof Error) {
    // A gRPC error thrown as such (code, details), or the package's plain Error named after the problem.
    const grpc = error as Error & { code?: unknown; details?: unknown };
    if (typeof grpc.code === 'number') return { grpcCode: grpc.code, ...(typeof grpc.details === 'string' ? { details: grpc.details } : {}) };
    return { name: error.message };
  }
  return {};
}

/** The catalogue code for an error of the `lightning` package. */
export function lightningErrorCode(parts: ReturnType<typeof lightningErrorParts>, connected?: boolean): KalimaErrorCode {
  const { name, grpcCode, details } = parts;
  if (typeof details === 'string') {
    if (/verification failed|macaroon|certificate|self[- ]signed|handshake/i.test(details)) return 'KALIMA_ERR_LIGHTNING_UNAUTHORIZED';
    for (const [text, code, prefix] of BY_LND_TEXT) if (prefix ? details.startsWith(text) : details === text) return code;
  }
  if (grpcCode === GRPC.UNAVAILABLE) return 'KALIMA_ERR_LIGHTNING_UNREACHABLE';
  if (grpcCode === GRPC.DEADLINE_EXCEEDED) return connected === false ? 'KALIMA_ERR_LIGHTNING_UNREACHABLE' : 'KALIMA_ERR_LIGHTNING_TIMEOUT';
  if (name !== undefined) {
    if (Object.hasOwn(BY_NAME, name)) return BY_NAME[name]!;
    if (Object.hasOwn(PAYMENT_FAILURES, name)) return 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED';
  }
  return 'KALIMA_ERR_LIGHTNING_RPC';
}

/**
 * An error of the `lightning` package in the catalogue, with everything LND and the package said
 * kept in the details: `method`, `status`, `name`, `grpcCode`, `details` (LND's text), and for a
 * failed payment `failureReason` (LND's PaymentFailureReason).
 */
export function lightningError(method: string, error: unknown, context: ErrorContext = {}): KalimaError {
  const parsed = lightningErrorParts(error);
  const lndText = parsed.details === undefined && parsed.name !== undefined && Object.hasOwn(LND_TEXT_OF_NAME, parsed.name) ? LND_TEXT_OF_NAME[parsed.name] : undefined;
  const parts = lndText ? { ...parsed, details: lndText } : parsed;
  const { connected, ...rest } = context;
  const code = lightningErrorCode(parts, connected);
  const failureReason = parts.name !== undefined && Object.hasOwn(PAYMENT_FAILURES, parts.name) ? PAYMENT_FAILURES[parts.name] : undefined;
  return kalimaError(code, { method, ...parts, ...(failureReason ? { failureReason } : {}), ...rest });
}
