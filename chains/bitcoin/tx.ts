// The anchor transaction, built and signed here with no I/O: inputs from the anchor wallet (P2WPKH
// or P2TR key path), output 0 an OP_RETURN holding the 32-byte commitment, output 1 the change.
// Amounts are bigint sats; fee rates bigint sat per 1000 vbytes (sat/kvB, Core's unit divided by
// 10^8); sizes are exact for these shapes, so the fee is known before signing.
import { Transaction, payments, script as bitcoinScript } from 'bitcoinjs-lib';
import { kalimaError } from '../../src/errors.ts';
import { bytesEqual, fromHex, toHex } from '../../src/ledger/hash.ts';
import type { AddressKind, Derivation } from './keys.ts';

export type { AddressKind, Derivation } from './keys.ts';

export interface Outpoint {
  txid: string;
  vout: number;
}

/** An output the wallet can spend. */
export interface Utxo extends Outpoint {
  valueSat: bigint;
  /** Its output script: P2WPKH (0x0014…) or P2TR (0x5120…). */
  script: Uint8Array;
  derivation: Derivation;
}

/** Signs one input's sighash; `kind` must match the script of the output it spends. */
export interface InputSigner {
  kind: AddressKind;
  /** P2WPKH: the 33-byte compressed key; P2TR: the 32-byte x-only output (tweaked) key. */
  publicKey: Uint8Array;
  /** P2WPKH: a 64-byte compact low-R, low-S ECDSA signature; P2TR: a 64-byte BIP-340 signature. */
  sign(hash: Uint8Array): Uint8Array;
}

export interface Change {
  script: Uint8Array;
  derivation: Derivation;
}

/** Relay policy the fee and the change must satisfy; Bitcoin Core's defaults when absent. */
export interface FeePolicy {
  minRelayFeeSatPerKvB?: bigint;
  dustRelayFeeSatPerKvB?: bigint;
}

export interface AnchorTxRequest {
  /** In order of preference: the caller puts the previous anchor's change first. */
  utxos: Utxo[];
  commitment: Uint8Array;
  feeRateSatPerKvB: bigint;
  change: Change;
  signer: (utxo: Utxo) => InputSigner;
  /** BIP-125 signalling: nSequence 0xfffffffd on every input, else 0xffffffff. */
  rbf: boolean;
  /** nLockTime; it only binds when rbf is on (an input with a non-final nSequence). */
  locktime?: number;
  policy?: FeePolicy;
}

export interface AnchorTx {
  hex: string;
  txid: string;
  vsize: number;
  weight: number;
  feeSat: bigint;
  changeValueSat: bigint;
  /** The UTXOs spent, in input order. */
  inputs: Utxo[];
  commitment: Uint8Array;
  change: Change;
  rbf: boolean;
  locktime: number;
}

export const MIN_RELAY_FEE_SAT_PER_KVB = 1000n;
export const DUST_RELAY_FEE_SAT_PER_KVB = 3000n;
export const INCREMENTAL_RELAY_FEE_SAT_PER_KVB = 1000n;
export const COMMITMENT_BYTES = 32;
/** Index of the change output; the OP_RETURN is output 0. */
export const CHANGE_VOUT = 1;
export const SEQUENCE_RBF = 0xfffffffd;
export const SEQUENCE_FINAL = 0xffffffff;
/** 21 million BTC in sat: no amount is larger. */
const MAX_MONEY_SAT = 2_100_000_000_000_000n;

// ---- sizes (BIP-141: weight = 4 × base size + witness size; vsize = ceil(weight / 4)) ----

/** Outpoint 36, empty scriptSig 1, nSequence 4. */
const INPUT_BASE_BYTES = 41;
/**
 * Witness of one input. P2WPKH: item count 1, signature push 1 + DER at most 70 (low R, low S)
 * + sighash byte 1, key push 1 + 33. P2TR key path with SIGHASH_DEFAULT: count 1, push 1 + 64.
 */
const WITNESS_BYTES: Record<AddressKind, number> = { p2wpkh: 1 + 1 + 71 + 1 + 33, p2tr: 1 + 1 + 64 };
/** nVersion 4, nLockTime 4. */
const TX_FIXED_BYTES = 8;
/** The segwit marker and flag, witness data. */
const SEGWIT_MARKER_BYTES = 2;

function compactSizeBytes(count: number): number {
  return count < 0xfd ? 1 : count <= 0xffff ? 3 : 5;
}

/** Value 8, script length, script. */
export function outputBytes(script: Uint8Array): number {
  return 8 + compactSizeBytes(script.length) + script.length;
}

