// Retrying what a leader change explains. A signed message refused with one of these codes may be
// sent again, unchanged, to any master: its nonce makes a second commit impossible.
import { type KalimaErrorCode, isKalimaError } from '../errors.ts';

/** Codes a leader change, a restart or a busy node explain. */
export const RETRYABLE_CODES: readonly KalimaErrorCode[] = [
  'KALIMA_ERR_CONSENSUS_NOT_LEADER', 'KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN', 'KALIMA_ERR_SDK_UNREACHABLE',
  'KALIMA_ERR_NODE_STOPPING', 'KALIMA_ERR_NODE_NOT_READY', 'KALIMA_ERR_API_OVERLOADED',
];

export const retryable = (error: unknown, codes: readonly KalimaErrorCode[] = RETRYABLE_CODES): boolean => isKalimaError(error) && codes.includes(error.code);

/** Runs `action` until it succeeds, or fails with a code not in `codes`, or `deadlineMs` has passed. */
export async function retrying<T>(action: () => Promise<T>, options: { deadlineMs: number; pauseMs: number; codes?: readonly KalimaErrorCode[] }): Promise<T> {
  const started = Date.now();
  for (;;) {
    try {
      return await action();
    } catch (error) {
      if (!retryable(error, options.codes) || Date.now() - started > options.deadlineMs) throw error;
      await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
    }
  }
}
