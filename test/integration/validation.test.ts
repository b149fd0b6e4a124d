// Validation nodes in a cluster (in one process, on the in-memory network): a learner that checks
// every block, writes validation records the leader carries in later blocks, and reports a leader
// whose block does not verify or comes late; the masters bar that leader from leading.
import { describe, expect, it } from 'vitest';
import { blockHash } from '../../src/ledger/block.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { VALIDATIONS_ADDRESS, decodeValidationBody, encodeValidationBody, UNITS_PER_KLX } from '../../src/state/validation.ts';
import { makeMessage } from '../support/chain.ts';
import { type Master, type Tamper, leaderOf, plantWithSensor, startCluster, until } from '../support/memory-cluster.ts';

const recordOf = (member: Master, validator: Master) => {
  const entry = member.node.cache.getEntry(VALIDATIONS_ADDRESS, validator.id);
  return entry === undefined ? undefined : decodeValidationBody(entry.value);
};

describe('validation nodes', () => {
  it('a validation node follows without voting, validates every block, and the chain carries its records and counts the rewards', async () => {
    const { chain, masters, validators: [validator] } = await startCluster(3, undefined, 10_000, { validators: 1 });
    try {
      const leader = await leaderOf(masters);
      const device = await plantWithSensor(chain, leader);
      for (let round = 0; round < 5; round++) {
        await Promise.all(Array.from({ length: 8 }, (_, index) => leader.node.submit(makeMessage(chain, device, { address: '/plant', key: `k${index}`, body: `round ${round}` }))));
      }
      const height = leader.node.height;
      await until('the validation record to cover every block written', () => (recordOf(leader, validator!)?.height ?? 0) >= height);
      expect(validator!.status()).toMatchObject({ member: 'validator', role: 'follower', masters: 3, validators: [validator!.id] });
      expect(validator!.runtime.raft.isVoter()).toBe(false);
      expect(masters.every((master) => master.status().member === 'master')).toBe(true);
      // The record is a message in a later block, the same on every master, and names that block's hash.
      await until('every master to apply the same chain', () => masters.every((master) => master.node.height === leader.node.height));
      const record = recordOf(leader, validator!)!;
      expect(record.validated).toBe(record.height);
      expect(toHex(record.hash)).toBe(toHex(blockHash((await leader.node.store.getBlock(record.height))!.header)));
      const entry = leader.node.cache.getEntry(VALIDATIONS_ADDRESS, validator!.id)!;
      expect(entry.height).toBeGreaterThan(record.height);
      expect(toHex(entry.device)).toBe(validator!.id);
      for (const master of masters) expect(master.node.cache.digest()).toEqual(leader.node.cache.digest());
      // Rewards as the chain counts them, the same on every master.
      const rewards = leader.node.rewards();
      expect(rewards.masters.map((master) => master.units)).toEqual(masters.map(() => leader.node.height * UNITS_PER_KLX));
      expect(rewards.validators).toEqual([{ id: validator!.id, validated: record.validated, lastHeight: record.height, units: record.validated * UNITS_PER_KLX / 10, klx: expect.any(String) }]);
      for (const master of masters) expect(master.node.rewards()).toEqual(rewards);
      // An idle chain stays idle: a block of validations alone is not validated again.
      const idle = leader.node.height;
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(leader.node.height).toBeLessThanOrEqual(idle + 1);
      // Nobody else writes validations, not even an admin; nor a forged count or another hash.
      await expect(leader.node.submit(makeMessage(chain, chain.admin, { address: VALIDATIONS_ADDRESS, key: validator!.id, body: encodeValidationBody({ height: 1, hash: new Uint8Array(32), validated: 1 }) }))).rejects.toMatchObject({ code: 'KALIMA_ERR_ACCESS_VALIDATORS_ONLY' });
      expect(validator!.refusals).toEqual([]);
      expect(validator!.status().validation).toMatchObject({ validatedHeight: record.height, reports: 0 });
    } finally {
      for (const member of [...masters, validator!]) await member.close();
    }
  });

  it('a leader whose block does not verify at the validation node is reported, gives up leadership, and may not stand for the barred terms', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    const { chain, masters, validators: [validator] } = await startCluster(3, tamper, 10_000, { validators: 1, params: { leaderBarTerms: 2 } });
    try {
      const leader = await leaderOf(masters);
      const device = await plantWithSensor(chain, leader);
      await until('the validation node to follow', () => validator!.node.height === leader.node.height);
      const term = leader.runtime.raft.term;
      // What the leader sends the validation node is corrupted (its block signature): to the
      // validation node, this leader's block is wrong.
      tamper.current = (from, to, message) => {
        if (from !== leader.id || to !== validator!.id || message.type !== 'append') return message;
        return { ...message, entries: message.entries.map((entry) => (entry.data.length === 0 ? entry : { ...entry, data: Uint8Array.from(entry.data, (byte, index) => (index === entry.data.length - 1 ? byte ^ 1 : byte)) })) };
      };
      await leader.node.submit(makeMessage(chain, device, { address: '/plant', key: 'k', body: 'seen wrong' })).catch(() => undefined);
      await until('the masters to bar the reported leader', () => masters.every((master) => master.status().barred.some((bar) => bar.id === leader.id && bar.untilTerm === term + 2)));
      expect(validator!.status().validation!.reports).toBe(1);
      await until('the reported leader to step down', () => !leader.replicator.mayProduce() && leader.runtime.raft.role !== 'leader');
      tamper.current = undefined;
      const next = await leaderOf(masters);
      expect(next.id).not.toBe(leader.id);
      expect(next.runtime.raft.term).toBeGreaterThan(term);
      expect(leader.runtime.raft.isBarred(leader.id, term + 2)).toBe(true);
      // Writes go on under the new leader, and the validation node catches up on the good blocks.
      await next.node.submit(makeMessage(chain, device, { address: '/plant', key: 'k', body: 'after' }));
      await until('the validation node to apply the new leader\'s blocks', () => validator!.node.height === next.node.height);
      expect(validator!.node.cache.digest()).toEqual(next.node.cache.digest());
    } finally {
      for (const member of [...masters, validator!]) await member.close();
    }
  });

  it('an honest leader is not reported when the validation node was cut off, restarted or caught up on old blocks', async () => {
    const tamper: { current: Tamper | undefined } = { current: undefined };
    const { chain, masters, validators: [first], restart } = await startCluster(3, tamper, 4, { validators: 1, params: { validationLateMs: 300 } });
    let validator = first!;
    try {
      const leader = await leaderOf(masters);
      const device = await plantWithSensor(chain, leader);
      await until('the validation node to follow', () => validator.node.height === leader.node.height);
      const write = (index: number) => leader.node.submit(makeMessage(chain, device, { address: '/plant', key: `k${index % 5}`, body: `${index}` }));
      // Cut off both ways for 1.5 s (five times the limit) while the masters commit; then healed.
      tamper.current = (from, to, message) => (from === validator.id || to === validator.id ? undefined : message);
      for (let index = 0; index < 15; index++) {
        await write(index);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      tamper.current = undefined;
      await write(100);
      await until('the validation node to catch up after the cut', () => validator.node.height === leader.node.height);
      // Stopped for 1 s, then restarted on its store, with more blocks meanwhile than the log keeps (a catch-up on blocks).
      await validator.close();
      for (let index = 0; index < 12; index++) {
        await write(200 + index);
        await new Promise((resolve) => setTimeout(resolve, 80));
      }
      validator = await restart(validator);
      await write(300);
      await until('the restarted validation node to catch up', () => validator.node.height === leader.node.height, 20_000);
      // The next block with news gets validated (a record covers blocks up to one after the block that carried the previous record).
      await new Promise((resolve) => setTimeout(resolve, 200));
      const last = await write(301);
      await until('its record to cover the chain', () => (recordOf(leader, validator)?.height ?? 0) >= last.height);
      expect(validator.status().validation!.reports).toBe(0);
      expect(masters.every((master) => master.status().barred.length === 0)).toBe(true);
      expect(leader.replicator.mayProduce()).toBe(true);
      // The count goes on across the restart.
      const record = recordOf(leader, validator)!;
      expect(record.validated).toBe(record.height);
    } finally {
      for (const member of [...masters, validator]) await member.close();
    }
  });

  it('a leader whose blocks reach the validation node late (its clock behind) is reported and loses the leadership', async () => {
    const { chain, masters, validators: [validator], skew } = await startCluster(3, undefined, 10_000, { validators: 1, params: { validationLateMs: 300, leaderBarTerms: 1 } });
    try {
      const leader = await leaderOf(masters);
      const device = await plantWithSensor(chain, leader);
      await until('the validation node to follow', () => validator!.node.height === leader.node.height);
      const term = leader.runtime.raft.term;
      // The leader's clock falls 2 s behind: its block times stop moving (they may not go back), and its blocks grow late.
      skew(leader, -2_000);
      const started = Date.now();
      while (leader.runtime.raft.role === 'leader' && Date.now() - started < 5_000) {
        await leader.node.submit(makeMessage(chain, device, { address: '/plant', key: 'k', body: `${Date.now()}` })).catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(validator!.status().validation!.reports).toBe(1);
      await until('the masters to bar it', () => masters.every((master) => master.status().barred.some((bar) => bar.id === leader.id && bar.untilTerm === term + 1)));
      const next = await leaderOf(masters);
      expect(next.id).not.toBe(leader.id);
      await next.node.submit(makeMessage(chain, device, { address: '/plant', key: 'k', body: 'on time' }));
      // The new leader's blocks are on time: no more reports.
      await until('the validation node to apply it', () => validator!.node.height === next.node.height);
      expect(validator!.status().validation!.reports).toBe(1);
    } finally {
      for (const member of [...masters, validator!]) await member.close();
    }
  });
});
