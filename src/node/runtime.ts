// Runs a node for real: LevelDB, worker-thread signature verification, pino, fastify on a port.
import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger as PinoLogger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../api/server.ts';
import type { EventHub } from '../api/events.ts';
import { loadDeviceKey } from '../sdk/client.ts';
import { systemClock, systemRng, systemScheduler } from '../ports.ts';
import { ChainStore } from '../store/chain-store.ts';
import { LevelKvStore } from '../store/level-kv.ts';
import { NEW_MEMBER_MARKER, type NodeConfig, fileExists, loadGenesis } from './config.ts';
import { KalimaNode } from './node.ts';
import { ClusterMaster, type ClusterTransport, linkTransport } from './cluster.ts';
import { WorkerPoolVerifier } from './verifier.ts';
import { InlineBlockSigner, WorkerBlockSigner } from './block-signer.ts';
import type { VerifyProgress } from '../store/verify.ts';
import { SyncServer } from '../api/sync-server.ts';
import { AnchorService } from '../../anchors/service.ts';
import { MarketService } from '../../bridge/market.ts';
import { NodeChainAccess } from '../../bridge/chain.ts';
import { lndConnection } from '../../bridge/config.ts';
import { processFailpoints } from '../../bridge/failpoints.ts';
import { failpointsFromEnv } from '../../bridge/service.ts';
import { LndSeller } from '../../chains/lightning/seller.ts';

export const VERSION = '0.1.0';

export interface RunningNode {
  node: KalimaNode;
  app: FastifyInstance;
  events: EventHub;
  url: string;
  /** The client listener (client nodes, sdk/sync.ts), if the config has a clientPort. */
  sync: SyncServer | undefined;
  logger: PinoLogger;
  close(): Promise<void>;
}

/**
 * A new chain's member drops its mark once its store holds state: a term of its own is persisted
 * (Raft writes the hard state before it sends anything). Checked every half second, off the loop.
 */
function removeMarkOnceStored(master: ClusterMaster, marker: string): void {
  const timer = setInterval(() => {
    if (master.runtime.raft.term === 0) return;
    clearInterval(timer);
    void master.runtime.idle().then(() => rm(marker, { force: true })).catch(() => undefined);
  }, 500);
  timer.unref();
}

/** How long a stopping node lets requests in progress finish before it ends their connections. */
const CLOSE_GRACE_MS = 5_000;

export function createLogger(level: NodeConfig['logLevel'], destination?: number | string): PinoLogger {
  return pino({ level, base: { service: 'kalima' } }, pino.destination(destination ?? 1));
}

