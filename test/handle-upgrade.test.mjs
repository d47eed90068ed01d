// Upgrades handed over from Node's own HTTP servers: server.handleUpgrade(), createServer()
// and attach(). A plain TCP socket moves to the service thread; a TLS socket of an
// https.Server, or any other Duplex, stays in JavaScript, which pumps its bytes. Every
// admission rule of listen() applies, requests that are not for node-lws stay with the HTTP
// server, and bad input gets a clear error or an HTTP answer without leaking descriptors.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { makeCert } from './support/certs.mjs';
import { patternBytes, sha256 } from './support/data.mjs';
import { httpServerFor, wrapInDuplex } from './support/http-server.mjs';
import { connClosed } from './support/lws.mjs';
import { collectMessages } from './support/messages.mjs';
import { rawTcpConnect } from './support/net.mjs';
import { describeFds, openFds } from './support/proc.mjs';
import { encodeFrame, OP, RawWsPeer, rawHttpExchange, upgradeRequest } from './support/raw-ws.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { onceEvent, thrownBy, waitFor, withTimeout } from './support/wait.mjs';
import {
  closeClient,
  echoRoundTrip,
  WebSocket,
  wsConnect,
  wsExpectReject,
} from './support/ws-client.mjs';

const MiB = 1024 * 1024;
const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-handover-'));
const TLS = makeCert(certDir, 'server');
process.on('exit', () => fs.rmSync(certDir, { recursive: true, force: true }));

const cleanups = cleanupsAfterEach(test);
const httpServer = httpServerFor(cleanups);

/** An lws server without its own socket, closed after the test. */
function lwsServer(options) {
  const server = lws.createServer(options);
  cleanups.push(() => server.close());
  return server;
}
/** attach() closed after the test. */
function attached(http, options) {
  const server = lws.attach(http, options);
  cleanups.push(() => server.close());
  return server;
}
function echo(server) {
  server.on('connection', (conn) => {
    conn.on('error', () => {});
    conn.on('message', (data, isBinary) => {
      if (conn.isOpen) conn.send(data, isBinary);
    });
  });
}
/** A ws client option set for the self-signed test certificate. */
const insecure = { rejectUnauthorized: false };

// ---------------------------------------------------------------------------
// Both paths: echo, close, what the application sees
// ---------------------------------------------------------------------------

for (const kind of ['plain', 'tls']) {
  const tls = kind === 'tls' ? TLS : undefined;
  const opts = kind === 'tls' ? insecure : {};

  test(`${kind}: attach(httpServer, { path }) echoes text and binary of every size, intact`, async () => {
    const { server: http, url } = await httpServer({ tls });
    const wss = attached(http, { path: '/ws' });
    echo(wss);
    const [connected] = await Promise.all([
      onceEvent(wss, 'connection'),
      wsConnect(url('/ws?room=1'), opts).then((ws) => {
        cleanups.push(() => closeClient(ws));
        return ws;
      }),
    ]).then(([c, ws]) => [c, ws]);
    const [conn, request] = connected;
    assert.is(request.path, '/ws?room=1');
    assert.is(request.httpRequest.url, '/ws?room=1', 'the IncomingMessage comes along');
    assert.is(request.headers.upgrade, 'websocket');
    assert.is(conn.remoteAddress, '127.0.0.1');
    assert.ok(conn.remotePort > 0);
    const ws = await wsConnect(url('/ws'), opts);
    cleanups.push(() => closeClient(ws));
    assert.equal((await echoRoundTrip(ws, 'hello')).data.toString(), 'hello');
    for (const size of [0, 125, 126, 65535, 65536, 3 * MiB]) {
      const payload = patternBytes(size, size + 1);
      const reply = await echoRoundTrip(ws, payload, 10000, `${size} B echo`);
      assert.is(reply.data.length, size);
      assert.is(sha256(reply.data), sha256(payload), `${size} B intact`);
    }
  });

  test(`${kind}: a message and a close right behind it both arrive (flush, then close)`, async () => {
    const { server: http, url } = await httpServer({ tls });
    const wss = attached(http);
    const payload = patternBytes(4 * MiB, 9);
    wss.on('connection', (conn) => {
      conn.send(payload);
      conn.close(4001, 'done');
    });
    const ws = new WebSocket(url('/'), opts);
    const got = collectMessages(ws, 1, 10000);
    const closed = new Promise((resolve) => ws.on('close', (c, r) => resolve([c, `${r}`])));
    const [msg] = await got;
    assert.is(sha256(msg.data), sha256(payload));
    assert.equal(await withTimeout(closed, 5000, 'client close'), [4001, 'done']);
  });

  test(`${kind}: server.close() closes handed-over connections with 1001 and detaches`, async () => {
    const { server: http, url } = await httpServer({ tls });
    const wss = lws.attach(http, { path: '/ws' });
    const ws = await wsConnect(url('/ws'), opts);
    assert.is(http.listenerCount('upgrade'), 1);
    await wss.close();
    assert.equal(await withTimeout(ws.closed, 5000, 'client close'), { code: 1001, reason: '' });
    assert.is(http.listenerCount('upgrade'), 0, "the 'upgrade' listener is gone");
  });

  test(`${kind}: requests that are not for node-lws stay with the HTTP server`, async () => {
    const { server: http, port, url } = await httpServer({ tls });
    attached(http, { path: '/ws' });
    const scheme = kind === 'tls' ? 'https' : 'http';
    // A plain request: the HTTP server's own handler.
    if (kind === 'plain') {
      const res = await fetch(`${scheme}://127.0.0.1:${port}/page`);
      assert.is(await res.text(), 'http ok');
    }
    // An upgrade for another path, with no other 'upgrade' listener: the request handler
    // answers it as an ordinary request.
    const other = await wsExpectReject(url('/elsewhere'), opts);
    assert.is(other.status, 200);
    assert.is(other.body, 'http ok');
  });
}

