// PeerRpc: requests and responses multiplexed with Raft over one transport. On an in-memory network
// that delivers a turn of the event loop later (and refuses to send to a peer marked unreachable),
// with timers that fire only when the test moves its clock. Frames the tests forge follow the wire
// format of net/rpc.ts: channel (0 Raft, 1 request, 2 response), id (4 bytes, big-endian), method or
// status, body.
import { describe, expect, it } from 'vitest';
import { KalimaError, type KalimaErrorCode, kalimaError } from '../../src/errors.ts';
import { PeerRpc, type PeerRpcOptions, type PeerTransport, RPC_BODY_BYTES_MAX, RPC_HEADER_BYTES } from '../../src/net/rpc.ts';
import type { Logger, Scheduler } from '../../src/ports.ts';

/** Timers on a clock that moves only when told; `advance` runs those due, earliest first. */
class ManualScheduler implements Scheduler {
  private nowMs = 0;
  private nextHandle = 1;
  private readonly timers = new Map<number, { dueMs: number; callback: () => void }>();
  setTimeout(callback: () => void, delayMs: number): unknown {
    const handle = this.nextHandle++;
    this.timers.set(handle, { dueMs: this.nowMs + delayMs, callback });
    return handle;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  get pending(): number {
    return this.timers.size;
  }
  advance(deltaMs: number): void {
    this.nowMs += deltaMs;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, timer]) => timer.dueMs <= this.nowMs).sort((x, y) => x[1].dueMs - y[1].dueMs)[0];
      if (due === undefined) return;
      this.timers.delete(due[0]);
      due[1].callback();
    }
  }
}

/** Peers by id; a message arrives a turn later. What a receiver throws is kept, not lost, so tests can assert there was none. */
class MemoryNetwork {
  /** Delivers inside `send` instead, as a transport may. */
  synchronous = false;
  readonly unreachable = new Set<string>();
  readonly sent: Array<{ from: string; to: string; bytes: Uint8Array }> = [];
  readonly thrown: unknown[] = [];
  readonly closed = new Set<string>();
  private readonly handlers = new Map<string, (from: string, bytes: Uint8Array) => void>();

  transport(self: string): PeerTransport {
    return {
      send: (to, bytes) => {
        if (this.unreachable.has(to)) return false;
        this.sent.push({ from: self, to, bytes: bytes.slice() });
        this.deliver(self, to, bytes.slice());
        return true;
      },
      onMessage: (handler) => void this.handlers.set(self, handler),
      // Marks it closed but keeps delivering, so what PeerRpc does after close is its own doing.
      close: async () => void this.closed.add(self),
    };
  }

  /** Hands `to` bytes as if `from` sent them (what a link proved the sender to be). */
  deliver(from: string, to: string, bytes: Uint8Array): void {
    const handOver = (): void => {
      try {
        this.handlers.get(to)?.(from, bytes);
      } catch (error) {
        this.thrown.push(error);
      }
    };
    if (this.synchronous) handOver();
    else setImmediate(handOver);
  }

  /** The requests `from` sent `to`, in order. */
  requests(from: string, to: string): Uint8Array[] {
    return this.sent.filter((message) => message.from === from && message.to === to && message.bytes[0] === 1).map((message) => message.bytes);
  }
}

/** A logger that keeps what it is given at warn and error. */
function recordingLogger(): Logger & { warnings: object[]; errors: object[] } {
  const warnings: object[] = [];
  const errors: object[] = [];
  return { warnings, errors, debug() {}, info() {}, warn: (object) => void warnings.push(object), error: (object) => void errors.push(object) };
}

type Peer = { rpc: PeerRpc; logger: ReturnType<typeof recordingLogger> };

function setup(ids: string[] = ['a', 'b', 'c'], options: Partial<PeerRpcOptions> = {}): { network: MemoryNetwork; scheduler: ManualScheduler; peers: Record<string, Peer> } {
  const network = new MemoryNetwork();
  const scheduler = new ManualScheduler();
  const peers: Record<string, Peer> = {};
  for (const id of ids) {
    const logger = recordingLogger();
    peers[id] = { rpc: new PeerRpc({ transport: network.transport(id), scheduler, logger, ...options }), logger };
  }
  return { network, scheduler, peers };
}

