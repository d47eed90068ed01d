// connect() and ClientTransport: the client half, with optional reconnect.
import { lstatSync } from 'node:fs';
import { isIP } from 'node:net';
import { nodeCrypto, nodeDns, nodeRootCertificates } from './builtins';
import {
  abortError,
  codedError,
  invalidArgType,
  invalidArgValue,
  type SystemError,
} from './errors';
import { binding, type NativeConnectError, type NativeOpenInfo } from './native';
import {
  connOptions,
  type HeartbeatOptions,
  type NativeConnOptions,
  optBackpressure,
  optInt,
  optObject,
  optProtocols,
  optSignal,
  optString,
  type PerMessageDeflateOptions,
  readPem,
} from './options';
import { basicCredentials, chooseProxy, connectRequest, type ProxyTarget } from './proxy';
import { runtime } from './runtime';
import {
  type BackpressureOptions,
  type BackpressurePolicy,
  NativeTransport,
  type Transport,
  type TransportEvents,
  type WebSocketData,
} from './transport';

export interface ReconnectOptions {
  /** Attempts after each unexpected close before giving up (default 10; Infinity allowed). */
  retries?: number;
  /** First delay (default 250 ms); doubles per attempt. */
  minDelayMs?: number;
  /** Delay cap (default 10 s). */
  maxDelayMs?: number;
  /** Random spread of each delay, as a fraction (default 0.2 = ±20%). */
  jitter?: number;
  /** Bytes send() may queue while disconnected (default 4 MiB); beyond, it throws ERR_RECONNECT_QUEUE_FULL. */
  maxQueueBytes?: number;
}

export interface ConnectOptions {
  /** TCP connect plus the upgrade handshake, per address tried (default 5000). */
  timeoutMs?: number;
  /** Subprotocols to offer, in order of preference. */
  protocols?: string[];
  /** Extra request headers. */
  headers?: Record<string, string>;
  origin?: string;
  /** Largest message accepted (default 64 MiB); larger closes with 1009. */
  maxPayload?: number;
  /** send() returns false past this many buffered bytes (default 1 MiB). */
  highWaterMark?: number;
  /** Hard bound on buffered bytes (default 64 MiB; `Infinity` for none): see backpressurePolicy. */
  maxBackpressure?: number;
  /** Stop reading while JavaScript holds more than this of the received messages (default 256 KiB). */
  receiveHighWaterMark?: number;
  /** Past maxBackpressure, 'close' with 1008 (default) or 'drop' new messages. */
  backpressurePolicy?: BackpressurePolicy;
  /** How long a closing handshake may take (default 5000). */
  closeTimeoutMs?: number;
  /** Largest response head accepted (default 16 KiB). */
  maxHeaderBytes?: number;
  signal?: AbortSignal;
  /** Reconnect after unexpected closes (default off). */
  reconnect?: boolean | ReconnectOptions;
  /** Ping when the server has been silent; drop the connection (1006) if it stays silent. */
  heartbeat?: HeartbeatOptions;
  /** 'string' (default) or 'buffer': how text messages arrive (see ListenOptions.textAs). */
  textAs?: 'string' | 'buffer';
  /** Lend messages to the listeners for the call only (default false; see ListenOptions.lendMessages). */
  lendMessages?: boolean;
  /** Offer permessage-deflate (off by default): `true` or options. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /** For wss:// URLs (each PEM a file path or a Buffer). */
  tls?: ClientTlsOptions;
  /**
   * Connect to this Unix domain socket instead of the URL's host and port (the URL still gives
   * the Host header and the request path). `ws+unix:///path/to.sock:/request/path` says the same
   * in the URL.
   */
  socketPath?: string;
  /**
   * Tunnel through an HTTP proxy with CONNECT: `'http://user:pass@host:port'`, or `'env'` for
   * the environment's `HTTPS_PROXY` (wss://) / `HTTP_PROXY` (ws://, and wss:// without
   * HTTPS_PROXY) unless `NO_PROXY` names the host. Default: no proxy.
   */
  proxy?: string;
}