// ---------------------------------------------------------------------------
// Paths and the HTTP server's other listeners
// ---------------------------------------------------------------------------

test('several servers on one HTTP server, by path; one without a path takes the rest', async () => {
  const { server: http, url } = await httpServer({
    onRequest: (req, res) => {
      res.statusCode = 404;
      res.end(`no route for ${req.url}`);
    },
  });
  const a = attached(http, { path: '/a' });
  const b = attached(http, { path: '/b' });
  a.on('connection', (conn) => conn.send('A'));
  b.on('connection', (conn) => conn.send('B'));
  assert.is(http.listenerCount('upgrade'), 1, 'one router per HTTP server');
  for (const [p, expect] of [
    ['/a', 'A'],
    ['/b?x=1', 'B'],
  ]) {
    const ws = new WebSocket(url(p));
    const [m] = await collectMessages(ws, 1);
    assert.is(m.data.toString(), expect, p);
    await closeClient(ws);
  }
  const miss = await wsExpectReject(url('/c'));
  assert.is(miss.status, 404, 'the HTTP handler answers an unknown path');
  assert.is(miss.body, 'no route for /c');
  const rest = attached(http);
  rest.on('connection', (conn) => conn.send('rest'));
  const ws = new WebSocket(url('/c'));
  const [m] = await collectMessages(ws, 1);
  assert.is(m.data.toString(), 'rest');
  await closeClient(ws);
});

