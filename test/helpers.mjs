// Shared helpers for the node-lws test suite.
//
// Rules the helpers enforce: nothing here sleeps for a fixed time; every wait is
// on an event or a poll with a deadline, and a missed deadline is a failure
// (a rejected promise whose message names what was being waited for).

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import procNetTcp from '../bin/stress/proc-net-tcp.js';

export { WebSocket };

const here = path.dirname(fileURLToPath(import.meta.url));

/** Absolute path of the built library entry point. */
export const DIST_PATH = path.resolve(here, '..', 'dist', 'index.mjs');
/** file: URL of the built library entry point (for `import()` in child processes). */
export const DIST_URL = pathToFileURL(DIST_PATH).href;

/** Default deadline for a single wait in the tests. */
export const DEFAULT_TIMEOUT = 5000;

// ---------------------------------------------------------------------------
// Process resources
// ---------------------------------------------------------------------------

/** Number of open file descriptors of this process. */
export function openFds() {
  return fs.readdirSync('/proc/self/fd').length;
}

/** List of open file descriptors with their targets (for failure messages). */
export function describeFds() {
  const out = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target = '?';
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      /* raced */
    }
    out.push(`${fd}->${target}`);
  }
  return out.join(' ');
}

/** Number of threads of this process (from /proc/self/status). */
export function threadCount() {
  const m = /^Threads:\s+(\d+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no Threads: line in /proc/self/status');
  return Number(m[1]);
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/**
 * Resolve/reject like `promise`, but reject with a descriptive Error if it has
 * not settled within `ms` milliseconds.
 */
export function withTimeout(promise, ms = DEFAULT_TIMEOUT, label = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${ms} ms waiting for: ${label}`));
    }, ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

/** `events.once` with a deadline. Resolves to the array of event arguments. */
export function onceEvent(emitter, event, ms = DEFAULT_TIMEOUT, label) {
  return withTimeout(once(emitter, event), ms, label ?? `'${event}' event`);
}

/**
 * Poll `predicate` (sync or async) until it returns a truthy value, and return
 * that value. Fails with `label` (and `describe()` output, if given) when the
 * deadline passes.
 */
export async function waitFor(
  predicate,
  { timeout = DEFAULT_TIMEOUT, interval = 5, label = 'condition', describe } = {},
) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await predicate();
    if (v) return v;
    if (Date.now() >= deadline) {
      const extra = describe ? ` (${describe()})` : '';
      throw new Error(`timed out after ${timeout} ms waiting for: ${label}${extra}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/**
 * Run `fn` and return the error it throws or the reason its promise rejects.
 * Fails if it neither throws nor rejects (within `ms`). A synchronous throw and
 * an asynchronous rejection are both accepted (listen() is async, but an
 * implementation may validate its arguments before creating the promise).
 */
export async function captureRejection(fn, ms = DEFAULT_TIMEOUT, label = 'rejection') {
  let p;
  try {
    p = fn();
  } catch (err) {
    return err;
  }
  let value;
  try {
    value = await withTimeout(p, ms, label);
  } catch (err) {
    return err;
  }
  // Clean up if it unexpectedly succeeded with a server.
  if (value && typeof value.close === 'function') {
    try {
      await value.close();
    } catch {
      /* ignore */
    }
  }
  throw new Error(`expected ${label}, but it resolved to ${describeValue(value)}`);
}

function describeValue(v) {
  if (v && typeof v === 'object')
    return `${v.constructor?.name ?? 'object'}${'port' in v ? ` (port ${v.port})` : ''}`;
  return String(v);
}

// ---------------------------------------------------------------------------
// ws clients
// ---------------------------------------------------------------------------

/**
 * Open a `ws` client and resolve once it is open. The client gets:
 *  - `closed`: a promise of `{ code, reason }` (reason as string) for its 'close' event;
 *  - `errors`: an array collecting 'error' events after open (so that a late
 *    socket error cannot crash the test process; tests may assert on it).
 * Rejects on error / unexpected HTTP response / timeout before open.
 */
export async function wsConnect(url, options = {}, { timeout = DEFAULT_TIMEOUT, protocols } = {}) {
  const ws =
    protocols !== undefined ? new WebSocket(url, protocols, options) : new WebSocket(url, options);
  ws.errors = [];
  ws.closed = new Promise((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  const opened = new Promise((resolve, reject) => {
    const onError = (err) => {
      cleanup();
      reject(err);
    };
    const onUnexpected = (_req, res) => {
      cleanup();
      reject(new Error(`unexpected HTTP response ${res.statusCode} from ${url}`));
      res.resume();
      ws.terminate();
    };
    const onOpen = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      ws.off('error', onError);
      ws.off('unexpected-response', onUnexpected);
      ws.off('open', onOpen);
      ws.on('error', (err) => ws.errors.push(err));
    };
    ws.on('error', onError);
    ws.on('unexpected-response', onUnexpected);
    ws.on('open', onOpen);
  });
  try {
    await withTimeout(opened, timeout, `ws client open (${url})`);
  } catch (err) {
    ws.on('error', () => {});
    ws.terminate();
    throw err;
  }
  return ws;
}

/** URL for a server (IPv6 addresses bracketed). */
export function urlFor(server, pathname = '/') {
  const { address, family } = server.address();
  const host = family === 'IPv6' ? `[${address}]` : address;
  return `ws://${host}:${server.port}${pathname}`;
}

/**
 * Resolve with the next message `{ data, isBinary }` a ws client receives;
 * text is returned as a string, binary as a Buffer.
 */
export function nextMessage(ws, ms = DEFAULT_TIMEOUT, label = 'ws client message') {
  return withTimeout(
    new Promise((resolve, reject) => {
      const onMessage = (data, isBinary) => {
        cleanup();
        resolve({ data: isBinary ? toBuffer(data) : toBuffer(data).toString('utf8'), isBinary });
      };
      const onClose = (code, reason) => {
        cleanup();
        reject(new Error(`ws client closed (${code} ${reason}) while waiting for: ${label}`));
      };
      const cleanup = () => {
        ws.off('message', onMessage);
        ws.off('close', onClose);
      };
      ws.on('message', onMessage);
      ws.on('close', onClose);
    }),
    ms,
    label,
  );
}

/**
 * Collect the next `count` messages of a ws client (in arrival order), as
 * `{ data, isBinary }` like nextMessage().
 */
export function collectMessages(
  ws,
  count,
  ms = DEFAULT_TIMEOUT,
  label = `${count} ws client messages`,
) {
  const got = [];
  return withTimeout(
    new Promise((resolve, reject) => {
      if (count === 0) return resolve(got);
      const onMessage = (data, isBinary) => {
        got.push({ data: isBinary ? toBuffer(data) : toBuffer(data).toString('utf8'), isBinary });
        if (got.length === count) {
          cleanup();
          resolve(got);
        }
      };
      const onClose = (code, reason) => {
        cleanup();
        reject(
          new Error(
            `ws client closed (${code} ${reason}) after ${got.length}/${count} messages: ${label}`,
          ),
        );
      };
      const cleanup = () => {
        ws.off('message', onMessage);
        ws.off('close', onClose);
      };
      ws.on('message', onMessage);
      ws.on('close', onClose);
    }),
    ms,
    `${label} (got ${got.length})`,
  ).catch((err) => {
    err.message += ` [received ${got.length}/${count}]`;
    throw err;
  });
}

function toBuffer(data) {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * Send `payload` (string → text frame, Buffer → binary frame) from a ws
 * client and resolve with the reply `{ data, isBinary }`.
 */
export async function echoRoundTrip(ws, payload, ms = DEFAULT_TIMEOUT, label = 'echo reply') {
  const reply = nextMessage(ws, ms, label);
  ws.send(payload, { binary: typeof payload !== 'string' });
  return reply;
}

/** Close a ws client (if not closed yet) and wait for its 'close' event. */
export async function closeClient(ws, code = 1000, reason = '', ms = DEFAULT_TIMEOUT) {
  if (ws.readyState === WebSocket.OPEN) ws.close(code, reason);
  else if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
  return withTimeout(ws.closed, ms, 'ws client close');
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

/**
 * Make `server` echo every message: text as text, binary as binary, each
 * optionally prefixed with `prefix`. Returns the list of connections seen.
 */
export function attachEcho(server, { prefix = '' } = {}) {
  const conns = [];
  server.on('connection', (conn) => {
    conns.push(conn);
    conn.on('error', () => {});
    conn.on('message', (data, isBinary) => {
      if (!conn.isOpen) return;
      if (!prefix) {
        conn.send(data);
        return;
      }
      if (isBinary || typeof data !== 'string')
        conn.send(Buffer.concat([Buffer.from(prefix), data]));
      else conn.send(prefix + data);
    });
  });
  return conns;
}

/** Resolve with `[conn, request]` of the server's next 'connection'. */
export function nextConnection(server, ms = DEFAULT_TIMEOUT) {
  return onceEvent(server, 'connection', ms, "server 'connection' event");
}

/**
 * Wait for a 'close' event of a server-side Connection; resolves with
 * `{ code, reason, wasClean }`. (Unlike events.once, an 'error' event before
 * 'close' does not reject: a connection may report an error and then close.)
 */
export function connClosed(conn, ms = DEFAULT_TIMEOUT) {
  const p = new Promise((resolve) => {
    conn.once('close', (code, reason, wasClean) => resolve({ code, reason, wasClean }));
  });
  return withTimeout(p, ms, "server connection 'close' event");
}

/** True if this machine can listen on the IPv6 loopback ::1. */
export async function hasIPv6Loopback() {
  const srv = net.createServer();
  try {
    await withTimeout(
      new Promise((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '::1', resolve);
      }),
      2000,
      'listen on ::1',
    );
    return true;
  } catch {
    return false;
  } finally {
    if (srv.listening) await new Promise((r) => srv.close(r));
  }
}

/** Listen a plain node `net` server; resolves with it (port via `.address().port`). */
export function netListen(port = 0, host = '127.0.0.1') {
  const srv = net.createServer((s) => s.destroy());
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ port, host, exclusive: true }, () => resolve(srv));
  });
}

export function netClose(srv) {
  return new Promise((resolve) => srv.close(() => resolve()));
}

/** Does a plain TCP connect to host:port succeed? (resolves true/false) */
export function tcpConnects(host, port, ms = 2000) {
  return withTimeout(
    new Promise((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => {
        s.destroy();
        resolve(false);
      });
    }),
    ms,
    `tcp connect ${host}:${port}`,
  );
}

