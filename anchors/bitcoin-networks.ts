// The Bitcoin networks a proof may name. A header source is told apart by its genesis block; the
// proof-of-work limit keeps an offline check from accepting a header mined at a difficulty the
// network never allows (a mainnet header at regtest difficulty costs nothing to forge).
export const BITCOIN_NETWORK_NAMES = ['mainnet', 'testnet', 'signet', 'regtest', 'bcoin-regtest'] as const;
export type BitcoinNetworkName = (typeof BITCOIN_NETWORK_NAMES)[number];

export interface BitcoinNetwork {
  /** The genesis block hash, in display (RPC) byte order. */
  genesisHash: string;
  /** The largest target a header may have (consensus powLimit). */
  powLimit: bigint;
}

const MAINNET_POW_LIMIT = 0x00000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffn;
const REGTEST: BitcoinNetwork = {
  genesisHash: '0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206',
  powLimit: 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffn,
};

export const BITCOIN_NETWORKS: Record<BitcoinNetworkName, BitcoinNetwork> = {
  mainnet: { genesisHash: '000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f', powLimit: MAINNET_POW_LIMIT },
  testnet: { genesisHash: '000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943', powLimit: MAINNET_POW_LIMIT },
  signet: { genesisHash: '00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6', powLimit: 0x00000377ae000000000000000000000000000000000000000000000000000000n },
  regtest: REGTEST,
  // bcoin's regtest has Bitcoin Core's regtest genesis and rules; only its address prefixes differ.
  'bcoin-regtest': REGTEST,
};

export function isBitcoinNetworkName(value: unknown): value is BitcoinNetworkName {
  return typeof value === 'string' && (BITCOIN_NETWORK_NAMES as readonly string[]).includes(value);
}

/** The networks whose genesis is `genesisHash` (display order). */
export function networksWithGenesis(genesisHash: string): BitcoinNetworkName[] {
  return BITCOIN_NETWORK_NAMES.filter((name) => BITCOIN_NETWORKS[name].genesisHash === genesisHash);
}
