// The native binding and the wire format of its event batches.
// Keep the event numbers in sync with native/context.h.
import * as path from 'node:path';
import type { NativeConnOptions } from './options';

/**
 * Opaque per-connection handle owned by the native side: a server connection's is a number
 * that JavaScript gives back with dispose() when it is done with it (native ConnHandles); the
 * others are Externals that V8 collects.
 */
export interface ConnHandle {
  readonly __nodeLwsConnHandle: never;
}

export interface NativeRequestInfo {
  handle: ConnHandle;
  id: number;
  path: string;
  headers: Record<string, string>;
  remoteAddress: string;
  remotePort: number;
  protocol: string;
  /** TLS servers with requestCert: the client's certificate (DER), if it sent one. */
  peerCertificate?: Buffer;
  /** ... and why it did not verify, when it did not. */
  authorizationError?: string;
}

export interface NativeBindOptions {
  host: string;
  /** A Unix socket path instead of host and port. */
  path?: string;
  port: number;
  reuseAddr: boolean;
  reusePort: boolean;
  ipv6Only: boolean;
  backlog: number;
}

export interface NativeBound {
  fd: number;
  port: number;
  address: string;
  family: 'IPv4' | 'IPv6' | 'Unix';
  /** A Unix socket's file (decimal strings), for removing exactly that file later. */
  dev: string;
  ino: string;
}

export interface NativeSniCert {
  name: string;
  cert: string;
  key: string;
  chain: string;
}

export interface NativeServerConfig {
  conn: NativeConnOptions;
  protocols: string[];
  verify: boolean;
  maxConnections: number;
  maxPendingHeaderBytes: number;
  allowedOrigins: string[];
  path: string;
  health: boolean;
  staticRoot: string;
  staticIndex: string;
  tlsCert: string;
  tlsKey: string;
  tlsPassphrase: string;
  tlsChain: string;
  tlsRequestCert: boolean;
  tlsRejectUnauthorized: boolean;
  tlsClientCa: string;
  tlsSni: NativeSniCert[];
  /** Header lines added to every 101 response. */
  upgradeHeaders: string;
  unixPath: string;
  unixDev: string;
  unixIno: string;
}

export interface NativeConnectOptions {
  address: string;
  port: number;
  /** A Unix socket to connect to instead of address and port ('' for none). */
  socketPath: string;
  request: string;
  accept: string;
  protocols: string[];
  conn: NativeConnOptions;
  /** The CONNECT request for an HTTP proxy at address:port ('' for none). */
  proxyRequest: string;
  tls: boolean;
  host: string;
  ca: string;
  rejectUnauthorized: boolean;
  cert: string | undefined;
  key: string | undefined;
}

export interface NativeOpenInfo {
  headers: Record<string, string | string[]>;
  status?: number;
  remoteAddress: string;
  remotePort: number;
  protocol: string;
}

export interface NativeConnectError {
  code: string;
  message: string;
  status?: number;
  /** The headers of the response that refused the upgrade or the tunnel. */
  headers?: Record<string, string | string[]>;
}

export type EventsCallback = (
  recs: Uint32Array,
  /**
   * Bytes of the batch's small messages, in chunks (a message's place is chunk << 16 | offset);
   * detached once the callback returns. `null`: copied into the arena window given to init(),
   * which the next batch overwrites. `recs` may likewise be a view of the records window.
   */
  arena: ArrayBuffer[] | null | undefined,
  objs: unknown[] | undefined,
) => void;

/** The event loop a native context runs (binding.eventLoop()). */
export interface NativeEventLoop {
  /** 'libev': lws on a libev loop of the service thread; 'poll': lws's own poll() loop. */
  loop: 'libev' | 'poll';
  /** The kernel interface under it: 'epoll' on Linux with libev. */
  backend: string;
  /** Why libev could not start and the poll loop runs instead; null otherwise. */
  fallback: string | null;
}

