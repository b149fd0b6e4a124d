// The Bitcoin networks the anchor wallet can live on and a proof may name: address encodings
// (bitcoinjs `Network`), the genesis block hash (so the node can refuse an RPC endpoint of another
// network, and the verifier can tell which network a header source is on), the proof-of-work
// limit, the BIP-44 coin type and the relay-policy fee rates the transaction builder needs.
import { networks, type Network } from 'bitcoinjs-lib';
import { kalimaError } from '../../src/errors.ts';

export const BITCOIN_NETWORK_NAMES = ['mainnet', 'testnet', 'signet', 'regtest', 'bcoin-regtest'] as const;
export type BitcoinNetworkName = (typeof BITCOIN_NETWORK_NAMES)[number];

export interface BitcoinNetwork {
  name: BitcoinNetworkName;
  /** Address and key encodings, as bitcoinjs-lib and bip32 take them. */
  bitcoinjs: Network;
  /** Block 0's hash as RPC shows it (byte-reversed display hex). */
  genesisBlockHashHex: string;
  /**
   * The largest target a header may have (consensus.powLimit): it keeps an offline check from
   * accepting a header mined at a difficulty the network never allows (a mainnet header at regtest
   * difficulty costs nothing to forge).
   */
  powLimit: bigint;
  /** BIP-44 coin type: 0 on mainnet, 1 on every test network (SLIP-44). */
  coinType: number;
  /** Bitcoin Core's -minrelaytxfee default (bcoin: network.minRelay). */
  minRelayFeeSatPerKvB: bigint;
  /** Bitcoin Core's -incrementalrelayfee default, the BIP-125 rule 4 bump per kvB. */
  incrementalRelayFeeSatPerKvB: bigint;
  /** Bitcoin Core's -dustrelayfee default; an output worth less than spending it at this rate is dust. */
  dustRelayFeeSatPerKvB: bigint;
}

const RELAY_POLICY = {
  minRelayFeeSatPerKvB: 1000n,
  incrementalRelayFeeSatPerKvB: 1000n,
  dustRelayFeeSatPerKvB: 3000n,
} as const;

const REGTEST_GENESIS = '0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206';
// Bitcoin Core's chainparams.cpp, consensus.powLimit.
const MAINNET_POW_LIMIT = 0x00000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffn;
const SIGNET_POW_LIMIT = 0x00000377ae000000000000000000000000000000000000000000000000000000n;
const REGTEST_POW_LIMIT = 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffn;

/**
 * bcoin's regtest shares Core's genesis block but not its encodings (lib/protocol/networks.js:
 * bech32 'rb', base58 prefixes 0x3c/0x26, WIF 0x5a, extended keys 'rpub'/'rprv').
 */
const BCOIN_REGTEST: Network = {
  messagePrefix: '\x18Bitcoin Signed Message:\n',
  bech32: 'rb',
  bip32: { public: 0xeab4fa05, private: 0xeab404c7 },
  pubKeyHash: 0x3c,
  scriptHash: 0x26,
  wif: 0x5a,
};

const NETWORKS: Record<BitcoinNetworkName, BitcoinNetwork> = {
  mainnet: {
    name: 'mainnet', bitcoinjs: networks.bitcoin, coinType: 0, ...RELAY_POLICY, powLimit: MAINNET_POW_LIMIT,
    genesisBlockHashHex: '000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f',
  },
  testnet: {
    name: 'testnet', bitcoinjs: networks.testnet, coinType: 1, ...RELAY_POLICY, powLimit: MAINNET_POW_LIMIT,
    genesisBlockHashHex: '000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943',
  },
  // Signet uses testnet's encodings; its genesis is its own (the default signet challenge).
  signet: {
    name: 'signet', bitcoinjs: networks.testnet, coinType: 1, ...RELAY_POLICY, powLimit: SIGNET_POW_LIMIT,
    genesisBlockHashHex: '00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6',
  },
  regtest: { name: 'regtest', bitcoinjs: networks.regtest, coinType: 1, ...RELAY_POLICY, powLimit: REGTEST_POW_LIMIT, genesisBlockHashHex: REGTEST_GENESIS },
  // bcoin's regtest has Bitcoin Core's regtest genesis and consensus rules; only its encodings differ.
  'bcoin-regtest': { name: 'bcoin-regtest', bitcoinjs: BCOIN_REGTEST, coinType: 1, ...RELAY_POLICY, powLimit: REGTEST_POW_LIMIT, genesisBlockHashHex: REGTEST_GENESIS },
};

export function isBitcoinNetworkName(value: unknown): value is BitcoinNetworkName {
  return typeof value === 'string' && (BITCOIN_NETWORK_NAMES as readonly string[]).includes(value);
}

/** The networks whose block 0 is `genesisBlockHashHex` (display hex): regtest and bcoin-regtest share one. */
export function networksWithGenesis(genesisBlockHashHex: string): BitcoinNetworkName[] {
  return BITCOIN_NETWORK_NAMES.filter((name) => NETWORKS[name].genesisBlockHashHex === genesisBlockHashHex);
}

/** The network a config string names; an unknown name is a coded error listing the valid ones. */
export function parseBitcoinNetwork(name: string): BitcoinNetwork {
  if (!isBitcoinNetworkName(name)) throw kalimaError('KALIMA_ERR_BITCOIN_UNKNOWN_NETWORK', { network: name, known: [...BITCOIN_NETWORK_NAMES] });
  return NETWORKS[name];
}
