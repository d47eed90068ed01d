// The issue's "code-41 tests": lws error 41 ("Cannot bind to network port")
// must never happen for a port that is free or only held by TIME_WAIT
// sockets; a port held by someone else fails with a precise, retryable
// EADDRINUSE; servers, fds and threads do not leak; processes exit by
// themselves.

import fs from 'node:fs';
import os from 'node:os';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { attachEcho, connClosed, nextConnection } from './support/lws.mjs';
import { collectMessages } from './support/messages.mjs';
import { listenersOn, tcpSockets } from './support/net.mjs';
import { DIST_URL } from './support/paths.mjs';
import { openFds, spawnNode, threadCount } from './support/proc.mjs';
import { exitWatchdog } from './support/suite.mjs';
import { captureRejection, waitFor, withTimeout } from './support/wait.mjs';
import { closeClient, echoRoundTrip, wsConnect } from './support/ws-client.mjs';

const HOST = '127.0.0.1';
const MAX_REPORTED_FAILURES = 3;

// Servers opened by a test are closed after it even when an assertion failed.
const open = new Set();
async function listen(options) {
  const server = await lws.listen(options);
  open.add(server);
  return server;
}
async function closeServer(server) {
  await withTimeout(server.close(), 5000, `server.close() (port ${server.port})`);
  open.delete(server);
}
const children = new Set();
function child(args, opts) {
  const c = spawnNode(args, opts);
  children.add(c);
  return c;
}
test.after.each(async () => {
  for (const s of open) {
    try {
      await withTimeout(s.close(), 5000, 'cleanup close');
    } catch {
      /* the test reports */
    }
  }
  open.clear();
  for (const c of children) {
    try {
      await c.stop();
    } catch {
      /* ignore */
    }
  }
  children.clear();
});

function rate(n, ms) {
  return `${n} cycles in ${(ms / 1000).toFixed(2)} s = ${(n / (ms / 1000)).toFixed(1)} cycles/s`;
}

/**
 * One full cycle on a fresh port-0 server: listen, connect, one echo round
 * trip, then close in one of three ways, then server.close(). Throws with a
 * precise message on any deviation.
 */
async function portZeroCycle(i) {
  const server = await listen({ host: HOST, port: 0 });
  try {
    if (!(server.port > 0)) throw new Error(`listen gave port ${server.port}`);
    attachEcho(server);
    const connP = nextConnection(server);
    const ws = await wsConnect(`ws://${HOST}:${server.port}/`);
    const [conn] = await connP;
    const reply = await echoRoundTrip(ws, `cycle ${i}`);
    if (reply.data !== `cycle ${i}` || reply.isBinary)
      throw new Error(`bad echo ${JSON.stringify(reply)}`);
    const mode = i % 3;
    if (mode === 0) {
      // client closes
      const sc = connClosed(conn);
      ws.close(1000, 'client done');
      const s = await sc;
      if (s.code !== 1000 || s.reason !== 'client done' || s.wasClean !== true)
        throw new Error(`server saw close ${JSON.stringify(s)}`);
      const c = await withTimeout(ws.closed, 5000, 'client close');
      if (c.code !== 1000) throw new Error(`client saw close ${c.code}`);
    } else if (mode === 1) {
      // server connection closes
      const sc = connClosed(conn);
      conn.close(1000, 'server done');
      const c = await withTimeout(ws.closed, 5000, 'client close');
      if (c.code !== 1000 || c.reason !== 'server done')
        throw new Error(`client saw close ${JSON.stringify(c)}`);
      await sc;
    }
    await closeServer(server);
    if (mode === 2) {
      // server.close() with the client still open
      const c = await withTimeout(ws.closed, 5000, 'client close after server.close()');
      if (c.code !== 1001)
        throw new Error(`client saw close ${c.code} after server.close(), expected 1001`);
    }
    if (server.listening) throw new Error('server.listening still true after close()');
  } finally {
    if (open.has(server)) await closeServer(server).catch(() => {});
  }
}

async function runCycles(n, fn) {
  const failures = [];
  const t0 = performance.now();
  let done = 0;
  for (let i = 0; i < n; i++) {
    try {
      await fn(i);
      done++;
    } catch (err) {
      failures.push(`cycle ${i}: ${err?.code ? `[${err.code}] ` : ''}${err?.message}`);
      if (failures.length >= MAX_REPORTED_FAILURES) break;
    }
  }
  return { failures, done, ms: performance.now() - t0 };
}

