// The typed client of a Kalima node: device keys, signed writes that are safe to retry, signed
// reads, history, and an event subscription that resumes after a reconnect without a gap or a
// duplicate.
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { KalimaError, isErrorCode, kalimaError } from '../errors.ts';
import { type Message, type UnsignedMessage, canonicalProps, messageSigningHash, signMessage } from '../ledger/message.ts';
import { fromHex, toHex } from '../ledger/hash.ts';
import { type KeyPair, generateKeyPair, isValidSecretKey, publicKeyOf, signSchnorr } from '../ledger/signature.ts';
import { type Clock, type Rng, systemClock, systemRng } from '../ports.ts';
import { signRequest } from '../api/auth.ts';
import type { CommitReceipt } from '../node/node.ts';
import { LISTINGS_ADDRESS, type ListingView, encodeListing } from '../access/market.ts';
import type { Purchase } from '../../bridge/market.ts';
import { KLX_SUPPLY_ADDRESS, KLX_SUPPLY_KEY, KLX_TRANSFERS_ADDRESS, encodeIssue, encodeTransfer, transferKey } from '../state/klx.ts';

/** A purchase as the seller's node reports it (bridge/market.ts). */
export type PurchaseView = Purchase;

export type { CommitReceipt };
import { type MessageJson, messageToJson } from '../api/json.ts';
import {
  ADDRESSES_ADDRESS, DEVICES_ADDRESS, ONBOARDING_ADDRESS, type Permissions, encodeAddressRecord, encodeDeviceRecord, encodeGrant, encodeRedemption,
  redemptionHash,
} from '../access/records.ts';

export interface ChainMessage {
  address: string;
  key: string;
  globalSequence: number;
  sequence: number;
  previous: number;
  /** The body, decoded from base64. Empty for a delete. */
  body: Uint8Array;
  hash: string;
  props: Record<string, string>;
  date: string;
  time: string;
  timeMs: number;
  height: number;
  ttl: number;
  device: string;
  deleted: boolean;
}

export interface CacheValue {
  address: string;
  key: string;
  globalSequence: number;
  sequence: number;
  body: Uint8Array;
  hash: string;
  props: Record<string, string>;
  timeMs: number;
  height: number;
  ttl: number;
  expiresAtMs: number | null;
}

export interface WriteOptions {
  /** Seconds; -1 (the default) keeps the value forever. */
  ttl?: number;
  props?: Record<string, string>;
}

export interface ClientOptions {
  /** The node's base URL, such as http://127.0.0.1:9118. */
  url: string;
  key: KeyPair;
  /** Learned from /status when left out. */
  chain?: string;
  clock?: Clock;
  rng?: Rng;
  /** Attempts for a write before it gives up (network errors and 503 are retried). */
  writeAttempts?: number;
  /** A request with no answer by then fails as unreachable (and a write is retried). Default 30 s. */
  requestTimeoutMs?: number;
  fetch?: typeof fetch;
}

export interface SubscribeOptions {
  /** Resume after this globalSequence; left out, the stream starts with the next commit. */
  from?: number;
  signal?: AbortSignal;
  /** Called on every reconnect, with the attempt number and the cause. */
  onReconnect?: (attempt: number, cause: unknown) => void;
}

// ---- keys ----

export function generateDeviceKey(rng: Rng = systemRng): KeyPair {
  return generateKeyPair(rng);
}

