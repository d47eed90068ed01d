// @ts-check
/// <reference lib="dom" />
// The media page: receives video and audio frames over WebSocket, verifies each frame's
// checksum, draws the video to the canvas, counts the audio, and sends input and pings back.
// Its counters are in `window.mediaStats` (the end-to-end test reads them).

import { AUDIO_SAMPLES, KIND_AUDIO, KIND_VIDEO, openFrame } from './protocol.mjs';

/** Milliseconds since the Unix epoch, fractional (the server uses the same clock). */
const now = () => performance.timeOrigin + performance.now();

const canvas = /** @type {HTMLCanvasElement} */ (document.getElementById('screen'));
const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
const statusEl = /** @type {HTMLElement} */ (document.getElementById('status'));
const statsEl = /** @type {HTMLElement} */ (document.getElementById('stats'));

const stats = {
  connected: false,
  connects: 0,
  clientId: 0,
  /** @type {{ fps: number, width: number, height: number, sampleRate: number } | null} */
  server: null,
  video: {
    frames: 0, // frames with a valid checksum, drawn
    bytes: 0,
    dropped: 0, // gaps in the sequence numbers
    checksumErrors: 0,
    lastSeq: -1,
    firstAt: 0, // arrival time of the first valid frame (page clock, ms)
    lastAt: 0,
    fps: 0, // frames in the last second
  },
  audio: {
    frames: 0,
    dropped: 0,
    checksumErrors: 0,
    badSamples: 0, // frames whose samples are not finite or outside [-1, 1]
    lastSeq: -1,
  },
  rtt: { last: 0, min: 0, avg: 0, samples: 0 },
  latency: { last: 0, avg: 0, max: 0, samples: 0 },
  clockOffsetMs: 0, // server clock − page clock, from the lowest-RTT ping
  inputsSent: 0,
  serverInputs: 0, // inputs the server says it has seen from us
  pingsSent: 0,
  pongs: 0,
  protocolErrors: 0,
};
/** @type {any} */ (window).mediaStats = stats;

/** Arrival times of recent video frames, for the frames-per-second figure. */
/** @type {number[]} */
const arrivals = [];
/** Recent ping samples: the lowest round trip gives the best clock-offset estimate. */
/** @type {{ rtt: number, offset: number }[]} */
const clockSamples = [];

