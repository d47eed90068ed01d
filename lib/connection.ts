// A server-side WebSocket connection: the Transport the server hands out.
import type { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { invalidArgType } from './errors';
import { binding, type NativeRequestInfo } from './native';
import { optInt } from './options';
import {
  type BackpressureOptions,
  NativeTransport,
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

/**
 * What a server shares with its connections for publish/subscribe: the
 * subscriber count of every topic (topics themselves live natively).
 * @internal
 */
export interface TopicHub {
  readonly serverId: number;
  readonly counts: Map<string, number>;
  /** A connection subscribed to `topic` (counts it; the server's adapter hears of a first one). */
  join(topic: string): void;
  /** A connection left `topic` (the server's adapter hears of the last one leaving). */
  leave(topic: string): void;
  /** Publishes natively; `skip` is a connection that does not get it. */
  publish(
    topic: string,
    data: WebSocketData,
    isBinary: boolean | undefined,
    skip?: Connection,
  ): number;
  /** The connection closed. */
  gone(conn: Connection): void;
}

/**
 * What a server's connections share: its backpressure and message options, its topic hub and,
 * unless it asks for client certificates (each connection then has its own), the empty peer
 * TLS facts. One object per server, so that a connection holds one reference for all of it.
 * @internal
 */
export interface ConnectionSettings extends BackpressureOptions {
  readonly hub: TopicHub;
  readonly tls: PeerTls;
}

function optionsObject(v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object') throw invalidArgType('options', 'an object', v);
  return v as Record<string, unknown>;
}

/** Topics are exact names (no wildcards): non-empty strings. */
export function checkTopic(topic: unknown): asserts topic is string {
  if (typeof topic !== 'string' || topic.length === 0)
    throw invalidArgType('topic', 'a non-empty string', topic);
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: see the interface above
export class Connection extends NativeTransport implements Transport, PeerTls {
  #topics: Set<string> | undefined;
  /** What `verify` attached to this connection (`{ accept: true, data }`), else undefined. */
  data: unknown;

  /** @internal */
  constructor(info: NativeRequestInfo, settings: ConnectionSettings, data: unknown) {
    super(settings, 'open');
    this.remoteAddress = info.remoteAddress;
    this.remotePort = info.remotePort;
    this.protocol = info.protocol;
    this.data = data;
    this.attach(info.handle, info.id);
  }

  /**
   * Subscribes to a topic of this server: every server.publish() (and other connections'
   * publish()) to it reaches this connection. Returns false when it already was subscribed
   * (the options then change) or the connection is closed. A closed connection leaves all
   * its topics by itself.
   *
   * `maxBackpressure` bounds this topic's messages on this connection: one is dropped (or,
   * with backpressurePolicy 'close', the connection is closed) when it would take the
   * connection's buffered bytes past it. Default: the connection's own maxBackpressure. A
   * media server subscribes its video with a lower bound than its audio, so that video is
   * dropped first and a slow viewer's queue never holds more than a frame or two.
   */
  subscribe(topic: string, options?: { maxBackpressure?: number }): boolean {
    checkTopic(topic);
    const o = options === undefined ? {} : optionsObject(options);
    const maxBackpressure = optInt(o, 'maxBackpressure', 0, 1, Number.MAX_SAFE_INTEGER);
    if (this.state === 'closed' || !this.handle) return false;
    this.#topics ??= new Set();
    const fresh = !this.#topics.has(topic);
    if (fresh) {
      this.#topics.add(topic);
      this.#settings.hub.join(topic);
    }
    binding.subscribe(this.handle, topic, maxBackpressure);
    return fresh;
  }

  /** Leaves a topic; false when it was not subscribed. */
  unsubscribe(topic: string): boolean {
    checkTopic(topic);
    if (!this.#topics?.delete(topic)) return false;
    this.#settings.hub.leave(topic);
    if (this.handle) binding.unsubscribe(this.handle, topic);
    return true;
  }

  isSubscribed(topic: string): boolean {
    return this.#topics?.has(topic) ?? false;
  }

  /** The topics this connection subscribes to. */
  get topics(): string[] {
    return this.#topics ? [...this.#topics] : [];
  }

  /**
   * Publishes to every subscriber of `topic` on this server except this connection, and through
   * the server's adapter (if any) to every subscriber on the other servers. Returns the number
   * of this server's connections it is queued for (subscribers at the time of the call).
   */
  publish(topic: string, data: WebSocketData, isBinary?: boolean): number {
    checkTopic(topic);
    return this.#settings.hub.publish(topic, data, isBinary, this);
  }

  /** The certificate the client presented (servers with `tls.requestCert`), else undefined. */
  get peerCertificate(): X509Certificate | undefined {
    return this.#settings.tls.peerCertificate;
  }

  /** True when the client's certificate verified against the server's `tls.ca`. */
  get authorized(): boolean {
    return this.#settings.tls.authorized;
  }

  /** Why it did not (OpenSSL's reason, or 'no client certificate'); undefined when it did. */
  get authorizationError(): string | undefined {
    return this.#settings.tls.authorizationError;
  }

  get #settings(): ConnectionSettings {
    return this.settings as ConnectionSettings;
  }

  /** @internal */ get nativeHandle() {
    return this.handle;
  }

  protected override onNativeClose(code: number, reason: string, wasClean: boolean): void {
    for (const topic of this.#topics ?? []) this.#settings.hub.leave(topic);
    this.#topics = undefined;
    this.#settings.hub.gone(this);
    super.onNativeClose(code, reason, wasClean);
  }
}
