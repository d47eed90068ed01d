// Option validation: every option is checked here, before native code sees it.
import { readFileSync } from 'node:fs';
import { invalidArgType, invalidArgValue, outOfRange } from './errors';

/** True when `v` is an object with a function under each of `names` (an argument's duck type). */
export function hasMethods(v: unknown, names: readonly string[]): boolean {
  if (v === null || typeof v !== 'object') return false;
  const o = v as Record<string, unknown>;
  return names.every((name) => typeof o[name] === 'function');
}

export function optInt(
  obj: Record<string, unknown>,
  name: string,
  def: number,
  min: number,
  max: number,
  prefix = '',
): number {
  const v = obj[name];
  if (v === undefined) return def;
  const full = prefix + name;
  if (typeof v !== 'number') throw invalidArgType(full, 'of type number', v);
  if (!Number.isInteger(v) || v < min || v > max)
    throw outOfRange(full, `>= ${min} && <= ${max}`, v);
  return v;
}

export function optBool(obj: Record<string, unknown>, name: string, def: boolean): boolean {
  const v = obj[name];
  if (v === undefined) return def;
  if (typeof v !== 'boolean') throw invalidArgType(name, 'of type boolean', v);
  return v;
}

export function optString(obj: Record<string, unknown>, name: string): string | undefined {
  const v = obj[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw invalidArgType(name, 'of type string', v);
  return v;
}

export function optFunction<T>(
  obj: Record<string, unknown>,
  name: string,
  prefix = '',
): T | undefined {
  const v = obj[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'function') throw invalidArgType(prefix + name, 'a function', v);
  return v as T;
}

export function optSignal(obj: Record<string, unknown>): AbortSignal | undefined {
  const v = obj.signal;
  if (v === undefined) return undefined;
  if (!(v instanceof AbortSignal)) throw invalidArgType('signal', 'an AbortSignal', v);
  return v;
}

export function optObject(
  obj: Record<string, unknown>,
  name: string,
): Record<string, unknown> | undefined {
  const v = obj[name];
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object') throw invalidArgType(name, 'an object', v);
  return v as Record<string, unknown>;
}

// RFC 6455 subprotocol names are HTTP tokens.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function optProtocols(obj: Record<string, unknown>): string[] {
  const v = obj.protocols;
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalidArgType('protocols', 'an array of strings', v);
  for (const p of v) {
    if (typeof p !== 'string') throw invalidArgType('protocols', 'an array of strings', p);
    if (!TOKEN.test(p)) {
      const err = new TypeError(`Invalid subprotocol name: '${p}'`) as TypeError & { code: string };
      err.code = 'ERR_INVALID_ARG_VALUE';
      throw err;
    }
  }
  return [...v];
}

export interface HeartbeatOptions {
  /** Ping a connection that has been silent this long (ms). */
  intervalMs: number;
  /** Drop it (close code 1006) when nothing arrives this long after the ping (ms). */
  timeoutMs: number;
}

export function optHeartbeat(obj: Record<string, unknown>): {
  intervalMs: number;
  timeoutMs: number;
} {
  const h = optObject(obj, 'heartbeat');
  if (!h) return { intervalMs: 0, timeoutMs: 0 };
  const intervalMs = optInt(h, 'intervalMs', 30_000, 1, 2 ** 31 - 1, 'heartbeat.');
  const timeoutMs = optInt(h, 'timeoutMs', 10_000, 1, 2 ** 31 - 1, 'heartbeat.');
  return { intervalMs, timeoutMs };
}

export function optStringList(obj: Record<string, unknown>, name: string): string[] {
  const v = obj[name];
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
    throw invalidArgType(name, 'an array of strings', v);
  }
  return [...v];
}

/** The bound on a connection's buffered sends unless the options say otherwise. */
export const DEFAULT_MAX_BACKPRESSURE = 64 * 1024 * 1024;