/** @type {WebSocket | null} */
let ws = null;
let pingId = 0;
/** @type {ImageData | null} */
let image = null;

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws?name=page`;
}

function connect() {
  statusEl.textContent = 'connecting…';
  statusEl.className = '';
  const sock = new WebSocket(wsUrl(), 'acip');
  sock.binaryType = 'arraybuffer';
  ws = sock;
  sock.onopen = () => {
    stats.connected = true;
    stats.connects++;
    stats.video.lastSeq = -1;
    stats.audio.lastSeq = -1;
    statusEl.textContent = `connected (${sock.protocol})`;
    statusEl.className = 'ok';
  };
  sock.onmessage = (ev) => {
    if (typeof ev.data === 'string') onControl(ev.data);
    else onFrame(/** @type {ArrayBuffer} */ (ev.data));
  };
  sock.onclose = (ev) => {
    stats.connected = false;
    ws = null;
    statusEl.textContent = `disconnected (${ev.code}); reconnecting…`;
    statusEl.className = 'bad';
    setTimeout(connect, 1000);
  };
}

/** @param {string} text */
function onControl(text) {
  /** @type {any} */
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    stats.protocolErrors++;
    return;
  }
  switch (msg.type) {
    case 'hello':
      stats.clientId = msg.id;
      stats.server = {
        fps: msg.fps,
        width: msg.width,
        height: msg.height,
        sampleRate: msg.sampleRate,
      };
      canvas.width = msg.width;
      canvas.height = msg.height;
      image = null;
      sendPing();
      break;
    case 'pong': {
      const t1 = now();
      const rtt = t1 - msg.t;
      stats.pongs++;
      stats.serverInputs = msg.inputs;
      const r = stats.rtt;
      r.last = rtt;
      r.min = r.samples === 0 ? rtt : Math.min(r.min, rtt);
      r.avg = r.samples === 0 ? rtt : r.avg * 0.9 + rtt * 0.1;
      r.samples++;
      // NTP-style: the server stamped its reply half a round trip after we sent.
      clockSamples.push({ rtt, offset: msg.serverTime - (msg.t + t1) / 2 });
      if (clockSamples.length > 20) clockSamples.shift();
      let best = clockSamples[0];
      for (const s of clockSamples) if (s.rtt < best.rtt) best = s;
      stats.clockOffsetMs = best.offset;
      break;
    }
    case 'sping':
      send({ type: 'spong', t: msg.t });
      break;
  }
}

/** @param {ArrayBuffer} data */
function onFrame(data) {
  const { ok, header, payload } = openFrame(data);
  if (!header) {
    stats.protocolErrors++;
    return;
  }
  if (header.kind === KIND_VIDEO) {
    const v = stats.video;
    if (!ok) {
      v.checksumErrors++;
      return;
    }
    const t = now();
    if (v.lastSeq >= 0 && header.seq > v.lastSeq + 1) v.dropped += header.seq - v.lastSeq - 1;
    v.lastSeq = header.seq;
    v.frames++;
    v.bytes += data.byteLength;
    if (v.firstAt === 0) v.firstAt = t;
    v.lastAt = t;
    arrivals.push(t);
    const lat = t + stats.clockOffsetMs - header.serverTime;
    const l = stats.latency;
    l.last = lat;
    l.avg = l.samples === 0 ? lat : l.avg * 0.95 + lat * 0.05;
    l.max = Math.max(l.max, lat);
    l.samples++;
    draw(payload, header.a, header.b);
  } else if (header.kind === KIND_AUDIO) {
    const a = stats.audio;
    if (!ok) {
      a.checksumErrors++;
      return;
    }
    if (a.lastSeq >= 0 && header.seq > a.lastSeq + 1) a.dropped += header.seq - a.lastSeq - 1;
    a.lastSeq = header.seq;
    a.frames++;
    // Not played, only checked: 480 float32 samples in [-1, 1].
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    let good = header.b === AUDIO_SAMPLES && payload.byteLength === AUDIO_SAMPLES * 4;
    for (let i = 0; good && i < AUDIO_SAMPLES; i++) {
      const s = view.getFloat32(i * 4, true);
      if (!(s >= -1 && s <= 1)) good = false;
    }
    if (!good) a.badSamples++;
  }
}

/**
 * @param {Uint8Array} rgba
 * @param {number} width
 * @param {number} height
 */
function draw(rgba, width, height) {
  if (rgba.byteLength !== width * height * 4) {
    stats.protocolErrors++;
    return;
  }
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
    image = null;
  }
  if (!image) image = ctx.createImageData(width, height);
  image.data.set(rgba);
  ctx.putImageData(image, 0, 0);
}

/** @param {unknown} msg */
function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function sendPing() {
  stats.pingsSent++;
  send({
    type: 'ping',
    id: ++pingId,
    t: now(),
    rttMs: stats.rtt.samples ? stats.rtt.last : null,
    latencyMs: stats.latency.samples ? stats.latency.avg : null,
  });
}

// Input: the pointer position over the picture (0..1), at most once per animation frame, and
// the arrow keys. The server draws our cursor where we point.
/** @type {{ x: number, y: number } | null} */
let pendingPointer = null;
canvas.addEventListener('pointermove', (ev) => {
  const box = canvas.getBoundingClientRect();
  pendingPointer = {
    x: (ev.clientX - box.left) / box.width,
    y: (ev.clientY - box.top) / box.height,
  };
  requestAnimationFrame(flushPointer);
});
function flushPointer() {
  if (!pendingPointer) return;
  stats.inputsSent++;
  send({ type: 'input', ...pendingPointer });
  pendingPointer = null;
}
canvas.addEventListener('keydown', (ev) => {
  if (!ev.key.startsWith('Arrow')) return;
  ev.preventDefault();
  stats.inputsSent++;
  send({ type: 'key', key: ev.key });
});

/** @param {number} v @param {number} [digits] */
const fmt = (v, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : '-');

function refresh() {
  const t = now();
  while (arrivals.length && arrivals[0] < t - 1000) arrivals.shift();
  stats.video.fps = arrivals.length;
  const v = stats.video;
  const a = stats.audio;
  const rows = [
    ['client id', String(stats.clientId || '-')],
    ['video fps', `${v.fps}${stats.server ? ` / ${stats.server.fps}` : ''}`],
    ['video frames', String(v.frames)],
    ['dropped frames', String(v.dropped)],
    ['checksum errors', String(v.checksumErrors + a.checksumErrors)],
    ['audio frames', String(a.frames)],
    ['audio dropped', String(a.dropped)],
    ['latency (avg)', `${fmt(stats.latency.avg)} ms`],
    ['latency (max)', `${fmt(stats.latency.max)} ms`],
    ['round trip', `${fmt(stats.rtt.last)} ms (min ${fmt(stats.rtt.min)})`],
    ['clock offset', `${fmt(stats.clockOffsetMs, 2)} ms`],
    ['inputs sent / seen', `${stats.inputsSent} / ${stats.serverInputs}`],
    ['received', `${fmt(v.bytes / 1e6)} MB`],
  ];
  statsEl.replaceChildren(
    ...rows.map(([k, val]) => {
      const tr = document.createElement('tr');
      const td1 = document.createElement('td');
      const td2 = document.createElement('td');
      td1.textContent = k;
      td2.textContent = val;
      tr.append(td1, td2);
      return tr;
    }),
  );
}

setInterval(sendPing, 250);
setInterval(refresh, 250);
connect();
refresh();
