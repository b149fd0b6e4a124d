// KvStore in memory, for tests and simulation. `sync` is accepted and has no effect.
import type { KvOperation, KvRange, KvStore } from './kv.ts';
import { compareBytes } from './kv.ts';

export class MemoryKvStore implements KvStore {
  private readonly map = new Map<string, [Uint8Array, Uint8Array]>();

  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.map.get(Buffer.from(key).toString('latin1'))?.[1];
  }

  async batch(operations: KvOperation[]): Promise<void> {
    for (const operation of operations) {
      const id = Buffer.from(operation.key).toString('latin1');
      if (operation.type === 'put') this.map.set(id, [operation.key.slice(), operation.value.slice()]);
      else this.map.delete(id);
    }
  }

  async *entries(range: KvRange): AsyncIterable<[Uint8Array, Uint8Array]> {
    const selected = [...this.map.values()]
      .filter(([key]) => (range.gte === undefined || compareBytes(key, range.gte) >= 0) && (range.lt === undefined || compareBytes(key, range.lt) < 0))
      .sort(([a], [b]) => compareBytes(a, b));
    if (range.reverse) selected.reverse();
    const limited = range.limit === undefined ? selected : selected.slice(0, range.limit);
    for (const [key, value] of limited) yield [key.slice(), value.slice()];
  }

  async close(): Promise<void> {}
}
