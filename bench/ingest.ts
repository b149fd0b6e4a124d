// Load generators against a node's write API, over HTTP/1.1 keep-alive connections (the lean
// client in http-client.ts; request bodies are encoded before a run starts). POST /transaction
// answers only once the message's block is synced to disk, so the latency of a 200 is the
// message's commit latency.
import { RawHttpPool } from './http-client.ts';
import { type LatencySummary, summarize } from './stats.ts';

export interface LoadResult {
  mode: 'closed-single' | 'closed-batch' | 'open-single' | 'open-batch';
  /** Client connections (closed loop: requests in flight). */
  concurrency: number;
  batchSize: number;
  requests: number;
  /** Messages handed to the network; the rest were left when the run hit its time bound. */
  sent: number;
  /** Messages acknowledged as committed. */
  committed: number;
  /** Messages refused or lost, by error code. */
  errors: Record<string, number>;
  elapsedMs: number;
  committedPerSecond: number;
  /** Per request; in a batch every message of the request is committed at that latency. */
  latency: LatencySummary;
  /** Open loop only: the offered rate, and how late the client was at sending (client saturation). */
  offeredPerSecond?: number;
  sendLagP99Ms?: number;
}


function countError(errors: Record<string, number>, code: string, count = 1): void {
  errors[code] = (errors[code] ?? 0) + count;
}

async function postOne(pool: RawHttpPool, body: Buffer, errors: Record<string, number>): Promise<boolean> {
  try {
    const response = await pool.post('/transaction', body);
    if (response.status === 200) return true;
    let code = `HTTP_${response.status}`;
    try {
      code = (JSON.parse(response.body.toString('utf8')) as { error?: { code?: string } }).error?.code ?? code;
    } catch {
      // not JSON: keep the status
    }
    countError(errors, code);
  } catch (error) {
    countError(errors, `NETWORK_${(error as { code?: string }).code ?? 'ERROR'}`);
  }
  return false;
}

/** Posts one batch; returns how many of its messages were committed. */
async function postBatch(pool: RawHttpPool, body: Buffer, size: number, errors: Record<string, number>): Promise<number> {
  try {
    const response = await pool.post('/transactions', body);
    if (response.status !== 200) {
      countError(errors, `HTTP_${response.status}`, size);
      return 0;
    }
    const { results } = JSON.parse(response.body.toString('utf8')) as { results: Array<{ ok: boolean; error?: { code?: string } }> };
    let committed = 0;
    for (const result of results) {
      if (result.ok) committed++;
      else countError(errors, result.error?.code ?? 'UNKNOWN');
    }
    return committed;
  } catch (error) {
    countError(errors, `NETWORK_${(error as { code?: string }).code ?? 'ERROR'}`, size);
    return 0;
  }
}

/**
 * Closed loop: `concurrency` senders, each posting its next request as soon as the previous one
 * is answered, until the messages run out or `durationMs` has passed. The rate it reaches is the
 * node's maximum sustained throughput at that concurrency.
 */
export async function closedLoop(url: string, messages: string[], options: { concurrency: number; batchSize: number; durationMs: number }): Promise<LoadResult> {
  const pool = new RawHttpPool(url, options.concurrency);
  const errors: Record<string, number> = {};
  const latencies: number[] = [];
  const batchSize = Math.max(1, options.batchSize);
  // Every request body is encoded before the clock starts.
  const bodies: Array<{ body: Buffer; size: number }> = [];
  for (let from = 0; from < messages.length; from += batchSize) {
    const slice = messages.slice(from, from + batchSize);
    bodies.push({ body: Buffer.from(batchSize === 1 ? slice[0]! : `[${slice.join(',')}]`, 'utf8'), size: slice.length });
  }
  let next = 0;
  let sent = 0;
  let committed = 0;
  let requests = 0;
  const start = performance.now();
  const deadline = start + options.durationMs;
  let lastDone = start;
  const sender = async (): Promise<void> => {
    while (next < bodies.length && performance.now() < deadline) {
      const { body, size } = bodies[next++]!;
      sent += size;
      const sentAt = performance.now();
      const ok = batchSize === 1 ? ((await postOne(pool, body, errors)) ? 1 : 0) : await postBatch(pool, body, size, errors);
      lastDone = performance.now();
      requests++;
      committed += ok;
      if (ok > 0) latencies.push(lastDone - sentAt);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, sender));
  } finally {
    pool.close();
  }
  const elapsedMs = lastDone - start;
  return {
    mode: batchSize === 1 ? 'closed-single' : 'closed-batch',
    concurrency: options.concurrency, batchSize, requests, sent, committed, errors, elapsedMs,
    committedPerSecond: (committed * 1000) / elapsedMs,
    latency: summarize(latencies),
  };
}

/**
 * Open loop: request i is due at start + i × batchSize / rate whatever happened to earlier ones, and
 * its latency runs from when it was due, so a stalled node shows in the figures rather than slowing
 * the client down (no coordinated omission). With `batchSize` above 1 each request is a
 * POST /transactions of that many messages, and its latency applies to each of them.
 */
export async function openLoop(url: string, messages: string[], options: { ratePerSecond: number; connections: number; drainTimeoutMs: number; latencies?: number[]; batchSize?: number }): Promise<LoadResult> {
  const pool = new RawHttpPool(url, options.connections);
  const batchSize = Math.max(1, options.batchSize ?? 1);
  const bodies: Array<{ body: Buffer; size: number }> = [];
  for (let from = 0; from < messages.length; from += batchSize) {
    const slice = messages.slice(from, from + batchSize);
    bodies.push({ body: Buffer.from(batchSize === 1 ? slice[0]! : `[${slice.join(',')}]`, 'utf8'), size: slice.length });
  }
  const errors: Record<string, number> = {};
  const latencies: number[] = [];
  const sendLags: number[] = [];
  const intervalMs = (1000 * batchSize) / options.ratePerSecond;
  const inFlight = new Set<Promise<void>>();
  let committed = 0;
  let lastDone = 0;
  const start = performance.now() + 20;
  const fire = (index: number): void => {
    const dueAt = start + index * intervalMs;
    sendLags.push(performance.now() - dueAt);
    const { body, size } = bodies[index]!;
    const sending = batchSize === 1 ? postOne(pool, body, errors).then((ok) => (ok ? 1 : 0)) : postBatch(pool, body, size, errors);
    const request = sending.then((ok) => {
      lastDone = performance.now();
      if (ok > 0) {
        committed += ok;
        latencies.push(lastDone - dueAt);
        options.latencies?.push(lastDone - dueAt);
      }
      inFlight.delete(request);
    });
    inFlight.add(request);
  };
  try {
    let sent = 0;
    while (sent < bodies.length) {
      const due = Math.min(bodies.length, Math.floor((performance.now() - start) / intervalMs) + 1);
      while (sent < due) fire(sent++);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const drained = Promise.all(inFlight);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([drained, new Promise((resolve) => (timer = setTimeout(resolve, options.drainTimeoutMs)))]);
    clearTimeout(timer);
    if (inFlight.size > 0) countError(errors, 'CLIENT_DRAIN_TIMEOUT', inFlight.size);
  } finally {
    pool.close();
  }
  const elapsedMs = lastDone - start;
  return {
    mode: batchSize === 1 ? 'open-single' : 'open-batch', concurrency: options.connections, batchSize, requests: bodies.length, sent: messages.length, committed, errors, elapsedMs,
    committedPerSecond: (committed * 1000) / elapsedMs,
    latency: summarize(latencies),
    offeredPerSecond: options.ratePerSecond,
    sendLagP99Ms: summarize(sendLags).p99Ms,
  };
}
