// The JavaScript half of the native core: one per process (the addon keeps one
// native context per environment). It owns the event dispatch loop, the id
// maps, the event-loop reference count and the lws log channel.
import { debuglog } from 'node:util';
import { invalidArgValue } from './errors';
import {
  binding,
  type ConnHandle,
  Ev,
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
  _onMessage(data: Buffer | string, isBinary: boolean): void;
  _onClose(code: number, reason: string, wasClean: boolean): void;
  _onDrain(): void;
  _onPing(data: Buffer): void;
  _onPong(data: Buffer): void;
  _onError(code: number, message: string): void;
  _onOpen(info: NativeOpenInfo): void;
  _onConnectError(errno: number, detail: NativeConnectError): void;
}

const debug = debuglog('lws');
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

class Runtime {
  readonly servers = new Map<number, ServerSink>();
  readonly conns = new Map<number, ConnectionSink>();
  readonly loggers = new Set<Logger>();
  private started = false;
  private refs = 0;
  private lastServerId = 0;

  start(): void {
    if (this.started) return;
    const level = debug.enabled
      ? LogLevel.error | LogLevel.warn | LogLevel.notice | LogLevel.info
      : LogLevel.error | LogLevel.warn;
    binding.init(this.onEvents, level, eventLoopChoice());
    this.started = true;
    const loop = binding.eventLoop();
    if (loop?.fallback) {
      process.emitWarning(`node-lws: ${loop.fallback}`, { code: 'NODE_LWS_POLL_FALLBACK' });
    }
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
    arena: Buffer | undefined,
    objs: unknown[] | undefined,
  ) => {
    for (let i = 0; i < recs.length; i += 4) {
      const type = recs[i];
      const id = recs[i + 1];
      const a = recs[i + 2];
      const b = recs[i + 3];
      try {
        this.dispatch(type, id, a, b, arena, objs);
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
        if (conn.textAsBuffer)
          data = b === 0 ? Buffer.alloc(0) : Buffer.from(buf.buffer, buf.byteOffset + a, b);
        else data = b === 0 ? '' : buf.toString('utf8', a, a + b);
        conn._onMessage(data, false);
        return;
      }
      case Ev.Binary: {
        const buf = arena as Buffer;
        const data = b === 0 ? Buffer.alloc(0) : Buffer.from(buf.buffer, buf.byteOffset + a, b);
        this.conns.get(id)?._onMessage(data, true);
        return;
      }
      case Ev.TextObj: // a string, or a Buffer with textAs: 'buffer'
        this.conns.get(id)?._onMessage((objs as unknown[])[b] as string | Buffer, false);
        return;
      case Ev.BinaryObj:
        this.conns.get(id)?._onMessage((objs as unknown[])[b] as Buffer, true);
        return;
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
        // A copy: control frames are tiny, and must not pin the arena.
        const data = b === 0 ? Buffer.alloc(0) : Buffer.from((arena as Buffer).subarray(a, a + b));
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
      case Ev.ConnectError:
        this.conns.get(id)?._onConnectError(a, (objs as unknown[])[b] as NativeConnectError);
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
