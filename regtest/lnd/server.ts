// An LND stand-in: a gRPC server built from the .proto files the `lightning` package ships (so the
// production adapter, chains/lightning, talks to it exactly as to LND), over TLS with a certificate
// made for `localhost`, checking the macaroon on every call. It serves one node of an LndNetwork
// (network.ts): invoices and hold invoices (invoices.ts), payments (payments.ts), channel balances.
// It can be stopped, killed and started again on the same port with its state kept. Loopback only.
//
// Served: Lightning.GetInfo, AddInvoice, LookupInvoice, DecodePayReq, ChannelBalance,
// SubscribeInvoices; Invoices.AddHoldInvoice, SettleInvoice, CancelInvoice, SubscribeSingleInvoice,
// LookupInvoiceV2; Router.SendPaymentV2, TrackPaymentV2. Anything else is UNIMPLEMENTED.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import selfsigned from 'selfsigned';
import type { Rng } from '../../src/ports.ts';
import { DEFAULT_CLTV_DELTA, DEFAULT_EXPIRY_SECONDS, type StoredInvoice } from './invoices.ts';
import { LndNetwork, type LndNode } from './network.ts';
import type { StoredPayment } from './payments.ts';
import { decodePaymentRequest } from './payreq.ts';
import { invoiceExpiredText, LND_TEXT, LndRpcError } from './rpc-error.ts';

const require = createRequire(import.meta.url);
/** Where the `lightning` package keeps LND's protos (flat: lightning.proto, invoices.proto, router.proto, …). */
export const LND_PROTOS = join(dirname(require.resolve('lightning/package.json')), 'grpc', 'protos');
/** The proto-loader options the `lightning` package uses (lnd_grpc/grpc_options.js), so both sides read the protos alike. */
const PROTO_OPTIONS: protoLoader.Options = { defaults: true, enums: String, keepCase: true, longs: String, oneofs: true, includeDirs: [LND_PROTOS] };

export interface LndStandInOptions {
  /** The network to join; a new one of its own when absent. */
  network?: LndNetwork;
  alias?: string;
  /** The port on 127.0.0.1; a free one when absent. */
  port?: number;
  /** For a network of its own (ignored with `network`, whose rng draws the keys). */
  rng?: Rng;
}

/** What a client needs to connect, in the forms the `lightning` package takes. */
export interface LndCredentials {
  /** host:port; `localhost`, which the certificate names. */
  socket: string;
  /** The TLS certificate (PEM), base64, as `lightning` takes it (LND's tls.cert, base64). */
  cert: string;
  /** The admin macaroon, hex. */
  macaroon: string;
}

type Request = Record<string, unknown>;
type Stream = grpc.ServerWritableStream<Request, unknown>;
type Services = { lnrpc: { Lightning: grpc.ServiceClientConstructor }; invoicesrpc: { Invoices: grpc.ServiceClientConstructor }; routerrpc: { Router: grpc.ServiceClientConstructor } };

let services: Services | undefined;
function loadServices(): Services {
  services ??= grpc.loadPackageDefinition(protoLoader.loadSync(['lightning.proto', 'invoices.proto', 'router.proto'].map((file) => join(LND_PROTOS, file)), PROTO_OPTIONS)) as unknown as Services;
  return services;
}

/** The features LND puts in an invoice, as lnrpc.Feature by bit (the same as in its BOLT 11 string). */
const INVOICE_FEATURES = {
  8: { name: 'tlv-onion', is_required: true, is_known: true },
  14: { name: 'payment-addr', is_required: true, is_known: true },
  17: { name: 'multi-path-payments', is_required: false, is_known: true },
};

const bytes = (value: unknown): Buffer => (Buffer.isBuffer(value) ? value : Buffer.alloc(0));
const int = (value: unknown): bigint => BigInt((value as string | undefined) || '0');

export class LndStandIn {
  /** What GetInfo says of the chain backend: false stands for an LND still catching up after a restart. */
  syncedToChain = true;
  private server: grpc.Server | null = null;
  /** Open server streams and what ends them (unsubscribing from the registries). */
  private readonly streams = new Map<Stream, () => void>();

  private constructor(
    readonly network: LndNetwork,
    readonly node: LndNode,
    private readonly tls: { key: string; cert: string },
    private port: number,
  ) {}

