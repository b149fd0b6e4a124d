// The duties of a validation node: a non-voting member (a Raft learner) that checks every block the
// leader replicates with the same block gate as the masters, then
//   - writes a validation record for the blocks it checked (state/validation.ts), which the leader
//     takes into a later block, so the chain carries its validations and counts its rewards;
//   - reports the leader to every master when one of its blocks does not verify ("wrong") or
//     reaches it too long after the block's own time ("late"): a majority of the validation nodes
//     reporting the same leader and term bars it from leading (ClusterMaster.takeReport, Raft.bar).
//
// "Late" is judged only on a block the leader sent as new: one of its own term, above the commit
// index the same append carried (a block sent again after this node was away, stopped or behind
// was committed before it was resent, and says nothing about the leader), timed from when the
// append reached this node, not from when this node got round to checking it. A leader whose clock
// is behind by more than the limit is late on every block. "Wrong" is judged only on a block the
// append attaches to this node's log (as Raft will require), so a block built on an entry this node
// holds from a deposed leader is not mistaken for a bad one.
import { isKalimaError } from '../errors.ts';
import { decodeBlockHeader } from '../ledger/block.ts';
import { toHex } from '../ledger/hash.ts';
import { signMessage } from '../ledger/message.ts';
import type { KeyPair } from '../ledger/signature.ts';
import type { Clock, Logger, Rng, Scheduler } from '../ports.ts';
import type { Entry } from '../consensus/raft.ts';
import type { Admission } from '../consensus/block-gate.ts';
import type { AppendSender } from '../consensus/runtime.ts';
import { type LeaderReport, type ReportReason, signReport } from '../consensus/leader-report.ts';
import { VALIDATIONS_ADDRESS, decodeValidationBody, validationMessage } from '../state/validation.ts';
import { blockHasNews } from '../state/anchor-record.ts';
import type { CommittedBlock, KalimaNode } from './node.ts';

const RETRY_MS = 1_000;

export interface ValidatorOptions {
  node: KalimaNode;
  nodeKey: KeyPair;
  clock: Clock;
  rng: Rng;
  scheduler: Scheduler;
  logger: Logger;
  /** A block that reaches this node this long after its time is late (genesis params.validationLateMs). */
  lateMs: number;
  /** Sends a signed report to every master. */
  sendReport: (bytes: Uint8Array) => void;
}

export interface ValidatorStatus {
  /** The last height this node's validation record on the chain covers. */
  validatedHeight: number;
  /** Blocks it validated, as the chain counts them. */
  validated: number;
  reports: number;
}

export class ValidationDuty {
  private readonly id: string;
  /** Blocks with messages other than validations were applied since the last record went out. */
  private dirty = false;
  private sending = false;
  private stopped = false;
  private retryTimer: unknown;
  private readonly reported = new Set<string>();
  private reportCount = 0;

  constructor(private readonly options: ValidatorOptions) {
    this.id = toHex(options.nodeKey.publicKey);
    options.node.onBlock((committed) => this.onBlock(committed));
    // After a restart: blocks applied before it may not be covered yet.
    this.dirty = true;
  }

  /** Starts sending records (once the node is part of its cluster). */
  start(): void {
    this.kick();
  }