/** Lets the network and the handlers run: a few turns of the event loop. */
async function flush(turns = 10): Promise<void> {
  for (let turn = 0; turn < turns; turn++) await new Promise((resolve) => setImmediate(resolve));
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}

/** Watches a promise without awaiting it: whether it settled, and with what (counted, to catch a second settle). */
function track<T>(promise: Promise<T>): { settled: boolean; value?: T; error?: unknown } {
  const state: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  promise.then((value) => Object.assign(state, { settled: true, value }), (error: unknown) => Object.assign(state, { settled: true, error }));
  return state;
}

/** Awaits a call that must reject with a KalimaError of exactly `code`, and returns the error. */
async function rejection(promise: Promise<unknown>, code: KalimaErrorCode): Promise<KalimaError> {
  const outcome = await promise.then((value) => ({ value }), (error: unknown) => ({ error }));
  expect(outcome, `expected ${code}, the call resolved`).toHaveProperty('error');
  const error = (outcome as { error: unknown }).error;
  expect(error).toBeInstanceOf(KalimaError);
  expect((error as KalimaError).code).toBe(code);
  return error as KalimaError;
}

/** How many calls the rpc still waits on (its private table), to catch one left behind. */
const outstandingOf = (rpc: PeerRpc): number => (rpc as unknown as { outstanding: Map<number, unknown> }).outstanding.size;

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (body: Uint8Array): string => new TextDecoder().decode(body);
const idOf = (frame: Uint8Array): number => new DataView(frame.buffer, frame.byteOffset + 1, 4).getUint32(0);

/** A request or response frame as net/rpc.ts lays it out. */
function frame(channel: number, id: number, code: number, body: Uint8Array = new Uint8Array()): Uint8Array {
  const out = new Uint8Array(RPC_HEADER_BYTES + body.length);
  out[0] = channel;
  new DataView(out.buffer).setUint32(1, id);
  out[5] = code;
  out.set(body, RPC_HEADER_BYTES);
  return out;
}

const ECHO = 1;
const SLOW = 2;

describe('PeerRpc: calls and answers', () => {
  it('resolves a call with the bytes its handler returns, and clears its timer', async () => {
    const { network, scheduler, peers } = setup();
    peers.b!.rpc.handle(ECHO, async (from, body) => bytes(`${from}:${text(body)}`));
    const answer = await peers.a!.rpc.call('b', ECHO, bytes('hello'), 1_000);
    expect(text(answer)).toBe('a:hello');
    expect(scheduler.pending).toBe(0);
    expect(outstandingOf(peers.a!.rpc)).toBe(0);
    expect(network.thrown).toEqual([]);
  });

  it('gives each of several concurrent calls its own answer, whatever order the answers come in', async () => {
    const { network, peers } = setup();
    // b holds every request until the test releases it; then releases them last first.
    const held: Array<{ body: string; release: () => void }> = [];
    peers.b!.rpc.handle(SLOW, async (_from, body) => {
      const gate = deferred<void>();
      held.push({ body: text(body), release: () => gate.resolve() });
      await gate.promise;
      return bytes(`answer to ${text(body)}`);
    });
    peers.c!.rpc.handle(SLOW, async (_from, body) => bytes(`c answers ${text(body)}`));
    const calls = ['one', 'two', 'three', 'four'].map((body) => track(peers.a!.rpc.call('b', SLOW, bytes(body), 1_000)));
    const toC = peers.a!.rpc.call('c', SLOW, bytes('five'), 1_000);
    await flush();
    expect(held.map((request) => request.body)).toEqual(['one', 'two', 'three', 'four']);
    expect(new Set(network.requests('a', 'b').map(idOf)).size).toBe(4);
    expect(text(await toC)).toBe('c answers five');
    for (const request of [...held].reverse()) {
      request.release();
      await flush();
    }
    expect(calls.map((call) => text(call.value!))).toEqual(['answer to one', 'answer to two', 'answer to three', 'answer to four']);
  });
});

