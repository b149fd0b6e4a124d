// `kalima status`: one node's /status names every master and validation node and its API; each is
// asked in turn, twice a second apart, for the leader, the term, each node's height and the commit rate.
import type { ConsensusStatus } from '../node/cluster.ts';
import type { AnchorStatus } from '../../anchors/engine.ts';

export interface NodeStatus {
  chain: string;
  height: number;
  tipHash: string;
  stateDigest: string;
  nextGlobalSequence: number;
  pendingMessages?: number;
  consensus?: ConsensusStatus;
}

export interface ClusterRow {
  id: string;
  member: 'master' | 'validator';
  api: string | null;
  /** The status, or why it could not be read. */
  status: NodeStatus | undefined;
  error: string | undefined;
  /** GET /anchors, for a node that anchors the chain into Bitcoin. */
  anchors?: AnchorStatus;
}

export interface ClusterView {
  chain: string;
  rows: ClusterRow[];
  leader: string | null;
  term: number | null;
  /** Messages committed per second over the sampling interval, from the highest chain seen. */
  commitRate: number | undefined;
}

async function fetchStatus(url: string, timeoutMs: number): Promise<NodeStatus> {
  const response = await fetch(`${url.replace(/\/$/, '')}/status`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return (await response.json()) as NodeStatus;
}

/** A node's anchoring status; undefined for a node that does not anchor (404) or does not answer. */
export async function fetchAnchors(url: string, timeoutMs: number): Promise<AnchorStatus | undefined> {
  try {
    const response = await fetch(`${url.replace(/\/$/, '')}/anchors`, { signal: AbortSignal.timeout(timeoutMs) });
    return response.ok ? ((await response.json()) as AnchorStatus) : undefined;
  } catch {
    return undefined;
  }
}

async function sample(url: string, timeoutMs: number): Promise<{ first: NodeStatus; rows: ClusterRow[] }> {
  const first = await fetchStatus(url, timeoutMs);
  const peers = first.consensus?.peers ?? [];
  const withAnchors = async (row: ClusterRow): Promise<ClusterRow> => {
    const anchors = row.status === undefined || row.api === null ? undefined : await fetchAnchors(row.api, timeoutMs);
    return anchors === undefined ? row : { ...row, anchors };
  };
  if (peers.length === 0) return { first, rows: [await withAnchors({ id: '', member: 'master', api: url, status: first, error: undefined })] };
  const rows = await Promise.all(peers.map(async (peer): Promise<ClusterRow> => {
    const member = peer.member ?? 'master';
    if (peer.api === null) return { id: peer.id, member, api: null, status: undefined, error: 'no API in the configuration' };
    try {
      return await withAnchors({ id: peer.id, member, api: peer.api, status: await fetchStatus(peer.api, timeoutMs), error: undefined });
    } catch (error) {
      return { id: peer.id, member, api: peer.api, status: undefined, error: (error as { message?: string }).message ?? String(error) };
    }
  }));
  return { first, rows };
}

const STATE_WORDS: Record<string, string> = { signed: 'pending', mempool: 'in the mempool', confirmed: 'confirmed', recorded: 'recorded' };

/** A node's anchoring in a few lines: Bitcoin, the wallet, the newest anchors and why one is late. */
export function formatAnchors(anchors: AnchorStatus, who = ''): string[] {
  const bitcoin = anchors.bitcoin.reachable ? `tip ${anchors.bitcoin.tip ?? '-'}, scanned to ${anchors.bitcoin.scannedHeight}` : `unreachable${anchors.bitcoin.lastError === undefined ? '' : ` (${anchors.bitcoin.lastError.code})`}`;
  const lines = [`anchoring${who === '' ? '' : ` by ${who}`}: bitcoin ${anchors.network} ${bitcoin}; wallet ${anchors.wallet.spendable} sats spendable${anchors.wallet.immature > 0 ? `, ${anchors.wallet.immature} immature` : ''} (fund ${anchors.wallet.fundingAddress})`];
  for (const commitment of anchors.commitments.slice(-3)) {
    const where = commitment.confirmed === undefined ? '' : ` at depth ${commitment.depth} (bitcoin block ${commitment.confirmed.height}, tx ${commitment.confirmed.txid.slice(0, 12)})`;
    const tips = commitment.tips.map((tip) => `${tip.chain}@${tip.height}`).join(', ');
    lines.push(`  anchor #${commitment.seq} of ${tips}: ${STATE_WORDS[commitment.state] ?? commitment.state}${where}${commitment.txs.length > 1 ? `, ${commitment.txs.length} versions` : ''}`);
  }
  if (anchors.commitments.length === 0) lines.push('  no anchor yet');
  if (anchors.late !== undefined) lines.push(`  late: ${anchors.late}`);
  return lines;
}

const highest = (rows: ClusterRow[]): number => Math.max(0, ...rows.map((row) => row.status?.nextGlobalSequence ?? 0));

/** Reads the cluster through `url`; with `intervalMs`, twice, for the commit rate. */
export async function readCluster(url: string, options: { intervalMs?: number; timeoutMs?: number } = {}): Promise<ClusterView> {
  const timeoutMs = options.timeoutMs ?? 2_000;
  const before = await sample(url, timeoutMs);
  let rows = before.rows;
  let commitRate: number | undefined;
  if (options.intervalMs !== undefined && options.intervalMs > 0) {
    const startedAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
    const after = await sample(url, timeoutMs);
    commitRate = ((highest(after.rows) - highest(before.rows)) * 1000) / Math.max(1, Date.now() - startedAt);
    rows = after.rows;
  }
  // The leader most nodes name, with its term.
  const votes = new Map<string, { count: number; term: number }>();
  for (const row of rows) {
    const consensus = row.status?.consensus;
    if (consensus?.leader === null || consensus === undefined) continue;
    const seen = votes.get(consensus.leader) ?? { count: 0, term: consensus.term };
    votes.set(consensus.leader, { count: seen.count + 1, term: Math.max(seen.term, consensus.term) });
  }
  const named = [...votes.entries()].sort((a, b) => b[1].count - a[1].count)[0];
  return { chain: before.first.chain, rows, leader: named?.[0] ?? null, term: named?.[1].term ?? null, commitRate };
}

/** The view as a table, for a terminal. */
export function formatCluster(view: ClusterView): string {
  const masters = view.rows.filter((row) => row.member === 'master').length;
  const validators = view.rows.length - masters;
  const lines = [
    `chain ${view.chain}: ${masters} master${masters === 1 ? '' : 's'}${validators === 0 ? '' : `, ${validators} validation node${validators === 1 ? '' : 's'}`}, leader ${view.leader === null ? 'none' : view.leader.slice(0, 12)}${view.term === null ? '' : ` (term ${view.term})`}${view.commitRate === undefined ? '' : `, ${view.commitRate.toFixed(1)} msg/s committed`}`,
  ];
  const header = ['node', 'api', 'role', 'term', 'height', 'commit', 'applied', 'tip'];
  const table = view.rows.map((row) => {
    const { status } = row;
    if (status === undefined) return [row.id.slice(0, 12), row.api ?? '-', `unreachable: ${row.error ?? ''}`, '', '', '', '', ''];
    const consensus = status.consensus;
    const role = row.member === 'validator' ? `validator (${consensus?.validation?.validatedHeight ?? 0} validated)` : consensus?.role ?? 'master';
    return [row.id.slice(0, 12), row.api ?? '-', role, String(consensus?.term ?? '-'), String(status.height), String(consensus?.commitIndex ?? '-'), String(consensus?.appliedIndex ?? '-'), status.tipHash.slice(0, 12)];
  });
  const widths = header.map((title, column) => Math.max(title.length, ...table.map((cells) => cells[column]!.length)));
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  lines.push(line(header), ...table.map(line));
  const barred = new Map<string, number>();
  for (const row of view.rows) for (const bar of row.status?.consensus?.barred ?? []) barred.set(bar.id, Math.max(barred.get(bar.id) ?? 0, bar.untilTerm));
  for (const [id, untilTerm] of barred) lines.push(`barred from leading through term ${untilTerm} (reported by the validation nodes): ${id.slice(0, 12)}`);
  for (const row of view.rows) if (row.anchors !== undefined) lines.push(...formatAnchors(row.anchors, row.id.slice(0, 12)));
  return lines.join('\n');
}
