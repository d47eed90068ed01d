// Basic server behaviour of node-lws: listening, handshake data, echo of all
// message kinds and sizes, close semantics, option validation, abort, IPv6,
// several servers, idempotent close and async dispose.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { sha256 } from './support/data.mjs';
import {
  attachEcho,
  connClosed,
  listenFor,
  nextConnection,
  recordEcho,
  urlFor,
} from './support/lws.mjs';
import { collectMessages } from './support/messages.mjs';
import { hasIPv6Loopback, listenersOn, netClose, netListen, tcpConnects } from './support/net.mjs';
import { cleanupsAfterEach, exitWatchdog, note } from './support/suite.mjs';
import { captureRejection, onceEvent, waitFor, withTimeout } from './support/wait.mjs';
import { closeClient, echoRoundTrip, wsConnect } from './support/ws-client.mjs';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;
const HAS_IPV6 = await hasIPv6Loopback();

// Every server a test opens is closed after the test, so a failing assertion cannot leave a
// listener (and a live event loop) behind.
const cleanups = cleanupsAfterEach(test);
const listen = listenFor(cleanups);
async function echoServer(options = {}, echoOptions) {
  const server = await listen({ host: HOST, port: 0, ...options });
  const conns = attachEcho(server, echoOptions);
  return { server, conns };
}

// ---------------------------------------------------------------------------
// Listening
// ---------------------------------------------------------------------------

test('listen on port 0 binds an ephemeral port on exactly the requested IPv4 address', async () => {
  const server = await listen({ host: HOST, port: 0 });
  assert.instance(server, lws.Server);
  assert.type(server.port, 'number');
  assert.ok(
    Number.isInteger(server.port) && server.port > 0 && server.port < 65536,
    `port ${server.port}`,
  );
  assert.is(server.listening, true);
  assert.equal(server.address(), { address: HOST, family: 'IPv4', port: server.port });
  assert.is(server.connectionCount, 0);
  assert.is(server.bindAttempts, 1);
  const listeners = listenersOn(server.port);
  assert.equal(
    listeners.map((l) => `${l.family} ${l.localAddress}`),
    ['IPv4 127.0.0.1'],
    `expected one listener on 127.0.0.1:${server.port}, found ${JSON.stringify(listeners)}`,
  );
});

test('connection event carries path, lower-cased headers and the remote address/port', async () => {
  const { server } = await echoServer();
  const connP = nextConnection(server);
  const ws = await wsConnect(`ws://${HOST}:${server.port}/chat?x=1`, {
    headers: { 'X-Custom-Thing': 'hello there' },
  });
  const [conn, request] = await connP;
  try {
    assert.instance(conn, lws.Connection);
    assert.is(request.path, '/chat?x=1');
    assert.type(request.headers, 'object');
    assert.is(request.headers['x-custom-thing'], 'hello there');
    assert.is(request.headers.host, `${HOST}:${server.port}`);
    assert.is(String(request.headers.upgrade).toLowerCase(), 'websocket');
    assert.is(request.remoteAddress, HOST);
    assert.is(request.remotePort, ws._socket.localPort);
    assert.is(conn.remoteAddress, HOST);
    assert.is(conn.remotePort, ws._socket.localPort);
    assert.is(conn.isOpen, true);
    assert.type(conn.bufferedAmount, 'number');
    assert.is(server.connectionCount, 1);
  } finally {
    await closeClient(ws);
  }
  await waitFor(() => server.connectionCount === 0, {
    label: 'connectionCount back to 0',
    describe: () => `connectionCount=${server.connectionCount}`,
  });
});

test('subprotocol negotiation picks an accepted protocol offered by the client', async () => {
  const server = await listen({ host: HOST, port: 0, protocols: ['chat', 'superchat'] });
  const connP = nextConnection(server);
  const ws = await wsConnect(urlFor(server), {}, { protocols: ['nope', 'superchat'] });
  const [conn] = await connP;
  assert.is(ws.protocol, 'superchat');
  assert.is(conn.protocol, 'superchat');
  await closeClient(ws);
});

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

test('text echo: a non-ASCII string round-trips as a string (server sees string, isBinary false)', async () => {
  const server = await listen({ host: HOST, port: 0 });
  const seen = recordEcho(server);
  const ws = await wsConnect(urlFor(server));
  const reply = await echoRoundTrip(ws, 'héllo ✓');
  assert.equal(reply, { data: 'héllo ✓', isBinary: false });
  assert.is(seen.length, 1);
  assert.is(typeof seen[0].data, 'string', 'server must receive text as a string');
  assert.is(seen[0].data, 'héllo ✓');
  assert.is(seen[0].isBinary, false);
  await closeClient(ws);
});

