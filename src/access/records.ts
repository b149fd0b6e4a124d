// Bodies of admin messages on the reserved addresses, in the canonical codec.
//   /kalima/addresses   key = an address path      body = AddressRecord   (an admin creates an address)
//   /kalima/devices     key = device id (hex)      body = DeviceRecord    (an admin registers a device)
//   /kalima/onboarding  key = code id (hex)        body = OnboardingGrant (an admin issues a one-time code)
//                       a device then writes there  body = Redemption      (the device redeems the code)
//
// An onboarding code is a secp256k1 secret key; its code id is the x-only public key. A device
// redeems it by signing its own device id with the code (see `redemptionHash`), so the code never
// travels, and a redemption seen in flight cannot be replayed for another key.
import { kalimaError } from '../errors.ts';
import { Reader, Writer } from '../ledger/codec.ts';
import { checkAddress } from '../ledger/message.ts';
import { TAG, taggedHash } from '../ledger/hash.ts';

export const RESERVED_ROOT = '/kalima';
export const ADDRESSES_ADDRESS = '/kalima/addresses';
export const DEVICES_ADDRESS = '/kalima/devices';
export const ONBOARDING_ADDRESS = '/kalima/onboarding';

/** A permission list may hold this many address prefixes. */
export const PREFIXES_MAX = 64;
const NAME_BYTES_MAX = 128;
const DESCRIPTION_BYTES_MAX = 1024;

export function isReservedAddress(address: string): boolean {
  return address === RESERVED_ROOT || address.startsWith(`${RESERVED_ROOT}/`);
}

export interface Permissions {
  /** Address prefixes the device may write to. */
  pub: string[];
  /** Address prefixes the device may read and be notified about. */
  sub: string[];
}

export interface DeviceRecord extends Permissions {
  name: string;
}

export interface OnboardingGrant extends Permissions {
  name: string;
  /** 0 for a code that never expires. */
  expiresAtMs: number;
}

/** The value stored at /kalima/onboarding once a device has redeemed the code. */
export interface RedeemedGrant {
  grant: OnboardingGrant;
  device: Uint8Array;
}

export interface AddressRecord {
  description: string;
}

const enum RecordKind {
  Address = 1,
  Device = 2,
  Grant = 3,
  Redemption = 4,
  Redeemed = 5,
}

/** "/" alone is the prefix of every address. */
export function checkPrefix(prefix: string): void {
  if (prefix !== '/') checkAddress(prefix);
}

function writePermissions(writer: Writer, permissions: Permissions): void {
  for (const list of [permissions.pub, permissions.sub]) {
    if (list.length > PREFIXES_MAX) throw kalimaError('KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', { prefixes: list.length, max: PREFIXES_MAX });
    writer.varint(list.length);
    for (const prefix of list) {
      checkPrefix(prefix);
      writer.text(prefix);
    }
  }
}

function readPermissions(reader: Reader): Permissions {
  const lists: string[][] = [];
  for (let list = 0; list < 2; list++) {
    const count = reader.varint();
    if (count > PREFIXES_MAX) throw kalimaError('KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', { prefixes: count });
    const prefixes: string[] = [];
    for (let index = 0; index < count; index++) {
      const prefix = reader.text(256);
      checkPrefix(prefix);
      prefixes.push(prefix);
    }
    lists.push(prefixes);
  }
  return { pub: lists[0]!, sub: lists[1]! };
}

export function encodeAddressRecord(record: AddressRecord): Uint8Array {
  return new Writer().u8(RecordKind.Address).text(record.description).finish();
}

export function encodeDeviceRecord(record: DeviceRecord): Uint8Array {
  const writer = new Writer().u8(RecordKind.Device).text(record.name);
  writePermissions(writer, record);
  return writer.finish();
}

export function encodeGrant(grant: OnboardingGrant): Uint8Array {
  const writer = new Writer().u8(RecordKind.Grant).text(grant.name);
  writePermissions(writer, grant);
  return writer.varint(grant.expiresAtMs).finish();
}

