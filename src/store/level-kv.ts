// KvStore on LevelDB (classic-level, through `level`).
import { Level } from 'level';
import { kalimaError } from '../errors.ts';
import type { KvOperation, KvRange, KvStore } from './kv.ts';

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function asBytes(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

export class LevelKvStore implements KvStore {
  private constructor(private readonly db: Level<Buffer, Buffer>) {}

  static async open(directory: string): Promise<LevelKvStore> {
    const db = new Level<Buffer, Buffer>(directory, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    try {
      await db.open();
    } catch (error) {
      const cause = (error as { cause?: { message?: string } }).cause?.message ?? String(error);
      if (/lock/i.test(cause)) throw kalimaError('KALIMA_ERR_STORE_LOCKED', { directory, cause });
      throw kalimaError('KALIMA_ERR_STORE_CORRUPT', { directory, cause });
    }
    return new LevelKvStore(db);
  }

  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    const value = await this.db.get(asBuffer(key));
    return value === undefined ? undefined : asBytes(value);
  }

  async batch(operations: KvOperation[], options: { sync: boolean }): Promise<void> {
    // A chained batch: one native call per operation. The array form costs the event loop several
    // times more per operation (abstract-level clones each one, classic-level reads it back property
    // by property), and a block writes hundreds. Both write one atomic LevelDB WriteBatch.
    const batch = this.db.batch();
    try {
      for (const operation of operations) {
        if (operation.type === 'put') batch.put(asBuffer(operation.key), asBuffer(operation.value));
        else batch.del(asBuffer(operation.key));
      }
    } catch (error) {
      await batch.close();
      throw error;
    }
    await batch.write({ sync: options.sync });
  }

  async *entries(range: KvRange): AsyncIterable<[Uint8Array, Uint8Array]> {
    const options: { gte?: Buffer; lt?: Buffer; reverse?: boolean; limit?: number } = {};
    if (range.gte !== undefined) options.gte = asBuffer(range.gte);
    if (range.lt !== undefined) options.lt = asBuffer(range.lt);
    if (range.reverse !== undefined) options.reverse = range.reverse;
    if (range.limit !== undefined) options.limit = range.limit;
    for await (const [key, value] of this.db.iterator(options)) yield [asBytes(key), asBytes(value)];
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
