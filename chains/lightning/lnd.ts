// The Lightning adapter over LND's gRPC, through the `lightning` package (ln-service's typed twin):
// invoices, hold invoices (settle, cancel), payments, decoding, balances, and per-invoice watches
// that survive an LND restart (watch.ts). Every failure is a catalogue error (errors.ts) that keeps
// LND's text.
//
// Safe to retry (the operation is idempotent, or LND refuses the repeat without doing it twice):
// - settleHoldInvoice: settling a settled invoice again succeeds (LND ignores it).
// - cancelHoldInvoice: cancelling a canceled invoice again succeeds; a settled one is ALREADY_PAID.
// - createHoldInvoice: a repeat with the same hash, amount and description returns the invoice
//   already there; other terms are DUPLICATE_INVOICE.
// - pay: LND pays a hash at most once. A repeat while it is in flight is PAYMENT_IN_FLIGHT (track
//   it), after it succeeded ALREADY_PAID (getPayment has the preimage); after a failure it tries again.
// - every read (walletInfo, getInvoice, getPayment, decodeInvoice, channelBalance).
// Not idempotent: createInvoice (each call is a new invoice; an unpaid one expires harmlessly).
// pay and trackPayment follow one gRPC stream: if LND restarts under them they fail UNREACHABLE
// (the payment itself goes on in LND); calling them again is safe. Only watchInvoice re-subscribes.
import { createRequire } from 'node:module';
import {
  authenticatedLndGrpc, cancelHodlInvoice, createHodlInvoice, createInvoice, decodePaymentRequest, getChannelBalance, getInvoice, getPayment,
  getWalletInfo, payViaPaymentRequest, settleHodlInvoice, subscribeToInvoice, subscribeToPastPayment, type AuthenticatedLnd,
} from 'lightning';
import type { DecodePaymentRequestResult } from 'lightning';
import { isKalimaError, kalimaError, type KalimaError } from '../../src/errors.ts';
import type { Clock, Logger, Rng, Scheduler } from '../../src/ports.ts';
import { silentLogger, systemClock, systemRng, systemScheduler } from '../../src/ports.ts';
import { lightningError, type ErrorContext } from './errors.ts';
import { checkHash, checkSats, defaultMaxFeeSats, failureReason, invoiceStatus, type InvoiceStatus, type LnServiceInvoice } from './invoice.ts';
import { watchInvoice, type InvoiceWatch, type WatchOptions } from './watch.ts';

export type { InvoiceState, InvoiceStatus } from './invoice.ts';
export { autoCancelHeight, LND_HOLD_EXPIRY_DELTA } from './invoice.ts';
export type { InvoiceWatch } from './watch.ts';
export { lightningError } from './errors.ts';

export interface LndConnection {
  /** host:port of LND's gRPC (10009 by default). */
  socket: string;
  /** LND's tls.cert, base64 (or hex) of the PEM file. */
  cert: string;
  /** A macaroon, hex or base64. */
  macaroon: string;
}

export interface LndClientOptions {
  /** The deadline of every unary call, ms (default 15 s). Streams (payments, subscriptions) have none. */
  deadlineMs?: number;
  /** The longest gRPC's own reconnect backoff may grow to, ms (default 2 s; grpc-js's own is 120 s). */
  maxReconnectBackoffMs?: number;
  /** watchInvoice: the first wait before subscribing again and its cap, ms (default 250 ms and 10 s). */
  resubscribeInitialMs?: number;
  resubscribeMaxMs?: number;
  /** watchInvoice: read the invoice this often while subscribed, ms (default 60 s; 0: never). */
  reconcileEveryMs?: number;
  clock?: Clock;
  scheduler?: Scheduler;
  rng?: Rng;
  logger?: Logger;
}

export interface WalletInfo {
  alias: string;
  /** The node's public key, compressed, hex. */
  publicKey: string;
  blockHeight: number;
  syncedToChain: boolean;
  version: string;
}

export interface CreatedInvoice {
  /** The payment hash, hex. */
  id: string;
  /** BOLT 11. */
  request: string;
  sats: bigint;
  /** The preimage, hex: known for a plain invoice (LND chose it), absent for a hold invoice. */
  preimage?: string;
}

