// A real browser against a node-lws server: headless Debian Chromium (driven by
// playwright-core, no downloaded browser) loads a page from a small node http
// server; the page opens `new WebSocket(url, 'acip')` to node-lws and both sides
// exchange a text message and a 1 MiB binary message, checking SHA-256 digests
// of a deterministic byte pattern on both ends. Then the browser closes with
// 4000 and both sides report the close.
//
// Also from the browser's side: permessage-deflate negotiated with a node-lws server, and a
// page served over https by a node-lws wss:// server that talks wss to it (the rest of those
// features is checked without a browser in permessage-deflate.test.mjs and tls.test.mjs).

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../../dist/index.mjs';
import { makeCert } from '../support/certs.mjs';
import { chromiumPageResult, launchChromium } from '../support/chromium.mjs';
import { patternBytes, sha256 } from '../support/data.mjs';
import { connClosed, nextConnection } from '../support/lws.mjs';
import { ARTIFACTS } from '../support/paths.mjs';
import { cleanupsAfterEach, exitWatchdog, note } from '../support/suite.mjs';
import { withTimeout } from '../support/wait.mjs';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;
const BROWSER_SEED = 11; // pattern the browser sends
const SERVER_SEED = 22; // pattern the server sends
const BROWSER_TEXT = 'hello from the browser ✓ ünïcödé';