// ---------------------------------------------------------------------------
// a. 1,000 cycles on port 0
// ---------------------------------------------------------------------------

test('a: 1000 cycles of listen(port 0) / connect / echo / close / server.close() without a failure', async () => {
  const N = 1000;
  const { failures, done, ms } = await runCycles(N, portZeroCycle);
  console.log(`\n  [code41 a] ${rate(done, ms)}`);
  assert.equal(failures, [], `failures: ${failures.join(' | ')}`);
  assert.is(done, N);
});

// ---------------------------------------------------------------------------
// b. 200 cycles on one explicit port, client still connected at close
// ---------------------------------------------------------------------------

test('b: 200 cycles re-listening on the same port right after close() with a client still connected', async () => {
  const N = 200;
  const first = await listen({ host: HOST, port: 0 });
  const port = first.port;
  let server = first;
  let prevClient = null;
  let timeWaitSeen = 0;
  const retried = [];
  const { failures, done, ms } = await runCycles(N, async (i) => {
    if (i > 0) {
      server = await listen({ host: HOST, port });
      if (server.port !== port) throw new Error(`listen({port: ${port}}) gave port ${server.port}`);
      if (server.bindAttempts !== 1)
        retried.push(`cycle ${i}: bindAttempts ${server.bindAttempts}`);
    }
    // The previous cycle's client must have been closed with 1001.
    if (prevClient) {
      const c = await withTimeout(prevClient.closed, 5000, 'previous client close');
      if (c.code !== 1001) throw new Error(`previous client saw close ${c.code}, expected 1001`);
      prevClient = null;
    }
    attachEcho(server);
    const ws = await wsConnect(`ws://${HOST}:${port}/b${i}`);
    const reply = await echoRoundTrip(ws, Buffer.from(`bin ${i}`));
    if (!reply.isBinary || reply.data.toString() !== `bin ${i}`)
      throw new Error(`bad echo ${JSON.stringify(reply)}`);
    if (ws.readyState !== ws.OPEN) throw new Error('client not open at server.close()');
    await closeServer(server);
    if (listenersOn(port).length !== 0)
      throw new Error(`port ${port} still has a listener after close() resolved`);
    if (i % 20 === 19) {
      timeWaitSeen = Math.max(
        timeWaitSeen,
        tcpSockets().filter((s) => s.state === 'TIME_WAIT' && s.localPort === port).length,
      );
    }
    prevClient = ws;
  });
  if (prevClient) {
    const c = await withTimeout(prevClient.closed, 5000, 'last client close');
    assert.is(c.code, 1001);
  }
  console.log(
    `\n  [code41 b] ${rate(done, ms)} on port ${port}; up to ${timeWaitSeen} server-side TIME_WAIT sockets seen`,
  );
  assert.equal(failures, [], `failures: ${failures.join(' | ')}`);
  assert.is(done, N);
  assert.equal(retried, [], `re-listen needed bind retries: ${retried.slice(0, 5).join(', ')}`);
  assert.ok(
    timeWaitSeen > 0,
    'the scenario must leave TIME_WAIT sockets on the server port (server closes TCP first)',
  );
});

// ---------------------------------------------------------------------------
// c. Port held by another process / by another server
// ---------------------------------------------------------------------------

const HOLDER_SCRIPT = `
const net = require('net');
const s = net.createServer().listen(0, '127.0.0.1', () => console.log('PORT ' + s.address().port));
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  if (d.includes('close')) s.close(() => console.log('CLOSED'));
});
`;

async function spawnHolder() {
  const holder = child(['-e', HOLDER_SCRIPT], { stdin: 'pipe' });
  const line = await holder.line((l) => l.startsWith('PORT '), 5000, 'holder port');
  const port = Number(line.slice(5));
  assert.ok(port > 0, `holder printed ${line}`);
  return { holder, port };
}

