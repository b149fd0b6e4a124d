// Pipelined block production: while one block is being written, later blocks are built on the state
// it leaves, then go to disk together (group commit). Nothing of a block is visible, acknowledged or
// streamed before it is durable, and a failed write loses nothing that was acknowledged.
import { describe, expect, it } from 'vitest';
import { isKalimaError } from '../../src/errors.ts';
import { TABLE } from '../../src/store/keys.ts';
import type { KvOperation, KvRange, KvStore } from '../../src/store/kv.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { ManualClock } from '../../src/ports.ts';
import { SYSTEM_REASON_PROP } from '../../src/state/execute.ts';
import { toHex } from '../../src/ledger/hash.ts';
import type { KalimaNode } from '../../src/node/node.ts';
import { createAddress, makeChain, makeMessage, openNode, registerDevice } from '../support/chain.ts';
import { type BlockSigner, InlineBlockSigner, WorkerBlockSigner } from '../../src/node/block-signer.ts';
import { KalimaNode as Node } from '../../src/node/node.ts';
import { InlineVerifier } from '../../src/node/verifier.ts';
import { ChainStore, type MessageLocation } from '../../src/store/chain-store.ts';
import { silentLogger, systemClock, systemScheduler } from '../../src/ports.ts';
import { verifySchnorr } from '../../src/ledger/signature.ts';
import { blockHash } from '../../src/ledger/block.ts';

/** A store whose writes can be held at a gate, released, or made to fail; it records each batch. */
class GatedKv implements KvStore {
  readonly inner = new MemoryKvStore();
  readonly batches: KvOperation[][] = [];
  private held = false;
  private waiting: Array<() => void> = [];
  private failure: Error | undefined;

  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    for (const resume of this.waiting.splice(0)) resume();
  }

  failNext(error: Error): void {
    this.failure = error;
  }

  get blocked(): number {
    return this.waiting.length;
  }

  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.inner.get(key);
  }

  async batch(operations: KvOperation[], options: { sync: boolean }): Promise<void> {
    if (this.held) await new Promise<void>((resume) => this.waiting.push(resume));
    if (this.failure !== undefined) {
      const failure = this.failure;
      this.failure = undefined;
      throw failure;
    }
    this.batches.push(operations);
    await this.inner.batch(operations);
    void options;
  }

  entries(range: KvRange): AsyncIterable<[Uint8Array, Uint8Array]> {
    return this.inner.entries(range);
  }

  closed = false;
  async close(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 10));
    this.closed = true;
  }
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Heights of the blocks a batch writes. */
function blockHeights(operations: KvOperation[]): number[] {
  return operations.filter((operation) => operation.type === 'put' && operation.key[0] === TABLE.blockByHeight).map((operation) => Number(Buffer.from(operation.key).readBigUInt64BE(1)));
}

function track<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let settled = false;
  promise.then(() => (settled = true), () => (settled = true));
  return { promise, settled: () => settled };
}

async function setup(seed: string, clock?: ManualClock): Promise<{ node: KalimaNode; kv: GatedKv; chain: ReturnType<typeof makeChain>; device: Awaited<ReturnType<typeof registerDevice>> }> {
  const chain = makeChain(seed);
  const kv = new GatedKv();
  const node = await openNode(chain, { kv, clock });
  await createAddress(node, chain, '/p');
  const device = await registerDevice(node, chain, { pub: ['/p'], sub: ['/p'] });
  return { node, kv, chain, device };
}

/** A body big enough that a few queued messages fill a 16 KB block: full blocks are built ahead of the disk. */
const BIG = 'x'.repeat(6_000);

