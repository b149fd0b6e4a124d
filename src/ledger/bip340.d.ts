// Types of bip340.js (plain JavaScript, shared with the verifier threads).

/** 'native' when the prebuilt libsecp256k1 addon loaded, else 'wasm'. */
export declare const backend: 'native' | 'wasm';
/** Why the native addon is not in use, when it is not. */
export declare const nativeError: string | undefined;
/** The native check: a decision, or undefined when only the WASM verifier can decide. */
export declare function verifyNative(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): boolean | undefined;
/** tiny-secp256k1's WASM libsecp256k1. */
export declare function verifyWasm(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): boolean;
/** BIP-340 verification of a 32-byte hash: native, else WASM; false for inputs of the wrong lengths. */
export declare function verifyBip340(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): boolean;
/** R = s·G − e·P by native recovery (33 bytes, compressed; a scratch buffer), or undefined. For the tests. */
export declare function nativeCommitment(messageHash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): Uint8Array | undefined;
