// The REST surface, after Kalima's own: /transaction, /cache, /ledger, /blocks, /status, and
// server-sent events at /events. Every read is signed by a device and checked against its SUB
// list; every write is a signed message checked against its PUB list when it is executed.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Logger as PinoLogger } from 'pino';
import { ERROR_CATALOGUE, KalimaError, kalimaError } from '../errors.ts';
import { checkAddress, checkKey } from '../ledger/message.ts';
import { blockHash } from '../ledger/block.ts';
import { merkleLeafHash, merkleProofs } from '../ledger/merkle.ts';
import { encodeCommitted, messageSigningHash } from '../ledger/message.ts';
import { fromHex, toHex } from '../ledger/hash.ts';
import { checkPrefix, subCovers } from '../access/records.ts';
import { roleOf } from '../access/permissions.ts';
import type { KalimaNode } from '../node/node.ts';
import type { ConsensusStatus } from '../node/cluster.ts';
import { RequestAuthenticator } from './auth.ts';
import { EventHub } from './events.ts';
import type { AnchorProof } from '../../anchors/proof.ts';
import { type MarketApi, registerMarketRoutes } from './market.ts';
import { encodeProofBinary } from '../../anchors/proof-binary.ts';
import { encodeProofJson } from '../../anchors/proof-json.ts';
import { entryToJson, headerToJson, locatedToJson, messageFromJson } from './json.ts';

export interface ApiOptions {
  node: KalimaNode;
  /** In a cluster: the consensus state, shown by /status. */
  consensus?: () => ConsensusStatus;
  logger: PinoLogger | false;
  version: string;
  /** A node that anchors its chain into Bitcoin (anchors/service.ts): GET /anchors and GET /anchors/proof/:height. */
  anchors?: AnchorsApi;
  /** A node that sells listings and KLX over Lightning (bridge/market.ts): POST /market/purchases, /klx/purchases. */
  market?: MarketApi;
}

export interface AnchorsApi {
  status(): unknown;
  /** The proof of a block (anchors/proof.ts); throws KALIMA_ERR_ANCHOR_NOT_ANCHORED when no recorded anchor covers it yet. */
  proof(height: number): Promise<AnchorProof>;
}

/** GET /anchors/proof/:height?format=: the canonical JSON (anchors/proof-json.ts), or the binary .kproof bytes. */
const PROOF_FORMATS = ['json', 'binary'] as const;

const PAGE_SIZE_MAX = 1_000;
const BATCH_MESSAGES_MAX = 256;

function queryString(request: FastifyRequest, name: string, required: true): string;
function queryString(request: FastifyRequest, name: string, required: false): string | undefined;
function queryString(request: FastifyRequest, name: string, required: boolean): string | undefined {
  const value = (request.query as Record<string, unknown>)[name];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'string' || value.length === 0) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: name, reason: 'required query parameter' });
  return value;
}

function queryInteger(request: FastifyRequest, name: string, fallback: number | undefined, min: number, max: number): number {
  const value = (request.query as Record<string, unknown>)[name];
  if (value === undefined) {
    if (fallback === undefined) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: name, reason: 'required query parameter' });
    return fallback;
  }
  const parsed = typeof value === 'string' && /^-?\d{1,16}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: name, reason: `must be a whole number from ${min} to ${max}` });
  }
  return parsed;
}

const errorSchema = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string', enum: Object.keys(ERROR_CATALOGUE) }, message: { type: 'string' }, details: { type: 'object', additionalProperties: true } } } },
};

const messageBodySchema = {
  type: 'object',
  required: ['chain', 'address', 'key', 'device', 'nonce', 'signature'],
  properties: {
    chain: { type: 'string' },
    address: { type: 'string', description: 'a path such as /sensors/plant1' },
    key: { type: 'string' },
    body: { type: 'string', description: 'base64; empty deletes' },
    ttl: { type: 'integer', description: 'seconds; -1 keeps the value forever' },
    props: { type: 'object', additionalProperties: { type: 'string' } },
    device: { type: 'string', description: 'x-only public key, hex' },
    nonce: { type: 'integer' },
    signature: { type: 'string', description: 'BIP-340 signature of the message, hex' },
  },
};

