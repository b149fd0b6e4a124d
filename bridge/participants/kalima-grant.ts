// The Kalima grant participant of a data purchase: the buyer's SUB access to the listing's
// prefix, written on the chain by the listing's seller.
//   prepare  checks that the grant can be written (the listing is still ours with that prefix, the
//            buyer is a registered device, the access has not ended); it changes nothing
//   commit   writes the grant (idempotent: a grant of this purchase on the chain is enough), unless
//            the buyer's HTLC can no longer be settled; reports to the delivery gate what became of
//            it, and the settlement follows (delivery.ts)
//   abort    nothing to undo: the grant is written only once commit is decided
import { GRANTS_ADDRESS, LISTINGS_ADDRESS, decodeGrant, decodeListing, encodeGrant, grantKey } from '../../src/access/market.ts';
import { roleOf } from '../../src/access/permissions.ts';
import { Reader, Writer } from '../../src/ledger/codec.ts';
import { bytesEqual, toHex } from '../../src/ledger/hash.ts';
import type { KeyPair } from '../../src/ledger/signature.ts';
import type { Clock, Logger } from '../../src/ports.ts';
import type { ChainAccess } from '../chain.ts';
import type { Participant, ParticipantFactory, ParticipantState, PrepareVote } from '../participant.ts';
import { type DeliveryGate, type DeliveryGuard, isPermanentRefusal } from './delivery.ts';
import { TTL_SECONDS_MAX } from '../../src/ledger/limits.ts';

export const GRANT_PARTICIPANT = 'kalima-grant';

/** Extra TTL beyond the grant's end, for the rounding (readers stop at untilMs anyway). */
const TTL_SLACK_SECONDS = 1;

export interface GrantArgs {
  buyerHex: string;
  listing: string;
  prefix: string;
  untilMs: number;
  /** The purchase: the hold invoice's payment hash. */
  purchase: Uint8Array;
}

export function encodeGrantArgs(args: GrantArgs): Uint8Array {
  return new Writer().text(args.buyerHex).text(args.listing).text(args.prefix).varint(args.untilMs).fixed(args.purchase, 32).finish();
}

export function decodeGrantArgs(bytes: Uint8Array): GrantArgs {
  const reader = new Reader(bytes);
  const args = { buyerHex: reader.text(64), listing: reader.text(64), prefix: reader.text(256), untilMs: reader.varint(), purchase: reader.fixed(32) };
  reader.end();
  return args;
}

export interface GrantDeps {
  chain: ChainAccess;
  gate: DeliveryGate;
  guard: DeliveryGuard;
  /** The listing's seller: the key grants are signed with. */
  seller: KeyPair;
  clock: Clock;
  logger: Logger;
}

/** The grant of this purchase, if the chain holds it. */
export function grantOnChain(chain: ChainAccess, args: GrantArgs): boolean {
  const entry = chain.entry(GRANTS_ADDRESS, grantKey(args.buyerHex, args.listing));
  if (entry === undefined) return false;
  try {
    const grant = decodeGrant(entry.value);
    // A later purchase of the same listing extends the same grant: it then covers this one's period.
    return bytesEqual(grant.purchase, args.purchase) || (grant.prefix === args.prefix && grant.untilMs >= args.untilMs);
  } catch {
    return false;
  }
}

export class GrantParticipant implements Participant {
  constructor(private readonly deps: GrantDeps, private readonly args: GrantArgs, private readonly txId: string) {}

  async prepare(): Promise<PrepareVote> {
    const { chain, seller, clock } = this.deps;
    const { args } = this;
    if (grantOnChain(chain, args)) return 'yes';
    const entry = chain.entry(LISTINGS_ADDRESS, args.listing);
    if (entry === undefined) return { vote: 'no', reason: `the listing ${args.listing} is withdrawn` };
    if (!bytesEqual(entry.device, seller.publicKey)) return { vote: 'no', reason: `the listing ${args.listing} has another seller now` };
    if (decodeListing(entry.value).prefix !== args.prefix) return { vote: 'no', reason: `the listing ${args.listing} sells another prefix now` };
    if (roleOf(chain.state, { admins: chain.policy.admins }, args.buyerHex).kind === 'unknown') return { vote: 'no', reason: `the buyer ${args.buyerHex} is not a registered device` };
    if (args.untilMs <= clock.nowMs()) return { vote: 'no', reason: 'the access period is over already' };
    return 'yes';
  }

  async commit(): Promise<void> {
    const { chain, seller, clock, logger, gate, guard } = this.deps;
    const { args, txId } = this;
    if (grantOnChain(chain, args)) {
      gate.report(txId, { outcome: 'delivered' });
      return;
    }
    if (gate.settled(txId)?.outcome === 'refused') return;
    const refuse = (reason: string): void => {
      logger.warn({ purchase: toHex(args.purchase), buyer: args.buyerHex, listing: args.listing, reason }, 'market: the grant was refused after the commit decision; the HTLC is cancelled');
      gate.report(txId, { outcome: 'refused', reason });
    };
    const remainingMs = args.untilMs - clock.nowMs();
    if (remainingMs <= 0) return refuse('the access period ended before the grant could be written');
    const unpayable = await guard(txId);
    if (unpayable !== undefined) return refuse(unpayable);
    // The TTL counts from the block that takes the grant, whose time is at least the newest block's
    // (whatever the leader's clock says): counted from that, it lasts at least to the end.
    const fromTipMs = Math.max(1, args.untilMs - chain.tipTimeMs());
    try {
      await chain.write(seller, {
        address: GRANTS_ADDRESS, key: grantKey(args.buyerHex, args.listing), ttlSeconds: Math.min(TTL_SECONDS_MAX, Math.ceil(fromTipMs / 1000) + TTL_SLACK_SECONDS),
        body: encodeGrant({ listing: args.listing, prefix: args.prefix, untilMs: args.untilMs, purchase: args.purchase }),
      });
    } catch (error) {
      if (!isPermanentRefusal(error) || grantOnChain(chain, args)) throw error;
      return refuse(`the chain refused the grant: ${(error as { code: string }).code}`);
    }
    gate.report(txId, { outcome: 'delivered' });
  }

  async abort(): Promise<void> {
    // prepare wrote nothing, and commit comes only after a commit decision.
  }

  async inquire(): Promise<ParticipantState> {
    if (!grantOnChain(this.deps.chain, this.args)) return 'unknown';
    // Recovery skips the commit of a participant that answers committed: the settlement still
    // needs to hear that the grant was delivered.
    this.deps.gate.report(this.txId, { outcome: 'delivered' });
    return 'committed';
  }
}

export function grantParticipantFactory(deps: GrantDeps): ParticipantFactory {
  return (args, context) => new GrantParticipant(deps, decodeGrantArgs(args), context.txId);
}
