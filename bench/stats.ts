// Latency summaries.

export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Nearest-rank percentiles of latencies in milliseconds. */
export function summarize(latenciesMs: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(latenciesMs).sort();
  const count = sorted.length;
  if (count === 0) return { count: 0, meanMs: Number.NaN, p50Ms: Number.NaN, p90Ms: Number.NaN, p99Ms: Number.NaN, maxMs: Number.NaN };
  const rank = (quantile: number): number => sorted[Math.min(count - 1, Math.max(0, Math.ceil(quantile * count) - 1))]!;
  let sum = 0;
  for (const value of sorted) sum += value;
  const round = (value: number): number => Math.round(value * 100) / 100;
  return { count, meanMs: round(sum / count), p50Ms: round(rank(0.5)), p90Ms: round(rank(0.9)), p99Ms: round(rank(0.99)), maxMs: round(sorted[count - 1]!) };
}