// ---------------------------------------------------------------------------
// /proc/net/tcp{,6}
// ---------------------------------------------------------------------------

/**
 * All TCP sockets of the machine (from /proc/net/tcp and /proc/net/tcp6) as
 * `{ family, localAddress, localPort, remoteAddress, remotePort, state, inode }`; the parser
 * is the stress CLI's (bin/stress/proc-net-tcp.js).
 */
export function tcpSockets() {
  return procNetTcp.tcpSockets() ?? [];
}

/** Listening sockets on `port` (any address, any family). */
export function listenersOn(port) {
  return tcpSockets().filter((s) => s.state === 'LISTEN' && s.localPort === port);
}

// ---------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------

export function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

/**
 * Spawn `node` with `args`; returns the child with helpers:
 *  - `child.stdoutText` / `child.stderrText`: accumulated output;
 *  - `child.exited`: promise of `{ code, signal, at }` (at = performance.now() at 'exit');
 *  - `child.line(predicate?)`: promise of the next stdout line (matching predicate).
 */
export function spawnNode(args, { stdin = 'ignore', env } = {}) {
  const child = spawn(process.execPath, args, {
    stdio: [stdin, 'pipe', 'pipe'],
    env: env ?? process.env,
  });
  child.stdoutText = '';
  child.stderrText = '';
  const lineWaiters = [];
  let pending = '';
  const lines = [];
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    child.stdoutText += chunk;
    pending += chunk;
    for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      lines.push(line);
      for (const w of [...lineWaiters]) {
        if (w.predicate(line)) {
          lineWaiters.splice(lineWaiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr.on('data', (chunk) => {
    child.stderrText += chunk;
  });
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() }));
  });
  child.line = (predicate = () => true, ms = DEFAULT_TIMEOUT, label = 'child stdout line') => {
    const found = lines.find(predicate);
    if (found !== undefined) {
      lines.splice(lines.indexOf(found), 1);
      return Promise.resolve(found);
    }
    const p = new Promise((resolve, reject) => {
      const w = { predicate, resolve };
      lineWaiters.push(w);
      child.exited.then(({ code, signal }) => {
        const idx = lineWaiters.indexOf(w);
        if (idx >= 0) {
          lineWaiters.splice(idx, 1);
          reject(
            new Error(
              `child exited (code ${code}, signal ${signal}) before ${label}; stderr: ${child.stderrText.trim()}`,
            ),
          );
        }
      });
    });
    return withTimeout(p, ms, `${label}; child stderr so far: ${child.stderrText.trim()}`);
  };
  child.stop = async (ms = DEFAULT_TIMEOUT) => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return withTimeout(child.exited, ms, 'child exit after SIGKILL');
  };
  return child;
}