/** Writes a key file readable by its owner only. */
export async function saveDeviceKey(path: string, key: KeyPair): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify({ secretKey: toHex(key.secretKey), publicKey: toHex(key.publicKey) }, null, 2)}\n`, { mode: 0o600 });
}

export async function loadDeviceKey(path: string): Promise<KeyPair> {
  let json: { secretKey?: unknown };
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { file: path, reason: `cannot read the key file: ${(error as Error).message}` });
  }
  const secretKey = typeof json.secretKey === 'string' ? fromHex(json.secretKey) : undefined;
  if (secretKey === undefined || !isValidSecretKey(secretKey)) throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { file: path, reason: 'secretKey must be 64 hex digits of a valid secp256k1 key' });
  return { secretKey, publicKey: publicKeyOf(secretKey) };
}

// ---- the client ----

const WRITE_ATTEMPTS_DEFAULT = 8;
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** With the node's 3 s keep-alive, this much silence means the connection is dead. */
const SILENCE_MS_MAX = 10_000;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

function backoffMs(attempt: number, rng: Rng): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** Math.min(attempt, 10));
  const jitter = (rng.bytes(2)[0]! * 256 + rng.bytes(1)[0]!) / 65_536;
  return Math.round(ceiling / 2 + (ceiling / 2) * jitter);
}

function decodeChainMessage(json: Record<string, unknown>): ChainMessage {
  return { ...(json as unknown as ChainMessage), body: new Uint8Array(Buffer.from(String(json.body ?? ''), 'base64')) };
}

export class KalimaClient {
  readonly url: string;
  readonly key: KeyPair;
  readonly deviceId: string;
  private chainName: string | undefined;
  private genesisHashHex: string | undefined;
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly fetchImpl: typeof fetch;
  private readonly writeAttempts: number;
  private readonly requestTimeoutMs: number;
  private lastNonce = 0;

  constructor(options: ClientOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.key = options.key;
    this.deviceId = toHex(options.key.publicKey);
    this.chainName = options.chain;
    this.clock = options.clock ?? systemClock;
    this.rng = options.rng ?? systemRng;
    this.fetchImpl = options.fetch ?? fetch;
    this.writeAttempts = options.writeAttempts ?? WRITE_ATTEMPTS_DEFAULT;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  async chain(): Promise<string> {
    if (this.chainName === undefined) await this.learnChain();
    return this.chainName!;
  }

  /** The chain's genesis hash, which request signatures commit to. */
  async genesisHash(): Promise<string> {
    if (this.genesisHashHex === undefined) await this.learnChain();
    return this.genesisHashHex!;
  }

  private async learnChain(): Promise<void> {
    const status = await this.status();
    if (this.chainName !== undefined && status.chain !== this.chainName) {
      throw kalimaError('KALIMA_ERR_LEDGER_WRONG_CHAIN', { chain: status.chain, expected: this.chainName });
    }
    this.chainName = status.chain;
    this.genesisHashHex = status.genesisHash;
  }

  /** A fresh nonce: microseconds since the epoch, strictly increasing within this client. */
  private nextNonce(): number {
    this.lastNonce = Math.max(this.lastNonce + 1, this.clock.nowMs() * 1000);
    return this.lastNonce;
  }

  private async request(method: string, pathAndQuery: string, body?: unknown, signed = true): Promise<unknown> {
    const headers: Record<string, string> = {};
    if (signed) {
      Object.assign(headers, signRequest({
        method, pathAndQuery, genesisHash: await this.genesisHash(), timestampMs: this.clock.nowMs(),
        secretKey: this.key.secretKey, publicKey: this.key.publicKey, auxRand: this.rng.bytes(32),
      }));
    }
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    let text: string;
    try {
      response = await this.fetchImpl(`${this.url}${pathAndQuery}`, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(this.requestTimeoutMs),
      });
      text = await response.text();
    } catch (error) {
      throw kalimaError('KALIMA_ERR_SDK_UNREACHABLE', { url: this.url, cause: (error as Error).message });
    }
    let json: unknown;
    try {
      json = text.length === 0 ? undefined : JSON.parse(text);
    } catch {
      throw kalimaError('KALIMA_ERR_SDK_BAD_RESPONSE', { status: response.status, body: text.slice(0, 200) });
    }
    if (!response.ok) throw KalimaClient.errorFrom(response.status, json);
    return json;
  }

  private static errorFrom(status: number, json: unknown): KalimaError {
    const error = (json as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
    if (error !== undefined && typeof error.code === 'string' && isErrorCode(error.code)) {
      return new KalimaError(error.code, (error.details as Record<string, unknown>) ?? {}, typeof error.message === 'string' ? error.message : undefined);
    }
    // A server that is shutting down (fastify answers 503 on its own) or a proxy in front of a node
    // that is restarting has no catalogue body: the node is unreachable for now, which is retried.
    if (status === 502 || status === 503 || status === 504) return kalimaError('KALIMA_ERR_SDK_UNREACHABLE', { status, body: json });
    return kalimaError('KALIMA_ERR_SDK_BAD_RESPONSE', { status, body: json });
  }

  async status(): Promise<Record<string, unknown> & { chain: string; genesisHash: string; height: number }> {
    return (await this.request('GET', '/status', undefined, false)) as Record<string, unknown> & { chain: string; genesisHash: string; height: number };
  }

  /** Builds and signs a message from this device. */
  async sign(address: string, key: string, body: Uint8Array, options: WriteOptions = {}): Promise<Message> {
    const unsigned: UnsignedMessage = {
      chain: await this.chain(), address, key, body, ttlSeconds: options.ttl ?? -1,
      props: canonicalProps(options.props ?? {}), device: this.key.publicKey, nonce: this.nextNonce(),
    };
    return signMessage(unsigned, this.key.secretKey, this.rng.bytes(32));
  }

  /**
   * Sends a signed message and waits for its commit. Network failures and an overloaded node are
   * retried with the same message (the same nonce), so a retry can never write twice; a retry of a
   * message that did commit comes back as NONCE_REPLAYED carrying the commit, which is success.
   */
  async submit(message: Message, method: 'POST' | 'DELETE' = 'POST'): Promise<CommitReceipt> {
    const json: MessageJson = messageToJson(message);
    const ownHash = toHex(messageSigningHash(message));
    for (let attempt = 0; ; attempt++) {
      try {
        return (await this.request(method, '/transaction', json, false)) as CommitReceipt;
      } catch (error) {
        if (error instanceof KalimaError && error.code === 'KALIMA_ERR_LEDGER_NONCE_REPLAYED') {
          const committed = error.details.committed as CommitReceipt | undefined;
          if (committed?.messageHash === ownHash) return committed;
        }
        const retryable = error instanceof KalimaError && (error.status === 503 || error.code === 'KALIMA_ERR_SDK_UNREACHABLE');
        if (!retryable || attempt + 1 >= this.writeAttempts) throw error;
        await sleep(backoffMs(attempt, this.rng));
      }
    }
  }

  async put(address: string, key: string, body: Uint8Array | string, options: WriteOptions = {}): Promise<CommitReceipt> {
    const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
    if (bytes.length === 0) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'body', reason: 'an empty body deletes; use remove()' });
    return this.submit(await this.sign(address, key, bytes, options));
  }

  async remove(address: string, key: string): Promise<CommitReceipt> {
    return this.submit(await this.sign(address, key, new Uint8Array()), 'DELETE');
  }

  async get(address: string, key: string): Promise<CacheValue | undefined> {
    try {
      const json = (await this.request('GET', `/transaction?${new URLSearchParams({ address, key })}`)) as Record<string, unknown>;
      return { ...(json as unknown as CacheValue), body: new Uint8Array(Buffer.from(String(json.body), 'base64')) };
    } catch (error) {
      if (error instanceof KalimaError && error.code === 'KALIMA_ERR_LEDGER_KEY_NOT_FOUND') return undefined;
      throw error;
    }
  }

  async addresses(): Promise<Array<{ address: string; size: number; lastSequence: number }>> {
    return ((await this.request('GET', '/cache/list')) as { addresses: Array<{ address: string; size: number; lastSequence: number }> }).addresses;
  }

  async keys(address: string): Promise<string[]> {
    return ((await this.request('GET', `/cache/keys?${new URLSearchParams({ address })}`)) as { keys: string[] }).keys;
  }

  async cache(address: string): Promise<{ address: string; size: number; lowestSequence: number | null; highestSequence: number | null; entries: CacheValue[] }> {
    const json = (await this.request('GET', `/cache?${new URLSearchParams({ address })}`)) as { entries: Array<Record<string, unknown>> } & Record<string, unknown>;
    return { ...(json as unknown as { address: string; size: number; lowestSequence: number | null; highestSequence: number | null }), entries: json.entries.map((entry) => ({ ...(entry as unknown as CacheValue), body: new Uint8Array(Buffer.from(String(entry.body), 'base64')) })) };
  }

  /** The messages at an address by sequence, oldest first, fetched page by page. */
  async *history(address: string, options: { fromSequence?: number; toSequence?: number; pageSize?: number } = {}): AsyncIterable<ChainMessage> {
    let from: number | null = options.fromSequence ?? 0;
    const pageSize = options.pageSize ?? 100;
    while (from !== null) {
      const query = new URLSearchParams({ address, fromSeq: String(from), pageSize: String(pageSize) });
      if (options.toSequence !== undefined) query.set('toSeq', String(options.toSequence));
      const page = (await this.request('GET', `/ledger/betweenSequences?${query}`)) as { messages: Array<Record<string, unknown>>; cursors: { next: number | null } };
      for (const message of page.messages) yield decodeChainMessage(message);
      from = page.cursors.next;
    }
  }

  /**
   * Committed messages under `address` (a prefix), as they commit. After a dropped connection it
   * reconnects with backoff and resumes after the last event it yielded: no gap, no duplicate.
   */
  async *subscribe(address: string, options: SubscribeOptions = {}): AsyncIterable<ChainMessage> {
    let lastSeen = options.from;
    let attempt = 0;
    while (!options.signal?.aborted) {
      const controller = new AbortController();
      const abort = (): void => controller.abort();
      options.signal?.addEventListener('abort', abort, { once: true });
      let silence: NodeJS.Timeout | undefined;
      const armSilence = (): void => {
        clearTimeout(silence);
        silence = setTimeout(() => controller.abort(new Error('no keep-alive from the node')), SILENCE_MS_MAX);
      };
      try {
        const pathAndQuery = `/events?${new URLSearchParams({ address })}`;
        const lastEventId = lastSeen === undefined ? undefined : String(lastSeen);
        const headers: Record<string, string> = signRequest({
          method: 'GET', pathAndQuery, genesisHash: await this.genesisHash(), timestampMs: this.clock.nowMs(), lastEventId,
          secretKey: this.key.secretKey, publicKey: this.key.publicKey, auxRand: this.rng.bytes(32),
        });
        headers.accept = 'text/event-stream';
        if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
        armSilence();
        const response = await this.fetchImpl(`${this.url}${pathAndQuery}`, { headers, signal: controller.signal });
        if (!response.ok) {
          const text = await response.text();
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = text;
          }
          const error = KalimaClient.errorFrom(response.status, json);
          if (error.status !== 503) throw error;
          throw Object.assign(new Error('node unavailable'), { retryable: true });
        }
        if (response.body === null) throw new Error('no response body');
        attempt = 0;
        for await (const event of parseEventStream(response.body, armSilence)) {
          if (event.event === 'ready') {
            if (lastSeen === undefined) lastSeen = (JSON.parse(event.data) as { cursor: number }).cursor;
            continue;
          }
          if (event.event !== 'message') continue;
          const message = decodeChainMessage(JSON.parse(event.data) as Record<string, unknown>);
          if (lastSeen !== undefined && message.globalSequence <= lastSeen) continue;
          lastSeen = message.globalSequence;
          yield message;
        }
        throw new Error('the event stream ended');
      } catch (error) {
        if (options.signal?.aborted) return;
        if (error instanceof KalimaError) throw error;
        options.onReconnect?.(attempt + 1, error);
        await sleep(backoffMs(attempt++, this.rng), options.signal);
      } finally {
        clearTimeout(silence);
        options.signal?.removeEventListener('abort', abort);
        controller.abort();
      }
    }
  }

  // ---- admin helpers: messages on the reserved addresses ----

  async createAddress(address: string, description = ''): Promise<CommitReceipt> {
    return this.submit(await this.sign(ADDRESSES_ADDRESS, address, encodeAddressRecord({ description })));
  }

  async registerDevice(deviceId: string, record: Permissions & { name?: string }): Promise<CommitReceipt> {
    return this.submit(await this.sign(DEVICES_ADDRESS, deviceId, encodeDeviceRecord({ name: record.name ?? '', pub: record.pub, sub: record.sub })));
  }

  async unregisterDevice(deviceId: string): Promise<CommitReceipt> {
    return this.submit(await this.sign(DEVICES_ADDRESS, deviceId, new Uint8Array()), 'DELETE');
  }

  /** Issues a one-time onboarding code (Kalima's serialId). Hand `code` to the device. */
  async issueOnboardingCode(grant: Permissions & { name?: string; expiresAtMs?: number }): Promise<{ code: string; codeId: string; receipt: CommitReceipt }> {
    const code = generateKeyPair(this.rng);
    const codeId = toHex(code.publicKey);
    const receipt = await this.submit(await this.sign(ONBOARDING_ADDRESS, codeId, encodeGrant({ name: grant.name ?? '', pub: grant.pub, sub: grant.sub, expiresAtMs: grant.expiresAtMs ?? 0 })));
    return { code: toHex(code.secretKey), codeId, receipt };
  }

  // ---- the marketplace and KLX ----

  /** The listings on the chain (src/access/market.ts). */
  async listings(): Promise<Array<ListingView & { ours?: boolean }>> {
    return ((await this.request('GET', '/market/listings')) as { listings: Array<ListingView & { ours?: boolean }> }).listings;
  }

  async listing(id: string): Promise<ListingView> {
    return (await this.request('GET', `/market/listings/${encodeURIComponent(id)}`)) as ListingView;
  }

  /** Lists data this device may publish, for sale through its seller node's LND (`sellerNode`: its identity key, hex). */
  async list(id: string, listing: { title: string; prefix: string; priceSats: number; periodSeconds: number; sellerNode: string }): Promise<CommitReceipt> {
    const sellerNode = fromHex(listing.sellerNode);
    if (sellerNode === undefined) throw kalimaError('KALIMA_ERR_MARKET_BAD_LISTING', { reason: 'the seller node is a compressed public key in hex' });
    return this.submit(await this.sign(LISTINGS_ADDRESS, id, encodeListing({ ...listing, sellerNode })));
  }

  async withdrawListing(id: string): Promise<CommitReceipt> {
    return this.submit(await this.sign(LISTINGS_ADDRESS, id, new Uint8Array()), 'DELETE');
  }

  /** Asks the seller's node for a hold invoice for a listing; pay `invoice` with any Lightning wallet. `amountSats`, when given, must be the price. */
  async buy(listing: string, options: { amountSats?: number } = {}): Promise<PurchaseView> {
    return (await this.request('POST', '/market/purchases', { listing, ...options })) as PurchaseView;
  }

  /** Asks for a hold invoice for `klx` units of KLX from the node's treasury. */
  async buyKlx(klx: number, options: { amountSats?: number } = {}): Promise<PurchaseView> {
    return (await this.request('POST', '/klx/purchases', { klx, ...options })) as PurchaseView;
  }

  async purchase(id: string): Promise<PurchaseView> {
    return (await this.request('GET', `/market/purchases/${encodeURIComponent(id)}`)) as PurchaseView;
  }

  async klxSupply(): Promise<{ supply: number; treasury: string; treasuryBalance: number }> {
    return (await this.request('GET', '/klx')) as { supply: number; treasury: string; treasuryBalance: number };
  }

  /** A KLX balance: this device's own by default. */
  async klxBalance(account = toHex(this.key.publicKey)): Promise<number> {
    return ((await this.request('GET', `/klx/accounts/${encodeURIComponent(account)}`)) as { balance: number }).balance;
  }

  /** Issues the chain's KLX supply to a treasury account (an admin, once). */
  async issueKlx(treasury: string, amount: number): Promise<CommitReceipt> {
    return this.submit(await this.sign(KLX_SUPPLY_ADDRESS, KLX_SUPPLY_KEY, encodeIssue({ treasury, amount })));
  }

  /** Moves KLX from this device's account; `id` is used once on the chain (under this device's id), so a retry never pays twice. */
  async transferKlx(id: string, to: string, amount: number): Promise<CommitReceipt> {
    const from = toHex(this.key.publicKey);
    return this.submit(await this.sign(KLX_TRANSFERS_ADDRESS, transferKey(from, id), encodeTransfer({ from, to, amount })));
  }

  /** Redeems an onboarding code with this client's key, which becomes a registered device. */
  async redeemOnboardingCode(code: string): Promise<CommitReceipt> {
    const secretKey = fromHex(code);
    if (secretKey === undefined || !isValidSecretKey(secretKey)) throw kalimaError('KALIMA_ERR_ACCESS_BAD_ONBOARDING_CODE', { reason: 'the code must be 64 hex digits' });
    // The code signs this device's id; the code itself never leaves the device.
    const codeSignature = signSchnorr(redemptionHash(await this.chain(), this.key.publicKey), secretKey, this.rng.bytes(32));
    return this.submit(await this.sign(ONBOARDING_ADDRESS, toHex(publicKeyOf(secretKey)), encodeRedemption(codeSignature)));
  }
}

interface ServerSentEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/** Parses a text/event-stream body (WHATWG HTML §9.2.6). */
async function* parseEventStream(body: ReadableStream<Uint8Array>, onActivity: () => void): AsyncIterable<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  let id: string | undefined;
  let event = 'message';
  let data: string[] = [];
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    onActivity();
    buffer += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
      if (line === '') {
        if (data.length > 0) yield { id, event, data: data.join('\n') };
        event = 'message';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') data.push(value);
      else if (field === 'event') event = value;
      else if (field === 'id') id = value;
    }
  }
}
