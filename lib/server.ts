// listen() and Server: a WebSocket server whose listening socket node-lws owns.
import { createPrivateKey } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { realpathSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSecureContext } from 'node:tls';
import { Connection, checkTopic, type TopicHub, type UpgradeRequest } from './connection';
import {
  abortError,
  codedError,
  invalidArgType,
  invalidArgValue,
  type SystemError,
} from './errors';
import { binding, type NativeRequestInfo, type NativeServerConfig } from './native';
import {
  connOptions,
  type HeartbeatOptions,
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
  readPem,
} from './options';
import { type Logger, runtime, type ServerSink } from './runtime';
import type { BackpressureOptions, BackpressurePolicy, WebSocketData } from './transport';

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
  /** A client must complete its upgrade request within this time (default 10 s). */
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
   * Decides each upgrade before it is answered: `true` accepts, `false` answers 403, and
   * `{ status, headers?, body? }` answers that HTTP status. May return a Promise.
   */
  verify?: (request: VerifyRequest) => VerifyResult | Promise<VerifyResult>;
  /** Picks the subprotocol from the client's offer (in its order); `false` for none. */
  handleProtocols?: (
    offered: string[],
    request: VerifyRequest,
  ) => string | false | Promise<string | false>;
  /** Accept upgrades only from these Origin header values (403 otherwise). */
  allowedOrigins?: string[];
  /** Open WebSocket connections allowed at once; beyond it upgrades get 503. */
  maxConnections?: number;
  /** Accept upgrades only on this path (404 otherwise), e.g. '/ws'. */
  path?: string;
  /** Answer `GET /health` with `{ status, connections, uptimeMs }`. */
  health?: boolean;
  /** Serve the files of a folder over HTTP on the same port. */
  static?: { root: string; index?: string };
  /** Ping idle connections; drop those that stay silent (close code 1006). */
  heartbeat?: HeartbeatOptions;
  /**
   * Serve wss:// (TLS): each a file path or a Buffer with PEM. RSA and EC keys; an
   * encrypted key needs its passphrase. Certificates after the first in `cert`, and
   * those in `ca`, are sent as the chain (intermediates). No client certificates.
   */
  tls?: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer; passphrase?: string };
  /**
   * 'string' (default): text messages arrive as strings. 'buffer': as Buffers
   * (isBinary false) — no UTF-8 decoding, as ws does; send(buffer, false) sends text.
   */
  textAs?: 'string' | 'buffer';
  /** permessage-deflate (off by default): `true` or options. Inflated size is bounded by maxPayload. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
}

/** What verify() and handleProtocols() are given. */
export interface VerifyRequest {
  path: string;
  headers: Record<string, string>;
  origin: string | undefined;
  remoteAddress: string;
  remotePort: number;
  /** Subprotocols the client offered, in its order. */
  protocols: string[];
}

export type VerifyResult =
  | boolean
  | { status: number; headers?: Record<string, string>; body?: string };

export interface AddressInfo {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
}

export interface ServerEvents {
  connection: [conn: Connection, request: UpgradeRequest];
  close: [];
  error: [err: Error];
}

interface Normalized {
  port: number;
  host: string | undefined;
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
  config: NativeServerConfig;
}

