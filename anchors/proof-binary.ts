// The proof as bytes, the `.kproof` file: the pieces of the JSON (anchors/proof-json.ts) in a fixed
// order, canonical (one encoding per proof: src/ledger/codec.ts, minimal varints, no trailing
// bytes) and minimal: what the proof's own operations give back is not carried.
//
//   magic                 "KLMPRF" (4b 4c 4d 50 52 46)
//   version               u8: 1 (it carries an AnchorProof of PROOF_VERSION 1)
//   flags                 u8: bit 0 = blockHeader follows; the other bits are 0
//   network               u8: 0 mainnet, 1 testnet, 2 signet, 3 regtest, 4 bcoin-regtest
//   chain                 varint length, UTF-8, at most 64 bytes
//   height                varint
//   blockHash             32
//   blockHeader           varint length, encodeHeader bytes; only with flag bit 0
//   mmrPath               varint count, 32 each
//   tipHeader             varint length, encodeHeader of the tip without its last field, mmrRoot
//   tipMmrRoot            32, only when the block is the tip (height = the tip header's height):
//                         its MMR path is then empty, and nothing recomputes the root
//   aggregationIndex      varint
//   aggregationLeafCount  varint
//   aggregationPath       varint count, 32 each
//   anchorTx              varint length, the stripped (non-witness) serialization
//   bitcoinTxIndex        varint
//   bitcoinMerkleBranch   varint count, 32 each
//   bitcoinHeader         48: the 80-byte header without its Merkle root (bytes 0-36, then 68-80)
//   bitcoinHeight         varint
//
// Hashes are raw, in the byte order of the JSON's hex (Bitcoin's internal order). The anchor
// transaction is stripped: the txid is SHA-256d of the serialization without the witness (BIP
// 141), so the witness commits to nothing a verifier checks (a changed signature leaves the JSON
// proof valid too); it is 110 of a P2WPKH anchor's 235 bytes. The JSON's anchorTxid and
// bitcoinBlockHash are summaries for people and are left out as well.
//
// Decoding puts the two roots back from the operations: the MMR path from blockHash ends in the
// tip's mmrRoot, the whole chain of operations in the Bitcoin header's Merkle root. The result is
// the AnchorProof a JSON file of the same pieces decodes to, shape-checked by the same
// checkProofShape and verified by the same verifyProof. A recomputed root makes the comparison it
// stood in pass by construction and moves the check to the next commitment: the tip's hash to the
// aggregation, the header's hash to its proof of work and the header source's chain. A forger gets
// nothing the JSON would not give them: they could compute those roots for a JSON proof as well.
import { isKalimaError, kalimaError } from '../src/errors.ts';
import { decodeHeader } from '../src/ledger/block.ts';
import { Reader, Writer, utf8ByteLength } from '../src/ledger/codec.ts';
import { bytesEqual, concatBytes } from '../src/ledger/hash.ts';
import { CHAIN_BYTES_MAX } from '../src/ledger/limits.ts';
import { BLOCK_HEADER_BYTES, decodeBitcoinHeader } from '../chains/bitcoin/block.ts';
import type { BitcoinNetworkName } from '../chains/bitcoin/network.ts';
import { evaluateOps } from './ops.ts';
import { type AnchorProof, MERKLE_BRANCH_MAX, MMR_ROOT_BYTES, PROOF_VERSION, type ShapedProof, checkProofShape, proofStages } from './proof.ts';

export const PROOF_BINARY_MAGIC = new TextEncoder().encode('KLMPRF');
export const PROOF_BINARY_VERSION = 1;
/** Half the JSON's bound (hex doubles every byte); a realistic proof is about 1.5 KB. */
export const PROOF_BINARY_BYTES_MAX = 32_768;
export const PROOF_BINARY_EXTENSION = '.kproof';

