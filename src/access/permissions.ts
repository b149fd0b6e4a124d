// Who may write and read what. Admins (from the genesis file) may do anything. A device is
// registered by an admin at /kalima/devices or by redeeming a one-time onboarding code; its PUB
// prefixes say where it may write, its SUB prefixes what it may read and be notified about.
import { fromHex, toHex } from '../ledger/hash.ts';
import type { StateReader } from '../state/memcache.ts';
import {
  ADDRESSES_ADDRESS, DEVICES_ADDRESS, ONBOARDING_ADDRESS, type Permissions, decodeReservedRecord, isReservedAddress, subCovers,
} from './records.ts';
import { kalimaError } from '../errors.ts';
import type { Clock } from '../ports.ts';
import { GRANTS_ADDRESS, decodeGrant } from './market.ts';

export type DeviceRole = { kind: 'admin' } | { kind: 'device'; permissions: Permissions } | { kind: 'unknown' };

export interface AccessPolicy {
  admins: ReadonlySet<string>;
  /**
   * The reader's clock, on the paths that serve reads: a device's SUB list then includes the
   * marketplace grants that have not ended by it. Execution leaves it out (it never reads SUB).
   */
  clock?: Clock;
}

export function adminSet(admins: readonly Uint8Array[]): ReadonlySet<string> {
  return new Set(admins.map(toHex));
}

const decodedPermissions = new WeakMap<object, Permissions | null>();

function permissionsOfEntryValue(entry: { value: Uint8Array }): Permissions | undefined {
  let cached = decodedPermissions.get(entry);
  if (cached === undefined) {
    try {
      const record = decodeReservedRecord(entry.value);
      cached = record.kind === 'device' ? record.record : record.kind === 'redeemed' ? record.record.grant : null;
    } catch {
      cached = null;
    }
    decodedPermissions.set(entry, cached);
  }
  return cached ?? undefined;
}

const decodedGrants = new WeakMap<object, { prefix: string; untilMs: number } | null>();

function grantOfEntryValue(entry: { value: Uint8Array }): { prefix: string; untilMs: number } | undefined {
  let cached = decodedGrants.get(entry);
  if (cached === undefined) {
    try {
      const grant = decodeGrant(entry.value);
      cached = { prefix: grant.prefix, untilMs: grant.untilMs };
    } catch {
      cached = null;
    }
    decodedGrants.set(entry, cached);
  }
  return cached ?? undefined;
}

/** The device's SUB list with the prefixes of its grants that have not ended at `nowMs`. */
function withGrants(state: StateReader, deviceHex: string, permissions: Permissions, nowMs: number): Permissions {
  const keys = state.grantKeysOf?.(deviceHex);
  if (keys === undefined) return permissions;
  const granted: string[] = [];
  for (const key of keys) {
    const entry = state.getEntry(GRANTS_ADDRESS, key);
    const grant = entry === undefined ? undefined : grantOfEntryValue(entry);
    if (grant !== undefined && grant.untilMs > nowMs && !permissions.sub.includes(grant.prefix)) granted.push(grant.prefix);
  }
  return granted.length === 0 ? permissions : { pub: permissions.pub, sub: [...permissions.sub, ...granted] };
}

export function roleOf(state: StateReader, policy: AccessPolicy, deviceHex: string): DeviceRole {
  const role = registeredRole(state, policy, deviceHex);
  if (role.kind !== 'device' || policy.clock === undefined) return role;
  return { kind: 'device', permissions: withGrants(state, deviceHex, role.permissions, policy.clock.nowMs()) };
}

function registeredRole(state: StateReader, policy: AccessPolicy, deviceHex: string): DeviceRole {
  if (policy.admins.has(deviceHex)) return { kind: 'admin' };
  const registered = state.getEntry(DEVICES_ADDRESS, deviceHex);
  if (registered !== undefined) {
    const permissions = permissionsOfEntryValue(registered);
    if (permissions !== undefined) return { kind: 'device', permissions };
  }
  const codeId = state.redeemedCodeOf(deviceHex);
  if (codeId !== undefined) {
    const redeemed = state.getEntry(ONBOARDING_ADDRESS, codeId);
    const permissions = redeemed === undefined ? undefined : permissionsOfEntryValue(redeemed);
    if (permissions !== undefined) return { kind: 'device', permissions };
  }
  return { kind: 'unknown' };
}

export function addressExists(state: StateReader, address: string): boolean {
  return isReservedAddress(address) || state.getEntry(ADDRESSES_ADDRESS, address) !== undefined;
}

/** Throws the coded error unless the device may read (and be notified about) the address. */
export function checkRead(state: StateReader, policy: AccessPolicy, deviceHex: string, address: string): void {
  const role = roleOf(state, policy, deviceHex);
  if (role.kind === 'admin') return;
  if (role.kind === 'unknown') throw kalimaError('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE', { device: deviceHex });
  if (!subCovers(role.permissions.sub, address)) throw kalimaError('KALIMA_ERR_ACCESS_SUB_DENIED', { device: deviceHex, address });
}

/** True when the device may read the address; for filtering lists and event streams. */
export function mayRead(state: StateReader, policy: AccessPolicy, deviceHex: string, address: string): boolean {
  const role = roleOf(state, policy, deviceHex);
  return role.kind === 'admin' || (role.kind === 'device' && subCovers(role.permissions.sub, address));
}

export function deviceIdFromHex(hex: string): Uint8Array | undefined {
  const bytes = fromHex(hex);
  return bytes !== undefined && bytes.length === 32 ? bytes : undefined;
}
