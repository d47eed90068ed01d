#!/usr/bin/env node
// @ts-check
// A small media server on node-lws: one port serves the page (public/) over HTTP and streams
// synthetic video and audio frames over WebSocket on /ws (subprotocol 'acip').
//
//   node examples/media-server/server.mjs [--port 8080] [--host 127.0.0.1] [--fps 30]
//
// Fan-out through topics: every viewer subscribes to 'audio' and 'video', and each tick
// publishes the audio frames that are due, then the newest video frame: one frame built once
// and queued natively on every viewer (server.publish), whatever their number.
// Per viewer, natively (backpressurePolicy 'drop'):
//   - video is bounded by the 'video' subscription's maxBackpressure (`highWaterMark`): past it
//     a frame is dropped, not queued, so a slow viewer gets the newest frames once it has room
//     again (latest frame wins, with at most a few frames queued);
//   - audio is bounded by the connection's maxBackpressure (`audioLimitBytes`, 4 × larger), so
//     audio is never dropped before video; a viewer blocked for longer than `stallTimeoutMs` is
//     terminated as hopeless.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { listen } from 'node-lws';
import {
  AUDIO_FRAME_MS,
  AUDIO_SAMPLE_RATE,
  AUDIO_SAMPLES,
  HEADER_BYTES,
} from './public/protocol.mjs';
import { renderAudioFrame, renderVideoFrame } from './render.mjs';

/** @typedef {import('node-lws').Connection} Connection */
/** @typedef {import('node-lws').Server} Server */

const PUBLIC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'public');

/** Cursor colours, one per client in turn (saturated: the background never has them). */
const COLORS = /** @type {const} */ ([
  [255, 0, 64],
  [0, 255, 64],
  [0, 96, 255],
  [255, 0, 255],
  [0, 255, 255],
  [255, 128, 0],
]);

/**
 * @typedef {object} StartOptions
 * @property {number} [port] TCP port, default 0 (the kernel picks one; read `port` back)
 * @property {string} [host] default '127.0.0.1'
 * @property {number} [fps] video frames per second, default 30
 * @property {number} [width] video width in pixels, default 160
 * @property {number} [height] video height in pixels, default 90
 * @property {number} [highWaterMark] bytes buffered per viewer past which video is dropped, default 256 KiB
 * @property {number} [audioLimitBytes] past this many buffered bytes audio is dropped too, default 4 × highWaterMark
 * @property {number} [stallTimeoutMs] a client blocked (no 'drain') this long is terminated, default 10 000
 * @property {(line: string) => void} [log] receives one status line per connect/disconnect/kick
 */

/**
 * @typedef {object} Client
 * @property {number} id
 * @property {Connection} conn
 * @property {string} name from the `?name=` query of the upgrade request, if any
 * @property {string} remoteAddress
 * @property {number} remotePort
 * @property {string} userAgent
 * @property {number} connectedAt
 * @property {readonly [number, number, number]} color
 * @property {boolean} blocked bufferedAmount above highWaterMark at the last tick
 * @property {number} blockedSince
 * @property {number} drains
 * @property {number} maxBufferedAmount highest bufferedAmount seen at a tick
 * @property {number} inputs input messages received (pointer and keys)
 * @property {number} pings ping messages received
 * @property {{ x: number, y: number } | null} cursor
 * @property {number | null} rttMs round trip the page measured (it reports it in its pings)
 * @property {number | null} latencyMs frame latency the page measured
 * @property {number | null} serverRttMs round trip measured by the server (sping/spong)
 */

/**
 * @typedef {object} ClientStats
 * @property {number} id
 * @property {string} name
 * @property {string} remoteAddress
 * @property {number} remotePort
 * @property {string} userAgent
 * @property {number} connectedMs
 * @property {boolean} blocked
 * @property {number} blockedMs
 * @property {number} bufferedAmount
 * @property {number} maxBufferedAmount
 * @property {number} dropped published frames dropped for this viewer (video first)
 * @property {number} drains
 * @property {number} inputs
 * @property {number} pings
 * @property {{ x: number, y: number } | null} cursor
 * @property {readonly [number, number, number]} color
 * @property {number | null} rttMs
 * @property {number | null} latencyMs
 * @property {number | null} serverRttMs
 */

/**
 * @typedef {object} ServerStats
 * @property {number} uptimeMs
 * @property {number} fps
 * @property {number} videoSeq video frames produced (and published)
 * @property {number} audioSeq audio frames produced (and published)
 * @property {number} lateVideo video frames skipped because the timer woke up late
 * @property {number} lateAudio audio frames skipped because the timer woke up very late
 * @property {number} highWaterMark
 * @property {number} audioLimitBytes
 * @property {number} videoFrameBytes
 * @property {number} kicked clients terminated as hopeless
 * @property {number} connections
 * @property {ClientStats[]} clients
 */

/**
 * @typedef {object} MediaServer
 * @property {Server} server
 * @property {number} port
 * @property {string} url the page, e.g. http://127.0.0.1:8080/
 * @property {() => ServerStats} stats
 * @property {() => Promise<void>} stop
 */

