// KLX, the chain's token: balances live on the chain, and move only by transfers, so the supply
// issued once is never created or lost afterwards. Bodies in the canonical codec.
//   /kalima/klx/supply     key = "klx"          body = Issue     (an admin issues the supply, once, to a treasury)
//   /kalima/klx/transfers  key = <signer hex>.<id>  body = Transfer  (the owner of `from` moves KLX to `to`)
//   /kalima/klx/accounts   key = account        value = Account  (written by the chain alone, as an effect)
//
// An account is a device id (hex; its device owns it) or a temporary transfer address
// `escrow.<owner hex>.<id>`, owned by the device its name names: bridge/ locks an amount there while
// a two-phase commit is undecided, then pays it on to the recipient (commit) or back (abort). Only
// the owner pays into an escrow account or out of it. An account whose balance falls to 0 is
// deleted. A transfer's key starts with its signer's id, so nobody can take another device's ids;
// each is used once, so a retried transfer is refused as a duplicate instead of paying twice. A
// void (amount 0, from and to the signer's own device account) takes an id and moves nothing: a
// coordinator that gave up on a transfer still in flight voids its id, and then knows it can never
// land. Transfer records are deleted only by their TTL, never by hand, so an id stays taken.
import { kalimaError } from '../errors.ts';
import { Reader, Writer } from '../ledger/codec.ts';
import { fromHex, toHex } from '../ledger/hash.ts';
import { type CommittedMessage, type Message, isDelete } from '../ledger/message.ts';
import { isValidPublicKey } from '../ledger/signature.ts';
import type { CacheEntry } from './entry.ts';
import type { Draft, StateReader } from './memcache.ts';

export const KLX_ROOT = '/kalima/klx';
export const KLX_SUPPLY_ADDRESS = '/kalima/klx/supply';
export const KLX_TRANSFERS_ADDRESS = '/kalima/klx/transfers';
export const KLX_ACCOUNTS_ADDRESS = '/kalima/klx/accounts';
export const KLX_SUPPLY_KEY = 'klx';
/** The most KLX there can be, in its smallest unit (a safe integer, so every sum is exact). */
export const KLX_SUPPLY_MAX = 2 ** 53 - 1;
const TRANSFER_KEY_PATTERN = /^([0-9a-f]{64})\.[a-z0-9][a-z0-9._-]{0,62}$/;
const ESCROW_PATTERN = /^escrow\.([0-9a-f]{64})\.[a-z0-9][a-z0-9._-]{0,59}$/;

const enum KlxKind {
  Issue = 1,
  Transfer = 2,
  Account = 3,
}

export interface KlxIssue {
  treasury: string;
  amount: number;
}

export interface KlxTransfer {
  from: string;
  to: string;
  amount: number;
  /** The transfer is refused in a block whose time is after this (ms; 0 for never): a payment order that expires. */
  notAfterMs?: number;
}

export interface KlxAccount {
  balance: number;
}

function bad(reason: string, details: Record<string, unknown> = {}): never {
  throw kalimaError('KALIMA_ERR_KLX_BAD_TRANSFER', { reason, ...details });
}

export function isEscrowAccount(account: string): boolean {
  return ESCROW_PATTERN.test(account);
}

/** The device that owns an account (hex): the device itself, or the one an escrow account's name names. */
export function ownerOf(account: string): string {
  return ESCROW_PATTERN.exec(account)?.[1] ?? account;
}

/** The escrow account `owner` holds for `id`. */
export function escrowAccount(ownerHex: string, id: string): string {
  return `escrow.${ownerHex}.${id}`;
}

/** The key of `signer`'s transfer `id`. */
export function transferKey(signerHex: string, id: string): string {
  return `${signerHex}.${id}`;
}

function isDeviceAccount(account: string): boolean {
  const key = fromHex(account);
  return key !== undefined && key.length === 32 && toHex(key) === account && isValidPublicKey(key);
}

export function checkAccount(account: string): void {
  if (!isEscrowAccount(account) && !isDeviceAccount(account)) bad('an account is a device id (64 lower-case hex digits) or escrow.<owner device id>.<id>', { account });
}

