// The node's MMR nodes on disk, for anchor proofs of any block under any later tip. The nodes are
// derived data: they are built lazily from the block hashes, up to the height a proof needs.
//
// Layout, inside the caller's prefix (one table of the node's KvStore):
//   prefix, level (u8), index (u64 big-endian)  -> the 32-byte node hash
//   prefix, 0xff                                -> version (u8 = 1), leaf count (u64)
// Each batch writes its new nodes and the new leaf count together, and KvStore batches are atomic,
// so after a crash the store holds a prefix of the chain's MMR: the lost part of an extension is
// redone by the next one. A store that does not match the chain (its last leaf is not the chain's
// block at that height) is detected when it is opened.
import { assert, kalimaError } from '../src/errors.ts';
import { bytesEqual, concatBytes, toHex } from '../src/ledger/hash.ts';
import type { KvOperation, KvStore } from '../src/store/kv.ts';
import { readU64, u64 } from '../src/store/keys.ts';
import { bagPeaks, mmrNodeHash } from '../src/ledger/mmr.ts';
import { type MmrNodeId, assembleMmrPath, mmrPeaks, mmrProofNodes } from './mmr.ts';

const FORMAT_VERSION = 1;
const META_MARKER = 0xff;
const BATCH_LEAVES_DEFAULT = 4096;

export interface MmrStoreOptions {
  kv: KvStore;
  /** The key prefix of this store's table; nothing else may write under it. */
  prefix: Uint8Array;
  /** The hash of the block at `height` (1 for the first block), or undefined beyond the tip. */
  blockHashAt(height: number): Promise<Uint8Array | undefined>;
  /** Leaves per atomic batch while extending. */
  batchLeaves?: number;
}

interface PeakHash extends MmrNodeId {
  hash: Uint8Array;
}

export interface MmrPathAnswer {
  /** Tagged-hash path from block `height`'s hash to `mmrRoot` (empty when the block is the tip). */
  path: Uint8Array[];
  /** The root of blocks 1 … tipHeight-1: what the tip header's mmrRoot must be. */
  mmrRoot: Uint8Array;
}

export class MmrStore {
  private extending: Promise<void> = Promise.resolve();

  private constructor(
    private readonly options: MmrStoreOptions,
    private leaves: number,
    /** The peaks of the stored MMR, leftmost first: all that appending needs. */
    private peaks: PeakHash[],
  ) {}

  static async open(options: MmrStoreOptions): Promise<MmrStore> {
    assert(options.prefix.length > 0, 'mmr-store: a key prefix is required');
    const meta = await options.kv.get(metaKey(options.prefix));
    let leafCount = 0;
    if (meta !== undefined) {
      if (meta.length !== 9 || meta[0] !== FORMAT_VERSION) throw corrupt('the leaf count record is unreadable', { record: toHex(meta) });
      leafCount = readU64(meta, 1);
    }
    const peaks: PeakHash[] = [];
    for (const peak of mmrPeaks(leafCount)) {
      const hash = await options.kv.get(nodeKey(options.prefix, peak));
      if (hash === undefined || hash.length !== 32) throw corrupt('a peak node is missing', { level: peak.level, index: peak.index, leafCount });
      peaks.push({ level: peak.level, index: peak.index, hash });
    }
    if (leafCount > 0) {
      const lastLeaf = await options.kv.get(nodeKey(options.prefix, { level: 0, index: leafCount - 1 }));
      const chainHash = await options.blockHashAt(leafCount);
      if (lastLeaf === undefined || chainHash === undefined || !bytesEqual(lastLeaf, chainHash)) {
        throw corrupt('the anchor MMR does not match the chain: its last leaf is not the block at that height', { height: leafCount });
      }
    }
    return new MmrStore(options, leafCount, peaks);
  }

  /** Leaves stored: the MMR covers blocks 1 … leafCount. */
  get leafCount(): number {
    return this.leaves;
  }

  /** Extends the stored MMR to at least `leafCount` leaves (blocks 1 … leafCount). */
  extendTo(leafCount: number): Promise<void> {
    assert(Number.isSafeInteger(leafCount) && leafCount >= 0, `mmr-store: leaf count ${leafCount}`);
    const run = this.extending.then(() => this.extendNow(leafCount));
    this.extending = run.catch(() => undefined);
    return run;
  }

