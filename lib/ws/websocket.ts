// node-lws/ws: WebSocket, shaped like the `ws` package's class, on node-lws transports. A
// server-side instance wraps a Connection (made by WebSocketServer); `new WebSocket(url)` is a
// client on connect(). Messages arrive whole (node-lws reassembles them natively); text
// arrives as a Buffer with isBinary false, as in ws.
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { type ClientTransport, type ConnectOptions, connect } from '../client';
import type { PerMessageDeflateOptions } from '../options';
import type { NativeTransport } from '../transport';

export type BinaryType = 'nodebuffer' | 'arraybuffer' | 'fragments' | 'blob';
/** What a 'message' event carries, by binaryType. */
export type RawData = Buffer | ArrayBuffer | Buffer[] | Blob;
export type Data = string | Buffer | ArrayBuffer | ArrayBufferView | number;

const BINARY_TYPES: readonly BinaryType[] = ['nodebuffer', 'arraybuffer', 'fragments', 'blob'];
const STATE_NAMES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'];
const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;
const EMPTY = Buffer.alloc(0);
/** ws's default (100 MiB) for messages and for clients. */
export const WS_MAX_PAYLOAD = 100 * 1024 * 1024;
const SUBPROTOCOL = /^[!#$%&'*+\-.0-9A-Z^_`|a-z~]+$/;

/** permessage-deflate options as ws takes them. */
export interface WsPerMessageDeflateOptions {
  serverNoContextTakeover?: boolean;
  clientNoContextTakeover?: boolean;
  serverMaxWindowBits?: number;
  clientMaxWindowBits?: number | boolean;
  zlibDeflateOptions?: { level?: number };
  threshold?: number;
}

/** ws's perMessageDeflate (true, false or options) as node-lws takes it. */
export function deflateOption(
  v: boolean | WsPerMessageDeflateOptions | undefined,
): boolean | PerMessageDeflateOptions {
  if (!v) return false;
  if (v === true) return true;
  const out: PerMessageDeflateOptions = {};
  if (v.threshold !== undefined) out.threshold = v.threshold;
  if (v.zlibDeflateOptions?.level !== undefined) out.level = v.zlibDeflateOptions.level;
  if (typeof v.serverMaxWindowBits === 'number') out.serverMaxWindowBits = v.serverMaxWindowBits;
  if (typeof v.clientMaxWindowBits === 'number') out.clientMaxWindowBits = v.clientMaxWindowBits;
  if (v.serverNoContextTakeover !== undefined)
    out.serverNoContextTakeover = v.serverNoContextTakeover;
  if (v.clientNoContextTakeover !== undefined)
    out.clientNoContextTakeover = v.clientNoContextTakeover;
  return out;
}

export interface ClientOptions {
  protocols?: string | string[];
  /** Extra request headers. */
  headers?: Record<string, string>;
  origin?: string;
  /** Offered by default, as in ws. */
  perMessageDeflate?: boolean | WsPerMessageDeflateOptions;
  /** Largest message accepted (default 100 MiB, as in ws). */
  maxPayload?: number;
  /** Connect plus handshake, in ms (default 30 s). */
  handshakeTimeout?: number;
  /** How long the closing handshake may take (ms). */
  closeTimeout?: number;
  /** wss://: verify the server's certificate (default true). */
  rejectUnauthorized?: boolean;
  /** wss://: the CAs to trust (PEM), instead of Node's root certificates. */
  ca?: string | Buffer;
  /** Only 13. */
  protocolVersion?: number;
  /** node-lws options of connect() beyond ws's (highWaterMark, heartbeat, ...). */
  lws?: ConnectOptions;
}

/** ws's event objects for addEventListener() and the on<event> attributes. */
export class WsEvent {
  readonly type: string;
  target: WebSocket | null = null;
  constructor(type: string) {
    this.type = type;
  }
}
export class MessageEvent extends WsEvent {
  readonly data: unknown;
  constructor(data: unknown) {
    super('message');
    this.data = data;
  }
}
export class CloseEvent extends WsEvent {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  constructor(code: number, reason: string, wasClean: boolean) {
    super('close');
    this.code = code;
    this.reason = reason;
    this.wasClean = wasClean;
  }
}
export class ErrorEvent extends WsEvent {
  readonly error: unknown;
  readonly message: string;
  constructor(error: Error) {
    super('error');
    this.error = error;
    this.message = error.message;
  }
}

type EventListenerLike =
  | ((this: WebSocket, ev: never) => unknown)
  | { handleEvent(ev: never): unknown };
type Wrapper = ((...args: unknown[]) => void) & {
  [kListener]?: EventListenerLike;
  [kAttribute]?: boolean;
};
const kListener = Symbol('node-lws.ws.listener');
const kAttribute = Symbol('node-lws.ws.attribute');

function closeCodeError(): TypeError {
  return new TypeError('First argument must be a valid error code number');
}

function validStatusCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  );
}

