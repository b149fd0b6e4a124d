// The node's configuration file (written by `kalima init`). Paths are relative to the file.
import { access, readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { kalimaError } from '../errors.ts';
import { type Genesis, parseGenesis } from '../access/genesis.ts';
import { type AnchorConfig, parseAnchorConfig } from '../../anchors/config.ts';
import { type MarketConfig, parseMarketConfig } from '../../bridge/config.ts';

export interface NodeConfig {
  /** Where the chain lives (LevelDB). */
  dataDir: string;
  genesisFile: string;
  nodeKeyFile: string;
  host: string;
  /** Kalima's default server port. */
  port: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Verification threads; 0 means one per core. */
  verifierThreads: number;
  /**
   * Sign blocks on a worker thread of their own instead of the event loop. On the 2-core bench
   * machine it raised single-message throughput and did not help the latency tail (BENCHMARKS.md).
   */
  signerThread: boolean;
  /** A master of a cluster: where its node links listen, and every master's key and link address. */
  cluster: ClusterConfig | undefined;
  /**
   * Where client nodes (the SDK's sync mode) connect over BOLT 8 with their device keys
   * (api/sync-server.ts). Left out: no client listener. 0: any free port (the log names it).
   * `kalima init` writes the API port + 200 (9318 for the default 9118).
   */
  clientPort: number | undefined;
  clientHost: string;
  /** Anchoring into Bitcoin (the `bitcoin` and `anchor` sections, anchors/config.ts); undefined: this node does not anchor. */
  anchoring: AnchorConfig | undefined;
  /** Selling listings and KLX over Lightning (the `lightning` and `market` sections, bridge/config.ts); undefined: this node does not sell. */
  market: MarketConfig | undefined;
}

export interface ClusterConfig {
  linkHost: string;
  linkPort: number;
  /** Every master of the genesis file: its key (x-only, hex), where its links listen, its API (for redirects), its client listener's port (for client nodes). */
  masters: Array<{ key: string; host: string; port: number; api?: string; clientPort?: number }>;
  /** Every validation node of the genesis file, in the same form (none by default). */
  validators: Array<{ key: string; host: string; port: number; api?: string; clientPort?: number }>;
  /** Milliseconds per Raft tick (an election timeout is 10–20 ticks). */
  tickMs: number;
  /** Applied Raft entries kept for followers that fall behind (older ones are compacted; a follower further behind catches up on blocks). */
  logRetention: number;
}

export const DEFAULT_PORT = 9118;

/**
 * A file `kalima init --masters` puts in each master's data directory: this master is a member of a
 * new chain, so an empty store is expected. A master with an empty store and no such mark is taken
 * as one that lost its disk (it waits to catch up before it votes). It is removed once the store
 * holds anything; deleting the data directory deletes it too.
 */
export const NEW_MEMBER_MARKER = 'KALIMA_NEW_MEMBER';

export interface NodeConfigJson {
  dataDir?: string;
  genesis?: string;
  nodeKey?: string;
  host?: string;
  port?: number;
  logLevel?: NodeConfig['logLevel'];
  verifierThreads?: number;
  signerThread?: boolean;
  cluster?: {
    linkHost?: string; linkPort?: number; masters?: Array<{ key?: string; host?: string; port?: number; api?: string; clientPort?: number }>;
    validators?: Array<{ key?: string; host?: string; port?: number; api?: string; clientPort?: number }>; tickMs?: number; logRetention?: number;
  };
  clientPort?: number;
  clientHost?: string;
  bitcoin?: unknown;
  anchor?: unknown;
  lightning?: unknown;
  market?: unknown;
}

function invalid(file: string, reason: string): never {
  throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { file, reason });
}

