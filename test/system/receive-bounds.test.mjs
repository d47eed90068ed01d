// No single peer can take the process: what one peer can make a node-lws receiver hold or do
// is bounded, measured against ws in the same run.
//
// The receiver runs in its own process (test/fixtures/bounds-victim.mjs) so that its peak RSS
// (VmHWM) is its own; a latency probe (test/fixtures/echo-probe.mjs), also in its own
// process, sends an echo every 20 ms on a separate connection while an attack runs.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import zlib from 'node:zlib';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocketServer } from 'ws';
import * as lws from '../../dist/index.mjs';
import { ROOT } from '../support/paths.mjs';
import { encodeFrame, OP, rawWsUpgrade } from '../support/raw-ws.mjs';
import { cleanupsAfterEach, note } from '../support/suite.mjs';
import { waitFor, withTimeout } from '../support/wait.mjs';
import { wsConnect } from '../support/ws-client.mjs';

const VICTIM = path.join(ROOT, 'test', 'fixtures', 'bounds-victim.mjs');
const PROBE = path.join(ROOT, 'test', 'fixtures', 'echo-probe.mjs');
const MiB = 1024 * 1024;
const cleanups = cleanupsAfterEach(test);

// ---- processes ------------------------------------------------------------------------------

function procStatus(pid) {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Starts the receiving process; resolves once it listens (or is connected). */
async function startVictim(cfg) {
  const child = spawn(process.execPath, [VICTIM, JSON.stringify(cfg)], {
    stdio: ['pipe', 'pipe', 'inherit'],
    cwd: ROOT,
  });
  const replies = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line);
    const w = waiters.shift();
    if (w) w(msg);
    else replies.push(msg);
  });
  const next = (label) =>
    withTimeout(
      new Promise((resolve) => {
        const r = replies.shift();
        if (r) resolve(r);
        else waiters.push(resolve);
      }),
      60_000,
      `victim: ${label}`,
    );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  cleanups.push(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  });
  const ready = await next('ready');
  return {
    child,
    ...ready,
    next,
    /** Sends a command and resolves with its (first) reply. */
    cmd(obj) {
      child.stdin.write(`${JSON.stringify(obj)}\n`);
      return next(obj.cmd);
    },
    status: () => procStatus(child.pid),
    /** Ends the process and waits for it to exit. */
    stop() {
      child.stdin.write('{"cmd":"exit"}\n');
      return withTimeout(exited, 10_000, 'victim exit');
    },
  };
}

function startProbe(port, durationMs) {
  const child = spawn(
    process.execPath,
    [PROBE, `ws://127.0.0.1:${port}/echo`, '20', String(durationMs)],
    { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT },
  );
  cleanups.push(() => child.exitCode === null && child.kill('SIGKILL'));
  return withTimeout(
    new Promise((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      child.once('exit', (code) =>
        code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`probe exited ${code}`)),
      );
    }),
    durationMs + 30_000,
    'latency probe',
  );
}

function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function assertLatency(probe, label) {
  const median = percentile(probe.rtts, 50);
  const p95 = percentile(probe.rtts, 95);
  const p99 = percentile(probe.rtts, 99);
  const max = Math.max(...probe.rtts);
  note(
    `${label}: probe ${probe.rtts.length} echoes, median ${median.toFixed(2)} ms, p95 ${p95.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${max.toFixed(2)} ms`,
  );
  assert.ok(probe.rtts.length >= 20, `${label}: the probe got ${probe.rtts.length} echoes`);
  assert.ok(median < 2, `${label}: echo median ${median.toFixed(2)} ms (must stay under 2 ms)`);
  assert.ok(p99 < 20, `${label}: echo p99 ${p99.toFixed(2)} ms (must stay under 20 ms)`);
}

const mib = (b) => `${(b / MiB).toFixed(1)} MiB`;

// ---- senders --------------------------------------------------------------------------------

/** A 1 KiB binary message carrying a sequence number. */
function seqMessage(seq) {
  const buf = Buffer.alloc(1024, seq & 0xff);
  buf.writeUInt32LE(seq, 0);
  return buf;
}

/**
 * Sends numbered 1 KiB messages on `ws` (a ws client or a ws server-side socket) as fast as
 * TCP allows for `ms`: it keeps at most `cap` bytes in ws's own buffer, so what the receiver
 * does not read piles up in the sender's bufferedAmount. Resolves when everything is written.
 */