function toBuffer(data: unknown): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data);
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (data === undefined || data === null) return EMPTY;
  throw new TypeError(
    'The "data" argument must be of type string or an instance of Buffer, ArrayBuffer, or ArrayBufferView',
  );
}

export class WebSocket extends EventEmitter {
  static readonly CONNECTING = CONNECTING;
  static readonly OPEN = OPEN;
  static readonly CLOSING = CLOSING;
  static readonly CLOSED = CLOSED;
  declare readonly CONNECTING: 0;
  declare readonly OPEN: 1;
  declare readonly CLOSING: 2;
  declare readonly CLOSED: 3;

  #readyState = CONNECTING;
  #t: NativeTransport | undefined;
  #binaryType: BinaryType = 'nodebuffer';
  #protocol = '';
  #extensions = '';
  #url: string | undefined;
  #paused = false;
  #abort: AbortController | undefined;
  #afterClose = 0;
  #wasClean = false;
  /** send() callbacks waiting for the buffer to fall below the high-water mark. */
  #drainCallbacks: ((err?: Error | null) => void)[] = [];
  /** send(..., { fin: false }) fragments, sent as one message with the last one. */
  #fragments: Buffer[] = [];
  #fragmentsBinary = false;
  /** Server side: the socket of the upgrade request (Node's, possibly closed after the move). */
  _socket: Duplex | null = null;

  /**
   * A client: `new WebSocket(url, protocols?, options?)` (ws:, wss:, http: or https: URLs).
   * `address` null is for WebSocketServer, which binds the instance to a connection.
   */
  constructor(
    address: string | URL | null,
    protocols?: string | string[] | ClientOptions,
    options?: ClientOptions,
  ) {
    super();
    if (address === null) return;
    let list: string[];
    if (protocols === undefined) list = [];
    else if (Array.isArray(protocols)) list = protocols;
    else if (typeof protocols === 'object' && protocols !== null) {
      options = protocols;
      list = options.protocols === undefined ? [] : ([] as string[]).concat(options.protocols);
    } else list = [protocols];
    this.#connect(address, list, options ?? {});
  }

  // ---- client ----------------------------------------------------------------------------