test('binary echo: bytes round-trip as a Buffer (server sees Buffer, isBinary true)', async () => {
  const server = await listen({ host: HOST, port: 0 });
  const seen = recordEcho(server);
  const ws = await wsConnect(urlFor(server));
  const payload = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80, 0x7f, 0xc3, 0x28]); // includes invalid UTF-8
  const reply = await echoRoundTrip(ws, payload);
  assert.is(reply.isBinary, true);
  assert.ok(Buffer.isBuffer(reply.data));
  assert.ok(reply.data.equals(payload), `got ${reply.data.toString('hex')}`);
  assert.is(seen.length, 1);
  assert.ok(Buffer.isBuffer(seen[0].data), 'server must receive binary as a Buffer');
  assert.ok(seen[0].data.equals(payload));
  assert.is(seen[0].isBinary, true);
  await closeClient(ws);
});

test('send accepts ArrayBuffer, typed-array views (only the viewed bytes) and DataView', async () => {
  const server = await listen({ host: HOST, port: 0 });
  const connP = nextConnection(server);
  const ws = await wsConnect(urlFor(server));
  const [conn] = await connP;
  const got = collectMessages(ws, 5);
  const ab = new Uint8Array([10, 11, 12, 13, 14, 15, 16, 17]).buffer;
  assert.is(conn.send(ab), true);
  assert.is(conn.send(new Uint8Array(ab, 2, 3)), true);
  assert.is(conn.send(new DataView(ab, 5, 2)), true);
  assert.is(conn.send(new Uint16Array([0x0102, 0x0304])), true);
  assert.is(conn.send('text from server'), true);
  const msgs = await got;
  assert.equal(
    msgs.map((m) => m.isBinary),
    [true, true, true, true, false],
  );
  assert.equal([...msgs[0].data], [10, 11, 12, 13, 14, 15, 16, 17]);
  assert.equal([...msgs[1].data], [12, 13, 14]);
  assert.equal([...msgs[2].data], [15, 16]);
  assert.ok(msgs[3].data.equals(Buffer.from(new Uint16Array([0x0102, 0x0304]).buffer)));
  assert.is(msgs[4].data, 'text from server');
  await closeClient(ws);
});

test('empty text and empty binary messages are delivered both ways', async () => {
  const server = await listen({ host: HOST, port: 0 });
  const seen = recordEcho(server);
  const ws = await wsConnect(urlFor(server));
  const r1 = await echoRoundTrip(ws, '');
  assert.equal(r1, { data: '', isBinary: false });
  const r2 = await echoRoundTrip(ws, Buffer.alloc(0));
  assert.is(r2.isBinary, true);
  assert.is(r2.data.length, 0);
  assert.is(seen[0].data, '');
  assert.is(seen[0].isBinary, false);
  assert.ok(Buffer.isBuffer(seen[1].data) && seen[1].data.length === 0);
  assert.is(seen[1].isBinary, true);
  await closeClient(ws);
});

test('1 MiB text (multi-byte UTF-8) and 1 MiB binary round-trip intact', async () => {
  const { server } = await echoServer();
  const ws = await wsConnect(urlFor(server));
  const unit = 'aé✓😀'; // 1 + 2 + 3 + 4 bytes
  const text = unit.repeat(Math.ceil(MiB / 10) + 1); // 10 UTF-8 bytes per unit: > 1 MiB
  assert.ok(Buffer.byteLength(text) > MiB);
  const t = await echoRoundTrip(ws, text, 10000, '1 MiB text echo');
  assert.is(t.isBinary, false);
  assert.is(t.data.length, text.length);
  assert.ok(t.data === text, 'text content differs');
  const bin = crypto.randomBytes(MiB);
  const b = await echoRoundTrip(ws, bin, 10000, '1 MiB binary echo');
  assert.is(b.isBinary, true);
  assert.is(b.data.length, MiB);
  assert.is(sha256(b.data), sha256(bin));
  await closeClient(ws);
});