test('c1: a port held by another process rejects with a precise EADDRINUSE after retries + 1 attempts', async () => {
  const { holder, port } = await spawnHolder();
  const retries = [];
  const t0 = performance.now();
  const err = await captureRejection(
    () =>
      lws.listen({
        host: HOST,
        port,
        bindRetry: {
          retries: 3,
          minDelayMs: 10,
          maxDelayMs: 40,
          onRetry: (info) => retries.push(info),
        },
      }),
    5000,
    'listen on a held port to reject',
  );
  const elapsed = performance.now() - t0;
  assert.instance(err, Error);
  assert.is(err.code, 'EADDRINUSE', `${err}`);
  assert.is(err.syscall, 'bind');
  assert.is(err.address, HOST);
  assert.is(err.port, port);
  assert.is(err.attempts, 4);
  assert.ok(err.message.includes(String(port)), `message should name the port: ${err.message}`);
  assert.is(retries.length, 3, 'onRetry once per retry');
  retries.forEach((info, k) => {
    assert.type(info.attempt, 'number');
    if (k > 0)
      assert.is(info.attempt, retries[k - 1].attempt + 1, 'attempt numbers are consecutive');
    assert.instance(info.error, Error);
    assert.is(info.error.code, 'EADDRINUSE');
    assert.ok(info.delayMs >= 10 && info.delayMs <= 40, `delayMs ${info.delayMs} outside [10, 40]`);
  });
  const slept = retries.reduce((a, r) => a + r.delayMs, 0);
  assert.ok(
    elapsed >= slept - 5,
    `rejected after ${elapsed.toFixed(0)} ms, before the ${slept} ms of retry delays`,
  );
  assert.ok(holder.exitCode === null, 'holder still alive');
  // (checked last so that a sign mismatch does not hide the checks above)
  assert.is(
    err.errno,
    -os.constants.errno.EADDRINUSE,
    `errno ${err.errno}: expected -98: errno is negative, as in Node's own net errors`,
  );
});

test('c2: listen succeeds once the other process lets the port go inside the retry window', async () => {
  const { holder, port } = await spawnHolder();
  let told = false;
  const retries = [];
  const server = await withTimeout(
    listen({
      host: HOST,
      port,
      bindRetry: {
        retries: 100,
        minDelayMs: 20,
        maxDelayMs: 50,
        onRetry: (info) => {
          retries.push(info);
          if (!told) {
            told = true;
            holder.stdin.write('close\n');
          }
        },
      },
    }),
    8000,
    'listen while the holder releases the port',
  );
  assert.is(server.port, port);
  assert.ok(server.bindAttempts >= 2, `bindAttempts ${server.bindAttempts}`);
  assert.is(server.bindAttempts, retries.length + 1);
  await holder.line((l) => l === 'CLOSED', 5000, 'holder CLOSED');
  attachEcho(server);
  const ws = await wsConnect(`ws://${HOST}:${port}/`);
  assert.is((await echoRoundTrip(ws, 'got it')).data, 'got it');
  await closeClient(ws);
});

test('c3: two servers on one port: EADDRINUSE with reuseAddr, both listen with reusePort on both', async () => {
  const a = await listen({ host: HOST, port: 0, reuseAddr: true });
  const port = a.port;
  const err = await captureRejection(
    () => lws.listen({ host: HOST, port, reuseAddr: true, bindRetry: { retries: 0 } }),
    5000,
    'second reuseAddr listen to reject',
  );
  assert.is(err.code, 'EADDRINUSE', `${err}`);
  assert.is(err.attempts, 1);
  assert.is(err.port, port);
  await closeServer(a);

  const p1 = await listen({ host: HOST, port: 0, reusePort: true });
  const rp = p1.port;
  const p2 = await listen({ host: HOST, port: rp, reusePort: true });
  assert.is(p2.port, rp);
  assert.is(listenersOn(rp).length, 2, 'two listening sockets share the port');
  // reusePort on only one side is not enough.
  const err2 = await captureRejection(
    () => lws.listen({ host: HOST, port: rp, bindRetry: { retries: 0 } }),
    5000,
    'non-reusePort listen to reject',
  );
  assert.is(err2.code, 'EADDRINUSE', `${err2}`);
  // Both serve: every client lands on one of the two and is echoed by it.
  const c1 = attachEcho(p1, { prefix: '1:' });
  const c2 = attachEcho(p2, { prefix: '2:' });
  const clients = [];
  for (let i = 0; i < 16; i++) clients.push(await wsConnect(`ws://${HOST}:${rp}/`));
  const replies = await Promise.all(clients.map((ws, i) => echoRoundTrip(ws, `m${i}`)));
  replies.forEach((r, i) => {
    assert.ok(r.data === `1:m${i}` || r.data === `2:m${i}`, `reply ${r.data}`);
  });
  assert.is(c1.length + c2.length, 16);
  await Promise.all(clients.map((ws) => closeClient(ws)));
  await closeServer(p1);
  const ws = await wsConnect(`ws://${HOST}:${rp}/`);
  assert.is(
    (await echoRoundTrip(ws, 'left')).data,
    '2:left',
    'remaining reusePort server serves alone',
  );
  await closeClient(ws);
});