describe('pipelined blocks', () => {
  it('builds full blocks while one is written, shows none of them before they are durable, then writes them together', async () => {
    const { node, kv, chain, device } = await setup('pipeline');
    const base = node.height;
    kv.hold();
    const first = track(node.submit(makeMessage(chain, device, { address: '/p', key: 'k0', body: 'v0' })));
    await until(() => node.producedHeight === base + 1, 'the first block');
    // Five 6 KB messages: two full blocks of two are built behind the held write; the fifth waits.
    const big = Array.from({ length: 5 }, (_, index) => track(node.submit(makeMessage(chain, device, { address: '/p', key: `k${index + 1}`, body: BIG }))));
    await until(() => node.producedHeight === base + 3, 'two full blocks');
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(node.producedHeight).toBe(base + 3);
    expect(kv.blocked).toBe(1);
    expect(node.height).toBe(base);
    expect([first, ...big].some((write) => write.settled())).toBe(false);
    expect(node.getEntry('/p', 'k0')).toBeUndefined();
    const batchesBefore = kv.batches.length;
    kv.release();
    const receipts = await Promise.all([first, ...big].map((write) => write.promise));
    expect(receipts.map((receipt) => receipt.height)).toEqual([base + 1, base + 2, base + 2, base + 3, base + 3, base + 4]);
    expect(receipts.map((receipt) => receipt.sequence)).toEqual([0, 1, 2, 3, 4, 5]);
    // One write for the held block, one for the two built behind it, one for the last message.
    expect(kv.batches.slice(batchesBefore).map(blockHeights)).toEqual([[base + 1], [base + 2, base + 3], [base + 4]]);
    expect(node.height).toBe(base + 4);
    expect(new TextDecoder().decode(node.getEntry('/p', 'k0')!.value)).toBe('v0');
    const digest = toHex(node.tipRecord.stateDigest);
    expect(toHex(node.cache.digest())).toBe(digest);
    await node.close();
    // The store verifies from scratch: hashchain, blocks and the digest of the state it holds.
    const reopened = await openNode(chain, { kv });
    expect(reopened.height).toBe(base + 4);
    expect(toHex(reopened.tipRecord.stateDigest)).toBe(digest);
    await reopened.close();
  });

  it('holds a partial block until the write in progress ends, then sends everything that queued as one block', async () => {
    const { node, kv, chain, device } = await setup('partial');
    const base = node.height;
    kv.hold();
    const first = node.submit(makeMessage(chain, device, { address: '/p', key: 'a', body: '1' }));
    await until(() => node.producedHeight === base + 1, 'the first block');
    const later = Array.from({ length: 3 }, (_, index) => node.submit(makeMessage(chain, device, { address: '/p', key: `b${index}`, body: '2' })));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(node.producedHeight).toBe(base + 1);
    expect(node.pendingCount).toBe(3);
    kv.release();
    const receipts = await Promise.all([first, ...later]);
    expect(receipts.map((receipt) => receipt.height)).toEqual([base + 1, base + 2, base + 2, base + 2]);
    await node.close();
  });

  it('builds at most four blocks ahead of the disk', async () => {
    const { node, kv, chain, device } = await setup('ahead');
    const base = node.height;
    kv.hold();
    const writes = Array.from({ length: 12 }, (_, index) => node.submit(makeMessage(chain, device, { address: '/p', key: `k${index}`, body: BIG })));
    await until(() => node.producedHeight === base + 4, 'four blocks');
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(node.producedHeight).toBe(base + 4);
    expect(node.pendingCount).toBe(4);
    kv.release();
    const receipts = await Promise.all(writes);
    expect(new Set(receipts.map((receipt) => receipt.height)).size).toBe(6);
    expect(node.height).toBe(base + 6);
    await node.close();
  });

  it('refuses every message of the blocks behind a failed write, acknowledges none, and stops producing', async () => {
    const { node, kv, chain, device } = await setup('failure');
    const base = node.height;
    const digest = toHex(node.tipRecord.stateDigest);
    kv.hold();
    const first = node.submit(makeMessage(chain, device, { address: '/p', key: 'a', body: '1' }));
    await until(() => node.producedHeight === base + 1, 'the first block');
    const second = node.submit(makeMessage(chain, device, { address: '/p', key: 'b', body: BIG }));
    const third = node.submit(makeMessage(chain, device, { address: '/p', key: 'c', body: BIG }));
    const fourth = node.submit(makeMessage(chain, device, { address: '/p', key: 'd', body: BIG }));
    await until(() => node.producedHeight === base + 2, 'a full second block');
    kv.failNext(new Error('disk full'));
    kv.release();
    for (const outcome of await Promise.allSettled([first, second, third, fourth])) {
      expect(outcome.status).toBe('rejected');
      expect(isKalimaError((outcome as PromiseRejectedResult).reason, 'KALIMA_ERR_NODE_NOT_READY')).toBe(true);
    }
    expect(node.height).toBe(base);
    expect(node.getEntry('/p', 'a')).toBeUndefined();
    await expect(node.submit(makeMessage(chain, device, { address: '/p', key: 'e', body: '3' }))).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY' });
    await node.close();
    const reopened = await openNode(chain, { kv });
    expect(reopened.height).toBe(base);
    expect(toHex(reopened.tipRecord.stateDigest)).toBe(digest);
    expect(reopened.getEntry('/p', 'a')).toBeUndefined();
    await reopened.close();
  });

  it('does not expire a value that a block still being written has replaced', async () => {
    const clock = new ManualClock(1_700_000_100_000);
    const { node, kv, chain, device } = await setup('expiry', clock);
    await node.submit(makeMessage(chain, device, { address: '/p', key: 'k', body: 'old', ttlSeconds: 2 }));
    kv.hold();
    clock.advance(1_000);
    const base = node.height;
    const overwrite = node.submit(makeMessage(chain, device, { address: '/p', key: 'k', body: 'new', ttlSeconds: -1 }));
    await until(() => node.producedHeight === base + 1, 'the overwrite block');
    // The old value's deadline passes while the overwrite is still at the gate; the next block must
    // not delete the new value in its name.
    clock.advance(5_000);
    const others = Array.from({ length: 3 }, (_, index) => node.submit(makeMessage(chain, device, { address: '/p', key: `other${index}`, body: BIG })));
    await until(() => node.producedHeight === base + 2, 'the next (full) block');
    kv.release();
    await Promise.all([overwrite, ...others]);
    await node.flush();
    expect(new TextDecoder().decode(node.getEntry('/p', 'k')!.value)).toBe('new');
    const history = await node.history('/p', { fromSequence: 0, limit: 100 });
    expect(history.filter((located) => located.committed.message.props.some(([name]) => name === SYSTEM_REASON_PROP))).toEqual([]);
    await node.close();
  });
});

