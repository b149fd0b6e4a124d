// Requests between masters over the links Raft uses: one byte in front of each transport message
// says what it is (a Raft message, a request, a response), so both share one encrypted link per
// peer. A request carries an id, a method and a body; its response the same id, a status, and the
// handler's bytes or its coded error. Handlers run concurrently, up to a bound per peer.
//
// Delivery is best effort, as for Raft: a request whose response does not come within its timeout
// fails with KALIMA_ERR_NET_TIMEOUT (the request may have been carried out: callers retry only what
// is idempotent, such as a signed message under its nonce).
import { isErrorCode, isKalimaError, kalimaError } from '../errors.ts';
import type { Logger, Rng, Scheduler } from '../ports.ts';

/** How masters reach each other: messages to a master by id; what arrives, with the sender the link proved. */
export interface PeerTransport {
  /** Hands the bytes to the link to `to`; false if there is none up or its queue is full (dropped). */
  send(to: string, bytes: Uint8Array): boolean;
  onMessage(handler: (from: string, bytes: Uint8Array) => void): void;
  close(): Promise<void>;
}

const CHANNEL_RAFT = 0;
const CHANNEL_REQUEST = 1;
const CHANNEL_RESPONSE = 2;
const STATUS_OK = 0;
const STATUS_ERROR = 1;
/** Channel, id (4 bytes), method or status: what a request or response adds to its body. */
export const RPC_HEADER_BYTES = 6;
/** What a Raft message may be, so that with its channel byte it fits a link frame (65,534 bytes, net/link.ts). */
export const RAFT_MESSAGE_BYTES_MAX = 65_533;
/** A request or response body, so that it fits a link frame with its header. */
export const RPC_BODY_BYTES_MAX = 65_534 - RPC_HEADER_BYTES;

export type RpcHandler = (from: string, body: Uint8Array) => Promise<Uint8Array>;

interface Outstanding {
  to: string;
  resolve: (body: Uint8Array) => void;
  reject: (error: unknown) => void;
  timer: unknown;
}

export interface PeerRpcOptions {
  transport: PeerTransport;
  scheduler: Scheduler;
  logger: Logger;
  /** Draws the first request id: a restarted process must not take answers meant for its previous one. */
  rng?: Rng;
  /** Requests from one peer handled at once; beyond it, refused with KALIMA_ERR_API_OVERLOADED. */
  inFlightPerPeerMax?: number;
}

export class PeerRpc {
  private nextId = 1;
  private readonly outstanding = new Map<number, Outstanding>();
  private readonly handlers = new Map<number, RpcHandler>();
  private readonly inFlight = new Map<string, number>();
  private raftHandler: ((from: string, bytes: Uint8Array) => void) | undefined;
  private closed = false;

  constructor(private readonly options: PeerRpcOptions) {
    if (options.rng !== undefined) {
      const random = options.rng.bytes(4);
      this.nextId = (((random[0]! << 24) | (random[1]! << 16) | (random[2]! << 8) | random[3]!) >>> 0) || 1;
    }
    options.transport.onMessage((from, bytes) => this.receive(from, bytes));
  }

  /** The transport as Raft sees it: its messages only. */
  get raft(): PeerTransport {
    return {
      send: (to, bytes) => {
        const framed = new Uint8Array(bytes.length + 1);
        framed[0] = CHANNEL_RAFT;
        framed.set(bytes, 1);
        return this.options.transport.send(to, framed);
      },
      onMessage: (handler) => {
        this.raftHandler = handler;
      },
      close: () => this.close(),
    };
  }

  /** Serves `method` (0–255) with `handler`; its coded errors go back to the caller as they are. */
  handle(method: number, handler: RpcHandler): void {
    if (!Number.isInteger(method) || method < 0 || method > 255) throw new RangeError(`rpc: a method is a number from 0 to 255, not ${method}`);
    this.handlers.set(method, handler);
  }

  /** Calls `method` on `to`; rejects with the handler's coded error, KALIMA_ERR_NET_UNREACHABLE if it could not be sent, or KALIMA_ERR_NET_TIMEOUT. */
  call(to: string, method: number, body: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(kalimaError('KALIMA_ERR_NODE_STOPPING'));
    if (!Number.isInteger(method) || method < 0 || method > 255) return Promise.reject(new RangeError(`rpc: a method is a number from 0 to 255, not ${method}`));
    if (body.length > RPC_BODY_BYTES_MAX) return Promise.reject(kalimaError('KALIMA_ERR_NET_MESSAGE_TOO_LARGE', { bytes: body.length, max: RPC_BODY_BYTES_MAX }));
    const id = this.nextId;
    this.nextId = this.nextId === 0xffff_ffff ? 1 : this.nextId + 1;
    const frame = header(CHANNEL_REQUEST, id, method, body);
    return new Promise<Uint8Array>((resolve, reject) => {
      // Registered before it goes out: a transport may deliver the answer before send returns.
      const timer = this.options.scheduler.setTimeout(() => {
        if (this.outstanding.delete(id)) reject(kalimaError('KALIMA_ERR_NET_TIMEOUT', { peer: to, timeoutMs }));
      }, timeoutMs);
      this.outstanding.set(id, { to, resolve, reject, timer });
      let sent: boolean;
      try {
        sent = this.options.transport.send(to, frame);
      } catch {
        sent = false;
      }
      if (!sent) {
        this.outstanding.delete(id);
        this.options.scheduler.clearTimeout(timer);
        reject(kalimaError('KALIMA_ERR_NET_UNREACHABLE', { peer: to }));
      }
    });
  }

