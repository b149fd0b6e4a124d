// Encrypted links between nodes over TCP: BOLT 8 (noise.ts) on a socket, with node identities
// pinned in advance, heartbeats that find half-open connections, reconnection with jittered
// backoff, a bounded send queue, and a penalty for a peer that sends what does not decrypt.
//
// Frames inside the encrypted transport start with a type byte: data, ping or pong. Either side
// pings every `heartbeatMs`; a link that has received nothing for `deadAfterMs` is closed, which is
// how a peer that vanished without a FIN (a half-open connection) is noticed.
import { EventEmitter } from 'node:events';
import { type Server, type Socket, connect, createServer } from 'node:net';
import { kalimaError } from '../errors.ts';
import { toHex } from '../ledger/hash.ts';
import type { Clock, Rng, Scheduler } from '../ports.ts';
import { ACT_ONE_BYTES, ACT_THREE_BYTES, ACT_TWO_BYTES, NoiseInitiator, NoiseResponder, type NoiseTransport, type StaticKey } from './noise.ts';

const FRAME_DATA = 0;
const FRAME_PING = 1;
const FRAME_PONG = 2;

export interface LinkOptions {
  clock: Clock;
  rng: Rng;
  scheduler: Scheduler;
  /** Send a ping after this long without sending anything. */
  heartbeatMs?: number;
  /** Close a link that has received nothing for this long. */
  deadAfterMs?: number;
  /** A handshake that takes longer fails. */
  handshakeTimeoutMs?: number;
  /** Bytes a link may hold unsent before send() refuses more (back-pressure). */
  maxQueuedBytes?: number;
}

const DEFAULTS = { heartbeatMs: 1_000, deadAfterMs: 5_000, handshakeTimeoutMs: 5_000, maxQueuedBytes: 8 * 1024 * 1024 };

/** Why a link closed. */
export type CloseReason =
  | { kind: 'closed' }
  | { kind: 'peer closed' }
  | { kind: 'dead'; silentMs: number }
  | { kind: 'bad frame'; detail: string }
  | { kind: 'socket error'; detail: string };

/**
 * One established, authenticated link. Events: 'message' (Uint8Array), 'close' (CloseReason), once.
 * `remote` is the peer's static key (33-byte compressed), as the handshake proved it.
 */
export class Link extends EventEmitter {
  readonly remoteHex: string;
  private lastReceivedMs: number;
  private lastSentMs: number;
  private timer: unknown;
  private closed = false;
  private waitingForDrain = false;
  private readonly heartbeatMs: number;
  private readonly deadAfterMs: number;
  private readonly maxQueuedBytes: number;

  constructor(private readonly socket: Socket, private readonly transport: NoiseTransport, readonly remote: Uint8Array, private readonly options: LinkOptions, leftover: Uint8Array) {
    super();
    this.remoteHex = toHex(remote);
    this.heartbeatMs = options.heartbeatMs ?? DEFAULTS.heartbeatMs;
    this.deadAfterMs = options.deadAfterMs ?? DEFAULTS.deadAfterMs;
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULTS.maxQueuedBytes;
    this.lastReceivedMs = options.clock.nowMs();
    this.lastSentMs = this.lastReceivedMs;
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('end', () => this.close({ kind: 'peer closed' }));
    socket.on('close', () => this.close({ kind: 'peer closed' }));
    socket.on('error', (error: Error) => this.close({ kind: 'socket error', detail: error.message }));
    this.schedule();
    // Bytes that came in the same chunk as the end of the handshake. Read them once the caller has
    // had the chance to attach its listeners.
    if (leftover.length > 0) queueMicrotask(() => this.receive(leftover));
  }

  /** Bytes handed to the socket and not yet sent. */
  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  /**
   * Queues one message (at most 65,534 bytes). Refuses with KALIMA_ERR_NET_QUEUE_FULL while more
   * than `maxQueuedBytes` wait unsent: the caller slows down or drops, instead of this node's memory
   * filling up behind a slow peer. 'drain' says when there is room again.
   */
  send(message: Uint8Array): void {
    if (this.closed) throw kalimaError('KALIMA_ERR_NET_LINK_CLOSED', { peer: this.remoteHex });
    if (this.socket.writableLength > this.maxQueuedBytes) throw kalimaError('KALIMA_ERR_NET_QUEUE_FULL', { peer: this.remoteHex, queuedBytes: this.socket.writableLength });
    const frame = new Uint8Array(message.length + 1);
    frame[0] = FRAME_DATA;
    frame.set(message, 1);
    this.write(frame);
  }

