// The marketplace's seller side: a buyer asks to buy a listing (or KLX), gets a BOLT 11 hold
// invoice on the seller's LND, pays it, and once the HTLC is held the presumed-commit coordinator
// makes the two steps one: the grant (or the KLX transfer) is written on the chain and the invoice
// settled, or the invoice is cancelled and the HTLC goes back to the buyer.
//
// A purchase is kept in the market's own store (beside the coordinator's log) from before its
// invoice exists, with the preimage, so a restart finds every invoice it made. Each open purchase's
// invoice is watched (the adapter re-subscribes after an LND restart and reports the state it
// finds); held starts the transaction, settled or cancelled closes the purchase. A sweep cancels
// unpaid invoices once they expire, and any HTLC still held without a live transaction as it
// nears its decision deadline.
import { isKalimaError, kalimaError } from '../src/errors.ts';
import { LISTINGS_ADDRESS, GRANTS_ADDRESS, PERIOD_SECONDS_MAX, PRICE_SATS_MAX, type ListingView, decodeGrant, findListing, grantKey, listingView } from '../src/access/market.ts';
import { roleOf } from '../src/access/permissions.ts';
import { fromHex, sha256, toHex } from '../src/ledger/hash.ts';
import type { KeyPair } from '../src/ledger/signature.ts';
import type { Clock, Logger, Rng, Scheduler } from '../src/ports.ts';
import type { KvStore } from '../src/store/kv.ts';
import { prefixEnd } from '../src/store/keys.ts';
import { accountOf } from '../src/state/klx.ts';
import type { ChainAccess } from './chain.ts';
import { BridgeCoordinator, type TxOutcome } from './coordinator.ts';
import type { FailpointHook } from './failpoints.ts';
import { GRANT_PARTICIPANT, encodeGrantArgs, grantParticipantFactory } from './participants/kalima-grant.ts';
import { KLX_PARTICIPANT, encodeKlxArgs, klxParticipantFactory } from './participants/klx-transfer.ts';
import { type HoldInvoiceView, type HoldInvoices, LIGHTNING_PARTICIPANT, LND_HOLD_EXPIRY_DELTA, decisionHeight, encodeHoldArgs, holdParticipantFactory } from './participants/lightning-hold.ts';
import { DeliveryGate, type DeliveryGuard } from './participants/delivery.ts';

/** The seller's LND as the market needs it (chains/lightning's LndHoldInvoices implements it). */
export interface SellerLnd extends HoldInvoices {
  /** The node's identity key, compressed, hex. */
  publicKey(): Promise<string>;
  createHoldInvoice(request: { paymentHash: string; sats: number; description: string; expirySeconds: number; cltvDelta: number }): Promise<{ request: string }>;
  /** Reports the invoice's state now and at every change, across LND restarts, until stopped. */
  watch(paymentHash: string, listener: (view: HoldInvoiceView) => void): () => void;
}

export type PurchaseState = 'awaiting-payment' | 'held' | 'completed' | 'refunded' | 'expired';

export interface Purchase {
  /** The payment hash, hex: the purchase's id and its bridge transaction's. */
  id: string;
  kind: 'data' | 'klx';
  buyer: string;
  amountSats: number;
  invoice: string;
  createdMs: number;
  expiresAtMs: number;
  state: PurchaseState;
  /** A data purchase: the listing, its prefix, and (once the transaction began) when access ends. */
  listing?: string;
  prefix?: string;
  periodSeconds?: number;
  untilMs?: number;
  /** A KLX purchase: how many units. */
  klx?: number;
  reason?: string;
  /** When the buyer's HTLC was first seen held, and when the purchase completed. */
  heldMs?: number;
  doneMs?: number;
}

interface StoredPurchase extends Purchase {
  preimage: string;
}

