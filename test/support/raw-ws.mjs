// The raw WebSocket kit: HTTP/1.1 and RFC 6455 frames written and parsed by hand over plain TCP,
// so a test controls and sees every byte. One peer class serves both ends:
//  - a raw client against a node-lws server (rawWsUpgrade, rawHttpExchange, new RawWsPeer on
//    rawTcpConnect) sends masked frames and reads the server's;
//  - a raw server for a node-lws client (rawWsServer) answers the upgrade itself and sends
//    unmasked frames.
// Frames are encoded exactly as asked (RSV bits, any opcode, a chosen or no masking key, a
// length field that promises more bytes than follow) and parsed with every header detail
// (RSV, mask bit and key, length encoding, header length).
//
// Layer 2 of test/support/: imports wait.mjs and net.mjs.

import crypto from 'node:crypto';
import net from 'node:net';
import * as assert from 'uvu/assert';
import { rawTcpConnect } from './net.mjs';
import { DEFAULT_TIMEOUT, withTimeout } from './wait.mjs';

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

/** RFC 6455 GUID for Sec-WebSocket-Accept. */
export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key. */
export function acceptFor(key) {
  return crypto
    .createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64');
}

/** WebSocket opcodes. */
export const OP = { cont: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa };
/** Opcode names, for messages. */
export const OP_NAME = {
  0: 'continuation',
  1: 'text',
  2: 'binary',
  8: 'close',
  9: 'ping',
  10: 'pong',
};

/** `buf` XOR the 4-byte masking `key` (a new Buffer). */
export function xorMask(buf, key) {
  const out = Buffer.allocUnsafe(buf.length);
  const n = buf.length;
  const k0 = key[0];
  const k1 = key[1];
  const k2 = key[2];
  const k3 = key[3];
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    out[i] = buf[i] ^ k0;
    out[i + 1] = buf[i + 1] ^ k1;
    out[i + 2] = buf[i + 2] ^ k2;
    out[i + 3] = buf[i + 3] ^ k3;
  }
  for (; i < n; i++) out[i] = buf[i] ^ key[i & 3];
  return out;
}

/**
 * A hand-built frame. `payload`: Buffer or string (UTF-8). `mask`: true (a fresh random key, as
 * a client must), false (as a server must), or a 4-byte Buffer. `rsv`: the three RSV bits as
 * 0..7. `announce`: the payload length written in the header (default: the real one; a BigInt
 * up to 2^64 - 1 is allowed), so a header can promise more bytes than follow.
 * `lengthEncoding`: 7, 16 or 64 forces that length form (default: the minimal one), so a
 * header can use a longer form than needed.
 */
