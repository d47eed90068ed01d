// The node-lws client: connect() against node-lws and `ws` servers. Round trips
// of every message kind and size, subprotocols, headers, every connect error
// (with timing where it matters), closing from either side, backpressure,
// async iteration, ping/pong, maxPayload, and reconnect with its send queue.

import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocketServer } from 'ws';
import * as lws from '../dist/index.mjs';
import { patternBytes, sha256 } from './support/data.mjs';
import { connClosed, listenFor, transportRoundTrip } from './support/lws.mjs';
import { nextMessage } from './support/messages.mjs';
import { freePort, hasIPv6Loopback } from './support/net.mjs';
import { rawWsServer } from './support/raw-ws.mjs';
import { cleanupsAfterEach, exitWatchdog, note } from './support/suite.mjs';
import {
  captureRejection,
  msSince,
  onceEvent,
  thrownBy,
  waitFor,
  withTimeout,
} from './support/wait.mjs';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;
const HAS_IPV6 = await hasIPv6Loopback();

// ---------------------------------------------------------------------------
// Bookkeeping: everything a test opens is closed after it.
// ---------------------------------------------------------------------------

const cleanups = cleanupsAfterEach(test);

const listen = listenFor(cleanups, { host: HOST, port: 0 });

/** node-lws echo server; `conns` / `requests` collect what it saw. */
async function lwsEchoServer(options = {}) {
  const server = await listen(options);
  const conns = [];
  const requests = [];
  server.on('connection', (conn, req) => {
    conns.push(conn);
    requests.push(req);
    conn.on('error', () => {});
    conn.on('message', (data, isBinary) => {
      if (conn.isOpen) conn.send(data, isBinary);
    });
  });
  return { server, conns, requests, url: `ws://${HOST}:${server.port}` };
}