test('default maxPayload accepts 16 MiB - 1 and exactly 16 MiB binary messages', async () => {
  const { server } = await echoServer();
  const ws = await wsConnect(urlFor(server));
  const big = crypto.randomBytes(16 * MiB);
  for (const size of [16 * MiB - 1, 16 * MiB]) {
    const payload = big.subarray(0, size);
    const r = await echoRoundTrip(ws, payload, 20000, `${size}-byte echo`);
    assert.is(r.isBinary, true);
    assert.is(r.data.length, size);
    assert.is(sha256(r.data), sha256(payload), `content hash of ${size}-byte echo`);
  }
  await closeClient(ws);
});

test('maxPayload is enforced: an oversized message closes the connection with 1009', async () => {
  const server = await listen({ host: HOST, port: 0, maxPayload: 1024 });
  const got = [];
  const connP = nextConnection(server);
  server.on('connection', (conn) =>
    conn.on('message', (d) => {
      got.push(d);
      conn.send(d);
    }),
  );
  const ws = await wsConnect(urlFor(server));
  const [conn] = await connP;
  const connErrors = [];
  conn.on('error', (err) => connErrors.push(err)); // an 'error' for the violation is allowed
  const ok = await echoRoundTrip(ws, Buffer.alloc(1024, 1));
  assert.is(ok.data.length, 1024, 'a message of exactly maxPayload is accepted');
  const serverClose = connClosed(conn);
  ws.send(Buffer.alloc(1025, 2));
  const { code } = await withTimeout(ws.closed, 5000, 'client close after oversized message');
  assert.is(code, 1009);
  const sc = await serverClose;
  assert.type(sc.code, 'number');
  assert.is(conn.isOpen, false);
  assert.is(got.length, 1, 'the oversized message must not be delivered');
});

test('1000 messages (alternating text/binary) arrive in order', async () => {
  const server = await listen({ host: HOST, port: 0 });
  const seen = recordEcho(server);
  const ws = await wsConnect(urlFor(server));
  const N = 1000;
  const replies = collectMessages(ws, N, 15000);
  for (let i = 0; i < N; i++) {
    if (i % 2) ws.send(Buffer.from(`b${i}`), { binary: true });
    else ws.send(`t${i}`);
  }
  const msgs = await replies;
  for (let i = 0; i < N; i++) {
    const m = msgs[i];
    if (i % 2) {
      assert.is(m.isBinary, true, `reply ${i} should be binary`);
      assert.is(m.data.toString(), `b${i}`, `reply ${i} out of order`);
    } else {
      assert.is(m.isBinary, false, `reply ${i} should be text`);
      assert.is(m.data, `t${i}`, `reply ${i} out of order`);
    }
  }
  assert.is(seen.length, N);
  assert.is(seen[N - 1].isBinary, true);
  assert.ok(Buffer.isBuffer(seen[N - 1].data));
  assert.is(seen[N - 2].data, `t${N - 2}`);
  await closeClient(ws);
});

// ---------------------------------------------------------------------------
// Closing connections
// ---------------------------------------------------------------------------

test('conn.close(4000, "bye"): client sees 4000/"bye", server connection closes cleanly', async () => {
  const server = await listen({ host: HOST, port: 0 });
  const connP = nextConnection(server);
  const ws = await wsConnect(urlFor(server));
  const [conn] = await connP;
  const serverClose = connClosed(conn);
  conn.close(4000, 'bye');
  const c = await withTimeout(ws.closed, 5000, 'client close event');
  assert.equal(c, { code: 4000, reason: 'bye' });
  const s = await serverClose;
  assert.is(s.code, 4000);
  assert.is(s.wasClean, true);
  assert.type(s.reason, 'string');
  assert.is(conn.isOpen, false);
  await waitFor(() => server.connectionCount === 0, {
    label: 'connectionCount 0',
    describe: () => `connectionCount=${server.connectionCount}`,
  });
});

test('client-initiated close(4001, reason): server connection gets (4001, reason, true)', async () => {
  const server = await listen({ host: HOST, port: 0 });
  const connP = nextConnection(server);
  const ws = await wsConnect(urlFor(server));
  const [conn] = await connP;
  const serverClose = connClosed(conn);
  ws.close(4001, 'client says bye ✓');
  const s = await serverClose;
  assert.equal(s, { code: 4001, reason: 'client says bye ✓', wasClean: true });
  assert.is(conn.isOpen, false);
  const c = await withTimeout(ws.closed, 5000, 'client close event');
  assert.is(c.code, 4001, 'server should echo the close code');
});