export interface ClientTlsOptions {
  /** CAs to trust instead of Node's root certificates. */
  ca?: string | Buffer;
  /** Check the server's certificate and host name (default true). */
  rejectUnauthorized?: boolean;
  /** A client certificate for servers that ask for one (mutual TLS), with `key`. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** The passphrase of an encrypted `key`. */
  passphrase?: string;
  /** The name sent as SNI and checked against the certificate (default: the URL's host). */
  servername?: string;
}

/** The server's answer to the upgrade request. */
export interface UpgradeResponse {
  status: number;
  /** Header names in lower case; repeated headers joined with `, `, except `set-cookie` (a list). */
  headers: Record<string, string | string[]>;
}

export interface ClientEvents extends TransportEvents {
  open: [];
  reconnecting: [attempt: number, delayMs: number, lastError: Error];
}

interface Target {
  url: string;
  secure: boolean;
  host: string;
  port: number;
  path: string;
  hostHeader: string;
  /** A Unix socket to connect to instead of host and port. */
  socketPath: string | undefined;
  /** The URL's user:password as an Authorization header line, or ''. */
  authorization: string;
}

interface NormalizedTls {
  /** undefined: Node's root certificates (nodeRootCertificates), looked up for wss:// only. */
  ca: string | undefined;
  rejectUnauthorized: boolean;
  cert: string | undefined;
  key: string | undefined;
  servername: string | undefined;
}

interface Normalized {
  target: Target;
  timeoutMs: number;
  protocols: string[];
  extraHeaders: string;
  conn: NativeConnOptions;
  backpressure: BackpressureOptions;
  signal: AbortSignal | undefined;
  tls: NormalizedTls;
  proxy: ProxyTarget | undefined;
  reconnect:
    | {
        retries: number;
        minDelayMs: number;
        maxDelayMs: number;
        jitter: number;
        maxQueueBytes: number;
      }
    | undefined;
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const RESERVED_HEADERS = new Set([
  'host',
  'upgrade',
  'connection',
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-protocol',
  'sec-websocket-extensions',
]);

function invalidUrl(url: unknown, why: string): Error {
  const err = codedError(
    'ERR_INVALID_URL',
    `Invalid WebSocket URL ${JSON.stringify(String(url))}: ${why}`,
  );
  err.name = 'TypeError';
  return err;
}

export function parseTarget(url: string | URL): Target {
  if (typeof url !== 'string' && !(url instanceof URL))
    throw invalidArgType('url', 'a string or URL', url);
  let u: URL;
  try {
    u = new URL(String(url));
  } catch {
    throw invalidUrl(url, 'not a URL');
  }
  const unix = u.protocol === 'ws+unix:' || u.protocol === 'wss+unix:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:' && !unix) {
    throw invalidUrl(url, `the scheme must be ws:, wss:, ws+unix: or wss+unix:, not ${u.protocol}`);
  }
  const secure = u.protocol === 'wss:' || u.protocol === 'wss+unix:';
  if (u.hash) throw invalidUrl(url, 'a WebSocket URL has no fragment');
  // As ws does: user:password in the URL becomes Basic authorization.
  const basic = basicCredentials(u, () =>
    invalidUrl(url, 'malformed percent-encoding in the credentials'),
  );
  const authorization = basic ? `Authorization: Basic ${basic}\r\n` : '';
  u.username = '';
  u.password = '';
  if (unix) {
    // ws's syntax: ws+unix:///path/to.sock:/request/path
    if (u.host) throw invalidUrl(url, 'a ws+unix: URL has no host (ws+unix:///path/to.sock:/path)');
    const colon = u.pathname.indexOf(':');
    const encodedSocket = colon < 0 ? u.pathname : u.pathname.slice(0, colon);
    let socketPath: string;
    try {
      socketPath = decodeURIComponent(encodedSocket);
    } catch {
      throw invalidUrl(url, 'malformed percent-encoding in the socket path');
    }
    if (!socketPath || socketPath === '/') throw invalidUrl(url, 'no socket path');
    const path = colon < 0 ? '/' : u.pathname.slice(colon + 1) || '/';
    if (!path.startsWith('/')) throw invalidUrl(url, 'the request path must start with /');
    return {
      url: u.href,
      secure,
      host: 'localhost',
      port: 0,
      path: path + u.search,
      hostHeader: 'localhost',
      socketPath,
      authorization,
    };
  }
  if (!u.hostname) throw invalidUrl(url, 'no host');
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return {
    url: u.href,
    secure,
    host,
    port: u.port ? Number(u.port) : secure ? 443 : 80,
    path: (u.pathname || '/') + u.search,
    hostHeader: u.host,
    socketPath: undefined,
    authorization,
  };
}

