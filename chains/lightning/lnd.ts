// The Lightning adapter over LND's gRPC, through the `lightning` package (ln-service's typed
// twin). This first part connects (cert, macaroon, socket) and reads the wallet's info; invoices,
// hold invoices, payments, subscriptions and the reconnect-and-reconcile logic come next (issue 5).
import { authenticatedLndGrpc, getWalletInfo, type AuthenticatedLnd } from 'lightning';
import { kalimaError, type KalimaError } from '../../src/errors.ts';

export interface LndConnection {
  /** host:port of LND's gRPC (10009 by default). */
  socket: string;
  /** LND's tls.cert, base64 (or hex) of the PEM file. */
  cert: string;
  /** A macaroon, hex or base64. */
  macaroon: string;
}

export interface WalletInfo {
  alias: string;
  /** The node's public key, compressed, hex. */
  publicKey: string;
  blockHeight: number;
  syncedToChain: boolean;
  version: string;
}

/** The gRPC status of a node that cannot be reached. */
const GRPC_UNAVAILABLE = 14;

/**
 * An error of the `lightning` package ([httpCode, 'Name', {err: {code, details}}]) in the catalogue:
 * a refused macaroon or certificate, an unreachable node, or anything else with its texts kept.
 */
export function lightningError(method: string, error: unknown): KalimaError {
  const [status, name, extra] = Array.isArray(error) ? (error as [number, string, { err?: { code?: number; details?: string } }?]) : [undefined, undefined, undefined];
  const grpcCode = extra?.err?.code;
  const details = extra?.err?.details ?? (error instanceof Error ? error.message : undefined);
  const context = { method, status, name, grpcCode, details };
  if (grpcCode === GRPC_UNAVAILABLE) return kalimaError('KALIMA_ERR_LIGHTNING_UNREACHABLE', context);
  if (typeof details === 'string' && /verification failed|macaroon/i.test(details)) return kalimaError('KALIMA_ERR_LIGHTNING_UNAUTHORIZED', context);
  return kalimaError('KALIMA_ERR_LIGHTNING_RPC', context);
}

export class LndClient {
  private readonly lnd: AuthenticatedLnd;

  constructor(connection: LndConnection) {
    // One set of gRPC clients per connection: making them costs a few hundred ms.
    this.lnd = authenticatedLndGrpc({ cert: connection.cert, macaroon: connection.macaroon, socket: connection.socket }).lnd;
  }

  async walletInfo(): Promise<WalletInfo> {
    let info;
    try {
      info = await getWalletInfo({ lnd: this.lnd });
    } catch (error) {
      throw lightningError('getWalletInfo', error);
    }
    return { alias: info.alias, publicKey: info.public_key, blockHeight: info.current_block_height, syncedToChain: info.is_synced_to_chain, version: info.version };
  }
}
