#!/usr/bin/env node
// Soak test for node-lws: many listen/close cycles with traffic, then many client
// connect/disconnect cycles against one server, sampling the process's RSS, open file
// descriptors and threads as it goes. Prints a table and a verdict.
//
//   node scripts/soak.mjs                  # 10,000 server cycles + 1,000 client cycles
//   node scripts/soak.mjs --quick          # 1,000 + 200
//   node scripts/soak.mjs --cycles 5000 --clients 500 --sample 100 --rss-tolerance-mb 8 --json
//
// Server phase, one cycle: listen() on 127.0.0.1 port 0 with an echo handler, connect() a
// node-lws client, round-trip one message (text, or binary of 16 B .. 256 KiB so that both
// the arena path and the large-message path are used), then either the client closes first
// or the server closes with the client still connected (the client must see 1001).
// Client phase, one cycle against a single server: connect, round-trip, then one of: client
// close(), client terminate(), server-side close(), server-side terminate(); both sides'
// 'close' events are awaited.
//
// Verdict (per phase):
//   - fds and threads must return EXACTLY to the baseline taken after the warm-up (polled for
//     up to 5 s at the end, since a closed socket's fd can outlive the 'close' event by one
//     service-thread iteration);
//   - RSS: the median of the last quarter of the samples minus the median of the second quarter
//     (the first quarter is the warm-up) must be below --rss-tolerance-mb (default 8 MiB).
// A gc() runs before each sample (exposed through v8.setFlagsFromString) to cut JS-heap noise.
//
// Exit code 0 on PASS, 1 on FAIL. `runSoak(options)` is exported for test/system/soak.test.mjs.

import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import procNetTcp from '../bin/stress/proc-net-tcp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const STEP_MS = 5000; // deadline for any single step of a cycle
const MiB = 1024 * 1024;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

export function openFds() {
  return fs.readdirSync('/proc/self/fd').length;
}

export function threadCount() {
  const m = /^Threads:\s+(\d+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : -1;
}

function describeFds() {
  const out = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out.push(`${fd}->${fs.readlinkSync(`/proc/self/fd/${fd}`)}`);
    } catch {}
  }
  return out.join(' ');
}

function deadline(promise, ms, label) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`soak: timed out after ${ms} ms: ${label}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

async function pollUntil(pred, ms) {
  const end = Date.now() + ms;
  for (;;) {
    if (pred()) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

function median(xs) {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const PAYLOADS = [16, 1024, 20 * 1024, 100, 4096];
function payloadFor(i) {
  if (i % 50 === 49) return Buffer.alloc(256 * 1024, i & 0xff);
  if (i % 3 === 0) return `soak message ${i} ${'x'.repeat(i % 200)}`;
  return Buffer.alloc(PAYLOADS[i % PAYLOADS.length], i & 0xff);
}

function sameData(a, b) {
  if (typeof a === 'string') return a === b;
  return Buffer.isBuffer(b) && a.equals(b);
}

function attachEcho(server) {
  server.on('connection', (conn) => {
    conn.on('error', () => {});
    conn.on('message', (data, isBinary) => {
      if (conn.isOpen) conn.send(data, isBinary);
    });
  });
}

async function roundTrip(client, payload, label) {
  const reply = once(client, 'message');
  client.send(payload);
  const [data] = await deadline(reply, STEP_MS, `echo (${label})`);
  if (!sameData(payload, data)) throw new Error(`soak: echo mismatch (${label})`);
}

function sample(phase, cycle, t0, extra = {}) {
  gc();
  const mu = process.memoryUsage();
  return {
    phase,
    cycle,
    rss: mu.rss,
    heapUsed: mu.heapUsed,
    external: mu.external,
    fds: openFds(),
    threads: threadCount(),
    seconds: (performance.now() - t0) / 1000,
    ...extra,
  };
}

// ---------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------

async function serverCycle(lws, i) {
  const server = await deadline(lws.listen({ host: HOST, port: 0 }), STEP_MS, `listen #${i}`);
  attachEcho(server);
  const client = await deadline(
    lws.connect(`ws://${HOST}:${server.port}/soak/${i}`),
    STEP_MS,
    `connect #${i}`,
  );
  const clientClosed = once(client, 'close');
  await roundTrip(client, payloadFor(i), `server cycle ${i}`);
  if (i % 2 === 0) {
    client.close(1000, 'bye');
    const [code] = await deadline(clientClosed, STEP_MS, `client close #${i}`);
    if (code !== 1000) throw new Error(`soak: client close code ${code} (cycle ${i})`);
    await deadline(server.close(), STEP_MS, `server.close #${i}`);
  } else {
    // Close the server with the client still connected: the client sees 1001.
    await deadline(server.close(), STEP_MS, `server.close with client #${i}`);
    const [code] = await deadline(clientClosed, STEP_MS, `client sees server close #${i}`);
    if (code !== 1001)
      throw new Error(`soak: client saw close code ${code}, want 1001 (cycle ${i})`);
  }
}

