// The one error catalogue. Every operating error (bad input, a refused permission, a lost peer)
// carries a stable `KALIMA_ERR_<AREA>_<WHAT>` code and an HTTP status; the same code reaches the
// REST client, the SDK and the CLI. Programmer errors are assertions (see `assert` below) and crash.

export const ERROR_CATALOGUE = {
  // codec
  KALIMA_ERR_CODEC_TRUNCATED: { status: 400, message: 'the encoding ends before the value it announces' },
  KALIMA_ERR_CODEC_TRAILING_BYTES: { status: 400, message: 'bytes follow the end of the encoded value' },
  KALIMA_ERR_CODEC_NON_CANONICAL: { status: 400, message: 'the encoding is not canonical' },
  KALIMA_ERR_CODEC_BAD_UTF8: { status: 400, message: 'a text field is not valid UTF-8' },
  KALIMA_ERR_CODEC_UNKNOWN_VERSION: { status: 400, message: 'unknown encoding version' },
  KALIMA_ERR_CODEC_OUT_OF_RANGE: { status: 400, message: 'an integer is out of range' },
  // ledger: messages and blocks
  KALIMA_ERR_LEDGER_BODY_TOO_LARGE: { status: 413, message: 'the message body is larger than 8192 bytes' },
  KALIMA_ERR_LEDGER_BAD_KEY: { status: 400, message: 'the key must match ^[a-z0-9 :.@+_\\-/]+$ (any case) and be at most 256 bytes' },
  KALIMA_ERR_LEDGER_BAD_ADDRESS: { status: 400, message: 'the address must be a path such as /sensors/plant1, at most 256 bytes' },
  KALIMA_ERR_LEDGER_BAD_CHAIN: { status: 400, message: 'the chain name is malformed' },
  KALIMA_ERR_LEDGER_WRONG_CHAIN: { status: 400, message: 'the message is for another chain' },
  KALIMA_ERR_LEDGER_BAD_TTL: { status: 400, message: 'ttl must be -1 (forever) or a whole number of seconds from 1 to 315360000' },
  KALIMA_ERR_LEDGER_BAD_PROPS: { status: 400, message: 'props must be at most 16 key=value pairs, keys ^[a-z0-9_.-]{1,64}$, values at most 256 bytes' },
  KALIMA_ERR_LEDGER_BAD_NONCE: { status: 400, message: 'the nonce must be a whole number from 0 to 2^53-1' },
  KALIMA_ERR_LEDGER_BAD_DEVICE: { status: 400, message: 'the device must be a 32-byte x-only public key' },
  KALIMA_ERR_LEDGER_BAD_SIGNATURE: { status: 401, message: 'the signature does not verify' },
  KALIMA_ERR_LEDGER_NONCE_REPLAYED: { status: 409, message: 'this device already used this nonce' },
  KALIMA_ERR_LEDGER_NONCE_TOO_OLD: { status: 409, message: 'the nonce is older than the replay window' },
  KALIMA_ERR_LEDGER_MESSAGE_TOO_LARGE: { status: 413, message: 'the encoded message does not fit in a block' },
  KALIMA_ERR_LEDGER_BLOCK_TOO_LARGE: { status: 400, message: 'the block is larger than 16384 bytes' },
  KALIMA_ERR_LEDGER_BAD_BLOCK: { status: 400, message: 'the block does not verify' },
  KALIMA_ERR_LEDGER_BAD_ANCHOR: { status: 400, message: 'the anchor record is malformed or names a tip that is not this chain\'s block' },
  KALIMA_ERR_LEDGER_BAD_VALIDATION: { status: 400, message: 'the validation record is malformed or does not follow the validation node\'s previous one' },
  KALIMA_ERR_LEDGER_KEY_NOT_FOUND: { status: 404, message: 'no current value at this address and key' },
  KALIMA_ERR_LEDGER_NOT_FOUND: { status: 404, message: 'no such block or ledger entry' },
  KALIMA_ERR_LEDGER_BAD_RESERVED_BODY: { status: 400, message: 'the body of a message on a reserved address is malformed' },
  // access
  KALIMA_ERR_ACCESS_UNKNOWN_DEVICE: { status: 403, message: 'the device is not registered on this chain' },
  KALIMA_ERR_ACCESS_UNKNOWN_ADDRESS: { status: 404, message: 'the address has not been created by an admin' },
  KALIMA_ERR_ACCESS_PUB_DENIED: { status: 403, message: 'the device may not write to this address' },
  KALIMA_ERR_ACCESS_SUB_DENIED: { status: 403, message: 'the device may not read this address' },
  KALIMA_ERR_ACCESS_ADMIN_ONLY: { status: 403, message: 'only an admin may do this' },
  KALIMA_ERR_ACCESS_MASTERS_ONLY: { status: 403, message: 'only a master of the genesis file may write anchor records' },
  KALIMA_ERR_ACCESS_VALIDATORS_ONLY: { status: 403, message: 'only a validation node of the genesis file may write validations' },
  KALIMA_ERR_ACCESS_BAD_ONBOARDING_CODE: { status: 403, message: 'the onboarding code is unknown, already used or expired' },
  KALIMA_ERR_ACCESS_ALREADY_REGISTERED: { status: 409, message: 'the device is already registered' },
  KALIMA_ERR_ACCESS_AUTH_MISSING: { status: 401, message: 'the request is not signed: send x-kalima-device, x-kalima-timestamp and x-kalima-signature' },
  KALIMA_ERR_ACCESS_AUTH_BAD_SIGNATURE: { status: 401, message: 'the request signature does not verify' },
  KALIMA_ERR_ACCESS_AUTH_REPLAYED: { status: 401, message: 'this request signature was used already; sign each request afresh' },
  KALIMA_ERR_ACCESS_AUTH_EXPIRED: { status: 401, message: 'the request timestamp is too far from the node clock' },
  // marketplace (src/access/market.ts, bridge/market)
  KALIMA_ERR_MARKET_BAD_LISTING: { status: 400, message: 'the listing is malformed: an id ^[a-z0-9][a-z0-9._-]{0,63}$, a prefix outside /kalima, a price of 1 to 100000000 sats, a period of 1 to 315000000 s, the seller\'s LND key' },
  KALIMA_ERR_MARKET_BAD_GRANT: { status: 400, message: 'the grant is malformed or does not match its listing' },
  KALIMA_ERR_MARKET_UNKNOWN_LISTING: { status: 404, message: 'no such listing' },
  KALIMA_ERR_MARKET_NOT_SELLER: { status: 403, message: 'only the listing\'s seller (or an admin) may do this; a seller lists only data it may publish' },
  KALIMA_ERR_MARKET_UNKNOWN_BUYER: { status: 404, message: 'the buyer is not a device registered on this chain' },
  KALIMA_ERR_MARKET_WRONG_AMOUNT: { status: 409, message: 'the amount is not the price' },
  KALIMA_ERR_MARKET_UNKNOWN_PURCHASE: { status: 404, message: 'no such purchase' },
  KALIMA_ERR_MARKET_NOT_CONFIGURED: { status: 404, message: 'this node does not sell (no market section in its config)' },
  KALIMA_ERR_MARKET_TOO_MANY_OPEN: { status: 429, message: 'too many purchases are open (awaiting payment or held); pay or let some expire first' },
  KALIMA_ERR_MARKET_NOT_OUR_LISTING: { status: 409, message: 'the listing is paid to another seller\'s LND node, not this node\'s' },
  // KLX (src/state/klx.ts)
  KALIMA_ERR_KLX_BAD_TRANSFER: { status: 400, message: 'the KLX transfer or issue is malformed' },
  KALIMA_ERR_KLX_INSUFFICIENT_FUNDS: { status: 409, message: 'the account holds less KLX than the transfer moves' },
  KALIMA_ERR_KLX_NOT_OWNER: { status: 403, message: 'only the owner of an account may move its KLX' },
  KALIMA_ERR_KLX_DUPLICATE_TRANSFER: { status: 409, message: 'a transfer with this id is on the chain already' },
  KALIMA_ERR_KLX_ALREADY_ISSUED: { status: 409, message: 'the KLX supply was issued already; it is issued once' },
  KALIMA_ERR_KLX_TRANSFER_EXPIRED: { status: 409, message: 'the transfer was valid only until a time that has passed' },
  KALIMA_ERR_KLX_NOT_ISSUED: { status: 409, message: 'no KLX supply has been issued on this chain' },
  // api
  KALIMA_ERR_API_BAD_REQUEST: { status: 400, message: 'the request is malformed' },
  KALIMA_ERR_API_BAD_JSON: { status: 400, message: 'the request body is not valid JSON' },
  KALIMA_ERR_API_NOT_FOUND: { status: 404, message: 'no such route' },
  KALIMA_ERR_API_OVERLOADED: { status: 503, message: 'the node is overloaded; retry with backoff' },
  KALIMA_ERR_API_CURSOR_AHEAD: { status: 409, message: 'the event cursor is beyond this chain\'s newest message: it belongs to another chain or a lost history' },
  KALIMA_ERR_API_PAYLOAD_TOO_LARGE: { status: 413, message: 'the request body is too large' },
  // lightning (chains/lightning)
  KALIMA_ERR_LIGHTNING_UNREACHABLE: { status: 503, message: 'the LND node could not be reached' },
  KALIMA_ERR_LIGHTNING_UNAUTHORIZED: { status: 502, message: 'the LND node refused the macaroon or the TLS certificate' },
  KALIMA_ERR_LIGHTNING_RPC: { status: 502, message: 'the LND call failed' },
  KALIMA_ERR_LIGHTNING_NOT_SYNCED: { status: 503, message: 'the LND node is not synced to the chain yet; its block height cannot be trusted for HTLC deadlines' },
  KALIMA_ERR_LIGHTNING_TIMEOUT: { status: 504, message: 'the LND node did not answer in time; what was asked may or may not have been done' },
  KALIMA_ERR_LIGHTNING_BAD_ARGUMENT: { status: 400, message: 'a payment hash, preimage, amount or delta given to the Lightning adapter is malformed' },
  KALIMA_ERR_LIGHTNING_BAD_INVOICE: { status: 400, message: 'the payment request is not a valid BOLT 11 invoice' },
  KALIMA_ERR_LIGHTNING_INVOICE_EXPIRED: { status: 410, message: 'the invoice has expired' },
  KALIMA_ERR_LIGHTNING_ALREADY_PAID: { status: 409, message: 'the invoice is already paid (settled); the payer gets its preimage with getPayment' },
  KALIMA_ERR_LIGHTNING_INVOICE_NOT_FOUND: { status: 404, message: 'the LND node has no invoice with this payment hash (or preimage)' },
  KALIMA_ERR_LIGHTNING_INVOICE_NOT_HELD: { status: 409, message: 'the hold invoice has no payment held yet (still open), so it cannot be settled' },
  KALIMA_ERR_LIGHTNING_INVOICE_CANCELED: { status: 409, message: 'the invoice is canceled' },
  KALIMA_ERR_LIGHTNING_DUPLICATE_INVOICE: { status: 409, message: 'an invoice with this payment hash already exists' },
  KALIMA_ERR_LIGHTNING_PAYMENT_FAILED: { status: 502, message: 'the Lightning payment failed; the failure reason is in the details' },
  KALIMA_ERR_LIGHTNING_PAYMENT_IN_FLIGHT: { status: 409, message: 'a payment to this payment hash is already in flight; track it instead of paying again' },
  KALIMA_ERR_LIGHTNING_PAYMENT_NOT_FOUND: { status: 404, message: 'this LND node never paid this payment hash' },
  // bridge (the presumed-commit coordinator, bridge/)
  KALIMA_ERR_BRIDGE_BAD_REQUEST: { status: 400, message: 'the bridge transaction request is malformed: the id must be 2 to 128 lowercase hex digits, with 1 to 16 participants of a known kind' },
  KALIMA_ERR_BRIDGE_UNKNOWN_PARTICIPANT: { status: 400, message: 'no participant factory is registered for this participant kind' },
  KALIMA_ERR_BRIDGE_DUPLICATE_TX: { status: 409, message: 'a bridge transaction with this id is already in progress' },
  KALIMA_ERR_BRIDGE_DEADLINE_PASSED: { status: 409, message: 'the decision deadline (the earliest participant deadline minus the margin) has already passed' },
  KALIMA_ERR_BRIDGE_OVERLOADED: { status: 503, message: 'too many bridge transactions are in progress; retry with backoff' },
  KALIMA_ERR_BRIDGE_BAD_RECORD: { status: 500, message: 'a record of the bridge log is malformed; the coordinator does not start on a log it cannot read' },
  KALIMA_ERR_BRIDGE_STOPPED: { status: 503, message: 'the bridge coordinator stopped (closed, crashed or its log failed) before the transaction ended; recovery on the next start ends it' },
  // anchors
  KALIMA_ERR_ANCHOR_NOT_CONFIGURED: { status: 404, message: 'this node does not anchor its chain into Bitcoin (no bitcoin section in its config)' },
  KALIMA_ERR_ANCHOR_NOT_ANCHORED: { status: 404, message: 'no recorded anchor covers this block yet' },
  KALIMA_ERR_ANCHOR_REORG_TOO_DEEP: { status: 500, message: 'Bitcoin reorganised deeper than the blocks the anchor wallet keeps; start it again with an earlier birth height' },
  KALIMA_ERR_NODE_INTERNAL: { status: 500, message: 'internal error; the node log has the details' },
  // node and store
  KALIMA_ERR_NODE_NOT_READY: { status: 503, message: 'the node is not serving' },
  KALIMA_ERR_NODE_STOPPING: { status: 503, message: 'the node is shutting down' },
  KALIMA_ERR_STORE_CORRUPT: { status: 500, message: 'the stored chain is corrupt' },
  KALIMA_ERR_STORE_GENESIS_MISMATCH: { status: 500, message: 'the data directory belongs to another genesis' },
  KALIMA_ERR_STORE_FORMAT: { status: 500, message: 'the data directory was written by a version of this node with another store format; start from an empty directory' },
  KALIMA_ERR_STORE_LOCKED: { status: 500, message: 'the data directory is in use by another process' },
  KALIMA_ERR_CONFIG_INVALID: { status: 400, message: 'the configuration or genesis file is invalid' },
  // consensus
  KALIMA_ERR_CONSENSUS_NOT_LEADER: { status: 421, message: 'this node is not the leader; send the message to the leader' },
  KALIMA_ERR_CONSENSUS_ENTRY_TOO_LARGE: { status: 400, message: 'a log entry is larger than a block may be' },
  KALIMA_ERR_CONSENSUS_BAD_ENTRY: { status: 502, message: 'the leader replicated a block this node refuses' },
  KALIMA_ERR_CONSENSUS_BAD_REPORT: { status: 400, message: 'the leader report is malformed, not from a validation node, or not signed by it' },
  KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN: { status: 503, message: 'whether the entry committed is not known here; a retry with the same nonce is safe' },
  // node-to-node transport (BOLT 8)
  KALIMA_ERR_NET_HANDSHAKE_FAILED: { status: 502, message: 'the encrypted handshake with the peer failed' },
  KALIMA_ERR_NET_BAD_FRAME: { status: 502, message: 'the peer sent a frame that does not decrypt; the connection is closed' },
  KALIMA_ERR_NET_MESSAGE_TOO_LARGE: { status: 400, message: 'a transport message is larger than 65,535 bytes' },
  KALIMA_ERR_NET_UNKNOWN_PEER: { status: 403, message: 'the peer\'s node key is not one the genesis file names' },
  KALIMA_ERR_NET_PEER_PENALISED: { status: 403, message: 'the peer sent frames that did not decrypt and is refused for a while' },
  KALIMA_ERR_NET_QUEUE_FULL: { status: 503, message: 'too much is queued for this peer; slow down' },
  KALIMA_ERR_NET_LINK_CLOSED: { status: 503, message: 'the link to the peer is closed' },
  KALIMA_ERR_NET_UNREACHABLE: { status: 503, message: 'the peer could not be reached' },
  KALIMA_ERR_NET_TIMEOUT: { status: 504, message: 'the peer did not answer in time; what was asked may or may not have been done' },
  // client nodes: the sync protocol between a client and a master (api/sync-server.ts, sdk/sync.ts)
  KALIMA_ERR_SYNC_BAD_MESSAGE: { status: 400, message: 'a sync protocol message does not decode; the connection is closed and the peer penalised' },
  KALIMA_ERR_SYNC_TOO_SLOW: { status: 503, message: 'the client reads too slowly: too much waits unsent for it; it is disconnected and may reconnect and resync' },
  KALIMA_ERR_SYNC_NOT_SUBSCRIBED: { status: 409, message: 'this connection has no subscription yet' },
  KALIMA_ERR_SYNC_BAD_BLOCK: { status: 502, message: 'a master sent a filtered block or snapshot that does not verify (signature, hashchain, Merkle proof or digest)' },
  KALIMA_ERR_SYNC_GAP: { status: 502, message: 'a gap in the stream of blocks or in an address\'s sequence; the client resyncs from a snapshot' },
  KALIMA_ERR_SYNC_NO_MASTER: { status: 503, message: 'no master is connected; the client keeps reconnecting' },
  KALIMA_ERR_SYNC_CLOSED: { status: 503, message: 'the sync client is closed' },
  // sdk / transport
  KALIMA_ERR_SDK_UNREACHABLE: { status: 503, message: 'the node could not be reached' },
  KALIMA_ERR_SDK_BAD_RESPONSE: { status: 502, message: 'the node sent a response the SDK cannot read' },
  // bitcoin
  KALIMA_ERR_BITCOIN_UNKNOWN_NETWORK: { status: 400, message: 'unknown Bitcoin network: use mainnet, testnet, signet, regtest or bcoin-regtest' },
  KALIMA_ERR_BITCOIN_WRONG_NETWORK: { status: 502, message: 'the Bitcoin RPC endpoint serves another network than the one configured' },
  KALIMA_ERR_BITCOIN_UNREACHABLE: { status: 503, message: 'the Bitcoin RPC endpoint could not be reached' },
  KALIMA_ERR_BITCOIN_TIMEOUT: { status: 504, message: 'the Bitcoin RPC endpoint did not answer in time; what was asked may or may not have been done' },
  KALIMA_ERR_BITCOIN_UNAUTHORIZED: { status: 502, message: 'the Bitcoin RPC endpoint refused the credentials (user and password, or the cookie file)' },
  KALIMA_ERR_BITCOIN_WARMING_UP: { status: 503, message: 'the Bitcoin node is still starting (RPC in warm-up)' },
  KALIMA_ERR_BITCOIN_NOT_FOUND: { status: 404, message: 'the Bitcoin node has no such block, transaction or entry' },
  KALIMA_ERR_BITCOIN_BAD_PARAMETER: { status: 400, message: 'the Bitcoin node refused a parameter of the call' },
  KALIMA_ERR_BITCOIN_METHOD_NOT_FOUND: { status: 502, message: 'the Bitcoin node does not have this RPC method' },
  KALIMA_ERR_BITCOIN_TX_REJECTED: { status: 409, message: 'the Bitcoin node did not accept the transaction into its mempool' },
  KALIMA_ERR_BITCOIN_TX_ALREADY_CONFIRMED: { status: 409, message: 'the transaction is already in a block' },
  KALIMA_ERR_BITCOIN_RPC: { status: 502, message: 'the Bitcoin RPC call failed' },
  KALIMA_ERR_BITCOIN_BAD_RESPONSE: { status: 502, message: 'the Bitcoin RPC endpoint sent a response that cannot be read' },
  KALIMA_ERR_BITCOIN_INSUFFICIENT_FUNDS: { status: 503, message: 'the anchor wallet cannot pay the fee and a change output above dust; fund it' },
  KALIMA_ERR_BITCOIN_BAD_REPLACEMENT: { status: 400, message: 'a replacement must pay a higher fee rate than the transaction it replaces' },
  KALIMA_ERR_BITCOIN_KEYSTORE_WRONG_NETWORK: { status: 500, message: 'the anchor wallet file belongs to another Bitcoin network' },
  KALIMA_ERR_BITCOIN_KEYSTORE_CORRUPT: { status: 500, message: 'the anchor wallet file is unreadable or malformed' },
  // proofs: anchor proofs, their binary (.kproof) and .ots forms, and the verifier (anchors/)
  KALIMA_ERR_PROOF_MALFORMED: { status: 400, message: 'the proof is malformed: a field is missing, of the wrong type or shape, or unknown' },
  KALIMA_ERR_PROOF_INVALID: { status: 422, message: 'the proof does not verify: a commitment along it does not match' },
  KALIMA_ERR_PROOF_NOT_IN_CHAIN: { status: 409, message: 'the Bitcoin block the proof ends in is not in the best chain of the header source (reorganised away, or not reached yet)' },
  KALIMA_ERR_PROOF_WRONG_NETWORK: { status: 400, message: 'the header source is on another Bitcoin network than the proof' },
  KALIMA_ERR_PROOF_TRUNCATED: { status: 400, message: 'the binary proof (.kproof) ends before the value it announces' },
  KALIMA_ERR_PROOF_TRAILING_BYTES: { status: 400, message: 'bytes follow the end of the binary proof (.kproof)' },
  KALIMA_ERR_PROOF_OTS_TRUNCATED: { status: 400, message: 'the .ots file ends before the value it announces' },
  KALIMA_ERR_PROOF_OTS_BAD_MAGIC: { status: 400, message: 'not an OpenTimestamps file: it does not start with the OpenTimestamps magic bytes' },
  KALIMA_ERR_PROOF_OTS_UNSUPPORTED: { status: 400, message: 'the .ots file uses a version, hash, operation, attestation or fork this verifier does not support (one path ending in a Bitcoin block header attestation)' },
  KALIMA_ERR_PROOF_OTS_TRAILING_BYTES: { status: 400, message: 'bytes follow the end of the .ots timestamp' },
  KALIMA_ERR_PROOF_OTS_MALFORMED: { status: 400, message: 'the .ots file is malformed (an empty or oversized operation argument, or a value out of range)' },
  KALIMA_ERR_PROOF_HEADERS_MALFORMED: { status: 400, message: 'the Bitcoin headers file is malformed, or its headers do not link or lack their proof of work' },
  KALIMA_ERR_PROOF_RPC_FAILED: { status: 502, message: 'the Bitcoin RPC could not be reached, refused the request or answered something unexpected' },
} as const satisfies Record<string, { status: number; message: string }>;

export type KalimaErrorCode = keyof typeof ERROR_CATALOGUE;

export class KalimaError extends Error {
  readonly code: KalimaErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown>;

  constructor(code: KalimaErrorCode, details: Record<string, unknown> = {}, message?: string) {
    const entry = ERROR_CATALOGUE[code];
    super(message ?? entry.message);
    this.name = 'KalimaError';
    this.code = code;
    this.status = entry.status;
    this.details = details;
  }

  toJSON(): { error: { code: KalimaErrorCode; message: string; details: Record<string, unknown> } } {
    return { error: { code: this.code, message: this.message, details: this.details } };
  }
}

export function kalimaError(code: KalimaErrorCode, details: Record<string, unknown> = {}, message?: string): KalimaError {
  return new KalimaError(code, details, message);
}

export function isKalimaError(value: unknown, code?: KalimaErrorCode): value is KalimaError {
  return value instanceof KalimaError && (code === undefined || value.code === code);
}

export function isErrorCode(value: string): value is KalimaErrorCode {
  return Object.hasOwn(ERROR_CATALOGUE, value);
}

/** A broken assertion is a programmer error: it crashes, it is never caught as an operating error. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