export interface NewInvoice {
  sats: bigint | number;
  description?: string;
  /** Seconds from now until an unpaid invoice expires (LND's default 24 h for a hold invoice, the package's 3 h for a plain one). */
  expirySeconds?: number;
  /** The final CLTV delta the HTLCs must carry (LND's default 80; at least 18). */
  cltvDelta?: number;
}

export interface NewHoldInvoice extends NewInvoice {
  /** The payment hash, hex: the preimage stays with the caller until settle. */
  id: string;
}

export interface DecodedInvoice {
  id: string;
  destination: string;
  sats: bigint;
  description: string;
  createdAt: string;
  expiresAt: string;
  isExpired: boolean;
  cltvDelta: number;
  /** The payment secret (payment_addr), hex. */
  paymentSecret?: string;
}

export interface Payment {
  id: string;
  state: 'pending' | 'succeeded' | 'failed';
  /** Hex; once succeeded. */
  preimage?: string;
  sats?: bigint;
  feeSats?: bigint;
  /** LND's PaymentFailureReason, once failed. */
  failureReason?: string;
}

export interface ChannelBalance {
  /** What this node can send, sat. */
  localSats: bigint;
  /** What it can receive, sat. */
  remoteSats: bigint;
  /** In HTLCs not yet settled or failed on this node's commitments (for a seller: the buyers' held HTLCs), sat. */
  unsettledLocalSats: bigint;
}

/** The services ln-service reaches on the `lnd` object, by its names for them. */
type Services = Record<string, GrpcClient>;
interface GrpcClient {
  close(): void;
  getChannel(): { getConnectivityState(tryToConnect: boolean): number };
  [method: string]: unknown;
}
type GrpcMethod = ((...args: unknown[]) => unknown) & { requestStream?: boolean; responseStream?: boolean };

/** grpc-js's connectivity state READY. */
const READY = 2;
const require = createRequire(import.meta.url);

export class LndClient {
  private readonly lnd: AuthenticatedLnd;
  private readonly services: Services;
  private readonly watches = new Set<InvoiceWatch>();
  private readonly options: Required<Omit<LndClientOptions, 'clock' | 'scheduler' | 'rng' | 'logger'>> & { clock: Clock; scheduler: Scheduler; rng: Rng; logger: Logger };

  constructor(connection: LndConnection, options: LndClientOptions = {}) {
    this.options = {
      deadlineMs: options.deadlineMs ?? 15_000,
      maxReconnectBackoffMs: options.maxReconnectBackoffMs ?? 2_000,
      resubscribeInitialMs: options.resubscribeInitialMs ?? 250,
      resubscribeMaxMs: options.resubscribeMaxMs ?? 10_000,
      reconcileEveryMs: options.reconcileEveryMs ?? 60_000,
      clock: options.clock ?? systemClock,
      scheduler: options.scheduler ?? systemScheduler,
      rng: options.rng ?? systemRng,
      logger: options.logger ?? silentLogger,
    };
    this.services = connect(connection, this.options.maxReconnectBackoffMs);
    this.lnd = withDeadlines(this.services, this.options.deadlineMs) as unknown as AuthenticatedLnd;
  }

  /** Closes every watch and the gRPC channels. */
  close(): void {
    for (const watch of [...this.watches]) watch.close();
    for (const service of Object.values(this.services)) service.close();
  }

  async walletInfo(): Promise<WalletInfo> {
    const info = await this.call('getWalletInfo', () => getWalletInfo({ lnd: this.lnd }));
    return { alias: info.alias, publicKey: info.public_key, blockHeight: info.current_block_height, syncedToChain: info.is_synced_to_chain, version: info.version };
  }

  async channelBalance(): Promise<ChannelBalance> {
    const balance = await this.call('getChannelBalance', () => getChannelBalance({ lnd: this.lnd }));
    return { localSats: BigInt(balance.channel_balance), remoteSats: BigInt(balance.inbound ?? 0), unsettledLocalSats: BigInt(balance.unsettled_balance ?? 0) };
  }