test('conn.terminate(): client sees 1006, server connection close is not clean', async () => {
  const server = await listen({ host: HOST, port: 0 });
  const connP = nextConnection(server);
  const ws = await wsConnect(urlFor(server));
  const [conn] = await connP;
  const serverClose = connClosed(conn);
  conn.terminate();
  const c = await withTimeout(ws.closed, 5000, 'client close event');
  assert.is(c.code, 1006);
  const s = await serverClose;
  assert.is(s.wasClean, false);
  assert.is(s.code, 1006);
  assert.is(conn.isOpen, false);
});

test('sending on a closed connection throws ERR_CONNECTION_CLOSED', async () => {
  const server = await listen({ host: HOST, port: 0 });
  const connP = nextConnection(server);
  const ws = await wsConnect(urlFor(server));
  const [conn] = await connP;
  const serverClose = connClosed(conn);
  ws.close(1000);
  await serverClose;
  let result, error;
  try {
    result = conn.send('too late');
  } catch (err) {
    error = err;
  }
  assert.instance(error, Error, `send() after 'close' returned ${result} instead of throwing`);
  assert.is(error.code, 'ERR_CONNECTION_CLOSED', `thrown error: ${error}`);
  await withTimeout(ws.closed, 5000, 'client close');
});

// ---------------------------------------------------------------------------
// Closing servers
// ---------------------------------------------------------------------------

test('server.close() with a connected client: client sees 1001, port freed, same port re-listens at once', async () => {
  const { server, conns } = await echoServer();
  const port = server.port;
  const ws = await wsConnect(urlFor(server));
  const r = await echoRoundTrip(ws, 'ping');
  assert.is(r.data, 'ping');
  const closeEvent = onceEvent(server, 'close', 5000, "server 'close' event");
  const connClose = connClosed(conns[0]);
  await withTimeout(server.close(), 5000, 'server.close()');
  assert.is(server.listening, false);
  assert.is(server.connectionCount, 0);
  await closeEvent;
  assert.equal(listenersOn(port), [], 'no listening socket may remain once close() resolved');
  const c = await withTimeout(ws.closed, 5000, 'client close event');
  assert.is(c.code, 1001);
  const sc = await connClose;
  assert.is(sc.code, 1001);
  const again = await listen({ host: HOST, port });
  assert.is(again.port, port);
  assert.is(again.bindAttempts, 1, 'immediate re-listen needs no retry');
  attachEcho(again);
  const ws2 = await wsConnect(urlFor(again));
  assert.is((await echoRoundTrip(ws2, 'again')).data, 'again');
  await closeClient(ws2);
});

test('server.close() is idempotent: concurrent and repeated calls all resolve', async () => {
  const { server } = await echoServer();
  const ws = await wsConnect(urlFor(server));
  let closeEvents = 0;
  server.on('close', () => closeEvents++);
  const closeEvent = onceEvent(server, 'close', 5000, "server 'close' event");
  const results = await withTimeout(
    Promise.all([server.close(), server.close()]),
    5000,
    'two concurrent close()',
  );
  assert.equal(results, [undefined, undefined]);
  await withTimeout(server.close(), 5000, 'third close()');
  assert.is(server.listening, false);
  await closeEvent;
  await withTimeout(server.close(), 5000, 'close() after the close event');
  assert.is(closeEvents, 1, "'close' is emitted once");
  assert.is((await withTimeout(ws.closed, 5000, 'client close')).code, 1001);
});

test('server.close() waits at most closeTimeoutMs for an unresponsive client, then terminates it', async () => {
  const server = await listen({ host: HOST, port: 0, closeTimeoutMs: 200 });
  const connP = nextConnection(server);
  const ws = await wsConnect(urlFor(server));
  const [conn] = await connP;
  conn.on('error', () => {}); // an 'error' for the timed-out peer is allowed
  const serverClose = connClosed(conn);
  ws.pause(); // never reads the close frame, so never answers it
  const t0 = performance.now();
  await withTimeout(server.close(), 3000, 'server.close() with an unresponsive client');
  const elapsed = performance.now() - t0;
  assert.ok(
    elapsed >= 150,
    `close() resolved after ${elapsed.toFixed(0)} ms, before closeTimeoutMs (200)`,
  );
  assert.ok(elapsed < 2000, `close() took ${elapsed.toFixed(0)} ms with closeTimeoutMs 200`);
  const sc = await serverClose;
  assert.is(sc.wasClean, false, "a close without the peer's answer is not clean");
  ws.resume();
  const c = await withTimeout(ws.closed, 5000, 'client close after resume');
  assert.ok(c.code === 1001 || c.code === 1006, `client close code ${c.code}`);
});

