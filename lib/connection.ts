// A server-side WebSocket connection: the Transport the server hands out.
import type { IncomingMessage } from 'node:http';
import type { NativeRequestInfo } from './native';
import {
  type BackpressureOptions,
  NativeTransport,
  type Transport,
  type TransportEvents,
} from './transport';

export {
  type BackpressurePolicy,
  isValidCloseCode,
  type Message,
  type ReadyState,
  type Transport,
  type TransportEvents,
  type WebSocketData,
} from './transport';

/** The HTTP upgrade request a connection was accepted with. */
export interface UpgradeRequest {
  /** Request target, e.g. `/chat?room=1`. */
  path: string;
  /** Header names in lower case; repeated headers joined with `, `. */
  headers: Record<string, string>;
  remoteAddress: string;
  remotePort: number;
  /** The request as Node's HTTP server parsed it, when it came through handleUpgrade(). */
  httpRequest?: IncomingMessage;
}

// Typed event overloads for the class below (declaration merging adds no members).
export interface Connection {
  on<K extends keyof TransportEvents>(
    event: K,
    listener: (...args: TransportEvents[K]) => void,
  ): this;
  once<K extends keyof TransportEvents>(
    event: K,
    listener: (...args: TransportEvents[K]) => void,
  ): this;
  off<K extends keyof TransportEvents>(
    event: K,
    listener: (...args: TransportEvents[K]) => void,
  ): this;
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: see the interface above
export class Connection extends NativeTransport implements Transport {
  readonly #onGone: (conn: Connection) => void;

  /** @internal */
  constructor(
    info: NativeRequestInfo,
    bp: BackpressureOptions,
    onGone: (conn: Connection) => void,
  ) {
    super(bp, 'open');
    this.remoteAddress = info.remoteAddress;
    this.remotePort = info.remotePort;
    this.protocol = info.protocol;
    this.#onGone = onGone;
    this.attach(info.handle, info.id);
  }

  protected override onNativeClose(code: number, reason: string, wasClean: boolean): void {
    this.#onGone(this);
    super.onNativeClose(code, reason, wasClean);
  }
}
