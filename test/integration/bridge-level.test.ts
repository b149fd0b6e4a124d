// The bridge coordinator on a real LevelDB in a temp dir: it stops dead in the middle of three
// transactions (one with its commit decision on disk, one waiting for a vote, one aborting), the
// database is closed without finishing them, and a new coordinator on the reopened database
// drives each to its end, leaving an empty log. Then the production failpoint: a process killed by
// KALIMA_FAILPOINTS=bridge.after-commit-decision leaves the commit on disk, and recovery commits.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { BridgeCoordinator } from '../../bridge/coordinator.ts';
import type { ParticipantFactory, ParticipantRegistry } from '../../bridge/participant.ts';
import { BridgeLog } from '../../bridge/log.ts';
import { DEFAULT_KEY_PREFIX } from '../../bridge/records.ts';
import { BridgeService } from '../../bridge/service.ts';
import { silentLogger, systemClock, systemRng, systemScheduler } from '../../src/ports.ts';
import type { KvStore } from '../../src/store/kv.ts';
import { LevelKvStore } from '../../src/store/level-kv.ts';
import { tempDir } from '../support/chain.ts';
import { prefixEnd } from '../../src/store/keys.ts';

type State = 'prepared' | 'committed' | 'aborted';

/** Participants named by their args; 'hang' never votes, 'no' votes no. Their state outlives the coordinator. */
function participants(states: Map<string, State>): ParticipantRegistry {
  const factory: ParticipantFactory = (args, { txId }) => {
    const name = Buffer.from(args).toString('utf8');
    const key = `${name}/${txId}`;
    return {
      prepare: async () => {
        if (name === 'hang') {
          states.set(key, 'prepared');
          return new Promise(() => {});
        }
        if (states.get(key) === 'aborted' || name === 'no') {
          states.set(key, 'aborted');
          return { vote: 'no', reason: 'refused' };
        }
        states.set(key, 'prepared');
        return 'yes';
      },
      commit: async () => {
        if (states.get(key) !== 'prepared' && states.get(key) !== 'committed') throw new Error(`commit of ${key} in ${states.get(key)}`);
        states.set(key, 'committed');
      },
      abort: async () => {
        if (states.get(key) === 'committed') throw new Error(`abort of committed ${key}`);
        states.set(key, 'aborted');
      },
      inquire: async () => states.get(key) ?? 'unknown',
    };
  };
  return new Map([['mem', factory]]);
}

const spec = (name: string) => ({ kind: 'mem', args: new Uint8Array(Buffer.from(name)) });

async function records(kv: KvStore): Promise<number> {
  let count = 0;
  for await (const _ of kv.entries({ gte: DEFAULT_KEY_PREFIX, lt: prefixEnd(DEFAULT_KEY_PREFIX) })) count++;
  return count;
}

let directory: string | undefined;
afterEach(async () => {
  if (directory !== undefined) await rm(directory, { recursive: true, force: true });
});

describe('bridge coordinator on LevelDB', () => {
  it('recovers after being stopped mid-flight and the database closed', async () => {
    directory = await tempDir('kalima-bridge-');
    const states = new Map<string, State>();
    const registry = participants(states);
    const options = { participants: registry, clock: systemClock, rng: systemRng, scheduler: systemScheduler, prepareTimeoutMs: 60_000, callTimeoutMs: 2_000, retryInitialMs: 10, retryMaxMs: 50 };

    let kv = await LevelKvStore.open(directory);
    let commitDecided!: () => void;
    const decidedCommit = new Promise<void>((resolve) => (commitDecided = resolve));
    const first = await BridgeCoordinator.open({
      ...options, kv,
      failpoint: (name, txId) => {
        if (name === 'bridge.after-commit-decision' && txId === 'c0') {
          commitDecided();
          throw new Error('crash');
        }
      },
    });
    const aborting = first.begin({ id: 'a0', participants: [spec('x'), spec('no')] });
    await aborting.outcome;
    const waiting = first.begin({ id: 'b0', participants: [spec('y'), spec('hang')] });
    const committing = first.begin({ id: 'c0', participants: [spec('z'), spec('w')] });
    await decidedCommit;
    await first.close();
    await expect(waiting.outcome).rejects.toMatchObject({ code: 'KALIMA_ERR_BRIDGE_STOPPED' });
    await expect(committing.outcome).rejects.toMatchObject({ code: 'KALIMA_ERR_BRIDGE_STOPPED' });
    expect(states.get('z/c0')).toBe('prepared');
    expect(states.get('y/b0')).toBe('prepared');
    expect(await records(kv)).toBe(3); // b0's initiation; c0's initiation and commit decision
    await kv.close();

    kv = await LevelKvStore.open(directory);
    const second = await BridgeCoordinator.open({ ...options, kv });
    expect(second.recoveredIds.sort()).toEqual(['b0', 'c0']);
    expect(second.inquire('c0')).toEqual({ state: 'committed' });
    expect(second.inquire('b0').state).toBe('aborted');
    expect(await second.outcome('c0')).toEqual({ outcome: 'committed' });
    expect((await second.outcome('b0'))?.outcome).toBe('aborted');
    await second.idle();
    expect(Object.fromEntries(states)).toEqual({
      'x/a0': 'aborted', 'no/a0': 'aborted', 'y/b0': 'aborted', 'hang/b0': 'aborted', 'z/c0': 'committed', 'w/c0': 'committed',
    });
    await second.close();
    await kv.close();

    kv = await LevelKvStore.open(directory);
    expect(await records(kv)).toBe(0);
    await kv.close();
  });

  it('a process killed at a KALIMA_FAILPOINTS failpoint leaves a log that recovery finishes', async () => {
    directory = await tempDir('kalima-bridge-kill-');
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../support/bridge-child.ts', import.meta.url)), directory, 'cc'], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KALIMA_FAILPOINTS: 'anchor.before-broadcast,bridge.after-commit-decision' },
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    expect({ code, signal, output }).toMatchObject({ code: null, signal: 'SIGKILL', output: '' });

    const kv = await LevelKvStore.open(directory);
    const logged = await new BridgeLog(kv).load();
    expect(logged.map((tx) => [tx.initiation.id, tx.initiation.participants.length, tx.decision?.outcome])).toEqual([['cc', 2, 'commit']]);
    await kv.close();

    const committed = new Set<number>();
    const service = await BridgeService.open({
      directory, logger: silentLogger,
      participants: new Map([['trivial', (args) => ({ prepare: async () => 'yes' as const, commit: async () => void committed.add(args[0]!), abort: async () => { throw new Error('never'); } })]]),
    });
    expect(await service.coordinator.outcome('cc')).toEqual({ outcome: 'committed' });
    expect([...committed].sort()).toEqual([1, 2]);
    await service.close();
  });
});