test('server[Symbol.asyncDispose]() closes the server and frees the port', async () => {
  const { server } = await echoServer();
  const port = server.port;
  const ws = await wsConnect(urlFor(server));
  assert.type(server[Symbol.asyncDispose], 'function');
  await withTimeout(server[Symbol.asyncDispose](), 5000, 'asyncDispose');
  assert.is(server.listening, false);
  // An exclusive plain TCP listener can take the port now.
  const holder = await netListen(port, HOST);
  assert.is(holder.address().port, port);
  await netClose(holder);
  assert.is((await withTimeout(ws.closed, 5000, 'client close')).code, 1001);
});

test('ref() and unref() return the server', async () => {
  const server = await listen({ host: HOST, port: 0 });
  assert.is(server.unref(), server);
  assert.is(server.ref(), server);
});

// ---------------------------------------------------------------------------
// Several servers
// ---------------------------------------------------------------------------

test('two servers in one process carry independent traffic', async () => {
  const a = await echoServer({}, { prefix: 'A:' });
  const b = await echoServer({}, { prefix: 'B:' });
  assert.is.not(a.server.port, b.server.port);
  const wa = await wsConnect(urlFor(a.server));
  const wb = await wsConnect(urlFor(b.server));
  const ra = collectMessages(wa, 50);
  const rb = collectMessages(wb, 50);
  for (let i = 0; i < 50; i++) {
    wa.send(`x${i}`);
    wb.send(`y${i}`);
  }
  const [ma, mb] = await Promise.all([ra, rb]);
  assert.equal(
    ma.map((m) => m.data),
    Array.from({ length: 50 }, (_, i) => `A:x${i}`),
  );
  assert.equal(
    mb.map((m) => m.data),
    Array.from({ length: 50 }, (_, i) => `B:y${i}`),
  );
  assert.is(a.conns.length, 1);
  assert.is(b.conns.length, 1);
  // Closing one leaves the other serving.
  await a.server.close();
  assert.is((await withTimeout(wa.closed, 5000, 'A client close')).code, 1001);
  assert.is((await echoRoundTrip(wb, 'still')).data, 'B:still');
  assert.is(b.server.listening, true);
  await closeClient(wb);
});

// ---------------------------------------------------------------------------
// IPv6
// ---------------------------------------------------------------------------

if (HAS_IPV6) {
  test("IPv6: host '::1' listens, serves and reports an IPv6 address", async () => {
    const { server } = await echoServer({ host: '::1' });
    assert.equal(server.address(), { address: '::1', family: 'IPv6', port: server.port });
    const listeners = listenersOn(server.port);
    assert.equal(
      listeners.map((l) => `${l.family} ${l.localAddress}`),
      ['IPv6 ::1'],
      JSON.stringify(listeners),
    );
    const connP = nextConnection(server);
    const ws = await wsConnect(`ws://[::1]:${server.port}/v6`);
    const [conn, request] = await connP;
    assert.is(request.remoteAddress, '::1');
    assert.is(conn.remoteAddress, '::1');
    assert.is(request.path, '/v6');
    assert.is((await echoRoundTrip(ws, 'six')).data, 'six');
    await closeClient(ws);
  });

  test("host '127.0.0.1' is not reachable over IPv6 (no dual-stack [::] bind)", async () => {
    const { server } = await echoServer({ host: HOST });
    assert.is(await tcpConnects(HOST, server.port), true);
    assert.is(
      await tcpConnects('::1', server.port),
      false,
      'server bound to 127.0.0.1 accepted a connection on [::1]',
    );
  });
} else {
  note('IPv6 loopback ::1 is not available on this machine: IPv6 tests skipped');
  test.skip("IPv6: host '::1' listens, serves and reports an IPv6 address");
  test.skip("host '127.0.0.1' is not reachable over IPv6 (no dual-stack [::] bind)");
}

// ---------------------------------------------------------------------------
// Errors and validation
// ---------------------------------------------------------------------------

