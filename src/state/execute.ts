// Executes one message against a Draft: the chain's state transition. It is deterministic (the
// block time, the leader and the admin set come in through the context), and it either throws a
// coded error and leaves the Draft untouched, or applies every effect of the message.
import { kalimaError } from '../errors.ts';
import { toHex } from '../ledger/hash.ts';
import { type CommittedMessage, type Message, isDelete } from '../ledger/message.ts';
import {
  ADDRESSES_ADDRESS, DEVICES_ADDRESS, ONBOARDING_ADDRESS, anyPrefixCovers, decodeReservedRecord, encodeRedeemed, isReservedAddress, redemptionHash,
} from '../access/records.ts';
import { type AccessPolicy, addressExists, deviceIdFromHex, roleOf } from '../access/permissions.ts';
import { checkAddress } from '../ledger/message.ts';
import { isValidPublicKey, verifySchnorr } from '../ledger/signature.ts';
import type { CacheEntry } from './entry.ts';
import { expiresAtMs } from './entry.ts';
import type { Draft, StateReader } from './memcache.ts';
import { checkNonce, useNonce } from './nonce-window.ts';
import { VALIDATIONS_ADDRESS, checkValidation } from './validation.ts';
import { ANCHORS_ADDRESS, checkAnchorRecord } from './anchor-record.ts';
import { LISTINGS_ADDRESS, type MarketState, checkMarketMessage, decodeListing, isMarketAddress } from '../access/market.ts';
import { applyKlxEffects, checkKlxMessage, isKlxAddress } from './klx.ts';

export interface ExecutionContext extends AccessPolicy {
  chain: string;
  height: number;
  blockTimeMs: number;
  /** The block producer; the only device that may write TTL deletes. */
  leaderHex: string;
  /** The validation nodes of the genesis file (x-only keys, hex): the only writers of /kalima/validations. */
  validators?: ReadonlySet<string>;
  /** The masters of the genesis file (x-only keys, hex): the only writers of /kalima/anchors. */
  masters?: ReadonlySet<string>;
  /** A block's hash by height, where this node knows it: a validation of another hash is refused. */
  blockHashAt?: (height: number) => Uint8Array | undefined;
}

const NO_KEYS: ReadonlySet<string> = new Set();

export const SYSTEM_REASON_PROP = 'reason';
export const SYSTEM_REASON_TTL = 'ttl';

export function isTtlDelete(message: Message, leaderHex: string): boolean {
  return isDelete(message) && message.props.length === 1 && message.props[0]![0] === SYSTEM_REASON_PROP &&
    message.props[0]![1] === SYSTEM_REASON_TTL && toHex(message.device) === leaderHex;
}

/**
 * Every check of `message` against `state`, changing nothing: throws the coded error, or returns
 * the value the message stores (its body, except on reserved addresses that transform it).
 */
export function checkMessage(state: StateReader, message: Message, context: ExecutionContext): Uint8Array {
  if (message.chain !== context.chain) throw kalimaError('KALIMA_ERR_LEDGER_WRONG_CHAIN', { chain: message.chain, expected: context.chain });
  const deviceHex = toHex(message.device);
  const existing = state.getEntry(message.address, message.key);
  let value = message.body;

  if (isTtlDelete(message, context.leaderHex)) {
    // The producer's own deletes: the entry must really have expired by the block's time, and the
    // nonce is the global sequence the delete takes, so it is unique without a replay window.
    const deadline = existing === undefined ? undefined : expiresAtMs(existing);
    if (deadline === undefined || deadline > context.blockTimeMs || message.nonce !== state.nextGlobalSequence) {
      throw kalimaError('KALIMA_ERR_LEDGER_BAD_BLOCK', { height: context.height, reason: 'a TTL delete of an entry that has not expired', address: message.address, key: message.key });
    }
    return value;
  }
  checkNonce(state.nonceWindow(deviceHex), message.nonce);
  if (message.address === VALIDATIONS_ADDRESS) {
    checkValidation(message, existing, { height: context.height, validators: context.validators ?? NO_KEYS, blockHashAt: context.blockHashAt });
    return value;
  }
  if (message.address === ANCHORS_ADDRESS) {
    checkAnchorRecord(message, { chain: context.chain, height: context.height, masters: context.masters ?? NO_KEYS, blockHashAt: context.blockHashAt });
    return value;
  }
  const role = roleOf(state, context, deviceHex);
  const isRedemption = message.address === ONBOARDING_ADDRESS && role.kind !== 'admin' && !isDelete(message);
  if (isRedemption) {
    value = redeem(state, message, deviceHex, existing, context);
  } else if (role.kind === 'unknown') {
    throw kalimaError('KALIMA_ERR_ACCESS_UNKNOWN_DEVICE', { device: deviceHex });
  } else if (isMarketAddress(message.address)) {
    checkMarketMessage(message, marketState(state, context), { blockTimeMs: context.blockTimeMs, existingSellerHex: existing === undefined ? undefined : toHex(existing.device) });
  } else if (isKlxAddress(message.address)) {
    checkKlxMessage(state, message, role.kind === 'admin', context.blockTimeMs);
  } else if (isReservedAddress(message.address)) {
    if (role.kind !== 'admin') throw kalimaError('KALIMA_ERR_ACCESS_ADMIN_ONLY', { device: deviceHex, address: message.address });
    if (!isDelete(message)) checkReservedPut(message);
  } else {
    // PUB first: a device may not learn whether an address outside its PUB list exists.
    if (role.kind === 'device' && !anyPrefixCovers(role.permissions.pub, message.address)) {
      throw kalimaError('KALIMA_ERR_ACCESS_PUB_DENIED', { device: deviceHex, address: message.address });
    }
    if (!addressExists(state, message.address)) throw kalimaError('KALIMA_ERR_ACCESS_UNKNOWN_ADDRESS', { address: message.address });
  }
  if (isDelete(message) && existing === undefined) {
    throw kalimaError('KALIMA_ERR_LEDGER_KEY_NOT_FOUND', { address: message.address, key: message.key });
  }
  return value;
}

