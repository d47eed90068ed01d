// The opening handshake beyond accept/refuse: response headers a server adds to its 101
// (static `headers`, a `headers` hook, verify's `{ accept: true, headers, data }`), data from
// verify on `conn.data`, what a client sees of the response (status, headers, Set-Cookie as a
// list; the headers of a refusal), user:password in a URL as Basic Authorization, and the
// WHATWG WebSocket's `{ protocols, headers }`. Also the strictness an outside probe found
// missing: repeated Sec-WebSocket-Key / Sec-WebSocket-Version and bare-LF request lines get 400
// at once, from node-lws as from ws, asked the same raw bytes in the same test.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocketServer } from 'ws';
import * as lws from '../dist/index.mjs';
import { connClosed, connectFor, listenFor, nextConnection } from './support/lws.mjs';
import { rawHttpExchange, upgradeRequest } from './support/raw-ws.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { captureRejection, msSince, onceEvent, withTimeout } from './support/wait.mjs';
import { WebSocket, wsConnectFor } from './support/ws-client.mjs';

const HOST = '127.0.0.1';

const cleanups = cleanupsAfterEach(test);
const listen = listenFor(cleanups, { host: HOST, port: 0 });
const client = connectFor(cleanups);
const wsClient = wsConnectFor(cleanups);
const urlOf = (server, p = '/') => `ws://${HOST}:${server.port}${p}`;

/** A ws server on a kernel-chosen port, closed after the test. */
async function wsServer() {
  const wss = new WebSocketServer({ host: HOST, port: 0 });
  await onceEvent(wss, 'listening');
  cleanups.push(() => new Promise((resolve) => wss.close(() => resolve())));
  return wss;
}

// ---------------------------------------------------------------------------
// Handshake strictness: the same raw requests to node-lws and to ws
// ---------------------------------------------------------------------------

/** The answer of the server at `port` to raw request bytes, with how long it took. */
async function answer(port, request) {
  const t0 = performance.now();
  const { head, body } = await rawHttpExchange(port, request, { ms: 3000 });
  return { status: head.status, body: String(body), ms: msSince(t0) };
}

test('repeated Sec-WebSocket-Key or Sec-WebSocket-Version: 400, as ws answers', async () => {
  const server = await listen();
  server.on('connection', () => assert.unreachable('no upgrade may succeed'));
  const wss = await wsServer();
  let upgradedByWs = 0;
  wss.on('connection', () => upgradedByWs++);
  const cases = [
    [
      'two different Sec-WebSocket-Key headers (RFC 6455 11.3.1)',
      { extra: 'Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n' },
      /Sec-WebSocket-Key appears more than once/,
    ],
    [
      'Sec-WebSocket-Version 13 and 8 (RFC 6455 11.3.5)',
      { extra: 'Sec-WebSocket-Version: 8\r\n' },
      /Sec-WebSocket-Version appears more than once/,
    ],
    [
      'the same Sec-WebSocket-Version twice',
      { extra: 'Sec-WebSocket-Version: 13\r\n' },
      /Sec-WebSocket-Version appears more than once/,
    ],
  ];
  for (const [label, opts, why] of cases) {
    const ours = await answer(server.port, upgradeRequest(server.port, opts));
    const theirs = await answer(wss.address().port, upgradeRequest(wss.address().port, opts));
    assert.is(ours.status, 400, `node-lws, ${label}: ${ours.body}`);
    assert.match(ours.body, why, label);
    assert.is(theirs.status, 400, `ws, ${label}`);
  }
  assert.is(upgradedByWs, 0);
});

test('bare-LF line endings: 400 at once (not at the 10 s handshake timeout), as ws answers', async () => {
  const server = await listen({ handshakeTimeoutMs: 10_000 });
  const wss = await wsServer();
  for (const [name, port] of [
    ['node-lws', server.port],
    ['ws', wss.address().port],
  ]) {
    const lf = upgradeRequest(port).replaceAll('\r\n', '\n');
    const r = await answer(port, lf);
    assert.is(r.status, 400, `${name}: ${r.body}`);
    assert.ok(r.ms < 2000, `${name} answered after ${r.ms} ms`);
    // One bare LF among CRLF lines is as bad.
    const mixed = upgradeRequest(port).replace('Upgrade: websocket\r\n', 'Upgrade: websocket\n');
    const m = await answer(port, mixed);
    assert.is(m.status, 400, `${name}, one bare LF: ${m.body}`);
  }
  // A well-formed request still upgrades.
  const ok = await rawHttpExchange(server.port, upgradeRequest(server.port));
  assert.is(ok.head.status, 101);
});

// ---------------------------------------------------------------------------
// Response headers added by the server
// ---------------------------------------------------------------------------