// The page. Its xorshift32 pattern generator is the same as patternBytes() in
// test/support/data.mjs, so both sides can compute the bytes the other one must see.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>node-lws browser test</title>
<style>body{font:14px monospace;margin:16px} .ok{color:#070} .bad{color:#b00}</style></head>
<body><h3>node-lws ↔ Chromium</h3><pre id="log">starting…</pre>
<script>
'use strict';
const logEl = document.getElementById('log');
const lines = [];
function log(s, cls) { lines.push(s); logEl.textContent = lines.join('\\n'); if (cls) logEl.className = cls; }
function pattern(length, seed) {
  const words = Math.ceil(length / 4);
  const u32 = new Uint32Array(words);
  let x = (seed >>> 0) || 0x9e3779b9;
  for (let i = 0; i < words; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    u32[i] = x;
  }
  return new Uint8Array(u32.buffer, 0, length);
}
async function sha256hex(bytes) {
  const d = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, '0')).join('');
}
const params = new URLSearchParams(location.search);
const url = params.get('ws');
let ws;
window.__closed = new Promise((resolve) => { window.__resolveClosed = resolve; });
window.__result = new Promise((resolve, reject) => {
  let done = false;
  const fail = (msg) => { if (!done) { done = true; log('FAIL: ' + msg, 'bad'); reject(new Error(msg)); } };
  try { ws = new WebSocket(url, 'acip'); } catch (e) { fail('new WebSocket threw: ' + e); return; }
  window.__ws = ws;
  ws.binaryType = 'arraybuffer';
  const got = [];
  ws.onopen = () => {
    log('open: protocol=' + JSON.stringify(ws.protocol) + ' extensions=' + JSON.stringify(ws.extensions));
    ws.send(${JSON.stringify(BROWSER_TEXT)});
    ws.send(pattern(${MiB}, ${BROWSER_SEED}));
    log('sent text + ' + ${MiB} + ' binary bytes; bufferedAmount=' + ws.bufferedAmount);
  };
  ws.onmessage = async (ev) => {
    got.push(ev.data);
    log('message ' + got.length + ': ' + (typeof ev.data === 'string' ? 'text ' + JSON.stringify(ev.data) : (ev.data && ev.data.constructor && ev.data.constructor.name) + ' of ' + ev.data.byteLength + ' bytes'));
    if (got.length < 2 || done) return;
    try {
      const [text, bin] = got;
      const isArrayBuffer = bin instanceof ArrayBuffer;
      const received = isArrayBuffer ? new Uint8Array(bin) : new Uint8Array(0);
      const receivedSha = await sha256hex(received);
      const expectedSha = await sha256hex(pattern(${MiB}, ${SERVER_SEED}));
      const sentSha = await sha256hex(pattern(${MiB}, ${BROWSER_SEED}));
      done = true;
      const result = {
        protocol: ws.protocol, extensions: ws.extensions, readyState: ws.readyState,
        text, textType: typeof text, isArrayBuffer, binaryLength: received.byteLength,
        receivedSha, expectedSha, sentSha, userAgent: navigator.userAgent,
      };
      log('received sha256 ' + receivedSha + (receivedSha === expectedSha ? ' (matches)' : ' (MISMATCH, expected ' + expectedSha + ')'),
        receivedSha === expectedSha ? 'ok' : 'bad');
      resolve(result);
    } catch (e) { fail('verification threw: ' + e); }
  };
  ws.onerror = () => { log('error event'); fail('WebSocket error event (readyState ' + ws.readyState + ')'); };
  ws.onclose = (ev) => {
    log('close: code=' + ev.code + ' reason=' + JSON.stringify(ev.reason) + ' wasClean=' + ev.wasClean);
    window.__resolveClosed({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
    fail('closed before the exchange finished: ' + ev.code + ' ' + ev.reason);
  };
});
</script></body></html>`;

const cleanups = cleanupsAfterEach(test, 10000);

test('Chromium ↔ node-lws: subprotocol acip, text and 1 MiB binary both ways, browser-initiated close', async () => {
  // node-lws server.
  const server = await lws.listen({ host: HOST, port: 0, protocols: ['acip'] });
  cleanups.push(() => server.close());
  const serverSeen = { text: [], binary: [] };
  // Handlers are attached in the 'connection' listener itself, so no message
  // can arrive before them.
  let resolveGotAll;
  const serverGotAll = new Promise((resolve) => {
    resolveGotAll = resolve;
  });
  server.on('connection', (conn) => {
    conn.on('error', () => {});
    conn.on('message', (data, isBinary) => {
      if (isBinary) serverSeen.binary.push(data);
      else {
        serverSeen.text.push(data);
        conn.send(`server got: ${data}`);
        conn.send(patternBytes(MiB, SERVER_SEED));
      }
      if (serverSeen.text.length >= 1 && serverSeen.binary.length >= 1) resolveGotAll();
    });
  });
  const connP = nextConnection(server, 30000);

  // Page server.
  const pageServer = http.createServer((req, res) => {
    if (req.url.startsWith('/index.html')) {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
      });
      res.end(PAGE);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  await new Promise((resolve, reject) => {
    pageServer.once('error', reject);
    pageServer.listen(0, HOST, resolve);
  });
  cleanups.push(
    () =>
      new Promise((resolve) => {
        pageServer.closeAllConnections();
        pageServer.close(() => resolve());
      }),
  );
  const pageOrigin = `http://${HOST}:${pageServer.address().port}`;
  const wsUrl = `ws://${HOST}:${server.port}/browser`;

  // Browser, with a fresh profile directory.
  const t0 = performance.now();
  const browser = await launchChromium({ viewport: { width: 900, height: 360 } });
  cleanups.push(() => browser.close());
  const { context } = browser;
  note(`chromium launched in ${(performance.now() - t0).toFixed(0)} ms`);
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));

  await page.goto(`${pageOrigin}/index.html?ws=${encodeURIComponent(wsUrl)}`, { timeout: 15000 });

  const [conn, request] = await connP;
  const serverClose = connClosed(conn, 20000);
  let result;
  try {
    result = await withTimeout(
      page.evaluate(() => window.__result),
      20000,
      'browser result',
    );
  } catch (err) {
    throw new Error(`${err.message}; browser console: ${consoleLines.join(' | ')}`);
  }
  await withTimeout(serverGotAll, 10000, 'server to receive the text and the binary message');

  // Handshake as the server saw it.
  assert.is(request.path, '/browser');
  assert.is(request.headers['sec-websocket-protocol'], 'acip');
  assert.is(request.headers.origin, pageOrigin, 'the browser sends its page origin');
  assert.match(request.headers['user-agent'] ?? '', /Chrome/);
  assert.match(
    request.headers['sec-websocket-extensions'] ?? '',
    /permessage-deflate/,
    'Chromium offers permessage-deflate',
  );
  assert.is(conn.protocol, 'acip');

  // Browser's view.
  assert.is(result.protocol, 'acip', 'browser WebSocket.protocol');
  assert.is(result.extensions, '', 'the server must decline permessage-deflate');
  assert.is(result.readyState, 1);
  assert.is(result.textType, 'string');
  assert.is(result.text, `server got: ${BROWSER_TEXT}`);
  assert.is(result.isArrayBuffer, true, "binaryType 'arraybuffer' must give an ArrayBuffer");
  assert.is(result.binaryLength, MiB);
  assert.is(result.expectedSha, sha256(patternBytes(MiB, SERVER_SEED)), 'page pattern generator');
  assert.is(result.sentSha, sha256(patternBytes(MiB, BROWSER_SEED)), 'page pattern generator');
  assert.is(result.receivedSha, result.expectedSha, 'server → browser 1 MiB content');

  // Server's view.
  assert.equal(serverSeen.text, [BROWSER_TEXT]);
  assert.is(serverSeen.binary.length, 1);
  assert.ok(Buffer.isBuffer(serverSeen.binary[0]));
  assert.is(serverSeen.binary[0].length, MiB);
  assert.is(
    sha256(serverSeen.binary[0]),
    sha256(patternBytes(MiB, BROWSER_SEED)),
    'browser → server 1 MiB content',
  );

  // Screenshot of the page with its log (test-artifacts/ is gitignored).
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const shot = path.join(ARTIFACTS, 'browser.png');
  await page.screenshot({ path: shot, timeout: 10000 });
  const png = fs.readFileSync(shot);
  assert.ok(png.length > 1000, `screenshot is ${png.length} bytes`);
  assert.is(png.subarray(1, 4).toString('latin1'), 'PNG');

  // Browser-initiated close.
  const browserClose = await withTimeout(
    page.evaluate(() => {
      window.__ws.close(4000, 'browser done');
      return window.__closed;
    }),
    10000,
    'browser close event',
  );
  const sc = await serverClose;
  assert.equal(sc, { code: 4000, reason: 'browser done', wasClean: true });
  // The server answers with the same code (RFC 6455 5.5.1); echoing the reason is optional.
  assert.is(browserClose.code, 4000, 'browser close event code');
  assert.is(browserClose.wasClean, true, 'browser close event wasClean');
  assert.type(browserClose.reason, 'string');
  note(`browser exchange done in ${(performance.now() - t0).toFixed(0)} ms (${result.userAgent})`);
});