export function optBackpressure(obj: Record<string, unknown>): {
  highWaterMark: number;
  maxBackpressure: number;
  policy: 'close' | 'drop';
  textAsBuffer: boolean;
  lendMessages: boolean;
} {
  const highWaterMark = optInt(obj, 'highWaterMark', 1024 * 1024, 0, Number.MAX_SAFE_INTEGER);
  // Infinity is the explicit opt-out (0 natively: no bound).
  const maxBackpressure =
    obj.maxBackpressure === Number.POSITIVE_INFINITY
      ? 0
      : optInt(obj, 'maxBackpressure', DEFAULT_MAX_BACKPRESSURE, 1, Number.MAX_SAFE_INTEGER);
  const policy = obj.backpressurePolicy ?? 'close';
  if (policy !== 'close' && policy !== 'drop') {
    const err = new TypeError(
      `The "backpressurePolicy" option must be 'close' or 'drop'. Received ${String(policy)}`,
    ) as TypeError & { code: string };
    err.code = 'ERR_INVALID_ARG_VALUE';
    throw err;
  }
  const textAs = obj.textAs ?? 'string';
  if (textAs !== 'string' && textAs !== 'buffer') {
    const err = new TypeError(
      `The "textAs" option must be 'string' or 'buffer'. Received ${String(textAs)}`,
    ) as TypeError & { code: string };
    err.code = 'ERR_INVALID_ARG_VALUE';
    throw err;
  }
  const lendMessages = optBool(obj, 'lendMessages', false);
  return {
    highWaterMark,
    maxBackpressure,
    policy,
    textAsBuffer: textAs === 'buffer',
    lendMessages,
  };
}

/** Limits and timings of one connection, as native code takes them (server and client alike). */
export interface NativeConnOptions {
  maxPayload: number;
  highWaterMark: number;
  receiveHighWaterMark: number;
  handshakeTimeoutMs: number;
  closeTimeoutMs: number;
  maxHeaderBytes: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  textAsBuffer: boolean;
  /** Large message Buffers are lent for the call too (the runtime lends the small ones). */
  lendMessages: boolean;
  perMessageDeflate: NativeDeflate | undefined;
  /** For publish (queued natively); send() checks the same bound in JavaScript. */
  maxBackpressure: number;
  dropOnBackpressure: boolean;
}

export const MAX_PAYLOAD_LIMIT = 2 ** 30;

/**
 * The one normaliser of connection options for listen() and connect(). The
 * handshake deadline is `handshakeTimeoutMs` on servers (default 10 s) and
 * `timeoutMs` on clients (connect + handshake, default 5 s).
 */
export function connOptions(
  o: Record<string, unknown>,
  handshake: { name: 'handshakeTimeoutMs' | 'timeoutMs'; def: number },
): NativeConnOptions {
  const heartbeat = optHeartbeat(o);
  const bp = optBackpressure(o);
  return {
    maxPayload: optInt(o, 'maxPayload', 64 * 1024 * 1024, 1, MAX_PAYLOAD_LIMIT),
    highWaterMark: bp.highWaterMark,
    receiveHighWaterMark: optInt(o, 'receiveHighWaterMark', 256 * 1024, 1, 2 ** 40),
    handshakeTimeoutMs: optInt(o, handshake.name, handshake.def, 1, 2 ** 31 - 1),
    closeTimeoutMs: optInt(o, 'closeTimeoutMs', 5_000, 1, 2 ** 31 - 1),
    maxHeaderBytes: optInt(o, 'maxHeaderBytes', 16 * 1024, 256, 1024 * 1024),
    heartbeatIntervalMs: heartbeat.intervalMs,
    heartbeatTimeoutMs: heartbeat.timeoutMs,
    textAsBuffer: bp.textAsBuffer,
    lendMessages: bp.lendMessages,
    perMessageDeflate: optDeflate(o),
    maxBackpressure: bp.maxBackpressure,
    dropOnBackpressure: bp.policy === 'drop',
  };
}

/** A PEM given as a file path (string) or as its contents (Buffer). */
export function readPem(name: string, v: unknown): string {
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (typeof v === 'string') {
    try {
      return readFileSync(v, 'utf8');
    } catch (e) {
      const err = new Error(`Cannot read ${name} from ${v}: ${(e as Error).message}`) as Error & {
        code: string;
      };
      err.code = 'ERR_TLS_CERT';
      throw err;
    }
  }
  throw invalidArgType(name, 'a file path or a Buffer', v);
}

