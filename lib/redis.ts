// node-lws/redis: the Redis adapter. Servers in several processes (or on several machines) that
// share one Redis and one channel prefix share their topics: a publish on one server reaches the
// subscribers of every other one, through Redis pub/sub.
//
//   import { createRedisAdapter } from 'node-lws/redis';
//   const server = await listen({ port, reusePort: true, adapter: createRedisAdapter({ url }) });
//
// Needs the official `redis` package (node-redis v4), an optional peer dependency: importing this
// module without it throws ERR_MODULE_NOT_FOUND naming `npm install redis`; the main 'node-lws'
// entry never loads it.
//
// Two connections per adapter: one publishes (PUBLISH, in call order: one publisher's messages
// reach every other server in order), one subscribes to `${prefix}${topic}` for each topic with
// local subscribers. A message on the wire is a 16-byte header and the payload, bytes end to end
// (node-redis's buffer mode both ways, never base64):
//
//   0      version (1)
//   1      flags: bit 0 = binary (else text, as UTF-8)
//   2..9   origin: 8 random bytes per adapter; an adapter drops its own messages coming back,
//          because its server already delivered them locally (exactly once per subscriber)
//   10..15 sequence number of this origin on this topic (48-bit little endian, from 1): a
//          receiver that sees a gap counts the missing messages in `stats.lost`
//
// Faults: while Redis is unreachable a publish is dropped at once and counted (`stats.dropped`),
// never queued; both connections reconnect with exponential backoff (the redis client's
// reconnectStrategy), the subscriber resubscribes every topic that has local subscribers, and
// the adapter reports the outage once (an 'error' with code ERR_ADAPTER_UNAVAILABLE) and its end
// ('ready'). Delivery across processes is at most once.
//
// Runs on the JavaScript thread of its server's environment (main thread or a worker).
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { RedisClientType } from 'redis';
import type { Adapter, AdapterError, AdapterSink, AdapterStats } from './adapter';
import { codedError, invalidArgType, invalidArgValue } from './errors';
import { hasMethods, optInt, optObject, optString } from './options';

type RedisModule = typeof import('redis');

/** node-redis, or the error that says how to get it. */
function loadRedis(): RedisModule {
  try {
    return require('redis') as RedisModule;
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err.code === 'MODULE_NOT_FOUND' && /'redis'/.test(err.message)) {
      const out = codedError(
        'ERR_MODULE_NOT_FOUND',
        "node-lws/redis needs the 'redis' package (node-redis v4), an optional peer dependency of node-lws that is not installed: npm install redis@4",
      );
      out.cause = err;
      throw out;
    }
    throw err;
  }
}

const redis = loadRedis();

export interface RedisAdapterOptions {
  /**
   * `redis[s]://[[user][:password]@][host][:port][/db]`; default node-redis's
   * (redis://localhost:6379). Not with `client`.
   */
  url?: string;
  /**
   * An existing node-redis v4 client (`createClient()`), instead of `url`: the adapter publishes
   * on it (connecting it if it is not yet) and never closes it, and subscribes on a duplicate of
   * it (same address, credentials, TLS) that it owns. It must not be in legacyMode.
   */
  // biome-ignore lint/suspicious/noExplicitAny: a client with any modules, functions or scripts
  client?: RedisClientType<any, any, any>;
  /** Channel names are `${prefix}${topic}`; servers share topics only with the same prefix. Default 'node-lws:'. */
  prefix?: string;
  /**
   * Backoff between reconnection attempts of the connections the adapter opens: doubles from
   * `minDelayMs` (default 100) up to `maxDelayMs` (default 2000), ±20% jitter.
   */
  reconnect?: { minDelayMs?: number; maxDelayMs?: number };
  /**
   * A connection attempt fails after this long (default 5000). listen() waits for the adapter
   * to connect (or to fail) at most this long.
   */
  connectTimeoutMs?: number;
  /**
   * Bytes of published messages Redis has not acknowledged yet, beyond which a publish is
   * dropped (and counted) instead of queued. Default 64 MiB.
   */
  maxPendingBytes?: number;
}

export interface RedisAdapterStats extends AdapterStats {
  /** This adapter's own messages Redis sent back, ignored (its server delivered them locally). */
  echoes: number;
  /** Messages on the prefix's channels that no node-lws adapter sent (ignored). */
  invalid: number;
  /** Times the adapter came back after an outage (both connections up, topics resubscribed). */
  reconnects: number;
}

