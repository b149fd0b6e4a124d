// The three Bitcoin RPC calls the verifier needs, over JSON-RPC 1.0 with basic auth (bitcoind's
// and bcoin's interface). chains/bitcoin has the node's full client; this one is all the
// verifier, the CLI and the headers-file writer need, so a proof can be checked with nothing of
// the node but this folder.
import { readFile } from 'node:fs/promises';
import { kalimaError } from '../src/errors.ts';
import type { BitcoinHeaderRpc } from './verify.ts';

export interface JsonRpcOptions {
  url: string;
  user?: string;
  password?: string;
  timeoutMs?: number;
}

const TIMEOUT_MS_DEFAULT = 10_000;

export class JsonRpcHeaderClient implements BitcoinHeaderRpc {
  private nextId = 1;

  constructor(private readonly options: JsonRpcOptions) {}

  /** bitcoind's cookie file holds "user:password" (user __cookie__). */
  static async fromCookieFile(url: string, cookieFile: string): Promise<JsonRpcHeaderClient> {
    const cookie = (await readFile(cookieFile, 'utf8')).trim();
    const separator = cookie.indexOf(':');
    if (separator < 0) throw kalimaError('KALIMA_ERR_PROOF_RPC_FAILED', { cookieFile, reason: 'the cookie file does not hold user:password' });
    return new JsonRpcHeaderClient({ url, user: cookie.slice(0, separator), password: cookie.slice(separator + 1) });
  }

  async getBlockHash(height: number): Promise<string> {
    return this.hash(await this.call('getblockhash', [height]), 'getblockhash');
  }

  async getBlockHeaderHex(blockHash: string): Promise<string> {
    const header = await this.call('getblockheader', [blockHash, false]);
    if (typeof header !== 'string' || !/^[0-9a-f]{160}$/.test(header)) throw kalimaError('KALIMA_ERR_PROOF_RPC_FAILED', { method: 'getblockheader', reason: 'not an 80-byte header in hex' });
    return header;
  }

  async getBlockCount(): Promise<number> {
    const count = await this.call('getblockcount', []);
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) throw kalimaError('KALIMA_ERR_PROOF_RPC_FAILED', { method: 'getblockcount', reason: 'not a block count' });
    return count;
  }

  private hash(value: unknown, method: string): string {
    if (typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value)) throw kalimaError('KALIMA_ERR_PROOF_RPC_FAILED', { method, reason: 'not a block hash' });
    return value;
  }

  async call(method: string, params: unknown[]): Promise<unknown> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.options.user !== undefined || this.options.password !== undefined) {
      headers.authorization = `Basic ${Buffer.from(`${this.options.user ?? ''}:${this.options.password ?? ''}`).toString('base64')}`;
    }
    let response: Response;
    let text: string;
    try {
      response = await fetch(this.options.url, {
        method: 'POST', headers, body: JSON.stringify({ jsonrpc: '1.0', id: this.nextId++, method, params }),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? TIMEOUT_MS_DEFAULT),
      });
      text = await response.text();
    } catch (error) {
      throw kalimaError('KALIMA_ERR_PROOF_RPC_FAILED', { method, url: this.options.url, reason: (error as Error).message });
    }
    let body: { result?: unknown; error?: { code?: number; message?: string } | null } | undefined;
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      body = undefined;
    }
    // bitcoind answers an RPC error with HTTP 500 and the error in the body; bcoin with 200.
    if (body?.error !== undefined && body.error !== null) {
      throw kalimaError('KALIMA_ERR_PROOF_RPC_FAILED', { method, rpcCode: body.error.code, reason: body.error.message });
    }
    if (!response.ok || body === undefined || !('result' in body)) throw kalimaError('KALIMA_ERR_PROOF_RPC_FAILED', { method, status: response.status, reason: text.slice(0, 200) });
    return body.result;
  }
}
