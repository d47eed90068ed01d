// A server-side WebSocket connection.
import { EventEmitter } from 'node:events';
import { codedError } from './errors';
import { binding, type ConnHandle, type NativeRequestInfo } from './native';
import { type ConnectionSink, runtime } from './runtime';

export type WebSocketData = string | Buffer | ArrayBuffer | ArrayBufferView;

/** The HTTP upgrade request a connection was accepted with. */
export interface UpgradeRequest {
  /** Request target, e.g. `/chat?room=1`. */
  path: string;
  /** Header names in lower case; repeated headers joined with `, `. */
  headers: Record<string, string>;
  remoteAddress: string;
  remotePort: number;
}

/** Close codes an application may send (RFC 6455 7.4). */
export function isValidCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1003) ||
    (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999)
  );
}

export interface ConnectionEvents {
  message: [data: Buffer | string, isBinary: boolean];
  close: [code: number, reason: string, wasClean: boolean];
  drain: [];
  ping: [data: Buffer];
  pong: [data: Buffer];
  error: [err: Error];
}

type State = 'open' | 'closing' | 'closed';

export class Connection extends EventEmitter<ConnectionEvents> implements ConnectionSink {
  /** Address of the peer, as the kernel reported it. */
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The negotiated subprotocol, or '' when none. */
  readonly protocol: string;
  readonly #handle: ConnHandle;
  readonly #id: number;
  readonly #highWaterMark: number;
  readonly #onGone: (conn: Connection) => void;
  #state: State = 'open';
  #needDrain = false;

  /** @internal */
  constructor(info: NativeRequestInfo, highWaterMark: number, onGone: (conn: Connection) => void) {
    super();
    this.#handle = info.handle;
    this.#id = info.id;
    this.remoteAddress = info.remoteAddress;
    this.remotePort = info.remotePort;
    this.protocol = info.protocol;
    this.#highWaterMark = highWaterMark;
    this.#onGone = onGone;
    runtime.conns.set(this.#id, this);
    runtime.ref();
  }

  /** True until close() or terminate() is called or the peer closes. */
  get isOpen(): boolean {
    return this.#state === 'open';
  }

  /** 'open', 'closing' or 'closed'. */
  get readyState(): State {
    return this.#state;
  }

  /** Payload bytes accepted by send() and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.#state === 'closed' ? 0 : binding.bufferedAmount(this.#handle);
  }

  get highWaterMark(): number {
    return this.#highWaterMark;
  }

  /**
   * Queues one message: strings go as text, everything else as binary unless
   * `isBinary` says otherwise. Returns false once bufferedAmount exceeds the
   * high-water mark ('drain' follows when it falls back), or when the
   * connection was closed by the peer a moment ago (its 'close' event is on
   * its way). Throws ERR_CONNECTION_CLOSED after close()/terminate()/'close'.
   */
  send(data: WebSocketData, isBinary?: boolean): boolean {
    if (this.#state !== 'open') {
      throw codedError('ERR_CONNECTION_CLOSED', `Cannot send: the connection is ${this.#state}`);
    }
    let binary: boolean;
    if (typeof data === 'string') {
      binary = isBinary === true;
      if (binary) data = Buffer.from(data);
    } else if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer) {
      binary = isBinary !== false;
    } else {
      const err = new TypeError(
        'The "data" argument must be a string, Buffer, ArrayBuffer or ArrayBufferView',
      ) as TypeError & { code: string };
      err.code = 'ERR_INVALID_ARG_TYPE';
      throw err;
    }
    const buffered = binding.send(this.#handle, data, binary);
    if (buffered < 0) return false;
    if (buffered > this.#highWaterMark) {
      this.#needDrain = true;
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
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    binding.close(this.#handle, code, reason);
  }

  /** Drops the TCP connection at once, without a closing handshake. */
  terminate(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closing';
    binding.terminate(this.#handle);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<{ data: Buffer | string; isBinary: boolean }> {
    // Defined in full by the Transport work; a minimal in-order iterator here.
    const queue: { data: Buffer | string; isBinary: boolean }[] = [];
    let wake: (() => void) | undefined;
    let done = this.#state === 'closed';
    const onMessage = (data: Buffer | string, isBinary: boolean) => {
      queue.push({ data, isBinary });
      wake?.();
    };
    const onClose = () => {
      done = true;
      wake?.();
    };
    this.on('message', onMessage);
    this.once('close', onClose);
    try {
      while (true) {
        const next = queue.shift();
        if (next) {
          yield next;
          continue;
        }
        if (done) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      this.off('message', onMessage);
      this.off('close', onClose);
    }
  }

  /** @internal */ _onMessage(data: Buffer | string, isBinary: boolean): void {
    this.emit('message', data, isBinary);
  }

  /** @internal */ _onDrain(): void {
    if (!this.#needDrain || this.#state === 'closed') return;
    this.#needDrain = false;
    this.emit('drain');
  }

  /** @internal */ _onPing(data: Buffer): void {
    this.emit('ping', data);
  }

  /** @internal */ _onPong(data: Buffer): void {
    this.emit('pong', data);
  }

  /** @internal */ _onError(code: number, message: string): void {
    // Protocol violations by the peer: the connection is already being closed
    // with `code`. Reported only to those who listen, so that a misbehaving
    // client cannot crash a server that did not subscribe.
    if (this.listenerCount('error') === 0) return;
    const err = codedError(
      code === 1009
        ? 'ERR_WS_MESSAGE_TOO_BIG'
        : code === 1007
          ? 'ERR_WS_INVALID_UTF8'
          : 'ERR_WS_PROTOCOL',
      message,
    ) as Error & { code: string; closeCode?: number };
    err.closeCode = code;
    this.emit('error', err);
  }

  /** @internal */ _onClose(code: number, reason: string, wasClean: boolean): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    runtime.conns.delete(this.#id);
    runtime.unref();
    this.#onGone(this);
    this.emit('close', code, reason, wasClean);
  }
}
