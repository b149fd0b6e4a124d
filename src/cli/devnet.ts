// `kalima devnet` (what `npm start` runs): a one-node chain under ./.kalima/devnet with a demo
// device writing sensor readings, and a live status line.
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isKalimaError } from '../errors.ts';
import { KalimaClient, generateDeviceKey, loadDeviceKey, saveDeviceKey } from '../sdk/client.ts';
import { createLogger, startNode, type RunningNode } from '../node/runtime.ts';
import { fileExists, loadConfig } from '../node/config.ts';
import { initChain } from './init.ts';

const DEMO_ADDRESS = '/sensors/plant1';
const DEMO_PERIOD_MS = 500;
const DEMO_TTL_SECONDS = 60;

export interface DevnetOptions {
  directory: string;
  /** Delete the devnet's directory first and start a new chain. */
  fresh?: boolean;
  port?: number;
  /** Print the status line this often. */
  statusIntervalMs?: number;
  out?: NodeJS.WriteStream;
}

export async function runDevnet(options: DevnetOptions): Promise<{ running: RunningNode; stop: () => Promise<void> }> {
  const out = options.out ?? process.stdout;
  const directory = resolve(options.directory);
  const configFile = join(directory, 'config.json');
  if (options.fresh === true) {
    out.write(`kalima devnet: deleting ${directory} (--fresh)\n`);
    await rm(directory, { recursive: true, force: true });
  }
  if (!(await fileExists(configFile))) {
    out.write(`kalima devnet: creating a new chain in ${directory}\n`);
    await initChain({ directory, chain: 'devnet' });
    await saveDeviceKey(join(directory, 'keys', 'demo-device.json'), generateDeviceKey());
  }
  const config = await loadConfig(configFile);
  if (options.port !== undefined) config.port = options.port;
  // Logs go to a file so the terminal keeps the status line; warnings and errors show too.
  const logFile = join(directory, 'node.log');
  const logger = createLogger('info', logFile);
  let running: RunningNode;
  try {
    running = await startNode(config, {
      logger,
      onVerifyProgress: ({ height, tipHeight }) => out.write(`\rchecking the stored chain: block ${height} of ${tipHeight}`),
    });
  } catch (error) {
    if ((error as { code?: string }).code === 'EADDRINUSE') {
      out.write(`kalima devnet: port ${config.port} is in use; starting on a free port instead\n`);
      config.port = 0;
      running = await startNode(config, { logger });
    } else {
      if (isKalimaError(error) && error.code.startsWith('KALIMA_ERR_STORE_')) {
        out.write(`kalima devnet: the chain in ${directory} cannot be served (${error.code}); \`kalima devnet --fresh\` starts a new one\n`);
      }
      throw error;
    }
  }

  const admin = new KalimaClient({ url: running.url, key: await loadDeviceKey(join(directory, 'keys', 'admin.json')) });
  const device = new KalimaClient({ url: running.url, key: await loadDeviceKey(join(directory, 'keys', 'demo-device.json')) });
  if (running.node.getEntry('/kalima/addresses', DEMO_ADDRESS) === undefined) await admin.createAddress(DEMO_ADDRESS, 'demo temperature sensor');
  if (running.node.getEntry('/kalima/devices', device.deviceId) === undefined) {
    await admin.registerDevice(device.deviceId, { name: 'demo sensor', pub: ['/sensors'], sub: ['/sensors', '/alarms'] });
  }

  out.write([
    '',
    `Kalima devnet "${running.node.chain}" is running.`,
    `  API        ${running.url}   (OpenAPI: ${running.url}/docs)`,
    `  data       ${config.dataDir}`,
    `  admin key  ${join(directory, 'keys', 'admin.json')}`,
    `  log        ${logFile}`,
    `  try        npx kalima get --url ${running.url} --key ${join(directory, 'keys', 'demo-device.json')} ${DEMO_ADDRESS} temp-1`,
    `             npx kalima watch --url ${running.url} --key ${join(directory, 'keys', 'demo-device.json')} /sensors`,
    'Ctrl-C stops it; the chain stays in the data directory.',
    '',
  ].join('\n') + '\n');

  let stopped = false;
  let reading = 0;
  const writer = setInterval(() => {
    reading++;
    const celsius = (20 + 5 * Math.sin(reading / 20)).toFixed(2);
    const humidity = (45 + 10 * Math.cos(reading / 30)).toFixed(1);
    Promise.all([
      device.put(DEMO_ADDRESS, 'temp-1', JSON.stringify({ celsius: Number(celsius), reading }), { ttl: DEMO_TTL_SECONDS }),
      device.put(DEMO_ADDRESS, 'humidity-1', JSON.stringify({ percent: Number(humidity), reading }), { ttl: DEMO_TTL_SECONDS }),
    ]).catch((error: unknown) => {
      if (!stopped) out.write(`\ndemo device: ${isKalimaError(error) ? error.code : String(error)}\n`);
    });
  }, DEMO_PERIOD_MS);

  // A demo subscriber, so the status line shows the push path working.
  const subscription = new AbortController();
  let received = 0;
  void (async () => {
    try {
      for await (const _message of device.subscribe('/sensors', { signal: subscription.signal })) received++;
    } catch (error) {
      if (!stopped) out.write(`\ndemo subscriber: ${isKalimaError(error) ? error.code : String(error)}\n`);
    }
  })();

  const intervalMs = options.statusIntervalMs ?? (out.isTTY ? 1000 : 5000);
  let lastCount = running.node.committedMessageCount;
  let lastAt = Date.now();
  const status = setInterval(() => {
    const now = Date.now();
    const count = running.node.committedMessageCount;
    const rate = ((count - lastCount) * 1000) / Math.max(1, now - lastAt);
    lastCount = count;
    lastAt = now;
    const line = `height ${running.node.height} | ${rate.toFixed(1)} msg/s | subscribers ${running.events.count} | events received ${received} | entries ${running.node.cache.size}`;
    out.write(out.isTTY ? `\r${line}   ` : `${line}\n`);
  }, intervalMs);

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    clearInterval(writer);
    clearInterval(status);
    subscription.abort();
    await running.close();
    out.write('\nkalima devnet stopped\n');
  };
  return { running, stop };
}