export interface MarketSettings {
  /** Seconds an unpaid invoice stays payable (default 600). */
  invoiceExpirySeconds: number;
  /** The final CLTV delta of the invoices (default 80, as LND's). */
  cltvDelta: number;
  /** Blocks before LND's own cancel by which a held payment must be decided (default 6). */
  marginBlocks: number;
  /** LND's `--invoices.holdexpirydelta`: it cancels a held invoice this many blocks before the HTLC expires (default 12, LND's). */
  lndHoldExpiryDelta: number;
  /** How often the sweep runs (default 5 s). */
  sweepIntervalMs: number;
  /** A KLX purchase costs this many sats per unit; absent: KLX is not sold. */
  satsPerKlx?: number;
}

export const DEFAULT_MARKET_SETTINGS: MarketSettings = { invoiceExpirySeconds: 600, cltvDelta: 80, marginBlocks: 6, lndHoldExpiryDelta: LND_HOLD_EXPIRY_DELTA, sweepIntervalMs: 5_000 };

export interface MarketOptions {
  kv: KvStore;
  chain: ChainAccess;
  lnd: SellerLnd;
  /** The key of the listings this node sells: it signs their grants. */
  seller: KeyPair;
  /** The KLX treasury's key, if this node sells KLX. */
  treasury?: KeyPair;
  clock: Clock;
  rng: Rng;
  scheduler: Scheduler;
  logger: Logger;
  settings?: Partial<MarketSettings>;
  failpoint?: FailpointHook;
  /** Coordinator timings, for tests. */
  coordinator?: { prepareTimeoutMs?: number; callTimeoutMs?: number; retryInitialMs?: number; retryMaxMs?: number; defaultDeadlineMs?: number };
}

/** A chain step is delivered only while the HTLC is at least this many blocks before LND's own cancel. */
const DELIVERY_MARGIN_BLOCKS = 3;

/** Purchases a buyer may have open (awaiting payment or held) at once, and all buyers together. */
export const OPEN_PURCHASES_PER_BUYER_MAX = 16;
export const OPEN_PURCHASES_MAX = 10_000;

const PURCHASE_PREFIX = new TextEncoder().encode('market/purchase/');
const BRIDGE_PREFIX = new TextEncoder().encode('market/bridge/');
const FINAL: ReadonlySet<PurchaseState> = new Set(['completed', 'refunded', 'expired']);

function purchaseKey(id: string): Uint8Array {
  return new Uint8Array([...PURCHASE_PREFIX, ...new TextEncoder().encode(id)]);
}

/** Every listing on the chain. */
export function listingsOf(chain: ChainAccess): ListingView[] {
  return chain.entriesAt(LISTINGS_ADDRESS).map((entry) => listingView(entry.key, entry));
}

export class MarketService {
  private readonly purchases = new Map<string, StoredPurchase>();
  private readonly watches = new Map<string, () => void>();
  /** Purchases whose transaction this instance began or attached to. */
  private readonly running = new Set<string>();
  private readonly listeners = new Set<(purchase: Purchase) => void>();
  /** Purchases whose unpaid invoice the sweep is cancelling: none of them begins. */
  private readonly cancelling = new Set<string>();
  private sweepTimer: unknown;
  private stopped = false;
  private sellerNode = '';

  private constructor(private readonly options: MarketOptions, private readonly settings: MarketSettings, private readonly coordinator: BridgeCoordinator, private readonly gate: DeliveryGate) {
    coordinator.on('ended', (event) => gate.forget(event.id));
  }

