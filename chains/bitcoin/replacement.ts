// BIP-125 fee bumping of an unconfirmed anchor transaction: the replacement spends the same inputs
// to the same two outputs, only the change is smaller. Bitcoin Core (policy/rbf.cpp) requires
// rule 3, an absolute fee at least the original's; rule 4, extra fee at least the incremental
// relay fee for the replacement's own size; and a fee rate above the original's.
import { kalimaError } from '../../src/errors.ts';
import {
  type AnchorTx, type InputSigner, type Utxo, INCREMENTAL_RELAY_FEE_SAT_PER_KVB,
  anchorTxWeight, assembleAnchorTx, dustThresholdSat, feeFor, feeRateOf, scriptKind, vsizeOfWeight,
} from './tx.ts';

export interface ReplacementRequest {
  original: AnchorTx;
  feeRateSatPerKvB: bigint;
  signer: (utxo: Utxo) => InputSigner;
  /** A newer commitment may ride on the replacement; the original's when absent. */
  commitment?: Uint8Array;
  incrementalRelayFeeSatPerKvB?: bigint;
  dustRelayFeeSatPerKvB?: bigint;
}

/** The fee a replacement of `original` at `feeRateSatPerKvB` pays: the larger of the rate's fee and rule 4's minimum. */
export function replacementFeeSat(original: AnchorTx, feeRateSatPerKvB: bigint, incrementalRelayFeeSatPerKvB = INCREMENTAL_RELAY_FEE_SAT_PER_KVB): bigint {
  const kinds = original.inputs.map((utxo) => scriptKind(utxo.script)!);
  const vsize = vsizeOfWeight(anchorTxWeight(kinds, original.change.script));
  const atRateSat = feeFor(feeRateSatPerKvB, vsize, 0n);
  const ruleFourSat = original.feeSat + feeFor(incrementalRelayFeeSatPerKvB, vsize, 0n);
  return atRateSat > ruleFourSat ? atRateSat : ruleFourSat;
}

export function buildReplacement(request: ReplacementRequest): AnchorTx {
  const { original, feeRateSatPerKvB } = request;
  if (!original.rbf) throw kalimaError('KALIMA_ERR_BITCOIN_BAD_REPLACEMENT', { txid: original.txid, reason: 'the original does not signal BIP-125 replaceability' });
  const originalRateSatPerKvB = feeRateOf(original);
  if (feeRateSatPerKvB <= originalRateSatPerKvB) {
    throw kalimaError('KALIMA_ERR_BITCOIN_BAD_REPLACEMENT', { txid: original.txid, feeRateSatPerKvB: Number(feeRateSatPerKvB), originalFeeRateSatPerKvB: Number(originalRateSatPerKvB) });
  }
  const feeSat = replacementFeeSat(original, feeRateSatPerKvB, request.incrementalRelayFeeSatPerKvB);
  const availableSat = original.inputs.reduce((sum, utxo) => sum + utxo.valueSat, 0n);
  const neededSat = feeSat + dustThresholdSat(original.change.script, request.dustRelayFeeSatPerKvB);
  if (availableSat < neededSat) {
    throw kalimaError('KALIMA_ERR_BITCOIN_INSUFFICIENT_FUNDS', { replacing: original.txid, neededSat: Number(neededSat), availableSat: Number(availableSat) });
  }
  return assembleAnchorTx({
    inputs: original.inputs, commitment: request.commitment ?? original.commitment, change: original.change,
    feeSat, signer: request.signer, rbf: true, locktime: original.locktime,
  });
}

/**
 * When to bump, kept small: while the anchor is unconfirmed, and the node's estimate is at least
 * `bumpPercent` % of the anchor's fee rate (default 125: a bump pays at least a quarter more, so
 * a noisy estimate does not replace it every interval), the new rate is the estimate, capped at
 * `maxFeeRateSatPerKvB`. Undefined means keep the anchor as it is.
 */
export interface BumpPolicy {
  bumpPercent?: number;
  maxFeeRateSatPerKvB?: bigint;
}

export function bumpFeeRate(original: AnchorTx, estimateSatPerKvB: bigint | undefined, policy: BumpPolicy = {}): bigint | undefined {
  if (estimateSatPerKvB === undefined || !original.rbf) return undefined;
  const bumpPercent = BigInt(policy.bumpPercent ?? 125);
  const originalRateSatPerKvB = feeRateOf(original);
  if (estimateSatPerKvB * 100n < originalRateSatPerKvB * bumpPercent) return undefined;
  const cap = policy.maxFeeRateSatPerKvB;
  const rate = cap !== undefined && estimateSatPerKvB > cap ? cap : estimateSatPerKvB;
  return rate > originalRateSatPerKvB ? rate : undefined;
}

