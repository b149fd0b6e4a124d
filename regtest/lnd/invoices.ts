// One node's invoice registry, after LND's (invoices/invoiceregistry.go): invoices and hold
// invoices, the HTLCs that pay them, settle and cancel, the expiry of unpaid invoices, and the
// auto-cancel of held HTLCs that come too close to their expiry height. No gRPC here: the server
// (server.ts) turns these records into lnrpc.Invoice messages, the network (network.ts) brings HTLCs.
import { createHash } from 'node:crypto';
import { LND_TEXT, LndRpcError } from './rpc-error.ts';

export type InvoiceState = 'OPEN' | 'ACCEPTED' | 'SETTLED' | 'CANCELED';
export type HtlcState = 'ACCEPTED' | 'SETTLED' | 'CANCELED';

/**
 * LND cancels a held HTLC when the chain is this many blocks from its expiry height
 * (`DefaultHoldInvoiceExpiryDelta`, the incoming broadcast delta 10 + 2): at height h with
 * h + 12 >= expiry.
 */
export const HOLD_EXPIRY_DELTA = 12;
/** LND's default final CLTV delta for a new invoice on bitcoin (`DefaultBitcoinTimeLockDelta`). */
export const DEFAULT_CLTV_DELTA = 80;
/** LND refuses a smaller final CLTV delta (`routing.MinCLTVDelta`). */
export const MIN_CLTV_DELTA = 18;
/** LND's default invoice expiry, seconds (24 h). */
export const DEFAULT_EXPIRY_SECONDS = 86_400;

export interface InvoiceHtlc {
  chanId: string;
  htlcIndex: number;
  amountMsat: bigint;
  acceptHeight: number;
  /** Seconds since the epoch. */
  acceptTime: number;
  resolveTime: number;
  expiryHeight: number;
  state: HtlcState;
  /** Tells the paying side how the HTLC ended: the preimage, or null when it is failed back. */
  release: (preimage: Buffer | null) => void;
}

export interface StoredInvoice {
  hash: Buffer;
  /** Known from the start for a plain invoice; for a hold invoice only once settled. */
  preimage: Buffer | null;
  hold: boolean;
  memo: string;
  descriptionHash: Buffer;
  valueMsat: bigint;
  creationDate: number;
  expirySeconds: number;
  cltvDelta: number;
  paymentRequest: string;
  paymentAddr: Buffer;
  addIndex: number;
  settleIndex: number;
  settleDate: number;
  state: InvoiceState;
  amountPaidMsat: bigint;
  htlcs: InvoiceHtlc[];
}

export interface NewInvoice {
  /** A plain invoice has its preimage; a hold invoice only its hash. */
  preimage?: Buffer;
  hash?: Buffer;
  memo: string;
  descriptionHash?: Buffer;
  valueMsat: bigint;
  expirySeconds: number;
  cltvDelta: number;
}

export interface IncomingHtlc {
  hash: Buffer;
  paymentAddr: Buffer;
  amountMsat: bigint;
  expiryHeight: number;
  chanId: string;
  htlcIndex: number;
  release: (preimage: Buffer | null) => void;
}

type Listener = (invoice: StoredInvoice) => void;

export const sha256 = (data: Uint8Array): Buffer => createHash('sha256').update(data).digest();

export class InvoiceRegistry {
  private readonly byHash = new Map<string, StoredInvoice>();
  private readonly single = new Map<string, Set<Listener>>();
  private readonly all = new Set<Listener>();
  private addIndex = 0;
  private settleIndex = 0;

  constructor(
    /** Seconds since the epoch. */
    private readonly nowSeconds: () => number,
    private readonly height: () => number,
    /** Writes and signs the BOLT 11 request of a new invoice. */
    private readonly encode: (invoice: { hash: Buffer; paymentAddr: Buffer; memo: string; descriptionHash: Buffer; valueMsat: bigint; creationDate: number; expirySeconds: number; cltvDelta: number }) => string,
    private readonly randomBytes: (length: number) => Buffer,
  ) {}

  add(request: NewInvoice): StoredInvoice {
    const hash = request.hash ?? sha256(request.preimage!);
    const key = hash.toString('hex');
    if (this.byHash.has(key)) throw LndRpcError.unknown(LND_TEXT.duplicateInvoice);
    if (request.cltvDelta < MIN_CLTV_DELTA) throw LndRpcError.unknown(`CLTV delta of ${request.cltvDelta} must be greater than minimum of ${MIN_CLTV_DELTA}`);
    const fields = {
      hash, paymentAddr: this.randomBytes(32), memo: request.memo, descriptionHash: request.descriptionHash ?? Buffer.alloc(0),
      valueMsat: request.valueMsat, creationDate: this.nowSeconds(), expirySeconds: request.expirySeconds, cltvDelta: request.cltvDelta,
    };
    const invoice: StoredInvoice = {
      ...fields, preimage: request.preimage ?? null, hold: request.preimage === undefined, paymentRequest: this.encode(fields),
      addIndex: ++this.addIndex, settleIndex: 0, settleDate: 0, state: 'OPEN', amountPaidMsat: 0n, htlcs: [],
    };
    this.byHash.set(key, invoice);
    this.notify(invoice);
    return invoice;
  }

