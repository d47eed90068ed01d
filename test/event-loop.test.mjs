// The event loop of the service thread (README, Design): libev (epoll) when available, lws's
// poll() loop otherwise.
//
// Checked here, with real processes:
//   - this build runs on libev over epoll (on Debian the source build needs the plugin package
//     libwebsockets-evlib-ev, a dependency of libwebsockets-dev);
//   - NODE_LWS_EVENT_LOOP=poll runs lws's poll loop; a bad value is refused with a code;
//   - when the libev plugin cannot be loaded (hidden in a private mount namespace of a child
//     process), the context starts anyway on poll, says so in exactly one process warning
//     (code NODE_LWS_POLL_FALLBACK), and serves;
//   - workers get a libev loop each; after they end (the plugin and libev unloaded with their
//     last context), child_process and fs still work in the main thread (lws's libuv plugin
//     broke Node's thread pool on unload: lws facts);
//   - timers stay on time under libev after a long lws timer is pending (lws 4.1.6's libev glue
//     does not re-arm its timer for an earlier deadline; Context::EvTimers does).

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { DIST_URL } from './support/paths.mjs';
import { spawnNode, spawnProcess } from './support/proc.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { msSince, withTimeout } from './support/wait.mjs';
import { wsConnect } from './support/ws-client.mjs';

const { binding } = await import('../dist/native.js');
const HOST = '127.0.0.1';
const INSTALL = 'Debian/Ubuntu: apt-get install libwebsockets-evlib-ev libev-dev';
const cleanups = cleanupsAfterEach(test);

// A child process that starts a server, round-trips one message and prints its event loop.
const CHILD = `
  const lws = await import(${JSON.stringify(DIST_URL)});
  const warnings = [];
  process.on('warning', (w) => warnings.push({ code: w.code, message: w.message }));
  const server = await lws.listen({ host: '127.0.0.1', port: 0 });
  server.on('connection', (c) => c.on('message', (d, b) => c.send(d, b)));
  const client = await lws.connect('ws://127.0.0.1:' + server.port);
  const echo = await new Promise((r) => { client.on('message', (d) => r(String(d))); client.send('ping?'); });
  const { binding } = await import(${JSON.stringify(DIST_URL.replace(/index\.mjs$/, 'native.js'))});
  await new Promise((r) => setImmediate(r));
  console.log(JSON.stringify({ loop: binding.eventLoop(), echo, warnings }));
  client.close();
  await server.close();
`;

async function runChild(command, args, env) {
  const child = command
    ? spawnProcess(command, args, { env })
    : spawnNode(['--input-type=module', '-e', CHILD], { env });
  const line = await child.line((l) => l.startsWith('{'), 10000, 'child result line');
  const exit = await withTimeout(child.exited, 10000, 'child exit');
  assert.is(exit.code, 0, `child exit: ${child.stderrText}`);
  return { result: JSON.parse(line), stderr: child.stderrText };
}

test('this build runs lws on libev over epoll', async () => {
  const server = await lws.listen({ host: HOST, port: 0 });
  cleanups.push(() => server.close());
  const loop = binding.eventLoop();
  assert.ok(loop, 'eventLoop() after the context started');
  assert.equal(
    loop,
    { loop: 'libev', backend: 'epoll', fallback: null },
    `expected libev over epoll (${INSTALL}); got ${JSON.stringify(loop)}`,
  );
});

test('NODE_LWS_EVENT_LOOP=poll runs the poll loop; a bad value is refused with a code', async () => {
  const { result, stderr } = await runChild(null, null, {
    ...process.env,
    NODE_LWS_EVENT_LOOP: 'poll',
  });
  assert.equal(result.loop, { loop: 'poll', backend: 'poll', fallback: null });
  assert.is(result.echo, 'ping?');
  assert.equal(result.warnings, [], `no warning when poll is asked for; stderr: ${stderr}`);

  const bad = spawnNode(
    [
      '--input-type=module',
      '-e',
      `const lws = await import(${JSON.stringify(DIST_URL)});
       try { await lws.listen({ port: 0 }); console.log('{"listened":true}'); }
       catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`,
    ],
    { env: { ...process.env, NODE_LWS_EVENT_LOOP: 'epol' } },
  );
  const line = JSON.parse(await bad.line((l) => l.startsWith('{'), 10000, 'bad-value result'));
  await withTimeout(bad.exited, 10000, 'child exit');
  assert.is(line.code, 'ERR_INVALID_ARG_VALUE', JSON.stringify(line));
  assert.match(line.message, /NODE_LWS_EVENT_LOOP/);
});

// Plain sockets are EvSockets under libev and lws wsis under poll (README, Design): the same
// socket paths on both, in a child each: a refused connect (SO_ERROR), a 1 MiB message each way
// (the direct payload read), messages sent while reading is paused arriving after resume(), a
// clean close.
const SOCKET_PATHS_CHILD = `
  const lws = await import(${JSON.stringify(DIST_URL)});
  const { binding } = await import(${JSON.stringify(DIST_URL.replace(/index\.mjs$/, 'native.js'))});
  const server = await lws.listen({ host: '127.0.0.1', port: 0, maxPayload: 4 << 20 });
  const conns = [];
  server.on('connection', (c) => { conns.push(c); c.on('message', (d, b) => c.send(d, b)); });
  const client = await lws.connect('ws://127.0.0.1:' + server.port, { maxPayload: 4 << 20 });
  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 0xff;
  const back = await new Promise((r) => { client.once('message', (d) => r(d)); client.send(big); });
  client.pause();
  const got = [];
  const all = new Promise((r) => client.on('message', (d) => { got.push(String(d)); if (got.length === 3) r(); }));
  for (const m of ['a', 'b', 'c']) conns[0].send(m);
  client.resume();
  await all;
  const closed = new Promise((r) => conns[0].once('close', (code, reason, clean) => r({ code, clean })));
  client.close(1000, 'bye');
  const serverSide = await closed;
  const port = server.port;
  await server.close();
  let refused;
  try { await lws.connect('ws://127.0.0.1:' + port); } catch (e) { refused = e.code; }
  console.log(JSON.stringify({ loop: binding.eventLoop().loop, intact: Buffer.compare(back, big) === 0,
    got, serverSide, refused }));
`;

