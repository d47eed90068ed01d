// listen() and Server: a WebSocket server whose listening socket node-lws owns.
import type { X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { lstatSync, realpathSync, statSync, unlinkSync } from 'node:fs';
import type { Server as HttpServer, IncomingMessage } from 'node:http';
import { isIP, connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Adapter, type AdapterError, type AdapterSink, isAdapter } from './adapter';
import { attachRouter, detachRouter } from './attach';
import { nodeCrypto, nodeDns, nodeRootCertificates, nodeTls } from './builtins';
import { checkSocketPath } from './client';
import {
  Connection,
  type ConnectionSettings,
  checkTopic,
  type PeerTls,
  type TopicHub,
  type UpgradeRequest,
} from './connection';
import {
  abortError,
  codedError,
  invalidArgType,
  invalidArgValue,
  type SystemError,
} from './errors';
import {
  checkHandover,
  Handover,
  type HandoverOwner,
  socketGone,
  type UpgradeError,
} from './handover';
import {
  binding,
  type NativeConnectError,
  type NativeOpenInfo,
  type NativeRequestInfo,
  type NativeServerConfig,
  type NativeSniCert,
} from './native';
import {
  connOptions,
  type HeartbeatOptions,
  hasMethods,
  optBackpressure,
  optBool,
  optFunction,
  optInt,
  optObject,
  optProtocols,
  optSignal,
  optString,
  optStringList,
  type PerMessageDeflateOptions,
  type ResponseHeaders,
  readPem,
  responseHeaderLines,
} from './options';
import { type ConnectionSink, type Logger, runtime, type ServerSink } from './runtime';
import {
  type BackpressureOptions,
  type BackpressurePolicy,
  sendsBinary,
  type WebSocketData,
} from './transport';

export interface BindRetryInfo {
  /** The attempt that failed (1-based). */
  attempt: number;
  error: SystemError;
  /** How long node-lws waits before the next attempt. */
  delayMs: number;
}

export interface BindRetryOptions {
  /** Further attempts after the first when the port is busy (EADDRINUSE). Default 4. */
  retries?: number;
  /** First delay; doubles each attempt. Default 50. */
  minDelayMs?: number;
  /** Delay cap. Default 400 (so the defaults give up after about 0.75 s). */
  maxDelayMs?: number;
  /** Called before each wait. */
  onRetry?: (info: BindRetryInfo) => void;
}

export interface ListenOptions {
  /** TCP port; 0 (the default) lets the kernel choose. Read the real one from `server.port`. */
  port?: number;
  /**
   * Listen on this Unix domain socket path instead of a TCP port (at most 107 bytes). close()
   * removes the socket file. A file left there by a process that is gone fails listen() with
   * ERR_SOCKET_STALE unless `removeStaleSocket` is set; a file that is not a socket, ENOTSOCK.
   */
  socketPath?: string;
  /** Remove a stale socket file at `socketPath` (one nothing listens on) and listen there. */
  removeStaleSocket?: boolean;
  /**
   * Address to bind: an IPv4 or IPv6 literal, or a name resolved with dns.lookup.
   * Default '::' (all interfaces, dual-stack), falling back to '0.0.0.0' without IPv6.
   */
  host?: string;
  /** SO_REUSEADDR, default true: a port in TIME_WAIT can be bound again at once. */
  reuseAddr?: boolean;
  /** SO_REUSEPORT, default false: lets several sockets (and processes) share a port. */
  reusePort?: boolean;
  /** IPV6_V6ONLY for IPv6 hosts, default false (so '::' also accepts IPv4). */
  ipv6Only?: boolean;
  /** listen() backlog, default 511. */
  backlog?: number;
  /** Retry policy when an explicit port is busy; `false` disables retries. */
  bindRetry?: BindRetryOptions | false;
  /** Largest message accepted, in bytes (default 64 MiB); larger ones close with 1009. */
  maxPayload?: number;
  /** send() returns false once this many bytes are buffered (default 1 MiB). */
  highWaterMark?: number;
  /**
   * Hard bound on a connection's buffered bytes (default 64 MiB; `Infinity` for none): see
   * backpressurePolicy.
   */
  maxBackpressure?: number;
  /**
   * Stop reading a connection while more than this many bytes of its received messages are
   * not consumed by JavaScript yet (on their way to it, or kept by pause() or an async iterator;
   * each message counts 64 bytes besides its payload); resume at half of it. Default 256 KiB.
   * TCP flow control then slows the peer down. A larger mark lets one connection stream faster
   * to a fast consumer; a smaller one keeps other connections' messages from waiting behind it.
   */
  receiveHighWaterMark?: number;
  /** Past maxBackpressure, 'close' the connection with 1008 (default) or 'drop' new messages. */
  backpressurePolicy?: BackpressurePolicy;
  /**
   * A client must complete its upgrade request within this time of connecting, TLS handshake
   * included on a TLS server (default 10 s).
   */
  handshakeTimeoutMs?: number;
  /** How long a closing handshake may take before the TCP connection is dropped (default 5 s). */
  closeTimeoutMs?: number;
  /** Largest upgrade request head, in bytes (default 16 KiB); larger gets 431. */
  maxHeaderBytes?: number;
  /** Subprotocols this server accepts; the client's first offered match is chosen. */
  protocols?: string[];
  /** Aborts a listen() still binding or retrying. */
  signal?: AbortSignal;
  /** Receives the lws log lines while this server is open. */
  logger?: Logger;
  /**
   * Decides each upgrade before it is answered: `true` accepts, `false` answers 403,
   * `{ status, headers?, body? }` answers that HTTP status, and `{ accept: true, headers?, data? }`
   * accepts with more 101 response headers (e.g. Set-Cookie) and `data` for `conn.data`.
   * May return a Promise.
   */
  verify?: (request: VerifyRequest) => VerifyResult | Promise<VerifyResult>;
  /**
   * Headers added to every 101 response: an object (the same for every connection), or a
   * function of the request and the subprotocol the response will carry ('' for none), called
   * once verify and the subprotocol choice have accepted the upgrade (may return a Promise). A
   * list value gives one header line per item (several Set-Cookie headers).
   */
  headers?:
    | ResponseHeaders
    | ((
        request: VerifyRequest,
        protocol: string,
      ) => ResponseHeaders | undefined | Promise<ResponseHeaders | undefined>);
  /** Picks the subprotocol from the client's offer (in its order); `false` for none. */
  handleProtocols?: (
    offered: string[],
    request: VerifyRequest,
  ) => string | false | Promise<string | false>;
  /** Accept upgrades only from these Origin header values (403 otherwise). */
  allowedOrigins?: string[];
  /** Open WebSocket connections allowed at once; beyond it upgrades get 503. */
  maxConnections?: number;
  /**
   * Bytes the request heads still arriving on this server's sockets may hold together, with the
   * TLS handshakes in progress on a TLS server (48 KiB each) (default 8 MiB, 32 MiB with `tls`;
   * at least twice maxHeaderBytes). Past it, the one that began first is closed (answered 503 if
   * its request began): a client that sends its head slowly, or stops in its TLS handshake,
   * cannot hold memory for many others.
   */
  maxPendingHeaderBytes?: number;
  /** Accept upgrades only on this path (404 otherwise), e.g. '/ws'. */
  path?: string;
  /** Answer `GET /health` with `{ status, connections, uptimeMs }`. */
  health?: boolean;
  /** Serve the files of a folder over HTTP on the same port. */
  static?: { root: string; index?: string };
  /** Ping idle connections; drop those that stay silent (close code 1006). */
  heartbeat?: HeartbeatOptions;
  /** Serve wss:// (TLS). */
  tls?: ServerTlsOptions;
  /**
   * 'string' (default): text messages arrive as strings. 'buffer': as Buffers
   * (isBinary false) — no UTF-8 decoding, as ws does; send(buffer, false) sends text.
   */
  textAs?: 'string' | 'buffer';
  /**
   * Lend messages instead of handing them over (default false). A binary message (and a text
   * message with `textAs: 'buffer'`) reaches 'message' listeners as a Buffer over node-lws's
   * receive memory, valid until the listeners return: then it is detached and reads as an empty
   * Buffer, and its memory is reused at once instead of waiting for V8 to collect it. A listener
   * that keeps a message must copy it (`Buffer.from(data)`). send() and publish() of a lent
   * message are safe (send() keeps the lent memory until it is written, publish() copies);
   * messages kept by pause() or an async iterator are copied for you, and postMessage() copies
   * a lent ArrayBuffer even when it is in the transfer list.
   */
  lendMessages?: boolean;
  /** permessage-deflate (off by default): `true` or options. Inflated size is bounded by maxPayload. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /**
   * Shares this server's topics with other servers (processes, machines): every publish also
   * goes to the adapter, and what other servers publish reaches this server's subscribers. One
   * adapter per server (e.g. `createRedisAdapter()` from 'node-lws/redis'); close() closes it.
   */
  adapter?: Adapter;
}

/** A certificate and key (each a file path or a Buffer with PEM). */
export interface TlsCertificate {
  /** The certificate; more certificates after the first are sent as its chain. */
  cert: string | Buffer;
  /** Its key: RSA or EC; an encrypted key needs `passphrase`. */
  key: string | Buffer;
  passphrase?: string;
  /** More certificates: those that issued `cert` are sent as its chain. */
  ca?: string | Buffer;
}

export interface ServerTlsOptions extends TlsCertificate {
  /**
   * The certificates trusted for client certificates (`requestCert`; default Node's root
   * certificates); those among them that issued `cert` are also sent as its chain.
   */
  ca?: string | Buffer;
  /** Ask clients for a certificate (mutual TLS); see `conn.peerCertificate`. Default false. */
  requestCert?: boolean;
  /**
   * With requestCert: refuse (in the TLS handshake) a client without a certificate that
   * verifies against `ca` (default true); false accepts it and reports `conn.authorized`.
   */
  rejectUnauthorized?: boolean;
  /**
   * More certificates on the same port, chosen by the server name the client sends (SNI):
   * `{ 'a.example': { cert, key }, '*.b.example': { cert, key } }`. Other names (and clients
   * sending none) get `cert`. requestCert and rejectUnauthorized apply to every name.
   */
  sni?: Record<string, TlsCertificate>;
}

/** What verify() and handleProtocols() are given. */
export interface VerifyRequest extends PeerTls {
  path: string;
  headers: Record<string, string>;
  origin: string | undefined;
  remoteAddress: string;
  remotePort: number;
  /** Subprotocols the client offered, in its order. */
  protocols: string[];
  /** The request as Node's HTTP server parsed it, when it came through handleUpgrade(). */
  httpRequest?: IncomingMessage;
}

/** A server without a listening socket of its own: createServer() and attach(). */
export type CreateServerOptions = Omit<
  ListenOptions,
  | 'port'
  | 'host'
  | 'reuseAddr'
  | 'reusePort'
  | 'ipv6Only'
  | 'backlog'
  | 'bindRetry'
  | 'signal'
  | 'tls'
  | 'socketPath'
  | 'removeStaleSocket'
>;

export interface AttachOptions extends CreateServerOptions {
  /**
   * Take upgrades for this path only (`/ws`; the query is ignored). Without it the server takes
   * every upgrade request that no other attached node-lws server claims by its path.
   */
  path?: string;
}

/** The callback of handleUpgrade(): the connection is open. */
export type HandleUpgradeCallback = (conn: Connection, request: UpgradeRequest) => void;

export type VerifyResult =
  | boolean
  | { accept?: false; status: number; headers?: ResponseHeaders; body?: string }
  | { accept: true; headers?: ResponseHeaders; data?: unknown };

export interface AddressInfo {
  /** An IP address, or a Unix socket's path (family 'Unix', port 0). */
  address: string;
  family: 'IPv4' | 'IPv6' | 'Unix';
  port: number;
}

export interface ServerEvents {
  connection: [conn: Connection, request: UpgradeRequest];
  close: [];
  error: [err: Error];
  /**
   * An upgrade handed over by handleUpgrade() did not become a connection: refused with an HTTP
   * status (`err.status`; node-lws has answered it), timed out, reset by the client, or its
   * socket was destroyed already.
   */
  upgradeError: [err: UpgradeError, request: IncomingMessage];
}

interface Normalized {
  port: number;
  host: string | undefined;
  socketPath: string | undefined;
  removeStaleSocket: boolean;
  reuseAddr: boolean;
  reusePort: boolean;
  ipv6Only: boolean;
  backlog: number;
  retries: number;
  minDelayMs: number;
  maxDelayMs: number;
  onRetry: ((info: BindRetryInfo) => void) | undefined;
  signal: AbortSignal | undefined;
  logger: Logger | undefined;
  backpressure: BackpressureOptions;
  verify: ListenOptions['verify'];
  handleProtocols: ListenOptions['handleProtocols'];
  headersHook: Exclude<ListenOptions['headers'], ResponseHeaders | undefined> | undefined;
  adapter: Adapter | undefined;
  config: NativeServerConfig;
}

/** Options of listen() that need a socket of the server's own. */
const SOCKET_OPTIONS = [
  'port',
  'host',
  'reuseAddr',
  'reusePort',
  'ipv6Only',
  'backlog',
  'bindRetry',
  'signal',
  'tls',
  'socketPath',
  'removeStaleSocket',
] as const;

function normalize(options: unknown): Normalized {
  if (options === undefined) options = {};
  if (options === null || typeof options !== 'object') {
    throw invalidArgType('options', 'an object', options);
  }
  const o = options as Record<string, unknown>;
  const verify = optFunction<ListenOptions['verify']>(o, 'verify');
  const handleProtocols = optFunction<ListenOptions['handleProtocols']>(o, 'handleProtocols');
  const headersHook =
    typeof o.headers === 'function' ? (o.headers as Normalized['headersHook']) : undefined;
  const upgradeHeaders = headersHook ? '' : responseHeaderLines('headers', o.headers);
  let socketPath: string | undefined;
  if (o.socketPath !== undefined) {
    socketPath = checkSocketPath('socketPath', o.socketPath, 'bind');
    for (const name of ['host', 'port', 'reusePort', 'ipv6Only'] as const) {
      if (o[name] !== undefined)
        throw invalidArgValue(name, 'cannot be combined with socketPath', o[name]);
    }
  }
  const path = optString(o, 'path') ?? '';
  if (path !== '' && (!path.startsWith('/') || /[\s?#]/.test(path))) {
    throw invalidArgValue('path', "must start with '/' and contain no query", path);
  }
  if (o.adapter !== undefined && !isAdapter(o.adapter))
    throw invalidArgType(
      'adapter',
      'an adapter (attach, subscribe, unsubscribe, publish, close, on, off, listenerCount)',
      o.adapter,
    );
  const tlsMaterial = serverTls(optObject(o, 'tls'));
  const conn = connOptions(o, { name: 'handshakeTimeoutMs', def: 10_000 });
  const stat = optObject(o, 'static');
  let staticRoot = '';
  let staticIndex = 'index.html';
  if (stat) {
    const root = optString(stat, 'root');
    if (!root) throw invalidArgType('static.root', 'a folder path', root);
    try {
      staticRoot = realpathSync(root);
      if (!statSync(staticRoot).isDirectory()) throw new Error('not a folder');
    } catch (e) {
      throw invalidArgValue(
        'static.root',
        `must name an existing folder (${(e as Error).message})`,
        root,
      );
    }
    staticIndex = optString(stat, 'index') ?? staticIndex;
    if (staticIndex.includes('/'))
      throw invalidArgValue('static.index', 'must be a file name', staticIndex);
  }
  const retry = o.bindRetry === false ? { retries: 0 } : (optObject(o, 'bindRetry') ?? {});
  const minDelayMs = optInt(retry, 'minDelayMs', 50, 0, 60_000, 'bindRetry.');
  const maxDelayMs = optInt(
    retry,
    'maxDelayMs',
    Math.max(400, minDelayMs),
    minDelayMs,
    600_000,
    'bindRetry.',
  );
  return {
    port: optInt(o, 'port', 0, 0, 65535),
    host: optString(o, 'host'),
    socketPath,
    removeStaleSocket: optBool(o, 'removeStaleSocket', false),
    reuseAddr: optBool(o, 'reuseAddr', true),
    reusePort: optBool(o, 'reusePort', false),
    ipv6Only: optBool(o, 'ipv6Only', false),
    backlog: optInt(o, 'backlog', 511, 1, 65535),
    retries: optInt(retry, 'retries', 4, 0, 1000, 'bindRetry.'),
    minDelayMs,
    maxDelayMs,
    onRetry: optFunction(retry, 'onRetry', 'bindRetry.'),
    signal: optSignal(o),
    logger: optFunction(o, 'logger'),
    backpressure: optBackpressure(o),
    verify,
    handleProtocols,
    headersHook,
    adapter: o.adapter as Adapter | undefined,
    config: {
      conn,
      protocols: optProtocols(o),
      verify: verify !== undefined || handleProtocols !== undefined || headersHook !== undefined,
      maxConnections: optInt(o, 'maxConnections', 0, 0, 2 ** 31 - 1),
      // A head being read may take twice its size (its buffer doubles as it grows). A TLS
      // handshake in progress counts 48 KiB: 32 MiB lets ~680 be in progress at once (an honest
      // one lasts a round trip), 8 MiB only ~170.
      maxPendingHeaderBytes: optInt(
        o,
        'maxPendingHeaderBytes',
        tlsMaterial.tlsCert !== '' ? 32 * 1024 * 1024 : 8 * 1024 * 1024,
        2 * conn.maxHeaderBytes,
        Number.MAX_SAFE_INTEGER,
      ),
      allowedOrigins: optStringList(o, 'allowedOrigins'),
      path,
      health: optBool(o, 'health', false),
      staticRoot,
      staticIndex,
      upgradeHeaders,
      unixPath: '',
      unixDev: '',
      unixIno: '',
      ...tlsMaterial,
    },
  };
}

type TlsMaterial = Pick<
  NativeServerConfig,
  | 'tlsCert'
  | 'tlsKey'
  | 'tlsPassphrase'
  | 'tlsChain'
  | 'tlsRequestCert'
  | 'tlsRejectUnauthorized'
  | 'tlsClientCa'
  | 'tlsSni'
>;

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * One certificate and key, read and checked with Node's own TLS for a clear error: the leaf,
 * its chain (the rest of the bundle, then those `ca` certificates that issued it) and the key
 * unencrypted in the classic PEM form for its type (which lws takes).
 */
function certificate(
  name: string,
  t: Record<string, unknown>,
): { cert: string; chain: string; key: string } {
  const certPem = readPem(`${name}.cert`, t.cert);
  const blocks = certPem.match(PEM_CERT) ?? [];
  const cert = blocks[0] ?? certPem;
  const caPem = t.ca === undefined ? '' : readPem(`${name}.ca`, t.ca);
  const keyPem = readPem(`${name}.key`, t.key);
  const passphrase = optString(t, 'passphrase');
  try {
    const { X509Certificate, createPrivateKey } = nodeCrypto();
    nodeTls().createSecureContext({
      cert: certPem,
      key: keyPem,
      passphrase,
      ca: caPem || undefined,
    });
    const chainBlocks = blocks.slice(1);
    // The issuers of the last certificate so far, from ca, up to a root (not sent).
    const pool = (caPem.match(PEM_CERT) ?? []).map((p) => ({ pem: p, x: new X509Certificate(p) }));
    let last = new X509Certificate(chainBlocks[chainBlocks.length - 1] ?? cert);
    for (let depth = 0; depth < 8; depth++) {
      const issuer = pool.find((c) => last.checkIssued(c.x) && c.x.subject !== last.subject);
      if (!issuer || issuer.x.checkIssued(issuer.x)) break;
      if (!chainBlocks.includes(issuer.pem)) chainBlocks.push(issuer.pem);
      last = issuer.x;
    }
    const k = createPrivateKey({ key: keyPem, passphrase });
    const type = k.asymmetricKeyType;
    if (type !== 'rsa' && type !== 'ec') {
      throw new Error(`${type} keys are not supported by libwebsockets 4.1; use RSA or EC`);
    }
    const key = k.export({ format: 'pem', type: type === 'rsa' ? 'pkcs1' : 'sec1' }) as string;
    return { cert, chain: chainBlocks.join('\n'), key };
  } catch (e) {
    throw codedError(
      'ERR_TLS_CERT',
      `Invalid TLS certificate or key${name === 'tls' ? '' : ` (${name})`}: ${(e as Error).message}`,
    );
  }
}

// A server name for SNI: a host name, or a wildcard for one more label.
const SNI_NAME =
  /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function serverTls(t: Record<string, unknown> | undefined): TlsMaterial {
  const none: TlsMaterial = {
    tlsCert: '',
    tlsKey: '',
    tlsPassphrase: '',
    tlsChain: '',
    tlsRequestCert: false,
    tlsRejectUnauthorized: true,
    tlsClientCa: '',
    tlsSni: [],
  };
  if (!t) return none;
  const main = certificate('tls', t);
  const requestCert = optBool(t, 'requestCert', false);
  const rejectUnauthorized =
    t.rejectUnauthorized === undefined ? true : (t.rejectUnauthorized as unknown);
  if (typeof rejectUnauthorized !== 'boolean')
    throw invalidArgType('tls.rejectUnauthorized', 'of type boolean', rejectUnauthorized);
  let clientCa = '';
  if (requestCert) {
    clientCa = t.ca === undefined ? nodeRootCertificates() : readPem('tls.ca', t.ca);
    if (!clientCa.includes('-----BEGIN CERTIFICATE-----'))
      throw codedError('ERR_TLS_CERT', 'tls.ca holds no certificate');
  }
  const sni: NativeSniCert[] = [];
  const sniOption = t.sni;
  if (sniOption !== undefined) {
    if (sniOption === null || typeof sniOption !== 'object' || Array.isArray(sniOption))
      throw invalidArgType('tls.sni', 'an object of server names and certificates', sniOption);
    for (const [name, entry] of Object.entries(sniOption as Record<string, unknown>)) {
      if (!SNI_NAME.test(name) || name.length > 253)
        throw invalidArgValue('tls.sni', `has an invalid server name '${name}'`, name);
      if (entry === null || typeof entry !== 'object')
        throw invalidArgType(`tls.sni['${name}']`, 'an object with cert and key', entry);
      const c = certificate(`tls.sni['${name}']`, entry as Record<string, unknown>);
      sni.push({ name: name.toLowerCase(), ...c });
    }
  }
  return {
    tlsCert: main.cert,
    tlsKey: main.key,
    tlsPassphrase: '',
    tlsChain: main.chain,
    tlsRequestCert: requestCert,
    tlsRejectUnauthorized: rejectUnauthorized,
    tlsClientCa: clientCa,
    tlsSni: sni,
  };
}

/** Connections of servers without `requestCert` share this one. */
const NO_PEER_TLS: PeerTls = Object.freeze({
  peerCertificate: undefined,
  authorized: false,
  authorizationError: undefined,
});

/** What a connection knows of its client's certificate. */
function peerTls(info: NativeRequestInfo, requestCert: boolean): PeerTls {
  if (!requestCert) return NO_PEER_TLS;
  let peerCertificate: X509Certificate | undefined;
  if (info.peerCertificate)
    peerCertificate = new (nodeCrypto().X509Certificate)(info.peerCertificate);
  const authorizationError =
    info.authorizationError ?? (peerCertificate ? undefined : 'no client certificate');
  return { peerCertificate, authorized: authorizationError === undefined, authorizationError };
}

/**
 * An upgrade JavaScript was asked about (verify, handleProtocols or a headers hook): native code
 * reports its end with a close event if it never becomes a connection, so its entry goes.
 */
class PendingUpgrade implements ConnectionSink {
  readonly textAsBuffer = false;
  readonly lendMessages = false;
  gone = false;
  data: unknown = undefined;
  constructor(
    readonly id: number,
    readonly forget: (p: PendingUpgrade) => void,
  ) {}
  _onClose(): void {
    this.gone = true;
    this.forget(this);
  }
  _onMessage(): boolean {
    return false;
  }
  _releaseCharge(): void {}
  _onDrain(): void {}
  _onPing(): void {}
  _onPong(): void {}
  _onError(): void {}
  _onOpen(_info: NativeOpenInfo): void {}
  _onConnectError(_errno: number, _detail: NativeConnectError): void {}
}

type State = 'binding' | 'listening' | 'closing' | 'closed';

/** Adapters a server uses (from listen() until its close() closed the adapter). */
const adaptersInUse = new WeakSet<Adapter>();

/** publish()'s error for data that is neither a string nor bytes. */
const invalidPublishData = (data: unknown): Error =>
  invalidArgType('data', 'a string, Buffer, ArrayBuffer or ArrayBufferView', data);

/** A publish's payload as bytes for an adapter (no copy unless it is a string). */
function bytesOf(data: string | ArrayBuffer | ArrayBufferView): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

export class Server extends EventEmitter<ServerEvents> implements ServerSink, HandoverOwner {
  readonly #id = runtime.nextServerId();
  readonly #opts: Normalized;
  /** false: no listening socket of its own (createServer(), attach()). */
  readonly #own: boolean;
  readonly #conns = new Set<Connection>();
  /** Upgrades JavaScript decides (verify and friends), by connection id. */
  readonly #upgrades = new Map<number, PendingUpgrade>();
  /** Upgrades handed over by handleUpgrade() and not open yet, by connection id. */
  readonly #handovers = new Map<number, { h: Handover; callback?: HandleUpgradeCallback }>();
  /** HTTP servers whose 'upgrade' requests attach() routes here. */
  readonly #httpServers = new Set<HttpServer>();
  #state: State = 'binding';
  #address: AddressInfo = { address: '', family: 'IPv4', port: 0 };
  #attempts = 0;
  #refed = true;
  #listenerOpen = false;
  /** An unref'd server holds a reference while its close() is in progress. */
  #closeRef = false;
  #started?: { resolve: () => void; reject: (err: Error) => void };
  #closed?: Promise<void>;
  #resolveClosed?: () => void;
  /** close(): the native close and the adapter's. */
  #closing?: Promise<void>;
  /** The adapter, from its attach() until close() begins. */
  #attached?: Adapter;
  readonly #hub: TopicHub = {
    serverId: this.#id,
    counts: new Map<string, number>(),
    join: (topic) => {
      const n = this.#hub.counts.get(topic) ?? 0;
      this.#hub.counts.set(topic, n + 1);
      if (n === 0 && this.#attached) this.#toAdapter(this.#attached, 'subscribe', topic);
    },
    leave: (topic) => {
      const n = (this.#hub.counts.get(topic) ?? 1) - 1;
      if (n > 0) {
        this.#hub.counts.set(topic, n);
        return;
      }
      this.#hub.counts.delete(topic);
      if (this.#attached) this.#toAdapter(this.#attached, 'unsubscribe', topic);
    },
    publish: (topic, data, isBinary, skip) => this.#publish(topic, data, isBinary, skip),
    gone: (conn) => this.#conns.delete(conn),
  };

  /** What every connection of this server refers to (see ConnectionSettings). */
  readonly #connSettings: ConnectionSettings;

  /** @internal Use listen(), createServer() or attach(). */
  constructor(opts: Normalized, own = true) {
    super();
    this.#opts = opts;
    this.#connSettings = { ...opts.backpressure, hub: this.#hub, tls: NO_PEER_TLS };
    this.#own = own;
    if (!own) this.#refed = false; // no socket of its own to keep the process alive for
  }

  /** The port the server listens on (the kernel's choice when 0 was asked). */
  get port(): number {
    return this.#address.port;
  }

  /** Like net.Server#address(). */
  address(): AddressInfo {
    return { ...this.#address };
  }

  /** True from a successful listen() until close() begins. */
  get listening(): boolean {
    return this.#state === 'listening' && this.#listenerOpen;
  }

  /** How many bind attempts listen() needed (1 when the port was free). */
  get bindAttempts(): number {
    return this.#attempts;
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.#conns.size;
  }

  get connections(): ReadonlySet<Connection> {
    return this.#conns;
  }

  /** The `adapter` given to listen(), if any (its `stats`, its events). */
  get adapter(): Adapter | undefined {
    return this.#opts.adapter;
  }

  /** Keep the process alive while this server is open (the default). */
  ref(): this {
    if (!this.#refed && this.#state !== 'closed') runtime.ref();
    this.#refed = true;
    this.#attached?.ref?.();
    return this;
  }

  /** Let the process exit even though this server is open (and its adapter connected). */
  unref(): this {
    if (this.#refed && this.#state !== 'closed') runtime.unref();
    this.#refed = false;
    this.#attached?.unref?.();
    return this;
  }

  /**
   * Stops accepting (the port is free from this moment), closes every
   * connection with 1001, waits for their closing handshakes (up to
   * closeTimeoutMs, then drops them) and resolves once all are gone, and the
   * adapter (if any) is closed too.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    const adapter = this.#attached;
    this.#attached = undefined; // nothing more goes to it, nothing more comes from it
    this.#closing = Promise.all([
      this.#closeNative(),
      adapter ? this.#closeAdapter(adapter) : undefined,
    ]).then(() => undefined);
    return this.#closing;
  }

  #closeNative(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#closed = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
    for (const http of this.#httpServers) detachRouter(http, this);
    this.#httpServers.clear();
    if (!this.#refed) {
      // The promise settles on a native event: keep the process alive until it does.
      runtime.ref();
      this.#closeRef = true;
    }
    if (this.#state === 'binding' && this.#own) {
      // listen() has not finished: it rejects, and the close completes with it.
      this.#state = 'closing';
      this.#started?.reject(
        codedError('ERR_SERVER_CLOSED', 'The server was closed while starting'),
      );
      if (!this.#started) this.#finishClose();
      return this.#closed;
    }
    this.#state = 'closing';
    binding.closeServer(this.#id);
    return this.#closed;
  }

  /**
   * Sends one message to every connection subscribed to `topic` (see Connection.subscribe).
   * The frame is built once and crosses to the native side once, whatever the number of
   * subscribers; each subscriber keeps its own backpressure (maxBackpressure with 'drop'
   * skips it for this message, 'close' closes it). Returns the number of this server's
   * connections it is queued for (subscribers at the time of the call); with an adapter it also
   * goes to the subscribers of every other server (not counted). Strings go as text, anything
   * else as binary unless `isBinary` says otherwise.
   */
  publish(topic: string, data: WebSocketData, isBinary?: boolean): number {
    checkTopic(topic);
    return this.#publish(topic, data, isBinary, undefined);
  }

  /** Connections subscribed to `topic` now. */
  subscriberCount(topic: string): number {
    checkTopic(topic);
    return this.#hub.counts.get(topic) ?? 0;
  }

  #publish(
    topic: string,
    data: WebSocketData,
    isBinary: boolean | undefined,
    skip: Connection | undefined,
  ): number {
    const subscribers = this.#hub.counts.get(topic) ?? 0;
    const count = subscribers - (skip?.isSubscribed(topic) ? 1 : 0);
    const adapter = this.#attached;
    // Nobody to send it to: nothing crosses to native code.
    if ((count <= 0 && !adapter) || this.#state !== 'listening') return 0;
    const binary = sendsBinary(data, isBinary, invalidPublishData);
    if (binary && typeof data === 'string') data = Buffer.from(data);
    if (count > 0) binding.publish(this.#id, topic, data, binary, skip?.nativeHandle);
    if (adapter) this.#toAdapter(adapter, 'publish', topic, bytesOf(data), binary);
    return Math.max(0, count);
  }

  /** A message another server published, from the adapter: to this server's subscribers. */
  #deliver(topic: string, data: Buffer, isBinary: boolean): void {
    if (typeof topic !== 'string') throw invalidArgType('topic', 'a string', topic);
    if (!(data instanceof Uint8Array)) throw invalidArgType('data', 'a Buffer', data);
    if (this.#state !== 'listening' || !this.#hub.counts.get(topic)) return;
    binding.publish(this.#id, topic, data, isBinary === true, undefined);
  }

  /** Calls the adapter; what it throws is reported as its 'error' would be, not thrown. */
  #toAdapter<M extends 'subscribe' | 'unsubscribe' | 'publish'>(
    adapter: Adapter,
    method: M,
    ...args: Parameters<Adapter[M]>
  ): void {
    try {
      (adapter[method] as (...a: Parameters<Adapter[M]>) => void)(...args);
    } catch (err) {
      this.#onAdapterError(err as AdapterError);
    }
  }

  /**
   * The adapter's 'error' events (and what its methods throw): re-emitted as this server's
   * 'error' when someone listens for that; else, unless someone listens on the adapter itself,
   * printed as a process warning (the Redis adapter reports an outage once, not per retry).
   */
  readonly #onAdapterError = (err: AdapterError): void => {
    if (this.listenerCount('error') > 0) {
      this.emit('error', err);
      return;
    }
    if ((this.#opts.adapter?.listenerCount('error') ?? 0) > 1) return;
    process.emitWarning(err?.message ?? String(err), {
      type: 'NodeLwsAdapterWarning',
      code: typeof err?.code === 'string' ? err.code : 'ERR_ADAPTER',
    });
  };

  /** Connects the adapter (listen() waits for it); it is in use from here until close(). */
  async #attach(adapter: Adapter): Promise<void> {
    const sink: AdapterSink = {
      deliver: (topic, data, isBinary) => this.#deliver(topic, data, isBinary),
    };
    adapter.on('error', this.#onAdapterError);
    this.#attached = adapter;
    try {
      await adapter.attach(sink);
    } catch (err) {
      this.#attached = undefined;
      adapter.off('error', this.#onAdapterError);
      throw err;
    }
    if (this.#attached !== adapter) return; // close() began meanwhile, and closes it
    if (!this.#refed) adapter.unref?.();
    for (const topic of this.#hub.counts.keys()) this.#toAdapter(adapter, 'subscribe', topic);
  }

  async #closeAdapter(adapter: Adapter): Promise<void> {
    try {
      await adapter.close();
    } catch (err) {
      this.#onAdapterError(err as AdapterError);
    }
    // Its 'error' listener stays: an adapter that still reported something after close()
    // must not crash the process for it.
    adaptersInUse.delete(adapter);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * Takes over an upgrade request that a Node HTTP server parsed (its 'upgrade' event): the
   * request goes through the same checks as on node-lws's own listener (path, Origin,
   * maxConnections, verify, subprotocols, permessage-deflate) and is answered by node-lws. A
   * plain TCP socket moves to node-lws's service thread (Node's handle is destroyed); a TLS
   * socket or any other Duplex stays in JavaScript, which pumps its bytes.
   *
   * The connection is announced by `callback(conn, request)` when given, else by the
   * 'connection' event. An upgrade that does not become a connection is reported by
   * 'upgradeError'. Throws (TypeError) for arguments that are not a request, a stream and a
   * Buffer, and (ERR_SOCKET_HANDED_OVER) for a socket that was handed over already.
   */
  handleUpgrade(
    req: IncomingMessage,
    socket: Duplex,
    head?: Buffer,
    callback?: HandleUpgradeCallback,
  ): void {
    checkHandover(req, socket, head);
    if (callback !== undefined && typeof callback !== 'function') {
      throw invalidArgType('callback', 'a function', callback);
    }
    if (this.#state === 'closing' || this.#state === 'closed') {
      refuse(socket, 503);
      this.#emitUpgradeError(
        codedError('ERR_SERVER_CLOSED', 'The server is closed') as UpgradeError,
        req,
        503,
      );
      return;
    }
    if (socketGone(socket)) {
      socket.destroy();
      this.#emitUpgradeError(
        codedError(
          'ERR_SOCKET_CLOSED',
          'The socket of the upgrade request is closed already',
        ) as UpgradeError,
        req,
      );
      return;
    }
    const h = new Handover(this, this.#id, req, socket, head);
    this.#handovers.set(h.id, { h, callback });
  }

  #emitUpgradeError(err: UpgradeError, req: IncomingMessage, status?: number): void {
    if (status !== undefined) err.status = status;
    this.emit('upgradeError', err, req);
  }

  /** @internal */ _handoverEnded(h: Handover, err: UpgradeError): void {
    this.#handovers.delete(h.id);
    this.emit('upgradeError', err, h.req);
  }

  /** @internal attach(): `http`'s upgrades for this server's path come here. */
  _attachTo(http: HttpServer, path: string | undefined): void {
    attachRouter(http, this, path);
    this.#httpServers.add(http);
  }

  /** @internal createServer(): starts the native server, which has no socket of its own. */
  _startWithoutSocket(): void {
    runtime.start();
    runtime.noteConnLimits(this.#opts.config.conn);
    runtime.servers.set(this.#id, this);
    // Commands keep their order: handleUpgrade() may hand connections over at once.
    binding.startServer(this.#id, -1, this.#opts.config);
    if (this.#opts.logger) runtime.loggers.add(this.#opts.logger);
  }

  /** @internal */
  async _listen(): Promise<void> {
    const o = this.#opts;
    if (o.signal?.aborted) throw abortError(o.signal);
    if (o.adapter) {
      if (adaptersInUse.has(o.adapter))
        throw codedError(
          'ERR_ADAPTER_IN_USE',
          'This adapter already serves another server: give each server its own adapter',
        );
      adaptersInUse.add(o.adapter);
    }
    runtime.start();
    runtime.noteConnLimits(o.config.conn);
    runtime.ref();
    let bound: ReturnType<typeof binding.bind> | undefined;
    try {
      const hosts = o.socketPath === undefined ? await resolveHosts(o.host, o.signal) : [];
      for (let attempt = 1; ; attempt++) {
        if (o.signal?.aborted) throw abortError(o.signal);
        if (this.#state !== 'binding')
          throw codedError('ERR_SERVER_CLOSED', 'The server was closed while starting');
        try {
          bound =
            o.socketPath === undefined ? bindFirst(hosts, o) : await bindUnix(o.socketPath, o);
          this.#attempts = attempt;
          break;
        } catch (e) {
          const err = e as SystemError;
          err.attempts = attempt;
          if (err.code === 'EADDRINUSE' && o.port === 0 && o.socketPath === undefined) {
            // Port 0 cannot be "in use": the kernel found no free ephemeral port.
            err.message +=
              ' — no free ephemeral port for port 0: the range in /proc/sys/net/ipv4/ip_local_port_range is exhausted (often by TIME_WAIT sockets)';
            throw err;
          }
          if (err.code !== 'EADDRINUSE' || attempt > o.retries) throw err;
          const delayMs = Math.min(o.maxDelayMs, o.minDelayMs * 2 ** (attempt - 1));
          o.onRetry?.({ attempt, error: err, delayMs });
          try {
            await sleep(delayMs, undefined, { signal: o.signal });
          } catch {
            throw abortError(o.signal);
          }
        }
      }
      this.#address = { address: bound.address, family: bound.family, port: bound.port };
      runtime.servers.set(this.#id, this);
      const fd = bound.fd;
      const config =
        bound.family === 'Unix'
          ? { ...o.config, unixPath: bound.address, unixDev: bound.dev, unixIno: bound.ino }
          : o.config;
      if (bound.family === 'Unix') removeOnExit(this.#id, bound);
      bound = undefined; // the native side owns the fd (and a Unix socket's file) from here
      await new Promise<void>((resolve, reject) => {
        this.#started = { resolve, reject };
        binding.startServer(this.#id, fd, config);
      });
      this.#started = undefined;
      if (o.adapter) await this.#attach(o.adapter);
      if (o.logger) runtime.loggers.add(o.logger);
      if (!this.#refed) runtime.unref();
    } catch (err) {
      this.#started = undefined;
      if (o.adapter && !this.#closing) adaptersInUse.delete(o.adapter);
      if (bound?.family === 'Unix') binding.closeFd(bound.fd, bound.address, bound.dev, bound.ino);
      else if (bound) binding.closeFd(bound.fd);
      if (runtime.servers.has(this.#id)) {
        // Started natively: close it there, and wait so the port is free.
        if (this.#state === 'binding') this.#state = 'closing';
        this.#closed ??= new Promise<void>((resolve) => {
          this.#resolveClosed = resolve;
        });
        binding.closeServer(this.#id);
        await this.#closed;
      } else {
        runtime.unref();
        this.#state = 'closed';
        this.#resolveClosed?.();
      }
      throw err;
    }
  }

  /** @internal */ _onListening(): void {
    this.#listenerOpen = true;
    if (this.#state === 'binding') this.#state = 'listening';
    this.#started?.resolve();
  }

  /** @internal */ _onListenError(_errno: number, message: string): void {
    this.#started?.reject(
      codedError(this.#opts.config.tlsCert ? 'ERR_TLS_CERT' : 'ERR_LWS_LISTEN', message),
    );
  }

  /**
   * accept() ran out of descriptors (EMFILE / ENFILE): the first refusal of a burst. Clients are
   * answered 503 and closed at once while it lasts; connections already open are not affected.
   * Emitted as 'error' only when someone listens for it (it is not fatal to the server).
   * @internal
   */
  _onAcceptError(errno: number, detail: { code: string; message: string }): void {
    const err = Object.assign(new Error(detail.message), {
      code: detail.code,
      errno: -errno,
      syscall: 'accept',
    }) as SystemError;
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** @internal */ _onListenerClosed(): void {
    this.#listenerOpen = false;
    socketFiles.delete(this.#id); // native code removed it
  }

  /** @internal */ _onServerClosed(): void {
    runtime.servers.delete(this.#id);
    socketFiles.delete(this.#id);
    if (this.#opts.logger) runtime.loggers.delete(this.#opts.logger);
    const refed = this.#refed || this.#started !== undefined;
    this.#started?.reject(codedError('ERR_SERVER_CLOSED', 'The server was closed while starting'));
    this.#finishClose(refed);
  }

  #finishClose(refed = this.#refed): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (refed) runtime.unref();
    if (this.#closeRef) {
      this.#closeRef = false;
      runtime.unref();
    }
    this.#resolveClosed?.();
    this.emit('close');
  }

  /** @internal */ _onUpgrade(info: NativeRequestInfo): void {
    const offered = info.protocol
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    const request: VerifyRequest = {
      path: info.path,
      headers: info.headers,
      origin: info.headers.origin,
      remoteAddress: info.remoteAddress,
      remotePort: info.remotePort,
      protocols: offered,
      ...peerTls(info, this.#opts.config.tlsRequestCert),
    };
    const httpRequest = this.#handovers.get(info.id)?.h.req;
    if (httpRequest) request.httpRequest = httpRequest;
    // Native code reports the end of an upgrade that never opens (rejected,
    // timed out, dropped) with a close event for its id: the entry goes then.
    const pending = new PendingUpgrade(info.id, (p) => {
      if (this.#upgrades.get(p.id) === p) this.#upgrades.delete(p.id);
      if (runtime.conns.get(p.id) === p) runtime.conns.delete(p.id);
    });
    this.#upgrades.set(info.id, pending);
    runtime.conns.set(info.id, pending);
    const { verify, handleProtocols, headersHook } = this.#opts;
    const decide = async (): Promise<void> => {
      let headerLines = '';
      if (verify) {
        const result = await verify(request);
        if (pending.gone) return;
        const accepted =
          result === true ||
          (typeof result === 'object' && result !== null && result.accept === true);
        if (!accepted) {
          const r =
            result === false || result == null || typeof result !== 'object'
              ? { status: 403 }
              : (result as { status?: number; headers?: unknown; body?: unknown });
          const status =
            typeof r.status === 'number' &&
            Number.isInteger(r.status) &&
            r.status >= 400 &&
            r.status <= 599
              ? r.status
              : 403;
          let lines = '';
          try {
            lines = responseHeaderLines('verify headers', r.headers);
          } catch {
            // A refusal still goes out, without the headers that cannot be written.
          }
          binding.reject(
            info.handle,
            status,
            lines,
            typeof r.body === 'string' ? r.body : `${status === 403 ? 'Forbidden' : 'Rejected'}\n`,
          );
          return;
        }
        if (typeof result === 'object' && result !== null) {
          headerLines += responseHeaderLines('verify headers', result.headers);
          pending.data = result.data;
        }
      }
      // Without handleProtocols, native code picks from `protocols` (as it
      // does when there is no verify at all): one rule, in one place.
      let protocol: string | null = null;
      if (handleProtocols) {
        const chosen = await handleProtocols(offered, request);
        if (pending.gone) return;
        protocol = '';
        if (chosen !== false) {
          if (!offered.includes(chosen))
            throw new Error(`handleProtocols returned '${chosen}', which the client did not offer`);
          protocol = chosen;
        }
      }
      if (headersHook) {
        // The protocol the 101 will carry: handleProtocols' answer, or the native rule's.
        const chosen = protocol ?? chooseProtocol(this.#opts.config.protocols, offered) ?? '';
        const extra = await headersHook(request, chosen);
        if (pending.gone) return;
        headerLines += responseHeaderLines('headers', extra);
      }
      binding.accept(info.handle, protocol, headerLines);
    };
    decide().catch((err: Error) => {
      binding.reject(info.handle, 500, '', 'Internal Server Error\n');
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
  }

  /** @internal */ _onConnection(info: NativeRequestInfo): void {
    const pending = this.#upgrades.get(info.id);
    if (pending) this.#upgrades.delete(info.id);
    const conn = new Connection(
      info,
      this.#opts.config.tlsRequestCert
        ? { ...this.#connSettings, tls: peerTls(info, true) }
        : this.#connSettings,
      pending?.data,
    );
    this.#conns.add(conn);
    const request: UpgradeRequest = {
      path: info.path,
      headers: info.headers,
      remoteAddress: info.remoteAddress,
      remotePort: info.remotePort,
    };
    const handed = this.#handovers.get(info.id);
    if (handed) {
      this.#handovers.delete(info.id);
      handed.h.opened();
      request.httpRequest = handed.h.req;
      if (handed.callback) {
        handed.callback(conn, request);
        return;
      }
    }
    this.emit('connection', conn, request);
  }
}

/** The native rule (ChooseProtocol): the client's first offer the server accepts. */
function chooseProtocol(accepted: string[], offered: string[]): string | undefined {
  return offered.find((p) => accepted.includes(p));
}

/** Answers a request that no WebSocket will come of, on a socket node-lws has not taken. */
function refuse(socket: Duplex, status: number): void {
  const text = status === 503 ? 'Service Unavailable' : 'Bad Request';
  socket.on('error', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${text.length + 1}\r\n\r\n${text}\n`,
  );
  socket.once('finish', () => socket.destroy());
}

function normalizeWithoutSocket(options: unknown): Normalized {
  if (options !== undefined && options !== null && typeof options === 'object') {
    for (const name of SOCKET_OPTIONS) {
      if ((options as Record<string, unknown>)[name] !== undefined) {
        throw invalidArgValue(
          name,
          'does not apply to a server without a socket of its own (createServer, attach)',
          (options as Record<string, unknown>)[name],
        );
      }
    }
  }
  return normalize(options);
}

/**
 * A WebSocket server without a listening socket of its own: connections come from Node HTTP
 * servers through server.handleUpgrade(). It does not keep the process alive by itself.
 */
export function createServer(options?: CreateServerOptions): Server {
  const server = new Server(normalizeWithoutSocket(options), false);
  server._startWithoutSocket();
  return server;
}

/**
 * createServer(options), fed with the 'upgrade' requests of `httpServer` for `options.path`
 * (every path when none is given). Upgrade requests no attached server takes, and every other
 * request, stay with the HTTP server: when nothing else listens for 'upgrade', such a request
 * reaches the 'request' handlers (Express, Fastify, ...) like any other, which answer it (e.g.
 * 404). server.close() detaches it from `httpServer`.
 */
export function attach(httpServer: HttpServer, options?: AttachOptions): Server {
  if (!hasMethods(httpServer, ['on', 'listeners'])) {
    throw invalidArgType('httpServer', 'an http.Server or https.Server', httpServer);
  }
  const server = createServer(options);
  server._attachTo(httpServer, options?.path || undefined);
  return server;
}

/** Starts a WebSocket server. Rejects with a Node-style system error when it cannot bind. */
export async function listen(options?: ListenOptions): Promise<Server> {
  const server = new Server(normalize(options));
  await server._listen();
  return server;
}

// RFC 1123 host names: letters, digits and hyphens in dot-separated labels.
const HOSTNAME =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

async function resolveHosts(host: string | undefined, signal?: AbortSignal): Promise<string[]> {
  if (host === undefined) return ['::', '0.0.0.0'];
  if (host === '') throw invalidArgType('host', 'a non-empty string', host);
  if (isIP(host)) return [host];
  if (!HOSTNAME.test(host)) {
    throw invalidArgValue('host', 'must be an IP address or a host name', host);
  }
  let addrs: { address: string }[];
  try {
    addrs = await nodeDns().lookup(host, { all: true });
  } catch (e) {
    const err = e as SystemError;
    if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') {
      const out = codedError(err.code, `getaddrinfo ${err.code} ${host}`) as SystemError;
      out.syscall = 'getaddrinfo';
      out.address = host;
      throw out;
    }
    throw err;
  }
  if (signal?.aborted) throw abortError(signal);
  return addrs.map((a) => a.address);
}

function bindFirst(hosts: string[], o: Normalized) {
  // With no host given, '::' falls back to '0.0.0.0' on machines without IPv6.
  for (let i = 0; ; i++) {
    try {
      return binding.bind({
        host: hosts[i],
        port: o.port,
        reuseAddr: o.reuseAddr,
        reusePort: o.reusePort,
        ipv6Only: o.ipv6Only,
        backlog: o.backlog,
      });
    } catch (e) {
      const code = (e as SystemError).code;
      const fallback = code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL';
      if (!fallback || i + 1 >= hosts.length) throw e;
    }
  }
}

/**
 * Unix socket files of listening servers, by server id. Native code removes each when its
 * server closes or the environment is torn down; process.exit() skips the latter, so an 'exit'
 * listener removes what is left (each only while the path still names the file bind() made).
 */
const socketFiles = new Map<number, { path: string; dev: string; ino: string }>();
let exitListener = false;

function removeOnExit(id: number, bound: { address: string; dev: string; ino: string }): void {
  socketFiles.set(id, { path: bound.address, dev: bound.dev, ino: bound.ino });
  if (exitListener) return;
  exitListener = true;
  process.on('exit', () => {
    for (const f of socketFiles.values()) {
      try {
        const st = lstatSync(f.path, { bigint: true });
        if (st.isSocket() && String(st.dev) === f.dev && String(st.ino) === f.ino)
          unlinkSync(f.path);
      } catch {
        /* gone already */
      }
    }
    socketFiles.clear();
  });
}

/** What is at a Unix socket path that bind() found taken. */
async function probeSocketPath(path: string): Promise<'gone' | 'not-socket' | 'stale' | 'live'> {
  try {
    if (!lstatSync(path).isSocket()) return 'not-socket';
  } catch {
    return 'gone';
  }
  return new Promise((resolve) => {
    const s = netConnect(path);
    const done = (state: 'stale' | 'live') => {
      s.destroy();
      resolve(state);
    };
    s.once('connect', () => done('live'));
    // Refused: nothing accepts on it (its process is gone). Anything else: assume in use.
    s.once('error', (e: SystemError) => done(e.code === 'ECONNREFUSED' ? 'stale' : 'live'));
  });
}

function socketPathError(code: string, errno: number, path: string, message: string): SystemError {
  const err = codedError(code, `listen ${code} ${path}: ${message}`) as SystemError;
  err.errno = errno;
  err.syscall = 'listen';
  err.address = path;
  return err;
}

/**
 * bind() on a Unix socket path; when the path is taken, says why: another process listens
 * there (EADDRINUSE, retried like a busy port), a socket file nothing listens on (left by a
 * process that died: ERR_SOCKET_STALE, or removed with removeStaleSocket), or not a socket at
 * all (ENOTSOCK: never removed).
 */
async function bindUnix(path: string, o: Normalized): Promise<ReturnType<typeof binding.bind>> {
  for (let tries = 0; ; tries++) {
    try {
      return binding.bind({
        host: '',
        path,
        port: 0,
        reuseAddr: false,
        reusePort: false,
        ipv6Only: false,
        backlog: o.backlog,
      });
    } catch (e) {
      const err = e as SystemError;
      if (err.code !== 'EADDRINUSE' || tries >= 3) throw err;
      const state = await probeSocketPath(path);
      if (state === 'gone') continue;
      if (state === 'not-socket')
        throw socketPathError(
          'ENOTSOCK',
          -88,
          path,
          'the path exists and is not a socket (node-lws never removes it)',
        );
      if (state === 'live') {
        err.message = `listen EADDRINUSE ${path}: another process is listening on this socket`;
        throw err;
      }
      if (!o.removeStaleSocket)
        throw socketPathError(
          'ERR_SOCKET_STALE',
          -98,
          path,
          'a stale socket file: nothing listens on it (its process has gone). Remove it, or pass removeStaleSocket: true',
        );
      try {
        unlinkSync(path);
      } catch (u) {
        if ((u as SystemError).code !== 'ENOENT') throw u;
      }
    }
  }
}
