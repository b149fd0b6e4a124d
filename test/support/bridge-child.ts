// A process that opens the bridge service on the directory in argv[2] with two trivial
// participants and begins transaction argv[3]: with KALIMA_FAILPOINTS set, it is killed at the
// failpoint; else it prints the outcome and exits.
import { BridgeService, failpointsFromEnv } from '../../bridge/service.ts';
import type { ParticipantFactory } from '../../bridge/participant.ts';
import { silentLogger } from '../../src/ports.ts';

const trivial: ParticipantFactory = () => ({ prepare: async () => 'yes', commit: async () => {}, abort: async () => {} });
const service = await BridgeService.open({ directory: process.argv[2]!, participants: new Map([['trivial', trivial]]), logger: silentLogger, failpoints: failpointsFromEnv() });
const outcome = await service.coordinator.run({ id: process.argv[3]!, participants: [{ kind: 'trivial', args: new Uint8Array([1]) }, { kind: 'trivial', args: new Uint8Array([2]) }] });
process.stdout.write(`${JSON.stringify(outcome)}\n`);
await service.close();
