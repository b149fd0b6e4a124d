// The MemCache: the current value of every (address, key), the last sequence of every address,
// the replay windows of the devices, and the incremental digest of the values and sequences. A block is executed
// against a Draft layered on top; the Draft's changes are applied only once the block is durable,
// so readers never see a value that a crash could take back. While one block is being written, the
// next is built on a Draft over the previous block's sealed Draft.
import { assert } from '../errors.ts';
import { toHex } from '../ledger/hash.ts';
import { DEVICES_ADDRESS, ONBOARDING_ADDRESS, decodeReservedRecord } from '../access/records.ts';
import { GRANTS_ADDRESS, parseGrantKey } from '../access/market.ts';
import { type CacheEntry, encodeEntry, entryDigestElement, entryExpansion, expiresAtMs, headDigestElement } from './entry.ts';
import { ExpiryQueue, type ExpiryItem } from './expiry-queue.ts';
import { LtHash } from './lthash.ts';
import type { NonceWindow } from './nonce-window.ts';

export function entryId(address: string, key: string): string {
  return `${address}\u0000${key}`;
}

/** What the executor may read. Implemented by the committed MemCache and by a Draft over it. */
export interface StateReader {
  getEntry(address: string, key: string): CacheEntry | undefined;
  /** -1 when the address has no message yet. */
  lastSequence(address: string): number;
  nonceWindow(deviceHex: string): NonceWindow | undefined;
  /** The onboarding code a device redeemed, if it joined that way. */
  redeemedCodeOf(deviceHex: string): string | undefined;
  readonly nextGlobalSequence: number;
  /**
   * The keys of a device's marketplace grants (/kalima/market/grants). Only the committed MemCache
   * answers: grants widen what a device may read, never what it may write, so execution needs none.
   */
  grantKeysOf?(deviceHex: string): ReadonlySet<string> | undefined;
}

export interface EntryChange {
  address: string;
  key: string;
  before: CacheEntry | undefined;
  after: CacheEntry | undefined;
  /** encodeEntry(after), made once for the digest and the store. */
  afterEncoding: Uint8Array | undefined;
}

export interface StateChanges {
  entries: EntryChange[];
  heads: Array<{ address: string; before: number; after: number }>;
  nonces: Array<{ deviceHex: string; window: NonceWindow }>;
  redeemed: Array<{ deviceHex: string; codeId: string | undefined }>;
  nextGlobalSequence: number;
  digest: LtHash;
}

/** The device a redeemed onboarding entry stands for, if the entry is one. */
function redeemedDeviceOf(entry: CacheEntry | undefined): string | undefined {
  if (entry === undefined || entry.address !== ONBOARDING_ADDRESS) return undefined;
  try {
    const record = decodeReservedRecord(entry.value);
    return record.kind === 'redeemed' ? toHex(record.record.device) : undefined;
  } catch {
    return undefined;
  }
}

/** Stale expiry items tolerated beyond two per entry before they are swept. */
const EXPIRY_STALE_SLACK = 1024;

export class MemCache implements StateReader {
  private readonly byAddress = new Map<string, Map<string, CacheEntry>>();
  private readonly heads = new Map<string, number>();
  private readonly nonces = new Map<string, NonceWindow>();
  private readonly redeemedIndex = new Map<string, string>();
  private readonly grantIndex = new Map<string, Set<string>>();
  private readonly expiries = new ExpiryQueue();
  private digestState = new LtHash();
  private entryCount = 0;
  nextGlobalSequence = 0;

  getEntry(address: string, key: string): CacheEntry | undefined {
    return this.byAddress.get(address)?.get(key);
  }

  lastSequence(address: string): number {
    return this.heads.get(address) ?? -1;
  }

  nonceWindow(deviceHex: string): NonceWindow | undefined {
    return this.nonces.get(deviceHex);
  }

  redeemedCodeOf(deviceHex: string): string | undefined {
    return this.redeemedIndex.get(deviceHex);
  }

  grantKeysOf(deviceHex: string): ReadonlySet<string> | undefined {
    return this.grantIndex.get(deviceHex);
  }

  get size(): number {
    return this.entryCount;
  }

  nonceWindows(): IterableIterator<[string, NonceWindow]> {
    return this.nonces.entries();
  }

  /** Addresses that hold at least one current value or have seen a message. */
  addresses(): string[] {
    return [...this.heads.keys()].sort();
  }

  /**
   * Addresses that hold at least one current value, heads or not: the chain's own derived entries
   * (KLX balances) have no head.
   */
  entryAddresses(): string[] {
    return [...this.byAddress.keys()].sort();
  }

  /** Current values at an address. */
  sizeAt(address: string): number {
    return this.byAddress.get(address)?.size ?? 0;
  }

  entriesAt(address: string): CacheEntry[] {
    return [...(this.byAddress.get(address)?.values() ?? [])].sort((a, b) => a.sequence - b.sequence);
  }

