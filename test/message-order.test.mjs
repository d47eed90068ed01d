// Nothing lost, nothing reordered: 100,000 sequence-numbered messages each way
// over 8 concurrent connections (node-lws client ↔ node-lws server), sizes
// from 1 byte to 1 MiB (deterministic PRNG: mostly small, some medium, a few
// large), text and binary mixed. Every message carries its sequence number and
// a CRC-32 of its payload (when it is long enough to hold them) and is checked
// byte for byte against the one the sender generated. Senders respect
// backpressure (await 'drain' whenever send() returns false).

import zlib from 'node:zlib';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { patternBytes } from './support/data.mjs';
import { connClosed } from './support/lws.mjs';
import { exitWatchdog, note } from './support/suite.mjs';
import { withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;
const CONNS = 8;
const TOTAL_EACH_WAY = 100_000;
const PER_CONN = TOTAL_EACH_WAY / CONNS;
const HEADER = 16; // bytes (binary) or ASCII characters (text)
const DEADLINE_MS = 50_000;
const C2S = 0;
const S2C = 1;

// ---------------------------------------------------------------------------
// Deterministic messages
// ---------------------------------------------------------------------------

const POOL = patternBytes(2 * MiB + HEADER, 0x5eed);
const ASCII_POOL = Buffer.from(POOL.map((b) => 32 + (b % 95))).toString('latin1');

function mulberry32(seed) {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Size, kind and pool offset of message `seq` of connection `conn` in direction `dir`. */
function spec(conn, dir, seq) {
  // Fixed extremes first: 1 byte and 1 MiB, binary and text.
  if (seq === 0) return { size: 1, binary: true, offset: conn * 7 + dir };
  if (seq === 1) return { size: MiB, binary: true, offset: conn * 11 + dir };
  if (seq === 2) return { size: 1, binary: false, offset: conn * 13 + dir };
  if (seq === 3) return { size: MiB, binary: false, offset: conn * 17 + dir };
  const rnd = mulberry32(
    Math.imul(conn + 1, 0x9e3779b1) ^ Math.imul(dir + 1, 0x85ebca77) ^ Math.imul(seq, 0xc2b2ae3d),
  );
  const r = rnd();
  let size;
  if (r < 0.0008)
    size = 64 * 1024 + Math.floor(rnd() * (MiB - 64 * 1024 + 1)); // large: 64 KiB..1 MiB
  else if (r < 0.02)
    size = 1024 + Math.floor(rnd() * 63 * 1024); // medium: 1..64 KiB
  else size = 1 + Math.floor(rnd() * 200); // small: 1..200 bytes
  const binary = rnd() < 0.7;
  const offset = Math.floor(rnd() * (POOL.length - HEADER - size));
  return { size, binary, offset };
}

const hex8 = (n) => (n >>> 0).toString(16).padStart(8, '0');

/** The message itself: a Buffer (binary) or an ASCII string (text) of `size` bytes. */
function build(conn, dir, seq) {
  const { size, binary, offset } = spec(conn, dir, seq);
  if (binary) {
    if (size < HEADER) return { data: Buffer.from(POOL.subarray(offset, offset + size)), binary };
    const payload = POOL.subarray(offset, offset + size - HEADER);
    const msg = Buffer.allocUnsafe(size);
    msg.writeUInt32BE(seq, 0);
    msg.writeUInt32BE(conn, 4);
    msg.writeUInt32BE(zlib.crc32(payload), 8);
    msg.writeUInt32BE(size, 12);
    payload.copy(msg, HEADER);
    return { data: msg, binary };
  }
  if (size < HEADER) return { data: ASCII_POOL.slice(offset, offset + size), binary };
  const payload = ASCII_POOL.slice(offset, offset + size - HEADER);
  return { data: `${hex8(seq)}${hex8(zlib.crc32(payload))}${payload}`, binary };
}

/**
 * Check message `data` against the expected message `seq`. Returns an error
 * string or null. The embedded seq/CRC are checked first (for a readable
 * diagnosis), then the whole message byte for byte.
 */
function verify(conn, dir, seq, data, isBinary) {
  const exp = build(conn, dir, seq);
  const where = `conn ${conn} ${dir === C2S ? 'client→server' : 'server→client'} message #${seq}`;
  if (isBinary !== exp.binary)
    return `${where}: got ${isBinary ? 'binary' : 'text'}, expected ${exp.binary ? 'binary' : 'text'}`;
  const len = isBinary ? data.length : Buffer.byteLength(data);
  if (len !== exp.data.length)
    return `${where}: ${len} bytes, expected ${exp.data.length}${len >= HEADER ? ` (embedded seq ${isBinary ? data.readUInt32BE(0) : parseInt(data.slice(0, 8), 16)})` : ''}`;
  if (len >= HEADER) {
    const gotSeq = isBinary ? data.readUInt32BE(0) : parseInt(data.slice(0, 8), 16);
    if (gotSeq !== seq) return `${where}: embedded seq ${gotSeq} (lost or reordered)`;
    const crc = isBinary ? data.readUInt32BE(8) : parseInt(data.slice(8, 16), 16);
    const actual = zlib.crc32(isBinary ? data.subarray(HEADER) : data.slice(HEADER));
    if (crc !== actual) return `${where}: CRC-32 mismatch (${hex8(actual)} ≠ ${hex8(crc)})`;
  }
  const same = isBinary ? data.equals(exp.data) : data === exp.data;
  return same ? null : `${where}: content differs`;
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

function waitDrain(t, label) {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = (code, reason) => {
      cleanup();
      reject(new Error(`${label}: closed (${code} ${reason}) while waiting for 'drain'`));
    };
    const cleanup = () => {
      t.off('drain', onDrain);
      t.off('close', onClose);
    };
    t.on('drain', onDrain);
    t.on('close', onClose);
  });
}

/** Send all PER_CONN messages of (conn, dir) on t, awaiting 'drain' on false. */
async function sendAll(t, conn, dir, stats) {
  for (let seq = 0; seq < PER_CONN; seq++) {
    const { data, binary } = build(conn, dir, seq);
    stats.bytes[dir] += typeof data === 'string' ? data.length : data.length;
    if (!t.send(data, binary)) {
      stats.waits[dir]++;
      await waitDrain(t, `conn ${conn}`);
    }
    stats.sent[dir]++;
  }
}

/** Verify everything that arrives on t for (conn, dir); resolves after PER_CONN messages. */
function receiveAll(t, conn, dir, stats, onFirst) {
  let next = 0;
  return new Promise((resolve, reject) => {
    t.on('message', (data, isBinary) => {
      if (next === 0 && onFirst) onFirst();
      if (next >= PER_CONN) {
        stats.errors.push(`conn ${conn}: extra message after ${PER_CONN}`);
        return;
      }
      const err = verify(conn, dir, next, data, isBinary);
      if (err) {
        stats.errors.push(err);
        next = PER_CONN + 1; // stop checking this stream; report the first error
        reject(new Error(err));
        return;
      }
      next++;
      stats.received[dir]++;
      if (next === PER_CONN) resolve();
    });
    t.on('close', (code, reason) => {
      if (next < PER_CONN)
        reject(new Error(`conn ${conn}: closed (${code} ${reason}) after ${next}/${PER_CONN}`));
    });
  });
}

test(`${TOTAL_EACH_WAY} messages each way over ${CONNS} connections: all arrive, once, in order, intact`, async () => {
  // Sanity of the generator itself.
  assert.is(build(0, C2S, 0).data.length, 1);
  assert.is(build(0, C2S, 1).data.length, MiB);
  assert.is(Buffer.byteLength(build(0, C2S, 3).data), MiB);
  assert.is(verify(3, S2C, 1234, build(3, S2C, 1234).data, build(3, S2C, 1234).binary), null);
  assert.ok(verify(3, S2C, 1234, build(3, S2C, 1235).data, build(3, S2C, 1235).binary));

  const stats = {
    sent: [0, 0],
    received: [0, 0],
    bytes: [0, 0],
    waits: [0, 0],
    errors: [],
  };
  // The first failure of any stream ends the wait at once.
  let failWith;
  const failed = new Promise((_, reject) => {
    failWith = reject;
  });
  const server = await lws.listen({ host: HOST, port: 0 });
  const serverDone = [];
  const serverConns = [];
  server.on('connection', (conn, req) => {
    const m = /^\/c(\d+)$/.exec(req.path);
    const idx = m ? Number(m[1]) : -1;
    serverConns[idx] = conn;
    conn.on('error', () => {});
    let sending;
    // Start sending once the client's first message shows it is listening.
    const recv = receiveAll(conn, idx, C2S, stats, () => {
      sending ??= sendAll(conn, idx, S2C, stats);
      sending.catch(failWith);
    });
    recv.catch(failWith);
    const done = recv.then(() => sending);
    done.catch(() => {}); // reported through failWith
    serverDone.push(done);
  });

  const t0 = performance.now();
  const clients = await Promise.all(
    Array.from({ length: CONNS }, (_, i) =>
      withTimeout(lws.connect(`ws://${HOST}:${server.port}/c${i}`), 10000, `connect ${i}`),
    ),
  );
  const clientDone = clients.map((t, i) => {
    t.on('error', () => {});
    const recv = receiveAll(t, i, S2C, stats);
    const send = sendAll(t, i, C2S, stats);
    recv.catch(failWith);
    send.catch(failWith);
    return Promise.all([recv, send]);
  });

  const progress = () =>
    `client→server sent ${stats.sent[C2S]} received ${stats.received[C2S]}; ` +
    `server→client sent ${stats.sent[S2C]} received ${stats.received[S2C]}`;
  try {
    await withTimeout(
      Promise.race([
        failed,
        (async () => {
          await Promise.all(clientDone);
          // Every server-side stream exists once every client got its messages.
          await Promise.all(serverDone);
        })(),
      ]),
      DEADLINE_MS,
      `all messages (${progress()})`,
    );
  } catch (err) {
    err.message += ` [${progress()}]`;
    for (const t of clients) t.terminate();
    await server.close();
    throw err;
  }
  const secs = (performance.now() - t0) / 1000;
  assert.equal(stats.errors, []);
  assert.is(stats.received[C2S], TOTAL_EACH_WAY);
  assert.is(stats.received[S2C], TOTAL_EACH_WAY);
  assert.is(serverConns.filter(Boolean).length, CONNS);
  note(
    `${TOTAL_EACH_WAY} msgs each way in ${secs.toFixed(1)} s: ` +
      `client→server ${(stats.bytes[C2S] / MiB).toFixed(0)} MiB (${stats.waits[C2S]} drain waits), ` +
      `server→client ${(stats.bytes[S2C] / MiB).toFixed(0)} MiB (${stats.waits[S2C]} drain waits)`,
  );

  // Clean close of all of them; no stray message arrives late (receiveAll rejects on extras).
  const closes = serverConns.map((c) => connClosed(c, 10000));
  for (const t of clients) t.close(1000, 'done');
  const results = await Promise.all(closes);
  for (const r of results) assert.equal(r, { code: 1000, reason: 'done', wasClean: true });
  assert.equal(stats.errors, [], 'no stray or corrupt message up to the close');
  await server.close();
});

test.after(exitWatchdog);
test.run();
