// The anchor wallet: the keystore file (made once, mode 0600, bound to its network, refused when
// corrupt), BIP-84 and BIP-86 derivation against the BIPs' own vectors, the Taproot tweak and
// bitcoinjs-lib's BIP-341 sighash against BIP-341's wallet test vectors.
import { mkdtempSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pbkdf2 } from '@noble/hashes/pbkdf2.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { Transaction, payments } from 'bitcoinjs-lib';
import { describe, expect, it } from 'vitest';
import { KalimaError, type KalimaErrorCode } from '../../src/errors.ts';
import { toHex } from '../../src/ledger/hash.ts';
import {
  changeAddress, derivationPath, openAnchorWallet, receiveAddress, signerFor, tweakTaprootSecret, walletAddress,
} from '../../chains/bitcoin/keys.ts';
import { parseBitcoinNetwork } from '../../chains/bitcoin/network.ts';
import { seededRng, unhex } from './support/seeded-rng.ts';

const regtest = parseBitcoinNetwork('regtest');

function walletFile(): string {
  return join(mkdtempSync(join(tmpdir(), 'kalima-wallet-')), 'keys', 'anchor-wallet.json');
}

async function codeOf(promise: Promise<unknown>): Promise<{ code: KalimaErrorCode; details: Record<string, unknown> }> {
  const error = await promise.then(() => undefined, (caught: unknown) => caught);
  expect(error).toBeInstanceOf(KalimaError);
  return { code: (error as KalimaError).code, details: (error as KalimaError).details };
}

describe('the keystore file', () => {
  it('is made on first use from the injected randomness, 0600 in a 0700 directory', async () => {
    const file = walletFile();
    const rng = seededRng('keystore');
    const expectedSeed = seededRng('keystore').bytes(32);
    const wallet = await openAnchorWallet(file, regtest, rng);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(file, '..')).mode & 0o777).toBe(0o700);
    const json = JSON.parse(readFileSync(file, 'utf8'));
    expect(json).toEqual({ kind: 'kalima-anchor-wallet', version: 1, network: 'regtest', seedHex: toHex(expectedSeed) });
    expect(wallet.network.name).toBe('regtest');
    expect(readFileSync(file, 'utf8').endsWith('\n')).toBe(true);
  });

  it('reloads to the same keys, whatever randomness the second open is given', async () => {
    const file = walletFile();
    const first = await openAnchorWallet(file, regtest, seededRng('a'));
    const again = await openAnchorWallet(file, regtest, seededRng('b'));
    expect(receiveAddress(again, 'p2wpkh', 3).address).toBe(receiveAddress(first, 'p2wpkh', 3).address);
    expect(changeAddress(again, 'p2tr', 1).address).toBe(changeAddress(first, 'p2tr', 1).address);
    const other = await openAnchorWallet(walletFile(), regtest, seededRng('b'));
    expect(receiveAddress(other, 'p2wpkh', 3).address).not.toBe(receiveAddress(first, 'p2wpkh', 3).address);
  });

  it('two processes creating it at once end with one wallet', async () => {
    const file = walletFile();
    const [one, two] = await Promise.all([openAnchorWallet(file, regtest, seededRng('x')), openAnchorWallet(file, regtest, seededRng('y'))]);
    expect(receiveAddress(one, 'p2wpkh', 0).address).toBe(receiveAddress(two, 'p2wpkh', 0).address);
    const onDisk = await openAnchorWallet(file, regtest, seededRng('z'));
    expect(receiveAddress(onDisk, 'p2wpkh', 0).address).toBe(receiveAddress(one, 'p2wpkh', 0).address);
  });

  it('refuses a wallet of another network', async () => {
    const file = walletFile();
    await openAnchorWallet(file, regtest, seededRng('net'));
    const error = await codeOf(openAnchorWallet(file, parseBitcoinNetwork('mainnet'), seededRng('net')));
    expect(error).toEqual({ code: 'KALIMA_ERR_BITCOIN_KEYSTORE_WRONG_NETWORK', details: { file, expected: 'mainnet', found: 'regtest' } });
  });

  it.each([
    { name: 'not JSON', text: '{ seed' },
    { name: 'another kind of file', text: JSON.stringify({ secretKey: '00'.repeat(32) }) },
    { name: 'a seed that is not hex', text: JSON.stringify({ kind: 'kalima-anchor-wallet', version: 1, network: 'regtest', seedHex: 'zz'.repeat(32) }) },
    { name: 'a seed of 15 bytes', text: JSON.stringify({ kind: 'kalima-anchor-wallet', version: 1, network: 'regtest', seedHex: '11'.repeat(15) }) },
    { name: 'a seed of 65 bytes', text: JSON.stringify({ kind: 'kalima-anchor-wallet', version: 1, network: 'regtest', seedHex: '11'.repeat(65) }) },
    { name: 'version 2', text: JSON.stringify({ kind: 'kalima-anchor-wallet', version: 2, network: 'regtest', seedHex: '11'.repeat(32) }) },
  ])('refuses $name as KEYSTORE_CORRUPT and leaves the file alone', async ({ text }) => {
    const file = walletFile();
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, text);
    expect((await codeOf(openAnchorWallet(file, regtest, seededRng('c')))).code).toBe('KALIMA_ERR_BITCOIN_KEYSTORE_CORRUPT');
    expect(readFileSync(file, 'utf8')).toBe(text);
  });
});

