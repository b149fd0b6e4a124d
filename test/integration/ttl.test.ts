// TTL expiry, on a manual clock and a scheduler the test drives: "When it runs out, the system
// writes a delete transaction itself." The delete is a message on the chain, signed by the block
// producer, and only the producer may write one, and only once the value has expired.
import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { KalimaError, type KalimaErrorCode } from '../../src/errors.ts';
import { utf8Bytes as utf8 } from '../../src/ledger/codec.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { encodeBlock } from '../../src/ledger/block.ts';
import { BLOCK_BYTES_MAX, EXPIRIES_PER_BLOCK_MAX } from '../../src/ledger/limits.ts';
import type { Message } from '../../src/ledger/message.ts';
import type { KeyPair } from '../../src/ledger/signature.ts';
import { type CommitReceipt, type CommittedBlock, DEVICE_IN_FLIGHT_MAX, type KalimaNode } from '../../src/node/node.ts';
import { ManualClock, type Scheduler } from '../../src/ports.ts';
import { type ChainMessage, KalimaClient } from '../../src/sdk/client.ts';
import { SYSTEM_REASON_PROP, SYSTEM_REASON_TTL } from '../../src/state/execute.ts';
import { ChainStore } from '../../src/store/chain-store.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { repairState } from '../../src/store/repair.ts';
import { type TestChain, createAddress, makeChain, makeMessage, openApi, openNode, registerDevice } from '../support/chain.ts';

const ADDRESS = '/ttl/plant';
const BLOCK_DELAY_MS = 1;

/** Lets every promise chain that waits on nothing but other promises run to its end. */
async function settle(): Promise<void> {
  for (let round = 0; round < 3; round++) await new Promise((resolve) => setImmediate(resolve));
}

/** Timers on a ManualClock: they fire only when the test moves the clock past them. */
class ManualScheduler implements Scheduler {
  private readonly timers = new Map<number, { dueMs: number; callback: () => void }>();
  private nextId = 1;

  constructor(private readonly clock: ManualClock) {}

  setTimeout(callback: () => void, delayMs: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { dueMs: this.clock.nowMs() + delayMs, callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Moves the clock forward, firing each timer at its due time, in order, and letting it finish. */
  async advance(deltaMs: number): Promise<void> {
    const endMs = this.clock.nowMs() + deltaMs;
    for (let fired = 0; ; fired++) {
      if (fired > 10_000) throw new Error('timers keep firing: a timer loop');
      await settle();
      let next: [number, { dueMs: number; callback: () => void }] | undefined;
      for (const timer of this.timers) if (timer[1].dueMs <= endMs && (next === undefined || timer[1].dueMs < next[1].dueMs)) next = timer;
      if (next === undefined) break;
      this.timers.delete(next[0]);
      this.clock.set(Math.max(this.clock.nowMs(), next[1].dueMs));
      next[1].callback();
    }
    this.clock.set(endMs);
    await settle();
  }
}

interface Harness {
  chain: TestChain;
  kv: MemoryKvStore;
  clock: ManualClock;
  scheduler: ManualScheduler;
  node: KalimaNode;
  device: KeyPair;
  blocks: CommittedBlock[];
}

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const item of open.splice(0).reverse()) await item.close();
});

type NodeParts = Pick<Harness, 'chain' | 'kv' | 'clock' | 'scheduler' | 'blocks'>;

/** Opens a node on the harness's store, clock and scheduler, and records the blocks it commits. */
async function openOn(parts: NodeParts): Promise<KalimaNode> {
  const node = await openNode(parts.chain, { kv: parts.kv, clock: parts.clock, scheduler: parts.scheduler });
  open.push(node);
  node.onBlock((block) => parts.blocks.push(block));
  return node;
}

async function reopen(harness: Harness): Promise<void> {
  harness.node = await openOn(harness);
}

/** Waits until `submit` has queued its message, lets the block timer fire, and returns the receipt. */
async function commit(harness: Harness, submitted: Promise<CommitReceipt>): Promise<CommitReceipt> {
  await harness.scheduler.advance(BLOCK_DELAY_MS);
  return submitted;
}

