// The block producer in process: ordering, block bounds, idempotent retries, out-of-order nonces
// and state that survives a restart.
import { describe, expect, it } from 'vitest';
import { isKalimaError } from '../../src/errors.ts';
import { bytesEqual, toHex } from '../../src/ledger/hash.ts';
import { BLOCK_BYTES_MAX, MESSAGE_BODY_BYTES_MAX } from '../../src/ledger/limits.ts';
import { encodeBlock } from '../../src/ledger/block.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { keys, u64 } from '../../src/store/keys.ts';
import { STORE_FORMAT } from '../../src/store/verify.ts';
import { ChainStore } from '../../src/store/chain-store.ts';
import { DEVICE_IN_FLIGHT_MAX, KalimaNode } from '../../src/node/node.ts';
import { WorkerPoolVerifier } from '../../src/node/verifier.ts';
import { silentLogger, systemClock, systemScheduler } from '../../src/ports.ts';
import { createAddress, makeChain, makeMessage, openNode, registerDevice } from '../support/chain.ts';

describe('block producer', () => {
  it('commits writes in blocks of at most 16 KB, with consecutive sequences per address', async () => {
    const chain = makeChain('producer');
    const node = await openNode(chain);
    await createAddress(node, chain, '/sensors/a');
    await createAddress(node, chain, '/sensors/b');
    const device = await registerDevice(node, chain, { pub: ['/sensors'], sub: ['/sensors'] });
    const body = new Uint8Array(MESSAGE_BODY_BYTES_MAX).fill(7);
    const receipts = await Promise.all(
      Array.from({ length: 12 }, (_, index) => node.submit(makeMessage(chain, device, { address: index % 2 === 0 ? '/sensors/a' : '/sensors/b', key: `k${index}`, body }))),
    );
    // 8 KB bodies: at most one per 16 KB block.
    const heights = new Set(receipts.map((receipt) => receipt.height));
    expect(heights.size).toBe(12);
    for (let height = 1; height <= node.height; height++) {
      const block = (await node.getBlock(height))!;
      expect(encodeBlock(block).length).toBeLessThanOrEqual(BLOCK_BYTES_MAX);
    }
    const sequencesA = receipts.filter((_, index) => index % 2 === 0).map((receipt) => receipt.sequence).sort((x, y) => x - y);
    expect(sequencesA).toEqual([0, 1, 2, 3, 4, 5]);
    const history = await node.history('/sensors/a', { fromSequence: 0, limit: 100 });
    expect(history.map((located) => located.committed.previous)).toEqual([-1, 0, 1, 2, 3, 4]);
    await node.close();
  });

  it('joins a retry of a pending message instead of writing it twice, and refuses a different message with the same nonce', async () => {
    const chain = makeChain('retry');
    const node = await openNode(chain);
    await createAddress(node, chain, '/x');
    const device = await registerDevice(node, chain, { pub: ['/x'], sub: ['/x'] });
    const message = makeMessage(chain, device, { address: '/x', key: 'k', body: 'one', nonce: 42 });
    const impostor = makeMessage(chain, device, { address: '/x', key: 'k', body: 'two', nonce: 42 });
    const first = node.submit(message);
    const retry = node.submit(message);
    await expect(node.submit(impostor)).rejects.toMatchObject({ code: 'KALIMA_ERR_LEDGER_NONCE_REPLAYED' });
    const [a, b] = await Promise.all([first, retry]);
    expect(a).toEqual(b);
    // After the commit, the same message is a replay that names its commit.
    const replay = await node.submit(message).catch((error: unknown) => error);
    expect(isKalimaError(replay, 'KALIMA_ERR_LEDGER_NONCE_REPLAYED')).toBe(true);
    expect((replay as { details: { committed: { globalSequence: number } } }).details.committed.globalSequence).toBe(a.globalSequence);
    expect(node.cache.lastSequence('/x')).toBe(0);
    await node.close();
  });

  it('accepts concurrent writes of one device whose sparse nonces arrive out of order', async () => {
    const chain = makeChain('reorder');
    const node = await KalimaNode.open({
      genesis: chain.genesis, store: new ChainStore(new MemoryKvStore()), nodeKey: chain.nodeKey, clock: systemClock, rng: chain.rng,
      scheduler: systemScheduler, verifier: new WorkerPoolVerifier(2), logger: silentLogger,
    });
    await createAddress(node, chain, '/x');
    const device = await registerDevice(node, chain, { pub: ['/x'], sub: ['/x'] });
    // As many as a device may have in flight: nonces a millisecond apart in microseconds, newest first.
    const count = DEVICE_IN_FLIGHT_MAX;
    const messages = Array.from({ length: count }, (_, index) => makeMessage(chain, device, { address: '/x', key: `k${index}`, nonce: 1_700_000_000_000_000 + index * 1000 }));
    const receipts = await Promise.all([...messages].reverse().map((message) => node.submit(message)));
    expect(new Set(receipts.map((receipt) => receipt.globalSequence)).size).toBe(count);
    expect(node.cache.entriesAt('/x')).toHaveLength(count);
    await node.close();
  });

  it('refuses a device more writes in flight than it may have, with a retryable code, and commits the rest', async () => {
    const chain = makeChain('in-flight');
    // Verified on the calling thread, so every write of the flood is checked before a block is cut.
    const node = await openNode(chain);
    await createAddress(node, chain, '/x');
    const device = await registerDevice(node, chain, { pub: ['/x'], sub: ['/x'] });
    const count = DEVICE_IN_FLIGHT_MAX;
    const flood = Array.from({ length: count + 1 }, (_, index) => makeMessage(chain, device, { address: '/x', key: `f${index}`, nonce: 1_800_000_000_000_000 + index }));
    const outcomes = await Promise.allSettled(flood.map((message) => node.submit(message)));
    const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(refused).toHaveLength(1);
    expect((refused[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'KALIMA_ERR_API_OVERLOADED' });
    expect(node.cache.entriesAt('/x')).toHaveLength(count);
    await node.close();
  });

  it('restores the MemCache and its digest from the store after a restart', async () => {
    const chain = makeChain('restart');
    const kv = new MemoryKvStore();
    const node = await openNode(chain, { kv });
    await createAddress(node, chain, '/x');
    const device = await registerDevice(node, chain, { pub: ['/x'], sub: ['/x'] });
    for (let index = 0; index < 20; index++) await node.submit(makeMessage(chain, device, { address: '/x', key: `k${index % 5}`, body: `v${index}` }));
    await node.submit(makeMessage(chain, device, { address: '/x', key: 'k0', body: '' }));
    const digest = node.cache.digest();
    const height = node.height;
    // Closing a MemoryKvStore keeps its contents, as a disk would.
    await node.close();
    const reopened = await openNode(chain, { kv });
    expect(reopened.height).toBe(height);
    expect(bytesEqual(reopened.cache.digest(), digest)).toBe(true);
    expect(reopened.getEntry('/x', 'k0')).toBeUndefined();
    expect(new TextDecoder().decode(reopened.getEntry('/x', 'k4')!.value)).toBe('v19');
    expect(toHex(reopened.tipRecord.stateDigest)).toBe(toHex(digest));
    await reopened.close();
  });

  it('refuses a data directory of another store format by name, not as corruption', async () => {
    const chain = makeChain('format');
    const kv = new MemoryKvStore();
    await (await openNode(chain, { kv })).close();
    await kv.batch([{ type: 'put', key: keys.meta('format'), value: u64(STORE_FORMAT + 1) }]);
    await expect(openNode(chain, { kv })).rejects.toMatchObject({ code: 'KALIMA_ERR_STORE_FORMAT', details: { expected: STORE_FORMAT } });
    await kv.batch([{ type: 'del', key: keys.meta('format') }]);
    await expect(openNode(chain, { kv })).rejects.toMatchObject({ code: 'KALIMA_ERR_STORE_FORMAT' });
  });
});
