// Helpers for the Lightning adapter's tests against the LND stand-in: a network of stand-ins with
// channels, adapter clients with short deadlines and backoffs, a scheduler the test fires by hand,
// and waiting for a condition.
import { createHash } from 'node:crypto';
import { LndClient, type LndClientOptions } from '../../../chains/lightning/lnd.ts';
import type { Rng, Scheduler } from '../../../src/ports.ts';
import { LndNetwork, type LndNetworkOptions } from '../../../regtest/lnd/network.ts';
import { LndStandIn } from '../../../regtest/lnd/server.ts';

/** Fast settings for tests: a down LND is found out in well under a second. */
export const FAST: LndClientOptions = { deadlineMs: 2_000, maxReconnectBackoffMs: 200, resubscribeInitialMs: 50, resubscribeMaxMs: 200 };

export interface Nodes {
  network: LndNetwork;
  standIns: Record<string, LndStandIn>;
  clients: Record<string, LndClient>;
  close(): Promise<void>;
}

/** Starts one stand-in per alias and opens a channel from every `[from, to, sat]`. */
export async function startNodes(aliases: string[], channels: [string, string, number][], options: LndNetworkOptions & { client?: LndClientOptions } = {}): Promise<Nodes> {
  const network = new LndNetwork(options);
  const standIns: Record<string, LndStandIn> = {};
  const clients: Record<string, LndClient> = {};
  for (const alias of aliases) {
    standIns[alias] = await LndStandIn.start({ network, alias });
    clients[alias] = new LndClient(standIns[alias]!.credentials, { ...FAST, ...options.client });
  }
  for (const [from, to, sat] of channels) network.openChannel(standIns[from]!, standIns[to]!, { capacitySat: sat });
  return {
    network, standIns, clients,
    async close() {
      for (const client of Object.values(clients)) client.close();
      for (const standIn of Object.values(standIns)) standIn.kill();
    },
  };
}

/** A preimage and its payment hash, from an rng. */
export function preimageAndHash(rng: Rng): { preimage: string; id: string } {
  const preimage = Buffer.from(rng.bytes(32));
  return { preimage: preimage.toString('hex'), id: createHash('sha256').update(preimage).digest('hex') };
}

export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const start = Date.now();
  while (!(await condition())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Waits until `client` reaches its LND again: right after a restart, calls fail fast (UNREACHABLE)
 * until gRPC's reconnect backoff, capped at `maxReconnectBackoffMs`, has run out.
 */
export async function reachable(client: LndClient): Promise<void> {
  await waitFor(() => client.walletInfo().then(() => true, () => false), 'LND to be reachable again');
}

/** Timers that fire only when the test says so. */
export class ManualScheduler implements Scheduler {
  private readonly timers = new Map<number, () => void>();
  private next = 0;

  setTimeout(callback: () => void, _delayMs: number): unknown {
    const handle = ++this.next;
    this.timers.set(handle, callback);
    return handle;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  get pending(): number {
    return this.timers.size;
  }

  /** Fires every timer set so far. */
  fire(): void {
    const due = [...this.timers.values()];
    this.timers.clear();
    for (const callback of due) callback();
  }
}