describe('PeerRpc: a transport that delivers before send returns', () => {
  it('still takes answers that come back inside send: an error answered at once, and a handler\'s bytes', async () => {
    const { network, scheduler, peers } = setup();
    network.synchronous = true;
    peers.b!.rpc.handle(ECHO, async (_from, body) => body);
    // No handler for the method: b answers while a is still inside send.
    await rejection(peers.a!.rpc.call('b', 9, bytes('x'), 1_000), 'KALIMA_ERR_API_NOT_FOUND');
    expect(text(await peers.a!.rpc.call('b', ECHO, bytes('echo'), 1_000))).toBe('echo');
    expect(scheduler.pending).toBe(0);
    expect(network.thrown).toEqual([]);
  });
});

describe('PeerRpc: errors', () => {
  it('brings a handler\'s KalimaError back with its code and details', async () => {
    const { peers } = setup();
    peers.b!.rpc.handle(ECHO, async () => {
      throw kalimaError('KALIMA_ERR_LEDGER_KEY_NOT_FOUND', { address: '/sensors/plant1', key: 'temp', depth: 3 });
    });
    const error = await rejection(peers.a!.rpc.call('b', ECHO, bytes('x'), 1_000), 'KALIMA_ERR_LEDGER_KEY_NOT_FOUND');
    expect(error.details).toEqual({ address: '/sensors/plant1', key: 'temp', depth: 3 });
    expect(error.status).toBe(404);
    // A coded error is an operating outcome, not a failure of the node.
    expect(peers.b!.logger.errors).toEqual([]);
  });

  it('answers a plain Error as KALIMA_ERR_NODE_INTERNAL, its text kept in the serving node\'s log only', async () => {
    const { network, peers } = setup();
    peers.b!.rpc.handle(ECHO, async () => {
      throw new Error('secret database path /var/lib/kalima');
    });
    const error = await rejection(peers.a!.rpc.call('b', ECHO, bytes('x'), 1_000), 'KALIMA_ERR_NODE_INTERNAL');
    expect(error.message).not.toContain('secret');
    expect(JSON.stringify(error.details)).not.toContain('secret');
    const response = network.sent.find((message) => message.from === 'b' && message.bytes[0] === 2)!;
    expect(text(response.bytes)).not.toContain('secret');
    expect(peers.b!.logger.errors).toHaveLength(1);
  });

  it('answers a coded error whose details JSON cannot carry with its code alone, instead of no answer', async () => {
    const { peers } = setup();
    peers.b!.rpc.handle(ECHO, async () => {
      throw kalimaError('KALIMA_ERR_LEDGER_KEY_NOT_FOUND', { amount: 10n });
    });
    const error = await rejection(peers.a!.rpc.call('b', ECHO, bytes('x'), 1_000), 'KALIMA_ERR_LEDGER_KEY_NOT_FOUND');
    expect(error.details).toEqual({});
  });

  it('refuses method numbers outside 0 to 255, to handle or to call', async () => {
    const { peers } = setup();
    expect(() => peers.b!.rpc.handle(256, async (_from, body) => body)).toThrow(RangeError);
    await expect(peers.a!.rpc.call('b', 256, bytes('x'), 1_000)).rejects.toThrow(RangeError);
  });

  it('answers an unknown method with KALIMA_ERR_API_NOT_FOUND', async () => {
    const { peers } = setup();
    peers.b!.rpc.handle(ECHO, async (_from, body) => body);
    const error = await rejection(peers.a!.rpc.call('b', 9, bytes('x'), 1_000), 'KALIMA_ERR_API_NOT_FOUND');
    expect(error.details).toEqual({ method: 9 });
  });

  it('reads an error answer it cannot decode as KALIMA_ERR_NODE_INTERNAL', async () => {
    const { network, scheduler, peers } = setup();
    peers.b!.rpc.handle(SLOW, () => new Promise<Uint8Array>(() => {}));
    const call = peers.a!.rpc.call('b', SLOW, bytes('x'), 1_000);
    const id = idOf(network.requests('a', 'b')[0]!);
    network.deliver('b', 'a', frame(2, id, 1, bytes('{"code":"KALIMA_ERR_NO_SUCH_CODE"}')));
    const error = await rejection(call, 'KALIMA_ERR_NODE_INTERNAL');
    expect(error.details).toMatchObject({ peer: 'b' });
    expect(scheduler.pending).toBe(0);
  });
});

