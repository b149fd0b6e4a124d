// BOLT 8: Lightning's authenticated and encrypted transport, Noise_XK_secp256k1_ChaChaPoly_SHA256,
// written from the specification (lightning/bolts 08-transport.md) and checked against its test
// vectors. This file is pure: no sockets, no clock; the ephemeral key comes from the caller's Rng.
//
// The initiator knows the responder's static key in advance (nodes are pinned by the genesis file)
// and reveals its own only in act three, encrypted. Three acts of 50, 50 and 66 bytes, then each
// message travels as an encrypted 2-byte length (18 bytes with its tag) and an encrypted body. Each
// direction's key is rotated after 1,000 encryptions, through HKDF with that direction's chaining key.
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import { Point, getPublicKey, getSharedSecret } from '@noble/secp256k1';
import { kalimaError } from '../errors.ts';
import { concatBytes, sha256 } from '../ledger/hash.ts';
import type { Rng } from '../ports.ts';

const PROTOCOL_NAME = new TextEncoder().encode('Noise_XK_secp256k1_ChaChaPoly_SHA256');
const PROLOGUE = new TextEncoder().encode('lightning');
const VERSION = 0;
const TAG_BYTES = 16;
const PUBLIC_KEY_BYTES = 33;
export const ACT_ONE_BYTES = 1 + PUBLIC_KEY_BYTES + TAG_BYTES;
export const ACT_TWO_BYTES = ACT_ONE_BYTES;
export const ACT_THREE_BYTES = 1 + PUBLIC_KEY_BYTES + TAG_BYTES + TAG_BYTES;
/** The encrypted length prefix of every message, with its tag. */
export const LENGTH_HEADER_BYTES = 2 + TAG_BYTES;
export const MESSAGE_BYTES_MAX = 65_535;
const KEY_ROTATION_INTERVAL = 1000;
const EMPTY = new Uint8Array(0);

export interface StaticKey {
  secretKey: Uint8Array;
  /** Compressed (33 bytes). */
  publicKey: Uint8Array;
}

export function staticKeyFromSecret(secretKey: Uint8Array): StaticKey {
  return { secretKey, publicKey: getPublicKey(secretKey, true) };
}

type HandshakeAct = 'act1' | 'act2' | 'act3';
type HandshakeFault = 'short read' | 'bad version' | 'bad public key' | 'bad tag' | 'bad ciphertext';

function handshakeFailed(act: HandshakeAct, reason: HandshakeFault, extra: Record<string, unknown> = {}): Error {
  return kalimaError('KALIMA_ERR_NET_HANDSHAKE_FAILED', { act, reason, ...extra });
}

/** 96-bit nonce: 32 zero bits, then the counter as a 64-bit little-endian integer. */
function nonceBytes(counter: number): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeUInt32LE(counter >>> 0, 4);
  nonce.writeUInt32LE(Math.floor(counter / 2 ** 32), 8);
  return nonce;
}

function encryptWithAd(key: Uint8Array, counter: number, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const cipher = createCipheriv('chacha20-poly1305', key, nonceBytes(counter), { authTagLength: TAG_BYTES });
  cipher.setAAD(ad, { plaintextLength: plaintext.length });
  const body = cipher.update(plaintext);
  cipher.final();
  return concatBytes(body, cipher.getAuthTag());
}

