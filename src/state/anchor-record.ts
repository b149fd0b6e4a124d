// Anchor records: a master that anchors the chain into Bitcoin writes, once an anchor transaction
// is confirmed to the depth it is configured for, an ordinary signed message
//
//   address /kalima/anchors   key = the commitment (the aggregation root, hex)   ttl -1, no props
//   body    {"root":"…","network":"…","txid":"…","bitcoinHeight":N,"bitcoinBlock":"…","tips":[{"chain":"…","height":H,"hash":"…"},…]}
//
// in exactly that form (no spaces, tips sorted by chain name), so every client sees each anchor in
// its event stream and can ask for a proof. A reorg that takes the anchor out of Bitcoin's chain
// leads to a new record under the same key once the commitment is confirmed again; the address's
// sequence keeps the history. Every master checks that the writer is a master of the genesis file,
// that the root is the aggregation root of the tips, and that the tip this chain has in the record
// is this chain's block at that height (looked up in its store when it is not a recent block).
import { kalimaError } from '../errors.ts';
import { bytesEqual, fromHex, toHex } from '../ledger/hash.ts';
import { checkChainName, type Message, type UnsignedMessage } from '../ledger/message.ts';
import { VALIDATIONS_ADDRESS } from './validation.ts';
// The aggregation tree is pure hashing (anchors/aggregate.ts); the chain checks a record's root with it.
import { aggregationRoot } from '../../anchors/aggregate.ts';

export const ANCHORS_ADDRESS = '/kalima/anchors';

/** An anchor aggregates at most this many chains' tips. */
export const ANCHOR_TIPS_MAX = 64;
const NETWORK_PATTERN = /^[a-z0-9-]{1,32}$/;

export interface AnchorTip {
  chain: string;
  height: number;
  hash: Uint8Array;
}

export interface AnchorRecord {
  root: Uint8Array;
  network: string;
  txid: Uint8Array;
  bitcoinHeight: number;
  bitcoinBlock: Uint8Array;
  tips: AnchorTip[];
}

export function encodeAnchorBody(record: AnchorRecord): Uint8Array {
  const tips = record.tips.map((tip) => `{"chain":${JSON.stringify(tip.chain)},"height":${tip.height},"hash":"${toHex(tip.hash)}"}`).join(',');
  return new TextEncoder().encode(
    `{"root":"${toHex(record.root)}","network":"${record.network}","txid":"${toHex(record.txid)}","bitcoinHeight":${record.bitcoinHeight},"bitcoinBlock":"${toHex(record.bitcoinBlock)}","tips":[${tips}]}`,
  );
}

function bad(reason: string, extra: Record<string, unknown> = {}): never {
  throw kalimaError('KALIMA_ERR_LEDGER_BAD_ANCHOR', { reason, ...extra });
}

function hash32(value: unknown, field: string): Uint8Array {
  const bytes = typeof value === 'string' ? fromHex(value) : undefined;
  if (bytes === undefined || bytes.length !== 32 || value !== toHex(bytes)) bad(`${field} must be 64 lower-case hex digits`);
  return bytes!;
}

/** The record an anchor body holds; throws KALIMA_ERR_LEDGER_BAD_ANCHOR unless it is exactly the canonical text. */
export function decodeAnchorBody(body: Uint8Array): AnchorRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch {
    bad('the body is not JSON');
  }
  const raw = parsed as Record<string, unknown>;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('the body must be a JSON object');
  if (typeof raw.network !== 'string' || !NETWORK_PATTERN.test(raw.network)) bad('network must match ^[a-z0-9-]{1,32}$');
  if (!Number.isSafeInteger(raw.bitcoinHeight) || (raw.bitcoinHeight as number) < 0) bad('bitcoinHeight must be a whole number');
  if (!Array.isArray(raw.tips) || raw.tips.length === 0 || raw.tips.length > ANCHOR_TIPS_MAX) bad(`tips must list 1 to ${ANCHOR_TIPS_MAX} chains`);
  const tips = (raw.tips as unknown[]).map((value, index): AnchorTip => {
    const tip = value as Record<string, unknown>;
    if (typeof tip !== 'object' || tip === null || typeof tip.chain !== 'string' || !Number.isSafeInteger(tip.height) || (tip.height as number) < 1) {
      bad('each tip must be {"chain":"…","height":H,"hash":"…"} with H ≥ 1', { index });
    }
    try {
      checkChainName(tip.chain as string);
    } catch {
      bad('a tip names a malformed chain', { index });
    }
    return { chain: tip.chain as string, height: tip.height as number, hash: hash32(tip.hash, `tips[${index}].hash`) };
  });
  for (let index = 1; index < tips.length; index++) {
    if (!(tips[index - 1]!.chain < tips[index]!.chain)) bad('tips must be sorted by chain name, each chain once');
  }
  const record: AnchorRecord = {
    root: hash32(raw.root, 'root'), network: raw.network as string, txid: hash32(raw.txid, 'txid'),
    bitcoinHeight: raw.bitcoinHeight as number, bitcoinBlock: hash32(raw.bitcoinBlock, 'bitcoinBlock'), tips,
  };
  if (!bytesEqual(encodeAnchorBody(record), body)) bad('the body must be exactly the canonical text, without spaces, fields in order');
  return record;
}

export interface AnchorCheckContext {
  chain: string;
  /** The height of the block the message goes into. */
  height: number;
  /** The masters of the genesis file (x-only keys, hex): the only writers of /kalima/anchors. */
  masters: ReadonlySet<string>;
  blockHashAt?: (height: number) => Uint8Array | undefined;
}

/** Every check of a message at /kalima/anchors. */
export function checkAnchorRecord(message: Message, context: AnchorCheckContext): AnchorRecord {
  const deviceHex = toHex(message.device);
  if (!context.masters.has(deviceHex)) throw kalimaError('KALIMA_ERR_ACCESS_MASTERS_ONLY', { device: deviceHex, address: message.address });
  if (message.body.length === 0 || message.ttlSeconds !== -1 || message.props.length > 0) bad('an anchor record is a put with ttl -1 and no props');
  const record = decodeAnchorBody(message.body);
  if (message.key !== toHex(record.root)) bad('the key must be the root, hex', { key: message.key });
  if (!bytesEqual(aggregationRoot(record.tips.map((tip) => ({ chain: tip.chain, height: tip.height, blockHash: tip.hash }))), record.root)) {
    bad('the root is not the aggregation root of the tips');
  }
  const own = record.tips.find((tip) => tip.chain === context.chain);
  if (own === undefined) bad('the record has no tip of this chain');
  if (own!.height >= context.height) bad('the tip must be a block before the one that carries the record', { height: own!.height, block: context.height });
  const known = context.blockHashAt?.(own!.height);
  if (known !== undefined && !bytesEqual(known, own!.hash)) bad('the tip is not this chain\'s block at that height', { height: own!.height });
  return record;
}

export function anchorRecordMessage(chain: string, device: Uint8Array, record: AnchorRecord, nonce: number): UnsignedMessage {
  return { chain, address: ANCHORS_ADDRESS, key: toHex(record.root), body: encodeAnchorBody(record), ttlSeconds: -1, props: [], device, nonce };
}

/**
 * Whether a block holds news: anything but validation and anchor records. A validation node
 * validates only news, and an anchoring node anchors only news, so neither keeps an idle chain busy
 * answering the other's records.
 */
export function blockHasNews(block: { messages: ReadonlyArray<{ message: { address: string } }> }): boolean {
  return block.messages.some(({ message }) => message.address !== ANCHORS_ADDRESS && message.address !== VALIDATIONS_ADDRESS);
}
