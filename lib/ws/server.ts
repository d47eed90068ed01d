// node-lws/ws: WebSocketServer, shaped like the `ws` package's, on a node-lws server without a
// socket of its own (createServer): upgrades come from a Node HTTP server (its own in `port`
// mode, the given one in `server` mode, the application's in `noServer` mode) through
// handleUpgrade(), and move to node-lws.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  type IncomingMessage,
  STATUS_CODES,
} from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Connection } from '../connection';
import { type ResponseHeaders, writableResponseHeaders } from '../options';
import {
  type CreateServerOptions,
  createServer,
  type Server,
  type VerifyRequest,
  type VerifyResult,
} from '../server';
import {
  deflateOption,
  WebSocket,
  WS_MAX_PAYLOAD,
  type WsPerMessageDeflateOptions,
} from './websocket';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY = /^[+/0-9A-Za-z]{22}==$/;
const TOKEN = /^[!#$%&'*+\-.0-9A-Z^_`|a-z~]+$/;
const RUNNING = 0;
const CLOSING = 1;
const CLOSED = 2;
/** Set on a socket this server took: a second handleUpgrade() of it is an error, as in ws. */
const kTaken = Symbol('node-lws.ws.taken');

export interface VerifyClientInfo {
  origin: string | undefined;
  secure: boolean;
  req: IncomingMessage;
}
export type VerifyClientCallbackSync = (info: VerifyClientInfo) => boolean;
export type VerifyClientCallbackAsync = (
  info: VerifyClientInfo,
  callback: (
    res: boolean,
    code?: number,
    message?: string,
    headers?: Record<string, string>,
  ) => void,
) => void;

export interface ServerOptions {
  port?: number;
  host?: string;
  backlog?: number;
  server?: HttpServer | HttpsServer;
  noServer?: boolean;
  path?: string;
  verifyClient?: VerifyClientCallbackSync | VerifyClientCallbackAsync;
  handleProtocols?: (protocols: Set<string>, request: IncomingMessage) => string | false;
  perMessageDeflate?: boolean | WsPerMessageDeflateOptions;
  /** Largest message accepted (default 100 MiB, as in ws). */
  maxPayload?: number;
  clientTracking?: boolean;
  /** How long a closing handshake may take (ms). */
  closeTimeout?: number;
  /** node-lws options beyond ws's (heartbeat, highWaterMark, maxConnections, ...). */
  lws?: CreateServerOptions;
}

/** ws's resolved options object (`server.options`). */
export interface ResolvedServerOptions extends ServerOptions {
  clientTracking: boolean;
  maxPayload: number;
  noServer: boolean;
  perMessageDeflate: false | WsPerMessageDeflateOptions;
}

export interface WebSocketServerEvents {
  connection: [socket: WebSocket, request: IncomingMessage];
  error: [error: Error];
  headers: [headers: string[], request: IncomingMessage];
  close: [];
  listening: [];
  wsClientError: [error: Error, socket: Duplex, request: IncomingMessage];
}

export class WebSocketServer extends EventEmitter<WebSocketServerEvents> {
  readonly options: ResolvedServerOptions;
  /** The open connections (clientTracking, the default). */
  readonly clients!: Set<WebSocket>;
  readonly #lws: Server;
  #http: HttpServer | HttpsServer | null = null;
  readonly #ownHttp: boolean;
  #removeListeners: (() => void) | undefined;
  #state = RUNNING;
  #httpClosed = false;
  #closeScheduled = false;

  constructor(options: ServerOptions, callback?: () => void) {
    super();
    const o: ResolvedServerOptions = {
      maxPayload: WS_MAX_PAYLOAD,
      clientTracking: true,
      noServer: false,
      ...options,
      perMessageDeflate:
        options.perMessageDeflate === true ? {} : (options.perMessageDeflate ?? false),
    };
    if (
      (o.port == null && !o.server && !o.noServer) ||
      (o.port != null && (o.server || o.noServer)) ||
      (o.server && o.noServer)
    ) {
      throw new TypeError(
        'One and only one of the "port", "server", or "noServer" options must be specified',
      );
    }
    this.options = o;
    if (o.clientTracking) (this as { clients: Set<WebSocket> }).clients = new Set();
    this.#lws = createServer({
      maxBackpressure: Number.POSITIVE_INFINITY, // ws buffers without bound
      ...o.lws,
      maxPayload: o.maxPayload,
      textAs: 'buffer',
      perMessageDeflate: deflateOption(o.perMessageDeflate),
      closeTimeoutMs: o.closeTimeout ?? o.lws?.closeTimeoutMs ?? 30_000,
      verify: (request) => this.#verify(request),
      handleProtocols: (offered, request) => this.#chooseProtocol(offered, request),
      headers: (request, protocol) => this.#headers(request, protocol),
    });
    this.#ownHttp = o.port != null;
    if (o.port != null) {
      const http = createHttpServer((_req, res) => {
        const body = STATUS_CODES[426] as string;
        res.writeHead(426, { 'Content-Length': body.length, 'Content-Type': 'text/plain' });
        res.end(body);
      });
      http.listen(o.port, o.host, o.backlog, callback);
      this.#http = http;
    } else if (o.server) {
      this.#http = o.server;
    }
    if (this.#http) {
      const http = this.#http;
      const onListening = () => this.emit('listening');
      const onError = (err: Error) => this.emit('error', err);
      const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) =>
        this.handleUpgrade(req, socket, head, (ws, r) => this.emit('connection', ws, r));
      http.on('listening', onListening);
      http.on('error', onError);
      http.on('upgrade', onUpgrade);
      this.#removeListeners = () => {
        http.off('listening', onListening);
        http.off('error', onError);
        http.off('upgrade', onUpgrade);
      };
    }
  }

  /** The HTTP server's address (ws: throws in noServer mode). */
  address(): AddressInfo | string | null {
    if (this.options.noServer) throw new Error('The server is operating in "noServer" mode');
    return this.#http ? this.#http.address() : null;
  }

  /**
   * Stops taking upgrades and emits 'close' once every connection is gone (ws 8: open
   * connections are not closed by it). An HTTP server created for `port` is closed.
   */
  close(cb?: (err?: Error) => void): void {
    if (this.#state === CLOSED) {
      if (cb) this.once('close', () => cb(new Error('The server is not running')));
      process.nextTick(() => this.#emitClose());
      return;
    }
    if (cb) this.once('close', cb);
    if (this.#state === CLOSING) return;
    this.#state = CLOSING;
    this.#removeListeners?.();
    this.#removeListeners = undefined;
    const http = this.#http;
    this.#http = null;
    if (this.#ownHttp && http) {
      http.close(() => {
        this.#httpClosed = true;
        this.#maybeClosed();
      });
    } else {
      this.#httpClosed = true;
    }
    this.#maybeClosed();
  }

  #maybeClosed(): void {
    if (this.#state !== CLOSING) return;
    const connsGone = this.#lws.connectionCount === 0;
    // The node-lws server goes with its last connection (closing it earlier would close them).
    if (connsGone) void this.#lws.close();
    if (!this.#httpClosed || this.#closeScheduled) return;
    // ws: with clientTracking, 'close' waits for the clients; without, it comes at once
    // (noServer / server) or with the HTTP server, which waited for its upgraded sockets.
    if (this.clients ? this.clients.size > 0 : this.#ownHttp && !connsGone) return;
    this.#closeScheduled = true;
    process.nextTick(() => this.#emitClose());
  }

  #emitClose(): void {
    this.#state = CLOSED;
    this.emit('close');
  }

  /** Whether this server takes `req` (its `path`, query ignored). */
  shouldHandle(req: IncomingMessage): boolean {
    if (this.options.path) {
      const url = req.url ?? '';
      const q = url.indexOf('?');
      if ((q === -1 ? url : url.slice(0, q)) !== this.options.path) return false;
    }
    return true;
  }

  /**
   * Takes an upgrade request of a Node HTTP server; `cb(ws, req)` once the WebSocket is open.
   * The checks ws makes on the request come first (with ws's status codes and
   * 'wsClientError'); the connection then moves to node-lws, which runs verifyClient,
   * handleProtocols and 'headers' before it answers.
   */
  handleUpgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    cb: (ws: WebSocket, request: IncomingMessage) => void,
  ): void {
    socket.on('error', destroyOnError);
    const h = req.headers;
    const version = Number(h['sec-websocket-version']);
    if (req.method !== 'GET') {
      this.#clientError(req, socket, 405, 'Invalid HTTP method');
      return;
    }
    if (h.upgrade === undefined || h.upgrade.toLowerCase() !== 'websocket') {
      this.#clientError(req, socket, 400, 'Invalid Upgrade header');
      return;
    }
    const key = h['sec-websocket-key'];
    if (key === undefined || !KEY.test(key)) {
      this.#clientError(req, socket, 400, 'Missing or invalid Sec-WebSocket-Key header');
      return;
    }
    if (version !== 13 && version !== 8) {
      this.#clientError(req, socket, 400, 'Missing or invalid Sec-WebSocket-Version header', {
        'Sec-WebSocket-Version': '13, 8',
      });
      return;
    }
    if (!this.shouldHandle(req)) {
      abortHandshake(socket, 400);
      return;
    }
    const offered = h['sec-websocket-protocol'];
    if (offered !== undefined && parseProtocols(offered) === undefined) {
      this.#clientError(req, socket, 400, 'Invalid Sec-WebSocket-Protocol header');
      return;
    }
    const extensions = h['sec-websocket-extensions'];
    let deflate = false;
    if (this.options.perMessageDeflate && extensions !== undefined) {
      const r = deflateOffered(extensions);
      if (r === undefined) {
        this.#clientError(
          req,
          socket,
          400,
          'Invalid or unacceptable Sec-WebSocket-Extensions header',
        );
        return;
      }
      deflate = r;
    }
    const marks = socket as unknown as Record<symbol, unknown>;
    if (marks[kTaken]) {
      throw new Error(
        'server.handleUpgrade() was called more than once with the same socket, possibly due to a misconfiguration',
      );
    }
    if (!socket.readable || !socket.writable) {
      socket.destroy();
      return;
    }
    if (this.#state > RUNNING) {
      abortHandshake(socket, 503);
      return;
    }
    marks[kTaken] = true;
    socket.removeListener('error', destroyOnError);
    this.#lws.handleUpgrade(req, socket, head, (conn) =>
      this.#opened(conn, req, socket, deflate, cb),
    );
  }

  #opened(
    conn: Connection,
    req: IncomingMessage,
    socket: Duplex,
    deflate: boolean,
    cb: (ws: WebSocket, request: IncomingMessage) => void,
  ): void {
    const ws = new WebSocket(null);
    ws._socket = socket;
    const clients = this.clients;
    // Before the WebSocket's own 'close': its listeners no longer find it in `clients`.
    conn.once('close', () => {
      clients?.delete(ws);
      this.#maybeClosed();
    });
    ws._bind(conn, deflate ? 'permessage-deflate' : '');
    clients?.add(ws);
    cb(ws, req);
  }

  #clientError(
    req: IncomingMessage,
    socket: Duplex,
    code: number,
    message: string,
    headers?: Record<string, string>,
  ): void {
    if (this.listenerCount('wsClientError') > 0) {
      const err = new Error(message);
      this.emit('wsClientError', err, socket, req);
      return;
    }
    abortHandshake(socket, code, message, headers);
  }

  // ---- the hooks node-lws calls before it answers -----------------------------------------

  async #verify(request: VerifyRequest): Promise<VerifyResult> {
    if (this.#state > RUNNING) return { status: 503, body: STATUS_CODES[503] };
    const verifyClient = this.options.verifyClient;
    const req = request.httpRequest;
    if (!verifyClient || !req) return true;
    const version = Number(req.headers['sec-websocket-version']);
    const socket = req.socket as (Duplex & { authorized?: boolean; encrypted?: boolean }) | null;
    const info: VerifyClientInfo = {
      origin: req.headers[version === 8 ? 'sec-websocket-origin' : 'origin'] as string | undefined,
      secure: !!(socket?.authorized || socket?.encrypted),
      req,
    };
    if (verifyClient.length === 2) {
      return new Promise<VerifyResult>((resolve) => {
        (verifyClient as VerifyClientCallbackAsync)(info, (ok, code, message, headers) => {
          if (ok) resolve(true);
          else {
            const status = code || 401;
            const r: { status: number; body: string; headers?: Record<string, string> } = {
              status,
              body: message || (STATUS_CODES[status] ?? 'Rejected'),
            };
            if (headers) r.headers = headers;
            resolve(r);
          }
        });
      });
    }
    return (verifyClient as VerifyClientCallbackSync)(info)
      ? true
      : { status: 401, body: STATUS_CODES[401] };
  }

  #chooseProtocol(offered: string[], request: VerifyRequest): string | false {
    if (offered.length === 0) return false;
    const handle = this.options.handleProtocols;
    if (!handle || !request.httpRequest) return offered[0];
    return handle(new Set(offered), request.httpRequest) || false;
  }

  #headers(request: VerifyRequest, protocol: string): ResponseHeaders | undefined {
    const req = request.httpRequest;
    if (!req || this.listenerCount('headers') === 0) return undefined;
    const key = req.headers['sec-websocket-key'] ?? '';
    const lines = [
      'HTTP/1.1 101 Switching Protocols',
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Accept: ${createHash('sha1')
        .update(key + GUID)
        .digest('base64')}`,
    ];
    if (protocol) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
    const own = lines.length;
    this.emit('headers', lines, req);
    // Lines the listeners added go into the response; node-lws writes its own.
    const extra: Record<string, string[]> = {};
    for (const line of lines.slice(own)) {
      const i = line.indexOf(':');
      if (i <= 0) continue;
      const name = line.slice(0, i).trim();
      const values = extra[name] ?? [];
      values.push(line.slice(i + 1).trim());
      extra[name] = values;
    }
    return writableResponseHeaders(extra);
  }
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}

/** An HTTP error response on a socket node-lws has not taken, as ws writes it. */
function abortHandshake(
  socket: Duplex,
  code: number,
  message?: string,
  headers?: Record<string, string>,
): void {
  const body = message || (STATUS_CODES[code] ?? '');
  const all: Record<string, string | number> = {
    Connection: 'close',
    'Content-Type': 'text/html',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  };
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${code} ${STATUS_CODES[code]}\r\n${Object.keys(all)
      .map((name) => `${name}: ${all[name]}`)
      .join('\r\n')}\r\n\r\n${body}`,
  );
}

