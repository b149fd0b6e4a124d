// For investigations of the commit-latency tail: open-loop runs of single messages at a fixed
// rate against one node, or against two nodes in alternating rounds (an A/B test that cancels the
// machine's drift), with each configuration's latency pooled over its rounds.
//
//   npx tsx bench/half-load.ts --rate 1800 --rounds 6 --duration 5
//   npx tsx bench/half-load.ts --rate 1800 --rounds 6 --duration 5 --b-env NAME=VALUE[,NAME=VALUE]
//   npx tsx bench/half-load.ts --rate 1800 --rounds 6 --duration 5 --b-config verifierThreads=1
//   npx tsx bench/half-load.ts --rate 1800 --rounds 6 --duration 5 --b-root ../other-checkout
//   npx tsx bench/half-load.ts --rate 2500 --rounds 6 --duration 5 --batch-size 64   (POST /transactions)
//
// --b-env starts a second node ("B") with those environment variables added; KALIMA_BENCH_NODE_ARGS
// applies to both. Each round runs A then B (B then A on odd rounds), 2 s apart.
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { KalimaClient, generateDeviceKey, loadDeviceKey } from '../src/sdk/client.ts';
import { toHex } from '../src/ledger/hash.ts';
import { type NodeProcess, cpuBetween, removeDirectory, startNodeProcess, threadCpu } from './node-process.ts';
import { openLoop } from './ingest.ts';
import { MessageSigner } from './signer.ts';
import { summarize } from './stats.ts';
import { coreCount } from './verify.ts';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '1800' }, rounds: { type: 'string', default: '3' }, duration: { type: 'string', default: '10' },
    devices: { type: 'string', default: '64' }, 'b-env': { type: 'string' }, 'b-config': { type: 'string' }, 'b-root': { type: 'string' }, 'batch-size': { type: 'string', default: '1' },
  },
});
const rate = Number(values.rate);
const rounds = Number(values.rounds);
const durationS = Number(values.duration);
const ADDRESS = '/bench/sensors';

interface Subject {
  name: string;
  node: NodeProcess;
  admin: KalimaClient;
  messages: string[];
  latencies: number[];
  cpuUs: number[];
  committed: number;
  requests: number;
}

async function prepare(name: string, env: Record<string, string>, config: Record<string, unknown> = {}, root?: string): Promise<Subject> {
  const node = await startNodeProcess({ chain: 'bench', logLevel: 'warn', env, config, root });
  const admin = new KalimaClient({ url: node.url, key: await loadDeviceKey(node.adminKeyFile) });
  await admin.createAddress(ADDRESS, 'benchmark sensors');
  const devices = Array.from({ length: Number(values.devices) }, () => generateDeviceKey());
  await Promise.all(devices.map((device, index) => admin.registerDevice(toHex(device.publicKey), { name: `bench-${index}`, pub: [ADDRESS], sub: [ADDRESS] })));
  const signer = new MessageSigner({ chain: 'bench', address: ADDRESS, devices, bodyBytes: 200, keysPerDevice: 16 });
  const messages = await signer.sign(Math.ceil(rate * durationS) * rounds + Math.ceil(rate * 3));
  await signer.close();
  return { name, node, admin, messages, latencies: [], cpuUs: [], committed: 0, requests: 0 };
}

async function runRound(subject: Subject, seconds: number, record: boolean, label: string): Promise<void> {
  const messages = subject.messages.splice(0, Math.ceil(rate * seconds));
  const heightBefore = (await subject.admin.status()).height;
  const before = await threadCpu(subject.node.pid);
  const start = performance.now();
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  const result = await openLoop(subject.node.url, messages, { ratePerSecond: rate, connections: 256, drainTimeoutMs: 30_000, latencies: record ? subject.latencies : undefined, batchSize: Number(values['batch-size']) });
  const wallMs = performance.now() - start;
  loopDelay.disable();
  console.log(`  client event loop delay p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} max ${(loopDelay.max / 1e6).toFixed(1)} ms`);
  const cpu = cpuBetween(before, await threadCpu(subject.node.pid), wallMs, coreCount());
  const blocks = (await subject.admin.status()).height - heightBefore;
  const perMessage = (cores: number): number => Math.round((cores * wallMs * 1000) / Math.max(1, result.committed));
  if (record) {
    subject.committed += result.committed;
    subject.requests += result.requests;
    subject.cpuUs.push(perMessage(cpu.total));
  }
  console.log(`${subject.name} ${label}: ${result.committed}/${result.requests} p50 ${result.latency.p50Ms.toFixed(1)} p99 ${result.latency.p99Ms.toFixed(1)} max ${result.latency.maxMs.toFixed(1)} ms; ${(result.committed / Math.max(1, blocks)).toFixed(1)} msgs/block; node µs/msg main ${perMessage(cpu.main)} verify ${perMessage(cpu.busiestOthers)} total ${perMessage(cpu.total)}; send lag p99 ${result.sendLagP99Ms?.toFixed(1)} ms${Object.keys(result.errors).length > 0 ? `; errors ${JSON.stringify(result.errors)}` : ''}`);
}

const parseEnv = (text: string): Record<string, string> => Object.fromEntries(text.split(',').filter(Boolean).map((pair) => {
  const at = pair.indexOf('=');
  if (at <= 0) throw new Error(`--b-env takes NAME=VALUE pairs, got ${pair}`);
  return [pair.slice(0, at), pair.slice(at + 1)];
}));

// --b-config NAME=JSON,... sets keys of B's config.json (for example verifierThreads=1).
const parseConfig = (text: string): Record<string, unknown> => Object.fromEntries(Object.entries(parseEnv(text)).map(([name, value]) => [name, JSON.parse(value) as unknown]));

const subjects: Subject[] = [await prepare('A', {})];
// --b-root DIR runs B from another checkout (git worktree add DIR COMMIT; its node_modules linked to this one's).
if (values['b-env'] !== undefined || values['b-config'] !== undefined || values['b-root'] !== undefined) {
  const label = [values['b-env'], values['b-config'], values['b-root']].filter(Boolean).join(',');
  subjects.push(await prepare(`B(${label})`, parseEnv(values['b-env'] ?? ''), parseConfig(values['b-config'] ?? ''), values['b-root']));
}
const pause = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 2_000));
try {
  for (const subject of subjects) await runRound(subject, 3, false, 'warm-up');
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? subjects : [...subjects].reverse();
    for (const subject of order) {
      await pause();
      await runRound(subject, durationS, true, `round ${round}`);
    }
  }
  for (const subject of subjects) {
    const pooled = summarize(subject.latencies);
    console.log(`${subject.name} pooled over ${rounds} rounds: ${subject.committed}/${subject.requests} committed, p50 ${pooled.p50Ms} p99 ${pooled.p99Ms} max ${pooled.maxMs} ms; node µs/msg per round ${subject.cpuUs.join(' ')}`);
  }
} finally {
  for (const subject of subjects) {
    await subject.node.stop();
    await removeDirectory(subject.node.directory);
  }
}