  close(reason: CloseReason = { kind: 'closed' }): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) this.options.scheduler.clearTimeout(this.timer);
    this.socket.destroy();
    this.emit('close', reason);
  }

  /**
   * Sends one last message past the queue bound (a coded refusal or "too slow"), then ends the
   * connection once it is written; a peer that does not read it within `lingerMs` is cut off.
   */
  closeAfter(message: Uint8Array, reason: CloseReason, lingerMs = 10_000): void {
    if (this.closed) return;
    const frame = new Uint8Array(message.length + 1);
    frame[0] = FRAME_DATA;
    frame.set(message, 1);
    this.write(frame);
    this.closed = true;
    if (this.timer !== undefined) this.options.scheduler.clearTimeout(this.timer);
    this.socket.end();
    const cutOff = this.options.scheduler.setTimeout(() => this.socket.destroy(), lingerMs);
    this.socket.once('close', () => this.options.scheduler.clearTimeout(cutOff));
    this.emit('close', reason);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private write(frame: Uint8Array): void {
    this.lastSentMs = this.options.clock.nowMs();
    if (!this.socket.write(this.transport.encrypt(frame)) && !this.waitingForDrain) {
      this.waitingForDrain = true;
      this.socket.once('drain', () => {
        this.waitingForDrain = false;
        this.emit('drain');
      });
    }
  }

  private receive(chunk: Uint8Array): void {
    if (this.closed) return;
    let frames: Uint8Array[];
    try {
      frames = this.transport.decrypt(chunk);
    } catch (error) {
      this.close({ kind: 'bad frame', detail: (error as { details?: { reason?: string } }).details?.reason ?? String(error) });
      return;
    }
    this.lastReceivedMs = this.options.clock.nowMs();
    for (const frame of frames) {
      if (this.closed) return;
      const type = frame[0];
      if (type === FRAME_DATA) this.emit('message', frame.subarray(1));
      else if (type === FRAME_PING) this.write(Uint8Array.of(FRAME_PONG));
      else if (type !== FRAME_PONG) {
        this.close({ kind: 'bad frame', detail: `unknown frame type ${type}` });
        return;
      }
    }
  }

  private schedule(): void {
    const wait = Math.max(1, Math.min(this.heartbeatMs, this.deadAfterMs) / 2);
    this.timer = this.options.scheduler.setTimeout(() => {
      this.timer = undefined;
      if (this.closed) return;
      const now = this.options.clock.nowMs();
      if (now - this.lastReceivedMs >= this.deadAfterMs) {
        this.close({ kind: 'dead', silentMs: now - this.lastReceivedMs });
        return;
      }
      if (now - this.lastSentMs >= this.heartbeatMs) this.write(Uint8Array.of(FRAME_PING));
      this.schedule();
    }, wait);
  }
}

/** Reads exactly `length` bytes of a handshake act, with a deadline; returns them and what followed. */
function readExactly(socket: Socket, length: number, timeoutMs: number, scheduler: Scheduler, act: string): Promise<{ bytes: Uint8Array; rest: Uint8Array }> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const timer = scheduler.setTimeout(() => finish(kalimaError('KALIMA_ERR_NET_HANDSHAKE_FAILED', { act, reason: 'timed out', timeoutMs })), timeoutMs);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length >= length) finish(undefined);
    };
    const onEnd = (): void => finish(kalimaError('KALIMA_ERR_NET_HANDSHAKE_FAILED', { act, reason: 'short read', bytes: buffered.length, expected: length }));
    const onError = (error: Error): void => finish(kalimaError('KALIMA_ERR_NET_HANDSHAKE_FAILED', { act, reason: 'socket error', cause: error.message }));
    const finish = (error: unknown): void => {
      scheduler.clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      if (error !== undefined) reject(error);
      else {
        socket.pause();
        resolve({ bytes: new Uint8Array(buffered.subarray(0, length)), rest: new Uint8Array(buffered.subarray(length)) });
      }
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
    socket.resume();
  });
}