/**
 * Fail the test process if it is still alive `ms` after the test run ended:
 * a library that leaves a ref'd handle behind keeps processes alive. Call as
 * `test.after(exitWatchdog)` (registered on the last suite of a file).
 */
export function exitWatchdog(ms) {
  if (typeof ms !== 'number') ms = 5000; // uvu passes its state object to hooks
  const t = setTimeout(() => {
    const handles =
      typeof process._getActiveHandles === 'function'
        ? process
            ._getActiveHandles()
            .map((h) => h?.constructor?.name ?? typeof h)
            .join(', ')
        : '?';
    console.error(
      `\nFAIL: the test process did not exit by itself ${ms} ms after its tests finished; active handles: [${handles}]`,
    );
    process.exit(1);
  }, ms);
  t.unref();
}

/** Print a line that stands out in the uvu output. */
export function note(msg) {
  process.stdout.write(`\n  [note] ${msg}\n`);
}

// ---------------------------------------------------------------------------
// Client / interop helpers
// ---------------------------------------------------------------------------

/**
 * A TCP port that was free a moment ago: listen on port 0 with `net`, read the
 * port, close. (Nothing listens on it afterwards, so a connect is refused.)
 */
export async function freePort(host = '127.0.0.1') {
  const srv = await netListen(0, host);
  const { port } = srv.address();
  await netClose(srv);
  return port;
}