/** Validates `message` against the draft and, if it passes, applies it. */
export function executeMessage(draft: Draft, message: Message, messageHash: Uint8Array, context: ExecutionContext): CommittedMessage {
  const value = checkMessage(draft, message, context);
  const deviceHex = toHex(message.device);
  const previous = draft.lastSequence(message.address);
  const committed: CommittedMessage = { message, globalSequence: draft.nextGlobalSequence, sequence: previous + 1, previous };
  draft.nextGlobalSequence++;
  draft.setLastSequence(message.address, committed.sequence);
  if (!isTtlDelete(message, context.leaderHex)) draft.setNonceWindow(deviceHex, useNonce(draft.nonceWindow(deviceHex), message.nonce));
  if (isDelete(message)) {
    draft.deleteEntry(message.address, message.key);
  } else {
    const entry: CacheEntry = {
      address: message.address,
      key: message.key,
      value,
      globalSequence: committed.globalSequence,
      sequence: committed.sequence,
      height: context.height,
      timeMs: context.blockTimeMs,
      ttlSeconds: message.ttlSeconds,
      device: message.device,
      messageHash,
      props: message.props,
    };
    draft.putEntry(entry);
  }
  if (isKlxAddress(message.address)) applyKlxEffects(draft, committed, messageHash, { height: context.height, timeMs: context.blockTimeMs });
  return committed;
}

/** The market's view of the state, for the checks of listings and grants. */
function marketState(state: StateReader, context: ExecutionContext): MarketState {
  return {
    listing(id) {
      const entry = state.getEntry(LISTINGS_ADDRESS, id);
      return entry === undefined ? undefined : { listing: decodeListing(entry.value), sellerHex: toHex(entry.device) };
    },
    isDevice: (deviceHex) => roleOf(state, context, deviceHex).kind !== 'unknown',
    isAdmin: (deviceHex) => context.admins.has(deviceHex),
    mayPublish(deviceHex, address) {
      const role = roleOf(state, context, deviceHex);
      return role.kind === 'admin' || (role.kind === 'device' && anyPrefixCovers(role.permissions.pub, address));
    },
  };
}

/** A device id or code id: an x-only public key in lower-case hex. */
function isCodeId(key: string): boolean {
  const publicKey = deviceIdFromHex(key);
  return publicKey !== undefined && isValidPublicKey(publicKey) && key === toHex(publicKey);
}

function checkReservedPut(message: Message): void {
  const record = decodeReservedRecord(message.body);
  const expect = (kind: string): void => {
    if (record.kind !== kind) throw kalimaError('KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', { address: message.address, expected: kind, got: record.kind });
  };
  switch (message.address) {
    case ADDRESSES_ADDRESS:
      expect('address');
      checkAddress(message.key);
      if (isReservedAddress(message.key)) throw kalimaError('KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', { reason: 'reserved addresses exist already', key: message.key });
      break;
    case DEVICES_ADDRESS:
      expect('device');
      if (!isCodeId(message.key)) throw kalimaError('KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', { reason: 'the key must be the device id in lower-case hex', key: message.key });
      break;
    case ONBOARDING_ADDRESS:
      expect('grant');
      if (!isCodeId(message.key)) throw kalimaError('KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', { reason: 'the key must be the code id: the x-only public key of the code, lower-case hex', key: message.key });
      break;
    default:
      break;
  }
}

/** A device redeems a one-time code: the grant becomes its permissions, and the code is spent. */
function redeem(state: StateReader, message: Message, deviceHex: string, existing: CacheEntry | undefined, context: ExecutionContext): Uint8Array {
  // The admin's grant decides how long access lasts, not the device that redeems it.
  if (message.ttlSeconds !== -1) throw kalimaError('KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', { address: message.address, reason: 'a redemption keeps ttl -1' });
  const record = decodeReservedRecord(message.body);
  if (record.kind !== 'redemption') throw kalimaError('KALIMA_ERR_LEDGER_BAD_RESERVED_BODY', { address: message.address, expected: 'redemption', got: record.kind });
  const grantRecord = existing === undefined ? undefined : decodeReservedRecord(existing.value);
  const codeKey = deviceIdFromHex(message.key);
  if (grantRecord?.kind !== 'grant' || codeKey === undefined || !verifySchnorr(redemptionHash(context.chain, message.device), codeKey, record.codeSignature)) {
    throw kalimaError('KALIMA_ERR_ACCESS_BAD_ONBOARDING_CODE', { codeId: message.key });
  }
  const grant = grantRecord.record;
  if (grant.expiresAtMs !== 0 && context.blockTimeMs >= grant.expiresAtMs) throw kalimaError('KALIMA_ERR_ACCESS_BAD_ONBOARDING_CODE', { codeId: message.key, reason: 'expired' });
  if (roleOf(state, context, deviceHex).kind !== 'unknown') throw kalimaError('KALIMA_ERR_ACCESS_ALREADY_REGISTERED', { device: deviceHex });
  return encodeRedeemed({ grant, device: message.device });
}
