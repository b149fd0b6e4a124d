// The `kalima` command.
import { parseArgs } from 'node:util';
import { join, resolve } from 'node:path';
import { KalimaError, isKalimaError, kalimaError } from '../errors.ts';
import { KalimaClient, generateDeviceKey, loadDeviceKey, saveDeviceKey } from '../sdk/client.ts';
import { loadConfig, loadGenesis, DEFAULT_PORT } from '../node/config.ts';
import { startNode } from '../node/runtime.ts';
import { ChainStore } from '../store/chain-store.ts';
import { LevelKvStore } from '../store/level-kv.ts';
import { openVerified } from '../store/verify.ts';
import { repairState } from '../store/repair.ts';
import { toHex } from '../ledger/hash.ts';
import { initChain, initCluster } from './init.ts';
import { type DevnetBitcoin, runDevnet } from './devnet.ts';
import type { DevnetLightning } from './devnet-market.ts';
import { fetchAnchors, formatAnchors, formatCluster, readCluster } from './cluster-status.ts';
import { MarketUsageError, klxCommand, lightningPay, marketCommand } from './market.ts';
import { OFFLINE_EXIT_CODE, ProofUsageError, fetchProof, verifyProofFile, writeHeadersFile } from './proofs.ts';

const USAGE = `kalima — a Kalima PrivaChain node

  kalima init [--dir DIR] [--chain NAME] [--port N] [--force]   genesis file, admin and node keys, config
  kalima init --masters N [--validators V] [--dir DIR] [--chain NAME] [--port N]
                                                                a chain of N masters (m1 … mN) and V validation nodes (v1 … vV) on this machine
  kalima node [--config FILE] [--port N] [--client-port N]     run a node (default ./config.json)
  kalima devnet [--dir DIR] [--port N] [--fresh] [--no-bitcoin] [--no-lightning]
                                                                a local chain of 5 masters and 1 validation node (processes) with a demo device, anchored into
                                                                a regtest bcoin, with a marketplace over two LND stand-ins and a sample purchase (npm start)
  kalima status [--url URL] [--json]                           a node's status; for a cluster, every node's (leader, term, heights, validations, commit rate)
  kalima put --key KEYFILE [--url URL] [--ttl S] ADDRESS KEY VALUE
  kalima get --key KEYFILE [--url URL] ADDRESS KEY
  kalima rm --key KEYFILE [--url URL] ADDRESS KEY
  kalima watch --key KEYFILE [--url URL] [--from SEQ] ADDRESS   print committed messages as they come
  kalima history --key KEYFILE [--url URL] ADDRESS
  kalima verify-chain [--config FILE]                           check the hashchain and the state digest
  kalima repair [--config FILE]                                 rebuild the MemCache from the blocks
  kalima keygen --out KEYFILE                                   a new device key
  kalima admin create-address --key ADMINKEY ADDRESS [DESCRIPTION]
  kalima admin register-device --key ADMINKEY DEVICE_ID --pub P1,P2 --sub S1,S2 [--name NAME]
  kalima admin issue-code --key ADMINKEY --pub P1,P2 --sub S1,S2 [--name NAME]
  kalima redeem --key KEYFILE CODE                              join the chain with a one-time code
  kalima proof HEIGHT [--url URL] [--out FILE] [--binary] [--ots]
                                                                fetch a block's anchor proof: HEIGHT.json, or with --binary HEIGHT.kproof
                                                                (the compact binary proof) instead; --ots adds FILE.ots and FILE.block
  kalima verify-proof FILE [--rpc URL [--rpc-user U --rpc-password P | --rpc-cookie FILE]] [--headers FILE] [--json]
                                                                check a JSON, .kproof or .ots proof against a Bitcoin RPC or a headers file (exit 0 when
                                                                valid); without either, only the proof itself (exit 3: its header is not checked against Bitcoin)
  kalima market list|buy LISTING [--amount SATS]|status PURCHASE --key KEYFILE [--url URL] [--json]
                                                                the listings on the chain; a hold invoice for a listing; a purchase's state
  kalima market sell ID PREFIX PRICE_SATS PERIOD_SECONDS SELLER_NODE_KEY --key SELLERKEY [--title T]
                                                                list data this device publishes, paid to the seller node's LND
  kalima klx balance [ACCOUNT]|supply|buy N [--amount SATS]|send ID TO AMOUNT --key KEYFILE [--url URL]
  kalima lightning pay INVOICE --lnd-socket HOST:PORT --lnd-cert FILE --lnd-macaroon FILE
                                                                pay a BOLT 11 invoice with your own LND
  kalima headers --rpc URL [--rpc-user U --rpc-password P | --rpc-cookie FILE] --out FILE [--from H] [--to H]
                                                                write a Bitcoin headers file for verify-proof --headers

URL defaults to http://127.0.0.1:${DEFAULT_PORT}. Errors print their KALIMA_ERR_* code; the exit code is 1 (2 for usage).`;

