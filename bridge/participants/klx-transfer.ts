// The Kalima channel participant: a KLX transfer made atomic with the rest of a transaction through
// a temporary transfer address, `escrow.<payer>.<base>`, owned by the payer's key.
//   prepare  locks the amount: <payer>.<base>.lock moves it from the payer to the escrow account
//   commit   pays the recipient: <payer>.<base>.pay moves it from the escrow account to the recipient,
//            unless the buyer's HTLC can no longer be settled (then it releases the lock as an abort
//            would); reports to the delivery gate what became of it, and the settlement follows
//   abort    releases it: <payer>.<base>.back moves it back to the payer; with no lock on the chain,
//            a void under <payer>.<base>.lock takes its id first, so a lock still in flight can never land
// Transfer ids are used once on the chain and only their signer may use its own, so every step is
// idempotent: a retry is refused as a duplicate, and each step first looks at what the chain holds.
import { isKalimaError } from '../../src/errors.ts';
import { Reader, Writer } from '../../src/ledger/codec.ts';
import type { KeyPair } from '../../src/ledger/signature.ts';
import { KLX_TRANSFERS_ADDRESS, decodeTransfer, encodeTransfer, escrowAccount, transferKey } from '../../src/state/klx.ts';
import { toHex } from '../../src/ledger/hash.ts';
import type { ChainAccess } from '../chain.ts';
import type { Participant, ParticipantFactory, ParticipantState, PrepareVote } from '../participant.ts';
import { type DeliveryGate, type DeliveryGuard, isPermanentRefusal } from './delivery.ts';
import type { Logger } from '../../src/ports.ts';

export const KLX_PARTICIPANT = 'klx-transfer';

/** Transfer records of the bridge are kept this long, far beyond any transaction's life. */
const RECORD_TTL_SECONDS = 30 * 86_400;

/** Refusals that mean the lock can never be made: the vote is no. */
const CANNOT_LOCK = ['KALIMA_ERR_KLX_INSUFFICIENT_FUNDS', 'KALIMA_ERR_KLX_NOT_OWNER', 'KALIMA_ERR_KLX_BAD_TRANSFER', 'KALIMA_ERR_KLX_TRANSFER_EXPIRED', 'KALIMA_ERR_ACCESS_UNKNOWN_DEVICE'] as const;

export interface KlxTransferArgs {
  /** The id base of the transfers (and of the escrow account): lower-case, at most 56 characters. */
  base: string;
  from: string;
  to: string;
  amount: number;
}

export function encodeKlxArgs(args: KlxTransferArgs): Uint8Array {
  return new Writer().text(args.base).text(args.from).text(args.to).varint(args.amount).finish();
}

export function decodeKlxArgs(bytes: Uint8Array): KlxTransferArgs {
  const reader = new Reader(bytes);
  const args = { base: reader.text(56), from: reader.text(128), to: reader.text(128), amount: reader.varint() };
  reader.end();
  return args;
}

export interface KlxDeps {
  chain: ChainAccess;
  /** The payer's key: it owns `from` and the escrow account. */
  payer: KeyPair;
  gate: DeliveryGate;
  guard: DeliveryGuard;
  logger: Logger;
}

type LockState = 'none' | 'void' | 'locked';

export class KlxTransferParticipant implements Participant {
  private readonly escrow: string;
  private readonly payerHex: string;

  constructor(private readonly deps: KlxDeps, private readonly args: KlxTransferArgs, private readonly txId: string) {
    this.payerHex = toHex(deps.payer.publicKey);
    this.escrow = escrowAccount(this.payerHex, args.base);
  }

  private id(step: 'lock' | 'pay' | 'back'): string {
    return transferKey(this.payerHex, `${this.args.base}.${step}`);
  }

  private has(step: 'pay' | 'back'): boolean {
    return this.deps.chain.entry(KLX_TRANSFERS_ADDRESS, this.id(step)) !== undefined;
  }

  private lockState(): LockState {
    const entry = this.deps.chain.entry(KLX_TRANSFERS_ADDRESS, this.id('lock'));
    if (entry === undefined) return 'none';
    return decodeTransfer(entry.value).amount === 0 ? 'void' : 'locked';
  }

  /** Writes a transfer; a duplicate id means it (or the void that took its id) is on the chain. */
  private async transfer(step: 'lock' | 'pay' | 'back', from: string, to: string, amount: number): Promise<'written' | 'taken'> {
    try {
      await this.deps.chain.write(this.deps.payer, { address: KLX_TRANSFERS_ADDRESS, key: this.id(step), ttlSeconds: RECORD_TTL_SECONDS, body: encodeTransfer({ from, to, amount }) });
      return 'written';
    } catch (error) {
      if (isKalimaError(error, 'KALIMA_ERR_KLX_DUPLICATE_TRANSFER')) return 'taken';
      throw error;
    }
  }

  async prepare(): Promise<PrepareVote> {
    for (;;) {
      const state = this.lockState();
      if (state === 'locked') return 'yes';
      if (state === 'void') return { vote: 'no', reason: 'aborted before the lock' };
      try {
        if ((await this.transfer('lock', this.args.from, this.escrow, this.args.amount)) === 'written') return 'yes';
      } catch (error) {
        const code = CANNOT_LOCK.find((candidate) => isKalimaError(error, candidate));
        if (code !== undefined) return { vote: 'no', reason: `the lock was refused: ${code}` };
        throw error;
      }
    }
  }

  async commit(): Promise<void> {
    const { gate, guard, logger } = this.deps;
    if (this.has('pay')) {
      gate.report(this.txId, { outcome: 'delivered' });
      return;
    }
    let refusal = gate.settled(this.txId)?.outcome === 'refused' ? 'refused before' : await guard(this.txId);
    if (refusal === undefined) {
      try {
        await this.transfer('pay', this.escrow, this.args.to, this.args.amount);
        gate.report(this.txId, { outcome: 'delivered' });
        return;
      } catch (error) {
        if (!isPermanentRefusal(error)) throw error;
        refusal = `the chain refused the payment: ${(error as { code: string }).code}`;
      }
    }
    // Compensated: nothing is delivered, so the lock goes back and the HTLC is cancelled.
    logger.warn({ transfer: this.args.base, reason: refusal }, 'market: a KLX delivery was refused after the commit decision; the lock is released and the HTLC cancelled');
    await this.abort();
    gate.report(this.txId, { outcome: 'refused', reason: refusal });
  }

  async abort(): Promise<void> {
    for (;;) {
      const state = this.lockState();
      if (state === 'void') return;
      if (state === 'none') {
        if ((await this.transfer('lock', this.args.from, this.args.from, 0)) === 'written') return;
        continue;
      }
      if (this.has('back')) return;
      await this.transfer('back', this.escrow, this.args.from, this.args.amount);
      return;
    }
  }

  async inquire(): Promise<ParticipantState> {
    if (this.has('pay')) {
      // Recovery skips a commit answered committed: the settlement still needs to hear of it.
      this.deps.gate.report(this.txId, { outcome: 'delivered' });
      return 'committed';
    }
    const state = this.lockState();
    if (state === 'void' || this.has('back')) return 'aborted';
    return state === 'locked' ? 'prepared' : 'unknown';
  }
}

export function klxParticipantFactory(deps: KlxDeps): ParticipantFactory {
  return (args, context) => new KlxTransferParticipant(deps, decodeKlxArgs(args), context.txId);
}
