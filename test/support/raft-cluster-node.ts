// One master of a test cluster as its own process: the real Raft runtime, its log in LevelDB,
// and encrypted links (BOLT 8) to every other master on loopback. Driven by JSON lines on stdin
// ({"propose": text} or {"status": true}); reports JSON lines on stdout.
//
//   tsx test/support/raft-cluster-node.ts --dir DIR --index I --ports P1,P2,...
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { RaftRuntime } from '../../src/consensus/runtime.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { publicKeyOf } from '../../src/ledger/signature.ts';
import { linkTransport } from '../../src/node/cluster.ts';
import { silentLogger, systemClock, systemRng, systemScheduler } from '../../src/ports.ts';
import { LevelKvStore } from '../../src/store/level-kv.ts';
import { RaftLogStore } from '../../src/store/raft-log.ts';
import { u64 } from '../../src/store/keys.ts';

const { values } = parseArgs({ options: { dir: { type: 'string' }, index: { type: 'string' }, ports: { type: 'string' } } });
const ports = values.ports!.split(',').map(Number);
const index = Number(values.index);
const secrets = ports.map((_, position) => new Uint8Array(createHash('sha256').update(`test-master-${position}`).digest()));
// Ids are the masters' x-only keys, as a genesis file names them; the links use their even-y form.
const ids = secrets.map((secret) => toHex(publicKeyOf(secret)));
const me = ids[index]!;
const out = (object: unknown): void => void process.stdout.write(`${JSON.stringify(object)}\n`);

const kv = await LevelKvStore.open(values.dir!);
const { store, snapshot, hardState, log } = await RaftLogStore.open(kv);
// This process's state machine: the entries it applied, in its own table, written with the applied
// index in one synced batch, as a real node's chain store is. A restart reports it and resumes after it.
const STATE = 0xf0;
const stateKey = (index: number): Uint8Array => Uint8Array.of(STATE, ...u64(index));
const state: Array<{ index: number; term: number; data: string }> = [];
for await (const [, value] of kv.entries({ gte: Uint8Array.of(STATE), lt: Uint8Array.of(STATE + 1) })) state.push(JSON.parse(Buffer.from(value).toString('utf8')) as { index: number; term: number; data: string });
const appliedIndex = state.length === 0 ? 0 : state[state.length - 1]!.index;
const transport = await linkTransport({
  secretKey: secrets[index]!, masters: ids.map((id, position) => ({ key: Uint8Array.from(Buffer.from(id, 'hex')), host: '127.0.0.1', port: ports[position]! })),
  clock: systemClock, rng: systemRng, scheduler: systemScheduler, logger: silentLogger, heartbeatMs: 200, deadAfterMs: 1_000,
}, ports[index]!);
const runtime = new RaftRuntime({
  raft: { id: me, voters: ids, electionTicks: 10, heartbeatTicks: 2, rng: systemRng, snapshot, hardState, log, applied: appliedIndex },
  store, scheduler: systemScheduler, logger: silentLogger, tickMs: 30,
  send: (to, bytes) => transport.send(to, bytes),
  async apply(entries) {
    const applied = entries.map((entry) => ({ index: entry.index, term: entry.term, data: Buffer.from(entry.data).toString('utf8') }));
    await kv.batch(applied.map((entry) => ({ type: 'put' as const, key: stateKey(entry.index), value: Buffer.from(JSON.stringify(entry)) })), { sync: true });
    out({ applied: applied.filter((entry) => entry.data.length > 0) });
  },
});
transport.onMessage((from, bytes) => runtime.receive(from, bytes));
runtime.start();
out({ ready: true, id: me, restoredEntries: log.length, restoredCommit: hardState?.commit ?? 0, state: state.filter((entry) => entry.data.length > 0) });

createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line) as { propose?: string; status?: boolean };
  if (command.status) {
    const raft = runtime.raft;
    out({ status: { role: raft.role, term: raft.term, leader: raft.leader ?? null, commit: raft.commit, lastIndex: raft.lastIndex() } });
  }
  if (command.propose !== undefined) {
    const text = command.propose;
    runtime.propose(new TextEncoder().encode(text)).then(
      (committedIndex) => out({ committed: text, index: committedIndex }),
      (error: unknown) => out({ refused: text, code: (error as { code?: string }).code ?? String(error) }),
    );
  }
});