describe('PeerRpc: timeouts and unreachable peers', () => {
  it('rejects with KALIMA_ERR_NET_TIMEOUT when no answer comes in time, and ignores the answer that comes later', async () => {
    const { network, scheduler, peers } = setup();
    const gate = deferred<void>();
    let served = 0;
    peers.b!.rpc.handle(SLOW, async () => {
      served++;
      await gate.promise;
      return bytes('late');
    });
    peers.b!.rpc.handle(ECHO, async (_from, body) => body);
    const settles: string[] = [];
    const call = peers.a!.rpc.call('b', SLOW, bytes('x'), 500);
    const outcome = track(call.then(() => void settles.push('resolved'), (error: unknown) => {
      settles.push('rejected');
      throw error;
    }));
    await flush();
    scheduler.advance(499);
    await flush();
    expect(outcome.settled).toBe(false);
    scheduler.advance(1);
    await flush();
    expect(outcome.settled).toBe(true);
    const error = await rejection(call, 'KALIMA_ERR_NET_TIMEOUT');
    expect(error.details).toEqual({ peer: 'b', timeoutMs: 500 });
    // The answer arrives after all: dropped, without a throw and without settling the call again.
    gate.resolve();
    await flush();
    expect(served).toBe(1);
    expect(network.sent.filter((message) => message.from === 'b' && message.to === 'a')).toHaveLength(1);
    expect(network.thrown).toEqual([]);
    expect(settles).toEqual(['rejected']);
    expect(scheduler.pending).toBe(0);
    expect(outstandingOf(peers.a!.rpc)).toBe(0);
    // And it does not answer the next call in its place.
    expect(text(await peers.a!.rpc.call('b', ECHO, bytes('next'), 500))).toBe('next');
  });

  it('rejects at once with KALIMA_ERR_NET_UNREACHABLE when the transport cannot send', async () => {
    const { network, scheduler, peers } = setup();
    peers.b!.rpc.handle(ECHO, async (_from, body) => body);
    network.unreachable.add('b');
    const outcome = track(peers.a!.rpc.call('b', ECHO, bytes('x'), 1_000));
    // Only microtasks: no turn of the event loop, no timer.
    await null;
    await null;
    expect(outcome.settled).toBe(true);
    expect(outcome.error).toBeInstanceOf(KalimaError);
    expect((outcome.error as KalimaError).code).toBe('KALIMA_ERR_NET_UNREACHABLE');
    expect((outcome.error as KalimaError).details).toEqual({ peer: 'b' });
    expect(scheduler.pending).toBe(0);
    expect(outstandingOf(peers.a!.rpc)).toBe(0);
    expect(network.sent).toEqual([]);
    // Once it is reachable again, calls go through.
    network.unreachable.delete('b');
    expect(text(await peers.a!.rpc.call('b', ECHO, bytes('again'), 1_000))).toBe('again');
  });

  it('ignores an answer from a peer other than the one asked, and takes the real one', async () => {
    const { network, peers } = setup();
    const gate = deferred<void>();
    peers.b!.rpc.handle(SLOW, async () => {
      await gate.promise;
      return bytes('from b');
    });
    const call = track(peers.a!.rpc.call('b', SLOW, bytes('x'), 1_000));
    const id = idOf(network.requests('a', 'b')[0]!);
    // c answers the id a gave b: as a success, then as an error.
    network.deliver('c', 'a', frame(2, id, 0, bytes('forged by c')));
    network.deliver('c', 'a', frame(2, id, 1, bytes(JSON.stringify({ code: 'KALIMA_ERR_NET_TIMEOUT', details: {} }))));
    await flush();
    expect(call.settled).toBe(false);
    gate.resolve();
    await flush();
    expect(call.settled).toBe(true);
    expect(text(call.value!)).toBe('from b');
    expect(network.thrown).toEqual([]);
  });

  it('ignores an answer from a peer other than the one asked, and times out if the real one never comes', async () => {
    const { network, scheduler, peers } = setup();
    peers.b!.rpc.handle(SLOW, () => new Promise<Uint8Array>(() => {}));
    const call = peers.a!.rpc.call('b', SLOW, bytes('x'), 1_000);
    const outcome = track(call);
    network.deliver('c', 'a', frame(2, idOf(network.requests('a', 'b')[0]!), 0, bytes('forged by c')));
    await flush();
    expect(outcome.settled).toBe(false);
    scheduler.advance(1_000);
    await flush();
    expect(outcome.settled).toBe(true);
    await rejection(call, 'KALIMA_ERR_NET_TIMEOUT');
  });
});

