// What the anchor engine keeps on disk: one JSON document, rewritten (synced) at every change, so
// each step of an anchor's life is either wholly on disk or not at all. It is small: the wallet's
// outputs, the hashes and undo data of the last blocks scanned, and the commitments that are not
// yet recorded on the chain (plus a short history of recorded ones).
import { kalimaError } from '../src/errors.ts';
import type { KvStore } from '../src/store/kv.ts';

export const STATE_VERSION = 1;
const STATE_KEY = new TextEncoder().encode('anchors/state');

/** An output the anchor wallet can spend, as seen in a scanned block. */
export interface Utxo {
  txid: string;
  vout: number;
  /** Satoshis. */
  value: number;
  /** The output script, hex. */
  script: string;
  /** The Bitcoin height of the block that holds it. */
  height: number;
  /** A coinbase output matures 100 blocks after its own. */
  coinbase: boolean;
}

/** What a scanned block changed in the wallet, to take it back if the block leaves the chain. */
export interface BlockUndo {
  height: number;
  created: string[];
  spent: Utxo[];
}

/** One signed transaction of a commitment; a commitment may have several (fee bumps), and any one of them may confirm. */
export interface AnchorTx {
  txid: string;
  hex: string;
  /** Satoshis. */
  fee: number;
  vsize: number;
  /** sat per 1000 vbytes. */
  feeRate: number;
  inputs: string[];
  /** The change output's index, value and script (the next anchor spends it). */
  change: { vout: number; value: number; script: string };
  /** The Bitcoin tip when it was built. */
  builtAtHeight: number;
  /**
   * Set when the Bitcoin node did not take it (a refused fee bump). It is kept all the same: a node
   * may have taken it after all (a refusal is judged from the mempool a moment later), and the
   * scan must know it if it confirms. The newest version not refused is the one sent again.
   */
  refused?: boolean;
}

export type CommitmentState = 'signed' | 'mempool' | 'confirmed' | 'recorded';

export interface Commitment {
  seq: number;
  /** The aggregation root, hex: the 32 bytes of the OP_RETURN output. */
  root: string;
  tips: Array<{ chain: string; height: number; hash: string }>;
  createdAtMs: number;
  state: CommitmentState;
  txs: AnchorTx[];
  /** Set while a transaction of this commitment is in a block of the best chain. */
  confirmed?: { txid: string; height: number; blockHash: string };
  /** Inputs of its transactions that a transaction not of this commitment spent, seen by the scan: outpoint → that spend. */
  foreignSpends?: Record<string, { txid: string; height: number }>;
  /** The last failure of a step (broadcast, fee bump, record), for GET /anchors. */
  lastError?: { code: string; message: string; atMs: number };
}

export interface AnchorState {
  version: number;
  network: string;
  /** The last scanned block: its height, and the hashes of the blocks up to it, oldest first. */
  scan: { height: number; hashes: string[] };
  utxos: Utxo[];
  undo: BlockUndo[];
  nextSeq: number;
  /** Oldest first. */
  commitments: Commitment[];
  /** The highest nonce an anchor record was signed with. */
  lastNonce: number;
}

export function emptyState(network: string, birthHeight: number): AnchorState {
  return { version: STATE_VERSION, network, scan: { height: birthHeight - 1, hashes: [] }, utxos: [], undo: [], nextSeq: 1, commitments: [], lastNonce: 0 };
}

export class AnchorStore {
  constructor(private readonly kv: KvStore) {}

  async load(): Promise<AnchorState | undefined> {
    const bytes = await this.kv.get(STATE_KEY);
    if (bytes === undefined) return undefined;
    const state = JSON.parse(new TextDecoder().decode(bytes)) as AnchorState;
    if (state.version !== STATE_VERSION) throw kalimaError('KALIMA_ERR_STORE_FORMAT', { store: 'anchors', version: state.version, expected: STATE_VERSION });
    return state;
  }

  async save(state: AnchorState): Promise<void> {
    await this.kv.batch([{ type: 'put', key: STATE_KEY, value: new TextEncoder().encode(JSON.stringify(state)) }], { sync: true });
  }

  close(): Promise<void> {
    return this.kv.close();
  }
}
