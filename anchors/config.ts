// The `bitcoin` and `anchor` sections of a node's config file. A node with a `bitcoin` section
// anchors the chains it serves; without one it does not (GET /anchors says so).
//
//   "bitcoin": { "network": "bcoin-regtest", "rpcUrl": "http://127.0.0.1:48332", "rpcTimeoutSeconds": 15,
//                "rpcUser": "kalima", "rpcPassword": "…"  |  "rpcCookieFile": "~/.bitcoin/regtest/.cookie",
//                "walletFile": "keys/anchor-wallet.json", "stateDir": "anchors", "addressKind": "p2wpkh", "birthHeight": 0 },
//   "anchor":  { "intervalSeconds": 600, "minBlocks": 1, "confirmations": 6, "feeTargetBlocks": 6,
//                "fallbackFeeRate": 2000, "maxFeeRate": 200000, "rbf": true, "pollSeconds": 15 }
//
// Fee rates are in sat per 1000 vbytes (2000 = 2 sat/vB). Paths are relative to the config file.
import { resolve } from 'node:path';
import { kalimaError } from '../src/errors.ts';
import { BITCOIN_NETWORK_NAMES, type BitcoinNetworkName, isBitcoinNetworkName } from '../chains/bitcoin/network.ts';
import { type AnchorPolicy, DEFAULT_POLICY } from './engine.ts';


export interface BitcoinConfig {
  network: BitcoinNetworkName;
  rpcUrl: string;
  auth: { user: string; password: string } | { cookieFile: string };
  /** Bound on one RPC attempt (three attempts per call, with backoff between them). */
  rpcTimeoutMs: number;
  walletFile: string;
  /** The anchor engine's own LevelDB (its wallet outputs and commitments); beside the chain's data, not in it. */
  stateDir: string;
  addressKind: 'p2wpkh' | 'p2tr';
  /** Where the wallet's scan starts; undefined: the Bitcoin tip when the wallet is first opened. */
  birthHeight: number | undefined;
}

export interface AnchorConfig {
  bitcoin: BitcoinConfig;
  policy: AnchorPolicy;
  pollMs: number;
}

interface RawBitcoin {
  network?: unknown; rpcUrl?: unknown; rpcTimeoutSeconds?: unknown; rpcUser?: unknown; rpcPassword?: unknown; rpcCookieFile?: unknown; walletFile?: unknown; stateDir?: unknown; addressKind?: unknown; birthHeight?: unknown;
}

interface RawAnchor {
  intervalSeconds?: unknown; minBlocks?: unknown; confirmations?: unknown; feeTargetBlocks?: unknown; fallbackFeeRate?: unknown; maxFeeRate?: unknown; rbf?: unknown; pollSeconds?: unknown;
}

const BITCOIN_KEYS = ['network', 'rpcUrl', 'rpcUser', 'rpcPassword', 'rpcCookieFile', 'rpcTimeoutSeconds', 'walletFile', 'stateDir', 'addressKind', 'birthHeight'] as const;
const ANCHOR_KEYS = ['intervalSeconds', 'minBlocks', 'confirmations', 'feeTargetBlocks', 'fallbackFeeRate', 'maxFeeRate', 'rbf', 'pollSeconds'] as const;

