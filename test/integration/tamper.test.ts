// Tamper detection on a LevelDB data directory: one flipped byte anywhere in a stored block stops
// the node at start-up with KALIMA_ERR_STORE_CORRUPT naming that block's height; a damaged
// persisted MemCache is reported as repairable and `repairState` rebuilds it from the blocks; a
// data directory refuses a genesis other than its own.
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { genesisHash } from '../../src/access/genesis.ts';
import { KalimaError } from '../../src/errors.ts';
import { decodeBlock, encodeHeader } from '../../src/ledger/block.ts';
import { Writer, utf8Bytes as utf8 } from '../../src/ledger/codec.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { encodeCommitted } from '../../src/ledger/message.ts';
import type { KalimaNode } from '../../src/node/node.ts';
import { decodeEntry, encodeEntry } from '../../src/state/entry.ts';
import { ChainStore } from '../../src/store/chain-store.ts';
import { TABLE, keys, prefixEnd, readU64, u64 } from '../../src/store/keys.ts';
import { LevelKvStore } from '../../src/store/level-kv.ts';
import { repairState } from '../../src/store/repair.ts';
import { decodeNonceWindow, encodeNonceWindow } from '../../src/state/nonce-window.ts';
import type { KeyPair } from '../../src/ledger/signature.ts';
import { type TestChain, createAddress, makeChain, makeMessage, openNode, registerDevice, tempDir } from '../support/chain.ts';

const ADDRESS = '/plant/line1';
const chain = makeChain('tamper', 'tamperchain');
let directory: string;

interface Snapshot {
  height: number;
  tipHashHex: string;
  stateDigestHex: string;
  /** key -> value (utf8) of every entry at ADDRESS. */
  values: Map<string, string>;
}
let before: Snapshot;

function snapshot(node: KalimaNode): Snapshot {
  return {
    height: node.height,
    tipHashHex: toHex(node.tipRecord.hash),
    stateDigestHex: toHex(node.tipRecord.stateDigest),
    values: new Map(node.cache.entriesAt(ADDRESS).map((entry) => [entry.key, Buffer.from(entry.value).toString('utf8')])),
  };
}

/**
 * KalimaNode.open on the directory with a store this test owns. A node that refuses to open does
 * not close its store, so the store is closed here, or the LevelDB lock would stay held.
 */
async function openOnDisk(genesisChain: TestChain = chain): Promise<KalimaNode> {
  const kv = await LevelKvStore.open(directory);
  try {
    return await openNode(genesisChain, { kv });
  } catch (error) {
    await kv.close();
    throw error;
  }
}

async function openError(label: string, genesisChain: TestChain = chain): Promise<KalimaError> {
  let node: KalimaNode | undefined;
  try {
    node = await openOnDisk(genesisChain);
  } catch (error) {
    expect(error).toBeInstanceOf(KalimaError);
    return error as KalimaError;
  }
  await node.close();
  throw new Error(`${label}: expected the node to refuse to open, and it opened`);
}

/** Opens the node, checks it serves the state it had before any tampering, and closes it. */
async function expectOpensIntact(): Promise<void> {
  const node = await openOnDisk();
  try {
    expect(snapshot(node)).toEqual(before);
    expect(toHex(node.cache.digest())).toBe(before.stateDigestHex);
  } finally {
    await node.close();
  }
}

async function withKv<T>(action: (kv: LevelKvStore) => Promise<T>): Promise<T> {
  const kv = await LevelKvStore.open(directory);
  try {
    return await action(kv);
  } finally {
    await kv.close();
  }
}

async function readValue(key: Uint8Array): Promise<Uint8Array> {
  const value = await withKv((kv) => kv.get(key));
  if (value === undefined) throw new Error(`no stored value under ${toHex(key)}`);
  return value.slice();
}

async function writeValue(key: Uint8Array, value: Uint8Array | undefined): Promise<void> {
  await withKv((kv) => kv.batch([value === undefined ? { type: 'del', key } : { type: 'put', key, value }], { sync: true }));
}

function flipped(bytes: Uint8Array, offset: number): Uint8Array {
  const copy = bytes.slice();
  copy[offset]! ^= 0xff;
  return copy;
}