export function opReturnScript(commitment: Uint8Array): Uint8Array {
  if (commitment.length !== COMMITMENT_BYTES) throw new Error(`assertion failed: tx: a commitment is ${COMMITMENT_BYTES} bytes, not ${commitment.length}`);
  return bitcoinScript.compile([bitcoinScript.OPS.OP_RETURN, commitment]);
}

export function scriptKind(script: Uint8Array): AddressKind | undefined {
  if (script.length === 22 && script[0] === 0x00 && script[1] === 0x14) return 'p2wpkh';
  if (script.length === 34 && script[0] === 0x51 && script[1] === 0x20) return 'p2tr';
  return undefined;
}

/** Weight of an anchor transaction spending inputs of `inputKinds` to an OP_RETURN and `changeScript`. */
export function anchorTxWeight(inputKinds: AddressKind[], changeScript: Uint8Array): number {
  const outputs = outputBytes(opReturnScript(new Uint8Array(COMMITMENT_BYTES))) + outputBytes(changeScript);
  const base = TX_FIXED_BYTES + compactSizeBytes(inputKinds.length) + inputKinds.length * INPUT_BASE_BYTES + compactSizeBytes(2) + outputs;
  const witness = SEGWIT_MARKER_BYTES + inputKinds.reduce((sum, kind) => sum + WITNESS_BYTES[kind], 0);
  return 4 * base + witness;
}

export function vsizeOfWeight(weight: number): number {
  return Math.ceil(weight / 4);
}

/** fee = ceil(rate × vsize / 1000), the rate raised to the minimum relay fee first. */
export function feeFor(feeRateSatPerKvB: bigint, vsize: number, minRelayFeeSatPerKvB = MIN_RELAY_FEE_SAT_PER_KVB): bigint {
  const rate = feeRateSatPerKvB > minRelayFeeSatPerKvB ? feeRateSatPerKvB : minRelayFeeSatPerKvB;
  return ceilDiv(rate * BigInt(vsize), 1000n);
}

/**
 * Bitcoin Core's GetDustThreshold: the output's size plus the size of spending it (a witness input
 * counts 32 + 4 + 1 + 107/4 + 4 = 67 vbytes, any other 148), at the dust relay fee rate. An output
 * worth less is dust and not relayed.
 */
export function dustThresholdSat(script: Uint8Array, dustRelayFeeSatPerKvB = DUST_RELAY_FEE_SAT_PER_KVB): bigint {
  const spendBytes = scriptKind(script) === undefined ? 148 : 67;
  return (BigInt(outputBytes(script) + spendBytes) * dustRelayFeeSatPerKvB) / 1000n;
}

function ceilDiv(numerator: bigint, denominator: bigint): bigint {
  return (numerator + denominator - 1n) / denominator;
}

// ---- building ----

function checkAmount(valueSat: bigint, what: string): void {
  if (typeof valueSat !== 'bigint' || valueSat < 0n || valueSat > MAX_MONEY_SAT) throw new Error(`assertion failed: tx: ${what} ${String(valueSat)} is not an amount of sat`);
}

function checkUtxo(utxo: Utxo): AddressKind {
  checkAmount(utxo.valueSat, `the value of ${utxo.txid}:${utxo.vout}`);
  if (fromHex(utxo.txid)?.length !== 32 || !Number.isInteger(utxo.vout) || utxo.vout < 0) throw new Error(`assertion failed: tx: bad outpoint ${utxo.txid}:${utxo.vout}`);
  const kind = scriptKind(utxo.script);
  if (kind === undefined || kind !== utxo.derivation.kind) throw new Error(`assertion failed: tx: ${utxo.txid}:${utxo.vout} pays ${toHex(utxo.script)}, not a ${utxo.derivation.kind} output`);
  return kind;
}

/**
 * Spends utxos[0], then the next ones in order until the fee and a change output above dust are
 * covered; INSUFFICIENT_FUNDS when all of them do not suffice.
 */
