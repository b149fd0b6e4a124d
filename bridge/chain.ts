// What the bridge's Kalima participants need from the chain: its current values, and writes of
// signed messages that resolve only once they are committed and applied on this node.
import { isKalimaError, kalimaError } from '../src/errors.ts';
import { type UnsignedMessage, canonicalProps, signMessage } from '../src/ledger/message.ts';
import type { KeyPair } from '../src/ledger/signature.ts';
import type { KalimaNode } from '../src/node/node.ts';
import type { Clock, Rng, Scheduler } from '../src/ports.ts';
import type { CacheEntry } from '../src/state/entry.ts';
import type { StateReader } from '../src/state/memcache.ts';

export interface ChainWrite {
  address: string;
  key: string;
  body: Uint8Array;
  ttlSeconds?: number;
}

export interface ChainAccess {
  readonly chain: string;
  /** The chain's state as this node has applied it. */
  readonly state: StateReader;
  readonly policy: KalimaNode['policy'];
  entry(address: string, key: string): CacheEntry | undefined;
  entriesAt(address: string): CacheEntry[];
  /** The time of the chain's newest block: every later block's time is at least this. */
  tipTimeMs(): number;
  /** Signs with `key` and writes; resolves once the message is applied here. Throws the chain's coded refusal. */
  write(key: KeyPair, write: ChainWrite): Promise<void>;
}

/** How long a write may take to be committed and applied here before it counts as failed (and may be retried). */
const WRITE_TIMEOUT_MS = 30_000;

/** ChainAccess over the node this process runs. Nonces are microseconds, strictly increasing per process. */
export class NodeChainAccess implements ChainAccess {
  private lastNonce = 0;

  constructor(private readonly node: KalimaNode, private readonly clock: Clock, private readonly rng: Rng, private readonly scheduler: Scheduler, private readonly writeTimeoutMs = WRITE_TIMEOUT_MS) {}

  get chain(): string {
    return this.node.chain;
  }

  get state(): StateReader {
    return this.node.cache;
  }

  get policy(): KalimaNode['policy'] {
    return this.node.policy;
  }

  entry(address: string, key: string): CacheEntry | undefined {
    return this.node.cache.getEntry(address, key);
  }

  entriesAt(address: string): CacheEntry[] {
    return this.node.cache.entriesAt(address);
  }

  tipTimeMs(): number {
    return this.node.tipRecord.timeMs;
  }

  async write(key: KeyPair, write: ChainWrite): Promise<void> {
    this.lastNonce = Math.max(this.lastNonce + 1, this.clock.nowMs() * 1000);
    const unsigned: UnsignedMessage = {
      chain: this.node.chain, address: write.address, key: write.key, body: write.body, ttlSeconds: write.ttlSeconds ?? -1,
      props: canonicalProps({}), device: key.publicKey, nonce: this.lastNonce,
    };
    const message = signMessage(unsigned, key.secretKey, this.rng.bytes(32));
    let timer: unknown;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.scheduler.setTimeout(() => reject(kalimaError('KALIMA_ERR_CONSENSUS_OUTCOME_UNKNOWN', { address: write.address, key: write.key, reason: `not applied within ${this.writeTimeoutMs} ms` })), this.writeTimeoutMs);
    });
    try {
      await Promise.race([(async () => {
        const receipt = await this.node.submit(message);
        await this.node.whenApplied(receipt.height);
      })(), timeout]);
    } finally {
      this.scheduler.clearTimeout(timer);
    }
  }
}

/** True for a refusal that says the write (or an equal one) is on the chain already. */
export function isAlreadyWritten(error: unknown): boolean {
  return isKalimaError(error, 'KALIMA_ERR_KLX_DUPLICATE_TRANSFER');
}
