// Bounded network fuzzing of a node-lws echo server.
//
// For FUZZ_SECONDS (default 20; CI may set 60) many raw TCP sockets in parallel send random
// bytes, and mutations (bit flips, truncations, splices, insertions, deletions, duplications,
// interesting-byte overwrites, length-field edits, chunk splits) of a corpus of valid upgrade
// requests and frame sequences. The PRNG is seeded (FUZZ_SEED, else random) and the seed is
// printed, so a run can be repeated: FUZZ_SEED=<seed> node test/system/network-fuzz.test.mjs.
//
// Asserted:
//   - the process never crashes (a crash kills this file; the runner reports it);
//   - two well-behaved control clients (node-lws and ws) each round-trip a message every
//     200 ms throughout, and every one of those round trips succeeds (within 2 s);
//   - any HTTP answer to a (mutated) handshake is a well-formed HTTP/1.1 status line;
//   - the server still accepts and echoes on a fresh connection afterwards;
//   - after the run (everything closed) the process's fd count is back at its baseline.

import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import random from '../../bin/stress/random.js';
import * as lws from '../../dist/index.mjs';
import { describeFds, openFds, threadCount } from '../support/proc.mjs';
import { encodeFrame } from '../support/raw-ws.mjs';
import { exitWatchdog } from '../support/suite.mjs';
import { waitFor, withTimeout } from '../support/wait.mjs';
import { wsConnect } from '../support/ws-client.mjs';

const HOST = '127.0.0.1';
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 20);
const PARALLEL = Number(process.env.FUZZ_PARALLEL ?? 24);
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32)) >>> 0 || 1;
const CONTROL_EVERY_MS = 200;
const CONTROL_DEADLINE_MS = 2000;
const MAX_PAYLOAD = 256 * 1024;

// ---------------------------------------------------------------------------
// Deterministic PRNG (the stress CLI's mulberry32) and helpers
// ---------------------------------------------------------------------------

