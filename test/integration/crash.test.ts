// Crash safety with real processes: a node killed with SIGKILL while a device streams writes must,
// once restarted on the same data directory, still hold every write it acknowledged, and its
// store must pass `kalima verify-chain`. A write is acknowledged only once its block is on disk.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isKalimaError } from '../../src/errors.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { messageSigningHash } from '../../src/ledger/message.ts';
import { type CommitReceipt, type ChainMessage, KalimaClient, generateDeviceKey, loadDeviceKey } from '../../src/sdk/client.ts';
import type { KeyPair } from '../../src/ledger/signature.ts';
import { tempDir } from '../support/chain.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(REPO, 'bin', 'kalima.mjs');
const CHAIN = 'crash';
const ADDRESS = '/crash/stream';
const KEYS = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'];
const WRITERS = 8;
const KILLS = 3;
const STREAM_MS = 1_500;
const START_TIMEOUT_MS = 20_000;

let directory: string;
let configFile: string;
const children = new Set<ChildProcess>();

interface Attempt {
  round: number;
  key: string;
  value: string;
  messageHash: string;
  receipt?: CommitReceipt;
  errorCode?: string;
  failedAtMs?: number;
}

interface RunningNode {
  child: ChildProcess;
  url: string;
  output: () => string;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/** Runs the CLI to completion. */
async function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const [code] = (await once(child, 'close')) as [number | null];
  children.delete(child);
  return { code, stdout, stderr };
}

async function startNode(): Promise<RunningNode> {
  const port = await freePort();
  const child = spawn(process.execPath, [BIN, 'node', '--config', configFile, '--port', String(port), '--client-port', '0'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  // Keep the tail of the output for a failure message; drain the rest so the node never blocks on a pipe.
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-8_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exited = false;
  child.once('exit', () => (exited = true));
  const url = `http://127.0.0.1:${port}`;
  const deadlineMs = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited) throw new Error(`the node exited while starting:\n${tail}`);
    if (Date.now() > deadlineMs) throw new Error(`the node did not answer /status within ${START_TIMEOUT_MS} ms:\n${tail}`);
    try {
      const response = await fetch(`${url}/status`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, url, output: () => tail };
}

async function kill(node: RunningNode, signal: 'SIGKILL' | 'SIGTERM'): Promise<number | null> {
  const exit = once(node.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  node.child.kill(signal);
  const [code] = await exit;
  children.delete(node.child);
  return code;
}

async function verifyChain(): Promise<{ ok: boolean; chain: string; height: number; stateDigest: string; tipHash: string }> {
  const result = await cli(['verify-chain', '--config', configFile]);
  expect(result.code, `verify-chain failed:\n${result.stderr}`).toBe(0);
  return JSON.parse(result.stdout) as { ok: boolean; chain: string; height: number; stateDigest: string; tipHash: string };
}

/**
 * WRITERS concurrent loops, each with one write in flight, until the node is killed under them.
 * Every attempt is recorded before it is sent, with the hash of the signed message, so a write
 * that committed without its answer reaching us is still recognised.
 */
function stream(device: KalimaClient, round: number, attempts: Attempt[], isKilled: () => boolean): Promise<void[]> {
  return Promise.all(Array.from({ length: WRITERS }, async (_unused, writer) => {
    for (let index = 0; !isKilled(); index++) {
      const key = KEYS[(writer + index * 5) % KEYS.length]!;
      const value = `round ${round} writer ${writer} write ${index}`;
      const message = await device.sign(ADDRESS, key, new TextEncoder().encode(value));
      const attempt: Attempt = { round, key, value, messageHash: toHex(messageSigningHash(message)) };
      attempts.push(attempt);
      try {
        attempt.receipt = await device.submit(message);
      } catch (error) {
        attempt.errorCode = isKalimaError(error) ? error.code : String(error);
        attempt.failedAtMs = Date.now();
        return;
      }
    }
  }));
}

/** Every acknowledged write is in the history and no write appears that was never sent; GET shows the last write of each key. */
async function checkDurable(node: RunningNode, device: KeyPair, attempts: Attempt[]): Promise<void> {
  const client = new KalimaClient({ url: node.url, key: device, chain: CHAIN });
  const history: ChainMessage[] = [];
  for await (const message of client.history(ADDRESS, { pageSize: 1000 })) history.push(message);
  expect(history.map((message) => message.sequence), 'sequences run 0, 1, 2, ... without a gap or a duplicate').toEqual(history.map((_message, index) => index));

  const attemptByHash = new Map(attempts.map((attempt) => [attempt.messageHash, attempt]));
  const historyByHash = new Map(history.map((message) => [message.hash, message]));
  for (const message of history) {
    const attempt = attemptByHash.get(message.hash);
    expect(attempt, `history holds message ${message.hash}, which was never sent`).toBeDefined();
    expect({ key: message.key, value: Buffer.from(message.body).toString('utf8') }).toEqual({ key: attempt!.key, value: attempt!.value });
  }
  const acknowledged = attempts.filter((attempt) => attempt.receipt !== undefined);
  for (const attempt of acknowledged) {
    const receipt = attempt.receipt!;
    const message = historyByHash.get(receipt.messageHash);
    expect(message, `acknowledged write lost: ${attempt.value} (height ${receipt.height}, sequence ${receipt.sequence})`).toBeDefined();
    expect({ sequence: message!.sequence, globalSequence: message!.globalSequence, height: message!.height })
      .toEqual({ sequence: receipt.sequence, globalSequence: receipt.globalSequence, height: receipt.height });
  }

  for (const key of KEYS) {
    const lastInHistory = history.findLast((message) => message.key === key);
    const lastAcknowledged = acknowledged.filter((attempt) => attempt.key === key).sort((a, b) => a.receipt!.sequence - b.receipt!.sequence).at(-1);
    const current = await client.get(ADDRESS, key);
    if (lastInHistory === undefined) {
      expect(lastAcknowledged).toBeUndefined();
      expect(current).toBeUndefined();
      continue;
    }
    expect(current, `GET ${key}`).toBeDefined();
    expect({ value: Buffer.from(current!.body).toString('utf8'), sequence: current!.sequence, hash: current!.hash })
      .toEqual({ value: Buffer.from(lastInHistory.body).toString('utf8'), sequence: lastInHistory.sequence, hash: lastInHistory.hash });
    if (lastAcknowledged !== undefined && lastInHistory.hash !== lastAcknowledged.messageHash) {
      // Only a later write whose answer was lost in the crash may stand over the last acknowledged one.
      expect(lastInHistory.sequence).toBeGreaterThan(lastAcknowledged.receipt!.sequence);
      expect(attemptByHash.get(lastInHistory.hash)!.receipt).toBeUndefined();
    }
  }
}

beforeAll(async () => {
  directory = await tempDir('kalima-crash-');
  configFile = join(directory, 'config.json');
  const init = await cli(['init', '--dir', directory, '--chain', CHAIN]);
  expect(init.code, init.stderr).toBe(0);
});

afterAll(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      const exit = once(child, 'exit');
      child.kill('SIGKILL');
      await exit;
    }
  }
  children.clear();
  if (directory !== undefined) await rm(directory, { recursive: true, force: true });
});

