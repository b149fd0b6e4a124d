// What the anchoring tests ask of a real bcoin regtest node (regtest/bcoin.ts starts it).
import { parseBlock } from '../../chains/bitcoin/block.ts';
import { toHex } from '../../src/ledger/hash.ts';
import type { BcoinNode } from '../../regtest/bcoin.ts';

/** Every transaction of the best chain from height 1 whose first output is an OP_RETURN of `root` (hex). */
export async function anchorsInChain(bcoin: BcoinNode, root: string): Promise<string[]> {
  const found: string[] = [];
  const tip = await bcoin.rpc.getBlockCount();
  for (let height = 1; height <= tip; height++) {
    const block = parseBlock(await bcoin.rpc.getBlockHex(await bcoin.rpc.getBlockHash(height)));
    for (const [index, tx] of block.transactions.entries()) {
      const script = tx.outs[0]?.script;
      if (script !== undefined && script[0] === 0x6a && toHex(script.subarray(2)) === root) found.push(block.txids[index]!);
    }
  }
  return found;
}
