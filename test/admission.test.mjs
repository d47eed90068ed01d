// Admission of upgrades: verify() (every result kind, async, throwing),
// handleProtocols(), allowedOrigins, maxConnections, maxHeaderBytes,
// maxPendingHeaderBytes, and the timeouts that bound a handshake (handshakeTimeoutMs) and a closing handshake
// (closeTimeoutMs).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { attachEcho, connClosed, listenFor, nextConnection } from './support/lws.mjs';
import { rawTcpConnect } from './support/net.mjs';
import { startServerProcess } from './support/proc.mjs';
import { OP, RawWsPeer, rawHttpExchange, rawWsUpgrade, upgradeRequest } from './support/raw-ws.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { onceEvent, withTimeout } from './support/wait.mjs';
import {
  closeClient,
  echoRoundTrip,
  WebSocket,
  wsConnectFor,
  wsExpectReject,
} from './support/ws-client.mjs';

const HOST = '127.0.0.1';

// ---------------------------------------------------------------------------
// Bookkeeping
// ---------------------------------------------------------------------------

const cleanups = cleanupsAfterEach(test);

const listen = listenFor(cleanups, { host: HOST, port: 0 });

const ws = wsConnectFor(cleanups);

function track(peer) {
  cleanups.push(async () => peer.destroy());
  return peer;
}

const urlOf = (server, p = '/') => `ws://${HOST}:${server.port}${p}`;

/**
 * A `ws` client that offered protocols; resolves with what happened up to its
 * 'close': { opened, errors, code, protocolHeader } (protocolHeader: the
 * Sec-WebSocket-Protocol of the 101, if any).
 */
function wsOutcome(url, protocols) {
  return withTimeout(
    new Promise((resolve) => {
      const out = { opened: false, errors: [], code: undefined, protocolHeader: undefined };
      const c = new WebSocket(url, protocols);
      c.on('upgrade', (res) => {
        out.protocolHeader = res.headers['sec-websocket-protocol'];
      });
      c.on('open', () => {
        out.opened = true;
        c.close();
      });
      c.on('unexpected-response', (_req, res) => {
        out.status = res.statusCode;
        res.resume();
        c.terminate();
      });
      c.on('error', (err) => out.errors.push(err.message));
      c.on('close', (code) => {
        out.code = code;
        resolve(out);
      });
    }),
    5000,
    `ws client outcome for ${url}`,
  );
}

// ---------------------------------------------------------------------------
// verify()
// ---------------------------------------------------------------------------

test('verify → true accepts; the request carries path, headers, origin, remote address/port, protocols', async () => {
  const seen = [];
  const server = await listen({
    protocols: ['b'],
    verify: (request) => {
      seen.push(request);
      return true;
    },
  });
  const connP = nextConnection(server);
  const peer = track(
    await rawWsUpgrade(server.port, {
      path: '/room/7?token=abc',
      headers: {
        Origin: 'https://app.example',
        'X-Custom': 'custom value',
        'Sec-WebSocket-Protocol': 'a, b',
      },
    }),
  );
  const [conn, req] = await connP;
  assert.is(seen.length, 1);
  const r = seen[0];
  assert.is(r.path, '/room/7?token=abc');
  assert.is(r.origin, 'https://app.example');
  assert.is(r.headers['x-custom'], 'custom value');
  assert.is(r.headers.origin, 'https://app.example');
  assert.is(r.headers.host, `${HOST}:${server.port}`);
  assert.is(r.remoteAddress, '127.0.0.1');
  assert.is(r.remotePort, peer.socket.localPort);
  assert.equal(r.protocols, ['a', 'b']);
  // Accepted: the 101 chose 'b' (the configured protocols), the connection is open.
  assert.is(peer.head.headers['sec-websocket-protocol'], 'b');
  assert.is(conn.protocol, 'b');
  assert.is(req.path, '/room/7?token=abc');
  // A ws client without an Origin header: origin is undefined.
  const seenBefore = seen.length;
  attachEcho(server);
  const c = await ws(urlOf(server, '/x'));
  assert.is(seen.length, seenBefore + 1);
  assert.is(seen.at(-1).origin, undefined);
  assert.equal(seen.at(-1).protocols, []);
  assert.is((await echoRoundTrip(c, 'in')).data, 'in');
});

