// The bridge coordinator as the node runs it: its log in its own LevelDB directory, the system
// clock, randomness and timers, and the failpoints of KALIMA_FAILPOINTS (comma-separated
// `bridge.*` names, see failpoints.ts) ending the process with SIGKILL.
import type { Logger } from '../src/ports.ts';
import { systemClock, systemRng, systemScheduler } from '../src/ports.ts';
import { LevelKvStore } from '../src/store/level-kv.ts';
import { BridgeCoordinator, type CoordinatorOptions } from './coordinator.ts';
import { processFailpoints } from './failpoints.ts';
import type { ParticipantRegistry } from './participant.ts';

export type BridgeTuning = Pick<CoordinatorOptions,
  'prepareTimeoutMs' | 'callTimeoutMs' | 'retryInitialMs' | 'retryMaxMs' | 'deadlineMarginMs' | 'defaultDeadlineMs' | 'maxLive'>;

export interface BridgeServiceOptions {
  /** The log's LevelDB directory; the bridge's alone. */
  readonly directory: string;
  readonly participants: ParticipantRegistry;
  readonly logger: Logger;
  /** Failpoint names that end the process (KALIMA_FAILPOINTS); only `bridge.*` ones matter here. */
  readonly failpoints?: ReadonlySet<string>;
  readonly tuning?: BridgeTuning;
}

/** The names in KALIMA_FAILPOINTS. */
export function failpointsFromEnv(env: NodeJS.ProcessEnv = process.env): Set<string> {
  return new Set((env.KALIMA_FAILPOINTS ?? '').split(',').map((name) => name.trim()).filter((name) => name.length > 0));
}

export class BridgeService {
  private constructor(readonly coordinator: BridgeCoordinator, private readonly kv: LevelKvStore) {}

  /** Opens the log and the coordinator; recovery starts at once. Closes the store again if the coordinator cannot open. */
  static async open(options: BridgeServiceOptions): Promise<BridgeService> {
    const kv = await LevelKvStore.open(options.directory);
    try {
      const coordinator = await BridgeCoordinator.open({
        ...options.tuning, kv, participants: options.participants, clock: systemClock, rng: systemRng, scheduler: systemScheduler, logger: options.logger,
        failpoint: processFailpoints(options.failpoints ?? new Set(), options.logger),
      });
      return new BridgeService(coordinator, kv);
    } catch (error) {
      await kv.close();
      throw error;
    }
  }

  /** Stops the coordinator (live transactions end on the next open) and closes the log. */
  async close(): Promise<void> {
    await this.coordinator.close();
    await this.kv.close();
  }
}
