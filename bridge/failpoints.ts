// The bridge coordinator's failpoints: one named place between every two steps of the protocol.
// The coordinator calls its `failpoint(name, txId)` hook at each; in tests the hook throws, which
// the coordinator treats as its own death (it does nothing more, like a killed process); in
// production `processFailpoints` ends the process at the names listed in KALIMA_FAILPOINTS.
import type { Logger } from '../src/ports.ts';

export const BRIDGE_FAILPOINTS = [
  /** begin accepted, before the initiation record is written. */
  'bridge.before-initiation',
  /** The initiation record is on disk; no participant was asked yet. */
  'bridge.after-initiation',
  /** A vote (or an error or timeout standing for 'no') came back, before it counts. */
  'bridge.after-vote',
  /** Every participant voted yes; the commit decision is not written yet. */
  'bridge.before-commit-decision',
  /** The commit decision is on disk; no participant was told yet. */
  'bridge.after-commit-decision',
  /** Abort was decided (a no, an error, a timeout, the deadline, or recovery); its record is not written yet. */
  'bridge.before-abort-decision',
  /** The abort record is written; no participant was told yet. */
  'bridge.after-abort-decision',
  /** A participant acknowledged commit, before it counts. */
  'bridge.after-commit-ack',
  /** A participant acknowledged abort, before it counts. */
  'bridge.after-abort-ack',
  /** Every participant acknowledged; the records are not removed yet. */
  'bridge.before-end',
  /** The records are removed; the outcome is not reported yet. */
  'bridge.after-end',
] as const;

export type BridgeFailpoint = (typeof BRIDGE_FAILPOINTS)[number];

export type FailpointHook = (name: BridgeFailpoint, txId: string) => void;

/**
 * The production hook: at a failpoint named in `names` (KALIMA_FAILPOINTS, comma-separated), logs
 * and kills the process with SIGKILL, so nothing after it runs (no exit handlers, no flushes).
 */
export function processFailpoints(names: ReadonlySet<string>, logger: Logger): FailpointHook | undefined {
  if (![...names].some((name) => name.startsWith('bridge.'))) return undefined;
  return (name, txId) => {
    if (!names.has(name)) return;
    logger.error({ failpoint: name, txId }, 'bridge: failpoint reached; the process ends here');
    process.kill(process.pid, 'SIGKILL');
  };
}