/**
 * `length` deterministic pseudo-random bytes (xorshift32 seeded with `seed`):
 * the same on every run and in every language that implements the same
 * generator (see the browser and python tests).
 */
export function patternBytes(length, seed = 1) {
  const words = Math.ceil(length / 4);
  const u32 = new Uint32Array(words);
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < words; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    u32[i] = x;
  }
  return Buffer.from(u32.buffer, 0, length);
}

/**
 * Like spawnNode(), for any executable: returns the child with `stdoutText`,
 * `stderrText`, `exited`, `line(predicate?)` and `stop()`.
 */
export function spawnProcess(command, args, { stdin = 'ignore', env, cwd } = {}) {
  const child = spawn(command, args, {
    stdio: [stdin, 'pipe', 'pipe'],
    env: env ?? process.env,
    cwd,
  });
  child.stdoutText = '';
  child.stderrText = '';
  const lineWaiters = [];
  let pending = '';
  const lines = [];
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    child.stdoutText += chunk;
    pending += chunk;
    for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      const w = lineWaiters.find((x) => x.predicate(line));
      if (w) {
        lineWaiters.splice(lineWaiters.indexOf(w), 1);
        w.resolve(line);
      } else lines.push(line);
    }
  });
  child.stderr.on('data', (chunk) => {
    child.stderrText += chunk;
  });
  child.spawnError = null;
  child.once('error', (err) => {
    child.spawnError = err;
  });
  child.exited = new Promise((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal, at: performance.now() }));
    child.once('error', (err) => resolve({ code: null, signal: null, error: err, at: 0 }));
  });
  child.line = (predicate = () => true, ms = DEFAULT_TIMEOUT, label = 'child stdout line') => {
    const found = lines.find(predicate);
    if (found !== undefined) {
      lines.splice(lines.indexOf(found), 1);
      return Promise.resolve(found);
    }
    const p = new Promise((resolve, reject) => {
      const w = { predicate, resolve };
      lineWaiters.push(w);
      child.exited.then(({ code, signal, error }) => {
        const idx = lineWaiters.indexOf(w);
        if (idx >= 0) {
          lineWaiters.splice(idx, 1);
          reject(
            new Error(
              `${command} exited (code ${code}, signal ${signal}${error ? `, ${error.message}` : ''}) before ${label}; stdout: ${child.stdoutText.trim()}; stderr: ${child.stderrText.trim()}`,
            ),
          );
        }
      });
    });
    return withTimeout(p, ms, `${label}; ${command} stderr so far: ${child.stderrText.trim()}`);
  };
  child.stop = async (ms = DEFAULT_TIMEOUT) => {
    if (child.exitCode === null && child.signalCode === null && !child.spawnError)
      child.kill('SIGKILL');
    return withTimeout(child.exited, ms, `${command} exit after SIGKILL`);
  };
  return child;
}