async function flood(ws, ms, cap = 16 * MiB) {
  let seq = 0;
  let maxBuffered = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    while (ws.bufferedAmount < cap && performance.now() < end) ws.send(seqMessage(seq++));
    maxBuffered = Math.max(maxBuffered, ws.bufferedAmount);
    await new Promise((r) => setImmediate(r));
  }
  await waitFor(() => ws.bufferedAmount === 0, {
    timeout: 60_000,
    interval: 20,
    label: 'the sender to write everything',
  });
  return { sent: seq, maxBuffered };
}

async function waitDelivered(victim, expected, label) {
  let last;
  await waitFor(
    async () => {
      last = await victim.cmd({ cmd: 'stats' });
      return last.messages >= expected;
    },
    { timeout: 60_000, interval: 50, label, describe: () => JSON.stringify(last) },
  );
  return last;
}

// ---- one fast sender ------------------------------------------------------------------------

test('one fast sender to a server with a slow handler: memory within ws + 32 MiB, all delivered in order, TCP pushes back', async () => {
  const peaks = {};
  for (const impl of ['ws', 'lws']) {
    const victim = await startVictim({ impl, role: 'server', handlerUs: 50 });
    const ws = await wsConnect(`ws://127.0.0.1:${victim.port}/flood`);
    const { sent, maxBuffered } = await flood(ws, 3000);
    const stats = await waitDelivered(victim, sent, `${impl}: every message delivered`);
    peaks[impl] = victim.status().hwm;
    note(
      `${impl}: ${sent} messages, sender's bufferedAmount up to ${mib(maxBuffered)}, receiver peak RSS ${mib(peaks[impl])}`,
    );
    assert.is(stats.messages, sent, `${impl}: messages delivered`);
    assert.is(stats.outOfOrder, 0, `${impl}: messages out of order or missing`);
    if (impl === 'lws')
      assert.ok(
        maxBuffered >= MiB,
        `the sender never saw TCP backpressure (bufferedAmount peaked at ${mib(maxBuffered)})`,
      );
    ws.close();
    await victim.stop();
  }
  assert.ok(
    peaks.lws <= peaks.ws + 32 * MiB,
    `node-lws receiver peaked at ${mib(peaks.lws)}; ws at ${mib(peaks.ws)} (+32 MiB allowed)`,
  );
});

test('a server flooding a client: client memory within ws + 32 MiB, all delivered in order, TCP pushes back', async () => {
  const peaks = {};
  for (const impl of ['ws', 'lws']) {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => wss.once('listening', r));
    cleanups.push(() => new Promise((r) => wss.close(r)));
    const conn = new Promise((r) => wss.once('connection', r));
    const victim = await startVictim({
      impl,
      role: 'client',
      handlerUs: 50,
      url: `ws://127.0.0.1:${wss.address().port}/`,
    });
    const ws = await withTimeout(conn, 5000, 'the victim client connects');
    const { sent, maxBuffered } = await flood(ws, 3000);
    const stats = await waitDelivered(victim, sent, `${impl} client: every message delivered`);
    peaks[impl] = victim.status().hwm;
    note(
      `${impl} client: ${sent} messages, server's bufferedAmount up to ${mib(maxBuffered)}, client peak RSS ${mib(peaks[impl])}`,
    );
    assert.is(stats.outOfOrder, 0, `${impl}: messages out of order or missing`);
    if (impl === 'lws')
      assert.ok(maxBuffered >= MiB, `no TCP backpressure (peak ${mib(maxBuffered)})`);
    ws.terminate();
    await victim.stop();
  }
  assert.ok(
    peaks.lws <= peaks.ws + 32 * MiB,
    `node-lws client peaked at ${mib(peaks.lws)}; ws at ${mib(peaks.ws)} (+32 MiB allowed)`,
  );
});

// ---- many senders while JavaScript is blocked ------------------------------------------------