export interface RedisAdapterEvents {
  /**
   * `code` 'ERR_ADAPTER_UNAVAILABLE': Redis cannot be reached (reported once per outage, at
   * start or later; `cause` is the redis client's error). 'ERR_ADAPTER_PUBLISH' /
   * 'ERR_ADAPTER_SUBSCRIBE': Redis refused a command (once until one succeeds).
   * 'ERR_ADAPTER_MESSAGE': a message on the prefix's channels that no adapter sent (the first).
   */
  error: [err: AdapterError];
  /** Both connections are up and every topic with local subscribers is subscribed (again). */
  ready: [];
}

/** What the adapter calls on a node-redis v4 client. */
type Listener = (message: Buffer, channel: Buffer) => void;
interface Client {
  readonly isOpen: boolean;
  readonly isReady: boolean;
  readonly options?: { socket?: Record<string, unknown>; legacyMode?: boolean; name?: string };
  connect(): Promise<unknown>;
  disconnect(): Promise<void>;
  duplicate(overrides: Record<string, unknown>): Client;
  publish(channel: string, message: Buffer): Promise<number>;
  subscribe(channels: string[], listener: Listener, bufferMode: true): Promise<void>;
  unsubscribe(channels: string[], listener: Listener, bufferMode: true): Promise<void>;
  getPubSubListeners(type: 'CHANNELS'): Map<string, { unsubscribing: boolean }>;
  ping(): Promise<unknown>;
  ref(): void;
  unref(): void;
  on(event: string, listener: (arg: never) => void): unknown;
  off(event: string, listener: (arg: never) => void): unknown;
}

type ReconnectStrategy = (retries: number) => number | Error;

const VERSION = 1;
const HEADER = 16;
/** Topics whose outgoing sequence numbers are kept (the oldest is forgotten beyond). */
const MAX_TOPICS_OUT = 65_536;
/** Origins remembered per topic for gap detection (the oldest is forgotten beyond). */
const MAX_ORIGINS_PER_TOPIC = 1024;

/**
 * One connection to Redis and its state. A connection the adapter owns gets the adapter's
 * reconnect strategy, which also tells where its connect loop is: close() must not disconnect
 * while a TCP connect is under way (node-redis would keep the socket that connects afterwards).
 */
class Link {
  readonly client: Client;
  /** Where an owned client's connect loop is. */
  phase: 'idle' | 'connecting' | 'sleeping' | 'ready' = 'idle';
  #closing = false;
  #settled?: () => void;

  constructor(
    readonly role: 'publish' | 'subscribe',
    readonly owned: boolean,
    make: (strategy: ReconnectStrategy) => Client,
    readonly delays: { min: number; max: number; connectTimeoutMs: number },
    readonly events: { ready(link: Link): void; error(link: Link, err: Error): void },
  ) {
    this.client = make(this.#strategy);
  }

  #strategy: ReconnectStrategy = (retries) => {
    if (this.#closing) {
      this.#settled?.();
      return codedError('ERR_ADAPTER_CLOSED', 'The Redis adapter was closed');
    }
    this.phase = 'sleeping';
    const d = Math.min(this.delays.max, this.delays.min * 2 ** Math.min(retries, 20));
    return Math.round(d * (0.8 + 0.4 * Math.random()));
  };

  #onReady = (): void => {
    this.phase = 'ready';
    if (this.#closing) this.#settled?.();
    else this.events.ready(this);
  };

  #onError = (err: Error): void => {
    if (!this.#closing) this.events.error(this, err);
  };