  /** A plain invoice: LND chooses the preimage and settles the first payment by itself. */
  async createInvoice(invoice: NewInvoice): Promise<CreatedInvoice> {
    const terms = this.terms(invoice);
    const created = await this.call('createInvoice', () => createInvoice({ lnd: this.lnd, ...terms }));
    return { id: created.id, request: created.request, sats: BigInt(created.tokens ?? 0), preimage: created.secret };
  }

  /**
   * A hold invoice for a payment hash whose preimage the caller keeps: a payment to it is held
   * until settleHoldInvoice (with the preimage) or cancelHoldInvoice, or until LND cancels it itself
   * 12 blocks before the HTLC expires.
   */
  async createHoldInvoice(invoice: NewHoldInvoice): Promise<CreatedInvoice> {
    const id = checkHash(invoice.id, 'id');
    const terms = this.terms(invoice);
    try {
      const created = await this.call('createHodlInvoice', () => createHodlInvoice({ lnd: this.lnd, id, ...terms }), { id });
      return { id, request: created.request, sats: BigInt(created.tokens) };
    } catch (error) {
      if (!isKalimaError(error, 'KALIMA_ERR_LIGHTNING_DUPLICATE_INVOICE')) throw error;
      // A retry of a call whose answer was lost: the same terms are the same invoice.
      const existing = await this.getInvoice(id);
      if (existing.request && existing.state !== 'canceled' && existing.sats === BigInt(terms.tokens ?? 0) && existing.description === (terms.description ?? '')) {
        return { id, request: existing.request, sats: existing.sats };
      }
      throw error;
    }
  }

  async getInvoice(id: string): Promise<InvoiceStatus> {
    const hash = checkHash(id, 'id');
    const invoice = await this.call('getInvoice', () => getInvoice({ lnd: this.lnd, id: hash }), { id: hash });
    return invoiceStatus(invoice as unknown as LnServiceInvoice);
  }

  /** Settles a held payment with its preimage. Settling a settled invoice again is fine. */
  async settleHoldInvoice(preimage: string): Promise<void> {
    const secret = checkHash(preimage, 'preimage');
    await this.call('settleHodlInvoice', () => settleHodlInvoice({ lnd: this.lnd, secret }));
  }

  /** Cancels an open or held invoice (a held payment goes back to the payer). Cancelling a canceled one again is fine. */
  async cancelHoldInvoice(id: string): Promise<void> {
    const hash = checkHash(id, 'id');
    await this.call('cancelHodlInvoice', () => cancelHodlInvoice({ lnd: this.lnd, id: hash }), { id: hash });
  }

  /** Decodes a BOLT 11 request through LND (DecodePayReq); anything LND cannot read is BAD_INVOICE. */
  async decodeInvoice(request: string): Promise<DecodedInvoice> {
    if (typeof request !== 'string' || request.trim() === '') throw lightningError('decodePaymentRequest', [400, 'ExpectedPaymentRequestToDecode']);
    // The package's types leave out created_at and is_expired, which it does return.
    const decoded = await this.call('decodePaymentRequest', () => decodePaymentRequest({ lnd: this.lnd, request })) as DecodePaymentRequestResult & { created_at: string; is_expired: boolean };
    return {
      id: decoded.id, destination: decoded.destination, sats: BigInt(decoded.tokens), description: decoded.description ?? '',
      createdAt: decoded.created_at, expiresAt: decoded.expires_at, isExpired: decoded.is_expired, cltvDelta: decoded.cltv_delta ?? 0,
      ...(decoded.payment ? { paymentSecret: decoded.payment } : {}),
    };
  }

  /**
   * Pays a BOLT 11 request and waits for the outcome: a payment to a hold invoice is only done
   * when the payee settles or cancels it. Succeeded: the preimage. Failed: PAYMENT_FAILED with
   * LND's failure reason. Fees are limited to `maxFeeSats` (default 1% of the amount, at least 10).
   */
  async pay(request: string, options: { maxFeeSats?: number } = {}): Promise<Payment & { state: 'succeeded'; preimage: string }> {
    // LND reads the request first (a malformed one is BAD_INVOICE), and its amount sets the default fee limit.
    const decoded = await this.decodeInvoice(request);
    if (decoded.sats === 0n) throw kalimaError('KALIMA_ERR_LIGHTNING_BAD_INVOICE', { request, reason: 'an any-amount invoice: this adapter pays invoices with an amount only' });
    const maxFee = options.maxFeeSats ?? defaultMaxFeeSats(decoded.sats);
    // The promise is awaited at once: a payment that fails is a handled rejection.
    const paid = await this.call('payViaPaymentRequest', () => payViaPaymentRequest({ lnd: this.lnd, request, max_fee: maxFee }), { id: decoded.id, request });
    return { id: paid.id, state: 'succeeded', preimage: paid.secret, sats: BigInt(paid.tokens) - BigInt(paid.fee), feeSats: BigInt(paid.fee) };
  }

