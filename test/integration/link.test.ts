// Encrypted node links (src/net/link.ts) over real loopback sockets: pinned identities, both
// directions, key rotation on a long stream, back-pressure, half-open detection, penalties and
// reconnection with backoff.
import { type Socket, connect, createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { toHex } from '../../src/ledger/hash.ts';
import { type CloseReason, type Link, LinkListener, Peer, dial } from '../../src/net/link.ts';
import { NoiseInitiator, staticKeyFromSecret } from '../../src/net/noise.ts';
import { systemClock, systemScheduler } from '../../src/ports.ts';
import { seededRng } from '../support/chain.ts';

const serverKey = staticKeyFromSecret(new Uint8Array(32).fill(0x21));
const clientKey = staticKeyFromSecret(new Uint8Array(32).fill(0x11));
const strangerKey = staticKeyFromSecret(new Uint8Array(32).fill(0x31));
const base = { clock: systemClock, scheduler: systemScheduler };

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listener(options: Partial<ConstructorParameters<typeof LinkListener>[0]> = {}): Promise<{ listener: LinkListener; port: number; links: Link[] }> {
  const server = new LinkListener({ ...base, rng: seededRng('server'), key: serverKey, allowed: new Set([toHex(clientKey.publicKey)]), ...options });
  const links: Link[] = [];
  server.on('link', (link: Link) => links.push(link));
  const { port } = await server.listen(0);
  cleanups.push(() => server.close());
  return { listener: server, port, links };
}

const until = async (condition: () => boolean, timeoutMs = 5_000): Promise<void> => {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

const collect = (link: Link): Uint8Array[] => {
  const received: Uint8Array[] = [];
  link.on('message', (message: Uint8Array) => received.push(new Uint8Array(message)));
  return received;
};

describe('encrypted node links', () => {
  it('carries messages both ways, in order, through key rotations, and the listener learns who connected', async () => {
    const { port, links } = await listener();
    const client = await dial({ ...base, rng: seededRng('client'), key: clientKey, remote: serverKey.publicKey, host: '127.0.0.1', port });
    cleanups.push(() => client.close());
    await until(() => links.length === 1);
    const server = links[0]!;
    expect(server.remoteHex).toBe(toHex(clientKey.publicKey));
    const atServer = collect(server);
    const atClient = collect(client);
    const random = seededRng('payloads');
    // 1,500 messages each way: both directions rotate their keys (every 1,000 uses, two per message).
    const outbound = Array.from({ length: 1_500 }, (_, index) => random.bytes(index === 7 ? 65_534 : index % 300));
    for (const message of outbound) {
      client.send(message);
      server.send(message);
    }
    await until(() => atServer.length === outbound.length && atClient.length === outbound.length);
    expect(atServer.map(toHex)).toEqual(outbound.map(toHex));
    expect(atClient.map(toHex)).toEqual(outbound.map(toHex));
  });

  it('refuses a node key the genesis does not name, and a dialer that pinned another key for this node fails its handshake', async () => {
    const { listener: server, port, links } = await listener();
    const refusals: unknown[] = [];
    server.on('refused', (refusal: unknown) => refusals.push(refusal));
    const stranger = await dial({ ...base, rng: seededRng('stranger'), key: strangerKey, remote: serverKey.publicKey, host: '127.0.0.1', port });
    const closed = new Promise<CloseReason>((resolve) => stranger.once('close', resolve));
    expect((await closed).kind).toBe('peer closed');
    await until(() => refusals.length === 1);
    expect(refusals[0]).toMatchObject({ remoteHex: toHex(strangerKey.publicKey), reason: { code: 'KALIMA_ERR_NET_UNKNOWN_PEER' } });
    // The dialer expects strangerKey behind this port: act two cannot authenticate.
    await expect(dial({ ...base, rng: seededRng('misled'), key: clientKey, remote: strangerKey.publicKey, host: '127.0.0.1', port })).rejects.toMatchObject({ code: 'KALIMA_ERR_NET_HANDSHAKE_FAILED' });
    expect(links).toHaveLength(0);
  });

  it('refuses more sends while too much waits unsent, and says when there is room again', async () => {
    const { port, links } = await listener({ maxQueuedBytes: 256 * 1024 });
    const client = await dial({ ...base, rng: seededRng('client'), key: clientKey, remote: serverKey.publicKey, host: '127.0.0.1', port, maxQueuedBytes: 256 * 1024 });
    cleanups.push(() => client.close());
    await until(() => links.length === 1);
    // The server side stops reading.
    (links[0] as unknown as { socket: Socket }).socket.pause();
    const chunk = new Uint8Array(60_000);
    let sent = 0;
    let refusal: unknown;
    try {
      for (; sent < 10_000; sent++) client.send(chunk);
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toMatchObject({ code: 'KALIMA_ERR_NET_QUEUE_FULL' });
    expect(sent).toBeLessThan(10_000);
    const drained = new Promise((resolve) => client.once('drain', resolve));
    (links[0] as unknown as { socket: Socket }).socket.resume();
    await drained;
    expect(() => client.send(chunk)).not.toThrow();
  });

  it('closes a half-open link: once the path silently drops everything, both ends declare it dead within deadAfterMs', async () => {
    const { port, links } = await listener({ heartbeatMs: 50, deadAfterMs: 300 });
    // A relay between the two that can start dropping every byte without closing anything, as a
    // peer whose machine lost power or a middlebox that forgot the connection would.
    let blackHole = false;
    const relays: Socket[] = [];
    const relay = createServer((inbound) => {
      const outbound = connect({ host: '127.0.0.1', port });
      relays.push(inbound, outbound);
      inbound.on('data', (chunk) => blackHole || outbound.write(chunk));
      outbound.on('data', (chunk) => blackHole || inbound.write(chunk));
      inbound.on('error', () => undefined);
      outbound.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => {
      for (const socket of relays) socket.destroy();
      relay.close(() => resolve());
    }));
    const relayPort = (relay.address() as { port: number }).port;
    const client = await dial({ ...base, rng: seededRng('client'), key: clientKey, remote: serverKey.publicKey, host: '127.0.0.1', port: relayPort, heartbeatMs: 50, deadAfterMs: 300 });
    cleanups.push(() => client.close());
    await until(() => links.length === 1);
    // Heartbeats keep an idle link alive well past deadAfterMs.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(client.isClosed).toBe(false);
    expect(links[0]!.isClosed).toBe(false);
    blackHole = true;
    const started = Date.now();
    const [atClient, atServer] = await Promise.all([client, links[0]!].map((link) => new Promise<CloseReason>((resolve) => link.once('close', resolve))));
    expect(atClient!.kind).toBe('dead');
    expect(atServer!.kind).toBe('dead');
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('a peer that sends a frame that does not decrypt is disconnected and refused for the penalty period', async () => {
    const { listener: server, port, links } = await listener({ penaltyMs: 60_000 });
    const refusals: Array<{ reason: unknown }> = [];
    server.on('refused', (refusal: { reason: unknown }) => refusals.push(refusal));
    // A client that completes the real handshake, then sends garbage.
    const socket = connect({ host: '127.0.0.1', port });
    cleanups.push(() => socket.destroy());
    await new Promise((resolve) => socket.once('connect', resolve));
    const initiator = new NoiseInitiator(clientKey, serverKey.publicKey, seededRng('rogue'));
    socket.write(initiator.actOne());
    const actTwo = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
    socket.write(initiator.actTwoThenThree(new Uint8Array(actTwo)).actThree);
    await until(() => links.length === 1);
    const closed = new Promise<CloseReason>((resolve) => links[0]!.once('close', resolve));
    socket.write(new Uint8Array(40).fill(0xab));
    expect(await closed).toMatchObject({ kind: 'bad frame' });
    expect(server.penaltyUntil(toHex(clientKey.publicKey))).toBeGreaterThan(Date.now() + 50_000);
    // The same node key is refused on its next attempt, however well it behaves.
    const again = await dial({ ...base, rng: seededRng('again'), key: clientKey, remote: serverKey.publicKey, host: '127.0.0.1', port });
    await new Promise<CloseReason>((resolve) => again.once('close', resolve));
    await until(() => refusals.length === 1);
    expect(refusals[0]!.reason).toMatchObject({ code: 'KALIMA_ERR_NET_PEER_PENALISED' });
    expect(links).toHaveLength(1);
  });

  it('keeps one link per peer key (a new one replaces the old), and closes connections beyond the handshakes it will run at once', async () => {
    const { listener: server, port, links } = await listener({ maxHandshakes: 2, handshakeTimeoutMs: 2_000 });
    const first = await dial({ ...base, rng: seededRng('first'), key: clientKey, remote: serverKey.publicKey, host: '127.0.0.1', port });
    cleanups.push(() => first.close());
    await until(() => links.length === 1);
    const second = await dial({ ...base, rng: seededRng('second'), key: clientKey, remote: serverKey.publicKey, host: '127.0.0.1', port });
    cleanups.push(() => second.close());
    await until(() => links.length === 2 && links[0]!.isClosed);
    expect(links[1]!.isClosed).toBe(false);
    // Three silent connections: two hold the handshake slots, the third is turned away at once.
    const refusals: Array<{ reason: unknown }> = [];
    server.on('refused', (refusal: { reason: unknown }) => refusals.push(refusal));
    const silent = Array.from({ length: 3 }, () => connect({ host: '127.0.0.1', port }));
    for (const socket of silent) {
      socket.on('error', () => undefined);
      cleanups.push(() => socket.destroy());
    }
    await until(() => refusals.length >= 1);
    expect(refusals[0]!.reason).toMatchObject({ code: 'KALIMA_ERR_API_OVERLOADED' });
    // Once those time out, handshakes are taken again.
    await until(() => refusals.length >= 3, 5_000);
    const third = await dial({ ...base, rng: seededRng('third'), key: clientKey, remote: serverKey.publicKey, host: '127.0.0.1', port });
    cleanups.push(() => third.close());
    await until(() => links.length === 3);
  });

  it('a peer reconnects with jittered, growing backoff until the node comes back, then carries messages again', async () => {
    // Find a free port, then leave nothing listening on it.
    const probe = await listener();
    const port = probe.port;
    await probe.listener.close();
    const peer = new Peer({ ...base, rng: seededRng('dialer'), key: clientKey, remote: serverKey.publicKey, host: '127.0.0.1', port, backoffBaseMs: 20, backoffMaxMs: 200 });
    cleanups.push(() => peer.stop());
    const failures: Array<{ attempt: number; delayMs: number; error: unknown }> = [];
    peer.on('attempt failed', (failure: { attempt: number; delayMs: number; error: unknown }) => failures.push(failure));
    const linked: Link[] = [];
    peer.on('link', (link: Link) => linked.push(link));
    peer.start();
    await until(() => failures.length >= 6);
    expect(failures[0]!.error).toMatchObject({ code: 'KALIMA_ERR_NET_UNREACHABLE' });
    failures.forEach((failure, index) => {
      expect(failure.attempt).toBe(index);
      expect(failure.delayMs).toBeLessThanOrEqual(Math.min(200, 20 * 2 ** index));
    });
    // Jitter: the delays are not a fixed sequence.
    expect(new Set(failures.slice(0, 6).map((failure) => failure.delayMs)).size).toBeGreaterThan(3);
    // The node comes back on the same port.
    const server = new LinkListener({ ...base, rng: seededRng('server-2'), key: serverKey, allowed: new Set([toHex(clientKey.publicKey)]) });
    const serverLinks: Link[] = [];
    server.on('link', (link: Link) => serverLinks.push(link));
    await server.listen(port);
    cleanups.push(() => server.close());
    await until(() => linked.length === 1 && serverLinks.length === 1);
    const received = collect(serverLinks[0]!);
    linked[0]!.send(Uint8Array.of(1, 2, 3));
    await until(() => received.length === 1);
    expect(received[0]).toEqual(Uint8Array.of(1, 2, 3));
    // The node goes away again: the peer notices and dials again.
    const before = failures.length;
    serverLinks[0]!.close();
    await until(() => failures.length > before);
    await until(() => linked.length === 2);
  });
});
