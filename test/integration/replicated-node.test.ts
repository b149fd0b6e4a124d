// The block producer with consensus in the loop (consensus/replicator.ts): a master whose blocks
// go through its Raft log before its chain store, here as the only voter. Until it leads and has
// applied its term's first entry it refuses writes; then every block is a log entry, in order, of
// its term, and a receipt is answered only once its block is committed.
import { describe, expect, it } from 'vitest';
import { decodeBlock } from '../../src/ledger/block.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { RaftReplicator } from '../../src/consensus/replicator.ts';
import { RaftRuntime } from '../../src/consensus/runtime.ts';
import { type BlockReplicator, KalimaNode } from '../../src/node/node.ts';
import { InlineVerifier } from '../../src/node/verifier.ts';
import { ManualClock, silentLogger, systemClock, systemScheduler } from '../../src/ports.ts';
import { generateKeyPair } from '../../src/ledger/signature.ts';
import { type BlockWrite, ChainStore } from '../../src/store/chain-store.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { RaftLogStore } from '../../src/store/raft-log.ts';
import { makeChain, makeMessage, seededRng } from '../support/chain.ts';
import { ADDRESSES_ADDRESS, DEVICES_ADDRESS, encodeAddressRecord, encodeDeviceRecord } from '../../src/access/records.ts';

describe('a master whose blocks go through Raft', () => {
  it('refuses writes until it leads, then commits each block as a log entry of its term', async () => {
    const chain = makeChain('replicated');
    const kv = new MemoryKvStore();
    const { store: raftStore, hardState, log } = await RaftLogStore.open(kv);
    const id = toHex(chain.nodeKey.publicKey);
    let node: KalimaNode | undefined;
    let replicator!: RaftReplicator;
    const appliedEntries: number[] = [];
    const runtime = new RaftRuntime({
      raft: { id, voters: [id], electionTicks: 5, heartbeatTicks: 1, rng: seededRng('replicated-raft'), hardState, log },
      store: raftStore, scheduler: systemScheduler, logger: silentLogger, tickMs: 5,
      send: () => undefined,
      apply: (entries) => {
        for (const entry of entries) {
          // One voter: every block committed is this node's own, made durable by its pipeline.
          if (entry.data.length > 0 && !replicator.isOwn(entry.data)) throw new Error('a block from another leader: the follower path is not built yet');
          appliedEntries.push(entry.index);
          replicator.applied(entry.index);
        }
      },
    });
    replicator = new RaftReplicator(runtime, 0, () => node?.resumeProducing());
    node = await KalimaNode.open({
      genesis: chain.genesis, store: new ChainStore(kv), nodeKey: chain.nodeKey, clock: systemClock, rng: chain.rng,
      scheduler: systemScheduler, verifier: new InlineVerifier(), logger: silentLogger, replicator,
    });
    const write = makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/plant', body: encodeAddressRecord({ description: '' }) });
    await expect(node.submit(write)).rejects.toMatchObject({ code: 'KALIMA_ERR_CONSENSUS_NOT_LEADER' });
    runtime.start();
    const started = Date.now();
    while (!replicator.mayProduce() && Date.now() - started < 5_000) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(runtime.raft.role).toBe('leader');
    const receipts = await Promise.all([
      node.submit(write),
      ...Array.from({ length: 10 }, (_, index) => node!.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: `/plant/${index}`, body: encodeAddressRecord({ description: '' }) }))),
    ]);
    expect(receipts).toHaveLength(11);
    await runtime.idle();
    // The log: the leader's empty entry, then one entry per block, each a block of this term, in height order.
    const blocks = runtime.raft.entries(1).filter((entry) => entry.data.length > 0).map((entry) => decodeBlock(entry.data));
    expect(blocks.map((block) => block.header.height)).toEqual(Array.from({ length: node.height }, (_, index) => index + 1));
    expect(new Set(blocks.map((block) => block.header.term))).toEqual(new Set([runtime.raft.term]));
    expect(runtime.raft.commit).toBe(node.height + 1);
    expect(appliedEntries).toEqual(Array.from({ length: node.height + 1 }, (_, index) => index + 1));
    // Every receipt's block is in the chain store.
    for (const receipt of receipts) expect((await node.getBlock(receipt.height))!.header.term).toBe(runtime.raft.term);
    runtime.stop();
    await node.close();
  });
});

describe('a master that loses the leadership with a TTL delete in flight', () => {
  it('puts the expiry back, so that when it leads again the entry is still deleted on time', async () => {
    const chain = makeChain('ttl-dropped');
    const clock = new ManualClock(Date.now());
    // The consensus side, scripted: it leads or not, and reports each write committed, or lost.
    let leading = true;
    let loseNext = false;
    const written: number[][] = [];
    const replicator: BlockReplicator = {
      get term() {
        return 1;
      },
      mayProduce: () => leading,
      leaderHint: () => undefined,
      async replicate(blocks: readonly BlockWrite[]) {
        if (loseNext) {
          loseNext = false;
          leading = false;
          return { committed: 0, lost: true };
        }
        written.push(blocks.map((block) => block.block.header.height));
        return { committed: blocks.length, lost: false };
      },
      abandon: () => undefined,
    };
    const node = await KalimaNode.open({
      genesis: chain.genesis, store: new ChainStore(new MemoryKvStore()), nodeKey: chain.nodeKey, clock, rng: chain.rng,
      scheduler: systemScheduler, verifier: new InlineVerifier(), logger: silentLogger, replicator, blockDelayMs: 1,
    });
    await node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/ttl', body: encodeAddressRecord({ description: '' }) }));
    const device = generateKeyPair(chain.rng);
    await node.submit(makeMessage(chain, chain.admin, { address: DEVICES_ADDRESS, key: toHex(device.publicKey), body: encodeDeviceRecord({ name: 'sensor', pub: ['/ttl'], sub: ['/ttl'] }) }));
    await node.submit(makeMessage(chain, device, { address: '/ttl', key: 'reading', body: 'short-lived', ttlSeconds: 1 }));
    expect(node.getEntry('/ttl', 'reading')).toBeDefined();
    // It expires; the block with its delete is lost with the leadership.
    loseNext = true;
    clock.advance(1_500);
    await node.flush().catch(() => undefined);
    expect(leading).toBe(false);
    expect(node.getEntry('/ttl', 'reading')).toBeDefined();
    // Leading again, it writes the delete after all.
    leading = true;
    node.resumeProducing();
    const deadline = Date.now() + 5_000;
    while (node.getEntry('/ttl', 'reading') !== undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(node.getEntry('/ttl', 'reading')).toBeUndefined();
    await node.close();
  });
});