/** A socket path as bind() and connect() take it: at most 107 bytes, no NUL. */
export function checkSocketPath(name: string, v: unknown, syscall: string): string {
  if (typeof v !== 'string' || v === '') throw invalidArgType(name, 'a non-empty string', v);
  if (v.includes('\0')) throw invalidArgValue(name, 'must not contain NUL bytes', v);
  const bytes = Buffer.byteLength(v);
  if (bytes > MAX_SOCKET_PATH) {
    const err = codedError(
      'ENAMETOOLONG',
      `${syscall} ENAMETOOLONG ${v}: a Unix socket path is at most ${MAX_SOCKET_PATH} bytes (this one has ${bytes})`,
    ) as SystemError;
    err.errno = -36;
    err.syscall = syscall;
    err.address = v;
    throw err;
  }
  return v;
}

/** sun_path holds 108 bytes on Linux, the last one a NUL. */
export const MAX_SOCKET_PATH = 107;

function normalize(url: string | URL, options: unknown): Normalized {
  const target = parseTarget(url);
  if (options === undefined) options = {};
  if (options === null || typeof options !== 'object')
    throw invalidArgType('options', 'an object', options);
  const o = options as Record<string, unknown>;
  let extraHeaders = '';
  const headers = optObject(o, 'headers');
  let explicitAuthorization = false;
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (name.toLowerCase() === 'authorization') explicitAuthorization = true;
    if (!HEADER_NAME.test(name))
      throw invalidArgValue('headers', `has an invalid header name '${name}'`, name);
    if (RESERVED_HEADERS.has(name.toLowerCase())) {
      throw invalidArgValue('headers', `may not set ${name}: node-lws writes it`, name);
    }
    if (typeof value !== 'string' || /[\r\n\0]/.test(value)) {
      throw invalidArgValue('headers', `has an invalid value for ${name}`, value);
    }
    extraHeaders += `${name}: ${value}\r\n`;
  }
  const origin = optString(o, 'origin');
  if (origin !== undefined) {
    if (/[\r\n\0]/.test(origin))
      throw invalidArgValue('origin', 'has an invalid character', origin);
    extraHeaders += `Origin: ${origin}\r\n`;
  }
  // An explicit Authorization header wins over the URL's credentials (as in Node's http).
  if (!explicitAuthorization) extraHeaders += target.authorization;
  if (o.socketPath !== undefined) {
    if (target.socketPath !== undefined)
      throw invalidArgValue('socketPath', 'cannot be combined with a ws+unix: URL', o.socketPath);
    target.socketPath = checkSocketPath('socketPath', o.socketPath, 'connect');
  } else if (target.socketPath !== undefined) {
    checkSocketPath('socketPath', target.socketPath, 'connect');
  }
  let proxy: ProxyTarget | undefined;
  if (target.socketPath !== undefined) {
    if (o.proxy !== undefined && o.proxy !== 'env')
      throw invalidArgValue('proxy', 'cannot be used with a Unix socket', o.proxy);
  } else {
    proxy = chooseProxy(o.proxy, target.secure, target.host, target.port);
  }
  let reconnect: Normalized['reconnect'];
  if (o.reconnect === true || (typeof o.reconnect === 'object' && o.reconnect !== null)) {
    const r = o.reconnect === true ? {} : (o.reconnect as Record<string, unknown>);
    const retries =
      r.retries === Number.POSITIVE_INFINITY
        ? Number.POSITIVE_INFINITY
        : optInt(r, 'retries', 10, 0, 1e9, 'reconnect.');
    const minDelayMs = optInt(r, 'minDelayMs', 250, 0, 3_600_000, 'reconnect.');
    const maxDelayMs = optInt(
      r,
      'maxDelayMs',
      Math.max(10_000, minDelayMs),
      minDelayMs,
      3_600_000,
      'reconnect.',
    );
    const jitter = r.jitter === undefined ? 0.2 : r.jitter;
    if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) {
      throw invalidArgValue('reconnect.jitter', 'must be a number from 0 to 1', jitter);
    }
    const maxQueueBytes = optInt(
      r,
      'maxQueueBytes',
      4 * 1024 * 1024,
      0,
      Number.MAX_SAFE_INTEGER,
      'reconnect.',
    );
    reconnect = { retries, minDelayMs, maxDelayMs, jitter, maxQueueBytes };
  } else if (o.reconnect !== undefined && o.reconnect !== false) {
    throw invalidArgType('reconnect', 'a boolean or an object', o.reconnect);
  }
  return {
    target,
    timeoutMs: optInt(o, 'timeoutMs', 5000, 1, 2 ** 31 - 1),
    protocols: optProtocols(o),
    extraHeaders,
    conn: connOptions(o, { name: 'timeoutMs', def: 5000 }),
    backpressure: optBackpressure(o),
    signal: optSignal(o),
    tls: clientTls(optObject(o, 'tls')),
    proxy,
    reconnect,
  };
}