async function clientCycle(lws, server, i) {
  const serverConn = once(server, 'connection');
  const client = await deadline(
    lws.connect(`ws://${HOST}:${server.port}/client/${i}`),
    STEP_MS,
    `client connect #${i}`,
  );
  const [conn] = await deadline(serverConn, STEP_MS, `server connection #${i}`);
  const connClosed = once(conn, 'close');
  const clientClosed = once(client, 'close');
  await roundTrip(client, payloadFor(i), `client cycle ${i}`);
  switch (i % 4) {
    case 0:
      client.close(1000);
      break;
    case 1:
      client.terminate();
      break;
    case 2:
      conn.close(1000, 'server bye');
      break;
    default:
      conn.terminate();
  }
  await deadline(clientClosed, STEP_MS, `client close event #${i}`);
  await deadline(connClosed, STEP_MS, `server connection close event #${i}`);
}

// ---------------------------------------------------------------------------
// TIME_WAIT throttle. Every cycle leaves TCP sockets in TIME_WAIT for 60 s (the side that
// closes first keeps one), and a TIME_WAIT socket holds its local port: the listener's port
// when the server closes first, the client's ephemeral port otherwise. A server cycle uses two
// ports of the ephemeral range (32768-60999 by default, 28,232 ports), so beyond ~235 cycles/s
// sustained for a minute, bind(port 0) and connect() run out of ports (EADDRINUSE /
// EADDRNOTAVAIL) -- a limit of the machine, not of node-lws. The soak therefore pauses while
// the TIME_WAIT count is above 60% of the ephemeral range, and reports the time spent.
// ---------------------------------------------------------------------------

/** How many ports the kernel's ephemeral range holds. */
function ephemeralPorts() {
  const [first, last] = procNetTcp.ephemeralPortRange();
  return last - first + 1;
}

