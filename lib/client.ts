// connect() and ClientTransport: the client half, with optional reconnect.
import { createHash, randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
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
  /** Stop reading while JavaScript holds more than this of the received messages (default 1 MiB). */
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
  /** Offer permessage-deflate (off by default): `true` or options. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /** For wss:// URLs: `ca` (a file path or a Buffer with PEM) replaces Node's root certificates. */
  tls?: { ca?: string | Buffer; rejectUnauthorized?: boolean };
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
}

interface Normalized {
  target: Target;
  timeoutMs: number;
  protocols: string[];
  extraHeaders: string;
  conn: NativeConnOptions;
  backpressure: BackpressureOptions;
  signal: AbortSignal | undefined;
  tls: { ca: string; rejectUnauthorized: boolean };
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
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw invalidUrl(url, `the scheme must be ws: or wss:, not ${u.protocol}`);
  }
  const secure = u.protocol === 'wss:';
  if (u.hash) throw invalidUrl(url, 'a WebSocket URL has no fragment');
  if (!u.hostname) throw invalidUrl(url, 'no host');
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return {
    url: u.href,
    secure,
    host,
    port: u.port ? Number(u.port) : secure ? 443 : 80,
    path: (u.pathname || '/') + u.search,
    hostHeader: u.host,
  };
}

function normalize(url: string | URL, options: unknown): Normalized {
  const target = parseTarget(url);
  if (options === undefined) options = {};
  if (options === null || typeof options !== 'object')
    throw invalidArgType('options', 'an object', options);
  const o = options as Record<string, unknown>;
  let extraHeaders = '';
  const headers = optObject(o, 'headers');
  for (const [name, value] of Object.entries(headers ?? {})) {
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
    reconnect,
  };
}

/** Node's own root certificates: the default trust for wss://, as for https. */
let nodeRoots: string | undefined;

function clientTls(t: Record<string, unknown> | undefined): {
  ca: string;
  rejectUnauthorized: boolean;
} {
  if (!t || t.ca === undefined) nodeRoots ??= rootCertificates.join('\n');
  if (!t) return { ca: nodeRoots as string, rejectUnauthorized: true };
  const ca = t.ca === undefined ? (nodeRoots as string) : readPem('tls.ca', t.ca);
  const rejectUnauthorized = t.rejectUnauthorized === undefined ? true : t.rejectUnauthorized;
  if (typeof rejectUnauthorized !== 'boolean') {
    throw invalidArgType('tls.rejectUnauthorized', 'of type boolean', rejectUnauthorized);
  }
  return { ca, rejectUnauthorized };
}

async function resolve(host: string): Promise<string[]> {
  if (isIP(host)) return [host];
  if (host === 'localhost') return ['127.0.0.1', '::1'];
  try {
    const addrs = await lookup(host, { all: true });
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
  /** The Sec-WebSocket-Extensions value the server answered with ('' when none). */
  extensions = '';
  readonly #o: Normalized;
  #pending: Pending | undefined;
  #queue: { data: WebSocketData; isBinary: boolean | undefined; bytes: number }[] = [];
  #queueBytes = 0;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #userClosed = false;
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

  /** @internal */
  async _dial(signal?: AbortSignal): Promise<void> {
    const o = this.#o;
    runtime.start();
    if (signal?.aborted) throw abortError(signal);
    const addresses = await resolve(o.target.host);
    let lastError: Error | undefined;
    for (const address of addresses) {
      if (signal?.aborted) throw abortError(signal);
      try {
        await this.#dialOne(address, signal);
        return;
      } catch (e) {
        lastError = e as Error;
        const code = (e as SystemError).code;
        if (!NEXT_ADDRESS.has(code)) throw e;
      }
    }
    throw lastError ?? codedError('ENOTFOUND', `No address for ${o.target.host}`);
  }

  #dialOne(address: string, signal?: AbortSignal): Promise<void> {
    const o = this.#o;
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
    const port = o.target.port;
    let native: ReturnType<typeof binding.connect>;
    try {
      native = binding.connect({
        address,
        port,
        request,
        accept,
        protocols: o.protocols,
        conn: o.conn,
        tls: o.target.secure,
        host: o.target.host,
        ca: o.tls.ca,
        rejectUnauthorized: o.tls.rejectUnauthorized,
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
    this.extensions = info.headers['sec-websocket-extensions'] ?? '';
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
      e.port = p.port;
      err = e;
    } else {
      err = codedError(detail.code, detail.message);
      if (detail.status !== undefined) (err as Error & { status?: number }).status = detail.status;
    }
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