async function setUp(seed: string): Promise<Harness> {
  const chain = makeChain(seed, 'ttlchain');
  const clock = new ManualClock(chain.genesis.timeMs + 60_000);
  const parts: NodeParts = { chain, kv: new MemoryKvStore(), clock, scheduler: new ManualScheduler(clock), blocks: [] };
  const node = await openOn(parts);
  const created = createAddress(node, chain, ADDRESS);
  await parts.scheduler.advance(BLOCK_DELAY_MS);
  await created;
  const registered = registerDevice(node, chain, { pub: ['/ttl'], sub: ['/ttl'] });
  await parts.scheduler.advance(BLOCK_DELAY_MS);
  return { ...parts, node, device: await registered };
}

function write(harness: Harness, key: string, body: string, ttlSeconds: number): Promise<CommitReceipt> {
  return commit(harness, harness.node.submit(makeMessage(harness.chain, harness.device, { address: ADDRESS, key, body: utf8(body), ttlSeconds })));
}

function text(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('utf8');
}

function deadlineOf(harness: Harness, key: string): number {
  const entry = harness.node.getEntry(ADDRESS, key);
  expect(entry, `an entry at ${key}`).toBeDefined();
  expect(entry!.ttlSeconds).toBeGreaterThan(0);
  return entry!.timeMs + entry!.ttlSeconds * 1000;
}

/** The TTL deletes the chain holds at ADDRESS, in order. */
async function ttlDeletes(harness: Harness): Promise<Array<{ key: string; sequence: number; height: number; timeMs: number; message: Message }>> {
  const history = await harness.node.history(ADDRESS, { fromSequence: 0, limit: 1000 });
  return history
    .filter((located) => located.committed.message.props.some(([name, value]) => name === SYSTEM_REASON_PROP && value === SYSTEM_REASON_TTL))
    .map((located) => ({ key: located.committed.message.key, sequence: located.committed.sequence, height: located.height, timeMs: located.timeMs, message: located.committed.message }));
}

/** Closes the node, rebuilds the MemCache from the blocks, reopens, and returns the digest of the rebuilt MemCache. */
async function repairAndReopen(harness: Harness): Promise<string> {
  await harness.node.close();
  const repaired = await repairState(new ChainStore(harness.kv), harness.chain.genesis);
  expect(repaired.height).toBe(harness.node.height);
  await reopen(harness);
  expect(harness.node.height).toBe(repaired.height);
  expect(toHex(harness.node.tipRecord.stateDigest)).toBe(toHex(harness.node.cache.digest()));
  return toHex(harness.node.cache.digest());
}

/** An SDK client whose HTTP goes to the node's API in-process. */
async function sdkClient(harness: Harness, key: KeyPair): Promise<KalimaClient> {
  const { app } = await openApi(harness.node);
  open.push(app as FastifyInstance);
  const injected = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    const response = await app.inject({
      method: (init?.method ?? 'GET') as 'GET',
      url: `${url.pathname}${url.search}`,
      headers: init?.headers as Record<string, string> | undefined,
      payload: init?.body as string | undefined,
    });
    return new Response(response.body, { status: response.statusCode, headers: { 'content-type': String(response.headers['content-type'] ?? 'application/json') } });
  }) as typeof fetch;
  return new KalimaClient({ url: 'http://node.test', key, chain: harness.chain.genesis.chain, clock: harness.clock, fetch: injected });
}