function clientTls(t: Record<string, unknown> | undefined): NormalizedTls {
  if (!t)
    return {
      ca: undefined,
      rejectUnauthorized: true,
      cert: undefined,
      key: undefined,
      servername: undefined,
    };
  const ca = t.ca === undefined ? undefined : readPem('tls.ca', t.ca);
  const rejectUnauthorized = t.rejectUnauthorized === undefined ? true : t.rejectUnauthorized;
  if (typeof rejectUnauthorized !== 'boolean') {
    throw invalidArgType('tls.rejectUnauthorized', 'of type boolean', rejectUnauthorized);
  }
  const servername = t.servername;
  if (servername !== undefined && (typeof servername !== 'string' || servername === '')) {
    throw invalidArgType('tls.servername', 'a non-empty string', servername);
  }
  let cert: string | undefined;
  let key: string | undefined;
  if (t.cert !== undefined || t.key !== undefined) {
    if (t.cert === undefined || t.key === undefined) {
      throw invalidArgValue('tls', 'needs both cert and key for a client certificate', t);
    }
    cert = readPem('tls.cert', t.cert);
    const keyPem = readPem('tls.key', t.key);
    const passphrase = t.passphrase;
    if (passphrase !== undefined && typeof passphrase !== 'string')
      throw invalidArgType('tls.passphrase', 'of type string', passphrase);
    try {
      const { X509Certificate, createPrivateKey } = nodeCrypto();
      new X509Certificate(cert);
      // Native code takes the key unencrypted.
      key = createPrivateKey({ key: keyPem, passphrase }).export({
        format: 'pem',
        type: 'pkcs8',
      }) as string;
    } catch (e) {
      throw codedError(
        'ERR_TLS_CERT',
        `Invalid TLS client certificate or key: ${(e as Error).message}`,
      );
    }
  }
  return { ca, rejectUnauthorized, cert, key, servername };
}

async function resolve(host: string): Promise<string[]> {
  if (isIP(host)) return [host];
  if (host === 'localhost') return ['127.0.0.1', '::1'];
  try {
    const addrs = await nodeDns().lookup(host, { all: true });
    return addrs.map((a) => a.address);
  } catch (e) {
    const code = (e as SystemError).code ?? 'ENOTFOUND';
    const err = codedError(code, `getaddrinfo ${code} ${host}`) as SystemError;
    err.syscall = 'getaddrinfo';
    err.address = host;
    throw err;
  }
}