  /** What this node knows of its payment to `id`: pending, succeeded (with the preimage) or failed. */
  async getPayment(id: string): Promise<Payment> {
    const hash = checkHash(id, 'id');
    const found = await this.call('getPayment', () => getPayment({ lnd: this.lnd, id: hash }), { id: hash });
    if (found.payment) return { id: hash, state: 'succeeded', preimage: found.payment.secret, sats: BigInt(found.payment.tokens) - BigInt(found.payment.fee), feeSats: BigInt(found.payment.fee) };
    if (found.failed) return { id: hash, state: 'failed', failureReason: failureReason(found.failed) };
    return { id: hash, state: 'pending' };
  }

  /** Waits until this node's payment to `id` is final and says how it ended (a failure is an answer here, not an error). */
  trackPayment(id: string): Promise<Payment> {
    const hash = checkHash(id, 'id');
    return new Promise<Payment>((resolve, reject) => {
      const events = subscribeToPastPayment({ lnd: this.lnd, id: hash });
      const done = (result: Payment | KalimaError) => {
        events.removeAllListeners();
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      events.on('confirmed', (paid: { secret: string; tokens: number; fee: number }) => done({ id: hash, state: 'succeeded', preimage: paid.secret, sats: BigInt(paid.tokens) - BigInt(paid.fee), feeSats: BigInt(paid.fee) }));
      events.on('failed', (failed: Parameters<typeof failureReason>[0]) => done({ id: hash, state: 'failed', failureReason: failureReason(failed) }));
      events.on('error', (error: unknown) => done(this.fail('trackPayment', error, { id: hash })));
      events.on('end', () => done(this.fail('trackPayment', [503, 'PaymentTrackingEndedBeforeOutcome'], { id: hash })));
    });
  }

  /**
   * Follows one invoice: `listener` gets its state now and on every change (open, held, settled,
   * canceled; the same state again only when its HTLCs or amounts changed). It survives LND
   * restarts: the stream is subscribed again with capped backoff, and the invoice read after each
   * subscribe, so a change made while the stream was away is reported. It stops after settled or
   * canceled; `close()` stops it before.
   */
  watchInvoice(id: string, listener: (status: InvoiceStatus) => void, options: Partial<Pick<WatchOptions, 'onError'>> = {}): InvoiceWatch {
    const hash = checkHash(id, 'id');
    const watch = watchInvoice({
      subscribe: (invoiceId, handlers) => {
        const events = subscribeToInvoice({ lnd: this.lnd, id: invoiceId });
        let broken = false;
        const breakOnce = (error: KalimaError | undefined) => {
          if (broken) return;
          broken = true;
          handlers.broken(error);
        };
        events.on('invoice_updated', (invoice: LnServiceInvoice) => handlers.update(invoiceStatus(invoice)));
        events.on('error', (error: unknown) => breakOnce(this.fail('subscribeToInvoice', error, { id: invoiceId })));
        events.on('end', () => breakOnce(undefined));
        // Removing the last invoice_updated listener makes the package cancel the gRPC stream.
        return () => events.removeAllListeners();
      },
      read: (invoiceId) => this.getInvoice(invoiceId),
    }, hash, listener, {
      scheduler: this.options.scheduler, rng: this.options.rng, logger: this.options.logger,
      initialBackoffMs: this.options.resubscribeInitialMs, maxBackoffMs: this.options.resubscribeMaxMs, reconcileEveryMs: this.options.reconcileEveryMs,
      ...(options.onError ? { onError: options.onError } : {}),
    });
    if (!watch.closed) {
      this.watches.add(watch);
      const close = watch.close.bind(watch);
      watch.close = () => {
        close();
        this.watches.delete(watch);
      };
    }
    return watch;
  }

  private terms(invoice: NewInvoice): { tokens: number; description?: string; expires_at?: string; cltv_delta?: number } {
    const tokens = checkSats(invoice.sats);
    if (invoice.expirySeconds !== undefined && !(Number.isInteger(invoice.expirySeconds) && invoice.expirySeconds > 0)) {
      throw kalimaError('KALIMA_ERR_LIGHTNING_BAD_ARGUMENT', { expirySeconds: invoice.expirySeconds, expected: 'a whole number of seconds above 0' });
    }
    if (invoice.cltvDelta !== undefined && !(Number.isInteger(invoice.cltvDelta) && invoice.cltvDelta > 0)) {
      throw kalimaError('KALIMA_ERR_LIGHTNING_BAD_ARGUMENT', { cltvDelta: invoice.cltvDelta, expected: 'a whole number of blocks above 0' });
    }
    return {
      tokens,
      ...(invoice.description !== undefined ? { description: invoice.description } : {}),
      ...(invoice.expirySeconds !== undefined ? { expires_at: new Date(this.options.clock.nowMs() + invoice.expirySeconds * 1000).toISOString() } : {}),
      ...(invoice.cltvDelta !== undefined ? { cltv_delta: invoice.cltvDelta } : {}),
    };
  }

  private async call<T>(method: string, run: () => Promise<T>, context: ErrorContext = {}): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw this.fail(method, error, context);
    }
  }

  private fail(method: string, error: unknown, context: ErrorContext = {}): KalimaError {
    if (isKalimaError(error)) return error;
    const connected = Object.values(this.services).some((service) => service.getChannel().getConnectivityState(false) === READY);
    return lightningError(method, error, { ...context, connected });
  }
}