export function encodeFrame({
  opcode,
  payload = Buffer.alloc(0),
  fin = true,
  rsv = 0,
  mask = true,
  announce,
  lengthEncoding,
}) {
  const data = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const len = announce ?? data.length;
  const form = lengthEncoding ?? (len < 126 ? 7 : len <= 0xffff ? 16 : 64);
  const key = mask === true ? crypto.randomBytes(4) : mask || null;
  let hlen = form === 7 ? 2 : form === 16 ? 4 : 10;
  if (key) hlen += 4;
  const head = Buffer.alloc(hlen);
  head[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  const m = key ? 0x80 : 0;
  if (form === 7) head[1] = m | (Number(len) & 0x7f);
  else if (form === 16) {
    head[1] = m | 126;
    head.writeUInt16BE(Number(len) & 0xffff, 2);
  } else {
    head[1] = m | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  if (key) key.copy(head, hlen - 4);
  return Buffer.concat([head, key ? xorMask(data, key) : data]);
}

/** The payload of a close frame: the 2-byte code, then the reason (string or Buffer). */
export function closePayload(code, reason = '') {
  const r = typeof reason === 'string' ? Buffer.from(reason, 'utf8') : reason;
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code, 0);
  r.copy(b, 2);
  return b;
}

/** A parsed frame in words, for failure messages. */
export function describeFrame(f) {
  if (!f) return 'no frame';
  const name = OP_NAME[f.opcode] ?? `opcode 0x${f.opcode.toString(16)}`;
  let extra = '';
  if (f.opcode === OP.close && f.payload.length >= 2)
    extra = ` code ${f.payload.readUInt16BE(0)} reason ${JSON.stringify(f.payload.subarray(2).toString())}`;
  else if (f.payload.length <= 32) extra = ` payload ${f.payload.toString('hex') || '(empty)'}`;
  return `${name} frame (fin ${f.fin}, rsv ${f.rsv}, masked ${f.masked}, length ${f.length}${extra})`;
}

// ---------------------------------------------------------------------------
// HTTP heads
// ---------------------------------------------------------------------------

/**
 * Parse an HTTP head (request or response) into `{ startLine, status?, method?, target?,
 * version?, headers, headerList }` (headers: lower-case names, repeated ones joined with ", ";
 * headerList: every [name, value] in order).
 */
export function parseHttpHead(text) {
  const lines = text.split('\r\n');
  const startLine = lines[0];
  const head = { startLine, headers: {}, headerList: [] };
  const parts = startLine.split(' ');
  if (/^HTTP\/1\.\d$/.test(parts[0])) head.status = Number(parts[1]);
  else {
    head.method = parts[0];
    head.target = parts[1];
    head.version = parts[2];
  }
  for (const line of lines.slice(1)) {
    if (!line) continue;
    const i = line.indexOf(':');
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    head.headerList.push([name, value]);
    head.headers[name] = name in head.headers ? `${head.headers[name]}, ${value}` : value;
  }
  return head;
}

/**
 * An upgrade request as text. `key`: the Sec-WebSocket-Key (default: a fresh one); `omit`:
 * header names to leave out (Host, Upgrade, Connection, Sec-WebSocket-Key,
 * Sec-WebSocket-Version); `headers`: more headers; `extra`: raw header lines to append.
 */
export function upgradeRequest(
  port,
  {
    host = '127.0.0.1',
    path: target = '/',
    method = 'GET',
    version = '13',
    key,
    omit = [],
    headers = {},
    extra = '',
  } = {},
) {
  const k = key ?? crypto.randomBytes(16).toString('base64');
  const h = [
    ['Host', `${host}:${port}`],
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade'],
    ['Sec-WebSocket-Key', k],
    ['Sec-WebSocket-Version', version],
    ...Object.entries(headers),
  ].filter(([n]) => !omit.includes(n));
  return `${method} ${target} HTTP/1.1\r\n${h.map(([n, v]) => `${n}: ${v}\r\n`).join('')}${extra}\r\n`;
}

// ---------------------------------------------------------------------------
// ByteQueue: what came in and is not parsed yet
// ---------------------------------------------------------------------------

/** A FIFO of Buffers with O(n) total cost for taking bytes out (16 MiB frames). */
export class ByteQueue {
  chunks = [];
  length = 0;
  push(b) {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }
  /** The first n bytes (n <= length), not consumed. */
  peek(n) {
    if (this.chunks[0].length >= n) return this.chunks[0].subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    for (const c of this.chunks) {
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (off === n) break;
    }
    return out;
  }
  /** Remove and return the first n bytes (n <= length). */
  take(n) {
    this.length -= n;
    const first = this.chunks[0];
    if (first && first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------
// RawWsPeer: one raw TCP socket, reading an HTTP head and then frames
// ---------------------------------------------------------------------------

/**
 * One raw TCP socket speaking HTTP/1.1 then WebSocket frames by hand.
 *
 * `isServer`: true → it reads a request and sends unmasked frames; false → it reads a response
 * and sends masked frames. `autoPong`: answer every ping with a pong carrying its payload.
 *
 * State: `head` (parsed HTTP head) and `headAt`; `frames` (parsed, not yet taken by
 * nextFrame()); `log` (every frame, each with its arrival time `at`); `pings` (count);
 * `bytesIn`; `ended` (the peer sent FIN); `isClosed`, `closed` (promise), `closedAt`; `error`
 * (the socket's error, if any); `parseError` (a frame this parser cannot represent).
 * Each frame: `{ fin, rsv, opcode, masked, maskKey, length, lengthEncoding (7 | 16 | 64),
 * headerLength, header, payload (unmasked), at }`.
 */
export class RawWsPeer {
  constructor(socket, { isServer = false, autoPong = false } = {}) {
    this.socket = socket;
    this.isServer = isServer;
    this.autoPong = autoPong;
    this.q = new ByteQueue();
    this.mode = 'head';
    this.headBuf = Buffer.alloc(0);
    this.head = null;
    this.headAt = undefined;
    this.frames = [];
    this.log = [];
    this.pings = 0;
    this.waiters = [];
    this.bytesIn = 0;
    this.ended = false;
    this.isClosed = false;
    this.closedAt = undefined;
    this.error = null;
    this.parseError = null;
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true;
        this.closedAt = performance.now();
        resolve(this.closedAt);
        this.#wake();
      });
    });
    socket.on('end', () => {
      this.ended = true;
    });
    socket.on('error', (err) => {
      this.error = err;
    });
    socket.on('data', (d) => this.#onData(d));
  }

  #onData(d) {
    this.bytesIn += d.length;
    if (this.mode === 'head') {
      this.headBuf = Buffer.concat([this.headBuf, d]);
      const i = this.headBuf.indexOf('\r\n\r\n');
      if (i < 0) {
        this.#wake();
        return;
      }
      this.head = parseHttpHead(this.headBuf.subarray(0, i).toString('latin1'));
      this.headAt = performance.now();
      const rest = this.headBuf.subarray(i + 4);
      this.headBuf = null;
      this.mode = this.isServer || this.head.status === 101 ? 'frames' : 'body';
      this.q.push(rest);
    } else {
      this.q.push(d);
    }
    if (this.mode === 'frames') this.#parseFrames();
    this.#wake();
  }

  #parseFrames() {
    for (;;) {
      const q = this.q;
      if (q.length < 2) return;
      const h = q.peek(Math.min(14, q.length));
      const masked = (h[1] & 0x80) !== 0;
      const len7 = h[1] & 0x7f;
      const hlen = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
      if (q.length < hlen) return;
      let length = len7;
      let lengthEncoding = 7;
      if (len7 === 126) {
        length = h.readUInt16BE(2);
        lengthEncoding = 16;
      } else if (len7 === 127) {
        const big = h.readBigUInt64BE(2);
        if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
          this.parseError = `64-bit frame length ${big} is absurd`;
          return;
        }
        length = Number(big);
        lengthEncoding = 64;
      }
      const maskKey = masked ? Buffer.from(h.subarray(hlen - 4, hlen)) : null;
      if (q.length < hlen + length) return;
      const header = Buffer.from(q.take(hlen));
      const raw = q.take(length);
      const f = {
        fin: (header[0] & 0x80) !== 0,
        rsv: (header[0] >> 4) & 7,
        opcode: header[0] & 0x0f,
        masked,
        maskKey,
        length,
        lengthEncoding,
        headerLength: hlen,
        header,
        payload: masked ? xorMask(raw, maskKey) : Buffer.from(raw),
        at: performance.now(),
      };
      this.log.push(f);
      if (f.opcode === OP.ping) {
        this.pings++;
        if (this.autoPong && !this.isClosed) this.send({ opcode: OP.pong, payload: f.payload });
      }
      this.frames.push(f);
    }
  }

  #wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  /** Resolve when `pred()` is truthy (re-checked on every data/close); reject at the deadline. */
  until(pred, ms = DEFAULT_TIMEOUT, label = 'raw peer condition') {
    return withTimeout(
      new Promise((resolve, reject) => {
        const check = () => {
          let v;
          try {
            v = pred();
          } catch (err) {
            reject(err);
            return;
          }
          if (v) resolve(v);
          else this.waiters.push(check);
        };
        check();
      }),
      ms,
      label,
    );
  }

  /** The HTTP head, once it has arrived; fails if TCP closes first. */
  waitHead(ms = DEFAULT_TIMEOUT) {
    return this.until(
      () => {
        if (this.head) return this.head;
        if (this.isClosed)
          throw new Error(
            `TCP closed before an HTTP head arrived (got ${this.bytesIn} bytes: ${JSON.stringify(String(this.headBuf))})`,
          );
        return null;
      },
      ms,
      'HTTP head',
    );
  }

  /** The next unread frame (with `opcode`: the next one of that opcode, skipping others). */
  nextFrame(ms = DEFAULT_TIMEOUT, label = 'frame', opcode) {
    return this.until(
      () => {
        while (this.frames.length) {
          const f = this.frames.shift();
          if (opcode === undefined || f.opcode === opcode) return f;
        }
        if (this.parseError) throw new Error(`${label}: ${this.parseError}`);
        if (this.isClosed)
          throw new Error(
            `TCP closed while waiting for ${label} (${this.q.length} unparsed bytes${this.mode !== 'frames' ? `, mode ${this.mode}` : ''})`,
          );
        return null;
      },
      ms,
      `${label}${this.frames.length ? '' : ` (${this.q.length} bytes buffered, no complete frame)`}`,
    );
  }

  /** Everything after the head, once the TCP connection has closed (non-101 responses). */
  async body(ms = DEFAULT_TIMEOUT) {
    await withTimeout(this.closed, ms, 'TCP close after the HTTP response');
    return this.q.take(this.q.length);
  }

  /** Write raw bytes (nothing once the socket has closed). */
  write(buf) {
    if (!this.isClosed) this.socket.write(buf);
  }

  /** Send a frame (see encodeFrame); masked with a fresh key on the client side by default. */
  send(opts) {
    this.write(encodeFrame({ mask: !this.isServer, ...opts }));
  }

  /** Assert that the TCP connection closes (FIN or reset) within `ms`. */
  async assertTcpClosed(label, ms) {
    if (typeof ms !== 'number') throw new TypeError('assertTcpClosed(label, ms): ms is required');
    try {
      await withTimeout(this.closed, ms, `TCP close ${label}`);
    } catch (err) {
      throw new assert.Assertion({
        message: `${err.message} (socket still open: ended=${this.ended}, ${this.frames.length} unread frames${this.frames.length ? `: ${this.frames.map(describeFrame).join('; ')}` : ''})`,
        generated: false,
      });
    }
  }

  destroy() {
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------------------
// A raw client against a node-lws server
// ---------------------------------------------------------------------------

/**
 * Send `request` (exact bytes) on a fresh TCP connection; resolve with `{ head, body, peer }`
 * once the server closed the connection after its response (for a 101: at once, body null).
 * `ms`: deadline for the connect and for the head; `bodyMs`: for the server's close after it.
 * The socket is destroyed afterwards unless `keep` is set (then the caller owns `peer`).
 */
export async function rawHttpExchange(
  port,
  request,
  { host = '127.0.0.1', ms = DEFAULT_TIMEOUT, bodyMs = ms, keep = false } = {},
) {
  const socket = await rawTcpConnect(port, host, ms);
  const peer = new RawWsPeer(socket);
  let done = false;
  try {
    socket.write(request);
    const head = await peer.waitHead(ms);
    const body = head.status === 101 ? null : await peer.body(bodyMs);
    done = true;
    return { head, body, peer };
  } finally {
    if (!done || !keep) socket.destroy();
  }
}

/**
 * A raw client after a successful upgrade on `path`: asserts the 101 and its
 * Sec-WebSocket-Accept (destroying the socket when either is wrong). `headers`: more request
 * headers. Returns the RawWsPeer, with the `key` it sent.
 */
export async function rawWsUpgrade(
  port,
  {
    path: target = '/',
    host = '127.0.0.1',
    headers = {},
    autoPong = false,
    ms = DEFAULT_TIMEOUT,
  } = {},
) {
  const socket = await rawTcpConnect(port, host, ms);
  const peer = new RawWsPeer(socket, { autoPong });
  peer.key = crypto.randomBytes(16).toString('base64');
  try {
    socket.write(upgradeRequest(port, { host, path: target, key: peer.key, headers }));
    const head = await peer.waitHead(ms);
    assert.is(head.status, 101, `upgrade response: ${head.startLine}`);
    assert.is(head.headers['sec-websocket-accept'], acceptFor(peer.key), 'Sec-WebSocket-Accept');
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return peer;
}

/**
 * A client that upgrades on `path` (101 and Accept asserted) and then never reads again: its
 * socket is paused, so the kernel buffers fill and stay full. Returns the RawWsPeer.
 */
export async function stalledWsClient(port, options) {
  const peer = await rawWsUpgrade(port, options);
  peer.socket.pause();
  return peer;
}

// ---------------------------------------------------------------------------
// A raw server for a node-lws client
// ---------------------------------------------------------------------------

/**
 * A raw WebSocket server on plain `net`: it reads each upgrade request and answers it with
 * `respond(head, key)` (default: a correct 101 with the computed Sec-WebSocket-Accept), then
 * only records frames (it never answers pings unless `autoPong`). `peers` collects a RawWsPeer
 * per answered request; `nextPeer()` resolves with the next one not taken yet, once its answer
 * was written (its `upgradedAt` is then set). `url(path)`: a ws:// URL for it.
 */
export async function rawWsServer({ host = '127.0.0.1', autoPong = false, respond } = {}) {
  const peers = [];
  const waiting = [];
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const peer = new RawWsPeer(socket, { isServer: true, autoPong });
    peer.waitHead().then(
      (head) => {
        const key = head.headers['sec-websocket-key'];
        socket.write(
          respond
            ? respond(head, key)
            : 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
                `Sec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`,
        );
        peer.upgradedAt = performance.now();
        peers.push(peer);
        const w = waiting.shift();
        if (w) w(peer);
      },
      () => socket.destroy(),
    );
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host }, resolve);
  });
  const port = server.address().port;
  return {
    server,
    port,
    peers,
    url: (pathname = '/') => `ws://${host}:${port}${pathname}`,
    nextPeer(ms = DEFAULT_TIMEOUT) {
      const idx = peers.findIndex((p) => !p.claimed);
      if (idx >= 0) {
        peers[idx].claimed = true;
        return Promise.resolve(peers[idx]);
      }
      return withTimeout(
        new Promise((resolve) =>
          waiting.push((p) => {
            p.claimed = true;
            resolve(p);
          }),
        ),
        ms,
        'raw server upgrade request',
      );
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
}
