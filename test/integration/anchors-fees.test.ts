// Fee bumps of an unconfirmed anchor, on a real bcoin: the engine runs against bcoin's RPC, with
// only the fee estimate taken from the test (bcoin's regtest has none), so a fee spike can be made.
// bcoin accepts BIP-125 signalling but replaces nothing: the replacement is refused, the original
// stands and confirms, and the status says why the bump did not happen.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, systemClock, systemRng, systemScheduler } from '../../src/ports.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { BCOIN_SEGWIT_HEIGHT, type BcoinNode, startBcoin } from '../../regtest/bcoin.ts';
import { openAnchorWallet } from '../../chains/bitcoin/keys.ts';
import { AnchorEngine, type BitcoinSource, DEFAULT_POLICY } from '../../anchors/engine.ts';
import { AnchorStore } from '../../anchors/state.ts';
import { LocalWallet } from '../../anchors/wallet.ts';
import { NodeChain } from '../../anchors/node-chain.ts';
import { aggregationRoot } from '../../anchors/aggregate.ts';
import { createAddress, makeChain, openNode, tempDir } from '../support/chain.ts';

let bcoin: BcoinNode | undefined;

afterAll(async () => {
  await bcoin?.stop();
});

describe('fee bumps', () => {
  it('an estimate that rises by a quarter leads to a BIP-125 replacement; refused by bcoin, the original stands, confirms and is recorded', async () => {
    bcoin = await startBcoin();
    const rpc = bcoin.rpc;
    let estimate: number | undefined;
    const source: BitcoinSource = {
      network: 'bcoin-regtest',
      getBlockCount: () => rpc.getBlockCount(),
      getBlockHash: (height) => rpc.getBlockHash(height),
      getBlockHex: (hash) => rpc.getBlockHex(hash),
      inMempool: async (txid) => (await rpc.getMempoolEntry(txid)) !== undefined,
      broadcast: async (hex) => void (await rpc.sendRawTransaction(hex)),
      estimateFeeRate: async () => estimate,
    };
    const chain = makeChain('anchor-fees', 'fees');
    const node = await openNode(chain);
    await createAddress(node, chain, '/sensors');
    const directory = await tempDir('kalima-anchor-fees-');
    const keystore = await openAnchorWallet(join(directory, 'wallet.json'), bcoin.network, systemRng);
    const wallet = new LocalWallet(keystore, 'p2wpkh', true);
    const nodeChain = await NodeChain.open(node, chain.nodeKey, chain.rng, systemScheduler);
    const engine = await AnchorEngine.open({
      store: new AnchorStore(new MemoryKvStore()), bitcoin: source, wallet, chains: [nodeChain], clock: systemClock, logger: silentLogger, birthHeight: 0,
      aggregate: (tips) => aggregationRoot(tips.map((tip) => ({ chain: tip.chain, height: tip.height, blockHash: tip.hash }))),
      policy: { ...DEFAULT_POLICY, intervalMs: 0, confirmations: 1, bumpAfterBlocks: 0, fallbackFeeRate: 2_000 },
    });
    try {
      await bcoin.mine(BCOIN_SEGWIT_HEIGHT, wallet.fundingAddress);
      await engine.tick();
      const sent = engine.status().commitments[0]!;
      expect(sent.state).toBe('mempool');
      // 2 sat/vB on the worst-case size; a signature a byte shorter makes it a little more.
      expect(sent.txs[0]!.feeRate).toBeGreaterThanOrEqual(2_000);
      expect(sent.txs[0]!.feeRate).toBeLessThan(2_050);

      // Below a quarter more: no bump.
      estimate = 2_400;
      await engine.tick();
      expect(engine.status().commitments[0]!.txs).toHaveLength(1);
      expect(engine.status().commitments[0]!.lastError).toBeUndefined();

      estimate = 5_000;
      await engine.tick();
      const refused = engine.status().commitments[0]!;
      // The replacement pays the estimate; refused, it is kept and marked (a node may have taken it after all), and the original stands.
      expect(refused.txs).toHaveLength(2);
      expect(refused.txs[1]).toMatchObject({ refused: true });
      expect(refused.txs[1]!.feeRate).toBeGreaterThanOrEqual(5_000);
      expect(refused.txs[1]!.inputs).toEqual(refused.txs[0]!.inputs);
      expect(refused.lastError?.code).toBe('KALIMA_ERR_BITCOIN_TX_REJECTED');
      expect(await rpc.getRawMempool()).toEqual([sent.txs[0]!.txid]);
      // Refused once at this Bitcoin height: the next pass does not try again before bumpAfterBlocks more blocks (here 0: it tries, and is refused again, adding nothing but a version).
      await engine.tick();
      expect(await rpc.getRawMempool()).toEqual([sent.txs[0]!.txid]);

      await bcoin.mine(1, wallet.fundingAddress);
      await engine.tick();
      const done = engine.status().commitments[0]!;
      expect(done.state).toBe('recorded');
      expect(done.confirmed!.txid).toBe(sent.txs[0]!.txid);
    } finally {
      await engine.close();
      nodeChain.close();
      await node.close();
    }
  });
});