describe('PeerRpc: the Raft channel', () => {
  it('hands Raft messages to the raft view without their channel byte, and prefixes 0 to what it sends', async () => {
    const { network, peers } = setup();
    const received: Array<[string, Uint8Array]> = [];
    peers.a!.rpc.raft.onMessage((from, message) => received.push([from, message.slice()]));
    expect(peers.b!.rpc.raft.send('a', Uint8Array.of(7, 8, 9))).toBe(true);
    expect(peers.b!.rpc.raft.send('a', new Uint8Array())).toBe(true);
    expect(network.sent.map((message) => [...message.bytes])).toEqual([[0, 7, 8, 9], [0]]);
    await flush();
    expect(received).toEqual([['b', Uint8Array.of(7, 8, 9)], ['b', new Uint8Array()]]);
    // The raft view says when the transport cannot send.
    network.unreachable.add('a');
    expect(peers.b!.rpc.raft.send('a', Uint8Array.of(1))).toBe(false);
  });

  it('keeps requests and responses away from the raft handler, and Raft messages away from request handlers', async () => {
    const { network, peers } = setup();
    const raftMessages: Uint8Array[] = [];
    const served: string[] = [];
    peers.a!.rpc.raft.onMessage((_from, message) => raftMessages.push(message));
    peers.b!.rpc.raft.onMessage((_from, message) => raftMessages.push(message));
    peers.b!.rpc.handle(0, async (_from, body) => {
      served.push(text(body));
      return body;
    });
    // A Raft message whose bytes look like a request for method 0 stays a Raft message.
    peers.a!.rpc.raft.send('b', frame(1, 1, 0, bytes('raft')));
    expect(text(await peers.a!.rpc.call('b', 0, bytes('request'), 1_000))).toBe('request');
    await flush();
    expect(served).toEqual(['request']);
    expect(raftMessages.map((message) => [...message])).toEqual([[...frame(1, 1, 0, bytes('raft'))]]);
    expect(network.thrown).toEqual([]);
  });
});

describe('PeerRpc: the bound on requests in flight per peer', () => {
  it('refuses a peer\'s third concurrent request with KALIMA_ERR_API_OVERLOADED at a bound of 2, and serves another peer meanwhile', async () => {
    const { network, peers } = setup(['a', 'b', 's'], { inFlightPerPeerMax: 2 });
    const gates: Array<() => void> = [];
    const served: string[] = [];
    peers.s!.rpc.handle(SLOW, async (from, body) => {
      served.push(`${from}:${text(body)}`);
      const gate = deferred<void>();
      gates.push(() => gate.resolve());
      await gate.promise;
      return bytes(`done ${text(body)}`);
    });
    const first = track(peers.a!.rpc.call('s', SLOW, bytes('1'), 1_000));
    const second = track(peers.a!.rpc.call('s', SLOW, bytes('2'), 1_000));
    const third = peers.a!.rpc.call('s', SLOW, bytes('3'), 1_000);
    const fromB = track(peers.b!.rpc.call('s', SLOW, bytes('b1'), 1_000));
    const error = await rejection(third, 'KALIMA_ERR_API_OVERLOADED');
    expect(error.details).toEqual({ peer: 'a', inFlight: 2 });
    await flush();
    expect(served).toEqual(['a:1', 'a:2', 'b:b1']);
    expect([first.settled, second.settled, fromB.settled]).toEqual([false, false, false]);
    for (const release of gates) release();
    await flush();
    expect([first.value, second.value, fromB.value].map((value) => text(value!))).toEqual(['done 1', 'done 2', 'done b1']);
    // The slots are free again.
    const again = peers.a!.rpc.call('s', SLOW, bytes('4'), 1_000);
    const andAgain = peers.a!.rpc.call('s', SLOW, bytes('5'), 1_000);
    await flush();
    for (const release of gates.slice(3)) release();
    expect([text(await again), text(await andAgain)]).toEqual(['done 4', 'done 5']);
    expect(network.thrown).toEqual([]);
  });

  it('frees a slot when a handler fails', async () => {
    const { peers } = setup(['a', 's'], { inFlightPerPeerMax: 1 });
    let fail = true;
    peers.s!.rpc.handle(ECHO, async (_from, body) => {
      if (fail) throw new Error('boom');
      return body;
    });
    await rejection(peers.a!.rpc.call('s', ECHO, bytes('x'), 1_000), 'KALIMA_ERR_NODE_INTERNAL');
    fail = false;
    expect(text(await peers.a!.rpc.call('s', ECHO, bytes('y'), 1_000))).toBe('y');
  });
});

