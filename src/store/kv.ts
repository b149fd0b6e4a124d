// The storage port: an ordered key-value store with atomic batches. LevelDB in production, an
// in-memory map in simulation. Keys and values are bytes; keys sort bytewise.

export type KvOperation = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array };

export interface KvRange {
  gte?: Uint8Array;
  lt?: Uint8Array;
  reverse?: boolean;
  limit?: number;
}

export interface KvStore {
  get(key: Uint8Array): Promise<Uint8Array | undefined>;
  /** Applies every operation or none. With `sync`, returns only once the batch is on disk. */
  batch(operations: KvOperation[], options: { sync: boolean }): Promise<void>;
  entries(range: KvRange): AsyncIterable<[Uint8Array, Uint8Array]>;
  close(): Promise<void>;
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}
