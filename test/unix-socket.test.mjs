// Unix domain sockets: listen({ socketPath }) with the same close-frees-the-address guarantee
// as a port (the socket file is gone when close() resolves), clients by `ws+unix:` URL (ws's
// syntax) and by the `socketPath` option, Node's own http client and ws over the socket, 200
// listen/close/re-listen cycles on one path, and the error cases: a stale socket file left by
// a process that died (reported, or removed with removeStaleSocket), a path that another
// process listens on, a path that is too long, a path that is not a socket, no leaked fds.
// (Python websockets' unix_serve / unix_connect: system/python-interop.test.mjs.)

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import {
  attachEcho,
  connectFor,
  listenFor,
  nextConnection,
  transportRoundTrip,
} from './support/lws.mjs';
import { DIST_URL } from './support/paths.mjs';
import { describeFds, openFds, spawnNode } from './support/proc.mjs';
import { acceptFor, OP, RawWsPeer } from './support/raw-ws.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { captureRejection, onceEvent, waitFor, withTimeout } from './support/wait.mjs';
import { echoRoundTrip, wsConnectFor } from './support/ws-client.mjs';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-unix-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
let serial = 0;
const sockPath = (name = 'ws') => path.join(dir, `${name}-${++serial}.sock`);

const cleanups = cleanupsAfterEach(test);
const listen = listenFor(cleanups);
const client = connectFor(cleanups);
const wsClient = wsConnectFor(cleanups);

const isSocket = (p) => {
  try {
    return fs.lstatSync(p).isSocket();
  } catch {
    return false;
  }
};

test('listen({ socketPath }): node-lws clients (ws+unix: URL and socketPath) and ws echo over it; close() removes the file', async () => {
  const p = sockPath();
  const server = await listen({ socketPath: p });
  attachEcho(server);
  assert.equal(server.address(), { address: p, family: 'Unix', port: 0 });
  assert.is(server.port, 0);
  assert.ok(isSocket(p), 'the socket file exists while listening');

  const requests = [];
  server.on('connection', (_conn, req) => requests.push(req));
  const byUrl = await client(`ws+unix://${p}:/chat?room=1`);
  assert.equal(await transportRoundTrip(byUrl, 'over a unix socket'), {
    data: 'over a unix socket',
    isBinary: false,
  });
  const byOption = await client('ws://app.internal/api', { socketPath: p });
  const blob = crypto.randomBytes(256 * 1024);
  const echoed = await transportRoundTrip(byOption, blob);
  assert.ok(echoed.data.equals(blob), '256 KiB intact');
  const ws = await wsClient(`ws+unix://${p}:/from-ws`);
  assert.equal(await echoRoundTrip(ws, 'ws says hi'), { data: 'ws says hi', isBinary: false });

  assert.equal(
    requests.map((r) => [r.path, r.headers.host]),
    [
      ['/chat?room=1', 'localhost'],
      ['/api', 'app.internal'],
      ['/from-ws', 'localhost'],
    ],
  );
  assert.is(requests[0].remoteAddress, '', 'a Unix peer has no address');
  await server.close();
  assert.not.ok(fs.existsSync(p), 'close() removed the socket file before it resolved');
  const err = await captureRejection(
    () => lws.connect(`ws+unix://${p}:/`),
    5000,
    'connect after close',
  );
  assert.is(err.code, 'ENOENT', err.message);
});

test("Node's http client over the socket path: GET /health, and an upgrade it hands over", async () => {
  const p = sockPath('http');
  const server = await listen({ socketPath: p, health: true });
  attachEcho(server);
  const health = await withTimeout(
    new Promise((resolve, reject) => {
      http
        .get({ socketPath: p, path: '/health' }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
        })
        .on('error', reject);
    }),
    5000,
    'GET /health over the socket',
  );
  assert.is(health.status, 200);
  assert.is(health.body.status, 'ok');

  const key = crypto.randomBytes(16).toString('base64');
  const req = http.request({
    socketPath: p,
    path: '/upgrade',
    headers: {
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Key': key,
      'Sec-WebSocket-Version': '13',
    },
  });
  req.end();
  const [res, socket, head] = await onceEvent(req, 'upgrade', 5000, "http 'upgrade'");
  cleanups.push(async () => socket.destroy());
  assert.is(res.statusCode, 101);
  assert.is(res.headers['sec-websocket-accept'], acceptFor(key));
  assert.is(head.length, 0);
  const peer = new RawWsPeer(socket);
  peer.mode = 'frames'; // http consumed the 101 head
  peer.send({ opcode: OP.text, payload: 'raw frame over http' });
  const f = await peer.nextFrame(5000, 'echo');
  assert.is(f.opcode, OP.text);
  assert.is(f.payload.toString(), 'raw frame over http');
});