export interface ListenerOptions extends LinkOptions {
  key: StaticKey;
  /**
   * The static keys (hex, compressed) that may connect: the genesis file's nodes. A function decides
   * per key instead (the client listener takes every key and refuses unknown devices itself, with a
   * coded message over the link).
   */
  allowed: ReadonlySet<string> | ((remoteHex: string) => boolean);
  /** How long a peer that sent an undecodable frame is refused. */
  penaltyMs?: number;
  /** Handshakes in progress at once; more connections are closed at once (each costs ECDH work). */
  maxHandshakes?: number;
  /**
   * A new link from a key closes the older one from the same key (default: a node has one link to
   * each peer, and the old one may be half-open). False for the client listener, where one device
   * may run several client nodes; heartbeats still close the half-open ones.
   */
  onePerPeer?: boolean;
}

/**
 * Accepts links. Events: 'link' (Link), 'refused' ({ remoteHex?, reason }) for a handshake that
 * failed, a key that is not pinned, or a peer under penalty.
 */
export class LinkListener extends EventEmitter {
  private readonly server: Server;
  private readonly penalties = new Map<string, number>();
  private readonly links = new Set<Link>();
  /** Every accepted socket, handshaking or linked, so close() ends them all. */
  private readonly sockets = new Set<Socket>();
  private handshakes = 0;
  /** The link of each peer key: a new one from the same key replaces it (the old one may be half-open). */
  private readonly byPeer = new Map<string, Link>();
  private closing = false;

  constructor(private readonly options: ListenerOptions) {
    super();
    this.server = createServer({ pauseOnConnect: true, noDelay: true }, (socket) => void this.accept(socket));
  }

