// watchInvoice's loop: follow one invoice's subscription, and when the stream breaks (LND restarts,
// the connection drops), subscribe again with capped backoff. After every (re)subscribe the invoice
// is read once and its state reported, so a change that happened while the stream was away is not
// missed; a periodic read also notices a stream that died without a word. States only move forward
// (open → held → settled or canceled), so a late answer never undoes a newer one. It stops after
// settled or canceled, or when closed.
import type { KalimaError } from '../../src/errors.ts';
import type { Logger, Rng, Scheduler } from '../../src/ports.ts';
import { backoffMs, isFinal, isNews, type InvoiceStatus } from './invoice.ts';

/** Where the watcher reads and subscribes (LndClient over the `lightning` package). */
export interface InvoiceSource {
  /** Subscribes; `broken` is called once when the stream fails or ends (undefined: it ended). Returns what cancels it. */
  subscribe(id: string, handlers: { update(status: InvoiceStatus): void; broken(error: KalimaError | undefined): void }): () => void;
  read(id: string): Promise<InvoiceStatus>;
}

export interface WatchOptions {
  scheduler: Scheduler;
  rng: Rng;
  logger: Logger;
  /** First wait before subscribing again, ms; it doubles up to `maxBackoffMs`. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Read the invoice this often even while the stream is up (0: never). */
  reconcileEveryMs: number;
  /** Told each time the stream breaks or a read fails (the watcher goes on). */
  onError?: (error: KalimaError | undefined) => void;
}

export interface InvoiceWatch {
  /** Stops watching: no listener call after this returns. */
  close(): void;
  readonly closed: boolean;
  /** The last state reported. */
  readonly last: InvoiceStatus | undefined;
}

export function watchInvoice(source: InvoiceSource, id: string, listener: (status: InvoiceStatus) => void, options: WatchOptions): InvoiceWatch {
  let last: InvoiceStatus | undefined;
  let closed = false;
  let attempt = 0;
  /** Bumped on every (re)subscribe and on close: answers of an older generation are dropped. */
  let generation = 0;
  let cancel: (() => void) | undefined;
  let timer: unknown;

  const schedule = (callback: () => void, delayMs: number) => {
    if (timer !== undefined) options.scheduler.clearTimeout(timer);
    timer = options.scheduler.setTimeout(() => {
      timer = undefined;
      callback();
    }, delayMs);
  };

  const deliver = (status: InvoiceStatus) => {
    if (closed || !isNews(last, status)) return;
    last = status;
    try {
      listener(status);
    } catch (error) {
      options.logger.error({ id, error: String(error) }, 'an invoice watch listener threw');
    }
    if (isFinal(status.state)) watch.close();
  };

  const retry = (error: KalimaError | undefined) => {
    if (closed) return;
    generation++;
    cancel?.();
    cancel = undefined;
    const delay = backoffMs(attempt++, options.initialBackoffMs, options.maxBackoffMs, options.rng.bytes(1)[0]! / 255);
    options.logger.warn({ id, code: error?.code, details: error?.details, delayMs: delay }, 'invoice subscription lost; subscribing again');
    options.onError?.(error);
    schedule(connect, delay);
  };

  const reconcile = (current: number) => {
    source.read(id).then(
      (status) => {
        if (current !== generation) return;
        attempt = 0;
        deliver(status);
        if (!closed && options.reconcileEveryMs > 0) schedule(() => reconcile(current), options.reconcileEveryMs);
      },
      (error: KalimaError) => {
        if (current !== generation) return;
        // An invoice not made yet may still come: the stream waits for it, as LND's does.
        if (error.code === 'KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND') return;
        retry(error);
      },
    );
  };

  const connect = () => {
    if (closed) return;
    const current = ++generation;
    try {
      cancel = source.subscribe(id, {
        update: (status) => current === generation && deliver(status),
        broken: (error) => current === generation && retry(error),
      });
    } catch (error) {
      retry(error as KalimaError);
      return;
    }
    reconcile(current);
  };

  const watch: InvoiceWatch = {
    close() {
      if (closed) return;
      closed = true;
      generation++;
      if (timer !== undefined) options.scheduler.clearTimeout(timer);
      cancel?.();
      cancel = undefined;
    },
    get closed() {
      return closed;
    },
    get last() {
      return last;
    },
  };
  connect();
  return watch;
}