export function buildAnchorTx(request: AnchorTxRequest): AnchorTx {
  const { utxos, change, policy = {} } = request;
  if (utxos.length === 0) throw kalimaError('KALIMA_ERR_BITCOIN_INSUFFICIENT_FUNDS', { availableSat: 0, utxos: 0 });
  checkAmount(request.feeRateSatPerKvB, 'the fee rate');
  const kinds = utxos.map(checkUtxo);
  const dustSat = dustThresholdSat(change.script, policy.dustRelayFeeSatPerKvB);
  let availableSat = 0n;
  let neededSat = 0n;
  for (let count = 1; count <= utxos.length; count++) {
    availableSat += utxos[count - 1]!.valueSat;
    const vsize = vsizeOfWeight(anchorTxWeight(kinds.slice(0, count), change.script));
    const feeSat = feeFor(request.feeRateSatPerKvB, vsize, policy.minRelayFeeSatPerKvB);
    neededSat = feeSat + dustSat;
    if (availableSat >= neededSat) {
      return assembleAnchorTx({ ...request, inputs: utxos.slice(0, count), feeSat, locktime: request.locktime ?? 0 });
    }
  }
  throw kalimaError('KALIMA_ERR_BITCOIN_INSUFFICIENT_FUNDS', { neededSat: Number(neededSat), availableSat: Number(availableSat), utxos: utxos.length });
}

export interface AssembleRequest {
  inputs: Utxo[];
  commitment: Uint8Array;
  change: Change;
  feeSat: bigint;
  signer: (utxo: Utxo) => InputSigner;
  rbf: boolean;
  locktime: number;
}

/** Builds and signs the transaction spending exactly `inputs` and paying exactly `feeSat`. */
export function assembleAnchorTx(request: AssembleRequest): AnchorTx {
  const { inputs, commitment, change, feeSat, rbf, locktime } = request;
  const kinds = inputs.map(checkUtxo);
  checkAmount(feeSat, 'the fee');
  const changeValueSat = inputs.reduce((sum, utxo) => sum + utxo.valueSat, 0n) - feeSat;
  if (changeValueSat < 0n) throw new Error('assertion failed: tx: the fee exceeds the inputs');
  if (!Number.isInteger(locktime) || locktime < 0 || locktime > 0xffffffff) throw new Error(`assertion failed: tx: bad locktime ${locktime}`);

  const tx = new Transaction();
  tx.version = 2;
  tx.locktime = locktime;
  for (const utxo of inputs) tx.addInput(Uint8Array.from(Buffer.from(utxo.txid, 'hex').reverse()), utxo.vout, rbf ? SEQUENCE_RBF : SEQUENCE_FINAL);
  tx.addOutput(opReturnScript(commitment), 0n);
  tx.addOutput(change.script, changeValueSat);

  // BIP-341 commits to every spent output's script and value.
  const prevoutScripts = inputs.map((utxo) => utxo.script);
  const prevoutValues = inputs.map((utxo) => utxo.valueSat);
  inputs.forEach((utxo, index) => {
    const signer = request.signer(utxo);
    if (signer.kind !== kinds[index]) throw new Error(`assertion failed: tx: a ${signer.kind} signer for a ${kinds[index]} input`);
    if (signer.kind === 'p2wpkh') {
      const expected = payments.p2wpkh({ pubkey: signer.publicKey }).output!;
      if (!bytesEqual(expected, utxo.script)) throw new Error(`assertion failed: tx: the signer's key does not pay ${utxo.txid}:${utxo.vout}`);
      // BIP-143: the scriptCode of P2WPKH is the P2PKH script of the same key hash.
      const scriptCode = payments.p2pkh({ hash: utxo.script.subarray(2) }).output!;
      const hash = tx.hashForWitnessV0(index, scriptCode, utxo.valueSat, Transaction.SIGHASH_ALL);
      tx.setWitness(index, [bitcoinScript.signature.encode(signer.sign(hash), Transaction.SIGHASH_ALL), signer.publicKey]);
    } else {
      if (!bytesEqual(signer.publicKey, utxo.script.subarray(2))) throw new Error(`assertion failed: tx: the signer's key does not pay ${utxo.txid}:${utxo.vout}`);
      const hash = tx.hashForWitnessV1(index, prevoutScripts, prevoutValues, Transaction.SIGHASH_DEFAULT);
      tx.setWitness(index, [signer.sign(hash)]);
    }
  });

  const weight = tx.weight();
  const estimated = anchorTxWeight(kinds, change.script);
  // A signature with a short S is one byte shorter; never longer than estimated.
  if (weight > estimated) throw new Error(`assertion failed: tx: weight ${weight} above the estimate ${estimated}`);
  return {
    hex: tx.toHex(), txid: tx.getId(), vsize: tx.virtualSize(), weight, feeSat, changeValueSat,
    inputs, commitment, change, rbf, locktime,
  };
}

/** The effective fee rate in sat/kvB, rounded down. */
export function feeRateOf(tx: Pick<AnchorTx, 'feeSat' | 'vsize'>): bigint {
  return (tx.feeSat * 1000n) / BigInt(tx.vsize);
}
