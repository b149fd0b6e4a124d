// A free TCP port on loopback, for tests that start servers of their own.
export { freePort } from '../../src/cli/free-port.ts';