for (const loop of ['libev', 'poll']) {
  test(`${loop}: plain sockets refuse, read 1 MiB, pause, resume and close the same`, async () => {
    const env = { ...process.env, NODE_LWS_EVENT_LOOP: loop === 'poll' ? 'poll' : 'auto' };
    const child = spawnNode(['--input-type=module', '-e', SOCKET_PATHS_CHILD], { env });
    const line = await child.line((l) => l.startsWith('{'), 20000, 'child result line');
    const exit = await withTimeout(child.exited, 10000, 'child exit');
    assert.is(exit.code, 0, `child exit: ${child.stderrText}`);
    const r = JSON.parse(line);
    assert.is(r.loop, loop, `${INSTALL}; ${line}`);
    assert.ok(r.intact, '1 MiB message echoed intact');
    assert.equal(r.got, ['a', 'b', 'c'], 'sent while reading was paused, in order after resume()');
    assert.equal(r.serverSide, { code: 1000, clean: true });
    assert.is(r.refused, 'ECONNREFUSED');
  });
}

test('libev plugin missing: poll takes over with one warning, and serves', async () => {
  const config = fs.readFileSync('/usr/include/lws_config.h', 'utf8');
  const libdir = /#define LWS_INSTALL_LIBDIR "([^"]+)"/.exec(config)?.[1];
  assert.ok(libdir, 'LWS_INSTALL_LIBDIR in /usr/include/lws_config.h');
  const plugin = `${libdir}/libwebsockets-evlib_ev.so`;
  assert.ok(fs.existsSync(plugin), `${plugin} (${INSTALL})`);
  // A private mount namespace (as root, or mapped to root in a user namespace) where the plugin
  // is /dev/null: lws's dlopen fails as it would with the file absent.
  const { result, stderr } = await runChild(
    'unshare',
    [
      '--map-root-user',
      '--mount',
      'sh',
      '-c',
      'mount --bind /dev/null "$0" && exec "$1" --input-type=module -e "$2"',
      plugin,
      process.execPath,
      CHILD,
    ],
    process.env,
  );
  assert.is(result.loop.loop, 'poll', stderr);
  assert.match(result.loop.fallback, /libev event loop could not start/);
  assert.match(result.loop.fallback, /libwebsockets-evlib-ev/);
  assert.is(result.echo, 'ping?');
  const fallbacks = result.warnings.filter((w) => w.code === 'NODE_LWS_POLL_FALLBACK');
  assert.is(fallbacks.length, 1, JSON.stringify(result.warnings));
  assert.is(stderr.match(/NODE_LWS_POLL_FALLBACK/g)?.length ?? 0, 1, stderr);
});

test('workers: a libev loop each; after they end, child_process and fs still work', async () => {
  const code = `
    const { parentPort } = require('node:worker_threads');
    import(${JSON.stringify(DIST_URL)}).then(async (lws) => {
      const { binding } = await import(${JSON.stringify(DIST_URL.replace(/index\.mjs$/, 'native.js'))});
      const s = await lws.listen({ host: '127.0.0.1', port: 0 });
      s.on('connection', (c) => c.on('message', (d, b) => c.send(d, b)));
      const c = await lws.connect('ws://127.0.0.1:' + s.port);
      const echo = await new Promise((r) => { c.on('message', (d) => r(String(d))); c.send('w'); });
      parentPort.postMessage({ loop: binding.eventLoop(), echo });
      c.close();
      await s.close();
    });
  `;
  for (let round = 0; round < 3; round++) {
    const workers = [0, 1].map(() => new Worker(code, { eval: true }));
    const msgs = await withTimeout(
      Promise.all(workers.map((w) => new Promise((r) => w.once('message', r)))),
      10000,
      'worker results',
    );
    for (const m of msgs) {
      assert.is(m.echo, 'w');
      assert.is(m.loop.loop, 'libev', `${JSON.stringify(m.loop)} (${INSTALL})`);
    }
    await Promise.all(workers.map((w) => w.terminate()));
  }
  const out = await promisify(execFile)(process.execPath, ['-e', 'console.log("child ok")']);
  assert.is(out.stdout.trim(), 'child ok');
  assert.ok((await fs.promises.readFile(new URL(import.meta.url))).length > 0);
});

test('a short timer after a long one is on time (heartbeat after a 30 s handshake timer)', async () => {
  // The handshake timer (30 s) is the only lws timer when the connection is accepted; once the
  // upgrade is done a 100 ms heartbeat replaces it. The silent peer must be dropped in ~300 ms.
  const server = await lws.listen({
    host: HOST,
    port: 0,
    handshakeTimeoutMs: 30000,
    heartbeat: { intervalMs: 100, timeoutMs: 200 },
  });
  cleanups.push(() => server.close());
  const ws = await wsConnect(`ws://${HOST}:${server.port}`, { autoPong: false });
  const t0 = performance.now();
  const code = await withTimeout(
    new Promise((r) => ws.once('close', (c) => r(c))),
    5000,
    'server drops the silent client',
  );
  assert.is(code, 1006);
  const ms = msSince(t0);
  assert.ok(ms < 2000, `dropped after ${ms.toFixed(0)} ms (expected ~300 ms)`);
});

exitWatchdog(60000);
test.run();
