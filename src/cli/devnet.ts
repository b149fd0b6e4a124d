// `kalima devnet` (what `npm start` runs): a PrivaChain of five masters and one validation node under
// ./.kalima/devnet, each a `kalima node` process of its own on loopback, with a demo device writing
// sensor readings through the masters and a demo subscriber, and a status line: the leader, the
// term, each node's height, what the validation node validated, and the commit rate.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isKalimaError } from '../errors.ts';
import { KalimaClient, generateDeviceKey, loadDeviceKey, saveDeviceKey } from '../sdk/client.ts';
import { fileExists, loadGenesis, type NodeConfigJson } from '../node/config.ts';
import { toHex } from '../ledger/hash.ts';
import { initCluster } from './init.ts';
import { RETRYABLE_CODES, retrying } from '../sdk/retry.ts';
import { readCluster } from './cluster-status.ts';
import { freePort, portIsFree } from './free-port.ts';
import { SyncClient } from '../sdk/sync.ts';
import { DEVNET_LISTING, type DevnetLightning, devnetMarketConfig, devnetMarketKeys, runDevnetMarket } from './devnet-market.ts';

const DEMO_ADDRESS = '/sensors/plant1';
const DEMO_PERIOD_MS = 500;
const DEMO_TTL_SECONDS = 60;
const MASTERS = 5;
const VALIDATORS = 1;
/** The devnet's nodes, in port order: m1 … m5, then v1. */
const NODE_NAMES = [...Array.from({ length: MASTERS }, (_, index) => `m${index + 1}`), ...Array.from({ length: VALIDATORS }, (_, index) => `v${index + 1}`)];
const BIN = fileURLToPath(new URL('../../bin/kalima.mjs', import.meta.url));
/** What the devnet's setup waits out while the masters elect (an overload is not expected there). */
const SETUP_RETRY = { deadlineMs: 30_000, pauseMs: 200, codes: RETRYABLE_CODES.filter((code) => code !== 'KALIMA_ERR_API_OVERLOADED') };

export interface DevnetOptions {
  directory: string;
  /** Delete the devnet's directory first and start a new chain. */
  fresh?: boolean;
  /** The first master's API port (the others follow); 0 for free ports. Default 9118, or free ports if those are taken. */
  port?: number;
  /** Print the status line this often. */
  statusIntervalMs?: number;
  out?: NodeJS.WriteStream;
  /**
   * Starts a regtest Bitcoin node to anchor into (regtest/devnet-bitcoin.ts starts bcoin for `npm
   * start`), once the devnet's directory is ready: m1 anchors the chain, and the devnet mines a block
   * every few seconds. Left out, or if it fails: no anchoring.
   */
  bitcoin?: (directory: string) => Promise<DevnetBitcoin>;
  /**
   * Starts two LND stand-ins, a seller and a buyer (regtest/devnet-lightning.ts for `npm start`):
   * m1 sells through the seller's, and a demo buyer buys a listing and KLX with the buyer's. Left
   * out, or if it fails: no marketplace.
   */
  lightning?: (directory: string) => Promise<DevnetLightning>;
}

export interface DevnetBitcoin {
  network: string;
  rpcUrl: string;
  rpcUser: string;
  rpcPassword: string;
  mine(blocks: number, address: string): Promise<unknown>;
  stop(): Promise<void>;
}

/** The devnet's anchoring: every few seconds a Bitcoin block, an anchor at most every ten seconds, recorded at depth 2. */
const DEVNET_MINE_MS = 4_000;
const DEVNET_ANCHOR = { intervalSeconds: 10, minBlocks: 1, confirmations: 2, feeTargetBlocks: 2, pollSeconds: 1 };
/**
 * bcoin's regtest activates segwit (BIP 9, 144-block windows) at height 432, and the anchor wallet
 * spends P2WPKH outputs: the devnet mines that many blocks to the wallet first, whose coinbases
 * (mature after 100 blocks) then pay for the anchors.
 */
const DEVNET_FUNDING_BLOCKS = 432;

export interface Devnet {
  /** Each master's API URL, m1 first. */
  urls: string[];
  children: ChildProcess[];
  stop: () => Promise<void>;
}

