// The Transport interface, shared by server-side connections and clients, and
// the class that implements it on top of a native connection handle.
import { EventEmitter } from 'node:events';
import { codedError } from './errors';
import { binding, type ConnHandle, type NativeConnectError, type NativeOpenInfo } from './native';
import { type ConnectionSink, runtime } from './runtime';

export type WebSocketData = string | Buffer | ArrayBuffer | ArrayBufferView;

/** Close codes an application may send (RFC 6455 7.4). */
export function isValidCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1003) ||
    (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999)
  );
}

export interface Message {
  data: Buffer | string;
  isBinary: boolean;
}

/** A received message JavaScript keeps for later, with its flow-control cost. */
interface Held extends Message {
  cost: number;
  /** Iterators that have not taken it yet. */
  waiting: number;
}

export interface TransportEvents {
  message: [data: Buffer | string, isBinary: boolean];
  close: [code: number, reason: string, wasClean: boolean];
  drain: [];
  ping: [data: Buffer];
  pong: [data: Buffer];
  error: [err: Error];
}

export type ReadyState = 'connecting' | 'open' | 'closing' | 'closed';

/** What a slow consumer costs: see the `maxBackpressure` option. */
export type BackpressurePolicy = 'close' | 'drop';

export interface BackpressureOptions {
  /** send() returns false above this many buffered bytes (default 1 MiB). */
  highWaterMark: number;
  /** Hard bound on buffered bytes (0: none). */
  maxBackpressure: number;
  /** Past maxBackpressure: 'close' the connection with 1008, or 'drop' the message. */
  policy: BackpressurePolicy;
  /** textAs: 'buffer' — text messages arrive as Buffers (isBinary false), not strings. */
  textAsBuffer: boolean;
  /** lendMessages: Buffer messages are lent, valid while the listeners run. */
  lendMessages: boolean;
}

/** Counters kept per transport. */
export interface TransportStats {
  messagesIn: number;
  /** Messages send() queued. */
  messagesOut: number;
  /** Messages send() dropped under the 'drop' backpressure policy. */
  dropped: number;
}

/**
 * Whether `data` goes out as a binary message: a string as text unless `isBinary` is true (the
 * caller then sends its UTF-8 bytes), bytes as binary unless `isBinary` is false. Anything else
 * throws `invalid(data)`. (send() and publish() take the same data.)
 */
export function sendsBinary(
  data: unknown,
  isBinary: boolean | undefined,
  invalid: (data: unknown) => Error,
): boolean {
  if (typeof data === 'string') return isBinary === true;
  if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer) return isBinary !== false;
  throw invalid(data);
}