  digest(): Uint8Array {
    return this.digestState.digest();
  }

  cloneDigest(): LtHash {
    return this.digestState.clone();
  }

  /** Items whose deadline has passed, oldest first, at most `max`; stale items are dropped. */
  takeExpired(nowMs: number, max: number): ExpiryItem[] {
    const due: ExpiryItem[] = [];
    while (due.length < max) {
      const top = this.expiries.peek();
      if (top === undefined || top.expiresAtMs > nowMs) break;
      this.expiries.pop();
      if (this.isLiveExpiry(top)) due.push(top);
    }
    return due;
  }

  /** Puts back items taken by takeExpired that did not make it into a block. */
  returnExpired(items: readonly ExpiryItem[]): void {
    for (const item of items) this.expiries.push(item);
  }

  /** The earliest pending deadline, for scheduling the next expiry block. */
  nextExpiryMs(): number | undefined {
    for (;;) {
      const top = this.expiries.peek();
      if (top === undefined) return undefined;
      if (this.isLiveExpiry(top)) return top.expiresAtMs;
      this.expiries.pop();
    }
  }

  private setEntry(entry: CacheEntry): void {
    let keys = this.byAddress.get(entry.address);
    if (keys === undefined) {
      keys = new Map();
      this.byAddress.set(entry.address, keys);
    }
    if (!keys.has(entry.key)) {
      this.entryCount++;
      if (entry.address === GRANTS_ADDRESS) this.indexGrant(entry.key, true);
    }
    keys.set(entry.key, entry);
    const deadline = expiresAtMs(entry);
    if (deadline === undefined) return;
    this.expiries.push({ expiresAtMs: deadline, address: entry.address, key: entry.key, globalSequence: entry.globalSequence });
    // At most one item per entry is live; past twice that, the stale ones go (a sweep after every
    // n pushes or more, so amortised O(log n) a push).
    if (this.expiries.size > 2 * this.entryCount + EXPIRY_STALE_SLACK) this.expiries.retain((item) => this.isLiveExpiry(item));
  }

  private isLiveExpiry(item: ExpiryItem): boolean {
    return this.getEntry(item.address, item.key)?.globalSequence === item.globalSequence;
  }

  /** Deadlines held, live or stale. */
  get expiryCount(): number {
    return this.expiries.size;
  }

  private indexGrant(key: string, present: boolean): void {
    const buyerHex = parseGrantKey(key)?.buyerHex;
    if (buyerHex === undefined) return;
    let keys = this.grantIndex.get(buyerHex);
    if (present) {
      if (keys === undefined) this.grantIndex.set(buyerHex, (keys = new Set()));
      keys.add(key);
    } else if (keys !== undefined) {
      keys.delete(key);
      if (keys.size === 0) this.grantIndex.delete(buyerHex);
    }
  }

  private deleteEntry(address: string, key: string): void {
    const keys = this.byAddress.get(address);
    if (keys?.delete(key)) {
      this.entryCount--;
      if (address === GRANTS_ADDRESS) this.indexGrant(key, false);
    }
    if (keys !== undefined && keys.size === 0) this.byAddress.delete(address);
  }

  /** Applies a durable block's changes. */
  apply(changes: StateChanges): void {
    for (const change of changes.entries) {
      if (change.after === undefined) this.deleteEntry(change.address, change.key);
      else this.setEntry(change.after);
    }
    for (const head of changes.heads) this.heads.set(head.address, head.after);
    for (const { deviceHex, window } of changes.nonces) this.nonces.set(deviceHex, window);
    for (const { deviceHex, codeId } of changes.redeemed) {
      if (codeId === undefined) this.redeemedIndex.delete(deviceHex);
      else this.redeemedIndex.set(deviceHex, codeId);
    }
    this.nextGlobalSequence = changes.nextGlobalSequence;
    this.digestState = changes.digest;
  }

  /** Loads persisted state. The digest is recomputed from the entries, so a corrupt copy shows. */
  static restore(input: {
    entries: Iterable<CacheEntry>;
    heads: Iterable<[string, number]>;
    nonces: Iterable<[string, NonceWindow]>;
    nextGlobalSequence: number;
  }): MemCache {
    const cache = new MemCache();
    for (const entry of input.entries) {
      cache.setEntry(entry);
      cache.digestState.add(entryDigestElement(entry));
      const device = redeemedDeviceOf(entry);
      if (device !== undefined) cache.redeemedIndex.set(device, entry.key);
    }
    for (const [address, sequence] of input.heads) {
      cache.heads.set(address, sequence);
      cache.digestState.add(headDigestElement(address, sequence));
    }
    for (const [deviceHex, window] of input.nonces) cache.nonces.set(deviceHex, window);
    cache.nextGlobalSequence = input.nextGlobalSequence;
    return cache;
  }
}

