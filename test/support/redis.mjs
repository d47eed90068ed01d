// Debian's redis-server for the Redis adapter's tests: started in the foreground on a free port
// below 32768 with no persistence (--save '' --appendonly no), in a folder of its own, and
// stopped afterwards. A test may kill it (SIGKILL) and start it again on the same port. A missing
// redis-server fails with the line that installs it. Commands go through the `redis` package
// (the adapter's peer dependency), on a connection of their own.
//
// Also: a node-lws server with a Redis adapter in this thread, a worker or a child process
// (test/fixtures/redis-node.mjs), driven by commands.
//
// Layer 2 of test/support/: imports wait.mjs, paths.mjs and proc.mjs (and
// scripts/redis-server.mjs, shared with the benchmark).

import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { createClient } from 'redis';
import {
  REDIS_SERVER,
  randomRedisPort,
  redisServerArgs,
  requireRedisServer,
} from '../../scripts/redis-server.mjs';
import { ROOT } from './paths.mjs';
import { spawnProcess } from './proc.mjs';
import { DEFAULT_TIMEOUT, withTimeout } from './wait.mjs';

export { REDIS_SERVER };

/** Starts redis-server on `port`; resolves with the child once it accepts connections. */
async function spawnRedis(port, dir) {
  const child = spawnProcess(REDIS_SERVER, redisServerArgs(port, dir));
  try {
    await child.line(
      (l) => l.includes('Ready to accept connections'),
      10_000,
      'redis-server ready',
    );
    return child;
  } catch (err) {
    await child.stop();
    err.output = child.stdoutText + child.stderrText;
    throw err;
  }
}

/**
 * Starts a redis-server (on `port` if given, else a free one). Resolves with `{ port, url, pid, command(...args), kill(), start(),
 * stop() }`: `command` runs one command and resolves with its reply; `kill` SIGKILLs the server
 * (and waits for its exit); `start` starts it again on the same port (after kill); `stop` kills
 * it for good and removes its folder.
 */
export async function startRedis({ port: fixed } = {}) {
  requireRedisServer();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-redis-'));
  let child;
  let port;
  let lastError = '';
  // A port below 32768 (outside the kernel's ephemeral range) chosen at random; another one if
  // something holds it. `fixed`: that port only.
  for (let attempt = 0; attempt < (fixed ? 1 : 8) && !child; attempt++) {
    port = fixed ?? randomRedisPort();
    try {
      child = await spawnRedis(port, dir);
    } catch (err) {
      lastError = `${err.message}\n${err.output ?? ''}`;
      if (!/in use|bind/i.test(err.output ?? '')) break;
    }
  }
  if (!child) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`redis-server did not start: ${lastError}`);
  }
  const url = `redis://127.0.0.1:${port}`;
  let admin;
  const r = {
    port,
    url,
    get pid() {
      return child.pid;
    },
    /** One command on the test's own connection, e.g. command('PUBSUB', 'CHANNELS', 'x:*'). */
    async command(...args) {
      if (!admin?.isReady) {
        await admin?.disconnect().catch(() => {});
        admin = createClient({ url, socket: { reconnectStrategy: false } });
        admin.on('error', () => {});
        await admin.connect();
      }
      return admin.sendCommand(args.map(String));
    },
    async kill() {
      await admin?.disconnect().catch(() => {});
      admin = undefined;
      await child.stop();
    },
    async start() {
      child = await spawnRedis(port, dir);
    },
    async stop() {
      await r.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return r;
}

const NODE_FIXTURE = path.join(ROOT, 'test', 'fixtures', 'redis-node.mjs');

/**
 * A node-lws server with a Redis adapter (test/fixtures/redis-node.mjs) in this thread
 * (`where: 'main'`), a worker thread ('worker') or a child process ('child'). Resolves with
 * `{ where, name, port, call(cmd, args), events, waitEvent(event, ms), close(), exited }`:
 * `call` runs one fixture command; `events` collects the adapter's events in order; `close`
 * closes the server (and ends the worker or process); `exited` resolves when a worker or child
 * has ended (its exit code).
 */
export async function startRedisNode(where, { url, prefix = 'node-lws-test:', name }) {
  const events = [];
  const waiters = [];
  const onEvent = (e) => {
    events.push(e);
    for (const w of waiters.splice(0)) if (!w(e)) waiters.push(w);
  };
  const waitEvent = (event, ms = DEFAULT_TIMEOUT, from = 0) => {
    const seen = events.slice(from).find((e) => e.event === event);
    if (seen) return Promise.resolve(seen);
    return withTimeout(
      new Promise((resolve) =>
        waiters.push((e) => {
          if (e.event !== event) return false;
          resolve(e);
          return true;
        }),
      ),
      ms,
      `${name}: adapter event ${event}`,
    );
  };
  const start = { cmd: 'start', url, prefix, name };
  if (where === 'main') {
    const { startNode } = await import(NODE_FIXTURE);
    const node = await startNode({ ...start, post: onEvent });
    return {
      where,
      name,
      port: node.port,
      node,
      events,
      waitEvent,
      call: (cmd, args = {}) => node.handle({ cmd, ...args }),
      close: () => node.handle({ cmd: 'close' }),
      exited: Promise.resolve(0),
    };
  }
  let post;
  let endpoint;
  let exited;
  if (where === 'worker') {
    endpoint = new Worker(NODE_FIXTURE, { workerData: { redisNode: true } });
    post = (m) => endpoint.postMessage(m);
    exited = new Promise((resolve) => endpoint.once('exit', resolve));
  } else {
    endpoint = fork(NODE_FIXTURE, [], {
      env: { ...process.env, REDIS_NODE_CHILD: '1' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    post = (m) => endpoint.send(m);
    exited = new Promise((resolve) =>
      endpoint.once('exit', (code, signal) => resolve(code ?? signal)),
    );
  }
  let nextId = 1;
  const pending = new Map();
  endpoint.on('message', (msg) => {
    if (msg.event) return onEvent(msg);
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(`${name}: ${msg.error}`));
    else p.resolve(msg);
  });
  let gone = false;
  exited.then((code) => {
    gone = true;
    for (const p of pending.values()) p.reject(new Error(`${name} (${where}) exited (${code})`));
    pending.clear();
  });
  endpoint.on('error', () => {}); // a send racing the exit; `exited` reports the end
  const call = (cmd, args = {}, ms = 30_000) => {
    if (gone) return Promise.reject(new Error(`${name} (${where}) has exited`));
    const id = nextId++;
    const p = new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
    post({ id, cmd, ...args });
    return withTimeout(p, ms, `${name}: command ${cmd}`);
  };
  const { port } = await call('start', start);
  return {
    where,
    name,
    port,
    events,
    waitEvent,
    call,
    close: async () => {
      if (!gone) await call('close');
      await withTimeout(exited, DEFAULT_TIMEOUT, `${name} (${where}) to end`);
    },
    kill: () => (where === 'worker' ? endpoint.terminate() : endpoint.kill('SIGKILL')),
    exited,
  };
}
