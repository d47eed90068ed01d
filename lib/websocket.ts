// A WHATWG-style WebSocket for code written against the browser API, on the
// same core as ClientTransport.
import { type ClientTransport, type ConnectOptions, connect } from './client';
import { invalidArgType } from './errors';
import { isValidCloseCode } from './transport';

export type BinaryType = 'nodebuffer' | 'arraybuffer' | 'blob';

/**
 * The second argument of `new WebSocket(url, init)` as undici takes it (`protocols`, `headers`),
 * plus node-lws's connect options. permessage-deflate is offered by default, as browsers do.
 */
export interface WebSocketInit extends Omit<ConnectOptions, 'protocols' | 'signal' | 'reconnect'> {
  protocols?: string | string[];
}

const BINARY_TYPES = new Set<string>(['nodebuffer', 'arraybuffer', 'blob']);

/** The 'close' event (Node 20 has no global CloseEvent). */
export class CloseEvent extends Event {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  constructor(type: string, init: { code?: number; reason?: string; wasClean?: boolean } = {}) {
    super(type);
    this.code = init.code ?? 0;
    this.reason = init.reason ?? '';
    this.wasClean = init.wasClean ?? false;
  }
}

type Handler<E extends Event> = ((this: WebSocket, ev: E) => unknown) | null;

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

export class WebSocket extends EventTarget {
  static readonly CONNECTING = CONNECTING;
  static readonly OPEN = OPEN;
  static readonly CLOSING = CLOSING;
  static readonly CLOSED = CLOSED;
  readonly CONNECTING = CONNECTING;
  readonly OPEN = OPEN;
  readonly CLOSING = CLOSING;
  readonly CLOSED = CLOSED;

  readonly url: string;
  #binaryType: BinaryType = 'nodebuffer';
  #readyState: number = CONNECTING;
  #t: ClientTransport | undefined;
  #protocol = '';
  #extensions = '';
  /** Sends waiting behind a Blob whose bytes are being read (sends keep their order). */
  #sendQueue: { data: Blob | string | ArrayBuffer | ArrayBufferView; bytes: number }[] = [];
  #queuedBytes = 0;
  #abort = new AbortController();
  #pendingClose: { code: number; reason: string } | undefined;
  #handlers = new Map<string, (ev: Event) => void>();

  constructor(url: string | URL, protocols?: string | string[] | WebSocketInit) {
    super();
    let init: WebSocketInit = {};
    if (protocols !== undefined && typeof protocols === 'object' && !Array.isArray(protocols)) {
      if (protocols === null)
        throw invalidArgType('protocols', 'a string, an array or an object', protocols);
      init = protocols;
      protocols = init.protocols;
    }
    const list =
      protocols === undefined ? [] : typeof protocols === 'string' ? [protocols] : protocols;
    if (new Set(list).size !== list.length) {
      throw new DOMException('Duplicate subprotocol', 'SyntaxError');
    }
    let href: string;
    try {
      href = new URL(String(url)).href;
    } catch {
      throw new DOMException(`Invalid URL: ${String(url)}`, 'SyntaxError');
    }
    this.url = href;
    const { protocols: _, ...rest } = init;
    connect(href, {
      perMessageDeflate: true,
      ...rest,
      protocols: list,
      signal: this.#abort.signal,
    }).then(
      (t) => this.#opened(t),
      () => this.#failed(),
    );
  }

  /** How binary messages arrive: 'nodebuffer' (default), 'arraybuffer' or 'blob'. */
  get binaryType(): BinaryType {
    return this.#binaryType;
  }

  set binaryType(type: BinaryType) {
    // As in browsers, an unknown value is ignored.
    if (BINARY_TYPES.has(type)) this.#binaryType = type;
  }

  /** The extensions the server accepted (e.g. permessage-deflate), or ''. */
  get extensions(): string {
    return this.#extensions;
  }

  get readyState(): number {
    return this.#readyState;
  }

  get protocol(): string {
    return this.#protocol;
  }