/** What a Draft builds on: the MemCache, or the sealed Draft of a block not yet durable. */
export interface DraftBase extends StateReader {
  cloneDigest(): LtHash;
}

/** A block's worth of staged changes over the MemCache or over the previous block's Draft. */
export class Draft implements DraftBase {
  private readonly entries = new Map<string, { address: string; key: string; after: CacheEntry | undefined }>();
  private readonly heads = new Map<string, number>();
  private readonly nonces = new Map<string, NonceWindow>();
  private readonly redeemed = new Map<string, string | undefined>();
  /** The digest after this Draft's changes, once changes() has sealed it. */
  private sealedDigest: LtHash | undefined;
  nextGlobalSequence: number;

  constructor(private base: DraftBase) {
    this.nextGlobalSequence = base.nextGlobalSequence;
  }

  /**
   * Reads through `cache` instead of the current base. Only valid once every change between the
   * two (the base Draft's block) has been applied to the cache.
   */
  rebase(cache: MemCache): void {
    this.base = cache;
  }

  cloneDigest(): LtHash {
    assert(this.sealedDigest !== undefined, 'draft: a base Draft must be sealed by changes() first');
    return this.sealedDigest.clone();
  }

  getEntry(address: string, key: string): CacheEntry | undefined {
    const staged = this.entries.get(entryId(address, key));
    return staged !== undefined ? staged.after : this.base.getEntry(address, key);
  }

  lastSequence(address: string): number {
    return this.heads.get(address) ?? this.base.lastSequence(address);
  }

  nonceWindow(deviceHex: string): NonceWindow | undefined {
    return this.nonces.get(deviceHex) ?? this.base.nonceWindow(deviceHex);
  }

  redeemedCodeOf(deviceHex: string): string | undefined {
    return this.redeemed.has(deviceHex) ? this.redeemed.get(deviceHex) : this.base.redeemedCodeOf(deviceHex);
  }

  private trackRedemption(before: CacheEntry | undefined, after: CacheEntry | undefined): void {
    const removed = redeemedDeviceOf(before);
    if (removed !== undefined) this.redeemed.set(removed, undefined);
    const added = redeemedDeviceOf(after);
    if (added !== undefined && after !== undefined) this.redeemed.set(added, after.key);
  }

  putEntry(entry: CacheEntry): void {
    const before = this.getEntry(entry.address, entry.key);
    if (entry.address === ONBOARDING_ADDRESS || entry.address === DEVICES_ADDRESS) this.trackRedemption(before, entry);
    this.entries.set(entryId(entry.address, entry.key), { address: entry.address, key: entry.key, after: entry });
  }

  deleteEntry(address: string, key: string): void {
    const before = this.getEntry(address, key);
    assert(before !== undefined, `draft: delete of a missing entry ${address} ${key}`);
    if (address === ONBOARDING_ADDRESS) this.trackRedemption(before, undefined);
    this.entries.set(entryId(address, key), { address, key, after: undefined });
  }

  setLastSequence(address: string, sequence: number): void {
    this.heads.set(address, sequence);
  }

  setNonceWindow(deviceHex: string, window: NonceWindow): void {
    this.nonces.set(deviceHex, window);
  }

  /**
   * The net changes of the block and the digest after them: two LtHash steps per touched item.
   * Seals the Draft: it may then serve as the base of the next block's Draft, and must not change.
   */
  changes(): StateChanges {
    assert(this.sealedDigest === undefined, 'draft: changes() of a sealed Draft');
    const digest = this.base.cloneDigest();
    const entries: EntryChange[] = [];
    for (const { address, key, after } of this.entries.values()) {
      const before = this.base.getEntry(address, key);
      if (before === after) continue;
      // The replaced entry's expansion was usually kept when it was written; the new one's is kept.
      if (before !== undefined) digest.removeExpansion(entryExpansion(before));
      const afterEncoding = after === undefined ? undefined : encodeEntry(after);
      if (after !== undefined) digest.addExpansion(entryExpansion(after, afterEncoding, true));
      entries.push({ address, key, before, after, afterEncoding });
    }
    const heads: StateChanges['heads'] = [];
    for (const [address, after] of this.heads) {
      const before = this.base.lastSequence(address);
      if (before >= 0) digest.remove(headDigestElement(address, before));
      digest.add(headDigestElement(address, after));
      heads.push({ address, before, after });
    }
    // Replay windows are not in the digest (see README, design notes): they follow from the blocks,
    // followers re-execute them, and the store guards each record with a checksum.
    const nonces: StateChanges['nonces'] = [...this.nonces].map(([deviceHex, window]) => ({ deviceHex, window }));
    this.sealedDigest = digest;
    return {
      entries,
      heads,
      nonces,
      redeemed: [...this.redeemed].map(([deviceHex, codeId]) => ({ deviceHex, codeId })),
      nextGlobalSequence: this.nextGlobalSequence,
      digest,
    };
  }
}
