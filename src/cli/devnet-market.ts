// The devnet's marketplace: m1 sells through the seller's LND stand-in; the demo sensor lists its
// readings at /sensors/plant1; a KLX treasury holds the supply; and a demo buyer, with a wallet on
// the buyer's LND stand-in, buys the listing and some KLX while you watch: the listing, the
// invoice, the payment, and the data arriving at the buyer.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isKalimaError } from '../errors.ts';
import { toHex } from '../ledger/hash.ts';
import { KalimaClient, type PurchaseView, generateDeviceKey, loadDeviceKey, saveDeviceKey } from '../sdk/client.ts';
import { fileExists } from '../node/config.ts';
import { RETRYABLE_CODES, retrying } from '../sdk/retry.ts';
import { LndClient } from '../../chains/lightning/lnd.ts';

export interface DevnetLnd {
  alias: string;
  socket: string;
  certFile: string;
  macaroonFile: string;
  /** The node's identity key, hex. */
  publicKey: string;
}

export interface DevnetLightning {
  seller: DevnetLnd;
  buyer: DevnetLnd;
  /** Each side's spendable sats. */
  balances(): { seller: number; buyer: number };
  stop(): Promise<void>;
}

export const DEVNET_LISTING = 'plant1';
const DEVNET_PREFIX = '/sensors/plant1';
const DEVNET_PRICE_SATS = 2_000;
const DEVNET_PERIOD_SECONDS = 3_600;
const DEVNET_KLX_SUPPLY = 21_000_000;
const DEVNET_SATS_PER_KLX = 10;
const SETUP_RETRY = { deadlineMs: 30_000, pauseMs: 200, codes: RETRYABLE_CODES.filter((code) => code !== 'KALIMA_ERR_API_OVERLOADED') };

/** m1's lightning and market sections (paths relative to m1's config file). */
export function devnetMarketConfig(lightning: DevnetLightning): { lightning: Record<string, unknown>; market: Record<string, unknown> } {
  return {
    lightning: { socket: lightning.seller.socket, certFile: lightning.seller.certFile, macaroonFile: lightning.seller.macaroonFile },
    market: { sellerKey: '../keys/demo-device.json', treasuryKey: '../keys/treasury.json', satsPerKlx: DEVNET_SATS_PER_KLX, stateDir: 'market' },
  };
}

/** The treasury's and the buyer's keys, made once with the devnet (before m1 starts: its config names the treasury's). */
export async function devnetMarketKeys(directory: string): Promise<void> {
  for (const name of ['treasury', 'buyer']) {
    const file = join(directory, 'keys', `${name}.json`);
    if (!(await fileExists(file))) await saveDeviceKey(file, generateDeviceKey());
  }
}

async function wallet(lnd: DevnetLnd): Promise<LndClient> {
  return new LndClient({ socket: lnd.socket, cert: (await readFile(lnd.certFile)).toString('base64'), macaroon: (await readFile(lnd.macaroonFile)).toString('hex') });
}

async function until(read: () => Promise<PurchaseView>, timeoutMs: number): Promise<PurchaseView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const purchase = await read();
    if (['completed', 'refunded', 'expired'].includes(purchase.state) || Date.now() > deadline) return purchase;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The admin's setup (devices, the KLX issue, the listing), then the sample purchase. */
export async function runDevnetMarket(options: { directory: string; urls: string[]; lightning: DevnetLightning; out: NodeJS.WriteStream; stopping: () => boolean }): Promise<void> {
  const { directory, urls, lightning, out } = options;
  const keys = join(directory, 'keys');
  const admin = new KalimaClient({ url: urls[0]!, key: await loadDeviceKey(join(keys, 'admin.json')) });
  const sellerKey = await loadDeviceKey(join(keys, 'demo-device.json'));
  const treasuryKey = await loadDeviceKey(join(keys, 'treasury.json'));
  const buyerKey = await loadDeviceKey(join(keys, 'buyer.json'));
  const registered = async (id: string): Promise<boolean> => (await retrying(() => admin.get('/kalima/devices', id), SETUP_RETRY)) !== undefined;
  if (!(await registered(toHex(treasuryKey.publicKey)))) await retrying(() => admin.registerDevice(toHex(treasuryKey.publicKey), { name: 'KLX treasury', pub: [], sub: [] }), SETUP_RETRY);
  if (!(await registered(toHex(buyerKey.publicKey)))) await retrying(() => admin.registerDevice(toHex(buyerKey.publicKey), { name: 'demo buyer', pub: [], sub: ['/alarms'] }), SETUP_RETRY);
  try {
    await admin.klxSupply();
  } catch (error) {
    if (!isKalimaError(error, 'KALIMA_ERR_KLX_NOT_ISSUED')) throw error;
    await retrying(() => admin.issueKlx(toHex(treasuryKey.publicKey), DEVNET_KLX_SUPPLY), SETUP_RETRY);
  }
  const seller = new KalimaClient({ url: urls[0]!, key: sellerKey });
  const listed = await seller.listing(DEVNET_LISTING).catch(() => undefined);
  if (listed?.sellerNode !== lightning.seller.publicKey) {
    await retrying(() => seller.list(DEVNET_LISTING, { title: 'Plant 1: temperature and humidity', prefix: DEVNET_PREFIX, priceSats: DEVNET_PRICE_SATS, periodSeconds: DEVNET_PERIOD_SECONDS, sellerNode: lightning.seller.publicKey }), SETUP_RETRY);
  }

  // The sample purchase, as a buyer makes it: the listing, the invoice, the payment, the data.
  const buyer = new KalimaClient({ url: urls[0]!, key: buyerKey });
  const listing = await buyer.listing(DEVNET_LISTING);
  out.write(`\nmarket: listing ${listing.id}: ${listing.prefix}, ${listing.priceSats} sats for ${listing.periodSeconds} s, paid to ${lightning.seller.alias} (${listing.sellerNode.slice(0, 16)}…)\n`);
  const purchase = await buyer.buy(listing.id);
  out.write(`market: the buyer asks to buy it; m1 answers a hold invoice: ${purchase.invoice.slice(0, 48)}…\n`);
  const buyerWallet = await wallet(lightning.buyer);
  try {
    const before = lightning.balances();
    await buyerWallet.pay(purchase.invoice);
    const done = await until(() => buyer.purchase(purchase.id), 30_000);
    const after = lightning.balances();
    out.write(`market: the buyer's LND paid it; the coordinator committed: ${done.state}, SUB access until ${done.untilMs === undefined ? '-' : new Date(done.untilMs).toISOString()}; seller +${after.seller - before.seller} sats\n`);
    if (done.state === 'completed') {
      // The data arriving at the buyer, pushed by another master.
      const reader = new KalimaClient({ url: urls[2] ?? urls[0]!, key: buyerKey });
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), 10_000);
      try {
        for await (const message of reader.subscribe(DEVNET_PREFIX, { signal: abort.signal })) {
          out.write(`market: data arriving at the buyer from m3: ${message.address} ${message.key} = ${new TextDecoder().decode(message.body)}\n`);
          break;
        }
      } catch (error) {
        if (!abort.signal.aborted) throw error;
      } finally {
        clearTimeout(timer);
        abort.abort();
      }
    }
    const klx = await buyer.buyKlx(100);
    await buyerWallet.pay(klx.invoice);
    const klxDone = await until(() => buyer.purchase(klx.id), 30_000);
    out.write(`market: the buyer bought 100 KLX for ${klx.amountSats} sats (${klxDone.state}); its balance is ${await buyer.klxBalance()} KLX\n`);
  } finally {
    buyerWallet.close();
  }
}
