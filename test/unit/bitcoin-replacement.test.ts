// BIP-125 replacement of an anchor: the fee bump rules with hand-computed figures (P2TR originals
// have an exact vsize of 154, so their rate is exactly 1000 sat/kvB at 154 sat), the refusals,
// and the small policy that decides when a bump is worth it.
import { Transaction } from 'bitcoinjs-lib';
import { describe, expect, it } from 'vitest';
import { sha256 } from '../../src/ledger/hash.ts';
import { signerFor } from '../../chains/bitcoin/keys.ts';
import { bumpFeeRate, buildReplacement, replacementFeeSat } from '../../chains/bitcoin/replacement.ts';
import { type AnchorTx, type Utxo, buildAnchorTx, feeRateOf } from '../../chains/bitcoin/tx.ts';
import { request, testWallet, walletUtxo } from '../support/bitcoin-wallet.ts';
import { thrownError } from '../support/errors.ts';

const signer = (utxo: Utxo) => signerFor(testWallet, utxo.derivation);

function original(valueSat: bigint, rbf = true): AnchorTx {
  return buildAnchorTx(request('p2tr', [walletUtxo('p2tr', valueSat)], 1000n, { rbf }));
}


describe('buildReplacement', () => {
  it('the original: 154 vbytes, 154 sat, 1000 sat/kvB', () => {
    const tx = original(100_000n);
    expect([tx.vsize, tx.feeSat, feeRateOf(tx)]).toEqual([154, 154n, 1000n]);
  });

  it.each([
    // rule 4: original fee 154 + 1000 sat/kvB × 154 vbytes = 308, whatever lower rate is asked
    { rate: 1001n, fee: 308n },
    { rate: 1500n, fee: 308n },
    { rate: 2000n, fee: 308n },
    // above that the asked rate decides: ceil(rate × 154 / 1000)
    { rate: 2001n, fee: 309n }, // 308.154
    { rate: 5000n, fee: 770n },
  ])('at $rate sat/kvB pays $fee sat', ({ rate, fee }) => {
    const tx = original(100_000n);
    expect(replacementFeeSat(tx, rate)).toBe(fee);
    const bumped = buildReplacement({ original: tx, feeRateSatPerKvB: rate, signer });
    expect(bumped.feeSat).toBe(fee);
    expect(bumped.feeSat - tx.feeSat).toBeGreaterThanOrEqual(154n); // incremental relay fee × new vsize
    expect(feeRateOf(bumped)).toBeGreaterThan(feeRateOf(tx));
    expect(bumped.changeValueSat).toBe(100_000n - fee);
  });

  it('spends the same inputs to the same outputs, signals BIP-125, and is a new transaction', () => {
    const tx = original(100_000n);
    const bumped = buildReplacement({ original: tx, feeRateSatPerKvB: 3000n, signer });
    const [before, after] = [Transaction.fromHex(tx.hex), Transaction.fromHex(bumped.hex)];
    expect(after.ins.map((input) => [Buffer.from(input.hash).toString('hex'), input.index]))
      .toEqual(before.ins.map((input) => [Buffer.from(input.hash).toString('hex'), input.index]));
    expect(after.ins.map((input) => input.sequence)).toEqual([0xfffffffd]);
    expect(after.outs[0]!.script).toEqual(before.outs[0]!.script);
    expect(after.outs[1]!.script).toEqual(before.outs[1]!.script);
    expect(bumped.txid).not.toBe(tx.txid);
    expect(bumped.locktime).toBe(tx.locktime);
  });

  it('may carry a newer commitment', () => {
    const newer = sha256(new TextEncoder().encode('newer'));
    const bumped = buildReplacement({ original: original(100_000n), feeRateSatPerKvB: 3000n, signer, commitment: newer });
    expect(Buffer.from(Transaction.fromHex(bumped.hex).outs[0]!.script.subarray(2)).equals(Buffer.from(newer))).toBe(true);
  });

  it('a rate not above the original\'s is BAD_REPLACEMENT', () => {
    const tx = original(100_000n);
    expect(thrownError(() => buildReplacement({ original: tx, feeRateSatPerKvB: 1000n, signer })))
      .toEqual({ code: 'KALIMA_ERR_BITCOIN_BAD_REPLACEMENT', details: { txid: tx.txid, feeRateSatPerKvB: 1000, originalFeeRateSatPerKvB: 1000 } });
  });

  it('an original that does not signal BIP-125 is BAD_REPLACEMENT', () => {
    expect(thrownError(() => buildReplacement({ original: original(100_000n, false), feeRateSatPerKvB: 5000n, signer })).code)
      .toBe('KALIMA_ERR_BITCOIN_BAD_REPLACEMENT');
  });

  it('a change that cannot pay the bump and stay above dust is INSUFFICIENT_FUNDS', () => {
    // P2TR dust is 330: a replacement paying 308 needs 638 sat in.
    const enough = original(638n);
    expect(buildReplacement({ original: enough, feeRateSatPerKvB: 2000n, signer }).changeValueSat).toBe(330n);
    const short = original(637n);
    expect(thrownError(() => buildReplacement({ original: short, feeRateSatPerKvB: 2000n, signer })))
      .toEqual({ code: 'KALIMA_ERR_BITCOIN_INSUFFICIENT_FUNDS', details: { replacing: short.txid, neededSat: 638, availableSat: 637 } });
  });
});

describe('bumpFeeRate', () => {
  const tx = original(100_000n);
  it.each([
    { name: 'no estimate', estimate: undefined, policy: {}, rate: undefined },
    { name: 'an estimate below 125 % of the rate', estimate: 1249n, policy: {}, rate: undefined },
    { name: 'an estimate at 125 %', estimate: 1250n, policy: {}, rate: 1250n },
    { name: 'a high estimate, capped', estimate: 9000n, policy: { maxFeeRateSatPerKvB: 3000n }, rate: 3000n },
    { name: 'a cap at or below the rate paid', estimate: 9000n, policy: { maxFeeRateSatPerKvB: 1000n }, rate: undefined },
    { name: 'a factor of 110 %', estimate: 1100n, policy: { bumpPercent: 110 }, rate: 1100n },
  ])('$name: $rate', ({ estimate, policy, rate }) => {
    expect(bumpFeeRate(tx, estimate, policy)).toBe(rate);
  });

  it('never bumps an anchor that does not signal BIP-125', () => {
    expect(bumpFeeRate(original(100_000n, false), 50_000n)).toBeUndefined();
  });
});