/** Milliseconds since the Unix epoch, fractional (the page uses the same clock). */
const now = () => performance.timeOrigin + performance.now();

/**
 * Starts the media server.
 * @param {StartOptions} [options]
 * @returns {Promise<MediaServer>}
 */
export async function start(options = {}) {
  const fps = options.fps ?? 30;
  const width = options.width ?? 160;
  const height = options.height ?? 90;
  const highWaterMark = options.highWaterMark ?? 256 * 1024;
  const audioLimitBytes = options.audioLimitBytes ?? 4 * highWaterMark;
  const stallTimeoutMs = options.stallTimeoutMs ?? 10_000;
  const log = options.log ?? (() => {});
  if (!(fps > 0 && fps <= 120)) throw new RangeError(`fps must be in (0, 120], got ${fps}`);

  const server = await listen({
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 0,
    static: { root: PUBLIC_DIR },
    path: '/ws',
    protocols: ['acip'],
    health: true,
    highWaterMark,
    maxBackpressure: audioLimitBytes,
    backpressurePolicy: 'drop',
    maxPayload: 16 * 1024, // the page only sends small JSON messages
    maxConnections: 64,
  });

  /** @type {Map<number, Client>} */
  const clients = new Map();
  let nextId = 1;
  let kicked = 0;
  let audioSeq = 0;
  let videoSeq = 0;
  let lateAudio = 0;
  let lateVideo = 0;
  const videoIntervalMs = 1000 / fps;
  const t0 = now();
  let lastSping = 0;
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  let stopped = false;

  server.on('connection', (conn, request) => {
    const id = nextId++;
    const query = new URLSearchParams(request.path.split('?')[1] ?? '');
    /** @type {Client} */
    const c = {
      id,
      conn,
      name: (query.get('name') ?? '').slice(0, 64),
      remoteAddress: conn.remoteAddress,
      remotePort: conn.remotePort,
      userAgent: request.headers['user-agent'] ?? '',
      connectedAt: now(),
      color: COLORS[(id - 1) % COLORS.length],
      blocked: false,
      blockedSince: 0,
      drains: 0,
      maxBufferedAmount: 0,
      inputs: 0,
      pings: 0,
      cursor: null,
      rttMs: null,
      latencyMs: null,
      serverRttMs: null,
    };
    clients.set(id, c);
    log(
      `client ${id} connected from ${c.remoteAddress}:${c.remotePort}${c.name ? ` (${c.name})` : ''}`,
    );

    conn.on('error', () => {}); // protocol errors: the library closes the connection itself
    conn.on('close', (code) => {
      clients.delete(id);
      log(`client ${id} gone (${code}); ${conn.stats.dropped} frames dropped for it`);
    });
    conn.on('drain', () => {
      c.drains++;
    });
    conn.on('message', (data, isBinary) => {
      if (isBinary || typeof data !== 'string') return;
      onControl(c, data);
    });

    // The media: video bounded lower than audio on this connection (see the top of the file).
    conn.subscribe('audio');
    conn.subscribe('video', { maxBackpressure: highWaterMark });
    sendText(c, {
      type: 'hello',
      id,
      fps,
      width,
      height,
      sampleRate: AUDIO_SAMPLE_RATE,
      samplesPerFrame: AUDIO_SAMPLES,
      color: c.color,
      serverTime: now(),
    });
  });

  /**
   * @param {Client} c
   * @param {unknown} msg
   */
  function sendText(c, msg) {
    if (c.conn.isOpen) c.conn.send(JSON.stringify(msg));
  }

  /**
   * Notes, once a tick, how far behind a viewer is.
   * @param {Client} c
   * @param {number} t
   */
  function observe(c, t) {
    const buffered = c.conn.bufferedAmount;
    if (buffered > c.maxBufferedAmount) c.maxBufferedAmount = buffered;
    if (buffered <= highWaterMark) {
      c.blocked = false;
    } else if (!c.blocked) {
      c.blocked = true;
      c.blockedSince = t;
    }
  }

  /**
   * Control messages from the page (JSON text).
   * @param {Client} c
   * @param {string} text
   */
  function onControl(c, text) {
    /** @type {any} */
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    /** @param {unknown} v */
    const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    /** @param {number} v */
    const clamp01 = (v) => Math.min(1, Math.max(0, v));
    switch (msg.type) {
      case 'ping': {
        // The page's clock probe; it also reports what it measured.
        c.pings++;
        c.rttMs = num(msg.rttMs) ?? c.rttMs;
        c.latencyMs = num(msg.latencyMs) ?? c.latencyMs;
        sendText(c, {
          type: 'pong',
          id: num(msg.id),
          t: num(msg.t),
          serverTime: now(),
          inputs: c.inputs,
        });
        break;
      }
      case 'spong': {
        const t = num(msg.t);
        if (t !== null) c.serverRttMs = now() - t;
        break;
      }
      case 'input': {
        const x = num(msg.x);
        const y = num(msg.y);
        if (x === null || y === null) return;
        c.inputs++;
        c.cursor = { x: clamp01(x), y: clamp01(y) };
        break;
      }
      case 'key': {
        const step = 0.04;
        const cur = c.cursor ?? { x: 0.5, y: 0.5 };
        const moves = /** @type {Record<string, [number, number]>} */ ({
          ArrowLeft: [-step, 0],
          ArrowRight: [step, 0],
          ArrowUp: [0, -step],
          ArrowDown: [0, step],
        });
        const d = moves[String(msg.key)];
        if (!d) return;
        c.inputs++;
        c.cursor = { x: clamp01(cur.x + d[0]), y: clamp01(cur.y + d[1]) };
        break;
      }
    }
  }

  function tick() {
    timer = undefined;
    if (stopped) return;
    const t = now();
    const elapsed = t - t0;

    // Audio first: every 10 ms frame that is due (at most half a second's worth of catch-up).
    const audioDue = Math.floor(elapsed / AUDIO_FRAME_MS) + 1;
    if (audioDue - audioSeq > 50) {
      lateAudio += audioDue - 50 - audioSeq;
      audioSeq = audioDue - 50;
    }
    while (audioSeq < audioDue) {
      const seq = audioSeq++;
      server.publish('audio', renderAudioFrame(seq, t0 + seq * AUDIO_FRAME_MS));
    }

    // Then video: one frame, the newest that is due (a late timer skips frames, never bursts).
    const videoDue = Math.floor(elapsed / videoIntervalMs) + 1;
    if (videoSeq < videoDue) {
      lateVideo += videoDue - 1 - videoSeq;
      videoSeq = videoDue;
      const cursors = [];
      for (const c of clients.values()) {
        if (c.cursor) cursors.push({ x: c.cursor.x, y: c.cursor.y, color: c.color });
      }
      server.publish('video', renderVideoFrame(width, height, videoSeq - 1, t, cursors));
    }

    // Once a second: the server's own round-trip probe, and hopeless clients out.
    if (t - lastSping >= 1000) {
      lastSping = t;
      for (const c of clients.values()) if (!c.blocked) sendText(c, { type: 'sping', t: now() });
    }
    for (const c of clients.values()) {
      observe(c, t);
      if (c.blocked && c.conn.isOpen && t - c.blockedSince > stallTimeoutMs) {
        kicked++;
        log(`client ${c.id} blocked for ${Math.round(t - c.blockedSince)} ms: terminated`);
        c.conn.terminate();
      }
    }

    const nextAudio = t0 + audioSeq * AUDIO_FRAME_MS;
    const nextVideo = t0 + videoSeq * videoIntervalMs;
    timer = setTimeout(tick, Math.max(0, Math.min(nextAudio, nextVideo) - now()));
  }
  tick();

  /** @returns {ServerStats} */
  function stats() {
    const t = now();
    return {
      uptimeMs: t - t0,
      fps,
      videoSeq,
      audioSeq,
      lateVideo,
      lateAudio,
      highWaterMark,
      audioLimitBytes,
      videoFrameBytes: HEADER_BYTES + width * height * 4,
      kicked,
      connections: server.connectionCount,
      clients: [...clients.values()].map((c) => ({
        id: c.id,
        name: c.name,
        remoteAddress: c.remoteAddress,
        remotePort: c.remotePort,
        userAgent: c.userAgent,
        connectedMs: t - c.connectedAt,
        blocked: c.blocked,
        blockedMs: c.blocked ? t - c.blockedSince : 0,
        bufferedAmount: c.conn.bufferedAmount,
        maxBufferedAmount: c.maxBufferedAmount,
        dropped: c.conn.stats.dropped,
        drains: c.drains,
        inputs: c.inputs,
        pings: c.pings,
        cursor: c.cursor && { ...c.cursor },
        color: c.color,
        rttMs: c.rttMs,
        latencyMs: c.latencyMs,
        serverRttMs: c.serverRttMs,
      })),
    };
  }

  async function stop() {
    stopped = true;
    if (timer) clearTimeout(timer);
    timer = undefined;
    await server.close();
  }

  const { address, family, port } = server.address();
  const host = family === 'IPv6' ? `[${address}]` : address;
  return { server, port, url: `http://${host}:${port}/`, stats, stop };
}

/** True when this file is the script node was started with. */
function isMain() {
  if (!process.argv[1]) return false;
  try {
    return import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}

if (isMain()) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      fps: { type: 'string', default: '30' },
    },
  });
  const media = await start({
    port: Number(values.port),
    host: values.host,
    fps: Number(values.fps),
    log: (line) => console.log(`[media] ${line}`),
  });
  console.log(`media server: open ${media.url} (WebSocket on /ws, health on /health)`);
  const report = setInterval(() => {
    const s = media.stats();
    for (const c of s.clients) {
      console.log(
        `[media] client ${c.id}: ${c.dropped} frames dropped, buffered ${c.bufferedAmount} B, ` +
          `rtt ${c.rttMs?.toFixed(1) ?? '-'} ms, latency ${c.latencyMs?.toFixed(1) ?? '-'} ms`,
      );
    }
  }, 5000);
  report.unref();
  const shutdown = () => {
    clearInterval(report);
    media.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}
