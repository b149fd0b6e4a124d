// Start-up checks: the stored hashchain from block 1 to the tip (encoding, heights, prevHash,
// mmrRoot, txRoot, leader signatures) and the persisted MemCache against the tip's stateDigest.
// A node that fails them refuses to serve and names the bad height.
import { kalimaError, isKalimaError } from '../errors.ts';
import { blockHash, checkBlockIntegrity, decodeBlock } from '../ledger/block.ts';
import { bytesEqual, toHex } from '../ledger/hash.ts';
import { EMPTY_MMR, type MmrState, mmrAppend, mmrRoot } from '../ledger/mmr.ts';
import { type Genesis, genesisHash } from '../access/genesis.ts';
import { LtHash } from '../state/lthash.ts';
import type { MemCache } from '../state/memcache.ts';
import type { ChainStore, TipRecord } from './chain-store.ts';

export interface VerifyProgress {
  height: number;
  tipHeight: number;
}

export function emptyTip(genesis: Genesis): TipRecord {
  return { height: 0, hash: genesisHash(genesis), timeMs: genesis.timeMs, mmr: EMPTY_MMR, nextGlobalSequence: 0, stateDigest: new LtHash().digest() };
}

/**
 * The layout and encodings of the store: blocks, indexes, MemCache entries and the digest's
 * definition. A store of another format is refused by name rather than reported as corrupt.
 */
export const STORE_FORMAT = 2;

/** Binds a data directory to its genesis and format on first use, and refuses another later. */
export async function checkGenesis(store: ChainStore, genesis: Genesis): Promise<void> {
  const expected = genesisHash(genesis);
  const stored = await store.readGenesisHash();
  if (stored === undefined) {
    await store.initialise(expected, STORE_FORMAT);
    return;
  }
  if (!bytesEqual(stored, expected)) throw kalimaError('KALIMA_ERR_STORE_GENESIS_MISMATCH', { stored: toHex(stored), genesis: toHex(expected) });
  const format = await store.readFormat();
  if (format !== STORE_FORMAT) throw kalimaError('KALIMA_ERR_STORE_FORMAT', { format: format ?? 'unrecorded (an early development build)', expected: STORE_FORMAT });
}

function corrupt(height: number, reason: string, repairable: boolean, extra: Record<string, unknown> = {}): never {
  throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { height, reason, repairable, ...extra }, `the stored chain is corrupt at height ${height}: ${reason}`);
}

/** Checks every stored block against its predecessor; returns the tip the blocks imply. */
export async function verifyBlocks(
  store: ChainStore,
  genesis: Genesis,
  onProgress?: (progress: VerifyProgress) => void,
  /** 'repair' ignores the tip record and takes the blocks as they run from height 1. */
  mode: 'serve' | 'repair' = 'serve',
): Promise<TipRecord> {
  let recorded: TipRecord;
  if (mode === 'serve') {
    try {
      recorded = (await store.readTip()) ?? emptyTip(genesis);
    } catch {
      corrupt(0, 'the tip record cannot be read', true);
    }
  } else {
    let height = 0;
    while ((await store.getBlockBytes(height + 1)) !== undefined) height++;
    recorded = { ...emptyTip(genesis), height };
  }
  const masters = new Set(genesis.masters.map(toHex));
  let tip = emptyTip(genesis);
  let mmr: MmrState = EMPTY_MMR;
  for (let height = 1; height <= recorded.height; height++) {
    const bytes = await store.getBlockBytes(height);
    if (bytes === undefined) corrupt(height, 'the block is missing', false);
    let block;
    try {
      block = decodeBlock(bytes);
      checkBlockIntegrity(block, { chain: genesis.chain, height, prevHash: tip.hash, mmrRoot: mmrRoot(mmr) });
    } catch (error) {
      if (!isKalimaError(error)) throw error;
      corrupt(height, String(error.details.reason ?? error.message), false, { code: error.code });
    }
    if (!masters.has(toHex(block.header.leader))) corrupt(height, 'the block was signed by a key that is not a master', false);
    if (block.header.timeMs < tip.timeMs) corrupt(height, 'the block time goes backwards', false);
    const hash = blockHash(block.header);
    mmr = mmrAppend(mmr, hash);
    const last = block.messages[block.messages.length - 1];
    tip = {
      height, hash, timeMs: block.header.timeMs, mmr,
      nextGlobalSequence: last === undefined ? tip.nextGlobalSequence : last.globalSequence + 1,
      stateDigest: block.header.stateDigest,
    };
    if (onProgress !== undefined && (height % 1000 === 0 || height === recorded.height)) onProgress({ height, tipHeight: recorded.height });
  }
  if (mode === 'repair') return tip;
  if (!bytesEqual(tip.hash, recorded.hash) || tip.nextGlobalSequence !== recorded.nextGlobalSequence) {
    corrupt(recorded.height, 'the tip record does not match the blocks', true);
  }
  // Blocks and tip are written in one batch, so a block beyond the tip means the tip record was
  // lost or damaged; the blocks themselves can rebuild it.
  if (await store.getBlockBytes(recorded.height + 1)) corrupt(recorded.height + 1, 'a block is stored beyond the tip record', true);
  return tip;
}

/** Full start-up check; returns the tip and the MemCache to serve from. */
export async function openVerified(store: ChainStore, genesis: Genesis, onProgress?: (progress: VerifyProgress) => void): Promise<{ tip: TipRecord; cache: MemCache }> {
  await checkGenesis(store, genesis);
  const tip = await verifyBlocks(store, genesis, onProgress);
  let cache: MemCache;
  try {
    cache = await store.loadState(tip.nextGlobalSequence);
  } catch (error) {
    if (!isKalimaError(error)) throw error;
    corrupt(tip.height, `the persisted MemCache cannot be read: ${error.code}`, true);
  }
  if (!bytesEqual(cache.digest(), tip.stateDigest)) corrupt(tip.height, 'the persisted MemCache does not match the stateDigest of the tip', true);
  return { tip, cache };
}