  /** The root of blocks 1 … leafCount (the mmrRoot of block leafCount+1). */
  async root(leafCount: number): Promise<Uint8Array> {
    await this.extendTo(leafCount);
    const hashes: Uint8Array[] = [];
    for (const peak of mmrPeaks(leafCount)) hashes.push(await this.node(peak));
    return bagPeaks(hashes);
  }

  /** The path from block `height` to the mmrRoot of block `tipHeight` (tipHeight >= height). */
  async proof(height: number, tipHeight: number): Promise<MmrPathAnswer> {
    assert(Number.isSafeInteger(height) && height >= 1 && Number.isSafeInteger(tipHeight) && tipHeight >= height, `mmr-store: block ${height} under tip ${tipHeight}`);
    const mmrRoot = await this.root(tipHeight - 1);
    if (tipHeight === height) return { path: [], mmrRoot };
    const nodes = mmrProofNodes(height - 1, tipHeight - 1);
    const hashes = new Map<string, Uint8Array>();
    for (const node of [...nodes.siblings, ...nodes.rightPeaks, ...nodes.leftPeaks]) hashes.set(idOf(node), await this.node(node));
    return { path: assembleMmrPath(nodes, (node) => hashes.get(idOf(node))!), mmrRoot };
  }

  private async node(node: MmrNodeId): Promise<Uint8Array> {
    const hash = await this.options.kv.get(nodeKey(this.options.prefix, node));
    if (hash === undefined || hash.length !== 32) throw corrupt('a node is missing', { level: node.level, index: node.index, leafCount: this.leaves });
    return hash;
  }

  private async extendNow(target: number): Promise<void> {
    const batchLeaves = this.options.batchLeaves ?? BATCH_LEAVES_DEFAULT;
    while (this.leaves < target) {
      const end = Math.min(target, this.leaves + batchLeaves);
      // The frontier is copied and committed only once its batch is written, so a failed batch
      // leaves this object as the disk is.
      const peaks = this.peaks.slice();
      const operations: KvOperation[] = [];
      const put = (node: PeakHash): void => void operations.push({ type: 'put', key: nodeKey(this.options.prefix, node), value: node.hash });
      for (let leafIndex = this.leaves; leafIndex < end; leafIndex++) {
        const hash = await this.options.blockHashAt(leafIndex + 1);
        if (hash === undefined) throw kalimaError('KALIMA_ERR_LEDGER_NOT_FOUND', { height: leafIndex + 1, reason: 'the anchor MMR needs a block the chain does not have' });
        assert(hash.length === 32, 'mmr-store: a block hash is 32 bytes');
        let node: PeakHash = { level: 0, index: leafIndex, hash };
        put(node);
        while (peaks.length > 0 && peaks[peaks.length - 1]!.level === node.level) {
          const left = peaks.pop()!;
          node = { level: node.level + 1, index: left.index / 2, hash: mmrNodeHash(left.hash, node.hash) };
          put(node);
        }
        peaks.push(node);
      }
      operations.push({ type: 'put', key: metaKey(this.options.prefix), value: concatBytes(Uint8Array.of(FORMAT_VERSION), u64(end)) });
      // Not synced: the nodes can always be rebuilt from the blocks, and LevelDB recovers to a
      // prefix of the batches after a crash.
      await this.options.kv.batch(operations, { sync: false });
      this.peaks = peaks;
      this.leaves = end;
    }
  }
}

function nodeKey(prefix: Uint8Array, { level, index }: MmrNodeId): Uint8Array {
  return concatBytes(prefix, Uint8Array.of(level), u64(index));
}

function metaKey(prefix: Uint8Array): Uint8Array {
  return concatBytes(prefix, Uint8Array.of(META_MARKER));
}

function idOf({ level, index }: MmrNodeId): string {
  return `${level}:${index}`;
}

function corrupt(reason: string, details: Record<string, unknown>) {
  return kalimaError('KALIMA_ERR_STORE_CORRUPT', { store: 'anchor MMR', reason, ...details });
}
