// The anchor wallet's keystore: one BIP-32 seed in a JSON file (keys/anchor-wallet.json under the
// node's directory), made on first use from injected randomness, written once with mode 0600, and
// bound to its Bitcoin network. Addresses: BIP-84 (P2WPKH, m/84'/coin'/0'/change/index) or BIP-86
// (P2TR key path, m/86'/coin'/0'/change/index, the key tweaked with an empty script tree).
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crypto as bitcoinCrypto, payments } from 'bitcoinjs-lib';
import type { BIP32Interface } from 'bip32';
import { kalimaError } from '../../src/errors.ts';
import { bytesEqual, fromHex, toHex } from '../../src/ledger/hash.ts';
import type { Rng } from '../../src/ports.ts';
import { bip32, ecc } from './ecc.ts';
import type { BitcoinNetwork } from './network.ts';
import type { InputSigner } from './tx.ts';

export type AddressKind = 'p2wpkh' | 'p2tr';

/** Where a key sits in the wallet: the receive (0) or change (1) chain, and the index on it. */
export interface Derivation {
  kind: AddressKind;
  change: 0 | 1;
  index: number;
}

export interface WalletAddress {
  derivation: Derivation;
  path: string;
  address: string;
  /** The output script (scriptPubKey) paying this address. */
  script: Uint8Array;
}

export interface AnchorWallet {
  network: BitcoinNetwork;
  file: string;
  /** BIP-340 auxiliary randomness for Taproot signatures. */
  rng: Rng;
  root: BIP32Interface;
}

const FILE_KIND = 'kalima-anchor-wallet';
const FILE_VERSION = 1;
const SEED_BYTES = 32;
/** BIP-32 takes seeds of 128 to 512 bits; a file may hold any of them (a BIP-39 seed is 512). */
const SEED_BYTES_MIN = 16;
const SEED_BYTES_MAX = 64;
/** BIP-32: indexes at and above 2^31 are hardened; these paths use unhardened indexes only. */
const INDEX_MAX = 0x7fffffff;
const PURPOSE: Record<AddressKind, number> = { p2wpkh: 84, p2tr: 86 };

interface WalletFile { kind: typeof FILE_KIND; version: number; network: string; seedHex: string }

/** Opens the wallet in `file`, creating it (and its directory) on first use. */
export async function openAnchorWallet(file: string, network: BitcoinNetwork, rng: Rng): Promise<AnchorWallet> {
  let seed = await readWalletFile(file, network);
  if (seed === undefined) seed = await createWalletFile(file, network, rng);
  return { network, file, rng, root: bip32.fromSeed(seed, network.bitcoinjs) };
}

async function readWalletFile(file: string, network: BitcoinNetwork): Promise<Uint8Array | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw kalimaError('KALIMA_ERR_BITCOIN_KEYSTORE_CORRUPT', { file, cause: (error as NodeJS.ErrnoException).code ?? String(error) });
  }
  let json: Partial<WalletFile>;
  try {
    json = JSON.parse(text) as Partial<WalletFile>;
  } catch {
    throw kalimaError('KALIMA_ERR_BITCOIN_KEYSTORE_CORRUPT', { file, cause: 'not JSON' });
  }
  if (json.kind !== FILE_KIND || json.version !== FILE_VERSION) throw kalimaError('KALIMA_ERR_BITCOIN_KEYSTORE_CORRUPT', { file, cause: `not a ${FILE_KIND} file of version ${FILE_VERSION}` });
  if (json.network !== network.name) throw kalimaError('KALIMA_ERR_BITCOIN_KEYSTORE_WRONG_NETWORK', { file, expected: network.name, found: json.network });
  const seed = typeof json.seedHex === 'string' ? fromHex(json.seedHex) : undefined;
  if (seed === undefined || seed.length < SEED_BYTES_MIN || seed.length > SEED_BYTES_MAX) {
    throw kalimaError('KALIMA_ERR_BITCOIN_KEYSTORE_CORRUPT', { file, cause: `seedHex must be ${SEED_BYTES_MIN} to ${SEED_BYTES_MAX} bytes of hex` });
  }
  return seed;
}

/**
 * Writes a temporary file (0600, synced), then links it to `file`: the link fails if another
 * process made the wallet meanwhile, and that wallet wins. A rename would replace it.
 */
async function createWalletFile(file: string, network: BitcoinNetwork, rng: Rng): Promise<Uint8Array> {
  const seed = rng.bytes(SEED_BYTES);
  if (seed.length !== SEED_BYTES) throw new Error(`assertion failed: keys: the rng gave ${seed.length} bytes, not ${SEED_BYTES}`);
  const contents: WalletFile = { kind: FILE_KIND, version: FILE_VERSION, network: network.name, seedHex: toHex(seed) };
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${toHex(rng.bytes(8))}.tmp`;
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(contents, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const winner = await readWalletFile(file, network);
    if (winner === undefined) throw error;
    return winner;
  } finally {
    await unlink(temporary);
  }
  await syncDirectory(dirname(file));
  return seed;
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function derivationPath(network: BitcoinNetwork, derivation: Derivation): string {
  const { kind, change, index } = derivation;
  if (!Number.isInteger(index) || index < 0 || index > INDEX_MAX) throw new Error(`assertion failed: keys: derivation index ${index} is not in 0..2^31-1`);
  return `m/${PURPOSE[kind]}'/${network.coinType}'/0'/${change}/${index}`;
}

