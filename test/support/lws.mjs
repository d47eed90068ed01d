// node-lws endpoints in the tests: servers and clients closed after their test, echo servers, the next
// connection, a connection's close, a round trip on a client transport.
//
// Layer 2 of test/support/: imports wait.mjs and messages.mjs (and the built library).

import * as lws from '../../dist/index.mjs';
import { nextMessage } from './messages.mjs';
import { DEFAULT_TIMEOUT, onceEvent, withTimeout } from './wait.mjs';

/**
 * A listen() for a test file: `lws.listen({ ...defaults, ...options })`, and the server is
 * closed after the test through `cleanups` (a cleanupsAfterEach() list), even when an
 * assertion failed. close() is idempotent, so a test may close its server itself.
 */
export function listenFor(cleanups, defaults = {}) {
  return async (options = {}) => {
    const server = await lws.listen({ ...defaults, ...options });
    cleanups.push(() => server.close());
    return server;
  };
}

/**
 * A connect() for a test file: `lws.connect(url, options)`, and the client is closed after the
 * test through `cleanups` (a cleanupsAfterEach() list), waiting for its 'close', unless it is
 * already closed by then.
 */
export function connectFor(cleanups) {
  return async (url, options) => {
    const c = await lws.connect(url, options);
    cleanups.push(async () => {
      if (c.readyState === 'closed') return;
      const closed = onceEvent(c, 'close', 3000);
      c.close();
      await closed;
    });
    return c;
  };
}

/**
 * Make `server` echo every message back as it came (`conn.send(data)`) and record each one as
 * `{ data, isBinary }` in arrival order; returns that record.
 */
export function recordEcho(server) {
  const seen = [];
  server.on('connection', (conn) =>
    conn.on('message', (data, isBinary) => {
      seen.push({ data, isBinary });
      conn.send(data);
    }),
  );
  return seen;
}

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

/**
 * `n` node-lws clients of `server` (on 127.0.0.1), and the server's `n` connections once they are
 * announced (within `ms`).
 */
export async function openClients(server, n, ms = 20000) {
  const conns = [];
  const announced = new Promise((resolve) =>
    server.on('connection', (c) => {
      conns.push(c);
      if (conns.length === n) resolve();
    }),
  );
  const clients = await Promise.all(
    Array.from({ length: n }, () => lws.connect(`ws://127.0.0.1:${server.port}/`)),
  );
  await withTimeout(announced, ms, `${n} connections announced`);
  return { clients, conns };
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

/** URL for a server (IPv6 addresses bracketed). */
export function urlFor(server, pathname = '/') {
  const { address, family } = server.address();
  const host = family === 'IPv6' ? `[${address}]` : address;
  return `ws://${host}:${server.port}${pathname}`;
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