  static async open(options: MarketOptions): Promise<MarketService> {
    const settings = { ...DEFAULT_MARKET_SETTINGS, ...options.settings };
    const { lnd, chain, logger } = options;
    // The chain step goes first, and only while the HTLC can still be settled after it.
    const gate = new DeliveryGate();
    const guard: DeliveryGuard = async (txId) => {
      const [invoice, height] = await Promise.all([lnd.invoice(txId), lnd.blockHeight()]);
      if (invoice === undefined) return 'LND does not know the invoice';
      if (invoice.state === 'settled') return undefined;
      if (invoice.state !== 'held') return `the invoice is ${invoice.state}`;
      // A few blocks before LND's own cancel: a block found between this and the settle must not cancel it.
      if (invoice.expiryHeight !== undefined && height + settings.lndHoldExpiryDelta + DELIVERY_MARGIN_BLOCKS >= invoice.expiryHeight) return `LND is about to cancel the HTLC (height ${height}, expiry ${invoice.expiryHeight})`;
      return undefined;
    };
    const participants = new Map([
      [LIGHTNING_PARTICIPANT, holdParticipantFactory({ lnd, gate, marginBlocks: settings.marginBlocks, holdExpiryDelta: settings.lndHoldExpiryDelta, logger })],
      [GRANT_PARTICIPANT, grantParticipantFactory({ chain, gate, guard, seller: options.seller, clock: options.clock, logger })],
      ...(options.treasury === undefined ? [] : [[KLX_PARTICIPANT, klxParticipantFactory({ chain, gate, guard, payer: options.treasury, logger })] as const]),
    ]);
    const coordinator = await BridgeCoordinator.open({
      kv: options.kv, participants, clock: options.clock, rng: options.rng, scheduler: options.scheduler, logger: options.logger,
      failpoint: options.failpoint, keyPrefix: BRIDGE_PREFIX, ...options.coordinator,
    });
    const service = new MarketService(options, settings, coordinator, gate);
    try {
      await service.load();
    } catch (error) {
      coordinator.crash('the market did not open');
      throw error;
    }
    return service;
  }

  private async load(): Promise<void> {
    for await (const [, value] of this.options.kv.entries({ gte: PURCHASE_PREFIX, lt: prefixEnd(PURCHASE_PREFIX) })) {
      const purchase = JSON.parse(new TextDecoder().decode(value)) as StoredPurchase;
      this.purchases.set(purchase.id, purchase);
    }
    try {
      this.sellerNode = await this.options.lnd.publicKey();
    } catch (error) {
      // The node serves without its LND; buying asks for it again.
      this.options.logger.warn({ err: error }, 'market: the seller\'s LND does not answer; purchases wait for it');
    }
    for (const purchase of this.purchases.values()) {
      if (FINAL.has(purchase.state)) continue;
      // A transaction the coordinator recovered from its log: its outcome closes the purchase.
      const recovered = this.coordinator.outcome(purchase.id);
      if (recovered !== undefined) this.attach(purchase.id, recovered);
      this.watch(purchase);
    }
    this.scheduleSweep();
  }

  /** Listings on the chain; `ours` when this node sells them (they are paid to its LND). */
  listings(): Array<ListingView & { ours: boolean }> {
    return listingsOf(this.options.chain).map((view) => ({ ...view, ours: this.isOurs(view) }));
  }

  private isOurs(view: ListingView): boolean {
    return view.sellerNode === this.sellerNode && view.seller === toHex(this.options.seller.publicKey);
  }

