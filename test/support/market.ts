// A marketplace on one machine, in process: a chain node with its REST API, two LND stand-ins
// (seller and buyer) on one simulated network with a channel from buyer to seller, the seller's
// MarketService over the production adapter (gRPC with TLS), a listing, and a KLX treasury.
import type { FastifyInstance } from 'fastify';
import { LISTINGS_ADDRESS, encodeListing } from '../../src/access/market.ts';
import { buildApi } from '../../src/api/server.ts';
import type { MarketApi } from '../../src/api/market.ts';
import { toHex } from '../../src/ledger/hash.ts';
import type { KeyPair } from '../../src/ledger/signature.ts';
import type { KalimaNode } from '../../src/node/node.ts';
import { type Logger, type Scheduler, silentLogger, systemClock, systemScheduler } from '../../src/ports.ts';
import type { KvStore } from '../../src/store/kv.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { KLX_ACCOUNTS_ADDRESS, KLX_SUPPLY_ADDRESS, KLX_SUPPLY_KEY, accountOf, encodeIssue, issuedSupply } from '../../src/state/klx.ts';
import { NodeChainAccess } from '../../bridge/chain.ts';
import type { FailpointHook } from '../../bridge/failpoints.ts';
import { MarketService, type MarketSettings } from '../../bridge/market.ts';
import { LndClient } from '../../chains/lightning/lnd.ts';
import { LndSeller } from '../../chains/lightning/seller.ts';
import { LndNetwork } from '../../regtest/lnd/network.ts';
import { LndStandIn } from '../../regtest/lnd/server.ts';
import { join } from 'node:path';
import { LevelKvStore } from '../../src/store/level-kv.ts';
import { createAddress, makeChain, makeMessage, openLevelNode, openNode, registerDevice, type TestChain } from './chain.ts';

export const LISTING_ID = 'plant1';
export const PREFIX = '/sensors/plant1';
export const PRICE_SATS = 1_000;
export const KLX_SUPPLY = 1_000_000;
export const SATS_PER_KLX = 2;

export interface MarketFixture {
  chain: TestChain;
  node: KalimaNode;
  app: FastifyInstance;
  url: string;
  network: LndNetwork;
  sellerLnd: LndStandIn;
  buyerLnd: LndStandIn;
  /** The buyer's wallet: the production adapter on the buyer's stand-in. */
  wallet: LndClient;
  seller: KeyPair;
  treasury: KeyPair;
  kv: KvStore;
  market: MarketService;
  /** Opens the market service again on the same store (after a crash). */
  reopen(options?: { failpoint?: FailpointHook }): Promise<MarketService>;
  newBuyer(): Promise<KeyPair>;
  close(): Promise<void>;
}

export async function openMarket(seed: string, options: {
  settings?: Partial<MarketSettings>; failpoint?: FailpointHook; periodSeconds?: number; logger?: Logger; scheduler?: Scheduler;
  /** LevelDB under this directory for the chain and the market's store (synced writes), instead of memory. */
  levelDirectory?: string;
  coordinator?: { prepareTimeoutMs?: number; callTimeoutMs?: number; retryInitialMs?: number; retryMaxMs?: number };
} = {}): Promise<MarketFixture> {
  const chain = makeChain(seed);
  const node = options.levelDirectory === undefined ? await openNode(chain) : await openLevelNode(chain, join(options.levelDirectory, 'chain'));
  await createAddress(node, chain, '/sensors');
  await createAddress(node, chain, PREFIX);
  const seller = await registerDevice(node, chain, { pub: [PREFIX], sub: [PREFIX] });
  const treasury = await registerDevice(node, chain, { pub: [], sub: [] });
  await node.submit(makeMessage(chain, chain.admin, { address: KLX_SUPPLY_ADDRESS, key: KLX_SUPPLY_KEY, body: encodeIssue({ treasury: toHex(treasury.publicKey), amount: KLX_SUPPLY }) }));

  const network = new LndNetwork({ rng: chain.rng });
  const sellerLnd = await LndStandIn.start({ network, alias: 'seller' });
  const buyerLnd = await LndStandIn.start({ network, alias: 'buyer' });
  network.openChannel(buyerLnd, sellerLnd, { capacitySat: 10_000_000 });
  await node.submit(makeMessage(chain, seller, {
    address: LISTINGS_ADDRESS, key: LISTING_ID,
    body: encodeListing({ title: 'Plant 1 readings', prefix: PREFIX, priceSats: PRICE_SATS, periodSeconds: options.periodSeconds ?? 3_600, sellerNode: Buffer.from(sellerLnd.identityPubkey, 'hex') }),
  }));

  // The API asks whichever market service is open now (tests reopen it after a crash).
  let current: MarketService | undefined;
  const delegate: MarketApi = {
    buy: (request) => current!.buy(request),
    buyKlx: (request) => current!.buyKlx(request),
    purchase: (id) => current!.purchase(id),
    listings: () => current!.listings(),
  };
  const { app } = await buildApi({ node, logger: false, version: 'test', market: delegate });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const kv: KvStore = options.levelDirectory === undefined ? new MemoryKvStore() : await LevelKvStore.open(join(options.levelDirectory, 'market'));
  const lnd = new LndSeller(sellerLnd.credentials, { deadlineMs: 5_000, resubscribeInitialMs: 50, resubscribeMaxMs: 500 });
  const scheduler = options.scheduler ?? systemScheduler;
  const open = (failpoint?: FailpointHook): Promise<MarketService> => MarketService.open({
    kv, chain: new NodeChainAccess(node, systemClock, chain.rng, scheduler), lnd, seller, treasury, clock: systemClock, rng: chain.rng, scheduler,
    logger: options.logger ?? silentLogger, failpoint,
    settings: { satsPerKlx: SATS_PER_KLX, sweepIntervalMs: 200, ...options.settings },
    coordinator: { prepareTimeoutMs: 3_000, callTimeoutMs: 3_000, retryInitialMs: 20, retryMaxMs: 500, ...options.coordinator },
  });
  const fixture: MarketFixture = {
    chain, node, app, url, network, sellerLnd, buyerLnd, seller, treasury, kv,
    wallet: new LndClient(buyerLnd.credentials, { deadlineMs: 10_000 }),
    market: undefined as unknown as MarketService,
    async reopen(reopenOptions = {}) {
      // One coordinator on the log at a time: the one before is closed (or crashed already).
      await fixture.market.close();
      fixture.market = await open(reopenOptions.failpoint);
      current = fixture.market;
      return fixture.market;
    },
    newBuyer: () => registerDevice(node, chain, { pub: [], sub: [] }),
    async close() {
      fixture.market.crash();
      fixture.wallet.close();
      lnd.close();
      await app.close();
      await sellerLnd.stop();
      await buyerLnd.stop();
      await node.close();
      await kv.close();
    },
  };
  fixture.market = await open(options.failpoint);
  current = fixture.market;
  return fixture;
}

/** Every KLX unit on the chain, summed over the accounts. */
export function klxTotal(node: KalimaNode): number {
  return node.cache.entriesAt(KLX_ACCOUNTS_ADDRESS).reduce((sum, entry) => sum + (accountOf(node.cache, entry.key)?.balance ?? 0), 0);
}

export function klxIssued(node: KalimaNode): number {
  return issuedSupply(node.cache);
}
