// A validation node's report of a leader: one of its blocks did not verify ("wrong": its hash,
// signature, contents or state digest), or reached the validation node too long after its own time
// ("late"). Signed with the validation node's key (BIP-340) and sent to every master, which bars
// the leader once a majority of the validation nodes reported it for the same term (Raft.bar).
import { kalimaError } from '../errors.ts';
import { TAG, fromHex, taggedHash, toHex } from '../ledger/hash.ts';
import { signSchnorr, verifySchnorr } from '../ledger/signature.ts';

export type ReportReason = 'wrong' | 'late';

export interface LeaderReport {
  chain: string;
  /** The reported leader (x-only key, hex) and the term it led. */
  leader: string;
  term: number;
  /** The height of the block reported. */
  height: number;
  reason: ReportReason;
  /** What was wrong, or how late it was (ms), for the operators' logs. */
  detail: string;
  /** The reporting validation node (x-only key, hex). */
  validator: string;
  timeMs: number;
}

const DETAIL_CHARS_MAX = 512;

function signingHash(report: LeaderReport): Uint8Array {
  const canonical = JSON.stringify([report.chain, report.leader, report.term, report.height, report.reason, report.detail, report.validator, report.timeMs]);
  return taggedHash(TAG.leaderReport, new TextEncoder().encode(canonical));
}

export function signReport(report: LeaderReport, secretKey: Uint8Array, auxRand: Uint8Array): Uint8Array {
  const signed = { ...report, detail: report.detail.slice(0, DETAIL_CHARS_MAX) };
  const signature = signSchnorr(signingHash(signed), secretKey, auxRand);
  return new TextEncoder().encode(JSON.stringify({ ...signed, signature: toHex(signature) }));
}

/**
 * A signed report from one of `validators`, for `chain`; throws KALIMA_ERR_CONSENSUS_BAD_REPORT
 * when it is malformed, from anyone else, or its signature does not verify.
 */
export function openReport(bytes: Uint8Array, chain: string, validators: ReadonlySet<string>): LeaderReport {
  const bad = (reason: string): never => {
    throw kalimaError('KALIMA_ERR_CONSENSUS_BAD_REPORT', { reason });
  };
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as Record<string, unknown>;
  } catch {
    return bad('not JSON');
  }
  const hex64 = (value: unknown): value is string => typeof value === 'string' && /^[0-9a-f]{64}$/.test(value);
  if (typeof raw !== 'object' || raw === null || raw.chain !== chain || !hex64(raw.leader) || !hex64(raw.validator) || !Number.isSafeInteger(raw.term) || !Number.isSafeInteger(raw.height)
    || (raw.reason !== 'wrong' && raw.reason !== 'late') || typeof raw.detail !== 'string' || raw.detail.length > DETAIL_CHARS_MAX || !Number.isSafeInteger(raw.timeMs) || typeof raw.signature !== 'string') {
    bad('the report must be {chain, leader, term, height, reason: "wrong" | "late", detail, validator, timeMs, signature} for this chain');
  }
  const report: LeaderReport = {
    chain, leader: raw.leader as string, term: raw.term as number, height: raw.height as number, reason: raw.reason as ReportReason, detail: raw.detail as string, validator: raw.validator as string, timeMs: raw.timeMs as number,
  };
  if (!validators.has(report.validator)) bad('the reporter is not a validation node of the genesis file');
  const signature = fromHex(raw.signature as string);
  if (signature === undefined || !verifySchnorr(signingHash(report), fromHex(report.validator)!, signature)) bad('the signature does not verify');
  return report;
}