/** What the code signs: the chain and the device that redeems it. */
export function redemptionHash(chain: string, device: Uint8Array): Uint8Array {
  return taggedHash(TAG.onboarding, new Writer(80).text(chain).fixed(device, 32).finish());
}

export function encodeRedemption(codeSignature: Uint8Array): Uint8Array {
  return new Writer().u8(RecordKind.Redemption).fixed(codeSignature, 64).finish();
}

export function encodeRedeemed(redeemed: RedeemedGrant): Uint8Array {
  return new Writer().u8(RecordKind.Redeemed).bytes(encodeGrant(redeemed.grant)).fixed(redeemed.device, 32).finish();
}

export type ReservedRecord =
  | { kind: 'address'; record: AddressRecord }
  | { kind: 'device'; record: DeviceRecord }
  | { kind: 'grant'; record: OnboardingGrant }
  | { kind: 'redemption'; codeSignature: Uint8Array }
  | { kind: 'redeemed'; record: RedeemedGrant };

/** Decodes any reserved-address body; throws KALIMA_ERR_LEDGER_BAD_RESERVED_BODY when malformed. */
export function decodeReservedRecord(bytes: Uint8Array): ReservedRecord {
  try {
    const reader = new Reader(bytes);
    const kind = reader.u8();
    let result: ReservedRecord;
    switch (kind) {
      case RecordKind.Address:
        result = { kind: 'address', record: { description: reader.text(DESCRIPTION_BYTES_MAX) } };
        break;
      case RecordKind.Device: {
        const name = reader.text(NAME_BYTES_MAX);
        result = { kind: 'device', record: { name, ...readPermissions(reader) } };
        break;
      }
      case RecordKind.Grant: {
        const name = reader.text(NAME_BYTES_MAX);
        const permissions = readPermissions(reader);
        result = { kind: 'grant', record: { name, ...permissions, expiresAtMs: reader.varint() } };
        break;
      }
      case RecordKind.Redemption:
        result = { kind: 'redemption', codeSignature: reader.fixed(64) };
        break;
      case RecordKind.Redeemed: {
        const inner = decodeReservedRecord(reader.bytes(4096));
        if (inner.kind !== 'grant') throw kalimaError('KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', { reason: 'redeemed record without a grant' });
        result = { kind: 'redeemed', record: { grant: inner.record, device: reader.fixed(32) } };
        break;
      }
      default:
        throw kalimaError('KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', { kind });
    }
    reader.end();
    return result;
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'KALIMA_ERR_LEDGER_BAD_RESERVED_BODY') throw error;
    throw kalimaError('KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', { reason: error instanceof Error ? error.message : String(error) });
  }
}

/** Who may do what is for admins alone, whatever a device's SUB list says. */
export function isAuthorisationAddress(address: string): boolean {
  return address === DEVICES_ADDRESS || address === ONBOARDING_ADDRESS;
}

/**
 * `prefix` covers `address` when it is the address itself or one of its ancestors. "/" covers every
 * address outside /kalima; a reserved address is covered only by a prefix that names /kalima.
 */
export function prefixCovers(prefix: string, address: string): boolean {
  if (prefix === '/') return !isReservedAddress(address);
  return address === prefix || address.startsWith(`${prefix}/`);
}

/** The address is `prefix` or below it, by path alone (for choosing what a stream carries). */
export function isUnderPath(prefix: string, address: string): boolean {
  return prefix === '/' || address === prefix || address.startsWith(`${prefix}/`);
}

/** What a device's SUB list lets it read: never the authorisation data. */
export function subCovers(sub: readonly string[], address: string): boolean {
  return !isAuthorisationAddress(address) && anyPrefixCovers(sub, address);
}

export function anyPrefixCovers(prefixes: readonly string[], address: string): boolean {
  for (const prefix of prefixes) if (prefixCovers(prefix, address)) return true;
  return false;
}
