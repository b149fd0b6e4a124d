// `kalima init`: a genesis file, an admin key, a node key and a config file in one directory.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { kalimaError } from '../errors.ts';
import { DEFAULT_PARAMS, type Genesis, genesisToJson } from '../access/genesis.ts';
import { checkChainName } from '../ledger/message.ts';
import type { KeyPair } from '../ledger/signature.ts';
import { type Clock, type Rng, systemClock, systemRng } from '../ports.ts';
import { generateDeviceKey, saveDeviceKey } from '../sdk/client.ts';
import { DEFAULT_PORT, type NodeConfigJson, fileExists } from '../node/config.ts';

export interface InitResult {
  directory: string;
  configFile: string;
  genesisFile: string;
  adminKeyFile: string;
  nodeKeyFile: string;
  admin: KeyPair;
  node: KeyPair;
}

export async function initChain(options: { directory: string; chain: string; port?: number; force?: boolean; clock?: Clock; rng?: Rng }): Promise<InitResult> {
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
  const genesis: Genesis = { chain: options.chain, timeMs: clock.nowMs(), admins: [admin.publicKey], masters: [node.publicKey], params: DEFAULT_PARAMS };
  const genesisFile = join(directory, 'genesis.json');
  const adminKeyFile = join(directory, 'keys', 'admin.json');
  const nodeKeyFile = join(directory, 'keys', 'node.json');
  await writeFile(genesisFile, `${JSON.stringify(genesisToJson(genesis), null, 2)}\n`);
  await saveDeviceKey(adminKeyFile, admin);
  await saveDeviceKey(nodeKeyFile, node);
  const config: NodeConfigJson = { dataDir: 'data', genesis: 'genesis.json', nodeKey: 'keys/node.json', host: '127.0.0.1', port: options.port ?? DEFAULT_PORT, logLevel: 'info' };
  await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
  return { directory, configFile, genesisFile, adminKeyFile, nodeKeyFile, admin, node };
}
