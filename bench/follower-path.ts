// A focused measure of a follower's main-thread cost per message of a replicated block, without
// Raft or links: a single-master chain of full blocks is made first (in memory), then a second store
// on LevelDB takes each block the way a cluster follower does: the block gate checks it (every
// signature, inline, with the node's verifier backend), then the block is committed to the store
// (one synced write) and applied to the MemCache. The main thread's CPU time comes from /proc.
// `npx tsx bench/follower-path.ts [messages] [--profile FILE]`.
import { readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_PARAMS } from '../src/access/genesis.ts';
import { ADDRESSES_ADDRESS, DEVICES_ADDRESS, encodeAddressRecord, encodeDeviceRecord } from '../src/access/records.ts';
import { BlockGate } from '../src/consensus/block-gate.ts';
import { toHex } from '../src/ledger/hash.ts';
import { type Message, signMessage } from '../src/ledger/message.ts';
import { generateKeyPair } from '../src/ledger/signature.ts';
import { KalimaNode } from '../src/node/node.ts';
import { InlineVerifier } from '../src/node/verifier.ts';
import { silentLogger, systemClock, systemRng, systemScheduler } from '../src/ports.ts';
import { ChainStore } from '../src/store/chain-store.ts';
import { LevelKvStore } from '../src/store/level-kv.ts';
import { MemoryKvStore } from '../src/store/memory-kv.ts';
import { openVerified } from '../src/store/verify.ts';

const total = Number(process.argv[2] ?? 20_000);
if (!Number.isSafeInteger(total) || total < 1000) throw new Error('usage: tsx bench/follower-path.ts [messages >= 1000] [--profile FILE]');
const keepAlive = setInterval(() => {}, 1000);
const devices = 64;
const admin = generateKeyPair(systemRng);
const nodeKey = generateKeyPair(systemRng);
const genesis = { chain: 'follow', timeMs: Date.now() - 1000, admins: [admin.publicKey], masters: [nodeKey.publicKey], validators: [], params: DEFAULT_PARAMS };
const verifier = new InlineVerifier();
const leaderStore = new ChainStore(new MemoryKvStore());
const leader = await KalimaNode.open({ genesis, store: leaderStore, nodeKey, clock: systemClock, rng: systemRng, scheduler: systemScheduler, verifier, logger: silentLogger });
let adminNonce = 1;
const sign = (key: ReturnType<typeof generateKeyPair>, address: string, itemKey: string, body: Uint8Array, nonce: number): Message =>
  signMessage({ chain: 'follow', address, key: itemKey, body, ttlSeconds: -1, props: [], device: key.publicKey, nonce }, key.secretKey, systemRng.bytes(32));
await leader.submit(sign(admin, ADDRESSES_ADDRESS, '/bench', encodeAddressRecord({ description: '' }), adminNonce++));
const keys = Array.from({ length: devices }, () => generateKeyPair(systemRng));
await Promise.all(keys.map((key) => leader.submit(sign(admin, DEVICES_ADDRESS, toHex(key.publicKey), encodeDeviceRecord({ name: '', pub: ['/bench'], sub: [] }), adminNonce++))));
const setupHeight = leader.height;
for (let from = 0; from < total; from += 512) {
  const batch: Promise<unknown>[] = [];
  for (let index = from; index < Math.min(total, from + 512); index++) {
    const device = index % devices;
    batch.push(leader.submit(sign(keys[device]!, '/bench', `k${device}-${Math.floor(index / devices) % 16}`, systemRng.bytes(200), Math.floor(index / devices) + 1)));
  }
  await Promise.all(batch);
}
const blocks: Uint8Array[] = [];
for (let height = 1; height <= leader.height; height++) blocks.push((await leaderStore.getBlockBytes(height))!);
await leader.close();

const directory = join(tmpdir(), `kalima-follower-path-${process.pid}`);
const store = new ChainStore(await LevelKvStore.open(directory));
const { tip, cache } = await openVerified(store, genesis);
const gate = new BlockGate({ genesis, verifier, cache, applied: { index: 0, tip } });
const keyHex = toHex(nodeKey.publicKey);
const mainThreadCpuMs = (): number => {
  const fields = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
};
const follow = async (from: number, to: number): Promise<number> => {
  let messages = 0;
  for (let index = from; index < to; index++) {
    const { admitted, refusal } = await gate.admit([{ index: index + 1, term: 1, data: blocks[index]! }], { term: 1, keyHex });
    if (admitted !== 1) throw new Error(`block ${index + 1} refused: ${String(refusal?.message)} ${JSON.stringify(refusal?.details)}`);
    const write = gate.get(index + 1)!.block!;
    await store.commitBlocks([write]);
    cache.apply(write.changes);
    gate.applied(index + 1);
    messages += write.block.messages.length;
  }
  return messages;
};
const warm = setupHeight + Math.floor((blocks.length - setupHeight) / 4);
await follow(0, warm);
const profileIndex = process.argv.indexOf('--profile');
const session = profileIndex > 0 ? new Session() : undefined;
if (session !== undefined) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
}
const startCpu = mainThreadCpuMs();
const started = performance.now();
const messages = await follow(warm, blocks.length);
const elapsedMs = performance.now() - started;
const busyMs = mainThreadCpuMs() - startCpu;
if (session !== undefined) {
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(process.argv[profileIndex + 1]!, JSON.stringify(profile));
  session.disconnect();
}
console.log(`${messages} messages in ${blocks.length - warm} blocks (${(messages / (blocks.length - warm)).toFixed(1)} a block) in ${elapsedMs.toFixed(0)} ms: main thread ${((busyMs * 1000) / messages).toFixed(1)} µs CPU/msg, ${((busyMs * 1000) / (blocks.length - warm)).toFixed(0)} µs CPU/block`);
await store.close();
await rm(directory, { recursive: true, force: true });
clearInterval(keepAlive);