/** Errors worth trying the next resolved address for. */
const NEXT_ADDRESS = new Set([
  'ECONNREFUSED',
  'ETIMEDOUT',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'EADDRNOTAVAIL',
  'EAFNOSUPPORT',
]);

type Pending = { resolve: () => void; reject: (err: Error) => void; address: string; port: number };

// Typed event overloads for the class below (declaration merging adds no members).
export interface ClientTransport {
  on<K extends keyof ClientEvents>(event: K, listener: (...args: ClientEvents[K]) => void): this;
  once<K extends keyof ClientEvents>(event: K, listener: (...args: ClientEvents[K]) => void): this;
  off<K extends keyof ClientEvents>(event: K, listener: (...args: ClientEvents[K]) => void): this;
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: see the interface above
export class ClientTransport extends NativeTransport implements Transport {
  /** The URL connected to (normalized). */
  readonly url: string;
  readonly #o: Normalized;
  #pending: Pending | undefined;
  #queue: { data: WebSocketData; isBinary: boolean | undefined; bytes: number }[] = [];
  #queueBytes = 0;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #userClosed = false;
  #upgradeResponse: UpgradeResponse | undefined;
  #extensions = '';
  #last: { code: number; reason: string; wasClean: boolean } = {
    code: 1006,
    reason: '',
    wasClean: false,
  };

  /** @internal Use connect(). */
  constructor(o: Normalized) {
    super(o.backpressure, 'connecting');
    this.#o = o;
    this.url = o.target.url;
  }

  /** The status and headers of the server's 101 response (of the latest connection). */
  get upgradeResponse(): UpgradeResponse | undefined {
    return this.#upgradeResponse;
  }

  /** The extensions the server accepted (its Sec-WebSocket-Extensions), or ''. */
  get extensions(): string {
    return this.#extensions;
  }

  /** @internal */
  async _dial(signal?: AbortSignal): Promise<void> {
    const o = this.#o;
    runtime.start();
    runtime.noteConnLimits(o.conn);
    if (signal?.aborted) throw abortError(signal);
    if (o.target.socketPath !== undefined) {
      try {
        await this.#dialOne(o.target.socketPath, signal);
      } catch (e) {
        throw explainSocketError(e as SystemError, o.target.socketPath);
      }
      return;
    }
    // Through a proxy, the proxy resolves the target's name.
    const host = o.proxy ? o.proxy.host : o.target.host;
    const addresses = await resolve(host);
    let lastError: Error | undefined;
    for (const address of addresses) {
      if (signal?.aborted) throw abortError(signal);
      try {
        await this.#dialOne(address, signal);
        return;
      } catch (e) {
        lastError = e as Error;
        if (o.proxy) markProxyError(lastError, o.proxy);
        const code = (e as SystemError).code;
        if (!NEXT_ADDRESS.has(code)) throw e;
      }
    }
    throw lastError ?? codedError('ENOTFOUND', `No address for ${host}`);
  }

