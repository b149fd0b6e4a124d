// The devnet's Lightning (what `npm start` runs): two LND stand-ins, a seller (m1's LND, to which
// the listings are paid) and a buyer (a data buyer's wallet), on one simulated network with a
// channel from the buyer to the seller. Their identity keys and macaroons come from a seed kept
// under the devnet's directory, so the listings' seller node stays the same across restarts; their
// TLS certificates and macaroons are written there for m1's config and for `kalima lightning pay`.
// The core never imports this file: bin/kalima.mjs composes it with src/cli/devnet.ts.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { DevnetLightning, DevnetLnd } from '../src/cli/devnet-market.ts';
import type { Rng } from '../src/ports.ts';
import { LndNetwork } from './lnd/network.ts';
import { LndStandIn } from './lnd/server.ts';

/** The buyer's channel to the seller, sats. */
const CHANNEL_SATS = 5_000_000;

function seededRng(seed: Buffer): Rng {
  let counter = 0;
  return {
    bytes(length) {
      const out = Buffer.alloc(length);
      for (let offset = 0; offset < length; offset += 32) {
        createHash('sha256').update(seed).update(String(counter++)).digest().copy(out, offset);
      }
      return new Uint8Array(out);
    },
  };
}

async function writeCredentials(directory: string, standIn: LndStandIn): Promise<DevnetLnd> {
  await mkdir(directory, { recursive: true });
  const certFile = join(directory, 'tls.cert');
  const macaroonFile = join(directory, 'admin.macaroon');
  const { socket, cert, macaroon } = standIn.credentials;
  await writeFile(certFile, Buffer.from(cert, 'base64'));
  await writeFile(macaroonFile, Buffer.from(macaroon, 'hex'), { mode: 0o600 });
  return { alias: standIn.alias, socket, certFile, macaroonFile, publicKey: standIn.identityPubkey };
}

export async function startDevnetLightning(directory: string, out: NodeJS.WriteStream): Promise<DevnetLightning> {
  const home = join(resolve(directory), 'lnd');
  await mkdir(home, { recursive: true });
  const seedFile = join(home, 'seed');
  let seed: Buffer;
  try {
    seed = Buffer.from((await readFile(seedFile, 'utf8')).trim(), 'hex');
  } catch {
    seed = randomBytes(32);
    await writeFile(seedFile, `${seed.toString('hex')}\n`, { mode: 0o600 });
  }
  const network = new LndNetwork({ rng: seededRng(seed) });
  const seller = await LndStandIn.start({ network, alias: 'devnet-seller' });
  const buyer = await LndStandIn.start({ network, alias: 'devnet-buyer' });
  network.openChannel(buyer, seller, { capacitySat: CHANNEL_SATS });
  out.write(`kalima devnet: two LND stand-ins (gRPC over TLS): seller ${seller.credentials.socket}, buyer ${buyer.credentials.socket}, a ${CHANNEL_SATS.toLocaleString('en')}-sat channel between them\n`);
  return {
    seller: await writeCredentials(join(home, 'seller'), seller),
    buyer: await writeCredentials(join(home, 'buyer'), buyer),
    balances: () => ({ seller: Number(network.balances(seller).localMsat / 1000n), buyer: Number(network.balances(buyer).localMsat / 1000n) }),
    async stop() {
      await seller.stop();
      await buyer.stop();
    },
  };
}