describe('a value written with a TTL', () => {
  it('stays until its deadline, then the producer deletes it with a message of its own', async () => {
    const harness = await setUp('expiry');
    const receipt = await write(harness, 'door', 'open', 1);
    expect(text(harness.node.getEntry(ADDRESS, 'door')!.value)).toBe('open');
    const deadlineMs = deadlineOf(harness, 'door');
    expect(deadlineMs).toBe(receipt.timeMs + 1000);
    const heightAfterWrite = harness.node.height;

    await harness.scheduler.advance(deadlineMs - 1 - harness.clock.nowMs());
    expect(harness.node.getEntry(ADDRESS, 'door'), 'still there 1 ms before the deadline').toBeDefined();
    expect(harness.node.height).toBe(heightAfterWrite);

    harness.blocks.length = 0;
    await harness.scheduler.advance(1 + BLOCK_DELAY_MS);
    expect(harness.node.getEntry(ADDRESS, 'door'), 'gone after the deadline').toBeUndefined();
    expect(harness.node.height).toBe(heightAfterWrite + 1);
    expect(harness.blocks).toHaveLength(1);
    const [block] = harness.blocks;
    expect(block!.block.header.timeMs).toBeGreaterThanOrEqual(deadlineMs);
    expect(block!.block.messages).toHaveLength(1);
    const deletion = block!.block.messages[0]!;
    expect(deletion.message).toMatchObject({ address: ADDRESS, key: 'door', ttlSeconds: -1, props: [[SYSTEM_REASON_PROP, SYSTEM_REASON_TTL]] });
    expect(deletion.message.body).toHaveLength(0);
    expect(toHex(deletion.message.device)).toBe(toHex(harness.chain.nodeKey.publicKey));
    expect(deletion.sequence).toBe(receipt.sequence + 1);
    expect(deletion.previous).toBe(receipt.sequence);

    // The chain's history shows the delete, as the ledger and as the SDK sees it.
    const deletes = await ttlDeletes(harness);
    expect(deletes.map(({ key, sequence }) => ({ key, sequence }))).toEqual([{ key: 'door', sequence: receipt.sequence + 1 }]);
    const client = await sdkClient(harness, harness.device);
    const history: ChainMessage[] = [];
    for await (const message of client.history(ADDRESS)) history.push(message);
    expect(history.map(({ key, deleted }) => ({ key, deleted }))).toEqual([{ key: 'door', deleted: false }, { key: 'door', deleted: true }]);
    expect(history[1]!.body).toHaveLength(0);
    expect(history[1]!.props.reason).toBe('ttl');
    expect(history[1]!.device).toBe(toHex(harness.chain.nodeKey.publicKey));
    expect(await client.get(ADDRESS, 'door')).toBeUndefined();

    // The digest the block carries is the MemCache's, and the blocks rebuild exactly it.
    const digestHex = toHex(harness.node.tipRecord.stateDigest);
    expect(toHex(block!.block.header.stateDigest)).toBe(digestHex);
    expect(toHex(harness.node.cache.digest())).toBe(digestHex);
    expect(await repairAndReopen(harness)).toBe(digestHex);
    expect(toHex(harness.node.cache.digest())).toBe(digestHex);
    expect(harness.node.getEntry(ADDRESS, 'door')).toBeUndefined();

    // Nothing is left to expire: time passing writes no more blocks.
    const heightAfterRepair = harness.node.height;
    await harness.scheduler.advance(60_000);
    expect(harness.node.height).toBe(heightAfterRepair);
  });

  it('several values due at once go in one block, and a value due later waits for its own deadline', async () => {
    const harness = await setUp('several');
    const writes = ['a', 'b', 'c'].map((key) => harness.node.submit(makeMessage(harness.chain, harness.device, { address: ADDRESS, key, body: utf8(`v-${key}`), ttlSeconds: 1 })));
    await harness.scheduler.advance(BLOCK_DELAY_MS);
    const receipts = await Promise.all(writes);
    expect(new Set(receipts.map((receipt) => receipt.height)).size).toBe(1);
    await write(harness, 'later', 'v-later', 5);

    harness.blocks.length = 0;
    await harness.scheduler.advance(deadlineOf(harness, 'a') - harness.clock.nowMs() + BLOCK_DELAY_MS);
    expect(harness.blocks).toHaveLength(1);
    expect(harness.blocks[0]!.block.messages.map((committed) => committed.message.key).sort()).toEqual(['a', 'b', 'c']);
    expect(harness.node.getEntry(ADDRESS, 'later')).toBeDefined();

    await harness.scheduler.advance(deadlineOf(harness, 'later') - harness.clock.nowMs() + BLOCK_DELAY_MS);
    expect(harness.node.getEntry(ADDRESS, 'later')).toBeUndefined();
    const deletedKeys = (await ttlDeletes(harness)).map(({ key }) => key);
    expect([...deletedKeys.slice(0, 3).sort(), deletedKeys[3]]).toEqual(['a', 'b', 'c', 'later']);
    const digestHex = toHex(harness.node.tipRecord.stateDigest);
    expect(await repairAndReopen(harness)).toBe(digestHex);
  });

  it('more values due at once than one block takes are deleted over several blocks, each within the size bound', async () => {
    const harness = await setUp('crowd');
    // Long addresses and keys make long deletes: EXPIRIES_PER_BLOCK_MAX of these do not fit in BLOCK_BYTES_MAX.
    const longAddress = `${ADDRESS}/${'a'.repeat(200)}`;
    const created = createAddress(harness.node, harness.chain, longAddress);
    await harness.scheduler.advance(BLOCK_DELAY_MS);
    await created;
    const count = EXPIRIES_PER_BLOCK_MAX + 6;
    const keyOf = (index: number): string => `${String(index).padStart(3, '0')}-${'k'.repeat(200)}`;
    // In waves: a device may have at most DEVICE_IN_FLIGHT_MAX writes waiting.
    const receipts: CommitReceipt[] = [];
    for (let start = 0; start < count; start += DEVICE_IN_FLIGHT_MAX) {
      const writes = Array.from({ length: Math.min(DEVICE_IN_FLIGHT_MAX, count - start) }, (_unused, offset) =>
        harness.node.submit(makeMessage(harness.chain, harness.device, { address: longAddress, key: keyOf(start + offset), body: utf8('v'), ttlSeconds: 1 })));
      // They fill several blocks; let every block timer run.
      await harness.scheduler.advance(10 * BLOCK_DELAY_MS);
      receipts.push(...(await Promise.all(writes)));
    }
    expect(new Set(receipts.map((receipt) => receipt.height)).size).toBeGreaterThan(1);
    const lastDeadlineMs = Math.max(...receipts.map((receipt) => receipt.timeMs)) + 1000;

    // The clock jumps past every deadline before the producer runs (as over a restart), so all are due at once.
    harness.blocks.length = 0;
    harness.clock.set(lastDeadlineMs + 5);
    await harness.scheduler.advance(10 * BLOCK_DELAY_MS);
    for (let index = 0; index < count; index++) expect(harness.node.getEntry(longAddress, keyOf(index)), keyOf(index)).toBeUndefined();
    expect(harness.blocks.length).toBeGreaterThan(1);
    for (const { block } of harness.blocks) expect(encodeBlock(block).length).toBeLessThanOrEqual(BLOCK_BYTES_MAX);
    expect(harness.blocks.reduce((sum, { block }) => sum + block.messages.length, 0)).toBe(count);
    const digestHex = toHex(harness.node.tipRecord.stateDigest);
    expect(await repairAndReopen(harness)).toBe(digestHex);
  });

  it('expires after a restart, and at once when the deadline passed while the node was down', async () => {
    const harness = await setUp('restart');
    await write(harness, 'soon', 'x', 2);
    await write(harness, 'missed', 'y', 1);
    const soonDeadlineMs = deadlineOf(harness, 'soon');
    await harness.node.close();

    // Down past one deadline but not the other.
    harness.clock.set(soonDeadlineMs - 500);
    await reopen(harness);
    await harness.scheduler.advance(BLOCK_DELAY_MS);
    expect(harness.node.getEntry(ADDRESS, 'missed'), 'its deadline passed while the node was down').toBeUndefined();
    expect(harness.node.getEntry(ADDRESS, 'soon')).toBeDefined();

    await harness.scheduler.advance(soonDeadlineMs - harness.clock.nowMs() + BLOCK_DELAY_MS);
    expect(harness.node.getEntry(ADDRESS, 'soon')).toBeUndefined();
    expect((await ttlDeletes(harness)).map(({ key }) => key)).toEqual(['missed', 'soon']);
    const digestHex = toHex(harness.node.tipRecord.stateDigest);
    expect(await repairAndReopen(harness)).toBe(digestHex);
  });
});