  static async start(options: LndStandInOptions = {}): Promise<LndStandIn> {
    const network = options.network ?? new LndNetwork(options.rng ? { rng: options.rng } : {});
    const { private: key, cert } = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' });
    const standIn = new LndStandIn(network, network.createNode(options.alias ?? 'kalima-standin'), { key, cert }, options.port ?? 0);
    await standIn.restart();
    return standIn;
  }

  get credentials(): LndCredentials {
    return { socket: `localhost:${this.port}`, cert: Buffer.from(this.tls.cert).toString('base64'), macaroon: this.node.macaroon };
  }

  get alias(): string {
    return this.node.alias;
  }

  /** The node key's public half (compressed, hex): what GetInfo says and what its invoices are signed with. */
  get identityPubkey(): string {
    return this.node.publicKey;
  }

  get running(): boolean {
    return this.server !== null;
  }

  /**
   * Serves again on the same port with the same certificate, macaroon and state (LND keeps its
   * invoices, HTLCs and payments in its database). As LND's invoice registry does at startup, held
   * HTLCs now too close to their expiry, and unpaid invoices past theirs, are canceled first.
   */
  async restart(): Promise<void> {
    if (this.server) throw new Error('the stand-in is running');
    const server = new grpc.Server();
    const { lnrpc, invoicesrpc, routerrpc } = loadServices();
    server.addService(lnrpc.Lightning.service, {
      GetInfo: this.unary(() => this.info()),
      AddInvoice: this.unary((request) => this.addInvoice(request)),
      // By r_hash (ln-service) or r_hash_str (hex, lncli).
      LookupInvoice: this.unary((request) => invoiceMessage(this.node.invoices.lookup(bytes(request.r_hash).length > 0 ? bytes(request.r_hash) : Buffer.from(String(request.r_hash_str ?? ''), 'hex')))),
      DecodePayReq: this.unary((request) => payReqMessage(String(request.pay_req ?? ''))),
      ChannelBalance: this.unary(() => this.channelBalance()),
      SubscribeInvoices: this.stream((call) => this.subscribeInvoices(call)),
    });
    server.addService(invoicesrpc.Invoices.service, {
      AddHoldInvoice: this.unary((request) => this.addHoldInvoice(request)),
      SettleInvoice: this.unary((request) => (this.node.invoices.settle(bytes(request.preimage)), {})),
      CancelInvoice: this.unary((request) => (this.node.invoices.cancel(bytes(request.payment_hash)), {})),
      LookupInvoiceV2: this.unary((request) => invoiceMessage(this.node.invoices.lookup(bytes(request.payment_hash)))),
      SubscribeSingleInvoice: this.stream((call) => this.subscribeSingleInvoice(call)),
    });
    server.addService(routerrpc.Router.service, {
      SendPaymentV2: this.stream((call) => this.sendPayment(call)),
      TrackPaymentV2: this.stream((call) => this.trackPayment(call)),
    });
    const credentials = grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(this.tls.key), cert_chain: Buffer.from(this.tls.cert) }], false);
    this.port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`127.0.0.1:${this.port}`, credentials, (error, bound) => (error ? reject(error) : resolve(bound)));
    });
    this.server = server;
    this.node.online = true;
    this.node.invoices.onBlock(this.network.height);
  }

  /** A clean shutdown: open streams end with UNAVAILABLE, as LND ends them when it stops. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.goOffline();
    for (const call of [...this.streams.keys()]) this.endStream(call, { code: grpc.status.UNAVAILABLE, details: LND_TEXT.shuttingDown });
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  }

  /** A crash: every connection is dropped at once, no status is sent. */
  kill(): void {
    const server = this.server;
    if (!server) return;
    this.goOffline();
    for (const cleanup of this.streams.values()) cleanup();
    this.streams.clear();
    server.forceShutdown();
  }

  private goOffline(): void {
    this.server = null;
    this.node.online = false;
  }

  private authorized(metadata: grpc.Metadata): boolean {
    return metadata.get('macaroon')[0] === this.node.macaroon;
  }

  /** A unary handler: the macaroon first, as LND checks it; an LndRpcError becomes its status. */
  private unary(handler: (request: Request) => unknown): grpc.handleUnaryCall<Request, unknown> {
    return (call, callback) => {
      if (!this.authorized(call.metadata)) {
        callback({ code: grpc.status.UNKNOWN, details: LND_TEXT.macaroonRefused });
        return;
      }
      try {
        callback(null, handler(call.request));
      } catch (error) {
        callback(statusOf(error));
      }
    };
  }

  /** A server-streaming handler; it returns what to undo (unsubscribe) when the stream ends. */
  private stream(handler: (call: Stream) => (() => void) | void): grpc.handleServerStreamingCall<Request, unknown> {
    return (call) => {
      if (!this.authorized(call.metadata)) {
        call.emit('error', { code: grpc.status.UNKNOWN, details: LND_TEXT.macaroonRefused });
        return;
      }
      let cleanup: () => void = () => {};
      this.streams.set(call, () => cleanup());
      const forget = () => {
        this.streams.get(call)?.();
        this.streams.delete(call);
      };
      call.on('cancelled', forget);
      call.on('close', forget);
      try {
        const undo = handler(call);
        if (undo) {
          // The handler may have ended the stream already (an invoice or payment that was final).
          if (this.streams.has(call)) cleanup = undo;
          else undo();
        }
      } catch (error) {
        this.endStream(call, statusOf(error));
      }
    };
  }

  private endStream(call: Stream, status?: Partial<grpc.StatusObject>): void {
    this.streams.get(call)?.();
    this.streams.delete(call);
    if (status) call.emit('error', status);
    else call.end();
  }

  /** Lightning.GetInfo, every field LND fills (the `lightning` package refuses an answer without them). */
  private info(): Record<string, unknown> {
    const channels = this.network.channelsOf(this.node);
    const active = channels.filter((channel) => channel.active);
    return {
      version: '0.20.0-beta kalima-standin', commit_hash: '', identity_pubkey: this.node.publicKey, alias: this.node.alias, color: '#3399ff',
      num_pending_channels: 0, num_active_channels: active.length, num_inactive_channels: channels.length - active.length,
      num_peers: new Set(active.map((channel) => channel.peer)).size,
      block_height: this.network.height, block_hash: this.network.blockHash, best_header_timestamp: String(Math.floor(this.network.clock.nowMs() / 1000)),
      synced_to_chain: this.syncedToChain, synced_to_graph: true, testnet: false, chains: [{ chain: 'bitcoin', network: 'regtest' }], uris: [], features: {},
      require_htlc_interceptor: false, store_final_htlc_resolutions: false,
    };
  }

  private addInvoice(request: Request): Record<string, unknown> {
    const preimage = bytes(request.r_preimage);
    if (preimage.length !== 0 && preimage.length !== 32) throw LndRpcError.unknown('payment preimage must be exactly 32 bytes');
    const invoice = this.node.invoices.add({
      preimage: preimage.length === 32 ? preimage : Buffer.from(this.network.rng.bytes(32)),
      ...invoiceTerms(request),
    });
    return { r_hash: invoice.hash, payment_request: invoice.paymentRequest, add_index: String(invoice.addIndex), payment_addr: invoice.paymentAddr };
  }

  private addHoldInvoice(request: Request): Record<string, unknown> {
    const hash = bytes(request.hash);
    if (hash.length !== 32) throw LndRpcError.unknown('payment hash must be exactly 32 bytes');
    const invoice = this.node.invoices.add({ hash, ...invoiceTerms(request) });
    return { payment_request: invoice.paymentRequest, add_index: String(invoice.addIndex), payment_addr: invoice.paymentAddr };
  }

  private channelBalance(): Record<string, unknown> {
    const balance = this.network.balances(this.node);
    const amount = (msat: bigint) => ({ sat: String(msat / 1000n), msat: String(msat) });
    return {
      balance: String(balance.localMsat / 1000n), pending_open_balance: '0',
      local_balance: amount(balance.localMsat), remote_balance: amount(balance.remoteMsat),
      unsettled_local_balance: amount(balance.unsettledLocalMsat), unsettled_remote_balance: amount(balance.unsettledRemoteMsat),
      pending_open_local_balance: amount(0n), pending_open_remote_balance: amount(0n),
    };
  }

  /** The invoice's current state first (if it exists yet), then every change; the stream ends after SETTLED or CANCELED. */
  private subscribeSingleInvoice(call: Stream): () => void {
    const hash = bytes(call.request.r_hash);
    const send = (invoice: StoredInvoice) => {
      call.write(invoiceMessage(invoice));
      if (invoice.state === 'SETTLED' || invoice.state === 'CANCELED') this.endStream(call);
    };
    const unsubscribe = this.node.invoices.subscribeSingle(hash, send);
    const current = this.node.invoices.find(hash);
    if (current) send(current);
    return unsubscribe;
  }

  /** Added and settled invoices (never a held one, as LND), after a backlog past the given indices. */
  private subscribeInvoices(call: Stream): () => void {
    const addIndex = Number(call.request.add_index ?? 0);
    const settleIndex = Number(call.request.settle_index ?? 0);
    for (const invoice of this.node.invoices.list()) {
      if ((addIndex > 0 && invoice.addIndex > addIndex) || (settleIndex > 0 && invoice.settleIndex > settleIndex)) call.write(invoiceMessage(invoice));
    }
    return this.node.invoices.subscribeAll((invoice) => call.write(invoiceMessage(invoice)));
  }

  /** Router.SendPaymentV2: LND's checks on the request, then IN_FLIGHT … SUCCEEDED or FAILED, and the stream ends. */
  private sendPayment(call: Stream): (() => void) | void {
    const request = String(call.request.payment_request ?? '');
    if (!request) throw LndRpcError.unknown('payment_request is required: this stand-in pays BOLT 11 invoices only');
    const decoded = decodePaymentRequest(request);
    const validUntilMs = (decoded.timestamp + decoded.expirySeconds) * 1000;
    if (this.network.clock.nowMs() > validUntilMs) throw LndRpcError.unknown(invoiceExpiredText(validUntilMs));
    const askedMsat = int(call.request.amt_msat) || int(call.request.amt) * 1000n;
    if (decoded.amountMsat > 0n && askedMsat > 0n) throw LndRpcError.unknown('amount must not be specified when paying a non-zero amount invoice');
    if (decoded.amountMsat === 0n && askedMsat === 0n) throw LndRpcError.unknown('amount must be specified when paying a zero amount invoice');
    const payment = this.network.sendPayment(this.node, request, decoded, decoded.amountMsat || askedMsat);
    return this.followPayment(call, payment, Boolean(call.request.no_inflight_updates));
  }

  /** Router.TrackPaymentV2: the payment's current state, then its changes until it is final. */
  private trackPayment(call: Stream): (() => void) | void {
    const hash = bytes(call.request.payment_hash).toString('hex');
    const payment = this.node.payments.get(hash);
    if (!payment) throw LndRpcError.notFound(LND_TEXT.paymentNotInitiated);
    return this.followPayment(call, payment, Boolean(call.request.no_inflight_updates));
  }

  private followPayment(call: Stream, payment: StoredPayment, finalOnly: boolean): (() => void) | void {
    const send = (update: StoredPayment) => {
      const final = update.status !== 'IN_FLIGHT';
      if (final || !finalOnly) call.write(paymentMessage(update));
      if (final) this.endStream(call);
    };
    const unsubscribe = this.node.payments.subscribe(payment.hash, send);
    send(payment);
    return unsubscribe;
  }
}

