#!/usr/bin/env node
// The `kalima` command. The sources are TypeScript; tsx compiles them as they load. This file is
// where the executable composes the core (src/) with what stands in for the outside world on one
// machine (regtest/): the devnet's Bitcoin node and its two LND stand-ins. The core itself never imports regtest/.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/main.ts');
const argv = process.argv.slice(2);
const extensions = {};
if (argv[0] === 'devnet') {
  try {
    const { startDevnetBitcoin } = await import('../regtest/devnet-bitcoin.ts');
    extensions.devnetBitcoin = startDevnetBitcoin;
  } catch (error) {
    // bcoin is a development dependency: an install without it runs the devnet without anchoring.
    process.stderr.write(`kalima devnet: no regtest Bitcoin node (${error.code ?? error.message}); anchoring is off\n`);
  }
  try {
    const { startDevnetLightning } = await import('../regtest/devnet-lightning.ts');
    extensions.devnetLightning = startDevnetLightning;
  } catch (error) {
    // selfsigned is a development dependency: an install without it runs the devnet without the marketplace.
    process.stderr.write(`kalima devnet: no LND stand-ins (${error.code ?? error.message}); the marketplace is off\n`);
  }
}
await runCli(argv, extensions);
