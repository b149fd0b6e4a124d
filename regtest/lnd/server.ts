// An LND stand-in: a gRPC server built from the .proto files the `lightning` package ships (so the
// production adapter, chains/lightning, talks to it exactly as to LND), over TLS with a certificate
// made for `localhost`, checking the macaroon on every call. This first part answers
// Lightning.GetInfo; invoices, hold invoices, payments and a shared simulated network come next
// (issue 5). Loopback only.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { getPublicKey } from '@noble/secp256k1';
import selfsigned from 'selfsigned';
import { toHex } from '../../src/ledger/hash.ts';
import type { Rng } from '../../src/ports.ts';
import { systemRng } from '../../src/ports.ts';

const require = createRequire(import.meta.url);
/** Where the `lightning` package keeps LND's protos (flat: lightning.proto, invoices.proto, router.proto, …). */
export const LND_PROTOS = join(dirname(require.resolve('lightning/package.json')), 'grpc', 'protos');
/** The proto-loader options the `lightning` package uses (lnd_grpc/grpc_options.js), so both sides read the protos alike. */
const PROTO_OPTIONS: protoLoader.Options = { defaults: true, enums: String, keepCase: true, longs: String, oneofs: true };
/** What LND answers a wrong macaroon with. */
const MACAROON_REFUSED = 'verification failed: signature mismatch after caveat verification';

export interface LndStandInOptions {
  alias?: string;
  /** The port on 127.0.0.1; a free one when absent. */
  port?: number;
  rng?: Rng;
}

/** What a client needs to connect, in the forms the `lightning` package takes. */
export interface LndCredentials {
  /** host:port; `localhost`, which the certificate names. */
  socket: string;
  /** The TLS certificate (PEM), base64, as `lightning` takes it (LND's tls.cert, base64). */
  cert: string;
  /** The admin macaroon, hex. */
  macaroon: string;
}

type Handler = (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, callback: grpc.sendUnaryData<unknown>) => void;

export class LndStandIn {
  blockHeight = 0;
  blockHash = '0'.repeat(64);

  private constructor(
    private readonly server: grpc.Server,
    readonly credentials: LndCredentials,
    readonly alias: string,
    /** The node key's public half (compressed, hex): what GetInfo says and what its invoices will be signed with. */
    readonly identityPubkey: string,
  ) {}

  static async start(options: LndStandInOptions = {}): Promise<LndStandIn> {
    const rng = options.rng ?? systemRng;
    const { private: key, cert } = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' });
    const macaroon = toHex(rng.bytes(32));
    const definition = protoLoader.loadSync(join(LND_PROTOS, 'lightning.proto'), PROTO_OPTIONS);
    const lnrpc = (grpc.loadPackageDefinition(definition) as unknown as { lnrpc: { Lightning: grpc.ServiceClientConstructor } }).lnrpc;
    const server = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`127.0.0.1:${options.port ?? 0}`, grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(key), cert_chain: Buffer.from(cert) }], false), (error, bound) => (error ? reject(error) : resolve(bound)));
    });
    const standIn = new LndStandIn(server, { socket: `localhost:${port}`, cert: Buffer.from(cert).toString('base64'), macaroon }, options.alias ?? 'kalima-standin', toHex(getPublicKey(rng.bytes(32), true)));
    server.addService(lnrpc.Lightning.service, standIn.guard({ GetInfo: (_call, callback) => callback(null, standIn.info()) }));
    return standIn;
  }

  /** Every handler checks the macaroon first, as LND does. */
  private guard(handlers: Record<string, Handler>): grpc.UntypedServiceImplementation {
    const guarded: grpc.UntypedServiceImplementation = {};
    for (const [name, handler] of Object.entries(handlers)) {
      guarded[name] = ((call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        if (call.metadata.get('macaroon')[0] !== this.credentials.macaroon) {
          callback({ code: grpc.status.UNKNOWN, details: MACAROON_REFUSED });
          return;
        }
        handler(call, callback);
      }) as grpc.UntypedHandleCall;
    }
    return guarded;
  }

  /** Lightning.GetInfo, every field LND fills (the `lightning` package refuses an answer without them). */
  private info(): Record<string, unknown> {
    return {
      version: '0.20.0-beta kalima-standin', commit_hash: '', identity_pubkey: this.identityPubkey, alias: this.alias, color: '#3399ff',
      num_pending_channels: 0, num_active_channels: 0, num_inactive_channels: 0, num_peers: 0,
      block_height: this.blockHeight, block_hash: this.blockHash, best_header_timestamp: String(Math.floor(Date.now() / 1000)),
      synced_to_chain: true, synced_to_graph: true, testnet: false, chains: [{ chain: 'bitcoin', network: 'regtest' }], uris: [], features: {},
      require_htlc_interceptor: false, store_final_htlc_resolutions: false,
    };
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }

  /** Ends every call at once (a crash, as the adapter sees it). */
  kill(): void {
    this.server.forceShutdown();
  }
}

