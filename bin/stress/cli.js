'use strict';
// node-lws-stress: command line, progress, summary, and the parent of --processes N.

const { fork } = require('node:child_process');
const crypto = require('node:crypto');
const path = require('node:path');
const {
  AUDIO_BYTES,
  AUDIO_INTERVAL_MS,
  INPUT_BYTES,
  INPUT_INTERVAL_MS,
  createPayloads,
} = require('./frames');
const { USAGE, UsageError, parseArgs, workerArgs } = require('./options');
const { Histogram, KINDS, Stats, mergeSnapshots } = require('./stats');
const { loadClient } = require('./clients');
const { runWorker } = require('./worker');

const NAME = 'node-lws-stress';
const ROOT = path.resolve(__dirname, '..', '..');
const SCRIPT = path.join(ROOT, 'bin', 'node-lws-stress.js');
/** How long the process may take to exit by itself after the summary. */
const EXIT_WATCHDOG_MS = 3000;

function version() {
  try {
    return require(path.join(ROOT, 'package.json')).version;
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------

const mb = (bytes) => bytes / 1e6;
const fmtMs = (v) =>
  v === null || v === undefined ? '-' : `${v < 10 ? v.toFixed(2) : v.toFixed(1)}ms`;

class Progress {
  constructor(o, stream = process.stderr) {
    this.o = o;
    this.stream = stream;
    this.tty = Boolean(stream.isTTY);
    this.enabled = o.progress;
    this.intervalMs = o.progressMs ?? (this.tty ? 250 : 5000);
    this.drawn = false;
    this.stopping = false;
  }

  line(snap) {
    const secs = snap.elapsedMs / 1000;
    const p99 = Histogram.fromJSON(snap.latency).percentile(99);
    const rate = secs > 0 ? mb(snap.bytes) / secs : 0;
    const stats =
      `cycles=${snap.cycles} frames=${snap.received} lost=${snap.lost} corrupt=${snap.corrupt}` +
      ` dropped=${snap.dropped} p99=${fmtMs(p99 === null ? null : p99 / 1000)}` +
      ` ${rate.toFixed(1)}MB/s` +
      (snap.failures ? ` failures=${snap.failures}` : '') +
      (this.stopping ? ' (stopping)' : '');
    if (!this.tty) return `${NAME}: ${secs.toFixed(1)}s/${this.o.duration}s ${stats}`;
    const width = 20;
    const filled = Math.min(width, Math.round((secs / this.o.duration) * width));
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
    const text = `${bar} ${Math.floor(secs)}s ${stats}`;
    const cols = this.stream.columns || 120;
    return text.length > cols - 1 ? text.slice(0, cols - 1) : text;
  }

  update(snap) {
    if (!this.enabled) return;
    if (this.tty) {
      this.stream.write(`\r${this.line(snap)}\x1b[K`);
      this.drawn = true;
    } else this.stream.write(`${this.line(snap)}\n`);
  }

  /** Clears a redrawn line (before other stderr output or the summary). */
  clear() {
    if (this.tty && this.drawn) {
      this.stream.write('\r\x1b[K');
      this.drawn = false;
    }
  }

  note(text) {
    this.clear();
    this.stream.write(`${NAME}: ${text}\n`);
  }
}

// ---------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------

function portMode(o) {
  if (o.samePort) return 'same';
  return o.portRange ? 'range' : 'zero';
}

function buildSummary(o, stats, { elapsedMs, interrupted, clientName, workers, histograms }) {
  const j = stats.toJSON();
  const workersOk = !workers || workers.every((w) => w.ok);
  const ok = j.failures.count === 0 && j.frames.lost === 0 && j.frames.corrupt === 0 && workersOk;
  const secs = elapsedMs / 1000;
  const summary = {
    tool: NAME,
    version: version(),
    ok,
    exitCode: ok ? 0 : 1,
    interrupted,
    elapsedSec: Math.round(secs * 100) / 100,
    config: {
      duration: o.duration,
      clients: o.clients,
      cycleMs: o.cycleMs,
      videoBytes: o.videoBytes,
      fps: o.fps,
      audioBytes: AUDIO_BYTES,
      audioIntervalMs: AUDIO_INTERVAL_MS,
      inputBytes: INPUT_BYTES,
      inputIntervalMs: INPUT_INTERVAL_MS,
      ports: portMode(o),
      portRange: o.portRange,
      processes: o.processes,
      host: o.host,
      client: clientName,
      bindRetries: o.bindRetries,
      timeoutMs: o.timeoutMs,
      seed: o.seed,
    },
    cycles: j.cycles,
    cyclesFailed: j.cyclesFailed,
    bind: j.bind,
    connect: j.connect,
    frames: j.frames,
    latencyMs: j.latencyMs,
    throughput: {
      bytesReceived: j.bytesReceived,
      MBps: secs > 0 ? Math.round((mb(j.bytesReceived) / secs) * 100) / 100 : 0,
    },
    timingsMs: j.timingsMs,
    failures: j.failures,
  };
  if (workers) summary.workers = workers;
  if (histograms) summary.histograms = j.histograms;
  return summary;
}

const counts = (obj) => {
  const e = Object.entries(obj);
  return e.length ? e.map(([k, n]) => `${k} ${n}`).join(', ') : 'none';
};
const lat = (l) => `p50 ${fmtMs(l.p50)}, p99 ${fmtMs(l.p99)}, max ${fmtMs(l.max)}`;

function textSummary(s) {
  const c = s.config;
  const ports =
    c.ports === 'zero'
      ? 'port 0 (kernel picks)'
      : c.ports === 'range'
        ? `random ports from ${c.portRange.join('-')}`
        : `the same port every cycle${c.portRange ? ` (picked from ${c.portRange.join('-')})` : ''}`;
  const out = [];
  const status = s.ok ? 'OK' : 'FAILED';
  out.push(
    `${NAME} ${s.version}: ${status}${s.interrupted ? ' (interrupted: summary so far)' : ''}`,
  );
  out.push(
    `  run          ${s.elapsedSec.toFixed(1)} s, ${c.processes} process${c.processes > 1 ? 'es' : ''} x ${c.clients} clients, client ${c.client}, ${ports}, seed ${c.seed}`,
  );
  out.push(
    `  traffic      video ${c.fps ? `${c.videoBytes} B at ${c.fps} fps` : 'off'}; audio ${c.audioBytes} B every ${c.audioIntervalMs} ms; input ${c.inputBytes} B every ${c.inputIntervalMs} ms; ${c.cycleMs} ms per cycle`,
  );
  out.push(`  cycles       ${s.cycles} (${s.cyclesFailed} with failures)`);
  const b = s.bind;
  out.push(
    `  bind         ${b.ok} ok; failures: ${counts(b.failures)}` +
      (b.failuresExplained ? ` (${b.failuresExplained} for a port really in use)` : '') +
      `; retries used ${b.retries}${b.retries ? ` (${counts(b.retryCodes)})` : ''}; max attempts ${b.maxAttempts}; ${b.portsUsed} listens on ${b.distinctPorts} distinct port${b.distinctPorts === 1 ? '' : 's'}${c.processes > 1 ? ' (counted per worker)' : ''}, ${b.portsInEphemeralRange} in the ephemeral range`,
  );
  if (Object.keys(b.holders).length)
    out.push(`               busy ports held by: ${counts(b.holders)}`);
  out.push(`  connect      ${s.connect.ok} ok; failures: ${counts(s.connect.failures)}`);
  const f = s.frames;
  out.push(
    `  frames       sent ${f.sent}, received ${f.received}, lost ${f.lost}, corrupt ${f.corrupt}, out of order ${f.outOfOrder}, dropped ${f.dropped} (video skipped for slow clients)`,
  );
  for (const k of KINDS) {
    const x = f.byKind[k];
    const l = s.latencyMs.byKind[k];
    out.push(
      `    ${k.padEnd(10)} sent ${x.sent}, received ${x.received}, lost ${x.lost}, corrupt ${x.corrupt}${k === 'video' ? `, dropped ${x.dropped}` : ''}; latency ${lat(l)}`,
    );
  }
  out.push(`  latency      ${lat(s.latencyMs)}`);
  out.push(
    `  throughput   ${s.throughput.MBps.toFixed(1)} MB/s (${mb(s.throughput.bytesReceived).toFixed(0)} MB received)`,
  );
  const t = s.timingsMs;
  out.push(
    `  timings      listen ${lat(t.listen)}; connect ${lat(t.connect)}; server.close() ${lat(t.serverClose)}`,
  );
  if (s.workers) {
    out.push(
      `  workers      ${s.workers.map((w) => `#${w.index} pid ${w.pid} exit ${w.exitCode ?? w.signal}${w.ok ? '' : ' FAILED'}`).join('; ')}`,
    );
  }
  out.push(
    `  failures     ${s.failures.count ? `${s.failures.count}: ${counts(s.failures.byKind)}` : 'none'}`,
  );
  for (const r of s.failures.first) {
    const where = [
      r.worker !== undefined ? `worker ${r.worker}` : '',
      r.cycle !== undefined ? `cycle ${r.cycle}` : '',
      r.port !== undefined ? `port ${r.port}` : '',
    ]
      .filter(Boolean)
      .join(' ');
    out.push(
      `    - ${r.what}${where ? ` [${where}]` : ''}${r.code !== undefined ? ` ${r.code}` : ''}${r.message ? `: ${r.message}` : ''}`,
    );
  }
  if (s.failures.count > s.failures.first.length) {
    out.push(`    ... and ${s.failures.count - s.failures.first.length} more`);
  }
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------
// Ending the process
// ---------------------------------------------------------------------------

/** Writes the output, sets the exit code and lets the process end by itself. */
function finish(text, code) {
  process.exitCode = code;
  process.stdout.write(text);
  // Everything is closed now; a library that still holds the event loop is a bug.
  const t = setTimeout(() => {
    const handles =
      typeof process._getActiveHandles === 'function'
        ? process
            ._getActiveHandles()
            .map((h) => h?.constructor?.name ?? typeof h)
            .join(', ')
        : '?';
    process.stderr.write(
      `${NAME}: the process did not exit by itself ${EXIT_WATCHDOG_MS} ms after the run (active handles: ${handles}); exiting with 1\n`,
    );
    process.exit(1);
  }, EXIT_WATCHDOG_MS);
  t.unref();
}

// ---------------------------------------------------------------------------
// One worker (also the whole run when --processes is 1)
// ---------------------------------------------------------------------------

async function runSingle(o, lws, client) {
  const stats = new Stats();
  const payloads = createPayloads(o.videoBytes);
  const controller = new AbortController();
  const progress = new Progress(o);
  const ipc = o.worker && typeof process.send === 'function';
  let interrupted = false;

  const onSignal = (sig) => {
    if (!interrupted) {
      interrupted = true;
      progress.stopping = true;
      if (!o.worker && o.progress)
        progress.note(`${sig}: stopping after this cycle's clean-up (Ctrl-C again to abort)`);
      controller.abort();
    } else if (!o.worker) {
      progress.clear();
      process.stderr.write(`${NAME}: aborted\n`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const onFatal = (err) => {
    stats.fail('uncaught-exception', { code: err?.code, message: err?.stack ?? String(err) });
    controller.abort();
  };
  process.on('uncaughtException', onFatal);
  process.on('unhandledRejection', onFatal);

  const listenerPorts = new Set();
  const ctx = {
    o,
    lws,
    client,
    payloads,
    stats,
    signal: controller.signal,
    listenerPorts,
    onPort: ipc ? (port) => process.connected && process.send({ type: 'port', port }) : undefined,
  };
  if (ipc) {
    process.on('message', (m) => {
      if (m?.type === 'port') listenerPorts.add(m.port);
    });
    // The parent is gone: stop (a worker never outlives its parent's run).
    process.on('disconnect', () => controller.abort());
  }

  const t0 = performance.now();
  let timer;
  if (ipc) {
    timer = setInterval(() => {
      if (process.connected) {
        process.send({ type: 'progress', snap: stats.snapshot(performance.now() - t0) });
      }
    }, 250);
  } else if (o.progress) {
    timer = setInterval(
      () => progress.update(stats.snapshot(performance.now() - t0)),
      progress.intervalMs,
    );
  }
  const elapsedMs = await runWorker(ctx);
  clearInterval(timer);
  progress.clear();
  const summary = buildSummary(o, stats, {
    elapsedMs,
    interrupted,
    clientName: client.name,
    histograms: o.worker,
  });
  if (ipc && process.connected) process.disconnect();
  process.off('uncaughtException', onFatal);
  process.off('unhandledRejection', onFatal);
  finish(
    o.json ? `${JSON.stringify(summary, null, o.worker ? 0 : 2)}\n` : textSummary(summary),
    summary.exitCode,
  );
}

// ---------------------------------------------------------------------------
// --processes N
// ---------------------------------------------------------------------------

async function runParent(o, clientName) {
  const progress = new Progress(o);
  const t0 = performance.now();
  const snaps = new Array(o.processes).fill(null);
  const children = [];
  let interrupted = false;

  for (let i = 0; i < o.processes; i++) {
    const child = fork(SCRIPT, workerArgs(o, i), { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const w = { index: i, child, stdout: '', stderrTail: '', exited: null };
    w.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (err) => resolve({ code: null, signal: null, error: err }));
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      w.stdout += d;
    });
    child.stderr.setEncoding('utf8');
    let partial = '';
    child.stderr.on('data', (d) => {
      w.stderrTail = (w.stderrTail + d).slice(-2000);
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const line of lines) progress.note(`[worker ${i}] ${line}`);
    });
    child.on('message', (m) => {
      if (m?.type === 'progress') snaps[i] = m.snap;
      else if (m?.type === 'port') {
        for (const other of children) {
          if (other !== w && other.child.connected) other.child.send(m, () => {});
        }
      }
    });
    children.push(w);
  }

  const onSignal = (sig) => {
    if (!interrupted) {
      interrupted = true;
      progress.stopping = true;
      if (o.progress)
        progress.note(`${sig}: stopping the workers after their clean-up (Ctrl-C again to abort)`);
      for (const w of children) if (w.child.exitCode === null) w.child.kill(sig);
    } else {
      for (const w of children) if (w.child.exitCode === null) w.child.kill('SIGKILL');
      progress.clear();
      process.stderr.write(`${NAME}: aborted\n`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let timer;
  if (o.progress) {
    timer = setInterval(() => {
      const snap = mergeSnapshots(snaps);
      snap.elapsedMs = performance.now() - t0;
      progress.update(snap);
    }, progress.intervalMs);
  }
  const exits = await Promise.all(children.map((w) => w.exited));
  clearInterval(timer);
  progress.clear();

  const stats = new Stats();
  const workers = [];
  let elapsedMs = 0;
  let anyInterrupted = interrupted;
  exits.forEach((ex, i) => {
    const w = children[i];
    let j = null;
    try {
      j = JSON.parse(w.stdout.trim().split('\n').pop());
    } catch {
      /* reported below */
    }
    const info = {
      index: i,
      pid: w.child.pid,
      exitCode: ex.code,
      signal: ex.signal,
      ok: false,
      cycles: 0,
    };
    if (j && j.tool === NAME) {
      stats.mergeJSON(j, i);
      elapsedMs = Math.max(elapsedMs, j.elapsedSec * 1000);
      anyInterrupted ||= j.interrupted;
      info.cycles = j.cycles;
      info.ok = j.ok && ex.code === j.exitCode;
      if (ex.code !== j.exitCode) {
        stats.fail('worker', {
          message: `worker ${i} printed exit code ${j.exitCode} but exited with ${ex.code ?? ex.signal}`,
        });
      }
    } else {
      stats.fail('worker', {
        code: ex.code ?? ex.signal,
        message: `worker ${i} (pid ${w.child.pid}) ended without a summary: exit ${ex.code ?? ex.signal}${ex.error ? ` (${ex.error.message})` : ''}; stderr: ${w.stderrTail.trim().slice(-500)}`,
      });
    }
    workers.push(info);
  });
  const summary = buildSummary(o, stats, {
    elapsedMs: elapsedMs || performance.now() - t0,
    interrupted: anyInterrupted,
    clientName,
    workers,
  });
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  finish(o.json ? `${JSON.stringify(summary, null, 2)}\n` : textSummary(summary), summary.exitCode);
}

// ---------------------------------------------------------------------------

function usageError(message) {
  process.stderr.write(`${NAME}: ${message}\n\n${USAGE}`);
  process.exitCode = 2;
}

async function main(argv) {
  let o;
  try {
    o = parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) return usageError(err.message);
    throw err;
  }
  if (o.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (o.seed === null) o.seed = crypto.randomInt(2 ** 32);

  let lws;
  try {
    lws = require(path.join(ROOT, 'dist', 'index.js'));
  } catch (err) {
    process.stderr.write(
      `${NAME}: cannot load node-lws from ${path.join(ROOT, 'dist')} (build it: npm run build, or bash scripts/bootstrap.sh): ${err.message}\n`,
    );
    process.exitCode = 1;
    return;
  }
  let client;
  try {
    client = loadClient(o.client, lws);
  } catch (err) {
    if (err.code === 'ERR_CLIENT_UNAVAILABLE') return usageError(err.message);
    process.stderr.write(`${NAME}: ${err.message}\n`);
    process.exitCode = 1;
    return;
  }
  if (o.processes > 1) return runParent(o, client.name);
  return runSingle(o, lws, client);
}

module.exports = { main, buildSummary, textSummary };
