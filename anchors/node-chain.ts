// The chain a running node serves, as the anchor engine sees it: its tip, whether it has news
// since the last commitment, and its anchor records, written with the node's key.
import { isKalimaError, kalimaError } from '../src/errors.ts';
import { signMessage } from '../src/ledger/message.ts';
import type { KeyPair } from '../src/ledger/signature.ts';
import type { Rng, Scheduler } from '../src/ports.ts';
import type { KalimaNode } from '../src/node/node.ts';
import { ANCHORS_ADDRESS, type AnchorRecord, anchorRecordMessage, blockHasNews, decodeAnchorBody } from '../src/state/anchor-record.ts';
import type { AnchoredChain } from './engine.ts';

/** How far back from the tip a node looks, when it starts, for the last block with news. */
const NEWS_LOOKBACK_BLOCKS = 1_000;

/** How long a record may take to be committed and applied here before the pass gives up (and tries again at the next). */
const RECORD_TIMEOUT_MS = 60_000;

export class NodeChain implements AnchoredChain {
  readonly chain: string;
  /** Heights of the blocks applied since this process started that hold more than anchor records, ascending. */
  private newsHeights: number[] = [];
  private readonly unsubscribe: () => void;

  private constructor(private readonly node: KalimaNode, private readonly nodeKey: KeyPair, private readonly rng: Rng, private readonly scheduler: Scheduler, private readonly lastNewsBeforeStart: number) {
    this.chain = node.chain;
    this.unsubscribe = node.onBlock((committed) => {
      if (blockHasNews(committed.block)) this.newsHeights.push(committed.block.header.height);
    });
  }

  /**
   * Finds the last block with news before this process started (a block of anchor records only is
   * not news), so a restart does not anchor the records of the last anchor. Further back than
   * NEWS_LOOKBACK_BLOCKS, the block there counts as news.
   */
  static async open(node: KalimaNode, nodeKey: KeyPair, rng: Rng, scheduler: Scheduler): Promise<NodeChain> {
    const tip = node.height;
    let lastNews = Math.max(0, tip - NEWS_LOOKBACK_BLOCKS);
    for (let height = tip; height > Math.max(0, tip - NEWS_LOOKBACK_BLOCKS); height--) {
      const block = await node.store.getBlock(height);
      if (block === undefined || blockHasNews(block)) {
        lastNews = height;
        break;
      }
    }
    return new NodeChain(node, nodeKey, rng, scheduler, lastNews);
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
    const write = async (): Promise<void> => {
      try {
        const receipt = await this.node.submit(message);
        await this.node.whenApplied(receipt.height);
      } catch (error) {
        // Taken already (an answer lost on the way back from the leader): it is on the chain.
        if (!isKalimaError(error, 'KALIMA_ERR_LEDGER_NONCE_REPLAYED')) throw error;
      }
    };
    let timer: unknown;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.scheduler.setTimeout(() => reject(kalimaError('KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN', { address: ANCHORS_ADDRESS, reason: `the record was not applied within ${RECORD_TIMEOUT_MS / 1000} s` })), RECORD_TIMEOUT_MS);
    });
    try {
      await Promise.race([write(), timeout]);
    } finally {
      this.scheduler.clearTimeout(timer);
    }
  }

  close(): void {
    this.unsubscribe();
  }
}
