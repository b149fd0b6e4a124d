// A typed Bitcoin Core JSON-RPC client over node:http with one keep-alive agent. It speaks to
// bitcoind and to bcoin (`dialect: 'bcoin'`, which differs in a few arguments and error codes).
// Transport failures, HTTP 503 (Core's full work queue) and RPC_IN_WARMUP (-28) are retried with
// bounded exponential backoff and jitter; an RPC error is deterministic and never retried; a
// timed-out attempt is not retried either (it spent the caller's time budget; every method here is
// safe to call again).
import { Agent, request } from 'node:http';
import { readFile } from 'node:fs/promises';
import { Transaction, payments } from 'bitcoinjs-lib';
import { type KalimaError, isKalimaError, kalimaError } from '../../src/errors.ts';
import type { BitcoinNetwork } from './network.ts';
import { RPC_CODE, type RpcDialect, rpcError } from './rpc-errors.ts';
import { explainAbsenceFromMempool } from './rejection.ts';

export type { RpcDialect } from './rpc-errors.ts';

export type RpcAuth = { user: string; password: string } | { cookieFile: string };

export interface BitcoinRpcOptions {
  /** e.g. http://127.0.0.1:18443/ (a path such as /wallet/name is kept). */
  url: string;
  auth: RpcAuth;
  dialect?: RpcDialect;
  /** Bound on one attempt: connect, send, and read the whole answer. */
  timeoutMs?: number;
  /** Attempts per call, the first included, for transport failures and warm-up. */
  maxAttempts?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** How long sendRawTransaction polls the mempool for the transaction (bcoin adds it asynchronously). */
  mempoolAcceptanceWaitMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** Uniform in [0, 1), for the backoff jitter. */
  random?: () => number;
}

export interface BlockchainInfo {
  /** 'main', 'test', 'signet' or 'regtest' (bcoin says 'regtest' too). */
  chain: string;
  blocks: number;
  headers: number;
  bestBlockHashHex: string;
}

export interface NetworkInfo {
  subversion: string;
  relayFeeSatPerKvB: bigint;
}

export interface MempoolEntry {
  vsize: number;
  feeSat: bigint;
  /** Seconds since the epoch when the node took the transaction in. */
  timeSec: number;
  /** Unconfirmed parents (txids). */
  depends: string[];
}

export interface TxOut {
  valueSat: bigint;
  scriptHex: string;
  /** 0 for an output of a mempool transaction. */
  confirmations: number;
}

export interface RawTransaction {
  hex: string;
  confirmations: number;
  blockHashHex: string | undefined;
}

const DEFAULTS = {
  timeoutMs: 30_000,
  maxAttempts: 6,
  backoffBaseMs: 200,
  backoffMaxMs: 5_000,
  mempoolAcceptanceWaitMs: 2_000,
};

/** A raw block of 4 MB weight is at most 8 MB of hex; anything far larger is not a sane answer. */
const RESPONSE_BYTES_MAX = 64 * 1024 * 1024;
const HEX_HASH = /^[0-9a-f]{64}$/;
const HEADER_HEX = /^[0-9a-f]{160}$/;

type Attempt =
  | { kind: 'ok'; result: unknown }
  | { kind: 'rpc'; rpcCode: number; rpcMessage: string }
  | { kind: 'transport'; cause: string }
  | { kind: 'cookie'; cookieFile: string; cause: string }
  | { kind: 'timeout' }
  | { kind: 'unauthorized'; httpStatus: number }
  | { kind: 'bad-response'; httpStatus: number; bodyStart: string };

const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** 1 BTC = 10^8 sat; RPC amounts are JSON numbers with at most 8 decimals, exact after rounding. */
export function btcToSat(btc: number): bigint {
  return BigInt(Math.round(btc * 1e8));
}

