// A client's HTTP proxy when it misbehaves, played by a raw TCP server: the exact CONNECT
// request it gets (authority, Host, Proxy-Authorization from percent-encoded credentials), a
// proxy that closes before answering or mid-answer, one whose answer never ends (past
// maxHeaderBytes), one that answers garbage, one that never answers (the deadline names the
// proxy stage); a malformed proxy URL. Every case fails with a clear `code`, closes the
// socket, and leaks no fd. Also the NO_PROXY rules, case by case. (A real proxy, tinyproxy:
// system/proxy.test.mjs.)

import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { bypassesProxy, proxyFromEnv } from '../dist/proxy.js';
import { attachEcho, listenFor, transportRoundTrip } from './support/lws.mjs';
import { openFds } from './support/proc.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { captureRejection, onceEvent, waitFor, withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';
const cleanups = cleanupsAfterEach(test);
const listen = listenFor(cleanups, { host: HOST, port: 0 });

/**
 * A raw TCP "proxy": `onRequest(socket, head)` runs once a request head (up to the blank
 * line) has arrived. Records every head; `closed` counts sockets the client closed.
 */
async function rawProxy(onRequest) {
  const heads = [];
  const state = { heads, closed: 0, sockets: new Set() };
  const srv = net.createServer((socket) => {
    state.sockets.add(socket);
    let buf = '';
    let answered = false;
    socket.on('error', () => {});
    socket.on('close', () => {
      state.closed++;
      state.sockets.delete(socket);
    });
    socket.on('data', (d) => {
      if (answered) return;
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      answered = true;
      heads.push(buf.slice(0, end));
      onRequest(socket, buf.slice(0, end));
    });
  });
  await new Promise((resolve) => srv.listen(0, HOST, resolve));
  cleanups.push(
    () =>
      new Promise((resolve) => {
        for (const s of state.sockets) s.destroy();
        srv.close(() => resolve());
      }),
  );
  state.url = `http://${HOST}:${srv.address().port}`;
  state.port = srv.address().port;
  return state;
}

/** A CONNECT that opens a real tunnel to the target (a tiny, honest proxy). */
function tunnel(socket, head) {
  const [, authority] = /^CONNECT (\S+) HTTP\/1\.1/.exec(head);
  const i = authority.lastIndexOf(':');
  const upstream = net.connect(Number(authority.slice(i + 1)), authority.slice(0, i), () => {
    socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
    socket.pipe(upstream);
    upstream.pipe(socket);
  });
  upstream.on('error', () => socket.destroy());
  socket.on('close', () => upstream.destroy());
}

test('the CONNECT request: authority, Host, Basic Proxy-Authorization from decoded credentials', async () => {
  const server = await listen();
  attachEcho(server);
  const p = await rawProxy(tunnel);
  const url = `http://us%40er:p%3Ass%20w@${HOST}:${p.port}`;
  const c = await lws.connect(`ws://${HOST}:${server.port}/x?y=1`, { proxy: url });
  cleanups.push(async () => c.terminate());
  assert.is((await transportRoundTrip(c, 'via raw proxy')).data, 'via raw proxy');
  const lines = p.heads[0].split('\r\n');
  assert.is(lines[0], `CONNECT ${HOST}:${server.port} HTTP/1.1`);
  assert.ok(lines.includes(`Host: ${HOST}:${server.port}`), p.heads[0]);
  const auth = `Basic ${Buffer.from('us@er:p:ss w').toString('base64')}`;
  assert.ok(lines.includes(`Proxy-Authorization: ${auth}`), p.heads[0]);
  // The target's name goes to the proxy unresolved; an IPv6 literal in brackets.
  const c2 = await captureRejection(
    () => lws.connect('ws://[::1]:9/', { proxy: p.url, timeoutMs: 2000 }),
    5000,
    'CONNECT to ::1 port 9',
  );
  assert.ok(c2.code, c2.message);
  assert.is(p.heads[1].split('\r\n')[0], 'CONNECT [::1]:9 HTTP/1.1');
  const c3 = await captureRejection(
    () => lws.connect('wss://name.invalid/', { proxy: p.url, timeoutMs: 2000 }),
    5000,
    'CONNECT to name.invalid',
  );
  assert.ok(c3.code, c3.message);
  assert.is(p.heads[2].split('\r\n')[0], 'CONNECT name.invalid:443 HTTP/1.1');
});