test('verify accepts with Set-Cookie headers and data: the client sees both cookies, the handler the data', async () => {
  const server = await listen({
    verify: async (req) => ({
      accept: true,
      headers: {
        'Set-Cookie': [
          `session=abc123; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT`,
          `theme=dark; Path=/`,
        ],
        'X-Request-Path': req.path,
      },
      data: { user: 'alice', path: req.path },
    }),
  });
  const connected = nextConnection(server);
  const c = await client(urlOf(server, '/room/7'));
  const [conn] = await connected;
  assert.equal(conn.data, { user: 'alice', path: '/room/7' });
  const res = c.upgradeResponse;
  assert.is(res.status, 101);
  // Set-Cookie stays a list (an Expires date has a comma); other headers are strings.
  assert.equal(res.headers['set-cookie'], [
    'session=abc123; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT',
    'theme=dark; Path=/',
  ]);
  assert.is(res.headers['x-request-path'], '/room/7');
  assert.is(res.headers.upgrade, 'websocket');
  // And an independent client reads the same response.
  const ws = new WebSocket(urlOf(server, '/w'));
  cleanups.push(async () => ws.terminate());
  const opened = onceEvent(ws, 'open');
  const [upgradeRes] = await onceEvent(ws, 'upgrade');
  assert.equal(upgradeRes.headers['set-cookie'], [
    'session=abc123; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT',
    'theme=dark; Path=/',
  ]);
  await opened;
});

test('heads with thousands of headers: repeated ones joined in order, both ways', async () => {
  // Past 32 headers the names are merged through a hash (the list search was quadratic: a
  // 256 KiB head of tiny headers held the main thread for a second).
  const many = Array.from({ length: 40 }, (_, i) => [`X-H${i}`, `v${i}`]);
  const server = await listen({
    maxHeaderBytes: 64 * 1024,
    headers: { ...Object.fromEntries(many), 'X-Rep': ['one', 'two'] },
  });
  const connected = nextConnection(server);
  const lines = Array.from({ length: 3000 }, (_, i) => `X-N${i}: n${i}\r\n`).join('');
  const req = upgradeRequest(server.port, {
    extra: `X-Rep: first\r\n${lines}x-rep: second\r\nX-Rep: third\r\n`,
  });
  const exchange = rawHttpExchange(server.port, req);
  const [, request] = await connected;
  assert.is(request.headers['x-rep'], 'first, second, third');
  for (const i of [0, 1, 1500, 2999]) assert.is(request.headers[`x-n${i}`], `n${i}`);
  assert.is(Object.keys(request.headers).filter((k) => k.startsWith('x-n')).length, 3000);
  assert.is((await exchange).head.status, 101);

  const c = await client(urlOf(server));
  const res = c.upgradeResponse;
  assert.is(res.headers['x-rep'], 'one, two');
  for (const [k, v] of many) assert.is(res.headers[k.toLowerCase()], v);
});

test('static headers and a headers hook go into every 101; data is undefined without verify data', async () => {
  const seen = [];
  const server = await listen({
    headers: (req) => {
      seen.push(req.path);
      return req.path === '/none' ? undefined : { 'X-Hook': `for ${req.path}` };
    },
  });
  const c1 = await client(urlOf(server, '/a'));
  assert.is(c1.upgradeResponse.headers['x-hook'], 'for /a');
  const c2 = await client(urlOf(server, '/none'));
  assert.is(c2.upgradeResponse.headers['x-hook'], undefined);
  assert.equal(seen, ['/a', '/none']);

  const plain = await listen({ headers: { 'X-Served-By': 'node-lws', 'X-Count': 2 } });
  const connected = nextConnection(plain);
  const ws = await wsClient(urlOf(plain));
  const [conn] = await connected;
  assert.is(conn.data, undefined);
  const c3 = await client(urlOf(plain));
  assert.is(c3.upgradeResponse.headers['x-served-by'], 'node-lws');
  assert.is(c3.upgradeResponse.headers['x-count'], '2');
  assert.is(ws.readyState, WebSocket.OPEN);
});

test('headers node-lws writes itself, or with bad names or values, are refused', async () => {
  for (const [label, headers] of [
    ['Sec-WebSocket-Accept', { 'Sec-WebSocket-Accept': 'x' }],
    ['Connection', { connection: 'close' }],
    ['a CR/LF in a value', { 'X-Evil': 'a\r\nSet-Cookie: injected=1' }],
    ['a bad name', { 'X Bad': 'v' }],
    ['an object value', { 'X-Obj': { a: 1 } }],
  ]) {
    const err = await captureRejection(() => lws.listen({ host: HOST, headers }), 5000, label);
    assert.is(err.code, 'ERR_INVALID_ARG_VALUE', `${label}: ${err.message}`);
  }
  // From verify at run time: the upgrade is answered 500 and 'error' says why.
  const server = await listen({ verify: () => ({ accept: true, headers: { Upgrade: 'h2c' } }) });
  const errors = [];
  server.on('error', (e) => errors.push(e));
  const err = await captureRejection(
    () => lws.connect(urlOf(server)),
    5000,
    'upgrade with a bad header',
  );
  assert.is(err.code, 'ERR_HANDSHAKE');
  assert.is(err.status, 500);
  assert.is(errors.length, 1);
  assert.match(errors[0].message, /may not set Upgrade/);
});

