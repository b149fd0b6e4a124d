// A lean HTTP/1.1 keep-alive client for the load generator. The load generator shares the
// machine's two cores with the node it measures, so every microsecond it spends per request is
// taken from the node: undici cost 60–90 µs of CPU per request here, this client about a tenth of
// that. It writes each request in one buffer and reads only what the bench needs from a reply (the
// status and a Content-Length body), one request at a time per connection, like undici with
// pipelining 1. Anything else in a reply (chunked bodies, a closed connection) is an error.
import { type Socket, connect } from 'node:net';

export interface RawResponse {
  status: number;
  body: Buffer;
}

const HEADER_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;
const CHUNKED = /\r\ntransfer-encoding:[^\r]*chunked/i;

class RawConnection {
  private readonly socket: Socket;
  private buffered: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (response: RawResponse) => void; reject: (error: Error) => void } | undefined;
  private failure: Error | undefined;
  readonly ready: Promise<void>;

  constructor(host: string, port: number) {
    this.socket = connect({ host, port, noDelay: true });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (error) => this.fail(error));
    this.socket.on('close', () => this.fail(Object.assign(new Error('connection closed'), { code: 'ECONNRESET' })));
  }

  request(head: Buffer, body: Buffer): Promise<RawResponse> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.waiting !== undefined) return Promise.reject(new Error('raw http: one request at a time per connection'));
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(Buffer.concat([head, body], head.length + body.length));
    });
  }

  private onData(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const headerEnd = this.buffered.indexOf(HEADER_END);
    if (headerEnd < 0) return;
    const head = this.buffered.toString('latin1', 0, headerEnd);
    if (CHUNKED.test(head)) return this.fail(new Error('raw http: chunked replies are not supported'));
    const length = CONTENT_LENGTH.exec(head);
    if (length === null) return this.fail(new Error('raw http: a reply without Content-Length'));
    const bodyStart = headerEnd + HEADER_END.length;
    const bodyEnd = bodyStart + Number(length[1]);
    if (this.buffered.length < bodyEnd) return;
    // "HTTP/1.1 200 OK": the status is the three digits after the first space.
    const status = Number(head.slice(9, 12));
    const body = this.buffered.subarray(bodyStart, bodyEnd);
    this.buffered = this.buffered.length > bodyEnd ? this.buffered.subarray(bodyEnd) : Buffer.alloc(0);
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting === undefined) return this.fail(new Error('raw http: a reply nobody asked for'));
    waiting.resolve({ status, body });
  }

  private fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.socket.destroy();
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(error);
  }

  close(): void {
    this.fail(new Error('raw http: closed'));
  }
}

/** A fixed set of keep-alive connections; a request takes a free one or waits for one. */
export class RawHttpPool {
  private readonly host: string;
  private readonly port: number;
  private readonly idle: RawConnection[] = [];
  private readonly queued: Array<{ resolve: (connection: RawConnection) => void; reject: (error: unknown) => void }> = [];
  private readonly all = new Set<RawConnection>();
  private opened = 0;

  constructor(url: string, private readonly connections: number) {
    const parsed = new URL(url);
    if (parsed.protocol !== 'http:') throw new Error(`raw http: only http:// URLs (${url})`);
    this.host = parsed.hostname;
    this.port = Number(parsed.port || 80);
  }

  /** The request line and headers for a JSON POST of `bodyBytes`, to be written before the body. */
  postHead(path: string, bodyBytes: number): Buffer {
    return Buffer.from(`POST ${path} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\ncontent-type: application/json\r\ncontent-length: ${bodyBytes}\r\n\r\n`, 'latin1');
  }

  async post(path: string, body: Buffer): Promise<RawResponse> {
    const connection = await this.acquire();
    let response: RawResponse;
    try {
      response = await connection.request(this.postHead(path, body.length), body);
    } catch (error) {
      this.discard(connection);
      throw error;
    }
    this.release(connection);
    return response;
  }

  private async acquire(): Promise<RawConnection> {
    const idle = this.idle.pop();
    if (idle !== undefined) return idle;
    if (this.opened < this.connections) {
      this.opened++;
      const connection = new RawConnection(this.host, this.port);
      this.all.add(connection);
      try {
        await connection.ready;
      } catch (error) {
        this.opened--;
        this.all.delete(connection);
        throw error;
      }
      return connection;
    }
    return new Promise((resolve, reject) => this.queued.push({ resolve, reject }));
  }

  private release(connection: RawConnection): void {
    const next = this.queued.shift();
    if (next !== undefined) next.resolve(connection);
    else this.idle.push(connection);
  }

  /** A broken connection leaves the pool; a request waiting for a connection gets a new one. */
  private discard(connection: RawConnection): void {
    connection.close();
    this.all.delete(connection);
    this.opened--;
    const next = this.queued.shift();
    if (next === undefined) return;
    this.acquire().then(next.resolve, next.reject);
  }

  /** Closes every connection; requests still waiting for a reply fail. */
  close(): void {
    for (const connection of this.all) connection.close();
    this.all.clear();
    this.idle.length = 0;
  }
}
