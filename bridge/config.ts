// The `lightning` and `market` sections of a node's config file. A node with both sells the
// listings its seller key wrote (and KLX, with a treasury key and a price), through its LND.
//
//   "lightning": { "socket": "localhost:10009",
//                  "certFile": "~/.lnd/tls.cert"  |  "cert": "<base64 of the PEM>",
//                  "macaroonFile": "~/.lnd/data/chain/bitcoin/regtest/admin.macaroon"  |  "macaroon": "<hex>" },
//   "market":    { "sellerKey": "keys/seller.json", "treasuryKey": "keys/treasury.json", "satsPerKlx": 10,
//                  "stateDir": "market", "invoiceExpirySeconds": 600, "cltvDelta": 80, "marginBlocks": 6, "sweepSeconds": 5,
//                  "lndHoldExpiryDelta": 12 }   (LND's --invoices.holdexpirydelta, if its operator changed it)
//
// Paths are relative to the config file. The files are read when the node starts.
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { kalimaError } from '../src/errors.ts';
import type { LndConnection } from '../chains/lightning/lnd.ts';
import { DEFAULT_MARKET_SETTINGS, type MarketSettings } from './market.ts';

export interface LightningConfig {
  socket: string;
  cert: { file: string } | { value: string };
  macaroon: { file: string } | { value: string };
}

export interface MarketConfig {
  lightning: LightningConfig;
  sellerKeyFile: string;
  treasuryKeyFile: string | undefined;
  stateDir: string;
  settings: MarketSettings;
}

const LIGHTNING_KEYS = ['socket', 'cert', 'certFile', 'macaroon', 'macaroonFile'] as const;
const MARKET_KEYS = ['sellerKey', 'treasuryKey', 'satsPerKlx', 'stateDir', 'invoiceExpirySeconds', 'cltvDelta', 'marginBlocks', 'sweepSeconds', 'lndHoldExpiryDelta'] as const;

function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? `${homedir()}${path.slice(1)}` : path;
}

export function parseMarketConfig(file: string, base: string, lightning: unknown, market: unknown): MarketConfig | undefined {
  const invalid = (reason: string): never => {
    throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { file, reason });
  };
  if (market === undefined) {
    if (lightning !== undefined) invalid('a lightning section serves the market section: add one (sellerKey at least), or leave both out');
    return undefined;
  }
  if (lightning === undefined) invalid('a market section needs a lightning section (socket, cert or certFile, macaroon or macaroonFile)');
  if (typeof lightning !== 'object' || lightning === null) invalid('lightning must be an object');
  if (typeof market !== 'object' || market === null) invalid('market must be an object');
  const unknown = (section: string, value: object, known: readonly string[]): void => {
    const extra = Object.keys(value).find((key) => !known.includes(key));
    if (extra !== undefined) invalid(`${section}.${extra} is not a setting (known: ${known.join(', ')})`);
  };
  const l = lightning as Record<string, unknown>;
  const m = market as Record<string, unknown>;
  unknown('lightning', l, LIGHTNING_KEYS);
  unknown('market', m, MARKET_KEYS);
  if (typeof l.socket !== 'string' || !/^[^\s:]+:\d{1,5}$/.test(l.socket)) invalid('lightning.socket must be host:port of LND\'s gRPC (10009 by default)');
  const path = (value: unknown, field: string): string => {
    if (typeof value !== 'string' || value.length === 0) invalid(`${field} must be a path`);
    return resolve(base, expandHome(value as string));
  };
  const oneOf = (valueField: 'cert' | 'macaroon', fileField: 'certFile' | 'macaroonFile', pattern: RegExp, what: string): { file: string } | { value: string } => {
    if ((l[valueField] === undefined) === (l[fileField] === undefined)) invalid(`give lightning.${valueField} or lightning.${fileField}, one of them`);
    if (l[fileField] !== undefined) return { file: path(l[fileField], `lightning.${fileField}`) };
    if (typeof l[valueField] !== 'string' || !pattern.test(l[valueField] as string)) invalid(`lightning.${valueField} must be ${what}`);
    return { value: l[valueField] as string };
  };
  const cert = oneOf('cert', 'certFile', /^[A-Za-z0-9+/=]+$/, 'LND\'s tls.cert, base64');
  const macaroon = oneOf('macaroon', 'macaroonFile', /^(?:[0-9a-f]{2})+$/, 'a macaroon in hex');
  const whole = (value: unknown, field: string, min: number, max: number, fallback: number): number => {
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) invalid(`market.${field} must be a whole number from ${min} to ${max}`);
    return value as number;
  };
  if (m.treasuryKey !== undefined && m.satsPerKlx === undefined) invalid('market.treasuryKey sells KLX: give its price, market.satsPerKlx');
  if (m.satsPerKlx !== undefined && m.treasuryKey === undefined) invalid('market.satsPerKlx needs market.treasuryKey, the key of the KLX treasury');
  const settings: MarketSettings = {
    invoiceExpirySeconds: whole(m.invoiceExpirySeconds, 'invoiceExpirySeconds', 10, 86_400, DEFAULT_MARKET_SETTINGS.invoiceExpirySeconds),
    cltvDelta: whole(m.cltvDelta, 'cltvDelta', 18, 2_016, DEFAULT_MARKET_SETTINGS.cltvDelta),
    marginBlocks: whole(m.marginBlocks, 'marginBlocks', 1, 1_000, DEFAULT_MARKET_SETTINGS.marginBlocks),
    lndHoldExpiryDelta: whole(m.lndHoldExpiryDelta, 'lndHoldExpiryDelta', 1, 1_000, DEFAULT_MARKET_SETTINGS.lndHoldExpiryDelta),
    sweepIntervalMs: whole(m.sweepSeconds, 'sweepSeconds', 1, 3_600, DEFAULT_MARKET_SETTINGS.sweepIntervalMs / 1000) * 1000,
    ...(m.satsPerKlx === undefined ? {} : { satsPerKlx: whole(m.satsPerKlx, 'satsPerKlx', 1, 100_000_000, 1) }),
  };
  // The decision must come before LND's own cancel (lndHoldExpiryDelta blocks before the HTLC expires), with the margin.
  const floor = settings.lndHoldExpiryDelta + settings.marginBlocks;
  if (settings.cltvDelta <= floor) invalid(`market.cltvDelta must be more than market.lndHoldExpiryDelta + market.marginBlocks (${floor})`);
  return {
    lightning: { socket: l.socket as string, cert, macaroon },
    sellerKeyFile: path(m.sellerKey ?? 'keys/seller.json', 'market.sellerKey'),
    treasuryKeyFile: m.treasuryKey === undefined ? undefined : path(m.treasuryKey, 'market.treasuryKey'),
    stateDir: path(m.stateDir ?? 'market', 'market.stateDir'),
    settings,
  };
}

/** The connection in the forms the `lightning` package takes, reading the files named. */
export async function lndConnection(config: LightningConfig): Promise<LndConnection> {
  const read = async (file: string, what: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (error) {
      throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { file, reason: `cannot read LND's ${what}: ${(error as Error).message}` });
    }
  };
  const cert = 'value' in config.cert ? config.cert.value : (await read(config.cert.file, 'TLS certificate')).toString('base64');
  const macaroon = 'value' in config.macaroon ? config.macaroon.value : (await read(config.macaroon.file, 'macaroon')).toString('hex');
  return { socket: config.socket, cert, macaroon };
}
