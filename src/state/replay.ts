// Re-executes a block someone else produced (or that storage holds) and checks that it means what
// its header says: every message verifies and executes to the sequences the block assigned, and
// the resulting state digest is the header's. Used by repair, and by followers in the cluster.
import { kalimaError, isKalimaError } from '../errors.ts';
import type { Block } from '../ledger/block.ts';
import { bytesEqual, toHex } from '../ledger/hash.ts';
import { messageSigningHash } from '../ledger/message.ts';
import { verifySchnorr } from '../ledger/signature.ts';
import type { AccessPolicy } from '../access/permissions.ts';
import { executeMessage } from './execute.ts';
import { Draft, type DraftBase, type MemCache, type StateChanges } from './memcache.ts';

/** What a block executes under: the genesis file's admins, chain and validation nodes, and (where known) the chain's block hashes. */
export type ChainPolicy = AccessPolicy & { chain: string; validators: ReadonlySet<string>; masters?: ReadonlySet<string>; blockHashAt?: (height: number) => Uint8Array | undefined };

export interface ReplayResult {
  changes: StateChanges;
  messageHashes: Uint8Array[];
}

export function replayBlock(cache: MemCache, block: Block, policy: ChainPolicy): ReplayResult {
  return executeBlock(cache, block, policy).result;
}

/**
 * The same check on any state (the MemCache, or the sealed Draft of a block not yet applied),
 * returning the Draft it leaves. `signaturesValid`, when given, holds each message's signature
 * check already made (in the verifier pool); otherwise they are checked here. `signingHashes`,
 * when given, are the messages' signing hashes (messageSigningHash) computed for those checks.
 */
export function executeBlock(base: DraftBase, block: Block, policy: ChainPolicy, signaturesValid?: readonly boolean[], signingHashes?: readonly Uint8Array[]): { result: ReplayResult; draft: Draft } {
  const { header } = block;
  const fail = (reason: string, extra: Record<string, unknown> = {}): never => {
    throw kalimaError('KALIMA_ERR_LEDGER_BAD_BLOCK', { height: header.height, reason, ...extra });
  };
  const draft = new Draft(base);
  const context = {
    admins: policy.admins, chain: policy.chain, height: header.height, blockTimeMs: header.timeMs, leaderHex: toHex(header.leader), validators: policy.validators, masters: policy.masters, blockHashAt: policy.blockHashAt,
  };
  const messageHashes: Uint8Array[] = [];
  block.messages.forEach((committed, index) => {
    const hash = signingHashes?.[index] ?? messageSigningHash(committed.message);
    const valid = signaturesValid !== undefined ? signaturesValid[index] === true : verifySchnorr(hash, committed.message.device, committed.message.signature);
    if (!valid) fail('a message signature does not verify', { index });
    let result;
    try {
      result = executeMessage(draft, committed.message, hash, context);
    } catch (error) {
      if (isKalimaError(error)) fail(`message ${index} is not valid here: ${error.code}`, { index, code: error.code });
      throw error;
    }
    if (result.globalSequence !== committed.globalSequence || result.sequence !== committed.sequence || result.previous !== committed.previous) {
      fail('a message carries the wrong sequence', { index });
    }
    messageHashes.push(hash);
  });
  const changes = draft.changes();
  if (!bytesEqual(changes.digest.digest(), header.stateDigest)) fail('stateDigest does not match the state the block produces');
  return { result: { changes, messageHashes }, draft };
}