test('a refused upgrade: the client error has the status and the response headers', async () => {
  const server = await listen({
    verify: () => ({
      status: 401,
      headers: { 'WWW-Authenticate': 'Basic realm="ws"', 'Set-Cookie': ['a=1', 'b=2'] },
      body: 'who are you?',
    }),
  });
  const err = await captureRejection(() => lws.connect(urlOf(server)), 5000, 'refused upgrade');
  assert.is(err.code, 'ERR_HANDSHAKE');
  assert.is(err.status, 401);
  assert.is(err.headers['www-authenticate'], 'Basic realm="ws"');
  assert.equal(err.headers['set-cookie'], ['a=1', 'b=2']);
});

test('verify data for upgrades that never open is dropped (rejected, timed out, closed)', async () => {
  const verdicts = [];
  const server = await listen({
    handshakeTimeoutMs: 300,
    verify: (req) =>
      new Promise((resolve) => {
        verdicts.push({ path: req.path, resolve });
      }),
  });
  const connected = [];
  server.on('connection', (conn) => connected.push(conn.data));
  // 1: accepted with data; 2: still pending when its handshake times out.
  const first = lws.connect(urlOf(server, '/one'));
  const second = captureRejection(() => lws.connect(urlOf(server, '/two')), 5000, 'timed out');
  await withTimeout(
    (async () => {
      while (verdicts.length < 2) await new Promise((r) => setTimeout(r, 5));
    })(),
    3000,
    'both upgrades reach verify',
  );
  verdicts.find((v) => v.path === '/one').resolve({ accept: true, data: 'one' });
  const c1 = await first;
  cleanups.push(async () => c1.terminate());
  const err = await second;
  assert.is(err.code, 'ECONNRESET', err.message); // the server dropped it at its timeout
  // The late verdict for the dropped upgrade changes nothing.
  verdicts.find((v) => v.path === '/two').resolve({ accept: true, data: 'two' });
  await new Promise((r) => setImmediate(r));
  assert.equal(connected, ['one']);
  assert.is(server.connectionCount, 1);
});

// ---------------------------------------------------------------------------
// What clients send
// ---------------------------------------------------------------------------

test('user:password in the URL becomes Basic Authorization (as ws), an explicit header wins', async () => {
  const server = await listen();
  const requests = [];
  server.on('connection', (conn, req) => {
    requests.push(req.headers.authorization);
    conn.close();
  });
  const url = `ws://us%20er:p%40ss@${HOST}:${server.port}/`;
  // The server's close may come in the same batch as the open, before connect() resolves.
  const closed = (t) => (t.readyState === 'closed' ? undefined : onceEvent(t, 'close'));
  const c = await client(url);
  assert.is(c.url, `ws://${HOST}:${server.port}/`, 'the credentials are not kept in url');
  await closed(c);
  const explicit = await client(url, { headers: { Authorization: 'Bearer t0ken' } });
  await closed(explicit);
  // ws sends the same for the same URL.
  const ws = new WebSocket(url);
  await onceEvent(ws, 'close');
  const basic = `Basic ${Buffer.from('us er:p@ss').toString('base64')}`;
  assert.equal(requests, [basic, 'Bearer t0ken', basic]);
});

test('WHATWG WebSocket: new WebSocket(url, { protocols, headers }) as undici takes it', async () => {
  const server = await listen({ protocols: ['chat'] });
  const connected = nextConnection(server);
  const ws = new lws.WebSocket(urlOf(server, '/w'), {
    protocols: ['chat', 'other'],
    headers: { 'X-Api-Key': 'k-123' },
  });
  cleanups.push(async () => ws.close());
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error('error event'));
    }),
    5000,
    'open',
  );
  const [conn, req] = await connected;
  assert.is(req.headers['x-api-key'], 'k-123');
  assert.is(ws.protocol, 'chat');
  assert.is(conn.protocol, 'chat');
  // A string and an array still mean protocols.
  const ws2 = new lws.WebSocket(urlOf(server), 'chat');
  cleanups.push(async () => ws2.close());
  await withTimeout(new Promise((r) => ws2.addEventListener('open', r)), 5000, 'open 2');
  assert.is(ws2.protocol, 'chat');
  const closed = connClosed(conn);
  ws.close(1000);
  assert.is((await closed).code, 1000);
});

test.after(exitWatchdog);
test.run();
