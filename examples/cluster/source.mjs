// @ts-check
// The media source of examples/cluster: a node-lws client that pushes synthetic video and audio
// frames (examples/media-server's format and renderer) into the cluster on /ingest. Whichever
// worker accepts it publishes each frame to every viewer of every worker (through Redis). When
// that worker dies, the client reconnects (to a survivor, or the replacement) by itself.
//
// Live media is never queued while disconnected: frames due then are skipped (counted).

import { connect } from 'node-lws';
import { AUDIO_FRAME_MS } from '../media-server/public/protocol.mjs';
import { renderAudioFrame, renderVideoFrame } from '../media-server/render.mjs';

/**
 * @typedef {object} SourceOptions
 * @property {string} url ws://host:port/ingest?token=...
 * @property {number} [fps] video frames per second, default 30
 * @property {number} [width] default 160
 * @property {number} [height] default 90
 * @property {boolean} [audio] 10 ms audio frames (100 a second), default true
 * @property {(event: string, fields?: Record<string, unknown>) => void} [log]
 */

/**
 * Starts pushing frames; resolves once the first connection is open.
 * @param {SourceOptions} o
 */
export async function startSource(o) {
  const fps = o.fps ?? 30;
  const width = o.width ?? 160;
  const height = o.height ?? 90;
  const audio = o.audio ?? true;
  const log = o.log ?? (() => {});
  const stats = { video: 0, audio: 0, skipped: 0, reconnects: 0 };
  /** @type {import('node-lws').ClientTransport} */
  let client;
  for (let attempt = 1; ; attempt++) {
    try {
      client = await connect(o.url, {
        // Unlimited retries: the source follows the cluster through worker restarts.
        reconnect: { retries: Number.POSITIVE_INFINITY, minDelayMs: 50, maxDelayMs: 1000 },
        highWaterMark: 1024 * 1024,
      });
      break;
    } catch (err) {
      if (attempt >= 20) throw err;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
  client.on('error', () => {});
  client.on('reconnecting', (attempt, delayMs, err) =>
    log('source-reconnecting', { attempt, delayMs, reason: err.message }),
  );
  client.on('open', () => {
    stats.reconnects++;
    log('source-open', { reconnects: stats.reconnects });
  });
  log('source-open', { reconnects: 0 });

  const t0 = performance.timeOrigin + performance.now();
  const videoIntervalMs = 1000 / fps;
  let videoSeq = 0;
  let audioSeq = 0;
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  let stopped = false;

  /** @param {Uint8Array} frame */
  function push(frame) {
    // Not open (reconnecting), or the worker is not keeping up: skip, never queue live media.
    if (!client.isOpen || client.bufferedAmount > 2 * 1024 * 1024) {
      stats.skipped++;
      return false;
    }
    client.send(frame, true);
    return true;
  }

  function tick() {
    timer = undefined;
    if (stopped) return;
    const t = performance.timeOrigin + performance.now();
    const elapsed = t - t0;
    if (audio) {
      // Every 10 ms frame that is due (a late timer catches up at most half a second).
      const due = Math.floor(elapsed / AUDIO_FRAME_MS) + 1;
      if (due - audioSeq > 50) audioSeq = due - 50;
      while (audioSeq < due) {
        const seq = audioSeq++;
        if (push(renderAudioFrame(seq, t0 + seq * AUDIO_FRAME_MS))) stats.audio++;
      }
    }
    // The newest video frame that is due (a late timer skips frames, never bursts).
    const videoDue = Math.floor(elapsed / videoIntervalMs) + 1;
    if (videoSeq < videoDue) {
      videoSeq = videoDue;
      if (push(renderVideoFrame(width, height, videoSeq - 1, t, []))) stats.video++;
    }
    const next = Math.min(
      audio ? t0 + audioSeq * AUDIO_FRAME_MS : Number.POSITIVE_INFINITY,
      t0 + videoSeq * videoIntervalMs,
    );
    timer = setTimeout(tick, Math.max(0, next - (performance.timeOrigin + performance.now())));
  }
  tick();

  return {
    stats: () => ({ ...stats }),
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      client.close(1000, 'source stopped');
      if (client.readyState !== 'closed') await new Promise((r) => client.once('close', r));
    },
  };
}
