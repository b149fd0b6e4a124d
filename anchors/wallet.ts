// The anchor engine's wallet, over chains/bitcoin: the keystore's first receive address (to fund
// it) and first change address (where each anchor's change goes, for the next anchor to spend),
// transactions built and signed locally, and raw blocks parsed into what the scan needs.
import { Transaction } from 'bitcoinjs-lib';
import { fromHex, toHex } from '../src/ledger/hash.ts';
import { type AnchorWallet as Keystore, type AddressKind, changeAddress, receiveAddress, signerFor } from '../chains/bitcoin/keys.ts';
import { parseBlock as parseRawBlock } from '../chains/bitcoin/block.ts';
import { type AnchorTx as LibAnchorTx, type Utxo as LibUtxo, type Derivation, CHANGE_VOUT, SEQUENCE_RBF, assembleAnchorTx, buildAnchorTx, dustThresholdSat, feeRateOf } from '../chains/bitcoin/tx.ts';
import { buildReplacement, replacementFeeSat } from '../chains/bitcoin/replacement.ts';
import { kalimaError } from '../src/errors.ts';
import type { EngineWallet, ParsedBlock } from './engine.ts';
import type { AnchorTx, Utxo } from './state.ts';

export class LocalWallet implements EngineWallet {
  readonly scripts: ReadonlySet<string>;
  readonly fundingAddress: string;
  private readonly derivations = new Map<string, Derivation>();
  private readonly changeScript: Uint8Array;
  private readonly changeDerivation: Derivation;

  constructor(private readonly keystore: Keystore, kind: AddressKind, private readonly rbf: boolean) {
    const receive = receiveAddress(keystore, kind, 0);
    const change = changeAddress(keystore, kind, 0);
    this.fundingAddress = receive.address;
    this.changeScript = change.script;
    this.changeDerivation = change.derivation;
    for (const address of [receive, change]) this.derivations.set(toHex(address.script), address.derivation);
    this.scripts = new Set(this.derivations.keys());
  }

  parseBlock(hex: string): ParsedBlock {
    const block = parseRawBlock(hex);
    return {
      hash: block.hashHex,
      prevHash: block.prevHashHex,
      txs: block.transactions.map((tx, index) => ({
        txid: block.txids[index]!,
        coinbase: tx.isCoinbase(),
        inputs: tx.isCoinbase() ? [] : tx.ins.map((input) => `${toHex(Uint8Array.from(input.hash).reverse())}:${input.index}`),
        outputs: tx.outs.map((output) => ({ value: Number(output.value), script: toHex(output.script) })),
      })),
    };
  }

  build(input: { utxos: readonly Utxo[]; commitment: Uint8Array; feeRate: number }): Omit<AnchorTx, 'builtAtHeight'> {
    const built = buildAnchorTx({
      utxos: input.utxos.map((utxo) => this.libUtxo(utxo)), commitment: input.commitment, feeRateSatPerKvB: BigInt(input.feeRate),
      change: { script: this.changeScript, derivation: this.changeDerivation }, signer: (utxo) => signerFor(this.keystore, utxo.derivation), rbf: this.rbf,
    });
    return this.engineTx(built);
  }

  /**
   * A version of `original` with a higher fee that spends the same inputs, so only one of them can
   * ever confirm: a BIP-125 replacement when the original signals it; otherwise (rbf off, and only
   * asked for when no node holds a version, after a refusal for its fee) the same inputs signed again.
   */
  replace(input: { original: AnchorTx; utxos: readonly Utxo[]; feeRate: number }): Omit<AnchorTx, 'builtAtHeight'> {
    const original = this.libTx(input.original, input.utxos);
    const signer = (utxo: LibUtxo) => signerFor(this.keystore, utxo.derivation);
    const feeRateSatPerKvB = BigInt(input.feeRate);
    if (original.rbf) return this.engineTx(buildReplacement({ original, feeRateSatPerKvB, signer }));
    const feeSat = replacementFeeSat(original, feeRateSatPerKvB);
    const availableSat = original.inputs.reduce((sum, utxo) => sum + utxo.valueSat, 0n);
    if (availableSat < feeSat + dustThresholdSat(original.change.script)) {
      throw kalimaError('KALIMA_ERR_BITCOIN_INSUFFICIENT_FUNDS', { replacing: original.txid, neededSat: Number(feeSat + dustThresholdSat(original.change.script)), availableSat: Number(availableSat) });
    }
    return this.engineTx(assembleAnchorTx({ inputs: original.inputs, commitment: original.commitment, change: original.change, feeSat, signer, rbf: false, locktime: original.locktime }));
  }

  private libUtxo(utxo: Utxo): LibUtxo {
    const derivation = this.derivations.get(utxo.script);
    if (derivation === undefined) throw new Error(`assertion failed: wallet: ${utxo.txid}:${utxo.vout} does not pay this wallet`);
    return { txid: utxo.txid, vout: utxo.vout, valueSat: BigInt(utxo.value), script: fromHex(utxo.script)!, derivation };
  }

  private engineTx(tx: LibAnchorTx): Omit<AnchorTx, 'builtAtHeight'> {
    return {
      txid: tx.txid, hex: tx.hex, fee: Number(tx.feeSat), vsize: tx.vsize, feeRate: Number(feeRateOf(tx)),
      inputs: tx.inputs.map((utxo) => `${utxo.txid}:${utxo.vout}`),
      change: { vout: CHANGE_VOUT, value: Number(tx.changeValueSat), script: toHex(tx.change.script) },
    };
  }

  /** The stored transaction as chains/bitcoin describes one, its inputs looked up among the wallet's outputs. */
  private libTx(tx: AnchorTx, utxos: readonly Utxo[]): LibAnchorTx {
    const byOutpoint = new Map(utxos.map((utxo) => [`${utxo.txid}:${utxo.vout}`, utxo]));
    const inputs = tx.inputs.map((outpoint) => {
      const utxo = byOutpoint.get(outpoint);
      if (utxo === undefined) throw new Error(`assertion failed: wallet: input ${outpoint} of ${tx.txid} is not an unspent output of the wallet`);
      return this.libUtxo(utxo);
    });
    const decoded = Transaction.fromHex(tx.hex);
    const commitment = decoded.outs[0]!.script.subarray(2);
    return {
      hex: tx.hex, txid: tx.txid, vsize: tx.vsize, weight: decoded.weight(), feeSat: BigInt(tx.fee), changeValueSat: BigInt(tx.change.value),
      inputs, commitment, change: { script: fromHex(tx.change.script)!, derivation: this.derivations.get(tx.change.script) ?? this.changeDerivation },
      rbf: decoded.ins.every((input) => input.sequence === SEQUENCE_RBF), locktime: decoded.locktime,
    };
  }
}