test('1,000 connections flooding while the event loop is blocked for 2 s: RSS within the total limit + a constant; all delivered after', async () => {
  const victim = await startVictim({ impl: 'lws', role: 'server', handlerUs: 0 });
  const senders = [];
  for (let i = 0; i < 1000; i += 50) {
    const batch = [];
    for (let j = i; j < i + 50; j++) batch.push(lws.connect(`ws://127.0.0.1:${victim.port}/many`));
    senders.push(...(await Promise.all(batch)));
  }
  cleanups.push(() => {
    for (const s of senders) s.terminate();
  });
  await waitFor(async () => (await victim.cmd({ cmd: 'stats' })).conns === 1000, {
    timeout: 20_000,
    interval: 50,
    label: '1,000 connections on the victim',
  });
  // Block the victim's JavaScript first, then flood it; watch its memory from here.
  await victim.cmd({ cmd: 'block', ms: 2000 });
  const before = victim.status().rss;
  let stop = false;
  let sent = 0;
  const seqs = senders.map(() => 0);
  const pump = () => {
    if (stop) return;
    for (let k = 0; k < senders.length; k++) {
      const s = senders[k];
      while (s.bufferedAmount < 64 * 1024) {
        s.send(seqMessage(seqs[k]++));
        sent++;
      }
    }
    setImmediate(pump);
  };
  pump();
  let maxRss = 0;
  const sampler = setInterval(() => {
    maxRss = Math.max(maxRss, victim.status().rss);
  }, 10);
  const blocked = await victim.next('the end of the block');
  clearInterval(sampler);
  stop = true;
  for (const s of senders)
    await waitFor(() => s.bufferedAmount === 0, { timeout: 60_000, label: 'senders drained' });
  const stats = await waitDelivered(victim, sent, 'every message of 1,000 senders');
  const growth = maxRss - before;
  note(
    `1,000 senders, event loop blocked 2 s: RSS ${mib(before)} -> max ${mib(maxRss)} (+${mib(growth)}); at the end of the block ${mib(blocked.receivePending)} pending, ${mib(blocked.pooled)} pooled; ${stats.messages} messages, ${sent} sent`,
  );
  assert.is(stats.messages, sent, 'every message delivered once the loop is free');
  assert.is(stats.outOfOrder, 0, 'in order');
  assert.ok(
    growth <= 64 * MiB + 48 * MiB,
    `RSS grew by ${mib(growth)} while blocked (total limit 64 MiB + 48 MiB allowed)`,
  );
});

// ---- pause and heartbeats ---------------------------------------------------------------------

test('pause(): a paused connection with heartbeats outlives the pong timeout; messages wait for resume(); a silent peer is still dropped', async () => {
  const server = await lws.listen({
    host: '127.0.0.1',
    port: 0,
    heartbeat: { intervalMs: 100, timeoutMs: 100 },
  });
  cleanups.push(() => server.close());
  const connP = new Promise((r) => server.once('connection', r));
  const ws = await wsConnect(`ws://127.0.0.1:${server.port}/`);
  cleanups.push(() => ws.terminate());
  const conn = await connP;
  const got = [];
  conn.on('message', (d) => got.push(d.toString()));
  conn.pause();
  assert.ok(conn.isPaused, 'isPaused after pause()');
  for (let i = 0; i < 5; i++) ws.send(`m${i}`);
  // Hold the pause for six heartbeat timeouts: the pause itself is what is tested here.
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(got, [], 'no message while paused');
  assert.ok(conn.isOpen, 'still open after 600 ms paused with a 100 ms pong timeout');
  const closed = new Promise((r) => conn.once('close', () => r(true)));
  conn.resume();
  assert.not.ok(conn.isPaused, 'isPaused after resume()');
  await waitFor(() => got.length === 5, { label: 'the 5 messages after resume()' });
  assert.equal(got, ['m0', 'm1', 'm2', 'm3', 'm4'], 'messages in order after resume()');
  const echo = new Promise((r) => ws.once('message', (d) => r(d.toString())));
  conn.send('still here');
  assert.is(await withTimeout(echo, 2000, 'a message after resume()'), 'still here');
  // Five more intervals of normal service: the ws client answers the pings.
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(conn.isOpen, 'open after 5 more intervals');

  // A raw peer that never answers pings is still dropped.
  const connP2 = new Promise((r) => server.once('connection', r));
  const peer = await rawWsUpgrade(server.port);
  cleanups.push(() => peer.socket.destroy());
  const conn2 = await connP2;
  const [code] = await withTimeout(
    new Promise((r) => conn2.once('close', (...a) => r(a))),
    3000,
    'the silent peer dropped',
  );
  assert.is(code, 1006, 'silent peer closed with 1006');
  assert.not.ok(await Promise.race([closed, false]), 'the paused connection was never closed');
});