  get bufferedAmount(): number {
    return (this.#t?.bufferedAmount ?? 0) + this.#queuedBytes;
  }

  send(data: string | ArrayBufferLike | ArrayBufferView | Blob): void {
    if (this.#readyState === CONNECTING) {
      throw new DOMException('WebSocket is still CONNECTING', 'InvalidStateError');
    }
    if (this.#readyState !== OPEN || !this.#t) return; // discarded, as in browsers
    const isBlob = data instanceof Blob;
    if (!isBlob && this.#sendQueue.length === 0) {
      this.#t.send(data as string | ArrayBuffer | ArrayBufferView);
      return;
    }
    // A Blob's bytes come asynchronously: it, and every send after it, wait in order.
    const bytes = isBlob
      ? (data as Blob).size
      : typeof data === 'string'
        ? Buffer.byteLength(data)
        : (data as ArrayBufferView | ArrayBuffer).byteLength;
    // Bytes are taken at the call, as the standard says (and a message lent to a listener,
    // lendMessages, is taken back when the listener returns): a queued one is a copy.
    const kept =
      isBlob || typeof data === 'string'
        ? data
        : ArrayBuffer.isView(data)
          ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice()
          : new Uint8Array(data as ArrayBuffer).slice();
    this.#sendQueue.push({ data: kept as Blob | string | ArrayBuffer | ArrayBufferView, bytes });
    this.#queuedBytes += bytes;
    if (this.#sendQueue.length === 1) void this.#drainSendQueue();
  }

  async #drainSendQueue(): Promise<void> {
    while (this.#sendQueue.length > 0) {
      const head = this.#sendQueue[0];
      let payload: string | ArrayBuffer | ArrayBufferView;
      if (head.data instanceof Blob) {
        try {
          payload = await head.data.arrayBuffer();
        } catch {
          // An unreadable Blob fails the connection, as in browsers.
          this.#sendQueue = [];
          this.#queuedBytes = 0;
          this.#t?.close(1011, 'Could not read a Blob');
          return;
        }
      } else {
        payload = head.data;
      }
      this.#sendQueue.shift();
      this.#queuedBytes -= head.bytes;
      if (this.#readyState !== OPEN || !this.#t) {
        this.#sendQueue = [];
        this.#queuedBytes = 0;
        return;
      }
      this.#t.send(payload);
    }
  }

  close(code?: number, reason?: string): void {
    if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new DOMException(`Invalid close code ${code}`, 'InvalidAccessError');
    }
    const why = reason ?? '';
    if (Buffer.byteLength(why) > 123)
      throw new DOMException('Close reason too long', 'SyntaxError');
    if (this.#readyState === CLOSING || this.#readyState === CLOSED) return;
    if (this.#readyState === CONNECTING) {
      this.#readyState = CLOSING;
      this.#abort.abort();
      return;
    }
    this.#readyState = CLOSING;
    if (this.#t && isValidCloseCode(code ?? 1000)) this.#t.close(code ?? 1000, why);
    else this.#pendingClose = { code: code ?? 1000, reason: why };
  }

  #opened(t: ClientTransport): void {
    this.#t = t;
    this.#protocol = t.protocol;
    this.#extensions = t.extensions;
    t.on('message', (data, isBinary) => {
      let payload: unknown = data;
      if (isBinary && this.#binaryType === 'arraybuffer') {
        const b = data as Buffer;
        payload = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
      } else if (isBinary && this.#binaryType === 'blob') {
        // Received bytes are never in a SharedArrayBuffer.
        payload = new Blob([data as Buffer as Uint8Array<ArrayBuffer>]);
      }
      this.dispatchEvent(
        new MessageEvent('message', { data: payload, origin: new URL(this.url).origin }),
      );
    });
    t.on('close', (code, reason, wasClean) => {
      this.#readyState = CLOSED;
      this.dispatchEvent(new CloseEvent('close', { code, reason, wasClean }));
    });
    t.on('error', () => this.dispatchEvent(new Event('error')));
    if (this.#readyState === CLOSING) {
      t.close(this.#pendingClose?.code ?? 1000, this.#pendingClose?.reason ?? '');
      return;
    }
    this.#readyState = OPEN;
    this.dispatchEvent(new Event('open'));
  }

  #failed(): void {
    this.#readyState = CLOSED;
    this.dispatchEvent(new Event('error'));
    this.dispatchEvent(new CloseEvent('close', { code: 1006, reason: '', wasClean: false }));
  }

  #handler(type: string): Handler<Event> {
    return (this.#handlers.get(type) as unknown as Handler<Event>) ?? null;
  }

  #setHandler(type: string, fn: Handler<Event>): void {
    const old = this.#handlers.get(type);
    if (old) this.removeEventListener(type, old);
    if (typeof fn !== 'function') {
      this.#handlers.delete(type);
      return;
    }
    const bound = fn.bind(this) as (ev: Event) => void;
    this.#handlers.set(type, bound);
    this.addEventListener(type, bound);
  }

  get onopen(): Handler<Event> {
    return this.#handler('open');
  }
  set onopen(fn: Handler<Event>) {
    this.#setHandler('open', fn);
  }
  get onmessage(): Handler<MessageEvent> {
    return this.#handler('message') as Handler<MessageEvent>;
  }
  set onmessage(fn: Handler<MessageEvent>) {
    this.#setHandler('message', fn as Handler<Event>);
  }
  get onclose(): Handler<CloseEvent> {
    return this.#handler('close') as Handler<CloseEvent>;
  }
  set onclose(fn: Handler<CloseEvent>) {
    this.#setHandler('close', fn as Handler<Event>);
  }
  get onerror(): Handler<Event> {
    return this.#handler('error');
  }
  set onerror(fn: Handler<Event>) {
    this.#setHandler('error', fn);
  }
}