// ---------------------------------------------------------------------------
// A page served by node-lws itself (static), talking to it on /ws
// ---------------------------------------------------------------------------

/** A folder with `index.html` = `html`, removed after the test. */
function pageFolder(html) {
  const www = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-chromium-www-'));
  cleanups.push(async () => fs.rmSync(www, { recursive: true, force: true }));
  fs.writeFileSync(path.join(www, 'index.html'), html);
  return www;
}

/** A node-lws echo server that also serves `www` over HTTP(S), closed after the test. */
async function echoServerWithPage(www, options) {
  const server = await lws.listen({
    host: HOST,
    port: 0,
    static: { root: www },
    path: '/ws',
    ...options,
  });
  cleanups.push(() => server.close());
  server.on('connection', (c) => c.on('message', (d, b) => c.send(d, b)));
  return server;
}

test('Chromium negotiates permessage-deflate with a node-lws server', async () => {
  const www = pageFolder(`<!doctype html><html><body><script>
window.__result = new Promise((resolve, reject) => {
  const ws = new WebSocket('ws://' + location.host + '/ws');
  const text = 'browser frame metadata, repeated '.repeat(3000);
  ws.onopen = () => ws.send(text);
  ws.onmessage = (e) => { resolve({ extensions: ws.extensions, same: e.data === text, length: e.data.length }); ws.close(); };
  ws.onerror = () => reject(new Error('websocket error'));
});
</script></body></html>`);
  const server = await echoServerWithPage(www, { perMessageDeflate: true });
  const result = await chromiumPageResult(`http://${HOST}:${server.port}/`);
  assert.match(result.extensions, /permessage-deflate/);
  assert.ok(result.same, `echo differs (length ${result.length})`);
});

test('Set-Cookie in the 101 reaches Chromium: the page sees the cookie, the next upgrade sends it back', async () => {
  const www = pageFolder(`<!doctype html><html><body><script>
window.__result = new Promise((resolve, reject) => {
  const before = document.cookie;
  const ws = new WebSocket('ws://' + location.host + '/ws');
  ws.onopen = () => {
    const afterOpen = document.cookie;
    ws.onmessage = (e) => {
      ws.close();
      const again = new WebSocket('ws://' + location.host + '/ws');
      again.onopen = () => again.send('second');
      again.onmessage = (e2) => { again.close(); resolve({ before, afterOpen, first: e.data, second: e2.data }); };
      again.onerror = () => reject(new Error('second websocket error'));
    };
    ws.send('first');
  };
  ws.onerror = () => reject(new Error('websocket error'));
});
</script></body></html>`);
  const cookies = [];
  let n = 0;
  const server = await lws.listen({
    host: HOST,
    port: 0,
    static: { root: www },
    path: '/ws',
    verify: (req) => {
      cookies.push(req.headers.cookie ?? '');
      n++;
      return {
        accept: true,
        headers: {
          'Set-Cookie': [
            `ws_session=s${n}; Path=/; SameSite=Lax`,
            `ws_secret=h${n}; Path=/; HttpOnly`,
          ],
        },
        data: { n },
      };
    },
  });
  cleanups.push(() => server.close());
  // The handler answers with what verify attached to its connection.
  server.on('connection', (c) => c.on('message', (d) => c.send(`${d} on connection ${c.data.n}`)));
  const result = await chromiumPageResult(`http://${HOST}:${server.port}/`);
  assert.is(result.before, '');
  assert.is(result.afterOpen, 'ws_session=s1', 'the page sees the cookie (not the HttpOnly one)');
  assert.is(result.first, 'first on connection 1');
  assert.is(result.second, 'second on connection 2');
  assert.is(cookies[0], '');
  assert.is(cookies[1], 'ws_session=s1; ws_secret=h1', 'the browser sent both cookies back');
});

test('Chromium loads a page over https and talks wss to the same node-lws server', async () => {
  const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-chromium-tls-'));
  cleanups.push(async () => fs.rmSync(certDir, { recursive: true, force: true }));
  const { cert, key } = makeCert(certDir, 'localhost');
  const www = pageFolder(`<!doctype html><html><body><script>
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
</script></body></html>`);
  const server = await echoServerWithPage(www, { tls: { cert, key }, protocols: ['acip'] });
  const result = await chromiumPageResult(`https://localhost:${server.port}/`, {
    ignoreHTTPSErrors: true,
  });
  const expected = new Uint8Array(65536)
    .map((_, i) => i & 255)
    .reduce((a, b) => (a + b) % 65521, 0);
  assert.equal(result, { protocol: 'acip', got: ['hello from chromium', expected] });
});

test.after(exitWatchdog);
test.run();