/**
 * The Python interpreter that has the `websockets` package (Debian's
 * python3-websockets installs it for /usr/bin/python3, which may not be the
 * first python3 in PATH). Resolves `{ python, version }`; rejects with a
 * message that says how to install it when there is none.
 */
export async function findPythonWebsockets() {
  const tried = [];
  for (const python of ['/usr/bin/python3', 'python3']) {
    const child = spawnProcess(python, [
      '-c',
      'import websockets, sys; print(websockets.__version__); print(sys.version.split()[0])',
    ]);
    const { code, error } = await withTimeout(
      child.exited,
      20000,
      `${python} -c import websockets`,
    );
    if (code === 0) {
      const [version, pyVersion] = child.stdoutText.trim().split('\n');
      return { python, version: version.trim(), pythonVersion: pyVersion?.trim() };
    }
    tried.push(
      `${python}: ${error ? error.message : child.stderrText.trim().split('\n').pop() || `exit ${code}`}`,
    );
  }
  throw new Error(
    `python3 with the 'websockets' package not found (tried ${tried.join('; ')}). ` +
      'Install it with `apt-get install python3-websockets` or run `bash scripts/bootstrap.sh`.',
  );
}

/** Milliseconds since `t0` (a performance.now() value), rounded to 0.1 ms. */
export function msSince(t0) {
  return Math.round((performance.now() - t0) * 10) / 10;
}

/**
 * Send `payload` on a node-lws transport (ClientTransport or Connection:
 * strings as text, anything else as binary) and resolve with the next message
 * it receives, as `{ data, isBinary }` (text as string, binary as Buffer).
 */
export async function transportRoundTrip(t, payload, ms = DEFAULT_TIMEOUT, label = 'reply') {
  const reply = nextMessage(t, ms, label);
  t.send(payload);
  return reply;
}

// ---------------------------------------------------------------------------
// Raw WebSocket / HTTP peers over plain TCP (http, admission, heartbeat tests)
// ---------------------------------------------------------------------------

/** RFC 6455 GUID for Sec-WebSocket-Accept. */
export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key. */
export function wsAcceptFor(key) {
  return crypto
    .createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64');
}

/** WebSocket opcodes. */
export const WS_OP = { cont: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa };

function xorMask4(buf, key) {
  const out = Buffer.allocUnsafe(buf.length);
  for (let i = 0; i < buf.length; i++) out[i] = buf[i] ^ key[i & 3];
  return out;
}

/**
 * Encode one WebSocket frame. `payload`: Buffer or string (UTF-8); `mask`: true
 * (fresh random key, as a client must), false (as a server must).
 */
