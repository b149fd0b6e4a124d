// The bridge's durable log on the KvStore port, with group commit: every write asked for while a
// batch is being written waits for the next one, and all of them go down in one atomic batch,
// synced if any of them must be forced. Under load, many transactions in flight share one fsync;
// alone, a write costs one batch. Writes land in the order they were asked for.
import { isKalimaError, kalimaError } from '../src/errors.ts';
import type { KvOperation, KvStore } from '../src/store/kv.ts';
import { prefixEnd } from '../src/store/keys.ts';
import {
  type BridgeRecord, type DecisionRecord, type InitiationRecord, DEFAULT_KEY_PREFIX, decodeRecord, encodeRecord, parseRecordKey, recordKey,
} from './records.ts';

/** A transaction as recovery finds it in the log. */
export interface LoggedTransaction {
  readonly initiation: InitiationRecord;
  readonly decision: DecisionRecord | undefined;
}

interface PendingWrite {
  operations: KvOperation[];
  sync: boolean;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** At most this many operations go into one batch; the rest wait for the next. */
const MAX_BATCH_OPERATIONS = 8_192;

export class BridgeLog {
  private pending: PendingWrite[] = [];
  private writing: Promise<void> | undefined;
  private halted: Error | undefined;
  /** How many batches and synced batches were written (for the bench and tests). */
  readonly stats = { batches: 0, syncedBatches: 0, writes: 0 };

  constructor(private readonly kv: KvStore, readonly prefix: Uint8Array = DEFAULT_KEY_PREFIX) {}

  /** Writes the initiation record (a record, or its encoding); resolves once it is on disk. */
  writeInitiation(record: InitiationRecord): Promise<void>;
  writeInitiation(id: string, encoded: Uint8Array): Promise<void>;
  writeInitiation(recordOrId: InitiationRecord | string, encoded?: Uint8Array): Promise<void> {
    const id = typeof recordOrId === 'string' ? recordOrId : recordOrId.id;
    const value = typeof recordOrId === 'string' ? encoded! : encodeRecord(recordOrId);
    return this.write([{ type: 'put', key: recordKey(this.prefix, id, 'initiation'), value }], true);
  }

  /** Writes a decision; `force` resolves only once it is on disk, else once it is written. */
  writeDecision(record: DecisionRecord, force: boolean): Promise<void> {
    return this.write([{ type: 'put', key: recordKey(this.prefix, record.id, 'decision'), value: encodeRecord(record) }], force);
  }

  /** Removes a transaction's records (its end); not forced: a lost removal only repeats idempotent calls. */
  writeEnd(id: string): Promise<void> {
    return this.write([
      { type: 'del', key: recordKey(this.prefix, id, 'initiation') },
      { type: 'del', key: recordKey(this.prefix, id, 'decision') },
    ], false);
  }

  /** Every transaction in the log, by id order. KALIMA_ERR_BRIDGE_BAD_RECORD on a record it cannot read. */
  async load(): Promise<LoggedTransaction[]> {
    const byId = new Map<string, { initiation?: InitiationRecord; decision?: DecisionRecord }>();
    for await (const [key, value] of this.kv.entries({ gte: this.prefix, lt: prefixEnd(this.prefix) })) {
      const { id, type } = parseRecordKey(this.prefix, key);
      const record: BridgeRecord = decodeRecord(value);
      if (record.id !== id || record.type !== type) {
        throw kalimaError('KALIMA_ERR_BRIDGE_BAD_RECORD', { reason: 'the record does not match its key', id, type, recordId: record.id, recordType: record.type });
      }
      const entry = byId.get(id) ?? {};
      if (record.type === 'initiation') entry.initiation = record;
      else entry.decision = record;
      byId.set(id, entry);
    }
    const transactions: LoggedTransaction[] = [];
    for (const [id, entry] of byId) {
      if (entry.initiation === undefined) throw kalimaError('KALIMA_ERR_BRIDGE_BAD_RECORD', { reason: 'a decision without its initiation record', id });
      transactions.push({ initiation: entry.initiation, decision: entry.decision });
    }
    return transactions;
  }

  /**
   * Stops the log: what is queued is never written and its callers are rejected with
   * KALIMA_ERR_BRIDGE_STOPPED. A batch already handed to the store may still land, as it would
   * when a process is killed during a write.
   */
  halt(reason: string): void {
    if (this.halted !== undefined) return;
    this.halted = kalimaError('KALIMA_ERR_BRIDGE_STOPPED', { reason });
    const dropped = this.pending;
    this.pending = [];
    for (const write of dropped) write.reject(this.halted);
  }

  private write(operations: KvOperation[], sync: boolean): Promise<void> {
    if (this.halted !== undefined) return Promise.reject(this.halted);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ operations, sync, resolve, reject });
      this.writing ??= this.flush();
    });
  }

  /** Resolves once no batch is being written (after `halt`, once the one handed to the store returned). */
  async settled(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
  }

  private async flush(): Promise<void> {
    // Yield once, so that writes asked for in the same turn share this first batch.
    await Promise.resolve();
    try {
      while (this.pending.length > 0 && this.halted === undefined) {
        let count = 0;
        let taken = 0;
        while (taken < this.pending.length && (taken === 0 || count + this.pending[taken]!.operations.length <= MAX_BATCH_OPERATIONS)) {
          count += this.pending[taken]!.operations.length;
          taken++;
        }
        const group = this.pending.splice(0, taken);
        const operations = group.length === 1 ? group[0]!.operations : group.flatMap((write) => write.operations);
        const sync = group.some((write) => write.sync);
        try {
          await this.kv.batch(operations, { sync });
        } catch (error) {
          // Whether the batch is on disk is unknown: nothing more may be written or decided on
          // top of it. The coordinator stops; recovery on the next start reads what landed.
          const cause = isKalimaError(error) ? error.code : String((error as Error)?.message ?? error);
          for (const write of group) write.reject(kalimaError('KALIMA_ERR_BRIDGE_STOPPED', { reason: 'the log write failed', cause }));
          this.halt(`the log write failed: ${cause}`);
          return;
        }
        this.stats.batches++;
        if (sync) this.stats.syncedBatches++;
        this.stats.writes += group.length;
        for (const write of group) write.resolve();
      }
    } finally {
      this.writing = undefined;
    }
  }
}
