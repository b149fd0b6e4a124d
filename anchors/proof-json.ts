// The proof's JSON: one canonical text per proof (fixed key order, lowercase hex, no spaces), and a
// strict decoder: every field required (blockHeader optional), no unknown field, every failure a
// KALIMA_ERR_PROOF_MALFORMED naming the field. Two redundant fields, anchorTxid and
// bitcoinBlockHash (display byte order, as RPC and explorers show them), are for people and are
// checked against the bytes they summarise.
import { kalimaError } from '../src/errors.ts';
import { toHex } from '../src/ledger/hash.ts';
import { displayHex, headerHashHex } from '../chains/bitcoin/block.ts';
import { type AnchorProof, PROOF_VERSION, type ShapedProof, checkProofShape } from './proof.ts';

export const PROOF_FORMAT = 'kalima-anchor-proof';
/** Far above any real proof (about 3 KB); a bound on what is parsed. */
export const PROOF_JSON_BYTES_MAX = 65_536;

const FIELDS = [
  'format', 'version', 'network', 'chain', 'height', 'blockHash', 'blockHeader', 'mmrPath', 'tipHeader', 'aggregationIndex',
  'aggregationLeafCount', 'aggregationPath', 'anchorTx', 'anchorTxid', 'bitcoinTxIndex', 'bitcoinMerkleBranch', 'bitcoinHeader',
  'bitcoinBlockHash', 'bitcoinHeight',
] as const;

export function encodeProofJson(proof: AnchorProof): string {
  const shaped = checkProofShape(proof);
  const json: Record<string, unknown> = {
    format: PROOF_FORMAT,
    version: proof.version,
    network: proof.network,
    chain: proof.chain,
    height: proof.height,
    blockHash: toHex(proof.blockHash),
    ...(proof.blockHeader === undefined ? {} : { blockHeader: toHex(proof.blockHeader) }),
    mmrPath: proof.mmrPath.map(toHex),
    tipHeader: toHex(proof.tipHeader),
    aggregationIndex: proof.aggregationIndex,
    aggregationLeafCount: proof.aggregationLeafCount,
    aggregationPath: proof.aggregationPath.map(toHex),
    anchorTx: toHex(proof.anchorTx),
    anchorTxid: displayHex(shaped.commitment.txid),
    bitcoinTxIndex: proof.bitcoinTxIndex,
    bitcoinMerkleBranch: proof.bitcoinMerkleBranch.map(toHex),
    bitcoinHeader: toHex(proof.bitcoinHeader),
    bitcoinBlockHash: headerHashHex(proof.bitcoinHeader),
    bitcoinHeight: proof.bitcoinHeight,
  };
  return JSON.stringify(json);
}

function malformed(field: string, reason: string) {
  return kalimaError('KALIMA_ERR_PROOF_MALFORMED', { field, reason });
}

const LOWER_HEX = /^(?:[0-9a-f]{2})*$/;

function hexField(value: unknown, field: string): Uint8Array {
  if (typeof value !== 'string' || !LOWER_HEX.test(value)) throw malformed(field, 'expected lowercase hex of whole bytes');
  return new Uint8Array(Buffer.from(value, 'hex'));
}

function hexList(value: unknown, field: string): Uint8Array[] {
  if (!Array.isArray(value)) throw malformed(field, 'expected an array of hex strings');
  return value.map((item, position) => hexField(item, `${field}[${position}]`));
}

function integer(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw malformed(field, 'expected a whole number');
  return value;
}

function text(value: unknown, field: string): string {
  if (typeof value !== 'string') throw malformed(field, 'expected a string');
  return value;
}

/** Decodes and shape-checks a proof; anything else is KALIMA_ERR_PROOF_MALFORMED. */
export function decodeProofJson(json: string): ShapedProof {
  if (json.length > PROOF_JSON_BYTES_MAX) throw malformed('(document)', `longer than ${PROOF_JSON_BYTES_MAX} characters`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    throw malformed('(document)', `not JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw malformed('(document)', 'expected a JSON object');
  const record = parsed as Record<string, unknown>;
  for (const key of Object.keys(record)) if (!(FIELDS as readonly string[]).includes(key)) throw malformed(key, 'unknown field');
  for (const key of FIELDS) if (key !== 'blockHeader' && !(key in record)) throw malformed(key, 'missing');
  if (record.format !== PROOF_FORMAT) throw malformed('format', `expected "${PROOF_FORMAT}"`);
  if (record.version !== PROOF_VERSION) throw malformed('version', `only version ${PROOF_VERSION} is known`);
  const proof = {
    version: PROOF_VERSION,
    network: text(record.network, 'network'),
    chain: text(record.chain, 'chain'),
    height: integer(record.height, 'height'),
    blockHash: hexField(record.blockHash, 'blockHash'),
    ...(record.blockHeader === undefined ? {} : { blockHeader: hexField(record.blockHeader, 'blockHeader') }),
    mmrPath: hexList(record.mmrPath, 'mmrPath'),
    tipHeader: hexField(record.tipHeader, 'tipHeader'),
    aggregationIndex: integer(record.aggregationIndex, 'aggregationIndex'),
    aggregationLeafCount: integer(record.aggregationLeafCount, 'aggregationLeafCount'),
    aggregationPath: hexList(record.aggregationPath, 'aggregationPath'),
    anchorTx: hexField(record.anchorTx, 'anchorTx'),
    bitcoinTxIndex: integer(record.bitcoinTxIndex, 'bitcoinTxIndex'),
    bitcoinMerkleBranch: hexList(record.bitcoinMerkleBranch, 'bitcoinMerkleBranch'),
    bitcoinHeader: hexField(record.bitcoinHeader, 'bitcoinHeader'),
    bitcoinHeight: integer(record.bitcoinHeight, 'bitcoinHeight'),
  } as AnchorProof;
  const shaped = checkProofShape(proof);
  if (record.anchorTxid !== displayHex(shaped.commitment.txid)) throw malformed('anchorTxid', 'is not the txid of anchorTx');
  if (record.bitcoinBlockHash !== headerHashHex(proof.bitcoinHeader)) throw malformed('bitcoinBlockHash', 'is not the hash of bitcoinHeader');
  return shaped;
}
