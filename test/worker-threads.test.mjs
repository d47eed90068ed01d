// node-lws inside worker_threads.
//
// Every worker that imports node-lws gets its own native context (own lws context, own
// service thread), torn down by the addon's environment cleanup hook when the worker ends.
// Checked here: traffic in both directions between a worker and the main thread; a worker
// terminated (worker.terminate(), process.exit() inside it) with an open server, open
// server-side connections and open clients, mid-traffic, does not crash the process, every
// peer sees its connection close, the worker's port is free again; and after 20 such
// create/terminate cycles the process's fds and threads are back at their baseline.

import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { tcpConnects } from './support/net.mjs';
import { DIST_URL } from './support/paths.mjs';
import { describeFds, openFds, threadCount } from './support/proc.mjs';
import { exitWatchdog } from './support/suite.mjs';
import { waitFor, withTimeout } from './support/wait.mjs';
import { wsConnect } from './support/ws-client.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const PEER = path.join(here, 'fixtures', 'worker-peer.mjs');
const HOST = '127.0.0.1';
const T = 5000;

// ---------------------------------------------------------------------------
// A worker running test/fixtures/worker-peer.mjs, driven by request/response messages.
// ---------------------------------------------------------------------------

class Peer {
  constructor() {
    this.worker = new Worker(PEER, { workerData: { dist: DIST_URL } });
    this.nextId = 1;
    this.pending = new Map();
    this.events = [];
    this.errors = [];
    this.exited = new Promise((resolve) => this.worker.once('exit', (code) => resolve(code)));
    this.worker.on('error', (err) => this.errors.push(err));
    this.ready = withTimeout(
      new Promise((resolve) => {
        this.worker.on('message', (msg) => {
          if (msg.event === 'ready') resolve();
          else if (msg.event) this.events.push(msg);
          else {
            const p = this.pending.get(msg.id);
            if (!p) return;
            this.pending.delete(msg.id);
            if (msg.error) p.reject(new Error(msg.error));
            else p.resolve(msg);
          }
        });
      }),
      T * 2,
      'worker ready',
    );
  }

  call(cmd, args = {}, ms = T) {
    const id = this.nextId++;
    const p = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.worker.postMessage({ id, cmd, ...args });
    return withTimeout(p, ms, `worker command ${cmd}`);
  }

  static async start() {
    const p = new Peer();
    await p.ready;
    return p;
  }
}

function echoServer(server, seen) {
  server.on('connection', (conn) => {
    seen?.push(conn);
    conn.on('error', () => {});
    conn.on('message', (data, isBinary) => {
      if (conn.isOpen) conn.send(data, isBinary);
    });
  });
}

async function roundTrip(client, payload) {
  const reply = once(client, 'message');
  client.send(payload);
  const [data] = await withTimeout(reply, T, 'main-thread echo reply');
  return data;
}

/** Resolves with the close code of the transport's next 'close' event. */
function closedCode(t) {
  assert.is.not(t.readyState, 'closed', 'closedCode() on a closed transport');
  return new Promise((resolve) => t.once('close', (code) => resolve(code)));
}

async function settleBaseline(baseline, label) {
  try {
    await waitFor(() => openFds() === baseline.fds && threadCount() === baseline.threads, {
      timeout: 10_000,
      interval: 20,
      label: `${label}: fds ${baseline.fds} and threads ${baseline.threads} again`,
      describe: () =>
        `now fds ${openFds()} threads ${threadCount()}; fds at baseline: ${baseline.describe}; now: ${describeFds()}`,
    });
  } catch (err) {
    assert.unreachable(err.message);
  }
}

let baseline;

test.before(async () => {
  // Start the process-wide lazies first: the libuv threadpool, the main thread's own native
  // context, and one worker (its first creation may allocate process-wide state).
  await fs.promises.readFile(PEER);
  const s = await lws.listen({ host: HOST, port: 0 });
  echoServer(s);
  const c = await lws.connect(`ws://${HOST}:${s.port}/`);
  await roundTrip(c, 'warm-up');
  // A first net socket on the main loop makes libuv reserve its EMFILE fd (/dev/null) for good.
  const ws = await wsConnect(`ws://${HOST}:${s.port}/`);
  ws.close();
  await withTimeout(ws.closed, T, 'warm-up ws close');
  c.close();
  await s.close();
  const p = await Peer.start();
  const { port } = await p.call('listen');
  await p.call('connect', { port, payload: 'warm-up' });
  await p.call('closeAll');
  await p.worker.terminate();
  await new Promise((r) => setTimeout(r, 50));
  baseline = { fds: openFds(), threads: threadCount(), describe: describeFds() };
});

// ---------------------------------------------------------------------------

test('worker server <-> main-thread clients (node-lws and ws)', async () => {
  const p = await Peer.start();
  try {
    const { port } = await p.call('listen');
    const c = await lws.connect(`ws://${HOST}:${port}/main`);
    assert.is(await roundTrip(c, 'hello worker'), 'w:hello worker');
    const bin = Buffer.alloc(100_000, 7);
    const got = await roundTrip(c, bin);
    assert.ok(Buffer.isBuffer(got) && got.equals(bin), 'binary echo from the worker');
    const ws = await wsConnect(`ws://${HOST}:${port}/ws`);
    const wsReply = new Promise((r) => ws.once('message', (d) => r(d.toString())));
    ws.send('via ws');
    assert.is(await withTimeout(wsReply, T, 'ws reply'), 'w:via ws');
    const cClosed = closedCode(c);
    c.close(1000);
    assert.is(await withTimeout(cClosed, T, 'client close'), 1000);
    ws.close();
    await withTimeout(ws.closed, T, 'ws close');
    await p.call('closeAll');
  } finally {
    await p.worker.terminate();
  }
  await settleBaseline(baseline, 'after worker server test');
});