function invalidSendData(): Error {
  const err = new TypeError(
    'The "data" argument must be a string, Buffer, ArrayBuffer or ArrayBufferView',
  ) as TypeError & { code: string };
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

/** on / once / off typed by an event map (`{ name: [arguments] }`). */
export interface TypedEvents<Events extends Record<keyof Events, unknown[]>> {
  on<K extends keyof Events>(event: K, listener: (...args: Events[K]) => void): this;
  once<K extends keyof Events>(event: K, listener: (...args: Events[K]) => void): this;
  off<K extends keyof Events>(event: K, listener: (...args: Events[K]) => void): this;
}

/** What a media pipeline needs from either end of a WebSocket. */
export interface Transport extends TypedEvents<TransportEvents> {
  send(data: WebSocketData, isBinary?: boolean): boolean;
  close(code?: number, reason?: string): void;
  terminate(): void;
  ping(data?: Buffer | string): void;
  /** Sends an unsolicited pong (pings are answered automatically). */
  pong(data?: Buffer | string): void;
  /** Stops reading: no 'message' until resume(); the peer is slowed down by TCP. */
  pause(): void;
  resume(): void;
  readonly isPaused: boolean;
  readonly isOpen: boolean;
  readonly readyState: ReadyState;
  readonly bufferedAmount: number;
  readonly highWaterMark: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly protocol: string;
  [Symbol.asyncIterator](): AsyncIterator<Message>;
}

/** What a transport keeps for pause() and its async iterators (see NativeTransport#kept). */
interface Kept {
  /** Messages that arrived while paused, delivered by resume(). */
  pausedQueue: Held[] | undefined;
  /** Consumers of the async iterators in progress. */
  iterators: Set<(m: Held) => void> | undefined;
  /** Kept messages some iterator has not taken yet. */
  iterated: Set<Held> | undefined;
  /** The native close, while kept messages wait for resume(). */
  closeAfterResume: [code: number, reason: string, wasClean: boolean] | undefined;
}

/** Bits of NativeTransport's #flags. */
const PAUSED = 1;
/** send() returned false: 'drain' is due. */
const NEED_DRAIN = 2;
/** The next close() drops what is queued first (a close for configure({ totalSendLimit })). */
const DISCARD_QUEUED = 4;

/**
 * A Transport over one native connection at a time. Connection (server side)
 * keeps its first; ClientTransport attaches a new one on each reconnect.
 * @internal
 */
export abstract class NativeTransport extends EventEmitter implements ConnectionSink {
  /** Address of the peer, as the kernel reported it. */
  remoteAddress = '';
  remotePort = 0;
  /** The negotiated subprotocol, or '' when none. */
  protocol = '';
  // Counters as plain fields (an idle connection should cost little: no object per counter set).
  #messagesIn = 0;
  #messagesOut = 0;
  /** Dropped by send() here, and natively (send(), publish()) by connections closed since. */
  #dropped = 0;
  /** PAUSED, NEED_DRAIN and DISCARD_QUEUED: one field (an idle connection should cost little). */
  #flags = 0;
  #handle: ConnHandle | undefined;
  #id = 0;
  /** What pause() and the async iterators keep: made on first use (most connections never). */
  #kept: Kept | undefined;
  /** Shared by every connection of a server (or a client's options). */
  readonly #bp: BackpressureOptions;
  protected state: ReadyState;

  constructor(bp: BackpressureOptions, state: ReadyState) {
    super();
    // EventEmitter's listener table is `{ __proto__: null }`, which V8 keeps
    // as a hash table: ~250 B with no listener yet. An empty object whose
    // prototype is set to null afterwards stays a fast object (~64 B with
    // two listeners) and behaves the same; at 10,000 connections that is
    // ~130 B per connection less (events.js only ever reads and writes it).
    (this as unknown as { _events: object })._events = Object.setPrototypeOf({}, null);
    this.#bp = bp;
    this.state = state;
  }

  /** Binds this transport to a native connection; events for `id` come here. */
  protected attach(handle: ConnHandle, id: number): void {
    this.detach();
    this.#handle = handle;
    this.#id = id;
    runtime.conns.set(id, this);
    runtime.ref();
    if (this.#flags & PAUSED) binding.pause(handle);
  }

  protected detach(): void {
    if (this.#handle === undefined) return;
    // What JavaScript still keeps no longer holds the native side back.
    const k = this.#kept;
    if (k) {
      let kept = 0;
      for (const held of [k.pausedQueue ?? [], k.iterated ?? []])
        for (const m of held) {
          kept += m.cost;
          m.cost = 0;
        }
      this.#release(kept);
    }
    this.#dropped += binding.dropped(this.#handle);
    runtime.conns.delete(this.#id);
    runtime.unref();
    const handle = this.#handle;
    this.#handle = undefined;
    binding.dispose(handle); // a server connection's handle goes back to the native table
  }

  /**
   * Message counters: received, sent by send(), and dropped under the 'drop' backpressure
   * policy (by send() and by publish()).
   */
  get stats(): TransportStats {
    const native = this.#handle === undefined ? 0 : binding.dropped(this.#handle);
    return {
      messagesIn: this.#messagesIn,
      messagesOut: this.#messagesOut,
      dropped: this.#dropped + native,
    };
  }

  /** The options this transport was made with (a server's are shared by its connections). */
  protected get settings(): BackpressureOptions {
    return this.#bp;
  }

  protected get handle(): ConnHandle | undefined {
    return this.#handle;
  }

  /** True until close() or terminate() is called or the peer closes. */
  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** 'connecting', 'open', 'closing' or 'closed'. */
  get readyState(): ReadyState {
    return this.state;
  }

  /** Payload bytes accepted by send() and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.#handle === undefined ? 0 : binding.bufferedAmount(this.#handle);
  }

  get highWaterMark(): number {
    return this.#bp.highWaterMark;
  }

  /**
   * Queues one message: strings go as text, everything else as binary unless
   * `isBinary` says otherwise. Returns false once bufferedAmount exceeds the
   * high-water mark ('drain' follows when it falls back), or when the
   * connection was closed by the peer a moment ago (its 'close' event is on
   * its way). Throws ERR_CONNECTION_CLOSED after close()/terminate()/'close'.
   */
  send(data: WebSocketData, isBinary?: boolean): boolean {
    if (this.state !== 'open' || this.#handle === undefined) {
      return this.sendWhileNotOpen(data, isBinary);
    }
    return this.sendNow(data, isBinary);
  }

  /** send() outside the open state: an error here; ClientTransport queues while reconnecting. */
  protected sendWhileNotOpen(_data: WebSocketData, _isBinary?: boolean): boolean {
    throw codedError('ERR_CONNECTION_CLOSED', `Cannot send: the connection is ${this.state}`);
  }

  protected sendNow(data: WebSocketData, isBinary?: boolean): boolean {
    const binary = sendsBinary(data, isBinary, invalidSendData);
    if (binary && typeof data === 'string') data = Buffer.from(data);
    const bp = this.#bp;
    const buffered = binding.send(this.#handle as ConnHandle, data, binary, bp.maxBackpressure);
    if (buffered < 0) {
      if (buffered !== -1) {
        // Over maxBackpressure (-2), or over configure({ totalSendLimit }) while this connection
        // holds its share of it (-3): the message was not queued.
        if (bp.policy === 'drop') {
          this.#dropped++;
        } else if (buffered === -2) {
          this.close(1008, 'Send buffer over maxBackpressure');
        } else {
          // What it holds is given back at once: a peer this far behind would not read it.
          this.#flags |= DISCARD_QUEUED;
          this.close(1008, 'Send buffers over totalSendLimit');
        }
      }
      return false;
    }
    this.#messagesOut++;
    if (buffered > bp.highWaterMark) {
      this.#flags |= NEED_DRAIN;
      return false;
    }
    return true;
  }

  /**
   * Starts the closing handshake. `code` defaults to 1000; `reason` is at most
   * 123 bytes of UTF-8. Calling it again, or after the peer closed, does nothing.
   */
  close(code = 1000, reason = ''): void {
    if (typeof code !== 'number' || !Number.isInteger(code) || !isValidCloseCode(code)) {
      const err = new RangeError(
        `Invalid close code ${String(code)}: use 1000 or 3000-4999`,
      ) as RangeError & { code: string };
      err.code = 'ERR_INVALID_CLOSE_CODE';
      throw err;
    }
    if (typeof reason !== 'string') {
      const err = new TypeError('The "reason" argument must be a string') as TypeError & {
        code: string;
      };
      err.code = 'ERR_INVALID_ARG_TYPE';
      throw err;
    }
    if (Buffer.byteLength(reason) > 123) {
      const err = new RangeError(
        'The close reason must be at most 123 bytes of UTF-8',
      ) as RangeError & {
        code: string;
      };
      err.code = 'ERR_OUT_OF_RANGE';
      throw err;
    }
    if (this.state !== 'open') {
      this.closeWhileNotOpen(code, reason);
      return;
    }
    this.state = 'closing';
    binding.close(this.#handle as ConnHandle, code, reason, (this.#flags & DISCARD_QUEUED) !== 0);
  }

  protected closeWhileNotOpen(_code: number, _reason: string): void {}

  /** Drops the TCP connection at once, without a closing handshake. */
  terminate(): void {
    if (this.state === 'closed') return;
    this.state = 'closing';
    if (this.#handle !== undefined) binding.terminate(this.#handle);
  }

  /** Sends a ping (at most 125 bytes); the peer's pong arrives as a 'pong' event. */
  ping(data?: Buffer | string): void {
    binding.ping(this.#handle as ConnHandle, this.#controlPayload('ping', data));
  }

  /**
   * Sends a pong (at most 125 bytes) without a ping to answer, e.g. as a unidirectional
   * heartbeat (RFC 6455 5.5.3). Pings are answered automatically.
   */
  pong(data?: Buffer | string): void {
    binding.pong(this.#handle as ConnHandle, this.#controlPayload('pong', data));
  }

  #controlPayload(what: string, data: Buffer | string | undefined): Buffer | undefined {
    if (this.state !== 'open' || this.#handle === undefined) {
      throw codedError('ERR_CONNECTION_CLOSED', `Cannot ${what}: the connection is ${this.state}`);
    }
    const payload = typeof data === 'string' ? Buffer.from(data) : data;
    if (payload !== undefined && !ArrayBuffer.isView(payload)) {
      const err = new TypeError(`The ${what} payload must be a Buffer or a string`) as TypeError & {
        code: string;
      };
      err.code = 'ERR_INVALID_ARG_TYPE';
      throw err;
    }
    if (payload && payload.byteLength > 125) {
      throw codedError('ERR_OUT_OF_RANGE', `A ${what} payload is at most 125 bytes`);
    }
    return payload;
  }

  /** @internal Starts the closing handshake with a close frame that has no status code. */
  _closeWithoutStatus(): void {
    if (this.state !== 'open' || this.#handle === undefined) return;
    this.state = 'closing';
    binding.close(this.#handle, 0, '');
  }

  /**
   * Stops reading this connection: no 'message' is emitted (and no message is yielded) until
   * resume(). Messages already on their way are kept for resume(); TCP flow control slows the
   * peer down meanwhile. Heartbeats do not count the paused time against the peer.
   */
  pause(): void {
    if (this.#flags & PAUSED) return;
    this.#flags |= PAUSED;
    if (this.#handle !== undefined) binding.pause(this.#handle);
  }

  /** Undoes pause(): kept messages are delivered first, in order. */
  resume(): void {
    if (!(this.#flags & PAUSED)) return;
    this.#flags &= ~PAUSED;
    if (this.#handle !== undefined) binding.resume(this.#handle);
    let released = 0;
    const k = this.#kept;
    const queue = k?.pausedQueue;
    while (!(this.#flags & PAUSED) && queue && queue.length > 0) {
      const m = queue.shift() as Held;
      if (!this.#deliver(m)) released += m.cost;
    }
    this.#release(released);
    const close = k?.closeAfterResume;
    if (k && close && !(this.#flags & PAUSED) && !queue?.length) {
      k.closeAfterResume = undefined;
      this.onNativeClose(...close);
    }
  }

  get isPaused(): boolean {
    return (this.#flags & PAUSED) !== 0;
  }

  /**
   * Yields messages in order; ends when the transport closes. A message waiting here counts
   * against receiveHighWaterMark until it is taken, so a consumer that pulls slowly pauses
   * reading by itself.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<Message> {
    const queue: Held[] = [];
    let wake: (() => void) | undefined;
    let done = this.state === 'closed';
    const consume = (m: Held) => {
      queue.push(m);
      wake?.();
    };
    const onClose = () => {
      done = true;
      wake?.();
    };
    const k = this.#keep();
    k.iterators ??= new Set();
    k.iterators.add(consume);
    const self = this.untyped;
    self.once('close', onClose);
    try {
      while (true) {
        const next = queue.shift();
        if (next) {
          this.#taken(next);
          yield { data: next.data, isBinary: next.isBinary };
          continue;
        }
        if (done) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      k.iterators?.delete(consume);
      self.off('close', onClose);
      for (const m of queue) this.#taken(m);
    }
  }

  /** Emits a message to listeners and iterators; true when an iterator keeps it. */
  #deliver(m: Held, lent = false): boolean {
    this.#messagesIn++;
    this.untyped.emit('message', m.data, m.isBinary);
    const k = this.#kept;
    const iterators = k?.iterators;
    if (!k || !iterators?.size) return false;
    if (lent) m.data = Buffer.from(m.data as Buffer);
    m.waiting = iterators.size;
    k.iterated ??= new Set();
    k.iterated.add(m);
    for (const consume of iterators) consume(m);
    return true;
  }

  /** An iterator took (or dropped) a kept message: release it once every iterator has. */
  #taken(m: Held): void {
    if (--m.waiting > 0) return;
    this.#kept?.iterated?.delete(m);
    this.#release(m.cost);
  }

  #release(bytes: number): void {
    if (bytes > 0 && this.#handle !== undefined) binding.release(this.#handle, bytes);
  }

  #keep(): Kept {
    this.#kept ??= {
      pausedQueue: undefined,
      iterators: undefined,
      iterated: undefined,
      closeAfterResume: undefined,
    };
    return this.#kept;
  }

  /** This emitter without the subclass's event map, for the events every transport has. */
  protected get untyped(): EventEmitter {
    return this as unknown as EventEmitter;
  }

  /** @internal */ _releaseCharge(bytes: number): void {
    binding.release(this.#handle ?? null, bytes);
  }

  /** @internal */ get textAsBuffer(): boolean {
    return this.#bp.textAsBuffer;
  }

  /** @internal */ get lendMessages(): boolean {
    return this.#bp.lendMessages;
  }

  /**
   * @internal `lent`: `data` is a view into memory that is taken back when the batch's
   * listeners have run; whatever keeps it for later (pause(), an iterator) keeps a copy.
   */
  _onMessage(data: Buffer | string, isBinary: boolean, cost: number, lent = false): boolean {
    const m: Held = { data, isBinary, cost, waiting: 0 };
    if (this.#flags & PAUSED) {
      if (lent) m.data = Buffer.from(data as Buffer);
      const k = this.#keep();
      k.pausedQueue ??= [];
      k.pausedQueue.push(m);
      return true;
    }
    return this.#deliver(m, lent);
  }

  /** @internal */ _onDrain(): void {
    if (!(this.#flags & NEED_DRAIN) || this.state === 'closed') return;
    this.#flags &= ~NEED_DRAIN;
    this.untyped.emit('drain');
  }

  /** @internal */ _onPing(data: Buffer): void {
    this.untyped.emit('ping', data);
  }

  /** @internal */ _onPong(data: Buffer): void {
    this.untyped.emit('pong', data);
  }

  /** @internal */ _onError(code: number, message: string): void {
    // Protocol violations by the peer, or its message given up for the process's
    // unfinished-input limit: the connection is already being closed with `code`. Reported
    // only to those who listen, so that a misbehaving client cannot crash a server that did not
    // subscribe.
    if (this.untyped.listenerCount('error') === 0) return;
    const err = codedError(
      code === 1009
        ? 'ERR_WS_MESSAGE_TOO_BIG'
        : code === 1007
          ? 'ERR_WS_INVALID_UTF8'
          : code === 1013
            ? 'ERR_WS_TRY_AGAIN_LATER' // over configure({ totalUnfinishedLimit })
            : 'ERR_WS_PROTOCOL',
      message,
    ) as Error & { code: string; closeCode?: number };
    err.closeCode = code;
    this.untyped.emit('error', err);
  }

  /** @internal */ _onClose(code: number, reason: string, wasClean: boolean): void {
    this.detach();
    // Messages kept by pause() come before 'close': it waits for resume().
    const k = this.#kept;
    if (k?.pausedQueue?.length) k.closeAfterResume = [code, reason, wasClean];
    else this.onNativeClose(code, reason, wasClean);
  }

  /** The native connection is gone (the handle is already detached). */
  protected onNativeClose(code: number, reason: string, wasClean: boolean): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.untyped.emit('close', code, reason, wasClean);
  }

  /** @internal */ _onOpen(_info: NativeOpenInfo): void {}

  /** @internal */ _onConnectError(_errno: number, _detail: NativeConnectError): void {}
}
