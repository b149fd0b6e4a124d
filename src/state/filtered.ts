// What one device sees of the MemCache through a sync subscription: the addresses under its
// subscribed prefixes that its SUB list lets it read, with their current entries and last
// sequences. Its digest is the MemCache digest restricted to that set (the same LtHash elements,
// state/entry.ts), so a client node's copy (a MemCache of only those items) and a master's view of
// the same filter give equal digests exactly when they hold the same items.
import { kalimaError } from '../errors.ts';
import { type AccessPolicy, mayRead, roleOf } from '../access/permissions.ts';
import { ONBOARDING_ADDRESS, checkPrefix, prefixCovers, subCovers } from '../access/records.ts';
import type { BlockHeader } from '../ledger/block.ts';
import { type CommittedMessage, messageSigningHash } from '../ledger/message.ts';
import type { CacheEntry } from './entry.ts';
import { entryDigestElement, headDigestElement } from './entry.ts';
import { LtHash } from './lthash.ts';
import type { MemCache, StateReader } from './memcache.ts';

/**
 * Under one of the prefixes. Onboarding entries are never synced: a redemption's stored value is
 * not its message's body, so a client could not rebuild it from the block.
 */
export function inSubscription(prefixes: readonly string[], address: string): boolean {
  if (address === ONBOARDING_ADDRESS) return false;
  for (const prefix of prefixes) if (prefixCovers(prefix, address)) return true;
  return false;
}

/** Throws the coded error unless the device may read everything under every prefix. */
export function checkSubscription(state: StateReader, policy: AccessPolicy, deviceHex: string, prefixes: readonly string[]): void {
  for (const prefix of prefixes) checkPrefix(prefix);
  const role = roleOf(state, policy, deviceHex);
  if (role.kind === 'admin') return;
  if (role.kind === 'unknown') throw kalimaError('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE', { device: deviceHex });
  for (const prefix of prefixes) {
    if (!subCovers(role.permissions.sub, prefix)) throw kalimaError('KALIMA_ERR_ACCESS_SUB_DENIED', { device: deviceHex, address: prefix });
  }
}

/** The device may see this address through this subscription, by the state now. */
export function visibleTo(state: StateReader, policy: AccessPolicy, deviceHex: string, prefixes: readonly string[], address: string): boolean {
  return inSubscription(prefixes, address) && mayRead(state, policy, deviceHex, address);
}

/** The filtered set: every visible address's last sequence and current entries. */
export function filteredItems(cache: MemCache, visible: (address: string) => boolean): { heads: Array<[string, number]>; entries: CacheEntry[] } {
  const heads: Array<[string, number]> = [];
  const entries: CacheEntry[] = [];
  for (const address of cache.addresses()) {
    if (!visible(address)) continue;
    heads.push([address, cache.lastSequence(address)]);
    entries.push(...cache.entriesAt(address));
  }
  return { heads, entries };
}

/** The digest of a filtered set, as MemCache.restore of those items computes it. */
export function digestOfItems(items: { heads: ReadonlyArray<readonly [string, number]>; entries: readonly CacheEntry[] }): Uint8Array {
  const digest = new LtHash();
  for (const entry of items.entries) digest.add(entryDigestElement(entry));
  for (const [address, lastSequence] of items.heads) digest.add(headDigestElement(address, lastSequence));
  return digest.digest();
}

/** The MemCache entry a committed put makes, from the message and its block's header. */
export function entryOfCommitted(committed: CommittedMessage, header: Pick<BlockHeader, 'height' | 'timeMs'>): CacheEntry {
  const { message } = committed;
  return {
    address: message.address,
    key: message.key,
    value: message.body,
    globalSequence: committed.globalSequence,
    sequence: committed.sequence,
    height: header.height,
    timeMs: header.timeMs,
    ttlSeconds: message.ttlSeconds,
    device: message.device,
    messageHash: messageSigningHash(message),
    props: message.props,
  };
}
