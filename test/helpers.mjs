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
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import WebSocket from 'ws';

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

const TCP_STATES = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

function decodeV4(hex) {
  const n = parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.');
}

function decodeV6(hex) {
  const bytes = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(parseInt(word.slice(b * 2, b * 2 + 2), 16));
  }
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return compressV6(groups);
}

function compressV6(groups) {
  let best = -1,
    bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/**
 * All TCP sockets of the machine (from /proc/net/tcp and /proc/net/tcp6) as
 * `{ family, localAddress, localPort, remoteAddress, remotePort, state }`.
 */
export function tcpSockets() {
  const out = [];
  for (const [file, family, decode] of [
    ['/proc/net/tcp', 'IPv4', decodeV4],
    ['/proc/net/tcp6', 'IPv6', decodeV6],
  ]) {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4) continue;
      const [la, lp] = f[1].split(':');
      const [ra, rp] = f[2].split(':');
      out.push({
        family,
        localAddress: decode(la),
        localPort: parseInt(lp, 16),
        remoteAddress: decode(ra),
        remotePort: parseInt(rp, 16),
        state: TCP_STATES[f[3]] ?? f[3],
      });
    }
  }
  return out;
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
