import { InlineVerifier, WorkerPoolVerifier, type SignatureVerifier } from '../src/node/verifier.ts';
import { makeSignatures } from './verify.ts';
const items = makeSignatures(2000);
const at = (i: number, a: number, b: number) => items.subarray(i * 128 + a, i * 128 + b);
async function run(name: string, v: SignatureVerifier, mode: 'single' | 'burst') {
  await new Promise((r) => setTimeout(r, 200));
  const cpu0 = process.cpuUsage(); const t0 = performance.now();
  let n = 0;
  for (let round = 0; round < 300; round++) {
    if (mode === 'single') { for (let k = 0; k < 8; k++) { const i = (n++) % 2000; await v.verify(at(i, 0, 32), at(i, 32, 64), at(i, 64, 128)); } }
    else { const ps = []; for (let k = 0; k < 45; k++) { const i = (n++) % 2000; ps.push(v.verify(at(i, 0, 32), at(i, 32, 64), at(i, 64, 128))); } await Promise.all(ps); }
    await new Promise((r) => setTimeout(r, 1));
  }
  const cpu = process.cpuUsage(cpu0); const wall = performance.now() - t0;
  console.log(name, mode, 'µs CPU per verify', ((cpu.user + cpu.system) / n).toFixed(1), 'user', (cpu.user / n).toFixed(1), 'sys', (cpu.system / n).toFixed(1), 'wall ms', wall.toFixed(0));
}
const keep = setInterval(() => {}, 1000);
const pool = new WorkerPoolVerifier(1);
await new Promise((r) => setTimeout(r, 500));
for (let rep = 0; rep < 2; rep++) for (const mode of ['single', 'burst'] as const) { await run('inline', new InlineVerifier(), mode); await run('pool1', pool, mode); }
await pool.close(); clearInterval(keep);
