// A master of a PrivaChain cluster: the block producer (KalimaNode) with Raft in the loop. The
// leader's blocks are proposed as log entries and count once a majority holds them; followers check
// each replicated block with the block gate before they acknowledge it, and apply what commits
// without executing it again. One Raft entry is one block; a leader's first entry of its term is
// empty. Raft ids are the masters' keys (x-only, hex) as the genesis file lists them.
//
// The transport is a port: encrypted TCP links between the masters in production (net/link.ts, see
// linkTransport), an in-memory network in tests and simulation.
import { getPublicKey } from '@noble/secp256k1';
import { isKalimaError, kalimaError } from '../errors.ts';
import { blockHash, decodeBlock } from '../ledger/block.ts';
import { bytesEqual, toHex } from '../ledger/hash.ts';
import type { Entry, SnapshotMeta } from '../consensus/raft.ts';
import { BlockGate } from '../consensus/block-gate.ts';
import { RaftReplicator } from '../consensus/replicator.ts';
import { type FetchControl, RaftRuntime } from '../consensus/runtime.ts';
import type { KvStore } from '../store/kv.ts';
import { RaftLogStore } from '../store/raft-log.ts';
import { keys } from '../store/keys.ts';
import { ChainStore } from '../store/chain-store.ts';
import { KalimaNode, type NodeOptions } from './node.ts';
import { type Link, LinkListener, Peer } from '../net/link.ts';
import { staticKeyFromSecret } from '../net/noise.ts';
import type { Clock, Logger, Rng, Scheduler } from '../ports.ts';
import { PeerRpc, type PeerTransport, RPC_BODY_BYTES_MAX } from '../net/rpc.ts';
import { type Message, decodeMessage as decodeSignedMessage, encodeMessage as encodeSignedMessage } from '../ledger/message.ts';
import type { CommitReceipt } from './node.ts';
import { openReport } from '../consensus/leader-report.ts';
import { ValidationDuty, type ValidatorStatus } from './validator.ts';

/** How masters reach each other (net/rpc.ts): Raft's messages and the masters' requests share it. */
export type ClusterTransport = PeerTransport;

/** Requests between masters (net/rpc.ts methods). */
const METHOD_SUBMIT = 1;
/** A master's chain height and tip hash at a Raft index it applied: where a snapshot at that index stands. */
const METHOD_POINT = 2;
/** Committed blocks by height, as many as fit one answer: a catch-up's transfer. */
const METHOD_BLOCKS = 3;
/** A catch-up's requests: each answer is at most one link frame of blocks. */
const CATCH_UP_CALL_MS = 10_000;
/** The catch-up's first question, asked before Raft pauses: short, since a missing answer changes nothing. */
const CATCH_UP_POINT_MS = 2_000;
/** How long a follower first waits for the leader's answer to a forwarded message before it asks again (then twice as long, and so on). */
const FORWARD_FIRST_PATIENCE_MS = 2_000;
const CATCH_UP_BLOCKS_PER_CALL_MAX = 64;
/** A catch-up under way: the snapshot index it is for (8 bytes, big-endian). */
const CATCH_UP_KEY = keys.meta('catchUp');
/** This master started empty without the new-chain mark and has not caught up yet (raft.ts, config.empty). */
const REJOIN_KEY = keys.meta('rejoining');
const CATCH_UP_RETRY_MS = 500;
/** A validation node's signed report of a leader (consensus/leader-report.ts), to every master. */
const METHOD_REPORT = 4;
const REPORT_CALL_MS = 2_000;
const REPORT_TRIES = 10;
const REPORT_RETRY_MS = 1_000;
/** Reports are counted for the latest terms only. */
const REPORT_TERMS_KEPT = 16;

/** A master's view of its cluster, for /status and `kalima status`. */
export interface ConsensusStatus {
  role: string;
  term: number;
  leader: string | null;
  leaderApi: string | null;
  commitIndex: number;
  appliedIndex: number;
  masters: number;
  /** It started with an empty store and no mark of a new chain, and has not caught up yet: it neither votes nor stands. */
  rejoining: boolean;
  /** Every master, then every validation node, by id (x-only key, hex), with its API URL if the configuration names it. */
  peers: Array<{ id: string; api: string | null; member: 'master' | 'validator' }>;
  /** What this node is: a master (votes, may lead) or a validation node (a non-voting follower that checks and validates every block). */
  member: 'master' | 'validator';
  /** The validation nodes of the genesis file (x-only keys, hex). */
  validators: string[];
  /** Masters barred from leading, as a majority of the validation nodes reported them, each through the term given. */
  barred: Array<{ id: string; untilTerm: number }>;
  /** A validation node's own record: the height its last validation on the chain covers, the blocks it validated, the reports it sent. */
  validation?: ValidatorStatus;
}

export interface ClusterOptions extends Omit<NodeOptions, 'replicator' | 'store'> {
  /** The node's key-value store: the chain and the Raft log live in it side by side. */
  kv: KvStore;
  transport: ClusterTransport;
  tickMs?: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  /** The masters' API URLs by id, so a follower's refusal can name where to write. */
  masterApis?: ReadonlyMap<string, string>;
  /**
   * Applied entries the Raft log keeps (in memory and on disk) for followers that fall behind; older
   * ones are compacted away, their blocks being in the chain store. A follower further behind
   * catches up on blocks fetched from the masters instead (catchUp).
   */
  logRetention?: number;
  /**
   * How long a follower keeps trying to hand a device's message to the leader (through elections)
   * before it answers with a retryable error. Default 10 s.
   */
  forwardTimeoutMs?: number;
  /**
   * This master is a member of a new chain (`kalima init` marks its data directory so). A master
   * that starts with an empty store without this may have lost its disk: it neither votes nor
   * stands until it has caught up (raft.ts, config.empty).
   */
  newMember?: boolean;
}