describe('derivation', () => {
  // BIP-84 and BIP-86 test vectors: the BIP-39 seed of "abandon" × 11 + "about", no passphrase.
  const mnemonic = `${'abandon '.repeat(11)}about`;
  const bip39Seed = pbkdf2(sha512, new TextEncoder().encode(mnemonic), new TextEncoder().encode('mnemonic'), { c: 2048, dkLen: 64 });

  async function vectorWallet() {
    const file = walletFile();
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, JSON.stringify({ kind: 'kalima-anchor-wallet', version: 1, network: 'mainnet', seedHex: toHex(bip39Seed) }));
    return openAnchorWallet(file, parseBitcoinNetwork('mainnet'), seededRng('vectors'));
  }

  it.each([
    { kind: 'p2wpkh', change: 0, index: 0, path: "m/84'/0'/0'/0/0", address: 'bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu' },
    { kind: 'p2wpkh', change: 0, index: 1, path: "m/84'/0'/0'/0/1", address: 'bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g' },
    { kind: 'p2wpkh', change: 1, index: 0, path: "m/84'/0'/0'/1/0", address: 'bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el' },
    { kind: 'p2tr', change: 0, index: 0, path: "m/86'/0'/0'/0/0", address: 'bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr' },
    { kind: 'p2tr', change: 0, index: 1, path: "m/86'/0'/0'/0/1", address: 'bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh' },
    { kind: 'p2tr', change: 1, index: 0, path: "m/86'/0'/0'/1/0", address: 'bc1p3qkhfews2uk44qtvauqyr2ttdsw7svhkl9nkm9s9c3x4ax5h60wqwruhk7' },
  ] as const)('$path is $address', async ({ kind, change, index, path, address }) => {
    const wallet = await vectorWallet();
    const derived = walletAddress(wallet, { kind, change, index });
    expect(derived.path).toBe(path);
    expect(derived.address).toBe(address);
    expect(Buffer.from(derived.script).equals(Buffer.from(payments[kind]({ address, network: wallet.network.bitcoinjs }).output!))).toBe(true);
    const signer = signerFor(wallet, { kind, change, index });
    expect(signer.kind).toBe(kind);
    if (kind === 'p2tr') expect(toHex(signer.publicKey)).toBe(toHex(derived.script.subarray(2)));
    else expect(toHex(payments.p2wpkh({ pubkey: signer.publicKey }).output!)).toBe(toHex(derived.script));
  });

  it('uses coin type 1 on the test networks and refuses a hardened-range index', () => {
    for (const name of ['testnet', 'signet', 'regtest', 'bcoin-regtest'] as const) {
      expect(derivationPath(parseBitcoinNetwork(name), { kind: 'p2tr', change: 1, index: 9 })).toBe("m/86'/1'/0'/1/9");
    }
    expect(() => derivationPath(regtest, { kind: 'p2wpkh', change: 0, index: 2 ** 31 })).toThrow(/assertion failed/);
  });

  it('gives bcoin-regtest addresses with bcoin\'s prefixes', async () => {
    const wallet = await openAnchorWallet(walletFile(), parseBitcoinNetwork('bcoin-regtest'), seededRng('rb'));
    expect(receiveAddress(wallet, 'p2wpkh', 0).address).toMatch(/^rb1q/);
    expect(receiveAddress(wallet, 'p2tr', 0).address).toMatch(/^rb1p/);
  });
});