function normalize(options: unknown): Normalized {
  if (options === undefined) options = {};
  if (options === null || typeof options !== 'object') {
    throw invalidArgType('options', 'an object', options);
  }
  const o = options as Record<string, unknown>;
  const verify = optFunction<ListenOptions['verify']>(o, 'verify');
  const handleProtocols = optFunction<ListenOptions['handleProtocols']>(o, 'handleProtocols');
  const path = optString(o, 'path') ?? '';
  if (path !== '' && (!path.startsWith('/') || /[\s?#]/.test(path))) {
    throw invalidArgValue('path', "must start with '/' and contain no query", path);
  }
  const tlsMaterial = serverTls(optObject(o, 'tls'));
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
    config: {
      conn: connOptions(o, { name: 'handshakeTimeoutMs', def: 10_000 }),
      protocols: optProtocols(o),
      verify: verify !== undefined || handleProtocols !== undefined,
      maxConnections: optInt(o, 'maxConnections', 0, 0, 2 ** 31 - 1),
      allowedOrigins: optStringList(o, 'allowedOrigins'),
      path,
      health: optBool(o, 'health', false),
      staticRoot,
      staticIndex,
      ...tlsMaterial,
    },
  };
}

/** Reads and checks the certificate and key with Node's own TLS, for a clear error. */
function serverTls(t: Record<string, unknown> | undefined): {
  tlsCert: string;
  tlsKey: string;
  tlsPassphrase: string;
  tlsChain: string;
} {
  if (!t) return { tlsCert: '', tlsKey: '', tlsPassphrase: '', tlsChain: '' };
  const certPem = readPem('tls.cert', t.cert);
  // lws takes one certificate; the rest of a bundle, and tls.ca, form the chain.
  const blocks =
    certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const cert = blocks[0] ?? certPem;
  const extra = t.ca === undefined ? [] : [readPem('tls.ca', t.ca)];
  const chain = [...blocks.slice(1), ...extra].join('\n');
  const keyPem = readPem('tls.key', t.key);
  const passphrase = optString(t, 'passphrase');
  let key: string;
  try {
    createSecureContext({ cert: certPem, key: keyPem, passphrase, ca: chain || undefined });
    const k = createPrivateKey({ key: keyPem, passphrase });
    const type = k.asymmetricKeyType;
    if (type !== 'rsa' && type !== 'ec') {
      throw new Error(`${type} keys are not supported by libwebsockets 4.1; use RSA or EC`);
    }
    // lws takes the key unencrypted, in the classic PEM form for its type.
    key = k.export({ format: 'pem', type: type === 'rsa' ? 'pkcs1' : 'sec1' }) as string;
  } catch (e) {
    throw codedError('ERR_TLS_CERT', `Invalid TLS certificate or key: ${(e as Error).message}`);
  }
  return { tlsCert: cert, tlsKey: key, tlsPassphrase: '', tlsChain: chain };
}

type State = 'binding' | 'listening' | 'closing' | 'closed';

export class Server extends EventEmitter<ServerEvents> implements ServerSink {
  readonly #id = runtime.nextServerId();
  readonly #opts: Normalized;
  readonly #conns = new Set<Connection>();
  #state: State = 'binding';
  #address: AddressInfo = { address: '', family: 'IPv4', port: 0 };
  #attempts = 0;
  #refed = true;
  #listenerOpen = false;
  #started?: { resolve: () => void; reject: (err: Error) => void };
  #closed?: Promise<void>;
  #resolveClosed?: () => void;
  readonly #hub: TopicHub = {
    serverId: this.#id,
    counts: new Map<string, number>(),
    publish: (topic, data, isBinary, skip) => this.#publish(topic, data, isBinary, skip),
    gone: (conn) => this.#conns.delete(conn),
  };

  /** @internal Use listen(). */
  constructor(opts: Normalized) {
    super();
    this.#opts = opts;
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

  /** Keep the process alive while this server is open (the default). */
  ref(): this {
    if (!this.#refed && this.#state !== 'closed') runtime.ref();
    this.#refed = true;
    return this;
  }

  /** Let the process exit even though this server is open. */
  unref(): this {
    if (this.#refed && this.#state !== 'closed') runtime.unref();
    this.#refed = false;
    return this;
  }

  /**
   * Stops accepting (the port is free from this moment), closes every
   * connection with 1001, waits for their closing handshakes (up to
   * closeTimeoutMs, then drops them) and resolves once all are gone.
   */
  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#closed = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
    if (this.#state === 'binding') {
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
   * skips it for this message, 'close' closes it). Returns the number of connections it is
   * queued for (subscribers at the time of the call). Strings go as text, anything else as
   * binary unless `isBinary` says otherwise.
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
    if (count <= 0 || this.#state !== 'listening') return 0; // nothing crosses to native code
    let binary: boolean;
    if (typeof data === 'string') {
      binary = isBinary === true;
      if (binary) data = Buffer.from(data);
    } else if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer) {
      binary = isBinary !== false;
    } else {
      throw invalidArgType('data', 'a string, Buffer, ArrayBuffer or ArrayBufferView', data);
    }
    binding.publish(this.#id, topic, data, binary, skip?.nativeHandle);
    return count;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal */
  async _listen(): Promise<void> {
    const o = this.#opts;
    if (o.signal?.aborted) throw abortError(o.signal);
    runtime.start();
    runtime.ref();
    let bound: ReturnType<typeof binding.bind> | undefined;
    try {
      const hosts = await resolveHosts(o.host, o.signal);
      for (let attempt = 1; ; attempt++) {
        if (o.signal?.aborted) throw abortError(o.signal);
        if (this.#state !== 'binding')
          throw codedError('ERR_SERVER_CLOSED', 'The server was closed while starting');
        try {
          bound = bindFirst(hosts, o);
          this.#attempts = attempt;
          break;
        } catch (e) {
          const err = e as SystemError;
          err.attempts = attempt;
          if (err.code === 'EADDRINUSE' && o.port === 0) {
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
      bound = undefined; // the native side owns the fd from here
      await new Promise<void>((resolve, reject) => {
        this.#started = { resolve, reject };
        binding.startServer(this.#id, fd, o.config);
      });
      this.#started = undefined;
      if (o.logger) runtime.loggers.add(o.logger);
      if (!this.#refed) runtime.unref();
    } catch (err) {
      this.#started = undefined;
      if (bound) binding.closeFd(bound.fd);
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
  }

  /** @internal */ _onServerClosed(): void {
    runtime.servers.delete(this.#id);
    if (this.#opts.logger) runtime.loggers.delete(this.#opts.logger);
    const refed = this.#refed || this.#started !== undefined;
    this.#started?.reject(codedError('ERR_SERVER_CLOSED', 'The server was closed while starting'));
    this.#finishClose(refed);
  }

  #finishClose(refed = this.#refed): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (refed) runtime.unref();
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
    };
    const { verify, handleProtocols } = this.#opts;
    const decide = async (): Promise<void> => {
      if (verify) {
        const result = await verify(request);
        if (result !== true) {
          const r = result === false || result == null ? { status: 403 } : result;
          const status =
            Number.isInteger(r.status) && r.status >= 400 && r.status <= 599 ? r.status : 403;
          let lines = '';
          for (const [k, v] of Object.entries(r.headers ?? {})) {
            if (/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(k) && !/[\r\n]/.test(String(v)))
              lines += `${k}: ${v}\r\n`;
          }
          binding.reject(
            info.handle,
            status,
            lines,
            r.body ?? `${status === 403 ? 'Forbidden' : 'Rejected'}\n`,
          );
          return;
        }
      }
      // Without handleProtocols, native code picks from `protocols` (as it
      // does when there is no verify at all): one rule, in one place.
      let protocol: string | null = null;
      if (handleProtocols) {
        const chosen = await handleProtocols(offered, request);
        protocol = '';
        if (chosen !== false) {
          if (!offered.includes(chosen))
            throw new Error(`handleProtocols returned '${chosen}', which the client did not offer`);
          protocol = chosen;
        }
      }
      binding.accept(info.handle, protocol);
    };
    decide().catch((err: Error) => {
      binding.reject(info.handle, 500, '', 'Internal Server Error\n');
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
  }

  /** @internal */ _onConnection(info: NativeRequestInfo): void {
    const conn = new Connection(info, this.#opts.backpressure, this.#hub);
    this.#conns.add(conn);
    const request: UpgradeRequest = {
      path: info.path,
      headers: info.headers,
      remoteAddress: info.remoteAddress,
      remotePort: info.remotePort,
    };
    this.emit('connection', conn, request);
  }
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
    addrs = await lookup(host, { all: true });
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
