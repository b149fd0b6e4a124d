// Validation records and rewards, as the chain counts them.
//
// A validation node checks every block it receives (signatures, permissions, hashchain, size,
// state digest: the block gate) and then writes an ordinary signed message:
//
//   address /kalima/validations   key = its id (x-only key, hex)   nonce = the height
//   body    {"height":H,"hash":"<block H's hash, hex>","validated":N}   (this exact JSON text)
//
// N counts the blocks it has validated since the chain began: its previous record's count plus the
// blocks since that record's height (the hashchain makes a signature on block H's hash stand for
// every block before it). H lies after the block that carried its previous record, so a
// validation node cannot keep the chain busy with records of records. The leader takes these messages into its blocks like any other, so a
// block carries the validations of the blocks before it; every master re-executes them. Rewards
// follow from the chain: 1 KLX per block for each master, 0.1 KLX per validated block for each
// validation node (rewardsOf).
import { kalimaError } from '../errors.ts';
import { bytesEqual, fromHex, toHex } from '../ledger/hash.ts';
import type { Message, UnsignedMessage } from '../ledger/message.ts';
import type { CacheEntry } from './entry.ts';

export const VALIDATIONS_ADDRESS = '/kalima/validations';

/** Reward units: 1 KLX = 100,000,000 units, so every amount is a whole number. */
export const UNITS_PER_KLX = 100_000_000;
export const MASTER_REWARD_PER_BLOCK = UNITS_PER_KLX;
export const VALIDATOR_REWARD_PER_BLOCK = UNITS_PER_KLX / 10;

export interface ValidationRecord {
  height: number;
  hash: Uint8Array;
  validated: number;
}

export function encodeValidationBody(record: ValidationRecord): Uint8Array {
  return new TextEncoder().encode(`{"height":${record.height},"hash":"${toHex(record.hash)}","validated":${record.validated}}`);
}

/** The record a validation body holds; throws KALIMA_ERR_LEDGER_BAD_VALIDATION unless it is exactly the canonical text. */
export function decodeValidationBody(body: Uint8Array): ValidationRecord {
  const bad = (reason: string): never => {
    throw kalimaError('KALIMA_ERR_LEDGER_BAD_VALIDATION', { reason });
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch {
    bad('the body is not JSON');
  }
  const raw = parsed as { height?: unknown; hash?: unknown; validated?: unknown };
  if (typeof raw !== 'object' || raw === null || !Number.isSafeInteger(raw.height) || (raw.height as number) < 1 || typeof raw.hash !== 'string' || !Number.isSafeInteger(raw.validated) || (raw.validated as number) < 1) {
    bad('the body must be {"height":H,"hash":"<64 hex digits>","validated":N}');
  }
  const hash = fromHex(raw.hash as string);
  if (hash === undefined || hash.length !== 32) bad('hash must be 64 lower-case hex digits');
  const record: ValidationRecord = { height: raw.height as number, hash: hash!, validated: raw.validated as number };
  if (!bytesEqual(encodeValidationBody(record), body)) bad('the body must be exactly {"height":H,"hash":"<hex>","validated":N}, without spaces');
  return record;
}

export interface ValidationContext {
  /** The height of the block the message goes into. */
  height: number;
  validators: ReadonlySet<string>;
  /** A block's hash by height, when this node knows it (undefined: not checked here). */
  blockHashAt?: (height: number) => Uint8Array | undefined;
}

/**
 * Every check of a message at /kalima/validations against the validator's previous record: only a
 * validation node writes there, under its own id, a record for an earlier block of this chain that
 * follows its previous one and counts the blocks between.
 */
export function checkValidation(message: Message, previous: CacheEntry | undefined, context: ValidationContext): ValidationRecord {
  const deviceHex = toHex(message.device);
  if (!context.validators.has(deviceHex)) throw kalimaError('KALIMA_ERR_ACCESS_VALIDATORS_ONLY', { device: deviceHex, address: message.address });
  const bad = (reason: string, extra: Record<string, unknown> = {}): never => {
    throw kalimaError('KALIMA_ERR_LEDGER_BAD_VALIDATION', { reason, ...extra });
  };
  if (message.key !== deviceHex) bad('the key must be the validation node\'s own id', { key: message.key });
  if (message.body.length === 0 || message.ttlSeconds !== -1 || message.props.length > 0) bad('a validation is a put with ttl -1 and no props');
  const record = decodeValidationBody(message.body);
  if (message.nonce !== record.height) bad('the nonce must be the validated height', { nonce: message.nonce, height: record.height });
  if (record.height >= context.height) bad('a validation is for a block before the one that carries it', { height: record.height, block: context.height });
  const before = previous === undefined ? { height: 0, validated: 0 } : decodeValidationBody(previous.value);
  if (record.height <= before.height) bad('the record must be for a block after the previous record\'s', { height: record.height, previous: before.height });
  // A record covers at least one block after the one that carried the previous record: a
  // validation node cannot keep the chain busy validating only its own records.
  if (previous !== undefined && record.height <= previous.height) bad('the record must cover a block after the one that carried the previous record', { height: record.height, carriedAt: previous.height });
  if (record.validated !== before.validated + (record.height - before.height)) {
    bad('validated must be the previous count plus the blocks since the previous record', { validated: record.validated, expected: before.validated + record.height - before.height });
  }
  const known = context.blockHashAt?.(record.height);
  if (known !== undefined && !bytesEqual(known, record.hash)) bad('the hash is not this chain\'s block at that height', { height: record.height });
  return record;
}

/** The unsigned message of a validation node's next record, after `previous` (its record on the chain, if any). */
export function validationMessage(chain: string, device: Uint8Array, height: number, hash: Uint8Array, previous: ValidationRecord | undefined): UnsignedMessage {
  const validated = (previous?.validated ?? 0) + height - (previous?.height ?? 0);
  return {
    chain, address: VALIDATIONS_ADDRESS, key: toHex(device), body: encodeValidationBody({ height, hash, validated }), ttlSeconds: -1, props: [], device, nonce: height,
  };
}

export interface Rewards {
  unit: 'KLX';
  unitsPerKlx: number;
  height: number;
  masters: Array<{ id: string; blocks: number; units: number; klx: string }>;
  validators: Array<{ id: string; validated: number; lastHeight: number; units: number; klx: string }>;
}

/** KLX as a decimal string of a whole number of units. */
export function formatKlx(units: number): string {
  const whole = Math.floor(units / UNITS_PER_KLX);
  const fraction = (units % UNITS_PER_KLX).toString().padStart(8, '0').replace(/0+$/, '');
  return fraction.length === 0 ? `${whole}` : `${whole}.${fraction}`;
}

/** The rewards the chain has counted at `height`: each master earns for every block, each validation node for every block it validated. */
export function rewardsOf(height: number, masters: readonly string[], validators: readonly string[], recordOf: (id: string) => CacheEntry | undefined): Rewards {
  return {
    unit: 'KLX',
    unitsPerKlx: UNITS_PER_KLX,
    height,
    masters: masters.map((id) => ({ id, blocks: height, units: height * MASTER_REWARD_PER_BLOCK, klx: formatKlx(height * MASTER_REWARD_PER_BLOCK) })),
    validators: validators.map((id) => {
      const entry = recordOf(id);
      const record = entry === undefined ? undefined : decodeValidationBody(entry.value);
      const validated = record?.validated ?? 0;
      return { id, validated, lastHeight: record?.height ?? 0, units: validated * VALIDATOR_REWARD_PER_BLOCK, klx: formatKlx(validated * VALIDATOR_REWARD_PER_BLOCK) };
    }),
  };
}
