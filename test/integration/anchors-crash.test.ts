// Anchoring through crashes and a Bitcoin node that goes away, on a real bcoin (regtest):
//   - a `kalima node` process killed (failpoints) after it stored an anchor and before sending it,
//     right after sending it, and after the anchor confirmed but before it was recorded, sends the
//     same transaction again: exactly one anchor of those blocks in Bitcoin, one record on the chain;
//   - with bcoin stopped the anchor waits, and GET /anchors says why; bcoin restarted (with its
//     mempool empty) gets the same transaction again, and every commitment ends recorded.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { toHex } from '../../src/ledger/hash.ts';
import { initChain } from '../../src/cli/init.ts';
import { freePort } from '../../src/cli/free-port.ts';
import { KalimaClient } from '../../src/sdk/client.ts';
import { silentLogger, systemClock, systemRng, systemScheduler } from '../../src/ports.ts';
import { MemoryKvStore } from '../../src/store/memory-kv.ts';
import { ANCHORS_ADDRESS } from '../../src/state/anchor-record.ts';
import { BCOIN_SEGWIT_HEIGHT, type BcoinNode, startBcoin } from '../../regtest/bcoin.ts';
import { parseBitcoinNetwork } from '../../chains/bitcoin/network.ts';
import { changeAddress, openAnchorWallet, receiveAddress, signerFor } from '../../chains/bitcoin/keys.ts';
import { buildAnchorTx } from '../../chains/bitcoin/tx.ts';
import { AnchorService } from '../../anchors/service.ts';
import { type AnchorStatus, DEFAULT_POLICY } from '../../anchors/engine.ts';
import { anchorsInChain } from '../support/bcoin.ts';
import { MasterProcess, killAll, sleep } from '../support/cluster-processes.ts';
import { createAddress, makeChain, makeMessage, openNode, registerDevice, tempDir } from '../support/chain.ts';

const bcoins: BcoinNode[] = [];

afterAll(async () => {
  killAll();
  await Promise.all(bcoins.map((node) => node.stop()));
});

async function anchorsOf(url: string): Promise<AnchorStatus> {
  return (await (await fetch(`${url}/anchors`)).json()) as AnchorStatus;
}

