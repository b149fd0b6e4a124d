// A regtest anchor wallet in memory (fixed seed, zero auxiliary randomness) and the requests the
// builder tests make from it, so their figures do not change from run to run.
import { sha256, toHex } from '../../src/ledger/hash.ts';
import type { Rng } from '../../src/ports.ts';
import { bip32 } from '../../chains/bitcoin/ecc.ts';
import { type AddressKind, type AnchorWallet, changeAddress, receiveAddress, signerFor } from '../../chains/bitcoin/keys.ts';
import { parseBitcoinNetwork } from '../../chains/bitcoin/network.ts';
import type { AnchorTxRequest, Utxo } from '../../chains/bitcoin/tx.ts';

const network = parseBitcoinNetwork('regtest');
const zeroRng: Rng = { bytes: (length) => new Uint8Array(length) };

export const testWallet: AnchorWallet = { network, file: '(memory)', rng: zeroRng, root: bip32.fromSeed(new Uint8Array(32).fill(42), network.bitcoinjs) };
export const COMMITMENT = sha256(new TextEncoder().encode('kalima anchor fixture'));

/** A UTXO of `valueSat` paying the wallet's receive address `index`, with a made-up txid. */
export function walletUtxo(kind: AddressKind, valueSat: bigint, index = 0): Utxo {
  const address = receiveAddress(testWallet, kind, index);
  return { txid: toHex(sha256(new TextEncoder().encode(`${kind}/${index}/${valueSat}`))), vout: index, valueSat, script: address.script, derivation: address.derivation };
}

export function request(kind: AddressKind, utxos: Utxo[], feeRateSatPerKvB: bigint, extra: Partial<AnchorTxRequest> = {}): AnchorTxRequest {
  const change = changeAddress(testWallet, kind, 0);
  return {
    utxos, commitment: COMMITMENT, feeRateSatPerKvB, change: { script: change.script, derivation: change.derivation },
    signer: (utxo) => signerFor(testWallet, utxo.derivation), rbf: true, ...extra,
  };
}
