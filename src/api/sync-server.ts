// A master's client listener: client nodes (the SDK's sync mode, sdk/sync.ts) connect over BOLT 8
// with their device key, subscribe to address prefixes their SUB list covers, and get a snapshot of
// what they may see, then every block the master applies, filtered to that, each message with its
// Merkle proof against the signed header. They submit signed messages over the same link.
//
// Only registered devices and admins are served: any other key completes the handshake (it proves
// the key) and is told KALIMA_ERR_ACCESS_UNKNOWN_DEVICE, then the link closes. A frame that does
// not decode closes the link with KALIMA_ERR_SYNC_BAD_MESSAGE and the key is refused for a while
// (the listener's penalty). A client that reads too slowly (more than `outputBytesMax` waiting
// unsent) is told KALIMA_ERR_SYNC_TOO_SLOW and disconnected; it reconnects and resyncs.
import { isKalimaError, kalimaError } from '../errors.ts';
import { roleOf } from '../access/permissions.ts';
import type { BlockHeader } from '../ledger/block.ts';
import { toHex } from '../ledger/hash.ts';
import { proveMessages } from '../ledger/filtered-block.ts';
import { merkleLeafHash } from '../ledger/merkle.ts';
import { encodeCommitted } from '../ledger/message.ts';
import type { KeyPair } from '../ledger/signature.ts';
import { type CloseReason, type Link, LinkListener } from '../net/link.ts';
import { staticKeyFromSecret } from '../net/noise.ts';
import {
  type ClientFrame, SNAPSHOT_PART_BYTES_TARGET, type ServerFrame, decodeClientFrame, encodeServerFrame, errorFrame,
} from '../net/sync-protocol.ts';
import { linkSecretOf } from '../node/cluster.ts';
import type { CommittedBlock, KalimaNode } from '../node/node.ts';
import type { Clock, Logger, Rng, Scheduler } from '../ports.ts';
import { checkSubscription, digestOfItems, filteredItems, visibleTo } from '../state/filtered.ts';

/** Kalima's keep-alive: every 3 s; a link silent for 10 s is taken as dead. */
export const CLIENT_HEARTBEAT_MS = 3_000;
export const CLIENT_DEAD_AFTER_MS = 10_000;
const OUTPUT_BYTES_MAX_DEFAULT = 4 * 1024 * 1024;
const CONNECTIONS_MAX_DEFAULT = 1_024;
const CONNECTIONS_PER_DEVICE_MAX = 8;
const SUBMITS_IN_FLIGHT_MAX = 256;

export interface SyncServerOptions {
  node: KalimaNode;
  /** The master's key: the responder's static key is its even-y form (02 || the x-only key). */
  nodeKey: KeyPair;
  clock: Clock;
  rng: Rng;
  scheduler: Scheduler;
  logger: Logger;
  /** Bytes that may wait unsent for one client before it is told it is too slow and disconnected. */
  outputBytesMax?: number;
  connectionsMax?: number;
  heartbeatMs?: number;
  deadAfterMs?: number;
  /** How long a key that sent an undecodable frame is refused. */
  penaltyMs?: number;
  /**
   * Fault injection for tests: rewrites (or, returning undefined, drops) a filtered block before it
   * goes to a device, as a faulty or lying master would.
   */
  tamperBlock?: (frame: Extract<ServerFrame, { type: 'block' }>, deviceHex: string) => Extract<ServerFrame, { type: 'block' }> | undefined;
}

interface Subscription {
  requestId: number;
  prefixes: string[];
  /** Blocks up to this height are in what the client got (its snapshot, or the blocks sent). */
  sentHeight: number;
}

interface Connection {
  link: Link;
  deviceHex: string;
  subscription: Subscription | undefined;
  submitsInFlight: number;
  /** Frames waiting for the socket to take them, in order; a snapshot's parts wait here while the client reads. */
  outbox: Array<{ bytes: Uint8Array; snapshot: boolean }>;
  outboxBytes: number;
  /** The part of outboxBytes that is snapshot: it does not count against the bound. */
  outboxSnapshotBytes: number;
}

export class SyncServer {
  private readonly connections = new Set<Connection>();
  private readonly unsubscribe: () => void;
  private last: { header: BlockHeader; signature: Uint8Array } | undefined;
  private readonly outputBytesMax: number;
  private closed = false;