test('a proxy that closes before answering, or in the middle of its answer: ERR_PROXY_TUNNEL', async () => {
  const proxies = [];
  for (const [label, behave] of [
    ['closes at once', (s) => s.destroy()],
    ['closes mid-answer', (s) => s.end('HTTP/1.1 200 Connection est')],
    ['ends after the status line', (s) => s.end('HTTP/1.1 200 OK\r\n')],
  ])
    proxies.push([label, await rawProxy(behave)]);
  const fds0 = openFds();
  for (const [label, p] of proxies) {
    const err = await captureRejection(
      () => lws.connect(`ws://${HOST}:1/`, { proxy: p.url }),
      5000,
      label,
    );
    assert.is(err.code, 'ERR_PROXY_TUNNEL', `${label}: ${err.code} ${err.message}`);
    assert.match(err.message, /closed the connection before answering CONNECT/, label);
    assert.is(err.proxy, p.url);
  }
  await waitFor(() => openFds() <= fds0, {
    timeout: 3000,
    label: 'no leaked fds',
    describe: () => `${fds0} before, ${openFds()} now`,
  });
});

test('an answer past maxHeaderBytes, garbage, or a refusal: clear errors, the client hangs up', async () => {
  const endless = await rawProxy((s) => {
    s.write('HTTP/1.1 200 OK\r\n');
    const line = `X-Junk: ${'a'.repeat(1000)}\r\n`;
    const pump = () => {
      while (!s.destroyed && s.write(line)) {}
      if (!s.destroyed) s.once('drain', pump);
    };
    pump();
  });
  const garbage = await rawProxy((s) => s.write('SSH-2.0-OpenSSH_9.2\r\n\r\n'));
  const refusing = await rawProxy((s) =>
    s.end('HTTP/1.1 502 Bad Gateway\r\nX-Reason: upstream down\r\nContent-Length: 0\r\n\r\n'),
  );
  const auth = await rawProxy((s) =>
    s.end(
      'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\n\r\n',
    ),
  );
  const fds0 = openFds();
  let err = await captureRejection(
    () => lws.connect(`ws://${HOST}:1/`, { proxy: endless.url, maxHeaderBytes: 4096 }),
    5000,
    'an endless answer',
  );
  assert.is(err.code, 'ERR_PROXY_TUNNEL', err.message);
  assert.match(err.message, /larger than maxHeaderBytes \(4096 bytes\)/);
  await waitFor(() => endless.closed === 1, {
    timeout: 3000,
    label: 'the client closed the socket',
  });

  err = await captureRejection(
    () => lws.connect(`ws://${HOST}:1/`, { proxy: garbage.url }),
    5000,
    'garbage',
  );
  assert.is(err.code, 'ERR_PROXY_TUNNEL', err.message);
  assert.match(err.message, /Malformed HTTP response from the proxy/);

  err = await captureRejection(
    () => lws.connect(`ws://${HOST}:1/`, { proxy: refusing.url }),
    5000,
    '502',
  );
  assert.is(err.code, 'ERR_PROXY_TUNNEL', err.message);
  assert.is(err.status, 502);
  assert.is(err.headers['x-reason'], 'upstream down');

  err = await captureRejection(
    () => lws.connect(`ws://${HOST}:1/`, { proxy: auth.url }),
    5000,
    '407',
  );
  assert.is(err.code, 'ERR_PROXY_AUTH_REQUIRED', err.message);
  assert.is(err.status, 407);
  assert.is(err.headers['proxy-authenticate'], 'Basic realm="x"');
  await waitFor(() => openFds() <= fds0, {
    timeout: 3000,
    label: 'no leaked fds',
    describe: () => `${fds0} before, ${openFds()} now`,
  });
});

test('a proxy that never answers: ETIMEDOUT names the proxy stage', async () => {
  const silent = await rawProxy(() => {});
  const t0 = performance.now();
  const err = await captureRejection(
    () => lws.connect(`ws://${HOST}:1/`, { proxy: silent.url, timeoutMs: 300 }),
    5000,
    'silent proxy',
  );
  assert.is(err.code, 'ETIMEDOUT', err.message);
  assert.match(err.message, /proxy CONNECT ETIMEDOUT/);
  assert.ok(performance.now() - t0 < 3000);
  await waitFor(() => silent.closed === 1, {
    timeout: 3000,
    label: 'the client closed the socket',
  });
});