  #dialOne(address: string, signal?: AbortSignal): Promise<void> {
    const o = this.#o;
    const { createHash, randomBytes } = nodeCrypto();
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1')
      .update(key + GUID)
      .digest('base64');
    let request =
      `GET ${o.target.path} HTTP/1.1\r\nHost: ${o.target.hostHeader}\r\n` +
      'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`;
    if (o.protocols.length) request += `Sec-WebSocket-Protocol: ${o.protocols.join(', ')}\r\n`;
    request += `${o.extraHeaders}\r\n`;
    const unix = o.target.socketPath !== undefined;
    const port = unix ? 0 : o.proxy ? o.proxy.port : o.target.port;
    let native: ReturnType<typeof binding.connect>;
    try {
      native = binding.connect({
        address: unix ? '' : address,
        port,
        socketPath: unix ? address : '',
        request,
        accept,
        protocols: o.protocols,
        conn: o.conn,
        proxyRequest: o.proxy ? connectRequest(o.proxy, o.target.host, o.target.port) : '',
        tls: o.target.secure,
        host: o.tls.servername ?? o.target.host,
        ca: o.target.secure ? (o.tls.ca ?? nodeRootCertificates()) : '',
        rejectUnauthorized: o.tls.rejectUnauthorized,
        cert: o.tls.cert,
        key: o.tls.key,
      });
    } catch (e) {
      return Promise.reject(e);
    }
    this.attach(native.handle, native.id);
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        if (this.#pending?.reject !== fail) return;
        this.#pending = undefined;
        const h = this.handle;
        this.detach();
        if (h) binding.terminate(h);
        reject(abortError(signal));
      };
      const done = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const fail = (err: Error) => {
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      };
      this.#pending = { resolve: done, reject: fail, address, port };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** @internal */ override _onOpen(info: NativeOpenInfo): void {
    const p = this.#pending;
    if (!p) return;
    this.#pending = undefined;
    this.remoteAddress = info.remoteAddress;
    this.remotePort = info.remotePort;
    this.protocol = info.protocol;
    this.#upgradeResponse = { status: info.status ?? 101, headers: info.headers };
    const ext = info.headers['sec-websocket-extensions'];
    this.#extensions = typeof ext === 'string' ? ext : '';
    this.state = 'open';
    this.#attempt = 0;
    // What was queued while disconnected goes first, in order.
    const queue = this.#queue;
    this.#queue = [];
    this.#queueBytes = 0;
    for (const m of queue) this.sendNow(m.data, m.isBinary);
    p.resolve();
    this.untyped.emit('open');
  }

  /** @internal */ override _onConnectError(errno: number, detail: NativeConnectError): void {
    const p = this.#pending;
    this.detach();
    if (!p) return;
    this.#pending = undefined;
    let err: Error;
    if (errno) {
      const e = new Error(detail.message) as SystemError;
      e.code = detail.code;
      e.errno = -errno;
      e.syscall = 'connect';
      e.address = p.address;
      if (this.#o.target.socketPath === undefined) e.port = p.port;
      err = e;
    } else {
      err = codedError(detail.code, detail.message);
      const extra = err as Error & { status?: number; headers?: UpgradeResponse['headers'] };
      if (detail.status !== undefined) extra.status = detail.status;
      if (detail.headers !== undefined) extra.headers = detail.headers;
    }
    if (this.#o.proxy && (errno || detail.code.startsWith('ERR_PROXY')))
      markProxyError(err, this.#o.proxy);
    p.reject(err);
  }

  protected override onNativeClose(code: number, reason: string, wasClean: boolean): void {
    if (this.state === 'closed') return;
    this.#last = { code, reason, wasClean };
    const r = this.#o.reconnect;
    if (r && !this.#userClosed && this.state === 'open') {
      this.state = 'connecting';
      const err = codedError(
        'ERR_CONNECTION_LOST',
        `Connection lost: ${code}${reason ? ` ${reason}` : ''}`,
      );
      this.#scheduleReconnect(err);
      return;
    }
    super.onNativeClose(code, reason, wasClean);
  }

  #scheduleReconnect(lastError: Error): void {
    const r = this.#o.reconnect;
    if (!r || this.#userClosed) return;
    if (this.#attempt >= r.retries) {
      // Gave up: the connection ended abnormally, whatever the last close said.
      this.#queue = [];
      this.#queueBytes = 0;
      super.onNativeClose(1006, '', false);
      return;
    }
    this.#attempt++;
    const base = Math.min(r.maxDelayMs, r.minDelayMs * 2 ** (this.#attempt - 1));
    // Jitter spreads reconnecting clients apart; the result stays within [min, max].
    const jittered = base * (1 + r.jitter * (2 * Math.random() - 1));
    const delayMs = Math.round(Math.min(r.maxDelayMs, Math.max(r.minDelayMs, jittered)));
    this.untyped.emit('reconnecting', this.#attempt, delayMs, lastError);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#userClosed) return;
      this._dial().catch((err: Error) => this.#scheduleReconnect(err));
    }, delayMs);
  }

  protected override sendWhileNotOpen(data: WebSocketData, isBinary?: boolean): boolean {
    const r = this.#o.reconnect;
    if (this.state !== 'connecting' || !r || this.#userClosed)
      return super.sendWhileNotOpen(data, isBinary);
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    if (this.#queueBytes + bytes > r.maxQueueBytes) {
      throw codedError(
        'ERR_RECONNECT_QUEUE_FULL',
        `Cannot queue ${bytes} bytes while reconnecting: ${this.#queueBytes} of maxQueueBytes ${r.maxQueueBytes} are queued`,
      );
    }
    // A copy: the caller may reuse its buffer before the connection is back.
    const copy =
      typeof data === 'string'
        ? data
        : Buffer.from(
            Buffer.from(
              ArrayBuffer.isView(data) ? data.buffer : data,
              ArrayBuffer.isView(data) ? data.byteOffset : 0,
              bytes,
            ),
          );
    this.#queue.push({ data: copy, isBinary, bytes });
    this.#queueBytes += bytes;
    return this.#queueBytes <= this.highWaterMark;
  }

  protected override closeWhileNotOpen(_code: number, _reason: string): void {
    if (this.state !== 'connecting') return;
    // Closing while reconnecting: stop, and report the close now.
    this.#userClosed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const h = this.handle;
    if (this.#pending) {
      this.#pending.reject(codedError('ERR_CONNECTION_CLOSED', 'Closed while reconnecting'));
      this.#pending = undefined;
    }
    this.detach();
    if (h) binding.terminate(h);
    this.#queue = [];
    this.#queueBytes = 0;
    super.onNativeClose(this.#last.code, this.#last.reason, this.#last.wasClean);
  }

  override close(code?: number, reason?: string): void {
    this.#userClosed = true;
    super.close(code, reason);
  }

  override terminate(): void {
    this.#userClosed = true;
    if (this.state === 'connecting') {
      this.closeWhileNotOpen(1006, '');
      return;
    }
    super.terminate();
  }
}

/** Names the proxy in an error from the proxy stage (its credentials left out). */
function markProxyError(err: Error, proxy: ProxyTarget): void {
  const e = err as Error & { proxy?: string };
  if (e.proxy !== undefined) return;
  e.proxy = proxy.display;
  const code = (err as SystemError).code;
  if (code === 'ECONNREFUSED' || (err as SystemError).syscall === 'connect')
    err.message += ` (the proxy ${proxy.display})`;
  else if (code === 'ETIMEDOUT' || code?.startsWith('ERR_PROXY'))
    err.message += ` (proxy ${proxy.display})`;
}

/** A refused Unix socket connect, told apart: nothing listens, or the path is not a socket. */
function explainSocketError(err: SystemError, socketPath: string): Error {
  if (err.code !== 'ECONNREFUSED') return err;
  try {
    if (!lstatSync(socketPath).isSocket()) {
      const e = codedError(
        'ENOTSOCK',
        `connect ENOTSOCK ${socketPath}: the path exists and is not a socket`,
      ) as SystemError;
      e.errno = -88;
      e.syscall = 'connect';
      e.address = socketPath;
      return e;
    }
    err.message += ': no process listens on this socket (a stale socket file?)';
  } catch {
    /* gone meanwhile: keep the refusal */
  }
  return err;
}

/**
 * Opens a WebSocket client connection. Rejects with `code` ECONNREFUSED (at
 * once), ETIMEDOUT, ENOTFOUND, ERR_HANDSHAKE (with `status`), ERR_PROTOCOL,
 * ABORT_ERR or ERR_INVALID_URL.
 */
export async function connect(
  url: string | URL,
  options?: ConnectOptions,
): Promise<ClientTransport> {
  const o = normalize(url, options);
  const t = new ClientTransport(o);
  await t._dial(o.signal);
  return t;
}