describe('Taproot against BIP-341\'s wallet test vectors', () => {
  it('tweaks a key with no script tree as keyPathSpending input 0 says', () => {
    const { outputKey, tweakedSecret } = tweakTaprootSecret(unhex('6b973d88838f27366ed61c9ad6367663045cb456e28335c109e30717ae0c6baa'));
    expect(toHex(tweakedSecret)).toBe('2405b971772ad26915c8dcdf10f238753a9b837e5f8e6a86fd7c0cce5b7296d9');
    expect(toHex(outputKey)).toBe('53a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343');
  });

  it('agrees with bitcoinjs-lib on the output key (internal key → p2tr)', () => {
    const internalPubkey = unhex('d6889cb081036e0faefa3a35157ad71086b123b2b144b649798b494c300a961d');
    expect(toHex(payments.p2tr({ internalPubkey }).pubkey!)).toBe('53a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343');
  });

  it('bitcoinjs-lib computes the SIGHASH_DEFAULT sighash of keyPathSpending input 4', () => {
    const rawUnsignedTx = '02000000097de20cbff686da83a54981d2b9bab3586f4ca7e48f57f5b55963115f3b334e9c010000000000000000d7b7cab57b1393ace2d064f4d4a2cb8af6def61273e127517d44759b6dafdd990000000000fffffffff8e1f583384333689228c5d28eac13366be082dc57441760d957275419a418420000000000fffffffff0689180aa63b30cb162a73c6d2a38b7eeda2a83ece74310fda0843ad604853b0100000000feffffffaa5202bdf6d8ccd2ee0f0202afbbb7461d9264a25e5bfd3c5a52ee1239e0ba6c0000000000feffffff956149bdc66faa968eb2be2d2faa29718acbfe3941215893a2a3446d32acd050000000000000000000e664b9773b88c09c32cb70a2a3e4da0ced63b7ba3b22f848531bbb1d5d5f4c94010000000000000000e9aa6b8e6c9de67619e6a3924ae25696bb7b694bb677a632a74ef7eadfd4eabf0000000000ffffffffa778eb6a263dc090464cd125c466b5a99667720b1c110468831d058aa1b82af10100000000ffffffff0200ca9a3b000000001976a91406afd46bcdfd22ef94ac122aa11f241244a37ecc88ac807840cb0000000020ac9a87f5594be208f8532db38cff670c450ed2fea8fcdefcc9a663f78bab962b0065cd1d';
    const utxosSpent: Array<[string, number]> = [
      ['512053a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343', 420000000],
      ['5120147c9c57132f6e7ecddba9800bb0c4449251c92a1e60371ee77557b6620f3ea3', 462000000],
      ['76a914751e76e8199196d454941c45d1b3a323f1433bd688ac', 294000000],
      ['5120e4d810fd50586274face62b8a807eb9719cef49c04177cc6b76a9a4251d5450e', 504000000],
      ['512091b64d5324723a985170e4dc5a0f84c041804f2cd12660fa5dec09fc21783605', 630000000],
      ['00147dd65592d0ab2fe0d0257d571abf032cd9db93dc', 378000000],
      ['512075169f4001aa68f15bbed28b218df1d0a62cbbcf1188c6665110c293c907b831', 672000000],
      ['5120712447206d7a5238acc7ff53fbe94a3b64539ad291c7cdbc490b7577e4b17df5', 546000000],
      ['512077e30a5522dd9f894c3f8b8bd4c4b2cf82ca7da8a3ea6a239655c39c050ab220', 588000000],
    ];
    const tx = Transaction.fromHex(rawUnsignedTx);
    const sighash = tx.hashForWitnessV1(4, utxosSpent.map(([script]) => unhex(script)), utxosSpent.map(([, value]) => BigInt(value)), Transaction.SIGHASH_DEFAULT);
    expect(toHex(sighash)).toBe('4f900a0bae3f1446fd48490c2958b5a023228f01661cda3496a11da502a7f7ef');
  });
});
