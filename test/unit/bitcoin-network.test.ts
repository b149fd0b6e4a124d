// Network parameters: parsing the config string, and the constants cross-checked against bcoin's
// own table (lib/protocol/networks.js) and the address encodings they produce.
import { createRequire } from 'node:module';
import { address as bitcoinAddress, payments } from 'bitcoinjs-lib';
import { describe, expect, it } from 'vitest';
import '../../chains/bitcoin/ecc.ts';
import { BITCOIN_NETWORK_NAMES, isBitcoinNetworkName, networksWithGenesis, parseBitcoinNetwork } from '../../chains/bitcoin/network.ts';
import { expectKalimaError } from './support/kalima-error.ts';

interface BcoinNetwork {
  genesis: { hash: Buffer | string };
  pow: { limit: { toString(base: number): string } };
  keyPrefix: { privkey: number; xpubkey: number; xprivkey: number; coinType: number };
  addressPrefix: { pubkeyhash: number; scripthash: number; bech32: string };
  minRelay: number;
}
const bcoinNetworks = createRequire(import.meta.url)('bcoin/lib/protocol/networks') as Record<string, BcoinNetwork>;

/** bcoin keeps hashes in internal byte order; RPC shows them reversed. */
function displayHex(hash: Buffer | string): string {
  return Buffer.from(typeof hash === 'string' ? Buffer.from(hash, 'hex') : hash).reverse().toString('hex');
}

/** The x coordinate of secp256k1's generator: a valid x-only key. */
const GENERATOR_X = Buffer.from('79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798', 'hex');

describe('parseBitcoinNetwork', () => {
  it.each(BITCOIN_NETWORK_NAMES)('parses %s', (name) => {
    expect(parseBitcoinNetwork(name).name).toBe(name);
  });

  it.each(['', 'main', 'Regtest', 'testnet4', 'bcrt'])('refuses %j with a coded error listing the known names', (name) => {
    const error = expectKalimaError(() => parseBitcoinNetwork(name), 'KALIMA_ERR_BITCOIN_UNKNOWN_NETWORK');
    expect(error.details).toEqual({ network: name, known: [...BITCOIN_NETWORK_NAMES] });
  });
});

describe('network constants', () => {
  it('bcoin-regtest has bcoin\'s regtest prefixes, coin type and relay fee', () => {
    const ours = parseBitcoinNetwork('bcoin-regtest');
    const theirs = bcoinNetworks.regtest!;
    expect(ours.bitcoinjs.bech32).toBe(theirs.addressPrefix.bech32);
    expect(ours.bitcoinjs.pubKeyHash).toBe(theirs.addressPrefix.pubkeyhash);
    expect(ours.bitcoinjs.scriptHash).toBe(theirs.addressPrefix.scripthash);
    expect(ours.bitcoinjs.wif).toBe(theirs.keyPrefix.privkey);
    expect(ours.bitcoinjs.bip32).toEqual({ public: theirs.keyPrefix.xpubkey, private: theirs.keyPrefix.xprivkey });
    expect(ours.coinType).toBe(theirs.keyPrefix.coinType);
    expect(ours.minRelayFeeSatPerKvB).toBe(BigInt(theirs.minRelay));
  });

  it.each([
    { ours: 'mainnet', theirs: 'main' },
    { ours: 'testnet', theirs: 'testnet' },
    { ours: 'regtest', theirs: 'regtest' },
    { ours: 'bcoin-regtest', theirs: 'regtest' },
  ] as const)('$ours has the genesis block and the proof-of-work limit of bcoin\'s $theirs', ({ ours, theirs }) => {
    expect(parseBitcoinNetwork(ours).genesisBlockHashHex).toBe(displayHex(bcoinNetworks[theirs]!.genesis.hash));
    expect(parseBitcoinNetwork(ours).powLimit).toBe(BigInt(`0x${bcoinNetworks[theirs]!.pow.limit.toString(16)}`));
  });

  it('signet\'s proof-of-work limit is Core\'s (bcoin 1.0.2 has no signet): above mainnet\'s, below regtest\'s', () => {
    // The target of signet's genesis nBits 0x1e0377ae: 0x0377ae · 256^(0x1e − 3).
    expect(parseBitcoinNetwork('signet').powLimit).toBe(0x0377aen << BigInt(8 * (0x1e - 3)));
    expect(parseBitcoinNetwork('signet').powLimit > parseBitcoinNetwork('mainnet').powLimit).toBe(true);
    expect(parseBitcoinNetwork('signet').powLimit < parseBitcoinNetwork('regtest').powLimit).toBe(true);
  });

  it('a genesis block names its networks: regtest\'s is Core\'s and bcoin\'s; an unknown one none', () => {
    expect(networksWithGenesis(parseBitcoinNetwork('regtest').genesisBlockHashHex)).toEqual(['regtest', 'bcoin-regtest']);
    expect(networksWithGenesis(parseBitcoinNetwork('mainnet').genesisBlockHashHex)).toEqual(['mainnet']);
    expect(networksWithGenesis('00'.repeat(32))).toEqual([]);
    expect(BITCOIN_NETWORK_NAMES.every(isBitcoinNetworkName)).toBe(true);
    expect([isBitcoinNetworkName('main'), isBitcoinNetworkName(3), isBitcoinNetworkName(undefined)]).toEqual([false, false, false]);
  });

  it('signet has its own genesis block and testnet\'s encodings', () => {
    const signet = parseBitcoinNetwork('signet');
    expect(signet.genesisBlockHashHex).not.toBe(parseBitcoinNetwork('testnet').genesisBlockHashHex);
    expect(signet.bitcoinjs.bech32).toBe('tb');
  });

  it.each([
    { name: 'mainnet', bech32: /^bc1q/, taproot: /^bc1p/, base58Version: 0x00 },
    { name: 'testnet', bech32: /^tb1q/, taproot: /^tb1p/, base58Version: 0x6f },
    { name: 'signet', bech32: /^tb1q/, taproot: /^tb1p/, base58Version: 0x6f },
    { name: 'regtest', bech32: /^bcrt1q/, taproot: /^bcrt1p/, base58Version: 0x6f },
    { name: 'bcoin-regtest', bech32: /^rb1q/, taproot: /^rb1p/, base58Version: 0x3c },
  ] as const)('$name addresses: $bech32, $taproot, base58 version $base58Version', ({ name, bech32, taproot, base58Version }) => {
    const network = parseBitcoinNetwork(name).bitcoinjs;
    const hash = new Uint8Array(20).fill(9);
    expect(payments.p2wpkh({ hash, network }).address).toMatch(bech32);
    expect(payments.p2tr({ pubkey: GENERATOR_X, network }).address).toMatch(taproot);
    const legacy = payments.p2pkh({ hash, network }).address!;
    expect(bitcoinAddress.fromBase58Check(legacy).version).toBe(base58Version);
  });

  it('relay policy: Core\'s defaults on every network', () => {
    for (const name of BITCOIN_NETWORK_NAMES) {
      expect(parseBitcoinNetwork(name)).toMatchObject({ minRelayFeeSatPerKvB: 1000n, incrementalRelayFeeSatPerKvB: 1000n, dustRelayFeeSatPerKvB: 3000n });
    }
    expect(parseBitcoinNetwork('mainnet').coinType).toBe(0);
  });
});
