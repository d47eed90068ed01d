// The JavaScript half of the native core: one per process (the addon keeps one
// native context per environment). It owns the event dispatch loop, the id
// maps, the event-loop reference count and the lws log channel.
import { debuglog } from 'node:util';
import { nodeWorkerThreads } from './builtins';
import { invalidArgValue } from './errors';
import {
  binding,
  type ConnHandle,
  EVENT_COST,
  Ev,
  HELD_BIT,
  LogLevel,
  type NativeConnectError,
  type NativeOpenInfo,
  type NativeRequestInfo,
} from './native';

/** Receives lws log lines: level is one of 'error', 'warn', 'notice', 'info', 'debug'. */
export type Logger = (level: string, message: string) => void;

export interface ServerSink {
  _onListening(): void;
  _onListenError(errno: number, message: string): void;
  _onListenerClosed(): void;
  _onServerClosed(): void;
  _onConnection(info: NativeRequestInfo): void;
  _onUpgrade(info: NativeRequestInfo): void;
  _onAcceptError(errno: number, detail: { code: string; message: string }): void;
}

export interface ConnectionSink {
  readonly textAsBuffer: boolean;
  readonly lendMessages: boolean;
  /**
   * Returns true when the message is kept for later (its `cost` is released then). `lent`: the
   * Buffer is lent memory (a view into the batch's arena, or a lent Buffer of its own), valid
   * during this call only.
   */
  _onMessage(data: Buffer | string, isBinary: boolean, cost: number, lent?: boolean): boolean;
  /** Releases a charge the runtime kept for this connection (a deferred message). */
  _releaseCharge(bytes: number): void;
  _onClose(code: number, reason: string, wasClean: boolean): void;
  _onDrain(): void;
  _onPing(data: Buffer): void;
  _onPong(data: Buffer): void;
  _onError(code: number, message: string): void;
  _onOpen(info: NativeOpenInfo): void;
  _onConnectError(errno: number, detail: NativeConnectError): void;
}

/**
 * A connection handed over by server.handleUpgrade, from the hand-over until it opens (or, when
 * JavaScript pumps its stream, until the stream is destroyed).
 */
export interface HandoverSink {
  /** The connection closed before it opened: refused with an HTTP status, timed out, reset. */
  _onHandoverEnd(detail: NativeConnectError): void;
  /** Bytes for the stream (pumped connections). */
  _onWireOut(data: Buffer): void;
  /** Pause / resume reading the stream, end it, destroy it (WireCtl). */
  _onWireCtl(op: number): void;
}

const debug = debuglog('lws');

/** How long one batch of events may run its listeners before the rest waits for a later turn. */
const SLICE_MS = 4;

/** The chunks of a batch's arena as Buffers (see EventsCallback). */
type Arena = Buffer[];

interface Deferred {
  recs: Uint32Array;
  arena: Arena | undefined;
  objs: unknown[] | undefined;
  at: number;
}

/** Below this size a message shares a slab with its neighbours (Node's own Buffer pool: 4 KiB). */
const SMALL_MAX = 4 * 1024;
/** A slab's size at most (Node's Buffer pool: 8 KiB). */
const SLAB_MAX = 8 * 1024;
/** Up to this many bytes a run is copied in a loop, not through a view. */
const SHORT_RUN = 128;
/** The slab the last small message was copied into, and where in which arena chunk it starts. */
let slab: Buffer = Buffer.alloc(0);
let slabSrc: Buffer | undefined;
let slabStart = 0;

/**
 * A message as a view into its arena chunk, without a copy: valid while the batch is lent
 * (native code detaches the chunk when the call returns), or for good when `arena` is the copy a
 * deferred batch keeps.
 */
function lentView(arena: Arena, recs: Uint32Array, i: number): Buffer {
  // Native code never copies an arena with lent messages into the window; were it to, a copy
  // is what stays safe.
  if (arena === arenaWindow) return copyOut(arena, recs, i);
  const place = recs[i + 2];
  const k = place >>> 16;
  if (arena !== untransferableArena) {
    untransferableArena = arena;
    untransferableChunks = 0;
  }
  if (!(untransferableChunks & (1 << k))) {
    untransferableChunks |= 1 << k;
    untransferable(arena[k]);
  }
  const at = placeOffset(place);
  return placeChunk(arena, place).subarray(at, at + recs[i + 3]);
}

/**
 * Where native code copies a small batch instead of making ArrayBuffers for it (DeliveryWindows
 * in native/context.h): its records (up to 1,024) and its arena (one chunk up to 8 KiB, never
 * one a lendMessages connection reads). Valid during the call only, like a lent arena.
 */
