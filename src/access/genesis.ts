// The genesis file names the chain, its admin keys, its master nodes' keys, its validation nodes' keys
// and its parameters. Its hash is the prevHash of block 1, so a data directory can never be opened
// under another genesis.
import { kalimaError } from '../errors.ts';
import { Writer } from '../ledger/codec.ts';
import { TAG, fromHex, taggedHash, toHex } from '../ledger/hash.ts';
import { checkChainName } from '../ledger/message.ts';
import { isValidPublicKey } from '../ledger/signature.ts';

/** Operational defaults carried by the genesis file; they are not part of the genesis hash. */
export interface ChainParams {
  /** How long the leader waits for more messages before it closes a block that is not full. */
  blockDelayMs: number;
  /**
   * A validation node reports the leader when one of its blocks reaches it this long after the
   * block's own time, over a link that was alive meanwhile.
   */
  validationLateMs: number;
  /** A leader reported by a majority of the validation nodes gives up leading and may not stand again until this many more terms have begun. */
  leaderBarTerms: number;
}

export const DEFAULT_PARAMS: ChainParams = { blockDelayMs: 2, validationLateMs: 5_000, leaderBarTerms: 3 };

export interface Genesis {
  chain: string;
  timeMs: number;
  /** x-only public keys of the admins. */
  admins: Uint8Array[];
  /** x-only public keys of the master nodes; the single-node chain has one. */
  masters: Uint8Array[];
  /** x-only public keys of the validation nodes: non-voting followers that check every block and sign a validation. */
  validators: Uint8Array[];
  params: ChainParams;
}

export interface GenesisJson {
  chain: string;
  time: string;
  admins: string[];
  masters: string[];
  validators?: string[];
  params?: Partial<ChainParams>;
}

function invalid(reason: string, details: Record<string, unknown> = {}): never {
  throw kalimaError('KALIMA_ERR_CONFIG_INVALID', { file: 'genesis', reason, ...details });
}

function parseKeys(values: unknown, field: string, mayBeEmpty = false): Uint8Array[] {
  if (!Array.isArray(values) || (values.length === 0 && !mayBeEmpty)) invalid(`${field} must be a ${mayBeEmpty ? '' : 'non-empty '}list of 64-hex-digit x-only public keys`);
  return values.map((value, index) => {
    const key = typeof value === 'string' ? fromHex(value) : undefined;
    if (key === undefined || !isValidPublicKey(key)) invalid(`${field}[${index}] is not an x-only public key`, { value });
    return key;
  });
}

export function parseGenesis(json: unknown): Genesis {
  if (typeof json !== 'object' || json === null) invalid('the genesis file must hold a JSON object');
  const raw = json as Record<string, unknown>;
  if (typeof raw.chain !== 'string') invalid('chain must be a string');
  try {
    checkChainName(raw.chain);
  } catch {
    invalid('chain must match ^[a-z0-9][a-z0-9._-]*$, at most 64 bytes', { chain: raw.chain });
  }
  const timeMs = typeof raw.time === 'string' ? Date.parse(raw.time) : Number.NaN;
  if (!Number.isSafeInteger(timeMs) || timeMs < 0) invalid('time must be an ISO 8601 date', { time: raw.time });
  const params = { ...DEFAULT_PARAMS, ...((raw.params as Partial<ChainParams> | undefined) ?? {}) };
  if (!Number.isSafeInteger(params.blockDelayMs) || params.blockDelayMs < 0 || params.blockDelayMs > 10_000) {
    invalid('params.blockDelayMs must be a whole number of milliseconds from 0 to 10000');
  }
  if (!Number.isSafeInteger(params.validationLateMs) || params.validationLateMs < 1 || params.validationLateMs > 600_000) {
    invalid('params.validationLateMs must be a whole number of milliseconds from 1 to 600000');
  }
  if (!Number.isSafeInteger(params.leaderBarTerms) || params.leaderBarTerms < 0 || params.leaderBarTerms > 1_000) {
    invalid('params.leaderBarTerms must be a whole number of terms from 0 to 1000');
  }
  const masters = parseKeys(raw.masters, 'masters');
  const validators = raw.validators === undefined ? [] : parseKeys(raw.validators, 'validators', true);
  const all = [...masters, ...validators].map(toHex);
  const repeated = all.find((key, index) => all.indexOf(key) !== index);
  if (repeated !== undefined) invalid('a key is listed twice among the masters and validators', { key: repeated });
  return { chain: raw.chain, timeMs, admins: parseKeys(raw.admins, 'admins'), masters, validators, params };
}

export function genesisToJson(genesis: Genesis): GenesisJson {
  return {
    chain: genesis.chain,
    time: new Date(genesis.timeMs).toISOString(),
    admins: genesis.admins.map(toHex),
    masters: genesis.masters.map(toHex),
    ...(genesis.validators.length > 0 ? { validators: genesis.validators.map(toHex) } : {}),
    params: genesis.params,
  };
}

export function genesisHash(genesis: Genesis): Uint8Array {
  const writer = new Writer().u8(1).text(genesis.chain).varint(genesis.timeMs);
  for (const list of [genesis.admins, genesis.masters]) {
    writer.varint(list.length);
    for (const key of list) writer.fixed(key, 32);
  }
  // Only a chain with validation nodes hashes their list (so chains made without them keep their hash).
  if (genesis.validators.length > 0) {
    writer.varint(genesis.validators.length);
    for (const key of genesis.validators) writer.fixed(key, 32);
  }
  return taggedHash(TAG.genesis, writer.finish());
}