test("an unknown upgrade path is left alone when another 'upgrade' listener exists", async () => {
  const { server: http, url } = await httpServer();
  attached(http, { path: '/ws' });
  const seen = [];
  http.on('upgrade', (req, socket) => {
    if (req.url === '/ws') return;
    seen.push(req.url);
    socket.end('HTTP/1.1 418 Teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  const r = await wsExpectReject(url('/mine'));
  assert.is(r.status, 418);
  assert.equal(seen, ['/mine']);
});

// ---------------------------------------------------------------------------
// Admission: the same rules as on listen()
// ---------------------------------------------------------------------------

test('verify (async) sees the IncomingMessage; a refusal is answered and reported', async () => {
  const { server: http, url } = await httpServer();
  const seen = [];
  const wss = attached(http, {
    verify: async (request) => {
      seen.push([request.path, request.httpRequest?.headers['x-token']]);
      await new Promise((r) => setImmediate(r));
      return request.httpRequest?.headers['x-token'] === 'ok'
        ? true
        : { status: 401, headers: { 'WWW-Authenticate': 'Token' }, body: 'who are you?' };
    },
  });
  const refused = onceEvent(wss, 'upgradeError');
  const r = await wsExpectReject(url('/v'), { headers: { 'x-token': 'bad' } });
  assert.is(r.status, 401);
  assert.is(r.headers['www-authenticate'], 'Token');
  assert.is(r.body, 'who are you?');
  const [err, req] = await refused;
  assert.is(err.code, 'ERR_UPGRADE_REFUSED');
  assert.is(err.status, 401);
  assert.is(req.url, '/v');
  const ws = await wsConnect(url('/v'), { headers: { 'x-token': 'ok' } });
  await closeClient(ws);
  assert.equal(seen, [
    ['/v', 'bad'],
    ['/v', 'ok'],
  ]);
});

test('allowedOrigins, maxConnections and path are enforced natively', async () => {
  const { server: http, url, port } = await httpServer();
  const wss = lwsServer({ allowedOrigins: ['https://good.example'], maxConnections: 1 });
  http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head));
  const bad = await wsExpectReject(url('/'), { origin: 'https://evil.example' });
  assert.is(bad.status, 403);
  const first = await wsConnect(url('/'), { origin: 'https://good.example' });
  const full = await wsExpectReject(url('/'), { origin: 'https://good.example' });
  assert.is(full.status, 503);
  assert.is(full.headers['retry-after'], '1');
  await closeClient(first);
  // path: createServer({ path }) answers 404 for another path, as listen() does.
  const pathed = lwsServer({ path: '/only' });
  http.removeAllListeners('upgrade');
  http.on('upgrade', (req, socket, head) => pathed.handleUpgrade(req, socket, head));
  const { head } = await rawHttpExchange(port, upgradeRequest(port, { path: '/nope' }));
  assert.is(head.status, 404);
});

test('handleProtocols, a headers function and permessage-deflate', async () => {
  const { server: http, url } = await httpServer();
  const wss = attached(http, {
    handleProtocols: (offered, request) =>
      request.httpRequest?.url === '/p' ? (offered.find((p) => p === 'two') ?? false) : false,
    headers: (request, protocol) => ({
      'Set-Cookie': [`proto=${protocol}`, 'second=1'],
      'X-Path': request.path,
    }),
    perMessageDeflate: { threshold: 0 },
  });
  echo(wss);
  const ws = new WebSocket(url('/p'), ['one', 'two'], { perMessageDeflate: true });
  const upgraded = onceEvent(ws, 'upgrade');
  const opened = onceEvent(ws, 'open');
  const [res] = await upgraded;
  await opened;
  assert.is(ws.protocol, 'two');
  assert.is(ws.extensions, 'permessage-deflate');
  assert.equal(res.headers['set-cookie'], ['proto=two', 'second=1']);
  assert.is(res.headers['x-path'], '/p');
  const text = 'compress me '.repeat(10000);
  ws.send(text);
  const [m] = await collectMessages(ws, 1);
  assert.is(m.data.toString(), text);
  await closeClient(ws);
});

test('heartbeat and receive flow control on a moved socket and on a pumped stream', async () => {
  for (const kind of ['plain', 'tls']) {
    const tls = kind === 'tls' ? TLS : undefined;
    const { server: http, url } = await httpServer({ tls });
    let upgradeSocket;
    http.on('upgrade', (_req, socket) => {
      upgradeSocket = socket;
    });
    const wss = attached(http, {
      heartbeat: { intervalMs: 30, timeoutMs: 2000 },
      receiveHighWaterMark: 64 * 1024,
    });
    const connected = onceEvent(wss, 'connection');
    const ws = await wsConnect(url('/'), kind === 'tls' ? insecure : {});
    const [conn] = await connected;
    await onceEvent(ws, 'ping', 5000, `${kind}: a heartbeat ping`);
    conn.pause();
    const got = collectMessages(conn, 200, 10000);
    const chunk = Buffer.alloc(16 * 1024, 1);
    for (let i = 0; i < 200; i++) {
      chunk.writeUInt32BE(i, 0);
      ws.send(chunk);
    }
    if (kind === 'tls') {
      // Reading stops in JavaScript too: the pump pauses the TLS socket.
      await waitFor(() => upgradeSocket.isPaused(), { label: 'the TLS socket paused' });
    }
    conn.resume();
    const msgs = await got;
    assert.equal(
      msgs.map((m) => m.data.readUInt32BE(0)),
      [...Array(200).keys()],
      `${kind}: every message, in order, after resume()`,
    );
    await closeClient(ws);
    await wss.close();
  }
});

test('pumped stream: backpressure of the stream reaches send() and bufferedAmount', async () => {
  const { server: http, url } = await httpServer({ tls: TLS });
  let tlsSocket;
  http.on('upgrade', (_req, socket) => {
    tlsSocket = socket;
  });
  const wss = attached(http, { highWaterMark: 256 * 1024 });
  const connected = onceEvent(wss, 'connection');
  const ws = await wsConnect(url('/'), insecure);
  const [conn] = await connected;
  ws._socket.pause(); // the client stops reading: the server's TLS socket fills up
  const payload = patternBytes(MiB, 3);
  const count = 32;
  let accepted = 0;
  for (let i = 0; i < count; i++) if (conn.send(payload)) accepted++;
  assert.ok(accepted < count, 'send() says false past highWaterMark');
  await waitFor(() => tlsSocket.writableNeedDrain, { label: "the TLS socket's buffer is full" });
  // The stream holds at most the pump's window; the rest waits in the native queue, where
  // bufferedAmount counts it (the kernel's buffers take a few MiB at most).
  assert.ok(tlsSocket.writableLength <= 2 * MiB, `stream holds ${tlsSocket.writableLength} B`);
  assert.ok(
    conn.bufferedAmount > 8 * MiB,
    `the native queue holds what the stream cannot take (bufferedAmount ${conn.bufferedAmount})`,
  );
  const drained = onceEvent(conn, 'drain', 10000);
  const got = collectMessages(ws, count, 20000);
  ws._socket.resume();
  const msgs = await got;
  await drained;
  assert.ok(
    msgs.every((m) => sha256(m.data) === sha256(payload)),
    `all ${count} intact`,
  );
  assert.is(conn.bufferedAmount, 0);
  await closeClient(ws);
});

test('any Duplex: a stream of the application is pumped like a TLS socket', async () => {
  const { server: http, url } = await httpServer();
  const wss = lwsServer();
  echo(wss);
  http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, wrapInDuplex(socket), head));
  const ws = await wsConnect(url('/'));
  const payload = patternBytes(2 * MiB, 5);
  const reply = await echoRoundTrip(ws, payload, 10000);
  assert.is(sha256(reply.data), sha256(payload));
  const [conn] = wss.connections; // it echoed: the server has it
  const closed = connClosed(conn);
  await closeClient(ws, 4002, 'bye');
  assert.equal(await closed, { code: 4002, reason: 'bye', wasClean: true });
});