/** A master's key as a BOLT 8 static key: the secret whose point has even y, so its compressed form is 02 || the x-only key. */
export function linkSecretOf(secretKey: Uint8Array): Uint8Array {
  const compressed = getPublicKey(secretKey, true);
  if (compressed[0] === 2) return secretKey;
  const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
  const negated = n - BigInt(`0x${toHex(secretKey)}`);
  return Uint8Array.from(Buffer.from(negated.toString(16).padStart(64, '0'), 'hex'));
}

/** The compressed public key (link identity) of a master from its x-only key in the genesis file. */
export function linkKeyOfMaster(xOnly: Uint8Array): Uint8Array {
  return Uint8Array.of(2, ...xOnly);
}

export class ClusterMaster {
  private constructor(
    readonly node: KalimaNode,
    readonly runtime: RaftRuntime,
    readonly replicator: RaftReplicator,
    readonly gate: BlockGate,
    private readonly rpc: PeerRpc,
    private readonly logRetention: number,
    private readonly context: { timeoutMs: number; max: number; scheduler: Scheduler; clock: Clock; retryMs: number; logger: Logger },
    /** The store held nothing when this master opened it. */
    readonly startedEmpty: boolean,
    private readonly kv: KvStore,
    private readonly validators: ReadonlySet<string>,
    private readonly barTerms: number,
  ) {}

  /** This node's duties as a validation node, if it is one. */
  private duty: ValidationDuty | undefined;
  /** Reports of leaders by `leader:term`: the validation nodes that sent one. */
  private readonly reports = new Map<string, Set<string>>();

  /** Messages this follower is handing to the leader now. */
  private forwardingNow = 0;
  /** Set when the process shuts down: forwards in progress give up at once. */
  private closing = false;
  /** A catch-up under way, which close() waits for (it stops between two blocks). */
  private catchingUp: Promise<unknown> | undefined;

  private trackCatchUp<T>(run: Promise<T>): Promise<T> {
    const tracked = run.finally(() => {
      if (this.catchingUp === tracked) this.catchingUp = undefined;
    });
    this.catchingUp = tracked;
    tracked.catch(() => undefined);
    return tracked;
  }
  /** Committed entries are applied here, in order, off the Raft loop. */
  private applying: Promise<void> = Promise.resolve();

  /** The store says this master is rejoining (REJOIN_KEY); cleared once Raft says it rejoined. */
  private rejoinMarked = false;

  private enqueueApply(entries: Entry[]): void {
    this.applying = this.applying.then(async () => {
      if (this.runtime.isStopped) return;
      try {
        await this.applyCommitted(entries);
        if (this.rejoinMarked && !this.runtime.raft.rejoining) {
          await this.kv.batch([{ type: 'del', key: REJOIN_KEY }], { sync: true });
          this.rejoinMarked = false;
        }
      } catch (error) {
        // Raft counts these as applied: carrying on would skip them.
        this.runtime.abort(error, 'applying committed entries failed');
      }
    });
  }

  /** Resolves once every committed entry handed out so far is applied. */
  whenIdle(): Promise<void> {
    return this.applying;
  }

  /** The ids (x-only keys, hex) of the masters. */
  get id(): string {
    return this.runtime.raft.id;
  }