export async function runDevnet(options: DevnetOptions): Promise<Devnet> {
  const out = options.out ?? process.stdout;
  const directory = resolve(options.directory);
  if (options.fresh === true) {
    out.write(`kalima devnet: deleting ${directory} (--fresh)\n`);
    await rm(directory, { recursive: true, force: true });
  }
  // A devnet of an earlier version ran one master from <dir>/config.json: keep it aside.
  if (await fileExists(join(directory, 'config.json'))) {
    const aside = `${directory}.single-${Date.now()}`;
    out.write(`kalima devnet: ${directory} holds a single-master devnet of an earlier version; moved to ${aside}\n`);
    await rename(directory, aside);
  }
  // A devnet of an earlier version has no validation node, and one cannot join a chain later (the genesis file lists them): keep it aside.
  if ((await fileExists(join(directory, 'genesis.json'))) && !(await fileExists(join(directory, 'v1', 'config.json')))) {
    const aside = `${directory}.no-validator-${Date.now()}`;
    out.write(`kalima devnet: ${directory} holds a devnet of an earlier version without a validation node; moved to ${aside}\n`);
    await rename(directory, aside);
  }
  if (!(await fileExists(join(directory, 'genesis.json')))) {
    out.write(`kalima devnet: creating a new chain of ${MASTERS} masters and ${VALIDATORS} validation node in ${directory}\n`);
    await initCluster({ directory, chain: 'devnet', masters: MASTERS, validators: VALIDATORS });
    await saveDeviceKey(join(directory, 'keys', 'demo-device.json'), generateDeviceKey());
  }
  let bitcoin: DevnetBitcoin | undefined;
  if (options.bitcoin !== undefined) {
    try {
      bitcoin = await options.bitcoin(directory);
    } catch (error) {
      out.write(`kalima devnet: the regtest Bitcoin node did not start, so the devnet runs without anchoring: ${String((error as { message?: string }).message ?? error).split('\n')[0]}\n`);
    }
  }
  let lightning: DevnetLightning | undefined;
  if (options.lightning !== undefined) {
    try {
      await devnetMarketKeys(directory);
      lightning = await options.lightning(directory);
    } catch (error) {
      out.write(`kalima devnet: the LND stand-ins did not start, so the devnet runs without its marketplace: ${String((error as { message?: string }).message ?? error).split('\n')[0]}\n`);
    }
  }
  const configFiles = NODE_NAMES.map((name) => join(directory, name, 'config.json'));
  const configs = await Promise.all(configFiles.map(async (file) => JSON.parse(await readFile(file, 'utf8')) as NodeConfigJson));

  // Ports: m1's API on the base port and the others after it, node links 100 above, client nodes
  // 200 above; free ports if any of those is taken (or with --port 0).
  const base = options.port ?? 9118;
  const preferred = configs.map((_, index) => ({ api: base + index, link: base + 100 + index, client: base + 200 + index }));
  let ports = preferred;
  const available = base !== 0 && (await Promise.all(preferred.flatMap((ports) => [portIsFree(ports.api), portIsFree(ports.link), portIsFree(ports.client)]))).every(Boolean);
  if (!available) {
    if (base !== 0) out.write(`kalima devnet: some of ports ${base}–${base + NODE_NAMES.length - 1}, ${base + 100}–${base + 100 + NODE_NAMES.length - 1} or ${base + 200}–${base + 200 + NODE_NAMES.length - 1} are in use; using free ports instead\n`);
    ports = [];
    for (let index = 0; index < NODE_NAMES.length; index++) ports.push({ api: await freePort(), link: await freePort(), client: await freePort() });
  }
  const urls = ports.map((pair) => `http://127.0.0.1:${pair.api}`);
  const keyOf = (index: number): string => (index < MASTERS ? configs[0]!.cluster!.masters![index]!.key! : configs[0]!.cluster!.validators![index - MASTERS]!.key!);
  // Client nodes follow the masters: only they get a client listener.
  const members = NODE_NAMES.map((_, index) => ({ key: keyOf(index), host: '127.0.0.1', port: ports[index]!.link, api: urls[index]!, ...(index < MASTERS ? { clientPort: ports[index]!.client } : {}) }));
  const masters = members.slice(0, MASTERS);
  const validators = members.slice(MASTERS);
  for (const [index, config] of configs.entries()) {
    const next: NodeConfigJson = {
      ...config, port: ports[index]!.api, ...(index < MASTERS ? { clientPort: ports[index]!.client } : {}), verifierThreads: 1,
      cluster: { ...config.cluster, linkHost: '127.0.0.1', linkPort: ports[index]!.link, masters, validators },
    };
    // m1 anchors the chain; the others do not (one anchor wallet per chain).
    delete next.bitcoin;
    delete next.anchor;
    delete next.lightning;
    delete next.market;
    // m1 sells the listings over Lightning, through the seller's LND stand-in.
    if (index === 0 && lightning !== undefined) Object.assign(next, devnetMarketConfig(lightning));
    if (index === 0 && bitcoin !== undefined) {
      const { network, rpcUrl, rpcUser, rpcPassword } = bitcoin;
      next.bitcoin = { network, rpcUrl, rpcUser, rpcPassword, walletFile: 'keys/anchor-wallet.json', addressKind: 'p2wpkh', birthHeight: 0 };
      next.anchor = DEVNET_ANCHOR;
    }
    await writeFile(configFiles[index]!, `${JSON.stringify(next, null, 2)}\n`);
  }

  // Six processes; each logs to its own file.
  let stopping = false;
  const children = configFiles.map((file, index) => {
    const name = NODE_NAMES[index]!;
    const log = createWriteStream(join(directory, name, 'node.log'), { flags: 'a' });
    const child = spawn(process.execPath, [BIN, 'node', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    child.on('exit', (code, signal) => {
      if (!stopping) out.write(`\nkalima devnet: ${index < MASTERS ? 'master' : 'validation node'} ${name} exited (${signal ?? code}); see ${join(directory, name, 'node.log')}\n`);
    });
    return child;
  });
  const stopChildren = async (): Promise<void> => {
    stopping = true;
    await Promise.all(children.map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }));
    await bitcoin?.stop();
    await lightning?.stop();
  };
  try {
    out.write(`kalima devnet: starting ${MASTERS} masters and ${VALIDATORS} validation node\n`);
    const deadline = Date.now() + 60_000;
    for (const [index, url] of urls.entries()) {
      const name = NODE_NAMES[index]!;
      for (;;) {
        if (children[index]!.exitCode !== null) throw new Error(`${name} exited while starting; see ${join(directory, name, 'node.log')}`);
        if (Date.now() > deadline) throw new Error(`${name} did not answer within 60 s; see ${join(directory, name, 'node.log')}`);
        try {
          if ((await fetch(`${url}/status`)).ok) break;
        } catch {
          // not listening yet
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } catch (error) {
    await stopChildren();
    throw error;
  }

  const adminKey = await loadDeviceKey(join(directory, 'keys', 'admin.json'));
  const deviceKey = await loadDeviceKey(join(directory, 'keys', 'demo-device.json'));
  // The admin writes through m1 and the device through every master in turn: followers forward.
  const admin = new KalimaClient({ url: urls[0]!, key: adminKey });
  const devices = urls.slice(0, MASTERS).map((url) => new KalimaClient({ url, key: deviceKey }));
  try {
    const entry = async (address: string, key: string): Promise<boolean> => (await retrying(() => admin.get(address, key), SETUP_RETRY)) !== undefined;
    if (!(await entry('/kalima/addresses', DEMO_ADDRESS))) await retrying(() => admin.createAddress(DEMO_ADDRESS, 'demo temperature sensor'), SETUP_RETRY);
    if (!(await entry('/kalima/devices', toHex(deviceKey.publicKey)))) {
      await retrying(() => admin.registerDevice(toHex(deviceKey.publicKey), { name: 'demo sensor', pub: ['/sensors'], sub: ['/sensors', '/alarms'] }), SETUP_RETRY);
    }
  } catch (error) {
    await stopChildren();
    throw error;
  }

  let miner: NodeJS.Timeout | undefined;
  if (bitcoin !== undefined) {
    try {
      miner = await startAnchoring(urls[0]!, bitcoin, out, () => stopping);
    } catch (error) {
      await stopChildren();
      throw error;
    }
  }

  const demoKey = join(directory, 'keys', 'demo-device.json');
  out.write([
    '',
    `Kalima devnet "devnet" is running: ${MASTERS} masters and ${VALIDATORS} validation node, each its own process.`,
    ...urls.map((url, index) => `  ${NODE_NAMES[index]} API  ${url}   ${index < MASTERS ? `client nodes 127.0.0.1:${ports[index]!.client}   ` : ''}log ${join(directory, NODE_NAMES[index]!, 'node.log')}`),
    `  OpenAPI  ${urls[0]}/docs`,
    `  admin key ${join(directory, 'keys', 'admin.json')}`,
    `  try      npx kalima status --url ${urls[0]}`,
    `           npx kalima get --url ${urls[1]} --key ${demoKey} ${DEMO_ADDRESS} temp-1`,
    `           npx kalima watch --url ${urls[2]} --key ${demoKey} /sensors`,
    `           curl ${urls[0]}/rewards`,
    ...(bitcoin === undefined ? [] : [
      `  bitcoin  bcoin (regtest) at ${bitcoin.rpcUrl}, a block every ${DEVNET_MINE_MS / 1000} s; m1 anchors the chain: curl ${urls[0]}/anchors`,
      `           npx kalima proof 1 --url ${urls[0]} --ots   then   npx kalima verify-proof 1.json --rpc ${bitcoin.rpcUrl} --rpc-user ${bitcoin.rpcUser} --rpc-password ${bitcoin.rpcPassword}`,
    ]),
    ...(lightning === undefined ? [] : [
      `  market   m1 sells ${DEVNET_LISTING} through the seller's LND stand-in (${lightning.seller.socket}); the buyer's wallet is ${lightning.buyer.socket}`,
      `           npx kalima market list --url ${urls[0]} --key ${join(directory, 'keys', 'buyer.json')}`,
      `           npx kalima market buy ${DEVNET_LISTING} --url ${urls[0]} --key ${join(directory, 'keys', 'buyer.json')}   then`,
      `           npx kalima lightning pay INVOICE --lnd-socket ${lightning.buyer.socket} --lnd-cert ${lightning.buyer.certFile} --lnd-macaroon ${lightning.buyer.macaroonFile}`,
    ]),
    '  client   a client node (the SDK\'s sync mode) keeps a verified copy of /sensors from all five masters',
    'Ctrl-C stops it; the chain stays in the data directories.',
    '',
  ].join('\n') + '\n');

  let reading = 0;
  const writer = setInterval(() => {
    reading++;
    const celsius = (20 + 5 * Math.sin(reading / 20)).toFixed(2);
    const humidity = (45 + 10 * Math.cos(reading / 30)).toFixed(1);
    const device = devices[reading % devices.length]!;
    Promise.all([
      device.put(DEMO_ADDRESS, 'temp-1', JSON.stringify({ celsius: Number(celsius), reading }), { ttl: DEMO_TTL_SECONDS }),
      device.put(DEMO_ADDRESS, 'humidity-1', JSON.stringify({ percent: Number(humidity), reading }), { ttl: DEMO_TTL_SECONDS }),
    ]).catch((error: unknown) => {
      if (!stopping) out.write(`\ndemo device: ${isKalimaError(error) ? error.code : String(error)}\n`);
    });
  }, DEMO_PERIOD_MS);

  // The sample purchase, once the sensor writes: the listing, the invoice, the payment, the data at the buyer.
  if (lightning !== undefined) {
    void runDevnetMarket({ directory, urls, lightning, out, stopping: () => stopping }).catch((error: unknown) => {
      if (!stopping) out.write(`\nkalima devnet: the sample purchase failed: ${isKalimaError(error) ? `${error.code}: ${error.message}` : String((error as { message?: string }).message ?? error)}; see m1/node.log\n`);
    });
  }

  // A demo subscriber on a master other than the one written to first: every master pushes.
  const subscription = new AbortController();
  let received = 0;
  void (async () => {
    try {
      for await (const _message of devices[1]!.subscribe('/sensors', { signal: subscription.signal })) received++;
    } catch (error) {
      if (!stopping) out.write(`\ndemo subscriber: ${isKalimaError(error) ? error.code : String(error)}\n`);
    }
  })();

  // A demo client node: linked to all five masters over BOLT 8, it keeps a verified copy of /sensors.
  const clientNode = new SyncClient({
    genesis: await loadGenesis(join(directory, 'genesis.json')), key: deviceKey, prefixes: ['/sensors'],
    masters: masters.map((master) => ({ key: master.key, host: master.host, port: master.clientPort! })),
  });
  clientNode.on('rejected', (event: { code: string }) => {
    if (!stopping) out.write(`\ndemo client node: ${event.code}\n`);
  });
  void clientNode.start().catch(() => undefined);

  const intervalMs = options.statusIntervalMs ?? (out.isTTY ? 1000 : 5000);
  let anchorLine = 'anchors: starting';
  const anchorReader = bitcoin === undefined ? undefined : setInterval(() => {
    void fetch(`${urls[0]}/anchors`, { signal: AbortSignal.timeout(1_000) }).then(async (response) => {
      anchorLine = describeAnchors((await response.json()) as DevnetAnchorStatus);
    }).catch(() => {
      anchorLine = 'anchors: m1 not answering';
    });
  }, intervalMs);
  let previous: { sequence: number; at: number } | undefined;
  let reporting = false;
  const status = setInterval(() => {
    if (reporting || stopping) return;
    reporting = true;
    void readCluster(urls[0]!, { timeoutMs: 1_000 }).catch(() => readCluster(urls[1]!, { timeoutMs: 1_000 })).then((view) => {
      const now = Date.now();
      const sequence = Math.max(0, ...view.rows.map((row) => row.status?.nextGlobalSequence ?? 0));
      const rate = previous === undefined ? 0 : ((sequence - previous.sequence) * 1000) / Math.max(1, now - previous.at);
      previous = { sequence, at: now };
      const leader = view.rows.findIndex((row) => row.id === view.leader);
      const heights = view.rows.map((row, index) => `${NODE_NAMES[index] ?? `n${index + 1}`}:${row.status?.height ?? '-'}`).join(' ');
      const validated = view.rows.filter((row) => row.member === 'validator').map((row) => row.status?.consensus?.validation?.validatedHeight ?? 0);
      const anchor = bitcoin === undefined ? '' : ` | ${anchorLine}`;
      const line = `leader ${leader < 0 ? 'none' : NODE_NAMES[leader]} | term ${view.term ?? '-'} | heights ${heights} | validated ${validated.join(',') || '-'} | ${rate.toFixed(1)} msg/s | events received ${received} | client node h${clientNode.height} via ${clientNode.connectedMasters.length}${anchor}`;
      if (!stopping) out.write(out.isTTY ? `\r${line}   ` : `${line}\n`);
    }).catch((error: unknown) => {
      if (!stopping) out.write(`\nstatus: ${String((error as { message?: string }).message ?? error)}\n`);
    }).finally(() => {
      reporting = false;
    });
  }, intervalMs);

  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    clearInterval(writer);
    clearInterval(status);
    clearInterval(anchorReader);
    clearInterval(miner);
    subscription.abort();
    await clientNode.close();
    await stopChildren();
    out.write('\nkalima devnet stopped\n');
  };
  return { urls, children, stop };
}

interface DevnetAnchorStatus {
  bitcoin: { tip?: number; scannedHeight: number; reachable: boolean };
  wallet: { fundingAddress: string; spendable: number; immature: number };
  late?: string;
  commitments: Array<{ seq: number; state: string; depth: number }>;
}

/** The newest commitment's state, as the status line shows it: pending, in the mempool, confirmed at depth N, recorded. */
function describeAnchors(status: DevnetAnchorStatus): string {
  const newest = status.commitments.at(-1);
  const words: Record<string, string> = { signed: 'pending', mempool: 'in mempool', confirmed: 'confirmed', recorded: 'recorded' };
  const state = newest === undefined ? 'none yet' : `#${newest.seq} ${words[newest.state] ?? newest.state}${newest.depth > 0 ? ` at depth ${newest.depth}` : ''}`;
  return `btc h${status.bitcoin.tip ?? '-'} | anchor ${state}${status.late === undefined ? '' : ' (late)'}`;
}

/**
 * Waits for m1's anchor engine to catch up with Bitcoin, funds its wallet by mining to it if it has
 * nothing, then mines a block every few seconds to the same address.
 */
async function startAnchoring(url: string, bitcoin: DevnetBitcoin, out: NodeJS.WriteStream, stopping: () => boolean): Promise<NodeJS.Timeout> {
  const deadline = Date.now() + 60_000;
  let status: DevnetAnchorStatus | undefined;
  for (;;) {
    try {
      const response = await fetch(`${url}/anchors`, { signal: AbortSignal.timeout(2_000) });
      if (response.ok) {
        status = (await response.json()) as DevnetAnchorStatus;
        if (status.bitcoin.reachable && status.bitcoin.tip !== undefined && status.bitcoin.scannedHeight >= status.bitcoin.tip) break;
      }
    } catch {
      // m1 is busy starting
    }
    if (Date.now() > deadline) throw new Error(`m1's anchoring did not catch up with bcoin within 60 s (last: ${JSON.stringify(status?.bitcoin)}); see m1/node.log`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const address = status.wallet.fundingAddress;
  if (status.wallet.spendable + status.wallet.immature === 0) {
    out.write(`kalima devnet: mining ${DEVNET_FUNDING_BLOCKS} regtest blocks to m1's anchor wallet ${address}\n`);
    await bitcoin.mine(DEVNET_FUNDING_BLOCKS, address);
  }
  return setInterval(() => {
    bitcoin.mine(1, address).catch((error: unknown) => {
      if (!stopping()) out.write(`\nbitcoin miner: ${String((error as { message?: string }).message ?? error)}\n`);
    });
  }, DEVNET_MINE_MS);
}
