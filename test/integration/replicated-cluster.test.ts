// Three masters of one chain in one process, on an in-memory network, each the real node with
// consensus in the loop: the leader's blocks go through Raft; the followers check every block with
// their block gate before they acknowledge it, and apply what commits without executing it again.
// All three end with the same blocks, the same state digest and the same entries.
import { describe, expect, it } from 'vitest';
import { ADDRESSES_ADDRESS, DEVICES_ADDRESS, encodeAddressRecord, encodeDeviceRecord } from '../../src/access/records.ts';
import { ClusterMaster, linkKeyOfMaster, linkSecretOf, linkTransport } from '../../src/node/cluster.ts';
import type { Genesis } from '../../src/access/genesis.ts';
import { getPublicKey } from '@noble/secp256k1';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { InlineVerifier } from '../../src/node/verifier.ts';
import { freePort } from '../support/ports.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { type KeyPair, generateKeyPair } from '../../src/ledger/signature.ts';
import { silentLogger, systemClock, systemScheduler } from '../../src/ports.ts';
import { type TestChain, makeChain, makeMessage, seededRng } from '../support/chain.ts';
import { type Master, type Tamper, leaderOf, plantWithSensor, startCluster, until } from '../support/memory-cluster.ts';

describe('three masters with consensus in the loop', () => {
  it('the leader\'s blocks are checked by the followers, committed by a majority, and applied everywhere alike', async () => {
    // A short log retention, so that compaction runs; nobody here falls further behind than that.
    const { chain, masters, restart } = await startCluster(3, undefined, 2);
    const leader = await leaderOf(masters);
    const followers = masters.filter((master) => master !== leader);
    const write = (key: KeyPair, fields: Parameters<typeof makeMessage>[2]) => makeMessage(chain, key, fields);
    // Through the leader: an address, a device, then the device's readings.
    await leader.node.submit(write(chain.admin, { address: ADDRESSES_ADDRESS, key: '/plant', body: encodeAddressRecord({ description: '' }) }));
    const device = generateKeyPair(chain.rng);
    await leader.node.submit(write(chain.admin, { address: DEVICES_ADDRESS, key: toHex(device.publicKey), body: encodeDeviceRecord({ name: 'sensor', pub: ['/plant'], sub: ['/plant'] }) }));
    const receipts = await Promise.all(Array.from({ length: 40 }, (_, index) => leader.node.submit(write(device, { address: '/plant', key: `k${index % 8}`, body: `reading ${index}` }))));
    expect(receipts).toHaveLength(40);
    const height = leader.node.height;
    await until('the followers to apply every block', () => followers.every((master) => master.node.height === height));
    for (const master of masters) {
      expect(master.node.cache.digest()).toEqual(leader.node.cache.digest());
      expect(toHex(master.node.tipRecord.hash)).toBe(toHex(leader.node.tipRecord.hash));
      expect(new TextDecoder().decode(master.node.getEntry('/plant', 'k7')!.value)).toBe('reading 39');
      expect(master.refusals).toEqual([]);
    }
    // The followers stored the leader's blocks byte for byte.
    for (let blockHeight = 1; blockHeight <= height; blockHeight++) {
      const bytes = await leader.node.store.getBlockBytes(blockHeight);
      for (const follower of followers) expect(await follower.node.store.getBlockBytes(blockHeight)).toEqual(bytes);
    }
    // A follower restarts from its store while the leader goes on: it resumes after the block it
    // had, with nothing applied twice, and catches up.
    const restarted = await restart(followers[0]!);
    expect(restarted.node.height).toBe(height);
    await Promise.all(Array.from({ length: 10 }, (_, index) => leader.node.submit(write(device, { address: '/plant', key: `k${index % 8}`, body: `later ${index}` }))));
    await until('the restarted follower to catch up', () => restarted.node.height === leader.node.height);
    expect(restarted.node.cache.digest()).toEqual(leader.node.cache.digest());
    expect(restarted.refusals).toEqual([]);
    // The logs stay bounded (retention 2): compacted on every master, in memory and in the store.
    for (const master of masters) {
      expect(master.runtime.raft.firstIndex()).toBeGreaterThan(1);
      expect(master.runtime.raft.lastIndex() - master.runtime.raft.firstIndex() + 1).toBeLessThanOrEqual(2 * 2 + 8);
    }
    for (const master of masters) await master.close();
  });

  it('a follower further behind than the leader\'s log catches up on blocks fetched from the masters, then follows the log', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    // A log retention of 2: a follower away for more than a few blocks needs the catch-up.
    const { chain, masters, restart } = await startCluster(3, tamper, 2);
    const leader = await leaderOf(masters);
    const [lagging, other] = masters.filter((master) => master !== leader) as [Master, Master];
    const device = await plantWithSensor(chain, leader);
    await until('the lagging follower to have the device', () => lagging.node.height === leader.node.height);
    // It is cut off while the other two commit 30 blocks, one at a time.
    tamper.current = (from, to, message) => (from === lagging.id || to === lagging.id ? undefined : message);
    const away = lagging.node.height;
    for (let index = 0; index < 30; index++) await leader.node.submit(makeMessage(chain, device, { address: '/plant', key: `k${index % 7}`, body: `reading ${index}` }));
    expect(leader.runtime.raft.firstIndex()).toBeGreaterThan(lagging.runtime.raft.lastIndex() + 1);
    tamper.current = undefined;
    await until('the lagging follower to catch up', () => lagging.node.height === leader.node.height, 15_000);
    expect(lagging.node.height).toBeGreaterThan(away + 29);
    expect(lagging.node.cache.digest()).toEqual(leader.node.cache.digest());
    // Its log now starts after the snapshot, and it follows the leader's appends again.
    expect(lagging.runtime.raft.firstIndex()).toBeGreaterThan(1);
    await leader.node.submit(makeMessage(chain, device, { address: '/plant', key: 'after', body: 'after the catch-up' }));
    await until('the follower to apply the next block', () => lagging.node.height === leader.node.height);
    expect(lagging.refusals).toEqual([]);
    // Every block byte for byte.
    for (let blockHeight = 1; blockHeight <= leader.node.height; blockHeight++) expect(await lagging.node.store.getBlockBytes(blockHeight)).toEqual(await leader.node.store.getBlockBytes(blockHeight));
    // A master restarted from an empty data directory catches up the same way, from nothing.
    const fresh = await restart(other, { empty: true });
    expect(fresh.node.height).toBe(0);
    await until('the empty master to catch up', () => fresh.node.height === leader.node.height, 15_000);
    expect(fresh.node.cache.digest()).toEqual(leader.node.cache.digest());
    expect(new TextDecoder().decode(fresh.node.getEntry('/plant', 'after')!.value)).toBe('after the catch-up');
    // And a restart of the caught-up master, on its own store, picks up where it was.
    const again = await restart(fresh);
    expect(again.node.height).toBe(leader.node.height);
    await leader.node.submit(makeMessage(chain, device, { address: '/plant', key: 'last', body: 'last' }));
    await until('everyone at the same height', () => masters.every((master) => master.node.height === leader.node.height));
    for (const master of masters) expect(master.node.cache.digest()).toEqual(leader.node.cache.digest());
    for (const master of masters) await master.close();
  }, 60_000);

  it('a master stopped in the middle of its catch-up resumes it after a restart, on what it had stored', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    const { chain, masters, restart } = await startCluster(3, tamper, 2);
    const leader = await leaderOf(masters);
    const follower = masters.find((master) => master !== leader)!;
    const device = await plantWithSensor(chain, leader);
    // Near-full blocks, so that an answer carries only a few of them.
    const body = 'x'.repeat(7_000);
    for (let index = 0; index < 24; index++) await leader.node.submit(makeMessage(chain, device, { address: '/plant', key: `k${index % 5}`, body: `${index}${body}` }));
    // Restarted empty, it gets one answer of blocks; the rest never come (every master's answers to it are lost).
    let answers = 0;
    tamper.current = (from, to, message) => (message.type === 'rpc' && to === follower.id && message.bytes[0] === 2 && answers++ >= 2 ? undefined : message);
    const fresh = await restart(follower, { empty: true });
    await until('part of the catch-up', () => fresh.node.height > 0 && answers >= 3, 10_000);
    const partial = fresh.node.height;
    expect(partial).toBeLessThan(leader.node.height);
    // It stops there; on restart its chain is past its Raft log, which it must reconcile.
    tamper.current = undefined;
    const resumed = await restart(fresh);
    expect(resumed.node.height).toBe(partial);
    await until('the catch-up to finish', () => resumed.node.height === leader.node.height, 15_000);
    expect(resumed.node.cache.digest()).toEqual(leader.node.cache.digest());
    await leader.node.submit(makeMessage(chain, device, { address: '/plant', key: 'after', body: 'after' }));
    await until('everyone at the same height', () => masters.every((master) => master.node.height === leader.node.height));
    for (const master of masters) expect(master.node.cache.digest()).toEqual(leader.node.cache.digest());
    for (const master of masters) await master.close();
  }, 60_000);

  it('a catch-up cut short by a restart, then a leader whose log still holds what follows: the follower admits the blocks it stored and goes on', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    const { chain, masters, restart } = await startCluster(3, tamper);
    const a = await leaderOf(masters);
    const [b, f0] = masters.filter((master) => master !== a) as [Master, Master];
    // a and the follower keep 2 entries of log; b keeps its whole log (compaction points differ between masters).
    (a as unknown as { logRetention: number }).logRetention = 2;
    (f0 as unknown as { logRetention: number }).logRetention = 2;
    const device = await plantWithSensor(chain, a);
    await until('the follower to have the device', () => f0.node.height === a.node.height);
    // The follower is away while a and b commit 24 near-full blocks.
    tamper.current = (from, to, message) => (from === f0.id || to === f0.id ? undefined : message);
    const body = 'x'.repeat(7_000);
    for (let index = 0; index < 24; index++) await a.node.submit(makeMessage(chain, device, { address: '/plant', key: `k${index % 5}`, body: `${index}${body}` }));
    // Back, its catch-up gets two answers, then the rest are lost, and it restarts on its store.
    let answers = 0;
    tamper.current = (_from, to, message) => (message.type === 'rpc' && to === f0.id && message.bytes[0] === 2 && answers++ >= 2 ? undefined : message);
    await until('part of the catch-up', () => answers >= 3, 10_000);
    // Now a is away: b leads, and its log holds the entries after the follower's log.
    tamper.current = (from, to, message) => (from === a.id || to === a.id ? undefined : message);
    const f = await restart(f0);
    const second = await leaderOf([b, f], 15_000);
    const receipt = await second.node.submit(makeMessage(chain, device, { address: '/plant', key: 'after', body: 'after the restart' }));
    await until('the follower to apply it', () => f.node.height === receipt.height && b.node.height === receipt.height, 15_000);
    expect(f.node.cache.digest()).toEqual(b.node.cache.digest());
    expect(f.refusals.filter((refusal) => String((refusal as { details?: { reason?: string } }).details?.reason).includes('another block'))).toEqual([]);
    tamper.current = undefined;
    for (const master of masters) await master.close();
  }, 60_000);

  it('a device may write to any master: a follower forwards to the leader and answers with its receipt once committed', async () => {
    const { chain, masters } = await startCluster(3);
    const leader = await leaderOf(masters);
    const [follower, other] = masters.filter((master) => master !== leader) as [Master, Master];
    const registration = await follower.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/plant', body: encodeAddressRecord({ description: '' }) }));
    const device = generateKeyPair(chain.rng);
    await other.node.submit(makeMessage(chain, chain.admin, { address: DEVICES_ADDRESS, key: toHex(device.publicKey), body: encodeDeviceRecord({ name: 'sensor', pub: ['/plant'], sub: ['/plant'] }) }));
    // The device writes at once through a follower whose state may be a block behind the leader's.
    const messages = Array.from({ length: 20 }, (_, index) => makeMessage(chain, device, { address: '/plant', key: `k${index % 4}`, body: `reading ${index}` }));
    const receipts = await Promise.all(messages.map((message, index) => (index % 2 === 0 ? follower : other).node.submit(message)));
    // The receipts are the leader's: where each message is in the chain.
    for (const [index, receipt] of receipts.entries()) {
      const block = (await leader.node.getBlock(receipt.height))!;
      expect(block.messages.find((committed) => committed.globalSequence === receipt.globalSequence)!.message.nonce).toBe(messages[index]!.nonce);
    }
    expect(registration.height).toBeGreaterThanOrEqual(1);
    // The same signed message again, through another master, is the same write (its nonce), not a second one.
    await expect(other.node.submit(messages[0]!)).rejects.toMatchObject({ code: 'KALIMA_ERR_LEDGER_NONCE_REPLAYED', details: { committed: { globalSequence: receipts[0]!.globalSequence } } });
    // A forged copy is refused where it arrives, and nothing is sent on.
    const forged = { ...makeMessage(chain, device, { address: '/plant', key: 'forged', body: 'x' }), signature: new Uint8Array(64) };
    await expect(follower.node.submit(forged)).rejects.toMatchObject({ code: 'KALIMA_ERR_LEDGER_BAD_SIGNATURE' });
    const height = leader.node.height;
    await until('all three at the same height', () => masters.every((master) => master.node.height === height));
    for (const master of masters) {
      expect(master.node.cache.digest()).toEqual(leader.node.cache.digest());
      expect(master.node.getEntry('/plant', 'forged')).toBeUndefined();
    }
    for (const master of masters) await master.close();
  });

  it('a follower forwarding through a leader change tries the next leader with the same message: it commits once', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    const { chain, masters } = await startCluster(3, tamper);
    const first = await leaderOf(masters);
    const device = await plantWithSensor(chain, first);
    const follower = masters.find((master) => master !== first)!;
    await until('the follower to have the device', () => follower.node.height === first.node.height);
    // The leader is cut off: what the follower forwards meanwhile goes nowhere, or to a leader that cannot commit.
    tamper.current = (from, to, message) => (from === first.id || to === first.id ? undefined : message);
    const messages = Array.from({ length: 6 }, (_, index) => makeMessage(chain, device, { address: '/plant', key: `f${index}`, body: 'through a change' }));
    const receipts = await Promise.all(messages.map((message) => follower.node.submit(message)));
    const second = await leaderOf(masters.filter((master) => master !== first));
    expect(second.id).not.toBe(first.id);
    tamper.current = undefined;
    const height = second.node.height;
    await until('all three at the same height', () => masters.every((master) => master.node.height >= height));
    const seen = new Map<number, number>();
    for (let blockHeight = 1; blockHeight <= height; blockHeight++) {
      for (const committed of (await second.node.getBlock(blockHeight))!.messages) {
        if (committed.message.address === '/plant') seen.set(committed.message.nonce, (seen.get(committed.message.nonce) ?? 0) + 1);
      }
    }
    for (const [index, message] of messages.entries()) {
      expect(seen.get(message.nonce)).toBe(1);
      expect(receipts[index]!.height).toBeLessThanOrEqual(height);
    }
    for (const master of masters) await master.close();
  });

  it('a leader\'s answer lost on the way: the follower asks again, and the leader\'s "already committed" is the receipt', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    const { chain, masters } = await startCluster(3, tamper);
    const leader = await leaderOf(masters);
    const follower = masters.find((master) => master !== leader)!;
    let dropped = 0;
    // The first answer from the leader to the follower is lost.
    tamper.current = (from, to, message) => (message.type === 'rpc' && from === leader.id && to === follower.id && dropped++ === 0 ? undefined : message);
    const message = makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/plant', body: encodeAddressRecord({ description: '' }) });
    const receipt = await follower.node.submit(message);
    expect(dropped).toBeGreaterThanOrEqual(2);
    const block = (await leader.node.getBlock(receipt.height))!;
    expect(block.messages.filter((committed) => committed.message.nonce === message.nonce && committed.message.address === ADDRESSES_ADDRESS)).toHaveLength(1);
    expect(block.messages.find((committed) => committed.globalSequence === receipt.globalSequence)!.message.address).toBe(ADDRESSES_ADDRESS);
    for (const master of masters) await master.close();
  });

  it('with no leader to be reached a follower answers, within its forward timeout, with a refusal that says retry', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    const base = await startCluster(3, tamper);
    const { chain, masters } = base;
    const leader = await leaderOf(masters);
    await leader.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/plant', body: encodeAddressRecord({ description: '' }) }));
    const follower = masters.find((master) => master !== leader)!;
    // The follower is alone: nobody hears it, and it hears nobody.
    tamper.current = (from, to, message) => (from === follower.id || to === follower.id ? undefined : message);
    const started = Date.now();
    const attempt = follower.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/alone', body: encodeAddressRecord({ description: '' }) }));
    await expect(attempt).rejects.toMatchObject({ code: expect.stringMatching(/^KALIMA_ERR_CONSENSUS_(NOT_LEADER|OUTCOME_UNKNOWN)$/) });
    // The default forward timeout is 10 s; well short of a hang.
    expect(Date.now() - started).toBeLessThan(15_000);
    tamper.current = undefined;
    for (const master of masters) await master.close();
  }, 30_000);

  it('a block the followers refuse is never acknowledged by them, so it never commits', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    const { chain, masters } = await startCluster(3, tamper);
    const leader = await leaderOf(masters);
    const followers = masters.filter((master) => master !== leader);
    await leader.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/first', body: encodeAddressRecord({ description: '' }) }));
    const height = leader.node.height;
    // From now on every block the leader replicates arrives with one byte changed (as a forging
    // leader's would, or a corrupted one's).
    tamper.current = (_from, _to, message) => (message.type !== 'append' ? message : {
      ...message,
      entries: message.entries.map((entry) => {
        if (entry.data.length === 0) return entry;
        const data = entry.data.slice();
        data[data.length - 70]! ^= 1;
        return { ...entry, data };
      }),
    });
    let settled = false;
    const pending = leader.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/second', body: encodeAddressRecord({ description: '' }) })).finally(() => (settled = true));
    pending.catch(() => undefined);
    await until('both followers to refuse the block', () => followers.every((master) => master.refusals.length > 0));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(settled).toBe(false);
    expect(leader.runtime.raft.commit).toBeLessThan(leader.runtime.raft.lastIndex());
    for (const follower of followers) {
      expect(follower.refusals[0]).toMatchObject({ code: 'KALIMA_ERR_CONSENSUS_BAD_ENTRY' });
      expect(follower.node.height).toBe(height);
      expect(follower.node.getEntry(ADDRESSES_ADDRESS, '/second')).toBeUndefined();
    }
    expect(leader.node.height).toBe(height);
    for (const master of masters) await master.close();
  });

  it('a leader cut off with blocks in flight steps down and refuses them (retryable); the new leader goes on; retries never write twice', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    const { chain, masters } = await startCluster(3, tamper);
    const first = await leaderOf(masters);
    const device = await plantWithSensor(chain, first);
    const firstTerm = first.runtime.raft.term;
    // The first leader is cut off; writes sent to it meanwhile cannot commit.
    tamper.current = (from, to, message) => (from === first.id || to === first.id ? undefined : message);
    const stranded = Array.from({ length: 5 }, (_, index) => makeMessage(chain, device, { address: '/plant', key: `s${index}`, body: 'stranded' }));
    const outcomes = Promise.allSettled(stranded.map((message) => first.node.submit(message)));
    const others = masters.filter((master) => master !== first);
    // A new leader among the other two.
    const second = await leaderOf(others, 15_000);
    expect(second.runtime.raft.term).toBeGreaterThan(firstTerm);
    // The old leader gives up (check-quorum) and refuses what it held, with a code that says retry.
    const settled = await outcomes;
    for (const outcome of settled) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: expect.stringMatching(/^KALIMA_ERR_CONSENSUS_(NOT_LEADER|OUTCOME_UNKNOWN)$/) });
    }
    await second.node.submit(makeMessage(chain, device, { address: '/plant', key: 'after', body: 'new leader' }));
    // The link comes back: the old leader follows, drops its own uncommitted blocks and catches up.
    tamper.current = undefined;
    // Retried at the new leader, the same signed messages commit once (or answer that they did).
    for (const message of stranded) {
      try {
        await second.node.submit(message);
      } catch (error) {
        expect(error).toMatchObject({ code: 'KALIMA_ERR_LEDGER_NONCE_REPLAYED', details: { committed: expect.anything() } });
      }
    }
    const height = second.node.height;
    await until('all three at the same height', () => masters.every((master) => master.node.height === height), 15_000);
    for (const master of masters) {
      expect(master.node.cache.digest()).toEqual(second.node.cache.digest());
      expect(new TextDecoder().decode(master.node.getEntry('/plant', 'after')!.value)).toBe('new leader');
      for (let index = 0; index < stranded.length; index++) expect(master.node.getEntry('/plant', `s${index}`)).toBeDefined();
    }
    // Each stranded message is in the chain exactly once.
    const seen = new Map<string, number>();
    for (let blockHeight = 1; blockHeight <= height; blockHeight++) {
      for (const committed of (await second.node.getBlock(blockHeight))!.messages) {
        const id = `${toHex(committed.message.device)}:${committed.message.nonce}`;
        seen.set(id, (seen.get(id) ?? 0) + 1);
      }
    }
    for (const message of stranded) expect(seen.get(`${toHex(message.device)}:${message.nonce}`)).toBe(1);
    for (const master of masters) await master.close();
  });

  it('a leader whose blocks commit a Ready apart (near-full blocks, one per append) writes each as it commits, with no stall', async () => {
    const { chain, masters } = await startCluster(3);
    const leader = await leaderOf(masters);
    const term = leader.runtime.raft.term;
    const device = await plantWithSensor(chain, leader);
    // Two of these fill a block: full blocks are built ahead of the disk and go to it together,
    // while each needs an append of its own, so they commit one after the other.
    const body = 'x'.repeat(7_000);
    const receipts = await Promise.all(Array.from({ length: 12 }, (_, index) => leader.node.submit(makeMessage(chain, device, { address: '/plant', key: `k${index}`, body }))));
    expect(new Set(receipts.map((receipt) => receipt.height)).size).toBeGreaterThanOrEqual(6);
    // No election was needed to get them through.
    expect(leader.runtime.raft.term).toBe(term);
    expect(leader.runtime.raft.role).toBe('leader');
    const height = leader.node.height;
    await until('the followers to apply every block', () => masters.every((master) => master.node.height === height));
    for (const master of masters) expect(master.node.cache.digest()).toEqual(leader.node.cache.digest());
    for (const master of masters) await master.close();
  });

  it('a leader whose chain-store write is slow keeps leading: the Raft loop does not wait for the disk', async () => {
    const { chain, masters } = await startCluster(3);
    const leader = await leaderOf(masters);
    const term = leader.runtime.raft.term;
    await leader.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/plant', body: encodeAddressRecord({ description: '' }) }));
    // The next write takes 20 election timeouts (ticks of 5 ms, timeouts of 10 to 20 ticks).
    const store = leader.node.store;
    const commitBlocks = store.commitBlocks.bind(store);
    let slow = true;
    store.commitBlocks = async (blocks) => {
      if (slow) {
        slow = false;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
      return commitBlocks(blocks);
    };
    const receipt = await leader.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/slow', body: encodeAddressRecord({ description: '' }) }));
    expect(receipt.height).toBe(2);
    // Heartbeats went on meanwhile: nobody stood.
    expect(leader.runtime.raft.role).toBe('leader');
    for (const master of masters) expect(master.runtime.raft.term).toBe(term);
    await until('the followers to apply it', () => masters.every((master) => master.node.height === 2));
    for (const master of masters) await master.close();
  });

  it('a leader whose node fails stops taking part, so another master leads and takes the writes', async () => {
    const { chain, masters } = await startCluster(3);
    const first = await leaderOf(masters);
    await first.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/plant', body: encodeAddressRecord({ description: '' }) }));
    // Its disk refuses the next write.
    first.node.store.commitBlocks = async () => {
      throw new Error('the disk is gone');
    };
    await expect(first.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/lost', body: encodeAddressRecord({ description: '' }) })))
      .rejects.toMatchObject({ code: expect.stringMatching(/^KALIMA_ERR_(NODE_NOT_READY|CONSENSUS_OUTCOME_UNKNOWN)$/) });
    expect(first.runtime.isStopped).toBe(true);
    const others = masters.filter((master) => master !== first);
    const second = await leaderOf(others, 15_000);
    expect(second.id).not.toBe(first.id);
    // A write through the other follower goes to the new leader.
    const follower = others.find((master) => master !== second)!;
    const receipt = await follower.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/after', body: encodeAddressRecord({ description: '' }) }));
    expect((await second.node.getBlock(receipt.height))!.header.leader).toEqual(Uint8Array.from(Buffer.from(second.id, 'hex')));
    // The failed master refuses writes with a code that says it is not serving.
    await expect(first.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/x', body: encodeAddressRecord({ description: '' }) }))).rejects.toMatchObject({ code: 'KALIMA_ERR_NODE_NOT_READY' });
    for (const master of masters) await master.close();
  });

  it('a leader that loses the leadership while a write it started still commits refuses what queued behind that write', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    const { chain, masters } = await startCluster(3, tamper);
    const first = await leaderOf(masters);
    const device = await plantWithSensor(chain, first);
    // The leader's next chain-store write is slow: its block has committed in the cluster, and the
    // messages that arrive meanwhile queue behind the write.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const store = first.node.store;
    const commitBlocks = store.commitBlocks.bind(store);
    let writes = 0;
    store.commitBlocks = async (blocks) => {
      if (writes++ === 0) await gate;
      return commitBlocks(blocks);
    };
    const inWrite = first.node.submit(makeMessage(chain, device, { address: '/plant', key: 'w', body: 'in the write' }));
    await until('the write to start', () => writes === 1);
    const queued = Array.from({ length: 3 }, (_, index) => first.node.submit(makeMessage(chain, device, { address: '/plant', key: `q${index}`, body: 'queued' })));
    const outcomes = Promise.allSettled(queued);
    // Cut off, it steps down while the write is still under way; then the write finishes.
    tamper.current = (from, to, message) => (from === first.id || to === first.id ? undefined : message);
    await until('the leader to step down', () => first.runtime.raft.role !== 'leader', 10_000);
    release();
    // The block in the write committed: its message is acknowledged.
    await expect(inWrite).resolves.toMatchObject({ height: 3 });
    // What queued behind it is refused with a retryable code, not left waiting for a leadership that may never return.
    for (const outcome of await outcomes) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: 'KALIMA_ERR_CONSENSUS_NOT_LEADER' });
    }
    expect(first.node.pendingCount).toBe(0);
    tamper.current = undefined;
    for (const master of masters) await master.close();
  });

  it('a master\'s BOLT 8 key is its node key with even y, so the genesis file\'s x-only key names it', () => {
    const rng = seededRng('link-keys');
    let odd = 0;
    for (let round = 0; round < 40; round++) {
      const key = generateKeyPair(rng);
      if (getPublicKey(key.secretKey, true)[0] === 3) odd++;
      expect(toHex(getPublicKey(linkSecretOf(key.secretKey), true))).toBe(toHex(linkKeyOfMaster(key.publicKey)));
    }
    expect(odd).toBeGreaterThan(0);
  });

  it('three masters over encrypted TCP links on loopback elect, replicate and agree', async () => {
    const base = makeChain('linked-cluster');
    const keys = Array.from({ length: 3 }, () => generateKeyPair(base.rng));
    const genesis: Genesis = { ...base.genesis, masters: keys.map((key) => key.publicKey) };
    const chain: TestChain = { ...base, genesis, nodeKey: keys[0]! };
    const ports = await Promise.all(keys.map(() => freePort()));
    const directory = keys.map((key, index) => ({ key: key.publicKey, host: '127.0.0.1', port: ports[index]! }));
    const masters: ClusterMaster[] = [];
    for (const [index, key] of keys.entries()) {
      const transport = await linkTransport({ secretKey: key.secretKey, masters: directory, clock: systemClock, rng: seededRng(`links-${index}`), scheduler: systemScheduler, logger: silentLogger, heartbeatMs: 100, deadAfterMs: 1_000 }, ports[index]!);
      masters.push(await ClusterMaster.open({
        genesis, kv: new MemoryKvStore(), nodeKey: key, clock: systemClock, rng: seededRng(`linked-${index}`), scheduler: systemScheduler,
        verifier: new InlineVerifier(), logger: silentLogger, transport, tickMs: 10, newMember: true,
      }));
    }
    for (const master of masters) master.start();
    const leader = await leaderOf(masters, 15_000);
    await leader.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/linked', body: encodeAddressRecord({ description: 'over BOLT 8' }) }));
    await Promise.all(Array.from({ length: 8 }, (_, index) => leader.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: `/linked/${index}`, body: encodeAddressRecord({ description: '' }) }))));
    await until('every master at the leader\'s height', () => masters.every((master) => master.node.height === leader.node.height), 15_000);
    for (const master of masters) expect(master.node.cache.digest()).toEqual(leader.node.cache.digest());
    for (const master of masters) await master.close();
  });

  it('a former leader checks its own uncommitted blocks when the next leader builds on them, so the cluster goes on', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    const { chain, masters } = await startCluster(3, tamper);
    const a = await leaderOf(masters);
    await a.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/a', body: encodeAddressRecord({ description: '' }) }));
    const [b, c] = masters.filter((master) => master !== a) as [Master, Master];
    await until('all at one height', () => masters.every((master) => master.node.height === a.node.height));
    await c.close(); // one master down: a and b must both acknowledge everything
    const hidden = a.runtime.raft.lastIndex();
    // b holds a's next block, but its acknowledgement never reaches a, so a cannot commit it.
    tamper.current = (from, to, message) => (from === b.id && to === a.id && message.type === 'appendResponse' && message.success && message.index > hidden ? { ...message, index: hidden } : message);
    a.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/y', body: encodeAddressRecord({ description: '' }) })).catch(() => undefined);
    await until('b to hold the block', () => b.runtime.raft.lastIndex() > hidden);
    // a and b lose each other; a steps down; then only b may stand.
    tamper.current = (from, to) => (from === a.id && to === b.id) || (from === b.id && to === a.id) ? undefined : undefined;
    await until('a to step down', () => a.runtime.raft.role !== 'leader', 5_000);
    tamper.current = (from, _to, message) => (from === a.id && (message.type === 'preVote' || message.type === 'vote') ? undefined : message);
    await until('b to lead', () => b.runtime.raft.role === 'leader', 5_000);
    tamper.current = undefined;
    // b's first entry sits on a's uncommitted block, which a never admitted (it proposed it): a must
    // check it now, or b could never commit with a's acknowledgement, and the chain would stall.
    await until('b to be able to produce', () => b.replicator.mayProduce(), 10_000);
    await b.node.submit(makeMessage(chain, chain.admin, { address: ADDRESSES_ADDRESS, key: '/z', body: encodeAddressRecord({ description: '' }) }));
    await until('a to follow', () => a.node.height === b.node.height, 10_000);
    expect(a.node.cache.digest()).toEqual(b.node.cache.digest());
    expect(a.refusals).toEqual([]);
    for (const master of [a, b]) await master.close();
  });
});