describe('PeerRpc: sizes', () => {
  it('refuses a body over RPC_BODY_BYTES_MAX before sending it, and sends one of exactly that size', async () => {
    const { network, scheduler, peers } = setup();
    peers.b!.rpc.handle(ECHO, async (_from, body) => Uint8Array.of(body.length >> 8, body.length & 0xff));
    const error = await rejection(peers.a!.rpc.call('b', ECHO, new Uint8Array(RPC_BODY_BYTES_MAX + 1), 1_000), 'KALIMA_ERR_NET_MESSAGE_TOO_LARGE');
    expect(error.details).toEqual({ bytes: RPC_BODY_BYTES_MAX + 1, max: RPC_BODY_BYTES_MAX });
    expect(network.sent).toEqual([]);
    expect(scheduler.pending).toBe(0);
    const answer = await peers.a!.rpc.call('b', ECHO, new Uint8Array(RPC_BODY_BYTES_MAX), 1_000);
    expect((answer[0]! << 8) | answer[1]!).toBe(RPC_BODY_BYTES_MAX);
    // With its header, the largest request is what a link frame carries (net/link.ts: 65,534 bytes).
    expect(network.requests('a', 'b')[0]!.length).toBe(65_534);
  });

  it('answers a handler result over RPC_BODY_BYTES_MAX with KALIMA_ERR_NET_MESSAGE_TOO_LARGE, and one of exactly that size as it is', async () => {
    const { network, peers } = setup();
    peers.b!.rpc.handle(ECHO, async (_from, body) => new Uint8Array(Number(text(body))).fill(0xab));
    const error = await rejection(peers.a!.rpc.call('b', ECHO, bytes(String(RPC_BODY_BYTES_MAX + 1)), 1_000), 'KALIMA_ERR_NET_MESSAGE_TOO_LARGE');
    expect(error.details).toEqual({ bytes: RPC_BODY_BYTES_MAX + 1, max: RPC_BODY_BYTES_MAX });
    expect(network.sent.filter((message) => message.from === 'b').every((message) => message.bytes.length <= 65_534)).toBe(true);
    const answer = await peers.a!.rpc.call('b', ECHO, bytes(String(RPC_BODY_BYTES_MAX)), 1_000);
    expect(answer.length).toBe(RPC_BODY_BYTES_MAX);
    expect(answer.every((byte) => byte === 0xab)).toBe(true);
  });
});