test('listen / connect / echo / close on the same path 200 times: no leaked fds, the file gone each time', async () => {
  const p = sockPath('cycles');
  const fds0 = openFds();
  for (let i = 0; i < 200; i++) {
    const server = await lws.listen({ socketPath: p });
    try {
      attachEcho(server);
      const c = await lws.connect(`ws+unix://${p}:/`);
      const reply = await transportRoundTrip(c, `cycle ${i}`);
      assert.is(reply.data, `cycle ${i}`);
      const closed = onceEvent(c, 'close');
      c.close();
      await closed;
    } finally {
      await server.close();
    }
    assert.not.ok(fs.existsSync(p), `cycle ${i}: the socket file is gone after close()`);
  }
  await waitFor(() => openFds() <= fds0 + 2, {
    timeout: 3000,
    label: 'fds back to the start',
    describe: () => `${fds0} at the start, ${openFds()} now: ${describeFds()}`,
  });
});

/** A socket file left behind by a process that died (SIGKILL: no cleanup ran). */
async function staleSocket(p) {
  const child = spawnNode([
    '-e',
    `require('net').createServer().listen(${JSON.stringify(p)}, () => console.log('ready'))`,
  ]);
  await child.line((l) => l === 'ready', 5000, 'child listening');
  await child.stop();
  assert.ok(isSocket(p), 'the dead process left its socket file');
}

test('a stale socket file: ERR_SOCKET_STALE, and removeStaleSocket removes it and listens', async () => {
  const p = sockPath('stale');
  await staleSocket(p);
  const err = await captureRejection(
    () => lws.listen({ socketPath: p }),
    5000,
    'listen on a stale file',
  );
  assert.is(err.code, 'ERR_SOCKET_STALE', err.message);
  assert.match(err.message, /stale/);
  assert.match(err.message, /removeStaleSocket/);
  assert.ok(isSocket(p), 'without the option the file is left alone');

  const server = await listen({ socketPath: p, removeStaleSocket: true });
  attachEcho(server);
  const c = await client(`ws+unix://${p}:/`);
  assert.is((await transportRoundTrip(c, 'revived')).data, 'revived');
});

test('process.exit() with a Unix socket server open removes the socket file', async () => {
  const p = sockPath('exit');
  const child = spawnNode([
    '--input-type=module',
    '-e',
    `
const lws = await import(${JSON.stringify(DIST_URL)});
const server = await lws.listen({ socketPath: ${JSON.stringify(p)} });
const client = await lws.connect('ws+unix://${p}:/');
console.log('ready');
setImmediate(() => process.exit(0));
`,
  ]);
  cleanups.push(() => child.stop());
  await child.line((l) => l === 'ready', 10000, 'child listening');
  const ex = await withTimeout(child.exited, 10000, 'child exit');
  assert.is(ex.code, 0, `exit code ${ex.code}, stderr: ${child.stderrText}`);
  assert.not.ok(fs.existsSync(p), 'the socket file went with the process');
});

test('a path another process listens on: EADDRINUSE, and removeStaleSocket leaves it alone', async () => {
  const p = sockPath('live');
  const other = net.createServer((s) => s.end());
  await new Promise((resolve) => other.listen(p, resolve));
  cleanups.push(() => new Promise((resolve) => other.close(() => resolve())));
  for (const removeStaleSocket of [false, true]) {
    const err = await captureRejection(
      () => lws.listen({ socketPath: p, removeStaleSocket, bindRetry: false }),
      5000,
      'listen on a live socket',
    );
    assert.is(err.code, 'EADDRINUSE', err.message);
    assert.match(err.message, /another process is listening/);
  }
  // It still works for its owner.
  const s = net.connect(p);
  await onceEvent(s, 'connect');
  s.destroy();
});