/** Where, in a block's encoding, message `index`'s body starts; checked by decoding below. */
function bodyOffset(blockBytes: Uint8Array, index: number): number {
  const block = decodeBlock(blockBytes);
  let offset = encodeHeader(block.header).length;
  for (let earlier = 0; earlier < index; earlier++) offset += encodeCommitted(block.messages[earlier]!).length;
  const committed = block.messages[index]!;
  const { message } = committed;
  // committed: version, globalSequence, sequence, previous+1; message: version, chain, address, key, then the body's length.
  return offset + new Writer(512)
    .u8(1).varint(committed.globalSequence).varint(committed.sequence).varint(committed.previous + 1)
    .u8(1).text(message.chain).text(message.address).text(message.key).varint(message.body.length)
    .finish().length;
}

/** The last message of the block that has a body (a delete has none). */
function lastWithBody(blockBytes: Uint8Array): number {
  const index = decodeBlock(blockBytes).messages.findLastIndex((committed) => committed.message.body.length > 0);
  if (index < 0) throw new Error('the block has no message with a body');
  return index;
}

interface Position {
  name: string;
  offset: (blockBytes: Uint8Array) => number;
  /** Checks the offset hits the part of the block it claims to; throws if it does not. */
  check?: (original: Uint8Array, tampered: Uint8Array) => void;
}

const POSITIONS: Position[] = [
  { name: 'first byte (header version)', offset: () => 0 },
  {
    name: 'prevHash in the header',
    offset: (bytes) => new Writer(128).u8(1).text(decodeBlock(bytes).header.chain).varint(decodeBlock(bytes).header.height).finish().length + 7,
    check: (original, tampered) => expect(toHex(decodeBlock(tampered).header.prevHash)).not.toBe(toHex(decodeBlock(original).header.prevHash)),
  },
  { name: 'middle byte', offset: (bytes) => Math.floor(bytes.length / 2) },
  {
    name: 'last byte (leader signature)',
    offset: (bytes) => bytes.length - 1,
    check: (original, tampered) => {
      expect(toHex(decodeBlock(tampered).signature)).not.toBe(toHex(decodeBlock(original).signature));
      expect(encodeHeader(decodeBlock(tampered).header)).toEqual(encodeHeader(decodeBlock(original).header));
    },
  },
  {
    name: 'inside a message body',
    offset: (bytes) => {
      const index = lastWithBody(bytes);
      return bodyOffset(bytes, index) + Math.floor(decodeBlock(bytes).messages[index]!.message.body.length / 2);
    },
    check: (original, tampered) => {
      const index = lastWithBody(original);
      const originalBody = decodeBlock(original).messages[index]!.message.body;
      const tamperedBody = decodeBlock(tampered).messages[index]!.message.body;
      expect(tamperedBody.length).toBe(originalBody.length);
      expect(toHex(tamperedBody)).not.toBe(toHex(originalBody));
      expect(encodeHeader(decodeBlock(tampered).header)).toEqual(encodeHeader(decodeBlock(original).header));
    },
  },
];

let device: KeyPair;

beforeAll(async () => {
  directory = await tempDir('kalima-tamper-');
  const node = await openOnDisk();
  try {
    await createAddress(node, chain, ADDRESS);
    device = await registerDevice(node, chain, { pub: ['/plant'], sub: ['/plant'] });
    // Awaiting each write puts it in a block of its own.
    for (let index = 0; index < 7; index++) {
      await node.submit(makeMessage(chain, device, { address: ADDRESS, key: `sensor-${index % 3}`, body: utf8(`reading-${index}-${'x'.repeat(index * 5)}`), props: [['unit', 'kPa']] }));
    }
    // And a block with several messages in it, one of them a delete.
    await Promise.all([
      node.submit(makeMessage(chain, device, { address: ADDRESS, key: 'sensor-2', body: new Uint8Array() })),
      ...[0, 1, 2].map((index) => node.submit(makeMessage(chain, device, { address: ADDRESS, key: `batch-${index}`, body: utf8(`batched value ${index}`) }))),
    ]);
    before = snapshot(node);
  } finally {
    await node.close();
  }
  expect(before.height).toBeGreaterThanOrEqual(10);
  expect([...before.values.keys()].sort()).toEqual(['batch-0', 'batch-1', 'batch-2', 'sensor-0', 'sensor-1']);
}, 30_000);

afterAll(async () => {
  if (directory !== undefined) await rm(directory, { recursive: true, force: true });
});