async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value).slice(0, 2_000)}`);
    await sleep(200);
  }
}

describe('anchoring through crashes', () => {
  it('a node killed before broadcasting an anchor, after broadcasting it, and after it confirmed but before its record, ends with one anchor in Bitcoin and one record', async () => {
    const bcoin = await startBcoin();
    bcoins.push(bcoin);
    const directory = await tempDir('kalima-anchor-crash-');
    const port = await freePort();
    const init = await initChain({ directory, chain: 'crash', port });
    const config = JSON.parse(await readFile(init.configFile, 'utf8')) as Record<string, unknown>;
    config.bitcoin = { network: 'bcoin-regtest', rpcUrl: bcoin.rpcUrl, rpcUser: 'kalima', rpcPassword: bcoin.apiKey, birthHeight: 0 };
    config.anchor = { intervalSeconds: 1, minBlocks: 1, confirmations: 2, pollSeconds: 1 };
    await writeFile(init.configFile, JSON.stringify(config));
    // The wallet is made here first, so it can be funded before the node starts.
    const keystore = await openAnchorWallet(join(directory, 'keys', 'anchor-wallet.json'), parseBitcoinNetwork('bcoin-regtest'), systemRng);
    const funding = receiveAddress(keystore, 'p2wpkh', 0).address;
    await bcoin.mine(BCOIN_SEGWIT_HEIGHT, funding);

    const url = `http://127.0.0.1:${port}`;
    const node = new MasterProcess('n1', init.configFile, url, toHex(init.node.publicKey), join(directory, 'data'));
    // First killed after the transaction is stored and before it is sent: nothing in the mempool.
    await node.start(20_000, { KALIMA_FAILPOINTS: 'anchor.before-broadcast' });
    const admin = new KalimaClient({ url, key: init.admin });
    await admin.createAddress('/sensors', 'crash test');
    await until('the node to end at its first failpoint', async () => node.running, (running) => !running);
    expect(node.child!.signalCode).toBe('SIGKILL');
    expect(await bcoin.rpc.getRawMempool()).toEqual([]);
    // Started again, it sends the stored transaction, and is killed right after the broadcast.
    // The stored transaction goes out as the service opens: under load, before the API answers.
    await node.start(20_000, { KALIMA_FAILPOINTS: 'anchor.after-broadcast' }, { mayEndAtFailpoint: true });
    await until('the node to end at its failpoint', async () => node.running, (running) => !running);
    expect(node.child!.signalCode).toBe('SIGKILL');
    const mempool = await bcoin.rpc.getRawMempool();
    expect(mempool).toHaveLength(1);

    // Started again: the stored transaction is the one in the mempool; confirmed, then killed before its record.
    await node.start(20_000, { KALIMA_FAILPOINTS: 'anchor.before-record' });
    const sent = await until('the anchor to be known as sent', () => anchorsOf(url), (status) => status.commitments[0]?.state === 'mempool');
    expect(sent.commitments).toHaveLength(1);
    expect(sent.commitments[0]!.txs.map((tx) => tx.txid)).toEqual(mempool);
    await bcoin.mine(2, funding);
    await until('the node to end at its second failpoint', async () => node.running, (running) => !running);

    await node.start();
    const recorded = await until('the anchor to be recorded', () => anchorsOf(url), (status) => status.commitments[0]?.state === 'recorded');
    expect(recorded.commitments).toHaveLength(1);
    const [commitment] = recorded.commitments;
    expect(commitment!.confirmed!.txid).toBe(mempool[0]);
    expect(await anchorsInChain(bcoin, commitment!.root)).toEqual(mempool);
    const record = await admin.get(ANCHORS_ADDRESS, commitment!.root);
    expect(record).toBeDefined();
    expect(JSON.parse(new TextDecoder().decode(record!.body)).txid).toBe(mempool[0]);
    // A restart with nothing new on the chain but the record makes no new anchor.
    await node.kill('SIGTERM');
    await node.start();
    await sleep(3_000);
    expect((await anchorsOf(url)).commitments).toHaveLength(1);
    await node.kill('SIGTERM');
  });

  it('with bcoin stopped the anchor waits and says why; restarted with an empty mempool, it gets the same transaction again; an input spent by someone else leads to a new transaction; every commitment is recorded once', async () => {
    const bcoin = await startBcoin({ memory: false });
    bcoins.push(bcoin);
    const chain = makeChain('anchors-outage', 'outage');
    const node = await openNode(chain);
    await createAddress(node, chain, '/sensors');
    const directory = await tempDir('kalima-anchor-outage-');
    const service = await AnchorService.open({
      config: {
        bitcoin: { network: 'bcoin-regtest', rpcUrl: bcoin.rpcUrl, auth: { user: 'kalima', password: bcoin.apiKey }, rpcTimeoutMs: 1_000, walletFile: join(directory, 'wallet.json'), stateDir: directory, addressKind: 'p2wpkh', birthHeight: 0 },
        policy: { ...DEFAULT_POLICY, intervalMs: 0, minBlocks: 1, confirmations: 2 }, pollMs: 3_600_000,
      },
      stateKv: new MemoryKvStore(), nodeKv: new MemoryKvStore(), node, nodeKey: chain.nodeKey, clock: systemClock, rng: systemRng, scheduler: systemScheduler, logger: silentLogger,
    });
    try {
      const status = (): AnchorStatus => service.status() as AnchorStatus;
      await service.tick();
      await bcoin.mine(BCOIN_SEGWIT_HEIGHT, status().wallet.fundingAddress);
      await service.tick();
      const first = status().commitments[0]!;
      expect(first.state).toBe('mempool');

      await bcoin.stop();
      const device = await registerDevice(node, chain, { pub: ['/sensors'], sub: [] });
      await node.submit(makeMessage(chain, device, { address: '/sensors', key: 'k', body: '1' }));
      await service.tick();
      const down = status();
      expect(down.bitcoin.reachable).toBe(false);
      expect(down.late).toMatch(/not answering/);
      expect(down.commitments).toHaveLength(1);

      await bcoin.restart();
      expect(await bcoin.rpc.getRawMempool()).toEqual([]);
      await service.tick();
      expect(await bcoin.rpc.getRawMempool()).toEqual([first.txs[0]!.txid]);
      await bcoin.mine(1, status().wallet.fundingAddress);
      await service.tick(); // #1 confirmed; #2 made for the blocks since, and sent
      await bcoin.mine(1, status().wallet.fundingAddress);
      await service.tick(); // #1 recorded at depth 2
      await bcoin.mine(1, status().wallet.fundingAddress);
      await service.tick();
      const after = status();
      expect(after.late).toBeUndefined();
      expect(after.commitments.map((commitment) => [commitment.seq, commitment.state])).toEqual([[1, 'recorded'], [2, 'recorded']]);
      // The second commitment covers every block written while bcoin was away.
      expect(after.commitments[1]!.tips[0]!.height).toBeGreaterThanOrEqual(node.height - 2);
      for (const commitment of after.commitments) expect(await anchorsInChain(bcoin, commitment.root)).toEqual([commitment.confirmed!.txid]);

      // The next anchor is lost with bcoin's mempool, and someone else spends its input meanwhile:
      // once that spend is as deep as an anchor must be, the same commitment gets a transaction
      // with other inputs, and only that one confirms.
      await node.submit(makeMessage(chain, device, { address: '/sensors', key: 'k', body: '2' }));
      await service.tick();
      const third = status().commitments.at(-1)!;
      expect([third.seq, third.state]).toEqual([3, 'mempool']);
      const [spentTxid, spentVout] = third.txs[0]!.inputs[0]!.split(':') as [string, string];
      await bcoin.restart();
      const output = await bcoin.rpc.getTxOut(spentTxid, Number(spentVout), false);
      const keystore = await openAnchorWallet(join(directory, 'wallet.json'), parseBitcoinNetwork('bcoin-regtest'), systemRng);
      const change = receiveAddress(keystore, 'p2wpkh', 0);
      const script = Uint8Array.from(Buffer.from(output!.scriptHex, 'hex'));
      const derivation = toHex(script) === toHex(change.script) ? change.derivation : changeAddress(keystore, 'p2wpkh', 0).derivation;
      const conflict = buildAnchorTx({
        utxos: [{ txid: spentTxid, vout: Number(spentVout), valueSat: output!.valueSat, script, derivation }], commitment: new Uint8Array(32).fill(7),
        feeRateSatPerKvB: 5_000n, change: { script: change.script, derivation: change.derivation }, signer: (utxo) => signerFor(keystore, utxo.derivation), rbf: false,
      });
      await bcoin.rpc.sendRawTransaction(conflict.hex);
      await bcoin.mine(1, status().wallet.fundingAddress);
      await service.tick();
      const waiting = status();
      expect(waiting.commitments.at(-1)!.txs).toHaveLength(1);
      expect(waiting.late).toMatch(/spent by another transaction; a new transaction is built once that spend is 2 blocks deep/);
      await bcoin.mine(1, status().wallet.fundingAddress);
      await service.tick();
      const rebuilt = status().commitments.at(-1)!;
      expect(rebuilt.txs).toHaveLength(2);
      expect(rebuilt.txs[1]!.inputs).not.toContain(third.txs[0]!.inputs[0]);
      await bcoin.mine(1, status().wallet.fundingAddress);
      await service.tick();
      await bcoin.mine(1, status().wallet.fundingAddress);
      await service.tick();
      const done = status().commitments.at(-1)!;
      expect(done.state).toBe('recorded');
      expect(done.confirmed!.txid).toBe(rebuilt.txs[1]!.txid);
      expect(await anchorsInChain(bcoin, done.root)).toEqual([rebuilt.txs[1]!.txid]);

      // A Bitcoin node that stops answering (SIGSTOP) times out, and the status says so; once it answers, all is well again.
      await bcoin.kill('SIGSTOP');
      try {
        await service.tick();
        const slow = status();
        expect(slow.bitcoin.reachable).toBe(false);
        expect(slow.bitcoin.lastError?.code).toBe('KALIMA_ERR_BITCOIN_TIMEOUT');
        expect(slow.late).toMatch(/not answering/);
      } finally {
        await bcoin.kill('SIGCONT');
      }
      await service.tick();
      expect(status().bitcoin.reachable).toBe(true);
      expect(status().late).toBeUndefined();
    } finally {
      await service.close();
      await node.close();
    }
  }, 60_000);
});
