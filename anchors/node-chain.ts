// The chain a running node serves, as the anchor engine sees it: its tip, whether it has news
// since the last commitment, and its anchor records, written with the node's key.
import { isKalimaError } from '../src/errors.ts';
import { signMessage } from '../src/ledger/message.ts';
import type { KeyPair } from '../src/ledger/signature.ts';
import type { Rng } from '../src/ports.ts';
import type { Block } from '../src/ledger/block.ts';
import type { KalimaNode } from '../src/node/node.ts';
import { ANCHORS_ADDRESS, type AnchorRecord, anchorRecordMessage, decodeAnchorBody } from '../src/state/anchor-record.ts';
import type { AnchoredChain } from './engine.ts';

/** How far back from the tip a node looks, when it starts, for the last block with news. */
const NEWS_LOOKBACK_BLOCKS = 1_000;

const hasNews = (block: Block): boolean => block.messages.some((message) => message.message.address !== ANCHORS_ADDRESS);

export class NodeChain implements AnchoredChain {
  readonly chain: string;
  /** Heights of the blocks applied since this process started that hold more than anchor records, ascending. */
  private newsHeights: number[] = [];
  private readonly unsubscribe: () => void;

  private constructor(private readonly node: KalimaNode, private readonly nodeKey: KeyPair, private readonly rng: Rng, private readonly lastNewsBeforeStart: number) {
    this.chain = node.chain;
    this.unsubscribe = node.onBlock((committed) => {
      if (hasNews(committed.block)) this.newsHeights.push(committed.block.header.height);
    });
  }

  /**
   * Finds the last block with news before this process started (a block of anchor records only is
   * not news), so a restart does not anchor the records of the last anchor. Further back than
   * NEWS_LOOKBACK_BLOCKS, the block there counts as news.
   */
  static async open(node: KalimaNode, nodeKey: KeyPair, rng: Rng): Promise<NodeChain> {
    const tip = node.height;
    let lastNews = Math.max(0, tip - NEWS_LOOKBACK_BLOCKS);
    for (let height = tip; height > Math.max(0, tip - NEWS_LOOKBACK_BLOCKS); height--) {
      const block = await node.store.getBlock(height);
      if (block === undefined || hasNews(block)) {
        lastNews = height;
        break;
      }
    }
    return new NodeChain(node, nodeKey, rng, lastNews);
  }

  tip(): { height: number; hash: Uint8Array } {
    const tip = this.node.tipRecord;
    return { height: tip.height, hash: tip.hash };
  }

  /** Blocks with news above `height`; those from before this process started count as one at most. */
  newsSince(height: number): number {
    while (this.newsHeights.length > 0 && this.newsHeights[0]! <= height) this.newsHeights.shift();
    return (this.lastNewsBeforeStart > height ? 1 : 0) + this.newsHeights.length;
  }

  recordOf(root: string): AnchorRecord | undefined {
    const entry = this.node.cache.getEntry(ANCHORS_ADDRESS, root);
    return entry === undefined ? undefined : decodeAnchorBody(entry.value);
  }

  /** Every record this chain holds. */
  records(): AnchorRecord[] {
    return this.node.cache.entriesAt(ANCHORS_ADDRESS).map((entry) => decodeAnchorBody(entry.value));
  }

  async writeRecord(record: AnchorRecord, nonce: number): Promise<void> {
    const message = signMessage(anchorRecordMessage(this.chain, this.nodeKey.publicKey, record, nonce), this.nodeKey.secretKey, this.rng.bytes(32));
    try {
      const receipt = await this.node.submit(message);
      await this.node.whenApplied(receipt.height);
    } catch (error) {
      // Taken already (an answer lost on the way back from the leader): it is on the chain.
      if (!isKalimaError(error, 'KALIMA_ERR_LEDGER_NONCE_REPLAYED')) throw error;
    }
  }

  close(): void {
    this.unsubscribe();
  }
}