class UsageError extends Error {}

function list(value: string | undefined): string[] {
  return value === undefined || value === '' ? [] : value.split(',').map((item) => item.trim()).filter(Boolean);
}

async function client(values: Record<string, unknown>): Promise<KalimaClient> {
  if (typeof values.key !== 'string') throw new UsageError('--key KEYFILE is required');
  return new KalimaClient({ url: (values.url as string | undefined) ?? `http://127.0.0.1:${DEFAULT_PORT}`, key: await loadDeviceKey(values.key) });
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_key, item) => (item instanceof Uint8Array ? Buffer.from(item).toString('utf8') : item), 2)}\n`);
}

async function openStore(configFile: string) {
  const config = await loadConfig(configFile);
  const genesis = await loadGenesis(config.genesisFile);
  const store = new ChainStore(await LevelKvStore.open(config.dataDir));
  return { config, genesis, store };
}

const progress = ({ height, tipHeight }: { height: number; tipHeight: number }): void => {
  process.stderr.write(`\rblock ${height} of ${tipHeight}`);
  if (height === tipHeight) process.stderr.write('\n');
};

/** What the executable composes into the CLI from outside the core (bin/kalima.mjs). */
export interface CliExtensions {
  /** Starts the devnet's LND stand-ins, seller and buyer (regtest/devnet-lightning.ts). */
  devnetLightning?: (directory: string, out: NodeJS.WriteStream) => Promise<DevnetLightning>;
  /** Starts the devnet's regtest Bitcoin node (regtest/devnet-bitcoin.ts). */
  devnetBitcoin?: (directory: string, basePort: number, out: NodeJS.WriteStream) => Promise<DevnetBitcoin>;
}

export async function main(argv: string[], extensions: CliExtensions = {}): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      dir: { type: 'string' }, chain: { type: 'string' }, port: { type: 'string' }, force: { type: 'boolean' },
      config: { type: 'string' }, url: { type: 'string' }, key: { type: 'string' }, ttl: { type: 'string' },
      from: { type: 'string' }, out: { type: 'string' }, pub: { type: 'string' }, sub: { type: 'string' }, name: { type: 'string' },
      fresh: { type: 'boolean' }, 'no-bitcoin': { type: 'boolean' }, 'no-lightning': { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, masters: { type: 'string' }, validators: { type: 'string' }, json: { type: 'boolean' }, 'client-port': { type: 'string' },
      ots: { type: 'boolean' }, binary: { type: 'boolean' }, rpc: { type: 'string' }, 'rpc-user': { type: 'string' }, 'rpc-password': { type: 'string' }, 'rpc-cookie': { type: 'string' },
      headers: { type: 'string' }, to: { type: 'string' },
      amount: { type: 'string' }, title: { type: 'string' }, 'lnd-socket': { type: 'string' }, 'lnd-cert': { type: 'string' }, 'lnd-macaroon': { type: 'string' },
    },
  });
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65_535)) throw new UsageError('--port must be a whole number from 0 to 65535');
  const clientPort = values['client-port'] === undefined ? undefined : Number(values['client-port']);
  if (clientPort !== undefined && (!Number.isInteger(clientPort) || clientPort < 0 || clientPort > 65_535)) throw new UsageError('--client-port must be a whole number from 0 to 65535');
  const configFile = resolve(values.config ?? 'config.json');

  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    case 'init': {
      if (values.validators !== undefined && values.masters === undefined) throw new UsageError('--validators goes with --masters N');
      if (values.masters !== undefined) {
        const count = Number(values.masters);
        if (!Number.isInteger(count) || count < 1) throw new UsageError('--masters must be a whole number of masters');
        const validators = values.validators === undefined ? 0 : Number(values.validators);
        if (!Number.isInteger(validators) || validators < 0) throw new UsageError('--validators must be a whole number of validation nodes');
        const cluster = await initCluster({ directory: resolve(values.dir ?? '.'), chain: values.chain ?? 'privachain', masters: count, validators, port, force: values.force });
        process.stdout.write([
          `chain of ${count} masters${validators > 0 ? ` and ${validators} validation node${validators === 1 ? '' : 's'}` : ''} initialised in ${cluster.directory}`,
          `  genesis   ${cluster.genesisFile}`,
          `  admin key ${cluster.adminKeyFile}  (device id ${toHex(cluster.admin.publicKey)})`,
          ...[...cluster.masters, ...cluster.validators].map((member) => `  ${member.configFile}  API on port ${member.apiPort}, node links on ${member.linkPort}`),
          `run each with: kalima node --config ${join(cluster.directory, validators > 0 ? 'mN (or vN)' : 'mN', 'config.json')}`,
        ].join('\n') + '\n');
        return 0;
      }
      const result = await initChain({ directory: resolve(values.dir ?? '.'), chain: values.chain ?? 'privachain', port, force: values.force });
      process.stdout.write([
        `chain initialised in ${result.directory}`,
        `  genesis   ${result.genesisFile}`,
        `  admin key ${result.adminKeyFile}  (device id ${toHex(result.admin.publicKey)})`,
        `  node key  ${result.nodeKeyFile}`,
        `  config    ${result.configFile}`,
        `run it with: kalima node --config ${result.configFile}`,
      ].join('\n') + '\n');
      return 0;
    }
    case 'node': {
      const config = await loadConfig(configFile);
      if (port !== undefined) config.port = port;
      if (clientPort !== undefined) config.clientPort = clientPort;
      const running = await startNode(config, { onVerifyProgress: progress });
      const clients = running.sync === undefined ? '' : `, client nodes on ${running.sync.host}:${running.sync.port}`;
      process.stderr.write(`kalima node: chain ${running.node.chain} at height ${running.node.height}, API on ${running.url}${clients}\n`);
      await waitForSignal();
      process.stderr.write('kalima node: stopping\n');
      // A stop that takes long says what it is waiting for.
      const slow = setInterval(() => process.stderr.write(`kalima node: still stopping: ${describeHandles()}\n`), 3_000);
      slow.unref();
      await running.close();
      clearInterval(slow);
      const lingering = setTimeout(() => process.stderr.write(`kalima node: stopped, but the process is kept alive by ${describeHandles()}\n`), 3_000);
      lingering.unref();
      return 0;
    }
    case 'devnet': {
      const devnetBitcoin = values['no-bitcoin'] === true ? undefined : extensions.devnetBitcoin;
      const { stop } = await runDevnet({
        directory: values.dir ?? join('.kalima', 'devnet'), port, fresh: values.fresh,
        bitcoin: devnetBitcoin === undefined ? undefined : (directory) => devnetBitcoin(directory, port ?? 9118, process.stdout),
        lightning: values['no-lightning'] === true || extensions.devnetLightning === undefined ? undefined : (directory) => extensions.devnetLightning!(directory, process.stdout),
      });
      await waitForSignal();
      await stop();
      return 0;
    }
    case 'status': {
      const url = values.url ?? `http://127.0.0.1:${DEFAULT_PORT}`;
      const status = await new KalimaClient({ url, key: generateDeviceKey() }).status();
      if (status.consensus === undefined) {
        const anchors = await fetchAnchors(url, 2_000);
        if (values.json === true || anchors === undefined) print(anchors === undefined ? status : { ...status, anchors });
        else {
          print(status);
          process.stdout.write(`${formatAnchors(anchors).join('\n')}\n`);
        }
        return 0;
      }
      // A cluster master: every master's status, twice a second apart for the commit rate.
      const view = await readCluster(url, { intervalMs: 1_000 });
      if (values.json === true) print(view);
      else process.stdout.write(`${formatCluster(view)}\n`);
      return 0;
    }
    case 'put': {
      const [address, key, value] = positionals;
      if (address === undefined || key === undefined || value === undefined) throw new UsageError('put needs ADDRESS KEY VALUE');
      print(await (await client(values)).put(address, key, value, { ttl: values.ttl === undefined ? undefined : Number(values.ttl) }));
      return 0;
    }
    case 'rm': {
      const [address, key] = positionals;
      if (address === undefined || key === undefined) throw new UsageError('rm needs ADDRESS KEY');
      print(await (await client(values)).remove(address, key));
      return 0;
    }
    case 'get': {
      const [address, key] = positionals;
      if (address === undefined || key === undefined) throw new UsageError('get needs ADDRESS KEY');
      const value = await (await client(values)).get(address, key);
      if (value === undefined) throw kalimaError('KALIMA_ERR_LEDGER_KEY_NOT_FOUND', { address, key });
      print(value);
      return 0;
    }
    case 'history': {
      const [address] = positionals;
      if (address === undefined) throw new UsageError('history needs ADDRESS');
      for await (const message of (await client(values)).history(address)) print(message);
      return 0;
    }
    case 'watch': {
      const [address] = positionals;
      if (address === undefined) throw new UsageError('watch needs ADDRESS');
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      process.once('SIGTERM', () => controller.abort());
      const from = values.from === undefined ? undefined : Number(values.from);
      const watcher = await client(values);
      for await (const message of watcher.subscribe(address, { from, signal: controller.signal, onReconnect: (attempt) => process.stderr.write(`reconnecting (attempt ${attempt})\n`) })) {
        process.stdout.write(`${JSON.stringify({ ...message, body: Buffer.from(message.body).toString('utf8') })}\n`);
      }
      return 0;
    }
    case 'verify-chain': {
      const { genesis, store } = await openStore(configFile);
      try {
        const { tip, cache } = await openVerified(store, genesis, progress);
        print({ ok: true, chain: genesis.chain, height: tip.height, tipHash: toHex(tip.hash), stateDigest: toHex(tip.stateDigest), entries: cache.size });
      } finally {
        await store.close();
      }
      return 0;
    }
    case 'repair': {
      const { genesis, store } = await openStore(configFile);
      try {
        const result = await repairState(store, genesis, progress);
        print({ ok: true, repairedHeight: result.height, entries: result.entries });
      } finally {
        await store.close();
      }
      return 0;
    }
    case 'keygen': {
      if (values.out === undefined) throw new UsageError('--out KEYFILE is required');
      const key = generateDeviceKey();
      await saveDeviceKey(values.out, key);
      print({ deviceId: toHex(key.publicKey), keyFile: resolve(values.out) });
      return 0;
    }
    case 'redeem': {
      const [code] = positionals;
      if (code === undefined) throw new UsageError('redeem needs CODE');
      print(await (await client(values)).redeemOnboardingCode(code));
      return 0;
    }
    case 'admin': {
      const [action, ...args] = positionals;
      const admin = await client(values);
      if (action === 'create-address' && args[0] !== undefined) print(await admin.createAddress(args[0], args[1] ?? ''));
      else if (action === 'register-device' && args[0] !== undefined) print(await admin.registerDevice(args[0], { name: values.name, pub: list(values.pub), sub: list(values.sub) }));
      else if (action === 'issue-code') print(await admin.issueOnboardingCode({ name: values.name, pub: list(values.pub), sub: list(values.sub) }));
      else throw new UsageError('admin needs create-address ADDRESS, register-device DEVICE_ID or issue-code');
      return 0;
    }
    case 'proof': {
      const height = Number(positionals[0]);
      if (!Number.isSafeInteger(height) || height < 1) throw new UsageError('proof needs the HEIGHT of a block (a whole number from 1)');
      await fetchProof({ url: values.url ?? `http://127.0.0.1:${DEFAULT_PORT}`, height, out: values.out, ots: values.ots, binary: values.binary }, writeLine);
      return 0;
    }
    case 'verify-proof': {
      const [file] = positionals;
      if (file === undefined) throw new UsageError('verify-proof needs FILE (a JSON, .kproof or .ots proof)');
      const outcome = await verifyProofFile(file, { ...rpcOptions(values), headers: values.headers, json: values.json }, writeLine);
      return outcome === 'offline' ? OFFLINE_EXIT_CODE : 0;
    }
    case 'headers': {
      if (values.out === undefined) throw new UsageError('headers needs --out FILE');
      const height = (value: string | undefined, name: string): number | undefined => {
        if (value === undefined) return undefined;
        const parsed = Number(value);
        if (!Number.isSafeInteger(parsed) || parsed < 0) throw new UsageError(`--${name} must be a block height`);
        return parsed;
      };
      await writeHeadersFile({ ...rpcOptions(values), out: values.out, from: height(values.from, 'from'), to: height(values.to, 'to') }, writeLine);
      return 0;
    }
    case 'market':
      await marketCommand(await client(values), positionals, values, writeLine);
      return 0;
    case 'klx':
      await klxCommand(await client(values), positionals, values, writeLine);
      return 0;
    case 'lightning':
      await lightningPay(positionals, values, writeLine);
      return 0;
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

