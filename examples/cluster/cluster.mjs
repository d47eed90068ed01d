#!/usr/bin/env node
// @ts-check
// Many processes on one port: N worker processes (node:cluster) each listen on the same port
// with `reusePort: true`, so the kernel spreads incoming connections over them, and each has a
// Redis adapter (node-lws/redis), so a frame published in any of them reaches the viewers of
// all. The primary process does not serve WebSocket: it keeps N workers running (a worker that
// dies is replaced; the others keep serving meanwhile) and runs the media source, a client that
// pushes video and audio frames into the cluster (see source.mjs, worker.mjs, README.md).
//
//   node examples/cluster/cluster.mjs [--workers 4] [--port 8080] [--host 127.0.0.1]
//     [--redis redis://127.0.0.1:6379] [--fps 30] [--width 160] [--height 90] [--no-audio]
//     [--no-source] [--status-ms 5000] [--json]
//
// --port 0: the first worker lets the kernel choose, the others (and replacements) take that
// port. --json: one JSON object per line on stdout ({ event, ... }) instead of text lines.
// SIGINT / SIGTERM: the source stops, every worker closes its server (and its Redis
// connections), the primary exits.

import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startSource } from './source.mjs';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '4' },
    port: { type: 'string', default: '8080' },
    host: { type: 'string', default: '127.0.0.1' },
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    fps: { type: 'string', default: '30' },
    width: { type: 'string', default: '160' },
    height: { type: 'string', default: '90' },
    'no-audio': { type: 'boolean', default: false },
    'no-source': { type: 'boolean', default: false },
    'status-ms': { type: 'string', default: '5000' },
    json: { type: 'boolean', default: false },
  },
});
const count = Number(values.workers);
const fps = Number(values.fps);
const width = Number(values.width);
const height = Number(values.height);
const statusMs = Number(values['status-ms']);
for (const [name, v, ok] of /** @type {const} */ ([
  ['--workers', count, count >= 1 && count <= 256],
  ['--port', Number(values.port), Number(values.port) >= 0 && Number(values.port) <= 65535],
  ['--fps', fps, fps > 0 && fps <= 120],
  ['--width', width, width >= 8 && width <= 4096],
  ['--height', height, height >= 8 && height <= 4096],
  ['--status-ms', statusMs, statusMs >= 0],
])) {
  if (!Number.isInteger(v) && name !== '--fps') {
    console.error(`${name} must be an integer`);
    process.exit(2);
  }
  if (!ok) {
    console.error(`${name} out of range: ${v}`);
    process.exit(2);
  }
}

/**
 * @param {string} event
 * @param {Record<string, unknown>} [fields]
 */
function log(event, fields = {}) {
  if (values.json) process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
  else
    console.log(
      `[cluster] ${event}${Object.entries(fields)
        .map(([k, v]) => ` ${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`)
        .join('')}`,
    );
}

let port = Number(values.port);
const host = values.host;
const token = randomBytes(16).toString('hex');
cluster.setupPrimary({
  exec: path.join(path.dirname(fileURLToPath(import.meta.url)), 'worker.mjs'),
});

let stopping = false;
let listenFailures = 0;
let replaced = 0;
/** Consecutive quick deaths: the next replacement waits longer (a crash loop does not spin). */
let quickDeaths = 0;
/** @type {Map<number, { pid: number | undefined, startedAt: number, listening: boolean }>} */
const workers = new Map();
/** @type {Awaited<ReturnType<typeof startSource>> | undefined} */
let source;
/** @type {(p: number) => void} */
let firstPort = () => {};
const portKnown = new Promise((resolve) => {
  firstPort = resolve;
});

function fork() {
  const w = cluster.fork({
    CLUSTER_PORT: String(port),
    CLUSTER_HOST: host,
    CLUSTER_REDIS_URL: values.redis,
    CLUSTER_INGEST_TOKEN: token,
    CLUSTER_FPS: String(fps),
    CLUSTER_WIDTH: String(width),
    CLUSTER_HEIGHT: String(height),
  });
  workers.set(w.id, { pid: w.process.pid, startedAt: Date.now(), listening: false });
  w.on('message', (/** @type {any} */ msg) => {
    const info = workers.get(w.id);
    if (msg?.type === 'listening') {
      if (info) info.listening = true;
      log('listening', { worker: w.id, pid: w.process.pid, port: msg.port });
      firstPort(msg.port);
    } else if (msg?.type === 'listen-failed') {
      listenFailures++;
      log('listen-failed', {
        worker: w.id,
        pid: w.process.pid,
        code: msg.code,
        message: msg.message,
      });
    } else if (msg?.type === 'ingest') {
      log('ingest', { worker: w.id, pid: w.process.pid, open: msg.open });
    } else if (msg?.type === 'status') {
      statusReplies?.push(msg);
    }
  });
  return w;
}

cluster.on('exit', (w, code, signal) => {
  const info = workers.get(w.id);
  workers.delete(w.id);
  log('exit', { worker: w.id, pid: w.process.pid, code, signal });
  if (stopping) {
    if (workers.size === 0) finish();
    return;
  }
  // Replace it. Quick deaths in a row back off (100 ms doubling to 5 s); the others serve meanwhile.
  const lived = Date.now() - (info?.startedAt ?? 0);
  quickDeaths = lived < 2000 ? quickDeaths + 1 : 0;
  const delay = quickDeaths === 0 ? 0 : Math.min(5000, 100 * 2 ** (quickDeaths - 1));
  replaced++;
  setTimeout(() => {
    if (!stopping) fork();
  }, delay);
});

/** @type {any[] | undefined} */
let statusReplies;
async function status() {
  statusReplies = [];
  for (const w of Object.values(cluster.workers ?? {})) w?.send({ type: 'status' });
  await new Promise((r) => setTimeout(r, 200));
  const replies = statusReplies;
  statusReplies = undefined;
  log('status', {
    port,
    workers: replies.sort((a, b) => a.worker - b.worker).map(({ type, ...r }) => r),
    replaced,
    listenFailures,
    source: source?.stats(),
  });
}

async function shutdown() {
  if (stopping) return;
  stopping = true;
  log('stopping');
  clearInterval(statusTimer);
  await source?.stop();
  if (workers.size === 0) finish();
  for (const w of Object.values(cluster.workers ?? {})) w?.send({ type: 'shutdown' });
  // A worker that does not end within 10 s is killed.
  setTimeout(() => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
  }, 10_000).unref();
}

function finish() {
  log('stopped', { replaced, listenFailures });
  process.exit(listenFailures ? 1 : 0);
}

process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);

// The first worker; with --port 0 the kernel chooses and the others take its port.
fork();
port = await portKnown;
for (let i = 1; i < count; i++) fork();
log('cluster', {
  workers: count,
  url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
});
const statusTimer = statusMs > 0 ? setInterval(() => void status(), statusMs) : undefined;
if (!values['no-source'] && !stopping) {
  source = await startSource({
    url: `ws://${host.includes(':') ? `[${host}]` : host}:${port}/ingest?token=${token}`,
    fps,
    width,
    height,
    audio: !values['no-audio'],
    log,
  });
}
