// The disk's side of commit latency: a synced LevelDB write of one block's worth of data (about
// 16 KB in 50 puts), as the node makes once per block.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { type LatencySummary, summarize } from './stats.ts';

export async function syncedWriteLatency(writes: number): Promise<LatencySummary> {
  const directory = await mkdtemp(join(tmpdir(), 'kalima-bench-disk-'));
  const db = new Level<Buffer, Buffer>(directory, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  try {
    await db.open();
    const latencies: number[] = [];
    for (let write = 0; write < writes; write++) {
      const batch = db.batch();
      for (let put = 0; put < 50; put++) batch.put(randomBytes(40), randomBytes(300));
      const start = performance.now();
      await batch.write({ sync: true });
      latencies.push(performance.now() - start);
    }
    return summarize(latencies);
  } finally {
    await db.close();
    await rm(directory, { recursive: true, force: true });
  }
}
