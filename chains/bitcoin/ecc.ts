// The one secp256k1 backend of the Bitcoin adapter: tiny-secp256k1 (libsecp256k1 in WASM), given to
// bitcoinjs-lib (which checks it on init: Taproot tweaks need it) and to bip32.
import * as ecc from 'tiny-secp256k1';
import { initEccLib } from 'bitcoinjs-lib';
import { BIP32Factory } from 'bip32';

initEccLib(ecc);

export { ecc };
export const bip32 = BIP32Factory(ecc);
