// Bitcoin Core's and bcoin's RPC errors mapped onto the catalogue, one row per branch, with the
// texts the nodes send (Core: validation.cpp, policy/rbf.cpp, rpc/; bcoin: lib/node/rpc.js and
// lib/mempool/mempool.js).
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE } from '../../src/errors.ts';
import { type RpcDialect, classifyRejectReason, rpcError } from '../../chains/bitcoin/rpc-errors.ts';

describe('rpcError', () => {
  it.each<{ rpcCode: number; rpcMessage: string; dialect?: RpcDialect; code: string; reason?: string }>([
    { rpcCode: -28, rpcMessage: 'Loading block index…', code: 'KALIMA_ERR_BITCOIN_WARMING_UP' },
    { rpcCode: -5, rpcMessage: 'No such mempool or blockchain transaction. Use gettransaction for wallet transactions.', code: 'KALIMA_ERR_BITCOIN_NOT_FOUND' },
    { rpcCode: -5, rpcMessage: 'Block not found', code: 'KALIMA_ERR_BITCOIN_NOT_FOUND' },
    { rpcCode: -5, rpcMessage: 'Error: Invalid address', code: 'KALIMA_ERR_BITCOIN_BAD_PARAMETER' },
    { rpcCode: -8, rpcMessage: 'Block height out of range', code: 'KALIMA_ERR_BITCOIN_BAD_PARAMETER' },
    { rpcCode: -3, rpcMessage: 'Expected type number, got string', code: 'KALIMA_ERR_BITCOIN_BAD_PARAMETER' },
    { rpcCode: -22, rpcMessage: 'TX decode failed', code: 'KALIMA_ERR_BITCOIN_BAD_PARAMETER' },
    { rpcCode: -32602, rpcMessage: 'Invalid params', code: 'KALIMA_ERR_BITCOIN_BAD_PARAMETER' },
    { rpcCode: -32601, rpcMessage: 'Method not found', code: 'KALIMA_ERR_BITCOIN_METHOD_NOT_FOUND' },
    { rpcCode: -26, rpcMessage: 'min relay fee not met, 100 < 141', code: 'KALIMA_ERR_BITCOIN_TX_REJECTED', reason: 'fee' },
    { rpcCode: -26, rpcMessage: 'mempool min fee not met, 141 < 282', code: 'KALIMA_ERR_BITCOIN_TX_REJECTED', reason: 'fee' },
    { rpcCode: -26, rpcMessage: 'insufficient fee, rejecting replacement 1a2b; new feerate 0.00001 BTC/kvB <= old feerate 0.00002 BTC/kvB', code: 'KALIMA_ERR_BITCOIN_TX_REJECTED', reason: 'fee' },
    { rpcCode: -26, rpcMessage: 'txn-mempool-conflict', code: 'KALIMA_ERR_BITCOIN_TX_REJECTED', reason: 'conflict' },
    { rpcCode: -25, rpcMessage: 'bad-txns-inputs-missingorspent', code: 'KALIMA_ERR_BITCOIN_TX_REJECTED', reason: 'missing-inputs' },
    { rpcCode: -25, rpcMessage: 'Missing inputs', code: 'KALIMA_ERR_BITCOIN_TX_REJECTED', reason: 'missing-inputs' },
    { rpcCode: -26, rpcMessage: 'non-mandatory-script-verify-flag (Invalid Schnorr signature)', code: 'KALIMA_ERR_BITCOIN_TX_REJECTED', reason: 'other' },
    { rpcCode: -25, rpcMessage: 'max-fee-exceeded', code: 'KALIMA_ERR_BITCOIN_TX_REJECTED', reason: 'other' },
    { rpcCode: -27, rpcMessage: 'Transaction outputs already in utxo set', code: 'KALIMA_ERR_BITCOIN_TX_ALREADY_CONFIRMED' },
    { rpcCode: -1, rpcMessage: 'Block not found', dialect: 'bcoin', code: 'KALIMA_ERR_BITCOIN_NOT_FOUND' },
    { rpcCode: -1, rpcMessage: 'Transaction not in mempool.', dialect: 'bcoin', code: 'KALIMA_ERR_BITCOIN_NOT_FOUND' },
    { rpcCode: -1, rpcMessage: 'Block not found', dialect: 'core', code: 'KALIMA_ERR_BITCOIN_RPC' },
    { rpcCode: -32603, rpcMessage: 'Mempool/chain tip mismatch! Unsafe to create block.', dialect: 'bcoin', code: 'KALIMA_ERR_BITCOIN_RPC' },
  ])('$rpcCode $rpcMessage ($dialect) → $code $reason', ({ rpcCode, rpcMessage, dialect = 'core', code, reason }) => {
    const error = rpcError('sendrawtransaction', rpcCode, rpcMessage, dialect);
    expect(error.code).toBe(code);
    expect(error.status).toBe(ERROR_CATALOGUE[error.code].status);
    expect(error.details).toEqual({ method: 'sendrawtransaction', rpcCode, rpcMessage, ...(reason === undefined ? {} : { reason }) });
  });
});

describe('classifyRejectReason (bcoin\'s texts)', () => {
  it.each([
    ['insufficient priority', 'fee'],
    ['rate limited free transaction', 'fee'],
    ['bad-txns-inputs-spent', 'conflict'],
    ['absurdly-high-fee', 'other'],
    ['no-witness-yet', 'other'],
  ])('%s → %s', (message, reason) => {
    expect(classifyRejectReason(message)).toBe(reason);
  });
});
