// SHA-256 and BIP-340 tagged hashes. BIP-340: "hash_tag(x) = SHA256(SHA256(tag) || SHA256(tag) || x)".
// Every domain in this project has its own tag, so a hash of one kind can never be replayed as
// another.
import { createHash, hash as oneShotHash } from 'node:crypto';

/** Inputs up to this size are hashed from one reusable buffer with the one-shot API. */
const SCRATCH_BYTES = 16_384;
const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);

function view(digest: Buffer): Uint8Array<ArrayBuffer> {
  return new Uint8Array(digest.buffer as ArrayBuffer, digest.byteOffset, digest.byteLength);
}

/**
 * SHA-256 of the concatenation of `parts`. The hot path hashes many small inputs, so parts that fit
 * are laid out in one scratch buffer and hashed with a single native call (no Hash object).
 */
export function sha256(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  if (parts.length === 1) return view(oneShotHash('sha256', parts[0]!, 'buffer') as unknown as Buffer);
  let length = 0;
  for (const part of parts) length += part.length;
  if (length <= SCRATCH_BYTES) {
    let offset = 0;
    for (const part of parts) {
      scratch.set(part, offset);
      offset += part.length;
    }
    return view(oneShotHash('sha256', scratch.subarray(0, length), 'buffer') as unknown as Buffer);
  }
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return view(hash.digest());
}

const tagPrefixes = new Map<string, Uint8Array>();

/** SHA256(tag) || SHA256(tag): the 64 bytes a tagged hash starts with (an anchor proof's ops prepend them). */
export function tagPrefix(tag: string): Uint8Array {
  let prefix = tagPrefixes.get(tag);
  if (prefix === undefined) {
    const tagHash = sha256(new TextEncoder().encode(tag));
    prefix = new Uint8Array(64);
    prefix.set(tagHash, 0);
    prefix.set(tagHash, 32);
    tagPrefixes.set(tag, prefix);
  }
  return prefix;
}

export function taggedHash(tag: string, ...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return sha256(tagPrefix(tag), ...parts);
}

/** The tags used on this chain. Changing one is a hard fork. */
export const TAG = {
  message: 'kalima/message/v1',
  committed: 'kalima/committed/v1',
  merkleLeaf: 'kalima/merkle-leaf/v1',
  merkleNode: 'kalima/merkle-node/v1',
  block: 'kalima/block/v1',
  mmrNode: 'kalima/mmr-node/v1',
  mmrBag: 'kalima/mmr-bag/v1',
  genesis: 'kalima/genesis/v1',
  stateDigest: 'kalima/state/v1',
  request: 'kalima/request/v1',
  onboarding: 'kalima/onboarding/v1',
  leaderReport: 'kalima/leader-report/v1',
  /** Inner nodes of the anchor aggregation tree over chain tips (anchors/aggregate.ts). */
  anchorNode: 'kalima/anchor-node/v1',
  /** The anchored root: the tree's root with its leaf count (anchors/aggregate.ts). */
  anchorRoot: 'kalima/anchor-root/v1',
} as const;

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let index = 0; index < a.length; index++) diff |= a[index]! ^ b[index]!;
  return diff === 0;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

const HEX_PATTERN = /^(?:[0-9a-f]{2})*$/i;

/** Decodes hex; returns undefined for anything that is not even-length hex. */
export function fromHex(hex: string): Uint8Array | undefined {
  if (!HEX_PATTERN.test(hex)) return undefined;
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
