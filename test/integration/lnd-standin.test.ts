// The Lightning adapter (chains/lightning) against the LND stand-in (regtest/lnd), over real gRPC
// with TLS and a macaroon, built from the protos the `lightning` package ships: the wallet's info,
// and coded errors for a wrong macaroon, a node that is gone and one that never answers.
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHodlInvoice, createInvoice, payViaPaymentRequest, settleHodlInvoice, subscribeToInvoices } from 'lightning';
import { LndClient } from '../../chains/lightning/lnd.ts';
import { LndStandIn } from '../../regtest/lnd/server.ts';
import { seededRng } from '../unit/support/seeded-rng.ts';
import { FAST, preimageAndHash, startNodes, waitFor } from './support/lnd.ts';

let lnd: LndStandIn;

beforeAll(async () => {
  lnd = await LndStandIn.start({ alias: 'seller' });
});

afterAll(async () => {
  await lnd?.stop();
});

describe('the Lightning adapter against the LND stand-in', () => {
  it('reads the wallet info over TLS with the macaroon', async () => {
    const height = lnd.network.mine(7);
    const client = new LndClient(lnd.credentials);
    const info = await client.walletInfo();
    client.close();
    expect(info).toMatchObject({ alias: 'seller', publicKey: lnd.identityPubkey, blockHeight: height, syncedToChain: true });
    expect(info.publicKey).toMatch(/^0[23][0-9a-f]{64}$/);
  });

  it('a wrong macaroon is KALIMA_ERR_LIGHTNING_UNAUTHORIZED, on unary calls and on streams', async () => {
    const client = new LndClient({ ...lnd.credentials, macaroon: '00'.repeat(32) }, FAST);
    await expect(client.walletInfo()).rejects.toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_UNAUTHORIZED', details: { details: 'verification failed: signature mismatch after caveat verification' } });
    await expect(client.trackPayment('11'.repeat(32))).rejects.toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_UNAUTHORIZED' });
    client.close();
  });

  it('a node that is gone is KALIMA_ERR_LIGHTNING_UNREACHABLE, at once', async () => {
    const other = await LndStandIn.start();
    const client = new LndClient(other.credentials, FAST);
    await client.walletInfo();
    other.kill();
    const start = Date.now();
    await expect(client.walletInfo()).rejects.toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_UNREACHABLE' });
    await expect(client.getInvoice('22'.repeat(32))).rejects.toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_UNREACHABLE' });
    expect(Date.now() - start).toBeLessThan(1_000);
    client.close();
  });

  it('a node that takes the connection but never answers is UNREACHABLE after the deadline, not a hang', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((socket) => sockets.push(socket));
    const port = await new Promise<number>((resolve) => silent.listen(0, '127.0.0.1', () => resolve((silent.address() as { port: number }).port)));
    const client = new LndClient({ ...lnd.credentials, socket: `localhost:${port}` }, { ...FAST, deadlineMs: 300 });
    const start = Date.now();
    await expect(client.walletInfo()).rejects.toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_UNREACHABLE', details: { grpcCode: 4 } });
    const elapsed = Date.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1_500);
    expect(sockets.length).toBeGreaterThan(0);
    client.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });
});

describe('the stand-in as ln-service sees it', () => {
  it('SubscribeInvoices reports added and settled invoices, never a held one (as LND); a shutdown is an error the package then re-subscribes after', async () => {
    const nodes = await startNodes(['alice', 'bob'], [['alice', 'bob', 100_000]], { rng: seededRng('subscribe-invoices') });
    const [alice, bob] = [nodes.standIns.alice!, nodes.standIns.bob!];
    const { lnd: payer } = (await import('lightning')).authenticatedLndGrpc(alice.credentials);
    const { lnd } = (await import('lightning')).authenticatedLndGrpc(bob.credentials);
    const seen: string[] = [];
    const errors: unknown[] = [];
    const events = subscribeToInvoices({ lnd });
    events.on('invoice_updated', (invoice: { description: string; is_confirmed: boolean; is_held?: boolean }) => {
      seen.push(`${invoice.description}:${invoice.is_confirmed ? 'settled' : invoice.is_held ? 'held' : 'open'}`);
    });
    events.on('error', (error: unknown) => errors.push(error));
    await new Promise((resolve) => setTimeout(resolve, 100));

    const { preimage, id } = preimageAndHash(seededRng('subscribe-invoices-hold'));
    const hold = await createHodlInvoice({ lnd, id, tokens: 100, description: 'hold', cltv_delta: 40 });
    const paying = payViaPaymentRequest({ lnd: payer, request: hold.request });
    await waitFor(() => bob.node.invoices.find(Buffer.from(id, 'hex'))?.state === 'ACCEPTED', 'held');
    await createInvoice({ lnd, tokens: 10, description: 'plain' });
    await settleHodlInvoice({ lnd, secret: preimage });
    await paying;
    await waitFor(() => seen.length === 3, 'three events');
    expect(seen).toEqual(['hold:open', 'plain:open', 'hold:settled']);
    const info = await (await import('lightning')).getWalletInfo({ lnd: payer });
    expect(info).toMatchObject({ active_channels_count: 1, peers_count: 1, current_block_height: nodes.network.height });

    await bob.stop();
    await waitFor(() => errors.length > 0, 'the stream to end');
    expect(errors[0]).toMatchObject([503, 'UnexpectedInvoiceSubscriptionError', { err: { code: 14, details: 'server shutting down' } }]);
    events.removeAllListeners();
    await nodes.close();
  });
});