/** The plaintext, or undefined when the tag does not verify. */
function decryptWithAd(key: Uint8Array, counter: number, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | undefined {
  if (ciphertext.length < TAG_BYTES) return undefined;
  const bodyLength = ciphertext.length - TAG_BYTES;
  const decipher = createDecipheriv('chacha20-poly1305', key, nonceBytes(counter), { authTagLength: TAG_BYTES });
  decipher.setAAD(ad, { plaintextLength: bodyLength });
  decipher.setAuthTag(ciphertext.subarray(bodyLength));
  const body = decipher.update(ciphertext.subarray(0, bodyLength));
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return body;
}

/** HKDF-SHA256 with the chaining key as salt and no info, split into two 32-byte keys. */
function hkdf2(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array): [Uint8Array, Uint8Array] {
  const output = new Uint8Array(hkdfSync('sha256', inputKeyMaterial, chainingKey, EMPTY, 64));
  return [output.slice(0, 32), output.slice(32)];
}

/** BOLT 8's ECDH: SHA-256 of the compressed shared point. */
function ecdh(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  return sha256(getSharedSecret(secretKey, publicKey, true));
}

function parsePublicKey(bytes: Uint8Array, act: HandshakeAct): Uint8Array {
  try {
    // Checks the encoding and that the point is on the curve.
    Point.fromBytes(bytes);
  } catch {
    throw handshakeFailed(act, 'bad public key');
  }
  return bytes;
}

/** The handshake's running state: the chaining key and the handshake hash. */
class SymmetricState {
  chainingKey: Uint8Array;
  hash: Uint8Array;

  constructor(responderStatic: Uint8Array) {
    this.hash = sha256(PROTOCOL_NAME);
    this.chainingKey = this.hash;
    this.mixHash(PROLOGUE);
    this.mixHash(responderStatic);
  }

  mixHash(data: Uint8Array): void {
    this.hash = sha256(this.hash, data);
  }

  /** Mixes a shared secret into the chaining key; returns the temporary key it yields. */
  mixKey(sharedSecret: Uint8Array): Uint8Array {
    const [chainingKey, temporaryKey] = hkdf2(this.chainingKey, sharedSecret);
    this.chainingKey = chainingKey;
    return temporaryKey;
  }
}

function readAct(act: HandshakeAct, bytes: Uint8Array, length: number): Uint8Array {
  if (bytes.length < length) throw handshakeFailed(act, 'short read', { bytes: bytes.length, expected: length });
  if (bytes.length > length) throw kalimaError('KALIMA_ERR_NET_HANDSHAKE_FAILED', { act, reason: 'too many bytes', bytes: bytes.length, expected: length });
  if (bytes[0] !== VERSION) throw handshakeFailed(act, 'bad version', { version: bytes[0] });
  return bytes;
}

/** The initiator's side: act one, then act two in, act three out. */
export class NoiseInitiator {
  private readonly state: SymmetricState;
  private readonly ephemeral: StaticKey;
  private temporaryKey2: Uint8Array | undefined;
  private stage: 'act1' | 'act2' | 'done' = 'act1';

  /** `ephemeralSecret` is for the specification's test vectors; otherwise the key comes from `rng`. */
  constructor(private readonly local: StaticKey, private readonly remoteStatic: Uint8Array, rng: Rng, ephemeralSecret?: Uint8Array) {
    parsePublicKey(remoteStatic, 'act1');
    this.state = new SymmetricState(remoteStatic);
    this.ephemeral = staticKeyFromSecret(ephemeralSecret ?? randomSecretKey(rng));
  }

  actOne(): Uint8Array {
    if (this.stage !== 'act1') throw kalimaError('KALIMA_ERR_NET_HANDSHAKE_FAILED', { act: 'act1', reason: 'out of order' });
    this.stage = 'act2';
    this.state.mixHash(this.ephemeral.publicKey);
    const temporaryKey = this.state.mixKey(ecdh(this.ephemeral.secretKey, this.remoteStatic));
    const tag = encryptWithAd(temporaryKey, 0, this.state.hash, EMPTY);
    this.state.mixHash(tag);
    return concatBytes(Uint8Array.of(VERSION), this.ephemeral.publicKey, tag);
  }

  /** Reads act two and answers with act three; the transport is ready from then on. */
  actTwoThenThree(actTwo: Uint8Array): { actThree: Uint8Array; transport: NoiseTransport } {
    if (this.stage !== 'act2') throw kalimaError('KALIMA_ERR_NET_HANDSHAKE_FAILED', { act: 'act2', reason: 'out of order' });
    this.stage = 'done';
    readAct('act2', actTwo, ACT_TWO_BYTES);
    const remoteEphemeral = parsePublicKey(actTwo.subarray(1, 1 + PUBLIC_KEY_BYTES), 'act2');
    const tag = actTwo.subarray(1 + PUBLIC_KEY_BYTES);
    this.state.mixHash(remoteEphemeral);
    const temporaryKey2 = this.state.mixKey(ecdh(this.ephemeral.secretKey, remoteEphemeral));
    if (decryptWithAd(temporaryKey2, 0, this.state.hash, tag) === undefined) throw handshakeFailed('act2', 'bad tag');
    this.state.mixHash(tag);
    this.temporaryKey2 = temporaryKey2;

    const encryptedStatic = encryptWithAd(temporaryKey2, 1, this.state.hash, this.local.publicKey);
    this.state.mixHash(encryptedStatic);
    const temporaryKey3 = this.state.mixKey(ecdh(this.local.secretKey, remoteEphemeral));
    const finalTag = encryptWithAd(temporaryKey3, 0, this.state.hash, EMPTY);
    const [sendingKey, receivingKey] = hkdf2(this.state.chainingKey, EMPTY);
    return {
      actThree: concatBytes(Uint8Array.of(VERSION), encryptedStatic, finalTag),
      transport: new NoiseTransport(sendingKey, receivingKey, this.state.chainingKey, this.remoteStatic),
    };
  }
}

/** The responder's side: act one in, act two out, then act three in. */
export class NoiseResponder {
  private readonly state: SymmetricState;
  private readonly ephemeral: StaticKey;
  private remoteEphemeral: Uint8Array | undefined;
  private temporaryKey2: Uint8Array | undefined;
  private stage: 'act1' | 'act3' | 'done' = 'act1';

  constructor(private readonly local: StaticKey, rng: Rng, ephemeralSecret?: Uint8Array) {
    this.state = new SymmetricState(local.publicKey);
    this.ephemeral = staticKeyFromSecret(ephemeralSecret ?? randomSecretKey(rng));
  }

  /** Reads act one and answers with act two. */
  actOneThenTwo(actOne: Uint8Array): Uint8Array {
    if (this.stage !== 'act1') throw kalimaError('KALIMA_ERR_NET_HANDSHAKE_FAILED', { act: 'act1', reason: 'out of order' });
    this.stage = 'act3';
    readAct('act1', actOne, ACT_ONE_BYTES);
    const remoteEphemeral = parsePublicKey(actOne.subarray(1, 1 + PUBLIC_KEY_BYTES), 'act1');
    const tag = actOne.subarray(1 + PUBLIC_KEY_BYTES);
    this.state.mixHash(remoteEphemeral);
    const temporaryKey1 = this.state.mixKey(ecdh(this.local.secretKey, remoteEphemeral));
    if (decryptWithAd(temporaryKey1, 0, this.state.hash, tag) === undefined) throw handshakeFailed('act1', 'bad tag');
    this.state.mixHash(tag);
    this.remoteEphemeral = remoteEphemeral;

    this.state.mixHash(this.ephemeral.publicKey);
    const temporaryKey2 = this.state.mixKey(ecdh(this.ephemeral.secretKey, remoteEphemeral));
    const replyTag = encryptWithAd(temporaryKey2, 0, this.state.hash, EMPTY);
    this.state.mixHash(replyTag);
    this.temporaryKey2 = temporaryKey2;
    return concatBytes(Uint8Array.of(VERSION), this.ephemeral.publicKey, replyTag);
  }

  /** Reads act three: the initiator's static key, authenticated. The caller checks it is a known peer. */
  actThree(actThree: Uint8Array): { remoteStatic: Uint8Array; transport: NoiseTransport } {
    if (this.stage !== 'act3') throw kalimaError('KALIMA_ERR_NET_HANDSHAKE_FAILED', { act: 'act3', reason: 'out of order' });
    this.stage = 'done';
    readAct('act3', actThree, ACT_THREE_BYTES);
    const encryptedStatic = actThree.subarray(1, 1 + PUBLIC_KEY_BYTES + TAG_BYTES);
    const tag = actThree.subarray(1 + PUBLIC_KEY_BYTES + TAG_BYTES);
    const remoteStaticBytes = decryptWithAd(this.temporaryKey2!, 1, this.state.hash, encryptedStatic);
    if (remoteStaticBytes === undefined) throw handshakeFailed('act3', 'bad ciphertext');
    const remoteStatic = parsePublicKey(new Uint8Array(remoteStaticBytes), 'act3');
    this.state.mixHash(encryptedStatic);
    const temporaryKey3 = this.state.mixKey(ecdh(this.ephemeral.secretKey, remoteStatic));
    if (decryptWithAd(temporaryKey3, 0, this.state.hash, tag) === undefined) throw handshakeFailed('act3', 'bad tag');
    const [receivingKey, sendingKey] = hkdf2(this.state.chainingKey, EMPTY);
    return { remoteStatic, transport: new NoiseTransport(sendingKey, receivingKey, this.state.chainingKey, remoteStatic) };
  }
}

function randomSecretKey(rng: Rng): Uint8Array {
  // A 32-byte string is a valid secret key unless it is zero or not below the group order; the
  // chance of either is below 2^-127, but retrying costs nothing.
  for (;;) {
    const candidate = rng.bytes(32);
    try {
      getPublicKey(candidate, true);
      return candidate;
    } catch {
      // try again
    }
  }
}

/** One direction's key, nonce and chaining key, rotated every 1,000 uses. */
class CipherState {
  private nonce = 0;
  constructor(private key: Uint8Array, private chainingKey: Uint8Array) {}

  encrypt(plaintext: Uint8Array): Uint8Array {
    const ciphertext = encryptWithAd(this.key, this.nonce, EMPTY, plaintext);
    this.advance();
    return ciphertext;
  }

  decrypt(ciphertext: Uint8Array): Uint8Array | undefined {
    const plaintext = decryptWithAd(this.key, this.nonce, EMPTY, ciphertext);
    if (plaintext !== undefined) this.advance();
    return plaintext;
  }

  private advance(): void {
    this.nonce++;
    if (this.nonce === KEY_ROTATION_INTERVAL) {
      [this.chainingKey, this.key] = hkdf2(this.chainingKey, this.key);
      this.nonce = 0;
    }
  }
}

/**
 * The transport after a handshake: frames messages for sending, and reads frames from a byte stream
 * fed in chunks of any size. A frame that fails its tag ends the connection: the caller closes it
 * (and may penalise the peer); nothing after it can be trusted.
 */
export class NoiseTransport {
  private readonly sending: CipherState;
  private readonly receiving: CipherState;
  private buffered: Uint8Array = EMPTY;
  /** The body length announced by a header already read, while its body has not fully arrived. */
  private pendingBodyBytes: number | undefined;
  private failed = false;

  constructor(sendingKey: Uint8Array, receivingKey: Uint8Array, chainingKey: Uint8Array, readonly remoteStatic: Uint8Array) {
    this.sending = new CipherState(sendingKey, chainingKey);
    this.receiving = new CipherState(receivingKey, chainingKey);
  }

  /** The bytes to send for one message (at most 65,535 bytes). */
  encrypt(message: Uint8Array): Uint8Array {
    if (message.length > MESSAGE_BYTES_MAX) throw kalimaError('KALIMA_ERR_NET_MESSAGE_TOO_LARGE', { bytes: message.length, max: MESSAGE_BYTES_MAX });
    const length = new Uint8Array(2);
    new DataView(length.buffer).setUint16(0, message.length);
    return concatBytes(this.sending.encrypt(length), this.sending.encrypt(message));
  }

  /** Takes received bytes; returns every message they complete, in order. */
  decrypt(chunk: Uint8Array): Uint8Array[] {
    if (this.failed) throw kalimaError('KALIMA_ERR_NET_BAD_FRAME', { reason: 'the connection already failed' });
    this.buffered = this.buffered.length === 0 ? chunk : concatBytes(this.buffered, chunk);
    const messages: Uint8Array[] = [];
    for (;;) {
      if (this.pendingBodyBytes === undefined) {
        if (this.buffered.length < LENGTH_HEADER_BYTES) break;
        const length = this.receiving.decrypt(this.buffered.subarray(0, LENGTH_HEADER_BYTES));
        if (length === undefined) throw this.fail('the length header fails its tag');
        this.pendingBodyBytes = (length[0]! << 8) | length[1]!;
        this.buffered = this.buffered.subarray(LENGTH_HEADER_BYTES);
      }
      const frameBytes = this.pendingBodyBytes + TAG_BYTES;
      if (this.buffered.length < frameBytes) break;
      const body = this.receiving.decrypt(this.buffered.subarray(0, frameBytes));
      if (body === undefined) throw this.fail('the message fails its tag');
      messages.push(new Uint8Array(body));
      this.buffered = this.buffered.subarray(frameBytes);
      this.pendingBodyBytes = undefined;
    }
    // Keep the tail in a buffer of its own, not a view that pins every chunk before it.
    // (Uint8Array's slice copies; a Buffer's would not.)
    if (this.buffered.length > 0 && this.buffered.byteOffset > 0) this.buffered = Uint8Array.prototype.slice.call(this.buffered);
    return messages;
  }

  private fail(reason: string): Error {
    this.failed = true;
    return kalimaError('KALIMA_ERR_NET_BAD_FRAME', { reason });
  }
}