export class BitcoinRpc {
  readonly dialect: RpcDialect;
  private readonly url: URL;
  private readonly auth: RpcAuth;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 8 });
  private readonly options: typeof DEFAULTS;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private cookieHeader: string | undefined;
  private nextId = 1;

  constructor(options: BitcoinRpcOptions) {
    this.url = new URL(options.url);
    if (this.url.protocol !== 'http:') throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { bitcoinRpcUrl: options.url, reason: 'the RPC URL must be http://' });
    this.auth = options.auth;
    this.dialect = options.dialect ?? 'core';
    this.options = {
      timeoutMs: options.timeoutMs ?? DEFAULTS.timeoutMs,
      maxAttempts: options.maxAttempts ?? DEFAULTS.maxAttempts,
      backoffBaseMs: options.backoffBaseMs ?? DEFAULTS.backoffBaseMs,
      backoffMaxMs: options.backoffMaxMs ?? DEFAULTS.backoffMaxMs,
      mempoolAcceptanceWaitMs: options.mempoolAcceptanceWaitMs ?? DEFAULTS.mempoolAcceptanceWaitMs,
    };
    this.sleep = options.sleep ?? defaultSleep;
    this.random = options.random ?? Math.random;
  }

  /** Closes the kept-alive sockets. */
  close(): void {
    this.agent.destroy();
  }

  // ---- the transport ----

  /** One JSON-RPC call with the retry policy; `method` is the RPC name as bitcoind spells it. */
  async call(method: string, params: unknown[] = []): Promise<unknown> {
    for (let attempt = 1; ; attempt++) {
      let outcome = await this.attempt(method, params);
      if (outcome.kind === 'unauthorized' && 'cookieFile' in this.auth) {
        // A restarted bitcoind has written a new cookie: read it again, once, at once.
        this.cookieHeader = undefined;
        outcome = await this.attempt(method, params);
      }
      switch (outcome.kind) {
        case 'ok': return outcome.result;
        case 'rpc':
          if (outcome.rpcCode !== RPC_CODE.inWarmup) throw rpcError(method, outcome.rpcCode, outcome.rpcMessage, this.dialect);
          break;
        case 'timeout': throw kalimaError('KALIMA_ERR_BITCOIN_TIMEOUT', { method, timeoutMs: this.options.timeoutMs, attempts: attempt });
        case 'unauthorized': throw kalimaError('KALIMA_ERR_BITCOIN_UNAUTHORIZED', { method, httpStatus: outcome.httpStatus });
        case 'bad-response': throw kalimaError('KALIMA_ERR_BITCOIN_BAD_RESPONSE', { method, httpStatus: outcome.httpStatus, bodyStart: outcome.bodyStart });
        case 'transport':
        case 'cookie': break;
      }
      if (attempt >= this.options.maxAttempts) throw this.exhausted(method, outcome, attempt);
      await this.sleep(this.backoffMs(attempt - 1));
    }
  }

  /** The error once the retries of a transient failure are spent. */
  private exhausted(method: string, failure: Attempt, attempts: number): KalimaError {
    switch (failure.kind) {
      case 'rpc': return kalimaError('KALIMA_ERR_BITCOIN_WARMING_UP', { method, rpcCode: failure.rpcCode, rpcMessage: failure.rpcMessage, attempts });
      case 'cookie': return kalimaError('KALIMA_ERR_BITCOIN_UNAUTHORIZED', { method, cookieFile: failure.cookieFile, cookieError: failure.cause, attempts });
      case 'transport': return kalimaError('KALIMA_ERR_BITCOIN_UNREACHABLE', { method, url: this.url.origin, cause: failure.cause, attempts });
      default: throw new Error(`assertion failed: rpc: ${failure.kind} is not retried`);
    }
  }

  /** Exponential, capped, with half of it jittered so that clients do not retry in step. */
  private backoffMs(retry: number): number {
    const ceilingMs = Math.min(this.options.backoffMaxMs, this.options.backoffBaseMs * 2 ** retry);
    return ceilingMs / 2 + this.random() * (ceilingMs / 2);
  }

  private async authorization(cookieFile: string): Promise<string> {
    if (this.cookieHeader === undefined) {
      // The cookie is "user:password" on one line (bitcoind writes __cookie__:<random hex>).
      const cookie = (await readFile(cookieFile, 'utf8')).trim();
      const colon = cookie.indexOf(':');
      if (colon < 0) throw Object.assign(new Error('malformed cookie'), { code: 'MALFORMED' });
      this.cookieHeader = basic(cookie.slice(0, colon), cookie.slice(colon + 1));
    }
    return this.cookieHeader;
  }

  private async attempt(method: string, params: unknown[]): Promise<Attempt> {
    let authorization: string;
    if ('user' in this.auth) {
      authorization = basic(this.auth.user, this.auth.password);
    } else {
      try {
        authorization = await this.authorization(this.auth.cookieFile);
      } catch (error) {
        // bitcoind deletes its cookie when it stops and writes a new one when it starts: wait for it.
        return { kind: 'cookie', cookieFile: this.auth.cookieFile, cause: errorCause(error) };
      }
    }
    return this.post(method, params, authorization);
  }

  private post(method: string, params: unknown[], authorization: string): Promise<Attempt> {
    const body = JSON.stringify({ jsonrpc: '1.0', id: this.nextId++, method, params });
    return new Promise((resolve) => {
      let settled = false;
      const settle = (outcome: Attempt): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(outcome);
      };
      const req = request(this.url, {
        method: 'POST',
        agent: this.agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization },
      }, (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > RESPONSE_BYTES_MAX) {
            req.destroy();
            settle({ kind: 'bad-response', httpStatus: res.statusCode ?? 0, bodyStart: `more than ${RESPONSE_BYTES_MAX} bytes` });
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (error) => settle({ kind: 'transport', cause: errorCause(error) }));
        res.on('end', () => settle(interpret(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
      });
      const timer = setTimeout(() => {
        settle({ kind: 'timeout' });
        req.destroy();
      }, this.options.timeoutMs);
      req.on('error', (error) => settle({ kind: 'transport', cause: errorCause(error) }));
      req.end(body);
    });
  }

  // ---- chain ----

  async getBlockchainInfo(): Promise<BlockchainInfo> {
    const info = asObject(await this.call('getblockchaininfo'), 'getblockchaininfo');
    return {
      chain: asString(info.chain, 'getblockchaininfo'),
      blocks: asInteger(info.blocks, 'getblockchaininfo'),
      headers: asInteger(info.headers, 'getblockchaininfo'),
      bestBlockHashHex: asHash(info.bestblockhash, 'getblockchaininfo'),
    };
  }

  async getNetworkInfo(): Promise<NetworkInfo> {
    const info = asObject(await this.call('getnetworkinfo'), 'getnetworkinfo');
    return { subversion: asString(info.subversion, 'getnetworkinfo'), relayFeeSatPerKvB: btcToSat(asNumber(info.relayfee, 'getnetworkinfo')) };
  }

  async getBlockCount(): Promise<number> {
    return asInteger(await this.call('getblockcount'), 'getblockcount');
  }

  async getBlockHash(height: number): Promise<string> {
    return asHash(await this.call('getblockhash', [height]), 'getblockhash');
  }

  /** The 80-byte header, hex. */
  async getBlockHeaderHex(blockHashHex: string): Promise<string> {
    const header = asString(await this.call('getblockheader', [blockHashHex, false]), 'getblockheader');
    if (!HEADER_HEX.test(header)) throw badResponse('getblockheader', header);
    return header;
  }

  /** The serialized block, hex. Core takes verbosity 0 (a number); bcoin a `verbose` boolean. */
  async getBlockHex(blockHashHex: string): Promise<string> {
    const verbosity = this.dialect === 'bcoin' ? false : 0;
    const block = asString(await this.call('getblock', [blockHashHex, verbosity]), 'getblock');
    if (!/^[0-9a-f]+$/.test(block) || block.length % 2 !== 0) throw badResponse('getblock', block);
    return block;
  }

  /** Undefined when the output is spent or never existed; `includeMempool` sees unconfirmed ones. */
  async getTxOut(txid: string, vout: number, includeMempool: boolean): Promise<TxOut | undefined> {
    const out = await this.call('gettxout', [txid, vout, includeMempool]);
    if (out === null) return undefined;
    const fields = asObject(out, 'gettxout');
    const script = asObject(fields.scriptPubKey, 'gettxout');
    return {
      valueSat: btcToSat(asNumber(fields.value, 'gettxout')),
      scriptHex: asString(script.hex, 'gettxout'),
      confirmations: asInteger(fields.confirmations, 'gettxout'),
    };
  }

  /** Needs -txindex (bcoin: --index-tx) for a confirmed transaction; NOT_FOUND otherwise. */
  async getRawTransaction(txid: string): Promise<RawTransaction> {
    const tx = asObject(await this.call('getrawtransaction', [txid, this.dialect === 'bcoin' ? true : 1]), 'getrawtransaction');
    return {
      hex: asString(tx.hex, 'getrawtransaction'),
      confirmations: tx.confirmations === undefined ? 0 : asInteger(tx.confirmations, 'getrawtransaction'),
      blockHashHex: tx.blockhash === undefined || tx.blockhash === null ? undefined : asHash(tx.blockhash, 'getrawtransaction'),
    };
  }

  /** Whether the node accepts an address of `network`: bitcoind and bcoin refuse other encodings. */
  async validateAddress(address: string): Promise<boolean> {
    const result = asObject(await this.call('validateaddress', [address]), 'validateaddress');
    return result.isvalid === true;
  }

  /**
   * Refuses an endpoint of another network: block 0 must be `network`'s genesis, and the node must
   * accept `network`'s addresses (Core's regtest and bcoin's share a genesis block, not encodings).
   */
  async checkNetwork(network: BitcoinNetwork): Promise<void> {
    const genesisHex = await this.getBlockHash(0);
    if (genesisHex !== network.genesisBlockHashHex) {
      throw kalimaError('KALIMA_ERR_BITCOIN_WRONG_NETWORK', { network: network.name, expectedGenesis: network.genesisBlockHashHex, actualGenesis: genesisHex });
    }
    const probeAddress = payments.p2wpkh({ hash: new Uint8Array(20), network: network.bitcoinjs }).address!;
    if (!(await this.validateAddress(probeAddress))) {
      throw kalimaError('KALIMA_ERR_BITCOIN_WRONG_NETWORK', { network: network.name, probeAddress, reason: 'the node refuses this network\'s addresses' });
    }
  }

  // ---- mempool and broadcast ----

  async getRawMempool(): Promise<string[]> {
    const txids = await this.call('getrawmempool', [false]);
    if (!Array.isArray(txids)) throw badResponse('getrawmempool', txids);
    return txids.map((txid) => asHash(txid, 'getrawmempool'));
  }

  /** Undefined when the transaction is not in the mempool. */
  async getMempoolEntry(txid: string): Promise<MempoolEntry | undefined> {
    let entry: Record<string, unknown>;
    try {
      entry = asObject(await this.call('getmempoolentry', [txid]), 'getmempoolentry');
    } catch (error) {
      if (isKalimaError(error, 'KALIMA_ERR_BITCOIN_NOT_FOUND')) return undefined;
      throw error;
    }
    // Core: vsize and fees.base (the older `fee` is gone since v23); bcoin: size (virtual) and fee.
    const fees = entry.fees as Record<string, unknown> | undefined;
    const depends = entry.depends;
    if (!Array.isArray(depends)) throw badResponse('getmempoolentry', entry);
    return {
      vsize: asInteger(entry.vsize ?? entry.size, 'getmempoolentry'),
      feeSat: btcToSat(asNumber(fees?.base ?? entry.fee, 'getmempoolentry')),
      timeSec: asInteger(entry.time, 'getmempoolentry'),
      depends: depends.map((txid) => asHash(txid, 'getmempoolentry')),
    };
  }

  /**
   * Broadcasts, then makes sure the transaction is in the mempool: bcoin answers with the txid
   * before, and even without, accepting it. A transaction that is not there is explained (already
   * in a block, an input missing or spent, a fee below the relay fee) by `explainAbsenceFromMempool`.
   */
  async sendRawTransaction(txHex: string): Promise<string> {
    const tx = Transaction.fromHex(txHex);
    const txid = asHash(await this.call('sendrawtransaction', [txHex]), 'sendrawtransaction');
    if (txid !== tx.getId()) throw badResponse('sendrawtransaction', { txid, expected: tx.getId() });
    // Polls at 25, 50, 100 … ms, for mempoolAcceptanceWaitMs in all.
    for (let waitedMs = 0, pollMs = 25; ; pollMs *= 2) {
      if ((await this.getMempoolEntry(txid)) !== undefined) return txid;
      const remainingMs = this.options.mempoolAcceptanceWaitMs - waitedMs;
      if (remainingMs <= 0) break;
      await this.sleep(Math.min(pollMs, remainingMs));
      waitedMs += Math.min(pollMs, remainingMs);
    }
    throw await explainAbsenceFromMempool(this, tx);
  }

  /**
   * The node's fee-rate estimate for confirmation within `targetBlocks`, in sat per 1000 vbytes,
   * or undefined when it has none (Core: an `errors` array; bcoin: fee -1), as on a fresh regtest.
   */
  async estimateSmartFee(targetBlocks: number): Promise<bigint | undefined> {
    const estimate = asObject(await this.call('estimatesmartfee', [targetBlocks]), 'estimatesmartfee');
    const btcPerKvB = estimate.feerate ?? estimate.fee;
    if (typeof btcPerKvB !== 'number' || btcPerKvB <= 0) return undefined;
    return btcToSat(btcPerKvB);
  }

  // ---- regtest controls ----

  /** Mines `blocks` blocks paying `address`; the new blocks' hashes. */
  async generateToAddress(blocks: number, address: string): Promise<string[]> {
    const hashes = await this.call('generatetoaddress', [blocks, address]);
    if (!Array.isArray(hashes)) throw badResponse('generatetoaddress', hashes);
    return hashes.map((hash) => asHash(hash, 'generatetoaddress'));
  }

  async invalidateBlock(blockHashHex: string): Promise<void> {
    await this.call('invalidateblock', [blockHashHex]);
  }

  async reconsiderBlock(blockHashHex: string): Promise<void> {
    await this.call('reconsiderblock', [blockHashHex]);
  }
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

