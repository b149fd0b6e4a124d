// The CLI's proof commands: `kalima proof` fetches a block's anchor proof from a node and writes it
// (JSON, or with --binary the compact .kproof; with --ots also the OpenTimestamps file and the
// .block file it timestamps); `kalima verify-proof` checks a JSON, .kproof or .ots proof offline,
// against a Bitcoin RPC or a headers file; `kalima headers` writes a headers file from a Bitcoin RPC.
import { readFile, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { BitcoinRpc } from '../../chains/bitcoin/rpc.ts';
import { networksWithGenesis } from '../../chains/bitcoin/network.ts';
import { formatHeadersFile, parseHeadersFile } from '../../anchors/headers-file.ts';
import { OTS_MAGIC, blockFileBytes, decodeOts, encodeOts, proofToOts } from '../../anchors/ots.ts';
import { decodeProofJson, encodeProofJson } from '../../anchors/proof-json.ts';
import { PROOF_BINARY_EXTENSION, decodeProofBinary, encodeProofBinary, isProofBinary } from '../../anchors/proof-binary.ts';
import type { ShapedProof } from '../../anchors/proof.ts';
import { type HeaderSource, type OtsVerdict, type ProofVerdict, verifierRpc, verifyOts, verifyProof } from '../../anchors/verify.ts';
import { KalimaError, isErrorCode, kalimaError } from '../errors.ts';

export interface RpcOptions {
  rpc?: string;
  rpcUser?: string;
  rpcPassword?: string;
  rpcCookie?: string;
}

export class ProofUsageError extends Error {}

/** The verifier waits on each call: one attempt, bounded, so a failure is said at once. */
const RPC_TIMEOUT_MS = 10_000;

function rpcClient(options: RpcOptions): BitcoinRpc | undefined {
  if (options.rpc === undefined) {
    if (options.rpcUser !== undefined || options.rpcPassword !== undefined || options.rpcCookie !== undefined) throw new ProofUsageError('--rpc-user, --rpc-password and --rpc-cookie go with --rpc URL');
    return undefined;
  }
  if (options.rpcCookie !== undefined && (options.rpcUser !== undefined || options.rpcPassword !== undefined)) throw new ProofUsageError('give --rpc-cookie or --rpc-user/--rpc-password, not both');
  if (!URL.canParse(options.rpc) || new URL(options.rpc).protocol !== 'http:') throw new ProofUsageError('--rpc takes an http:// URL (bitcoind and bcoin serve RPC over plain HTTP)');
  const auth = options.rpcCookie !== undefined ? { cookieFile: options.rpcCookie } : { user: options.rpcUser ?? '', password: options.rpcPassword ?? '' };
  // The 'core' dialect for bcoin too: getblockhash, getblockheader <hash> false and getblockcount
  // take the same arguments on both; the dialects differ in getblock and getrawtransaction.
  return new BitcoinRpc({ url: options.rpc, auth, dialect: 'core', timeoutMs: RPC_TIMEOUT_MS, maxAttempts: 1 });
}

async function headerSource(rpc: BitcoinRpc | undefined, headersFile: string | undefined): Promise<HeaderSource> {
  if (rpc !== undefined && headersFile !== undefined) throw new ProofUsageError('give --rpc or --headers, not both');
  if (rpc !== undefined) return { kind: 'rpc', rpc };
  if (headersFile !== undefined) return { kind: 'headers', headers: parseHeadersFile(await readFile(headersFile, 'utf8')) };
  return { kind: 'offline' };
}

const SOURCE_NAMES: Record<HeaderSource['kind'], string> = { offline: 'offline', rpc: 'Bitcoin RPC', headers: 'headers file' };

function isOts(file: string, bytes: Uint8Array): boolean {
  return file.endsWith('.ots') || bytes[0] === OTS_MAGIC[0];
}

/** A .kproof by its magic (JSON starts with "{", .ots with 00); the extension alone sends it to the binary decoder too. */
function isBinary(file: string, bytes: Uint8Array): boolean {
  return file.endsWith(PROOF_BINARY_EXTENSION) || isProofBinary(bytes);
}

function lines(rows: Array<[string, string]>): string {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}

/**
 * Offline, a proof shows only that its pieces fit together and that its Bitcoin header meets its
 * own proof of work: a header at a low difficulty is cheap to make, so nothing shows it is in
 * Bitcoin's chain, and its time is only claimed. Such a verdict is not VALID (exit 3, not 0).
 */
export const OFFLINE_EXIT_CODE = 3;

function proofSummary(file: string, form: 'JSON' | 'binary', verdict: ProofVerdict): string {
  const offline = verdict.source === 'offline';
  const confirmations = verdict.confirmations === undefined ? 'unknown (offline: give --rpc or --headers to count them)' : `${verdict.confirmations} (${SOURCE_NAMES[verdict.source]})`;
  const outcome = !verdict.valid
    ? `NOT VALID: ${verdict.failure!.reason}`
    : offline
      ? 'CONSISTENT, NOT CHECKED AGAINST BITCOIN: every commitment holds, but nothing here shows the header is in Bitcoin\'s chain (a header of low difficulty is cheap to make); give --rpc or --headers'
      : 'VALID';
  return [
    lines([
      ['proof', `${basename(file)} (${form} proof, Bitcoin ${verdict.network})`],
      ['block', `${verdict.chain} height ${verdict.height}, hash ${verdict.blockHash}`],
      ['anchored tip', `height ${verdict.tipHeight}`],
      ['anchor tx', verdict.anchorTxid],
      ['bitcoin block', `height ${verdict.bitcoinHeight}, hash ${verdict.bitcoinBlockHash}`],
      offline ? ['claimed time', `${verdict.attestedTime} (the header's own time, attested only once the header is found in Bitcoin's chain)`] : ['attested time', `${verdict.attestedTime} (the Bitcoin block's header time)`],
      ['confirmations', confirmations],
    ]),
    'checked:',
    ...verdict.checked.map((check) => `  - ${check}`),
    outcome,
  ].join('\n');
}

function otsSummary(file: string, verdict: OtsVerdict, source: HeaderSource['kind']): string {
  return [
    lines([
      ['proof', `${basename(file)} (OpenTimestamps; it carries the operations and the Bitcoin height, not the Kalima pieces)`],
      ['block hash', `${verdict.fileDigest} (the timestamped digest)`],
      ['bitcoin block', `height ${verdict.bitcoinHeight}${verdict.bitcoinBlockHash === undefined ? '' : `, hash ${verdict.bitcoinBlockHash}`}${verdict.network === undefined ? '' : ` (${verdict.network})`}`],
      ['attested time', verdict.attestedTime === undefined ? 'unknown' : `${verdict.attestedTime} (the Bitcoin block's header time)`],
      ['confirmations', verdict.confirmations === undefined ? 'unknown' : `${verdict.confirmations} (${SOURCE_NAMES[source]})`],
    ]),
    'checked:',
    ...verdict.checked.map((check) => `  - ${check}`),
    '  (not checked from an .ots alone: which chain, height and tip the block hash belongs to; verify the JSON or .kproof proof for those)',
    verdict.valid ? 'VALID' : `NOT VALID: ${verdict.failure!.reason}`,
  ].join('\n');
}

/**
 * Verifies a proof file; prints the summary (or the verdict as JSON); a failed proof throws its
 * code. Resolves 'valid' when the header was found in a source's best chain, 'offline' when only
 * the proof itself was checked.
 */
export async function verifyProofFile(file: string, options: RpcOptions & { headers?: string; json?: boolean }, write: (text: string) => void): Promise<'valid' | 'offline'> {
  const rpc = rpcClient(options);
  try {
    const source = await headerSource(rpc, options.headers);
    await verifyWith(file, source, options.json === true, write);
    return source.kind === 'offline' ? 'offline' : 'valid';
  } finally {
    rpc?.close();
  }
}

async function verifyWith(file: string, source: HeaderSource, json: boolean, write: (text: string) => void): Promise<void> {
  const bytes = new Uint8Array(await readFile(file));
  let verdict: ProofVerdict | OtsVerdict;
  if (isOts(file, bytes)) {
    const timestamp = decodeOts(bytes);
    if (source.kind === 'offline') throw new ProofUsageError('an .ots file carries no Bitcoin header: give --rpc or --headers to check its attestation');
    const otsVerdict = await verifyOts(timestamp, source);
    write(json ? JSON.stringify(otsVerdict, null, 2) : otsSummary(file, otsVerdict, source.kind));
    verdict = otsVerdict;
  } else {
    const binary = isBinary(file, bytes);
    const shaped = binary ? decodeProofBinary(bytes) : decodeProofJson(new TextDecoder().decode(bytes));
    const proofVerdict = await verifyProof(shaped, source);
    write(json ? JSON.stringify(proofVerdict, null, 2) : proofSummary(file, binary ? 'binary' : 'JSON', proofVerdict));
    verdict = proofVerdict;
  }
  if (!verdict.valid) throw kalimaError(verdict.failure!.code, { step: verdict.failure!.step, reason: verdict.failure!.reason });
}

/** Fetches GET /anchors/proof/:height in `format`; a node's catalogue error keeps its code. */
async function fetchProofBody(url: string, height: number, format: 'json' | 'binary'): Promise<Uint8Array> {
  let response: Response;
  let body: Uint8Array;
  try {
    response = await fetch(`${url.replace(/\/+$/, '')}/anchors/proof/${height}${format === 'binary' ? '?format=binary' : ''}`, { signal: AbortSignal.timeout(30_000) });
    body = new Uint8Array(await response.arrayBuffer());
  } catch (error) {
    throw kalimaError('KALIMA_ERR_SDK_UNREACHABLE', { url, cause: (error as Error).message });
  }
  if (response.ok) return body;
  const text = new TextDecoder().decode(body);
  let error: { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined;
  try {
    error = JSON.parse(text) as typeof error;
  } catch {
    error = undefined;
  }
  const code = error?.error?.code;
  if (typeof code === 'string' && isErrorCode(code)) {
    throw new KalimaError(code, (error?.error?.details as Record<string, unknown>) ?? {}, typeof error?.error?.message === 'string' ? error.error.message : undefined);
  }
  throw kalimaError('KALIMA_ERR_SDK_BAD_RESPONSE', { status: response.status, body: text.slice(0, 200) });
}

/**
 * Writes the proof of block `height` as `out`: JSON (`<height>.json`), or with `binary` the
 * compact binary proof instead (`<height>.kproof`, fetched with ?format=binary). With `ots`, also
 * `<base>.ots` and, when the proof carries the block's header, `<base>.block` (the bytes whose
 * SHA-256 is the block hash). The proof is checked offline before anything is written.
 */
export async function fetchProof(options: { url: string; height: number; out?: string; ots?: boolean; binary?: boolean }, write: (text: string) => void): Promise<void> {
  const binary = options.binary === true;
  const body = await fetchProofBody(options.url, options.height, binary ? 'binary' : 'json');
  const shaped: ShapedProof = binary ? decodeProofBinary(body) : decodeProofJson(new TextDecoder().decode(body));
  const verdict = await verifyProof(shaped, { kind: 'offline' });
  if (!verdict.valid) throw kalimaError(verdict.failure!.code, { step: verdict.failure!.step, reason: verdict.failure!.reason, height: options.height });
  const { proof } = shaped;
  if (proof.height !== options.height) throw kalimaError('KALIMA_ERR_SDK_BAD_RESPONSE', { reason: `asked for block ${options.height}, the node sent the proof of block ${proof.height}` });
  const extension = binary ? PROOF_BINARY_EXTENSION : '.json';
  const out = options.out ?? `${options.height}${extension}`;
  const base = out.endsWith(extension) ? out.slice(0, -extension.length) : out;
  // The canonical encoding of what was checked (for a binary answer, the same bytes).
  await writeFile(out, binary ? encodeProofBinary(proof) : `${encodeProofJson(proof)}\n`);
  const written = [`${out}  ${binary ? 'binary' : 'JSON'} proof of ${proof.chain} block ${proof.height}, anchored in Bitcoin ${proof.network} block ${proof.bitcoinHeight}`];
  if (options.ots === true) {
    await writeFile(`${base}.ots`, encodeOts(proofToOts(proof)));
    written.push(`${base}.ots  OpenTimestamps proof of the block hash`);
    const header = proof.blockHeader ?? (shaped.tip.height === proof.height ? proof.tipHeader : undefined);
    if (header !== undefined) {
      await writeFile(`${base}.block`, blockFileBytes(header));
      written.push(`${base}.block  the timestamped file: ots verify -f ${base}.block ${base}.ots`);
    } else {
      written.push(`(no ${base}.block: the node's proof does not carry the block's own header)`);
    }
  }
  write(written.join('\n'));
}

/** Writes a headers file from heights `from` … `to` (default the tip) of a Bitcoin node. */
export async function writeHeadersFile(options: RpcOptions & { out: string; from?: number; to?: number }, write: (text: string) => void): Promise<void> {
  const client = rpcClient(options);
  if (client === undefined) throw new ProofUsageError('headers needs --rpc URL');
  try {
    const rpc = verifierRpc(client);
    const genesis = await rpc.getBlockHash(0);
    const network = networksWithGenesis(genesis)[0];
    if (network === undefined) throw kalimaError('KALIMA_ERR_PROOF_WRONG_NETWORK', { reason: 'the node is on no network this verifier knows', genesis });
    const from = options.from ?? 0;
    const to = options.to ?? (await rpc.getBlockCount());
    if (to < from) throw new ProofUsageError(`--to ${to} is below --from ${from}`);
    const headers: Uint8Array[] = [];
    for (let height = from; height <= to; height++) headers.push(new Uint8Array(Buffer.from(await rpc.getBlockHeaderHex(await rpc.getBlockHash(height)), 'hex')));
    const text = formatHeadersFile(network, from, headers);
    // What is written must load: linkage, proof of work and genesis are checked as the verifier will.
    parseHeadersFile(text);
    await writeFile(options.out, text);
    write(`${options.out}  ${headers.length} ${network} headers, heights ${from} to ${to}`);
  } finally {
    client.close();
  }
}
