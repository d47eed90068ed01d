// Clients through a real HTTP proxy: Debian's tinyproxy (started here with its own config on a
// free port, stopped afterwards). ws:// and wss:// tunnel through CONNECT with and without
// Basic proxy authentication; each failure names its stage: the proxy refused the TCP
// connection (ECONNREFUSED), asked for credentials (ERR_PROXY_AUTH_REQUIRED, 407), refused the
// tunnel (ERR_PROXY_TUNNEL with its status), and after the tunnel the usual handshake and
// certificate errors. `proxy: 'env'` reads HTTP_PROXY / HTTPS_PROXY / NO_PROXY as undici does.
// (A hostile or broken proxy, played by a raw TCP server: proxy-errors.test.mjs.)

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../../dist/index.mjs';
import { makeCert } from '../support/certs.mjs';
import { attachEcho, connectFor, listenFor, transportRoundTrip } from '../support/lws.mjs';
import { freePort } from '../support/net.mjs';
import { cleanupsAfterEach, exitWatchdog } from '../support/suite.mjs';
import { startTinyproxy } from '../support/tinyproxy.mjs';
import { captureRejection } from '../support/wait.mjs';

const HOST = '127.0.0.1';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-proxy-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
const cert = makeCert(dir, 'server');
const otherName = makeCert(dir, 'other', { cn: 'example.invalid', san: 'DNS:example.invalid' });

const cleanups = cleanupsAfterEach(test);
const listen = listenFor(cleanups, { host: HOST, port: 0 });
const client = connectFor(cleanups);

async function proxy(options) {
  const p = await startTinyproxy(options);
  cleanups.push(() => p.stop());
  return p;
}

