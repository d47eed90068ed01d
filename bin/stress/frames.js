'use strict';
// Media-shaped frames for node-lws-stress.
//
// Every message is one frame: a 32-byte header followed by the payload.
//
//   offset  size  field
//        0     4  magic 0x53574C4E ('NLWS' little-endian)
//        4     1  kind: 1 video, 2 audio, 3 input
//        5     3  reserved (0)
//        8     4  sequence number (per stream and kind, from 0)
//       12     4  payload length
//       16     8  send time: process.hrtime.bigint() in ns
//       24     4  CRC-32 of the payload
//       28     4  stream id (which client connection the frame belongs to)
//
// Payloads are deterministic from (kind, seq): 61 variants per kind (a prime,
// so consecutive frames always differ), each with a precomputed CRC-32. The
// receiver computes the CRC-32 of what arrived, compares it with the header,
// and compares the header's CRC-32 with the one the sequence number implies,
// so a damaged payload, a damaged header and a payload swapped between frames
// are all caught.

const zlib = require('node:zlib');
const { patternBytes } = require('./random');

const HEADER_BYTES = 32;
const MAGIC = 0x53574c4e;
const KIND = { video: 1, audio: 2, input: 3 };
const KIND_NAMES = ['', 'video', 'audio', 'input'];
const VARIANTS = 61;
/** The stream id of a published (--broadcast) frame: it belongs to every subscriber. */
const BROADCAST_STREAM = 0xffffffff;

/** Audio: 480 float32 samples (10 ms at 48 kHz) = 1,920 bytes. */
const AUDIO_SAMPLES = 480;
const AUDIO_BYTES = AUDIO_SAMPLES * 4;
const AUDIO_INTERVAL_MS = 10;
const SAMPLE_RATE = 48_000;
/** Input: small client-to-server messages (pointer/keyboard-like), every 10 ms. */
const INPUT_BYTES = 64;
const INPUT_INTERVAL_MS = 10;

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32Js(buf) {
  let c = -1;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** CRC-32 (IEEE): zlib's native one where Node has it (>= 20.15), else a table version. */
const crc32 = typeof zlib.crc32 === 'function' ? (buf) => zlib.crc32(buf) >>> 0 : crc32Js;

function audioVariant(v) {
  // A 440 Hz tone whose phase follows the variant, plus a little deterministic noise.
  const f = new Float32Array(AUDIO_SAMPLES);
  const noise = patternBytes(AUDIO_SAMPLES, 0x51f15e + v);
  for (let i = 0; i < AUDIO_SAMPLES; i++) {
    const t = (v * AUDIO_SAMPLES + i) / SAMPLE_RATE;
    f[i] = 0.5 * Math.sin(2 * Math.PI * 440 * t) + (noise[i] - 128) / 4096;
  }
  return Buffer.from(f.buffer);
}

/**
 * The payload table for one run: `payload(kind, seq)` gives `{ buf, crc }`.
 * Video variants are windows into one pseudo-random pool (so the table costs
 * about videoBytes + 250 KB, not 61 frames).
 */
function createPayloads(videoBytes) {
  const STEP = 4099;
  const pool = patternBytes(videoBytes + VARIANTS * STEP, 0x7a11e0);
  const inputPool = patternBytes(INPUT_BYTES + VARIANTS * 7, 0x1d97);
  const table = [null, [], [], []];
  for (let v = 0; v < VARIANTS; v++) {
    const video = pool.subarray(v * STEP, v * STEP + videoBytes);
    const audio = audioVariant(v);
    const input = inputPool.subarray(v * 7, v * 7 + INPUT_BYTES);
    table[KIND.video].push({ buf: video, crc: crc32(video) });
    table[KIND.audio].push({ buf: audio, crc: crc32(audio) });
    table[KIND.input].push({ buf: input, crc: crc32(input) });
  }
  return {
    payload(kind, seq) {
      return table[kind][seq % VARIANTS];
    },
  };
}

/** A new frame buffer (never reused: transports may hold it until it is written). */
function encodeFrame(payloads, kind, seq, streamId) {
  const p = payloads.payload(kind, seq);
  const frame = Buffer.allocUnsafe(HEADER_BYTES + p.buf.length);
  frame.writeUInt32LE(MAGIC, 0);
  frame.writeUInt32LE(kind, 4);
  frame.writeUInt32LE(seq, 8);
  frame.writeUInt32LE(p.buf.length, 12);
  frame.writeUInt32LE(p.crc, 24);
  frame.writeUInt32LE(streamId, 28);
  p.buf.copy(frame, HEADER_BYTES);
  frame.writeBigUInt64LE(process.hrtime.bigint(), 16);
  return frame;
}

/**
 * Checks one received message. Returns `{ ok, kind, seq, streamId, sentAt, why }`;
 * when the header itself is unreadable kind is 0 and seq -1.
 */
function decodeFrame(payloads, data) {
  if (!Buffer.isBuffer(data)) {
    return { ok: false, kind: 0, seq: -1, streamId: -1, sentAt: 0n, why: 'text-message' };
  }
  if (data.length < HEADER_BYTES || data.readUInt32LE(0) !== MAGIC) {
    return { ok: false, kind: 0, seq: -1, streamId: -1, sentAt: 0n, why: 'bad-header' };
  }
  const kind = data.readUInt32LE(4);
  const seq = data.readUInt32LE(8);
  const length = data.readUInt32LE(12);
  const sentAt = data.readBigUInt64LE(16);
  const crc = data.readUInt32LE(24);
  const streamId = data.readUInt32LE(28);
  const r = { ok: false, kind, seq, streamId, sentAt, why: '' };
  if (kind < 1 || kind > 3) {
    r.kind = 0;
    r.why = 'bad-kind';
  } else if (length !== data.length - HEADER_BYTES) r.why = 'length';
  else if (crc32(data.subarray(HEADER_BYTES)) !== crc) r.why = 'checksum';
  else if (payloads.payload(kind, seq).crc !== crc) r.why = 'payload-not-for-seq';
  else r.ok = true;
  return r;
}

module.exports = {
  AUDIO_BYTES,
  AUDIO_INTERVAL_MS,
  AUDIO_SAMPLES,
  BROADCAST_STREAM,
  HEADER_BYTES,
  INPUT_BYTES,
  INPUT_INTERVAL_MS,
  KIND,
  KIND_NAMES,
  crc32,
  crc32Js,
  createPayloads,
  decodeFrame,
  encodeFrame,
};
