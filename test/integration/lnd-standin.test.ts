// The Lightning adapter (chains/lightning) against the LND stand-in (regtest/lnd), over real gRPC
// with TLS and a macaroon, built from the protos the `lightning` package ships: the wallet's info,
// and coded errors for a wrong macaroon and a node that is gone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LndClient } from '../../chains/lightning/lnd.ts';
import { LndStandIn } from '../../regtest/lnd/server.ts';

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
    const info = await new LndClient(lnd.credentials).walletInfo();
    expect(info).toMatchObject({ alias: 'seller', publicKey: lnd.identityPubkey, blockHeight: height, syncedToChain: true });
    expect(info.publicKey).toMatch(/^0[23][0-9a-f]{64}$/);
  });

  it('a wrong macaroon is KALIMA_ERR_LIGHTNING_UNAUTHORIZED', async () => {
    const client = new LndClient({ ...lnd.credentials, macaroon: '00'.repeat(32) });
    await expect(client.walletInfo()).rejects.toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_UNAUTHORIZED' });
  });

  it('a node that is gone is KALIMA_ERR_LIGHTNING_UNREACHABLE', async () => {
    const other = await LndStandIn.start();
    const client = new LndClient(other.credentials);
    await client.walletInfo();
    other.kill();
    await expect(client.walletInfo()).rejects.toMatchObject({ code: 'KALIMA_ERR_LIGHTNING_UNREACHABLE' });
  });
});
