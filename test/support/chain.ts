// Test fixtures: a chain with a genesis, an admin and a node key, run in-process on a chosen store.
import { createHash } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { DEFAULT_PARAMS, type Genesis } from '../../src/access/genesis.ts';
import { buildApi } from '../../src/api/server.ts';
import type { EventHub } from '../../src/api/events.ts';
import { type KeyPair, generateKeyPair } from '../../src/ledger/signature.ts';
import { type Message, type UnsignedMessage, canonicalProps, signMessage } from '../../src/ledger/message.ts';
import { KalimaNode } from '../../src/node/node.ts';
import { InlineVerifier } from '../../src/node/verifier.ts';
import { type Clock, type Rng, type Scheduler, silentLogger, systemClock, systemScheduler } from '../../src/ports.ts';
import { ChainStore } from '../../src/store/chain-store.ts';
import type { KvStore } from '../../src/store/kv.ts';
import { LevelKvStore } from '../../src/store/level-kv.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';

/** Deterministic randomness from a seed: SHA-256 in counter mode. */
export function seededRng(seed: string | number): Rng {
  let counter = 0;
  return {
    bytes(length: number): Uint8Array {
      const out = new Uint8Array(length);
      for (let offset = 0; offset < length; offset += 32) {
        const block = createHash('sha256').update(`${seed}:${counter++}`).digest();
        out.set(block.subarray(0, Math.min(32, length - offset)), offset);
      }
      return out;
    },
  };
}

export interface TestChain {
  genesis: Genesis;
  admin: KeyPair;
  nodeKey: KeyPair;
  rng: Rng;
}

export function makeChain(seed: string | number = 1, chain = 'testchain'): TestChain {
  const rng = seededRng(seed);
  const admin = generateKeyPair(rng);
  const nodeKey = generateKeyPair(rng);
  const genesis: Genesis = { chain, timeMs: 1_700_000_000_000, admins: [admin.publicKey], masters: [nodeKey.publicKey], validators: [], params: { ...DEFAULT_PARAMS, blockDelayMs: 1 } };
  return { genesis, admin, nodeKey, rng };
}

export async function tempDir(prefix = 'kalima-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function openNode(chain: TestChain, options: { kv?: KvStore; clock?: Clock; scheduler?: Scheduler } = {}): Promise<KalimaNode> {
  return KalimaNode.open({
    genesis: chain.genesis,
    store: new ChainStore(options.kv ?? new MemoryKvStore()),
    nodeKey: chain.nodeKey,
    clock: options.clock ?? systemClock,
    rng: chain.rng,
    scheduler: options.scheduler ?? systemScheduler,
    verifier: new InlineVerifier(),
    logger: silentLogger,
  });
}

/** Opens a node on LevelDB; if the open fails, the database is closed again (it holds a lock). */
export async function openLevelNode(chain: TestChain, directory: string, options: { clock?: Clock } = {}): Promise<KalimaNode> {
  const kv = await LevelKvStore.open(directory);
  try {
    return await openNode(chain, { kv, clock: options.clock });
  } catch (error) {
    await kv.close();
    throw error;
  }
}

export async function openApi(node: KalimaNode): Promise<{ app: FastifyInstance; events: EventHub }> {
  return buildApi({ node, logger: false, version: 'test' });
}

let nonceCounter = 1;

/** A signed message; nonce defaults to a fresh one. */
export function makeMessage(chain: TestChain, key: KeyPair, fields: Partial<Omit<UnsignedMessage, 'body'>> & { address: string; key: string; body?: Uint8Array | string }): Message {
  const body = typeof fields.body === 'string' ? new TextEncoder().encode(fields.body) : (fields.body ?? new TextEncoder().encode('value'));
  const unsigned: UnsignedMessage = {
    chain: fields.chain ?? chain.genesis.chain,
    address: fields.address,
    key: fields.key,
    body,
    ttlSeconds: fields.ttlSeconds ?? -1,
    props: canonicalProps(fields.props ?? []),
    device: key.publicKey,
    nonce: fields.nonce ?? nonceCounter++,
  };
  return signMessage(unsigned, key.secretKey, chain.rng.bytes(32));
}

import { ADDRESSES_ADDRESS, DEVICES_ADDRESS, encodeAddressRecord, encodeDeviceRecord } from '../../src/access/records.ts';
import { toHex } from '../../src/ledger/hash.ts';

export async function createAddress(node: KalimaNode, chain: TestChain, address: string): Promise<void> {
  await node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: address, body: encodeAddressRecord({ description: '' }) }));
}

/** Registers a new device key with the given PUB and SUB prefixes. */
export async function registerDevice(node: KalimaNode, chain: TestChain, permissions: { pub: string[]; sub: string[] }): Promise<KeyPair> {
  const device = generateKeyPair(chain.rng);
  await node.submit(makeMessage(chain, chain.admin, { address: DEVICES_ADDRESS, key: toHex(device.publicKey), body: encodeDeviceRecord({ name: 'test', ...permissions }) }));
  return device;
}

import { genesisHash } from '../../src/access/genesis.ts';

/** The genesis hash in hex, as request signatures commit to it. */
export function genesisHashHex(chain: TestChain): string {
  return toHex(genesisHash(chain.genesis));
}
