// The anchor transaction builder: sizes and fees against hand-computed figures, the minimum relay
// fee floor, rounding up, dust change and coin selection, the output layout and nSequence, and
// every signature checked by @noble/secp256k1 (not the tiny-secp256k1 that made it).
import * as noble from '@noble/secp256k1';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { payments, script as bitcoinScript, Transaction } from 'bitcoinjs-lib';
import { describe, expect, it } from 'vitest';
import { type AddressKind, changeAddress, signerFor } from '../../chains/bitcoin/keys.ts';
import { CHANGE_VOUT, anchorTxWeight, buildAnchorTx, dustThresholdSat, feeFor, opReturnScript, vsizeOfWeight } from '../../chains/bitcoin/tx.ts';
import { COMMITMENT, request, testWallet, walletUtxo } from '../support/bitcoin-wallet.ts';
import { thrownError } from '../support/errors.ts';

noble.hashes.sha256 = nobleSha256;


const BTC = 100_000_000n;

describe('anchor transaction size', () => {
  // Base bytes: version 4, input count 1, input 41 (outpoint 36, empty scriptSig 1, sequence 4),
  // output count 1, OP_RETURN output 43 (value 8, length 1, 0x6a 0x20 + 32), change (value 8,
  // length 1, P2WPKH script 22 or P2TR 34), locktime 4. Witness: marker and flag 2, then per
  // input P2WPKH 1 + 1 + 71 + 1 + 33 = 107 or P2TR 1 + 1 + 64 = 66.
  it.each([
    { name: '1 P2WPKH in, P2WPKH change', inputs: ['p2wpkh'], change: 'p2wpkh', weight: 4 * 125 + 109, vsize: 153 },
    { name: '1 P2TR in, P2TR change', inputs: ['p2tr'], change: 'p2tr', weight: 4 * 137 + 68, vsize: 154 },
    { name: '2 P2WPKH in, P2WPKH change', inputs: ['p2wpkh', 'p2wpkh'], change: 'p2wpkh', weight: 4 * 166 + 216, vsize: 220 },
    { name: 'P2WPKH and P2TR in, P2TR change', inputs: ['p2wpkh', 'p2tr'], change: 'p2tr', weight: 4 * 178 + 175, vsize: 222 },
  ] as const)('$name: weight $weight, vsize $vsize', ({ inputs, change, weight, vsize }) => {
    const changeScript = changeAddress(testWallet, change, 0).script;
    expect(anchorTxWeight([...inputs], changeScript)).toBe(weight);
    expect(vsizeOfWeight(weight)).toBe(vsize);
  });

  it('dust thresholds are Core\'s: 294 sat for P2WPKH, 330 for P2TR, 546 for P2PKH', () => {
    expect(dustThresholdSat(changeAddress(testWallet, 'p2wpkh', 0).script)).toBe(294n);
    expect(dustThresholdSat(changeAddress(testWallet, 'p2tr', 0).script)).toBe(330n);
    expect(dustThresholdSat(payments.p2pkh({ hash: new Uint8Array(20) }).output!)).toBe(546n);
  });
});

describe('anchor transaction fee', () => {
  it.each([
    { kind: 'p2wpkh', rate: 1000n, fee: 153n },
    { kind: 'p2wpkh', rate: 2000n, fee: 306n },
    { kind: 'p2wpkh', rate: 1500n, fee: 230n }, // 229.5 rounds up
    { kind: 'p2wpkh', rate: 12345n, fee: 1889n }, // 1888.785
    { kind: 'p2wpkh', rate: 500n, fee: 153n }, // raised to the 1000 sat/kvB floor
    { kind: 'p2wpkh', rate: 0n, fee: 153n },
    { kind: 'p2tr', rate: 1000n, fee: 154n },
    { kind: 'p2tr', rate: 2000n, fee: 308n },
    { kind: 'p2tr', rate: 1500n, fee: 231n },
    { kind: 'p2tr', rate: 12345n, fee: 1902n }, // 1901.13
    { kind: 'p2tr', rate: 999n, fee: 154n },
  ] as const)('$kind at $rate sat/kvB pays $fee sat', ({ kind, rate, fee }) => {
    const utxo = walletUtxo(kind, BTC);
    const tx = buildAnchorTx(request(kind, [utxo], rate));
    expect(tx.feeSat).toBe(fee);
    expect(tx.changeValueSat).toBe(BTC - fee);
    expect(feeFor(rate, kind === 'p2wpkh' ? 153 : 154)).toBe(fee);
    // The signed size: exact for P2TR; P2WPKH is one weight unit lighter when S is short.
    const signed = Transaction.fromHex(tx.hex);
    expect(signed.virtualSize()).toBe(tx.vsize);
    if (kind === 'p2tr') expect(tx.vsize).toBe(154);
    else expect([608, 609]).toContain(tx.weight);
  });

  it('a configured minimum relay fee of 0 lets a lower rate through (for tests of refusal)', () => {
    const tx = buildAnchorTx(request('p2wpkh', [walletUtxo('p2wpkh', BTC)], 100n, { policy: { minRelayFeeSatPerKvB: 0n } }));
    expect(tx.feeSat).toBe(16n); // ceil(15.3)
  });
});