// ---------------------------------------------------------------------------
// d. Several servers alive at once
// ---------------------------------------------------------------------------

test('d: 5 servers alive at once, 3 clients each, interleaved traffic, no cross-talk', async () => {
  const S = 5,
    C = 3,
    M = 40;
  const servers = [];
  for (let s = 0; s < S; s++) {
    const server = await listen({ host: HOST, port: 0 });
    servers.push({ server, conns: attachEcho(server, { prefix: `S${s}|` }) });
  }
  assert.is(new Set(servers.map((s) => s.server.port)).size, S, 'distinct ports');
  const clients = [];
  for (let s = 0; s < S; s++) {
    for (let c = 0; c < C; c++)
      clients.push({ s, c, ws: await wsConnect(`ws://${HOST}:${servers[s].server.port}/c${c}`) });
  }
  const pending = clients.map(({ ws }) => collectMessages(ws, M, 10000));
  for (let m = 0; m < M; m++) {
    for (const { s, c, ws } of clients) {
      if (m % 2) ws.send(Buffer.from(`${s}.${c}.${m}`));
      else ws.send(`${s}.${c}.${m}`);
    }
  }
  const results = await Promise.all(pending);
  clients.forEach(({ s, c }, k) => {
    results[k].forEach((msg, m) => {
      const body = Buffer.isBuffer(msg.data) ? msg.data.toString() : msg.data;
      assert.is(body, `S${s}|${s}.${c}.${m}`, `client ${s}.${c} message ${m}`);
      assert.is(msg.isBinary, m % 2 === 1);
    });
  });
  servers.forEach(({ server, conns }, s) => {
    assert.is(conns.length, C, `server ${s} connections`);
    assert.is(server.connectionCount, C, `server ${s} connectionCount`);
  });
  // Closing one server affects only its own clients.
  await closeServer(servers[0].server);
  for (const { s, ws } of clients.filter((x) => x.s === 0)) {
    assert.is((await withTimeout(ws.closed, 5000, `client of server ${s} close`)).code, 1001);
  }
  for (const { s, c, ws } of clients.filter((x) => x.s !== 0)) {
    assert.is(
      (await echoRoundTrip(ws, 'after')).data,
      `S${s}|after`,
      `client ${s}.${c} after server 0 closed`,
    );
  }
  await Promise.all(clients.filter((x) => x.s !== 0).map(({ ws }) => closeClient(ws)));
  for (const { server } of servers.slice(1)) await closeServer(server);
});

// ---------------------------------------------------------------------------
// e. fds and threads return to baseline
// ---------------------------------------------------------------------------

function fdTargets() {
  const m = new Map();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      m.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      /* the readdir fd itself */
    }
  }
  return m;
}

test('e: open fds and threads return to their baseline after 200 cycles with traffic', async () => {
  await fs.promises.stat('/'); // make sure libuv's thread pool is already started
  await portZeroCycle(2); // warm-up: the native context and its service thread live on
  await portZeroCycle(0);
  const baseFds = openFds();
  const baseThreads = threadCount();
  const baseTargets = fdTargets();
  const { failures, done, ms } = await runCycles(200, async (i) => {
    await portZeroCycle(i);
    if (i % 50 === 0) {
      // a few extra messages on a longer-lived connection
      const server = await listen({ host: HOST, port: 0 });
      attachEcho(server);
      const ws = await wsConnect(`ws://${HOST}:${server.port}/`);
      const got = collectMessages(ws, 100);
      for (let k = 0; k < 100; k++) ws.send(`k${k}`);
      const msgs = await got;
      if (msgs[99].data !== 'k99') throw new Error('bad traffic');
      await closeServer(server);
      await withTimeout(ws.closed, 5000, 'client close');
    }
  });
  console.log(`\n  [code41 e] ${rate(done, ms)}`);
  assert.equal(failures, [], `failures: ${failures.join(' | ')}`);
  let last = {};
  try {
    await waitFor(
      () => {
        last = { fds: openFds(), threads: threadCount() };
        return last.fds === baseFds && last.threads === baseThreads;
      },
      { timeout: 5000, label: 'fds and threads back at baseline' },
    );
  } catch (err) {
    const now = fdTargets();
    const added = [...now]
      .filter(([fd, t]) => baseTargets.get(fd) !== t)
      .map(([fd, t]) => `${fd}->${t}`);
    const removed = [...baseTargets]
      .filter(([fd, t]) => now.get(fd) !== t)
      .map(([fd, t]) => `${fd}->${t}`);
    assert.unreachable(
      `${err.message}: baseline fds ${baseFds} threads ${baseThreads}, now fds ${last.fds} threads ${last.threads}; fds added (${added.length}) [${added.slice(0, 12).join(', ')}], removed (${removed.length}) [${removed.slice(0, 12).join(', ')}]`,
    );
  }
  assert.is(openFds(), baseFds);
  assert.is(threadCount(), baseThreads);
});

