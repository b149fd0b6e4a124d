// The seller's LND as the marketplace needs it (bridge/market.ts SellerLnd): hold invoices made,
// read, settled, cancelled and watched through the production adapter.
import { isKalimaError, kalimaError } from '../../src/errors.ts';
import type { HoldInvoiceView } from '../../bridge/participants/lightning-hold.ts';
import type { SellerLnd } from '../../bridge/market.ts';
import type { InvoiceStatus } from './invoice.ts';
import { LndClient, type LndClientOptions, type LndConnection } from './lnd.ts';

function view(status: InvoiceStatus): HoldInvoiceView {
  const heights = status.heldHtlcExpiryHeights;
  return {
    state: status.state,
    receivedSats: Number(status.receivedSats),
    ...(status.state === 'held' && heights.length > 0 ? { expiryHeight: Math.min(...heights) } : {}),
  };
}

export class LndSeller implements SellerLnd {
  readonly client: LndClient;
  private identity: string | undefined;

  constructor(connection: LndConnection, options: LndClientOptions = {}) {
    this.client = new LndClient(connection, options);
  }

  async publicKey(): Promise<string> {
    this.identity ??= (await this.client.walletInfo()).publicKey;
    return this.identity;
  }

  /**
   * LND's chain height, refused while LND is not synced to the chain (after a restart, while its
   * backend catches up): a stale height would let a decision through that the HTLC's expiry forbids.
   */
  async blockHeight(): Promise<number> {
    const info = await this.client.walletInfo();
    if (!info.syncedToChain) throw kalimaError('KALIMA_ERR_LIGHTNING_NOT_SYNCED', { blockHeight: info.blockHeight });
    return info.blockHeight;
  }

  async createHoldInvoice(request: { paymentHash: string; sats: number; description: string; expirySeconds: number; cltvDelta: number }): Promise<{ request: string }> {
    const created = await this.client.createHoldInvoice({ id: request.paymentHash, sats: request.sats, description: request.description, expirySeconds: request.expirySeconds, cltvDelta: request.cltvDelta });
    return { request: created.request };
  }

  async invoice(paymentHash: string): Promise<HoldInvoiceView | undefined> {
    try {
      return view(await this.client.getInvoice(paymentHash));
    } catch (error) {
      if (isKalimaError(error, 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND')) return undefined;
      throw error;
    }
  }

  async settle(preimage: string): Promise<void> {
    await this.client.settleHoldInvoice(preimage);
  }

  async cancel(paymentHash: string): Promise<void> {
    try {
      await this.client.cancelHoldInvoice(paymentHash);
    } catch (error) {
      if (isKalimaError(error, 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND')) return;
      throw error;
    }
  }

  watch(paymentHash: string, listener: (view: HoldInvoiceView) => void): () => void {
    const watch = this.client.watchInvoice(paymentHash, (status) => listener(view(status)));
    return () => watch.close();
  }

  close(): void {
    this.client.close();
  }
}
