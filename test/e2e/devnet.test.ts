// `npm start` runs `kalima devnet`: within 20 s it must serve the API on 127.0.0.1 and commit
// blocks written by the demo device.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/chain.ts';

const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
});

async function status(url: string): Promise<{ height: number; chain: string; subscribers: number }> {
  const response = await fetch(`${url}/status`);
  return (await response.json()) as { height: number; chain: string; subscribers: number };
}

describe('kalima devnet', () => {
  it('serves the API and commits blocks within 20 s, and resumes its chain after a restart', async () => {
    const directory = await tempDir('kalima-devnet-');
    const start = (): { child: ChildProcess; url: Promise<string> } => {
      const child = spawn(process.execPath, ['bin/kalima.mjs', 'devnet', '--dir', directory, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let output = '';
      const url = new Promise<string>((resolve, reject) => {
        child.stdout!.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          const match = /API\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(output);
          if (match) resolve(match[1]!);
        });
        child.on('exit', (code) => reject(new Error(`devnet exited with ${code}: ${output}`)));
      });
      return { child, url };
    };

    const startedAt = Date.now();
    const first = start();
    const url = await first.url;
    let height = 0;
    while (Date.now() - startedAt < 20_000) {
      height = (await status(url)).height;
      if (height >= 3) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(height).toBeGreaterThanOrEqual(3);
    expect(Date.now() - startedAt).toBeLessThan(20_000);
    const running = await status(url);
    expect(running.chain).toBe('devnet');
    expect(running.subscribers).toBeGreaterThanOrEqual(1);

    first.child.kill('SIGINT');
    await new Promise((resolve) => first.child.once('exit', resolve));
    const second = start();
    const resumed = await status(await second.url);
    expect(resumed.height).toBeGreaterThanOrEqual(height);
    second.child.kill('SIGINT');
    await new Promise((resolve) => second.child.once('exit', resolve));
  });
});
