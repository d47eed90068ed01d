// TLS inside Node: wss:// servers (lws's TLS, bound to Node's OpenSSL) and
// clients (node-lws's own TLS over its socket), against ws, node-lws itself and
// Chromium, with certificates the test makes with the openssl command.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket, { WebSocketServer } from 'ws';
import * as lws from '../dist/index.mjs';
import { launchChromium } from './support/chromium.mjs';
import { freePort } from './support/net.mjs';
import { note } from './support/suite.mjs';
import { captureRejection, onceEvent, withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-tls-'));

function openssl(args) {
  try {
    execFileSync('openssl', args, { stdio: 'pipe' });
  } catch (err) {
    throw new Error(
      `openssl ${args.join(' ')} failed (is Debian's openssl installed?): ${err.message}`,
    );
  }
}

/** A self-signed certificate for `cn` with subjectAltName entries; returns file paths. */
function makeCert(
  name,
  { cn = 'localhost', san = 'DNS:localhost,IP:127.0.0.1', ec = false, pass } = {},
) {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.crt`);
  const keyArgs = ec
    ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']
    : ['-newkey', 'rsa:2048'];
  const encArgs = pass ? ['-passout', `pass:${pass}`] : ['-nodes'];
  openssl([
    'req',
    '-x509',
    ...keyArgs,
    ...encArgs,
    '-subj',
    `/CN=${cn}`,
    '-days',
    '2',
    '-keyout',
    key,
    '-out',
    cert,
    '-addext',
    `subjectAltName=${san}`,
  ]);
  return { key, cert };
}

const main = makeCert('main');
const ecCert = makeCert('ec', { ec: true });
const encrypted = makeCert('enc', { pass: 'secret' });
const otherHost = makeCert('other', { cn: 'example.invalid', san: 'DNS:example.invalid' });

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

/** root CA -> intermediate CA -> leaf for localhost; returns file paths. */
function makeChain() {
  const f = (n) => path.join(dir, n);
  const ext = f('ext.cnf');
  fs.writeFileSync(
    ext,
    '[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n' +
      '[leaf]\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n',
  );
  openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=node-lws test root',
    '-days',
    '2',
    '-keyout',
    f('root.key'),
    '-out',
    f('root.crt'),
  ]);
  openssl([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=node-lws test intermediate',
    '-keyout',
    f('inter.key'),
    '-out',
    f('inter.csr'),
  ]);
  openssl([
    'x509',
    '-req',
    '-in',
    f('inter.csr'),
    '-CA',
    f('root.crt'),
    '-CAkey',
    f('root.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    ext,
    '-extensions',
    'ca',
    '-out',
    f('inter.crt'),
  ]);
  openssl([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=localhost',
    '-keyout',
    f('leaf.key'),
    '-out',
    f('leaf.csr'),
  ]);
  openssl([
    'x509',
    '-req',
    '-in',
    f('leaf.csr'),
    '-CA',
    f('inter.crt'),
    '-CAkey',
    f('inter.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    ext,
    '-extensions',
    'leaf',
    '-out',
    f('leaf.crt'),
  ]);
  return { root: f('root.crt'), inter: f('inter.crt'), leaf: f('leaf.crt'), key: f('leaf.key') };
}

test('certificate chains: intermediates from tls.ca or from a cert bundle reach the client', async () => {
  const c = makeChain();
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

test('Chromium loads a page over https and talks wss to the same node-lws server', async () => {
  const www = fs.mkdtempSync(path.join(dir, 'www-'));
  fs.writeFileSync(
    path.join(www, 'index.html'),
    `<!doctype html><html><body><script>
window.__result = new Promise((resolve, reject) => {
  const ws = new WebSocket('wss://' + location.host + '/ws', 'acip');
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => { ws.send('hello from chromium'); ws.send(new Uint8Array(65536).map((_, i) => i & 255)); };
  const got = [];
  ws.onmessage = (e) => {
    got.push(typeof e.data === 'string' ? e.data : new Uint8Array(e.data).reduce((a, b) => (a + b) % 65521, 0));
    if (got.length === 2) { ws.close(1000, 'bye'); resolve({ protocol: ws.protocol, got }); }
  };
  ws.onerror = () => reject(new Error('websocket error'));
});
</script></body></html>`,
  );
  const server = await lws.listen({
    host: HOST,
    port: 0,
    tls: { cert: main.cert, key: main.key },
    static: { root: www },
    path: '/ws',
    protocols: ['acip'],
  });
  server.on('connection', (c) => c.on('message', (d, b) => c.send(d, b)));
  let browser;
  try {
    browser = await launchChromium({ ignoreHTTPSErrors: true });
    const { page } = browser;
    await page.goto(`https://localhost:${server.port}/`, { timeout: 15000 });
    const result = await withTimeout(
      page.evaluate(() => window.__result),
      15000,
      'page result',
    );
    const expected = new Uint8Array(65536)
      .map((_, i) => i & 255)
      .reduce((a, b) => (a + b) % 65521, 0);
    assert.equal(result, { protocol: 'acip', got: ['hello from chromium', expected] });
  } finally {
    await browser?.close();
    await server.close();
  }
});

test.run();
