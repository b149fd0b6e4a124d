// Request signatures. A device signs every REST read and event-stream request:
//   x-kalima-device:    its x-only public key (hex)
//   x-kalima-timestamp: milliseconds since the Unix epoch
//   x-kalima-signature: BIP-340 over tagged_hash("kalima/request/v1",
//                         METHOD \n PATH?QUERY \n TIMESTAMP \n GENESIS-HASH \n LAST-EVENT-ID)
// The genesis hash binds the request to one chain; LAST-EVENT-ID is the header's value or empty,
// so a captured stream request cannot be re-pointed at older history. The node accepts each
// signature once, within 60 s of its own clock. Writes need no header: a message carries its own
// signature.
import { kalimaError } from '../errors.ts';
import { utf8Bytes } from '../ledger/codec.ts';
import { TAG, fromHex, taggedHash, toHex } from '../ledger/hash.ts';
import { signSchnorr, verifySchnorr } from '../ledger/signature.ts';

export const AUTH_SKEW_MS_MAX = 60_000;
/** Signatures remembered against replay; past this the oldest go first (they expire within 2 min). */
const SEEN_SIGNATURES_MAX = 200_000;

export const AUTH_HEADERS = { device: 'x-kalima-device', timestamp: 'x-kalima-timestamp', signature: 'x-kalima-signature' } as const;

export interface RequestToSign {
  method: string;
  pathAndQuery: string;
  timestampMs: number;
  /** The chain's genesis hash, hex (GET /status has it). */
  genesisHash: string;
  lastEventId?: string;
}

export function requestSigningHash(request: RequestToSign): Uint8Array {
  const text = `${request.method.toUpperCase()}\n${request.pathAndQuery}\n${request.timestampMs}\n${request.genesisHash}\n${request.lastEventId ?? ''}`;
  return taggedHash(TAG.request, utf8Bytes(text));
}

export function signRequest(input: RequestToSign & { secretKey: Uint8Array; publicKey: Uint8Array; auxRand: Uint8Array }): Record<string, string> {
  const signature = signSchnorr(requestSigningHash(input), input.secretKey, input.auxRand);
  return {
    [AUTH_HEADERS.device]: toHex(input.publicKey),
    [AUTH_HEADERS.timestamp]: String(input.timestampMs),
    [AUTH_HEADERS.signature]: toHex(signature),
  };
}

type Headers = Record<string, string | string[] | undefined>;

function header(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export class RequestAuthenticator {
  /** signature hex -> the time it stops being acceptable anyway; in insertion order. */
  private readonly seen = new Map<string, number>();

  constructor(private readonly genesisHash: string) {}

  /** Returns the authenticated device id (hex), or throws the coded error. */
  authenticate(input: { method: string; pathAndQuery: string; headers: Headers; nowMs: number }): string {
    const deviceHex = header(input.headers, AUTH_HEADERS.device);
    const timestamp = header(input.headers, AUTH_HEADERS.timestamp);
    const signatureHex = header(input.headers, AUTH_HEADERS.signature);
    if (deviceHex === undefined || timestamp === undefined || signatureHex === undefined) throw kalimaError('KALIMA_ERR_ACCESS_AUTH_MISSING');
    const device = fromHex(deviceHex);
    const signature = fromHex(signatureHex);
    const timestampMs = /^\d{1,16}$/.test(timestamp) ? Number(timestamp) : Number.NaN;
    if (device === undefined || device.length !== 32 || signature === undefined || signature.length !== 64 || !Number.isSafeInteger(timestampMs)) {
      throw kalimaError('KALIMA_ERR_ACCESS_AUTH_BAD_SIGNATURE', { reason: 'malformed authentication headers' });
    }
    if (Math.abs(input.nowMs - timestampMs) > AUTH_SKEW_MS_MAX) throw kalimaError('KALIMA_ERR_ACCESS_AUTH_EXPIRED', { timestampMs, nodeTimeMs: input.nowMs });
    const signed = requestSigningHash({
      method: input.method, pathAndQuery: input.pathAndQuery, timestampMs, genesisHash: this.genesisHash, lastEventId: header(input.headers, 'last-event-id'),
    });
    if (!verifySchnorr(signed, device, signature)) throw kalimaError('KALIMA_ERR_ACCESS_AUTH_BAD_SIGNATURE');
    this.remember(signatureHex.toLowerCase(), timestampMs + AUTH_SKEW_MS_MAX, input.nowMs);
    return toHex(device);
  }

  private remember(signatureHex: string, expiresAtMs: number, nowMs: number): void {
    for (const [oldest, expiry] of this.seen) {
      if (expiry >= nowMs && this.seen.size < SEEN_SIGNATURES_MAX) break;
      this.seen.delete(oldest);
    }
    if (this.seen.has(signatureHex)) throw kalimaError('KALIMA_ERR_ACCESS_AUTH_REPLAYED');
    this.seen.set(signatureHex, expiresAtMs);
  }
}