  private receive(from: string, bytes: Uint8Array): void {
    if (this.closed || bytes.length === 0) return;
    const channel = bytes[0];
    if (channel === CHANNEL_RAFT) {
      this.raftHandler?.(from, bytes.subarray(1));
      return;
    }
    if (bytes.length < RPC_HEADER_BYTES || (channel !== CHANNEL_REQUEST && channel !== CHANNEL_RESPONSE)) {
      this.options.logger.warn({ peer: from, channel, bytes: bytes.length }, 'rpc: dropped a message of no known kind');
      return;
    }
    const id = new DataView(bytes.buffer, bytes.byteOffset + 1, 4).getUint32(0);
    const code = bytes[5]!;
    const body = bytes.subarray(RPC_HEADER_BYTES);
    if (channel === CHANNEL_RESPONSE) {
      const waiting = this.outstanding.get(id);
      // Only the peer asked may answer.
      if (waiting === undefined || waiting.to !== from) return;
      this.outstanding.delete(id);
      this.options.scheduler.clearTimeout(waiting.timer);
      if (code === STATUS_OK) waiting.resolve(body);
      else waiting.reject(decodeError(body, from));
      return;
    }
    this.serve(from, id, code, body).catch((error: unknown) => this.options.logger.error({ peer: from, err: error }, 'rpc: answering a request failed'));
  }

  private async serve(from: string, id: number, method: number, body: Uint8Array): Promise<void> {
    const handler = this.handlers.get(method);
    const inFlight = this.inFlight.get(from) ?? 0;
    let reply: Uint8Array;
    if (handler === undefined) {
      reply = header(CHANNEL_RESPONSE, id, STATUS_ERROR, encodeError(kalimaError('KALIMA_ERR_API_NOT_FOUND', { method })));
    } else if (inFlight >= (this.options.inFlightPerPeerMax ?? 1_024)) {
      reply = header(CHANNEL_RESPONSE, id, STATUS_ERROR, encodeError(kalimaError('KALIMA_ERR_API_OVERLOADED', { peer: from, inFlight })));
    } else {
      this.inFlight.set(from, inFlight + 1);
      try {
        const result = await handler(from, body);
        reply = result.length > RPC_BODY_BYTES_MAX
          ? header(CHANNEL_RESPONSE, id, STATUS_ERROR, encodeError(kalimaError('KALIMA_ERR_NET_MESSAGE_TOO_LARGE', { bytes: result.length, max: RPC_BODY_BYTES_MAX })))
          : header(CHANNEL_RESPONSE, id, STATUS_OK, result);
      } catch (error) {
        if (!isKalimaError(error)) this.options.logger.error({ peer: from, method, err: error }, 'rpc: a handler failed');
        reply = header(CHANNEL_RESPONSE, id, STATUS_ERROR, encodeError(error));
      } finally {
        const left = (this.inFlight.get(from) ?? 1) - 1;
        if (left <= 0) this.inFlight.delete(from);
        else this.inFlight.set(from, left);
      }
    }
    // A response that cannot go out now is lost; the caller's timeout covers it.
    if (!this.closed) this.options.transport.send(from, reply);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [id, waiting] of this.outstanding) {
      this.options.scheduler.clearTimeout(waiting.timer);
      this.outstanding.delete(id);
      waiting.reject(kalimaError('KALIMA_ERR_NODE_STOPPING'));
    }
    await this.options.transport.close();
  }
}

function header(channel: number, id: number, code: number, body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(RPC_HEADER_BYTES + body.length);
  frame[0] = channel;
  new DataView(frame.buffer).setUint32(1, id);
  frame[5] = code;
  frame.set(body, RPC_HEADER_BYTES);
  return frame;
}

/** A coded error as its code and details; anything else as an internal error (its text stays in this node's log). */
function encodeError(error: unknown): Uint8Array {
  const coded = isKalimaError(error) ? error : kalimaError('KALIMA_ERR_NODE_INTERNAL');
  let text: string;
  try {
    text = JSON.stringify({ code: coded.code, details: coded.details });
  } catch {
    // Details JSON cannot carry (a bigint, a cycle): the code alone.
    text = JSON.stringify({ code: coded.code, details: {} });
  }
  return new TextEncoder().encode(text);
}

function decodeError(body: Uint8Array, from: string): unknown {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(body)) as { code?: unknown; details?: unknown };
    if (typeof parsed.code === 'string' && isErrorCode(parsed.code)) {
      const details = typeof parsed.details === 'object' && parsed.details !== null ? parsed.details as Record<string, unknown> : {};
      return kalimaError(parsed.code, details);
    }
  } catch {
    // below
  }
  return kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'a peer answered with an error this node cannot read', peer: from });
}
