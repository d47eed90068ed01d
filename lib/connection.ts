// A server-side WebSocket connection: the Transport the server hands out.
import type { X509Certificate } from 'node:crypto';
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

/** What a TLS server with `requestCert` knows of its client's certificate. */
export interface PeerTls {
  /** The certificate the client presented (Node's X509Certificate: subject, issuer, ...). */
  peerCertificate: X509Certificate | undefined;
  /** True when it verified against the server's `tls.ca`. */
  authorized: boolean;
  /** Why it did not (OpenSSL's reason, or 'no client certificate'). */
  authorizationError: string | undefined;
}

/** The HTTP upgrade request a connection was accepted with. */
export interface UpgradeRequest {
  /** Request target, e.g. `/chat?room=1`. */
  path: string;
  /** Header names in lower case; repeated headers joined with `, `. */
  headers: Record<string, string>;
  remoteAddress: string;
  remotePort: number;
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
export class Connection extends NativeTransport implements Transport, PeerTls {
  readonly #onGone: (conn: Connection) => void;
  /** What `verify` attached to this connection (`{ accept: true, data }`), else undefined. */
  data: unknown;
  readonly peerCertificate: X509Certificate | undefined;
  readonly authorized: boolean;
  readonly authorizationError: string | undefined;

  /** @internal */
  constructor(
    info: NativeRequestInfo,
    bp: BackpressureOptions,
    onGone: (conn: Connection) => void,
    data: unknown,
    tls: PeerTls,
  ) {
    super(bp, 'open');
    this.remoteAddress = info.remoteAddress;
    this.remotePort = info.remotePort;
    this.protocol = info.protocol;
    this.data = data;
    this.peerCertificate = tls.peerCertificate;
    this.authorized = tls.authorized;
    this.authorizationError = tls.authorizationError;
    this.#onGone = onGone;
    this.attach(info.handle, info.id);
  }

  protected override onNativeClose(code: number, reason: string, wasClean: boolean): void {
    this.#onGone(this);
    super.onNativeClose(code, reason, wasClean);
  }
}