  static async open(options: ClusterOptions): Promise<ClusterMaster> {
    const { genesis } = options;
    const ids = genesis.masters.map(toHex);
    const validatorIds = genesis.validators.map(toHex);
    const id = toHex(options.nodeKey.publicKey);
    const isValidator = validatorIds.includes(id);
    if (!ids.includes(id) && !isValidator) throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { reason: 'the node key is not one of the genesis masters or validation nodes', node: id });
    const { store: raftStore, snapshot, hardState, log } = await RaftLogStore.open(options.kv);
    const chainStore = new ChainStore(options.kv);
    const tip = await chainStore.readTip();
    // A master that started empty without the new-chain mark stays a rejoining member across
    // restarts until it has caught up: its store then holds a term, but not yet what it lost.
    const rejoinMarked = (await options.kv.get(REJOIN_KEY)) !== undefined;
    // A catch-up under way when the process stopped (its record goes once a snapshot at or past it is stored).
    const catchUpBytes = await options.kv.get(CATCH_UP_KEY);
    let catchUpIndex = catchUpBytes === undefined ? undefined : Number(new DataView(catchUpBytes.buffer, catchUpBytes.byteOffset, 8).getBigUint64(0));
    if (catchUpIndex !== undefined && snapshot !== undefined && snapshot.index >= catchUpIndex) {
      await options.kv.batch([{ type: 'del', key: CATCH_UP_KEY }], { sync: true });
      catchUpIndex = undefined;
    }
    const applied = appliedIndexOf(tip?.height ?? 0, snapshot, log, catchUpIndex !== undefined);
    const empty = snapshot === undefined && hardState === undefined && log.length === 0 && tip === undefined;
    // Set once everything is built; the runtime's callbacks run only after start().
    let master!: ClusterMaster;
    // A follower may hand on as many messages as a leader takes in.
    const rpc = new PeerRpc({ transport: options.transport, scheduler: options.scheduler, logger: options.logger, rng: options.rng, inFlightPerPeerMax: options.pendingMessagesMax ?? 20_000 });
    const runtime = new RaftRuntime({
      raft: {
        // Validation nodes follow as learners: they get every entry, and neither vote nor stand.
        id, voters: ids, learners: validatorIds, electionTicks: options.electionTicks ?? 10, heartbeatTicks: options.heartbeatTicks ?? 2, rng: options.rng,
        snapshot, hardState, log, applied: applied.index, appliedTerm: applied.term,
        // Nothing stored: a new chain's member, or one whose disk was lost (see newMember).
        empty: empty || rejoinMarked,
        newMember: options.newMember === true && !rejoinMarked,
      },
      store: raftStore, scheduler: options.scheduler, logger: options.logger, clock: options.clock, tickMs: options.tickMs ?? 50,
      send: (to, bytes) => rpc.raft.send(to, bytes),
      // A block of the current term must be its leader's; the sender is the leader of the append's term.
      admit: async (entries, sender) => {
        const admission = await master.gate.admit(entries, { term: sender.term, keyHex: sender.id });
        master.duty?.observe(entries, sender, admission);
        return admission;
      },
      // Handed to the master's apply queue, not awaited: an own block's apply waits for the node's
      // chain-store write, and the Raft loop (heartbeats included) must not wait for a disk.
      apply: (entries) => master.enqueueApply(entries),
      // A follower further behind than the leader's log catches up on blocks from the masters; its
      // Raft waits meanwhile, since the catch-up itself applies the committed blocks.
      fetchSnapshot: (meta, control) => master.trackCatchUp(master.catchUp(meta, control)),
      pauseWhileFetching: true,
      onLeadershipLost: () => master.node.leadershipLost(),
    });
    const replicator = new RaftReplicator(runtime, applied.index, () => master.node.resumeProducing(), options.masterApis);
    const node = await KalimaNode.open({ ...options, store: chainStore, replicator, forwarder: (message, hash) => master.forward(message, hash) });
    const gate = new BlockGate({
      genesis, verifier: options.verifier, cache: node.cache, applied: { index: applied.index, tip: node.tipRecord },
      held: (from, to) => (to < from ? [] : runtime.raft.entries(Math.max(from, runtime.raft.firstIndex()), to)),
      stored: { tip: () => node.tipRecord, bytesAt: (height) => chainStore.getBlockBytes(height) },
      hashAt: (height) => node.knownHashAt(height),
    });
    const tickMs = options.tickMs ?? 50;
    master = new ClusterMaster(node, runtime, replicator, gate, rpc, options.logRetention ?? 10_000, {
      timeoutMs: options.forwardTimeoutMs ?? 10_000, max: options.pendingMessagesMax ?? 20_000, scheduler: options.scheduler, clock: options.clock, retryMs: 2 * tickMs, logger: options.logger,
    }, empty, options.kv, new Set(validatorIds), genesis.params.leaderBarTerms);
    if (!isValidator && (validatorIds.length === 1 || validatorIds.length === 2)) {
      options.logger.warn({ validators: validatorIds.length }, 'this chain has fewer than three validation nodes: a majority of them is one or two, so one faulty validation node can bar any leader from leading for a while');
    }
    // A leader cut off from a majority keeps its uncommitted blocks until check-quorum deposes it
    // (an election timeout, at most 2 × electionTicks ticks); sent again after a heal, they look late.
    const electionMs = 2 * (options.electionTicks ?? 10) * tickMs;
    if (isValidator && genesis.params.validationLateMs < 2 * electionMs) {
      options.logger.warn({ validationLateMs: genesis.params.validationLateMs, electionTimeoutMs: electionMs }, 'validationLateMs is under twice the longest election timeout: blocks a leader sends again after a short partition may be reported late');
    }
    if (isValidator) {
      master.duty = new ValidationDuty({
        node, nodeKey: options.nodeKey, clock: options.clock, rng: options.rng, scheduler: options.scheduler, logger: options.logger,
        lateMs: genesis.params.validationLateMs,
        sendReport: (bytes) => master.sendReport(bytes),
      });
    }
    if (runtime.raft.rejoining && !rejoinMarked) await options.kv.batch([{ type: 'put', key: REJOIN_KEY, value: Uint8Array.of(1) }], { sync: true });
    master.rejoinMarked = runtime.raft.rejoining || rejoinMarked;
    rpc.raft.onMessage((from, bytes) => runtime.receive(from, bytes));
    // A device's message another master forwards: this node takes it only as the leader (it is never forwarded on).
    rpc.handle(METHOD_SUBMIT, async (_from, body) => encodeReceipt(await node.submit(decodeSignedMessage(body), { forwarded: true })));
    rpc.handle(METHOD_POINT, async (_from, body) => encodeJson(await master.pointAt(integerField(body, 'index'))));
    rpc.handle(METHOD_BLOCKS, async (_from, body) => master.blocksFrom(integerField(body, 'from'), integerField(body, 'to')));
    rpc.handle(METHOD_REPORT, async (from, body) => encodeJson(master.takeReport(from, body)));
    return master;
  }

  start(): void {
    this.runtime.start();
    this.duty?.start();
  }

  /** Where this master stands in its cluster, for /status and `kalima status`. */
  status(): ConsensusStatus {
    const { raft } = this.runtime;
    return {
      role: this.runtime.isStopped ? 'stopped' : raft.role,
      term: raft.term,
      leader: raft.leader ?? null,
      leaderApi: this.replicator.leaderApi() ?? null,
      commitIndex: raft.commit,
      appliedIndex: this.gate.appliedIndex,
      masters: raft.voters.size,
      rejoining: raft.rejoining,
      peers: [
        ...[...raft.voters].map((id) => ({ id, api: this.replicator.apiOf(id) ?? null, member: 'master' as const })),
        ...[...this.validators].map((id) => ({ id, api: this.replicator.apiOf(id) ?? null, member: 'validator' as const })),
      ],
      member: this.duty === undefined ? 'master' : 'validator',
      validators: [...this.validators],
      barred: [...raft.bars].filter(([, untilTerm]) => untilTerm >= raft.term).map(([id, untilTerm]) => ({ id, untilTerm })),
      ...(this.duty === undefined ? {} : { validation: this.duty.status() }),
    };
  }

  /** A validation node's report, sent to every master; each is asked again, a second apart, until it answers (REPORT_TRIES). */
  private sendReport(bytes: Uint8Array): void {
    const { scheduler, logger } = this.context;
    const send = (id: string, tries: number): void => {
      this.rpc.call(id, METHOD_REPORT, bytes, REPORT_CALL_MS).catch((error: unknown) => {
        if (this.closing) return;
        if (tries + 1 >= REPORT_TRIES || isKalimaError(error, 'KALIMA_ERR_CONSENSUS_BAD_REPORT')) {
          logger.warn({ master: id, error: String((error as { message?: string }).message ?? error) }, 'validation: a master did not take the report');
          return;
        }
        scheduler.setTimeout(() => send(id, tries + 1), REPORT_RETRY_MS);
      });
    };
    for (const id of this.runtime.raft.voters) send(id, 0);
  }

  /**
   * A report of a leader from a validation node (its own, signed). Once a majority of the
   * validation nodes reported the same leader for the same term, it is barred from leading for the
   * genesis file's leaderBarTerms terms after it: as the leader it steps down; as a follower this
   * master stops taking its appends and refuses it votes.
   */
  private takeReport(from: string, body: Uint8Array): { barred: boolean; reports: number; needed: number } {
    if (this.duty !== undefined) throw kalimaError('KALIMA_ERR_CONSENSUS_BAD_REPORT', { reason: 'reports go to the masters, not to a validation node' });
    const report = openReport(body, this.node.chain, this.validators);
    if (report.validator !== from) throw kalimaError('KALIMA_ERR_CONSENSUS_BAD_REPORT', { reason: 'a validation node reports only for itself' });
    const { raft } = this.runtime;
    if (!raft.voters.has(report.leader)) throw kalimaError('KALIMA_ERR_CONSENSUS_BAD_REPORT', { reason: 'the reported leader is not a master' });
    // A term this master has not reached cannot have had a leader yet (and its bar would outlast every real one).
    if (report.term > raft.term) throw kalimaError('KALIMA_ERR_CONSENSUS_BAD_REPORT', { reason: 'the report is for a term this master has not reached', term: report.term, current: raft.term });
    const key = `${report.leader}:${report.term}`;
    const reporters = this.reports.get(key) ?? new Set<string>();
    reporters.add(report.validator);
    this.reports.set(key, reporters);
    for (const old of [...this.reports.keys()]) if (Number(old.split(':')[1]) < raft.term - REPORT_TERMS_KEPT) this.reports.delete(old);
    const needed = Math.floor(this.validators.size / 2) + 1;
    this.context.logger.warn({ leader: report.leader, term: report.term, height: report.height, reason: report.reason, detail: report.detail, validator: report.validator, reports: reporters.size, needed }, 'a validation node reported a leader');
    let barred = false;
    if (reporters.size >= needed) {
      barred = this.runtime.bar(report.leader, report.term + this.barTerms);
      if (barred) this.context.logger.warn({ leader: report.leader, term: report.term, untilTerm: report.term + this.barTerms, self: report.leader === this.id }, 'a leader reported by the validation nodes is barred from leading');
    }
    return { barred, reports: reporters.size, needed };
  }

  /**
   * The chain height and tip hash at Raft index `index`, which this master applied: the height
   * before the first block after it in the log (every entry between is empty), or, with none after
   * it, the chain's height here. Older indexes than the log's start are not known here.
   */
  private async pointAt(index: number): Promise<{ height: number; hash: string }> {
    const { raft } = this.runtime;
    if (index > this.gate.appliedIndex) throw kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'this master has not applied that index yet', index, applied: this.gate.appliedIndex });
    if (index < raft.firstIndex() - 1) throw kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'this master compacted its log past that index', index, firstIndex: raft.firstIndex() });
    let height = this.node.height;
    if (index + 1 <= raft.lastIndex()) {
      for (const entry of raft.entries(index + 1, raft.lastIndex())) {
        if (entry.data.length === 0) continue;
        height = decodeBlock(entry.data).header.height - 1;
        break;
      }
    }
    if (height > this.node.height) throw kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'this master has not stored the blocks up to that index yet', index, height });
    const block = height === 0 ? undefined : await this.node.store.getBlock(height);
    return { height, hash: block === undefined ? '' : toHex(blockHash(block.header)) };
  }

  /** Stored blocks from `from` on, up to `to`, as many as fit one answer: each as its length (4 bytes) and bytes. */
  private async blocksFrom(from: number, to: number): Promise<Uint8Array> {
    if (from < 1 || to < from) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { reason: 'a height range from 1', from, to });
    const parts: Uint8Array[] = [];
    let bytes = 0;
    const last = Math.min(to, this.node.height, from + CATCH_UP_BLOCKS_PER_CALL_MAX - 1);
    for (let height = from; height <= last; height++) {
      const block = await this.node.store.getBlockBytes(height);
      if (block === undefined || bytes + 4 + block.length > RPC_BODY_BYTES_MAX) break;
      parts.push(block);
      bytes += 4 + block.length;
    }
    const out = new Uint8Array(bytes);
    const view = new DataView(out.buffer);
    let offset = 0;
    for (const part of parts) {
      view.setUint32(offset, part.length);
      out.set(part, offset + 4);
      offset += 4 + part.length;
    }
    return out;
  }

  /**
   * The catch-up of a follower that needs entries the leader compacted away (a snapshot in Raft's
   * terms): the chain's height and hash at the snapshot's index from the leader, then the blocks up
   * to there from any master, each checked as a replicated block is (signatures, permissions,
   * hashchain, state digest) and applied as it arrives. Once the first block is applied it does not
   * give up: a failed request is retried, at another master, until the chain is there. Resolves with
   * the install: the gate and the replicator stand at the index, and Raft's log starts after it.
   */
  private async catchUp(meta: SnapshotMeta & { from: string }, control: FetchControl): Promise<() => void> {
    const { logger, scheduler } = this.context;
    // Where the chain stands at the snapshot's index, asked while Raft goes on (this node still
    // votes and answers meanwhile).
    const answer = new TextDecoder().decode(await this.rpc.call(meta.from, METHOD_POINT, encodeJson({ index: meta.index }), CATCH_UP_POINT_MS));
    const point = JSON.parse(answer) as { height: number; hash: string };
    if (!Number.isSafeInteger(point.height) || point.height < 0 || typeof point.hash !== 'string') throw kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'a master answered with a snapshot point this node cannot read' });
    // From here on the chain may change: Raft pauses, and what it handed out before (this very
    // Ready included) is applied first. If the snapshot is no longer needed (the entries came
    // another way meanwhile), nothing is done.
    await control.pause();
    await this.applying;
    if (!this.runtime.raft.needsSnapshot(meta.index, meta.term)) throw kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'the snapshot is no longer needed', index: meta.index });
    const startHeight = this.node.height;
    if (point.height < startHeight) {
      // An earlier catch-up (cut short by a restart) took the chain past the snapshot: the log
      // starts there, and the entries after it hold blocks stored already (the gate admits those).
      const block = point.height === 0 ? undefined : await this.node.store.getBlock(point.height);
      if (point.height > 0 && (block === undefined || toHex(blockHash(block.header)) !== point.hash)) {
        throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { what: 'chain', reason: 'the stored block at the snapshot\'s height is not the leader\'s', height: point.height });
      }
      return () => {
        this.gate.restore(meta.index, this.node.tipRecord);
        this.replicator.applied(meta.index);
      };
    }
    logger.info({ index: meta.index, from: startHeight, to: point.height, peer: meta.from }, 'catching up: fetching committed blocks from the masters');
    // Recorded before the first block: a restart in the middle finds the chain past the log, and knows why.
    const record = new Uint8Array(8);
    new DataView(record.buffer).setBigUint64(0, BigInt(meta.index));
    await this.kv.batch([{ type: 'put', key: CATCH_UP_KEY, value: record }], { sync: true });
    const peers = [meta.from, ...[...this.runtime.raft.voters].filter((id) => id !== this.id && id !== meta.from)];
    let attempt = 0;
    let lastReport = this.context.clock.nowMs();
    while (this.node.height < point.height) {
      if (this.runtime.isStopped || this.closing) throw kalimaError('KALIMA_ERR_NODE_STOPPING');
      const peer = peers[attempt % peers.length]!;
      try {
        const body = await this.rpc.call(peer, METHOD_BLOCKS, encodeJson({ from: this.node.height + 1, to: point.height }), CATCH_UP_CALL_MS);
        const blocks = decodeBlocks(body);
        if (blocks.length === 0) throw kalimaError('KALIMA_ERR_NODE_NOT_READY', { reason: 'the master has no blocks past this node\'s tip', peer });
        for (const bytes of blocks) {
          if (this.closing || this.runtime.isStopped) throw kalimaError('KALIMA_ERR_NODE_STOPPING');
          const write = await this.gate.checkCommitted(bytes, { tip: this.node.tipRecord, state: this.node.cache });
          await this.node.applyReplicated(write);
        }
        const now = this.context.clock.nowMs();
        if (now - lastReport >= 2_000) {
          lastReport = now;
          logger.info({ height: this.node.height, to: point.height }, 'catching up');
        }
      } catch (error) {
        // Nothing changed yet: give up, and Raft goes on (the leader asks again).
        if (this.node.height === startHeight) throw error;
        if (this.runtime.isStopped || isKalimaError(error, 'KALIMA_ERR_NODE_STOPPING')) throw error;
        logger.warn({ peer, height: this.node.height, error: String((error as { message?: string }).message ?? error), code: (error as { code?: string }).code }, 'catching up: a request failed; trying another master');
        attempt++;
        await new Promise<void>((resolve) => scheduler.setTimeout(resolve, CATCH_UP_RETRY_MS));
      }
    }
    const tip = this.node.tipRecord;
    const agrees = point.height === 0 || toHex(tip.hash) === point.hash;
    logger.info({ index: meta.index, height: tip.height }, 'caught up');
    return () => {
      // Two different committed blocks at one height: the masters' chains disagree. Stop.
      if (!agrees) throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { what: 'chain', reason: 'the block at the snapshot\'s height is not the one the leader has', height: point.height });
      this.gate.restore(meta.index, tip);
      this.replicator.applied(meta.index);
    };
  }

  private async applyCommitted(entries: Entry[]): Promise<void> {
    for (const entry of entries) {
      if (entry.data.length > 0 && this.replicator.isOwn(entry.data)) {
        // Its own block: the node's pipeline writes and applies it, now that its proposal heard it
        // committed. Wait for that, so the gate's base and the MemCache stay in step.
        const tip = this.replicator.tipOf(entry.data)!;
        await this.node.whenApplied(tip.height);
        this.gate.applied(entry.index, tip);
      } else {
        if (entry.data.length > 0 && this.gate.get(entry.index) === undefined) {
          const height = decodeBlock(entry.data).header.height;
          if (height <= this.node.height) {
            // Stored already: a catch-up brought this node past its log before a restart, and Raft
            // hands these entries out again. They must be the blocks stored.
            const stored = await this.node.store.getBlockBytes(height);
            if (stored === undefined || !bytesEqual(stored, entry.data)) throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { what: 'chain', reason: 'a committed entry\'s block differs from the stored block at its height', height, index: entry.index });
            this.gate.applied(entry.index, this.node.tipRecord);
            this.replicator.applied(entry.index);
            continue;
          }
          // A block this node produced and abandoned when it lost the leadership was never
          // admitted here; it is committed, so it is checked now, with no leader to match.
          await this.gate.admit([entry], { term: -1, keyHex: '' });
        }
        if (entry.data.length > 0 && this.gate.get(entry.index)?.stored === true) {
          // A block a catch-up stored already: nothing to apply.
          this.gate.applied(entry.index);
          this.replicator.applied(entry.index);
          continue;
        }
        if (entry.data.length > 0) {
          const admitted = this.gate.get(entry.index);
          if (admitted?.block === undefined) throw kalimaError('KALIMA_ERR_CONSENSUS_BAD_ENTRY', { index: entry.index, reason: 'a committed entry this node cannot admit' });
          await this.node.applyReplicated(admitted.block);
        }
        this.gate.applied(entry.index);
      }
      this.replicator.applied(entry.index);
    }
    // Keep the log bounded: once twice the retention has been applied past its start, drop the
    // older half. Only entries whose blocks are in the chain store go (own blocks are stored once
    // replicate() returns, so the newest applied entries stay).
    const last = entries[entries.length - 1];
    const { raft } = this.runtime;
    if (last !== undefined && last.index - raft.firstIndex() + 1 > 2 * this.logRetention) {
      const target = last.index - this.logRetention;
      // The last block at or before the target must be in the chain store already.
      let stored = true;
      for (const entry of raft.entries(raft.firstIndex(), target).reverse()) {
        if (entry.data.length === 0) continue;
        stored = decodeBlock(entry.data).header.height <= this.node.height;
        break;
      }
      if (stored) this.runtime.compact(target);
    }
  }

  /**
   * A follower hands a device's message (its signature checked here) to the leader and answers with
   * the leader's receipt, once the message is committed. Through a leader change it tries the next
   * leader with the same message, which the nonce makes safe: if an earlier try committed it, the
   * new leader says so and that receipt is the answer. After `forwardTimeoutMs` without a leader
   * that answers, the refusal is retryable (NOT_LEADER, or OUTCOME_UNKNOWN once a try went out).
   */
  private async forward(message: Message, hash: Uint8Array): Promise<CommitReceipt> {
    const { clock, scheduler, timeoutMs, retryMs, max } = this.context;
    if (this.forwardingNow >= max) throw kalimaError('KALIMA_ERR_API_OVERLOADED', { forwarding: this.forwardingNow });
    this.forwardingNow++;
    try {
      const deadline = clock.nowMs() + timeoutMs;
      const encoded = encodeSignedMessage(message);
      const hashHex = toHex(hash);
      const wait = (ms: number): Promise<void> => new Promise<void>((resolve) => scheduler.setTimeout(resolve, ms));
      // Set once a try may have reached a leader: from then on, only a receipt settles it for sure.
      let sent = false;
      let lastCode: string | undefined;
      // A leader that does not answer is asked again, at growing intervals (its answer may have
      // been lost; a leader still working on the message joins the new request to it).
      let askedLeader: string | undefined;
      let patienceMs = FORWARD_FIRST_PATIENCE_MS;
      for (;;) {
        const leader = this.runtime.raft.leader;
        const remaining = deadline - clock.nowMs();
        let attempt: Promise<CommitReceipt> | undefined;
        if (this.closing) {
          if (sent) throw kalimaError('KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN', { reason: 'this master is shutting down; the leader may still commit the message; a retry with the same nonce is safe' });
          throw kalimaError('KALIMA_ERR_NODE_STOPPING');
        }
        if (remaining <= 0 || this.runtime.isStopped) break;
        if (this.replicator.mayProduce()) attempt = this.node.submit(message, { forwarded: true });
        else if (leader !== undefined && leader !== this.id) {
          patienceMs = leader === askedLeader ? patienceMs * 2 : FORWARD_FIRST_PATIENCE_MS;
          askedLeader = leader;
          attempt = this.askLeader(leader, encoded, hashHex, Math.min(remaining, patienceMs));
        }
        if (attempt === undefined) {
          await wait(retryMs);
          continue;
        }
        const triedSent = sent;
        try {
          return await attempt;
        } catch (error) {
          // An earlier try committed it and its answer was lost: the chain's receipt is the answer.
          if (isKalimaError(error, 'KALIMA_ERR_LEDGER_NONCE_REPLAYED') && triedSent && (error.details.committed as { messageHash?: unknown } | undefined)?.messageHash === hashHex) {
            return error.details.committed as CommitReceipt;
          }
          const code: string | undefined = error instanceof LeaderChanged ? error.code : isKalimaError(error) ? error.code : undefined;
          lastCode = code ?? lastCode;
          // API_NOT_FOUND: a master still opening has not registered its handlers yet.
          const notTaken = code === 'KALIMA_ERR_NET_UNREACHABLE' || code === 'KALIMA_ERR_NODE_NOT_READY' || code === 'KALIMA_ERR_NODE_STOPPING' || code === 'KALIMA_ERR_API_OVERLOADED' || code === 'KALIMA_ERR_API_NOT_FOUND';
          // NOT_LEADER too: a leader that lost the leadership with the message in a block refuses
          // it so, and the next leader may still commit that block.
          const maybeTaken = code === 'KALIMA_ERR_NET_TIMEOUT' || code === 'KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN' || code === 'KALIMA_ERR_CONSENSUS_NOT_LEADER' || code === 'LEADER_CHANGED';
          if (!notTaken && !maybeTaken) {
            // A refusal of the message itself. After a try that may have committed it, the refusal
            // may only reflect that commit (or what followed it): the outcome is not known.
            if (triedSent) throw kalimaError('KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN', { reason: 'an earlier try may have committed the message; a retry with the same nonce is safe', cause: code ?? 'KALIMA_ERR_NODE_INTERNAL' });
            throw error;
          }
          if (maybeTaken) sent = true;
        }
        await wait(retryMs);
      }
      if (sent) throw kalimaError('KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN', { reason: 'no leader took the message in time; a retry with the same nonce is safe', leader: this.runtime.raft.leader ?? null, last: lastCode ?? null });
      throw kalimaError('KALIMA_ERR_CONSENSUS_NOT_LEADER', { reason: 'no leader could be reached in time; retry', leader: this.runtime.raft.leader ?? null, leaderApi: this.replicator.leaderApi() ?? null, term: this.runtime.raft.term, last: lastCode ?? null });
    } finally {
      this.forwardingNow--;
    }
  }

  /**
   * One request to the leader for the message, answered when it commits there. It is asked once per
   * leader: if this node comes to know another leader meanwhile, the try is given up (rejecting with
   * LEADER_CHANGED) and the next goes to the new one.
   */
  private askLeader(leader: string, encoded: Uint8Array, hashHex: string, timeoutMs: number): Promise<CommitReceipt> {
    const { scheduler, retryMs } = this.context;
    return new Promise<CommitReceipt>((resolve, reject) => {
      let settled = false;
      const watch = (): void => {
        if (settled) return;
        if (this.runtime.raft.leader !== leader || this.runtime.isStopped || this.closing) {
          settled = true;
          reject(new LeaderChanged());
          return;
        }
        scheduler.setTimeout(watch, retryMs);
      };
      scheduler.setTimeout(watch, retryMs);
      this.rpc.call(leader, METHOD_SUBMIT, encoded, timeoutMs).then((body) => {
        if (settled) return;
        settled = true;
        try {
          const receipt = decodeReceipt(body);
          // Another message's receipt: an answer meant for someone else (a previous process of
          // this master, say). This try says nothing; the next asks again.
          if (receipt.messageHash !== hashHex) throw new LeaderChanged();
          resolve(receipt);
        } catch (error) {
          reject(error);
        }
      }, (error: unknown) => {
        if (settled) return;
        settled = true;
        reject(error);
      });
    });
  }

  /**
   * The process is shutting down: forwarded messages still waiting for the leader are answered now
   * (retryable) rather than holding the API's close. Consensus goes on until close().
   */
  beginClose(): void {
    this.closing = true;
  }

  async close(): Promise<void> {
    this.closing = true;
    this.duty?.stop();
    this.runtime.stop();
    await this.applying;
    // The links go first: a catch-up waiting for an answer hears at once, and stops.
    await this.rpc.close();
    await this.catchingUp?.catch(() => undefined);
    await this.node.close();
  }
}