describe('a write before the deadline replaces the expiry', () => {
  it('ttl -1 cancels it: the value stays for good and no delete is written', async () => {
    const harness = await setUp('cancel');
    await write(harness, 'valve', 'closing', 1);
    const oldDeadlineMs = deadlineOf(harness, 'valve');
    await harness.scheduler.advance(500);
    await write(harness, 'valve', 'closed', -1);
    const heightAfterOverwrite = harness.node.height;

    await harness.scheduler.advance(oldDeadlineMs - harness.clock.nowMs() + 3_600_000);
    expect(harness.node.height, 'no block after the overwrite').toBe(heightAfterOverwrite);
    const entry = harness.node.getEntry(ADDRESS, 'valve');
    expect(text(entry!.value)).toBe('closed');
    expect(entry!.ttlSeconds).toBe(-1);
    expect(await ttlDeletes(harness)).toEqual([]);
    const digestHex = toHex(harness.node.tipRecord.stateDigest);
    expect(await repairAndReopen(harness)).toBe(digestHex);
    // Nor after a restart, which rebuilds the expiry queue from the stored entries.
    await harness.scheduler.advance(3_600_000);
    expect(harness.node.height).toBe(heightAfterOverwrite);
  });

  it('a longer ttl moves the deadline: the old one passes, the new one deletes', async () => {
    const harness = await setUp('extend');
    await write(harness, 'lease', 'first', 1);
    const oldDeadlineMs = deadlineOf(harness, 'lease');
    await harness.scheduler.advance(400);
    await write(harness, 'lease', 'second', 3);
    const newDeadlineMs = deadlineOf(harness, 'lease');
    expect(newDeadlineMs).toBeGreaterThan(oldDeadlineMs + 1000);

    await harness.scheduler.advance(oldDeadlineMs - harness.clock.nowMs() + 1000);
    expect(text(harness.node.getEntry(ADDRESS, 'lease')!.value)).toBe('second');
    expect(await ttlDeletes(harness)).toEqual([]);

    await harness.scheduler.advance(newDeadlineMs - harness.clock.nowMs() + BLOCK_DELAY_MS);
    expect(harness.node.getEntry(ADDRESS, 'lease')).toBeUndefined();
    expect((await ttlDeletes(harness)).map(({ key }) => key)).toEqual(['lease']);
  });

  it('rewriting a value with a long ttl behind an earlier deadline keeps the expiry queue bounded, and the live deadlines still delete', async () => {
    const harness = await setUp('rewrite-often');
    // A value written once holds the earliest live deadline, so the hot key's stale ones sit behind it.
    await write(harness, 'serial', 'A-113', 86_400);
    const writes = 1_500;
    for (let index = 0; index < writes; index++) await write(harness, 'gauge', `reading ${index}`, 86_400);
    // One live deadline, the rest stale: swept once they outnumber twice the entries plus a slack.
    expect(harness.node.cache.expiryCount).toBeLessThanOrEqual(2 * harness.node.cache.size + 1_024);
    expect(harness.node.cache.expiryCount).toBeLessThan(writes);
    const deadlineMs = deadlineOf(harness, 'gauge');
    await harness.scheduler.advance(deadlineMs - harness.clock.nowMs() + BLOCK_DELAY_MS);
    expect(harness.node.getEntry(ADDRESS, 'gauge')).toBeUndefined();
    expect(harness.node.getEntry(ADDRESS, 'serial')).toBeUndefined();
    const deletes = (await harness.node.history(ADDRESS, { fromSequence: writes + 1, limit: 10 }))
      .filter((located) => located.committed.message.props.some(([name, value]) => name === SYSTEM_REASON_PROP && value === SYSTEM_REASON_TTL));
    expect(deletes.map((located) => located.committed.message.key)).toEqual(['serial', 'gauge']);
  });

  it('a delete by the device first leaves nothing for the producer to delete', async () => {
    const harness = await setUp('deleted-first');
    await write(harness, 'tmp', 'scratch', 1);
    const deadlineMs = deadlineOf(harness, 'tmp');
    await commit(harness, harness.node.submit(makeMessage(harness.chain, harness.device, { address: ADDRESS, key: 'tmp', body: new Uint8Array() })));
    const height = harness.node.height;
    await harness.scheduler.advance(deadlineMs - harness.clock.nowMs() + 60_000);
    expect(harness.node.height).toBe(height);
    expect(await ttlDeletes(harness)).toEqual([]);
  });
});

