// What the benchmark ran on, and how busy the rest of the machine was while it ran.
import { readFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  platform: string;
}

export async function machineInfo(): Promise<MachineInfo> {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(await readFile('/proc/cpuinfo', 'utf8'));
    if (match !== null) cpuModel = match[1]!.trim();
  } catch {
    // not Linux: keep os.cpus()
  }
  return { cpuModel, cores: availableParallelism(), memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, platform: `${process.platform} ${process.arch}` };
}

export interface MachineCpu {
  /** user, nice, system, irq and softirq time of every CPU, in milliseconds. */
  busyMs: number;
  /** Time the hypervisor ran something else while a CPU of this VM wanted to run. */
  stealMs: number;
}

/** Machine-wide CPU counters from /proc/stat; undefined elsewhere. */
export async function machineCpu(): Promise<MachineCpu | undefined> {
  try {
    const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!;
    // cpu user nice system idle iowait irq softirq steal guest guest_nice, in 1/100 s; guest time
    // is already inside user and nice.
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    const ticks = (indexes: number[]): number => indexes.reduce((sum, index) => sum + (fields[index] ?? 0), 0);
    return { busyMs: ticks([0, 1, 2, 5, 6]) * 10, stealMs: ticks([7]) * 10 };
  } catch {
    return undefined;
  }
}

export function loadAverage(): number {
  return Math.round(loadavg()[0]! * 100) / 100;
}