test('the async iterator pauses reading by itself: a slow consumer holds at most receiveHighWaterMark', async () => {
  const server = await lws.listen({ host: '127.0.0.1', port: 0, receiveHighWaterMark: 64 * 1024 });
  cleanups.push(() => server.close());
  const connP = new Promise((r) => server.once('connection', r));
  const ws = await wsConnect(`ws://127.0.0.1:${server.port}/`);
  cleanups.push(() => ws.terminate());
  const conn = await connP;
  const it = conn[Symbol.asyncIterator]();
  // The sender writes 8 MiB; the consumer takes one message every tick of the test.
  const sending = flood(ws, 300, 8 * MiB);
  let seq = 0;
  let peakBuffered = 0;
  const taken = [];
  while (true) {
    const r = await withTimeout(it.next(), 10_000, `message ${seq}`);
    assert.not.ok(r.done, 'iterator ended early');
    const n = r.value.data.readUInt32LE(0);
    assert.is(n, seq, 'in order');
    seq++;
    taken.push(n);
    const t0 = process.hrtime.bigint();
    while (process.hrtime.bigint() - t0 < 20_000n); // a slow consumer: 20 µs a message
    peakBuffered = Math.max(peakBuffered, ws.bufferedAmount);
    if (seq % 500 === 0) await new Promise((r) => setImmediate(r));
    const { sent } = await Promise.race([sending, { sent: -1 }]);
    if (sent === seq) break;
  }
  note(`iterator: ${seq} messages taken, sender's bufferedAmount up to ${mib(peakBuffered)}`);
  assert.ok(peakBuffered > 256 * 1024, 'the slow iterator pushed back on the sender');
  await it.return();
});

// ---- attacks with a latency probe beside them -----------------------------------------------

test('ping flood (1M pings, pongs never read): memory within ws + 32 MiB, others keep their latency', async () => {
  const peaks = {};
  const N = 1_000_000;
  const ping = encodeFrame({ opcode: OP.ping, payload: Buffer.alloc(0) });
  const burst = Buffer.concat(Array.from({ length: 10_000 }, () => ping));
  for (const impl of ['ws', 'lws']) {
    const victim = await startVictim({ impl, role: 'server' });
    const probe = startProbe(victim.port, 3000);
    const peer = await rawWsUpgrade(victim.port);
    cleanups.push(() => peer.socket.destroy());
    peer.socket.pause(); // never read the pongs
    // Write the pings as fast as the receiver takes them, for at most 3 s (a receiver that
    // stops reading - ws does, once its pongs back up - stops the attack there).
    const t0 = performance.now();
    let written = 0;
    while (written < N && performance.now() - t0 < 3000) {
      written += burst.length / ping.length;
      if (!peer.socket.write(burst)) {
        const drained = await Promise.race([
          new Promise((r) => peer.socket.once('drain', () => r(true))),
          new Promise((r) => setTimeout(r, Math.max(1, 3000 - (performance.now() - t0)), false)),
        ]);
        if (!drained) break;
      }
    }
    let last;
    if (impl === 'lws') {
      await waitFor(
        async () => {
          last = await victim.cmd({ cmd: 'stats' });
          return last.pings >= N;
        },
        {
          timeout: 60_000,
          interval: 50,
          label: '1M pings received',
          describe: () => JSON.stringify(last),
        },
      );
    }
    const result = await probe;
    last = await victim.cmd({ cmd: 'stats' });
    peaks[impl] = victim.status().hwm;
    note(
      `${impl}: ${written} pings written by the attacker in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${last.pings} received, peak RSS ${mib(peaks[impl])}`,
    );
    if (impl === 'lws') {
      assert.is(written, N, 'node-lws took every ping');
      assertLatency(result, 'ping flood');
    }
    peer.socket.destroy();
    await victim.stop();
  }
  assert.ok(
    peaks.lws <= peaks.ws + 32 * MiB,
    `ping flood: node-lws peaked at ${mib(peaks.lws)}, ws at ${mib(peaks.ws)} (+32 MiB allowed)`,
  );
});

function upgradeRequest(port, extra = '') {
  const key = crypto.randomBytes(16).toString('base64');
  return (
    `GET /flood HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`
  );
}

