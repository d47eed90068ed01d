// The stress CLI (bin/node-lws-stress.js), run as a child process with short
// settings: JSON summaries are sane (every frame sent arrived, none lost or
// corrupt), each port mode and --processes work, a bad flag exits 2 with a
// one-line error and the usage, SIGINT stops cleanly with the summary so far,
// and an unexpected failure exits 1. The scenarios: --broadcast (with and
// without --drop, beside a slow client), --idle N, --flood (both directions,
// a ws receiver, the RSS limit, SIGINT). Also the frame codec's corruption checks.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../support/paths.mjs';
import { exitWatchdog } from '../support/suite.mjs';
import { withTimeout } from '../support/wait.mjs';

const CLI = path.join(ROOT, 'bin', 'node-lws-stress.js');
const require = createRequire(import.meta.url);
const frames = require('../../bin/stress/frames.js');
const procNetTcp = require('../../bin/stress/proc-net-tcp.js');

const children = new Set();

/**
 * Starts the CLI. Returns the child with `out` / `err` (text so far),
 * `exited` (promise of { code, signal }) and `errLine(pred)` (the next stderr
 * line matching pred).
 */
function startCli(args) {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.out = '';
  child.err = '';
  const waiters = [];
  let partial = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    child.out += d;
  });
  child.stderr.on('data', (d) => {
    child.err += d;
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop();
    for (const line of lines) {
      for (const w of [...waiters]) {
        if (w.pred(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.exited = new Promise((resolve) => {
    child.once('close', (code, signal) => {
      children.delete(child);
      for (const w of waiters.splice(0)) {
        w.reject(new Error(`CLI exited (${code ?? signal}) first; stderr: ${child.err}`));
      }
      resolve({ code, signal });
    });
  });
  child.errLine = (pred, ms, label) =>
    withTimeout(
      new Promise((resolve, reject) => waiters.push({ pred, resolve, reject })),
      ms,
      `${label}; stderr so far: ${child.err}`,
    );
  return child;
}

/** The CLI's arguments for `{ option: value }` (`true`: a flag without a value), in that order. */
function cliArgs(options) {
  return Object.entries(options).flatMap(([name, value]) =>
    value === true ? [`--${name}`] : [`--${name}`, String(value)],
  );
}

/** Runs the CLI to the end: { code, signal, out, err }. */
async function runCli(args, ms = 60_000) {
  const child = startCli(args);
  const { code, signal } = await withTimeout(child.exited, ms, `node-lws-stress ${args.join(' ')}`);
  return { code, signal, out: child.out, err: child.err };
}

/** Runs with --json and returns the parsed summary after checking exit code 0. */
async function runJson(args, ms) {
  const r = await runCli([...args, '--json'], ms);
  let summary;
  try {
    summary = JSON.parse(r.out);
  } catch {
    assert.unreachable(`stdout is not one JSON document: ${r.out}\nstderr: ${r.err}`);
  }
  assert.is(
    r.code,
    0,
    `exit code ${r.code}; failures: ${JSON.stringify(summary.failures)}; stderr: ${r.err}`,
  );
  return summary;
}

/** The checks every successful run must pass. */
function assertSane(s, label) {
  const ctx = `${label}: ${JSON.stringify({ cycles: s.cycles, frames: s.frames, failures: s.failures })}`;
  assert.is(s.tool, 'node-lws-stress', ctx);
  assert.is(s.ok, true, ctx);
  assert.is(s.exitCode, 0, ctx);
  assert.ok(s.cycles > 0, `no cycles: ${ctx}`);
  assert.is(s.cyclesFailed, 0, ctx);
  assert.ok(s.bind.ok > 0, ctx);
  assert.ok(s.connect.ok > 0, ctx);
  assert.equal(s.connect.failures, {}, ctx);
  assert.ok(s.frames.sent > 0, ctx);
  assert.is(s.frames.received, s.frames.sent, `frames received != sent: ${ctx}`);
  assert.is(s.frames.lost, 0, ctx);
  assert.is(s.frames.corrupt, 0, ctx);
  assert.is(s.frames.outOfOrder, 0, ctx);
  assert.is(s.failures.count, 0, ctx);
  for (const kind of ['audio', 'input']) {
    const k = s.frames.byKind[kind];
    assert.ok(k.sent > 0, `no ${kind} frames: ${ctx}`);
    assert.is(k.received, k.sent, `${kind}: ${ctx}`);
  }
  assert.type(s.latencyMs.p50, 'number', ctx);
  assert.type(s.latencyMs.p99, 'number', ctx);
  assert.ok(s.latencyMs.p50 >= 0 && s.latencyMs.p50 <= s.latencyMs.p99, ctx);
  assert.ok(s.latencyMs.p99 <= s.latencyMs.max, ctx);
  assert.ok(s.throughput.MBps > 0, ctx);
  assert.ok(s.throughput.bytesReceived > 0, ctx);
}

test.after.each(() => {
  for (const c of children) c.kill('SIGKILL');
});

test('--help prints the usage on stdout and exits 0', async () => {
  const r = await runCli(['--help']);
  assert.is(r.code, 0);
  assert.match(r.out, /^Usage: node-lws-stress \[options\]/);
  for (const flag of [
    '--duration',
    '--clients',
    '--port-range',
    '--same-port',
    '--processes',
    '--json',
    '--broadcast',
    '--drop',
    '--lend-messages',
    '--slow-clients',
    '--idle',
    '--flood',
    '--direction',
    '--handler-us',
    '--receiver',
    '--max-rss-mb',
  ]) {
    assert.ok(r.out.includes(flag), `usage lacks ${flag}`);
  }
  assert.is(r.err, '');
});

test('a bad flag: exit 2, one-line error, then the usage, on stderr only', async () => {
  const cases = [
    [['--bogus'], /unknown option '--bogus'/],
    [['--clients'], /--clients needs a value/],
    [['--clients', '0'], /--clients: 0 is not in 1\.\.1000/],
    [['--duration', 'soon'], /--duration: 'soon' is not a number/],
    [['--port-range', '60999-32768'], /--port-range/],
    [['--port-range', 'abc'], /--port-range/],
    [['--client', 'curl'], /--client: 'curl'/],
    [['--json=yes'], /--json takes no value/],
    [['stray'], /unexpected argument 'stray'/],
    [['--drop'], /--drop needs --broadcast/],
    [['--broadcast', '--max-backpressure', '65536'], /--max-backpressure needs --drop/],
    [['--slow-clients', '3', '--clients', '2'], /--slow-clients: 3 is more than --clients 2/],
    [['--slow-mbps', '2'], /--slow-mbps needs --slow-clients/],
    [['--idle', '-1'], /--idle: -1 is not in 0\.\.1000000/],
    [['--idle', '5', '--processes', '2'], /--idle runs in one process/],
    // More idle connections than this process may hold descriptors for.
    [['--idle', '1000000'], /--idle: 1000000 idle connections need about \d+ descriptors/],
    [['--flood', '--fps', '10'], /--fps does not apply to --flood/],
    [['--flood', '--broadcast'], /--broadcast does not apply to --flood/],
    [['--flood', '--direction', 'sideways'], /--direction: 'sideways' is not one of/],
    [['--flood', '--receiver', 'curl'], /--receiver: 'curl' is not one of node-lws, ws/],
    [
      ['--flood', '--receiver', 'ws', '--receive-hwm', '4096'],
      /--receive-hwm needs --receiver node-lws/,
    ],
    [['--flood', '--message-bytes', '10'], /--message-bytes: 10 is not in 64\.\./],
    [['--handler-us', '10'], /--handler-us needs --flood/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(args);
    const label = `${args.join(' ')} -> stderr ${JSON.stringify(r.err.slice(0, 200))}`;
    assert.is(r.code, 2, label);
    assert.is(r.out, '', label);
    const lines = r.err.split('\n');
    assert.match(lines[0], /^node-lws-stress: /, label);
    assert.match(lines[0], re, label);
    assert.is(lines[1], '', label);
    assert.match(lines[2], /^Usage: node-lws-stress/, label);
  }
});

test('defaults, shortened: every frame arrives, JSON only on stdout', async () => {
  const s = await runJson(['--duration', '3', '--clients', '2']);
  assertSane(s, 'port 0');
  assert.is(s.config.ports, 'zero');
  assert.is(s.config.clients, 2);
  assert.is(s.config.videoBytes, 307200);
  assert.is(s.config.fps, 60);
  assert.ok(s.frames.byKind.video.sent > 0);
  assert.is(s.frames.byKind.video.received, s.frames.byKind.video.sent);
  assert.is(s.connect.ok, s.bind.ok * 2);
  assert.ok(s.cycles >= 2, `cycles ${s.cycles}`);
  assert.is(s.bind.distinctPorts > 1, true);
  assert.is(s.interrupted, false);
  assert.ok(s.elapsedSec >= 2.5 && s.elapsedSec < 10, `elapsed ${s.elapsedSec}`);
  assert.is(s.histograms, undefined, 'histograms are for workers only');
});

test('--port-range inside the ephemeral range: explicit random ports', async () => {
  const s = await runJson(
    cliArgs({ duration: 3, clients: 2, 'cycle-ms': 300, 'port-range': '32768-60999' }),
  );
  assertSane(s, 'port range');
  assert.is(s.config.ports, 'range');
  assert.equal(s.config.portRange, [32768, 60999]);
  assert.ok(s.bind.distinctPorts >= 2, `distinct ports ${s.bind.distinctPorts}`);
  // A port another socket really held is not a failure; nothing else may fail.
  const failed = Object.values(s.bind.failures).reduce((a, b) => a + b, 0);
  assert.is(failed, s.bind.failuresExplained, JSON.stringify(s.bind));
  const eph = procNetTcp.ephemeralPortRange();
  if (eph[0] <= 32768 && eph[1] >= 60999) assert.is(s.bind.portsInEphemeralRange, s.bind.portsUsed);
});

test('--same-port re-binds one port every cycle', async () => {
  const s = await runJson(cliArgs({ duration: 3, clients: 2, 'cycle-ms': 300, 'same-port': true }));
  assertSane(s, 'same port');
  assert.is(s.config.ports, 'same');
  assert.ok(s.bind.ok >= 3, `listens ${s.bind.ok}`);
  assert.is(s.bind.distinctPorts, 1, JSON.stringify(s.bind));
});

test('--processes 2 runs two workers and adds up their summaries', async () => {
  const s = await runJson(['--duration', '3', '--clients', '2', '--processes', '2']);
  assertSane(s, 'processes 2');
  assert.is(s.config.processes, 2);
  assert.is(s.workers.length, 2);
  for (const w of s.workers) {
    assert.is(w.ok, true, JSON.stringify(w));
    assert.is(w.exitCode, 0, JSON.stringify(w));
    assert.ok(w.cycles > 0, JSON.stringify(w));
  }
  assert.is(
    s.cycles,
    s.workers.reduce((a, w) => a + w.cycles, 0),
  );
});

test('text mode: a human summary on stdout, plain progress lines on stderr', async () => {
  const r = await runCli(
    cliArgs({ duration: 1.5, clients: 1, 'cycle-ms': 500, 'progress-ms': 200, client: 'ws' }),
  );
  assert.is(r.code, 0, r.out + r.err);
  assert.match(r.out, /^node-lws-stress \S+: OK\n/);
  assert.match(r.out, /\n {2}frames +sent \d+, received \d+, lost 0, corrupt 0/);
  assert.match(r.out, /client ws/);
  assert.not.ok(r.err.includes('\r'), 'no redrawn line when stderr is not a terminal');
  assert.match(r.err, /^node-lws-stress: \d+\.\ds\/1\.5s cycles=\d+ frames=\d+ lost=0/m);
});

async function interrupt(args) {
  const child = startCli([...args, '--duration', '60', '--json', '--progress-ms', '100']);
  await child.errLine(
    (line) => /cycles=[1-9]\d* frames=[1-9]/.test(line),
    20_000,
    'a progress line with frames',
  );
  const t0 = performance.now();
  child.kill('SIGINT');
  const { code, signal } = await withTimeout(child.exited, 20_000, 'exit after SIGINT');
  const stopMs = performance.now() - t0;
  assert.is(signal, null, `killed by ${signal}`);
  let s;
  try {
    s = JSON.parse(child.out);
  } catch {
    assert.unreachable(`no JSON summary after SIGINT: ${child.out}\nstderr: ${child.err}`);
  }
  assert.is(code, 0, `exit ${code}: ${JSON.stringify(s.failures)}`);
  assert.is(s.interrupted, true);
  assertSane(s, 'interrupted');
  assert.ok(s.elapsedSec < 30, `elapsed ${s.elapsedSec}`);
  assert.ok(stopMs < 15_000, `took ${stopMs} ms to stop`);
  assert.match(child.err, /SIGINT: stopping/);
  return s;
}

test('SIGINT stops cleanly and prints the summary so far (exit 0)', async () => {
  await interrupt(['--clients', '2']);
});

test('SIGINT with --processes 2 stops every worker and still adds up', async () => {
  const s = await interrupt(['--clients', '2', '--processes', '2']);
  assert.is(s.workers.length, 2);
  for (const w of s.workers) assert.is(w.exitCode, 0, JSON.stringify(w));
});

test('an unexpected failure (cannot bind) exits 1 with the reason in the summary', async () => {
  // 192.0.2.1 (TEST-NET-1) is not a local address: bind fails with EADDRNOTAVAIL.
  const r = await runCli(['--host', '192.0.2.1', '--duration', '5', '--json']);
  assert.is(r.code, 1, r.err);
  const s = JSON.parse(r.out);
  assert.is(s.ok, false);
  assert.is(s.exitCode, 1);
  assert.ok(s.failures.count > 0);
  assert.ok(s.bind.failures.EADDRNOTAVAIL > 0, JSON.stringify(s.bind));
  assert.ok(s.failures.byKind['gave-up'] === 1, JSON.stringify(s.failures));
});

/** The checks every --broadcast run must pass: each subscriber got what was published to it. */
function assertBroadcast(s, label) {
  const b = s.broadcast;
  const ctx = `${label}: ${JSON.stringify(b)}`;
  assert.is(s.config.traffic, 'broadcast', ctx);
  assert.ok(b.published.video > 0 && b.published.audio > 0, ctx);
  // One subscription per client connection, each made before the cycle's first publish (the
  // server's 'connection' comes before the client's open): every publish is due to every client.
  assert.is(b.subscribers, s.connect.ok, ctx);
  assert.is(b.deliveries, (b.published.video + b.published.audio) * s.config.clients, ctx);
  assert.is(b.delivered + b.dropped + b.lost, b.deliveries, ctx);
  assert.is(b.lost, 0, ctx);
  assert.is(b.perSubscriber.withLosses, 0, ctx);
  for (const t of ['video', 'audio']) {
    assert.is(b.byTopic[t].published, b.published[t], ctx);
    assert.is(b.byTopic[t].lost, 0, ctx);
  }
}

test('--broadcast: frames published once reach every subscriber, a slow one too', async () => {
  const s = await runJson(
    cliArgs({ duration: 2.5, clients: 2, broadcast: true, 'slow-clients': 1, 'slow-mbps': 2 }),
  );
  assertSane(s, 'broadcast');
  assertBroadcast(s, 'broadcast');
  assert.is(s.config.drop, null);
  assert.is(s.config.slowClients, 1);
  // No drop policy: every delivery arrives, however slow the subscriber.
  assert.is(s.broadcast.dropped, 0);
  assert.is(s.broadcast.delivered, s.broadcast.deliveries);
  assert.is(s.frames.dropped, 0);
  assert.is(s.frames.byKind.video.received, s.broadcast.byTopic.video.delivered);
});

test('--broadcast --lend-messages: every frame lent to the handlers arrives intact, a slow subscriber too', async () => {
  const s = await runJson(
    cliArgs({
      duration: 2.5,
      clients: 2,
      broadcast: true,
      'lend-messages': true,
      'slow-clients': 1,
      'slow-mbps': 2,
    }),
  );
  assertSane(s, 'lend');
  assertBroadcast(s, 'lend');
  assert.is(s.config.lendMessages, true);
  assert.is(s.broadcast.delivered, s.broadcast.deliveries);
  assert.ok(s.frames.byKind.input.received > 0, 'input frames (lent on the server) arrived');
  assert.is(s.frames.byKind.input.received, s.frames.byKind.input.sent, 'every input frame');
});

test('--broadcast --drop: what node-lws drops for a slow subscriber is counted, not lost', async () => {
  const s = await runJson(
    cliArgs({
      duration: 2.5,
      clients: 2,
      broadcast: true,
      drop: true,
      'slow-clients': 1,
      'slow-mbps': 0.5,
    }),
  );
  assertSane(s, 'broadcast --drop');
  assertBroadcast(s, 'broadcast --drop');
  assert.equal(s.config.drop, {
    policy: 'drop',
    videoMaxBackpressure: 2 * (307200 + 32),
    maxBackpressure: 8 * (307200 + 32),
  });
  // The slow subscriber (0.5 MB/s against 18 MB/s of video) fell behind its bound.
  const b = s.broadcast;
  assert.ok(b.dropped > 0, JSON.stringify(b));
  assert.ok(b.perSubscriber.withDrops >= 1, JSON.stringify(b));
  assert.ok(b.perSubscriber.maxDropped > 0, JSON.stringify(b));
  assert.is(s.frames.dropped, b.dropped);
  assert.ok(b.byTopic.video.dropped > 0, JSON.stringify(b));
});

test('--idle N: idle connections beside the traffic, latency and CPU without and with them', async () => {
  const s = await runJson(['--duration', '2', '--clients', '1', '--fps', '10', '--idle', '300']);
  assertSane(s, 'idle');
  const i = s.idle;
  const ctx = JSON.stringify(i);
  assert.is(s.config.idle, 300);
  assert.is(i.connections, 300, ctx);
  assert.is(i.opened, 300, ctx);
  assert.is(i.failed, 0, ctx);
  assert.is(i.closedEarly, 0, ctx);
  assert.is(i.openAtEnd, 300, ctx);
  assert.is(i.holders, 1, ctx);
  assert.ok(i.fdLimit.soft >= 300, ctx);
  assert.ok(i.echo.sent > 0, ctx);
  assert.is(i.echo.received, i.echo.sent, ctx);
  assert.is(i.echo.lost, 0, ctx);
  for (const [name, idle] of [
    ['without', 0],
    ['with', 300],
  ]) {
    const p = i.phases[name];
    assert.is(p.idle, idle, ctx);
    assert.ok(p.seconds > 0.5, ctx);
    assert.ok(p.echoMs.count > 0, `${name}: no echo: ${ctx}`);
    assert.ok(p.echoMs.p50 > 0 && p.echoMs.p50 <= p.echoMs.p99, ctx);
    assert.ok(p.frameLatencyMs.count > 0, ctx);
    assert.type(p.cpuPercent, 'number', ctx);
  }
});

/** The checks of one flood direction. */
function assertFlood(d, s) {
  const ctx = `${d.direction}: ${JSON.stringify(d)}`;
  assert.is(d.ok, true, ctx);
  assert.ok(d.sent > 1000, ctx);
  assert.is(d.received, d.sent, ctx);
  assert.is(d.lost, 0, ctx);
  assert.is(d.corrupt, 0, ctx);
  assert.is(d.outOfOrder, 0, ctx);
  assert.type(d.drainMs, 'number', ctx);
  assert.is(d.receiver.exitCode, 0, ctx);
  assert.ok(d.receiver.pid > 0 && d.receiver.pid !== process.pid, ctx);
  assert.ok(d.receiver.peakRssMiB > 0 && d.receiver.peakRssMiB <= s.config.maxRssMiB, ctx);
  assert.ok(d.receiver.peakRssMiB >= d.receiver.rssBeforeMiB, ctx);
  // TCP backpressure reached the sender: send() returned false and it waited for 'drain'.
  assert.ok(d.sender.drainWaits > 0, ctx);
  assert.ok(d.sender.peakBufferedAmount > 0, ctx);
  assert.ok(d.queueDelayMs.p50 <= d.queueDelayMs.max, ctx);
}

test('--flood: both directions into a slow node-lws handler, nothing lost, memory bounded', async () => {
  const s = await runJson(['--flood', '--duration', '3', '--handler-us', '50']);
  assert.is(s.scenario, 'flood');
  assert.is(s.ok, true);
  assert.equal(
    s.flood.directions.map((d) => d.direction),
    ['to-server', 'to-client'],
  );
  for (const d of s.flood.directions) {
    assertFlood(d, s);
    assert.is(d.connections, 1);
    assert.is(d.receiver.library, 'node-lws');
    assert.type(d.receiver.peakReceivePendingMiB, 'number');
    assert.type(d.receiver.eventLoopMaxLagMs, 'number');
  }
  assert.is(s.frames.lost, 0);
  assert.is(s.frames.received, s.frames.sent);
  assert.is(s.failures.count, 0);
});

test('--flood --receiver ws, several connections: the same checks against ws', async () => {
  const s = await runJson(
    cliArgs({ flood: true, receiver: 'ws', direction: 'to-client', clients: 2, duration: 1.5 }),
  );
  assert.is(s.config.receiver, 'ws');
  assert.is(s.flood.directions.length, 1);
  const d = s.flood.directions[0];
  assertFlood(d, s);
  assert.is(d.connections, 2);
  assert.is(d.receiver.library, 'ws');
  assert.is(d.receiver.peakReceivePendingMiB, null);
});

test('--flood: a receiver over --max-rss-mb fails the run (exit 1)', async () => {
  // Any Node process has more than 16 MiB resident.
  const r = await runCli(
    cliArgs({ flood: true, direction: 'to-server', duration: 0.5, 'max-rss-mb': 16, json: true }),
  );
  assert.is(r.code, 1, r.err);
  const s = JSON.parse(r.out);
  assert.is(s.ok, false);
  assert.is(s.failures.byKind.rss, 1, JSON.stringify(s.failures));
  const d = s.flood.directions[0];
  assert.ok(d.receiver.peakRssMiB > 16, JSON.stringify(d));
  assert.is(d.lost, 0);
  assert.is(d.received, d.sent);
});

test('--flood: SIGINT stops the sender, drains, and prints the summary so far (exit 0)', async () => {
  const child = startCli(['--flood', '--duration', '60', '--json', '--progress-ms', '100']);
  await child.errLine(
    (line) => /flood to-server flood .* received=[1-9]/.test(line),
    20_000,
    'a flood progress line with messages received',
  );
  child.kill('SIGINT');
  const { code, signal } = await withTimeout(child.exited, 20_000, 'exit after SIGINT');
  assert.is(signal, null);
  const s = JSON.parse(child.out);
  assert.is(code, 0, JSON.stringify(s.failures));
  assert.is(s.interrupted, true);
  assert.ok(s.elapsedSec < 30, `elapsed ${s.elapsedSec}`);
  assert.is(s.flood.directions.length, 1, 'the second direction does not start');
  assertFlood(s.flood.directions[0], s);
});

test('frame codec: intact frames pass; damaged, truncated and swapped ones are caught', () => {
  const payloads = frames.createPayloads(4096);
  const video = frames.encodeFrame(payloads, frames.KIND.video, 7, 3);
  const ok = frames.decodeFrame(payloads, video);
  assert.is(ok.ok, true);
  assert.is(ok.kind, frames.KIND.video);
  assert.is(ok.seq, 7);
  assert.is(ok.streamId, 3);
  assert.is(video.length, frames.HEADER_BYTES + 4096);

  const flipped = Buffer.from(video);
  flipped[frames.HEADER_BYTES + 100] ^= 0x40;
  assert.is(frames.decodeFrame(payloads, flipped).why, 'checksum');

  assert.is(frames.decodeFrame(payloads, video.subarray(0, video.length - 1)).why, 'length');

  const renumbered = Buffer.from(video);
  renumbered.writeUInt32LE(8, 8); // the header now claims another frame's payload
  assert.is(frames.decodeFrame(payloads, renumbered).why, 'payload-not-for-seq');

  const garbage = Buffer.alloc(64, 1);
  assert.is(frames.decodeFrame(payloads, garbage).why, 'bad-header');

  const audio = frames.encodeFrame(payloads, frames.KIND.audio, 0, 0);
  assert.is(audio.length, frames.HEADER_BYTES + frames.AUDIO_BYTES);
  assert.is(frames.AUDIO_BYTES, 1920);
  assert.is(frames.decodeFrame(payloads, audio).ok, true);

  const sample = Buffer.from('123456789');
  assert.is(frames.crc32(sample), 0xcbf43926);
  assert.is(frames.crc32Js(sample), 0xcbf43926);
});

test.after(exitWatchdog);
test.run();
