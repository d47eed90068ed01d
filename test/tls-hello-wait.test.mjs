// A TLS server hands an accepted socket to lws (whose SSL object and OpenSSL's handshake buffers
// cost ~50 KB from the moment it adopts one) only once the client's first TLS record, its
// ClientHello, is all there. A client that connects and sends nothing, or part of a record,
// costs what a plain socket does; a ClientHello that trickles in byte by byte still completes;
// a peer that gives up halfway is closed at once, not at handshakeTimeoutMs. Once lws has it, a
// handshake counts ~48 KiB against maxPendingHeaderBytes until its first request byte arrives.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { makeCert } from './support/certs.mjs';
import { startServerProcess } from './support/proc.mjs';
import { note } from './support/suite.mjs';
import { msSince, onceEvent, withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-hello-'));
const cert = makeCert(dir, 'hello', { ec: true });
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function tlsServer(extra = {}) {
  const server = await lws.listen({
    host: HOST,
    port: 0,
    tls: { cert: cert.cert, key: cert.key },
    ...extra,
  });
  server.on('connection', (c) => c.on('message', (d, b) => c.send(d, b)));
  return server;
}

/** Runs fn(server) with a TLS echo server made with `extra` options, closed afterwards. */
async function withTlsServer(extra, fn) {
  const server = await tlsServer(extra);
  try {
    await fn(server);
  } finally {
    await server.close();
  }
}

/** The socket closed, by a FIN or a reset (the server resets a socket with bytes unread). */
const closed = (s, label) =>
  withTimeout(new Promise((resolve) => s.once('close', resolve)), 5000, label);

/** A raw TCP socket to the server, connected. */
async function rawSocket(port) {
  const s = net.connect(port, HOST);
  s.on('error', () => {});
  await onceEvent(s, 'connect', 5000, 'TCP connect');
  return s;
}

/**
 * A Duplex over `socket` that writes what TLS gives it one byte at a time, a timer tick
 * apart, so the server sees the ClientHello arrive in pieces (its header split, its body split).
 */
function tricklingDuplex(socket) {
  const d = new Duplex({
    write(chunk, _enc, done) {
      let i = 0;
      const next = () => {
        if (i >= chunk.length) return done();
        socket.write(chunk.subarray(i, i + 1));
        i++;
        setTimeout(next, 1);
      };
      next();
    },
    read() {},
    final(done) {
      socket.end();
      done();
    },
  });
  socket.on('data', (b) => d.push(b));
  socket.on('end', () => d.push(null));
  return d;
}

test('a ClientHello that arrives a byte at a time completes, and the upgrade over it too', async () => {
  await withTlsServer({}, async (server) => {
    const socket = await rawSocket(server.port);
    const t = tls.connect({ socket: tricklingDuplex(socket), rejectUnauthorized: false });
    await onceEvent(t, 'secureConnect', 20000, 'TLS handshake over a trickling ClientHello');
    t.write(
      `GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const head = await withTimeout(
      new Promise((resolve) => {
        let got = '';
        t.on('data', (b) => {
          got += b.toString('latin1');
          if (got.includes('\r\n\r\n')) resolve(got);
        });
      }),
      10000,
      'the 101 response',
    );
    assert.match(head, /^HTTP\/1\.1 101 /);
    t.destroy();
  });
});

test('a peer that sends part of its first record and ends is closed at once, not at handshakeTimeoutMs', async () => {
  await withTlsServer({ handshakeTimeoutMs: 30000 }, async (server) => {
    // 3 bytes (part of the header), and 5 + 10 of a record announcing 512 bytes.
    const header = Buffer.from([22, 3, 1, 0x02, 0x00]);
    for (const bytes of [header.subarray(0, 3), Buffer.concat([header, Buffer.alloc(10, 1)])]) {
      const s = await rawSocket(server.port);
      const t0 = performance.now();
      s.end(bytes);
      await closed(s, `close after ${bytes.length} bytes and a FIN`);
      assert.ok(msSince(t0) < 5000);
    }
  });
});

test('a socket that stalls inside its ClientHello is dropped at handshakeTimeoutMs', async () => {
  await withTlsServer({ handshakeTimeoutMs: 300 }, async (server) => {
    const s = await rawSocket(server.port);
    const t0 = performance.now();
    s.write(Buffer.from([22, 3, 1, 0x02, 0x00, 1, 2, 3]));
    await closed(s, 'close at the handshake deadline');
    const ms = msSince(t0);
    assert.ok(ms >= 250, `closed after ${ms.toFixed(0)} ms, before the deadline`);
  });
});

test('bytes that are not TLS are refused by lws as before', async () => {
  await withTlsServer({ handshakeTimeoutMs: 30000 }, async (server) => {
    const s = await rawSocket(server.port);
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await closed(s, 'a plain-text request on the TLS port closed');
  });
});

/**
 * A TLS client whose handshake stalls: its ClientHello reaches the server, and nothing after it
 * (the Duplex under it swallows every later write). Resolves once the server has answered (its
 * ServerHello came back: lws has the socket); `closed` resolves when the server closes it.
 */
async function stalledHandshake(port) {
  const socket = await rawSocket(port);
  let writes = 0;
  let answered;
  const serverAnswered = new Promise((resolve) => {
    answered = resolve;
  });
  const d = new Duplex({
    write(chunk, _enc, done) {
      if (writes++ === 0) socket.write(chunk);
      done();
    },
    read() {},
  });
  socket.on('data', (b) => {
    answered();
    d.push(b);
  });
  const t = tls.connect({ socket: d, rejectUnauthorized: false });
  t.on('error', () => {});
  const isClosed = new Promise((resolve) => socket.once('close', resolve));
  await withTimeout(serverAnswered, 5000, 'the ServerHello');
  let gone = false;
  isClosed.then(() => {
    gone = true;
  });
  return { socket, t, isClosed, gone: () => gone };
}

test('TLS handshakes that stall count against maxPendingHeaderBytes: the oldest are closed, a prompt client gets in', async () => {
  const logs = [];
  // 5 handshakes of 48 KiB fit in 256 KiB; the 6th, 7th and 8th push out the oldest three.
  const server = await tlsServer({
    handshakeTimeoutMs: 30000,
    maxPendingHeaderBytes: 256 * 1024,
    logger: (_level, message) => logs.push(message),
  });
  const stalled = [];
  try {
    for (let i = 0; i < 8; i++) stalled.push(await stalledHandshake(server.port));
    await withTimeout(
      Promise.all(stalled.slice(0, 3).map((h) => h.isClosed)),
      5000,
      'the three oldest handshakes closed',
    );
    // The others stay: until handshakeTimeoutMs, or the 5 s lws gives a TLS handshake of its own.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(
      stalled.map((h) => h.gone()),
      [true, true, true, false, false, false, false, false],
      `the oldest go first; the others stay until handshakeTimeoutMs ${JSON.stringify(stalled.map((h) => h.gone()))}`,
    );
    const client = await lws.connect(`wss://127.0.0.1:${server.port}/`, {
      tls: { rejectUnauthorized: false },
    });
    const reply = new Promise((resolve) => client.once('message', resolve));
    client.send('prompt');
    assert.is(String(await withTimeout(reply, 5000, 'echo')), 'prompt');
    client.close();
    assert.ok(
      logs.some((m) => m.includes('maxPendingHeaderBytes') && m.includes('TLS handshakes')),
      `a log line says why: ${JSON.stringify(logs)}`,
    );
  } finally {
    for (const h of stalled) h.socket.destroy();
    await server.close();
  }
});

test('2,000 sockets that connect to a TLS server and send nothing cost what plain sockets do', async () => {
  // The server in a process of its own: its RSS is the figure.
  const server = await startServerProcess({
    tls: { cert: cert.cert, key: cert.key },
    handshakeTimeoutMs: 120_000,
  });
  const sockets = [];
  try {
    const before = await server.stats();
    for (let i = 0; i < 2000; i++) sockets.push(await rawSocket(server.port));
    // Every socket accepted: the server counts them as it watches them.
    let after;
    const deadline = Date.now() + 20000;
    for (;;) {
      after = await server.stats();
      if (after.sockets >= 2000) break;
      if (Date.now() > deadline) assert.unreachable(`only ${after.sockets} sockets accepted`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const per = (after.rss - before.rss) / 2000;
    note(`2,000 silent sockets on a TLS server: ${per.toFixed(0)} B of RSS each`);
    // ~51 KB each when lws adopted them at once (SSL object, handshake and record buffers).
    assert.ok(per < 8 * 1024, `${per.toFixed(0)} B per silent socket`);
  } finally {
    for (const s of sockets) s.destroy();
    await server.stop();
  }
});

test.run();
