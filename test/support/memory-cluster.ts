// Masters (and validation nodes) of one chain in one process, on an in-memory network, each the
// real ClusterMaster: what the integration tests of the cluster run on.
import { ADDRESSES_ADDRESS, DEVICES_ADDRESS, encodeAddressRecord, encodeDeviceRecord } from '../../src/access/records.ts';
import type { ChainParams, Genesis } from '../../src/access/genesis.ts';
import { decodeMessage, encodeMessage } from '../../src/consensus/codec.ts';
import type { Message } from '../../src/consensus/raft.ts';
import { ClusterMaster, type ClusterTransport } from '../../src/node/cluster.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { type KeyPair, generateKeyPair } from '../../src/ledger/signature.ts';
import { InlineVerifier } from '../../src/node/verifier.ts';
import { type Clock, type Logger, silentLogger, systemScheduler } from '../../src/ports.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { type TestChain, makeChain, makeMessage, seededRng } from './chain.ts';

export type Master = ClusterMaster & { refusals: unknown[] };

/** What masters send each other: Raft's messages, and requests between them (a forwarded write), opaque here. */
export type Wire = Message | { type: 'rpc'; bytes: Uint8Array };

/** Rewrites what one master sends another, as a faulty or forging leader would; undefined drops it. */
export type Tamper = (from: string, to: string, message: Wire) => Wire | undefined;

/** The in-memory network: every message arrives a turn of the event loop later, unless tampered with. */
export function memoryNetwork(tamper: { current: Tamper | undefined }) {
  const handlers = new Map<string, (from: string, bytes: Uint8Array) => void>();
  return (self: string): ClusterTransport => ({
    send(to, bytes) {
      let rewritten: Uint8Array | undefined = bytes;
      if (tamper.current !== undefined) {
        // The first byte says which (net/rpc.ts): 0 for Raft.
        const wire: Wire = bytes[0] === 0 ? decodeMessage(bytes.subarray(1)) : { type: 'rpc', bytes };
        const message = tamper.current(self, to, wire);
        rewritten = message === undefined ? undefined : message.type === 'rpc' ? message.bytes : Uint8Array.of(0, ...encodeMessage(message));
      }
      if (rewritten !== undefined) setImmediate(() => handlers.get(to)?.(self, rewritten));
      // Handed to the network (which may lose it, as a link may).
      return true;
    },
    onMessage(handler) {
      handlers.set(self, handler);
    },
    async close() {
      handlers.delete(self);
    },
  });
}

/** CLUSTER_LOG=1 prints the masters' logs, each line with its master's id. */
export function tagged(id: string): Logger {
  const line = (level: string) => (object: object, message?: string) => console.log(level, id.slice(0, 6), message ?? '', JSON.stringify(object));
  return { debug() {}, info: line('info'), warn: line('warn'), error: line('error') };
}

export interface MemoryCluster {
  chain: TestChain;
  masters: Master[];
  /** The validation nodes (ClusterMasters whose key the genesis file lists as a validator). */
  validators: Master[];
  /** A member's process ends; another starts on the same store (or on an empty one). */
  restart: (master: Master, options?: { empty?: boolean }) => Promise<Master>;
  /** Sets how far a member's clock is off (ms; negative: behind). */
  skew: (member: Master, offsetMs: number) => void;
}

export async function startCluster(
  size: number,
  tamper: { current: Tamper | undefined } = { current: undefined },
  logRetention = 10_000,
  options: { validators?: number; params?: Partial<ChainParams> } = {},
): Promise<MemoryCluster> {
  const base = makeChain('replicated-cluster');
  const keys: KeyPair[] = Array.from({ length: size }, () => generateKeyPair(base.rng));
  const validatorKeys: KeyPair[] = Array.from({ length: options.validators ?? 0 }, () => generateKeyPair(base.rng));
  const genesis: Genesis = { ...base.genesis, masters: keys.map((key) => key.publicKey), validators: validatorKeys.map((key) => key.publicKey), params: { ...base.genesis.params, ...options.params } };
  const chain: TestChain = { ...base, genesis, nodeKey: keys[0]! };
  const network = memoryNetwork(tamper);
  const masters: Master[] = [];
  const validators: Master[] = [];
  const kvs = new Map<string, MemoryKvStore>();
  const offsets = new Map<string, number>();
  const open = async (key: KeyPair, newMember: boolean): Promise<Master> => {
    const id = toHex(key.publicKey);
    if (!kvs.has(id)) kvs.set(id, new MemoryKvStore());
    const clock: Clock = { nowMs: () => Date.now() + (offsets.get(id) ?? 0) };
    const master = await ClusterMaster.open({
      genesis, kv: kvs.get(id)!, nodeKey: key, clock, rng: seededRng(`node-${id}-${Math.random()}`), scheduler: systemScheduler,
      verifier: new InlineVerifier(), logger: process.env.CLUSTER_LOG === undefined ? silentLogger : tagged(id), transport: network(id), tickMs: 5, logRetention, newMember,
    }) as Master;
    master.refusals = [];
    // What the gate refused, for the tests to see (the runtime logs it too).
    const admit = master.gate.admit.bind(master.gate);
    master.gate.admit = async (entries, leader) => {
      const admission = await admit(entries, leader);
      if (admission.refusal !== undefined) master.refusals.push(admission.refusal);
      return admission;
    };
    return master;
  };
  for (const key of keys) masters.push(await open(key, true));
  for (const key of validatorKeys) validators.push(await open(key, true));
  for (const member of [...masters, ...validators]) member.start();
  const restart = async (old: Master, restartOptions: { empty?: boolean } = {}): Promise<Master> => {
    await old.close();
    if (restartOptions.empty === true) kvs.set(old.id, new MemoryKvStore());
    const key = [...keys, ...validatorKeys].find((candidate) => toHex(candidate.publicKey) === old.id)!;
    // Restarted on an empty store, it is not a new chain's member: it may have lost its disk.
    const fresh = await open(key, false);
    const list = masters.includes(old) ? masters : validators;
    list[list.indexOf(old)] = fresh;
    fresh.start();
    return fresh;
  };
  return { chain, masters, validators, restart, skew: (member, offsetMs) => offsets.set(member.id, offsetMs) };
}

export async function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Through `master`: the address /plant, and a device that may write and read it. */
export async function plantWithSensor(chain: TestChain, master: ClusterMaster): Promise<KeyPair> {
  await master.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/plant', body: encodeAddressRecord({ description: '' }) }));
  const device = generateKeyPair(chain.rng);
  await master.node.submit(makeMessage(chain, chain.admin, { address: DEVICES_ADDRESS, key: toHex(device.publicKey), body: encodeDeviceRecord({ name: 'sensor', pub: ['/plant'], sub: ['/plant'] }) }));
  return device;
}

/** The master that may produce, once one may. */
export async function leaderOf<T extends ClusterMaster>(masters: readonly T[], timeoutMs = 10_000): Promise<T> {
  await until('a leader that may produce', () => masters.some((master) => master.replicator.mayProduce()), timeoutMs);
  return masters.find((master) => master.replicator.mayProduce())!;
}
