// The node's configuration file (written by `kalima init`). Paths are relative to the file.
import { access, readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { kalimaError } from '../errors.ts';
import { type Genesis, parseGenesis } from '../access/genesis.ts';

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
}

export const DEFAULT_PORT = 9118;

export interface NodeConfigJson {
  dataDir?: string;
  genesis?: string;
  nodeKey?: string;
  host?: string;
  port?: number;
  logLevel?: NodeConfig['logLevel'];
  verifierThreads?: number;
  signerThread?: boolean;
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
  return {
    dataDir: resolve(base, json.dataDir ?? 'data'),
    genesisFile: resolve(base, json.genesis ?? 'genesis.json'),
    nodeKeyFile: resolve(base, json.nodeKey ?? 'keys/node.json'),
    host: json.host ?? '127.0.0.1',
    port,
    logLevel: json.logLevel ?? 'info',
    verifierThreads: json.verifierThreads ?? 0,
    signerThread: json.signerThread ?? false,
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