/** Signs through an inner signer, but only when the test lets it; or fails. */
class GatedSigner implements BlockSigner {
  private readonly waiting: Array<() => void> = [];
  held = false;
  failNext = false;
  constructor(private readonly inner: BlockSigner) {}
  async sign(hash: Uint8Array): Promise<Uint8Array> {
    if (this.held) await new Promise<void>((resume) => this.waiting.push(resume));
    if (this.failNext) {
      this.failNext = false;
      throw new Error('signer broke');
    }
    return this.inner.sign(hash);
  }
  release(): void {
    this.held = false;
    for (const resume of this.waiting.splice(0)) resume();
  }
  get blocked(): number {
    return this.waiting.length;
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

async function openWithSigner(seed: string, signer: (chain: ReturnType<typeof makeChain>) => BlockSigner): Promise<{ node: Node; kv: GatedKv; chain: ReturnType<typeof makeChain>; device: Awaited<ReturnType<typeof registerDevice>> }> {
  const chain = makeChain(seed);
  const kv = new GatedKv();
  const node = await Node.open({
    genesis: chain.genesis, store: new ChainStore(kv), nodeKey: chain.nodeKey, clock: systemClock, rng: chain.rng,
    scheduler: systemScheduler, verifier: new InlineVerifier(), signer: signer(chain), logger: silentLogger,
  });
  await createAddress(node, chain, '/p');
  const device = await registerDevice(node, chain, { pub: ['/p'], sub: ['/p'] });
  return { node, kv, chain, device };
}

describe('block signing off the event loop', () => {
  it('signs every block with the node key on a worker thread, and the chain verifies after a restart', async () => {
    const { node, kv, chain, device } = await openWithSigner('worker-signer', (c) => new WorkerBlockSigner(c.nodeKey, c.rng));
    const receipts = await Promise.all(Array.from({ length: 10 }, (_, index) => node.submit(makeMessage(chain, device, { address: '/p', key: `k${index}`, body: BIG }))));
    expect(new Set(receipts.map((receipt) => receipt.height)).size).toBeGreaterThanOrEqual(4);
    for (let height = 1; height <= node.height; height++) {
      const block = (await node.getBlock(height))!;
      expect(verifySchnorr(blockHash(block.header), chain.nodeKey.publicKey, block.signature)).toBe(true);
    }
    await node.close();
    const reopened = await openNode(chain, { kv });
    expect(reopened.height).toBe(receipts.at(-1)!.height);
    await reopened.close();
  });

  it('builds the next full block while one waits for its signature, and writes them in height order', async () => {
    let gate!: GatedSigner;
    const { node, kv, chain, device } = await openWithSigner('slow-signer', (c) => (gate = new GatedSigner(new InlineBlockSigner(c.nodeKey, c.rng))));
    const base = node.height;
    gate.held = true;
    const writes = Array.from({ length: 5 }, (_, index) => node.submit(makeMessage(chain, device, { address: '/p', key: `k${index}`, body: BIG })));
    await until(() => node.producedHeight === base + 2, 'two blocks built while the first is unsigned');
    expect(node.height).toBe(base);
    const batchesBefore = kv.batches.length;
    gate.release();
    const receipts = await Promise.all(writes);
    expect(receipts.map((receipt) => receipt.height)).toEqual([base + 1, base + 1, base + 2, base + 2, base + 3]);
    const written = kv.batches.slice(batchesBefore).flatMap(blockHeights);
    expect(written).toEqual([base + 1, base + 2, base + 3]);
    await node.close();
  });

  it('stops producing, and refuses what it had taken, when signing fails', async () => {
    let gate!: GatedSigner;
    const { node, kv, chain, device } = await openWithSigner('broken-signer', (c) => (gate = new GatedSigner(new InlineBlockSigner(c.nodeKey, c.rng))));
    const base = node.height;
    gate.failNext = true;
    const outcome = await node.submit(makeMessage(chain, device, { address: '/p', key: 'a', body: '1' })).catch((error: unknown) => error);
    expect(isKalimaError(outcome, 'KALIMA_ERR_NODE_INTERNAL')).toBe(true);
    expect(node.height).toBe(base);
    await expect(node.submit(makeMessage(chain, device, { address: '/p', key: 'b', body: '2' }))).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY' });
    await node.close();
    const reopened = await openNode(chain, { kv });
    expect(reopened.height).toBe(base);
    await reopened.close();
  });
});

/** Throws synchronously on the call the test names, as a signer with a bug in its own code would. */
class ThrowingSigner implements BlockSigner {
  calls = 0;
  throwAt = Number.POSITIVE_INFINITY;
  constructor(private readonly inner: BlockSigner) {}
  sign(hash: Uint8Array): Promise<Uint8Array> {
    if (++this.calls === this.throwAt) throw new Error('signer bug');
    return this.inner.sign(hash);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A store whose message-hash index cannot be read, as after a LevelDB read error. */
class UnreadableIndexStore extends ChainStore {
  failLocate = false;
  override async locateMessage(hash: Uint8Array): Promise<MessageLocation | undefined> {
    if (this.failLocate) throw new Error('read I/O error');
    return super.locateMessage(hash);
  }
}

describe('pipeline failures', () => {
  it('settles a message the block refuses even when the store cannot say where its nonce was used, and keeps producing', async () => {
    const chain = makeChain('explain-fails');
    const store = new UnreadableIndexStore(new MemoryKvStore());
    const node = await Node.open({
      genesis: chain.genesis, store, nodeKey: chain.nodeKey, clock: systemClock, rng: chain.rng,
      scheduler: systemScheduler, verifier: new InlineVerifier(), logger: silentLogger,
    });
    await createAddress(node, chain, '/p');
    const device = await registerDevice(node, chain, { pub: ['/p'], sub: ['/p'] });
    // A full replay window (nonces 1..128): nonce 0 passes the check on arrival, and is too old in
    // the block once nonce 1000 ahead of it has moved the window on.
    for (const start of [1, 65]) {
      await Promise.all(Array.from({ length: 64 }, (_, index) => node.submit(makeMessage(chain, device, { address: '/p', key: `w${start + index}`, nonce: start + index }))));
    }
    store.failLocate = true;
    const ahead = node.submit(makeMessage(chain, device, { address: '/p', key: 'ahead', nonce: 1000 }));
    const late = node.submit(makeMessage(chain, device, { address: '/p', key: 'late', nonce: 0 }));
    await expect(ahead).resolves.toMatchObject({ sequence: expect.any(Number) });
    await expect(late).rejects.toMatchObject({ code: 'KALIMA_ERR_LEDGER_NONCE_TOO_OLD' });
    expect(node.getEntry('/p', 'late')).toBeUndefined();
    await expect(node.submit(makeMessage(chain, device, { address: '/p', key: 'after', nonce: 1001 }))).resolves.toBeDefined();
    await node.close();
  });

  it('when production fails during a write, acknowledges and streams the blocks that write makes durable, and refuses the rest', async () => {
    let signer: ThrowingSigner | undefined;
    const { node, kv, chain, device } = await openWithSigner('fail-during-write', (c) => (signer = new ThrowingSigner(new InlineBlockSigner(c.nodeKey, c.rng))));
    const base = node.height;
    const streamed: number[] = [];
    node.onBlock((committed) => streamed.push(committed.block.header.height));
    kv.hold();
    const durable = node.submit(makeMessage(chain, device, { address: '/p', key: 'durable', body: 'v' }));
    await until(() => node.producedHeight === base + 1 && kv.blocked === 1, 'the first block at the held write');
    // The next block, full and so built ahead of the disk, fails inside production.
    signer!.throwAt = signer!.calls + 1;
    const behind = Array.from({ length: 3 }, (_, index) => track(node.submit(makeMessage(chain, device, { address: '/p', key: `b${index}`, body: BIG }))));
    await until(() => behind.filter((item) => item.settled()).length >= 2, 'the failed block refused');
    expect(node.height).toBe(base);
    kv.release();
    await expect(durable).resolves.toMatchObject({ height: base + 1 });
    expect(node.height).toBe(base + 1);
    expect(node.getEntry('/p', 'durable')).toBeDefined();
    expect(streamed).toEqual([base + 1]);
    for (const item of behind) await expect(item.promise).rejects.toMatchObject({ code: expect.stringMatching(/^KALIMA_ERR_NODE_/) });
    await expect(node.submit(makeMessage(chain, device, { address: '/p', key: 'later' }))).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY' });
    await node.close();
    const reopened = await openNode(chain, { kv });
    expect(reopened.height).toBe(base + 1);
    await reopened.close();
  });

  it('flush() throws once a write has failed, instead of returning as if all were durable', async () => {
    const { node, kv, chain, device } = await setup('flush-after-failure');
    kv.failNext(new Error('disk full'));
    const refused = node.submit(makeMessage(chain, device, { address: '/p', key: 'k', body: 'v' }));
    expect(await refused.catch((error: unknown) => error)).toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY' });
    await expect(node.flush()).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY' });
    await node.close();
  });

  it('a second close() waits for the first to close the store', async () => {
    const { node, kv } = await setup('close-twice');
    const first = node.close();
    await node.close();
    expect(kv.closed).toBe(true);
    await first;
  });
});
