// The JavaScript half of the native core: one per process (the addon keeps one
// native context per environment). It owns the event dispatch loop, the id
// maps, the event-loop reference count and the lws log channel.
import { debuglog } from 'node:util';
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
}

export interface ConnectionSink {
  readonly textAsBuffer: boolean;
  /** Returns true when the message is kept for later (its `cost` is released then). */
  _onMessage(data: Buffer | string, isBinary: boolean, cost: number): boolean;
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
const LEVEL_NAMES: Record<number, string> = {
  1: 'error',
  2: 'warn',
  4: 'notice',
  8: 'info',
  16: 'debug',
};

class Runtime {
  readonly servers = new Map<number, ServerSink>();
  readonly conns = new Map<number, ConnectionSink>();
  readonly handovers = new Map<number, HandoverSink>();
  readonly loggers = new Set<Logger>();
  private started = false;
  private refs = 0;
  private lastServerId = 0;
  private receiveLimit: number | undefined;

  start(): void {
    if (this.started) return;
    const level = debug.enabled
      ? LogLevel.error | LogLevel.warn | LogLevel.notice | LogLevel.info
      : LogLevel.error | LogLevel.warn;
    binding.init(this.onEvents, level);
    this.started = true;
    if (this.receiveLimit !== undefined) binding.setReceiveLimit(this.receiveLimit);
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

  private onEvents = (
    recs: Uint32Array,
    arenaBuffer: ArrayBuffer | undefined,
    objs: unknown[] | undefined,
  ) => {
    // The arena is valid during this call only (native code detaches it and
    // reuses its memory afterwards): everything taken from it is copied.
    const arena = arenaBuffer === undefined ? undefined : Buffer.from(arenaBuffer);
    for (let i = 0; i < recs.length; i += 4) {
      const type = recs[i];
      const id = recs[i + 1];
      const a = recs[i + 2];
      const b = recs[i + 3];
      try {
        this.dispatch(recs, i, type, id, a, b, arena, objs);
      } catch (err) {
        // A throwing listener must not cost the rest of the batch; it still
        // surfaces as an uncaught exception, as it would from any emitter.
        process.nextTick(() => {
          throw err;
        });
      }
    }
  };

  private dispatch(
    recs: Uint32Array,
    i: number,
    type: number,
    id: number,
    a: number,
    b: number,
    arena: Buffer | undefined,
    objs: unknown[] | undefined,
  ): void {
    switch (type) {
      case Ev.Text: {
        const conn = this.conns.get(id);
        if (!conn) return;
        // An empty message has no bytes in the arena (which may be absent).
        const buf = arena as Buffer;
        let data: Buffer | string;
        if (conn.textAsBuffer) data = b === 0 ? Buffer.alloc(0) : Buffer.copyBytesFrom(buf, a, b);
        else data = b === 0 ? '' : buf.toString('utf8', a, a + b);
        if (conn._onMessage(data, false, b + EVENT_COST)) recs[i] |= HELD_BIT;
        return;
      }
      case Ev.Binary: {
        const conn = this.conns.get(id);
        if (!conn) return;
        const buf = arena as Buffer;
        const data = b === 0 ? Buffer.alloc(0) : Buffer.copyBytesFrom(buf, a, b);
        if (conn._onMessage(data, true, b + EVENT_COST)) recs[i] |= HELD_BIT;
        return;
      }
      case Ev.TextObj: // a string, or a Buffer with textAs: 'buffer'
      case Ev.BinaryObj: {
        const conn = this.conns.get(id);
        if (!conn) return;
        const data = (objs as unknown[])[b] as string | Buffer;
        if (conn._onMessage(data, type === Ev.BinaryObj, a + EVENT_COST)) recs[i] |= HELD_BIT;
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
      case Ev.Connection:
        this.servers.get(a)?._onConnection((objs as unknown[])[b] as NativeRequestInfo);
        return;
      case Ev.Upgrade:
        this.servers.get(a)?._onUpgrade((objs as unknown[])[b] as NativeRequestInfo);
        return;
      case Ev.Ping:
      case Ev.Pong: {
        const conn = this.conns.get(id);
        if (!conn) return;
        const data = b === 0 ? Buffer.alloc(0) : Buffer.copyBytesFrom(arena as Buffer, a, b);
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
