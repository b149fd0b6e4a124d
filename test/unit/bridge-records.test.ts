// The bridge log's records: their canonical encoding round-trips, and anything malformed (a codec
// error, a bad shape, a key that does not match, a decision without its initiation) is
// KALIMA_ERR_BRIDGE_BAD_RECORD and nothing else.
import { describe, expect, it } from 'vitest';
import { BridgeLog } from '../../bridge/log.ts';
import {
  type BridgeRecord, DEFAULT_KEY_PREFIX, decodeRecord, encodeRecord, parseRecordKey, recordKey,
} from '../../bridge/records.ts';
import { isKalimaError } from '../../src/errors.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { expectKalimaError } from './support/kalima-error.ts';
import { prefixEnd } from '../../src/store/keys.ts';

const ID = 'ab'.repeat(32);
const initiation: BridgeRecord = {
  type: 'initiation', id: ID, createdMs: 1_700_000_000_123, deadlineMs: 1_700_000_030_000,
  participants: [{ kind: 'lightning-hold', args: new Uint8Array([1, 2, 3]) }, { kind: 'kalima-grant', args: new Uint8Array() }],
};
const commit: BridgeRecord = { type: 'decision', id: ID, outcome: 'commit', decidedMs: 1_700_000_001_000 };
const abort: BridgeRecord = { type: 'decision', id: '00ff', outcome: 'abort', reason: 'participant 1: no funds — ünïcode', decidedMs: 5 };

describe('bridge records', () => {
  it('round-trip through the canonical codec', () => {
    for (const record of [initiation, commit, abort]) {
      const bytes = encodeRecord(record);
      expect(decodeRecord(bytes)).toEqual(record);
      // One value, one encoding.
      expect(encodeRecord(decodeRecord(bytes))).toEqual(bytes);
    }
  });

  it('has the documented layout', () => {
    expect(Buffer.from(encodeRecord({ ...commit, decidedMs: 300 })).toString('hex')).toBe(`0102 20${ID} 01 00 ac02`.replace(/ /g, ''));
    expect(Buffer.from(encodeRecord({ type: 'initiation', id: '00ff', createdMs: 1, deadlineMs: 2, participants: [{ kind: 'k', args: new Uint8Array([7]) }] })).toString('hex')).toBe('0101 0200ff 01 02 01 016b 0107'.replace(/ /g, ''));
    const key = recordKey(DEFAULT_KEY_PREFIX, '00ff', 'decision');
    expect(Buffer.from(key).toString('latin1')).toBe('bridge/\x02\x00\xff\x02');
    expect(parseRecordKey(DEFAULT_KEY_PREFIX, key)).toEqual({ id: '00ff', type: 'decision' });
    // The initiation sorts before the decision, and both within the prefix's range.
    const first = recordKey(DEFAULT_KEY_PREFIX, '00ff', 'initiation');
    expect(Buffer.compare(first, key)).toBe(-1);
    expect(Buffer.compare(key, prefixEnd(DEFAULT_KEY_PREFIX))).toBe(-1);
  });

  it('reject malformed records with KALIMA_ERR_BRIDGE_BAD_RECORD', () => {
    const good = encodeRecord(initiation);
    const cases: Array<[string, Uint8Array]> = [
      ['empty', new Uint8Array()],
      ['truncated', good.subarray(0, good.length - 1)],
      ['trailing bytes', new Uint8Array([...good, 0])],
      ['unknown version', new Uint8Array([2, ...good.subarray(1)])],
      ['unknown type', new Uint8Array([1, 9, ...good.subarray(2)])],
      ['empty id', new Uint8Array([1, 2, 0, 1, 0, 0])],
      ['zero participants', encodeRecordRaw((w) => w.concat([1, 1, 1, 0xaa, 1, 1, 0]))],
      ['seventeen participants', encodeRecordRaw((w) => w.concat([1, 1, 1, 0xaa, 1, 1, 17]))],
      ['empty kind', encodeRecordRaw((w) => w.concat([1, 1, 1, 0xaa, 1, 1, 1, 0, 0]))],
      ['unknown decision', new Uint8Array([1, 2, 1, 0xaa, 3, 0, 0])],
      ['a commit with a reason', new Uint8Array([1, 2, 1, 0xaa, 1, 1, 0x41, 0])],
      ['non-minimal varint', new Uint8Array([1, 2, 1, 0xaa, 1, 0, 0x80, 0])],
      ['bad utf-8 reason', new Uint8Array([1, 2, 1, 0xaa, 2, 1, 0xff, 0])],
    ];
    for (const [what, bytes] of cases) {
      const error = expectKalimaError(() => decodeRecord(bytes), 'KALIMA_ERR_BRIDGE_BAD_RECORD');
      expect(error.details.reason, what).toBeTypeOf('string');
    }
  });

  it('refuse to encode what could not be decoded', () => {
    expectKalimaError(() => encodeRecord({ ...initiation, participants: [] }), 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
    expectKalimaError(() => encodeRecord({ ...initiation, id: 'ABCD' }), 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
    expectKalimaError(() => encodeRecord({ ...initiation, participants: [{ kind: 'x', args: new Uint8Array(4_097) }] }), 'KALIMA_ERR_BRIDGE_BAD_REQUEST');
  });

  it('reject keys that are not bridge keys', () => {
    for (const key of [new Uint8Array([1, 2]), new Uint8Array([...DEFAULT_KEY_PREFIX, 1, 0xaa]), new Uint8Array([...DEFAULT_KEY_PREFIX, 1, 0xaa, 3]), new Uint8Array([...DEFAULT_KEY_PREFIX, 0, 1])]) {
      expectKalimaError(() => parseRecordKey(DEFAULT_KEY_PREFIX, key), 'KALIMA_ERR_BRIDGE_BAD_RECORD');
    }
  });

  it('a log with a record under the wrong key, or a decision alone, does not load', async () => {
    const loadError = async (kv: MemoryKvStore): Promise<unknown> => new BridgeLog(kv).load().then(() => undefined, (error: unknown) => error);
    const misplaced = new MemoryKvStore();
    await misplaced.batch([{ type: 'put', key: recordKey(DEFAULT_KEY_PREFIX, 'cd', 'initiation'), value: encodeRecord(initiation) }]);
    expect(isKalimaError(await loadError(misplaced), 'KALIMA_ERR_BRIDGE_BAD_RECORD')).toBe(true);
    const alone = new MemoryKvStore();
    await alone.batch([{ type: 'put', key: recordKey(DEFAULT_KEY_PREFIX, ID, 'decision'), value: encodeRecord(commit) }]);
    expect(isKalimaError(await loadError(alone), 'KALIMA_ERR_BRIDGE_BAD_RECORD')).toBe(true);
    const garbage = new MemoryKvStore();
    await garbage.batch([{ type: 'put', key: recordKey(DEFAULT_KEY_PREFIX, ID, 'initiation'), value: new Uint8Array([1, 1]) }]);
    expect(isKalimaError(await loadError(garbage), 'KALIMA_ERR_BRIDGE_BAD_RECORD')).toBe(true);
    // Keys outside the prefix are not the log's.
    const shared = new MemoryKvStore();
    await shared.batch([{ type: 'put', key: new Uint8Array([0x62, 0x72]), value: new Uint8Array([9]) }, { type: 'put', key: new Uint8Array([0xff]), value: new Uint8Array([9]) }]);
    expect(await new BridgeLog(shared).load()).toEqual([]);
  });
});

function encodeRecordRaw(build: (bytes: number[]) => number[]): Uint8Array {
  return new Uint8Array(build([]));
}
