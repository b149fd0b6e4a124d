// The simulated Lightning network the LND stand-ins share: one block height (moved by `mine`), the
// nodes (identity key, invoices, payments; kept across a stand-in's restarts as LND keeps them in
// its database), and direct channels with a balance on each side. A payment goes over the channel
// between payer and payee (no multi-hop routing, no fees): the amount leaves the payer's side as an
// HTLC and lands on the payee's when the invoice settles, or comes back when it fails or is canceled.
import { getPublicKey } from '@noble/secp256k1';
import { toHex } from '../../src/ledger/hash.ts';
import type { Clock, Rng } from '../../src/ports.ts';
import { systemClock, systemRng } from '../../src/ports.ts';
import { InvoiceRegistry, sha256 } from './invoices.ts';
import { PaymentStore, type FailureReason, type StoredPayment } from './payments.ts';
import { encodePaymentRequest, type DecodedPaymentRequest } from './payreq.ts';

export interface LndNode {
  readonly alias: string;
  /** Compressed, hex. */
  readonly publicKey: string;
  readonly privateKey: Uint8Array;
  /** The admin macaroon, hex. */
  readonly macaroon: string;
  readonly invoices: InvoiceRegistry;
  readonly payments: PaymentStore;
  /** Whether its stand-in is serving: an offline node receives no HTLC and runs no block handling. */
  online: boolean;
}

export interface Channel {
  /** Short channel id, numeric (as lnrpc's uint64 chan_id). */
  readonly id: string;
  readonly capacitySat: bigint;
  readonly nodes: readonly [string, string];
  /** Each side's spendable balance, msat, by node key. */
  readonly balanceMsat: Map<string, bigint>;
  /** HTLCs out on the channel: from whom, how much, until which height, and how the payer takes it back. */
  readonly htlcs: Set<{ from: string; amountMsat: bigint; expiryHeight: number; timeOut: () => void }>;
}

export interface ChannelBalances {
  localMsat: bigint;
  remoteMsat: bigint;
  unsettledLocalMsat: bigint;
  unsettledRemoteMsat: bigint;
}

export interface LndNetworkOptions {
  clock?: Clock;
  rng?: Rng;
  /** The chain height to start at (default 100). */
  height?: number;
}

type NodeRef = LndNode | { readonly node: LndNode };
const nodeOf = (ref: NodeRef): LndNode => ('node' in ref ? ref.node : ref);

export class LndNetwork {
  readonly clock: Clock;
  readonly rng: Rng;
  private currentHeight: number;
  private readonly nodes = new Map<string, LndNode>();
  private readonly channels: Channel[] = [];
  private htlcIndex = 0;

  constructor(options: LndNetworkOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.rng = options.rng ?? systemRng;
    this.currentHeight = options.height ?? 100;
  }

  get height(): number {
    return this.currentHeight;
  }

  /** A stand-in hash for the block at the current height (the chain itself is not simulated). */
  get blockHash(): string {
    return toHex(sha256(Buffer.from(`kalima-lnd-standin-block-${this.currentHeight}`)));
  }

  /**
   * Mines `blocks` blocks; every online node's invoice registry sees each one. An HTLC still out at
   * its expiry height (its payee was down while the expiry margin passed) goes back to the payer,
   * as LND takes it back on chain; the force close itself is not simulated, the channel stays.
   * Returns the new height.
   */
  mine(blocks = 1): number {
    for (let i = 0; i < blocks; i++) {
      this.currentHeight++;
      for (const node of this.nodes.values()) if (node.online) node.invoices.onBlock(this.currentHeight);
      for (const channel of this.channels) {
        for (const htlc of [...channel.htlcs]) if (this.currentHeight >= htlc.expiryHeight) htlc.timeOut();
      }
    }
    return this.currentHeight;
  }

  /** A new node with a fresh identity key and macaroon, drawn from the network's rng. */
  createNode(alias: string): LndNode {
    const privateKey = this.rng.bytes(32);
    const publicKey = toHex(getPublicKey(privateKey, true));
    const nowSeconds = () => Math.floor(this.clock.nowMs() / 1000);
    const invoices = new InvoiceRegistry(
      nowSeconds,
      () => this.currentHeight,
      (invoice) => encodePaymentRequest({
        hash: invoice.hash.toString('hex'), secret: invoice.paymentAddr.toString('hex'), description: invoice.memo,
        ...(invoice.descriptionHash.length > 0 ? { descriptionHash: invoice.descriptionHash.toString('hex') } : {}),
        amountMsat: invoice.valueMsat, timestamp: invoice.creationDate, expirySeconds: invoice.expirySeconds, cltvDelta: invoice.cltvDelta,
      }, privateKey),
      (length) => Buffer.from(this.rng.bytes(length)),
    );
    const node: LndNode = {
      alias, publicKey, privateKey, macaroon: toHex(this.rng.bytes(32)), invoices,
      payments: new PaymentStore(() => BigInt(this.clock.nowMs()) * 1_000_000n), online: false,
    };
    this.nodes.set(publicKey, node);
    return node;
  }