test('bind to an address this machine does not have rejects with EADDRNOTAVAIL', async () => {
  const nonlocal = fs.readFileSync('/proc/sys/net/ipv4/ip_nonlocal_bind', 'utf8').trim();
  assert.is(nonlocal, '0', 'net.ipv4.ip_nonlocal_bind must be 0 for this test');
  const addr = '192.0.2.1'; // TEST-NET-1: never assigned to a host; only bind() is tried, nothing is sent
  const err = await captureRejection(
    () => lws.listen({ host: addr, port: 0, bindRetry: { retries: 0 } }),
    5000,
    'listen on a non-local address to reject',
  );
  assert.instance(err, Error);
  assert.is(err.code, 'EADDRNOTAVAIL', String(err));
  assert.is(err.syscall, 'bind');
  assert.is(err.address, addr);
  assert.is(err.port, 0);
  assert.is(err.attempts, 1);
  assert.is(
    err.errno,
    -os.constants.errno.EADDRNOTAVAIL,
    `errno ${err.errno}: expected -99: errno is negative, as in Node's own net errors`,
  );
});

for (const [label, options, Ctor] of [
  ['port -1', { port: -1 }, RangeError],
  ['port 65536', { port: 65536 }, RangeError],
  ['port 1.5', { port: 1.5 }, RangeError],
  ['port NaN', { port: NaN }, RangeError],
  ["port 'x'", { port: 'x' }, TypeError],
  ["port '8080' (string)", { port: '8080' }, TypeError],
  ['maxPayload -5', { maxPayload: -5 }, RangeError],
  ["maxPayload 'big'", { maxPayload: 'big' }, TypeError],
  ['closeTimeoutMs -1', { closeTimeoutMs: -1 }, RangeError],
  ['bindRetry.retries -1', { bindRetry: { retries: -1 } }, RangeError],
  ["reuseAddr 'yes'", { reuseAddr: 'yes' }, TypeError],
  ["protocols 'chat' (not an array)", { protocols: 'chat' }, TypeError],
]) {
  test(`listen({ ${label} }) rejects with ${Ctor.name}`, async () => {
    const err = await captureRejection(
      () => lws.listen({ host: HOST, ...options }),
      5000,
      `listen(${label}) to reject`,
    );
    assert.instance(err, Ctor, `got ${err?.name}: ${err?.message}`);
  });
}

test("listen({ host: 'not an ip' }) rejects with a clear error", async () => {
  const err = await captureRejection(
    () => lws.listen({ host: 'not an ip', port: 0 }),
    5000,
    'listen(invalid host) to reject',
  );
  assert.instance(err, Error);
  assert.ok(
    err instanceof TypeError || err.code === 'ERR_INVALID_ARG_VALUE',
    `got ${err.name} ${err.code}: ${err.message}`,
  );
  assert.ok(
    /host|not an ip/i.test(err.message),
    `message should name the host option or value: ${err.message}`,
  );
});

test('an already-aborted signal rejects listen with AbortError and binds nothing', async () => {
  const holder = await netListen(0, HOST);
  const port = holder.address().port;
  await netClose(holder); // a port known to have been free a moment ago
  const ac = new AbortController();
  ac.abort();
  const err = await captureRejection(
    () => lws.listen({ host: HOST, port, signal: ac.signal }),
    5000,
    'aborted listen to reject',
  );
  assert.is(err.name, 'AbortError', `got ${err.name}: ${err.message}`);
  assert.is(err.code, 'ABORT_ERR');
  assert.equal(listenersOn(port), [], 'an aborted listen must not leave a listener');
});

test('aborting a listen pending in bind retries rejects with AbortError', async () => {
  const holder = await netListen(0, HOST);
  const port = holder.address().port;
  const ac = new AbortController();
  const retries = [];
  try {
    const err = await captureRejection(
      () =>
        lws.listen({
          host: HOST,
          port,
          signal: ac.signal,
          bindRetry: {
            retries: 1000,
            minDelayMs: 20,
            maxDelayMs: 20,
            onRetry: (info) => {
              retries.push(info);
              if (retries.length === 2) ac.abort();
            },
          },
        }),
      5000,
      'listen aborted during retries to reject',
    );
    assert.is(err.name, 'AbortError', `got ${err.name}: ${err.message}`);
    assert.is(err.code, 'ABORT_ERR');
    assert.is(retries.length, 2, 'no retry after abort');
  } finally {
    await netClose(holder);
  }
});

test.after(exitWatchdog);
test.run();