export function encodeWsFrame({ opcode, payload = Buffer.alloc(0), fin = true, mask = true }) {
  const data = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const len = data.length;
  const key = mask ? crypto.randomBytes(4) : null;
  let hlen = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
  if (key) hlen += 4;
  const head = Buffer.alloc(hlen);
  head[0] = (fin ? 0x80 : 0) | (opcode & 0x0f);
  const m = key ? 0x80 : 0;
  let pos = 2;
  if (len < 126) head[1] = m | len;
  else if (len <= 0xffff) {
    head[1] = m | 126;
    head.writeUInt16BE(len, 2);
    pos = 4;
  } else {
    head[1] = m | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
    pos = 10;
  }
  if (key) key.copy(head, pos);
  return Buffer.concat([head, key ? xorMask4(data, key) : data]);
}

/** Parse an HTTP head (request or response) into { startLine, status?, method?, target?, headers }. */
export function parseHttpHead(text) {
  const lines = text.split('\r\n');
  const head = { startLine: lines[0], headers: {} };
  const parts = lines[0].split(' ');
  if (/^HTTP\/1\.\d$/.test(parts[0])) head.status = Number(parts[1]);
  else {
    head.method = parts[0];
    head.target = parts[1];
  }
  for (const line of lines.slice(1)) {
    if (!line) continue;
    const i = line.indexOf(':');
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    head.headers[name] = name in head.headers ? `${head.headers[name]}, ${value}` : value;
  }
  return head;
}

/**
 * One raw TCP socket speaking HTTP/1.1 then WebSocket frames by hand.
 * `isServer`: true → we read a request and send unmasked frames; false → we read
 * a response and send masked frames. Options: `autoPong` answers every ping
 * with a pong carrying the same payload. Keeps `frames` (unread), `log` (every
 * frame with its arrival time `at`), `pings` (count), `headAt` / `closedAt`
 * (performance.now() when the HTTP head arrived / at the socket's 'close').
 */
export class RawWsPeer {
  constructor(socket, { isServer = false, autoPong = false } = {}) {
    this.socket = socket;
    this.isServer = isServer;
    this.autoPong = autoPong;
    this.buf = Buffer.alloc(0);
    this.head = null;
    this.mode = 'head';
    this.frames = [];
    this.log = [];
    this.pings = 0;
    this.waiters = [];
    this.isClosed = false;
    this.closedAt = undefined;
    this.error = null;
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true;
        this.closedAt = performance.now();
        resolve(this.closedAt);
        this.#wake();
      });
    });
    socket.on('error', (err) => {
      this.error = err;
    });
    socket.on('data', (d) => this.#onData(d));
  }

  #onData(d) {
    this.buf = Buffer.concat([this.buf, d]);
    if (this.mode === 'head') {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i >= 0) {
        this.head = parseHttpHead(this.buf.subarray(0, i).toString('latin1'));
        this.headAt = performance.now();
        this.buf = this.buf.subarray(i + 4);
        this.mode = this.isServer || this.head.status === 101 ? 'frames' : 'body';
      }
    }
    if (this.mode === 'frames') this.#parseFrames();
    this.#wake();
  }

  #parseFrames() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const masked = (b[1] & 0x80) !== 0;
      const len7 = b[1] & 0x7f;
      const hlen = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
      if (b.length < hlen) return;
      const length =
        len7 === 126 ? b.readUInt16BE(2) : len7 === 127 ? Number(b.readBigUInt64BE(2)) : len7;
      if (b.length < hlen + length) return;
      const raw = b.subarray(hlen, hlen + length);
      const payload = masked ? xorMask4(raw, b.subarray(hlen - 4, hlen)) : Buffer.from(raw);
      const f = {
        fin: (b[0] & 0x80) !== 0,
        opcode: b[0] & 0x0f,
        masked,
        payload,
        at: performance.now(),
      };
      this.buf = b.subarray(hlen + length);
      this.log.push(f);
      if (f.opcode === WS_OP.ping) {
        this.pings++;
        if (this.autoPong && !this.isClosed) this.send({ opcode: WS_OP.pong, payload: f.payload });
      }
      this.frames.push(f);
    }
  }

  #wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  /** Resolve when `pred()` is truthy (re-checked on every data/close); reject at the deadline. */
  until(pred, ms = DEFAULT_TIMEOUT, label = 'raw peer condition') {
    return withTimeout(
      new Promise((resolve, reject) => {
        const check = () => {
          let v;
          try {
            v = pred();
          } catch (err) {
            reject(err);
            return;
          }
          if (v) resolve(v);
          else this.waiters.push(check);
        };
        check();
      }),
      ms,
      label,
    );
  }

  waitHead(ms = DEFAULT_TIMEOUT) {
    return this.until(
      () => {
        if (this.head) return this.head;
        if (this.isClosed)
          throw new Error(
            `TCP closed before an HTTP head arrived (got ${JSON.stringify(this.buf.toString('latin1'))})`,
          );
        return null;
      },
      ms,
      'HTTP head',
    );
  }

  /** The next unread frame (optionally of `opcode`, skipping others). */
  nextFrame(ms = DEFAULT_TIMEOUT, label = 'frame', opcode) {
    return this.until(
      () => {
        while (this.frames.length) {
          const f = this.frames.shift();
          if (opcode === undefined || f.opcode === opcode) return f;
        }
        if (this.isClosed) throw new Error(`TCP closed while waiting for ${label}`);
        return null;
      },
      ms,
      label,
    );
  }

  /** Body bytes after a non-101 head, once the server closed the TCP connection. */
  async body(ms = DEFAULT_TIMEOUT) {
    await withTimeout(this.closed, ms, 'TCP close after the HTTP response');
    return this.buf;
  }

  write(buf) {
    if (!this.isClosed) this.socket.write(buf);
  }

  /** Send a frame, masked on the client side. */
  send(opts) {
    this.write(encodeWsFrame({ mask: !this.isServer, ...opts }));
  }

  destroy() {
    this.socket.destroy();
  }
}

