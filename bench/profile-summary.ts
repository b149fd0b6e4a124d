// Summarises a V8 .cpuprofile (from `node --cpu-prof`, or `npm run bench -- --profile`): self time
// by function and by source file, so a bench run can say where the node's main thread spends it.
//   npx tsx bench/profile-summary.ts FILE.cpuprofile [TOP]
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from './node-process.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  functions: Array<{ name: string; where: string; selfMs: number; share: number }>;
  files: Array<{ file: string; selfMs: number; share: number }>;
}

function shortUrl(url: string): string {
  if (url === '') return '(native)';
  let path = url;
  if (url.startsWith('file://')) {
    try {
      path = fileURLToPath(url);
    } catch {
      path = url;
    }
  }
  const nodeModules = path.lastIndexOf('node_modules/');
  if (nodeModules >= 0) {
    const rest = path.slice(nodeModules + 'node_modules/'.length).split('/');
    return `npm:${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  return path.startsWith('/') ? relative(REPO_ROOT, path) : path;
}

export function summarizeProfile(profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, index) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
  const functions = new Map<string, { name: string; where: string; selfUs: number }>();
  const files = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node === undefined) continue;
    totalUs += us;
    const name = node.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') {
      idleUs += us;
      continue;
    }
    const file = name.startsWith('(') ? name : shortUrl(node.callFrame.url);
    const where = `${file}:${node.callFrame.lineNumber + 1}`;
    const key = `${name} ${where}`;
    const entry = functions.get(key) ?? { name, where, selfUs: 0 };
    entry.selfUs += us;
    functions.set(key, entry);
    files.set(file, (files.get(file) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs;
  const ms = (us: number): number => Math.round(us / 100) / 10;
  const share = (us: number): number => Math.round((us / Math.max(1, busyUs)) * 1000) / 10;
  return {
    totalMs: ms(totalUs),
    idleMs: ms(idleUs),
    functions: [...functions.values()].sort((a, b) => b.selfUs - a.selfUs).slice(0, top).map((entry) => ({ name: entry.name, where: entry.where, selfMs: ms(entry.selfUs), share: share(entry.selfUs) })),
    files: [...files.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([file, us]) => ({ file, selfMs: ms(us), share: share(us) })),
  };
}

export async function summarizeProfileFile(file: string, top = 25): Promise<ProfileSummary> {
  return summarizeProfile(JSON.parse(await readFile(file, 'utf8')) as CpuProfile, top);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, topArgument] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write('usage: tsx bench/profile-summary.ts FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  const summary = await summarizeProfileFile(file, Number(topArgument ?? 25));
  process.stdout.write(`total ${summary.totalMs} ms, idle ${summary.idleMs} ms (shares are of busy time)\n\nby function (self):\n`);
  for (const entry of summary.functions) process.stdout.write(`  ${String(entry.share).padStart(5)}%  ${String(entry.selfMs).padStart(8)} ms  ${entry.name}  ${entry.where}\n`);
  process.stdout.write('\nby file (self):\n');
  for (const entry of summary.files) process.stdout.write(`  ${String(entry.share).padStart(5)}%  ${String(entry.selfMs).padStart(8)} ms  ${entry.file}\n`);
}