  listen(port: number, host = '127.0.0.1'): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const address = this.server.address() as { address: string; port: number };
        resolve({ host: address.address, port: address.port });
      });
    });
  }

  /** Until when a peer is refused, if it is. */
  penaltyUntil(remoteHex: string): number | undefined {
    const until = this.penalties.get(remoteHex);
    return until !== undefined && until > this.options.clock.nowMs() ? until : undefined;
  }

  private async accept(socket: Socket): Promise<void> {
    if (this.closing || this.handshakes >= (this.options.maxHandshakes ?? 64)) {
      socket.destroy();
      if (!this.closing) this.emit('refused', { remoteHex: undefined, reason: kalimaError('KALIMA_ERR_API_OVERLOADED', { reason: 'too many handshakes in progress' }) });
      return;
    }
    this.handshakes++;
    let handshaking = true;
    const handshakeOver = (): void => {
      if (handshaking) this.handshakes--;
      handshaking = false;
    };
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const timeoutMs = this.options.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs;
    socket.on('error', () => undefined); // reported through the handshake or the link
    let remoteHex: string | undefined;
    try {
      const responder = new NoiseResponder(this.options.key, this.options.rng);
      const actOne = await readExactly(socket, ACT_ONE_BYTES, timeoutMs, this.options.scheduler, 'act1');
      if (actOne.rest.length > 0) throw kalimaError('KALIMA_ERR_NET_HANDSHAKE_FAILED', { act: 'act1', reason: 'too many bytes' });
      socket.write(responder.actOneThenTwo(actOne.bytes));
      const actThree = await readExactly(socket, ACT_THREE_BYTES, timeoutMs, this.options.scheduler, 'act3');
      const { remoteStatic, transport } = responder.actThree(actThree.bytes);
      remoteHex = toHex(remoteStatic);
      const allowed = this.options.allowed;
      if (!(typeof allowed === 'function' ? allowed(remoteHex) : allowed.has(remoteHex))) throw kalimaError('KALIMA_ERR_NET_UNKNOWN_PEER', { peer: remoteHex });
      const until = this.penaltyUntil(remoteHex);
      if (until !== undefined) throw kalimaError('KALIMA_ERR_NET_PEER_PENALISED', { peer: remoteHex, untilMs: until });
      if (this.closing) throw kalimaError('KALIMA_ERR_NET_LINK_CLOSED', { peer: remoteHex, reason: 'the listener is closing' });
      handshakeOver();
      const link = new Link(socket, transport, remoteStatic, this.options, actThree.rest);
      this.links.add(link);
      if (this.options.onePerPeer !== false) {
        this.byPeer.get(link.remoteHex)?.close({ kind: 'closed' });
        this.byPeer.set(link.remoteHex, link);
      }
      link.once('close', (reason: CloseReason) => {
        this.links.delete(link);
        if (this.byPeer.get(link.remoteHex) === link) this.byPeer.delete(link.remoteHex);
        if (reason.kind === 'bad frame') this.penalties.set(link.remoteHex, this.options.clock.nowMs() + (this.options.penaltyMs ?? 60_000));
      });
      socket.resume();
      this.emit('link', link);
    } catch (error) {
      handshakeOver();
      socket.destroy();
      this.emit('refused', { remoteHex, reason: error });
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const link of this.links) link.close();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Opens one link: TCP, then the initiator's side of the handshake with the pinned responder key. */
export async function dial(options: LinkOptions & { key: StaticKey; remote: Uint8Array; host: string; port: number }): Promise<Link> {
  const timeoutMs = options.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs;
  const socket = await new Promise<Socket>((resolve, reject) => {
    const socket = connect({ host: options.host, port: options.port, noDelay: true });
    const timer = options.scheduler.setTimeout(() => {
      socket.destroy();
      reject(kalimaError('KALIMA_ERR_NET_UNREACHABLE', { host: options.host, port: options.port, reason: 'connect timed out' }));
    }, timeoutMs);
    socket.once('connect', () => {
      options.scheduler.clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
    const onError = (error: Error): void => {
      options.scheduler.clearTimeout(timer);
      reject(kalimaError('KALIMA_ERR_NET_UNREACHABLE', { host: options.host, port: options.port, reason: error.message }));
    };
    socket.once('error', onError);
  });
  socket.on('error', () => undefined);
  try {
    const initiator = new NoiseInitiator(options.key, options.remote, options.rng);
    socket.write(initiator.actOne());
    const actTwo = await readExactly(socket, ACT_TWO_BYTES, timeoutMs, options.scheduler, 'act2');
    if (actTwo.rest.length > 0) throw kalimaError('KALIMA_ERR_NET_HANDSHAKE_FAILED', { act: 'act2', reason: 'too many bytes' });
    const { actThree, transport } = initiator.actTwoThenThree(actTwo.bytes);
    socket.write(actThree);
    const link = new Link(socket, transport, options.remote, options, new Uint8Array(0));
    socket.resume();
    return link;
  } catch (error) {
    socket.destroy();
    throw error;
  }
}

export interface PeerOptions extends LinkOptions {
  key: StaticKey;
  remote: Uint8Array;
  host: string;
  port: number;
  /** Backoff between attempts: full jitter over base × 2^attempt, capped. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

/**
 * Keeps one link to a pinned peer open: dials, and after every failure or close dials again after
 * a jittered, growing delay (reset once a link has lasted). Events: 'link' (Link) for each new one,
 * 'attempt failed' ({ attempt, delayMs, error }).
 */
export class Peer extends EventEmitter {
  private attempt = 0;
  private timer: unknown;
  private stopped = false;
  current: Link | undefined;

  constructor(private readonly options: PeerOptions) {
    super();
  }

  start(): void {
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.options.scheduler.clearTimeout(this.timer);
    this.current?.close();
  }

  /** The delay before the next attempt: uniform in [0, min(max, base × 2^attempt)]. */
  nextDelayMs(attempt: number): number {
    const base = this.options.backoffBaseMs ?? 100;
    const cap = Math.min(this.options.backoffMaxMs ?? 10_000, base * 2 ** Math.min(attempt, 30));
    const random = this.options.rng.bytes(4);
    const fraction = (((random[0]! << 24) | (random[1]! << 16) | (random[2]! << 8) | random[3]!) >>> 0) / 2 ** 32;
    return Math.round(cap * fraction);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    try {
      const link = await dial(this.options);
      if (this.stopped) {
        link.close();
        return;
      }
      this.current = link;
      const openedAt = this.options.clock.nowMs();
      link.once('close', (reason: CloseReason) => {
        this.current = undefined;
        // A link that lasted resets the backoff; one that died at once (a peer that keeps
        // refusing after the handshake, a bad frame) does not.
        if (this.options.clock.nowMs() - openedAt > (this.options.deadAfterMs ?? DEFAULTS.deadAfterMs)) this.attempt = 0;
        this.retry(kalimaError('KALIMA_ERR_NET_LINK_CLOSED', { peer: link.remoteHex, reason }));
      });
      this.emit('link', link);
    } catch (error) {
      this.retry(error);
    }
  }

  private retry(error: unknown): void {
    if (this.stopped) return;
    const delayMs = this.nextDelayMs(this.attempt);
    this.emit('attempt failed', { attempt: this.attempt, delayMs, error });
    this.attempt++;
    this.timer = this.options.scheduler.setTimeout(() => {
      this.timer = undefined;
      void this.connect();
    }, delayMs);
  }
}
