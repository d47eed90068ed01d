// TLS inside Node: wss:// servers (lws's TLS, bound to Node's OpenSSL) and
// clients (node-lws's own TLS over its socket), against ws and node-lws itself, with
// certificates the test makes with the openssl command (Chromium over wss:
// system/chromium.test.mjs).
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket, { WebSocketServer } from 'ws';
import * as lws from '../dist/index.mjs';
import { makeCert, makeChain } from './support/certs.mjs';
import { slowGet } from './support/http-server.mjs';
import { freePort } from './support/net.mjs';
import { note } from './support/suite.mjs';
import { captureRejection, onceEvent, withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-tls-'));

const main = makeCert(dir, 'main');
const ecCert = makeCert(dir, 'ec', { ec: true });
const encrypted = makeCert(dir, 'enc', { pass: 'secret' });
const otherHost = makeCert(dir, 'other', { cn: 'example.invalid', san: 'DNS:example.invalid' });

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function echoServer(tls, extra = {}) {
  const server = await lws.listen({ host: HOST, port: 0, tls, ...extra });
  server.on('connection', (c) => c.on('message', (d, b) => c.send(d, b)));
  return server;
}

async function roundTrip(t, data) {
  const reply = new Promise((resolve) => t.once('message', (d, b) => resolve([d, b])));
  t.send(data);
  return withTimeout(reply, 10000, 'echo over TLS');
}

test('wss server (cert and key as paths) ↔ ws client: text and 1 MiB binary', async () => {
  const server = await echoServer({ cert: main.cert, key: main.key });
  try {
    const ws = new WebSocket(`wss://localhost:${server.port}/`, { ca: fs.readFileSync(main.cert) });
    await onceEvent(ws, 'open', 5000, 'ws client open over TLS');
    const big = crypto.randomBytes(1 << 20);
    const text = new Promise((r) => ws.once('message', (d, b) => r([String(d), b])));
    ws.send('héllo tls');
    assert.equal(await withTimeout(text, 5000, 'text echo'), ['héllo tls', false]);
    const bin = new Promise((r) => ws.once('message', (d, b) => r([d, b])));
    ws.send(big);
    const [d, b] = await withTimeout(bin, 10000, 'binary echo');
    assert.ok(b);
    assert.ok(Buffer.compare(d, big) === 0, '1 MiB intact');
    ws.close();
    await onceEvent(ws, 'close');
  } finally {
    await server.close();
  }
});

test("a wss connection outlives lws's 5 s adoption timeout (echoes for 6.5 s)", async () => {
  const server = await echoServer({ cert: main.cert, key: main.key });
  try {
    const ws = new WebSocket(`wss://localhost:${server.port}/`, { ca: fs.readFileSync(main.cert) });
    await onceEvent(ws, 'open', 5000, 'ws client open over TLS');
    let closed = false;
    ws.on('close', () => {
      closed = true;
    });
    // One echo every 500 ms, each awaited: the connection must carry them past the 5 s mark.
    const t0 = Date.now();
    for (let i = 0; Date.now() - t0 < 6500; i++) {
      const echo = new Promise((r) => ws.once('message', (d) => r(String(d))));
      ws.send(`tick ${i}`);
      assert.is(await withTimeout(echo, 2000, `echo ${i} at ${Date.now() - t0} ms`), `tick ${i}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.not.ok(closed, 'still open');
    ws.close();
    await onceEvent(ws, 'close');
  } finally {
    await server.close();
  }
});

test('handshakeTimeoutMs governs a TLS handshake, not lws (5 s): a slow upgrade above it is taken, a silent one closed at it', async () => {
  const server = await echoServer({ cert: main.cert, key: main.key }, { handshakeTimeoutMs: 8000 });
  let opened = 0;
  const firstOpen = new Promise((resolve) =>
    server.on('connection', () => {
      opened++;
      resolve();
    }),
  );
  try {
    const connect = async () => {
      const s = tls.connect({
        host: HOST,
        port: server.port,
        ca: fs.readFileSync(main.cert),
        servername: 'localhost',
      });
      s.on('error', () => {});
      const t0 = Date.now();
      await onceEvent(s, 'secureConnect', 5000, 'TLS handshake');
      const ended = new Promise((resolve) => s.once('close', () => resolve(Date.now() - t0)));
      return { s, t0, ended };
    };
    // Slow: its TLS is done at once, its upgrade request comes 5.6 s after it connected (past
    // lws's 5 s, within handshakeTimeoutMs). Silent: TLS done, then nothing.
    const [slow, silent] = await Promise.all([connect(), connect()]);
    const reply = new Promise((resolve) => {
      let got = '';
      slow.s.on('data', (d) => {
        got += d.toString('latin1');
        if (got.includes('\r\n\r\n')) resolve(got.split('\r\n')[0]);
      });
    });
    // The scenario is a client that takes this long; the wait is the test's input, not a sync.
    await new Promise((r) => setTimeout(r, 5600 - (Date.now() - slow.t0)));
    slow.s.write(
      'GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    const status = await withTimeout(
      Promise.race([reply, slow.ended.then((ms) => `closed after ${ms} ms`)]),
      3000,
      "the slow client's upgrade answer",
    );
    assert.is(status, 'HTTP/1.1 101 Switching Protocols');
    await withTimeout(firstOpen, 3000, "the slow client's 'connection'");
    const silentMs = await withTimeout(silent.ended, 6000, 'the silent client closed');
    assert.ok(
      silentMs >= 7500 && silentMs < 10000,
      `silent client closed at ${silentMs} ms, not ~8000`,
    );
    assert.is(opened, 1, 'one connection opened, the slow one');
    slow.s.destroy();
  } finally {
    await server.close();
  }
});

test('node-lws wss client ↔ node-lws wss server: 16 MiB intact, close handshake', async () => {
  const server = await echoServer({
    cert: fs.readFileSync(main.cert),
    key: fs.readFileSync(main.key),
  });
  try {
    const client = await lws.connect(`wss://localhost:${server.port}/x`, {
      tls: { ca: main.cert },
    });
    const big = crypto.randomBytes(16 << 20);
    const [d, b] = await roundTrip(client, big);
    assert.ok(b);
    assert.ok(d.equals(big), '16 MiB intact');
    assert.equal(await roundTrip(client, 'done'), ['done', false]);
    const closed = onceEvent(client, 'close');
    client.close(4000, 'bye');
    const [code, reason, wasClean] = await closed;
    assert.equal([code, reason, wasClean], [4000, 'bye', true]);
  } finally {
    await server.close();
  }
});

test('node-lws wss client ↔ ws over a Node https server', async () => {
  const hs = https.createServer({
    cert: fs.readFileSync(main.cert),
    key: fs.readFileSync(main.key),
  });
  const wss = new WebSocketServer({ server: hs });
  wss.on('connection', (w) => w.on('message', (d, b) => w.send(d, { binary: b })));
  await new Promise((r) => hs.listen(0, HOST, r));
  try {
    const client = await lws.connect(`wss://localhost:${hs.address().port}/`, {
      tls: { ca: main.cert },
    });
    assert.equal(await roundTrip(client, 'to ws'), ['to ws', false]);
    const blob = crypto.randomBytes(300 * 1024);
    const [d] = await roundTrip(client, blob);
    assert.ok(d.equals(blob));
    client.close();
    await onceEvent(client, 'close');
  } finally {
    wss.close();
    await new Promise((r) => hs.close(r));
  }
});

test('certificate checks: unknown CA, wrong host name, rejectUnauthorized: false', async () => {
  const server = await echoServer({ cert: main.cert, key: main.key });
  const other = await echoServer({ cert: otherHost.cert, key: otherHost.key });
  try {
    const url = `wss://localhost:${server.port}/`;
    let err = await captureRejection(() => lws.connect(url), 5000, 'connect with Node roots');
    assert.is(err.code, 'ERR_TLS_CERT_VERIFY', err.message);
    assert.match(err.message, /self.signed/);
    err = await captureRejection(
      () => lws.connect(`wss://localhost:${other.port}/`, { tls: { ca: otherHost.cert } }),
      5000,
      'connect to a certificate for another host',
    );
    assert.is(err.code, 'ERR_TLS_CERT_VERIFY', err.message);
    assert.match(err.message, /hostname|mismatch/i);
    const insecure = await lws.connect(url, { tls: { rejectUnauthorized: false } });
    assert.equal(await roundTrip(insecure, 'ok'), ['ok', false]);
    insecure.close();
    await onceEvent(insecure, 'close');
  } finally {
    await server.close();
    await other.close();
  }
});

test('EC keys, and encrypted keys with their passphrase', async () => {
  for (const [label, tls] of [
    ['EC key', { cert: ecCert.cert, key: ecCert.key }],
    ['encrypted RSA key', { cert: encrypted.cert, key: encrypted.key, passphrase: 'secret' }],
  ]) {
    const server = await echoServer(tls);
    try {
      const ca = tls.cert;
      const client = await lws.connect(`wss://localhost:${server.port}/`, { tls: { ca } });
      assert.equal(await roundTrip(client, label), [label, false], label);
      client.close();
      await onceEvent(client, 'close');
    } finally {
      await server.close();
    }
  }
});

test('a bad certificate or key fails listen() with a clear error', async () => {
  const cases = [
    ['key given as the cert', { cert: main.key, key: main.key }, /certificate|PEM|no start line/i],
    ['missing file', { cert: path.join(dir, 'nope.crt'), key: main.key }, /Cannot read tls\.cert/],
    [
      'wrong passphrase',
      { cert: encrypted.cert, key: encrypted.key, passphrase: 'wrong' },
      /decrypt|bad|passphrase/i,
    ],
    ['key of another certificate', { cert: main.cert, key: ecCert.key }, /key|values mismatch/i],
  ];
  for (const [label, tls, pattern] of cases) {
    const err = await captureRejection(() => lws.listen({ host: HOST, tls }), 5000, label);
    assert.is(err.code, 'ERR_TLS_CERT', `${label}: ${err.code} ${err.message}`);
    assert.match(err.message, pattern, `${label}: ${err.message}`);
  }
});

test('certificate chains: intermediates from tls.ca or from a cert bundle reach the client', async () => {
  const c = makeChain(dir);
  // Without the intermediate the client (trusting only the root) cannot verify.
  const bare = await echoServer({ cert: c.leaf, key: c.key });
  try {
    const err = await captureRejection(
      () => lws.connect(`wss://localhost:${bare.port}/`, { tls: { ca: c.root } }),
      5000,
      'connect without the intermediate',
    );
    assert.is(err.code, 'ERR_TLS_CERT_VERIFY', err.message);
  } finally {
    await bare.close();
  }
  const bundle = Buffer.concat([fs.readFileSync(c.leaf), fs.readFileSync(c.inter)]);
  for (const [label, tls] of [
    ['tls.ca', { cert: c.leaf, key: c.key, ca: c.inter }],
    ['bundle', { cert: bundle, key: c.key }],
  ]) {
    const server = await echoServer(tls);
    try {
      const client = await lws.connect(`wss://localhost:${server.port}/`, { tls: { ca: c.root } });
      assert.equal(await roundTrip(client, label), [label, false], label);
      client.close();
      await onceEvent(client, 'close');
      const ws = new WebSocket(`wss://localhost:${server.port}/`, { ca: fs.readFileSync(c.root) });
      await onceEvent(ws, 'open', 5000, `ws client with the root only (${label})`);
      ws.close();
    } finally {
      await server.close();
    }
  }
});

test('https static file: 24 MiB streamed through TLS arrives intact, to a client that pauses', async () => {
  const root = path.join(dir, 'static');
  fs.mkdirSync(root, { recursive: true });
  const bytes = crypto.randomBytes(24 * 1024 * 1024);
  fs.writeFileSync(path.join(root, 'big.bin'), bytes);
  const server = await lws.listen({
    host: HOST,
    port: 0,
    tls: { cert: main.cert, key: main.key },
    static: { root },
    closeTimeoutMs: 300,
  });
  try {
    const got = await slowGet(
      https.get,
      {
        host: HOST,
        port: server.port,
        path: '/big.bin',
        ca: fs.readFileSync(main.cert),
        servername: 'localhost',
        agent: false,
      },
      40,
      'the https GET',
    );
    assert.is(got.res.statusCode, 200);
    assert.is(got.res.headers['content-length'], String(bytes.length));
    assert.ok(got.body.equals(bytes), `body differs (${got.body.length} bytes)`);
  } finally {
    await server.close();
  }
});

test('wss to a refused port fails at once with ECONNREFUSED', async () => {
  const port = await freePort(HOST);
  const t0 = performance.now();
  const err = await captureRejection(
    () => lws.connect(`wss://${HOST}:${port}/`),
    5000,
    'refused wss',
  );
  const ms = performance.now() - t0;
  note(`wss ECONNREFUSED after ${ms.toFixed(1)} ms`);
  assert.is(err.code, 'ECONNREFUSED');
  assert.ok(ms < 1000, `took ${ms} ms`);
});

test.run();