describe('a flipped byte in a stored block', () => {
  it('the untouched chain opens with the state it was closed with', async () => {
    await expectOpensIntact();
  });

  it('is found at every height and every position, and the restored block opens again', async () => {
    const tested: string[] = [];
    for (let height = 1; height <= before.height; height++) {
      const key = keys.block(height);
      const original = await readValue(key);
      for (const position of POSITIONS) {
        const offset = position.offset(original);
        const label = `height ${height}, ${position.name} (offset ${offset} of ${original.length})`;
        expect(offset, label).toBeGreaterThanOrEqual(0);
        expect(offset, label).toBeLessThan(original.length);
        const tampered = flipped(original, offset);
        position.check?.(original, tampered);
        await writeValue(key, tampered);
        try {
          const error = await openError(label);
          expect(error.code, label).toBe('KALIMA_ERR_STORE_CORRUPT');
          expect(error.details.height, label).toBe(height);
          // A single node has no other copy of a block: repair cannot mend it, and says so.
          expect(error.details.repairable, label).toBe(false);
        } finally {
          await writeValue(key, original);
        }
        await expectOpensIntact();
        tested.push(label);
      }
    }
    expect(tested).toHaveLength(before.height * POSITIONS.length);
  }, 60_000);

  it('repairState refuses a tampered block instead of rebuilding past it', async () => {
    const height = Math.ceil(before.height / 2);
    const key = keys.block(height);
    const original = await readValue(key);
    await writeValue(key, flipped(original, original.length - 1));
    try {
      const error = await withKv((kv) => repairState(new ChainStore(kv), chain.genesis).then(
        () => undefined,
        (caught: unknown) => caught,
      ));
      expect(error).toBeInstanceOf(KalimaError);
      expect((error as KalimaError).code).toBe('KALIMA_ERR_STORE_CORRUPT');
      expect((error as KalimaError).details.height).toBe(height);
    } finally {
      await writeValue(key, original);
    }
    await expectOpensIntact();
  });

  it('a missing block is named by its height', async () => {
    const height = 3;
    const key = keys.block(height);
    const original = await readValue(key);
    await writeValue(key, undefined);
    try {
      const error = await openError('block 3 deleted');
      expect(error.code).toBe('KALIMA_ERR_STORE_CORRUPT');
      expect(error.details.height).toBe(height);
      expect(error.details.repairable).toBe(false);
    } finally {
      await writeValue(key, original);
    }
    await expectOpensIntact();
  });
});

/** The stored entries of the persisted MemCache at ADDRESS, by key. */
async function storedEntries(): Promise<Map<string, { key: Uint8Array; value: Uint8Array }>> {
  return withKv(async (kv) => {
    const found = new Map<string, { key: Uint8Array; value: Uint8Array }>();
    for await (const [key, value] of kv.entries({ gte: keys.table(TABLE.cacheEntry), lt: prefixEnd(keys.table(TABLE.cacheEntry)) })) {
      const entry = decodeEntry(value);
      if (entry.address === ADDRESS) found.set(entry.key, { key: key.slice(), value: value.slice() });
    }
    return found;
  });
}

interface StateDamage {
  name: string;
  damage: () => Promise<void>;
}