function statusOf(error: unknown): Partial<grpc.StatusObject> {
  if (error instanceof LndRpcError) return { code: error.code, details: error.details };
  return { code: grpc.status.INTERNAL, details: error instanceof Error ? error.message : String(error) };
}

/** The terms an AddInvoice or AddHoldInvoice request asks for, with LND's defaults. */
function invoiceTerms(request: Request) {
  const valueMsat = int(request.value_msat) || int(request.value) * 1000n;
  if (valueMsat < 0n) throw LndRpcError.unknown('payment of negative value is not allowed');
  const descriptionHash = bytes(request.description_hash);
  return {
    memo: String(request.memo ?? ''),
    ...(descriptionHash.length > 0 ? { descriptionHash } : {}),
    valueMsat,
    expirySeconds: Number(int(request.expiry)) || DEFAULT_EXPIRY_SECONDS,
    cltvDelta: Number(int(request.cltv_expiry)) || DEFAULT_CLTV_DELTA,
  };
}

/** lnrpc.Invoice. */
export function invoiceMessage(invoice: StoredInvoice): Record<string, unknown> {
  const paidMsat = invoice.amountPaidMsat;
  return {
    memo: invoice.memo, r_preimage: invoice.preimage ?? Buffer.alloc(0), r_hash: invoice.hash,
    value: String(invoice.valueMsat / 1000n), value_msat: String(invoice.valueMsat), settled: invoice.state === 'SETTLED',
    creation_date: String(invoice.creationDate), settle_date: String(invoice.settleDate), payment_request: invoice.paymentRequest,
    description_hash: invoice.descriptionHash, expiry: String(invoice.expirySeconds), fallback_addr: '', cltv_expiry: String(invoice.cltvDelta),
    route_hints: [], private: false, add_index: String(invoice.addIndex), settle_index: String(invoice.settleIndex),
    amt_paid: String(paidMsat), amt_paid_sat: String(paidMsat / 1000n), amt_paid_msat: String(paidMsat), state: invoice.state,
    htlcs: invoice.htlcs.map((htlc) => ({
      chan_id: htlc.chanId, htlc_index: String(htlc.htlcIndex), amt_msat: String(htlc.amountMsat), accept_height: htlc.acceptHeight,
      accept_time: String(htlc.acceptTime), resolve_time: String(htlc.resolveTime), expiry_height: htlc.expiryHeight, state: htlc.state,
      custom_records: {}, mpp_total_amt_msat: String(htlc.amountMsat),
    })),
    features: INVOICE_FEATURES, is_keysend: false, payment_addr: invoice.paymentAddr, is_amp: false, amp_invoice_state: {},
  };
}

