// Worker thread of WorkerBlockSigner: signs block hashes with the node key (BIP-340, libsecp256k1)
// and checks each fresh signature before it leaves, as signSchnorr does on the main thread.
// Plain JavaScript so that it loads without a TypeScript loader.
import { parentPort, workerData } from 'node:worker_threads';
import * as libsecp from 'tiny-secp256k1';

const secretKey = new Uint8Array(workerData.secretKey);
const publicKey = new Uint8Array(workerData.publicKey);

parentPort.on('message', ({ id, hash, aux }) => {
  try {
    const signature = libsecp.signSchnorr(hash, secretKey, aux);
    if (!libsecp.verifySchnorr(hash, publicKey, signature)) throw new Error('a fresh block signature does not verify');
    parentPort.postMessage({ id, signature });
  } catch (error) {
    parentPort.postMessage({ id, error: String(error?.message ?? error) });
  }
});