const FLAG_BLOCK_HEADER = 0x01;
/** A header is about 260 bytes with a 64-byte chain name (src/ledger/block.ts). */
const KALIMA_HEADER_BYTES_MAX = 512;
/** An MMR of up to 2^53 leaves: at most 52 siblings, one bagged right peak, 52 left peaks. */
const MMR_PATH_MAX = 128;
/** Up to 2^32 - 1 aggregated tips: a path of at most 32. */
const AGGREGATION_PATH_MAX = 32;
const HASH_BYTES = 32;
/** Where the Merkle root sits in the 80-byte header. */
const MERKLE_ROOT_START = 36;
const MERKLE_ROOT_END = 68;

// Codes are fixed here, not derived from BITCOIN_NETWORK_NAMES's order: a network added there must not renumber these.
const NETWORK_CODES: Record<BitcoinNetworkName, number> = { mainnet: 0, testnet: 1, signet: 2, regtest: 3, 'bcoin-regtest': 4 };
const NETWORK_BY_CODE = new Map(Object.entries(NETWORK_CODES).map(([name, code]) => [code, name as BitcoinNetworkName]));

function malformed(field: string, reason: string, extra: Record<string, unknown> = {}) {
  return kalimaError('KALIMA_ERR_PROOF_MALFORMED', { field, reason, ...extra });
}

/** Whether `bytes` start as a binary proof does (the magic, or as much of it as there is). */
export function isProofBinary(bytes: Uint8Array): boolean {
  const present = bytes.subarray(0, PROOF_BINARY_MAGIC.length);
  return present.length > 0 && bytesEqual(present, PROOF_BINARY_MAGIC.subarray(0, present.length));
}

/** The two roots the operations give: the MMR path's (undefined when the block is the tip) and the Merkle root. */
function recomputedRoots(shaped: ShapedProof): { mmrRoot: Uint8Array | undefined; merkleRoot: Uint8Array } {
  let digest = shaped.proof.blockHash;
  let mmrRoot: Uint8Array | undefined;
  for (const stage of proofStages(shaped)) {
    digest = evaluateOps(digest, stage.ops);
    if (stage.name === 'mmr' && shaped.tip.height > shaped.proof.height) mmrRoot = digest;
  }
  return { mmrRoot, merkleRoot: digest };
}

/**
 * The canonical binary form. A proof whose tip mmrRoot or Bitcoin Merkle root is not what its
 * operations give cannot be carried (the decoder would recompute another one): KALIMA_ERR_PROOF_INVALID.
 */
export function encodeProofBinary(proof: AnchorProof): Uint8Array {
  const shaped = checkProofShape(proof);
  const { tip, commitment } = shaped;
  if (utf8ByteLength(proof.chain) > CHAIN_BYTES_MAX) throw malformed('chain', `at most ${CHAIN_BYTES_MAX} bytes of UTF-8`);
  const roots = recomputedRoots(shaped);
  if (roots.mmrRoot !== undefined && !bytesEqual(roots.mmrRoot, tip.mmrRoot)) {
    throw kalimaError('KALIMA_ERR_PROOF_INVALID', { step: 'mmr', reason: 'the MMR path does not lead to the tip header\'s mmrRoot, which the binary form recomputes' });
  }
  if (!bytesEqual(roots.merkleRoot, decodeBitcoinHeader(proof.bitcoinHeader).merkleRoot)) {
    throw kalimaError('KALIMA_ERR_PROOF_INVALID', { step: 'bitcoin-merkle', reason: 'the operations do not lead to the Bitcoin header\'s Merkle root, which the binary form recomputes' });
  }
  const writer = new Writer(2048)
    .raw(PROOF_BINARY_MAGIC)
    .u8(PROOF_BINARY_VERSION)
    .u8(proof.blockHeader === undefined ? 0 : FLAG_BLOCK_HEADER)
    .u8(NETWORK_CODES[proof.network])
    .text(proof.chain)
    .varint(proof.height)
    .fixed(proof.blockHash, HASH_BYTES);
  if (proof.blockHeader !== undefined) writer.bytes(proof.blockHeader);
  writeHashes(writer, proof.mmrPath);
  writer.bytes(proof.tipHeader.subarray(0, proof.tipHeader.length - MMR_ROOT_BYTES));
  if (roots.mmrRoot === undefined) writer.fixed(tip.mmrRoot, HASH_BYTES);
  writer.varint(proof.aggregationIndex).varint(proof.aggregationLeafCount);
  writeHashes(writer, proof.aggregationPath);
  writer.bytes(commitment.stripped).varint(proof.bitcoinTxIndex);
  writeHashes(writer, proof.bitcoinMerkleBranch);
  const bytes = writer
    .raw(proof.bitcoinHeader.subarray(0, MERKLE_ROOT_START))
    .raw(proof.bitcoinHeader.subarray(MERKLE_ROOT_END))
    .varint(proof.bitcoinHeight)
    .finish()
    .slice();
  // Only an anchor transaction of hundreds of inputs gets here; the decoder would refuse it.
  if (bytes.length > PROOF_BINARY_BYTES_MAX) throw malformed('anchorTx', `the proof would be ${bytes.length} bytes, above ${PROOF_BINARY_BYTES_MAX}`);
  return bytes;
}