/**
 * The Raft index the chain store's tip corresponds to: the entry that holds the tip's block (it is
 * committed, or it would not be in the store). If the log no longer holds it, compaction passed it,
 * and everything up to the log's start is applied: blocks are compacted only once applied, so the
 * entries between the tip's block and the start are empty. Empty entries after the tip's block are
 * handed out again after a restart, which changes nothing. If the chain is past every block in the
 * log (a catch-up that did not install), the snapshot's index: applyCommitted checks the entries
 * handed out again against the blocks stored.
 */
function appliedIndexOf(tipHeight: number, snapshot: { index: number; term: number } | undefined, log: readonly Entry[], catchingUp: boolean): { index: number; term: number } {
  for (let position = log.length - 1; position >= 0; position--) {
    const entry = log[position]!;
    if (entry.data.length === 0) continue;
    const height = decodeBlock(entry.data).header.height;
    if (height === tipHeight) return { index: entry.index, term: entry.term };
    // The chain went past the log: a catch-up applied blocks and the node stopped before it
    // installed. The entries after the snapshot are handed out again and checked against the store.
    // Without a catch-up's record, a tip the log does not hold means a damaged store.
    if (height < tipHeight) {
      if (catchingUp) break;
      throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { what: 'raft log', reason: 'the chain store\'s tip block is not in the raft log, though blocks around it are', tipHeight });
    }
  }
  return { index: snapshot?.index ?? 0, term: snapshot?.term ?? 0 };
}

