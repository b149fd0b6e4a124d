// `npm start` runs `kalima devnet`: five masters and one validation node, each a process of its own,
// on 127.0.0.1. Within 45 s (on a busy 2-core machine) they must serve their APIs, agree on one leader
// and term, commit the demo device's writes on every node, and carry the validation node's
// validations; the sample purchase goes through the two LND stand-ins; a restart resumes the same chain.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeProofBinary, encodeProofBinary } from '../../anchors/proof-binary.ts';
import { decodeProofJson } from '../../anchors/proof-json.ts';
import { verifyProof } from '../../anchors/verify.ts';
import { tempDir } from '../support/chain.ts';

const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
});

interface Status {
  height: number;
  chain: string;
  subscribers: number;
  tipHash: string;
  consensus: { role: string; term: number; leader: string | null; member: string; peers: Array<{ id: string; api: string | null; member: string }>; validation?: { validatedHeight: number } };
}

async function status(url: string): Promise<Status> {
  const response = await fetch(`${url}/status`);
  return (await response.json()) as Status;
}

describe('kalima devnet', () => {
  it('runs five master processes and a validation node that elect one leader, commit the demo device\'s writes everywhere and validate them, and resumes its chain after a restart', async () => {
    const directory = await tempDir('kalima-devnet-');
    const start = (): { child: ChildProcess; urls: Promise<string[]>; output: () => string } => {
      const child = spawn(process.execPath, ['bin/kalima.mjs', 'devnet', '--dir', directory, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let output = '';
      const urls = new Promise<string[]>((resolve, reject) => {
        child.stdout!.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          const found = [...output.matchAll(/[mv](\d) API\s+(http:\/\/127\.0\.0\.1:\d+)/g)].map((match) => match[2]!);
          if (found.length === 6) resolve(found);
        });
        child.on('exit', (code) => reject(new Error(`devnet exited with ${code}: ${output}`)));
      });
      return { child, urls, output: () => output };
    };
    /** The sample purchase's lines: the listing, the invoice, the commit, the data at the buyer, the KLX. */
    const purchased = async (run: { output: () => string }): Promise<string> => {
      const deadline = Date.now() + 60_000;
      while (!/market: the buyer bought 100 KLX/.test(run.output()) && !/sample purchase failed/.test(run.output()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 250));
      return run.output();
    };

    const startedAt = Date.now();
    const first = start();
    const urls = await first.urls;
    let statuses: Status[] = [];
    while (Date.now() - startedAt < 45_000) {
      statuses = await Promise.all(urls.map(status));
      if (statuses.every((one) => one.height >= 3) && (statuses[5]!.consensus.validation?.validatedHeight ?? 0) >= 3 && statuses[1]!.subscribers >= 1) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(statuses.map((one) => one.height).every((height) => height >= 3)).toBe(true);
    expect(Date.now() - startedAt).toBeLessThan(45_000);
    expect(statuses.every((one) => one.chain === 'devnet')).toBe(true);
    // One leader, named alike by all, in one term; the nodes listed are these five masters and the validation node.
    expect(statuses.filter((one) => one.consensus.role === 'leader')).toHaveLength(1);
    expect(new Set(statuses.map((one) => `${one.consensus.term}:${one.consensus.leader}`)).size).toBe(1);
    expect(statuses[0]!.consensus.peers.map((peer) => peer.api).sort()).toEqual([...urls].sort());
    expect(statuses.map((one) => one.consensus.member)).toEqual(['master', 'master', 'master', 'master', 'master', 'validator']);
    // The validation node validated the chain, and the chain counts its rewards.
    expect(statuses[5]!.consensus.validation!.validatedHeight).toBeGreaterThanOrEqual(3);
    const rewards = (await (await fetch(`${urls[0]}/rewards`)).json()) as { masters: Array<{ blocks: number }>; validators: Array<{ validated: number; klx: string }> };
    expect(rewards.masters).toHaveLength(5);
    expect(rewards.validators).toHaveLength(1);
    expect(rewards.validators[0]!.validated).toBeGreaterThanOrEqual(3);
    // The demo subscriber listens on the second master.
    expect(statuses[1]!.subscribers).toBeGreaterThanOrEqual(1);
    // `kalima status` through any master shows the cluster.
    const cli = spawn(process.execPath, ['bin/kalima.mjs', 'status', '--url', urls[3]!, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let printed = '';
    cli.stdout!.on('data', (chunk: Buffer) => void (printed += chunk.toString()));
    await new Promise((resolve) => cli.once('exit', resolve));
    const view = JSON.parse(printed) as { rows: Array<{ status: { height: number } | undefined; anchors?: { network: string } }>; leader: string; term: number; commitRate: number };
    expect(view.rows).toHaveLength(6);
    expect(view.rows.every((row) => row.status !== undefined && row.status.height >= 3)).toBe(true);
    expect(view.leader).toBe(statuses[0]!.consensus.leader);
    expect(view.commitRate).toBeGreaterThan(0);
    // m1 anchors the chain into the devnet's bcoin (a block every few seconds): one anchor recorded at depth 2.
    expect(view.rows.filter((row) => row.anchors !== undefined).map((row) => row.anchors!.network)).toEqual(['bcoin-regtest']);
    let anchors: { commitments: Array<{ state: string; depth: number; tips: Array<{ height: number }> }> } = { commitments: [] };
    const anchoringFrom = Date.now();
    while (Date.now() - anchoringFrom < 60_000) {
      anchors = (await (await fetch(`${urls[0]}/anchors`)).json()) as typeof anchors;
      if (anchors.commitments.some((commitment) => commitment.state === 'recorded')) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const recorded = anchors.commitments.find((commitment) => commitment.state === 'recorded');
    expect(recorded, JSON.stringify(anchors).slice(0, 2_000)).toBeDefined();
    expect(recorded!.depth).toBeGreaterThanOrEqual(2);
    // m1 serves the proof of block 1, as JSON and as the binary .kproof; both verify offline, as the same proof.
    const proof = await fetch(`${urls[0]}/anchors/proof/1`);
    expect(proof.status).toBe(200);
    const shaped = decodeProofJson(await proof.text());
    const binary = await fetch(`${urls[0]}/anchors/proof/1?format=binary`);
    expect(binary.headers.get('content-type')).toBe('application/octet-stream');
    const bytes = new Uint8Array(await binary.arrayBuffer());
    expect(bytes).toEqual(encodeProofBinary(shaped.proof));
    expect(await verifyProof(decodeProofBinary(bytes), { kind: 'offline' })).toMatchObject({ valid: true, height: 1 });

    // The sample purchase over the two LND stand-ins.
    const market = await purchased(first);
    expect(market).toMatch(/market: listing plant1: \/sensors\/plant1, 2000 sats/);
    expect(market).toMatch(/m1 answers a hold invoice: lnbcrt/);
    expect(market).toMatch(/the coordinator committed: completed, SUB access until/);
    expect(market).toMatch(/data arriving at the buyer from m3: \/sensors\/plant1/);
    expect(market).toMatch(/bought 100 KLX for 1000 sats \(completed\); its balance is 100 KLX/);

    const height = Math.min(...statuses.map((one) => one.height));
    first.child.kill('SIGINT');
    await new Promise((resolve) => first.child.once('exit', resolve));
    const second = start();
    const resumed = await Promise.all((await second.urls).map(status));
    for (const one of resumed) expect(one.height).toBeGreaterThanOrEqual(height);
    // The anchors and the Bitcoin chain are kept across the restart: the recorded anchor is still there.
    const anchorsAgain = (await (await fetch(`${(await second.urls)[0]}/anchors`)).json()) as typeof anchors;
    expect(anchorsAgain.commitments.some((commitment) => commitment.state === 'recorded')).toBe(true);
    // The seller's LND keeps its identity across the restart, so the listing is paid to it again; the KLX add up.
    const again = await purchased(second);
    expect(again).toMatch(/the coordinator committed: completed/);
    expect(again).toMatch(/its balance is 200 KLX/);
    second.child.kill('SIGINT');
    await new Promise((resolve) => second.child.once('exit', resolve));
  }, 180_000);
});
