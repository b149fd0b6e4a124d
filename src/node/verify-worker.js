// A worker thread of WorkerPoolVerifier (verifier.ts, which sends the layout): claims items from
// the shared ring, verifies each BIP-340 signature with libsecp256k1 (native, else WASM: see
// src/ledger/bip340.js), writes the result into the item's slot and reports the finished slots.
// Plain JavaScript so that it loads without a TypeScript loader. Item layout: hash(32) pubkey(32) sig(64).
import { parentPort, workerData } from 'node:worker_threads';
import { verifyBip340 } from '../ledger/bip340.js';

const { shared, index, layout } = workerData;
const { slots: SLOTS, itemBytes: ITEM_BYTES, controlWords, tail: TAIL, head: HEAD, stop: STOP, reportItems: REPORT_ITEMS, pending: PENDING, valid: VALID, invalid: INVALID } = layout;
const SLOT_MASK = SLOTS - 1;
const owned = layout.ownedBase + index;
const control = new Int32Array(shared, 0, controlWords);
const states = new Int32Array(shared, controlWords * 4, SLOTS);
const items = new Uint8Array(shared, controlWords * 4 + SLOTS * 4);

let finished = [];
const report = () => {
  parentPort.postMessage(Int32Array.from(finished));
  finished = [];
};

const verify = (offset) => {
  try {
    return verifyBip340(items.subarray(offset, offset + 32), items.subarray(offset + 32, offset + 64), items.subarray(offset + 64, offset + ITEM_BYTES));
  } catch (error) {
    // tiny-secp256k1 refuses a public key that is not on the curve (or an out-of-range signature)
    // with a TypeError: a failed verification. Anything else is this thread's fault, not the
    // message's: the thread stops, and the pool refuses the item with a retryable code.
    if (error instanceof TypeError) return false;
    throw error;
  }
};

parentPort.postMessage('ready');

while (Atomics.load(control, STOP) === 0) {
  const head = Atomics.load(control, HEAD);
  const tail = Atomics.load(control, TAIL);
  // Positions wrap at 32 bits; their difference does not.
  if (((tail - head) | 0) <= 0) {
    if (finished.length > 0) report();
    // Sleeps until the event loop publishes an item (the tail moves) or the pool stops.
    Atomics.wait(control, TAIL, tail);
    continue;
  }
  if (Atomics.compareExchange(control, HEAD, head, (head + 1) | 0) !== head) continue; // another worker took it
  const slot = head & SLOT_MASK;
  // The slot is this worker's only if it is still pending: the event loop takes back a slot claimed
  // by a worker that died before owning it, and may have taken this one in that belief.
  if (Atomics.compareExchange(states, slot, PENDING, owned) !== PENDING) continue;
  const valid = verify(slot * ITEM_BYTES);
  Atomics.store(states, slot, valid ? VALID : INVALID);
  finished.push(slot);
  if (finished.length >= REPORT_ITEMS) report();
}
