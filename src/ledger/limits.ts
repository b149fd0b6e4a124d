// Size bounds of the chain. Changing any of them is a hard fork.

/** "Block size is limited to 16 ko to limit latency and protect from buffer overflow attacks." */
export const BLOCK_BYTES_MAX = 16_384;
/** Kalima: "A single send is at most 8 KB." */
export const MESSAGE_BODY_BYTES_MAX = 8_192;
export const KEY_BYTES_MAX = 256;
export const ADDRESS_BYTES_MAX = 256;
export const CHAIN_BYTES_MAX = 64;
export const PROPS_COUNT_MAX = 16;
export const PROP_KEY_BYTES_MAX = 64;
export const PROP_VALUE_BYTES_MAX = 256;
/** Ten years. */
export const TTL_SECONDS_MAX = 315_360_000;
export const TTL_FOREVER = -1;
/** A block holds at most this many messages (a 16 KB block of the smallest messages stays below). */
export const BLOCK_MESSAGES_MAX = 512;
/** The replay window: how many of a device's most recent nonces the chain remembers. */
export const NONCE_RECENT_MAX = 128;
/** The system writes at most this many TTL deletes into one block. */
export const EXPIRIES_PER_BLOCK_MAX = 64;

/** Kalima keys: `^[a-z0-9 :.@+_\-/]+$`, "without regard to case". */
export const KEY_PATTERN = /^[a-z0-9 :.@+_\-/]+$/i;
/** An address is a path of one or more segments, such as /sensors/plant1. */
export const ADDRESS_PATTERN = /^(?:\/[a-z0-9:.@+_-]+)+$/i;
export const CHAIN_PATTERN = /^[a-z0-9][a-z0-9._-]*$/;
export const PROP_KEY_PATTERN = /^[a-z0-9_.-]+$/;
