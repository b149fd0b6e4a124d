// A file of Bitcoin block headers, for verifying proofs without a Bitcoin node. Text, one item per
// line, so a shell loop over `bitcoin-cli getblockheader <hash> false` can write one:
//
//   network <mainnet|testnet|signet|regtest|bcoin-regtest>
//   start <height of the first header>
//   <80-byte header, 160 lowercase hex digits>     one line per height, start, start+1, …
//
// Loading checks that each header meets its own bits and the network's proof-of-work limit, that
// each names the one before it as prevHash, and, for a file that starts at 0, that the first is
// the network's genesis block. A file that starts higher trusts its first header. Difficulty
// retargeting is not checked: the file is the verifier's own view of the chain, not a peer's.
import { kalimaError } from '../src/errors.ts';
import { bytesEqual, toHex } from '../src/ledger/hash.ts';
import { BLOCK_HEADER_BYTES, bitcoinBlockHash, decodeBitcoinHeader, displayHex } from '../chains/bitcoin/block.ts';
import { proofOfWorkFailure } from './bitcoin.ts';
import { type BitcoinNetworkName, isBitcoinNetworkName, parseBitcoinNetwork } from '../chains/bitcoin/network.ts';

export class HeadersChain {
  constructor(
    readonly network: BitcoinNetworkName,
    readonly startHeight: number,
    private readonly headers: readonly Uint8Array[],
  ) {}

  get tipHeight(): number {
    return this.startHeight + this.headers.length - 1;
  }

  headerAt(height: number): Uint8Array | undefined {
    return this.headers[height - this.startHeight];
  }
}

function malformed(line: number, reason: string) {
  return kalimaError('KALIMA_ERR_PROOF_HEADERS_MALFORMED', { line, reason });
}

const HEADER_LINE = new RegExp(`^[0-9a-f]{${BLOCK_HEADER_BYTES * 2}}$`);

export function parseHeadersFile(text: string): HeadersChain {
  const lines = text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
  const networkMatch = /^network (\S+)$/.exec(lines[0] ?? '');
  if (networkMatch === null || !isBitcoinNetworkName(networkMatch[1])) throw malformed(1, 'expected "network <mainnet|testnet|signet|regtest|bcoin-regtest>"');
  const network = networkMatch[1];
  const startMatch = /^start (0|[1-9][0-9]*)$/.exec(lines[1] ?? '');
  const startHeight = startMatch === null ? Number.NaN : Number(startMatch[1]);
  if (!Number.isSafeInteger(startHeight)) throw malformed(2, 'expected "start <height>"');
  if (lines.length < 3) throw malformed(3, 'no headers');
  const { powLimit, genesisBlockHashHex } = parseBitcoinNetwork(network);
  const headers: Uint8Array[] = [];
  let previousHash: Uint8Array | undefined;
  for (let index = 2; index < lines.length; index++) {
    const lineNumber = index + 1;
    const line = lines[index]!;
    if (!HEADER_LINE.test(line)) throw malformed(lineNumber, `expected a header: ${BLOCK_HEADER_BYTES * 2} lowercase hex digits`);
    const header = new Uint8Array(Buffer.from(line, 'hex'));
    const powFailure = proofOfWorkFailure(header, powLimit);
    if (powFailure !== undefined) throw malformed(lineNumber, powFailure);
    const hash = bitcoinBlockHash(header);
    if (previousHash === undefined) {
      if (startHeight === 0 && displayHex(hash) !== genesisBlockHashHex) throw malformed(lineNumber, `the header at height 0 is not the ${network} genesis block`);
    } else if (!bytesEqual(decodeBitcoinHeader(header).prevHash, previousHash)) {
      throw malformed(lineNumber, `the header at height ${startHeight + index - 2} does not follow the one before it`);
    }
    headers.push(header);
    previousHash = hash;
  }
  return new HeadersChain(network, startHeight, headers);
}

export function formatHeadersFile(network: BitcoinNetworkName, startHeight: number, headers: readonly Uint8Array[]): string {
  return `network ${network}\nstart ${startHeight}\n${headers.map((header) => `${toHex(header)}\n`).join('')}`;
}
