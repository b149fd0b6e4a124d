// Request signatures. A device signs every REST read and event-stream request:
//   x-kalima-device:    its x-only public key (hex)
//   x-kalima-timestamp: milliseconds since the Unix epoch
//   x-kalima-signature: BIP-340 over tagged_hash("kalima/request/v1", METHOD \n PATH?QUERY \n TIMESTAMP \n CHAIN)
// Writes need no header: the message carries its own signature.
import { kalimaError } from '../errors.ts';
import { utf8Bytes } from '../ledger/codec.ts';
import { TAG, fromHex, taggedHash, toHex } from '../ledger/hash.ts';
import { signSchnorr, verifySchnorr } from '../ledger/signature.ts';

export const AUTH_SKEW_MS_MAX = 60_000;

export const AUTH_HEADERS = { device: 'x-kalima-device', timestamp: 'x-kalima-timestamp', signature: 'x-kalima-signature' } as const;

export function requestSigningHash(method: string, pathAndQuery: string, timestampMs: number, chain: string): Uint8Array {
  return taggedHash(TAG.request, utf8Bytes(`${method.toUpperCase()}\n${pathAndQuery}\n${timestampMs}\n${chain}`));
}

export function signRequest(input: { method: string; pathAndQuery: string; chain: string; timestampMs: number; secretKey: Uint8Array; publicKey: Uint8Array; auxRand: Uint8Array }): Record<string, string> {
  const signature = signSchnorr(requestSigningHash(input.method, input.pathAndQuery, input.timestampMs, input.chain), input.secretKey, input.auxRand);
  return {
    [AUTH_HEADERS.device]: toHex(input.publicKey),
    [AUTH_HEADERS.timestamp]: String(input.timestampMs),
    [AUTH_HEADERS.signature]: toHex(signature),
  };
}

/** Returns the authenticated device id (hex), or throws the coded error. */
export function authenticate(input: { method: string; pathAndQuery: string; headers: Record<string, string | string[] | undefined>; chain: string; nowMs: number }): string {
  const header = (name: string): string | undefined => {
    const value = input.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const deviceHex = header(AUTH_HEADERS.device);
  const timestamp = header(AUTH_HEADERS.timestamp);
  const signatureHex = header(AUTH_HEADERS.signature);
  if (deviceHex === undefined || timestamp === undefined || signatureHex === undefined) throw kalimaError('KALIMA_ERR_ACCESS_AUTH_MISSING');
  const device = fromHex(deviceHex);
  const signature = fromHex(signatureHex);
  const timestampMs = /^\d{1,16}$/.test(timestamp) ? Number(timestamp) : Number.NaN;
  if (device === undefined || device.length !== 32 || signature === undefined || signature.length !== 64 || !Number.isSafeInteger(timestampMs)) {
    throw kalimaError('KALIMA_ERR_ACCESS_AUTH_BAD_SIGNATURE', { reason: 'malformed authentication headers' });
  }
  if (Math.abs(input.nowMs - timestampMs) > AUTH_SKEW_MS_MAX) throw kalimaError('KALIMA_ERR_ACCESS_AUTH_EXPIRED', { timestampMs, nodeTimeMs: input.nowMs });
  if (!verifySchnorr(requestSigningHash(input.method, input.pathAndQuery, timestampMs, input.chain), device, signature)) {
    throw kalimaError('KALIMA_ERR_ACCESS_AUTH_BAD_SIGNATURE');
  }
  return toHex(device);
}
