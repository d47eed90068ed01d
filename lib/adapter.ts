// Adapters: how servers in several processes or on several machines share their topics.
//
// A server given an adapter (`listen({ adapter })`) keeps publishing natively to its own
// subscribers and also hands every publish to the adapter, which carries it to the other servers
// sharing its channel space (through Redis in node-lws/redis; NATS or Postgres LISTEN/NOTIFY could
// do the same); what the adapter receives from them it gives back through the sink, and the
// server publishes it natively to its own subscribers. The server tells the adapter which topics
// have local subscribers, so that it only listens to those.
//
// Everything here runs on the JavaScript thread of the server's environment (main thread or
// worker): the adapter's methods are called there, and it must call the sink there too.
//
// Why this shape: the adapter is created by the user (with its engine's options) before the
// server exists, and gets its sink in `attach()` once the server listens — so it opens no
// connection for a listen() that fails, listen() can wait for it, and a second server cannot
// take it (ERR_ADAPTER_IN_USE). Topics, not connections, cross the boundary: the server keeps
// subscriber counts and tells the adapter only about first and last subscribers, so an engine
// never sees a connection and never sends anything per subscriber. Payloads cross as bytes plus
// a binary flag, so an engine never has to encode strings or frames. Failures are events and
// counters, not exceptions: the server's own publishing never depends on the broker.

import { hasMethods } from './options';

/** What a server gives its adapter: the way back in for messages published on other servers. */
export interface AdapterSink {
  /**
   * Delivers a message another server published to this server's subscribers of `topic`
   * (natively, as server.publish() does: the frame is built once; each subscriber's backpressure
   * policy applies). It is not handed back to the adapter. `data` is copied before the call
   * returns. Does nothing once the server is closing.
   */
  deliver(topic: string, data: Buffer, isBinary: boolean): void;
}

/** Counters every adapter keeps (an adapter may add its own). */
export interface AdapterStats {
  /** Messages of this server the broker took (e.g. Redis acknowledged the PUBLISH). */
  published: number;
  /** Messages of other servers handed to this server's subscribers. */
  received: number;
  /** Messages of this server that did not reach the broker (it was unreachable, or refused). */
  dropped: number;
  /**
   * Messages of other servers that never arrived here (detected by a gap in their sequence,
   * once a later message arrives): lost while the broker or this server's link was down.
   */
  lost: number;
}

/** An error an adapter reports (its `'error'` event). */
export interface AdapterError extends Error {
  /** e.g. 'ERR_ADAPTER_UNAVAILABLE' (the broker is unreachable), 'ERR_ADAPTER_PUBLISH'. */
  code: string;
}

/**
 * The contract between a server and an adapter. The server calls it; the adapter never reaches
 * into the server. An adapter serves one server: `listen()` rejects with `ERR_ADAPTER_IN_USE`
 * when it is given one that another server uses, and one that was closed refuses attach() (a
 * server's close() closes its adapter).
 *
 * Order of calls: `attach(sink)` once the server listens (awaited: listen() resolves after it),
 * then any number of subscribe / unsubscribe / publish, then `close()` (awaited by
 * server.close()). None of them may throw for a broker that is down: an adapter reports that
 * with an `'error'` event and counts what it could not carry in `stats`.
 */
export interface Adapter {
  /**
   * The server is listening: connect, and deliver what other servers publish through `sink`.
   * A promise is awaited by listen(); it should settle once the adapter is connected or knows
   * it cannot connect yet (it then keeps trying, and reports with 'error'), never reject for
   * that. Throwing (or rejecting) fails listen() — for an adapter already attached or closed.
   */
  attach(sink: AdapterSink): void | Promise<void>;
  /** `topic` has its first local subscriber: receive what other servers publish to it. */
  subscribe(topic: string): void;
  /** `topic`'s last local subscriber left: stop receiving it. */
  unsubscribe(topic: string): void;
  /**
   * Carry one message to the other servers (this server's own subscribers already have it).
   * `data` (text as UTF-8 bytes when `isBinary` is false) is valid only during the call: copy
   * what is kept. Messages of one adapter must reach each other server in call order.
   */
  publish(topic: string, data: Buffer, isBinary: boolean): void;
  /** Disconnect; resolves once the adapter's sockets are closed. */
  close(): Promise<void>;
  /** Let the process exit while the adapter is connected (server.unref() calls it). */
  unref?(): void;
  /** Undo unref() (server.ref() calls it). */
  ref?(): void;
  readonly stats: AdapterStats;
  /** `'error'`: an AdapterError. The server listens for it while attached (see listen's `adapter`). */
  on(event: 'error', listener: (err: AdapterError) => void): unknown;
  off(event: 'error', listener: (err: AdapterError) => void): unknown;
  listenerCount(event: 'error'): number;
}

const METHODS = ['attach', 'subscribe', 'unsubscribe', 'publish', 'close', 'on', 'off'] as const;

/** True when `v` has the shape of an Adapter (the `adapter` option of listen()). */
export function isAdapter(v: unknown): v is Adapter {
  return hasMethods(v, [...METHODS, 'listenerCount']);
}