/** The offered subprotocols; undefined when the header is malformed or repeats one. */
function parseProtocols(header: string): Set<string> | undefined {
  const out = new Set<string>();
  for (const p of header.split(',')) {
    const name = p.trim();
    if (!TOKEN.test(name) || out.has(name)) return undefined;
    out.add(name);
  }
  return out;
}

const DEFLATE_PARAMS = new Set([
  'server_no_context_takeover',
  'client_no_context_takeover',
  'server_max_window_bits',
  'client_max_window_bits',
]);

/**
 * Whether a well-formed permessage-deflate offer is in the header; undefined when an offer of
 * it is malformed (ws answers those with 400).
 */
function deflateOffered(header: string): boolean | undefined {
  let found = false;
  for (const offer of header.split(',')) {
    const [name, ...params] = offer.split(';').map((s) => s.trim());
    if (!name || !TOKEN.test(name)) return undefined;
    if (name !== 'permessage-deflate') continue;
    const seen = new Set<string>();
    for (const param of params) {
      const eq = param.indexOf('=');
      const key = (eq === -1 ? param : param.slice(0, eq)).trim();
      let value = eq === -1 ? undefined : param.slice(eq + 1).trim();
      if (value?.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      if (!DEFLATE_PARAMS.has(key) || seen.has(key)) return undefined;
      seen.add(key);
      if (key.endsWith('_takeover') && value !== undefined) return undefined;
      if (key === 'server_max_window_bits' || (key === 'client_max_window_bits' && value)) {
        const bits = Number(value);
        if (!Number.isInteger(bits) || bits < 8 || bits > 15) return undefined;
      }
    }
    found = true;
  }
  return found;
}
