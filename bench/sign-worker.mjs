// Pre-signs benchmark messages off the main thread with the project's own signMessage (libsecp256k1).
// A .mjs entry that registers tsx, because a worker does not inherit the TypeScript loader.
import { randomBytes } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { signMessage } = await import('../src/ledger/message.ts');
const { messageToJson } = await import('../src/api/json.ts');
const { fromHex } = await import('../src/ledger/hash.ts');

const { chain, address, bodyBytes, keysPerDevice } = workerData;
const devices = workerData.devices.map(({ secretKey, publicKey }) => ({ secretKey: fromHex(secretKey), publicKey: fromHex(publicKey) }));

/** Message number `index` of the run: device index % D, nonce floor(index / D) + 1, so every (device, nonce) is used once. */
function sign(index) {
  const deviceIndex = index % devices.length;
  const round = Math.floor(index / devices.length);
  const device = devices[deviceIndex];
  const message = signMessage(
    {
      chain, address, key: `d${deviceIndex}-s${round % keysPerDevice}`, body: new Uint8Array(randomBytes(bodyBytes)), ttlSeconds: -1, props: [],
      device: device.publicKey, nonce: round + 1,
    },
    device.secretKey,
    new Uint8Array(randomBytes(32)),
  );
  return JSON.stringify(messageToJson(message));
}

parentPort.on('message', ({ id, start, count }) => {
  const messages = new Array(count);
  for (let offset = 0; offset < count; offset++) messages[offset] = sign(start + offset);
  parentPort.postMessage({ id, messages });
});
parentPort.postMessage({ ready: true });