/** lnrpc.PayReq (DecodePayReq). */
function payReqMessage(request: string): Record<string, unknown> {
  const decoded = decodePaymentRequest(request);
  return {
    destination: decoded.destination, payment_hash: decoded.hash, num_satoshis: String(decoded.amountMsat / 1000n), timestamp: String(decoded.timestamp),
    expiry: String(decoded.expirySeconds), description: decoded.description, description_hash: decoded.descriptionHash ?? '', fallback_addr: '',
    cltv_expiry: String(decoded.cltvDelta), route_hints: [], payment_addr: Buffer.from(decoded.secret, 'hex'), num_msat: String(decoded.amountMsat),
    features: INVOICE_FEATURES, blinded_paths: [],
  };
}

/** lnrpc.Payment, with its one HTLC attempt once one went out. */
export function paymentMessage(payment: StoredPayment): Record<string, unknown> {
  const route = payment.route;
  const sat = String(payment.valueMsat / 1000n);
  const attempts = !route ? [] : [{
    attempt_id: String(payment.attemptId),
    status: payment.status,
    route: {
      total_time_lock: route.expiryHeight, total_fees: '0', total_amt: sat, total_fees_msat: '0', total_amt_msat: String(payment.valueMsat),
      hops: [{
        chan_id: route.chanId, chan_capacity: String(route.capacitySat), amt_to_forward: sat, fee: '0', expiry: route.expiryHeight,
        amt_to_forward_msat: String(payment.valueMsat), fee_msat: '0', pub_key: route.destination, tlv_payload: true,
        mpp_record: { payment_addr: route.paymentAddr, total_amt_msat: String(payment.valueMsat) }, custom_records: {},
      }],
    },
    attempt_time_ns: String(payment.attemptTimeNs),
    resolve_time_ns: String(payment.resolveTimeNs),
    failure: payment.status === 'FAILED' ? { code: 'INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS', failure_source_index: 1 } : null,
    preimage: payment.preimage ? Buffer.from(payment.preimage, 'hex') : Buffer.alloc(0),
  }];
  return {
    payment_hash: payment.hash, value: sat, creation_date: String(payment.creationTimeNs / 1_000_000_000n), fee: '0',
    payment_preimage: payment.preimage || '0'.repeat(64), value_sat: sat, value_msat: String(payment.valueMsat), payment_request: payment.request,
    status: payment.status, fee_sat: '0', fee_msat: '0', creation_time_ns: String(payment.creationTimeNs), htlcs: attempts,
    payment_index: String(payment.index), failure_reason: payment.failureReason, first_hop_custom_records: {},
  };
}