const signedHeaders = {
  type: 'object',
  properties: {
    'x-kalima-device': { type: 'string' },
    'x-kalima-timestamp': { type: 'string' },
    'x-kalima-signature': { type: 'string' },
  },
};

export async function buildApi(options: ApiOptions): Promise<{ app: FastifyInstance; events: EventHub }> {
  const { node } = options;
  const app: FastifyInstance = Fastify({
    loggerInstance: options.logger === false ? undefined : (options.logger as unknown as FastifyBaseLogger),
    bodyLimit: 2 * 1024 * 1024,
    logController: new LogController({ disableRequestLogging: true }),
    // Handlers check their own inputs and answer with catalogue codes; schemas document the API.
    ajv: { customOptions: { coerceTypes: false } },
  });
  const events = new EventHub(node, options.logger === false ? { debug() {}, info() {}, warn() {}, error() {} } : options.logger);

  await app.register(swagger, {
    openapi: {
      info: { title: 'Kalima node API', version: options.version, description: 'REST and server-sent events of a Kalima PrivaChain node. Reads are signed with x-kalima-* headers; writes are signed messages.' },
      components: { schemas: {} },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  app.setErrorHandler((error: Error & { code?: string; validation?: unknown }, request, reply) => {
    let kalima: KalimaError;
    if (error instanceof KalimaError) kalima = error;
    else if ((error as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE') kalima = kalimaError('KALIMA_ERR_API_PAYLOAD_TOO_LARGE');
    else if (error instanceof SyntaxError || (error as { code?: string }).code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (error as { code?: string }).code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || (error as { code?: string }).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      kalima = kalimaError('KALIMA_ERR_API_BAD_JSON', { reason: error.message });
    } else if ((error as { validation?: unknown }).validation !== undefined) kalima = kalimaError('KALIMA_ERR_API_BAD_REQUEST', { reason: error.message });
    else {
      request.log.error({ err: error }, 'unhandled error');
      kalima = kalimaError('KALIMA_ERR_NODE_INTERNAL');
    }
    return reply.status(kalima.status).send(kalima.toJSON());
  });
  app.setNotFoundHandler((request, reply) => {
    const error = kalimaError('KALIMA_ERR_API_NOT_FOUND', { method: request.method, url: request.url });
    return reply.status(error.status).send(error.toJSON());
  });

  const authenticator = new RequestAuthenticator(node.genesisHashHex);
  const deviceOf = (request: FastifyRequest): string =>
    authenticator.authenticate({ method: request.method, pathAndQuery: request.url, headers: request.headers, nowMs: node.clock.nowMs() });

  // ---- writes ----
  app.post('/transaction', { schema: { tags: ['transactions'], summary: 'Write a signed message; answers once it is committed', body: messageBodySchema, response: { 400: errorSchema } } }, async (request) => {
    return node.submit(messageFromJson(request.body));
  });

  app.post('/transactions', { schema: { tags: ['transactions'], summary: `Write up to ${BATCH_MESSAGES_MAX} signed messages; one result per message, in order`, body: { type: 'array', items: messageBodySchema } } }, async (request) => {
    const body = request.body;
    if (!Array.isArray(body) || body.length === 0 || body.length > BATCH_MESSAGES_MAX) {
      throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { reason: `the body must be an array of 1 to ${BATCH_MESSAGES_MAX} messages` });
    }
    const results = await Promise.all(body.map(async (item) => {
      try {
        return { ok: true, receipt: await node.submit(messageFromJson(item)) };
      } catch (error) {
        if (error instanceof KalimaError) return { ok: false, ...error.toJSON() };
        throw error;
      }
    }));
    return { results };
  });

  app.delete('/transaction', { schema: { tags: ['transactions'], summary: 'Delete the value at (address, key): a signed message with an empty body', body: messageBodySchema } }, async (request) => {
    const message = messageFromJson(request.body);
    if (message.body.length !== 0) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'body', reason: 'a delete has an empty body' });
    return node.submit(message);
  });

  // ---- current values ----
  app.get('/transaction', { schema: { tags: ['cache'], summary: 'The current value at (address, key)', headers: signedHeaders, querystring: { type: 'object', properties: { address: { type: 'string' }, key: { type: 'string' } } } } }, async (request) => {
    const device = deviceOf(request);
    const address = queryString(request, 'address', true);
    const key = queryString(request, 'key', true);
    checkAddress(address);
    checkKey(key);
    node.checkRead(device, address);
    const entry = node.getEntry(address, key);
    if (entry === undefined) throw kalimaError('KALIMA_ERR_LEDGER_KEY_NOT_FOUND', { address, key });
    return entryToJson(entry);
  });

  app.get('/cache/list', { schema: { tags: ['cache'], summary: 'Addresses the device may read, with their sizes', headers: signedHeaders } }, async (request) => {
    const device = deviceOf(request);
    const addresses = node.cache.addresses().filter((address) => node.mayRead(device, address));
    return { addresses: addresses.map((address) => ({ address, size: node.cache.sizeAt(address), lastSequence: node.cache.lastSequence(address) })) };
  });

  app.get('/cache/keys', { schema: { tags: ['cache'], summary: 'Keys at an address', headers: signedHeaders } }, async (request) => {
    const device = deviceOf(request);
    const address = queryString(request, 'address', true);
    checkAddress(address);
    node.checkRead(device, address);
    return { address, keys: node.cache.entriesAt(address).map((entry) => entry.key) };
  });

  app.get('/cache', { schema: { tags: ['cache'], summary: 'The MemCache of an address: size, lowest and highest sequence, values', headers: signedHeaders } }, async (request) => {
    const device = deviceOf(request);
    const address = queryString(request, 'address', true);
    checkAddress(address);
    node.checkRead(device, address);
    const entries = node.cache.entriesAt(address);
    return {
      address,
      size: entries.length,
      lowestSequence: entries[0]?.sequence ?? null,
      highestSequence: entries[entries.length - 1]?.sequence ?? null,
      lastSequence: node.cache.lastSequence(address),
      entries: entries.map(entryToJson),
    };
  });

  // ---- history ----
  const pageOf = async (request: FastifyRequest, fromSequence: number, toSequence: number | undefined, pageSize: number, reverse: boolean) => {
    const device = deviceOf(request);
    const address = queryString(request, 'address', true);
    checkAddress(address);
    node.checkRead(device, address);
    const found = await node.history(address, { fromSequence, toSequence, limit: pageSize, reverse });
    // Read after the history: blocks may have committed meanwhile, and `next` must not stop short.
    const lastSequence = node.cache.lastSequence(address);
    const messages = found.map((located) => locatedToJson(located, messageSigningHash(located.committed.message)));
    const sequences = found.map((located) => located.committed.sequence);
    const highest = sequences.length === 0 ? undefined : Math.max(...sequences);
    const lowest = sequences.length === 0 ? undefined : Math.min(...sequences);
    return {
      address,
      lastSequence,
      messages,
      cursors: {
        first: 0,
        last: Math.max(0, lastSequence - pageSize + 1),
        next: highest !== undefined && highest < lastSequence && (toSequence === undefined || highest < toSequence) ? highest + 1 : null,
        previous: lowest !== undefined && lowest > 0 ? Math.max(0, lowest - pageSize) : null,
      },
    };
  };

  app.get('/ledger/bySequence', { schema: { tags: ['ledger'], summary: 'The message with a given sequence at an address', headers: signedHeaders } }, async (request) => {
    const sequence = queryInteger(request, 'sequence', undefined, 0, Number.MAX_SAFE_INTEGER);
    const page = await pageOf(request, sequence, sequence, 1, false);
    const message = page.messages[0];
    if (message === undefined) throw kalimaError('KALIMA_ERR_LEDGER_NOT_FOUND', { address: page.address, sequence });
    return message;
  });

  app.get('/ledger/betweenSequences', { schema: { tags: ['ledger'], summary: 'Messages at an address from fromSeq to toSeq, paged', headers: signedHeaders } }, async (request) => {
    const fromSequence = queryInteger(request, 'fromSeq', 0, 0, Number.MAX_SAFE_INTEGER);
    const toSequence = queryInteger(request, 'toSeq', Number.MAX_SAFE_INTEGER - 1, 0, Number.MAX_SAFE_INTEGER - 1);
    const pageSize = queryInteger(request, 'pageSize', 100, 1, PAGE_SIZE_MAX);
    return pageOf(request, fromSequence, toSequence, pageSize, false);
  });

  app.get('/ledger/fromLast', { schema: { tags: ['ledger'], summary: 'The last n messages at an address, newest first', headers: signedHeaders } }, async (request) => {
    const count = queryInteger(request, 'n', 10, 1, PAGE_SIZE_MAX);
    const address = queryString(request, 'address', true);
    checkAddress(address);
    return pageOf(request, Math.max(0, node.cache.lastSequence(address)), undefined, count, true);
  });

  // ---- blocks and status ----
  /** A block as a device may see it: the header, and its readable messages with their proofs. */
  const blockView = async (device: string, height: number): Promise<Record<string, unknown>> => {
    const block = await node.getBlock(height);
    if (block === undefined) throw kalimaError('KALIMA_ERR_LEDGER_NOT_FOUND', { height });
    const role = roleOf(node.cache, node.policy, device);
    if (role.kind === 'unknown') throw kalimaError('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE', { device });
    const leaves = block.messages.map((committed) => merkleLeafHash(encodeCommitted(committed)));
    const visible = block.messages
      .map((committed, index) => ({ committed, index }))
      .filter(({ committed }) => role.kind === 'admin' || subCovers(role.permissions.sub, committed.message.address));
    const proofs = merkleProofs(leaves, visible.map(({ index }) => index));
    return {
      header: headerToJson(block.header, blockHash(block.header)),
      signature: toHex(block.signature),
      complete: visible.length === block.messages.length,
      messages: visible.map(({ committed, index }, position) => ({
        index,
        message: locatedToJson({ committed, height, index, timeMs: block.header.timeMs }, messageSigningHash(committed.message)),
        leaf: toHex(leaves[index]!),
        proof: proofs[position]!.map(toHex),
      })),
    };
  };

  app.get('/blocks/at', { schema: { tags: ['blocks'], summary: 'The first block at or after a time (ms since the epoch), through the time index', headers: signedHeaders } }, async (request) => {
    const device = deviceOf(request);
    const timeMs = queryInteger(request, 'timeMs', undefined, 0, Number.MAX_SAFE_INTEGER);
    const height = await node.store.heightAtOrAfterTime(timeMs);
    if (height === undefined || height > node.height) throw kalimaError('KALIMA_ERR_LEDGER_NOT_FOUND', { timeMs });
    return blockView(device, height);
  });

  app.get('/blocks/:id', { schema: { tags: ['blocks'], summary: 'A block by height or by hash (64 hex digits): the header, with the messages the device may read and their Merkle proofs against txRoot', headers: signedHeaders } }, async (request) => {
    const device = deviceOf(request);
    const id = (request.params as { id: string }).id;
    let height: number | undefined;
    if (/^\d{1,16}$/.test(id)) height = Number(id);
    else if (/^[0-9a-f]{64}$/i.test(id)) height = await node.store.heightOfHash(fromHex(id)!);
    else throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'id', reason: 'a height or a block hash in hex' });
    if (height === undefined) throw kalimaError('KALIMA_ERR_LEDGER_NOT_FOUND', { hash: id });
    return blockView(device, height);
  });

  app.get('/status', { schema: { tags: ['node'], summary: 'Chain and node status (public)' } }, async () => {
    const tip = node.tipRecord;
    return {
      chain: node.chain,
      genesisHash: node.genesisHashHex,
      version: options.version,
      height: tip.height,
      tipHash: toHex(tip.hash),
      tipTimeMs: tip.timeMs,
      stateDigest: toHex(tip.stateDigest),
      nextGlobalSequence: tip.nextGlobalSequence,
      entries: node.cache.size,
      pendingMessages: node.pendingCount,
      subscribers: events.count,
      role: options.consensus?.().member ?? 'master',
      ...(options.consensus === undefined ? {} : { consensus: options.consensus() }),
    };
  });

  app.get('/rewards', { schema: { tags: ['node'], summary: 'The rewards the chain has counted: 1 KLX per block for each master, 0.1 KLX per validated block for each validation node (public)' } }, async () => node.rewards());

  registerMarketRoutes(app, node, deviceOf, options.market);

  // ---- anchors ----
  const anchors = (): AnchorsApi => {
    if (options.anchors === undefined) throw kalimaError('KALIMA_ERR_ANCHOR_NOT_CONFIGURED', {});
    return options.anchors;
  };
  app.get('/anchors', { schema: { tags: ['anchors'], summary: 'Anchoring into Bitcoin: the wallet, the Bitcoin node, each commitment and its state (pending, in the mempool, confirmed at depth N, recorded), and why an anchor is late (public)' } }, async () => anchors().status());
  app.get('/anchors/proof/:height', { schema: { tags: ['anchors'], summary: 'The proof that a block existed before a Bitcoin block: block hash, MMR path, tip header, aggregation path, anchor transaction, Bitcoin Merkle branch and header, as JSON or, with ?format=binary, as the compact .kproof bytes (application/octet-stream) (public; kalima verify-proof checks both)', querystring: { type: 'object', properties: { format: { type: 'string', description: 'json (the default) or binary' } } } } }, async (request, reply) => {
    const raw = (request.params as { height: string }).height;
    const height = /^[1-9][0-9]{0,15}$/.test(raw) ? Number(raw) : Number.NaN;
    if (!Number.isSafeInteger(height)) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'height', reason: 'a block height: a whole number from 1' });
    const format = queryString(request, 'format', false) ?? 'json';
    if (!(PROOF_FORMATS as readonly string[]).includes(format)) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'format', reason: `one of ${PROOF_FORMATS.join(', ')} (json is the default)` });
    if (height > node.height) throw kalimaError('KALIMA_ERR_LEDGER_NOT_FOUND', { height });
    const proof = await anchors().proof(height);
    if (format === 'binary') return reply.type('application/octet-stream').send(Buffer.from(encodeProofBinary(proof)));
    return reply.type('application/json; charset=utf-8').send(encodeProofJson(proof));
  });

  // ---- events ----
  app.get('/events', { schema: { tags: ['events'], summary: 'Server-sent events: committed messages under an address prefix, filtered by SUB. Resume with Last-Event-ID or ?from=<globalSequence>.', headers: signedHeaders } }, async (request, reply) => {
    const device = deviceOf(request);
    const prefix = queryString(request, 'address', false) ?? '/';
    checkPrefix(prefix);
    const lastEventId = request.headers['last-event-id'];
    const fromQuery = (request.query as Record<string, unknown>).from;
    let from: number | undefined;
    const cursor = typeof lastEventId === 'string' ? lastEventId : typeof fromQuery === 'string' ? fromQuery : undefined;
    if (cursor !== undefined) {
      if (!/^-?\d{1,16}$/.test(cursor) || Number(cursor) < -1) throw kalimaError('KALIMA_ERR_API_BAD_REQUEST', { field: 'from', reason: 'a globalSequence, or -1 for the beginning' });
      from = Number(cursor);
    }
    await events.open(request, reply, device, prefix, from);
  });

  // preClose, not onClose: the server waits for open connections before onClose hooks run, and
  // an event stream never ends by itself, so app.close() would wait forever.
  app.addHook('preClose', async () => events.close());
  return { app, events };
}
