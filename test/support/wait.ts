// Polling for a condition in tests that drive real processes, timers or gRPC streams.

/** Reads until `done` holds, every `pauseMs`; after `timeoutMs` fails with what it waited for and the last value. */
export async function until<T>(what: string, read: () => Promise<T> | T, done: (value: T) => boolean, timeoutMs = 20_000, pauseMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value, (_, item) => (typeof item === 'bigint' ? String(item) : item))?.slice(0, 1_000)}`);
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}