  #onReconnecting = (): void => {
    this.phase = 'connecting';
  };

  start(): void {
    this.client.on('ready', this.#onReady);
    this.client.on('error', this.#onError);
    this.client.on('reconnecting', this.#onReconnecting);
    if (this.client.isOpen) {
      // A client given already connected (or connecting).
      this.phase = this.client.isReady ? 'ready' : 'connecting';
      if (this.client.isReady) queueMicrotask(() => this.#onReady());
      return;
    }
    this.phase = 'connecting';
    // Failures come as 'error' events; the client keeps retrying until close().
    this.client.connect().catch(() => {});
  }

  /** Closes an owned client (the commands it was given before are answered first, within 1 s). */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const c = this.client;
    if (!this.owned) {
      // Not ours: only our listeners go.
      c.off('ready', this.#onReady);
      c.off('error', this.#onError);
      c.off('reconnecting', this.#onReconnecting);
      return;
    }
    // The 'error' listener stays: a late error of a closing client must not crash the process.
    if (this.phase === 'idle' || !c.isOpen) return;
    if (this.phase === 'connecting' && !c.isReady) {
      // A connect attempt is under way: it ends by itself within connectTimeoutMs (failed: the
      // strategy ends the loop; connected: 'ready').
      await bounded(
        new Promise<void>((resolve) => {
          this.#settled = resolve;
        }),
        this.delays.connectTimeoutMs + 500,
      );
    }
    if (c.isReady)
      await bounded(
        c.ping().catch(() => {}),
        1000,
      );
    if (c.isOpen) await c.disconnect().catch(() => {});
  }
}

/** `p`, or nothing after `ms`. */
function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]).then(() => clearTimeout(timer));
}

function adapterError(code: string, message: string, cause?: unknown): AdapterError {
  const err = codedError(code, message) as AdapterError;
  if (cause !== undefined) err.cause = cause;
  return err;
}

/** The Redis adapter: give one to each server (`listen({ adapter })`). */
export class RedisAdapter extends EventEmitter<RedisAdapterEvents> implements Adapter {
  /** The channel prefix. */
  readonly prefix: string;
  readonly stats: RedisAdapterStats = {
    published: 0,
    received: 0,
    dropped: 0,
    lost: 0,
    echoes: 0,
    invalid: 0,
    reconnects: 0,
  };
  readonly #origin = randomBytes(8);
  readonly #prefixBytes: number;
  readonly #pub: Link;
  readonly #sub: Link;
  readonly #connectTimeoutMs: number;
  readonly #maxPendingBytes: number;
  #state: 'new' | 'attached' | 'closed' = 'new';
  #closing?: Promise<void>;
  #sink?: AdapterSink;
  /** Topics with local subscribers (what the subscriber connection must be subscribed to). */
  readonly #topics = new Set<string>();
  /** The last sequence number this adapter published, per topic. */
  readonly #seqOut = new Map<string, number>();
  /** The last sequence number received, per topic and origin. */
  readonly #seqIn = new Map<string, Map<string, number>>();
  #pendingBytes = 0;
  #up = false;
  #subReady = false;
  #outage = false;
  #everUp = false;
  #attachDone?: () => void;
  #publishFailing = false;
  #subscribeFailing = false;
  #invalidReported = false;

  constructor(options: RedisAdapterOptions = {}) {
    super();
    if (options === null || typeof options !== 'object')
      throw invalidArgType('options', 'an object', options);
    const o = options as Record<string, unknown>;
    const url = optString(o, 'url');
    const given = o.client as Client | undefined;
    this.prefix = optString(o, 'prefix') ?? 'node-lws:';
    this.#prefixBytes = Buffer.byteLength(this.prefix);
    const reconnect = optObject(o, 'reconnect') ?? {};
    const min = optInt(reconnect, 'minDelayMs', 100, 1, 60_000, 'reconnect.');
    const max = optInt(reconnect, 'maxDelayMs', Math.max(2000, min), min, 600_000, 'reconnect.');
    this.#connectTimeoutMs = optInt(o, 'connectTimeoutMs', 5000, 1, 600_000);
    this.#maxPendingBytes = optInt(o, 'maxPendingBytes', 64 * 1024 * 1024, 0, 2 ** 40);
    const delays = { min, max, connectTimeoutMs: this.#connectTimeoutMs };
    const events = {
      ready: (link: Link) => this.#linkReady(link),
      error: (link: Link, err: Error) => this.#linkError(link, err),
    };
    const socket = (base: Record<string, unknown> | undefined, strategy: ReconnectStrategy) => ({
      ...base,
      connectTimeout: this.#connectTimeoutMs,
      reconnectStrategy: strategy,
    });
    if (given !== undefined) {
      if (url !== undefined) throw invalidArgValue('url', 'cannot be combined with client', url);
      if (!hasMethods(given, ['duplicate', 'publish', 'getPubSubListeners']))
        throw invalidArgType('client', 'a node-redis v4 client (createClient() of redis)', given);
      if (given.options?.legacyMode)
        throw invalidArgValue('client', 'must not be in legacyMode', 'a legacyMode client');
      this.#pub = new Link('publish', false, () => given, delays, events);
      this.#sub = new Link(
        'subscribe',
        true,
        (strategy) =>
          given.duplicate({
            socket: socket(given.options?.socket, strategy),
            disableOfflineQueue: true,
            name: given.options?.name ?? 'node-lws-subscribe',
          }),
        delays,
        events,
      );
    } else {
      const make = (name: string) => (strategy: ReconnectStrategy) => {
        try {
          return redis.createClient({
            url,
            name,
            disableOfflineQueue: true,
            socket: socket(undefined, strategy),
          }) as unknown as Client;
        } catch (e) {
          throw invalidArgValue(
            'url',
            `is not a redis:// or rediss:// URL (${(e as Error).message})`,
            url,
          );
        }
      };
      this.#pub = new Link('publish', true, make('node-lws-publish'), delays, events);
      this.#sub = new Link('subscribe', true, make('node-lws-subscribe'), delays, events);
    }
  }

  /** True while both connections are up (and the topics subscribed). */
  get connected(): boolean {
    return this.#up;
  }

  /**
   * Connects; resolves once connected, once it has reported that Redis is unreachable (it keeps
   * trying), or after connectTimeoutMs, whichever comes first.
   */
  attach(sink: AdapterSink): Promise<void> {
    if (this.#state === 'closed' || this.#closing)
      throw adapterError('ERR_ADAPTER_CLOSED', 'This Redis adapter was closed: create another one');
    if (this.#state === 'attached')
      throw adapterError(
        'ERR_ADAPTER_IN_USE',
        'This Redis adapter already serves a server: give each server its own adapter',
      );
    this.#state = 'attached';
    this.#sink = sink;
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.#connectTimeoutMs);
      timer.unref();
      this.#attachDone = () => {
        clearTimeout(timer);
        this.#attachDone = undefined;
        resolve();
      };
    });
    this.#pub.start();
    this.#sub.start();
    return done;
  }

  subscribe(topic: string): void {
    if (this.#state !== 'attached' || this.#closing || this.#topics.has(topic)) return;
    this.#topics.add(topic);
    const c = this.#sub.client;
    if (c.isReady) c.subscribe([this.prefix + topic], this.#onMessage, true).catch(this.#subFailed);
  }

  unsubscribe(topic: string): void {
    if (!this.#topics.delete(topic)) return;
    this.#seqIn.delete(topic);
    const c = this.#sub.client;
    if (c.isReady && !this.#closing)
      c.unsubscribe([this.prefix + topic], this.#onMessage, true).catch(this.#subFailed);
  }

  publish(topic: string, data: Buffer, isBinary: boolean): void {
    if (this.#state !== 'attached' || this.#closing) return;
    let seq = (this.#seqOut.get(topic) ?? 0) + 1;
    if (seq === 1 && this.#seqOut.size >= MAX_TOPICS_OUT) {
      const oldest = this.#seqOut.keys().next().value;
      if (oldest !== undefined) this.#seqOut.delete(oldest);
    }
    if (seq > 2 ** 48 - 1) seq = 1;
    this.#seqOut.set(topic, seq);
    const size = HEADER + data.length;
    // Redis unreachable, or too much not acknowledged yet: dropped at once, never queued. The
    // sequence number is spent, so that receivers see the gap.
    if (!this.#pub.client.isReady || this.#pendingBytes + size > this.#maxPendingBytes) {
      this.stats.dropped++;
      return;
    }
    const msg = Buffer.allocUnsafe(size);
    msg[0] = VERSION;
    msg[1] = isBinary ? 1 : 0;
    this.#origin.copy(msg, 2);
    msg.writeUIntLE(seq, 10, 6);
    data.copy(msg, HEADER);
    this.#pendingBytes += size;
    this.#pub.client.publish(this.prefix + topic, msg).then(
      () => {
        this.#pendingBytes -= size;
        this.stats.published++;
        this.#publishFailing = false;
      },
      (err: Error) => {
        this.#pendingBytes -= size;
        this.stats.dropped++;
        // A connection that went down is reported by its 'error' event; a refusal here.
        if (this.#pub.client.isReady && !this.#publishFailing && !this.#closing) {
          this.#publishFailing = true;
          this.#report(
            adapterError('ERR_ADAPTER_PUBLISH', `Redis refused a PUBLISH: ${err.message}`, err),
          );
        }
      },
    );
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const attached = this.#state === 'attached';
    this.#sink = undefined;
    this.#attachDone?.();
    this.#up = false;
    if (attached) await Promise.all([this.#sub.close(), this.#pub.close()]);
    this.#state = 'closed';
    this.#topics.clear();
    this.#seqIn.clear();
    this.#seqOut.clear();
  }

  ref(): void {
    this.#pub.client.ref();
    this.#sub.client.ref();
  }

  unref(): void {
    this.#pub.client.unref();
    this.#sub.client.unref();
  }

  #report(err: AdapterError): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else process.emitWarning(err.message, { type: 'NodeLwsAdapterWarning', code: err.code });
  }

  #linkReady(link: Link): void {
    if (link === this.#sub) {
      this.#subReady = false;
      this.#resubscribe().then(
        () => {
          if (!this.#sub.client.isReady) return;
          this.#subReady = true;
          this.#checkUp();
        },
        () => {}, // the connection went down again: its next 'ready' tries again
      );
    } else this.#checkUp();
  }

  #checkUp(): void {
    if (this.#up || this.#closing || !this.#subReady || !this.#pub.client.isReady) return;
    this.#up = true;
    if (this.#everUp) this.stats.reconnects++;
    this.#everUp = true;
    this.#outage = false;
    this.#attachDone?.();
    this.emit('ready');
  }

  #linkError(link: Link, err: Error): void {
    if (this.#closing || this.#state !== 'attached') return;
    if (link.client.isReady) {
      // Not a lost connection (e.g. a failed PING of pingInterval).
      this.#report(adapterError('ERR_ADAPTER_REDIS', `Redis: ${err.message}`, err));
      return;
    }
    if (link === this.#sub) this.#subReady = false;
    this.#up = false;
    if (this.#outage) return; // reported once per outage, not per retry
    this.#outage = true;
    const e = err as Error & { code?: string };
    this.#report(
      adapterError(
        'ERR_ADAPTER_UNAVAILABLE',
        `Redis is unreachable (${link.role} connection: ${e.code ?? e.message}); publishes to other servers are dropped until it is back`,
        err,
      ),
    );
    this.#attachDone?.();
  }

  /**
   * After a (re)connect: node-redis has resubscribed what was subscribed before; subscribe what
   * was added meanwhile and unsubscribe what was left.
   */
  async #resubscribe(): Promise<void> {
    const c = this.#sub.client;
    const have = c.getPubSubListeners('CHANNELS');
    const want: string[] = [];
    const extra: string[] = [];
    for (const topic of this.#topics) {
      const l = have.get(this.prefix + topic);
      if (!l || l.unsubscribing) want.push(this.prefix + topic);
    }
    for (const [channel, l] of have) {
      if (l.unsubscribing) continue;
      if (!channel.startsWith(this.prefix) || !this.#topics.has(channel.slice(this.prefix.length)))
        extra.push(channel);
    }
    await Promise.all([
      want.length ? c.subscribe(want, this.#onMessage, true) : undefined,
      extra.length ? c.unsubscribe(extra, this.#onMessage, true) : undefined,
    ]);
  }

  #subFailed = (err: Error): void => {
    // A connection that went down resubscribes on its next 'ready'; a refusal is reported.
    if (!this.#sub.client.isReady || this.#closing || this.#subscribeFailing) return;
    this.#subscribeFailing = true;
    this.#report(
      adapterError('ERR_ADAPTER_SUBSCRIBE', `Redis refused a (UN)SUBSCRIBE: ${err.message}`, err),
    );
  };

  /** A message from Redis (node-redis buffer mode: message and channel as Buffers). */
  #onMessage = (message: Buffer, channel: Buffer): void => {
    const sink = this.#sink;
    if (!sink) return;
    this.#subscribeFailing = false;
    if (message.length < HEADER || message[0] !== VERSION) {
      this.stats.invalid++;
      if (!this.#invalidReported) {
        this.#invalidReported = true;
        this.#report(
          adapterError(
            'ERR_ADAPTER_MESSAGE',
            `A message on ${channel.toString()} that no node-lws adapter sent was ignored (is another application using the prefix '${this.prefix}'?)`,
          ),
        );
      }
      return;
    }
    if (message.compare(this.#origin, 0, 8, 2, 10) === 0) {
      this.stats.echoes++; // our own: our server delivered it locally already
      return;
    }
    const topic = channel.toString('utf8', this.#prefixBytes);
    if (!this.#topics.has(topic)) return; // left meanwhile
    const origin = message.toString('latin1', 2, 10);
    const seq = message.readUIntLE(10, 6);
    let seen = this.#seqIn.get(topic);
    if (!seen) {
      seen = new Map();
      this.#seqIn.set(topic, seen);
    }
    const last = seen.get(origin);
    if (last === undefined) {
      if (seen.size >= MAX_ORIGINS_PER_TOPIC) {
        const oldest = seen.keys().next().value;
        if (oldest !== undefined) seen.delete(oldest);
      }
    } else if (seq > last + 1 && seq !== 1) this.stats.lost += seq - last - 1;
    seen.set(origin, seq);
    this.stats.received++;
    try {
      sink.deliver(topic, message.subarray(HEADER), (message[1] & 1) === 1);
    } catch (err) {
      this.#report(adapterError('ERR_ADAPTER_DELIVER', (err as Error).message, err));
    }
  };
}

/**
 * A Redis adapter for one server: `listen({ adapter: createRedisAdapter({ url }) })`. See
 * RedisAdapterOptions.
 */
export function createRedisAdapter(options?: RedisAdapterOptions): RedisAdapter {
  return new RedisAdapter(options);
}
