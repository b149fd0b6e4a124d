// A process that starts bcoin, prints its pid and waits: the launcher test kills this process
// with SIGKILL and checks that its bcoin does not outlive it.
import { startBcoin } from '../../regtest/bcoin.ts';

const bcoin = await startBcoin();
process.stdout.write(`${bcoin.pid}\n`);
setInterval(() => {}, 60_000);