  status(): ValidatorStatus {
    const record = this.record();
    return { validatedHeight: record?.height ?? 0, validated: record?.validated ?? 0, reports: this.reportCount };
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer !== undefined) this.options.scheduler.clearTimeout(this.retryTimer);
  }

  /** A block applied here (checked by the gate first): worth a validation if it holds news (blockHasNews). */
  private onBlock(committed: CommittedBlock): void {
    if (blockHasNews(committed.block)) {
      this.dirty = true;
      this.kick();
    }
  }

  private record() {
    const entry = this.options.node.cache.getEntry(VALIDATIONS_ADDRESS, this.id);
    return entry === undefined ? undefined : { ...decodeValidationBody(entry.value), carriedAt: entry.height };
  }

  private kick(): void {
    if (this.sending || this.stopped || !this.dirty) return;
    this.sending = true;
    this.dirty = false;
    this.sendRecord().then(
      () => {
        this.sending = false;
        this.kick();
      },
      (error: unknown) => {
        this.sending = false;
        this.dirty = true;
        if (this.stopped) return;
        this.options.logger.warn({ error: String((error as { message?: string }).message ?? error), code: (error as { code?: string }).code, details: (error as { details?: unknown }).details }, 'validation: the record was not taken; trying again');
        this.retryTimer = this.options.scheduler.setTimeout(() => {
          this.retryTimer = undefined;
          this.kick();
        }, RETRY_MS);
      },
    );
  }

  /** One record for the chain up to the tip, through the leader; resolves once it is applied here, so the next one follows it. */
  private async sendRecord(): Promise<void> {
    const { node, nodeKey, rng } = this.options;
    const tip = node.tipRecord;
    const previous = this.record();
    // A record covers at least one block after the one that carried the previous record (the chain
    // refuses it otherwise); the next block with news brings this node back here.
    if (previous !== undefined && previous.carriedAt >= tip.height) return;
    if (tip.height === 0) return;
    const message = signMessage(validationMessage(node.chain, nodeKey.publicKey, tip.height, tip.hash, previous), nodeKey.secretKey, rng.bytes(32));
    let receipt;
    try {
      receipt = await node.submit(message);
    } catch (error) {
      // Taken already (a retry after a lost answer): wait for the next block, then read the record from the chain.
      if (!isKalimaError(error, 'KALIMA_ERR_LEDGER_NONCE_REPLAYED')) throw error;
      receipt = undefined;
    }
    await node.whenApplied(receipt?.height ?? tip.height + 1);
  }

  /**
   * What the gate made of entries the leader of `sender.term` sent: reports a block of its own
   * term that does not verify, or that came late while this node kept up. `heardBeforeMs` is when
   * the leader's link last delivered something before this append.
   */
  observe(entries: readonly Entry[], sender: AppendSender, admission: Admission): void {
    for (const entry of entries.slice(0, admission.admitted)) {
      if (entry.data.length === 0 || entry.term !== sender.term || entry.index <= sender.commit || sender.receivedAtMs === undefined) continue;
      let header;
      try {
        header = decodeBlockHeader(entry.data);
      } catch {
        continue;
      }
      const lateBy = sender.receivedAtMs - header.timeMs;
      if (lateBy > this.options.lateMs) this.report(sender, header.height, 'late', `the block reached this validation node ${lateBy} ms after its time (limit ${this.options.lateMs} ms)`);
    }
    const refusal = admission.refusal;
    const refused = entries[admission.admitted];
    // Only a block of the leader's own term that was checked and failed (not one that could not be
    // checked yet), on this node's log.
    if (refusal !== undefined && refused !== undefined && refused.term === sender.term && sender.follows && typeof refusal.details.code === 'string') {
      let height = 0;
      try {
        height = decodeBlockHeader(refused.data).height;
      } catch {
        // undecodable: reported with height 0
      }
      this.report(sender, height, 'wrong', `${refusal.details.code}: ${String(refusal.details.reason ?? refusal.message)}`);
    }
  }

  private report(sender: { id: string; term: number }, height: number, reason: ReportReason, detail: string): void {
    const key = `${sender.id}:${sender.term}:${reason}`;
    if (this.reported.has(key) || this.stopped) return;
    this.reported.add(key);
    if (this.reported.size > 1_000) this.reported.delete(this.reported.values().next().value!);
    this.reportCount++;
    const report: LeaderReport = { chain: this.options.node.chain, leader: sender.id, term: sender.term, height, reason, detail, validator: this.id, timeMs: this.options.clock.nowMs() };
    this.options.logger.warn({ leader: sender.id, term: sender.term, height, reason, detail }, 'validation: reporting the leader to the masters');
    this.options.sendReport(signReport(report, this.options.nodeKey.secretKey, this.options.rng.bytes(32)));
  }
}