class Rng {
  constructor(seed) {
    this.next = random.mulberry32(seed);
  }
  int(n) {
    return Math.floor(this.next() * n);
  }
  range(lo, hi) {
    return lo + this.int(hi - lo + 1);
  }
  chance(p) {
    return this.next() < p;
  }
  pick(arr) {
    return arr[this.int(arr.length)];
  }
  bytes(n) {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** Sizes skewed towards small, with the boundaries 125/126/65535/65536. */
  size() {
    const r = this.int(10);
    if (r < 4) return this.int(126);
    if (r < 6) return this.pick([0, 1, 124, 125, 126, 127, 65535, 65536]);
    if (r < 9) return this.range(126, 4096);
    return this.range(4096, 70000);
  }
}

// ---------------------------------------------------------------------------
// Corpus: upgrade requests and frames
// ---------------------------------------------------------------------------

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

function handshakes(port) {
  const base = (lines, target = '/') =>
    Buffer.from(`GET ${target} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  const std = [
    `Host: ${HOST}:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${KEY}`,
    'Sec-WebSocket-Version: 13',
  ];
  return [
    base(std),
    base(std, '/chat?x=1&y=%20z'),
    base([...std, 'Sec-WebSocket-Protocol: acip, chat', 'Origin: http://example.com']),
    base([...std, 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits']),
    base([
      `host: ${HOST}`,
      'upgrade: WebSocket',
      'connection: keep-alive, Upgrade',
      `sec-websocket-key: ${KEY}`,
      'sec-websocket-version: 13',
      `X-Long: ${'a'.repeat(2000)}`,
    ]),
    base(std, '/%2e%2e/%00/%zz'),
    Buffer.from(`GET /health HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`),
    Buffer.from(`HEAD / HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`),
    Buffer.from(`POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\r\n\r\nhello`),
  ];
}

/** The fixed masking key of the fuzz's client frames (the byte stream depends only on the seed). */
const FUZZ_MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** A client frame: masked unless told otherwise; lenForm forces the 7/16/64-bit length form. */
function frame(opcode, payload, { fin, rsv, masked = true, lenForm, lenValue } = {}) {
  return encodeFrame({
    opcode,
    payload,
    fin,
    rsv,
    mask: masked ? FUZZ_MASK : false,
    announce: lenValue,
    lengthEncoding: lenForm,
  });
}

const BAD_UTF8 = [
  [0xc0, 0xaf], // overlong
  [0xe0, 0x80, 0xaf], // overlong
  [0xed, 0xa0, 0x80], // surrogate
  [0xf4, 0x90, 0x80, 0x80], // > U+10FFFF
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xce, 0xba, 0xe1], // truncated
  [0xff],
  [0x80],
].map((a) => Buffer.from(a));

function closePayload(rng) {
  const r = rng.int(6);
  if (r === 0) return Buffer.alloc(0);
  if (r === 1) return Buffer.from([0x03]); // 1 byte: invalid
  const code = rng.pick([
    1000, 1001, 1002, 1005, 1006, 1015, 999, 1016, 2999, 3000, 4999, 5000, 65535,
  ]);
  const reason = rng.chance(0.2) ? rng.pick(BAD_UTF8) : Buffer.from('x'.repeat(rng.int(130)));
  return Buffer.concat([Buffer.from([code >> 8, code & 0xff]), reason]);
}

function textPayload(rng, n) {
  if (rng.chance(0.15)) return Buffer.concat([Buffer.from('ok '), rng.pick(BAD_UTF8)]);
  const s = 'héllo wörld € 𝄞 ';
  return Buffer.from(s.repeat(Math.ceil(n / 20) + 1)).subarray(0, n);
}

/** A sequence of 1..8 frames, mostly valid RFC 6455 traffic, some deliberately not. */
function frameSequence(rng) {
  const out = [];
  const n = rng.range(1, 8);
  for (let i = 0; i < n; i++) {
    const r = rng.int(16);
    const size = rng.size();
    switch (r) {
      case 0:
      case 1:
        out.push(frame(1, textPayload(rng, Math.min(size, 4096))));
        break;
      case 2:
      case 3:
        out.push(frame(2, rng.bytes(size)));
        break;
      case 4: {
        // fragmented text, maybe with a control frame in between
        const parts = rng.range(2, 4);
        for (let k = 0; k < parts; k++) {
          out.push(frame(k === 0 ? 1 : 0, textPayload(rng, rng.int(40)), { fin: k === parts - 1 }));
          if (rng.chance(0.3)) out.push(frame(9, rng.bytes(rng.int(20))));
        }
        break;
      }
      case 5:
        out.push(frame(9, rng.bytes(rng.chance(0.9) ? rng.int(126) : rng.range(126, 300))));
        break;
      case 6:
        out.push(frame(10, rng.bytes(rng.int(126))));
        break;
      case 7:
        out.push(frame(8, closePayload(rng)));
        break;
      case 8:
        out.push(frame(0, rng.bytes(rng.int(50)), { fin: rng.chance(0.5) })); // stray continuation
        break;
      case 9:
        out.push(frame(rng.pick([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), rng.bytes(rng.int(10))));
        break;
      case 10:
        out.push(frame(rng.pick([1, 2, 9]), rng.bytes(rng.int(10)), { rsv: rng.range(1, 7) }));
        break;
      case 11:
        out.push(frame(2, rng.bytes(rng.int(100)), { masked: false })); // unmasked client frame
        break;
      case 12:
        out.push(frame(9, rng.bytes(rng.int(10)), { fin: false })); // fragmented control
        break;
      case 13: {
        // non-minimal or huge length fields
        const p = rng.bytes(rng.int(130));
        const form = rng.pick([16, 64]);
        out.push(frame(2, p, { lenForm: form }));
        break;
      }
      case 14: {
        // a length claimed larger than what follows (or than maxPayload, or with the top bit)
        const p = rng.bytes(rng.int(64));
        const lenValue = rng.pick([
          BigInt(MAX_PAYLOAD + 1),
          2n ** 32n,
          2n ** 63n - 1n,
          2n ** 63n,
          2n ** 64n - 1n,
          BigInt(p.length + rng.range(1, 1000)),
        ]);
        out.push(frame(rng.pick([1, 2, 0]), p, { lenForm: 64, lenValue }));
        break;
      }
      default:
        out.push(frame(1, Buffer.alloc(0))); // empty text
    }
  }
  return Buffer.concat(out);
}

const INTERESTING = [0x00, 0xff, 0x7f, 0x80, 0x7e, 0x81, 0x88, 0x89, 0x8a, 0x0d, 0x0a, 0x3a, 0x20];

/** Apply 1..k random mutations. `pool` supplies the other input for splices. */
function mutate(rng, buf, pool, k = 3) {
  let b = Buffer.from(buf);
  const rounds = rng.range(1, k);
  for (let r = 0; r < rounds; r++) {
    if (b.length === 0) b = rng.bytes(rng.range(1, 16));
    const at = rng.int(b.length);
    switch (rng.int(9)) {
      case 0: {
        // bit flips
        const flips = rng.range(1, 8);
        for (let i = 0; i < flips; i++) b[rng.int(b.length)] ^= 1 << rng.int(8);
        break;
      }
      case 1: // truncation
        b = b.subarray(0, at);
        break;
      case 2: {
        // splice: our prefix + another input's suffix
        const other = rng.pick(pool);
        b = Buffer.concat([b.subarray(0, at), other.subarray(rng.int(other.length + 1))]);
        break;
      }
      case 3: // insertion
        b = Buffer.concat([b.subarray(0, at), rng.bytes(rng.range(1, 32)), b.subarray(at)]);
        break;
      case 4: // deletion
        b = Buffer.concat([
          b.subarray(0, at),
          b.subarray(Math.min(b.length, at + rng.range(1, 32))),
        ]);
        break;
      case 5: {
        // duplication of a range
        const end = Math.min(b.length, at + rng.range(1, 64));
        b = Buffer.concat([b.subarray(0, end), b.subarray(at, end), b.subarray(end)]);
        break;
      }
      case 6: // interesting bytes
        b[at] = rng.pick(INTERESTING);
        break;
      case 7: {
        // length field edit of a frame header found at `at` (treat any byte as a header)
        if (at + 1 < b.length) {
          const form = rng.int(3);
          b[at + 1] = (b[at + 1] & 0x80) | [rng.int(126), 126, 127][form];
        }
        break;
      }
      default: {
        // CRLF games in the text (handshakes): drop or double a line ending
        const i = b.indexOf('\r\n', at);
        if (i >= 0)
          b = rng.chance(0.5)
            ? Buffer.concat([b.subarray(0, i), b.subarray(i + 2)])
            : Buffer.concat([b.subarray(0, i), Buffer.from('\r\n\r\n'), b.subarray(i + 2)]);
      }
    }
  }
  return b;
}

// ---------------------------------------------------------------------------
// One fuzz connection
// ---------------------------------------------------------------------------

const stats = {
  conns: 0,
  bytesSent: 0,
  bytesReceived: 0,
  upgraded: 0,
  statusLines: new Map(),
  badStatusLines: [],
  resets: 0,
  connectErrors: 0,
  scenarios: new Map(),
};

/** Write `data` in random chunks (each a separate write, sometimes with a pause). */
async function writeChunked(rng, sock, data, stillOpen) {
  let off = 0;
  while (off < data.length && stillOpen()) {
    const n = rng.chance(0.3)
      ? data.length - off
      : rng.range(1, Math.max(1, Math.min(data.length - off, 2048)));
    sock.write(data.subarray(off, off + n));
    stats.bytesSent += n;
    off += n;
    if (rng.chance(0.1)) await new Promise((r) => setTimeout(r, rng.int(5)));
  }
}

function fuzzConnection(rng, port, corpus) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port });
    let open = true;
    let received = Buffer.alloc(0);
    let headSeen = false;
    let upgradedResolve;
    const upgraded = new Promise((r) => {
      upgradedResolve = r;
    });
    stats.conns++;
    const finish = () => {
      if (!open) return;
      open = false;
      upgradedResolve(false);
      resolve();
    };
    sock.on('error', () => {});
    sock.on('close', finish);
    sock.on('data', (d) => {
      stats.bytesReceived += d.length;
      if (headSeen) return;
      received = Buffer.concat([received, d]);
      const end = received.indexOf('\r\n');
      if (end < 0 && received.length < 64) return;
      headSeen = true;
      const line = received.subarray(0, end < 0 ? 64 : end).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})(?: .*)?$/.exec(line);
      if (!m) {
        if (stats.badStatusLines.length < 10) stats.badStatusLines.push(JSON.stringify(line));
      } else {
        stats.statusLines.set(m[1], (stats.statusLines.get(m[1]) ?? 0) + 1);
        if (m[1] === '101') {
          stats.upgraded++;
          upgradedResolve(true);
        }
      }
      upgradedResolve(false);
    });

    // Hang up after a random time; most hang-ups are RSTs (no TIME_WAIT left behind).
    const lifetime = rng.range(10, 400);
    const hangup = setTimeout(() => {
      if (!open) return;
      if (rng.chance(0.8)) {
        stats.resets++;
        sock.resetAndDestroy();
      } else sock.end();
      // A half-closed socket the server never closes must not outlive the run.
      setTimeout(() => sock.destroy(), 3000).unref();
    }, lifetime);
    hangup.unref();

    sock.once('connect', async () => {
      const scenario = rng.int(6);
      stats.scenarios.set(scenario, (stats.scenarios.get(scenario) ?? 0) + 1);
      const stillOpen = () => open && !sock.destroyed;
      try {
        if (scenario === 0) {
          // random bytes
          await writeChunked(rng, sock, rng.bytes(rng.range(1, 3000)), stillOpen);
        } else if (scenario === 1) {
          // mutated handshake (then some frames if it was accepted anyway)
          const hs = mutate(rng, rng.pick(corpus.handshakes), corpus.handshakes, 4);
          await writeChunked(rng, sock, hs, stillOpen);
          if (await withTimeout(upgraded, 1000, 'fuzz 101').catch(() => false))
            await writeChunked(rng, sock, frameSequence(rng), stillOpen);
        } else {
          // valid handshake, then valid / mutated frame sequences
          await writeChunked(rng, sock, rng.pick(corpus.handshakes.slice(0, 5)), stillOpen);
          const ok = await withTimeout(upgraded, 2000, 'fuzz 101').catch(() => false);
          if (!ok) return;
          const rounds = rng.range(1, 4);
          for (let i = 0; i < rounds && stillOpen(); i++) {
            let seq = frameSequence(rng);
            if (scenario >= 3) seq = mutate(rng, seq, corpus.frames, 4);
            if (corpus.frames.length < 64) corpus.frames.push(seq.subarray(0, 4096));
            else corpus.frames[rng.int(corpus.frames.length)] = seq.subarray(0, 4096);
            await writeChunked(rng, sock, seq, stillOpen);
          }
        }
      } catch {
        /* the server hung up mid-write */
      }
    });
    sock.once('error', (err) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'EADDRNOTAVAIL') stats.connectErrors++;
    });
  });
}

function timeWait() {
  try {
    const m = /^TCP:.*\btw (\d+)/m.exec(fs.readFileSync('/proc/net/sockstat', 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------
// Control clients: a round trip every 200 ms, each must succeed within 2 s
// ---------------------------------------------------------------------------

function controlLoop(name, send, nextReply, stopAt) {
  const result = { name, ok: 0, failures: [], maxRttMs: 0, maxGapMs: 0 };
  const run = async () => {
    let i = 0;
    let lastOk = performance.now();
    while (Date.now() < stopAt) {
      const started = performance.now();
      const payload = `${name} ${i++} ${'z'.repeat(i % 100)}`;
      try {
        const reply = nextReply();
        send(payload);
        const got = await withTimeout(reply, CONTROL_DEADLINE_MS, `${name} round trip #${i}`);
        if (got !== payload) throw new Error(`${name} #${i}: echo mismatch`);
        const now = performance.now();
        result.ok++;
        result.maxRttMs = Math.max(result.maxRttMs, now - started);
        result.maxGapMs = Math.max(result.maxGapMs, now - lastOk);
        lastOk = now;
      } catch (err) {
        result.failures.push(err.message);
        if (result.failures.length > 5) break;
      }
      const wait = CONTROL_EVERY_MS - (performance.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    return result;
  };
  return run();
}

// ---------------------------------------------------------------------------

test(`fuzz: ${SECONDS} s, ${PARALLEL} sockets in parallel, seed ${SEED}`, async () => {
  process.stdout.write(
    `\n  [note] fuzz seed ${SEED} (repeat with FUZZ_SEED=${SEED}), ${SECONDS} s\n`,
  );

  // Warm up (native context, libuv's reserved EMFILE fd) before taking the fd baseline.
  {
    const s = await lws.listen({ host: HOST, port: 0 });
    const w = await wsConnect(`ws://${HOST}:${s.port}/`);
    w.close();
    await withTimeout(w.closed, 5000, 'warm-up close');
    await s.close();
  }
  await new Promise((r) => setTimeout(r, 50));
  const baseline = { fds: openFds(), threads: threadCount(), describe: describeFds() };

  const server = await lws.listen({
    host: HOST,
    port: 0,
    maxPayload: MAX_PAYLOAD,
    handshakeTimeoutMs: 1500,
    closeTimeoutMs: 1000,
    maxHeaderBytes: 8192,
    protocols: ['acip', 'chat'],
  });
  let serverConns = 0;
  let connErrors = 0;
  server.on('connection', (conn) => {
    serverConns++;
    conn.on('error', () => {
      connErrors++;
    });
    conn.on('message', (data, isBinary) => {
      if (conn.isOpen) conn.send(data, isBinary);
    });
  });
  const port = server.port;

  // Control clients.
  const stopAt = Date.now() + SECONDS * 1000;
  const lc = await lws.connect(`ws://${HOST}:${port}/control`);
  const lcClosed = once(lc, 'close');
  const lwsQueue = [];
  lc.on('message', (d) => lwsQueue.shift()?.(typeof d === 'string' ? d : d.toString()));
  const wc = await wsConnect(`ws://${HOST}:${port}/control`);
  const wsQueue = [];
  wc.on('message', (d) => wsQueue.shift()?.(d.toString()));
  const controls = Promise.all([
    controlLoop(
      'node-lws',
      (p) => lc.send(p),
      () => new Promise((r) => lwsQueue.push(r)),
      stopAt,
    ),
    controlLoop(
      'ws',
      (p) => wc.send(p),
      () => new Promise((r) => wsQueue.push(r)),
      stopAt,
    ),
  ]);

  // Fuzzers.
  const corpus = { handshakes: handshakes(port), frames: [] };
  for (let i = 0; i < 16; i++) corpus.frames.push(frameSequence(new Rng(SEED + i)));
  let throttled = 0;
  const workers = Array.from({ length: PARALLEL }, async (_, w) => {
    const rng = new Rng((SEED + 0x9e3779b9 * (w + 1)) >>> 0);
    while (Date.now() < stopAt) {
      if (timeWait() > 10000) {
        throttled++;
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      await fuzzConnection(rng, port, corpus);
    }
  });
  await Promise.all(workers);
  const results = await controls;

  const scen = [...stats.scenarios.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([k, v]) => `${k}:${v}`);
  const codes = [...stats.statusLines.entries()].sort().map(([k, v]) => `${k}:${v}`);
  process.stdout.write(
    `  [note] ${stats.conns} fuzz connections (${(stats.conns / SECONDS).toFixed(0)}/s; scenarios ${scen.join(' ')}), ` +
      `${(stats.bytesSent / 1048576).toFixed(1)} MiB sent, ${(stats.bytesReceived / 1048576).toFixed(1)} MiB received, ` +
      `HTTP status ${codes.join(' ')}, ${serverConns} server connections, ${connErrors} protocol 'error' events, ` +
      `${stats.resets} RST hang-ups${throttled ? `, throttled ${throttled}x for TIME_WAIT` : ''}\n`,
  );
  for (const r of results)
    process.stdout.write(
      `  [note] control ${r.name}: ${r.ok} round trips, max RTT ${r.maxRttMs.toFixed(1)} ms, max gap ${r.maxGapMs.toFixed(1)} ms\n`,
    );

  for (const r of results) {
    assert.equal(r.failures, [], `control client ${r.name} round trips failed (seed ${SEED})`);
    assert.ok(
      r.ok >= Math.floor((SECONDS * 1000) / CONTROL_EVERY_MS / 2),
      `${r.name}: too few round trips (${r.ok})`,
    );
  }
  assert.equal(stats.badStatusLines, [], `malformed HTTP status lines (seed ${SEED})`);
  assert.is(stats.connectErrors, 0, 'fuzz connects refused: the server stopped listening?');
  assert.ok(stats.upgraded > 0, 'no fuzz connection was ever upgraded');

  // The server still works for a fresh client.
  const fresh = await lws.connect(`ws://${HOST}:${port}/after`);
  const reply = once(fresh, 'message');
  fresh.send('after the storm');
  assert.is((await withTimeout(reply, 5000, 'fresh echo'))[0], 'after the storm');
  fresh.close();

  // Everything down: fds back to the baseline.
  lc.close();
  await withTimeout(lcClosed, 5000, 'control client close');
  wc.close();
  await withTimeout(wc.closed, 5000, 'ws control close');
  await withTimeout(server.close(), 10_000, 'server.close() after fuzzing');
  await waitFor(() => openFds() === baseline.fds && threadCount() === baseline.threads, {
    timeout: 10_000,
    interval: 20,
    label: `fds back to ${baseline.fds} and threads to ${baseline.threads}`,
    describe: () =>
      `fds ${openFds()} threads ${threadCount()}; at baseline: ${baseline.describe}; now: ${describeFds()}`,
  });
});

test.after(exitWatchdog);
test.run();