/**
 * The `lightning` package's gRPC clients, made again with a shorter reconnect backoff. The package
 * takes no channel options, and grpc-js backs off reconnecting up to 120 s: after an LND restart the
 * adapter would wait that long. The same client classes are built over the package's own
 * credentials (cert and macaroon), with its message size limits and the backoff capped.
 */
function connect(connection: LndConnection, maxReconnectBackoffMs: number): Services {
  const base = authenticatedLndGrpc({ cert: connection.cert, macaroon: connection.macaroon, socket: connection.socket }).lnd as unknown as Services;
  const grpcCredentials = require('lightning/lnd_grpc/grpc_credentials.js') as (args: { cert: string; macaroon: string }) => { credentials: unknown };
  const { credentials } = grpcCredentials({ cert: connection.cert, macaroon: connection.macaroon });
  const params = {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
    'grpc.initial_reconnect_backoff_ms': Math.min(250, maxReconnectBackoffMs),
    'grpc.max_reconnect_backoff_ms': maxReconnectBackoffMs,
    // A half-open connection (an idle timeout on the way, a partition, a host that lost power) shows
    // within 40 s instead of the kernel's ~15 min; LND allows pings every 5 s (grpc.client-ping-min-wait).
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
  };
  const services: Services = {};
  for (const [type, client] of Object.entries(base)) {
    const Client = client.constructor as new (socket: string, credentials: unknown, options: object) => GrpcClient;
    services[type] = new Client(connection.socket, credentials, params);
    client.close();
  }
  return services;
}

/** The same services, each unary call with a deadline (ln-service passes none, so a hung LND would hang the caller). */
function withDeadlines(services: Services, deadlineMs: number): Services {
  const wrapped: Services = {};
  for (const [type, client] of Object.entries(services)) {
    wrapped[type] = new Proxy(client, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (typeof value !== 'function') return value;
        const method = value as GrpcMethod;
        if (method.requestStream === false && method.responseStream === false) {
          return (...args: unknown[]) => {
            const [request, callback] = args;
            if (args.length === 2 && typeof callback === 'function') return method.call(target, request, { deadline: Date.now() + deadlineMs }, callback);
            return method.apply(target, args);
          };
        }
        return method.bind(target);
      },
    });
  }
  return wrapped;
}
