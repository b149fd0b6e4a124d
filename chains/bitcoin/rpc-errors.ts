// Bitcoin Core's RPC error codes (src/rpc/protocol.h) mapped onto the catalogue. Every mapped error
// carries {method, rpcCode, rpcMessage}; a refused transaction also carries the reject reason as
// one of four classes the anchor lifecycle acts on.
import { type KalimaError, type KalimaErrorCode, kalimaError } from '../../src/errors.ts';

export type RpcDialect = 'core' | 'bcoin';

/** Why a node refused a transaction, as far as the anchor lifecycle cares. */
export type RejectReason = 'fee' | 'conflict' | 'missing-inputs' | 'other';

export const RPC_CODE = {
  miscError: -1,
  typeError: -3,
  invalidAddressOrKey: -5,
  invalidParameter: -8,
  deserializationError: -22,
  verifyError: -25,
  verifyRejected: -26,
  verifyAlreadyInChain: -27,
  inWarmup: -28,
  methodNotFound: -32601,
  invalidParams: -32602,
} as const;

// Core's texts (validation.cpp, policy/rbf.cpp, rpc) and bcoin's (lib/mempool/mempool.js).
const FEE_PATTERN = /min relay fee not met|mempool min fee not met|insufficient fee|fee too low|insufficient priority|rate limited free/i;
const CONFLICT_PATTERN = /txn-mempool-conflict|bad-txns-inputs-spent/i;
const MISSING_INPUTS_PATTERN = /missing-inputs|missing inputs|inputs-missingorspent/i;

export function classifyRejectReason(rpcMessage: string): RejectReason {
  if (MISSING_INPUTS_PATTERN.test(rpcMessage)) return 'missing-inputs';
  if (CONFLICT_PATTERN.test(rpcMessage)) return 'conflict';
  if (FEE_PATTERN.test(rpcMessage)) return 'fee';
  return 'other';
}

/** bcoin answers "not found" with RPC_MISC_ERROR (-1) where Core uses -5. */
const BCOIN_NOT_FOUND_PATTERN = /not found|not in mempool/i;

function codeFor(rpcCode: number, rpcMessage: string, dialect: RpcDialect): KalimaErrorCode {
  switch (rpcCode) {
    case RPC_CODE.inWarmup: return 'KALIMA_ERR_BITCOIN_WARMING_UP';
    // -5 is "invalid address or key": a txid or block that is not there, or an address that does not parse.
    case RPC_CODE.invalidAddressOrKey: return /invalid address/i.test(rpcMessage) ? 'KALIMA_ERR_BITCOIN_BAD_PARAMETER' : 'KALIMA_ERR_BITCOIN_NOT_FOUND';
    // A parameter of the wrong type (-3, -32602), out of range (-8) or that does not decode (-22).
    case RPC_CODE.typeError:
    case RPC_CODE.invalidParameter:
    case RPC_CODE.deserializationError:
    case RPC_CODE.invalidParams: return 'KALIMA_ERR_BITCOIN_BAD_PARAMETER';
    case RPC_CODE.methodNotFound: return 'KALIMA_ERR_BITCOIN_METHOD_NOT_FOUND';
    case RPC_CODE.verifyError:
    case RPC_CODE.verifyRejected: return 'KALIMA_ERR_BITCOIN_TX_REJECTED';
    case RPC_CODE.verifyAlreadyInChain: return 'KALIMA_ERR_BITCOIN_TX_ALREADY_CONFIRMED';
    case RPC_CODE.miscError:
      if (dialect === 'bcoin' && BCOIN_NOT_FOUND_PATTERN.test(rpcMessage)) return 'KALIMA_ERR_BITCOIN_NOT_FOUND';
      return 'KALIMA_ERR_BITCOIN_RPC';
    default: return 'KALIMA_ERR_BITCOIN_RPC';
  }
}

export function rpcError(method: string, rpcCode: number, rpcMessage: string, dialect: RpcDialect): KalimaError {
  const code = codeFor(rpcCode, rpcMessage, dialect);
  const details: Record<string, unknown> = { method, rpcCode, rpcMessage };
  if (code === 'KALIMA_ERR_BITCOIN_TX_REJECTED') details.reason = classifyRejectReason(rpcMessage);
  return kalimaError(code, details);
}
