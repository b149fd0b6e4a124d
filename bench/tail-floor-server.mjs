// The server of bench/tail-floor.ts: answers every POST after spending `mainUs` of the event loop's
// time (half before, half after) and `workerUs` on one of `threads` worker threads in between, as the
// node spends its time per message on the event loop and on a signature check. Nothing else: no
// blocks, no disk, no batching. Prints its address on standard output. RETAIN_OBJECTS=N (and RETAIN_MS,
// default 500) keeps 3 × N small objects per request alive that long, to see what survivors cost.
import http from 'node:http';
import { Worker } from 'node:worker_threads';

const [mainUs, workerUs, threads] = process.argv.slice(2).map(Number);
const spin = (us) => {
  const end = performance.now() + us / 1000;
  while (performance.now() < end);
};
const workerSource = `
  const { parentPort } = require('node:worker_threads');
  parentPort.on('message', ({ id, us }) => {
    const end = performance.now() + us / 1000;
    while (performance.now() < end);
    parentPort.postMessage(id);
  });`;
const workers = Array.from({ length: Math.max(1, threads) }, () => new Worker(workerSource, { eval: true }));
const waiting = new Map();
let nextId = 0;
let nextWorker = 0;
for (const worker of workers) worker.on('message', (id) => {
  waiting.get(id)();
  waiting.delete(id);
});
const onWorker = (us) => new Promise((resolve) => {
  const id = nextId++;
  waiting.set(id, resolve);
  workers[nextWorker++ % workers.length].postMessage({ id, us });
});
const answer = '{"ok":true}';
// For the GC question: keep RETAIN_OBJECTS small objects per request alive for RETAIN_MS, as the
// node's cache entries and blocks keep the objects of a message for about half a second.
const retainObjects = Number(process.env.RETAIN_OBJECTS ?? 0);
const retainMs = Number(process.env.RETAIN_MS ?? 500);
const retained = [];
const retain = () => {
  const now = performance.now();
  const kept = [];
  for (let index = 0; index < retainObjects; index++) kept.push({ index, bytes: new Uint8Array(32), text: `k${index}-${now}` });
  retained.push([now, kept]);
  while (retained.length > 0 && retained[0][0] < now - retainMs) retained.shift();
};
http.createServer((request, response) => {
  request.resume();
  request.on('end', async () => {
    spin(mainUs / 2);
    if (retainObjects > 0) retain();
    if (workerUs > 0) await onWorker(workerUs);
    spin(mainUs / 2);
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': String(answer.length) });
    response.end(answer);
  });
}).listen(0, '127.0.0.1', function listening() {
  process.stdout.write(`http://127.0.0.1:${this.address().port}\n`);
});