  on(listener: (purchase: Purchase) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  purchase(id: string): Purchase {
    const found = this.purchases.get(id);
    if (found === undefined) throw kalimaError('KALIMA_ERR_MARKET_UNKNOWN_PURCHASE', { purchase: id });
    return publicView(found);
  }

  allPurchases(): Purchase[] {
    return [...this.purchases.values()].map(publicView);
  }

  private checkBuyer(buyer: string): void {
    const { chain } = this.options;
    if (!/^[0-9a-f]{64}$/.test(buyer) || roleOf(chain.state, { admins: chain.policy.admins }, buyer).kind !== 'device') {
      throw kalimaError('KALIMA_ERR_MARKET_UNKNOWN_BUYER', { buyer });
    }
  }

  private checkAmount(amountSats: number | undefined, price: number): void {
    if (amountSats !== undefined && amountSats !== price) throw kalimaError('KALIMA_ERR_MARKET_WRONG_AMOUNT', { amountSats, priceSats: price });
  }

  /** A hold invoice for a listing; `amountSats`, when given, must be its price. */
  async buy(request: { listing: string; buyer: string; amountSats?: number }): Promise<Purchase> {
    this.throwIfStopped();
    const view = findListing(this.options.chain.state, request.listing);
    if (this.sellerNode === '') this.sellerNode = await this.options.lnd.publicKey();
    if (!this.isOurs(view)) throw kalimaError('KALIMA_ERR_MARKET_NOT_OUR_LISTING', { listing: view.id, sellerNode: view.sellerNode, ours: this.sellerNode });
    this.checkBuyer(request.buyer);
    this.checkAmount(request.amountSats, view.priceSats);
    return this.open({
      kind: 'data', buyer: request.buyer, amountSats: view.priceSats, listing: view.id, prefix: view.prefix, periodSeconds: view.periodSeconds,
    }, `Kalima: ${view.periodSeconds} s of ${view.prefix} (${view.id})`);
  }

  /** A hold invoice for `klx` units from the treasury. */
  async buyKlx(request: { buyer: string; klx: number; amountSats?: number }): Promise<Purchase> {
    this.throwIfStopped();
    const { treasury } = this.options;
    const rate = this.settings.satsPerKlx;
    if (treasury === undefined || rate === undefined) throw kalimaError('KALIMA_ERR_MARKET_NOT_CONFIGURED', { reason: 'this node does not sell KLX (no treasury key or price)' });
    if (!Number.isSafeInteger(request.klx) || request.klx < 1) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'klx', reason: 'a whole number of KLX units, at least 1' });
    this.checkBuyer(request.buyer);
    const price = request.klx * rate;
    if (!Number.isSafeInteger(price) || price > PRICE_SATS_MAX) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'klx', reason: `at most ${PRICE_SATS_MAX} sats in one purchase (${Math.floor(PRICE_SATS_MAX / rate)} KLX)` });
    this.checkAmount(request.amountSats, price);
    const balance = accountOf(this.options.chain.state, toHex(treasury.publicKey))?.balance ?? 0;
    if (balance < request.klx) throw kalimaError('KALIMA_ERR_KLX_INSUFFICIENT_FUNDS', { account: 'treasury', balance, amount: request.klx });
    return this.open({ kind: 'klx', buyer: request.buyer, amountSats: price, klx: request.klx }, `Kalima: ${request.klx} KLX`);
  }

  private async open(fields: Pick<Purchase, 'kind' | 'buyer' | 'amountSats' | 'listing' | 'prefix' | 'periodSeconds' | 'klx'>, description: string): Promise<Purchase> {
    const { clock, rng, lnd } = this.options;
    const open = [...this.purchases.values()].filter((purchase) => !FINAL.has(purchase.state));
    if (open.length >= OPEN_PURCHASES_MAX || open.filter((purchase) => purchase.buyer === fields.buyer).length >= OPEN_PURCHASES_PER_BUYER_MAX) {
      throw kalimaError('KALIMA_ERR_MARKET_TOO_MANY_OPEN', { buyer: fields.buyer, perBuyer: OPEN_PURCHASES_PER_BUYER_MAX, total: OPEN_PURCHASES_MAX });
    }
    const preimage = rng.bytes(32);
    const id = toHex(sha256(preimage));
    const nowMs = clock.nowMs();
    const purchase: StoredPurchase = {
      id, ...fields, invoice: '', createdMs: nowMs, expiresAtMs: nowMs + this.settings.invoiceExpirySeconds * 1000, state: 'awaiting-payment', preimage: toHex(preimage),
    };
    // Stored before the invoice exists, so a crash between the two leaves nothing unknown behind.
    await this.store(purchase);
    let invoice: { request: string };
    try {
      invoice = await lnd.createHoldInvoice({ paymentHash: id, sats: purchase.amountSats, description, expirySeconds: this.settings.invoiceExpirySeconds, cltvDelta: this.settings.cltvDelta });
    } catch (error) {
      // Refused, or no answer: the buyer never got an invoice, so the purchase goes again (an
      // invoice LND made without answering expires unpaid: nobody has its request).
      await this.options.kv.batch([{ type: 'del', key: purchaseKey(id) }], { sync: true });
      this.purchases.delete(id);
      throw error;
    }
    purchase.invoice = invoice.request;
    await this.store(purchase);
    this.watch(purchase);
    return publicView(purchase);
  }

  private watch(purchase: StoredPurchase): void {
    if (this.watches.has(purchase.id) || this.stopped) return;
    const stop = this.options.lnd.watch(purchase.id, (view) => {
      this.onInvoice(purchase.id, view).catch((error: unknown) => this.options.logger.error({ purchase: purchase.id, err: error }, 'market: an invoice update failed'));
    });
    this.watches.set(purchase.id, stop);
  }

  private unwatch(id: string): void {
    this.watches.get(id)?.();
    this.watches.delete(id);
  }

  private async onInvoice(id: string, view: HoldInvoiceView): Promise<void> {
    const purchase = this.purchases.get(id);
    if (purchase === undefined || this.stopped || FINAL.has(purchase.state)) return;
    if (view.state === 'held') {
      await this.begin(purchase);
    } else if (view.state === 'settled' || view.state === 'canceled') {
      // The transaction ended (its outcome closes the purchase) or never began: settled only ever
      // follows a commit; cancelled is LND's own (expiry) or an abort.
      if (this.running.has(id) || this.coordinator.outcome(id) !== undefined) return;
      await this.finish(purchase, view.state === 'settled' ? 'completed' : purchase.state === 'awaiting-payment' ? 'expired' : 'refunded', view.state === 'canceled' ? 'the invoice was cancelled' : undefined);
    }
  }

  /** Starts the purchase's transaction, or attaches to the one the coordinator has. */
  private async begin(purchase: StoredPurchase): Promise<void> {
    if (this.running.has(purchase.id) || this.cancelling.has(purchase.id)) return;
    const live = this.coordinator.outcome(purchase.id);
    if (live !== undefined) {
      this.attach(purchase.id, live);
      return;
    }
    // One transaction at a time per buyer and listing, so a renewal extends the grant before it:
    // the next one begins when this one ends (its HTLC stays held meanwhile).
    if (purchase.kind === 'data' && [...this.running].some((id) => this.sameGrant(this.purchases.get(id), purchase))) return;
    this.running.add(purchase.id);
    const nowMs = this.options.clock.nowMs();
    purchase.state = 'held';
    purchase.heldMs ??= nowMs;
    const specs = [{ kind: LIGHTNING_PARTICIPANT, args: encodeHoldArgs({ paymentHash: fromHex(purchase.id)!, preimage: fromHex(purchase.preimage)!, sats: purchase.amountSats }) }];
    if (purchase.kind === 'data') {
      purchase.untilMs = this.accessEnd(purchase, nowMs);
      specs.push({ kind: GRANT_PARTICIPANT, args: encodeGrantArgs({ buyerHex: purchase.buyer, listing: purchase.listing!, prefix: purchase.prefix!, untilMs: purchase.untilMs, purchase: fromHex(purchase.id)! }) });
    } else {
      specs.push({ kind: KLX_PARTICIPANT, args: encodeKlxArgs({ base: klxBase(purchase.id), from: toHex(this.options.treasury!.publicKey), to: purchase.buyer, amount: purchase.klx! }) });
    }
    try {
      // Not forced: the initiation record is what recovery needs; a purchase found still
      // awaiting payment after a crash is begun again when its held HTLC is seen.
      await this.store(purchase, false);
      const handle = this.coordinator.begin({ id: purchase.id, participants: specs });
      this.attach(purchase.id, handle.outcome);
    } catch (error) {
      this.running.delete(purchase.id);
      if (isKalimaError(error, 'KALIMA_ERR_BRIDGE_DUPLICATE_TX')) {
        const again = this.coordinator.outcome(purchase.id);
        if (again !== undefined) this.attach(purchase.id, again);
        return;
      }
      throw error;
    }
  }

  private sameGrant(other: StoredPurchase | undefined, purchase: StoredPurchase): boolean {
    return other !== undefined && other.id !== purchase.id && other.kind === 'data' && other.buyer === purchase.buyer && other.listing === purchase.listing;
  }

  /** Begins the purchases of the same buyer and listing that waited for `ended` (their HTLCs held). */
  private async beginWaiting(ended: StoredPurchase): Promise<void> {
    for (const purchase of this.purchases.values()) {
      if (FINAL.has(purchase.state) || this.running.has(purchase.id) || !this.sameGrant(purchase, ended)) continue;
      if ((await this.options.lnd.invoice(purchase.id))?.state === 'held') await this.begin(purchase);
    }
  }

  /** Access runs for the period from now, or from the end of the buyer's grant of this listing that is still running. */
  private accessEnd(purchase: StoredPurchase, nowMs: number): number {
    const entry = this.options.chain.entry(GRANTS_ADDRESS, grantKey(purchase.buyer, purchase.listing!));
    let from = nowMs;
    if (entry !== undefined) {
      try {
        const grant = decodeGrant(entry.value);
        // A grant of the listing's prefix; one the listing sold before it changed extends nothing.
        if (grant.prefix === purchase.prefix) from = Math.max(nowMs, grant.untilMs);
      } catch {
        // An unreadable grant extends nothing.
      }
    }
    // Renewals extend a running grant, up to the longest TTL a grant can be written with.
    return Math.min(from + purchase.periodSeconds! * 1000, nowMs + PERIOD_SECONDS_MAX * 1000);
  }

  private attach(id: string, outcome: Promise<TxOutcome>): void {
    this.running.add(id);
    outcome.then(
      async (result) => {
        this.running.delete(id);
        const purchase = this.purchases.get(id);
        if (purchase === undefined || this.stopped) return;
        if (result.outcome === 'aborted') {
          await this.finish(purchase, 'refunded', result.reason);
        } else {
          // Committed: settled, or compensated (the chain refused its step after the decision, and
          // the HTLC was cancelled). What LND holds says which; if it does not answer, the sweep will.
          const invoice = await this.options.lnd.invoice(id).catch(() => undefined);
          const delivery = this.gate.settled(id);
          if (invoice?.state === 'settled') await this.finish(purchase, 'completed');
          else if (invoice?.state === 'canceled') await this.finish(purchase, 'refunded', delivery?.outcome === 'refused' ? delivery.reason : 'the HTLC was cancelled before it could be settled');
        }
        if (purchase.kind === 'data') await this.beginWaiting(purchase);
      },
      () => {
        // The coordinator stopped (a crash or a close): the next open recovers the transaction.
        this.running.delete(id);
      },
    ).catch((error: unknown) => this.options.logger.error({ purchase: id, err: error }, 'market: closing a purchase failed'));
  }

  private async finish(purchase: StoredPurchase, state: PurchaseState, reason?: string): Promise<void> {
    if (FINAL.has(purchase.state)) return;
    purchase.state = state;
    purchase.doneMs = this.options.clock.nowMs();
    if (reason !== undefined) purchase.reason = reason;
    await this.store(purchase);
    this.unwatch(purchase.id);
    this.options.logger.info({ purchase: purchase.id, kind: purchase.kind, state, reason }, 'market: purchase closed');
  }

  private async store(purchase: StoredPurchase, sync = true): Promise<void> {
    this.throwIfStopped();
    await this.options.kv.batch([{ type: 'put', key: purchaseKey(purchase.id), value: new TextEncoder().encode(JSON.stringify(purchase)) }], { sync });
    this.purchases.set(purchase.id, purchase);
    const view = publicView(purchase);
    for (const listener of this.listeners) listener(view);
  }

  private scheduleSweep(): void {
    if (this.stopped) return;
    this.sweepTimer = this.options.scheduler.setTimeout(() => {
      this.sweep().catch((error: unknown) => this.options.logger.warn({ err: error }, 'market: the sweep failed')).finally(() => this.scheduleSweep());
    }, this.settings.sweepIntervalMs);
  }

  /**
   * Cancels unpaid invoices that expired, and HTLCs held with no live transaction once they reach
   * their decision height; starts the transaction of a held invoice whose update was missed.
   */
  async sweep(): Promise<void> {
    const { lnd } = this.options;
    const open = [...this.purchases.values()].filter((purchase) => !FINAL.has(purchase.state) && !this.running.has(purchase.id) && this.coordinator.outcome(purchase.id) === undefined);
    if (open.length === 0) return;
    const height = await lnd.blockHeight();
    for (const purchase of open) {
      if (this.stopped) return;
      try {
        await this.sweepOne(purchase, height);
      } catch (error) {
        this.options.logger.warn({ purchase: purchase.id, err: error }, 'market: the sweep of a purchase failed; the next sweep tries again');
      }
    }
  }

  private async sweepOne(purchase: StoredPurchase, height: number): Promise<void> {
    const { lnd, clock } = this.options;
    const view = await lnd.invoice(purchase.id);
    // The invoice was read: the purchase may have begun meanwhile.
    if (this.running.has(purchase.id) || this.coordinator.outcome(purchase.id) !== undefined || FINAL.has(purchase.state)) return;
    if (view === undefined) {
      // Never made (a crash before LND took it), or an LND that lost its invoices: nothing can be paid.
      await this.finish(purchase, purchase.state === 'held' ? 'refunded' : 'expired', 'LND does not know the invoice');
      return;
    }
    const expired = view.state === 'open' && clock.nowMs() >= purchase.expiresAtMs;
    const tooLate = view.state === 'held' && view.expiryHeight !== undefined && height > decisionHeight(view.expiryHeight, this.settings.marginBlocks, this.settings.lndHoldExpiryDelta);
    if (expired || tooLate) {
      // Reserved before the call: a payment that arrives meanwhile does not begin a transaction.
      this.cancelling.add(purchase.id);
      try {
        await lnd.cancel(purchase.id);
        await this.finish(purchase, expired ? 'expired' : 'refunded', expired ? 'not paid in time' : 'held too close to the HTLC expiry to decide');
      } finally {
        this.cancelling.delete(purchase.id);
      }
    } else if (view.state === 'held') {
      await this.begin(purchase);
    } else if (view.state !== 'open') {
      await this.onInvoice(purchase.id, view);
    }
  }

  private throwIfStopped(): void {
    if (this.stopped) throw kalimaError('KALIMA_ERR_NODE_STOPPING', { service: 'market' });
  }

  /** Stops dead, as a killed process would (tests): the coordinator too. */
  crash(): void {
    this.halt();
    this.coordinator.crash();
  }

  async close(): Promise<void> {
    this.halt();
    await this.coordinator.close();
  }

  private halt(): void {
    this.stopped = true;
    this.options.scheduler.clearTimeout(this.sweepTimer);
    for (const stop of this.watches.values()) stop();
    this.watches.clear();
  }

  /** Resolves once no transaction is live (tests, bench). */
  idle(): Promise<void> {
    return this.coordinator.idle();
  }
}

function publicView(purchase: StoredPurchase): Purchase {
  const { preimage: _secret, ...rest } = purchase;
  return { ...rest };
}

/** The id base of a KLX purchase's transfers and escrow account: 160 bits of its payment hash. */
export function klxBase(purchaseId: string): string {
  return purchaseId.slice(0, 40);
}

