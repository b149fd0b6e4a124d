// What the core takes from the outside world. The core never reads the wall clock or draws
// randomness itself, so a simulation can drive it from a seed.
import { randomBytes } from 'node:crypto';

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  nowMs(): number;
}

export interface Rng {
  bytes(length: number): Uint8Array;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

export const systemRng: Rng = { bytes: (length) => new Uint8Array(randomBytes(length)) };

/** A clock that only moves when told to; for tests and simulation. */
export class ManualClock implements Clock {
  constructor(private currentMs: number) {}
  nowMs(): number {
    return this.currentMs;
  }
  advance(deltaMs: number): void {
    this.currentMs += deltaMs;
  }
  set(ms: number): void {
    this.currentMs = ms;
  }
}

/** Timers, injected so a simulation can run them on its own clock. */
export interface Scheduler {
  setTimeout(callback: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemScheduler: Scheduler = {
  setTimeout: (callback, delayMs) => {
    const handle = setTimeout(callback, delayMs);
    handle.unref?.();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** The subset of pino's interface the core logs through. */
export interface Logger {
  debug(object: object, message?: string): void;
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
