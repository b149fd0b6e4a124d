// A thread of the signature-verification ceiling: verifies its share of pre-made BIP-340
// signatures with libsecp256k1 in a loop until the deadline: the node's own backend (native, else
// WASM: src/ledger/bip340.js) or, with backend 'wasm', tiny-secp256k1's WASM build alone. Plain
// JavaScript, like the node's own verify worker, so it needs no TypeScript loader.
// Item layout: hash(32) pubkey(32) sig(64).
import { readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { verifyBip340, verifyWasm } from '../src/ledger/bip340.js';

/** This thread's CPU time in ms (Linux; 10 ms resolution), or NaN: the rate per CPU-second holds up when other work shares the cores. */
function threadCpuMs() {
  try {
    const stat = readFileSync('/proc/thread-self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

const ITEM_BYTES = 128;
const { items, warmupMs, backend } = workerData;
const verify = backend === 'wasm' ? verifyWasm : verifyBip340;
const count = items.length / ITEM_BYTES;
const hashes = [];
const keys = [];
const signatures = [];
for (let item = 0; item < count; item++) {
  const offset = item * ITEM_BYTES;
  hashes.push(items.subarray(offset, offset + 32));
  keys.push(items.subarray(offset + 32, offset + 64));
  signatures.push(items.subarray(offset + 64, offset + 128));
}

let failures = 0;
function verifyOne(item) {
  if (!verify(hashes[item], keys[item], signatures[item])) failures++;
}

// Warm up: every item once (checks them all), then until warmupMs has passed.
const warmupStart = performance.now();
for (let item = 0; item < count; item++) verifyOne(item);
for (let item = 0; performance.now() - warmupStart < warmupMs; item = (item + 1) % count) verifyOne(item);
parentPort.postMessage({ type: 'ready', failures });

parentPort.once('message', ({ durationMs }) => {
  failures = 0;
  let verified = 0;
  const cpuStart = threadCpuMs();
  const start = performance.now();
  const deadline = start + durationMs;
  let item = 0;
  for (;;) {
    for (let step = 0; step < 32; step++) {
      verifyOne(item);
      item = item + 1 === count ? 0 : item + 1;
    }
    verified += 32;
    if (performance.now() >= deadline) break;
  }
  const elapsedMs = performance.now() - start;
  parentPort.postMessage({ type: 'done', verified, elapsedMs, cpuMs: threadCpuMs() - cpuStart, failures });
});