/** Connect a plain TCP socket; resolves once connected. */
export function rawTcpConnect(port, host = '127.0.0.1', ms = DEFAULT_TIMEOUT) {
  const socket = net.connect({ host, port });
  return withTimeout(
    new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('error', reject);
    }),
    ms,
    `TCP connect to ${host}:${port}`,
  ).catch((err) => {
    socket.destroy();
    throw err;
  });
}

/**
 * Send `request` (exact bytes) on a fresh TCP connection; resolve with
 * `{ head, body }` once the server closed the connection after its response
 * (node-lws answers HTTP with `Connection: close`).
 */
export async function rawHttpExchange(
  port,
  request,
  { host = '127.0.0.1', ms = DEFAULT_TIMEOUT } = {},
) {
  const socket = await rawTcpConnect(port, host, ms);
  const peer = new RawWsPeer(socket);
  try {
    socket.write(request);
    const head = await peer.waitHead(ms);
    const body = await peer.body(ms);
    return { head, body };
  } finally {
    socket.destroy();
  }
}

/**
 * A raw client after a successful upgrade on `path` (the 101 and its Accept
 * are checked; throws otherwise). Returns the RawWsPeer.
 */
export async function rawWsUpgrade(
  port,
  {
    path: target = '/',
    host = '127.0.0.1',
    headers = {},
    autoPong = false,
    ms = DEFAULT_TIMEOUT,
  } = {},
) {
  const socket = await rawTcpConnect(port, host, ms);
  const peer = new RawWsPeer(socket, { autoPong });
  const key = crypto.randomBytes(16).toString('base64');
  let extra = '';
  for (const [k, v] of Object.entries(headers)) extra += `${k}: ${v}\r\n`;
  socket.write(
    `GET ${target} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
  );
  let head;
  try {
    head = await peer.waitHead(ms);
  } catch (err) {
    socket.destroy();
    throw err;
  }
  if (head.status !== 101 || head.headers['sec-websocket-accept'] !== wsAcceptFor(key)) {
    socket.destroy();
    throw new Error(`raw upgrade failed: ${head.startLine} ${JSON.stringify(head.headers)}`);
  }
  return peer;
}

/**
 * A raw WebSocket server on plain `net`: it reads each upgrade request,
 * answers 101 with the computed Sec-WebSocket-Accept, and then only records
 * frames (it never answers pings unless `autoPong`). `peers` collects a
 * RawWsPeer per connection; `nextPeer()` resolves with the next one after its
 * 101 was written.
 */
export async function rawWsServer({ host = '127.0.0.1', autoPong = false } = {}) {
  const peers = [];
  const waiting = [];
  const server = net.createServer((socket) => {
    const peer = new RawWsPeer(socket, { isServer: true, autoPong });
    peer.waitHead().then(
      (head) => {
        const key = head.headers['sec-websocket-key'];
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            `Sec-WebSocket-Accept: ${wsAcceptFor(key)}\r\n\r\n`,
        );
        peer.upgradedAt = performance.now();
        peers.push(peer);
        const w = waiting.shift();
        if (w) w(peer);
      },
      () => socket.destroy(),
    );
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host }, resolve);
  });
  return {
    server,
    port: server.address().port,
    peers,
    nextPeer(ms = DEFAULT_TIMEOUT) {
      const idx = peers.findIndex((p) => !p.claimed);
      if (idx >= 0) {
        peers[idx].claimed = true;
        return Promise.resolve(peers[idx]);
      }
      return withTimeout(
        new Promise((resolve) =>
          waiting.push((p) => {
            p.claimed = true;
            resolve(p);
          }),
        ),
        ms,
        'raw server upgrade',
      );
    },
    async close() {
      for (const p of peers) p.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
}

/**
 * Open a `ws` client that must be refused with an HTTP response; resolves with
 * `{ status, headers, body }` ('unexpected-response'). Fails if it opens or
 * errors without a response.
 */
export function wsExpectReject(url, options = {}, protocols) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const c =
        protocols !== undefined
          ? new WebSocket(url, protocols, options)
          : new WebSocket(url, options);
      c.on('open', () => {
        c.terminate();
        reject(new Error(`ws client to ${url} opened, but a rejection was expected`));
      });
      c.on('unexpected-response', (_req, res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => {
          resolve({
            status: res.statusCode,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          });
          c.terminate();
        });
      });
      c.on('error', (err) => reject(new Error(`ws client error instead of a response: ${err}`)));
    }),
    DEFAULT_TIMEOUT,
    `rejected upgrade to ${url}`,
  );
}

// ---------------------------------------------------------------------------
// Browser
// ---------------------------------------------------------------------------

/** Debian's Chromium, driven by the playwright-core devDependency (no browser download). */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Headless Chromium with a fresh profile directory, launched with the flags this
 * closed network needs. Returns { context, page, close() }; close() also removes
 * the profile. Fails with a clear message when Chromium or playwright-core is missing.
 */
export async function launchChromium({ viewport, ignoreHTTPSErrors = false } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} not found: install Debian's chromium package (apt-get install chromium, or run bash scripts/bootstrap.sh)`,
    );
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (err) {
    throw new Error(
      `playwright-core is not installed (${err.message}); run \`npm install\` (it is a devDependency) or \`bash scripts/bootstrap.sh\``,
    );
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-chromium-'));
  let context;
  try {
    context = await withTimeout(
      chromium.launchPersistentContext(userDataDir, {
        executablePath: CHROMIUM,
        headless: true,
        ignoreHTTPSErrors,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
        ...(viewport ? { viewport } : {}),
        timeout: 30000,
      }),
      35000,
      'chromium launch',
    );
  } catch (err) {
    fs.rmSync(userDataDir, { recursive: true, force: true });
    throw new Error(`could not launch ${CHROMIUM} headless: ${err.message}`);
  }
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    close: async () => {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A list of cleanup functions run (last first) after each test of `suite`, each
 * with a deadline; a failing cleanup is reported, not thrown.
 */
export function cleanupsAfterEach(suite, ms = 5000) {
  const cleanups = [];
  suite.after.each(async () => {
    while (cleanups.length) {
      const fn = cleanups.pop();
      try {
        await withTimeout(fn(), ms, 'cleanup');
      } catch (err) {
        console.error(`cleanup failed: ${err.message}`);
      }
    }
  });
  return cleanups;
}