export interface LinkTransportOptions {
  /** This master's node key (its secret signs blocks; its even-y form is its BOLT 8 static key). */
  secretKey: Uint8Array;
  /** Every master: its x-only key as in the genesis file, and where its node listens for links. */
  masters: ReadonlyArray<{ key: Uint8Array; host: string; port: number }>;
  clock: Clock;
  rng: Rng;
  scheduler: Scheduler;
  logger: Logger;
  heartbeatMs?: number;
  deadAfterMs?: number;
}

/**
 * The masters' transport over encrypted TCP links: a listener that accepts only the other masters'
 * keys, and a link dialled to each of them (redialled with backoff). A message goes out on the link
 * this node dialled; what arrives on any link is handed on with the sender's id, as its key proved.
 * A message with no link up, or with the link's queue full, is dropped: Raft sends again.
 */
export async function linkTransport(options: LinkTransportOptions, listenPort: number, listenHost = '127.0.0.1'): Promise<ClusterTransport & { port: number }> {
  const linkSecret = linkSecretOf(options.secretKey);
  const key = staticKeyFromSecret(linkSecret);
  const selfId = toHex(key.publicKey.subarray(1));
  const others = options.masters.filter((master) => toHex(master.key) !== selfId);
  const idOfLink = (link: Link): string => link.remoteHex.slice(2);
  const linkOptions = { clock: options.clock, rng: options.rng, scheduler: options.scheduler, heartbeatMs: options.heartbeatMs, deadAfterMs: options.deadAfterMs };
  let handler: ((from: string, bytes: Uint8Array) => void) | undefined;
  const deliver = (link: Link): void => {
    link.on('message', (bytes: Uint8Array) => handler?.(idOfLink(link), bytes));
  };
  const listener = new LinkListener({ ...linkOptions, key, allowed: new Set(others.map((master) => toHex(linkKeyOfMaster(master.key)))) });
  listener.on('link', deliver);
  listener.on('refused', (refusal: { remoteHex?: string; reason: unknown }) => options.logger.warn({ peer: refusal.remoteHex, reason: String(refusal.reason) }, 'refused a node link'));
  const { port } = await listener.listen(listenPort, listenHost);
  const peers = new Map<string, Peer>();
  for (const master of others) {
    const peer = new Peer({ ...linkOptions, key, remote: linkKeyOfMaster(master.key), host: master.host, port: master.port, backoffBaseMs: 50, backoffMaxMs: 2_000 });
    peer.on('link', deliver);
    peers.set(toHex(master.key), peer);
    peer.start();
  }
  return {
    port,
    send(to, bytes) {
      const link = peers.get(to)?.current;
      if (link === undefined) return false;
      try {
        link.send(bytes);
        return true;
      } catch {
        // a full queue or a closing link: dropped (Raft sends again; a request times out)
        return false;
      }
    },
    onMessage(next) {
      handler = next;
    },
    async close() {
      for (const peer of peers.values()) peer.stop();
      await listener.close();
    },
  };
}

