// A bare client of a master's client listener, for tests that look at the wire: it does the BOLT 8
// handshake itself (net/noise.ts) and keeps every decrypted frame, so a test can assert on what
// the master sent, not only on what the SDK made of it. It can stop reading (a slow client) and
// send frames that do not decode.
import { type Socket, connect } from 'node:net';
import { once } from 'node:events';
import { ACT_TWO_BYTES, NoiseInitiator, type NoiseTransport, staticKeyFromSecret } from '../../src/net/noise.ts';
import { type ClientFrame, type ServerFrame, decodeServerFrame, encodeClientFrame } from '../../src/net/sync-protocol.ts';
import { linkKeyOfMaster, linkSecretOf } from '../../src/node/cluster.ts';
import type { KeyPair } from '../../src/ledger/signature.ts';
import { seededRng } from './chain.ts';

const FRAME_DATA = 0;
const FRAME_PING = 1;
const FRAME_PONG = 2;

export class WireClient {
  /** Every data message's plaintext, as it came off the link. */
  readonly plaintexts: Uint8Array[] = [];
  readonly frames: ServerFrame[] = [];
  readonly closed: Promise<void>;
  isClosed = false;
  private listeners = new Set<() => void>();

  private constructor(private readonly socket: Socket, private readonly transport: NoiseTransport) {
    this.closed = new Promise((resolve) => socket.once('close', () => {
      this.isClosed = true;
      this.notify();
      resolve();
    }));
    socket.on('data', (chunk: Buffer) => {
      for (const message of this.transport.decrypt(new Uint8Array(chunk))) {
        if (message[0] === FRAME_PING) this.socket.write(this.transport.encrypt(Uint8Array.of(FRAME_PONG)));
        if (message[0] !== FRAME_DATA) continue;
        const body = message.subarray(1);
        this.plaintexts.push(body);
        this.frames.push(decodeServerFrame(body));
      }
      this.notify();
    });
    socket.on('error', () => undefined);
  }

  static async connect(options: { host: string; port: number; masterKey: Uint8Array; device: KeyPair; seed?: string }): Promise<WireClient> {
    const socket = connect({ host: options.host, port: options.port });
    await once(socket, 'connect');
    const initiator = new NoiseInitiator(staticKeyFromSecret(linkSecretOf(options.device.secretKey)), linkKeyOfMaster(options.masterKey), seededRng(options.seed ?? 'wire'));
    socket.write(initiator.actOne());
    const actTwo = await new Promise<Uint8Array>((resolve, reject) => {
      let buffered = Buffer.alloc(0);
      const onData = (chunk: Buffer): void => {
        buffered = Buffer.concat([buffered, chunk]);
        if (buffered.length >= ACT_TWO_BYTES) {
          socket.off('data', onData);
          socket.pause();
          resolve(new Uint8Array(buffered));
        }
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error('closed during the handshake')));
    });
    const { actThree, transport } = initiator.actTwoThenThree(actTwo);
    socket.write(actThree);
    const client = new WireClient(socket, transport);
    socket.resume();
    return client;
  }

  send(frame: ClientFrame): void {
    this.sendRaw(encodeClientFrame(frame));
  }

  /** Any bytes as one data message: what does not decode, too. */
  sendRaw(bytes: Uint8Array): void {
    this.socket.write(this.transport.encrypt(Uint8Array.of(FRAME_DATA, ...bytes)));
  }

  /** Stops reading: the master's bytes pile up in the socket buffers, then in its queue. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  close(): void {
    this.socket.destroy();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** Resolves with the first frame that matches, waiting for it if need be. */
  waitFor<T extends ServerFrame>(match: (frame: ServerFrame) => frame is T, timeoutMs?: number): Promise<T>;
  waitFor(match: (frame: ServerFrame) => boolean, timeoutMs?: number): Promise<ServerFrame>;
  waitFor(match: (frame: ServerFrame) => boolean, timeoutMs = 10_000): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.frames.find(match);
        if (found !== undefined) {
          done();
          resolve(found);
        } else if (this.isClosed) {
          done();
          reject(new Error(`the link closed before the frame came; frames: ${this.frames.map((frame) => frame.type).join(', ')}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out; frames: ${this.frames.map((frame) => frame.type).join(', ')}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }
}
