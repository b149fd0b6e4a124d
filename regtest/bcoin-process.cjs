// The bcoin full node as a child of regtest/bcoin.ts. Unlike bcoin's bin/node it loads no wallet
// plugin (which would listen on a fixed port of its own) and reads no config file or BCOIN_*
// environment; it closes the chain database on SIGTERM and SIGINT (bin/node has no handler, so a
// signal kills it mid-write); and it stops when its parent dies, which it sees as the end of its
// stdin pipe, so a crashed test leaves no bcoin behind. Options come as bcoin's --flags.
'use strict';

const FullNode = require('bcoin/lib/node/fullnode');

const node = new FullNode({
  config: false,
  argv: true,
  env: false,
  logFile: false,
  logConsole: true,
  loader: require,
  // No peers to dial (regtest's seed is 127.0.0.1:48444, which could be another engineer's bcoin).
  // The pool is still connected: bcoin's invalidateblock asserts it is.
  seeds: [],
});

let closing = false;
async function shutdown(exitCode) {
  if (closing) return;
  closing = true;
  try {
    await node.close();
  } catch (error) {
    console.error(error && error.stack);
    exitCode = 1;
  }
  process.exit(exitCode);
}

process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.stdin.on('end', () => shutdown(0));
process.stdin.on('error', () => shutdown(0));
process.stdin.resume();

process.on('unhandledRejection', (error) => {
  console.error(error && error.stack);
  process.exit(1);
});

(async () => {
  await node.ensure();
  await node.open();
  await node.connect();
  console.log(`[kalima] bcoin ready, pid ${process.pid}`);
})().catch((error) => {
  console.error(error && error.stack);
  process.exit(1);
});
