// `kalima init`: a genesis file, an admin key, a node key and a config file in one directory.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { kalimaError } from '../errors.ts';
import { DEFAULT_PARAMS, type Genesis, genesisToJson } from '../access/genesis.ts';
import { checkChainName } from '../ledger/message.ts';
import type { KeyPair } from '../ledger/signature.ts';
import { type Clock, type Rng, systemClock, systemRng } from '../ports.ts';
import { generateDeviceKey, saveDeviceKey } from '../sdk/client.ts';
import { DEFAULT_PORT, NEW_MEMBER_MARKER, type NodeConfigJson, fileExists } from '../node/config.ts';
import { toHex } from '../ledger/hash.ts';

export interface InitResult {
  directory: string;
  configFile: string;
  genesisFile: string;
  adminKeyFile: string;
  nodeKeyFile: string;
  admin: KeyPair;
  node: KeyPair;
}

/** The client listener's port (client nodes, sdk/sync.ts) is the API port plus this, unless given. */
export const CLIENT_PORT_OFFSET = 200;

export async function initChain(options: { directory: string; chain: string; port?: number; clientPort?: number; force?: boolean; clock?: Clock; rng?: Rng }): Promise<InitResult> {
  checkChainName(options.chain);
  const rng = options.rng ?? systemRng;
  const clock = options.clock ?? systemClock;
  const directory = options.directory;
  const configFile = join(directory, 'config.json');
  if (!options.force && (await fileExists(configFile))) {
    throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { file: configFile, reason: 'a chain is already initialised here; pass --force to overwrite it' });
  }
  await mkdir(join(directory, 'keys'), { recursive: true });
  const admin = generateDeviceKey(rng);
  const node = generateDeviceKey(rng);
  const genesis: Genesis = { chain: options.chain, timeMs: clock.nowMs(), admins: [admin.publicKey], masters: [node.publicKey], validators: [], params: DEFAULT_PARAMS };
  const genesisFile = join(directory, 'genesis.json');
  const adminKeyFile = join(directory, 'keys', 'admin.json');
  const nodeKeyFile = join(directory, 'keys', 'node.json');
  await writeFile(genesisFile, `${JSON.stringify(genesisToJson(genesis), null, 2)}\n`);
  await saveDeviceKey(adminKeyFile, admin);
  await saveDeviceKey(nodeKeyFile, node);
  const port = options.port ?? DEFAULT_PORT;
  const config: NodeConfigJson = { dataDir: 'data', genesis: 'genesis.json', nodeKey: 'keys/node.json', host: '127.0.0.1', port, clientPort: options.clientPort ?? (port === 0 ? 0 : port + CLIENT_PORT_OFFSET), logLevel: 'info' };
  await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
  return { directory, configFile, genesisFile, adminKeyFile, nodeKeyFile, admin, node };
}

export interface ClusterInitResult {
  directory: string;
  genesisFile: string;
  adminKeyFile: string;
  admin: KeyPair;
  /** One directory per master, each with its config.json, node key and a copy of the genesis file. */
  masters: Array<{ directory: string; configFile: string; key: KeyPair; apiPort: number; linkPort: number; clientPort: number }>;
  /** One directory per validation node (v1 … vN), laid out as the masters' (without a client listener: client nodes follow the masters). */
  validators: Array<{ directory: string; configFile: string; key: KeyPair; apiPort: number; linkPort: number }>;
}

/**
 * `kalima init --masters N [--validators V]`: one chain with N masters and V validation nodes on
 * this machine, for a local cluster. The root holds the genesis file and the admin key; m1 … mN
 * each hold a master's config and node key, v1 … vV a validation node's. Node i (the masters
 * first, then the validation nodes) serves its API on port + i - 1 and its node links on
 * linkPort + i - 1; master i serves client nodes on clientPort + i - 1 (port + 100 and port + 200
 * unless given).
 */