function encodeReceipt(receipt: CommitReceipt): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(receipt));
}

function decodeReceipt(body: Uint8Array): CommitReceipt {
  const parsed = JSON.parse(new TextDecoder().decode(body)) as CommitReceipt;
  const numbers = [parsed.globalSequence, parsed.sequence, parsed.previous, parsed.height, parsed.timeMs];
  if (typeof parsed.messageHash !== 'string' || !numbers.every((value) => Number.isSafeInteger(value))) {
    throw kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'the leader answered with a receipt this node cannot read' });
  }
  return parsed;
}

function encodeJson(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

/** A whole number field of a peer's JSON request. */
function integerField(body: Uint8Array, name: string): number {
  let value: unknown;
  try {
    value = (JSON.parse(new TextDecoder().decode(body)) as Record<string, unknown>)[name];
  } catch {
    value = undefined;
  }
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: name, reason: 'a whole number' });
  return value as number;
}

function decodeBlocks(body: Uint8Array): Uint8Array[] {
  const blocks: Uint8Array[] = [];
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  for (let offset = 0; offset < body.length;) {
    if (offset + 4 > body.length) throw kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'a master answered with a truncated block list' });
    const length = view.getUint32(offset);
    if (offset + 4 + length > body.length) throw kalimaError('KALIMA_ERR_NODE_INTERNAL', { reason: 'a master answered with a truncated block list' });
    blocks.push(body.slice(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  return blocks;
}

/** A forwarded message's try given up because another master now leads (internal to forward()). */
class LeaderChanged extends Error {
  readonly code = 'LEADER_CHANGED';
}