describe('PeerRpc: close', () => {
  it('rejects outstanding calls with KALIMA_ERR_NODE_STOPPING, and every call after', async () => {
    const { network, scheduler, peers } = setup();
    const gate = deferred<void>();
    peers.b!.rpc.handle(SLOW, async () => {
      await gate.promise;
      return bytes('too late');
    });
    peers.c!.rpc.handle(SLOW, () => new Promise<Uint8Array>(() => {}));
    const toB = peers.a!.rpc.call('b', SLOW, bytes('x'), 1_000);
    const toC = peers.a!.rpc.call('c', SLOW, bytes('y'), 1_000);
    await flush();
    const sentBefore = network.sent.length;
    await peers.a!.rpc.close();
    await rejection(toB, 'KALIMA_ERR_NODE_STOPPING');
    await rejection(toC, 'KALIMA_ERR_NODE_STOPPING');
    expect(scheduler.pending).toBe(0);
    expect(outstandingOf(peers.a!.rpc)).toBe(0);
    expect(network.closed.has('a')).toBe(true);
    await rejection(peers.a!.rpc.call('b', SLOW, bytes('z'), 1_000), 'KALIMA_ERR_NODE_STOPPING');
    expect(network.sent.length).toBe(sentBefore);
    // b's answer comes after a closed: nothing happens. Closing again is harmless.
    gate.resolve();
    await flush();
    await peers.a!.rpc.close();
    expect(network.thrown).toEqual([]);
  });

  it('serves nothing and answers nothing once closed', async () => {
    const { network, peers } = setup();
    const gate = deferred<void>();
    const served: string[] = [];
    const raftMessages: Uint8Array[] = [];
    peers.b!.rpc.raft.onMessage((_from, message) => raftMessages.push(message));
    peers.b!.rpc.handle(SLOW, async (_from, body) => {
      served.push(text(body));
      await gate.promise;
      return body;
    });
    const before = track(peers.a!.rpc.call('b', SLOW, bytes('before'), 1_000));
    await flush();
    await peers.b!.rpc.close();
    gate.resolve();
    // The network still delivers to b (its close only marks it).
    network.deliver('a', 'b', frame(1, 99, SLOW, bytes('after')));
    await flush();
    expect(served).toEqual(['before']);
    expect(raftMessages).toEqual([]);
    expect(network.sent.filter((message) => message.from === 'b')).toEqual([]);
    expect(before.settled).toBe(false);
  });
});

describe('PeerRpc: malformed frames', () => {
  it('drops empty frames, unknown channels and frames shorter than the header, without throwing', async () => {
    const { network, peers } = setup();
    const raftMessages: Uint8Array[] = [];
    const served: Uint8Array[] = [];
    peers.a!.rpc.raft.onMessage((_from, message) => raftMessages.push(message));
    peers.a!.rpc.handle(0, async (_from, body) => {
      served.push(body);
      return body;
    });
    peers.b!.rpc.handle(SLOW, () => new Promise<Uint8Array>(() => {}));
    // An outstanding call, so that a short response for its id has something to hit.
    const call = track(peers.a!.rpc.call('b', SLOW, bytes('x'), 1_000));
    const id = idOf(network.requests('a', 'b')[0]!);
    const idBytes = frame(2, id, 0).subarray(1, 5);
    const malformed = [
      new Uint8Array(),
      Uint8Array.of(3, 0, 0, 0, 1, 0, 1, 2),
      Uint8Array.of(255, 0, 0, 0, 0, 0),
      Uint8Array.of(1),
      Uint8Array.of(1, 0, 0, 0, 1),
      Uint8Array.of(2, ...idBytes),
      Uint8Array.of(2, idBytes[0]!, idBytes[1]!),
    ];
    for (const bytesOf of malformed) network.deliver('b', 'a', bytesOf);
    await flush();
    expect(network.thrown).toEqual([]);
    expect(raftMessages).toEqual([]);
    expect(served).toEqual([]);
    expect(call.settled).toBe(false);
    expect(network.sent.filter((message) => message.from === 'a' && message.bytes[0] === 2)).toEqual([]);
    // Each non-empty one is logged as dropped.
    expect(peers.a!.logger.warnings).toHaveLength(malformed.length - 1);
    // The node still serves and answers.
    peers.b!.rpc.handle(ECHO, async (_from, body) => body);
    expect(text(await peers.a!.rpc.call('b', ECHO, bytes('still'), 1_000))).toBe('still');
    expect(text(await peers.b!.rpc.call('a', 0, bytes('up'), 1_000))).toBe('up');
  });
});