test('data behind an upgrade while verify() is pending is not read: memory within ws + 32 MiB; delivered after', async () => {
  const peaks = {};
  const CONNS = 10;
  const PER_CONN = 16 * MiB;
  const frames = [];
  for (let seq = 0; seq < PER_CONN / 1024; seq++)
    frames.push(encodeFrame({ opcode: OP.binary, payload: seqMessage(seq) }));
  const body = Buffer.concat(frames);
  for (const impl of ['ws', 'lws']) {
    const victim = await startVictim({ impl, role: 'server', holdVerify: true });
    const idle = victim.status().rss;
    const sockets = [];
    for (let i = 0; i < CONNS; i++) {
      const s = net.connect(victim.port, '127.0.0.1');
      await new Promise((r, j) => s.once('connect', r).once('error', j));
      s.on('error', () => {});
      s.resume();
      s.write(upgradeRequest(victim.port));
      s.write(body);
      sockets.push(s);
      cleanups.push(() => s.destroy());
    }
    // Wait until the senders are stuck (what the victim does not read stays in their buffers).
    let lastPending = -1;
    await waitFor(
      () => {
        const pending = sockets.reduce((n, s) => n + s.writableLength, 0);
        const still = pending === lastPending;
        lastPending = pending;
        return still || pending === 0;
      },
      { timeout: 30_000, interval: 300, label: 'the senders to stop making progress' },
    );
    // The attack: everything that is not read sits behind the pending upgrades. Others are
    // served meanwhile.
    const result = await startProbe(victim.port, 3000);
    const held = victim.status().rss - idle;
    await victim.cmd({ cmd: 'release' });
    await waitDelivered(victim, (CONNS * PER_CONN) / 1024, `${impl}: every frame after verify`);
    peaks[impl] = victim.status().hwm;
    note(
      `${impl}: ${CONNS} × ${mib(PER_CONN)} behind pending upgrades: held +${mib(held)} while pending (${mib(lastPending)} left with the senders), peak RSS ${mib(peaks[impl])}`,
    );
    if (impl === 'lws') {
      assert.ok(held < 32 * MiB, `node-lws read ${mib(held)} while verify() was pending`);
      assertLatency(result, 'pending verify');
    }
    for (const s of sockets) s.destroy();
    await victim.stop();
  }
  assert.ok(
    peaks.lws <= peaks.ws + 32 * MiB,
    `pending verify: node-lws peaked at ${mib(peaks.lws)}, ws at ${mib(peaks.ws)} (+32 MiB allowed)`,
  );
});

/** permessage-deflate bomb: a raw-deflated run of zeros, as one compressed masked frame. */
function bombFrame(bytes) {
  const z = zlib.deflateRawSync(Buffer.alloc(bytes), { level: 9 });
  const frame = encodeFrame({ opcode: OP.binary, payload: z });
  frame[0] |= 0x40; // RSV1: compressed
  return frame;
}

test('decompression bombs in a loop: each refused with 1009, others keep their latency', async () => {
  const bomb = bombFrame(256 * MiB); // 4 × maxPayload (64 MiB)
  const victim = await startVictim({ impl: 'lws', role: 'server', deflate: true });
  const probe = startProbe(victim.port, 3000);
  const end = performance.now() + 3000;
  let bombs = 0;
  while (performance.now() < end) {
    const peer = await rawWsUpgrade(victim.port, {
      headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate' },
    });
    assert.match(peer.head.headers['sec-websocket-extensions'] ?? '', /permessage-deflate/);
    peer.socket.write(bomb);
    await withTimeout(peer.closed, 10_000, 'the bomb refused');
    const close = peer.frames.find((f) => f.opcode === OP.close);
    assert.ok(close, 'a close frame before TCP closed');
    assert.is(close.payload.readUInt16BE(0), 1009, 'close code 1009');
    bombs++;
  }
  const result = await probe;
  note(`${bombs} bombs of 256 MiB (compressed ${mib(bomb.length)}) in 3 s`);
  assertLatency(result, 'decompression bombs');
});

// ---- request heads that never end ----------------------------------------------------------

/** The victim's RSS once it stops moving (two reads 300 ms apart within 256 KiB). */
async function settledRss(victim, label) {
  let last = -1;
  let rss = 0;
  await waitFor(
    () => {
      rss = victim.status().rss;
      const still = Math.abs(rss - last) < 256 * 1024;
      last = rss;
      return still;
    },
    { timeout: 30_000, interval: 300, label },
  );
  return rss;
}

