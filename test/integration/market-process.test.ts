// A `kalima node` process that sells over Lightning (its lightning and market sections pointing at
// an LND stand-in through files, as for a real LND), killed by KALIMA_FAILPOINTS right after its
// coordinator synced a commit decision, and again right after the initiation record: started
// again, the first purchase completes (the grant on the chain, the invoice settled, the buyer's
// payment succeeded) and the second is refunded (the HTLC back to the buyer, no grant).
import { writeFile } from 'node:fs/promises';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GRANTS_ADDRESS, decodeGrant, grantKey } from '../../src/access/market.ts';
import { initChain } from '../../src/cli/init.ts';
import { freePort } from '../../src/cli/free-port.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { generateKeyPair } from '../../src/ledger/signature.ts';
import { KalimaClient, type PurchaseView, saveDeviceKey } from '../../src/sdk/client.ts';
import { LndClient } from '../../chains/lightning/lnd.ts';
import { LndNetwork } from '../../regtest/lnd/network.ts';
import { LndStandIn } from '../../regtest/lnd/server.ts';
import { MasterProcess, killAll, sleep } from '../support/cluster-processes.ts';
import { tempDir } from '../support/chain.ts';
import { systemRng } from '../../src/ports.ts';
import { until } from '../support/wait.ts';

const standIns: LndStandIn[] = [];

afterAll(async () => {
  killAll();
  await Promise.all(standIns.map((standIn) => standIn.stop()));
});


describe('a selling node through crashes (real processes)', () => {
  it('killed after the commit decision, the purchase completes on restart; killed after the initiation, it is refunded', async () => {
    const network = new LndNetwork();
    const seller = await LndStandIn.start({ network, alias: 'seller' });
    const buyerLnd = await LndStandIn.start({ network, alias: 'buyer' });
    standIns.push(seller, buyerLnd);
    network.openChannel(buyerLnd, seller, { capacitySat: 1_000_000 });

    const directory = await tempDir('kalima-market-process-');
    const port = await freePort();
    const init = await initChain({ directory, chain: 'market', port });
    const sellerKey = generateKeyPair(systemRng);
    await saveDeviceKey(join(directory, 'keys', 'seller.json'), sellerKey);
    const { socket, cert, macaroon } = seller.credentials;
    await writeFile(join(directory, 'lnd-tls.cert'), Buffer.from(cert, 'base64'));
    await writeFile(join(directory, 'lnd-admin.macaroon'), Buffer.from(macaroon, 'hex'));
    const config = JSON.parse(await readFile(init.configFile, 'utf8')) as Record<string, unknown>;
    config.lightning = { socket, certFile: 'lnd-tls.cert', macaroonFile: 'lnd-admin.macaroon' };
    config.market = { sellerKey: 'keys/seller.json', sweepSeconds: 1 };
    await writeFile(init.configFile, JSON.stringify(config));

    const url = `http://127.0.0.1:${port}`;
    const node = new MasterProcess('seller-node', init.configFile, url, toHex(init.node.publicKey), join(directory, 'data'));
    await node.start(20_000, { KALIMA_FAILPOINTS: 'bridge.after-commit-decision' });
    const admin = new KalimaClient({ url, key: init.admin });
    await admin.createAddress('/sensors', '');
    await admin.createAddress('/sensors/plant1', '');
    await admin.registerDevice(toHex(sellerKey.publicKey), { pub: ['/sensors/plant1'], sub: [] });
    const buyerKey = generateKeyPair(systemRng);
    await admin.registerDevice(toHex(buyerKey.publicKey), { pub: [], sub: [] });
    await new KalimaClient({ url, key: sellerKey }).list('plant1', { title: 'Plant 1', prefix: '/sensors/plant1', priceSats: 500, periodSeconds: 3_600, sellerNode: seller.identityPubkey });
    const buyer = new KalimaClient({ url, key: buyerKey });
    const wallet = new LndClient(buyerLnd.credentials);
    try {
      // Killed once the commit decision is on disk: nothing settled, no grant yet.
      const first = await buyer.buy('plant1');
      const firstPaid = wallet.pay(first.invoice).then(() => 'paid', (error: { code?: string }) => error.code);
      await until('the node to end at its failpoint', async () => node.running, (running) => !running, 30_000, 100);
      expect(node.child!.signalCode).toBe('SIGKILL');
      expect(seller.node.invoices.find(Buffer.from(first.id, 'hex'))?.state).toBe('ACCEPTED');

      // Started again, recovery drives the decision: the grant, then the settlement.
      await node.start(20_000, { KALIMA_FAILPOINTS: 'bridge.after-initiation' });
      expect(await firstPaid).toBe('paid');
      const done = await until('the first purchase to complete', () => buyer.purchase(first.id).catch(() => undefined), (view: PurchaseView | undefined) => view?.state === 'completed', 30_000, 100);
      expect(done!.untilMs).toBeGreaterThan(Date.now());
      expect(await admin.get(GRANTS_ADDRESS, grantKey(toHex(buyerKey.publicKey), 'plant1'))).toBeDefined();
      expect(seller.node.invoices.find(Buffer.from(first.id, 'hex'))?.state).toBe('SETTLED');

      // Killed once the initiation record is on disk, before any vote: recovery aborts, the HTLC goes back.
      const second = await buyer.buy('plant1');
      const secondPaid = wallet.pay(second.invoice).then(() => 'paid', (error: { code?: string }) => error.code);
      await until('the node to end at its second failpoint', async () => node.running, (running) => !running, 30_000, 100);
      await node.start();
      expect(await secondPaid).toBe('KALIMA_ERR_LIGHTNING_PAYMENT_FAILED');
      const refunded = await until('the second purchase to be refunded', () => buyer.purchase(second.id).catch(() => undefined), (view: PurchaseView | undefined) => view?.state === 'refunded', 30_000, 100);
      expect(refunded!.reason).toMatch(/restarted before deci/);
      expect(seller.node.invoices.find(Buffer.from(second.id, 'hex'))?.state).toBe('CANCELED');
      // The grant is the first purchase's, not extended by the second.
      const grant = decodeGrant((await admin.get(GRANTS_ADDRESS, grantKey(toHex(buyerKey.publicKey), 'plant1')))!.body);
      expect(toHex(grant.purchase)).toBe(first.id);
      expect(grant.untilMs).toBe(done!.untilMs);
    } finally {
      wallet.close();
      await node.kill('SIGTERM');
    }
  }, 120_000);
});