export interface Binding {
  /** scheduleDelivery() must call deliverPending() in a later turn of the event loop. */
  init(
    onEvents: EventsCallback,
    logLevel: number,
    scheduleDelivery: () => void,
    loop: 'auto' | 'poll',
    recsWindow: Uint32Array,
    arenaWindow: Buffer,
  ): void;
  eventLoop(): NativeEventLoop | null;
  /** The rest of a delivery; true when still more is left (schedule again). */
  deliverPending(): boolean;
  bind(options: NativeBindOptions): NativeBound;
  /** Closes a bound socket that never reached startServer (and a Unix socket's file). */
  closeFd(fd: number, path?: string, dev?: string, ino?: string): void;
  startServer(id: number, fd: number, config: NativeServerConfig): void;
  closeServer(id: number): void;
  connect(options: NativeConnectOptions): { handle: ConnHandle; id: number };
  ping(handle: ConnHandle, data: ArrayBufferView | undefined): void;
  pong(handle: ConnHandle, data: ArrayBufferView | undefined): void;
  /**
   * server.handleUpgrade: hands an upgrade request Node's HTTP server parsed to server `serverId`.
   * `fd` >= 0: the descriptor of Node's TCP socket, dup()ed natively (the caller then destroys
   * Node's handle); -1: JavaScript pumps the bytes of its stream (wireInput / wireAck, and the
   * WireOut / WireCtl events). `head`: the rebuilt request head and every byte read after it.
   */
  adopt(
    serverId: number,
    fd: number,
    head: Buffer,
    remoteAddress: string,
    remotePort: number,
  ): { handle: ConnHandle; id: number };
  /** Bytes read from the stream of a pumped connection; null: the stream ended. */
  wireInput(handle: ConnHandle, data: Buffer | Buffer[] | null): void;
  /** The stream of a pumped connection took `bytes` more of what WireOut handed over. */
  wireAck(handle: ConnHandle, bytes: number): void;
  send(
    handle: ConnHandle,
    data: string | ArrayBuffer | ArrayBufferView,
    isBinary: boolean,
    maxBackpressure: number,
  ): number;
  /** discard: the messages still queued are dropped first. */
  close(handle: ConnHandle, code: number, reason: string, discard?: boolean): void;
  terminate(handle: ConnHandle): void;
  /** `protocol` null: native code picks from the server's `protocols`; headerLines go in the 101. */
  accept(handle: ConnHandle, protocol: string | null, headerLines: string): void;
  /** The event numbers native code uses (checked against Ev by a test). */
  eventTypes(): Record<string, number>;
  reject(handle: ConnHandle, status: number, headerLines: string, body: string): void;
  /** maxBackpressure: for this topic's messages (0: the connection's own). */
  subscribe(handle: ConnHandle, topic: string, maxBackpressure: number): void;
  unsubscribe(handle: ConnHandle, topic: string): void;
  publish(
    serverId: number,
    topic: string,
    data: string | ArrayBuffer | ArrayBufferView,
    isBinary: boolean,
    skip?: ConnHandle,
  ): void;
  dropped(handle: ConnHandle): number;
  pause(handle: ConnHandle): void;
  resume(handle: ConnHandle): void;
  /** JavaScript consumed `bytes` of messages it kept (see HELD_BIT); null: a gone connection. */
  release(handle: ConnHandle | null, bytes: number): void;
  /**
   * JavaScript is done with a connection's handle (a server connection's must be given back
   * exactly once; a no-op for the others). Throws for a handle that is not live.
   */
  dispose(handle: ConnHandle): void;
  setReceiveLimit(bytes: number): void;
  setUnfinishedLimit(bytes: number): void;
  setSendLimit(bytes: number): void;
  memoryStats(): {
    receivePending: number;
    unfinished: number;
    sending: number;
    pooled: number;
    handles: number;
    lentKept: number;
  };
  /** The service thread's once-a-second trim: its turns and the connections it visited (tests). */
  serviceCounters(): {
    trimRuns: number;
    trimVisits: number;
    trimReturns: number;
    chunkViewsMade: number;
    chunkViewsReused: number;
  };
  bufferedAmount(handle: ConnHandle): number;
  setRef(ref: boolean): void;
  setLogLevel(level: number): void;
}

export const Ev = {
  Listening: 1,
  ListenError: 2,
  ListenerClosed: 3,
  ServerClosed: 4,
  Connection: 5,
  Text: 6,
  Binary: 7,
  TextObj: 8,
  BinaryObj: 9,
  Close: 10,
  Drain: 11,
  Ping: 12,
  Pong: 13,
  Log: 14,
  Error: 15,
  Open: 16,
  ConnectError: 17,
  Upgrade: 18,
  AcceptError: 19,
  WireOut: 20,
  WireCtl: 21,
  /** Text whose bytes are all below 0x80 (decoded as one-byte, no UTF-8 pass). */
  TextAscii: 22,
} as const;

/** What a WireCtl event asks of the stream of a pumped connection (native WireCtl). */
export const WireCtl = {
  Pause: 1,
  Resume: 2,
  End: 3,
  Destroy: 4,
} as const;

/** Set in a message record's type word by JavaScript when it keeps the message for later. */
export const HELD_BIT = 0x80000000;
/** What a received event costs beyond its payload, for flow control (kEventCost). */
export const EVENT_COST = 64;

/** lws log levels (LLL_*). */
export const LogLevel = {
  error: 1,
  warn: 2,
  notice: 4,
  info: 8,
  debug: 16,
} as const;

function load(): Binding {
  // NODE_LWS_BINDING points at another build of the addon (e.g. the sanitizer build).
  const override = process.env.NODE_LWS_BINDING;
  if (override) return require(path.resolve(override)) as Binding;
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
  return nodeGypBuild(path.join(__dirname, '..')) as Binding;
}

export const binding: Binding = load();