function writeHashes(writer: Writer, hashes: readonly Uint8Array[]): void {
  writer.varint(hashes.length);
  for (const hash of hashes) writer.fixed(hash, HASH_BYTES);
}

/** A codec error while reading `field`, as the proof's: truncation and trailing bytes coded, the rest malformed. */
function read<T>(field: string, reading: () => T): T {
  try {
    return reading();
  } catch (error) {
    if (!isKalimaError(error) || !error.code.startsWith('KALIMA_ERR_CODEC_')) throw error;
    if (error.code === 'KALIMA_ERR_CODEC_TRUNCATED') throw kalimaError('KALIMA_ERR_PROOF_TRUNCATED', { field, ...error.details });
    if (error.code === 'KALIMA_ERR_CODEC_TRAILING_BYTES') throw kalimaError('KALIMA_ERR_PROOF_TRAILING_BYTES', { ...error.details });
    throw malformed(field, `${error.message} (${error.code})`, error.details);
  }
}

function readHashes(reader: Reader, field: string, max: number): Uint8Array[] {
  const count = read(field, () => reader.varint());
  if (count > max) throw malformed(field, `at most ${max} hashes`, { count });
  return Array.from({ length: count }, (_, position) => read(`${field}[${position}]`, () => reader.fixed(HASH_BYTES)));
}

/** The tip's height, from its header's encoding without mmrRoot (the last field, fixed-width). */
function tipHeightOf(prefix: Uint8Array): number {
  try {
    return decodeHeader(concatBytes(prefix, new Uint8Array(MMR_ROOT_BYTES))).height;
  } catch (error) {
    if (!isKalimaError(error)) throw error;
    throw malformed('tipHeader', `the header does not decode: ${error.code}`);
  }
}

/**
 * Decodes, puts the recomputed roots back and shape-checks (checkProofShape, as decodeProofJson
 * does). Bad values are KALIMA_ERR_PROOF_MALFORMED {field, reason}; a proof cut short
 * KALIMA_ERR_PROOF_TRUNCATED; bytes after its end KALIMA_ERR_PROOF_TRAILING_BYTES.
 */