it(`keeps every acknowledged write through ${KILLS} kill -9s mid-stream`, async () => {
  let node = await startNode();
  const admin = new KalimaClient({ url: node.url, key: await loadDeviceKey(join(directory, 'keys', 'admin.json')), chain: CHAIN });
  await admin.createAddress(ADDRESS, 'crash test stream');
  const deviceKey = generateDeviceKey();
  await admin.registerDevice(toHex(deviceKey.publicKey), { name: 'streamer', pub: ['/crash'], sub: ['/crash'] });

  const attempts: Attempt[] = [];
  for (let round = 1; round <= KILLS; round++) {
    // One attempt per writer, no retries: a write either gets its answer or is cut off by the kill.
    const device = new KalimaClient({ url: node.url, key: deviceKey, chain: CHAIN, writeAttempts: 1 });
    let killedAtMs: number | undefined;
    const streaming = stream(device, round, attempts, () => killedAtMs !== undefined);
    await new Promise((resolve) => setTimeout(resolve, STREAM_MS));
    const inFlight = attempts.filter((attempt) => attempt.round === round && attempt.receipt === undefined && attempt.errorCode === undefined).length;
    killedAtMs = Date.now();
    await kill(node, 'SIGKILL');
    await streaming;

    const thisRound = attempts.filter((attempt) => attempt.round === round);
    const failures = thisRound.filter((attempt) => attempt.errorCode !== undefined);
    expect(thisRound.filter((attempt) => attempt.receipt !== undefined).length, `round ${round}: writes acknowledged before the kill`).toBeGreaterThan(20);
    expect(inFlight, `round ${round}: writes in flight when the node was killed`).toBeGreaterThan(0);
    // Nothing failed while the node was up, and what the kill cut off failed as unreachable.
    for (const failure of failures) {
      expect(failure.failedAtMs!).toBeGreaterThanOrEqual(killedAtMs);
      expect(failure.errorCode).toBe('KALIMA_ERR_SDK_UNREACHABLE');
    }

    // The store the kill left behind passes the offline check...
    const verified = await verifyChain();
    expect(verified.ok).toBe(true);
    expect(verified.chain).toBe(CHAIN);
    expect(verified.height).toBeGreaterThanOrEqual(Math.max(...thisRound.flatMap((attempt) => (attempt.receipt ? [attempt.receipt.height] : []))));

    // ...and the restarted node serves that chain, with every acknowledged write of every round.
    node = await startNode();
    const status = await new KalimaClient({ url: node.url, key: deviceKey, chain: CHAIN }).status();
    expect({ height: status.height, stateDigest: status.stateDigest, tipHash: status.tipHash })
      .toEqual({ height: verified.height, stateDigest: verified.stateDigest, tipHash: verified.tipHash });
    await checkDurable(node, deviceKey, attempts);
  }

  // A clean stop after all that, and the chain still verifies.
  const height = (await new KalimaClient({ url: node.url, key: deviceKey, chain: CHAIN }).status()).height;
  expect(await kill(node, 'SIGTERM')).toBe(0);
  expect((await verifyChain()).height).toBe(height);
}, 120_000);
