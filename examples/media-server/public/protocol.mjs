// @ts-check
// The media server's wire format, shared by the server (server.mjs) and the page (app.js).
//
// Every media message is one binary WebSocket message: a 32-byte header followed by the
// payload. All numbers are little-endian.
//
//   offset  size  field
//        0     4  magic 0x50494341 (the bytes 'A' 'C' 'I' 'P')
//        4     1  kind: 1 = video (RGBA pixels), 2 = audio (float32 samples)
//        5     1  version (1)
//        6     2  header length (32)
//        8     4  seq: frame number of this kind, +1 per frame (a gap = frames not received)
//       12     4  payload length in bytes
//       16     8  server time (ms since the Unix epoch, fractional) when the frame was made
//       24     4  FNV-1a 32-bit checksum of the payload
//       28     2  video: width in pixels;  audio: channels (1)
//       30     2  video: height in pixels; audio: samples per channel (480)
//
// Control messages are JSON text messages (see README.md).

export const MAGIC = 0x50494341;
export const VERSION = 1;
export const HEADER_BYTES = 32;
export const KIND_VIDEO = 1;
export const KIND_AUDIO = 2;

export const AUDIO_SAMPLE_RATE = 48000;
export const AUDIO_FRAME_MS = 10;
export const AUDIO_SAMPLES = (AUDIO_SAMPLE_RATE * AUDIO_FRAME_MS) / 1000; // 480
export const AUDIO_PAYLOAD_BYTES = AUDIO_SAMPLES * 4; // 1920

/**
 * @typedef {object} FrameHeader
 * @property {number} kind
 * @property {number} seq
 * @property {number} length payload length in bytes
 * @property {number} serverTime ms since the Unix epoch
 * @property {number} checksum FNV-1a of the payload
 * @property {number} a video width, or audio channels
 * @property {number} b video height, or audio samples per channel
 */

/**
 * FNV-1a, 32 bits.
 * @param {Uint8Array} bytes
 * @returns {number}
 */
export function fnv1a(bytes) {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Writes the header into the first 32 bytes of `frame`, computing the checksum over the rest.
 * @param {Uint8Array} frame header space followed by the payload
 * @param {Omit<FrameHeader, 'length' | 'checksum'>} h
 * @returns {Uint8Array} `frame`
 */
export function sealFrame(frame, h) {
  const payload = frame.subarray(HEADER_BYTES);
  const v = new DataView(frame.buffer, frame.byteOffset, HEADER_BYTES);
  v.setUint32(0, MAGIC, true);
  v.setUint8(4, h.kind);
  v.setUint8(5, VERSION);
  v.setUint16(6, HEADER_BYTES, true);
  v.setUint32(8, h.seq >>> 0, true);
  v.setUint32(12, payload.length, true);
  v.setFloat64(16, h.serverTime, true);
  v.setUint32(24, fnv1a(payload), true);
  v.setUint16(28, h.a, true);
  v.setUint16(30, h.b, true);
  return frame;
}

/**
 * Parses and checks a frame: `ok` is false when the header is malformed or the checksum does
 * not match. `header` is null when not even the header could be read.
 * @param {ArrayBuffer | Uint8Array} data
 * @returns {{ ok: boolean, header: FrameHeader | null, payload: Uint8Array, error?: string }}
 */
export function openFrame(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const empty = new Uint8Array(0);
  if (bytes.length < HEADER_BYTES) {
    return { ok: false, header: null, payload: empty, error: 'short frame' };
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  if (v.getUint32(0, true) !== MAGIC || v.getUint8(5) !== VERSION) {
    return { ok: false, header: null, payload: empty, error: 'bad magic or version' };
  }
  const headerBytes = v.getUint16(6, true);
  /** @type {FrameHeader} */
  const header = {
    kind: v.getUint8(4),
    seq: v.getUint32(8, true),
    length: v.getUint32(12, true),
    serverTime: v.getFloat64(16, true),
    checksum: v.getUint32(24, true),
    a: v.getUint16(28, true),
    b: v.getUint16(30, true),
  };
  if (headerBytes < HEADER_BYTES || headerBytes + header.length !== bytes.length) {
    return { ok: false, header, payload: empty, error: 'length mismatch' };
  }
  const payload = bytes.subarray(headerBytes);
  if (fnv1a(payload) !== header.checksum) {
    return { ok: false, header, payload, error: 'checksum mismatch' };
  }
  return { ok: true, header, payload };
}