test('handleUpgrade(req, socket, head, callback): the callback instead of the event', async () => {
  const { server: http, url } = await httpServer();
  const wss = lwsServer();
  let events = 0;
  wss.on('connection', () => events++);
  const got = new Promise((resolve) => {
    http.on('upgrade', (req, socket, head) =>
      wss.handleUpgrade(req, socket, head, (conn, request) => resolve({ conn, request, req })),
    );
  });
  const ws = await wsConnect(url('/cb'));
  const { conn, request, req } = await withTimeout(got, 5000, 'handleUpgrade callback');
  assert.is(request.httpRequest, req);
  assert.ok(conn.isOpen);
  assert.is(events, 0, "no 'connection' event when a callback is given");
  await closeClient(ws);
});

// ---------------------------------------------------------------------------
// The head, and bad input
// ---------------------------------------------------------------------------

test('a head holding part of a frame: the frame completes from the socket', async () => {
  const { server: http, port } = await httpServer();
  const wss = lwsServer();
  const heads = [];
  http.on('upgrade', (req, socket, head) => {
    heads.push(head.length);
    wss.handleUpgrade(req, socket, head);
  });
  const frame = encodeFrame({ opcode: OP.text, payload: Buffer.from('split across the head') });
  const socket = await rawTcpConnect(port);
  cleanups.push(() => socket.destroy());
  const peer = new RawWsPeer(socket);
  const conn = new Promise((resolve) => wss.once('connection', resolve));
  socket.write(Buffer.concat([Buffer.from(upgradeRequest(port)), frame.subarray(0, 5)]));
  const head = await peer.waitHead();
  assert.is(head.status, 101);
  const c = await withTimeout(conn, 5000, 'connection');
  const got = collectMessages(c, 1);
  socket.write(frame.subarray(5));
  const [m] = await got;
  assert.is(m.data, 'split across the head');
  assert.equal(heads, [5], 'the first 5 bytes of the frame came in `head`');
});

