// A TLS server hands an accepted socket to lws (whose SSL object and OpenSSL's handshake buffers
// cost ~50 KB from the moment it adopts one) only once the client's first TLS record, its
// ClientHello, is all there. A client that connects and sends nothing, or part of a record,
// costs what a plain socket does; a ClientHello that trickles in byte by byte still completes;
// a peer that gives up halfway is closed at once, not at handshakeTimeoutMs.

import { fork } from 'node:child_process';
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
import { ROOT } from './support/paths.mjs';
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
  const server = await tlsServer();
  try {
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
  } finally {
    await server.close();
  }
});

test('a peer that sends part of its first record and ends is closed at once, not at handshakeTimeoutMs', async () => {
  const server = await tlsServer({ handshakeTimeoutMs: 30000 });
  try {
    // 3 bytes (part of the header), and 5 + 10 of a record announcing 512 bytes.
    const header = Buffer.from([22, 3, 1, 0x02, 0x00]);
    for (const bytes of [header.subarray(0, 3), Buffer.concat([header, Buffer.alloc(10, 1)])]) {
      const s = await rawSocket(server.port);
      const t0 = performance.now();
      s.end(bytes);
      await closed(s, `close after ${bytes.length} bytes and a FIN`);
      assert.ok(msSince(t0) < 5000);
    }
  } finally {
    await server.close();
  }
});

test('a socket that stalls inside its ClientHello is dropped at handshakeTimeoutMs', async () => {
  const server = await tlsServer({ handshakeTimeoutMs: 300 });
  try {
    const s = await rawSocket(server.port);
    const t0 = performance.now();
    s.write(Buffer.from([22, 3, 1, 0x02, 0x00, 1, 2, 3]));
    await closed(s, 'close at the handshake deadline');
    const ms = msSince(t0);
    assert.ok(ms >= 250, `closed after ${ms.toFixed(0)} ms, before the deadline`);
  } finally {
    await server.close();
  }
});

test('bytes that are not TLS are refused by lws as before', async () => {
  const server = await tlsServer({ handshakeTimeoutMs: 30000 });
  try {
    const s = await rawSocket(server.port);
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await closed(s, 'a plain-text request on the TLS port closed');
  } finally {
    await server.close();
  }
});

test('2,000 sockets that connect to a TLS server and send nothing cost what plain sockets do', async () => {
  // The server in a child process of its own: its RSS is the figure.
  const child = fork(path.join(ROOT, 'test/fixtures/tls-idle-server.mjs'), [cert.cert, cert.key], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ask = () =>
    withTimeout(
      new Promise((resolve) => {
        child.once('message', resolve);
        child.send('rss');
      }),
      10000,
      'the server reports its RSS',
    );
  const sockets = [];
  try {
    const { port } = await withTimeout(
      new Promise((resolve) => child.once('message', resolve)),
      10000,
      'the server listens',
    );
    const before = await ask();
    for (let i = 0; i < 2000; i++) sockets.push(await rawSocket(port));
    // Every socket accepted: the server counts them as it watches them.
    let after;
    for (;;) {
      after = await ask();
      if (after.sockets >= 2000) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const per = (after.rss - before.rss) / 2000;
    note(`2,000 silent sockets on a TLS server: ${per.toFixed(0)} B of RSS each`);
    // ~51 KB each when lws adopted them at once (SSL object, handshake and record buffers).
    assert.ok(per < 8 * 1024, `${per.toFixed(0)} B per silent socket`);
  } finally {
    for (const s of sockets) s.destroy();
    child.kill();
    await onceEvent(child, 'exit', 10000, 'server exit').catch(() => {});
  }
});

test.run();
