// A fault-injecting TCP proxy on loopback, for tests that break the links between processes: it
// listens on a free port of 127.0.0.1 and forwards bytes both ways to a target port there.
//
//   cut('reset')      every connection is reset (RST) at once, and each new one is reset as it
//                     arrives: the peers see the failure at once.
//   cut('blackhole')  every connection stays open but its bytes, both ways, are dropped from now
//                     on; a new one is accepted and never reaches the target: a half-open link,
//                     which only the peers' own timeouts (heartbeats, handshake) can find.
//   heal()            new connections are forwarded again. A connection that lost bytes in a
//                     black hole stays silent (its stream has a hole, so no byte of it may reach
//                     the other side again) until an end closes it, as a half-open TCP connection
//                     whose peer went away; heal({ resetStale: true }) resets those instead.
//   close()           resets everything and stops listening.
import { once } from 'node:events';
import { type Server, type Socket, connect, createServer } from 'node:net';

export type CutMode = 'reset' | 'blackhole';

interface Connection {
  client: Socket;
  upstream: Socket | undefined;
  /** Set for good once a byte of this connection was dropped. */
  blackholed: boolean;
}

const HOST = '127.0.0.1';

function reset(socket: Socket | undefined): void {
  if (socket === undefined || socket.destroyed) return;
  // An RST where the socket is connected; a plain destroy where it is not (yet).
  if (typeof socket.resetAndDestroy === 'function' && socket.readyState === 'open') socket.resetAndDestroy();
  else socket.destroy();
}

export class FaultProxy {
  private mode: 'open' | CutMode = 'open';
  private readonly connections = new Set<Connection>();
  /** Counters, for a test's diagnostics. */
  readonly stats = { accepted: 0, refused: 0, blackholed: 0, forwardedBytes: 0, droppedBytes: 0 };

  private constructor(private readonly server: Server, readonly port: number, readonly targetPort: number) {}

  /** A proxy on a free port of 127.0.0.1 to `targetPort` on 127.0.0.1. */
  static async start(targetPort: number): Promise<FaultProxy> {
    let proxy: FaultProxy | undefined;
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => proxy!.accept(socket));
    server.listen(0, HOST);
    await once(server, 'listening');
    proxy = new FaultProxy(server, (server.address() as { port: number }).port, targetPort);
    return proxy;
  }

  /** 'open', or how it is cut. */
  get state(): 'open' | CutMode {
    return this.mode;
  }

  /** Connections open now (forwarded or held in a black hole). */
  get openConnections(): number {
    return this.connections.size;
  }

  cut(mode: CutMode = 'reset'): void {
    this.mode = mode;
    for (const connection of [...this.connections]) {
      if (mode === 'reset') this.drop(connection);
      else connection.blackholed = true;
    }
  }

  heal(options: { resetStale?: boolean } = {}): void {
    this.mode = 'open';
    if (options.resetStale) for (const connection of [...this.connections]) if (connection.blackholed) this.drop(connection);
  }

  async close(): Promise<void> {
    for (const connection of [...this.connections]) this.drop(connection);
    const closed = once(this.server, 'close');
    this.server.close();
    await closed;
  }

  private accept(client: Socket): void {
    if (this.mode === 'reset') {
      this.stats.refused++;
      client.on('error', () => {});
      reset(client);
      return;
    }
    this.stats.accepted++;
    const connection: Connection = { client, upstream: undefined, blackholed: this.mode === 'blackhole' };
    this.connections.add(connection);
    if (connection.blackholed) this.stats.blackholed++;
    this.watch(connection, client);
    if (!connection.blackholed) {
      const upstream = connect({ host: HOST, port: this.targetPort, allowHalfOpen: true });
      connection.upstream = upstream;
      this.watch(connection, upstream);
      this.pipe(connection, upstream, client);
      this.pipe(connection, client, upstream);
    } else {
      // Swallow whatever arrives; nothing is sent back.
      client.on('data', (chunk: Buffer) => void (this.stats.droppedBytes += chunk.length));
    }
    client.resume();
  }

  /**
   * An end that fails or closes takes the other down with it (a reset) while bytes flow; in a
   * black hole the other end learns nothing, as over a link that went dark.
   */
  private watch(connection: Connection, socket: Socket): void {
    const gone = (): void => {
      if (!connection.blackholed) {
        this.drop(connection);
        return;
      }
      socket.destroy();
      const other = socket === connection.client ? connection.upstream : connection.client;
      if (other === undefined || other.destroyed) this.connections.delete(connection);
    };
    socket.on('error', gone);
    socket.on('close', gone);
    // A FIN into a black hole is lost too: this side is done, the other is not told.
    socket.on('end', () => {
      if (connection.blackholed) gone();
    });
  }

  /** Forwards `from` to `to` while the connection is not black-holed, with backpressure. */
  private pipe(connection: Connection, from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (connection.blackholed) {
        this.stats.droppedBytes += chunk.length;
        return;
      }
      this.stats.forwardedBytes += chunk.length;
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    // A half-close goes through while bytes flow.
    from.on('end', () => {
      if (!connection.blackholed && !to.destroyed) to.end();
    });
  }

  private drop(connection: Connection): void {
    if (!this.connections.delete(connection)) return;
    reset(connection.client);
    reset(connection.upstream);
  }
}