test('a path that is not a socket, too long, or in a missing folder: clear errors, nothing removed or leaked', async () => {
  const fds0 = openFds();
  const file = path.join(dir, 'regular-file');
  fs.writeFileSync(file, 'keep me');
  let err = await captureRejection(
    () => lws.listen({ socketPath: file, removeStaleSocket: true }),
    5000,
    'listen on a regular file',
  );
  assert.is(err.code, 'ENOTSOCK', err.message);
  assert.is(fs.readFileSync(file, 'utf8'), 'keep me', 'the file is untouched');
  err = await captureRejection(() => lws.connect(`ws+unix://${file}:/`), 5000, 'connect to a file');
  assert.is(err.code, 'ENOTSOCK', err.message);
  err = await captureRejection(
    () => lws.connect('ws://x/', { socketPath: file }),
    5000,
    'socketPath file',
  );
  assert.is(err.code, 'ENOTSOCK', err.message);

  const long = path.join(dir, `${'x'.repeat(120)}.sock`);
  err = await captureRejection(
    () => lws.listen({ socketPath: long }),
    5000,
    'listen on a long path',
  );
  assert.is(err.code, 'ENAMETOOLONG', err.message);
  assert.match(err.message, /at most 107 bytes/);
  assert.not.ok(fs.existsSync(long));
  err = await captureRejection(
    () => lws.connect(`ws+unix://${long}:/`),
    5000,
    'connect to a long path',
  );
  assert.is(err.code, 'ENAMETOOLONG', err.message);

  err = await captureRejection(
    () => lws.listen({ socketPath: path.join(dir, 'no-such-folder', 'x.sock') }),
    5000,
    'listen in a missing folder',
  );
  assert.is(err.code, 'ENOENT', err.message);
  err = await captureRejection(
    () => lws.connect(`ws+unix://${path.join(dir, 'nothing-here.sock')}:/`),
    5000,
    'connect to a missing path',
  );
  assert.is(err.code, 'ENOENT', err.message);

  for (const [label, options] of [
    ['socketPath with port', { socketPath: sockPath(), port: 8080 }],
    ['socketPath with host', { socketPath: sockPath(), host: '127.0.0.1' }],
    ['an empty socketPath', { socketPath: '' }],
  ]) {
    err = await captureRejection(() => lws.listen(options), 5000, label);
    assert.ok(err.code?.startsWith('ERR_INVALID_ARG'), `${label}: ${err.code} ${err.message}`);
  }
  err = await captureRejection(
    () => lws.connect(`ws+unix://${sockPath()}:/`, { proxy: 'http://127.0.0.1:3128' }),
    5000,
    'a proxy for a unix socket',
  );
  assert.is(err.code, 'ERR_INVALID_ARG_VALUE');
  await waitFor(() => openFds() <= fds0, {
    timeout: 3000,
    label: 'no fd leaked by the failures',
    describe: () => `${fds0} before, ${openFds()} now`,
  });
});

test('server.close() with a client connected over the socket: 1001 to the client, file removed', async () => {
  const p = sockPath('shutdown');
  const server = await lws.listen({ socketPath: p });
  const connected = nextConnection(server);
  const c = await client(`ws+unix://${p}:/`);
  await connected;
  const closed = onceEvent(c, 'close');
  await server.close();
  assert.not.ok(fs.existsSync(p));
  const [code] = await closed;
  assert.is(code, 1001);
  // A new server may take the path at once.
  const again = await listen({ socketPath: p });
  assert.ok(isSocket(p));
  await again.close();
  assert.not.ok(fs.existsSync(p));
});

test('the WHATWG WebSocket over ws+unix:', async () => {
  const p = sockPath('whatwg');
  const server = await listen({ socketPath: p });
  attachEcho(server);
  const ws = new lws.WebSocket(`ws+unix://${p}:/w`);
  cleanups.push(async () => ws.close());
  await withTimeout(new Promise((r) => ws.addEventListener('open', r)), 5000, 'open');
  const got = withTimeout(
    new Promise((r) => ws.addEventListener('message', (ev) => r(ev.data))),
    5000,
    'message',
  );
  ws.send('whatwg over unix');
  assert.is(await got, 'whatwg over unix');
  assert.is(ws.readyState, lws.WebSocket.OPEN);
});

test.after(exitWatchdog);
test.run();