function writeLine(text: string): void {
  process.stdout.write(`${text}\n`);
}

function rpcOptions(values: { rpc?: string; 'rpc-user'?: string; 'rpc-password'?: string; 'rpc-cookie'?: string }) {
  return { rpc: values.rpc, rpcUser: values['rpc-user'], rpcPassword: values['rpc-password'], rpcCookie: values['rpc-cookie'] };
}

/** What keeps the event loop alive (for a stop that takes long): kinds of handle, with sockets' ports. */
function describeHandles(): string {
  const handles = (process as unknown as { _getActiveHandles(): Array<{ constructor: { name: string }; localPort?: number; remotePort?: number }> })._getActiveHandles();
  return handles.map((handle) => (handle.remotePort !== undefined ? `${handle.constructor.name}(${handle.localPort}->${handle.remotePort})` : handle.constructor.name)).join(', ') || 'nothing';
}

function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

export async function runCli(argv: string[], extensions: CliExtensions = {}): Promise<void> {
  try {
    process.exitCode = await main(argv, extensions);
  } catch (error) {
    if (error instanceof UsageError || error instanceof ProofUsageError || error instanceof MarketUsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`kalima: ${(error as Error).message}\n\n${USAGE}\n`);
      process.exitCode = 2;
    } else if (isKalimaError(error)) {
      const kalima = error as KalimaError;
      process.stderr.write(`kalima: ${kalima.code}: ${kalima.message}\n`);
      if (Object.keys(kalima.details).length > 0) process.stderr.write(`${JSON.stringify(kalima.details, null, 2)}\n`);
      if (kalima.code === 'KALIMA_ERR_STORE_CORRUPT' && kalima.details.repairable === true) process.stderr.write('the blocks are intact: `kalima repair` rebuilds the state from them\n');
      process.exitCode = 1;
    } else {
      process.stderr.write(`kalima: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 1;
    }
  }
}