test('bad input: destroyed socket, not an upgrade, second hand-over, wrong types; fds back to baseline', async () => {
  const { server: http, port } = await httpServer({
    onRequest: (req, res) => {
      if (req.url === '/hand-over-anyway') {
        wss.handleUpgrade(req, req.socket, Buffer.alloc(0));
        return;
      }
      res.end('ok');
    },
  });
  const wss = lwsServer();
  // Warm up (the native context, the first connection) before counting descriptors.
  {
    const warm = lws.attach(http, { path: '/warm' });
    const ws = await wsConnect(`ws://127.0.0.1:${port}/warm`);
    await closeClient(ws);
    await warm.close();
  }
  const baseline = openFds();

  const errors = [];
  wss.on('upgradeError', (err, req) => errors.push([err.code, err.status, req.url]));
  const thrown = [];
  http.on('upgrade', (req, socket, head) => {
    if (req.url === '/destroyed') {
      socket.destroy();
      wss.handleUpgrade(req, socket, head);
      return;
    }
    if (req.url === '/twice') {
      wss.handleUpgrade(req, socket, head);
      thrown.push(thrownBy(() => wss.handleUpgrade(req, socket, head), 'second hand-over'));
      return;
    }
    thrown.push(thrownBy(() => wss.handleUpgrade({}, socket, head), 'a bad request'));
    thrown.push(thrownBy(() => wss.handleUpgrade(req, 'socket', head), 'a bad socket'));
    thrown.push(thrownBy(() => wss.handleUpgrade(req, socket, 'head'), 'a bad head'));
    socket.destroy();
  });

  // 1. A socket destroyed before the hand-over: reported, nothing thrown.
  const wsClosed = (ws) => new Promise((resolve) => ws.once('close', resolve));
  const d = new WebSocket(`ws://127.0.0.1:${port}/destroyed`);
  d.on('error', () => {});
  await withTimeout(wsClosed(d), 5000, 'client of /destroyed closed');
  // 2. Not an upgrade: node-lws answers it (426, as on its own listener).
  const plain = await rawHttpExchange(
    port,
    'GET /hand-over-anyway HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  );
  assert.is(plain.head.status, 426);
  // 3. A second hand-over of the same socket throws; the first one goes on.
  const twice = await wsConnect(`ws://127.0.0.1:${port}/twice`);
  assert.is(thrown[0].code, 'ERR_SOCKET_HANDED_OVER');
  await closeClient(twice);
  // 4. Wrong types: TypeError with a code.
  const w = new WebSocket(`ws://127.0.0.1:${port}/types`);
  w.on('error', () => {});
  await withTimeout(wsClosed(w), 5000, 'client of /types closed');
  assert.equal(
    thrown.slice(1).map((e) => [e.name, e.code]),
    [
      ['TypeError', 'ERR_INVALID_ARG_TYPE'],
      ['TypeError', 'ERR_INVALID_ARG_TYPE'],
      ['TypeError', 'ERR_INVALID_ARG_TYPE'],
    ],
  );
  await waitFor(() => errors.length >= 2, { label: 'two upgradeError events' });
  assert.equal(errors, [
    ['ERR_SOCKET_CLOSED', undefined, '/destroyed'],
    ['ERR_UPGRADE_REFUSED', 426, '/hand-over-anyway'],
  ]);
  await waitFor(() => openFds() <= baseline, {
    label: `fds back to ${baseline}`,
    describe: () => `${openFds()} open: ${describeFds()}`,
  });
});

test('an upgrade pending in verify when the server closes, and handleUpgrade after close()', async () => {
  const { server: http, port, url } = await httpServer();
  let verifying;
  const called = new Promise((r) => {
    verifying = r;
  });
  const wss = lwsServer({
    verify: () => {
      verifying();
      return new Promise(() => {}); // never decides
    },
  });
  http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head));
  const socket = await rawTcpConnect(port);
  cleanups.push(() => socket.destroy());
  const peer = new RawWsPeer(socket);
  const dropped = onceEvent(wss, 'upgradeError');
  socket.write(upgradeRequest(port));
  await withTimeout(called, 5000, 'verify called');
  await wss.close();
  const [err, req] = await dropped;
  assert.is(err.code, 'ECONNRESET');
  assert.is(req.url, '/');
  await peer.assertTcpClosed('of the pending upgrade', 5000);
  const closedErr = onceEvent(wss, 'upgradeError');
  const r = await wsExpectReject(url('/late'));
  assert.is(r.status, 503);
  assert.is((await closedErr)[0].code, 'ERR_SERVER_CLOSED');
});

