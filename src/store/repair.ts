// `kalima repair`: rebuilds the MemCache (and the tip record) from the blocks, re-executing every
// block and checking each header's stateDigest on the way. It cannot mend a corrupt block: a
// single node has no other copy (the cluster will fetch it from a peer).
import { isKalimaError, kalimaError } from '../errors.ts';
import { adminSet } from '../access/permissions.ts';
import { toHex } from '../ledger/hash.ts';
import type { Genesis } from '../access/genesis.ts';
import { MemCache } from '../state/memcache.ts';
import { replayBlock } from '../state/replay.ts';
import type { ChainStore } from './chain-store.ts';
import { type VerifyProgress, checkGenesis, verifyBlocks } from './verify.ts';

export async function repairState(store: ChainStore, genesis: Genesis, onProgress?: (progress: VerifyProgress) => void): Promise<{ height: number; entries: number }> {
  await checkGenesis(store, genesis);
  const tip = await verifyBlocks(store, genesis, undefined, 'repair');
  const policy = { admins: adminSet(genesis.admins), chain: genesis.chain, validators: new Set(genesis.validators.map(toHex)), masters: new Set(genesis.masters.map(toHex)) };
  let cache = new MemCache();
  for (let height = 1; height <= tip.height; height++) {
    const block = await store.getBlock(height);
    if (block === undefined) throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { height, reason: 'the block is missing', repairable: false });
    try {
      cache.apply(replayBlock(cache, block, policy).changes);
    } catch (error) {
      if (!isKalimaError(error)) throw error;
      throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { height, reason: String(error.details.reason ?? error.code), repairable: false });
    }
    if (onProgress !== undefined && (height % 1000 === 0 || height === tip.height)) onProgress({ height, tipHeight: tip.height });
  }
  await store.replaceState(cache, tip);
  // Reload as a start-up would, so the caller knows the repaired store opens.
  cache = await store.loadState(tip.nextGlobalSequence);
  return { height: tip.height, entries: cache.size };
}