  /**
   * Opens a channel from `from` to `to` (active at once; no funding transaction is simulated):
   * `from` holds `capacitySat - pushSat`, `to` holds `pushSat`.
   */
  openChannel(from: NodeRef, to: NodeRef, options: { capacitySat: number | bigint; pushSat?: number | bigint }): Channel {
    const [a, b] = [nodeOf(from), nodeOf(to)];
    const capacity = BigInt(options.capacitySat);
    const push = BigInt(options.pushSat ?? 0);
    if (a === b || capacity <= 0n || push < 0n || push > capacity) throw new Error('openChannel: two distinct nodes, a positive capacity and a push within it');
    // A short channel id as BOLT 7 lays it out: block height (3 bytes), transaction index (3), output (2).
    const id = ((BigInt(this.currentHeight) << 40n) | (BigInt(this.channels.length + 1) << 16n)).toString();
    const channel: Channel = {
      id, capacitySat: capacity, nodes: [a.publicKey, b.publicKey],
      balanceMsat: new Map([[a.publicKey, (capacity - push) * 1000n], [b.publicKey, push * 1000n]]), htlcs: new Set(),
    };
    this.channels.push(channel);
    return channel;
  }

  /** The node's channels, each with its peer and whether that peer is up (LND's active channels). */
  channelsOf(ref: NodeRef): { channel: Channel; peer: string; active: boolean }[] {
    const node = nodeOf(ref);
    return this.channels.filter((channel) => channel.nodes.includes(node.publicKey)).map((channel) => {
      const peer = channel.nodes[0] === node.publicKey ? channel.nodes[1] : channel.nodes[0];
      return { channel, peer, active: this.nodes.get(peer)?.online === true };
    });
  }

  /** What LND's ChannelBalance sums up for a node. */
  balances(ref: NodeRef): ChannelBalances {
    const node = nodeOf(ref);
    const result: ChannelBalances = { localMsat: 0n, remoteMsat: 0n, unsettledLocalMsat: 0n, unsettledRemoteMsat: 0n };
    for (const channel of this.channels) {
      if (!channel.nodes.includes(node.publicKey)) continue;
      const peer = channel.nodes[0] === node.publicKey ? channel.nodes[1] : channel.nodes[0];
      result.localMsat += channel.balanceMsat.get(node.publicKey)!;
      result.remoteMsat += channel.balanceMsat.get(peer)!;
      for (const htlc of channel.htlcs) {
        if (htlc.from === node.publicKey) result.unsettledLocalMsat += htlc.amountMsat;
        else result.unsettledRemoteMsat += htlc.amountMsat;
      }
    }
    return result;
  }

  /**
   * Starts paying `request` from `payer`: the payment is recorded IN_FLIGHT at once (or LND's error
   * for a hash already paid or being paid is thrown), and its HTLC goes out on the next turn of the
   * event loop, so a caller can send the first update before the outcome.
   */
  sendPayment(payer: LndNode, request: string, decoded: DecodedPaymentRequest, amountMsat: bigint): StoredPayment {
    const payment = payer.payments.begin(decoded.hash, request, amountMsat);
    setImmediate(() => this.route(payer, payment, decoded));
    return payment;
  }

  private route(payer: LndNode, payment: StoredPayment, decoded: DecodedPaymentRequest): void {
    const payee = this.nodes.get(decoded.destination);
    const channel = payee && this.channels.find((c) => c.nodes.includes(payer.publicKey) && c.nodes.includes(payee.publicKey));
    if (!payee || !channel || !payee.online) {
      payer.payments.fail(payment, 'FAILURE_REASON_NO_ROUTE');
      return;
    }
    const amount = payment.valueMsat;
    if (channel.balanceMsat.get(payer.publicKey)! < amount) {
      payer.payments.fail(payment, 'FAILURE_REASON_INSUFFICIENT_BALANCE');
      return;
    }
    const expiryHeight = this.currentHeight + decoded.cltvDelta;
    const paymentAddr = Buffer.from(decoded.secret, 'hex');
    let released = false;
    /** The HTLC ends once: settled (preimage), failed back by the payee, or timed out at its expiry height. */
    const release = (preimage: Buffer | null, reason: FailureReason = 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS') => {
      if (released) return;
      released = true;
      channel.htlcs.delete(htlc);
      const to = preimage ? payee.publicKey : payer.publicKey;
      channel.balanceMsat.set(to, channel.balanceMsat.get(to)! + amount);
      if (preimage) payer.payments.succeed(payment, preimage);
      else payer.payments.fail(payment, reason);
    };
    const htlc = { from: payer.publicKey, amountMsat: amount, expiryHeight, timeOut: () => release(null, 'FAILURE_REASON_ERROR') };
    channel.balanceMsat.set(payer.publicKey, channel.balanceMsat.get(payer.publicKey)! - amount);
    channel.htlcs.add(htlc);
    payer.payments.sent(payment, { chanId: channel.id, capacitySat: channel.capacitySat, destination: payee.publicKey, expiryHeight, paymentAddr });
    payee.invoices.receive({
      hash: Buffer.from(decoded.hash, 'hex'), paymentAddr, amountMsat: amount, expiryHeight, chanId: channel.id, htlcIndex: ++this.htlcIndex,
      release: (preimage) => release(preimage),
    });
  }
}
