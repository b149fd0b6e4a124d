// The LND stand-in's BOLT 11 requests (regtest/lnd/payreq.ts, made with the bolt11 package): they
// round-trip through bolt11.decode, carry the fields LND puts in every invoice, are signed by the
// node key, and parse with the `invoices` package that ln-service checks every request with.
import { createRequire } from 'node:module';
import { getPublicKey } from '@noble/secp256k1';
import bolt11 from 'bolt11';
import { describe, expect, it } from 'vitest';
import { decodePaymentRequest, encodePaymentRequest } from '../../regtest/lnd/payreq.ts';
import { LndRpcError } from '../../regtest/lnd/rpc-error.ts';
import { hex, seededRng } from './support/seeded-rng.ts';

const require = createRequire(import.meta.url);
const { parsePaymentRequest } = require('invoices') as { parsePaymentRequest(args: { request: string }): Record<string, unknown> & { features: { bit: number; is_required: boolean }[] } };

const rng = seededRng('standin-payreq');
const nodeKey = rng.bytes(32);
const fields = {
  hash: hex(rng.bytes(32)), secret: hex(rng.bytes(32)), description: 'oracle /sensors/plant1, 1 day', amountMsat: 21_000_000n,
  timestamp: 1_780_000_000, expirySeconds: 600, cltvDelta: 40,
};

describe('the stand-in\'s BOLT 11 requests', () => {
  const request = encodePaymentRequest(fields, nodeKey);

  it('decode back to what was encoded, the payee recovered from the signature', () => {
    expect(request).toMatch(/^lnbcrt210u1/);
    expect(decodePaymentRequest(request)).toEqual({ ...fields, destination: hex(getPublicKey(nodeKey, true)) });
  });

  it('carry LND\'s fields and feature bits (var_onion_optin and payment_secret required, basic_mpp optional)', () => {
    const decoded = bolt11.decode(request, { bech32: 'bcrt', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] });
    expect(decoded.tagsObject).toMatchObject({ payment_hash: fields.hash, payment_secret: fields.secret, description: fields.description, expire_time: 600, min_final_cltv_expiry: 40 });
    expect(decoded.tagsObject.feature_bits).toMatchObject({ var_onion_optin: { required: true }, payment_secret: { required: true }, basic_mpp: { required: false, supported: true } });
    const parsed = parsePaymentRequest({ request });
    expect(parsed).toMatchObject({ id: fields.hash, payment: fields.secret, tokens: 21_000, mtokens: '21000000', cltv_delta: 40, network: 'regtest', destination: hex(getPublicKey(nodeKey, true)) });
    expect(parsed.features.map((feature) => [feature.bit, feature.is_required]).sort()).toEqual([[14, true], [17, false], [8, true]].sort());
  });

  it('a description hash replaces the description; no amount is an any-amount request', () => {
    const descriptionHash = hex(rng.bytes(32));
    const decoded = decodePaymentRequest(encodePaymentRequest({ ...fields, descriptionHash, amountMsat: 0n }, nodeKey));
    expect(decoded).toMatchObject({ descriptionHash, description: '', amountMsat: 0n });
  });

  it('a request of another network is refused with zpay32\'s text', () => {
    const mainnet = bolt11.sign(bolt11.encode({
      network: { bech32: 'bc', pubKeyHash: 0x00, scriptHash: 0x05, validWitnessVersions: [0, 1] }, satoshis: 10, timestamp: fields.timestamp,
      tags: [{ tagName: 'payment_hash', data: fields.hash }, { tagName: 'payment_secret', data: fields.secret }, { tagName: 'description', data: 'x' },
        { tagName: 'feature_bits', data: { word_length: 4, var_onion_optin: { required: true }, payment_secret: { required: true } } }],
    }, false), Buffer.from(nodeKey)).paymentRequest!;
    expect(mainnet).toMatch(/^lnbc100n1/);
    expect(() => decodePaymentRequest(mainnet)).toThrow(`invoice not for current active network 'regtest'`);
  });

  it('a malformed or altered request is LND\'s error, not a crash', () => {
    for (const bad of ['lnbcrt1qqqq', 'hello', `${request.slice(0, 20)}x${request.slice(21)}`]) {
      expect(() => decodePaymentRequest(bad)).toThrow(LndRpcError);
    }
  });
});