/** `ws` echo server on port 0; `sockets` / `requests` collect what it saw. */
async function wsEchoServer(options = {}) {
  const wss = new WebSocketServer({ host: HOST, port: 0, ...options });
  await new Promise((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const sockets = [];
  const requests = [];
  wss.on('connection', (ws, req) => {
    sockets.push(ws);
    requests.push(req);
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  cleanups.push(
    () =>
      new Promise((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  );
  return { wss, sockets, requests, url: `ws://${HOST}:${wss.address().port}` };
}

/** Register a client transport for clean-up; swallow late 'error' events. */
function track(t) {
  t.on('error', () => {});
  cleanups.push(async () => {
    if (t.readyState !== 'closed') t.terminate();
  });
  return t;
}

async function connect(url, options) {
  return track(await withTimeout(lws.connect(url, options), 10000, `connect(${url})`));
}

/** A raw TCP server that accepts and reads, but never answers. */
async function silentServer() {
  const sockets = [];
  const srv = net.createServer((s) => {
    s.received = '';
    s.on('data', (d) => {
      s.received += d.toString('latin1');
    });
    s.on('error', () => {});
    s.closedP = new Promise((resolve) => s.once('close', resolve));
    sockets.push(s);
  });
  await new Promise((resolve) => srv.listen(0, HOST, resolve));
  cleanups.push(
    () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  );
  return { srv, sockets, port: srv.address().port };
}

function kind(payload) {
  return typeof payload === 'string'
    ? `text(${Buffer.byteLength(payload)})`
    : `binary(${payload.byteLength})`;
}

/** Round-trip each payload; check kind and content of each reply. */
async function roundTrips(t, payloads) {
  for (const payload of payloads) {
    const r = await transportRoundTrip(t, payload, 15000, `echo of ${kind(payload)}`);
    if (typeof payload === 'string') {
      assert.is(r.isBinary, false, `${kind(payload)}: isBinary`);
      assert.type(r.data, 'string');
      assert.is(r.data.length, payload.length, `${kind(payload)}: length`);
      assert.ok(r.data === payload, `${kind(payload)}: content differs`);
    } else {
      const expected = Buffer.from(
        payload.buffer ?? payload,
        payload.byteOffset ?? 0,
        payload.byteLength,
      );
      assert.is(r.isBinary, true, `${kind(payload)}: isBinary`);
      assert.ok(Buffer.isBuffer(r.data), `${kind(payload)}: a Buffer`);
      assert.is(r.data.length, expected.length, `${kind(payload)}: length`);
      assert.is(sha256(r.data), sha256(expected), `${kind(payload)}: content differs`);
    }
  }
}

const PAYLOADS = () => [
  'héllo ✓ from the node-lws client',
  Buffer.from([0, 1, 2, 127, 128, 254, 255]),
  '',
  Buffer.alloc(0),
  new Uint8Array([9, 8, 7]).buffer, // ArrayBuffer → binary
  new Uint16Array([0x0102, 0x0304]), // ArrayBufferView → binary
  patternBytes(MiB, 1),
  '€'.repeat(Math.floor(MiB / 3)), // ~1 MiB of 3-byte UTF-8
  patternBytes(16 * MiB, 2),
];

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

test('connect() to a node-lws server: open transport with address, port, url; round trips of every kind and size up to 16 MiB', async () => {
  const { url, conns, requests } = await lwsEchoServer();
  const t = await connect(new URL(`${url}/echo?a=1`));
  assert.instance(t, lws.ClientTransport);
  assert.is(t.readyState, 'open');
  assert.is(t.isOpen, true);
  assert.is(t.remoteAddress, HOST);
  assert.is(t.remotePort, Number(new URL(url).port));
  assert.is(t.protocol, '');
  assert.is(t.url, `${url}/echo?a=1`);
  assert.is(t.bufferedAmount, 0);
  await roundTrips(t, PAYLOADS());
  await waitFor(() => requests.length === 1, { label: 'server connection event' });
  assert.is(requests[0].path, '/echo?a=1');
  assert.is(requests[0].headers.host, `${HOST}:${t.remotePort}`);
  assert.is(conns.length, 1);
  const c = connClosed(t);
  t.close();
  assert.is((await c).code, 1000);
});

test('connect() to a ws server: round trips of every kind and size up to 16 MiB', async () => {
  const { url, requests } = await wsEchoServer({ maxPayload: 64 * MiB });
  const t = await connect(`${url}/ws-echo`);
  assert.is(t.readyState, 'open');
  await roundTrips(t, PAYLOADS());
  assert.is(requests.length, 1);
  assert.is(requests[0].url, '/ws-echo');
  assert.is(requests[0].headers['sec-websocket-version'], '13');
  const c = connClosed(t);
  t.close(1000, 'bye');
  assert.equal(await c, { code: 1000, reason: 'bye', wasClean: true });
});

test('send(string, true) sends binary; send(Buffer, false) sends text', async () => {
  const { url, conns } = await lwsEchoServer();
  const t = await connect(url);
  const seen = [];
  await waitFor(() => conns.length === 1, { label: 'server connection' });
  conns[0].on('message', (data, isBinary) => seen.push({ data, isBinary }));
  const r1 = await transportRoundTrip(t, 'abc', 5000);
  t.send('as binary', true);
  const r2 = await nextMessage(t);
  t.send(Buffer.from('as text ✓'), false);
  const r3 = await nextMessage(t);
  assert.equal(r1, { data: 'abc', isBinary: false });
  assert.is(r2.isBinary, true);
  assert.is(r2.data.toString(), 'as binary');
  assert.equal(r3, { data: 'as text ✓', isBinary: false });
  assert.is(seen[1].isBinary, true);
  assert.is(seen[2].isBinary, false);
  assert.is(seen[2].data, 'as text ✓');
});

// ---------------------------------------------------------------------------
// Handshake: subprotocols, headers, origin
// ---------------------------------------------------------------------------

test("subprotocols: node-lws server ['acip'], client offers ['x','acip'] → 'acip' on both sides", async () => {
  const { url, conns, requests } = await lwsEchoServer({ protocols: ['acip'] });
  const t = await connect(url, { protocols: ['x', 'acip'] });
  assert.is(t.protocol, 'acip');
  await waitFor(() => conns.length === 1, { label: 'server connection' });
  assert.is(conns[0].protocol, 'acip');
  assert.is(requests[0].headers['sec-websocket-protocol'], 'x, acip');
  assert.is((await transportRoundTrip(t, 'proto')).data, 'proto');
});

test("subprotocols: ws server picks 'acip' of ['x','acip']", async () => {
  const { url, sockets } = await wsEchoServer({
    handleProtocols: (protocols) => (protocols.has('acip') ? 'acip' : false),
  });
  const t = await connect(url, { protocols: ['x', 'acip'] });
  assert.is(t.protocol, 'acip');
  assert.is(sockets[0].protocol, 'acip');
});

test('custom headers, origin and path arrive at a node-lws server', async () => {
  const { url, requests } = await lwsEchoServer();
  const t = await connect(`${url}/p/q?r=s&t=u`, {
    headers: { 'X-Test-Header': 'abc 123', Authorization: 'Bearer t0k3n' },
    origin: 'https://app.example.test',
  });
  await waitFor(() => requests.length === 1, { label: 'server connection' });
  const h = requests[0].headers;
  assert.is(h['x-test-header'], 'abc 123');
  assert.is(h.authorization, 'Bearer t0k3n');
  assert.is(h.origin, 'https://app.example.test');
  assert.is(requests[0].path, '/p/q?r=s&t=u');
  assert.is(String(h.upgrade).toLowerCase(), 'websocket');
  assert.is(h['sec-websocket-version'], '13');
  assert.match(h['sec-websocket-key'] ?? '', /^[A-Za-z0-9+/]{22}==$/);
  assert.is((await transportRoundTrip(t, 'h')).data, 'h');
});

test('custom headers and origin arrive at a ws server', async () => {
  const { url, requests } = await wsEchoServer();
  await connect(url, {
    headers: { 'X-Another': 'value with spaces' },
    origin: 'http://origin.test:8080',
  });
  assert.is(requests[0].headers['x-another'], 'value with spaces');
  assert.is(requests[0].headers.origin, 'http://origin.test:8080');
});

test("connect('ws://localhost:port') reaches a server on 127.0.0.1", async () => {
  const { server } = await lwsEchoServer();
  const t = await connect(`ws://localhost:${server.port}/`);
  assert.is(t.remoteAddress, HOST);
  assert.is((await transportRoundTrip(t, 'via localhost')).data, 'via localhost');
});

if (HAS_IPV6) {
  test('connect to an IPv6 literal ws://[::1]:port', async () => {
    const { server } = await lwsEchoServer({ host: '::1' });
    const t = await connect(`ws://[::1]:${server.port}/six`);
    assert.is(t.remoteAddress, '::1');
    assert.is(t.remotePort, server.port);
    assert.is((await transportRoundTrip(t, 'six')).data, 'six');
  });
} else {
  note('no IPv6 loopback: IPv6 client test skipped');
  test.skip('connect to an IPv6 literal ws://[::1]:port');
}

// ---------------------------------------------------------------------------
// Connect errors
// ---------------------------------------------------------------------------

test('ECONNREFUSED: rejects at once (not after timeoutMs) with errno, syscall, address, port', async () => {
  const port = await freePort(HOST);
  const t0 = performance.now();
  const err = await captureRejection(
    () => lws.connect(`ws://${HOST}:${port}/`),
    6000,
    'connect to a closed port to reject',
  );
  const elapsed = msSince(t0);
  note(`ECONNREFUSED after ${elapsed} ms`);
  assert.instance(err, Error);
  assert.is(err.code, 'ECONNREFUSED', `${err.code}: ${err.message}`);
  assert.is(err.errno, -os.constants.errno.ECONNREFUSED);
  assert.is(err.syscall, 'connect');
  assert.is(err.address, HOST);
  assert.is(err.port, port);
  assert.ok(elapsed < 200, `ECONNREFUSED took ${elapsed} ms (must be immediate, not a timeout)`);
});

test('ETIMEDOUT: a TCP server that never answers the upgrade → rejects after timeoutMs, socket closed', async () => {
  const { sockets, port } = await silentServer();
  const t0 = performance.now();
  const err = await captureRejection(
    () => lws.connect(`ws://${HOST}:${port}/slow`, { timeoutMs: 300 }),
    5000,
    'connect to a silent server to reject',
  );
  const elapsed = msSince(t0);
  note(`ETIMEDOUT after ${elapsed} ms (timeoutMs 300)`);
  assert.instance(err, Error);
  assert.is(err.code, 'ETIMEDOUT', `${err.code}: ${err.message}`);
  assert.ok(elapsed >= 250, `rejected after ${elapsed} ms, before timeoutMs`);
  assert.ok(elapsed < 2000, `rejected after ${elapsed} ms, long after timeoutMs 300`);
  // The client did send its upgrade request, and dropped the TCP connection on timeout.
  assert.is(sockets.length, 1, 'one TCP connection');
  assert.match(sockets[0].received, /^GET \/slow HTTP\/1\.1\r\n/);
  assert.match(sockets[0].received, /\r\nupgrade: websocket\r\n/i);
  assert.match(sockets[0].received, /\r\nsec-websocket-key: /i);
  await withTimeout(sockets[0].closedP, 2000, 'client to close the timed-out TCP connection');
});

test('ENOTFOUND: unknown host name', async () => {
  const t0 = performance.now();
  const err = await captureRejection(
    () => lws.connect('ws://no-such-host.invalid:8080/', { timeoutMs: 10000 }),
    15000,
    'connect to an unknown host to reject',
  );
  note(`ENOTFOUND after ${msSince(t0)} ms`);
  assert.instance(err, Error);
  assert.is(err.code, 'ENOTFOUND', `${err.code}: ${err.message}`);
  assert.match(err.message, /no-such-host\.invalid/);
});

test('ERR_HANDSHAKE: a plain http server answering 403 → status 403', async () => {
  const srv = http.createServer((_req, res) => {
    res.writeHead(403, { 'content-type': 'text/plain' });
    res.end('forbidden');
  });
  await new Promise((resolve) => srv.listen(0, HOST, resolve));
  cleanups.push(
    () =>
      new Promise((resolve) => {
        srv.closeAllConnections();
        srv.close(() => resolve());
      }),
  );
  const t0 = performance.now();
  const err = await captureRejection(
    () => lws.connect(`ws://${HOST}:${srv.address().port}/`),
    6000,
    'connect to a 403 server to reject',
  );
  assert.instance(err, Error);
  assert.is(err.code, 'ERR_HANDSHAKE', `${err.code}: ${err.message}`);
  assert.is(err.status, 403);
  assert.match(err.message, /403/);
  assert.ok(msSince(t0) < 2000, `took ${msSince(t0)} ms`);
});

test('ERR_HANDSHAKE: a ws server rejecting the client (verifyClient) → status 401', async () => {
  const { url } = await wsEchoServer({ verifyClient: () => false });
  const err = await captureRejection(() => lws.connect(url), 6000, 'connect to reject');
  assert.is(err.code, 'ERR_HANDSHAKE', `${err.code}: ${err.message}`);
  assert.is(err.status, 401);
});

test('ERR_HANDSHAKE: a 101 answer with a wrong Sec-WebSocket-Accept is refused', async () => {
  const raw = await rawWsServer({
    host: HOST,
    respond: () =>
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n',
  });
  cleanups.push(() => raw.close());
  const err = await captureRejection(
    () => lws.connect(raw.url(), { timeoutMs: 3000 }),
    6000,
    'connect with a bad accept key to reject',
  );
  assert.is(err.code, 'ERR_HANDSHAKE', `${err.code}: ${err.message}`);
});

test('ERR_PROTOCOL: protocols offered, node-lws server (no protocols configured) chose none', async () => {
  const { url } = await lwsEchoServer();
  const err = await captureRejection(
    () => lws.connect(url, { protocols: ['x'] }),
    6000,
    'connect to reject',
  );
  assert.instance(err, Error);
  assert.is(err.code, 'ERR_PROTOCOL', `${err.code}: ${err.message}`);
});

test('ERR_PROTOCOL: ws server answers a protocol that was not offered', async () => {
  const { url, sockets } = await wsEchoServer({ handleProtocols: () => 'zzz' });
  const err = await captureRejection(
    () => lws.connect(url, { protocols: ['x', 'acip'] }),
    6000,
    'connect to reject',
  );
  assert.is(err.code, 'ERR_PROTOCOL', `${err.code}: ${err.message}`);
  assert.match(err.message, /zzz/);
  // The client does not keep the connection it refused.
  await waitFor(() => sockets.length === 1 && sockets[0].readyState === 3, {
    label: 'server side of the refused connection to close',
    describe: () => `sockets=${sockets.length} state=${sockets[0]?.readyState}`,
  });
});

test('ABORT_ERR: an already-aborted signal rejects at once and opens no TCP connection', async () => {
  const { sockets, srv, port } = await silentServer();
  const ac = new AbortController();
  ac.abort();
  const t0 = performance.now();
  const err = await captureRejection(
    () => lws.connect(`ws://${HOST}:${port}/`, { signal: ac.signal }),
    5000,
    'aborted connect to reject',
  );
  assert.is(err.name, 'AbortError', `${err.name}: ${err.message}`);
  assert.is(err.code, 'ABORT_ERR');
  assert.ok(msSince(t0) < 200, `took ${msSince(t0)} ms`);
  // Prove the absence: a later connection is the first the server accepted.
  const probe = net.connect(port, HOST);
  await once(probe, 'connect');
  await waitFor(() => sockets.length >= 1, { label: 'probe accepted' });
  assert.is(sockets.length, 1, 'only the probe connected');
  assert.is(sockets[0].remotePort, probe.localPort);
  probe.destroy();
  assert.ok(srv.listening);
});

test('ABORT_ERR: aborting during the handshake rejects promptly and drops the TCP connection', async () => {
  const { sockets, port } = await silentServer();
  const ac = new AbortController();
  const p = lws.connect(`ws://${HOST}:${port}/`, { signal: ac.signal, timeoutMs: 10000 });
  p.catch(() => {});
  await waitFor(() => sockets.length === 1 && sockets[0].received.includes('\r\n\r\n'), {
    label: 'upgrade request to arrive',
  });
  const t0 = performance.now();
  ac.abort();
  const err = await captureRejection(() => p, 2000, 'connect aborted mid-handshake to reject');
  assert.is(err.name, 'AbortError', `${err.name}: ${err.message}`);
  assert.is(err.code, 'ABORT_ERR');
  assert.ok(msSince(t0) < 500, `rejected ${msSince(t0)} ms after abort()`);
  await withTimeout(sockets[0].closedP, 2000, 'aborted TCP connection to close');
});

for (const bad of ['http://x', 'not a url', 'ftp://example.test/', 'ws://', '']) {
  test(`ERR_INVALID_URL: connect(${JSON.stringify(bad)})`, async () => {
    const err = await captureRejection(() => lws.connect(bad), 2000, 'connect to reject');
    assert.instance(err, Error);
    assert.is(err.code, 'ERR_INVALID_URL', `${err.code}: ${err.message}`);
  });
}

// ---------------------------------------------------------------------------
// Closing
// ---------------------------------------------------------------------------

test('client close(4002, reason): server sees code/reason/clean; client goes closing → closed', async () => {
  const { url, conns } = await lwsEchoServer();
  const t = await connect(url);
  await waitFor(() => conns.length === 1, { label: 'server connection' });
  const serverClose = connClosed(conns[0]);
  const clientClose = connClosed(t);
  t.close(4002, 'client bye ✓');
  assert.is(t.isOpen, false);
  assert.is(t.readyState, 'closing');
  assert.equal(await serverClose, { code: 4002, reason: 'client bye ✓', wasClean: true });
  const c = await clientClose;
  assert.is(c.code, 4002);
  assert.is(c.wasClean, true);
  assert.is(t.readyState, 'closed');
  t.close(); // idempotent once closed
  assert.is(t.readyState, 'closed');
});

test('server close seen by the client: server.close() → 1001; conn.close(4003, reason) → 4003/reason', async () => {
  const a = await lwsEchoServer();
  const t1 = await connect(a.url);
  const c1 = connClosed(t1);
  await a.server.close();
  const r1 = await c1;
  assert.is(r1.code, 1001);
  assert.is(r1.wasClean, true);
  assert.is(t1.readyState, 'closed');
  assert.is(t1.isOpen, false);

  const b = await lwsEchoServer();
  const t2 = await connect(b.url);
  await waitFor(() => b.conns.length === 1, { label: 'server connection' });
  const c2 = connClosed(t2);
  b.conns[0].close(4003, 'server says bye');
  assert.equal(await c2, { code: 4003, reason: 'server says bye', wasClean: true });
});

test('ws server closes with 4004: client gets code, reason, wasClean', async () => {
  const { url, sockets } = await wsEchoServer();
  const t = await connect(url);
  const c = connClosed(t);
  sockets[0].close(4004, 'ws says bye');
  assert.equal(await c, { code: 4004, reason: 'ws says bye', wasClean: true });
});

test('terminate(): server sees an unclean close, client close event is 1006 / not clean', async () => {
  const { url, conns } = await lwsEchoServer();
  const t = await connect(url);
  await waitFor(() => conns.length === 1, { label: 'server connection' });
  const serverClose = connClosed(conns[0]);
  const clientClose = connClosed(t);
  t.terminate();
  assert.is(t.isOpen, false);
  const s = await serverClose;
  assert.is(s.wasClean, false);
  assert.is(s.code, 1006);
  const c = await clientClose;
  assert.is(c.code, 1006);
  assert.is(c.wasClean, false);
  const error = thrownBy(() => t.send('after terminate'), 'send() after close to throw');
  assert.is(error.code, 'ERR_CONNECTION_CLOSED');
});

test('closeTimeoutMs: the server never answers the close → client drops TCP after closeTimeoutMs', async () => {
  const { url, sockets } = await wsEchoServer();
  const t = await connect(url, { closeTimeoutMs: 200 });
  sockets[0].pause(); // never reads our close frame
  const clientClose = connClosed(t, 5000);
  const t0 = performance.now();
  t.close(1000, 'are you there');
  const c = await clientClose;
  const elapsed = msSince(t0);
  note(`close without an answer completed after ${elapsed} ms (closeTimeoutMs 200)`);
  assert.ok(elapsed >= 150, `closed after ${elapsed} ms, before closeTimeoutMs`);
  assert.ok(elapsed < 2000, `closed after ${elapsed} ms`);
  assert.is(c.wasClean, false);
});

test('maxPayload: a larger incoming message closes with 1009; one of exactly maxPayload passes', async () => {
  const { url, conns } = await lwsEchoServer();
  const t = await connect(url, { maxPayload: 1024 });
  await waitFor(() => conns.length === 1, { label: 'server connection' });
  const exact = nextMessage(t);
  conns[0].send(patternBytes(1024, 9));
  const m = await exact;
  assert.is(m.data.length, 1024);
  assert.ok(m.data.equals(patternBytes(1024, 9)));
  const serverClose = connClosed(conns[0]);
  const clientClose = connClosed(t);
  let gotTooBig = false;
  t.on('message', (d) => {
    if (d.length > 1024) gotTooBig = true;
  });
  conns[0].send(patternBytes(1025, 9));
  const c = await clientClose;
  assert.is(c.code, 1009);
  assert.is((await serverClose).code, 1009);
  assert.is(gotTooBig, false, 'the oversized message must not be delivered');
});

// ---------------------------------------------------------------------------
// Ping / pong
// ---------------------------------------------------------------------------

test('ping/pong: client ping → pong with the same data (ws and node-lws servers); server ping → client ping event', async () => {
  const w = await wsEchoServer();
  const t1 = await connect(w.url);
  const pong1 = onceEvent(t1, 'pong');
  const serverPing = once(w.sockets[0], 'ping');
  t1.ping('hello ping');
  const [p1] = await pong1;
  assert.is(Buffer.from(p1).toString(), 'hello ping');
  assert.is((await serverPing)[0].toString(), 'hello ping');

  const l = await lwsEchoServer();
  const t2 = await connect(l.url);
  await waitFor(() => l.conns.length === 1, { label: 'server connection' });
  const sp = onceEvent(l.conns[0], 'ping');
  const pong2 = onceEvent(t2, 'pong');
  t2.ping(Buffer.from([1, 2, 3]));
  assert.equal([...(await pong2)[0]], [1, 2, 3]);
  assert.equal([...(await sp)[0]], [1, 2, 3]);

  const cp = onceEvent(t2, 'ping');
  const spong = onceEvent(l.conns[0], 'pong');
  l.conns[0].ping('from server');
  assert.is(Buffer.from((await cp)[0]).toString(), 'from server');
  assert.is(Buffer.from((await spong)[0]).toString(), 'from server');
});

// ---------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------

test('bufferedAmount / drain: a paused ws server makes send() return false; drain after resume; nothing lost', async () => {
  const hwm = 256 * 1024;
  const CHUNK = 256 * 1024;
  const received = [];
  const { url, sockets } = await wsEchoServer();
  const t = await connect(url, { highWaterMark: hwm });
  const server = sockets[0];
  server.removeAllListeners('message');
  server.on('message', (data) => received.push(data));
  server.pause();

  let drains = 0;
  let drainFlag = false;
  t.on('drain', () => {
    drains++;
    drainFlag = true;
  });
  const chunk = (i) => {
    const b = patternBytes(CHUNK, i + 1);
    b.writeUInt32BE(i, 0);
    return b;
  };
  let sent = 0;
  let falses = 0;
  let stalledAt = 0;
  // Send until send() says stop, then either a drain comes (the kernel took
  // it: send more) or bufferedAmount stays put above the mark (stalled).
  for (;;) {
    while (t.send(chunk(sent++))) {
      assert.ok(sent < 512, 'send() never returned false for 128 MiB');
    }
    falses++; // (bufferedAmount is live: the service thread may already be writing it down)
    let last = -1;
    let same = 0;
    const r = await waitFor(
      () => {
        if (drainFlag) return 'drain';
        const b = t.bufferedAmount;
        same = b === last ? same + 1 : 0;
        last = b;
        return same >= 5 && b > hwm ? 'stalled' : null;
      },
      { timeout: 10000, interval: 20, label: 'drain or stall' },
    );
    if (r === 'stalled') {
      stalledAt = t.bufferedAmount;
      break;
    }
    drainFlag = false;
    assert.ok(sent < 512, 'never stalled within 128 MiB: is the server paused?');
  }
  note(
    `stalled with bufferedAmount ${stalledAt} after ${sent} × 256 KiB (${falses} false returns, ${drains} early drains)`,
  );
  assert.ok(stalledAt > hwm);
  assert.is(t.send(chunk(sent++)), false, 'still above the mark');
  const drainCountBefore = drains;
  const drained = new Promise((resolve) => {
    t.once('drain', () => resolve(t.bufferedAmount));
  });
  server.resume();
  const atDrain = await withTimeout(drained, 15000, "'drain' after the server resumed");
  assert.ok(atDrain <= hwm, `bufferedAmount ${atDrain} at 'drain' is above highWaterMark`);
  assert.is(drains, drainCountBefore + 1);
  await waitFor(() => received.length === sent, {
    timeout: 15000,
    label: `${sent} chunks at the server`,
    describe: () => `received ${received.length}`,
  });
  for (let i = 0; i < sent; i++) {
    assert.is(received[i].readUInt32BE(0), i, `chunk ${i} out of order`);
    assert.ok(received[i].equals(chunk(i)), `chunk ${i} content`);
  }
  await waitFor(() => t.bufferedAmount === 0, { label: 'bufferedAmount back to 0' });
});

// ---------------------------------------------------------------------------
// Async iteration
// ---------------------------------------------------------------------------

test('for await: yields every message in order and ends when the server closes', async () => {
  const server = await listen({});
  const N = 200;
  server.on('connection', (conn) => {
    conn.on('message', (d) => {
      if (d !== 'go') return;
      for (let i = 0; i < N; i++) {
        conn.send(i % 3 === 0 ? Buffer.from(`b${i}`) : `t${i}`);
      }
      conn.close(1000, 'done');
    });
  });
  const t = await connect(`ws://${HOST}:${server.port}/iter`);
  const got = [];
  const iterating = (async () => {
    for await (const m of t) got.push(m);
    return 'ended';
  })();
  t.send('go');
  assert.is(await withTimeout(iterating, 10000, 'iteration to end on close'), 'ended');
  assert.is(got.length, N);
  got.forEach((m, i) => {
    if (i % 3 === 0) {
      assert.is(m.isBinary, true, `message ${i}`);
      assert.ok(Buffer.isBuffer(m.data));
      assert.is(m.data.toString(), `b${i}`);
    } else {
      assert.equal(m, { data: `t${i}`, isBinary: false }, `message ${i}`);
    }
  });
  assert.is(t.readyState, 'closed');
});

test('for await: break stops iterating; the transport stays usable', async () => {
  const { url } = await lwsEchoServer();
  const t = await connect(url);
  for (let i = 0; i < 5; i++) t.send(`m${i}`);
  const got = [];
  for await (const m of t) {
    got.push(m.data);
    if (got.length === 3) break;
  }
  assert.equal(got, ['m0', 'm1', 'm2']);
  assert.is(t.isOpen, true);
  // After break the transport keeps working: 'message' listeners get what
  // comes next (m3/m4 may or may not have been consumed by the iterator).
  const later = [];
  const done = new Promise((resolve) => {
    t.on('message', (d) => {
      later.push(d);
      if (d === 'after break') resolve();
    });
  });
  t.send('after break');
  await withTimeout(done, 5000, "'after break' echo");
  const rest = later.slice(0, -1).join(',');
  assert.ok(['', 'm4', 'm3,m4'].includes(rest), `unexpected messages after break: ${rest}`);
  assert.is(t.isOpen, true);
});

// ---------------------------------------------------------------------------
// Reconnect
// ---------------------------------------------------------------------------

/** node-lws server that records each connection's messages. */
async function recordingServer(port = 0) {
  const server = await listen({ port });
  const conns = [];
  const received = [];
  server.on('connection', (conn) => {
    const idx = conns.length;
    conns.push(conn);
    received[idx] = [];
    conn.on('error', () => {});
    conn.on('message', (data, isBinary) => received[idx].push({ data, isBinary }));
  });
  return { server, conns, received };
}

test('reconnect: server closes the connection → reconnecting(1, minDelayMs) → open; queued sends delivered in order', async () => {
  const { server, conns, received } = await recordingServer();
  const t = await connect(`ws://${HOST}:${server.port}/re`, {
    reconnect: { retries: 5, minDelayMs: 50, maxDelayMs: 400, jitter: 0 },
  });
  await waitFor(() => conns.length === 1, { label: 'first server connection' });
  const events = [];
  let closes = 0;
  let queuedResults;
  t.on('close', () => closes++);
  t.on('reconnecting', (attempt, delayMs, lastError) => {
    events.push({ attempt, delayMs, lastError, state: t.readyState });
    if (attempt === 1) {
      // Disconnected now: these are queued and go out after reopen, in order.
      try {
        queuedResults = [t.send('q1'), t.send('q2'), t.send(Buffer.from('q3-bin')), t.send('q4')];
      } catch (err) {
        queuedResults = err;
      }
    }
  });
  t.send('before');
  await waitFor(() => received[0].length === 1, { label: "'before' at the server" });
  const reopened = onceEvent(t, 'open', 5000, "'open' after reconnect");
  conns[0].close(1012, 'service restart');
  await reopened;
  assert.is(t.readyState, 'open');
  assert.is(t.isOpen, true);
  assert.is(t.remotePort, server.port);
  assert.ok(
    !(queuedResults instanceof Error),
    `send() while reconnecting threw: ${queuedResults?.code} ${queuedResults?.message}`,
  );
  t.send('after');
  await waitFor(() => received[1]?.length === 5, {
    label: 'queued + new messages on the second connection',
    describe: () => JSON.stringify(received.map((r) => r.map((m) => String(m.data)))),
  });
  assert.equal(
    received[1].map((m) => [String(m.data), m.isBinary]),
    [
      ['q1', false],
      ['q2', false],
      ['q3-bin', true],
      ['q4', false],
      ['after', false],
    ],
  );
  assert.equal(received[0], [{ data: 'before', isBinary: false }]);
  assert.is(events.length, 1, JSON.stringify(events));
  assert.is(events[0].attempt, 1);
  assert.is(events[0].delayMs, 50, 'first delay is minDelayMs (jitter 0)');
  assert.instance(events[0].lastError, Error);
  assert.ok(
    events[0].state !== 'open' && events[0].state !== 'closed',
    `readyState while reconnecting: ${events[0].state}`,
  );
  note(
    `reconnecting: delay ${events[0].delayMs} ms, readyState '${events[0].state}', send() returned ${JSON.stringify(queuedResults)}, lastError ${events[0].lastError?.code ?? events[0].lastError}`,
  );
  assert.is(closes, 0, "no 'close' event for a reconnected drop");
  assert.is(conns.length, 2);
});

test('reconnect: server restarts on the same port; attempts in between fail with ECONNREFUSED', async () => {
  const first = await recordingServer();
  const port = first.server.port;
  const t = await connect(`ws://${HOST}:${port}/`, {
    reconnect: { retries: 30, minDelayMs: 20, maxDelayMs: 100 },
  });
  const attempts = [];
  let relisten;
  t.on('reconnecting', (attempt, delayMs, lastError) => {
    attempts.push({ attempt, delayMs, code: lastError?.code });
    if (attempt === 2 && !relisten) relisten = recordingServer(port);
  });
  const reopened = onceEvent(t, 'open', 10000, "'open' after the server came back");
  await first.server.close();
  await reopened;
  const second = await relisten;
  await waitFor(() => second.conns.length === 1, { label: 'connection to the restarted server' });
  t.send('hello again');
  await waitFor(() => second.received[0].length === 1, { label: 'message after restart' });
  assert.is(second.received[0][0].data, 'hello again');
  assert.ok(attempts.length >= 2, JSON.stringify(attempts));
  assert.equal(
    attempts.map((a) => a.attempt),
    Array.from({ length: attempts.length }, (_, i) => i + 1),
    'attempts count up from 1',
  );
  assert.is(attempts[1].code, 'ECONNREFUSED', `lastError of attempt 2: ${attempts[1].code}`);
});

test('reconnect delays: jitter 0 → minDelayMs, doubling, capped at maxDelayMs; with jitter 1 every delay stays within [min, max]', async () => {
  const run = async (jitter) => {
    const { server } = await recordingServer();
    const t = await connect(`ws://${HOST}:${server.port}/`, {
      reconnect: { retries: 8, minDelayMs: 10, maxDelayMs: 40, jitter },
    });
    const delays = [];
    t.on('reconnecting', (_attempt, delayMs) => delays.push(delayMs));
    const closed = onceEvent(t, 'close', 5000, "'close' after 8 retries");
    await server.close();
    await closed;
    return delays;
  };
  assert.equal(await run(0), [10, 20, 40, 40, 40, 40, 40, 40]);
  const jittered = await run(1);
  note(`delays with jitter 1, min 10, max 40: ${JSON.stringify(jittered)}`);
  assert.is(jittered.length, 8);
  for (const d of jittered)
    assert.ok(d >= 10 && d <= 40, `delay ${d} outside [10, 40]: ${jittered}`);
});

test("reconnect: retries exhausted when the server is gone → 'close' fires once, then send throws", async () => {
  const { server } = await recordingServer();
  const t = await connect(`ws://${HOST}:${server.port}/`, {
    reconnect: { retries: 3, minDelayMs: 20, maxDelayMs: 40 },
  });
  const attempts = [];
  const closes = [];
  t.on('reconnecting', (attempt, delayMs, lastError) =>
    attempts.push({ attempt, delayMs, code: lastError?.code }),
  );
  t.on('close', (code, reason, wasClean) => closes.push({ code, reason, wasClean }));
  const closed = onceEvent(t, 'close', 10000, "final 'close'");
  await server.close();
  await closed;
  assert.equal(
    attempts.map((a) => a.attempt),
    [1, 2, 3],
    JSON.stringify(attempts),
  );
  assert.is(attempts[1].code, 'ECONNREFUSED');
  assert.is(attempts[2].code, 'ECONNREFUSED');
  assert.is(closes.length, 1);
  note(`final close after retries: ${JSON.stringify(closes[0])}`);
  assert.is(t.readyState, 'closed');
  const error = thrownBy(() => t.send('nobody home'), 'send() after the final close to throw');
  assert.is(error.code, 'ERR_CONNECTION_CLOSED', 'send() after the final close throws');
});

test('reconnect: close() during reconnecting stops it for good', async () => {
  const { server, conns, received } = await recordingServer();
  const opts = { reconnect: { retries: 5, minDelayMs: 150, maxDelayMs: 150, jitter: 0 } };
  const a = await connect(`ws://${HOST}:${server.port}/a`, opts);
  await waitFor(() => conns.length === 1, { label: 'A connected' });
  const aClosed = onceEvent(a, 'close', 3000, "A 'close' after close() while reconnecting");
  let aReconnecting = 0;
  a.on('reconnecting', () => {
    aReconnecting++;
    a.close(1000, 'stop');
  });
  let aOpens = 0;
  a.on('open', () => aOpens++);
  conns[0].close(1012, 'restart');
  await aClosed;
  assert.is(aReconnecting, 1);
  assert.is(a.readyState, 'closed');
  // B uses the same fixed delay and starts later: once B has reconnected, A
  // would have reconnected too had it not been stopped.
  const b = await connect(`ws://${HOST}:${server.port}/b`, opts);
  await waitFor(() => conns.length === 2, { label: 'B connected' });
  const bOpen = onceEvent(b, 'open', 3000, 'B reopened');
  conns[1].close(1012, 'restart');
  await bOpen;
  b.send('from B');
  await waitFor(() => received.some((r) => r.length > 0), { label: "B's message at the server" });
  assert.is(conns.length, 3, `connections: ${conns.length} (A must not come back)`);
  assert.equal(received[2], [{ data: 'from B', isBinary: false }]);
  assert.is(aOpens, 0);
});

test('reconnect: the send queue is bounded by maxQueueBytes → ERR_RECONNECT_QUEUE_FULL', async () => {
  const { server, conns, received } = await recordingServer();
  const t = await connect(`ws://${HOST}:${server.port}/q`, {
    reconnect: { retries: 5, minDelayMs: 100, maxDelayMs: 100, jitter: 0, maxQueueBytes: 1000 },
  });
  await waitFor(() => conns.length === 1, { label: 'connected' });
  let error;
  let sentAfter = false;
  t.on('reconnecting', (attempt) => {
    if (attempt !== 1) return;
    try {
      t.send('a'.repeat(600));
    } catch (err) {
      error = new Error(`the first 600 bytes did not fit: ${err.code} ${err.message}`);
      return;
    }
    try {
      t.send('b'.repeat(600));
    } catch (err) {
      error = err;
    }
    try {
      t.send('c'.repeat(300)); // still fits: 900 ≤ 1000
      sentAfter = true;
    } catch (err) {
      sentAfter = err;
    }
  });
  const reopened = onceEvent(t, 'open', 5000, 'reopen');
  conns[0].close(1012, 'restart');
  await reopened;
  assert.ok(error, 'the send that overflows the queue must throw');
  assert.is(error.code, 'ERR_RECONNECT_QUEUE_FULL', `${error.code}: ${error.message}`);
  assert.is(sentAfter, true, `a send that fits after the overflow: ${sentAfter}`);
  await waitFor(() => received[1]?.length === 2, {
    label: 'queued messages after reopen',
    describe: () => JSON.stringify(received.map((r) => r.map((m) => String(m.data).length))),
  });
  assert.equal(
    received[1].map((m) => m.data),
    ['a'.repeat(600), 'c'.repeat(300)],
  );
});

test.after(exitWatchdog);
test.run();
