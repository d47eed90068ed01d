// @ts-check
// One worker of examples/cluster: a node-lws server on the cluster's shared port (reusePort)
// with a Redis adapter, so that a frame published in any worker reaches the viewers of all.
// Started by cluster.mjs (node:cluster); its settings come in the environment (CLUSTER_*).
//
//   /ws       viewers (subprotocol 'acip', as in examples/media-server): they subscribe to
//             'video' (bounded by `highWaterMark`: a slow viewer loses video first) and 'audio'
//   /ingest   the media source (?token=...): each binary frame it sends is published with
//             conn.publish() to 'video' or 'audio' (by the frame's kind byte) — to this worker's
//             viewers natively, and through Redis to every other worker's
//   /         the media-server page (its public/ folder), /health
//
// Messages to the primary: { type: 'listening', port }, { type: 'listen-failed', code,
// message }, { type: 'ingest', open }, { type: 'status', ... } (answering { type: 'status' }).
// { type: 'shutdown' } from the primary (or SIGTERM) closes the server and the adapter; then
// the process ends by itself.

import cluster from 'node:cluster';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listen } from 'node-lws';
import { createRedisAdapter } from 'node-lws/redis';
import { AUDIO_SAMPLE_RATE, AUDIO_SAMPLES, KIND_VIDEO } from '../media-server/public/protocol.mjs';

/** @typedef {import('node-lws').Connection} Connection */

const PUBLIC_DIR = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  'media-server',
  'public',
);
const env = process.env;
const id = cluster.worker?.id ?? 0;
const port = Number(env.CLUSTER_PORT ?? 8080);
const host = env.CLUSTER_HOST ?? '127.0.0.1';
const token = env.CLUSTER_INGEST_TOKEN ?? '';
const fps = Number(env.CLUSTER_FPS ?? 30);
const width = Number(env.CLUSTER_WIDTH ?? 160);
const height = Number(env.CLUSTER_HEIGHT ?? 90);
const highWaterMark = 256 * 1024;

/** @param {Record<string, unknown>} msg */
const toPrimary = (msg) => process.send?.(msg);

const adapter = createRedisAdapter({ url: env.CLUSTER_REDIS_URL || undefined });
adapter.on('error', (err) => console.error(`[worker ${id}] ${err.code}: ${err.message}`));

/** @type {import('node-lws').Server} */
let server;
try {
  server = await listen({
    host,
    port,
    reusePort: true, // every worker binds its own socket to the same port; the kernel spreads clients
    adapter,
    static: { root: PUBLIC_DIR },
    health: true,
    protocols: ['acip'],
    maxPayload: 4 * 1024 * 1024, // ingest frames; viewers only send small JSON
    highWaterMark,
    maxBackpressure: 4 * highWaterMark, // audio's bound: video is dropped first (subscribe below)
    backpressurePolicy: 'drop',
    verify: (req) => {
      const url = new URL(req.path, 'http://x');
      if (url.pathname === '/ws') return true;
      if (url.pathname === '/ingest')
        return token !== '' && url.searchParams.get('token') === token;
      return { status: 404 };
    },
  });
} catch (e) {
  const err = /** @type {Error & { code?: string }} */ (e);
  toPrimary({ type: 'listen-failed', code: err.code, message: err.message });
  console.error(`[worker ${id}] listen failed: ${err.message}`);
  await adapter.close();
  process.exit(1);
}

let nextViewer = 1;
let ingests = 0;

server.on('connection', (conn, request) => {
  conn.on('error', () => {}); // protocol errors: the library closes the connection itself
  if (request.path.startsWith('/ingest')) {
    ingests++;
    toPrimary({ type: 'ingest', open: true });
    conn.on('message', (data, isBinary) => {
      if (!isBinary || typeof data === 'string' || data.length < 32) return;
      conn.publish(data[4] === KIND_VIDEO ? 'video' : 'audio', data, true);
    });
    conn.on('close', () => {
      ingests--;
      toPrimary({ type: 'ingest', open: false });
    });
    return;
  }
  const viewer = nextViewer++;
  conn.subscribe('audio');
  conn.subscribe('video', { maxBackpressure: highWaterMark });
  conn.on('message', (data, isBinary) => {
    if (isBinary || typeof data !== 'string') return;
    /** @type {any} */
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg?.type === 'ping')
      conn.send(
        JSON.stringify({
          type: 'pong',
          id: msg.id,
          t: msg.t,
          serverTime: now(),
          inputs: 0,
          worker: id,
          pid: process.pid,
        }),
      );
  });
  conn.send(
    JSON.stringify({
      type: 'hello',
      id: viewer,
      worker: id,
      pid: process.pid,
      fps,
      width,
      height,
      sampleRate: AUDIO_SAMPLE_RATE,
      samplesPerFrame: AUDIO_SAMPLES,
      color: [255, 255, 255],
      serverTime: now(),
    }),
  );
});

function now() {
  return performance.timeOrigin + performance.now();
}

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  await server.close(); // closes every connection (1001) and the adapter's Redis connections
  process.disconnect?.();
}

process.on('message', (/** @type {any} */ msg) => {
  if (msg?.type === 'shutdown') void shutdown();
  else if (msg?.type === 'status')
    toPrimary({
      type: 'status',
      worker: id,
      pid: process.pid,
      viewers: server.connectionCount - ingests,
      ingests,
      redis: { connected: adapter.connected, ...adapter.stats },
    });
});
process.on('SIGTERM', () => void shutdown());
// The primary is gone (killed): nobody will replace or stop this worker, so it stops itself.
process.on('disconnect', () => void shutdown());

toPrimary({ type: 'listening', port: server.port });
