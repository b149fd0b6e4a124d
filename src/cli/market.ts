// `kalima market …`, `kalima klx …` and `kalima lightning pay`: the marketplace from the command line.
import { readFile } from 'node:fs/promises';
import { kalimaError } from '../errors.ts';
import type { KalimaClient, PurchaseView } from '../sdk/client.ts';
import type { ListingView } from '../access/market.ts';
import { LndClient } from '../../chains/lightning/lnd.ts';

export class MarketUsageError extends Error {}

function whole(value: string | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < 1) throw new MarketUsageError(`${what} must be a whole number, at least 1`);
  return parsed;
}

export function formatListings(listings: Array<ListingView & { ours?: boolean }>): string[] {
  if (listings.length === 0) return ['no listings on this chain'];
  return listings.map((listing) => `${listing.id}  ${listing.prefix}  ${listing.priceSats} sats for ${listing.periodSeconds} s  "${listing.title}"  seller node ${listing.sellerNode.slice(0, 16)}…${listing.ours === true ? '  (sold by this node)' : ''}`);
}

export function formatPurchase(purchase: PurchaseView): string[] {
  const lines = [`purchase ${purchase.id}: ${purchase.state}${purchase.reason === undefined ? '' : ` (${purchase.reason})`}`];
  lines.push(purchase.kind === 'data' ? `  ${purchase.listing}: ${purchase.prefix} for ${purchase.periodSeconds} s` : `  ${purchase.klx} KLX`);
  lines.push(`  ${purchase.amountSats} sats; pay before ${new Date(purchase.expiresAtMs).toISOString()}`);
  if (purchase.untilMs !== undefined) lines.push(`  access until ${new Date(purchase.untilMs).toISOString()}`);
  if (purchase.state === 'awaiting-payment') lines.push(`  invoice ${purchase.invoice}`);
  return lines;
}

export async function marketCommand(client: KalimaClient, positionals: string[], values: { amount?: string; title?: string; json?: boolean }, write: (line: string) => void): Promise<void> {
  const [action, ...args] = positionals;
  const out = (value: unknown, lines: string[]): void => {
    if (values.json === true) write(JSON.stringify(value, null, 2));
    else for (const line of lines) write(line);
  };
  switch (action) {
    case 'list': {
      const listings = await client.listings();
      out(listings, formatListings(listings));
      return;
    }
    case 'buy': {
      if (args[0] === undefined) throw new MarketUsageError('market buy needs the LISTING id');
      const purchase = await client.buy(args[0], { amountSats: whole(values.amount, '--amount') });
      out(purchase, formatPurchase(purchase));
      return;
    }
    case 'status': {
      if (args[0] === undefined) throw new MarketUsageError('market status needs the PURCHASE id (its payment hash)');
      const purchase = await client.purchase(args[0]);
      out(purchase, formatPurchase(purchase));
      return;
    }
    case 'sell': {
      const [id, prefix, price, period, sellerNode] = args;
      if (sellerNode === undefined) throw new MarketUsageError('market sell needs ID PREFIX PRICE_SATS PERIOD_SECONDS SELLER_NODE_KEY');
      const receipt = await client.list(id!, { title: values.title ?? id!, prefix: prefix!, priceSats: whole(price, 'PRICE_SATS')!, periodSeconds: whole(period, 'PERIOD_SECONDS')!, sellerNode });
      out(receipt, [`listed ${id} at height ${receipt.height}`]);
      return;
    }
    default:
      throw new MarketUsageError('market needs list, buy LISTING, status PURCHASE or sell ID PREFIX PRICE PERIOD NODE');
  }
}

export async function klxCommand(client: KalimaClient, positionals: string[], values: { amount?: string; json?: boolean }, write: (line: string) => void): Promise<void> {
  const [action, ...args] = positionals;
  switch (action) {
    case 'balance': {
      const balance = await client.klxBalance(args[0]);
      write(values.json === true ? JSON.stringify({ balance }) : `${balance} KLX`);
      return;
    }
    case 'supply': {
      const supply = await client.klxSupply();
      write(values.json === true ? JSON.stringify(supply) : `${supply.supply} KLX issued; the treasury ${supply.treasury.slice(0, 16)}… holds ${supply.treasuryBalance}`);
      return;
    }
    case 'buy': {
      const klx = whole(args[0], 'the KLX amount');
      if (klx === undefined) throw new MarketUsageError('klx buy needs the number of KLX units');
      const purchase = await client.buyKlx(klx, { amountSats: whole(values.amount, '--amount') });
      if (values.json === true) write(JSON.stringify(purchase, null, 2));
      else for (const line of formatPurchase(purchase)) write(line);
      return;
    }
    case 'send': {
      const [id, to, amount] = args;
      if (amount === undefined) throw new MarketUsageError('klx send needs TRANSFER_ID TO AMOUNT');
      const receipt = await client.transferKlx(id!, to!, whole(amount, 'AMOUNT')!);
      write(values.json === true ? JSON.stringify(receipt) : `sent at height ${receipt.height}`);
      return;
    }
    default:
      throw new MarketUsageError('klx needs balance [ACCOUNT], supply, buy N or send ID TO AMOUNT');
  }
}

/** Pays a BOLT 11 invoice with the caller's own LND (a buyer's wallet). */
export async function lightningPay(positionals: string[], values: { 'lnd-socket'?: string; 'lnd-cert'?: string; 'lnd-macaroon'?: string; json?: boolean }, write: (line: string) => void): Promise<void> {
  const [action, request] = positionals;
  if (action !== 'pay' || request === undefined) throw new MarketUsageError('lightning needs pay INVOICE');
  if (values['lnd-socket'] === undefined || values['lnd-cert'] === undefined || values['lnd-macaroon'] === undefined) {
    throw new MarketUsageError('lightning pay needs --lnd-socket HOST:PORT --lnd-cert TLS_CERT_FILE --lnd-macaroon MACAROON_FILE (your own LND)');
  }
  const read = async (file: string): Promise<Buffer> => readFile(file).catch((error: Error) => {
    throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { file, reason: error.message });
  });
  const lnd = new LndClient({ socket: values['lnd-socket'], cert: (await read(values['lnd-cert'])).toString('base64'), macaroon: (await read(values['lnd-macaroon'])).toString('hex') });
  try {
    const decoded = await lnd.decodeInvoice(request);
    write(`paying ${decoded.sats} sats to ${decoded.destination.slice(0, 16)}…: ${decoded.description}`);
    const paid = await lnd.pay(request);
    write(values.json === true ? JSON.stringify(paid, (_, value) => (typeof value === 'bigint' ? Number(value) : value)) : `paid: preimage ${paid.preimage}`);
  } finally {
    lnd.close();
  }
}