// ---------------------------------------------------------------------------
// f. Processes exit by themselves
// ---------------------------------------------------------------------------

const SERVE_ONE_THEN_CLOSE = `
const lws = await import(${JSON.stringify(DIST_URL)});
const server = await lws.listen({ host: '127.0.0.1', port: 0 });
server.on('connection', (conn) => {
  conn.on('message', async (data) => {
    conn.send(data);
    await server.close();
    console.log('CLOSED');
  });
});
console.log('PORT ' + server.port);
`;

test('f1: a child that closes its server after serving one client exits by itself within 1000 ms', async () => {
  const c = child(['--input-type=module', '-e', SERVE_ONE_THEN_CLOSE]);
  const port = Number((await c.line((l) => l.startsWith('PORT '), 5000, 'child port')).slice(5));
  assert.ok(port > 0);
  const ws = await wsConnect(`ws://${HOST}:${port}/`);
  const closedAt = ws.closed.then((cl) => ({ ...cl, at: performance.now() }));
  const reply = await echoRoundTrip(ws, 'only message');
  assert.is(reply.data, 'only message');
  const cl = await withTimeout(closedAt, 5000, 'client close');
  assert.is(cl.code, 1001);
  const ex = await withTimeout(
    c.exited,
    5000,
    `child exit by itself (stderr: ${c.stderrText.trim()})`,
  );
  assert.is(
    ex.code,
    0,
    `exit code ${ex.code}, signal ${ex.signal}, stderr: ${c.stderrText.trim()}`,
  );
  assert.ok(c.stdoutText.includes('CLOSED'), 'child saw close() resolve');
  const lag = ex.at - cl.at;
  console.log(`\n  [code41 f] child exited ${lag.toFixed(0)} ms after the client saw the close`);
  assert.ok(lag < 1000, `child exited ${lag.toFixed(0)} ms after the client's close`);
});

test('f2: a child whose open server is unref()ed exits by itself', async () => {
  const c = child([
    '--input-type=module',
    '-e',
    `
const lws = await import(${JSON.stringify(DIST_URL)});
const server = await lws.listen({ host: '127.0.0.1', port: 0 });
server.unref();
console.log('PORT ' + server.port + ' ' + server.listening);
`,
  ]);
  const line = await c.line((l) => l.startsWith('PORT '), 5000, 'child port');
  assert.match(line, /^PORT [1-9]\d* true$/);
  const ex = await withTimeout(
    c.exited,
    5000,
    `unref'd child exit (stderr: ${c.stderrText.trim()})`,
  );
  assert.is(
    ex.code,
    0,
    `exit code ${ex.code}, signal ${ex.signal}, stderr: ${c.stderrText.trim()}`,
  );
});

for (const [name, refCall] of [
  ["ref'd (default)", ''],
  ['unref().ref()', 'server.unref().ref();'],
]) {
  test(`f3: a child with a ${name} open server stays alive`, async () => {
    const c = child([
      '--input-type=module',
      '-e',
      `
const lws = await import(${JSON.stringify(DIST_URL)});
const server = await lws.listen({ host: '127.0.0.1', port: 0 });
${refCall}
server.on('connection', (conn) => conn.on('message', (d) => conn.send('child:' + d)));
console.log('PORT ' + server.port);
`,
    ]);
    const port = Number((await c.line((l) => l.startsWith('PORT '), 5000, 'child port')).slice(5));
    for (let k = 0; k < 2; k++) {
      // a round trip, a close, and a second round trip with no client left in between
      const ws = await wsConnect(`ws://${HOST}:${port}/`);
      assert.is((await echoRoundTrip(ws, `hi ${k}`)).data, `child:hi ${k}`);
      await closeClient(ws);
    }
    assert.is(
      c.exitCode,
      null,
      `child exited early with ${c.exitCode}; stderr: ${c.stderrText.trim()}`,
    );
    assert.is(c.signalCode, null);
    c.kill('SIGTERM');
    const ex = await withTimeout(c.exited, 5000, 'child exit after SIGTERM');
    assert.is(ex.signal, 'SIGTERM');
  });
}

test.after(exitWatchdog);
test.run();