export function timeWaitCount() {
  try {
    const m = /^TCP:.*\btw (\d+)/m.exec(fs.readFileSync('/proc/net/sockstat', 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

const TW_HIGH = Math.floor(ephemeralPorts() * 0.6);
const TW_LOW = Math.floor(ephemeralPorts() * 0.45);

/** Returns the milliseconds spent waiting for TIME_WAIT sockets to expire. */
async function throttleTimeWait() {
  if (timeWaitCount() < TW_HIGH) return 0;
  const t = performance.now();
  const end = Date.now() + 120_000;
  while (timeWaitCount() > TW_LOW && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 250));
  }
  return performance.now() - t;
}

async function runPhase({ name, cycles, sampleEvery, warmup, cycle, log }) {
  const t0 = performance.now();
  const samples = [];
  let baseline = null;
  let throttledMs = 0;
  for (let i = 0; i < cycles; i++) {
    if (i % 25 === 0) throttledMs += await throttleTimeWait();
    await cycle(i);
    const n = i + 1;
    if (n === warmup) {
      // Baseline after the warm-up: the service thread exists, every lazy allocation is made.
      await pollUntil(() => false, 20); // let a last socket close land
      baseline = { fds: openFds(), threads: threadCount(), describe: describeFds() };
    }
    if (n % sampleEvery === 0 || n === cycles) {
      const s = sample(name, n, t0, { throttled: throttledMs / 1000, timeWait: timeWaitCount() });
      samples.push(s);
      log?.(s);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  if (!baseline) baseline = { fds: openFds(), threads: threadCount(), describe: describeFds() };
  const active = seconds - throttledMs / 1000;
  return {
    name,
    cycles,
    seconds,
    throttledSeconds: throttledMs / 1000,
    cyclesPerSecond: cycles / seconds,
    activeCyclesPerSecond: cycles / active,
    samples,
    baseline,
  };
}

function judgePhase(p, { rssToleranceMiB, final }) {
  const s = p.samples;
  const q = Math.max(1, Math.floor(s.length / 4));
  const q2 = s.slice(q, 2 * q).map((x) => x.rss);
  const q4 = s.slice(s.length - q).map((x) => x.rss);
  const rssQ2 = median(q2);
  const rssQ4 = median(q4);
  const growth = rssQ4 - rssQ2;
  const fdsMax = Math.max(...s.map((x) => x.fds));
  const threadsMax = Math.max(...s.map((x) => x.threads));
  const problems = [];
  if (s.length < 8) problems.push(`only ${s.length} samples (need >= 8 for quarters)`);
  if (!(growth < rssToleranceMiB * MiB))
    problems.push(
      `RSS grew ${(growth / MiB).toFixed(1)} MiB from Q2 median to Q4 median (tolerance ${rssToleranceMiB} MiB)`,
    );
  if (final.fds !== p.baseline.fds)
    problems.push(`fds ${final.fds} at the end, baseline ${p.baseline.fds}`);
  if (final.threads !== p.baseline.threads)
    problems.push(`threads ${final.threads} at the end, baseline ${p.baseline.threads}`);
  return {
    name: p.name,
    cycles: p.cycles,
    seconds: p.seconds,
    throttledSeconds: p.throttledSeconds,
    cyclesPerSecond: p.cyclesPerSecond,
    activeCyclesPerSecond: p.activeCyclesPerSecond,
    rssFirst: s[0]?.rss,
    rssLast: s[s.length - 1]?.rss,
    rssQ2,
    rssQ4,
    rssGrowth: growth,
    baselineFds: p.baseline.fds,
    finalFds: final.fds,
    fdsMax,
    baselineThreads: p.baseline.threads,
    finalThreads: final.threads,
    threadsMax,
    ok: problems.length === 0,
    problems,
  };
}

/**
 * Run the soak. Options: cycles (server listen/close cycles), clients (client cycles),
 * sampleEvery (cycles between samples; default cycles/40), rssToleranceMiB (default 8),
 * log (called with each sample), lib (the imported node-lws module).
 */
export async function runSoak({
  cycles = 10_000,
  clients = 1_000,
  sampleEvery,
  clientSampleEvery,
  rssToleranceMiB = 8,
  log,
  lib,
} = {}) {
  const lws = lib ?? (await import(pathToFileURL(path.join(ROOT, 'dist', 'index.mjs')).href));
  const start = { rss: process.memoryUsage().rss, fds: openFds(), threads: threadCount() };
  const phases = [];

  // ---- server listen/close cycles ----
  if (cycles > 0) {
    const every = sampleEvery ?? Math.max(1, Math.floor(cycles / 40));
    const p = await runPhase({
      name: 'server',
      cycles,
      sampleEvery: every,
      warmup: Math.max(1, Math.min(every, Math.floor(cycles / 10))),
      cycle: (i) => serverCycle(lws, i),
      log,
    });
    const b = p.baseline;
    await pollUntil(() => openFds() === b.fds && threadCount() === b.threads, 5000);
    const final = { fds: openFds(), threads: threadCount() };
    const j = judgePhase(p, { rssToleranceMiB, final });
    if (final.fds !== b.fds) j.fdDiff = { baseline: b.describe, final: describeFds() };
    phases.push({ ...j, samples: p.samples });
  }

  // ---- client connect/disconnect cycles against one server ----
  if (clients > 0) {
    const server = await lws.listen({ host: HOST, port: 0 });
    attachEcho(server);
    const every = clientSampleEvery ?? Math.max(1, Math.floor(clients / 40));
    let p;
    let final;
    let fdDiff;
    try {
      p = await runPhase({
        name: 'client',
        cycles: clients,
        sampleEvery: every,
        warmup: Math.max(1, Math.min(every, Math.floor(clients / 10))),
        cycle: (i) => clientCycle(lws, server, i),
        log,
      });
      // Judged with the server still listening, as the baseline was taken.
      const b = p.baseline;
      await pollUntil(() => openFds() === b.fds && threadCount() === b.threads, 5000);
      final = { fds: openFds(), threads: threadCount() };
      if (final.fds !== b.fds) fdDiff = { baseline: b.describe, final: describeFds() };
    } finally {
      await server.close();
    }
    const j = judgePhase(p, { rssToleranceMiB, final });
    if (fdDiff) j.fdDiff = fdDiff;
    phases.push({ ...j, samples: p.samples });
  }

  const end = { rss: process.memoryUsage().rss, fds: openFds(), threads: threadCount() };
  return { start, end, phases, ok: phases.every((p) => p.ok) };
}

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

function parseArgs(argv) {
  const o = { cycles: 10_000, clients: 1_000, rssToleranceMiB: 8, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < 0) throw new Error(`soak: ${a} needs a number`);
      return v;
    };
    if (a === '--quick') {
      o.cycles = 1_000;
      o.clients = 200;
    } else if (a === '--cycles') o.cycles = num();
    else if (a === '--clients') o.clients = num();
    else if (a === '--sample') o.sampleEvery = o.clientSampleEvery = num();
    else if (a === '--rss-tolerance-mb') o.rssToleranceMiB = num();
    else if (a === '--json') o.json = true;
    else if (a === '-h' || a === '--help') {
      process.stdout.write(
        'usage: node scripts/soak.mjs [--quick] [--cycles N] [--clients M] [--sample K] [--rss-tolerance-mb X] [--json]\n',
      );
      process.exit(0);
    } else throw new Error(`soak: unknown argument ${a}`);
  }
  return o;
}

const mb = (b) => (b / MiB).toFixed(1);

function printRow(s) {
  process.stdout.write(
    `${s.phase.padEnd(7)}${String(s.cycle).padStart(7)}${mb(s.rss).padStart(10)}${mb(s.heapUsed).padStart(10)}${mb(s.external).padStart(10)}${String(s.fds).padStart(6)}${String(s.threads).padStart(9)}${s.seconds.toFixed(1).padStart(9)}${(s.cycle / s.seconds).toFixed(0).padStart(9)}${String(s.timeWait).padStart(9)}${s.throttled.toFixed(1).padStart(10)}\n`,
  );
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!o.json) {
    process.stdout.write(
      `soak: ${o.cycles} server listen/close cycles, ${o.clients} client cycles, node ${process.version}, pid ${process.pid}\n\n`,
    );
    process.stdout.write(
      `${'phase'.padEnd(7)}${'cycle'.padStart(7)}${'rss MiB'.padStart(10)}${'heap MiB'.padStart(10)}${'ext MiB'.padStart(10)}${'fds'.padStart(6)}${'threads'.padStart(9)}${'secs'.padStart(9)}${'cyc/s'.padStart(9)}${'tw'.padStart(9)}${'thr secs'.padStart(10)}\n`,
    );
  }
  const r = await runSoak({ ...o, log: o.json ? undefined : printRow });
  if (o.json) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  } else {
    process.stdout.write('\n');
    for (const p of r.phases) {
      process.stdout.write(
        `${p.name}: ${p.cycles} cycles in ${p.seconds.toFixed(1)} s (${p.cyclesPerSecond.toFixed(0)}/s; ${p.throttledSeconds.toFixed(1)} s paused for TIME_WAIT, ${p.activeCyclesPerSecond.toFixed(0)}/s while running); ` +
          `RSS ${mb(p.rssFirst)} -> ${mb(p.rssLast)} MiB, median Q2 ${mb(p.rssQ2)} Q4 ${mb(p.rssQ4)} (growth ${mb(p.rssGrowth)} MiB); ` +
          `fds baseline ${p.baselineFds} end ${p.finalFds} max ${p.fdsMax}; threads baseline ${p.baselineThreads} end ${p.finalThreads} max ${p.threadsMax}: ` +
          `${p.ok ? 'ok' : `FAIL (${p.problems.join('; ')})`}\n`,
      );
      if (p.fdDiff)
        process.stdout.write(
          `  fds at baseline: ${p.fdDiff.baseline}\n  fds at end: ${p.fdDiff.final}\n`,
        );
    }
    process.stdout.write(
      `process: RSS ${mb(r.start.rss)} -> ${mb(r.end.rss)} MiB, fds ${r.start.fds} -> ${r.end.fds}, threads ${r.start.threads} -> ${r.end.threads}\n`,
    );
    process.stdout.write(`verdict: ${r.ok ? 'PASS' : 'FAIL'}\n`);
  }
  process.exitCode = r.ok ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`soak: ${err?.stack ?? err}\nverdict: FAIL\n`);
    process.exitCode = 1;
  });
}
