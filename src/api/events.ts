// Server-sent events: committed messages under an address prefix, filtered by the device's SUB
// permissions, pushed as blocks commit. Every event's id is its globalSequence; a client that
// reconnects with Last-Event-ID (or ?from=) gets everything after it from the store, then the
// live stream, with no gap and no duplicate.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { kalimaError } from '../errors.ts';
import { checkPrefix, isUnderPath, prefixCovers, subCovers } from '../access/records.ts';
import { roleOf } from '../access/permissions.ts';
import { type CommittedMessage, messageSigningHash } from '../ledger/message.ts';
import type { CommittedBlock, KalimaNode } from '../node/node.ts';
import type { Logger } from '../ports.ts';
import { committedToJson } from './json.ts';

/** Keep-alive, as Kalima's own: every 3 s. */
export const KEEP_ALIVE_MS = 3_000;
/** A subscriber that falls this far behind is cut off; it resumes from its last event id. */
const SUBSCRIBER_BUFFER_BYTES_MAX = 4 * 1024 * 1024;
const REPLAY_BLOCKS_PER_TURN = 64;
/** While replaying, wait for the socket to drain past this many buffered bytes. */
const REPLAY_BUFFER_BYTES_MAX = 256 * 1024;
export const SUBSCRIBERS_MAX = 1024;
export const SUBSCRIBERS_PER_DEVICE_MAX = 16;

interface Subscriber {
  deviceHex: string;
  prefix: string;
  lastSent: number;
  replaying: boolean;
  backlog: CommittedBlock[];
  reply: FastifyReply;
  closed: boolean;
}

export class EventHub {
  private readonly subscribers = new Set<Subscriber>();
  private readonly unsubscribe: () => void;
  private readonly keepAlive: NodeJS.Timeout;

  constructor(private readonly node: KalimaNode, private readonly logger: Logger) {
    this.unsubscribe = node.onBlock((committed) => this.publish(committed));
    this.keepAlive = setInterval(() => {
      for (const subscriber of this.subscribers) this.write(subscriber, ': keep-alive\n\n');
    }, KEEP_ALIVE_MS);
    this.keepAlive.unref();
  }

  get count(): number {
    return this.subscribers.size;
  }

  /** Checks the request before any byte of the stream is sent, so errors keep their status. */
  static checkSubscription(node: KalimaNode, deviceHex: string, prefix: string): void {
    checkPrefix(prefix);
    const role = roleOf(node.cache, node.policy, deviceHex);
    if (role.kind === 'admin') return;
    if (role.kind === 'unknown') throw kalimaError('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE', { device: deviceHex });
    // The stream may be wider than the SUB list (it is then filtered), but must overlap it.
    const overlaps = role.permissions.sub.some((sub) => sub === '/' || prefix === '/' || prefixCovers(sub, prefix) || prefixCovers(prefix, sub));
    if (!overlaps) throw kalimaError('KALIMA_ERR_ACCESS_SUB_DENIED', { device: deviceHex, address: prefix });
  }

  async open(request: FastifyRequest, reply: FastifyReply, deviceHex: string, prefix: string, from: number | undefined): Promise<void> {
    EventHub.checkSubscription(this.node, deviceHex, prefix);
    const newest = this.node.cache.nextGlobalSequence - 1;
    // A cursor past this chain's tip comes from another chain or a lost history: skipping ahead
    // to it would silently drop every message up to it.
    if (from !== undefined && from > newest) throw kalimaError('KALIMA_ERR_API_CURSOR_AHEAD', { from, newest });
    if (this.subscribers.size >= SUBSCRIBERS_MAX) throw kalimaError('KALIMA_ERR_API_OVERLOADED', { subscribers: this.subscribers.size });
    let ofDevice = 0;
    for (const subscriber of this.subscribers) if (subscriber.deviceHex === deviceHex) ofDevice++;
    if (ofDevice >= SUBSCRIBERS_PER_DEVICE_MAX) throw kalimaError('KALIMA_ERR_API_OVERLOADED', { device: deviceHex, subscribers: ofDevice });
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const subscriber: Subscriber = {
      deviceHex, prefix, reply, closed: false, replaying: true, backlog: [],
      lastSent: from ?? newest,
    };
    this.subscribers.add(subscriber);
    request.raw.on('close', () => this.drop(subscriber));
    // The starting cursor, so a client that drops before its first event resumes without a gap.
    raw.write(`retry: 500\nid: ${subscriber.lastSent}\nevent: ready\ndata: ${JSON.stringify({ cursor: subscriber.lastSent, chain: this.node.chain, genesisHash: this.node.genesisHashHex })}\n\n`);
    try {
      if (from !== undefined) await this.replay(subscriber);
      // Blocks that committed while we replayed.
      while (subscriber.backlog.length > 0 && !subscriber.closed) this.send(subscriber, subscriber.backlog.shift()!);
    } catch (error) {
      this.logger.warn({ err: error, prefix }, 'event replay failed');
      this.drop(subscriber);
      return;
    } finally {
      subscriber.replaying = false;
    }
  }