test('verify → false answers 403', async () => {
  let calls = 0;
  const server = await listen({
    verify: () => {
      calls++;
      return false;
    },
  });
  let connections = 0;
  server.on('connection', () => connections++);
  const r = await wsExpectReject(urlOf(server));
  assert.is(r.status, 403, `status ${r.status} body ${r.body}`);
  assert.is(calls, 1);
  assert.is(connections, 0);
  assert.is(server.connectionCount, 0);
});

test('verify → { status: 401, headers, body } answers exactly that', async () => {
  const server = await listen({
    verify: () => ({ status: 401, headers: { 'WWW-Authenticate': 'Bearer' }, body: 'no' }),
  });
  const r = await wsExpectReject(urlOf(server));
  assert.is(r.status, 401);
  assert.is(r.headers['www-authenticate'], 'Bearer');
  assert.is(r.body, 'no');
  // The same on the wire.
  const raw = await rawHttpExchange(
    server.port,
    `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  );
  assert.is(raw.head.status, 401, raw.head.startLine);
  assert.is(raw.head.headers['www-authenticate'], 'Bearer');
  assert.is(raw.head.headers['content-length'], '2');
  assert.is(raw.body.toString(), 'no');
});

test('verify → a Promise settled after a macrotask: true accepts, false rejects', async () => {
  let decision = true;
  const order = [];
  const server = await listen({
    verify: (request) =>
      new Promise((resolve) => {
        order.push(`verify ${request.path}`);
        setTimeout(() => {
          order.push(`decided ${request.path}`);
          resolve(decision);
        }, 0);
      }),
  });
  server.on('connection', (_c, req) => order.push(`connection ${req.path}`));
  attachEcho(server);
  const c = await ws(urlOf(server, '/yes'));
  assert.is((await echoRoundTrip(c, 'async ok')).data, 'async ok');
  assert.equal(order, ['verify /yes', 'decided /yes', 'connection /yes']);
  decision = false;
  const r = await wsExpectReject(urlOf(server, '/no'));
  assert.is(r.status, 403);
  assert.equal(order.slice(3), ['verify /no', 'decided /no']);
});

test("verify throws → 500, and the server emits 'error' with the thrown error", async () => {
  const boom = new Error('verify exploded');
  let fail = true;
  const server = await listen({
    verify: async () => {
      if (fail) throw boom;
      return true;
    },
  });
  const errP = onceEvent(server, 'error', 5000, "server 'error' for a throwing verify");
  const r = await wsExpectReject(urlOf(server));
  assert.is(r.status, 500, `status ${r.status} body ${r.body}`);
  const [err] = await errP;
  assert.is(err, boom);
  // The server keeps working.
  fail = false;
  attachEcho(server);
  const c = await ws(urlOf(server));
  assert.is((await echoRoundTrip(c, 'after')).data, 'after');
});

test('a synchronously throwing verify → 500 as well', async () => {
  const boom = new Error('sync verify exploded');
  const server = await listen({
    verify: () => {
      throw boom;
    },
  });
  const errors = [];
  server.on('error', (e) => errors.push(e));
  const r = await wsExpectReject(urlOf(server));
  assert.is(r.status, 500);
  assert.equal(errors, [boom]);
});

test("a throwing verify without an 'error' listener still answers 500 and does not crash", async () => {
  const server = await listen({
    verify: () => {
      throw new Error('unobserved');
    },
  });
  assert.is(server.listenerCount('error'), 0);
  const r1 = await wsExpectReject(urlOf(server));
  const r2 = await wsExpectReject(urlOf(server));
  assert.is(r1.status, 500);
  assert.is(r2.status, 500);
  assert.is(server.listening, true);
});

// ---------------------------------------------------------------------------
// handleProtocols()
// ---------------------------------------------------------------------------

test("handleProtocols picks 'b' from ['a','b'] → the client's protocol is 'b'", async () => {
  const calls = [];
  const server = await listen({
    handleProtocols: (offered, request) => {
      calls.push({ offered: [...offered], path: request.path, protocols: request.protocols });
      return offered.includes('b') ? 'b' : false;
    },
  });
  attachEcho(server);
  const connP = nextConnection(server);
  const c = await ws(urlOf(server, '/proto'), {}, { protocols: ['a', 'b'] });
  const [conn] = await connP;
  assert.is(c.protocol, 'b');
  assert.is(conn.protocol, 'b');
  assert.equal(calls, [{ offered: ['a', 'b'], path: '/proto', protocols: ['a', 'b'] }]);
  assert.is((await echoRoundTrip(c, 'proto b')).data, 'proto b');
});

test('handleProtocols may return a Promise', async () => {
  const server = await listen({
    handleProtocols: (offered) => new Promise((r) => setTimeout(() => r(offered[1]), 0)),
  });
  attachEcho(server);
  const c = await ws(urlOf(server), {}, { protocols: ['x', 'y', 'z'] });
  assert.is(c.protocol, 'y');
});

test('handleProtocols → false: the 101 carries no protocol, and a ws client that offered some fails', async () => {
  const server = await listen({ handleProtocols: () => false });
  const conns = [];
  server.on('connection', (conn) => {
    conns.push(conn);
    conn.on('error', () => {});
  });
  // On the wire: a 101 without Sec-WebSocket-Protocol.
  const connP = nextConnection(server);
  const peer = track(
    await rawWsUpgrade(server.port, { headers: { 'Sec-WebSocket-Protocol': 'a, b' } }),
  );
  const [conn] = await connP;
  assert.is(peer.head.headers['sec-websocket-protocol'], undefined);
  assert.is(conn.protocol, '');
  // ws (RFC 6455 4.1): the server chose none of the offered protocols → fail the connection.
  const out = await wsOutcome(urlOf(server), ['a', 'b']);
  assert.is(out.opened, false, 'ws must not open');
  assert.is(out.protocolHeader, undefined);
  assert.equal(out.errors, ['Server sent no subprotocol']);
  assert.is(out.code, 1006);
});

test('handleProtocols returning a protocol that was not offered → 500', async () => {
  const errors = [];
  const server = await listen({ handleProtocols: () => 'zzz' });
  server.on('error', (e) => errors.push(e));
  let connections = 0;
  server.on('connection', () => connections++);
  const r = await wsExpectReject(urlOf(server), {}, ['a', 'b']);
  assert.is(r.status, 500, `status ${r.status} body ${r.body}`);
  assert.is(connections, 0);
  assert.is(errors.length, 1);
  assert.match(errors[0].message, /zzz/);
});

// ---------------------------------------------------------------------------
// allowedOrigins
// ---------------------------------------------------------------------------

test('allowedOrigins: the listed Origin is accepted; another or none → 403', async () => {
  const server = await listen({ allowedOrigins: ['https://good.example'] });
  attachEcho(server);
  const good = await ws(urlOf(server), { origin: 'https://good.example' });
  assert.is((await echoRoundTrip(good, 'good')).data, 'good');
  const bad = await wsExpectReject(urlOf(server), { origin: 'https://evil.example' });
  assert.is(bad.status, 403);
  const prefix = await wsExpectReject(urlOf(server), { origin: 'https://good.example.evil' });
  assert.is(prefix.status, 403);
  const none = await wsExpectReject(urlOf(server));
  assert.is(none.status, 403);
  assert.is(server.connectionCount, 1);
});

// ---------------------------------------------------------------------------
// maxConnections
// ---------------------------------------------------------------------------

test('maxConnections: 2 — the 3rd concurrent client gets 503; after one closes a new one gets in', async () => {
  const server = await listen({ maxConnections: 2 });
  const conns = attachEcho(server);
  const a = await ws(urlOf(server, '/a'));
  const b = await ws(urlOf(server, '/b'));
  const third = await wsExpectReject(urlOf(server, '/c'));
  assert.is(third.status, 503, `3rd client: ${third.status} ${third.body}`);
  assert.is(server.connectionCount, 2);
  assert.is((await echoRoundTrip(a, 'a')).data, 'a');
  assert.is((await echoRoundTrip(b, 'b')).data, 'b');
  const aClosed = connClosed(conns[0]);
  await closeClient(a);
  await aClosed;
  const d = await ws(urlOf(server, '/d'));
  assert.is((await echoRoundTrip(d, 'd')).data, 'd');
  assert.is(server.connectionCount, 2);
  const fifth = await wsExpectReject(urlOf(server, '/e'));
  assert.is(fifth.status, 503);
});

test('maxConnections counts connections admitted by an async verify', async () => {
  const server = await listen({
    maxConnections: 1,
    verify: () => new Promise((r) => setTimeout(() => r(true), 0)),
  });
  attachEcho(server);
  const a = await ws(urlOf(server));
  const b = await wsExpectReject(urlOf(server));
  assert.is(b.status, 503);
  assert.is((await echoRoundTrip(a, 'only')).data, 'only');
});

// ---------------------------------------------------------------------------
// maxHeaderBytes
// ---------------------------------------------------------------------------

test('maxHeaderBytes: 1024 — a 4 KiB header gets 431; a small request is accepted', async () => {
  const server = await listen({ maxHeaderBytes: 1024 });
  attachEcho(server);
  const big = await wsExpectReject(urlOf(server), { headers: { 'X-Big': 'x'.repeat(4096) } });
  assert.is(big.status, 431, `status ${big.status} body ${big.body}`);
  // Raw, in one write, and as many small writes.
  const request =
    `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n` +
    `X-Big: ${'y'.repeat(4096)}\r\n\r\n`;
  const raw = await rawHttpExchange(server.port, request);
  assert.is(raw.head.status, 431, raw.head.startLine);
  // A head that grows past the limit in small writes, before its end is seen:
  // 1100 bytes with no blank line yet, written 100 bytes at a time.
  const partial = request.slice(0, 1100);
  const peer = track(new RawWsPeer(await rawTcpConnect(server.port)));
  for (let i = 0; i < partial.length; i += 100) {
    await new Promise((resolve) => peer.socket.write(partial.slice(i, i + 100), resolve));
  }
  const head = await peer.waitHead();
  assert.is(head.status, 431, head.startLine);
  await withTimeout(peer.closed, 5000, 'TCP close after 431');
  // A ~600-byte header is within the limit.
  const ok = await ws(urlOf(server), { headers: { 'X-Small': 's'.repeat(600) } });
  assert.is((await echoRoundTrip(ok, 'fits')).data, 'fits');
});

// ---------------------------------------------------------------------------
// maxPendingHeaderBytes
// ---------------------------------------------------------------------------

/**
 * A raw socket that sends an upgrade request padded to about `pad` bytes, all but its blank
 * line; resolves once the bytes are written.
 */
async function partialHead(server, pad) {
  const peer = track(new RawWsPeer(await rawTcpConnect(server.port)));
  await writePartialHead(peer, server.port, pad);
  return peer;
}

/** Writes that request (all but its blank line) on a connected peer. */
async function writePartialHead(peer, port, pad) {
  const request = upgradeRequest(port, { headers: { 'X-Pad': 'p'.repeat(pad) } });
  await new Promise((resolve) => peer.socket.write(request.slice(0, -2), resolve));
}

/**
 * Peers in connection order, each with an unfinished head: the oldest `min` to `max` must get
 * the 503, in order, and the newer ones must still be open and complete to 101.
 */
async function expectOldestRefused(peers, min, max) {
  for (let i = 0; i < min; i++) {
    const head = await peers[i].waitHead();
    assert.is(head.status, 503, `peer ${i} (older): ${head.startLine}`);
  }
  const refused = peers.filter((p) => p.head?.status === 503).length;
  assert.ok(refused >= min && refused <= max, `${refused} of ${peers.length} refused`);
  for (let i = 0; i < refused; i++) assert.is(peers[i].head?.status, 503, `peer ${i} (older)`);
  for (let i = refused; i < peers.length; i++) {
    assert.not.ok(peers[i].isClosed, `peer ${i} (newer) still open`);
    peers[i].write('\r\n');
    const head = await peers[i].waitHead();
    assert.is(head.status, 101, `peer ${i} (newer): ${head.startLine}`);
  }
}

test('maxPendingHeaderBytes: heads that trickle in are answered 503 oldest first; the rest and a prompt client get in', async () => {
  const logs = [];
  const server = await listen({
    maxPendingHeaderBytes: 64 * 1024,
    logger: (_level, message) => logs.push(message),
  });
  attachEcho(server);
  // Eight unfinished heads of ~15 KB each: at most four fit in 64 KiB.
  const peers = [];
  for (let i = 0; i < 8; i++) peers.push(await partialHead(server, 15_000));
  for (let i = 0; i < 4; i++) {
    const head = await peers[i].waitHead();
    assert.is(head.status, 503, `peer ${i}: ${head.startLine}`);
    assert.is(head.headers['retry-after'], '1');
    await withTimeout(peers[i].closed, 5000, `peer ${i} closed after its 503`);
  }
  // A client that sends its request in one write is not held up by them.
  const prompt = await ws(urlOf(server));
  assert.is((await echoRoundTrip(prompt, 'prompt')).data, 'prompt');
  // The newest heads are still waiting, and complete into connections.
  const refused = peers.filter((p) => p.head?.status === 503).length;
  assert.ok(refused >= 4 && refused <= 6, `${refused} of 8 refused`);
  for (let i = 0; i < refused; i++) assert.is(peers[i].head?.status, 503, `peer ${i} (oldest)`);
  for (let i = refused; i < 8; i++) {
    assert.not.ok(peers[i].isClosed, `peer ${i} (newer) still open`);
    const connected = onceEvent(server, 'connection', 5000, `'connection' for peer ${i}`);
    peers[i].write('\r\n');
    const head = await peers[i].waitHead();
    assert.is(head.status, 101, `peer ${i}: ${head.startLine}`);
    await connected;
  }
  assert.is(server.connectionCount, 1 + 8 - refused);
  assert.ok(
    logs.some((m) => m.includes('maxPendingHeaderBytes')),
    `a log line says why: ${JSON.stringify(logs)}`,
  );
});

test('maxPendingHeaderBytes: heads that arrive in one turn of the loop are refused oldest first too', async () => {
  // The server's process is stopped while eight heads arrive, so that one turn of its loop
  // accepts and reads them all. libev runs the ready sockets' watchers newest first, and until
  // 2026-11-28 the list the oldest are refused from was in that order: the four newest got the
  // 503 (and, now and then under AddressSanitizer, the test above waited in vain).
  const srv = await startServerProcess({ maxPendingHeaderBytes: 64 * 1024 });
  cleanups.push(() => srv.stop());
  srv.signal('SIGSTOP');
  const peers = [];
  try {
    for (let i = 0; i < 8; i++) peers.push(await partialHead({ port: srv.port }, 15_000));
  } finally {
    srv.signal('SIGCONT');
  }
  await expectOldestRefused(peers, 4, 4);
});

test('maxPendingHeaderBytes: heads begun newest first are still refused oldest first', async () => {
  // Eight connections, then their heads newest first: each head past the limit is then the
  // oldest pending one, so the oldest are refused and the newest complete. (The order is kept
  // by a tree since 2026-11-28: a walk back from the newest cost the heads that come in this
  // order all the others each, 0.6 s of the service thread at 16,000 connections.)
  const server = await listen({ maxPendingHeaderBytes: 64 * 1024 });
  attachEcho(server);
  const peers = [];
  for (let i = 0; i < 8; i++) peers.push(track(new RawWsPeer(await rawTcpConnect(server.port))));
  for (let i = 7; i >= 0; i--) await writePartialHead(peers[i], server.port, 15_000);
  // The oldest ones get the 503 (4 to 6 of them, as each head's buffer may have grown past its
  // bytes), never a newer one before an older one.
  await expectOldestRefused(peers, 4, 6);
});

test('maxPendingHeaderBytes: a head stops counting once complete or once its socket closes', async () => {
  const server = await listen({ maxPendingHeaderBytes: 64 * 1024 });
  attachEcho(server);
  // Ten heads of ~15 KB one after the other (150 KB in all): each completes before the next.
  for (let i = 0; i < 10; i++) {
    const peer = await partialHead(server, 15_000);
    peer.write('\r\n');
    const head = await peer.waitHead();
    assert.is(head.status, 101, `head ${i}: ${head.startLine}`);
  }
  // Four unfinished heads whose sockets close, then four more that complete (all eight
  // together would not fit).
  for (let i = 0; i < 4; i++) (await partialHead(server, 15_000)).socket.destroy();
  const barrier = await ws(urlOf(server));
  assert.is((await echoRoundTrip(barrier, 'after')).data, 'after');
  const later = [];
  for (let i = 0; i < 4; i++) later.push(await partialHead(server, 15_000));
  for (const [i, peer] of later.entries()) {
    peer.write('\r\n');
    const head = await peer.waitHead();
    assert.is(head.status, 101, `later head ${i}: ${head.startLine}`);
  }
});

test('maxPendingHeaderBytes below twice maxHeaderBytes is refused before anything listens', async () => {
  let err = null;
  try {
    await listen({ maxHeaderBytes: 4096, maxPendingHeaderBytes: 8191 });
  } catch (e) {
    err = e;
  }
  assert.instance(err, RangeError);
  assert.is(err.code, 'ERR_OUT_OF_RANGE');
  assert.match(err.message, /maxPendingHeaderBytes/);
  const ok = await listen({ maxHeaderBytes: 4096, maxPendingHeaderBytes: 8192 });
  assert.ok(ok.port > 0);
});

// ---------------------------------------------------------------------------
// handshakeTimeoutMs
// ---------------------------------------------------------------------------

test('handshakeTimeoutMs: 300 — a silent socket and a slowloris are closed in time; a good client is not', async () => {
  const server = await listen({ handshakeTimeoutMs: 300 });
  attachEcho(server);
  // A well-behaved client first: it must outlive both timeouts below.
  const good = await ws(urlOf(server));

  const t0 = performance.now();
  const silent = track(new RawWsPeer(await rawTcpConnect(server.port)));
  const slow = track(new RawWsPeer(await rawTcpConnect(server.port)));
  const tSlow = performance.now();
  // Slowloris: half a request line, then one more header byte every 50 ms.
  slow.write('GET /chat HT');
  const trickle = `TP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'z'.repeat(200)}`;
  let i = 0;
  const timer = setInterval(() => {
    if (i < trickle.length) slow.write(trickle[i++]);
  }, 50);
  cleanups.push(async () => clearInterval(timer));

  await withTimeout(silent.closed, 3000, 'server closing the silent socket');
  const silentMs = silent.closedAt - t0;
  await withTimeout(slow.closed, 3000, 'server closing the slowloris socket');
  clearInterval(timer);
  const slowMs = slow.closedAt - tSlow;
  assert.ok(
    silentMs >= 250 && silentMs <= 1500,
    `silent socket closed after ${silentMs.toFixed(0)} ms`,
  );
  assert.ok(slowMs >= 250 && slowMs <= 1500, `slowloris closed after ${slowMs.toFixed(0)} ms`);
  assert.ok(i >= 3, `the slowloris trickled ${i} bytes before the close`);
  // The good client is past its handshake: unaffected.
  assert.is(good.readyState, WebSocket.OPEN);
  assert.is((await echoRoundTrip(good, 'still here')).data, 'still here');
  assert.equal(good.errors, []);
  assert.is(server.connectionCount, 1);
});

// ---------------------------------------------------------------------------
// closeTimeoutMs
// ---------------------------------------------------------------------------

test('closeTimeoutMs: 300 — a peer that never answers the close is dropped in time; close reports 1006', async () => {
  const server = await listen({ closeTimeoutMs: 300 });
  const connP = nextConnection(server);
  const peer = track(await rawWsUpgrade(server.port));
  const [conn] = await connP;
  conn.on('error', () => {});
  const closeP = connClosed(conn);
  const t0 = performance.now();
  conn.close(4000, 'bye');
  // The raw client sees the close frame, and does not answer.
  const f = await peer.nextFrame(2000, 'close frame', OP.close);
  assert.is(f.payload.readUInt16BE(0), 4000);
  assert.is(f.payload.subarray(2).toString(), 'bye');
  assert.is(f.masked, false);
  await withTimeout(peer.closed, 3000, 'server dropping TCP after closeTimeoutMs');
  const elapsed = peer.closedAt - t0;
  assert.ok(
    elapsed >= 250 && elapsed <= 1500,
    `TCP closed ${elapsed.toFixed(0)} ms after conn.close() (closeTimeoutMs 300)`,
  );
  const c = await closeP;
  assert.is(c.code, 1006, `close event: ${JSON.stringify(c)}`);
  assert.is(c.wasClean, false);
  assert.is(conn.isOpen, false);
  assert.is(server.connectionCount, 0);
});

test('closeTimeoutMs: a peer that answers the close gets a clean close well before the timeout', async () => {
  const server = await listen({ closeTimeoutMs: 300 });
  const connP = nextConnection(server);
  const peer = track(await rawWsUpgrade(server.port));
  const [conn] = await connP;
  const closeP = connClosed(conn);
  conn.close(4001, 'ok');
  const f = await peer.nextFrame(2000, 'close frame', OP.close);
  assert.is(f.payload.readUInt16BE(0), 4001);
  const t0 = performance.now();
  peer.send({ opcode: OP.close, payload: f.payload });
  const c = await closeP;
  assert.equal({ code: c.code, wasClean: c.wasClean }, { code: 4001, wasClean: true });
  await withTimeout(peer.closed, 2000, 'TCP close after the close handshake');
  assert.ok(peer.closedAt - t0 < 250, `took ${(peer.closedAt - t0).toFixed(0)} ms`);
});

test.after(exitWatchdog);
test.run();
