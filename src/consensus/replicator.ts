// The block producer's view of consensus (node.ts's BlockReplicator) over a RaftRuntime: a leader's
// blocks are proposed as log entries, one block each, and count as committed once Raft commits them.
//
// The runtime's `apply` must call `applied()` for every committed entry, and skip the entries
// `isOwn()` reports: the node's own pipeline makes those durable and answers their receipts once
// `replicate()` reports them committed. Everything else committed is a block the block gate admitted (or, for a
// block this node produced and abandoned when it lost the leadership, one to admit then).
import type { BlockReplicator } from '../node/node.ts';
import type { BlockWrite } from '../store/chain-store.ts';
import type { RaftRuntime } from './runtime.ts';
import { kalimaError } from '../errors.ts';

interface Proposal {
  status: 'pending' | 'committed' | 'refused';
  /** Resolves (never rejects) once the status is known. */
  settled: Promise<void>;
}

export class RaftReplicator implements BlockReplicator {
  /** The entries this process proposed and will apply itself, by identity (Raft hands the same bytes back), with the tip after each. */
  private readonly own = new WeakMap<Uint8Array, BlockWrite['tip']>();
  /** The proposal of each block proposed, by identity: a block left over from one write is not proposed again by the next. */
  private readonly proposals = new WeakMap<Uint8Array, Proposal>();
  private appliedIndex: number;
  private termStart: { term: number; index: number } | undefined;
  /** The term in which this node was last told it may produce. */
  private producingTerm = -1;

  /** `onMayProduce` is called when this node becomes able to produce (the node's resumeProducing). */
  constructor(private readonly runtime: RaftRuntime, appliedIndex: number, private readonly onMayProduce: () => void, private readonly apis: ReadonlyMap<string, string> = new Map()) {
    this.appliedIndex = appliedIndex;
  }

  /** Why this node cannot take writes at all (its consensus stopped), if so. */
  unavailable(): unknown {
    return this.runtime.isStopped ? (this.runtime.failureReason ?? kalimaError('KALIMA_ERR_NODE_STOPPING')) : undefined;
  }

  /** A master's API URL, if the configuration names it. */
  apiOf(id: string): string | undefined {
    return this.apis.get(id);
  }

  leaderApi(): string | undefined {
    const leader = this.runtime.raft.leader;
    return leader === undefined ? undefined : this.apis.get(leader);
  }

  get term(): number {
    return this.runtime.raft.term;
  }

  leaderHint(): string | undefined {
    return this.runtime.raft.leader;
  }

  /**
   * A leader produces only once the first entry of its own term is applied here: every entry of
   * earlier terms is then committed and applied, so the node's durable tip is the log's.
   */
  mayProduce(): boolean {
    const { raft } = this.runtime;
    if (raft.role !== 'leader' || this.runtime.isStopped) return false;
    if (this.termStart === undefined || this.termStart.term !== raft.term) {
      let index = raft.lastIndex();
      while (index > raft.firstIndex() && raft.termAt(index - 1) === raft.term) index--;
      this.termStart = { term: raft.term, index };
    }
    return this.appliedIndex >= this.termStart.index;
  }

  /**
   * Proposes the blocks not yet proposed, waits for the first one's outcome, and resolves with the
   * prefix known committed at that moment. It does not wait for the rest: the runtime applies a
   * committed own block only once the node's pipeline has written it, so waiting here for a later
   * entry (one that commits in a later Ready) would stall the Raft loop behind this write.
   */
  async replicate(blocks: readonly BlockWrite[]): Promise<{ committed: number; lost: boolean }> {
    const proposals = blocks.map((block) => this.proposalOf(block));
    if (proposals.length === 0) return { committed: 0, lost: false };
    await proposals[0]!.settled;
    // Entries that committed in the same Ready as the first have settled by now (their handlers
    // ran in order, before this continuation). A block after one that did not commit cannot have
    // committed either: entries commit in order.
    let committed = 0;
    while (committed < proposals.length && proposals[committed]!.status === 'committed') committed++;
    const lost = committed < proposals.length && proposals[committed]!.status === 'refused';
    return { committed, lost };
  }

  /** Proposes a block ahead of its replicate() call (the node's pipelining). */
  propose(block: BlockWrite): void {
    this.proposalOf(block);
  }

  private proposalOf(block: BlockWrite): Proposal {
    const known = this.proposals.get(block.bytes);
    if (known !== undefined) return known;
    this.own.set(block.bytes, block.tip);
    const proposal: Proposal = { status: 'pending', settled: Promise.resolve() };
    // The first handler on the proposal: its status is set before anyone awaiting `settled` runs.
    proposal.settled = this.runtime.propose(block.bytes).then(
      () => {
        proposal.status = 'committed';
      },
      () => {
        // One that does not commit here is no longer this node's to apply, from that moment: if the
        // next leader commits it, it comes back as anyone else's block.
        proposal.status = 'refused';
        this.own.delete(block.bytes);
      },
    );
    this.proposals.set(block.bytes, proposal);
    return proposal;
  }

  nodeFailed(error: unknown): void {
    this.runtime.abort(error, 'the node stopped producing blocks');
  }

  abandon(blocks: readonly BlockWrite[]): void {
    for (const block of blocks) this.own.delete(block.bytes);
  }

  /** Whether a committed entry is a block this process proposed and applies through its own pipeline. */
  isOwn(data: Uint8Array): boolean {
    return this.own.has(data);
  }

  /** The tip after one of this process's own blocks. */
  tipOf(data: Uint8Array): BlockWrite['tip'] | undefined {
    return this.own.get(data);
  }

  /** The state machine handled committed entries up to `index`. */
  applied(index: number): void {
    this.appliedIndex = Math.max(this.appliedIndex, index);
    if (this.producingTerm !== this.runtime.raft.term && this.mayProduce()) {
      this.producingTerm = this.runtime.raft.term;
      this.onMayProduce();
    }
  }
}