export function parseAnchorConfig(file: string, base: string, bitcoin: unknown, anchor: unknown): AnchorConfig | undefined {
  const invalid = (reason: string): never => {
    throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { file, reason });
  };
  if (bitcoin === undefined) {
    if (anchor !== undefined) invalid('an anchor section needs a bitcoin section (network, rpcUrl and credentials)');
    return undefined;
  }
  if (typeof bitcoin !== 'object' || bitcoin === null) invalid('bitcoin must be an object');
  const raw = bitcoin as RawBitcoin;
  const unknown = (section: string, value: object, known: readonly string[]): void => {
    const extra = Object.keys(value).find((key) => !known.includes(key));
    if (extra !== undefined) invalid(`${section}.${extra} is not a setting (known: ${known.join(', ')})`);
  };
  unknown('bitcoin', raw, BITCOIN_KEYS);
  if (!isBitcoinNetworkName(raw.network)) invalid(`bitcoin.network must be one of ${BITCOIN_NETWORK_NAMES.join(', ')}`);
  // The RPC client speaks plain HTTP, as bitcoind does; put a TLS tunnel in front for a remote node.
  if (typeof raw.rpcUrl !== 'string' || !/^http:\/\/[^\s]+$/.test(raw.rpcUrl)) invalid('bitcoin.rpcUrl must be an http:// URL (bitcoind serves RPC over plain HTTP; reach a remote node through a tunnel)');
  let auth: BitcoinConfig['auth'];
  if (raw.rpcCookieFile !== undefined) {
    if (typeof raw.rpcCookieFile !== 'string' || raw.rpcCookieFile.length === 0) invalid('bitcoin.rpcCookieFile must be a path');
    if (raw.rpcUser !== undefined || raw.rpcPassword !== undefined) invalid('give bitcoin.rpcCookieFile or bitcoin.rpcUser and rpcPassword, not both');
    auth = { cookieFile: resolve(base, raw.rpcCookieFile as string) };
  } else {
    if (typeof raw.rpcUser !== 'string' || typeof raw.rpcPassword !== 'string') invalid('bitcoin needs rpcUser and rpcPassword, or rpcCookieFile');
    auth = { user: raw.rpcUser as string, password: raw.rpcPassword as string };
  }
  if (raw.addressKind !== undefined && raw.addressKind !== 'p2wpkh' && raw.addressKind !== 'p2tr') invalid('bitcoin.addressKind must be p2wpkh or p2tr');
  if (raw.walletFile !== undefined && (typeof raw.walletFile !== 'string' || raw.walletFile.length === 0)) invalid('bitcoin.walletFile must be a path');
  if (raw.rpcTimeoutSeconds !== undefined && (typeof raw.rpcTimeoutSeconds !== 'number' || !(raw.rpcTimeoutSeconds >= 0.1 && raw.rpcTimeoutSeconds <= 600))) invalid('bitcoin.rpcTimeoutSeconds must be a number of seconds from 0.1 to 600');
  if (raw.stateDir !== undefined && (typeof raw.stateDir !== 'string' || raw.stateDir.length === 0)) invalid('bitcoin.stateDir must be a path');
  if (raw.birthHeight !== undefined && (!Number.isSafeInteger(raw.birthHeight) || (raw.birthHeight as number) < 0)) invalid('bitcoin.birthHeight must be a whole number');

  if (anchor !== undefined && (typeof anchor !== 'object' || anchor === null)) invalid('anchor must be an object');
  const a = (anchor ?? {}) as RawAnchor;
  unknown('anchor', a, ANCHOR_KEYS);
  const whole = (value: unknown, field: string, min: number, max: number, fallback: number): number => {
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) invalid(`anchor.${field} must be a whole number from ${min} to ${max}`);
    return value as number;
  };
  if (a.rbf !== undefined && typeof a.rbf !== 'boolean') invalid('anchor.rbf must be true or false');
  const minFeeRate = DEFAULT_POLICY.minFeeRate;
  const fallbackFeeRate = whole(a.fallbackFeeRate, 'fallbackFeeRate', minFeeRate, 100_000_000, DEFAULT_POLICY.fallbackFeeRate);
  const maxFeeRate = whole(a.maxFeeRate, 'maxFeeRate', minFeeRate, 100_000_000, Math.max(DEFAULT_POLICY.maxFeeRate, fallbackFeeRate));
  if (maxFeeRate < fallbackFeeRate) invalid('anchor.maxFeeRate must be at least anchor.fallbackFeeRate');
  const policy: AnchorPolicy = {
    ...DEFAULT_POLICY,
    intervalMs: whole(a.intervalSeconds, 'intervalSeconds', 1, 7 * 86_400, DEFAULT_POLICY.intervalMs / 1_000) * 1_000,
    minBlocks: whole(a.minBlocks, 'minBlocks', 1, 1_000_000, DEFAULT_POLICY.minBlocks),
    confirmations: whole(a.confirmations, 'confirmations', 1, 100, DEFAULT_POLICY.confirmations),
    feeTargetBlocks: whole(a.feeTargetBlocks, 'feeTargetBlocks', 1, 1_008, DEFAULT_POLICY.feeTargetBlocks),
    fallbackFeeRate, maxFeeRate,
    rbf: (a.rbf as boolean | undefined) ?? DEFAULT_POLICY.rbf,
  };
  if (policy.confirmations > policy.reorgWindow) invalid(`anchor.confirmations must be at most ${policy.reorgWindow}`);
  return {
    bitcoin: {
      network: raw.network as BitcoinNetworkName, rpcUrl: raw.rpcUrl as string, auth, rpcTimeoutMs: Math.round(((raw.rpcTimeoutSeconds as number | undefined) ?? 15) * 1_000),
      walletFile: resolve(base, (raw.walletFile as string | undefined) ?? 'keys/anchor-wallet.json'),
      stateDir: resolve(base, (raw.stateDir as string | undefined) ?? 'anchors'),
      addressKind: (raw.addressKind as BitcoinConfig['addressKind'] | undefined) ?? 'p2wpkh',
      birthHeight: raw.birthHeight as number | undefined,
    },
    policy,
    pollMs: whole(a.pollSeconds, 'pollSeconds', 1, 3_600, 15) * 1_000,
  };
}