function errorCause(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error as Error).message ?? String(error);
}

/** One HTTP answer. Core sends RPC errors with HTTP 500 or 404 and a JSON body; bcoin with 200. */
function interpret(httpStatus: number, text: string): Attempt {
  if (httpStatus === 401 || httpStatus === 403) return { kind: 'unauthorized', httpStatus };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Core answers 503 "Work queue depth exceeded" in plain text when it is overloaded.
    if (httpStatus === 503) return { kind: 'transport', cause: `HTTP 503 ${text.slice(0, 100)}` };
    return { kind: 'bad-response', httpStatus, bodyStart: text.slice(0, 200) };
  }
  if (typeof json !== 'object' || json === null) return { kind: 'bad-response', httpStatus, bodyStart: text.slice(0, 200) };
  const { result, error } = json as { result?: unknown; error?: unknown };
  if (error !== null && error !== undefined) {
    const { code, message } = error as { code?: unknown; message?: unknown };
    if (typeof code === 'number') return { kind: 'rpc', rpcCode: code, rpcMessage: typeof message === 'string' ? message : '' };
    return { kind: 'bad-response', httpStatus, bodyStart: text.slice(0, 200) };
  }
  if (result === undefined) return { kind: 'bad-response', httpStatus, bodyStart: text.slice(0, 200) };
  return { kind: 'ok', result };
}

function badResponse(method: string, value: unknown): KalimaError {
  return kalimaError('KALIMA_ERR_BITCOIN_BAD_RESPONSE', { method, bodyStart: JSON.stringify(value)?.slice(0, 200) });
}

function asObject(value: unknown, method: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badResponse(method, value);
  return value as Record<string, unknown>;
}

function asString(value: unknown, method: string): string {
  if (typeof value !== 'string') throw badResponse(method, value);
  return value;
}

function asNumber(value: unknown, method: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw badResponse(method, value);
  return value;
}

function asInteger(value: unknown, method: string): number {
  if (!Number.isSafeInteger(value)) throw badResponse(method, value);
  return value as number;
}

function asHash(value: unknown, method: string): string {
  if (typeof value !== 'string' || !HEX_HASH.test(value)) throw badResponse(method, value);
  return value;
}
