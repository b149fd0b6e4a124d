// BOLT 11 payment requests as an LND node on regtest writes them (`lnbcrt…`), made and read with
// the `bolt11` package. The fields are the ones LND puts in every invoice: payment hash, payment
// secret, description, expiry, min_final_cltv_expiry and the feature bits LND requires
// (var_onion_optin and payment_secret required, basic_mpp optional).
import bolt11 from 'bolt11';
import { LndRpcError } from './rpc-error.ts';

/** bitcoinjs-style network parameters of regtest, as `bolt11` takes them. */
const REGTEST = { bech32: 'bcrt', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] };

export interface PaymentRequestFields {
  /** Payment hash, hex. */
  hash: string;
  /** Payment secret (payment_addr), hex. */
  secret: string;
  description: string;
  /** Hex; when set it replaces the description (tag h). */
  descriptionHash?: string;
  amountMsat: bigint;
  /** Seconds since the epoch. */
  timestamp: number;
  expirySeconds: number;
  cltvDelta: number;
}

export interface DecodedPaymentRequest extends PaymentRequestFields {
  /** The payee's node key, compressed, hex (recovered from the signature). */
  destination: string;
}

/** Encodes and signs a payment request with the node's private key. */
export function encodePaymentRequest(fields: PaymentRequestFields, nodeKey: Uint8Array): string {
  const tags: { tagName: string; data: bolt11.TagData }[] = [
    { tagName: 'payment_hash', data: fields.hash },
    { tagName: 'payment_secret', data: fields.secret },
    fields.descriptionHash ? { tagName: 'purpose_commit_hash', data: fields.descriptionHash } : { tagName: 'description', data: fields.description },
    { tagName: 'expire_time', data: fields.expirySeconds },
    { tagName: 'min_final_cltv_expiry', data: fields.cltvDelta },
    { tagName: 'feature_bits', data: { word_length: 4, var_onion_optin: { required: true }, payment_secret: { required: true }, basic_mpp: { supported: true } } },
  ];
  const unsigned = bolt11.encode({
    network: REGTEST,
    timestamp: fields.timestamp,
    ...(fields.amountMsat > 0n ? { millisatoshis: fields.amountMsat.toString() } : {}),
    tags,
  }, false);
  const signed = bolt11.sign(unsigned, Buffer.from(nodeKey));
  if (!signed.paymentRequest) throw new Error('bolt11 did not produce a payment request');
  return signed.paymentRequest;
}

/** Decodes a payment request; anything malformed is LND's error for it. */
export function decodePaymentRequest(request: string): DecodedPaymentRequest {
  const text = request.trim().toLowerCase().replace(/^lightning:/, '');
  // zpay32's words for a request of another chain or network.
  if (/^ln[a-z]/.test(text) && !text.startsWith('lnbcrt')) throw LndRpcError.unknown(`invoice not for current active network 'regtest'`);
  let decoded;
  try {
    decoded = bolt11.decode(text, REGTEST);
  } catch (error) {
    // LND answers DecodePayReq of a string zpay32 cannot read with the decoder's text.
    throw LndRpcError.unknown(`invalid payment request: ${(error as Error).message}`);
  }
  const tags = decoded.tagsObject;
  if (!tags.payment_hash || !decoded.payeeNodeKey) throw LndRpcError.unknown('invalid payment request: no payment hash or payee');
  return {
    hash: tags.payment_hash,
    secret: tags.payment_secret ?? '',
    description: tags.description ?? '',
    ...(tags.purpose_commit_hash ? { descriptionHash: tags.purpose_commit_hash } : {}),
    amountMsat: decoded.millisatoshis ? BigInt(decoded.millisatoshis) : 0n,
    timestamp: decoded.timestamp ?? 0,
    // BOLT 11's defaults when the tags are absent: 3600 s and 18 blocks.
    expirySeconds: tags.expire_time ?? 3600,
    cltvDelta: tags.min_final_cltv_expiry ?? 18,
    destination: decoded.payeeNodeKey,
  };
}
