// Load generators against a node's write API, over HTTP/1.1 keep-alive connections (undici).
// POST /transaction answers only once the message's block is synced to disk, so the latency of a
// 200 is the message's commit latency.
import { Pool } from 'undici';
import { type LatencySummary, summarize } from './stats.ts';

export interface LoadResult {
  mode: 'closed-single' | 'closed-batch' | 'open-single';
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

const JSON_HEADERS = { 'content-type': 'application/json' };

export function openPool(url: string, connections: number): Pool {
  return new Pool(url, { connections, pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000, headersTimeout: 60_000, bodyTimeout: 60_000 });
}

function countError(errors: Record<string, number>, code: string, count = 1): void {
  errors[code] = (errors[code] ?? 0) + count;
}

async function postOne(pool: Pool, body: string, errors: Record<string, number>): Promise<boolean> {
  try {
    const response = await pool.request({ path: '/transaction', method: 'POST', headers: JSON_HEADERS, body });
    const text = await response.body.text();
    if (response.statusCode === 200) return true;
    let code = `HTTP_${response.statusCode}`;
    try {
      code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? code;
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
async function postBatch(pool: Pool, messages: string[], errors: Record<string, number>): Promise<number> {
  try {
    const response = await pool.request({ path: '/transactions', method: 'POST', headers: JSON_HEADERS, body: `[${messages.join(',')}]` });
    const text = await response.body.text();
    if (response.statusCode !== 200) {
      countError(errors, `HTTP_${response.statusCode}`, messages.length);
      return 0;
    }
    const { results } = JSON.parse(text) as { results: Array<{ ok: boolean; error?: { code?: string } }> };
    let committed = 0;
    for (const result of results) {
      if (result.ok) committed++;
      else countError(errors, result.error?.code ?? 'UNKNOWN');
    }
    return committed;
  } catch (error) {
    countError(errors, `NETWORK_${(error as { code?: string }).code ?? 'ERROR'}`, messages.length);
    return 0;
  }
}

/**
 * Closed loop: `concurrency` senders, each posting its next request as soon as the previous one
 * is answered, until the messages run out or `durationMs` has passed. The rate it reaches is the
 * node's maximum sustained throughput at that concurrency.
 */
export async function closedLoop(url: string, messages: string[], options: { concurrency: number; batchSize: number; durationMs: number }): Promise<LoadResult> {
  const pool = openPool(url, options.concurrency);
  const errors: Record<string, number> = {};
  const latencies: number[] = [];
  const batchSize = Math.max(1, options.batchSize);
  let next = 0;
  let committed = 0;
  let requests = 0;
  const start = performance.now();
  const deadline = start + options.durationMs;
  let lastDone = start;
  const sender = async (): Promise<void> => {
    while (next < messages.length && performance.now() < deadline) {
      const from = next;
      next = Math.min(messages.length, next + batchSize);
      const sentAt = performance.now();
      let ok: number;
      if (batchSize === 1) ok = (await postOne(pool, messages[from]!, errors)) ? 1 : 0;
      else ok = await postBatch(pool, messages.slice(from, next), errors);
      lastDone = performance.now();
      requests++;
      committed += ok;
      if (ok > 0) latencies.push(lastDone - sentAt);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, sender));
  } finally {
    await pool.close();
  }
  const elapsedMs = lastDone - start;
  return {
    mode: batchSize === 1 ? 'closed-single' : 'closed-batch',
    concurrency: options.concurrency, batchSize, requests, sent: next, committed, errors, elapsedMs,
    committedPerSecond: (committed * 1000) / elapsedMs,
    latency: summarize(latencies),
  };
}

/**
 * Open loop: message i is due at start + i / rate whatever happened to earlier ones, and its
 * latency runs from when it was due, so a stalled node shows in the figures rather than slowing
 * the client down (no coordinated omission).
 */
export async function openLoop(url: string, messages: string[], options: { ratePerSecond: number; connections: number; drainTimeoutMs: number }): Promise<LoadResult> {
  const pool = openPool(url, options.connections);
  const errors: Record<string, number> = {};
  const latencies: number[] = [];
  const sendLags: number[] = [];
  const intervalMs = 1000 / options.ratePerSecond;
  const inFlight = new Set<Promise<void>>();
  let committed = 0;
  let lastDone = 0;
  const start = performance.now() + 20;
  const fire = (index: number): void => {
    const dueAt = start + index * intervalMs;
    sendLags.push(performance.now() - dueAt);
    const request = postOne(pool, messages[index]!, errors).then((ok) => {
      lastDone = performance.now();
      if (ok) {
        committed++;
        latencies.push(lastDone - dueAt);
      }
      inFlight.delete(request);
    });
    inFlight.add(request);
  };
  try {
    let sent = 0;
    while (sent < messages.length) {
      const due = Math.min(messages.length, Math.floor((performance.now() - start) / intervalMs) + 1);
      while (sent < due) fire(sent++);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const drained = Promise.all(inFlight);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([drained, new Promise((resolve) => (timer = setTimeout(resolve, options.drainTimeoutMs)))]);
    clearTimeout(timer);
    if (inFlight.size > 0) countError(errors, 'CLIENT_DRAIN_TIMEOUT', inFlight.size);
  } finally {
    await pool.destroy();
  }
  const elapsedMs = lastDone - start;
  return {
    mode: 'open-single', concurrency: options.connections, batchSize: 1, requests: messages.length, sent: messages.length, committed, errors, elapsedMs,
    committedPerSecond: (committed * 1000) / elapsedMs,
    latency: summarize(latencies),
    offeredPerSecond: options.ratePerSecond,
    sendLagP99Ms: summarize(sendLags).p99Ms,
  };
}