  /** The invoice, or LND's NotFound. Expiry is applied first, as LND's watcher would have by now. */
  lookup(hash: Buffer): StoredInvoice {
    this.sweepExpired();
    const invoice = this.byHash.get(hash.toString('hex'));
    if (!invoice) throw LndRpcError.notFound(LND_TEXT.invoiceNotFound);
    return invoice;
  }

  find(hash: Buffer): StoredInvoice | undefined {
    this.sweepExpired();
    return this.byHash.get(hash.toString('hex'));
  }

  list(): StoredInvoice[] {
    this.sweepExpired();
    return [...this.byHash.values()];
  }

  /** invoicesrpc.SettleInvoice. Settling a settled invoice again is no error (LND ignores ErrInvoiceAlreadySettled there). */
  settle(preimage: Buffer): void {
    const invoice = this.lookup(sha256(preimage));
    switch (invoice.state) {
      case 'OPEN':
        throw LndRpcError.unknown(LND_TEXT.invoiceStillOpen);
      case 'CANCELED':
        throw LndRpcError.unknown(LND_TEXT.invoiceAlreadyCanceled);
      case 'SETTLED':
        return;
      case 'ACCEPTED':
        invoice.preimage = preimage;
        this.resolve(invoice, 'SETTLED');
    }
  }

  /** invoicesrpc.CancelInvoice: an open or held invoice; a canceled one again is no error; a settled one is. */
  cancel(hash: Buffer): void {
    const invoice = this.lookup(hash);
    if (invoice.state === 'SETTLED') throw LndRpcError.unknown(LND_TEXT.invoiceAlreadySettled);
    if (invoice.state !== 'CANCELED') this.resolve(invoice, 'CANCELED');
  }

  /**
   * An HTLC arrives for `hash`. A plain invoice settles at once, a hold invoice holds it (ACCEPTED);
   * anything else (unknown hash, wrong payment secret, too little, settled, canceled, expired, an
   * expiry too close) fails it back, which the payer sees as incorrect payment details.
   */
  receive(htlc: IncomingHtlc): void {
    const invoice = this.find(htlc.hash);
    const height = this.height();
    const acceptable = invoice !== undefined && invoice.state === 'OPEN' && invoice.paymentAddr.equals(htlc.paymentAddr)
      && htlc.amountMsat >= invoice.valueMsat && htlc.expiryHeight >= height + invoice.cltvDelta && htlc.expiryHeight > height + HOLD_EXPIRY_DELTA;
    if (!acceptable) {
      htlc.release(null);
      return;
    }
    invoice.htlcs.push({ ...htlc, acceptHeight: height, acceptTime: this.nowSeconds(), resolveTime: 0, state: 'ACCEPTED' });
    invoice.amountPaidMsat += htlc.amountMsat;
    if (invoice.hold) {
      invoice.state = 'ACCEPTED';
      this.notify(invoice);
    } else {
      this.resolve(invoice, 'SETTLED');
    }
  }

  /** A new block (or the node's start): held HTLCs too close to their expiry are canceled, as LND does. */
  onBlock(height: number): void {
    for (const invoice of this.byHash.values()) {
      if (invoice.state === 'ACCEPTED' && invoice.htlcs.some((htlc) => htlc.state === 'ACCEPTED' && height + HOLD_EXPIRY_DELTA >= htlc.expiryHeight)) {
        this.resolve(invoice, 'CANCELED');
      }
    }
    this.sweepExpired();
  }

  /** Unpaid invoices past their expiry are canceled (LND's invoice expiry watcher). */
  sweepExpired(): void {
    const now = this.nowSeconds();
    for (const invoice of this.byHash.values()) {
      if (invoice.state === 'OPEN' && now >= invoice.creationDate + invoice.expirySeconds) this.resolve(invoice, 'CANCELED');
    }
  }

  subscribeSingle(hash: Buffer, listener: Listener): () => void {
    const key = hash.toString('hex');
    const listeners = this.single.get(key) ?? new Set<Listener>();
    this.single.set(key, listeners);
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0) this.single.delete(key);
    };
  }

  subscribeAll(listener: Listener): () => void {
    this.all.add(listener);
    return () => this.all.delete(listener);
  }

  private resolve(invoice: StoredInvoice, outcome: 'SETTLED' | 'CANCELED'): void {
    const now = this.nowSeconds();
    invoice.state = outcome;
    // What LND reports as paid is the sum of the HTLCs it holds or settled: none once canceled.
    if (outcome === 'CANCELED') invoice.amountPaidMsat = 0n;
    if (outcome === 'SETTLED') {
      invoice.settleIndex = ++this.settleIndex;
      invoice.settleDate = now;
    }
    for (const htlc of invoice.htlcs) {
      if (htlc.state !== 'ACCEPTED') continue;
      htlc.state = outcome;
      htlc.resolveTime = now;
      htlc.release(outcome === 'SETTLED' ? invoice.preimage : null);
    }
    this.notify(invoice);
  }

  private notify(invoice: StoredInvoice): void {
    for (const listener of [...(this.single.get(invoice.hash.toString('hex')) ?? [])]) listener(invoice);
    // Like LND's SubscribeInvoices: added and settled invoices only, never a held (ACCEPTED) or canceled one.
    if (invoice.state === 'OPEN' || invoice.state === 'SETTLED') for (const listener of [...this.all]) listener(invoice);
  }
}
