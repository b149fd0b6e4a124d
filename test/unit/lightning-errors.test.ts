// The Lightning adapter's error mapping (chains/lightning/errors.ts): what the `lightning` package
// throws (arrays with LND's gRPC error inside, or plain Errors) becomes a catalogue code, with
// LND's text and the package's name kept in the details.
import { describe, expect, it } from 'vitest';
import { lightningError, lightningErrorCode, lightningErrorParts } from '../../chains/lightning/errors.ts';
import { ERROR_CATALOGUE } from '../../src/errors.ts';

const grpcError = (code: number, details: string) => [503, 'UnexpectedSomething', { err: { code, details, metadata: {} } }];

describe('lightningError', () => {
  it.each([
    [grpcError(2, 'invoice with payment hash already exists'), 'KALIMA_ERR_LIGHTNING_DUPLICATE_INVOICE'],
    [[409, 'InvoiceWithGivenHashAlreadyExists'], 'KALIMA_ERR_LIGHTNING_DUPLICATE_INVOICE'],
    [[402, 'CannotSettleHtlcBeforeHtlcReceived'], 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_HELD'],
    [[404, 'SecretDoesNotMatchAnyExistingHodlInvoice'], 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND'],
    [grpcError(5, 'unable to locate invoice'), 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND'],
    [grpcError(5, 'there are no existing invoices'), 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND'],  // LND on bbolt before its first invoice
    [grpcError(2, 'invoice already settled'), 'KALIMA_ERR_LIGHTNING_ALREADY_PAID'],
    [grpcError(2, 'invoice already canceled'), 'KALIMA_ERR_LIGHTNING_INVOICE_CANCELED'],
    [grpcError(2, 'invoice is already paid'), 'KALIMA_ERR_LIGHTNING_ALREADY_PAID'],
    [grpcError(2, 'payment is in transition'), 'KALIMA_ERR_LIGHTNING_PAYMENT_IN_FLIGHT'],
    [grpcError(2, 'invoice expired. Valid until Wed, 02 Dec 2026 06:00:00 GMT'), 'KALIMA_ERR_LIGHTNING_INVOICE_EXPIRED'],
    [[404, 'SentPaymentNotFound'], 'KALIMA_ERR_LIGHTNING_PAYMENT_NOT_FOUND'],
    [new Error('ExpectedValidPaymentRequestToMakePayment'), 'KALIMA_ERR_LIGHTNING_BAD_INVOICE'],
    [[503, 'UnexpectedDecodePaymentRequestError', { err: { code: 2, details: 'checksum failed' } }], 'KALIMA_ERR_LIGHTNING_BAD_INVOICE'],
    [[503, 'PaymentRejectedByDestination'], 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED'],
    [[503, 'InsufficientBalanceToAttemptPayment'], 'KALIMA_ERR_LIGHTNING_PAYMENT_FAILED'],
    [grpcError(2, 'verification failed: signature mismatch after caveat verification'), 'KALIMA_ERR_LIGHTNING_UNAUTHORIZED'],
    [grpcError(14, 'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1'), 'KALIMA_ERR_LIGHTNING_UNREACHABLE'],
    [grpcError(2, 'something LND has not said before'), 'KALIMA_ERR_LIGHTNING_RPC'],
    [[503, 'constructor'], 'KALIMA_ERR_LIGHTNING_RPC'],
    ['a string', 'KALIMA_ERR_LIGHTNING_RPC'],
    [undefined, 'KALIMA_ERR_LIGHTNING_RPC'],
  ] as [unknown, keyof typeof ERROR_CATALOGUE][])('%j is %s', (thrown, code) => {
    expect(lightningError('method', thrown).code).toBe(code);
  });

  it('an LND text is matched whole (a prefix only where LND appends a value)', () => {
    expect(lightningErrorCode({ grpcCode: 2, details: 'invoice still open, or not' })).toBe('KALIMA_ERR_LIGHTNING_RPC');
    expect(lightningErrorCode({ grpcCode: 2, details: 'the invoice expired' })).toBe('KALIMA_ERR_LIGHTNING_RPC');
  });

  it('a deadline passed before any connection is UNREACHABLE; after one it is TIMEOUT (the call may have been done)', () => {
    expect(lightningError('getInvoice', grpcError(4, 'Deadline exceeded'), { connected: false }).code).toBe('KALIMA_ERR_LIGHTNING_UNREACHABLE');
    expect(lightningError('getInvoice', grpcError(4, 'Deadline exceeded'), { connected: true }).code).toBe('KALIMA_ERR_LIGHTNING_TIMEOUT');
  });

  it('keeps what LND and the package said, the method and the caller\'s context; the `connected` flag is not kept', () => {
    const error = lightningError('cancelHodlInvoice', [503, 'UnexpectedErrorCancelingHodlInvoice', { err: { code: 2, details: 'invoice already settled' } }], { id: 'ab', connected: true });
    expect(error.details).toEqual({ method: 'cancelHodlInvoice', status: 503, name: 'UnexpectedErrorCancelingHodlInvoice', grpcCode: 2, details: 'invoice already settled', id: 'ab' });
    expect(error.status).toBe(ERROR_CATALOGUE.KALIMA_ERR_LIGHTNING_ALREADY_PAID.status);
  });

  it('puts back LND\'s text where the package replaced it by a name, and a failed payment\'s LND reason', () => {
    expect(lightningError('settleHodlInvoice', [402, 'CannotSettleHtlcBeforeHtlcReceived']).details.details).toBe('invoice still open');
    expect(lightningError('getPayment', [404, 'SentPaymentNotFound']).details.details).toBe(`payment isn't initiated`);
    expect(lightningError('pay', [503, 'PaymentPathfindingFailedToFindPossibleRoute']).details).toMatchObject({ failureReason: 'FAILURE_REASON_NO_ROUTE' });
    expect(lightningError('pay', [503, 'PaymentRejectedByDestination']).details).toMatchObject({ failureReason: 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS' });
  });

  it('reads a gRPC error thrown as an Error, and ignores fields of the wrong type', () => {
    expect(lightningErrorParts(Object.assign(new Error('x'), { code: 14, details: 'gone' }))).toEqual({ grpcCode: 14, details: 'gone' });
    expect(lightningErrorParts([{}, 7, { err: { code: '14', details: 3 } }])).toEqual({});
  });
});