  private constructor(private readonly options: SyncServerOptions, private readonly listener: LinkListener, readonly port: number, readonly host: string) {
    this.outputBytesMax = options.outputBytesMax ?? OUTPUT_BYTES_MAX_DEFAULT;
    this.unsubscribe = options.node.onBlock((committed) => this.publish(committed));
    listener.on('link', (link: Link) => this.accept(link));
    listener.on('refused', (refusal: { remoteHex?: string; reason: unknown }) => {
      options.logger.debug({ peer: refusal.remoteHex, reason: isKalimaError(refusal.reason) ? refusal.reason.code : String(refusal.reason) }, 'sync: refused a client link');
    });
  }

  /** Listens on `port` (0 for any free one). */
  static async start(options: SyncServerOptions, port: number, host = '127.0.0.1'): Promise<SyncServer> {
    const outputBytesMax = options.outputBytesMax ?? OUTPUT_BYTES_MAX_DEFAULT;
    const listener = new LinkListener({
      clock: options.clock, rng: options.rng, scheduler: options.scheduler,
      key: staticKeyFromSecret(linkSecretOf(options.nodeKey.secretKey)),
      // Every key that completes the handshake gets a link; accept() refuses unknown devices with a code.
      allowed: () => true,
      // A device may run several client nodes (CONNECTIONS_PER_DEVICE_MAX bounds them).
      onePerPeer: false,
      heartbeatMs: options.heartbeatMs ?? CLIENT_HEARTBEAT_MS,
      deadAfterMs: options.deadAfterMs ?? CLIENT_DEAD_AFTER_MS,
      // The hard bound, above the soft one at which frames wait in the connection's outbox.
      maxQueuedBytes: outputBytesMax + 1024 * 1024,
      penaltyMs: options.penaltyMs,
    });
    const address = await listener.listen(port, host);
    return new SyncServer(options, listener, address.port, address.host);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  private accept(link: Link): void {
    const { node } = this.options;
    // A device id is an x-only key; its link key is the even-y point (sdk/sync.ts negates the secret when needed).
    const deviceHex = link.remote[0] === 2 ? toHex(link.remote.subarray(1)) : undefined;
    if (this.closed) {
      link.close();
      return;
    }
    if (deviceHex === undefined || roleOf(node.cache, node.policy, deviceHex).kind === 'unknown') {
      this.refuse(link, kalimaError('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE', { device: deviceHex ?? link.remoteHex, reason: deviceHex === undefined ? 'a client link key is the even-y form of the device key' : 'not registered' }));
      return;
    }
    let ofDevice = 0;
    for (const connection of this.connections) if (connection.deviceHex === deviceHex) ofDevice++;
    if (this.connections.size >= (this.options.connectionsMax ?? CONNECTIONS_MAX_DEFAULT) || ofDevice >= CONNECTIONS_PER_DEVICE_MAX) {
      this.refuse(link, kalimaError('KALIMA_ERR_API_OVERLOADED', { connections: this.connections.size, ofDevice }));
      return;
    }
    const connection: Connection = { link, deviceHex, subscription: undefined, submitsInFlight: 0, outbox: [], outboxBytes: 0, outboxSnapshotBytes: 0 };
    this.connections.add(connection);
    link.on('message', (bytes: Uint8Array) => this.receive(connection, bytes));
    link.on('drain', () => this.flush(connection));
    link.once('close', (reason: CloseReason) => {
      this.connections.delete(connection);
      this.options.logger.debug({ device: deviceHex, reason }, 'sync: client link closed');
    });
  }

  private refuse(link: Link, error: unknown, reason: CloseReason = { kind: 'closed' }): void {
    link.closeAfter(encodeServerFrame(errorFrame(0, error)), reason);
  }

  private receive(connection: Connection, bytes: Uint8Array): void {
    let frame: ClientFrame;
    try {
      frame = decodeClientFrame(bytes);
    } catch (error) {
      // The 'bad frame' kind makes the listener refuse this key for a while.
      this.options.logger.warn({ device: connection.deviceHex, err: error }, 'sync: undecodable frame from a client; disconnected and penalised');
      this.refuse(connection.link, error, { kind: 'bad frame', detail: isKalimaError(error) ? String(error.details.reason ?? error.code) : String(error) });
      return;
    }
    switch (frame.type) {
      case 'subscribe':
        void this.subscribe(connection, frame).catch((error: unknown) => this.reply(connection, errorFrame(frame.requestId, error)));
        return;
      case 'submit':
        void this.submit(connection, frame);
        return;
      case 'digest':
        this.digest(connection, frame.requestId);
        return;
    }
  }

  /** The applied tip's header and signature, or undefined before block 1. */
  private async latestHeader(): Promise<{ header: BlockHeader; signature: Uint8Array } | undefined> {
    const { node } = this.options;
    for (let attempt = 0; attempt < 8; attempt++) {
      const height = node.height;
      if (height === 0) return undefined;
      if (this.last?.header.height === height) return this.last;
      const block = await node.getBlock(height);
      if (block !== undefined && block.header.height === node.height) return { header: block.header, signature: block.signature };
    }
    throw kalimaError('KALIMA_ERR_API_OVERLOADED', { reason: 'the chain moved on while a snapshot was being taken; subscribe again' });
  }

  private async subscribe(connection: Connection, frame: Extract<ClientFrame, { type: 'subscribe' }>): Promise<void> {
    const { node } = this.options;
    checkSubscription(node.cache, node.policy, connection.deviceHex, frame.prefixes);
    const latest = await this.latestHeader();
    if (connection.link.isClosed) return;
    // From here to the last frame queued nothing awaits: the snapshot is the state at this height.
    const height = node.height;
    if ((latest?.header.height ?? 0) !== height) throw kalimaError('KALIMA_ERR_API_OVERLOADED', { reason: 'the chain moved on while a snapshot was being taken; subscribe again' });
    checkSubscription(node.cache, node.policy, connection.deviceHex, frame.prefixes);
    connection.subscription = { requestId: frame.requestId, prefixes: frame.prefixes, sentHeight: height };
    if (!frame.snapshot) {
      this.reply(connection, { type: 'subscribed', requestId: frame.requestId, height });
      return;
    }
    const items = filteredItems(node.cache, (address) => visibleTo(node.cache, node.policy, connection.deviceHex, frame.prefixes, address));
    const frames: ServerFrame[] = [{
      type: 'snapshot-begin', requestId: frame.requestId, header: latest?.header, signature: latest?.signature,
      digest: digestOfItems(items), headCount: items.heads.length, entryCount: items.entries.length,
    }];
    let part: Extract<ServerFrame, { type: 'snapshot-part' }> = { type: 'snapshot-part', requestId: frame.requestId, heads: [], entries: [] };
    let partBytes = 0;
    const flushPart = (): void => {
      if (part.heads.length + part.entries.length === 0) return;
      frames.push(part);
      part = { type: 'snapshot-part', requestId: frame.requestId, heads: [], entries: [] };
      partBytes = 0;
    };
    for (const head of items.heads) {
      if (partBytes + head[0].length + 16 > SNAPSHOT_PART_BYTES_TARGET) flushPart();
      part.heads.push(head);
      partBytes += head[0].length + 16;
    }
    for (const entry of items.entries) {
      const bytes = entry.address.length + entry.key.length + entry.value.length + 160 + entry.props.reduce((sum, [key, value]) => sum + key.length + value.length + 8, 0);
      if (partBytes + bytes > SNAPSHOT_PART_BYTES_TARGET) flushPart();
      part.entries.push(entry);
      partBytes += bytes;
    }
    flushPart();
    frames.push({ type: 'snapshot-end', requestId: frame.requestId });
    // Taken whole now, sent as the client reads: a snapshot does not count against the bound, what follows it does.
    for (const snapshotFrame of frames) if (!this.reply(connection, snapshotFrame, true)) return;
  }

  private async submit(connection: Connection, frame: Extract<ClientFrame, { type: 'submit' }>): Promise<void> {
    if (connection.submitsInFlight >= SUBMITS_IN_FLIGHT_MAX) {
      this.reply(connection, errorFrame(frame.requestId, kalimaError('KALIMA_ERR_API_OVERLOADED', { inFlight: connection.submitsInFlight })));
      return;
    }
    connection.submitsInFlight++;
    let answer: ServerFrame;
    try {
      // The signature makes the message the device's own, whoever hands it over; the node checks it.
      const receipt = await this.options.node.submit(frame.message);
      answer = { type: 'receipt', requestId: frame.requestId, receipt };
    } catch (error) {
      if (!isKalimaError(error)) this.options.logger.error({ err: error }, 'sync: a submit failed');
      answer = errorFrame(frame.requestId, error);
    } finally {
      connection.submitsInFlight--;
    }
    this.reply(connection, answer);
  }

  private digest(connection: Connection, requestId: number): void {
    const { node } = this.options;
    const subscription = connection.subscription;
    if (subscription === undefined) {
      this.reply(connection, errorFrame(requestId, kalimaError('KALIMA_ERR_SYNC_NOT_SUBSCRIBED')));
      return;
    }
    const items = filteredItems(node.cache, (address) => visibleTo(node.cache, node.policy, connection.deviceHex, subscription.prefixes, address));
    this.reply(connection, { type: 'digest-answer', requestId, height: node.height, digest: digestOfItems(items) });
  }

  private publish(committed: CommittedBlock): void {
    const { node } = this.options;
    const { block } = committed;
    this.last = { header: block.header, signature: block.signature };
    let leafHashes: Uint8Array[] | undefined;
    for (const connection of this.connections) {
      const subscription = connection.subscription;
      if (subscription === undefined || block.header.height <= subscription.sentHeight) continue;
      try {
        // Permissions are read as they are after this block: a revoked SUB ends the subscription.
        checkSubscription(node.cache, node.policy, connection.deviceHex, subscription.prefixes);
      } catch (error) {
        connection.subscription = undefined;
        const revoked = isKalimaError(error) ? kalimaError(error.code, { ...error.details, revoked: true }) : error;
        // A device no longer registered is cut off; one whose SUB list shrank keeps its link (it may subscribe to less).
        if (isKalimaError(error, 'KALIMA_ERR_ACCESS_UNKNOWN_DEVICE')) this.refuse(connection.link, revoked);
        else this.reply(connection, errorFrame(subscription.requestId, revoked));
        continue;
      }
      const indexes: number[] = [];
      block.messages.forEach((message, index) => {
        if (visibleTo(node.cache, node.policy, connection.deviceHex, subscription.prefixes, message.message.address)) indexes.push(index);
      });
      if (indexes.length > 0) leafHashes ??= block.messages.map((message) => merkleLeafHash(encodeCommitted(message)));
      let frame: Extract<ServerFrame, { type: 'block' }> | undefined = {
        type: 'block', requestId: subscription.requestId, header: block.header, signature: block.signature,
        messages: indexes.length === 0 ? [] : proveMessages(block, indexes, leafHashes),
      };
      subscription.sentHeight = block.header.height;
      if (this.options.tamperBlock !== undefined) frame = this.options.tamperBlock(frame, connection.deviceHex);
      if (frame !== undefined) this.reply(connection, frame);
    }
  }

  /**
   * Queues one frame and sends what the socket takes. A client with more than `outputBytesMax`
   * waiting beyond its snapshot is told it is too slow and cut off. False if the link is gone.
   */
  private reply(connection: Connection, frame: ServerFrame, snapshot = false): boolean {
    if (connection.link.isClosed) return false;
    let bytes: Uint8Array;
    try {
      bytes = encodeServerFrame(frame);
    } catch (error) {
      // A filtered block too large for one frame (not expected within the block size bound): the client finds a gap and resyncs.
      this.options.logger.error({ err: error, frame: frame.type }, 'sync: a frame could not be encoded');
      return true;
    }
    connection.outbox.push({ bytes, snapshot });
    connection.outboxBytes += bytes.length;
    if (snapshot) connection.outboxSnapshotBytes += bytes.length;
    this.flush(connection);
    if (connection.outboxBytes - connection.outboxSnapshotBytes > this.outputBytesMax) {
      this.tooSlow(connection);
      return false;
    }
    return !connection.link.isClosed;
  }

  /** Hands the socket what waits, while it holds at most `outputBytesMax` unsent ('drain' calls again). */
  private flush(connection: Connection): void {
    const { link } = connection;
    while (connection.outbox.length > 0 && !link.isClosed && link.queuedBytes <= this.outputBytesMax) {
      const next = connection.outbox.shift()!;
      connection.outboxBytes -= next.bytes.length;
      if (next.snapshot) connection.outboxSnapshotBytes -= next.bytes.length;
      try {
        link.send(next.bytes);
      } catch (error) {
        if (isKalimaError(error, 'KALIMA_ERR_NET_QUEUE_FULL')) this.tooSlow(connection);
        return;
      }
    }
  }

  private tooSlow(connection: Connection): void {
    const waitingBytes = connection.link.queuedBytes + connection.outboxBytes;
    this.options.logger.warn({ device: connection.deviceHex, waitingBytes }, 'sync: a client reads too slowly; disconnected');
    connection.outbox = [];
    connection.outboxBytes = 0;
    connection.outboxSnapshotBytes = 0;
    this.refuse(connection.link, kalimaError('KALIMA_ERR_SYNC_TOO_SLOW', { waitingBytes, max: this.outputBytesMax }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    await this.listener.close();
  }
}