export async function startNode(config: NodeConfig, options: { logger?: PinoLogger; onVerifyProgress?: (progress: VerifyProgress) => void } = {}): Promise<RunningNode> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const genesis = await loadGenesis(config.genesisFile);
  const nodeKey = await loadDeviceKey(config.nodeKeyFile);
  const kv = await LevelKvStore.open(config.dataDir);
  const store = new ChainStore(kv);
  const verifier = new WorkerPoolVerifier(config.verifierThreads > 0 ? config.verifierThreads : availableParallelism());
  const signer = config.signerThread ? new WorkerBlockSigner(nodeKey, systemRng) : new InlineBlockSigner(nodeKey, systemRng);
  let node: KalimaNode;
  let master: ClusterMaster | undefined;
  let transport: ClusterTransport | undefined;
  try {
    const base = { genesis, nodeKey, clock: systemClock, rng: systemRng, scheduler: systemScheduler, verifier, signer, logger, onVerifyProgress: options.onVerifyProgress };
    if (config.cluster === undefined) {
      node = await KalimaNode.open({ ...base, store });
    } else {
      // A master (or validation node) of a cluster: Raft over encrypted links to the other members.
      const { cluster } = config;
      transport = await linkTransport({
        secretKey: nodeKey.secretKey, masters: [...cluster.masters, ...cluster.validators].map((entry) => ({ key: Uint8Array.from(Buffer.from(entry.key, 'hex')), host: entry.host, port: entry.port })),
        clock: systemClock, rng: systemRng, scheduler: systemScheduler, logger,
      }, cluster.linkPort, cluster.linkHost);
      const masterApis = new Map([...cluster.masters, ...cluster.validators].filter((entry) => entry.api !== undefined).map((entry) => [entry.key, entry.api!] as [string, string]));
      // `kalima init` marks a new chain's data directories; the mark goes once the store holds anything.
      const marker = join(config.dataDir, NEW_MEMBER_MARKER);
      const newMember = await fileExists(marker);
      master = await ClusterMaster.open({ ...base, kv, transport, tickMs: cluster.tickMs, logRetention: cluster.logRetention, masterApis, newMember });
      if (newMember && !master.startedEmpty) await rm(marker, { force: true });
      else if (newMember) removeMarkOnceStored(master, marker);
      if (!newMember && master.runtime.raft.rejoining) logger.warn({ dataDir: config.dataDir }, 'this master starts with an empty store and no mark of a new chain: taken as one that lost its disk, it neither votes nor stands until it has caught up with a leader');
      node = master.node;
    }
  } catch (error) {
    await transport?.close();
    await verifier.close();
    await signer.close();
    await store.close();
    throw error;
  }
  // Crash tests name the failpoints where the process ends (anchors and the bridge).
  const failpoints = failpointsFromEnv();
  // Anchoring into Bitcoin, for a node with a bitcoin section: its own store beside the chain's.
  let anchors: AnchorService | undefined;
  let anchorKv: LevelKvStore | undefined;
  if (config.anchoring !== undefined) {
    try {
      anchorKv = await LevelKvStore.open(config.anchoring.bitcoin.stateDir);
      anchors = await AnchorService.open({
        config: config.anchoring, stateKv: anchorKv, nodeKv: kv, node, nodeKey, clock: systemClock, rng: systemRng, scheduler: systemScheduler, logger, failpoints,
      });
    } catch (error) {
      await anchorKv?.close();
      if (master !== undefined) await master.close();
      else await node.close();
      throw error;
    }
  }
  // Selling over Lightning, for a node with lightning and market sections: its own store too.
  let market: MarketService | undefined;
  let marketKv: LevelKvStore | undefined;
  let seller: LndSeller | undefined;
  /** What the node's close, or a start that fails after the node opened, closes, in order (the master closes its links too). */
  const closeServices = async (): Promise<void> => {
    await market?.close();
    seller?.close();
    await marketKv?.close();
    await anchors?.close();
    if (master !== undefined) await master.close();
    else await node.close();
  };
  if (config.market !== undefined) {
    try {
      const marketConfig = config.market;
      marketKv = await LevelKvStore.open(marketConfig.stateDir);
      // LND calls end before the coordinator's 10 s participant timeout, so a retry never overlaps them.
      seller = new LndSeller(await lndConnection(marketConfig.lightning), { deadlineMs: 8_000 });
      market = await MarketService.open({
        kv: marketKv, chain: new NodeChainAccess(node, systemClock, systemRng, systemScheduler), lnd: seller,
        seller: await loadDeviceKey(marketConfig.sellerKeyFile),
        treasury: marketConfig.treasuryKeyFile === undefined ? undefined : await loadDeviceKey(marketConfig.treasuryKeyFile),
        clock: systemClock, rng: systemRng, scheduler: systemScheduler, logger, settings: marketConfig.settings, failpoint: processFailpoints(failpoints, logger),
      });
      logger.info({ lnd: marketConfig.lightning.socket, listings: market.listings().filter((listing) => listing.ours).length }, 'market: selling over Lightning');
    } catch (error) {
      await closeServices();
      throw error;
    }
  }
  const { app, events } = await buildApi({ node, logger, version: VERSION, consensus: master === undefined ? undefined : () => master!.status(), anchors, market });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await closeServices();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  logger.info({ url, chain: node.chain, height: node.height }, 'api listening');
  let sync: SyncServer | undefined;
  if (config.clientPort !== undefined) {
    try {
      sync = await SyncServer.start({ node, nodeKey, clock: systemClock, rng: systemRng, scheduler: systemScheduler, logger }, config.clientPort, config.clientHost);
    } catch (error) {
      await app.close();
      await closeServices();
      throw error;
    }
    logger.info({ host: sync.host, port: sync.port }, 'client listener (BOLT 8) listening');
  }
  master?.start();
  let closed = false;
  return {
    node, app, events, url, logger, sync,
    async close() {
      if (closed) return;
      closed = true;
      await sync?.close();
      // Forwards in progress answer at once, so the API's close does not wait for them.
      master?.beginClose();
      // The server's close waits for every connection to end, and a keep-alive connection that was
      // busy when it began stays open until its idle timeout: close those as they go idle, and
      // after a grace period end what is left (a client retries a write with the same nonce).
      const idle = setInterval(() => app.server.closeIdleConnections(), 100);
      const grace = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS);
      try {
        await app.close();
      } finally {
        clearInterval(idle);
        clearTimeout(grace);
      }
      await closeServices();
    },
  };
}