describe('a TTL delete from anyone but the producer', () => {
  function ttlDelete(harness: Harness, signer: KeyPair, key: string, nonce: number): Message {
    return makeMessage(harness.chain, signer, { address: ADDRESS, key, body: new Uint8Array(), props: [[SYSTEM_REASON_PROP, SYSTEM_REASON_TTL]], nonce });
  }

  /** A refused message is refused at once; one still pending has been queued for a block. */
  async function rejection(submitted: Promise<unknown>): Promise<KalimaErrorCode> {
    let outcome: { error: unknown } | undefined;
    submitted.then(() => (outcome = { error: undefined }), (error: unknown) => (outcome = { error }));
    await settle();
    expect(outcome, 'the message was queued for a block instead of being refused').toBeDefined();
    expect(outcome!.error, 'the message was committed instead of being refused').toBeInstanceOf(KalimaError);
    return (outcome!.error as KalimaError).code;
  }

  it('is refused as what it is: a write by a device without the right to write there', async () => {
    const harness = await setUp('forged');
    const reader = registerDevice(harness.node, harness.chain, { pub: ['/elsewhere'], sub: ['/ttl'] });
    await harness.scheduler.advance(BLOCK_DELAY_MS);
    const readOnly = await reader;
    const stranger = makeChain('stranger', 'ttlchain').nodeKey;

    await write(harness, 'secret', 'v', 1);
    // The value has expired by the clock, but the producer has not run yet.
    harness.clock.set(deadlineOf(harness, 'secret') + 10);
    const height = harness.node.height;
    const nextGlobalSequence = harness.node.cache.nextGlobalSequence;

    // The nonce a real TTL delete would carry: the global sequence it takes.
    expect(await rejection(harness.node.submit(ttlDelete(harness, readOnly, 'secret', nextGlobalSequence)))).toBe('KALIMA_ERR_ACCESS_PUB_DENIED');
    expect(await rejection(harness.node.submit(ttlDelete(harness, stranger, 'secret', nextGlobalSequence)))).toBe('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE');
    expect(harness.node.height).toBe(height);
    expect(harness.node.pendingCount).toBe(0);

    // The producer's own delete still comes, signed by the node key.
    await harness.scheduler.advance(BLOCK_DELAY_MS);
    const deletes = await ttlDeletes(harness);
    expect(deletes.map(({ key }) => key)).toEqual(['secret']);
    expect(toHex(deletes[0]!.message.device)).toBe(toHex(harness.chain.nodeKey.publicKey));
  });

  it('from a device that may write there, gets none of the producer\'s exemptions: its nonce is checked', async () => {
    const harness = await setUp('exemptions');
    const used = makeMessage(harness.chain, harness.device, { address: ADDRESS, key: 'gauge', body: utf8('first'), ttlSeconds: 1 });
    await commit(harness, harness.node.submit(used));
    harness.clock.set(deadlineOf(harness, 'gauge') + 10);
    // The producer skips the replay window for its deletes; a device may not.
    expect(await rejection(harness.node.submit(ttlDelete(harness, harness.device, 'gauge', used.nonce)))).toBe('KALIMA_ERR_LEDGER_NONCE_REPLAYED');
    expect(harness.node.getEntry(ADDRESS, 'gauge')).toBeDefined();
  });

  it('from the producer key before the deadline, or replayed from the chain, is refused', async () => {
    const harness = await setUp('premature');
    await write(harness, 'early', 'v', 5);
    const height = harness.node.height;
    const leaderDelete = ttlDelete(harness, harness.chain.nodeKey, 'early', harness.node.cache.nextGlobalSequence);
    // The producer key is no device: the node refuses it before it even checks the signature.
    expect(await rejection(harness.node.submit(leaderDelete))).toBe('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE');
    expect(harness.node.getEntry(ADDRESS, 'early')).toBeDefined();
    expect(harness.node.height).toBe(height);

    // Let it expire for real, then send the committed delete again, and a copy for the next write.
    await harness.scheduler.advance(deadlineOf(harness, 'early') - harness.clock.nowMs() + BLOCK_DELAY_MS);
    const [committed] = await ttlDeletes(harness);
    expect(committed).toBeDefined();
    const heightAfterExpiry = harness.node.height;
    expect(await rejection(harness.node.submit(committed!.message))).toBe('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE');
    await write(harness, 'early', 'again', 1);
    harness.clock.set(deadlineOf(harness, 'early') + 10);
    // Nor can it delete the new value.
    expect(await rejection(harness.node.submit(committed!.message))).toBe('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE');
    expect(harness.node.height).toBe(heightAfterExpiry + 1);
  });
});
