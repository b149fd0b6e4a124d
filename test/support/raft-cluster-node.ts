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
import { type Link, LinkListener, Peer } from '../../src/net/link.ts';
import { staticKeyFromSecret } from '../../src/net/noise.ts';
import { silentLogger, systemClock, systemRng, systemScheduler } from '../../src/ports.ts';
import { LevelKvStore } from '../../src/store/level-kv.ts';
import { RaftLogStore } from '../../src/store/raft-log.ts';
import { u64 } from '../../src/store/keys.ts';

const { values } = parseArgs({ options: { dir: { type: 'string' }, index: { type: 'string' }, ports: { type: 'string' } } });
const ports = values.ports!.split(',').map(Number);
const index = Number(values.index);
const keys = ports.map((_, position) => staticKeyFromSecret(createHash('sha256').update(`test-master-${position}`).digest()));
const ids = keys.map((key) => toHex(key.publicKey));
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
const links = { clock: systemClock, rng: systemRng, scheduler: systemScheduler, heartbeatMs: 200, deadAfterMs: 1_000 };
const peers = new Map<string, Peer>();
const runtime = new RaftRuntime({
  raft: { id: me, voters: ids, electionTicks: 10, heartbeatTicks: 2, rng: systemRng, snapshot, hardState, log, applied: appliedIndex },
  store, scheduler: systemScheduler, logger: silentLogger, tickMs: 30,
  send(to, bytes) {
    try {
      peers.get(to)?.current?.send(bytes);
    } catch {
      // a full queue or a closing link: Raft sends again
    }
  },
  async apply(entries) {
    const applied = entries.map((entry) => ({ index: entry.index, term: entry.term, data: Buffer.from(entry.data).toString('utf8') }));
    await kv.batch(applied.map((entry) => ({ type: 'put' as const, key: stateKey(entry.index), value: Buffer.from(JSON.stringify(entry)) })), { sync: true });
    out({ applied: applied.filter((entry) => entry.data.length > 0) });
  },
});
const listener = new LinkListener({ ...links, key: keys[index]!, allowed: new Set(ids) });
listener.on('link', (link: Link) => link.on('message', (bytes: Uint8Array) => runtime.receive(link.remoteHex, bytes)));
await listener.listen(ports[index]!);
for (const [position, id] of ids.entries()) {
  if (id === me) continue;
  const peer = new Peer({ ...links, key: keys[index]!, remote: keys[position]!.publicKey, host: '127.0.0.1', port: ports[position]!, backoffBaseMs: 50, backoffMaxMs: 500 });
  peer.on('link', (link: Link) => link.on('message', (bytes: Uint8Array) => runtime.receive(link.remoteHex, bytes)));
  peers.set(id, peer);
  peer.start();
}
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
