// Why a broadcast transaction is not in the mempool. bitcoind says why when it refuses one (the
// error of sendrawtransaction); bcoin answers with the txid and logs the reason, so the reason is
// found out from what the node does show: the transaction in a block, its inputs, the relay fee.
import { Transaction } from 'bitcoinjs-lib';
import { type KalimaError, isKalimaError, kalimaError } from '../../src/errors.ts';
import type { RejectReason } from './rpc-errors.ts';
import type { BitcoinRpc } from './rpc.ts';
import { displayHex } from './block.ts';
import type { Outpoint } from './tx.ts';

/** A larger mempool is not scanned for a conflicting spend (the scan is one call per transaction). */
export const MEMPOOL_SCAN_TXS_MAX = 1000;

/** The txid of an input's previous output, in display order. */
export function inputOutpoint(tx: Transaction, index: number): Outpoint {
  const input = tx.ins[index]!;
  return { txid: displayHex(input.hash), vout: input.index };
}

/** A TX_ALREADY_CONFIRMED or TX_REJECTED error for `tx`, which the node does not hold in its mempool. */
export async function explainAbsenceFromMempool(rpc: BitcoinRpc, tx: Transaction): Promise<KalimaError> {
  const txid = tx.getId();
  const base = { method: 'sendrawtransaction', txid, rpcMessage: 'not in the mempool after broadcast' };
  const confirmedIn = await blockHoldingTx(rpc, txid);
  if (confirmedIn !== undefined) return kalimaError('KALIMA_ERR_BITCOIN_TX_ALREADY_CONFIRMED', { ...base, blockHash: confirmedIn });

  const outpoints = tx.ins.map((_, index) => inputOutpoint(tx, index));
  let inputsSat = 0n;
  for (const outpoint of outpoints) {
    const coin = await rpc.getTxOut(outpoint.txid, outpoint.vout, true);
    if (coin === undefined) {
      // Core's gettxout hides an output a mempool transaction spends: the output is there, taken.
      const taken = (await rpc.getTxOut(outpoint.txid, outpoint.vout, false)) !== undefined
        || (await rpc.getMempoolEntry(outpoint.txid)) !== undefined;
      return rejected(base, taken ? 'conflict' : 'missing-inputs', { outpoint });
    }
    inputsSat += coin.valueSat;
  }

  // bcoin's gettxout shows a confirmed output even when a mempool transaction spends it.
  const spender = await mempoolSpender(rpc, outpoints, txid);
  if (spender !== undefined) return rejected(base, 'conflict', { conflictingTxid: spender });

  const outputsSat = tx.outs.reduce((sum, out) => sum + out.value, 0n);
  const feeSat = inputsSat - outputsSat;
  const vsize = tx.virtualSize();
  const { relayFeeSatPerKvB } = await rpc.getNetworkInfo();
  if (feeSat * 1000n < relayFeeSatPerKvB * BigInt(vsize)) return rejected(base, 'fee', { feeSat: Number(feeSat), vsize, relayFeeSatPerKvB: Number(relayFeeSatPerKvB) });
  return rejected(base, 'other', { feeSat: Number(feeSat), vsize });
}

function rejected(base: Record<string, unknown>, reason: RejectReason, extra: Record<string, unknown>): KalimaError {
  return kalimaError('KALIMA_ERR_BITCOIN_TX_REJECTED', { ...base, reason, ...extra });
}

async function blockHoldingTx(rpc: BitcoinRpc, txid: string): Promise<string | undefined> {
  try {
    const found = await rpc.getRawTransaction(txid);
    return found.confirmations > 0 ? found.blockHashHex : undefined;
  } catch (error) {
    // Without a transaction index a confirmed transaction is not found either; then its inputs
    // show as spent (missing-inputs), as bitcoind's own answer would.
    if (isKalimaError(error, 'KALIMA_ERR_BITCOIN_NOT_FOUND')) return undefined;
    throw error;
  }
}

async function mempoolSpender(rpc: BitcoinRpc, outpoints: Outpoint[], txid: string): Promise<string | undefined> {
  const mempool = await rpc.getRawMempool();
  if (mempool.length > MEMPOOL_SCAN_TXS_MAX) return undefined;
  const wanted = new Set(outpoints.map((outpoint) => `${outpoint.txid}:${outpoint.vout}`));
  for (const candidate of mempool) {
    if (candidate === txid) continue;
    let hex: string;
    try {
      ({ hex } = await rpc.getRawTransaction(candidate));
    } catch (error) {
      if (isKalimaError(error, 'KALIMA_ERR_BITCOIN_NOT_FOUND')) continue; // mined or evicted meanwhile
      throw error;
    }
    const other = Transaction.fromHex(hex);
    for (let index = 0; index < other.ins.length; index++) {
      const { txid: spentTxid, vout } = inputOutpoint(other, index);
      if (wanted.has(`${spentTxid}:${vout}`)) return candidate;
    }
  }
  return undefined;
}
