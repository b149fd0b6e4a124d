// A focused measure of the node's own main-thread cost per message, without HTTP: an in-process
// node on LevelDB with the worker-pool verifier, fed pre-signed messages through submit(). The
// main thread's CPU time comes from /proc (Linux), so it does not count the verifier threads. `npx tsx bench/hot-path.ts [messages]`.
import { performance } from 'node:perf_hooks';
import { rm } from 'node:fs/promises';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { ADDRESSES_ADDRESS, DEVICES_ADDRESS, encodeAddressRecord, encodeDeviceRecord } from '../src/access/records.ts';
import { toHex } from '../src/ledger/hash.ts';
import { type Message, signMessage } from '../src/ledger/message.ts';
import { generateKeyPair } from '../src/ledger/signature.ts';
import { KalimaNode } from '../src/node/node.ts';
import { WorkerPoolVerifier } from '../src/node/verifier.ts';
import { silentLogger, systemClock, systemRng, systemScheduler } from '../src/ports.ts';
import { ChainStore } from '../src/store/chain-store.ts';
import { LevelKvStore } from '../src/store/level-kv.ts';
import { DEFAULT_PARAMS } from '../src/access/genesis.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const total = Number(process.argv[2] ?? 20_000);
if (!Number.isSafeInteger(total) || total < 1000) throw new Error('usage: tsx bench/hot-path.ts [messages >= 1000] [--in-flight N] [--profile FILE] [--heap FILE]');
const inFlightIndex = process.argv.indexOf('--in-flight');
const inFlight = inFlightIndex > 0 ? Number(process.argv[inFlightIndex + 1]) : undefined;
if (inFlight !== undefined && !(Number.isSafeInteger(inFlight) && inFlight >= 1)) throw new Error('--in-flight takes a whole number of messages of at least 1');
// The node unrefs its timers (a server keeps the process alive); this script has no server.
const keepAlive = setInterval(() => {}, 1000);
const devices = 64;
const directory = join(tmpdir(), `kalima-hot-path-${process.pid}`);
const admin = generateKeyPair(systemRng);
const nodeKey = generateKeyPair(systemRng);
const genesis = { chain: 'hot', timeMs: Date.now() - 1000, admins: [admin.publicKey], masters: [nodeKey.publicKey], validators: [], params: DEFAULT_PARAMS };
const node = await KalimaNode.open({
  genesis, store: new ChainStore(await LevelKvStore.open(directory)), nodeKey, clock: systemClock, rng: systemRng,
  scheduler: systemScheduler, verifier: new WorkerPoolVerifier(2), logger: silentLogger,
});
let adminNonce = 1;
const sign = (key: ReturnType<typeof generateKeyPair>, address: string, itemKey: string, body: Uint8Array, nonce: number): Message =>
  signMessage({ chain: 'hot', address, key: itemKey, body, ttlSeconds: -1, props: [], device: key.publicKey, nonce }, key.secretKey, systemRng.bytes(32));
await node.submit(sign(admin, ADDRESSES_ADDRESS, '/bench', encodeAddressRecord({ description: '' }), adminNonce++));
const keys = Array.from({ length: devices }, () => generateKeyPair(systemRng));
for (const key of keys) await node.submit(sign(admin, DEVICES_ADDRESS, toHex(key.publicKey), encodeDeviceRecord({ name: '', pub: ['/bench'], sub: [] }), adminNonce++));
const messages: Message[] = [];
for (let index = 0; index < total; index++) {
  const device = index % devices;
  messages.push(sign(keys[device]!, '/bench', `k${device}-${Math.floor(index / devices) % 16}`, systemRng.bytes(200), Math.floor(index / devices) + 1));
}
/** CPU time of the main thread (whose thread id is the process id), from /proc, in ms. */
const mainThreadCpuMs = (): number => {
  const fields = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
};
const run = async (slice: Message[]): Promise<{ elapsedMs: number; busyMs: number }> => {
  const startCpu = mainThreadCpuMs();
  const started = performance.now();
  // 8 batches of 64 in flight, as the HTTP batch run; or --in-flight N single messages, which at a
  // small N gives the small blocks of a moderate load.
  let next = 0;
  const batchSize = inFlight === undefined ? 64 : 1;
  const worker = async (): Promise<void> => {
    while (next < slice.length) {
      const batch = slice.slice(next, next + batchSize);
      next += batchSize;
      await Promise.all(batch.map((message) => node.submit(message)));
    }
  };
  await Promise.all(Array.from({ length: inFlight ?? 8 }, worker));
  return { elapsedMs: performance.now() - started, busyMs: mainThreadCpuMs() - startCpu };
};
await run(messages.slice(0, Math.floor(total / 4)));
const measured = messages.slice(Math.floor(total / 4));
// --profile FILE: a CPU profile of the main thread during the measured run only.
const profileIndex = process.argv.indexOf('--profile');
const session = profileIndex > 0 ? new Session() : undefined;
if (session !== undefined) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
}
// --heap FILE: a sampling heap profile of everything allocated during the measured run, garbage included.
const heapIndex = process.argv.indexOf('--heap');
const heapSession = heapIndex > 0 ? new Session() : undefined;
if (heapSession !== undefined) {
  heapSession.connect();
  await heapSession.post('HeapProfiler.enable');
  await heapSession.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
}
const heightBefore = node.height;
const { elapsedMs, busyMs } = await run(measured);
const blocks = node.height - heightBefore;
if (heapSession !== undefined) {
  const { profile } = await heapSession.post('HeapProfiler.stopSampling');
  writeFileSync(process.argv[heapIndex + 1]!, JSON.stringify(profile));
  heapSession.disconnect();
}
if (session !== undefined) {
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(process.argv[profileIndex + 1]!, JSON.stringify(profile));
  session.disconnect();
}
console.log(`${measured.length} messages in ${elapsedMs.toFixed(0)} ms: ${(measured.length / (elapsedMs / 1000)).toFixed(0)} msgs/s, main thread ${((busyMs * 1000) / measured.length).toFixed(1)} µs CPU/msg; ${blocks} blocks of ${(measured.length / Math.max(1, blocks)).toFixed(1)} messages`);
await node.close();
await rm(directory, { recursive: true, force: true });
clearInterval(keepAlive);