export function decodeProofBinary(bytes: Uint8Array): ShapedProof {
  if (bytes.length > PROOF_BINARY_BYTES_MAX) throw malformed('(document)', `longer than ${PROOF_BINARY_BYTES_MAX} bytes`);
  // Bytes that start as the magic does but end before it are cut short (truncated), like any other field.
  const present = bytes.subarray(0, PROOF_BINARY_MAGIC.length);
  if (!bytesEqual(present, PROOF_BINARY_MAGIC.subarray(0, present.length))) throw malformed('magic', 'not a binary anchor proof: it does not start with "KLMPRF"');
  // A copy, and a plain Uint8Array even when the input is a Buffer.
  const reader = new Reader(new Uint8Array(bytes));
  read('magic', () => reader.fixed(PROOF_BINARY_MAGIC.length));
  const version = read('version', () => reader.u8());
  if (version !== PROOF_BINARY_VERSION) throw malformed('version', `only version ${PROOF_BINARY_VERSION} is known`, { version });
  const flags = read('flags', () => reader.u8());
  if ((flags & ~FLAG_BLOCK_HEADER) !== 0) throw malformed('flags', 'only bit 0 (blockHeader) is defined', { flags });
  const networkCode = read('network', () => reader.u8());
  const network = NETWORK_BY_CODE.get(networkCode);
  if (network === undefined) throw malformed('network', 'not a known Bitcoin network code', { code: networkCode });
  const chain = read('chain', () => reader.text(CHAIN_BYTES_MAX));
  const height = read('height', () => reader.varint());
  const blockHash = read('blockHash', () => reader.fixed(HASH_BYTES));
  const blockHeader = (flags & FLAG_BLOCK_HEADER) === 0 ? undefined : read('blockHeader', () => reader.bytes(KALIMA_HEADER_BYTES_MAX));
  const mmrPath = readHashes(reader, 'mmrPath', MMR_PATH_MAX);
  const tipPrefix = read('tipHeader', () => reader.bytes(KALIMA_HEADER_BYTES_MAX - MMR_ROOT_BYTES));
  const blockIsTip = tipHeightOf(tipPrefix) === height;
  // Zeros stand in for a recomputed mmrRoot until the operations give it: no stage reads it.
  const tipMmrRoot = blockIsTip ? read('tipHeader', () => reader.fixed(MMR_ROOT_BYTES)) : new Uint8Array(MMR_ROOT_BYTES);
  const aggregationIndex = read('aggregationIndex', () => reader.varint());
  const aggregationLeafCount = read('aggregationLeafCount', () => reader.varint());
  const aggregationPath = readHashes(reader, 'aggregationPath', AGGREGATION_PATH_MAX);
  const anchorTx = read('anchorTx', () => reader.bytes(PROOF_BINARY_BYTES_MAX));
  const bitcoinTxIndex = read('bitcoinTxIndex', () => reader.varint());
  const bitcoinMerkleBranch = readHashes(reader, 'bitcoinMerkleBranch', MERKLE_BRANCH_MAX);
  const headerBytes = read('bitcoinHeader', () => reader.fixed(BLOCK_HEADER_BYTES - HASH_BYTES));
  const bitcoinHeight = read('bitcoinHeight', () => reader.varint());
  read('(end)', () => reader.end());

  const bitcoinHeader = concatBytes(headerBytes.subarray(0, MERKLE_ROOT_START), new Uint8Array(HASH_BYTES), headerBytes.subarray(MERKLE_ROOT_START));
  const pieces: AnchorProof = {
    version: PROOF_VERSION, network, chain, height, blockHash, ...(blockHeader === undefined ? {} : { blockHeader }), mmrPath,
    tipHeader: concatBytes(tipPrefix, tipMmrRoot), aggregationIndex, aggregationLeafCount, aggregationPath, anchorTx, bitcoinTxIndex,
    bitcoinMerkleBranch, bitcoinHeader, bitcoinHeight,
  };
  const placeholder = checkProofShape(pieces);
  if (!bytesEqual(placeholder.commitment.stripped, anchorTx)) throw malformed('anchorTx', 'not a stripped transaction in its canonical serialization (no witness, minimal sizes)');
  const roots = recomputedRoots(placeholder);
  if (roots.mmrRoot !== undefined) pieces.tipHeader = concatBytes(tipPrefix, roots.mmrRoot);
  bitcoinHeader.set(roots.merkleRoot, MERKLE_ROOT_START);
  // `placeholder.proof` is `pieces`, now complete; of what the shape check decoded, only the tip's
  // mmrRoot changes (the commitment and the block's header do not depend on either root).
  return roots.mmrRoot === undefined ? placeholder : { ...placeholder, tip: { ...placeholder.tip, mmrRoot: roots.mmrRoot } };
}