const recsWindow = new Uint32Array(4096);
const arenaWindow: Arena = [Buffer.allocUnsafeSlow(8 * 1024)];

/** The arena whose chunks lentView() marked (a bit per chunk: an arena has at most 16). */
let untransferableArena: Arena | undefined;
let untransferableChunks = 0;

/**
 * A lent message's memory is taken back when the call returns: postMessage() must copy its
 * ArrayBuffer, not move it to another thread (where it would outlive the call).
 */
function untransferable(b: Buffer): void {
  nodeWorkerThreads().markAsUntransferable(b.buffer);
}

/** The arena chunk and the offset in it of a message's place (native ArenaPlace: chunk << 16 | offset). */
function placeChunk(arena: Arena, place: number): Buffer {
  return arena[place >>> 16];
}
function placeOffset(place: number): number {
  return place & 0xffff;
}

function isArenaRecord(type: number): boolean {
  const t = type & ~HELD_BIT;
  return t === Ev.Text || t === Ev.TextAscii || t === Ev.Binary || t === Ev.Ping || t === Ev.Pong;
}

/**
 * A copy of the message of record i (its place, chunk << 16 | offset, and length) out of the lent
 * arena. A small one is a view into a slab that the small messages right after it in the same
 * chunk share: one allocation and one copy for a run of them, as Node's own pool gives small
 * Buffers a shared 8 KiB slab (a kept message keeps its slab, at most 8 KiB, as there, and its
 * `.buffer` holds other messages' bytes, as there). Larger ones get their own Buffer.
 * Buffer.allocUnsafe: nothing is zero-filled first, and a run under 4 KiB is itself carved out of
 * Node's pool: a slab of its own per run (allocUnsafeSlow) meant an ArrayBuffer per message when
 * batches are small (a moderate rate), and V8's scavenges sweeping them doubled the echo's p99.
 */
function copyOut(arena: Arena, recs: Uint32Array, i: number): Buffer {
  const place = recs[i + 2];
  const n = recs[i + 3];
  const src = placeChunk(arena, place);
  const at = placeOffset(place);
  if (n >= SMALL_MAX) {
    const out = Buffer.allocUnsafe(n);
    out.set(src.subarray(at, at + n));
    return out;
  }
  if (src !== slabSrc || at < slabStart || at + n > slabStart + slab.length) {
    // The messages of a chunk lie in record order, one after the other.
    let end = at + n;
    for (let j = i + 4; j < recs.length; j += 4) {
      if (!isArenaRecord(recs[j])) continue;
      const p = recs[j + 2];
      const m = recs[j + 3];
      if (placeChunk(arena, p) !== src || placeOffset(p) !== end || m >= SMALL_MAX) break;
      if (end + m - at > SLAB_MAX) break;
      end += m;
    }
    slab = Buffer.allocUnsafe(end - at);
    // A short run byte by byte: subarray() would make a view (garbage) per run.
    if (end - at <= SHORT_RUN) for (let k = at; k < end; k++) slab[k - at] = src[k];
    else slab.set(src.subarray(at, end));
    slabSrc = src;
    slabStart = at;
    if (end === at + n) return slab; // a run of one: the slab is the message (no second view)
  }
  return slab.subarray(at - slabStart, at - slabStart + n);
}

function isMessageEvent(type: number): boolean {
  const t = type & ~HELD_BIT;
  return (
    t === Ev.Text ||
    t === Ev.TextAscii ||
    t === Ev.Binary ||
    t === Ev.TextObj ||
    t === Ev.BinaryObj ||
    t === Ev.Ping ||
    t === Ev.Pong
  );
}

/** What native code charged for a message record (kEventCost and MessageCost in batch.h). */
function messageCost(recs: Uint32Array, i: number): number {
  const t = recs[i] & ~HELD_BIT;
  const len = t === Ev.TextObj || t === Ev.BinaryObj ? recs[i + 2] : recs[i + 3];
  return len + EVENT_COST;
}
const LEVEL_NAMES: Record<number, string> = {
  1: 'error',
  2: 'warn',
  4: 'notice',
  8: 'info',
  16: 'debug',
};

/**
 * NODE_LWS_EVENT_LOOP=poll runs lws's poll() loop instead of libev (to compare, or to rule
 * the event loop out when troubleshooting); unset or 'auto' picks libev when available.
 */
function eventLoopChoice(): 'auto' | 'poll' {
  const v = process.env.NODE_LWS_EVENT_LOOP;
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  if (v === 'poll') return 'poll';
  throw invalidArgValue('NODE_LWS_EVENT_LOOP', "must be 'auto' or 'poll'", v);
}