test('malformed proxy URLs and options fail connect() before any socket, without the password', async () => {
  for (const [label, proxy, code] of [
    ['not a URL', 'http://[::1', 'ERR_INVALID_PROXY_URL'],
    ['https proxy', 'https://proxy.example:3128', 'ERR_INVALID_PROXY_URL'],
    ['socks', 'socks5://proxy.example:1080', 'ERR_INVALID_PROXY_URL'],
    ['a path', 'http://proxy.example:3128/some/path', 'ERR_INVALID_PROXY_URL'],
    ['port out of range', 'http://proxy.example:99999', 'ERR_INVALID_PROXY_URL'],
    ['no host', 'http://:3128', 'ERR_INVALID_PROXY_URL'],
    ['bad escapes', 'http://u:%zz@proxy.example:3128', 'ERR_INVALID_PROXY_URL'],
    ['a number', 3128, 'ERR_INVALID_ARG_TYPE'],
  ]) {
    const err = await captureRejection(
      () => lws.connect('ws://127.0.0.1:1/', { proxy }),
      5000,
      label,
    );
    assert.is(err.code, code, `${label}: ${err.code} ${err.message}`);
  }
  const err = await captureRejection(
    () => lws.connect('ws://127.0.0.1:1/', { proxy: 'ftp://user:hunter2@proxy.example/' }),
    5000,
    'credentials in a bad URL',
  );
  assert.not.match(err.message, /hunter2/);
  // A bare host:port means http:// (as curl reads it); a refused one names the proxy.
  const bare = await captureRejection(
    () => lws.connect('ws://127.0.0.1:1/', { proxy: '127.0.0.1:1' }),
    5000,
    'bare host:port',
  );
  assert.is(bare.code, 'ECONNREFUSED');
  assert.is(bare.proxy, 'http://127.0.0.1:1');
});

test('NO_PROXY rules as curl and undici read them', () => {
  const env = (NO_PROXY) => ({ NO_PROXY });
  const cases = [
    // [NO_PROXY, host, port, bypass?]
    ['*', 'anything.example', 80, true],
    ['example.com', 'example.com', 80, true],
    ['example.com', 'ws.example.com', 80, true],
    ['example.com', 'badexample.com', 80, false],
    ['.example.com', 'example.com', 80, true],
    ['.example.com', 'a.b.example.com', 443, true],
    ['*.example.com', 'example.com', 80, false],
    ['*.example.com', 'a.example.com', 80, true],
    ['Example.COM.', 'example.com', 80, true],
    ['example.com:8080', 'example.com', 8080, true],
    ['example.com:8080', 'example.com', 80, false],
    ['a.test, b.test  c.test', 'c.test', 80, true],
    ['10.0.0.0/8', '10.1.2.3', 80, true],
    ['10.0.0.0/8', '11.1.2.3', 80, false],
    ['127.0.0.1', '127.0.0.1', 1234, true],
    ['127.0.0.1', '127.0.0.2', 1234, false],
    ['[::1]:8080', '::1', 8080, true],
    ['::1', '0:0:0:0:0:0:0:1', 80, true],
    ['fd00::/8', 'fd12::1', 80, true],
    ['', 'example.com', 80, false],
  ];
  for (const [rule, host, port, expected] of cases) {
    assert.is(
      bypassesProxy(host, port, env(rule)),
      expected,
      `NO_PROXY=${rule} for ${host}:${port}`,
    );
  }
  assert.is(bypassesProxy('a.test', 80, { no_proxy: 'a.test', NO_PROXY: 'b.test' }), true);
  assert.is(
    bypassesProxy('b.test', 80, { no_proxy: 'a.test', NO_PROXY: 'b.test' }),
    false,
    'lower case wins',
  );
  assert.is(proxyFromEnv(false, { HTTP_PROXY: 'h', HTTPS_PROXY: 's' }), 'h');
  assert.is(proxyFromEnv(true, { HTTP_PROXY: 'h', HTTPS_PROXY: 's' }), 's');
  assert.is(proxyFromEnv(true, { HTTP_PROXY: 'h' }), 'h', 'wss falls back to HTTP_PROXY');
  assert.is(proxyFromEnv(false, { HTTPS_PROXY: 's' }), undefined, 'ws never uses HTTPS_PROXY');
  assert.is(proxyFromEnv(false, { http_proxy: 'l', HTTP_PROXY: 'u' }), 'l');
});

test('a tunnel through the honest raw proxy carries wss:// and survives close', async () => {
  const server = await listen();
  attachEcho(server);
  const p = await rawProxy(tunnel);
  const c = await lws.connect(`ws://${HOST}:${server.port}/`, { proxy: p.url });
  const closed = onceEvent(c, 'close');
  c.close(4001, 'bye');
  const [code, reason] = await withTimeout(closed, 5000, 'close through the tunnel');
  assert.equal([code, reason], [4001, 'bye']);
});

test.after(exitWatchdog);
test.run();