  private async replay(subscriber: Subscriber): Promise<void> {
    const start = await this.node.store.heightOfGlobalSequence(subscriber.lastSent + 1);
    if (start === undefined) return;
    const end = this.node.height;
    for (let height = start; height <= end && !subscriber.closed; height++) {
      const block = await this.node.getBlock(height);
      if (block === undefined) break;
      this.sendMessages(subscriber, block.messages, { height, timeMs: block.header.timeMs }, undefined, undefined);
      const raw = subscriber.reply.raw;
      if (raw.writableLength > REPLAY_BUFFER_BYTES_MAX) {
        await new Promise<void>((resolve) => {
          raw.once('drain', resolve);
          raw.once('close', resolve);
        });
      } else if ((height - start) % REPLAY_BLOCKS_PER_TURN === REPLAY_BLOCKS_PER_TURN - 1) await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private publish(committed: CommittedBlock): void {
    // Each event is serialised once per block, whatever the number of subscribers.
    const frames: Array<string | undefined> = new Array(committed.block.messages.length);
    for (const subscriber of this.subscribers) {
      if (subscriber.replaying) subscriber.backlog.push(committed);
      else this.send(subscriber, committed, frames);
    }
  }

  private send(subscriber: Subscriber, committed: CommittedBlock, frames?: Array<string | undefined>): void {
    const { header } = committed.block;
    this.sendMessages(subscriber, committed.block.messages, { height: header.height, timeMs: header.timeMs }, committed.messageHashes, frames);
  }

  private sendMessages(
    subscriber: Subscriber,
    messages: readonly CommittedMessage[],
    located: { height: number; timeMs: number },
    hashes: readonly Uint8Array[] | undefined,
    frames: Array<string | undefined> | undefined,
  ): void {
    // Permissions are read at send time, so a device whose SUB is revoked stops receiving.
    const role = roleOf(this.node.cache, this.node.policy, subscriber.deviceHex);
    if (role.kind === 'unknown') {
      this.drop(subscriber);
      return;
    }
    messages.forEach((committed, index) => {
      if (committed.globalSequence <= subscriber.lastSent || subscriber.closed) return;
      const { address } = committed.message;
      subscriber.lastSent = committed.globalSequence;
      if (!isUnderPath(subscriber.prefix, address)) return;
      if (role.kind === 'device' && !subCovers(role.permissions.sub, address)) return;
      let frame = frames?.[index];
      if (frame === undefined) {
        const hash = hashes?.[index] ?? messageHashOf(committed);
        frame = `id: ${committed.globalSequence}\nevent: message\ndata: ${JSON.stringify(committedToJson(committed, located, hash))}\n\n`;
        if (frames !== undefined) frames[index] = frame;
      }
      this.write(subscriber, frame);
    });
  }

  private write(subscriber: Subscriber, chunk: string): void {
    if (subscriber.closed) return;
    const raw = subscriber.reply.raw;
    raw.write(chunk);
    if (raw.writableLength > SUBSCRIBER_BUFFER_BYTES_MAX) {
      this.logger.warn({ device: subscriber.deviceHex, bufferedBytes: raw.writableLength }, 'slow subscriber cut off');
      this.drop(subscriber);
    }
  }

  private drop(subscriber: Subscriber): void {
    if (subscriber.closed) return;
    subscriber.closed = true;
    this.subscribers.delete(subscriber);
    subscriber.reply.raw.end();
  }

  close(): void {
    this.unsubscribe();
    clearInterval(this.keepAlive);
    for (const subscriber of [...this.subscribers]) this.drop(subscriber);
  }
}

function messageHashOf(committed: CommittedMessage): Uint8Array {
  return messageSigningHash(committed.message);
}