function keyAt(wallet: AnchorWallet, derivation: Derivation): BIP32Interface {
  return wallet.root.derivePath(derivationPath(wallet.network, derivation));
}

/**
 * BIP-86 / BIP-341: the output key is P + int(hashTapTweak(x(P)))·G for the internal key P with
 * no script tree; its secret is d (negated first when P has an odd y) plus the tweak.
 */
export function tweakTaprootSecret(internalSecret: Uint8Array): { outputKey: Uint8Array; tweakedSecret: Uint8Array } {
  const internalPoint = ecc.pointFromScalar(internalSecret, true);
  if (internalPoint === null) throw new Error('assertion failed: keys: not a secret key');
  const internalKey = internalPoint.subarray(1, 33);
  const tweak = bitcoinCrypto.taggedHash('TapTweak', internalKey);
  const secret = internalPoint[0] === 0x03 ? ecc.privateNegate(internalSecret) : internalSecret;
  const tweakedSecret = ecc.privateAdd(secret, tweak);
  const tweaked = ecc.xOnlyPointAddTweak(internalKey, tweak);
  if (tweakedSecret === null || tweaked === null) throw new Error('assertion failed: keys: the Taproot tweak gave the point at infinity');
  const outputKey = tweaked.xOnlyPubkey;
  if (!bytesEqual(ecc.xOnlyPointFromScalar(tweakedSecret), outputKey)) throw new Error('assertion failed: keys: the tweaked secret does not match the output key');
  return { outputKey, tweakedSecret };
}

export function walletAddress(wallet: AnchorWallet, derivation: Derivation): WalletAddress {
  const node = keyAt(wallet, derivation);
  const network = wallet.network.bitcoinjs;
  const payment = derivation.kind === 'p2wpkh'
    ? payments.p2wpkh({ pubkey: node.publicKey, network })
    : payments.p2tr({ pubkey: tweakTaprootSecret(node.privateKey!).outputKey, network });
  return { derivation, path: derivationPath(wallet.network, derivation), address: payment.address!, script: payment.output! };
}

export function receiveAddress(wallet: AnchorWallet, kind: AddressKind, index: number): WalletAddress {
  return walletAddress(wallet, { kind, change: 0, index });
}

export function changeAddress(wallet: AnchorWallet, kind: AddressKind, index: number): WalletAddress {
  return walletAddress(wallet, { kind, change: 1, index });
}

/** Tries of extra entropy before a low-R signature; each try succeeds with probability 1/2. */
const LOW_R_TRIES_MAX = 256;

/**
 * An RFC 6979 signature whose r is below 2^255, as Bitcoin Core grinds them: its DER encoding is at
 * most 70 bytes, so the transaction's size (and fee) is known before signing. S is low already
 * (libsecp256k1 normalizes it, BIP-146's LOW_S).
 */
function signLowR(hash: Uint8Array, secret: Uint8Array): Uint8Array {
  const extraEntropy = new Uint8Array(32);
  for (let counter = 0; counter < LOW_R_TRIES_MAX; counter++) {
    // Core's counter goes into the first four bytes, little-endian; counter 0 is plain RFC 6979.
    new DataView(extraEntropy.buffer).setUint32(0, counter, true);
    const signature = counter === 0 ? ecc.sign(hash, secret) : ecc.sign(hash, secret, extraEntropy);
    if (signature[0]! < 0x80) return signature;
  }
  throw new Error('assertion failed: keys: no low-R signature in 256 tries');
}

/** The key that spends an output paying `walletAddress(wallet, derivation)`; each signature is verified before it is returned. */
export function signerFor(wallet: AnchorWallet, derivation: Derivation): InputSigner {
  const node = keyAt(wallet, derivation);
  if (derivation.kind === 'p2wpkh') {
    const publicKey = node.publicKey;
    return {
      kind: 'p2wpkh',
      publicKey,
      sign(hash) {
        const signature = signLowR(hash, node.privateKey!);
        if (!ecc.verify(hash, publicKey, signature, true)) throw new Error('assertion failed: keys: an ECDSA signature does not verify');
        return signature;
      },
    };
  }
  const { outputKey, tweakedSecret } = tweakTaprootSecret(node.privateKey!);
  return {
    kind: 'p2tr',
    publicKey: outputKey,
    sign(hash) {
      const signature = ecc.signSchnorr(hash, tweakedSecret, wallet.rng.bytes(32));
      if (!ecc.verifySchnorr(hash, outputKey, signature)) throw new Error('assertion failed: keys: a BIP-340 signature does not verify');
      return signature;
    },
  };
}