export async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    invalid(file, `cannot read it: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    invalid(file, `not valid JSON: ${(error as Error).message}`);
  }
}

export async function loadConfig(file: string): Promise<NodeConfig> {
  const json = (await readJsonFile(file)) as NodeConfigJson;
  if (typeof json !== 'object' || json === null) invalid(file, 'must hold a JSON object');
  const base = dirname(resolve(file));
  const port = json.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) invalid(file, 'port must be a whole number from 0 to 65535');
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  if (json.logLevel !== undefined && !levels.includes(json.logLevel)) invalid(file, `logLevel must be one of ${levels.join(', ')}`);
  if (json.verifierThreads !== undefined && (!Number.isInteger(json.verifierThreads) || json.verifierThreads < 0 || json.verifierThreads > 256)) {
    invalid(file, 'verifierThreads must be a whole number from 0 (one per core) to 256');
  }
  if (json.signerThread !== undefined && typeof json.signerThread !== 'boolean') invalid(file, 'signerThread must be true or false');
  if (json.clientPort !== undefined && (!Number.isInteger(json.clientPort) || json.clientPort < 0 || json.clientPort > 65_535)) invalid(file, 'clientPort must be a whole number from 0 (any free port) to 65535; leave it out for no client listener');
  if (json.clientHost !== undefined && (typeof json.clientHost !== 'string' || json.clientHost.length === 0)) invalid(file, 'clientHost must be a host name or address');
  let cluster: ClusterConfig | undefined;
  if (json.cluster !== undefined) {
    const raw = json.cluster;
    if (typeof raw !== 'object' || raw === null) invalid(file, 'cluster must be an object');
    const linkPort = raw.linkPort ?? 9218;
    if (!Number.isInteger(linkPort) || linkPort < 0 || linkPort > 65_535) invalid(file, 'cluster.linkPort must be a whole number from 0 to 65535');
    if (!Array.isArray(raw.masters) || raw.masters.length === 0) invalid(file, 'cluster.masters must list every master: { key, host, port }');
    const members = (list: NonNullable<typeof raw.masters>, field: string, what: string) => list.map((member, index) => {
      if (typeof member?.key !== 'string' || !/^[0-9a-f]{64}$/.test(member.key)) invalid(file, `cluster.${field}[${index}].key must be a ${what}'s x-only key in hex (64 characters)`);
      if (typeof member.host !== 'string' || member.host.length === 0) invalid(file, `cluster.${field}[${index}].host must be a host name or address`);
      if (!Number.isInteger(member.port) || member.port! < 1 || member.port! > 65_535) invalid(file, `cluster.${field}[${index}].port must be a port number`);
      if (member.api !== undefined && typeof member.api !== 'string') invalid(file, `cluster.${field}[${index}].api must be a URL`);
      if (member.clientPort !== undefined && (!Number.isInteger(member.clientPort) || member.clientPort < 1 || member.clientPort > 65_535)) invalid(file, `cluster.${field}[${index}].clientPort must be a port number`);
      return { key: member.key, host: member.host, port: member.port!, api: member.api, ...(member.clientPort === undefined ? {} : { clientPort: member.clientPort }) };
    });
    const masters = members(raw.masters, 'masters', 'master');
    if (raw.validators !== undefined && !Array.isArray(raw.validators)) invalid(file, 'cluster.validators must list every validation node: { key, host, port }');
    const validators = members(raw.validators ?? [], 'validators', 'validation node');
    const tickMs = raw.tickMs ?? 50;
    if (!Number.isInteger(tickMs) || tickMs < 1 || tickMs > 10_000) invalid(file, 'cluster.tickMs must be a whole number of milliseconds from 1 to 10000');
    const logRetention = raw.logRetention ?? 10_000;
    if (!Number.isInteger(logRetention) || logRetention < 1) invalid(file, 'cluster.logRetention must be a whole number of entries, at least 1');
    cluster = { linkHost: raw.linkHost ?? '127.0.0.1', linkPort, masters, validators, tickMs, logRetention };
  }
  const anchoring = parseAnchorConfig(file, base, json.bitcoin, json.anchor);
  const market = parseMarketConfig(file, base, json.lightning, json.market);
  return {
    cluster,
    anchoring,
    market,
    dataDir: resolve(base, json.dataDir ?? 'data'),
    genesisFile: resolve(base, json.genesis ?? 'genesis.json'),
    nodeKeyFile: resolve(base, json.nodeKey ?? 'keys/node.json'),
    host: json.host ?? '127.0.0.1',
    port,
    logLevel: json.logLevel ?? 'info',
    verifierThreads: json.verifierThreads ?? 0,
    signerThread: json.signerThread ?? false,
    clientPort: json.clientPort,
    clientHost: json.clientHost ?? json.host ?? '127.0.0.1',
  };
}

export async function loadGenesis(file: string): Promise<Genesis> {
  return parseGenesis(await readJsonFile(file));
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