/** configure({ totalUnfinishedLimit }) when not set (and no maxPayload needs more). */
export const DEFAULT_TOTAL_UNFINISHED_LIMIT = 256 * 1024 * 1024;
/** configure({ totalSendLimit }) when not set (and no maxBackpressure needs more). */
export const DEFAULT_TOTAL_SEND_LIMIT = 256 * 1024 * 1024;

class Runtime {
  readonly servers = new Map<number, ServerSink>();
  readonly conns = new Map<number, ConnectionSink>();
  readonly handovers = new Map<number, HandoverSink>();
  readonly loggers = new Set<Logger>();
  private started = false;
  private refs = 0;
  private lastServerId = 0;
  private receiveLimit: number | undefined;
  private unfinishedLimit: number | undefined; // set by configure(); else DEFAULT_... or more
  private largestPayload = 0;
  private sendLimit: number | undefined; // set by configure(); else DEFAULT_... or more
  private largestBackpressure = 0;

  start(): void {
    if (this.started) return;
    const level = debug.enabled
      ? LogLevel.error | LogLevel.warn | LogLevel.notice | LogLevel.info
      : LogLevel.error | LogLevel.warn;
    binding.init(
      this.onEvents,
      level,
      this.scheduleDelivery,
      eventLoopChoice(),
      recsWindow,
      arenaWindow[0],
    );
    this.started = true;
    const loop = binding.eventLoop();
    if (loop?.fallback) {
      process.emitWarning(`node-lws: ${loop.fallback}`, { code: 'NODE_LWS_POLL_FALLBACK' });
    }
    if (this.receiveLimit !== undefined) binding.setReceiveLimit(this.receiveLimit);
    binding.setUnfinishedLimit(this.effectiveUnfinishedLimit());
    binding.setSendLimit(this.effectiveSendLimit());
  }

  /** The context-wide bound on input held for messages not complete yet (configure()). */
  setUnfinishedLimit(bytes: number): void {
    this.unfinishedLimit = bytes;
    if (this.started) binding.setUnfinishedLimit(bytes);
  }

  /** The context-wide bound on what is held to send (configure()). */
  setSendLimit(bytes: number): void {
    this.sendLimit = bytes;
    if (this.started) binding.setSendLimit(bytes);
  }

  /**
   * A server or client with these limits starts. Unless configure() set them, the
   * unfinished-input limit grows to hold two messages of its maxPayload at once (a larger
   * maxPayload than the default limit allows must not make every such message fail with 1013),
   * and the send limit to twice its (finite) maxBackpressure.
   */
  noteConnLimits(conn: { maxPayload: number; maxBackpressure: number }): void {
    if (conn.maxPayload > this.largestPayload) {
      this.largestPayload = conn.maxPayload;
      if (this.started && this.unfinishedLimit === undefined)
        binding.setUnfinishedLimit(this.effectiveUnfinishedLimit());
    }
    if (conn.maxBackpressure > this.largestBackpressure) {
      this.largestBackpressure = conn.maxBackpressure;
      if (this.started && this.sendLimit === undefined)
        binding.setSendLimit(this.effectiveSendLimit());
    }
  }

  private effectiveSendLimit(): number {
    return this.sendLimit ?? Math.max(DEFAULT_TOTAL_SEND_LIMIT, 2 * this.largestBackpressure);
  }

  private effectiveUnfinishedLimit(): number {
    return (
      this.unfinishedLimit ?? Math.max(DEFAULT_TOTAL_UNFINISHED_LIMIT, 2 * this.largestPayload)
    );
  }

  /** The context-wide bound on received bytes JavaScript has not consumed yet. */
  setReceiveLimit(bytes: number): void {
    this.receiveLimit = bytes;
    if (this.started) binding.setReceiveLimit(bytes);
  }

  nextServerId(): number {
    this.lastServerId = (this.lastServerId + 1) >>> 0 || 1;
    return this.lastServerId;
  }

  /** Keeps the process alive while anything (server, connection, pending listen) holds a ref. */
  ref(): void {
    if (++this.refs === 1) binding.setRef(true);
  }

  unref(): void {
    if (--this.refs === 0) binding.setRef(false);
  }

  /**
   * Native code delivers events in slices of a few milliseconds; between slices the event loop
   * turns (timers, I/O), however fast the events come.
   */
  private scheduleDelivery = () => {
    setImmediate(this.deliverMore);
  };

  private deliverMore = () => {
    if (binding.deliverPending()) setImmediate(this.deliverMore);
  };