/** Sets environment variables for one test; restored after it. */
function setEnv(vars) {
  const saved = {};
  for (const name of [
    'HTTP_PROXY',
    'http_proxy',
    'HTTPS_PROXY',
    'https_proxy',
    'NO_PROXY',
    'no_proxy',
  ]) {
    saved[name] = process.env[name];
    delete process.env[name];
  }
  Object.assign(process.env, vars);
  cleanups.push(async () => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
}

test('ws:// and wss:// through tinyproxy (no auth): messages intact, each a CONNECT tunnel', async () => {
  const plain = await listen();
  attachEcho(plain);
  const secure = await listen({ tls: { cert: cert.cert, key: cert.key } });
  attachEcho(secure);
  const p = await proxy({ connectPorts: [plain.port, secure.port] });

  const c = await client(`ws://${HOST}:${plain.port}/plain`, { proxy: p.url() });
  assert.is((await transportRoundTrip(c, 'through the proxy')).data, 'through the proxy');
  const big = crypto.randomBytes(1 << 20);
  assert.ok((await transportRoundTrip(c, big)).data.equals(big), '1 MiB intact');
  assert.is(p.connects(), 1, p.log());

  const s = await client(`wss://localhost:${secure.port}/tls`, {
    proxy: p.url(),
    tls: { ca: cert.cert },
  });
  assert.is((await transportRoundTrip(s, 'tls in the tunnel')).data, 'tls in the tunnel');
  assert.ok((await transportRoundTrip(s, big)).data.equals(big), '1 MiB intact over TLS');
  assert.is(p.connects(), 2, p.log());
  assert.is(s.upgradeResponse.status, 101);
});

test('Basic proxy authentication: credentials in the proxy URL; none is a 407, wrong ones refused', async () => {
  const server = await listen();
  attachEcho(server);
  const secure = await listen({ tls: { cert: cert.cert, key: cert.key } });
  attachEcho(secure);
  const p = await proxy({
    auth: { user: 'alice', pass: 's3cret-pass.1' },
    connectPorts: [server.port, secure.port],
  });
  const url = `ws://${HOST}:${server.port}/`;
  const c = await client(url, { proxy: p.url(true) });
  assert.is((await transportRoundTrip(c, 'authorized')).data, 'authorized');
  const s = await client(`wss://localhost:${secure.port}/`, {
    proxy: p.url(true),
    tls: { ca: cert.cert },
  });
  assert.is((await transportRoundTrip(s, 'authorized tls')).data, 'authorized tls');

  const none = await captureRejection(
    () => lws.connect(url, { proxy: p.url(false) }),
    5000,
    'no credentials',
  );
  assert.is(none.code, 'ERR_PROXY_AUTH_REQUIRED', none.message);
  assert.is(none.status, 407);
  assert.match(none.headers['proxy-authenticate'], /^Basic/);
  assert.is(none.proxy, p.url(false));

  const wrong = await captureRejection(
    () => lws.connect(url, { proxy: `http://alice:nope@127.0.0.1:${p.port}` }),
    5000,
    'wrong credentials',
  );
  assert.is(wrong.code, 'ERR_PROXY_AUTH_REQUIRED', wrong.message);
  assert.not.match(wrong.message, /nope/, 'no password in the message');
});

test('a refused tunnel (ConnectPort, Filter) is ERR_PROXY_TUNNEL with the status', async () => {
  const server = await listen();
  const other = await freePort(HOST);
  const byPort = await proxy({ connectPorts: [other] });
  let err = await captureRejection(
    () => lws.connect(`ws://${HOST}:${server.port}/`, { proxy: byPort.url() }),
    5000,
    'CONNECT to a port the proxy does not allow',
  );
  assert.is(err.code, 'ERR_PROXY_TUNNEL', err.message);
  assert.is(err.status, 403);
  assert.match(err.message, /refused the tunnel: 403/);

  const byName = await proxy({ filter: ['blocked.example'] });
  err = await captureRejection(
    () => lws.connect('ws://blocked.example:8080/', { proxy: byName.url() }),
    5000,
    'CONNECT to a filtered host',
  );
  assert.is(err.code, 'ERR_PROXY_TUNNEL', err.message);
  assert.is(err.status, 403);
});

test('stages after the tunnel: a target that refuses, a refused upgrade, a certificate for another name', async () => {
  const server = await listen({ path: '/only-here' });
  const mismatch = await listen({ tls: { cert: otherName.cert, key: otherName.key } });
  const closedPort = await freePort(HOST);
  const p = await proxy();
  // The proxy cannot reach the target: its own error status (tinyproxy: 500).
  let err = await captureRejection(
    () => lws.connect(`ws://${HOST}:${closedPort}/`, { proxy: p.url() }),
    5000,
    'CONNECT to a closed port',
  );
  assert.is(err.code, 'ERR_PROXY_TUNNEL', err.message);
  assert.ok(err.status >= 500, `status ${err.status}`);
  // The tunnel is up; the WebSocket upgrade is refused by the server.
  err = await captureRejection(
    () => lws.connect(`ws://${HOST}:${server.port}/elsewhere`, { proxy: p.url() }),
    5000,
    'refused upgrade through the tunnel',
  );
  assert.is(err.code, 'ERR_HANDSHAKE', err.message);
  assert.is(err.status, 404);
  // TLS through the tunnel checks the target's name, not the proxy's.
  err = await captureRejection(
    () =>
      lws.connect(`wss://localhost:${mismatch.port}/`, {
        proxy: p.url(),
        tls: { ca: otherName.cert },
      }),
    5000,
    'certificate for another host through the tunnel',
  );
  assert.is(err.code, 'ERR_TLS_CERT_VERIFY', err.message);
  // No proxy at that address at all.
  const nothing = await freePort(HOST);
  err = await captureRejection(
    () =>
      lws.connect(`ws://${HOST}:${server.port}/only-here`, {
        proxy: `http://127.0.0.1:${nothing}`,
      }),
    5000,
    'proxy refused',
  );
  assert.is(err.code, 'ECONNREFUSED', err.message);
  assert.is(err.port, nothing);
  assert.match(err.message, /the proxy/);
});

test("proxy: 'env': HTTP_PROXY for ws://, HTTPS_PROXY for wss://, NO_PROXY honoured", async () => {
  const server = await listen();
  attachEcho(server);
  const secure = await listen({ tls: { cert: cert.cert, key: cert.key } });
  attachEcho(secure);
  const p = await proxy();
  const dead = `http://127.0.0.1:${await freePort(HOST)}`;
  const ws = `ws://${HOST}:${server.port}/`;
  const wss = `wss://localhost:${secure.port}/`;

  setEnv({ HTTP_PROXY: p.url(), HTTPS_PROXY: dead });
  const c = await client(ws, { proxy: 'env' });
  assert.is((await transportRoundTrip(c, 'env proxy')).data, 'env proxy');
  assert.is(p.connects(), 1, 'ws:// went through HTTP_PROXY');
  let err = await captureRejection(
    () => lws.connect(wss, { proxy: 'env', tls: { ca: cert.cert } }),
    5000,
    'wss:// through the dead HTTPS_PROXY',
  );
  assert.is(err.code, 'ECONNREFUSED', 'wss:// used HTTPS_PROXY');
  // Without the option, the environment is not read.
  await client(ws);
  assert.is(p.connects(), 1);

  // Lower case wins over upper case; without HTTPS_PROXY, wss:// uses HTTP_PROXY.
  setEnv({ https_proxy: p.url(), HTTPS_PROXY: dead });
  await client(wss, { proxy: 'env', tls: { ca: cert.cert } });
  assert.is(p.connects(), 2);
  setEnv({ HTTP_PROXY: p.url() });
  await client(wss, { proxy: 'env', tls: { ca: cert.cert } });
  assert.is(p.connects(), 3);

  // NO_PROXY: these targets go direct (the proxy would have refused: it is dead).
  for (const noProxy of [
    '127.0.0.1',
    `127.0.0.1:${server.port}`,
    '127.0.0.0/8',
    '*',
    'example.com, 127.0.0.1',
  ]) {
    setEnv({ HTTP_PROXY: dead, NO_PROXY: noProxy });
    const d = await client(ws, { proxy: 'env' });
    assert.is((await transportRoundTrip(d, noProxy)).data, noProxy, `NO_PROXY=${noProxy}`);
  }
  setEnv({ https_proxy: dead, no_proxy: 'localhost' });
  await client(wss, { proxy: 'env', tls: { ca: cert.cert } });
  // ... and these do not match, so the (dead) proxy is used.
  for (const noProxy of ['127.0.0.2', `127.0.0.1:${server.port + 1}`, '10.0.0.0/8', 'localhost']) {
    setEnv({ HTTP_PROXY: dead, NO_PROXY: noProxy });
    err = await captureRejection(
      () => lws.connect(ws, { proxy: 'env' }),
      5000,
      `NO_PROXY=${noProxy}`,
    );
    assert.is(err.code, 'ECONNREFUSED', `NO_PROXY=${noProxy} does not cover ${ws}`);
  }
  // No proxy in the environment at all: direct.
  setEnv({});
  await client(ws, { proxy: 'env' });
  assert.is(p.connects(), 3);
});

test.after(exitWatchdog);
test.run();