export interface PerMessageDeflateOptions {
  /** Messages smaller than this (bytes) are sent uncompressed. Default 1024. */
  threshold?: number;
  /** zlib level 0-9. Default 1 (fast). */
  level?: number;
  serverMaxWindowBits?: number;
  clientMaxWindowBits?: number;
  serverNoContextTakeover?: boolean;
  clientNoContextTakeover?: boolean;
}

export interface NativeDeflate {
  threshold: number;
  level: number;
  serverMaxWindowBits: number;
  clientMaxWindowBits: number;
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
}

/** perMessageDeflate: false/undefined (off), true (defaults) or options. */
export function optDeflate(obj: Record<string, unknown>): NativeDeflate | undefined {
  const v = obj.perMessageDeflate;
  if (v === undefined || v === false) return undefined;
  if (v !== true && (v === null || typeof v !== 'object')) {
    throw invalidArgType('perMessageDeflate', 'a boolean or an object', v);
  }
  const d = v === true ? {} : (v as Record<string, unknown>);
  const p = 'perMessageDeflate.';
  return {
    threshold: optInt(d, 'threshold', 1024, 0, 2 ** 32 - 2, p),
    level: optInt(d, 'level', 1, 0, 9, p),
    serverMaxWindowBits: optInt(d, 'serverMaxWindowBits', 15, 8, 15, p),
    clientMaxWindowBits: optInt(d, 'clientMaxWindowBits', 15, 8, 15, p),
    serverNoContextTakeover: optBool(d, 'serverNoContextTakeover', false),
    clientNoContextTakeover: optBool(d, 'clientNoContextTakeover', false),
  };
}

/** Response headers a server adds to its 101: values are strings, numbers or lists of them. */
export type ResponseHeaders = Record<string, string | number | readonly (string | number)[]>;

// Headers node-lws writes itself in a 101 response (or that make no sense in one).
const RESERVED_RESPONSE_HEADERS = new Set([
  'upgrade',
  'connection',
  'sec-websocket-accept',
  'sec-websocket-protocol',
  'sec-websocket-extensions',
  'content-length',
  'transfer-encoding',
]);

/**
 * The headers of `headers` that responseHeaderLines() accepts; the others are left out (for
 * header lines written by code that expects them to be taken as they are, as ws does).
 */
export function writableResponseHeaders(headers: Record<string, string[]>): ResponseHeaders {
  const out: Record<string, string[]> = {};
  for (const [key, values] of Object.entries(headers)) {
    if (!TOKEN.test(key) || RESERVED_RESPONSE_HEADERS.has(key.toLowerCase())) continue;
    const ok = values.filter((v) => !/[\r\n\0]/.test(v));
    if (ok.length) out[key] = ok;
  }
  return out;
}

/**
 * Header lines ("Name: value\r\n") for a 101 response; a list value gives one line per item
 * (several Set-Cookie headers). Throws ERR_INVALID_ARG_VALUE for a bad name or value or a
 * header node-lws writes itself.
 */
export function responseHeaderLines(name: string, headers: unknown): string {
  if (headers === undefined || headers === null) return '';
  if (typeof headers !== 'object' || Array.isArray(headers))
    throw invalidArgType(name, 'an object of header names and values', headers);
  let lines = '';
  for (const [key, value] of Object.entries(headers as Record<string, unknown>)) {
    if (!TOKEN.test(key)) throw invalidArgValue(name, `has an invalid header name '${key}'`, key);
    if (RESERVED_RESPONSE_HEADERS.has(key.toLowerCase()))
      throw invalidArgValue(name, `may not set ${key}: node-lws writes it`, key);
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if ((typeof v !== 'string' && typeof v !== 'number') || /[\r\n\0]/.test(String(v)))
        throw invalidArgValue(name, `has an invalid value for ${key}`, v);
      lines += `${key}: ${v}\r\n`;
    }
  }
  return lines;
}