  /**
   * Events JavaScript has not dispatched yet: a batch that took longer than SLICE_MS is
   * finished in later turns of the event loop, so timers and I/O run in between however slow
   * the listeners are. Their message records were marked held, so native code keeps them
   * charged until they are dispatched here.
   */
  private deferred: Deferred[] = [];

  private onEvents = (
    recs: Uint32Array,
    arenaBuffers: ArrayBuffer[] | null | undefined,
    objs: unknown[] | undefined,
  ) => {
    // The arena is valid during this call only (native code detaches it, or
    // writes the next batch into the window): what is taken from it is copied,
    // or lent to the listeners for the call (lendMessages). A slab copied for
    // an earlier batch never serves this one: the window is at the same place.
    const arena = arenaBuffers === null ? arenaWindow : arenaBuffers?.map((ab) => Buffer.from(ab));
    slabSrc = undefined;
    if (this.deferred.length > 0) {
      this.defer(recs, 0, arena, objs); // behind what is already waiting: in order
      return;
    }
    const deadline = performance.now() + SLICE_MS;
    for (let i = 0; i < recs.length; i += 4) {
      if ((i & 255) === 0 && i > 0 && performance.now() > deadline) {
        this.defer(recs, i, arena, objs);
        return;
      }
      this.dispatchSafely(recs, i, arena, objs);
    }
  };

  private dispatchSafely(
    recs: Uint32Array,
    i: number,
    arena: Arena | undefined,
    objs: unknown[] | undefined,
  ): void {
    try {
      this.dispatch(recs, i, recs[i], recs[i + 1], recs[i + 2], recs[i + 3], arena, objs);
    } catch (err) {
      // A throwing listener must not cost the rest of the batch; it still
      // surfaces as an uncaught exception, as it would from any emitter.
      process.nextTick(() => {
        throw err;
      });
    }
  }

  /** Keeps records from `from` on (and a copy of the arena) for a later turn. */
  private defer(
    recs: Uint32Array,
    from: number,
    arena: Arena | undefined,
    objs: unknown[] | undefined,
  ): void {
    const rest = recs.slice(from);
    // What of each arena chunk the records left point at: a chunk is copied up to there only
    // (a chunk is 64 KiB, the bytes after its last message are none of this batch's).
    const ends: number[] | undefined = arena?.map(() => 0);
    for (let j = from; j < recs.length; j += 4) {
      const type = recs[j];
      if (ends && isArenaRecord(type)) {
        const k = recs[j + 2] >>> 16;
        ends[k] = Math.max(ends[k], placeOffset(recs[j + 2]) + recs[j + 3]);
      }
      if (!isMessageEvent(type)) continue;
      recs[j] |= HELD_BIT;
      // A large message lent for this call (lendMessages) is detached when it returns.
      if (type === Ev.BinaryObj || type === Ev.TextObj) {
        const k = recs[j + 3];
        const o = (objs as unknown[])[k];
        if (typeof o !== 'string' && this.conns.get(recs[j + 1])?.lendMessages)
          (objs as unknown[])[k] = Buffer.from(o as Buffer);
      }
    }
    this.deferred.push({
      recs: rest,
      arena: arena?.map((b, k) => Buffer.from(b.subarray(0, ends?.[k]))), // copies
      objs,
      at: 0,
    });
    if (this.deferred.length === 1) setImmediate(this.drainDeferred);
  }

  private drainDeferred = () => {
    const deadline = performance.now() + SLICE_MS;
    while (this.deferred.length > 0) {
      const d = this.deferred[0];
      for (; d.at < d.recs.length; d.at += 4) {
        if ((d.at & 255) === 0 && performance.now() > deadline) {
          setImmediate(this.drainDeferred);
          return;
        }
        const type = d.recs[d.at];
        this.dispatchSafely(d.recs, d.at, d.arena, d.objs);
        if (isMessageEvent(type) && !(d.recs[d.at] & HELD_BIT)) {
          // Dispatched and not kept: the charge the runtime held goes now.
          const cost = messageCost(d.recs, d.at);
          const conn = this.conns.get(d.recs[d.at + 1]);
          if (conn) conn._releaseCharge(cost);
          else binding.release(null, cost);
        }
      }
      this.deferred.shift();
    }
  };