export async function initCluster(options: { directory: string; chain: string; masters: number; validators?: number; port?: number; linkPort?: number; clientPort?: number; force?: boolean; clock?: Clock; rng?: Rng }): Promise<ClusterInitResult> {
  checkChainName(options.chain);
  if (!Number.isInteger(options.masters) || options.masters < 1 || options.masters > 64) throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { reason: '--masters must be a whole number from 1 to 64' });
  const validatorCount = options.validators ?? 0;
  if (!Number.isInteger(validatorCount) || validatorCount < 0 || validatorCount > 64) throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { reason: '--validators must be a whole number from 0 to 64' });
  const rng = options.rng ?? systemRng;
  const clock = options.clock ?? systemClock;
  const directory = options.directory;
  const genesisFile = join(directory, 'genesis.json');
  if (!options.force && (await fileExists(genesisFile))) {
    throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { file: genesisFile, reason: 'a chain is already initialised here; pass --force to overwrite it' });
  }
  await mkdir(join(directory, 'keys'), { recursive: true });
  const admin = generateDeviceKey(rng);
  const keys = Array.from({ length: options.masters }, () => generateDeviceKey(rng));
  const validatorKeys = Array.from({ length: validatorCount }, () => generateDeviceKey(rng));
  const genesis: Genesis = {
    chain: options.chain, timeMs: clock.nowMs(), admins: [admin.publicKey], masters: keys.map((key) => key.publicKey), validators: validatorKeys.map((key) => key.publicKey), params: DEFAULT_PARAMS,
  };
  const genesisText = `${JSON.stringify(genesisToJson(genesis), null, 2)}\n`;
  await writeFile(genesisFile, genesisText);
  const adminKeyFile = join(directory, 'keys', 'admin.json');
  await saveDeviceKey(adminKeyFile, admin);
  const apiBase = options.port ?? DEFAULT_PORT;
  const linkBase = options.linkPort ?? apiBase + 100;
  const clientBase = options.clientPort ?? apiBase + CLIENT_PORT_OFFSET;
  const host = '127.0.0.1';
  const layout = (name: string, key: KeyPair, index: number) => ({ directory: join(directory, name), configFile: join(directory, name, 'config.json'), key, apiPort: apiBase + index, linkPort: linkBase + index });
  const masters = keys.map((key, index) => ({ ...layout(`m${index + 1}`, key, index), clientPort: clientBase + index }));
  const validators = validatorKeys.map((key, index) => layout(`v${index + 1}`, key, keys.length + index));
  const directoryOfMasters = masters.map((master) => ({ key: toHex(master.key.publicKey), host, port: master.linkPort, api: `http://${host}:${master.apiPort}`, clientPort: master.clientPort }));
  const directoryOfValidators = validators.map((node) => ({ key: toHex(node.key.publicKey), host, port: node.linkPort, api: `http://${host}:${node.apiPort}` }));
  const nodes: Array<(typeof validators)[number] & { clientPort?: number }> = [...masters, ...validators];
  for (const master of nodes) {
    await mkdir(join(master.directory, 'keys'), { recursive: true });
    await writeFile(join(master.directory, 'genesis.json'), genesisText);
    await saveDeviceKey(join(master.directory, 'keys', 'node.json'), master.key);
    const config: NodeConfigJson = {
      dataDir: 'data', genesis: 'genesis.json', nodeKey: 'keys/node.json', host, port: master.apiPort, ...(master.clientPort === undefined ? {} : { clientPort: master.clientPort }), logLevel: 'info',
      cluster: { linkHost: host, linkPort: master.linkPort, masters: directoryOfMasters, ...(validators.length > 0 ? { validators: directoryOfValidators } : {}) },
    };
    await writeFile(master.configFile, `${JSON.stringify(config, null, 2)}\n`);
    // A new chain's member: its empty store is expected (see NEW_MEMBER_MARKER).
    await mkdir(join(master.directory, 'data'), { recursive: true });
    await writeFile(join(master.directory, 'data', NEW_MEMBER_MARKER), 'a member of a new chain: kalima init --masters made this data directory\n');
  }
  return { directory, genesisFile, adminKeyFile, admin, masters, validators };
}
