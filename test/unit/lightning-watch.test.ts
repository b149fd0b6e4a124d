// watchInvoice's loop (chains/lightning/watch.ts) driven by hand: a source whose streams and reads
// the test answers, and a scheduler the test fires. Reconcile reads report what a stream missed,
// answers of a stream or read replaced since are dropped, the backoff doubles to its cap and starts
// over once a read succeeds, and the watch ends at a final state or on close.
import { describe, expect, it } from 'vitest';
import { invoiceStatus, type InvoiceState, type InvoiceStatus } from '../../chains/lightning/invoice.ts';
import { type InvoiceSource, watchInvoice } from '../../chains/lightning/watch.ts';
import { kalimaError, type KalimaError } from '../../src/errors.ts';
import { silentLogger, type Scheduler } from '../../src/ports.ts';

const ID = 'cc'.repeat(32);
const status = (state: InvoiceState): InvoiceStatus => ({
  ...invoiceStatus({ id: ID, is_confirmed: false, tokens: 10, received: 0, created_at: '', expires_at: '', payments: [] }),
  state,
});
const unreachable = (): KalimaError => kalimaError('KALIMA_ERR_LIGHTNING_UNREACHABLE');

interface Stream { update(s: InvoiceStatus): void; broken(e: KalimaError | undefined): void; canceled: boolean }
interface Read { resolve(s: InvoiceStatus): void; reject(e: KalimaError): void }

class ScriptedSource implements InvoiceSource {
  streams: Stream[] = [];
  reads: Read[] = [];
  subscribe(_id: string, handlers: { update(s: InvoiceStatus): void; broken(e: KalimaError | undefined): void }): () => void {
    const stream: Stream = { ...handlers, canceled: false };
    this.streams.push(stream);
    return () => {
      stream.canceled = true;
    };
  }
  read(): Promise<InvoiceStatus> {
    return new Promise((resolve, reject) => this.reads.push({ resolve, reject }));
  }
}

class Timers implements Scheduler {
  delays: number[] = [];
  private due: (() => void)[] = [];
  setTimeout(callback: () => void, delayMs: number): unknown {
    this.delays.push(delayMs);
    this.due.push(callback);
    return callback;
  }
  clearTimeout(handle: unknown): void {
    this.due = this.due.filter((callback) => callback !== handle);
  }
  get pending(): number {
    return this.due.length;
  }
  fire(): void {
    const due = this.due;
    this.due = [];
    for (const callback of due) callback();
  }
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

function start(options: { reconcileEveryMs?: number } = {}) {
  const source = new ScriptedSource();
  const timers = new Timers();
  const seen: InvoiceState[] = [];
  const errors: (KalimaError | undefined)[] = [];
  const watch = watchInvoice(source, ID, (s) => seen.push(s.state), {
    scheduler: timers, rng: { bytes: (n) => new Uint8Array(n).fill(255) }, logger: silentLogger,
    initialBackoffMs: 100, maxBackoffMs: 400, reconcileEveryMs: options.reconcileEveryMs ?? 0, onError: (e) => errors.push(e),
  });
  return { source, timers, seen, errors, watch };
}

describe('watchInvoice', () => {
  it('reports the read after subscribing, then the stream; ends at a final state and cancels its stream', async () => {
    const { source, seen, watch } = start();
    expect(source.streams).toHaveLength(1);
    source.reads[0]!.resolve(status('open'));
    await settle();
    source.streams[0]!.update(status('open'));
    source.streams[0]!.update(status('held'));
    source.streams[0]!.update(status('settled'));
    source.streams[0]!.update(status('canceled'));
    expect(seen).toEqual(['open', 'held', 'settled']);
    expect(watch.closed).toBe(true);
    expect(source.streams[0]!.canceled).toBe(true);
  });

  it('a broken stream is subscribed again after the backoff, and the read after it reports what changed meanwhile', async () => {
    const { source, timers, seen, errors } = start();
    source.reads[0]!.resolve(status('open'));
    await settle();
    source.streams[0]!.broken(unreachable());
    expect(errors.map((e) => e?.code)).toEqual(['KALIMA_ERR_LIGHTNING_UNREACHABLE']);
    expect(source.streams[0]!.canceled).toBe(true);
    expect(source.streams).toHaveLength(1);
    timers.fire();
    expect(source.streams).toHaveLength(2);
    source.reads[1]!.resolve(status('held'));
    await settle();
    expect(seen).toEqual(['open', 'held']);
  });

  it('drops the answers of a stream or read that was replaced', async () => {
    const { source, timers, seen } = start();
    const firstRead = source.reads[0]!;
    source.streams[0]!.broken(undefined);
    timers.fire();
    firstRead.resolve(status('held'));
    source.streams[0]!.update(status('held'));
    await settle();
    expect(seen).toEqual([]);
    source.reads[1]!.resolve(status('open'));
    await settle();
    expect(seen).toEqual(['open']);
  });

  it('an older answer never undoes a newer one: a late read of held after the stream said settled is ignored', async () => {
    const { source, seen, watch } = start();
    source.streams[0]!.update(status('settled'));
    source.reads[0]!.resolve(status('held'));
    await settle();
    expect(seen).toEqual(['settled']);
    expect(watch.closed).toBe(true);
  });

  it('the backoff doubles to its cap while nothing answers, and starts over once a read succeeds', async () => {
    const { source, timers } = start();
    for (let i = 0; i < 4; i++) {
      source.reads[i]!.reject(unreachable());
      await settle();
      timers.fire();
    }
    expect(timers.delays).toEqual([100, 200, 400, 400]);
    source.reads[4]!.resolve(status('open'));
    await settle();
    source.streams[4]!.broken(undefined);
    expect(timers.delays.at(-1)).toBe(100);
  });

  it('an invoice not there yet is waited for on the stream, without re-subscribing', async () => {
    const { source, timers, seen } = start();
    source.reads[0]!.reject(kalimaError('KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND'));
    await settle();
    expect(timers.pending).toBe(0);
    source.streams[0]!.update(status('open'));
    expect(seen).toEqual(['open']);
  });

  it('reads again every reconcileEveryMs while the stream is quiet, and reports what it missed', async () => {
    const { source, timers, seen } = start({ reconcileEveryMs: 1_000 });
    source.reads[0]!.resolve(status('open'));
    await settle();
    expect(timers.delays).toEqual([1_000]);
    timers.fire();
    source.reads[1]!.resolve(status('canceled'));
    await settle();
    expect(seen).toEqual(['open', 'canceled']);
    expect(source.streams).toHaveLength(1);
  });

  it('close() stops everything: no report, no timer left, a subscribe error after it changes nothing', async () => {
    const { source, timers, seen, watch } = start();
    source.streams[0]!.broken(unreachable());
    expect(timers.pending).toBe(1);
    watch.close();
    expect(timers.pending).toBe(0);
    source.reads[0]!.resolve(status('held'));
    await settle();
    expect(seen).toEqual([]);
  });

  it('a listener that throws does not stop the watch', async () => {
    const source = new ScriptedSource();
    const seen: InvoiceState[] = [];
    watchInvoice(source, ID, (s) => {
      seen.push(s.state);
      throw new Error('listener bug');
    }, { scheduler: new Timers(), rng: { bytes: (n) => new Uint8Array(n) }, logger: silentLogger, initialBackoffMs: 1, maxBackoffMs: 1, reconcileEveryMs: 0 });
    source.streams[0]!.update(status('open'));
    source.streams[0]!.update(status('held'));
    expect(seen).toEqual(['open', 'held']);
  });
});
