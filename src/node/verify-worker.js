// Worker thread of WorkerPoolVerifier: verifies batches of BIP-340 signatures with libsecp256k1.
// Plain JavaScript so that it loads without a TypeScript loader. Item layout: hash(32) pubkey(32) sig(64).
import { parentPort } from 'node:worker_threads';
import * as libsecp from 'tiny-secp256k1';

const ITEM_BYTES = 128;

parentPort.on('message', ({ id, count, payload }) => {
  const results = new Uint8Array(count);
  for (let item = 0; item < count; item++) {
    const offset = item * ITEM_BYTES;
    try {
      results[item] = libsecp.verifySchnorr(
        payload.subarray(offset, offset + 32),
        payload.subarray(offset + 32, offset + 64),
        payload.subarray(offset + 64, offset + 128),
      ) ? 1 : 0;
    } catch {
      results[item] = 0;
    }
  }
  parentPort.postMessage({ id, results }, [results.buffer]);
});