test('main-thread server <-> worker client, both contexts busy at once', async () => {
  const seen = [];
  const server = await lws.listen({ host: HOST, port: 0 });
  echoServer(server, seen);
  const p = await Peer.start();
  try {
    const r = await p.call('connect', { port: server.port, payload: 'from worker' });
    assert.is(r.reply, 'from worker');
    assert.is(seen.length, 1);
    // A server in the worker, a client in main, at the same time as the worker's client.
    const { port } = await p.call('listen');
    const c = await lws.connect(`ws://${HOST}:${port}/`);
    for (let i = 0; i < 20; i++) assert.is(await roundTrip(c, `m${i}`), `w:m${i}`);
    const serverSide = new Promise((r) => seen[0].once('close', (code) => r(code)));
    const mainClient = closedCode(c);
    await p.call('closeAll');
    assert.is(await withTimeout(serverSide, T, 'main server sees worker client close'), 1000);
    // The worker's server.close() closes the main-thread client with 1001.
    assert.is(await withTimeout(mainClient, T, 'main client sees worker server close'), 1001);
  } finally {
    await p.worker.terminate();
    await server.close();
  }
  await settleBaseline(baseline, 'after worker client test');
});

/**
 * One terminate cycle: a worker with an open echo server (two main-thread clients connected,
 * one node-lws, one ws, both sending), and two worker clients connected to a main-thread server
 * and flooding it; then the worker is ended by `how`. Checks that every peer sees the close and
 * that the worker's port is free.
 */
async function terminateCycle(server, seen, how) {
  const p = await Peer.start();
  const { port } = await p.call('listen');
  await p.call('connect', { port: server.port, payload: 'a' });
  await p.call('connect', { port: server.port, payload: 'b' });
  const mine = seen.slice(-2);
  const c = await lws.connect(`ws://${HOST}:${port}/`);
  c.on('error', () => {});
  assert.is(await roundTrip(c, 'x'), 'w:x');
  const ws = await wsConnect(`ws://${HOST}:${port}/`);
  await p.call('flood', { ms: 1 });
  const closes = [
    withTimeout(closedCode(c), T, 'main node-lws client sees the worker go'),
    withTimeout(ws.closed, T, 'main ws client sees the worker go'),
    ...mine.map((conn) =>
      withTimeout(closedCode(conn), T, 'main server sees the worker client go'),
    ),
  ];
  // Keep traffic flowing towards the worker while it dies.
  const pump = setInterval(() => {
    if (c.isOpen) c.send('pump');
    if (ws.readyState === 1) ws.send('pump');
  }, 1);
  try {
    if (how === 'terminate') {
      await withTimeout(p.worker.terminate(), T, 'worker.terminate()');
    } else if (how === 'exit') {
      p.worker.postMessage({ id: 0, cmd: 'exit', code: 3 });
      assert.is(await withTimeout(p.exited, T, 'worker process.exit(3)'), 3);
    } else {
      await p.call('finish');
      assert.is(await withTimeout(p.exited, T, 'worker ends by itself'), 0);
    }
    const codes = await Promise.all(closes);
    for (const code of codes.slice(2))
      assert.ok([1000, 1001, 1006].includes(code), `server-side close code ${code}`);
    assert.ok([1000, 1001, 1006].includes(codes[0]), `node-lws client close code ${codes[0]}`);
  } finally {
    clearInterval(pump);
  }
  assert.equal(p.errors, [], 'no error event from the worker');
  // The worker's listening socket is gone.
  assert.not.ok(await tcpConnects(HOST, port), `worker port ${port} still accepts connections`);
}

test('worker.terminate() with open server, connections and traffic', async () => {
  const seen = [];
  const server = await lws.listen({ host: HOST, port: 0 });
  echoServer(server, seen);
  try {
    await terminateCycle(server, seen, 'terminate');
    // The main thread's context is untouched.
    const c = await lws.connect(`ws://${HOST}:${server.port}/after`);
    assert.is(await roundTrip(c, 'still here'), 'still here');
    c.close();
    await withTimeout(closedCode(c), T, 'close');
  } finally {
    await server.close();
  }
  await settleBaseline(baseline, 'after terminate test');
});

test('process.exit() inside a worker, and a worker that ends by itself', async () => {
  const seen = [];
  const server = await lws.listen({ host: HOST, port: 0 });
  echoServer(server, seen);
  try {
    await terminateCycle(server, seen, 'exit');
    await terminateCycle(server, seen, 'finish');
  } finally {
    await server.close();
  }
  await settleBaseline(baseline, 'after exit/finish test');
});

test('20 create/terminate cycles: fds and threads back to baseline', async () => {
  const seen = [];
  const server = await lws.listen({ host: HOST, port: 0 });
  echoServer(server, seen);
  const t0 = performance.now();
  try {
    for (let i = 0; i < 20; i++) {
      await terminateCycle(server, seen, i % 5 === 4 ? 'exit' : 'terminate');
    }
    await waitFor(() => server.connectionCount === 0, {
      timeout: T,
      label: 'main server has no connections left',
    });
  } finally {
    await server.close();
  }
  const ms = performance.now() - t0;
  await settleBaseline(baseline, 'after 20 cycles');
  process.stdout.write(
    `\n  [note] 20 worker cycles in ${Math.round(ms)} ms; fds ${openFds()} threads ${threadCount()} (baseline ${baseline.fds}/${baseline.threads})\n`,
  );
});

test.after(exitWatchdog);
test.run();
