// The node's config file: defaults, paths relative to the file, and a coded refusal of bad values.
import { mkdtemp, writeFile } from 'node:fs/promises';
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
  ])('refuses %s with KALIMA_ERR_CONFIG_INVALID', async (_name, json, reason) => {
    const { file } = await configFile(json);
    await expect(loadConfig(file)).rejects.toMatchObject({ code: 'KALIMA_ERR_CONFIG_INVALID', details: { reason: expect.stringContaining(reason) } });
  });
});