/** A transfer's key is <signer's device id>.<id>, the id matching ^[a-z0-9][a-z0-9._-]{0,62}$. */
export function checkTransferKey(key: string, signerHex: string): void {
  const match = TRANSFER_KEY_PATTERN.exec(key);
  if (match === null) bad('a transfer\'s key is <signer device id, hex>.<id>, the id matching ^[a-z0-9][a-z0-9._-]{0,62}$', { key });
  if (match[1] !== signerHex) throw kalimaError('KALIMA_ERR_KLX_NOT_OWNER', { key, device: signerHex, reason: 'a transfer\'s key starts with its signer\'s id' });
}

function checkAmount(amount: number): void {
  if (!Number.isSafeInteger(amount) || amount < 1) bad('an amount is a whole number of KLX units, at least 1', { amount });
}

export function encodeIssue(issue: KlxIssue): Uint8Array {
  return new Writer().u8(KlxKind.Issue).text(issue.treasury).varint(issue.amount).finish();
}

export function encodeTransfer(transfer: KlxTransfer): Uint8Array {
  return new Writer().u8(KlxKind.Transfer).text(transfer.from).text(transfer.to).varint(transfer.amount).varint(transfer.notAfterMs ?? 0).finish();
}

export function encodeAccount(account: KlxAccount): Uint8Array {
  return new Writer().u8(KlxKind.Account).varint(account.balance).finish();
}

function decode<T>(bytes: Uint8Array, kind: KlxKind, read: (reader: Reader) => T): T {
  try {
    const reader = new Reader(bytes);
    if (reader.u8() !== kind) bad('not the record this address holds', { kind });
    const value = read(reader);
    reader.end();
    return value;
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'KALIMA_ERR_KLX_BAD_TRANSFER') throw error;
    return bad(error instanceof Error ? error.message : String(error));
  }
}

export function decodeIssue(bytes: Uint8Array): KlxIssue {
  return decode(bytes, KlxKind.Issue, (reader) => ({ treasury: reader.text(128), amount: reader.varint() }));
}

export function decodeTransfer(bytes: Uint8Array): KlxTransfer {
  return decode(bytes, KlxKind.Transfer, (reader) => {
    const transfer: KlxTransfer = { from: reader.text(128), to: reader.text(128), amount: reader.varint() };
    const notAfterMs = reader.varint();
    return notAfterMs === 0 ? transfer : { ...transfer, notAfterMs };
  });
}

export function decodeAccount(bytes: Uint8Array): KlxAccount {
  return decode(bytes, KlxKind.Account, (reader) => ({ balance: reader.varint() }));
}

export function isKlxAddress(address: string): boolean {
  return address === KLX_SUPPLY_ADDRESS || address === KLX_TRANSFERS_ADDRESS || address === KLX_ACCOUNTS_ADDRESS;
}

export function accountOf(state: StateReader, account: string): KlxAccount | undefined {
  const entry = state.getEntry(KLX_ACCOUNTS_ADDRESS, account);
  return entry === undefined ? undefined : decodeAccount(entry.value);
}

/** The supply issued, or 0 before the issue. */
export function issuedSupply(state: StateReader): number {
  const entry = state.getEntry(KLX_SUPPLY_ADDRESS, KLX_SUPPLY_KEY);
  return entry === undefined ? 0 : decodeIssue(entry.value).amount;
}

/**
 * Every check of a message on /kalima/klx/…, changing nothing. `isAdmin` of the writer; the
 * writer is a known device or an admin (the caller checks that first).
 */
