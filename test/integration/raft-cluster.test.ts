// Five masters as five processes on loopback (test/support/raft-cluster-node.ts: the real Raft
// runtime, its log in LevelDB, BOLT 8 links). They elect one leader; entries proposed to it commit;
// the leader is killed with SIGKILL; the other four elect a new one and go on; the killed one
// restarts from its disk and catches up. Every acknowledged entry is applied everywhere, at the
// same index, in the same order.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { afterAll, expect, it } from 'vitest';
import { tempDir } from '../support/chain.ts';
import { freePort } from '../support/ports.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = join(REPO, 'test', 'support', 'raft-cluster-node.ts');
const MASTERS = 5;

interface Applied {
  index: number;
  term: number;
  data: string;
}

interface Master {
  index: number;
  child: ChildProcess | undefined;
  /** Across restarts: what this master's state machine applied, in order. */
  applied: Applied[];
  lines: Array<Record<string, unknown>>;
  status: { role: string; term: number; leader: string | null; commit: number } | undefined;
  id: string | undefined;
}

const masters: Master[] = [];

async function start(master: Master, directory: string, ports: number[]): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, '--dir', directory, '--index', String(master.index), '--ports', ports.join(',')], { cwd: REPO, stdio: ['pipe', 'pipe', 'inherit'] });
  master.child = child;
  master.status = undefined;
  const ready = new Promise<void>((resolve) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const event = JSON.parse(line) as Record<string, unknown>;
      master.lines.push(event);
      if (event.ready) {
        master.id = event.id as string;
        // What its state machine holds from before a restart (written together with what it applied).
        master.applied = [...(event.state as Applied[])];
        resolve();
      }
      if (event.applied) master.applied.push(...(event.applied as Applied[]));
      if (event.status) master.status = event.status as Master['status'];
    });
  });
  await ready;
}

const command = (master: Master, object: unknown): void => void master.child!.stdin!.write(`${JSON.stringify(object)}\n`);

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function leaderAmong(candidates: Master[], minimumTerm = 0): Promise<Master> {
  let asked = false;
  return until('one leader', () => {
    // Judge the answers to the last round of questions, then ask again.
    const leaders = candidates.filter((master) => master.status?.role === 'leader' && master.status.term >= minimumTerm);
    // Every live master agrees on who leads.
    if (asked && leaders.length === 1 && candidates.every((master) => master.status?.leader === leaders[0]!.id)) return leaders[0];
    for (const master of candidates) {
      master.status = undefined;
      command(master, { status: true });
    }
    asked = true;
    return undefined;
  });
}

async function proposeAll(leader: Master, texts: string[]): Promise<void> {
  for (const text of texts) command(leader, { propose: text });
  await until(`${texts.length} commits`, () => (texts.every((text) => leader.lines.some((line) => line.committed === text)) ? true : undefined));
}

afterAll(() => {
  for (const master of masters) master.child?.kill('SIGKILL');
});

it('five masters in five processes: elect, replicate, lose the leader to SIGKILL, elect again, and the killed one catches up', async () => {
  const root = await tempDir('raft-cluster');
  const ports = await Promise.all(Array.from({ length: MASTERS }, freePort));
  for (let index = 0; index < MASTERS; index++) masters.push({ index, child: undefined, applied: [], lines: [], status: undefined, id: undefined });
  await Promise.all(masters.map((master) => start(master, join(root, `m${master.index}`), ports)));

  const first = await leaderAmong(masters);
  const firstBatch = Array.from({ length: 20 }, (_, index) => `first-${index}`);
  await proposeAll(first, firstBatch);

  first.child!.kill('SIGKILL');
  await once(first.child!, 'exit');
  const survivors = masters.filter((master) => master !== first);
  const firstTerm = first.status!.term;
  const second = await leaderAmong(survivors, firstTerm + 1);
  expect(second.status!.term).toBeGreaterThan(firstTerm);
  const secondBatch = Array.from({ length: 20 }, (_, index) => `second-${index}`);
  await proposeAll(second, secondBatch);

  // The killed master restarts from its data directory and catches up.
  await start(first, join(root, `m${first.index}`), ports);
  const restored = first.lines.filter((line) => line.ready).at(-1)!;
  expect(restored.restoredEntries).toBeGreaterThanOrEqual(firstBatch.length);
  const everything = [...firstBatch, ...secondBatch];
  await until('every master applied everything', () => (masters.every((master) => everything.every((text) => master.applied.some((entry) => entry.data === text))) ? true : undefined));
  await leaderAmong(masters, second.status!.term);

  // One order, the same everywhere: index by index, the same term and data; nothing applied twice.
  const reference = second.applied;
  for (const master of masters) {
    const indices = master.applied.map((entry) => entry.index);
    expect(new Set(indices).size).toBe(indices.length);
    for (const entry of master.applied) {
      const same = reference.find((other) => other.index === entry.index);
      if (same !== undefined) expect(entry).toEqual(same);
    }
    expect(master.applied.map((entry) => entry.data).filter((data) => everything.includes(data))).toEqual(everything);
  }
}, 120_000);