const STATE_DAMAGE: StateDamage[] = [
  {
    name: 'a byte of an entry value flipped (it still decodes)',
    damage: async () => {
      const stored = (await storedEntries()).get('sensor-0')!;
      const valueText = Buffer.from(decodeEntry(stored.value).value).toString('latin1');
      const offset = Buffer.from(stored.value).toString('latin1').indexOf(valueText) + 2;
      const tampered = flipped(stored.value, offset);
      expect(Buffer.from(decodeEntry(tampered).value).toString('latin1')).not.toBe(valueText);
      await writeValue(stored.key, tampered);
    },
  },
  {
    name: "an entry's props, device and height changed (its value and message hash kept)",
    damage: async () => {
      const stored = (await storedEntries()).get('sensor-0')!;
      const entry = decodeEntry(stored.value);
      await writeValue(stored.key, encodeEntry({ ...entry, props: [['unit', 'F']], device: new Uint8Array(32).fill(7), height: 999 }));
    },
  },
  {
    name: 'an entry truncated (it no longer decodes)',
    damage: async () => {
      const stored = (await storedEntries()).get('batch-1')!;
      await writeValue(stored.key, stored.value.subarray(0, stored.value.length - 5));
    },
  },
  {
    name: 'an entry deleted',
    damage: async () => {
      const stored = (await storedEntries()).get('sensor-1')!;
      await writeValue(stored.key, undefined);
    },
  },
  {
    name: 'a deleted key brought back',
    damage: async () => {
      const stored = (await storedEntries()).get('sensor-0')!;
      const revived = { ...decodeEntry(stored.value), key: 'sensor-2' };
      await writeValue(keys.entry(ADDRESS, 'sensor-2'), encodeEntry(revived));
    },
  },
  {
    name: "a device's replay window rolled back without its checksum (a replay would pass)",
    damage: async () => {
      const deviceHex = toHex(device.publicKey);
      const stored = await readValue(keys.nonce(deviceHex));
      // The stored record is the window's encoding and an 8-byte checksum.
      const window = decodeNonceWindow(stored.subarray(0, stored.length - 8));
      await writeValue(keys.nonce(deviceHex), encodeNonceWindow({ floor: window.floor, recent: window.recent.slice(0, -1) }));
    },
  },
  {
    name: 'the head of the address moved',
    damage: async () => {
      const head = await readValue(keys.head(ADDRESS));
      await writeValue(keys.head(ADDRESS), u64(readU64(head) + 1));
    },
  },
];

describe('a damaged persisted MemCache', () => {
  it.each(STATE_DAMAGE)('$name: refused as repairable, and repairState restores the same digest', async ({ name, damage }) => {
    await damage();
    const error = await openError(name);
    expect(error.code).toBe('KALIMA_ERR_STORE_CORRUPT');
    expect(error.details.repairable).toBe(true);
    expect(error.details.height).toBe(before.height);

    const repaired = await withKv((kv) => repairState(new ChainStore(kv), chain.genesis));
    expect(repaired.height).toBe(before.height);
    await expectOpensIntact();
  });

  it('a deleted tip record is repairable too', async () => {
    await writeValue(keys.meta('tip'), undefined);
    const error = await openError('tip deleted');
    expect(error.code).toBe('KALIMA_ERR_STORE_CORRUPT');
    expect(error.details.repairable).toBe(true);
    await withKv((kv) => repairState(new ChainStore(kv), chain.genesis));
    await expectOpensIntact();
  });

  it('an unreadable tip record is repairable too', async () => {
    const tip = await readValue(keys.meta('tip'));
    await writeValue(keys.meta('tip'), tip.subarray(0, 10));
    const error = await openError('tip truncated');
    expect(error.code).toBe('KALIMA_ERR_STORE_CORRUPT');
    expect(error.details.repairable).toBe(true);
    await withKv((kv) => repairState(new ChainStore(kv), chain.genesis));
    await expectOpensIntact();
  });
});

describe('a data directory opened under another genesis', () => {
  const cases: Array<{ name: string; other: TestChain }> = [
    { name: 'another chain altogether', other: makeChain('another', 'tamperchain') },
    { name: 'the same keys with another genesis time', other: { ...chain, genesis: { ...chain.genesis, timeMs: chain.genesis.timeMs + 1 } } },
    { name: 'the same keys under another chain name', other: { ...chain, genesis: { ...chain.genesis, chain: 'tamperchain2' } } },
    { name: 'an extra admin', other: { ...chain, genesis: { ...chain.genesis, admins: [...chain.genesis.admins, makeChain('extra').admin.publicKey] } } },
  ];

  it.each(cases)('$name: KALIMA_ERR_STORE_GENESIS_MISMATCH, and the directory still opens under its own', async ({ name, other }) => {
    expect(toHex(genesisHash(other.genesis))).not.toBe(toHex(genesisHash(chain.genesis)));
    const error = await openError(name, other);
    expect(error.code).toBe('KALIMA_ERR_STORE_GENESIS_MISMATCH');
    expect(error.details.stored).toBe(toHex(genesisHash(chain.genesis)));
    expect(error.details.genesis).toBe(toHex(genesisHash(other.genesis)));
    // repair must refuse the same way, before it rewrites anything.
    const repairError = await withKv((kv) => repairState(new ChainStore(kv), other.genesis).then(() => undefined, (caught: unknown) => caught));
    expect((repairError as KalimaError).code).toBe('KALIMA_ERR_STORE_GENESIS_MISMATCH');
    await expectOpensIntact();
  });
});
