// The node's config file: defaults, paths relative to the file, and a coded refusal of bad values.
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PORT, loadConfig } from '../../src/node/config.ts';

const CLUSTER = { linkPort: 9218, masters: [{ key: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', host: '127.0.0.1', port: 9218 }] };

async function configFile(json: unknown): Promise<{ file: string; directory: string }> {
  const directory = await mkdtemp(join(tmpdir(), 'kalima-config-'));
  const file = join(directory, 'config.json');
  await writeFile(file, typeof json === 'string' ? json : JSON.stringify(json));
  return { file, directory };
}

describe('loadConfig', () => {
  it('anchors only with a bitcoin section: defaults, paths against the file, and a coded refusal of bad values and unknown settings', async () => {
    const compose = JSON.parse(await readFile(new URL('../../regtest/bitcoind.bitcoin.json', import.meta.url), 'utf8')) as unknown;
    expect((await loadConfig((await configFile({ bitcoin: compose })).file)).anchoring?.bitcoin).toMatchObject({ network: 'regtest', rpcUrl: 'http://127.0.0.1:18443/' });
    expect((await loadConfig((await configFile({})).file)).anchoring).toBeUndefined();
    const bitcoin = { network: 'bcoin-regtest', rpcUrl: 'http://127.0.0.1:48332', rpcUser: 'u', rpcPassword: 'p' };
    const { file, directory } = await configFile({ bitcoin });
    expect((await loadConfig(file)).anchoring).toMatchObject({
      bitcoin: { network: 'bcoin-regtest', auth: { user: 'u', password: 'p' }, rpcTimeoutMs: 15_000, walletFile: join(directory, 'keys/anchor-wallet.json'), stateDir: join(directory, 'anchors'), addressKind: 'p2wpkh', birthHeight: undefined },
      policy: { intervalMs: 600_000, minBlocks: 1, confirmations: 6, feeTargetBlocks: 6, fallbackFeeRate: 2_000, rbf: true },
      pollMs: 15_000,
    });
    const cookie = await configFile({ bitcoin: { network: 'mainnet', rpcUrl: 'http://127.0.0.1:8332', rpcCookieFile: 'cookie' }, anchor: { intervalSeconds: 60, confirmations: 3, rbf: false } });
    expect((await loadConfig(cookie.file)).anchoring).toMatchObject({ bitcoin: { auth: { cookieFile: join(cookie.directory, 'cookie') } }, policy: { intervalMs: 60_000, confirmations: 3, rbf: false } });
    const bad = [
      { anchor: { intervalSeconds: 60 } },
      { bitcoin: { ...bitcoin, network: 'litecoin' } },
      { bitcoin: { ...bitcoin, rpcUrl: 'ftp://x' } },
      { bitcoin: { network: 'mainnet', rpcUrl: 'http://x' } },
      { bitcoin: { ...bitcoin, rpcCookieFile: 'c' } },
      { bitcoin: { ...bitcoin, addressKind: 'p2pkh' } },
      { bitcoin: { ...bitcoin, birthHeight: -1 } },
      { bitcoin: { ...bitcoin, rpcTimeoutSeconds: 0 } },
      { bitcoin, anchor: { confirmations: 0 } },
      { bitcoin, anchor: { confirmations: 1000 } },
      { bitcoin, anchor: { fallbackFeeRate: 500 } },
      { bitcoin, anchor: { fallbackFeeRate: 5_000, maxFeeRate: 4_000 } },
      { bitcoin, anchor: { rbf: 'yes' } },
      { bitcoin: { ...bitcoin, zmqRawBlock: 'tcp://127.0.0.1:28332' } },
      { bitcoin, anchor: { interval: 60 } },
    ];
    for (const json of bad) await expect(loadConfig((await configFile(json)).file), JSON.stringify(json)).rejects.toMatchObject({ code: 'KALIMA_ERR_CONFIG_INVALID' });
  });

  it('sells only with lightning and market sections: defaults, paths against the file, and a coded refusal of bad values and unknown settings', async () => {
    const lightning = { socket: 'localhost:10009', certFile: 'lnd/tls.cert', macaroonFile: '~/lnd/admin.macaroon' };
    const { file, directory } = await configFile({ lightning, market: { treasuryKey: 'keys/treasury.json', satsPerKlx: 10 } });
    const market = (await loadConfig(file)).market!;
    expect(market.lightning).toMatchObject({ socket: 'localhost:10009', cert: { file: join(directory, 'lnd/tls.cert') } });
    expect((market.lightning.macaroon as { file: string }).file).not.toContain('~');
    expect(market).toMatchObject({ sellerKeyFile: join(directory, 'keys/seller.json'), treasuryKeyFile: join(directory, 'keys/treasury.json'), stateDir: join(directory, 'market') });
    expect(market.settings).toEqual({ invoiceExpirySeconds: 600, cltvDelta: 80, marginBlocks: 6, lndHoldExpiryDelta: 12, sweepIntervalMs: 5_000, satsPerKlx: 10 });
    expect((await loadConfig((await configFile({})).file)).market).toBeUndefined();
    const refused = async (json: unknown, reason: RegExp): Promise<void> => {
      await expect(loadConfig((await configFile(json)).file)).rejects.toMatchObject({ code: 'KALIMA_ERR_CONFIG_INVALID', details: { reason: expect.stringMatching(reason) } });
    };
    await refused({ market: {} }, /needs a lightning section/);
    await refused({ lightning }, /serves the market section/);
    await refused({ lightning: { ...lightning, socket: 'localhost' }, market: {} }, /host:port/);
    await refused({ lightning: { ...lightning, cert: 'AAAA' }, market: {} }, /lightning.cert or lightning.certFile, one of them/);
    await refused({ lightning: { socket: 'localhost:10009', certFile: 'x', macaroon: 'not hex' }, market: {} }, /macaroon in hex/);
    await refused({ lightning, market: { satsPerKlx: 10 } }, /needs market.treasuryKey/);
    await refused({ lightning, market: { treasuryKey: 'k.json' } }, /market.satsPerKlx/);
    await refused({ lightning, market: { cltvDelta: 18 } }, /more than market.lndHoldExpiryDelta \+ market.marginBlocks \(18\)/);
    await refused({ lightning, market: { cltvDelta: 40, lndHoldExpiryDelta: 40 } }, /more than market.lndHoldExpiryDelta \+ market.marginBlocks \(46\)/);
    await refused({ lightning, market: { price: 1 } }, /market.price is not a setting/);
    await refused({ lightning: { ...lightning, tls: 1 }, market: {} }, /lightning.tls is not a setting/);
  });

  it('fills defaults and resolves paths against the file', async () => {
    const { file, directory } = await configFile({});
    const config = await loadConfig(file);
    expect(config).toMatchObject({
      dataDir: join(directory, 'data'), genesisFile: join(directory, 'genesis.json'), nodeKeyFile: join(directory, 'keys/node.json'),
      host: '127.0.0.1', port: DEFAULT_PORT, logLevel: 'info', verifierThreads: 0, signerThread: false,
    });
  });

  it('takes a cluster section, with a log retention of 10,000 entries unless it says otherwise', async () => {
    const { file } = await configFile({ cluster: CLUSTER });
    expect((await loadConfig(file)).cluster).toMatchObject({ linkPort: 9218, tickMs: 50, logRetention: 10_000 });
    const other = await configFile({ cluster: { ...CLUSTER, logRetention: 50 } });
    expect((await loadConfig(other.file)).cluster).toMatchObject({ logRetention: 50 });
  });

  it('has no client listener unless clientPort is set; clientHost defaults to host', async () => {
    expect(await loadConfig((await configFile({})).file)).toMatchObject({ clientPort: undefined, clientHost: '127.0.0.1' });
    expect(await loadConfig((await configFile({ host: '0.0.0.0', clientPort: 9318 })).file)).toMatchObject({ clientPort: 9318, clientHost: '0.0.0.0' });
    expect(await loadConfig((await configFile({ clientPort: 0, clientHost: '::1' })).file)).toMatchObject({ clientPort: 0, clientHost: '::1' });
    const masters = [{ ...CLUSTER.masters[0], clientPort: 9318 }];
    expect((await loadConfig((await configFile({ cluster: { ...CLUSTER, masters } })).file)).cluster!.masters[0]).toMatchObject({ clientPort: 9318 });
  });

  it('takes the thread settings', async () => {
    const { file } = await configFile({ verifierThreads: 3, signerThread: true });
    expect(await loadConfig(file)).toMatchObject({ verifierThreads: 3, signerThread: true });
  });

  it.each([
    ['a port out of range', { port: 70_000 }, 'port'],
    ['an unknown log level', { logLevel: 'loud' }, 'logLevel'],
    ['a negative verifier count', { verifierThreads: -1 }, 'verifierThreads'],
    ['a fractional verifier count', { verifierThreads: 1.5 }, 'verifierThreads'],
    ['a signerThread that is not a boolean', { signerThread: 'yes' }, 'signerThread'],
    ['text that is not JSON', '{ port: ', 'not valid JSON'],
    ['a log retention of 0', { cluster: { ...CLUSTER, logRetention: 0 } }, 'cluster.logRetention'],
    ['a fractional log retention', { cluster: { ...CLUSTER, logRetention: 2.5 } }, 'cluster.logRetention'],
    ['a client port out of range', { clientPort: 65_536 }, 'clientPort'],
    ['a client port that is not a number', { clientPort: '9318' }, 'clientPort'],
    ['an empty client host', { clientHost: '' }, 'clientHost'],
    ['a master\'s client port of 0', { cluster: { ...CLUSTER, masters: [{ ...CLUSTER.masters[0], clientPort: 0 }] } }, 'cluster.masters[0].clientPort'],
  ])('refuses %s with KALIMA_ERR_CONFIG_INVALID', async (_name, json, reason) => {
    const { file } = await configFile(json);
    await expect(loadConfig(file)).rejects.toMatchObject({ code: 'KALIMA_ERR_CONFIG_INVALID', details: { reason: expect.stringContaining(reason) } });
  });
});