  #connect(address: string | URL, protocols: string[], o: ClientOptions): void {
    if (o.protocolVersion !== undefined && o.protocolVersion !== 13) {
      throw new RangeError(
        `Unsupported protocol version: ${o.protocolVersion} (supported versions: 13)`,
      );
    }
    let url: URL;
    try {
      url = address instanceof URL ? new URL(address.href) : new URL(address);
    } catch {
      throw new SyntaxError(`Invalid URL: ${String(address)}`);
    }
    if (url.protocol === 'http:') url.protocol = 'ws:';
    else if (url.protocol === 'https:') url.protocol = 'wss:';
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
      throw new SyntaxError(
        'The URL\'s protocol must be one of "ws:", "wss:", "http:", or "https:"',
      );
    }
    if (url.hash) throw new SyntaxError('The URL contains a fragment identifier');
    if (
      protocols.some((p) => typeof p !== 'string' || !SUBPROTOCOL.test(p)) ||
      new Set(protocols).size !== protocols.length
    ) {
      throw new SyntaxError('An invalid or duplicated subprotocol was specified');
    }
    this.#url = url.href;
    this.#abort = new AbortController();
    const tls: { ca?: string | Buffer; rejectUnauthorized?: boolean } = {};
    if (o.ca !== undefined) tls.ca = o.ca;
    if (o.rejectUnauthorized !== undefined) tls.rejectUnauthorized = o.rejectUnauthorized;
    const options: ConnectOptions = {
      maxBackpressure: Number.POSITIVE_INFINITY, // ws buffers without bound
      ...o.lws,
      protocols,
      textAs: 'buffer',
      maxPayload: o.maxPayload ?? WS_MAX_PAYLOAD,
      timeoutMs: o.handshakeTimeout ?? o.lws?.timeoutMs ?? 30_000,
      perMessageDeflate: deflateOption(o.perMessageDeflate ?? true),
      signal: this.#abort.signal,
    };
    if (o.headers) options.headers = o.headers;
    if (o.origin !== undefined) options.origin = o.origin;
    if (o.closeTimeout !== undefined) options.closeTimeoutMs = o.closeTimeout;
    if (url.protocol === 'wss:') options.tls = { ...o.lws?.tls, ...tls };
    connect(url, options).then(
      (t) => this.#opened(t),
      (err: Error) => this.#failed(err),
    );
  }

  #opened(t: ClientTransport): void {
    if (this.#readyState !== CONNECTING) {
      // close() or terminate() came while the handshake finished.
      t.terminate();
      this.#failed(Object.assign(new Error('aborted'), { code: 'ABORT_ERR' }));
      return;
    }
    this.#extensions = extensionNames(t.extensions);
    this._bind(t);
    this.emit('open');
  }

  #failed(err: Error): void {
    this.#readyState = CLOSED;
    this.#abort = undefined;
    const e =
      (err as { code?: string }).code === 'ABORT_ERR'
        ? new Error('WebSocket was closed before the connection was established')
        : err;
    this.#emitError(e);
    this.emit('close', 1006, EMPTY);
  }

  // ---- both sides ------------------------------------------------------------------------

  /** @internal Binds this instance to an open transport. */
  _bind(t: NativeTransport, extensions?: string): void {
    this.#t = t;
    this.#protocol = t.protocol;
    if (extensions !== undefined) this.#extensions = extensions;
    this.#readyState = OPEN;
    t.on('message', (data, isBinary) => {
      this.emit('message', this.#convert(data as Buffer, isBinary), isBinary);
    });
    t.on('ping', (data) => this.emit('ping', data));
    t.on('pong', (data) => this.emit('pong', data));
    t.on('drain', () => this.#flushCallbacks());
    t.on('error', (err) => this.#emitError(err));
    t.on('close', (code, reason, wasClean) => {
      this.#readyState = CLOSED;
      this.#wasClean = wasClean;
      this.#flushCallbacks(this.#notOpen());
      this.emit('close', code, Buffer.from(reason));
    });
  }

  #convert(data: Buffer | string, isBinary: boolean): RawData {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    if (!isBinary) return buf;
    switch (this.#binaryType) {
      case 'arraybuffer':
        return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
      case 'fragments':
        return [buf];
      case 'blob':
        return new Blob([buf]);
      default:
        return buf;
    }
  }

  /** 'error' goes only to those who listen: an unhandled one would end the process. */
  #emitError(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  #notOpen(): Error {
    return new Error(
      `WebSocket is not open: readyState ${this.#readyState} (${STATE_NAMES[this.#readyState]})`,
    );
  }

  /** Callbacks get null when the data went out (as ws's do), or the error. */
  #flushCallbacks(err?: Error): void {
    const cbs = this.#drainCallbacks;
    this.#drainCallbacks = [];
    for (const cb of cbs) cb(err ?? null);
  }

  get binaryType(): BinaryType {
    return this.#binaryType;
  }
  set binaryType(type: BinaryType) {
    if (BINARY_TYPES.includes(type)) this.#binaryType = type;
  }
  get bufferedAmount(): number {
    return (this.#t?.bufferedAmount ?? 0) + this.#afterClose;
  }
  get extensions(): string {
    return this.#extensions;
  }
  get isPaused(): boolean {
    return this.#paused;
  }
  get protocol(): string {
    return this.#protocol;
  }
  get readyState(): number {
    return this.#readyState;
  }
  get url(): string | undefined {
    return this.#url;
  }

  send(data: Data, cb?: (err?: Error | null) => void): void;
  send(
    data: Data,
    options: { binary?: boolean; compress?: boolean; fin?: boolean; mask?: boolean },
    cb?: (err?: Error | null) => void,
  ): void;
  send(
    data: Data,
    options?:
      | { binary?: boolean; compress?: boolean; fin?: boolean; mask?: boolean }
      | ((err?: Error | null) => void),
    cb?: (err?: Error | null) => void,
  ): void {
    if (this.#readyState === CONNECTING) throw this.#notOpen();
    if (typeof options === 'function') {
      cb = options;
      options = {};
    }
    const value = typeof data === 'number' ? data.toString() : data;
    // (The transport may be closing on its own: lws.maxBackpressure with policy 'close'.)
    if (this.#readyState !== OPEN || !this.#t || this.#t.readyState !== 'open') {
      this.#sendAfterClose(value, cb);
      return;
    }
    const binary = options?.binary ?? typeof value !== 'string';
    if (options?.fin === false) {
      if (this.#fragments.length === 0) this.#fragmentsBinary = binary;
      this.#fragments.push(Buffer.from(toBuffer(value)));
      if (cb) process.nextTick(cb, null);
      return;
    }
    let payload: string | Buffer | ArrayBuffer | ArrayBufferView =
      value === undefined || value === null ? EMPTY : value;
    let isBinary = binary;
    if (this.#fragments.length > 0) {
      payload = Buffer.concat([...this.#fragments, toBuffer(payload)]);
      isBinary = this.#fragmentsBinary;
      this.#fragments = [];
    } else if (typeof payload !== 'string') {
      toBuffer(payload); // type check
    }
    const below = this.#t.send(payload, isBinary);
    if (!cb) return;
    if (below && this.#drainCallbacks.length === 0) process.nextTick(cb, null);
    else this.#drainCallbacks.push(cb);
  }

  #sendAfterClose(data: unknown, cb?: (err?: Error | null) => void): void {
    if (data) this.#afterClose += toBuffer(data).length;
    if (cb) process.nextTick(cb, this.#notOpen());
  }

  ping(
    data?: unknown,
    mask?: boolean | ((err?: Error | null) => void),
    cb?: (err?: Error | null) => void,
  ): void {
    this.#control('ping', data, mask, cb);
  }

  pong(
    data?: unknown,
    mask?: boolean | ((err?: Error | null) => void),
    cb?: (err?: Error | null) => void,
  ): void {
    this.#control('pong', data, mask, cb);
  }

  #control(
    kind: 'ping' | 'pong',
    data: unknown,
    mask: boolean | ((err?: Error | null) => void) | undefined,
    cb: ((err?: Error | null) => void) | undefined,
  ): void {
    if (this.#readyState === CONNECTING) throw this.#notOpen();
    if (typeof data === 'function') {
      cb = data as (err?: Error | null) => void;
      data = undefined;
    } else if (typeof mask === 'function') {
      cb = mask;
    }
    if (typeof data === 'number') data = data.toString();
    if (this.#readyState !== OPEN || !this.#t || this.#t.readyState !== 'open') {
      this.#sendAfterClose(data, cb);
      return;
    }
    const payload = toBuffer(data);
    if (payload.length > 125)
      throw new RangeError('The data size must not be greater than 125 bytes');
    if (kind === 'ping') this.#t.ping(payload);
    else this.#t.pong(payload);
    if (cb) process.nextTick(cb, null);
  }

  close(code?: number, data?: string | Buffer): void {
    if (this.#readyState === CLOSED) return;
    if (this.#readyState === CONNECTING) {
      this.#readyState = CLOSING;
      this.#abort?.abort();
      return;
    }
    if (this.#readyState === CLOSING) return;
    if (code !== undefined && (typeof code !== 'number' || !validStatusCode(code))) {
      throw closeCodeError();
    }
    const reason = data === undefined ? '' : Buffer.isBuffer(data) ? data.toString() : String(data);
    if (Buffer.byteLength(reason) > 123) {
      throw new RangeError('The message must not be greater than 123 bytes');
    }
    this.#readyState = CLOSING;
    const t = this.#t as NativeTransport;
    if (code === undefined) t._closeWithoutStatus();
    else t.close(code, reason);
  }

  terminate(): void {
    if (this.#readyState === CLOSED) return;
    if (this.#readyState === CONNECTING) {
      this.#readyState = CLOSING;
      this.#abort?.abort();
      return;
    }
    this.#readyState = CLOSING;
    this.#t?.terminate();
  }

  pause(): void {
    if (this.#readyState === CONNECTING || this.#readyState === CLOSED) return;
    this.#paused = true;
    this.#t?.pause();
  }

  resume(): void {
    if (this.#readyState === CONNECTING || this.#readyState === CLOSED) return;
    this.#paused = false;
    this.#t?.resume();
  }

  // ---- EventTarget-style listeners, as ws offers them -------------------------------------

  addEventListener(
    type: 'open' | 'message' | 'close' | 'error',
    handler: EventListenerLike,
    options: { once?: boolean } = {},
  ): void {
    this.#addListener(type, handler, options, false);
  }

  removeEventListener(type: string, handler: EventListenerLike): void {
    for (const l of this.listeners(type) as Wrapper[]) {
      if (l[kListener] === handler && !l[kAttribute]) {
        this.removeListener(type, l);
        return;
      }
    }
  }

  #addListener(
    type: string,
    handler: EventListenerLike,
    options: { once?: boolean },
    attribute: boolean,
  ): void {
    if (!attribute) {
      for (const l of this.listeners(type) as Wrapper[]) {
        if (l[kListener] === handler && !l[kAttribute]) return;
      }
    }
    const call = (ev: WsEvent) => {
      ev.target = this;
      if (typeof handler === 'function') handler.call(this, ev as never);
      else handler.handleEvent(ev as never);
    };
    let wrapper: Wrapper;
    switch (type) {
      case 'message':
        wrapper = (data: unknown, isBinary: unknown) =>
          call(new MessageEvent(isBinary ? data : String(data)));
        break;
      case 'close':
        wrapper = (code: unknown, reason: unknown) =>
          call(new CloseEvent(code as number, String(reason), this.#wasClean));
        break;
      case 'error':
        wrapper = (err: unknown) => call(new ErrorEvent(err as Error));
        break;
      case 'open':
        wrapper = () => call(new WsEvent('open'));
        break;
      default:
        return;
    }
    wrapper[kListener] = handler;
    wrapper[kAttribute] = attribute;
    if (options.once) this.once(type, wrapper);
    else this.on(type, wrapper);
  }

  #attribute(type: string): EventListenerLike | null {
    for (const l of this.listeners(type) as Wrapper[]) {
      if (l[kAttribute]) return l[kListener] ?? null;
    }
    return null;
  }

  #setAttribute(type: string, handler: unknown): void {
    for (const l of this.listeners(type) as Wrapper[]) {
      if (l[kAttribute]) {
        this.removeListener(type, l);
        break;
      }
    }
    if (typeof handler === 'function')
      this.#addListener(type, handler as EventListenerLike, {}, true);
  }

  get onopen(): EventListenerLike | null {
    return this.#attribute('open');
  }
  set onopen(fn: EventListenerLike | null) {
    this.#setAttribute('open', fn);
  }
  get onmessage(): EventListenerLike | null {
    return this.#attribute('message');
  }
  set onmessage(fn: EventListenerLike | null) {
    this.#setAttribute('message', fn);
  }
  get onclose(): EventListenerLike | null {
    return this.#attribute('close');
  }
  set onclose(fn: EventListenerLike | null) {
    this.#setAttribute('close', fn);
  }
  get onerror(): EventListenerLike | null {
    return this.#attribute('error');
  }
  set onerror(fn: EventListenerLike | null) {
    this.#setAttribute('error', fn);
  }
}

for (const [name, value] of [
  ['CONNECTING', CONNECTING],
  ['OPEN', OPEN],
  ['CLOSING', CLOSING],
  ['CLOSED', CLOSED],
] as const) {
  Object.defineProperty(WebSocket.prototype, name, { enumerable: true, value });
}

/** 'permessage-deflate; client_max_window_bits=15' -> 'permessage-deflate'. */
export function extensionNames(header: string): string {
  return header
    .split(',')
    .map((e) => e.split(';')[0].trim())
    .filter(Boolean)
    .join();
}
