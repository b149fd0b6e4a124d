// What latency tail any server gets on this machine at a given CPU cost per request, with the bench's
// own open-loop client: a stand-in server (tail-floor-server.mjs) that spends the node's time per
// message on its event loop and on a worker thread and does nothing else. Set the costs to the
// node's per-message figures from `npm run bench` at half load to see the floor under its p99.
//
//   npx tsx bench/tail-floor.ts --rate 1900 --main-us 300 --worker-us 300 [--rounds 6] [--duration 6]
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { openLoop } from './ingest.ts';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '1900' }, 'main-us': { type: 'string', default: '300' }, 'worker-us': { type: 'string', default: '300' },
    threads: { type: 'string', default: '2' }, rounds: { type: 'string', default: '6' }, duration: { type: 'string', default: '6' },
  },
});
const [rate, mainUs, workerUs, threads, rounds, durationS] = [values.rate, values['main-us'], values['worker-us'], values.threads, values.rounds, values.duration].map(Number) as [number, number, number, number, number, number];
const server = spawn(process.execPath, [new URL('./tail-floor-server.mjs', import.meta.url).pathname, String(mainUs), String(workerUs), String(threads)], { stdio: ['ignore', 'pipe', 'inherit'] });
try {
  const url = await new Promise<string>((resolve, reject) => {
    server.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString().trim()));
    server.once('exit', (code) => reject(new Error(`the stand-in server exited with ${code}`)));
  });
  const body = JSON.stringify({ body: 'x'.repeat(400) });
  // The first round warms up both sides and is not counted.
  for (let round = 0; round <= rounds; round++) {
    const result = await openLoop(url, Array.from({ length: Math.ceil(rate * durationS) }, () => body), { ratePerSecond: rate, connections: 256, drainTimeoutMs: 30_000 });
    console.log(`${round === 0 ? 'warm-up' : `round ${round}`}: ${rate}/s, ${mainUs} µs on the event loop + ${workerUs} µs on a worker per request: p50 ${result.latency.p50Ms} p99 ${result.latency.p99Ms} max ${result.latency.maxMs} ms; send lag p99 ${result.sendLagP99Ms} ms`);
  }
} finally {
  server.kill();
}