test('a worker ending with a pumped connection open: the peer sees the close, fds come back', async () => {
  const { Worker } = await import('node:worker_threads');
  const baseline = openFds();
  // The worker's node-lws context is torn down with a JsWire connection open (it has no lws
  // wsi for lws_context_destroy to close: the teardown closes it).
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads');
    const http = require('node:http');
    const { Duplex } = require('node:stream');
    const lws = require(workerData.dist);
    const wss = lws.createServer();
    wss.on('connection', (c) => c.on('message', (d, b) => c.send(d, b)));
    const srv = http.createServer();
    srv.on('upgrade', (req, socket, head) => {
      const d = new Duplex({
        read() { socket.resume(); },
        write(chunk, _e, cb) { socket.write(chunk, cb); },
        final(cb) { socket.end(); cb(); },
        destroy(err, cb) { socket.destroy(); cb(err); },
      });
      socket.on('data', (c) => { if (!d.push(c)) socket.pause(); });
      socket.on('end', () => d.push(null));
      socket.on('error', () => d.destroy());
      wss.handleUpgrade(req, d, head);
    });
    srv.listen(0, '127.0.0.1', () => parentPort.postMessage(srv.address().port));
    `,
    { eval: true, workerData: { dist: path.join(process.cwd(), 'dist', 'index.js') } },
  );
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  const [port] = await onceEvent(worker, 'message', 10000, 'worker listening');
  const ws = await wsConnect(`ws://127.0.0.1:${port}/`);
  assert.is((await echoRoundTrip(ws, 'through the worker')).data.toString(), 'through the worker');
  await worker.terminate();
  await withTimeout(exited, 5000, 'worker exit');
  const { code } = await withTimeout(ws.closed, 5000, 'client sees the close');
  assert.is(code, 1006, 'dropped with the worker: no closing handshake');
  await waitFor(() => openFds() <= baseline, {
    label: `fds back to ${baseline}`,
    describe: () => `${openFds()} open: ${describeFds()}`,
  });
});

test('options: socket options are refused without a socket; attach() checks its server', () => {
  for (const [name, value] of [
    ['port', 1234],
    ['host', '127.0.0.1'],
    ['tls', { cert: 'x', key: 'y' }],
    ['reusePort', true],
  ]) {
    const err = thrownBy(() => lws.createServer({ [name]: value }), name);
    assert.is(err.code, 'ERR_INVALID_ARG_VALUE', name);
    assert.match(err.message, name);
  }
  assert.is(thrownBy(() => lws.attach(null)).code, 'ERR_INVALID_ARG_TYPE');
  assert.is(thrownBy(() => lws.createServer({ maxPayload: -1 })).code, 'ERR_OUT_OF_RANGE');
});

test('a server without a socket: port 0, listening once started, closes', async () => {
  // It holds no reference on the event loop: exitWatchdog (below) checks that the process
  // exits by itself after the last test.
  const server = lws.createServer();
  assert.is(server.port, 0);
  await waitFor(() => server.listening, { label: 'started' });
  await server.close();
  assert.not.ok(server.listening);
});

test.after(exitWatchdog);
test.run();
