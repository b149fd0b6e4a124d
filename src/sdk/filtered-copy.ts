// A client node's copy of what it may see: a MemCache of the visible addresses under its prefixes,
// the height and hash of the last header it applied, and the digest at each recent height. Pure:
// snapshots and filtered blocks come in, are checked, and either change the copy or throw a coded
// error and leave it as it was. The links, timers and retries are sync.ts's.
import { kalimaError } from '../errors.ts';
import { type Genesis, genesisHash } from '../access/genesis.ts';
import { type BlockHeader, blockHash } from '../ledger/block.ts';
import { verifyFilteredBlock, verifyLeaderSignature } from '../ledger/filtered-block.ts';
import { bytesEqual, toHex } from '../ledger/hash.ts';
import type { ProvenMessage } from '../net/sync-protocol.ts';
import type { CacheEntry } from '../state/entry.ts';
import { entryOfCommitted, inSubscription } from '../state/filtered.ts';
import { Draft, MemCache } from '../state/memcache.ts';

export type CopyChange = { kind: 'put'; address: string; key: string; entry: CacheEntry } | { kind: 'remove'; address: string; key: string };

/** A snapshot as it arrived, whole. */
export interface Snapshot {
  header: BlockHeader | undefined;
  signature: Uint8Array | undefined;
  /** The digest the master announced for these items. */
  digest: Uint8Array;
  heads: ReadonlyArray<[string, number]>;
  entries: readonly CacheEntry[];
}

const DIGESTS_KEPT = 128;

export class FilteredCopy {
  private cache = new MemCache();
  private heightValue = 0;
  private tipHash: Uint8Array;
  private readonly genesisHash: Uint8Array;
  /** The digest (hex) after each of the last DIGESTS_KEPT heights applied, to compare with a master's at the same height. */
  private readonly digests = new Map<number, string>();

  constructor(private readonly genesis: Genesis, private readonly prefixes: readonly string[]) {
    this.genesisHash = genesisHash(genesis);
    this.tipHash = this.genesisHash;
    this.recordDigest();
  }

  get height(): number {
    return this.heightValue;
  }

  get(address: string, key: string): CacheEntry | undefined {
    return this.cache.getEntry(address, key);
  }

  entriesAt(address: string): CacheEntry[] {
    return this.cache.entriesAt(address);
  }

  addresses(): string[] {
    return this.cache.addresses();
  }

  digest(): Uint8Array {
    return this.cache.digest();
  }

  /** The digest (hex) the copy had at `height`, if that height is recent enough to be kept. */
  digestAt(height: number): string | undefined {
    return this.digests.get(height);
  }

  /**
   * Replaces the copy with a snapshot, once it checks: the header's leader signature, every item
   * under the prefixes, and the items giving the announced digest. Returns what changed.
   */
  restore(snapshot: Snapshot): CopyChange[] {
    const bad = (reason: string, extra: Record<string, unknown> = {}): Error => kalimaError('KALIMA_ERR_SYNC_BAD_BLOCK', { snapshot: true, reason, ...extra });
    const { header } = snapshot;
    if (header !== undefined) {
      if (header.chain !== this.genesis.chain) throw bad('wrong chain', { chain: header.chain });
      if (snapshot.signature === undefined) throw bad('a header without its signature');
      verifyLeaderSignature(header, snapshot.signature, this.genesis.masters);
    }
    for (const [address] of snapshot.heads) if (!inSubscription(this.prefixes, address)) throw bad('an address outside the subscription', { address });
    for (const entry of snapshot.entries) if (!inSubscription(this.prefixes, entry.address)) throw bad('an entry outside the subscription', { address: entry.address });
    const cache = MemCache.restore({ entries: snapshot.entries, heads: snapshot.heads, nonces: [], nextGlobalSequence: 0 });
    if (!bytesEqual(cache.digest(), snapshot.digest)) throw bad('the items do not give the digest the master announced');
    const changes = differences(this.cache, cache);
    this.cache = cache;
    this.heightValue = header?.height ?? 0;
    this.tipHash = header === undefined ? this.genesisHash : blockHash(header);
    this.digests.clear();
    this.recordDigest();
    return changes;
  }

  /**
   * Applies the next filtered block once it checks (verifyFilteredBlock, then each message continuing
   * its address); throws KALIMA_ERR_SYNC_BAD_BLOCK or KALIMA_ERR_SYNC_GAP, changing nothing, if not.
   */
  apply(block: { header: BlockHeader; signature: Uint8Array; messages: readonly ProvenMessage[] }): CopyChange[] {
    const { header } = block;
    verifyFilteredBlock(block, { chain: this.genesis.chain, height: this.heightValue + 1, prevHash: this.tipHash, masters: this.genesis.masters });
    const draft = new Draft(this.cache);
    const changes: CopyChange[] = [];
    for (const { committed } of block.messages) {
      const { address, key } = committed.message;
      if (!inSubscription(this.prefixes, address)) throw kalimaError('KALIMA_ERR_SYNC_BAD_BLOCK', { height: header.height, reason: 'a message outside the subscription', address });
      // Kalima's continuity check: each message follows the last one held at its address.
      const held = draft.lastSequence(address);
      if (committed.previous !== held || committed.sequence !== held + 1) {
        throw kalimaError('KALIMA_ERR_SYNC_GAP', { height: header.height, address, previous: committed.previous, sequence: committed.sequence, held });
      }
      draft.setLastSequence(address, committed.sequence);
      if (committed.message.body.length === 0) {
        if (draft.getEntry(address, key) === undefined) throw kalimaError('KALIMA_ERR_SYNC_GAP', { height: header.height, address, key, reason: 'a delete of a value this copy does not hold' });
        draft.deleteEntry(address, key);
        changes.push({ kind: 'remove', address, key });
      } else {
        const entry = entryOfCommitted(committed, header);
        draft.putEntry(entry);
        changes.push({ kind: 'put', address, key, entry });
      }
    }
    this.cache.apply(draft.changes());
    this.heightValue = header.height;
    this.tipHash = blockHash(header);
    this.recordDigest();
    return changes;
  }

  private recordDigest(): void {
    this.digests.set(this.heightValue, toHex(this.cache.digest()));
    if (this.digests.size > DIGESTS_KEPT) this.digests.delete(this.digests.keys().next().value!);
  }
}

/** What turning `before` into `after` changed, as put and remove events. */
function differences(before: MemCache, after: MemCache): CopyChange[] {
  const changes: CopyChange[] = [];
  for (const address of new Set([...before.addresses(), ...after.addresses()])) {
    const old = new Map(before.entriesAt(address).map((entry) => [entry.key, entry]));
    for (const entry of after.entriesAt(address)) {
      if (old.get(entry.key)?.globalSequence !== entry.globalSequence) changes.push({ kind: 'put', address, key: entry.key, entry });
      old.delete(entry.key);
    }
    for (const key of old.keys()) changes.push({ kind: 'remove', address, key });
  }
  return changes;
}