test('3,000 sockets each holding an unfinished 16 KB request head: node-lws holds its 8 MiB budget, not 48 MB; others keep their latency', async () => {
  const SOCKETS = 3000;
  const head = `GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(16_000)}`;
  const held = {};
  for (const impl of ['ws', 'lws']) {
    const victim = await startVictim({ impl, role: 'server' });
    const idle = victim.status().rss;
    const sockets = [];
    let closed = 0;
    const probe = impl === 'lws' ? startProbe(victim.port, 3000) : null;
    for (let i = 0; i < SOCKETS; i++) {
      const s = net.connect(victim.port, '127.0.0.1');
      s.on('error', () => {});
      s.on('close', () => closed++);
      s.resume();
      s.write(head);
      sockets.push(s);
      cleanups.push(() => s.destroy());
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => sockets.every((s) => s.writableLength === 0 && !s.connecting), {
      timeout: 30_000,
      interval: 50,
      label: `${impl}: every head written`,
    });
    if (impl === 'lws') {
      // The oldest are answered 503 and closed while the rest fit in 8 MiB.
      const fit = Math.floor((8 * MiB) / 16_000);
      await waitFor(() => closed >= SOCKETS - fit, {
        timeout: 30_000,
        interval: 50,
        label: `node-lws to refuse at least ${SOCKETS - fit} heads (${closed} closed)`,
      });
    }
    held[impl] = (await settledRss(victim, `${impl}: RSS to settle`)) - idle;
    note(
      `${impl}: ${SOCKETS} unfinished 16 KB heads: +${mib(held[impl])} of RSS, ${closed} sockets closed by the server`,
    );
    if (probe) assertLatency(await probe, 'unfinished request heads');
    for (const s of sockets) s.destroy();
    await victim.stop();
  }
  // 8 MiB of heads, plus what each accepted socket costs until handshakeTimeoutMs (~1.3 KB).
  assert.ok(held.lws < 20 * MiB, `node-lws held ${mib(held.lws)} for ${SOCKETS} heads`);
});

// ---- messages that never end ---------------------------------------------------------------

test('12 peers each sending 16 MiB of a 20 MiB message and stopping: node-lws holds its totalUnfinishedLimit, not 240 MiB; others keep their latency', async () => {
  const PEERS = 12;
  const LIMIT = 64 * MiB;
  const payload = Buffer.alloc(20 * MiB, 5);
  const frame = encodeFrame({ opcode: OP.binary, payload });
  const part = frame.subarray(0, 16 * MiB);
  const held = {};
  for (const impl of ['ws', 'lws']) {
    const victim = await startVictim({ impl, role: 'server', totalUnfinishedLimit: LIMIT });
    const idle = victim.status().rss;
    const probe = impl === 'lws' ? startProbe(victim.port, 3000) : null;
    const peers = [];
    for (let i = 0; i < PEERS; i++) {
      const peer = await rawWsUpgrade(victim.port);
      cleanups.push(() => peer.destroy());
      peer.socket.write(part);
      peers.push(peer);
    }
    await waitFor(() => peers.every((p) => p.socket.writableLength === 0 || p.isClosed), {
      timeout: 30_000,
      interval: 50,
      label: `${impl}: every part written`,
    });
    held[impl] = (await settledRss(victim, `${impl}: RSS to settle`)) - idle;
    const refused = peers.filter((p) =>
      p.frames.some((f) => f.opcode === OP.close && f.payload.readUInt16BE(0) === 1013),
    ).length;
    note(
      `${impl}: ${PEERS} × 16 MiB of unfinished 20 MiB messages: +${mib(held[impl])} of RSS, ${refused} closed with 1013`,
    );
    if (impl === 'lws') {
      // 20 MiB is held per message from its header on: three fit in 64 MiB.
      assert.ok(refused >= PEERS - 3, `${refused} of ${PEERS} closed with 1013`);
      assertLatency(await probe, 'unfinished messages');
    }
    for (const p of peers) p.destroy();
    await victim.stop();
  }
  assert.ok(held.lws < LIMIT + 32 * MiB, `node-lws held ${mib(held.lws)} (limit ${mib(LIMIT)})`);
});

test.run();