describe('coin selection and change', () => {
  it('spends the first UTXO alone when it pays the fee and a change at the dust threshold', () => {
    // P2WPKH at 1000 sat/kvB: fee 153 + dust 294 = 447.
    const exact = walletUtxo('p2wpkh', 447n);
    const tx = buildAnchorTx(request('p2wpkh', [exact, walletUtxo('p2wpkh', BTC, 1)], 1000n));
    expect(tx.inputs).toEqual([exact]);
    expect(tx.changeValueSat).toBe(294n);
  });

  it('adds the next UTXO, in the caller\'s order, when the change would be dust', () => {
    const small = walletUtxo('p2wpkh', 446n);
    const next = walletUtxo('p2wpkh', 10_000n, 1);
    const larger = walletUtxo('p2wpkh', BTC, 2);
    const tx = buildAnchorTx(request('p2wpkh', [small, next, larger], 1000n));
    expect(tx.inputs).toEqual([small, next]);
    expect(tx.feeSat).toBe(220n); // two inputs: vsize 220
    expect(tx.changeValueSat).toBe(446n + 10_000n - 220n);
    const signed = Transaction.fromHex(tx.hex);
    expect(signed.ins.map((input) => Buffer.from(input.hash).reverse().toString('hex'))).toEqual([small.txid, next.txid]);
  });

  it('is INSUFFICIENT_FUNDS with what is needed and what there is', () => {
    const error = thrownError(() => buildAnchorTx(request('p2wpkh', [walletUtxo('p2wpkh', 446n)], 1000n)));
    expect(error).toEqual({ code: 'KALIMA_ERR_BITCOIN_INSUFFICIENT_FUNDS', details: { neededSat: 447, availableSat: 446, utxos: 1 } });
    const two = thrownError(() => buildAnchorTx(request('p2wpkh', [walletUtxo('p2wpkh', 200n), walletUtxo('p2wpkh', 200n, 1)], 1000n)));
    expect(two.details).toEqual({ neededSat: 220 + 294, availableSat: 400, utxos: 2 });
    expect(thrownError(() => buildAnchorTx(request('p2wpkh', [], 1000n))).code).toBe('KALIMA_ERR_BITCOIN_INSUFFICIENT_FUNDS');
  });
});

describe('anchor transaction layout and signatures', () => {
  it.each<AddressKind>(['p2wpkh', 'p2tr'])('%s: one OP_RETURN of the commitment, then the change; every signature verifies', (kind) => {
    const utxos = [walletUtxo(kind, 3n * BTC), walletUtxo(kind, 5_000n, 1)];
    const tx = buildAnchorTx(request(kind, [walletUtxo(kind, 300n, 2), ...utxos], 2000n, { locktime: 500 }));
    const signed = Transaction.fromHex(tx.hex);
    expect(signed.getId()).toBe(tx.txid);
    expect(signed.version).toBe(2);
    expect(signed.locktime).toBe(500);
    expect(signed.outs).toHaveLength(2);
    expect(signed.outs[0]!.value).toBe(0n);
    expect(Buffer.from(signed.outs[0]!.script).toString('hex')).toBe(`6a20${Buffer.from(COMMITMENT).toString('hex')}`);
    expect(Buffer.from(opReturnScript(COMMITMENT)).equals(Buffer.from(signed.outs[0]!.script))).toBe(true);
    expect(signed.outs[CHANGE_VOUT]!.value).toBe(tx.changeValueSat);
    expect(Buffer.from(signed.outs[CHANGE_VOUT]!.script).equals(Buffer.from(tx.change.script))).toBe(true);
    expect(tx.inputs.reduce((sum, utxo) => sum + utxo.valueSat, 0n)).toBe(tx.feeSat + tx.changeValueSat);

    const scripts = tx.inputs.map((utxo) => utxo.script);
    const values = tx.inputs.map((utxo) => utxo.valueSat);
    tx.inputs.forEach((utxo, index) => {
      const witness = signed.ins[index]!.witness;
      if (kind === 'p2wpkh') {
        expect(witness).toHaveLength(2);
        const { signature, hashType } = bitcoinScript.signature.decode(witness[0]!);
        expect(hashType).toBe(Transaction.SIGHASH_ALL);
        expect(witness[0]!.length).toBeLessThanOrEqual(71);
        expect(signature[0]).toBeLessThan(0x80); // low R
        expect(Buffer.from(payments.p2wpkh({ pubkey: witness[1]! }).output!).equals(Buffer.from(utxo.script))).toBe(true);
        const scriptCode = payments.p2pkh({ hash: utxo.script.subarray(2) }).output!;
        const sighash = signed.hashForWitnessV0(index, scriptCode, utxo.valueSat, Transaction.SIGHASH_ALL);
        expect(noble.verify(signature, sighash, witness[1]!, { prehash: false })).toBe(true);
      } else {
        expect(witness).toHaveLength(1);
        expect(witness[0]!.length).toBe(64); // SIGHASH_DEFAULT: no sighash byte
        const sighash = signed.hashForWitnessV1(index, scripts, values, Transaction.SIGHASH_DEFAULT);
        expect(noble.schnorr.verify(witness[0]!, sighash, utxo.script.subarray(2))).toBe(true);
      }
    });
  });

  it.each([
    { rbf: true, sequence: 0xfffffffd },
    { rbf: false, sequence: 0xffffffff },
  ])('rbf $rbf sets nSequence $sequence on every input', ({ rbf, sequence }) => {
    const tx = buildAnchorTx(request('p2wpkh', [walletUtxo('p2wpkh', 300n), walletUtxo('p2wpkh', BTC, 1)], 1000n, { rbf }));
    expect(Transaction.fromHex(tx.hex).ins.map((input) => input.sequence)).toEqual([sequence, sequence]);
    expect(tx.rbf).toBe(rbf);
  });

  it('refuses a signer whose key does not pay the UTXO (a programmer error)', () => {
    const utxo = walletUtxo('p2wpkh', BTC);
    expect(() => buildAnchorTx(request('p2wpkh', [utxo], 1000n, { signer: () => signerFor(testWallet, { kind: 'p2wpkh', change: 0, index: 7 }) })))
      .toThrow(/does not pay/);
  });
});
