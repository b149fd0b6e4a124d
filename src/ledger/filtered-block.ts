// A filtered block: a block's signed header with only some of its messages, each with its Merkle
// audit path to header.txRoot. What a client node may see of a block, and all it needs to check
// that what it got is what the leader signed: the leader's signature over the header, the
// hashchain, and each message's inclusion. (Completeness is not provable from one block: a message
// left out shows at the next one on the same address, whose `previous` does not follow.)
import { kalimaError } from '../errors.ts';
import { type Block, type BlockHeader, blockHash } from './block.ts';
import { bytesEqual, toHex } from './hash.ts';
import { merkleLeafHash, merkleProofs, verifyMerkleProof } from './merkle.ts';
import { encodeCommitted } from './message.ts';
import { verifySchnorr } from './signature.ts';
import type { ProvenMessage } from '../net/sync-protocol.ts';

/** The messages at `indexes` (ascending) of `block`, each with its audit path. `leafHashes` may be given once per block. */
export function proveMessages(block: Block, indexes: readonly number[], leafHashes?: readonly Uint8Array[]): ProvenMessage[] {
  const leaves = leafHashes ?? block.messages.map((committed) => merkleLeafHash(encodeCommitted(committed)));
  const paths = merkleProofs(leaves, indexes);
  return indexes.map((index, item) => ({ index, committed: block.messages[index]!, path: paths[item]! }));
}

function badBlock(height: number, reason: string, extra: Record<string, unknown> = {}): Error {
  return kalimaError('KALIMA_ERR_SYNC_BAD_BLOCK', { height, reason, ...extra });
}

/** The header's leader is one of the masters and its signature over the block hash verifies. */
export function verifyLeaderSignature(header: BlockHeader, signature: Uint8Array, masters: readonly Uint8Array[]): void {
  if (!masters.some((master) => bytesEqual(master, header.leader))) throw badBlock(header.height, 'the leader is not one of the genesis masters', { leader: toHex(header.leader) });
  if (!verifySchnorr(blockHash(header), header.leader, signature)) throw badBlock(header.height, 'the leader signature does not verify');
}

/**
 * Checks a filtered block against what the client holds: the next height, the hashchain, the
 * chain, the leader's signature, and every message's audit path against the signed txRoot (indexes
 * ascending, each below the block's message count). Throws KALIMA_ERR_SYNC_BAD_BLOCK.
 */
export function verifyFilteredBlock(
  block: { header: BlockHeader; signature: Uint8Array; messages: readonly ProvenMessage[] },
  expected: { chain: string; height: number; prevHash: Uint8Array; masters: readonly Uint8Array[] },
): void {
  const { header } = block;
  if (header.chain !== expected.chain) throw badBlock(header.height, 'wrong chain', { chain: header.chain });
  if (header.height !== expected.height) throw badBlock(header.height, 'wrong height', { expectedHeight: expected.height });
  if (!bytesEqual(header.prevHash, expected.prevHash)) throw badBlock(header.height, 'prevHash does not match the previous block');
  verifyLeaderSignature(header, block.signature, expected.masters);
  let last = -1;
  for (const proven of block.messages) {
    if (proven.index <= last || proven.index >= header.messageCount) throw badBlock(header.height, 'message indexes must ascend within the block', { index: proven.index });
    last = proven.index;
    const leaf = merkleLeafHash(encodeCommitted(proven.committed));
    if (!verifyMerkleProof(leaf, proven.index, header.messageCount, proven.path, header.txRoot)) throw badBlock(header.height, 'a Merkle proof does not verify against txRoot', { index: proven.index });
  }
}