  private dispatch(
    recs: Uint32Array,
    i: number,
    type: number,
    id: number,
    a: number,
    b: number,
    arena: Arena | undefined,
    objs: unknown[] | undefined,
  ): void {
    switch (type) {
      case Ev.Text:
      case Ev.TextAscii: {
        const conn = this.conns.get(id);
        if (!conn) return;
        // An empty message has no bytes in the arena (which may be absent).
        let data: Buffer | string;
        let lent = false;
        if (b === 0) data = conn.textAsBuffer ? Buffer.alloc(0) : '';
        else if (conn.textAsBuffer) {
          lent = conn.lendMessages;
          data = lent ? lentView(arena as Arena, recs, i) : copyOut(arena as Arena, recs, i);
        } else {
          const at = placeOffset(a);
          // ASCII is a one-byte string as it is (latin1 decoding skips the UTF-8 pass).
          const enc = type === Ev.TextAscii ? 'latin1' : 'utf8';
          data = placeChunk(arena as Arena, a).toString(enc, at, at + b);
        }
        if (conn._onMessage(data, false, b + EVENT_COST, lent)) recs[i] |= HELD_BIT;
        return;
      }
      case Ev.Binary: {
        const conn = this.conns.get(id);
        if (!conn) return;
        const lent = b !== 0 && conn.lendMessages;
        const data =
          b === 0
            ? Buffer.alloc(0)
            : lent
              ? lentView(arena as Arena, recs, i)
              : copyOut(arena as Arena, recs, i);
        if (conn._onMessage(data, true, b + EVENT_COST, lent)) recs[i] |= HELD_BIT;
        return;
      }
      case Ev.TextObj: // a string, or a Buffer with textAs: 'buffer'
      case Ev.BinaryObj: {
        const conn = this.conns.get(id);
        if (!conn) return;
        const data = (objs as unknown[])[b] as string | Buffer;
        // With lendMessages native code lends these Buffers too (for the call only).
        const lent = conn.lendMessages && typeof data !== 'string';
        if (lent) untransferable(data as Buffer);
        if (conn._onMessage(data, type === Ev.BinaryObj, a + EVENT_COST, lent)) recs[i] |= HELD_BIT;
        return;
      }
      case Ev.Drain:
        this.conns.get(id)?._onDrain();
        return;
      case Ev.Close: {
        const reason = b === 0xffffffff ? '' : ((objs as unknown[])[b] as string);
        this.conns.get(id)?._onClose(a & 0xffff, reason, a >>> 16 === 1);
        return;
      }
      case Ev.Connection: {
        const info = (objs as unknown[])[b] as NativeRequestInfo;
        const server = this.servers.get(a);
        if (server) server._onConnection(info);
        else binding.dispose(info.handle); // nothing will hold the connection's handle
        return;
      }
      case Ev.Upgrade:
        this.servers.get(a)?._onUpgrade((objs as unknown[])[b] as NativeRequestInfo);
        return;
      case Ev.Ping:
      case Ev.Pong: {
        const conn = this.conns.get(id);
        if (!conn) return;
        const data = b === 0 ? Buffer.alloc(0) : copyOut(arena as Arena, recs, i);
        if (type === Ev.Ping) conn._onPing(data);
        else conn._onPong(data);
        return;
      }
      case Ev.Error:
        this.conns.get(id)?._onError(a, (objs as unknown[])[b] as string);
        return;
      case Ev.Open:
        this.conns.get(id)?._onOpen((objs as unknown[])[b] as NativeOpenInfo);
        return;
      case Ev.ConnectError: {
        const detail = (objs as unknown[])[b] as NativeConnectError;
        const handover = this.handovers.get(id);
        if (handover) handover._onHandoverEnd(detail);
        else this.conns.get(id)?._onConnectError(a, detail);
        return;
      }
      case Ev.WireOut:
        this.handovers.get(id)?._onWireOut((objs as unknown[])[b] as Buffer);
        return;
      case Ev.WireCtl:
        this.handovers.get(id)?._onWireCtl(a);
        return;
      case Ev.Listening:
        this.servers.get(id)?._onListening();
        return;
      case Ev.ListenError:
        this.servers.get(id)?._onListenError(a, (objs as unknown[])[b] as string);
        return;
      case Ev.AcceptError:
        this.servers
          .get(id)
          ?._onAcceptError(a, (objs as unknown[])[b] as { code: string; message: string });
        return;
      case Ev.ListenerClosed:
        this.servers.get(id)?._onListenerClosed();
        return;
      case Ev.ServerClosed:
        this.servers.get(id)?._onServerClosed();
        return;
      case Ev.Log:
        this.log(LEVEL_NAMES[id] ?? 'info', (objs as unknown[])[b] as string);
        return;
    }
  }

  private log(level: string, line: string): void {
    if (debug.enabled) debug('[%s] %s', level, line);
    for (const logger of this.loggers) logger(level, line);
  }
}

export const runtime = new Runtime();

export type { ConnHandle };