export function checkKlxMessage(state: StateReader, message: Message, isAdmin: boolean, blockTimeMs: number): void {
  const deviceHex = toHex(message.device);
  if (message.address === KLX_ACCOUNTS_ADDRESS) bad('balances change only by transfers');
  if (message.address === KLX_SUPPLY_ADDRESS) {
    if (!isAdmin) throw kalimaError('KALIMA_ERR_ACCESS_ADMIN_ONLY', { device: deviceHex, address: message.address });
    if (message.key !== KLX_SUPPLY_KEY || isDelete(message)) bad('the supply is issued once, under the key "klx", and stays', { key: message.key });
    if (state.getEntry(KLX_SUPPLY_ADDRESS, KLX_SUPPLY_KEY) !== undefined) throw kalimaError('KALIMA_ERR_KLX_ALREADY_ISSUED', {});
    if (message.ttlSeconds !== -1) bad('the supply record keeps ttl -1');
    const issue = decodeIssue(message.body);
    if (!isDeviceAccount(issue.treasury)) bad('the treasury is a device account', { treasury: issue.treasury });
    checkAmount(issue.amount);
    return;
  }
  // Transfers: an id stays taken until the record's TTL ends it.
  if (isDelete(message)) bad('a transfer\'s record is never deleted by hand (its TTL ends it), so its id stays taken', { key: message.key });
  checkTransferKey(message.key, deviceHex);
  if (state.getEntry(KLX_TRANSFERS_ADDRESS, message.key) !== undefined) throw kalimaError('KALIMA_ERR_KLX_DUPLICATE_TRANSFER', { transfer: message.key });
  const transfer = decodeTransfer(message.body);
  checkAccount(transfer.from);
  checkAccount(transfer.to);
  if (transfer.amount === 0 && transfer.from === transfer.to && !isEscrowAccount(transfer.from)) {
    // A void: it takes the id, so that a transfer under it can never land, and moves nothing.
    if (transfer.from !== deviceHex) throw kalimaError('KALIMA_ERR_KLX_NOT_OWNER', { account: transfer.from, device: deviceHex });
    return;
  }
  checkAmount(transfer.amount);
  if (transfer.from === transfer.to) bad('a transfer goes to another account (or, with amount 0, is a void of the signer\'s own account)', { account: transfer.from });
  if (transfer.notAfterMs !== undefined && blockTimeMs > transfer.notAfterMs) throw kalimaError('KALIMA_ERR_KLX_TRANSFER_EXPIRED', { transfer: message.key, notAfterMs: transfer.notAfterMs, blockTimeMs });
  const from = accountOf(state, transfer.from);
  if (ownerOf(transfer.from) !== deviceHex) throw kalimaError('KALIMA_ERR_KLX_NOT_OWNER', { account: transfer.from, device: deviceHex });
  if (isEscrowAccount(transfer.to) && ownerOf(transfer.to) !== deviceHex) {
    throw kalimaError('KALIMA_ERR_KLX_NOT_OWNER', { account: transfer.to, device: deviceHex, reason: 'an escrow account takes payments from its owner only' });
  }
  if (from === undefined || from.balance < transfer.amount) throw kalimaError('KALIMA_ERR_KLX_INSUFFICIENT_FUNDS', { account: transfer.from, balance: from?.balance ?? 0, amount: transfer.amount });
}

function accountEntry(account: string, value: KlxAccount, committed: CommittedMessage, messageHash: Uint8Array, at: { height: number; timeMs: number }): CacheEntry {
  return {
    address: KLX_ACCOUNTS_ADDRESS, key: account, value: encodeAccount(value), globalSequence: committed.globalSequence, sequence: committed.sequence,
    height: at.height, timeMs: at.timeMs, ttlSeconds: -1, device: committed.message.device, messageHash, props: [],
  };
}

function setBalance(draft: Draft, account: string, value: KlxAccount, committed: CommittedMessage, messageHash: Uint8Array, at: { height: number; timeMs: number }): void {
  if (value.balance === 0) {
    if (draft.getEntry(KLX_ACCOUNTS_ADDRESS, account) !== undefined) draft.deleteEntry(KLX_ACCOUNTS_ADDRESS, account);
  } else {
    draft.putEntry(accountEntry(account, value, committed, messageHash, at));
  }
}

/** The balances a checked KLX message moves, applied to the draft after the message itself. */
export function applyKlxEffects(draft: Draft, committed: CommittedMessage, messageHash: Uint8Array, at: { height: number; timeMs: number }): void {
  const { message } = committed;
  if (isDelete(message)) return;
  if (message.address === KLX_SUPPLY_ADDRESS) {
    const issue = decodeIssue(message.body);
    setBalance(draft, issue.treasury, { balance: issue.amount }, committed, messageHash, at);
    return;
  }
  if (message.address !== KLX_TRANSFERS_ADDRESS) return;
  const transfer = decodeTransfer(message.body);
  if (transfer.amount === 0) return;
  const from = accountOf(draft, transfer.from)!;
  setBalance(draft, transfer.from, { ...from, balance: from.balance - transfer.amount }, committed, messageHash, at);
  const to = accountOf(draft, transfer.to);
  setBalance(draft, transfer.to, { balance: (to?.balance ?? 0) + transfer.amount }, committed, messageHash, at);
}
