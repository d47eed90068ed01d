// @ts-check
// Synthetic media for the example: an animated RGBA picture and a sine tone.

import {
  AUDIO_PAYLOAD_BYTES,
  AUDIO_SAMPLE_RATE,
  AUDIO_SAMPLES,
  HEADER_BYTES,
  KIND_AUDIO,
  KIND_VIDEO,
  sealFrame,
} from './public/protocol.mjs';

/**
 * A cursor to draw: where a client last pointed (0..1 in both axes) and its colour.
 * @typedef {{ x: number, y: number, color: readonly [number, number, number] }} Cursor
 */

// 128 + 96·sin: the background never reaches the saturated cursor colours.
const SIN = new Uint8Array(256);
for (let i = 0; i < 256; i++) SIN[i] = Math.round(128 + 96 * Math.sin((2 * Math.PI * i) / 256));

// 3×5 digits, one row per entry, bit 2 = left column.
const DIGITS = [
  [7, 5, 5, 5, 7],
  [2, 6, 2, 2, 7],
  [7, 1, 7, 4, 7],
  [7, 1, 7, 1, 7],
  [5, 5, 7, 1, 1],
  [7, 4, 7, 1, 7],
  [7, 4, 7, 5, 7],
  [7, 1, 1, 1, 1],
  [7, 5, 7, 5, 7],
  [7, 5, 7, 1, 7],
];

/** Triangle wave 0..1..0 with period 1. @param {number} t */
function tri(t) {
  const f = t - Math.floor(t);
  return f < 0.5 ? f * 2 : 2 - f * 2;
}

/**
 * Renders video frame `seq` (made at `serverTime`) and returns it as a complete frame
 * (header + width × height × 4 bytes of RGBA).
 * @param {number} width
 * @param {number} height
 * @param {number} seq
 * @param {number} serverTime
 * @param {readonly Cursor[]} cursors
 * @returns {Buffer}
 */
export function renderVideoFrame(width, height, seq, serverTime, cursors) {
  const frame = Buffer.allocUnsafe(HEADER_BYTES + width * height * 4);
  const px = frame.subarray(HEADER_BYTES);
  const n = seq;

  /** @param {number} x @param {number} y @param {number} r @param {number} g @param {number} b */
  const put = (x, y, r, g, b) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const i = (y * width + x) * 4;
    px[i] = r;
    px[i + 1] = g;
    px[i + 2] = b;
    px[i + 3] = 255;
  };
  /** @param {number} x0 @param {number} y0 @param {number} w @param {number} h @param {number} r @param {number} g @param {number} b */
  const rect = (x0, y0, w, h, r, g, b) => {
    for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) put(x, y, r, g, b);
  };

  // Moving plasma.
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i += 4) {
      px[i] = SIN[(x * 3 + n * 4) & 255];
      px[i + 1] = SIN[(y * 5 - n * 3 + x) & 255];
      px[i + 2] = SIN[((x + y) * 2 + n * 2) & 255];
      px[i + 3] = 255;
    }
  }
  // A bar sweeping left to right, one pixel per frame.
  rect(n % width, 0, 2, height, 255, 255, 255);
  // A bouncing ball.
  const t = serverTime / 1000;
  const r = 7;
  const bx = Math.round(r + (width - 2 * r - 1) * tri(t / 2.3));
  const by = Math.round(r + (height - 2 * r - 1) * tri(t / 1.7));
  for (let dy = -r; dy <= r; dy++) {
    for (let dx = -r; dx <= r; dx++) {
      const d2 = dx * dx + dy * dy;
      if (d2 <= r * r) {
        const shade = d2 > (r - 1.5) * (r - 1.5) ? 40 : 250 - d2 * 2;
        put(bx + dx, by + dy, shade, shade, shade);
      }
    }
  }
  // The frame number, 2× scaled, on a dark box.
  const text = String(seq);
  rect(1, 1, text.length * 8 + 2, 14, 16, 16, 16);
  for (let c = 0; c < text.length; c++) {
    const glyph = DIGITS[text.charCodeAt(c) - 48];
    for (let row = 0; row < 5; row++) {
      for (let col = 0; col < 3; col++) {
        if (glyph[row] & (4 >> col)) rect(3 + c * 8 + col * 2, 3 + row * 2, 2, 2, 255, 255, 0);
      }
    }
  }
  // Each client's cursor: a 5×5 square of its colour in a black frame, with arms.
  for (const cur of cursors) {
    const cx = Math.round(cur.x * (width - 1));
    const cy = Math.round(cur.y * (height - 1));
    const [cr, cg, cb] = cur.color;
    rect(cx - 3, cy - 3, 7, 7, 0, 0, 0);
    rect(cx - 2, cy - 2, 5, 5, cr, cg, cb);
    for (let k = 4; k <= 8; k++) {
      put(cx - k, cy, cr, cg, cb);
      put(cx + k, cy, cr, cg, cb);
      put(cx, cy - k, cr, cg, cb);
      put(cx, cy + k, cr, cg, cb);
    }
  }
  return /** @type {Buffer} */ (
    sealFrame(frame, { kind: KIND_VIDEO, seq, serverTime, a: width, b: height })
  );
}

/**
 * Audio frame `seq`: 10 ms of a 440 Hz sine at 48 kHz, mono float32, continuous across frames.
 * @param {number} seq
 * @param {number} serverTime
 * @returns {Buffer}
 */
export function renderAudioFrame(seq, serverTime) {
  const frame = Buffer.allocUnsafe(HEADER_BYTES + AUDIO_PAYLOAD_BYTES);
  const view = new DataView(frame.buffer, frame.byteOffset + HEADER_BYTES, AUDIO_PAYLOAD_BYTES);
  const first = seq * AUDIO_SAMPLES;
  for (let i = 0; i < AUDIO_SAMPLES; i++) {
    const s =
      0.25 * Math.sin((2 * Math.PI * 440 * ((first + i) % AUDIO_SAMPLE_RATE)) / AUDIO_SAMPLE_RATE);
    view.setFloat32(i * 4, s, true);
  }
  return /** @type {Buffer} */ (
    sealFrame(frame, { kind: KIND_AUDIO, seq, serverTime, a: 1, b: AUDIO_SAMPLES })
  );
}
