'use strict';
// node-lws-stress: command line, progress, summary, and the parent of --processes N.
// The scenarios: the cycles (worker.js; --broadcast and --slow-clients shape their traffic,
// --idle N in idle.js measures them beside idle connections) and --flood (flood.js).

const { fork } = require('node:child_process');
const crypto = require('node:crypto');
const path = require('node:path');
const {
  AUDIO_BYTES,
  AUDIO_INTERVAL_MS,
  INPUT_BYTES,
  INPUT_INTERVAL_MS,
  HEADER_BYTES,
  createPayloads,
} = require('./frames');
const { followStderr } = require('./child');
const { exitWatchdog } = require('./exit-watchdog');
const { runFlood } = require('./flood');
const { checkIdleLimit, runIdle } = require('./idle');
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
  /** `lineText(snap, progress)`: the line's text after the bar (default: the cycles' counters). */
  constructor(o, stream = process.stderr, lineText = null) {
    this.o = o;
    this.lineText = lineText;
    this.stream = stream;
    this.tty = Boolean(stream.isTTY);
    this.enabled = o.progress;
    this.intervalMs = o.progressMs ?? (this.tty ? 250 : 5000);
    this.drawn = false;
    this.stopping = false;
  }

  line(snap) {
    const secs = snap.elapsedMs / 1000;
    if (this.lineText) {
      const text = `${this.lineText(snap, this)}${this.stopping ? ' (stopping)' : ''}`;
      if (!this.tty) return `${NAME}: ${text}`;
      const cols = this.stream.columns || 120;
      return text.length > cols - 1 ? text.slice(0, cols - 1) : text;
    }
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

/** --drop: the bounds the server runs with (see worker.js videoBound). */
function dropConfig(o) {
  if (!o.drop) return null;
  const video = o.maxBackpressure ?? Math.max(256 * 1024, 2 * (o.videoBytes + HEADER_BYTES));
  return { policy: 'drop', videoMaxBackpressure: video, maxBackpressure: 4 * video };
}

function buildSummary(o, stats, { elapsedMs, interrupted, clientName, workers, histograms, idle }) {
  const j = stats.toJSON();
  const workersOk = !workers || workers.every((w) => w.ok);
  const ok = j.failures.count === 0 && j.frames.lost === 0 && j.frames.corrupt === 0 && workersOk;
  const secs = elapsedMs / 1000;
  const summary = {
    tool: NAME,
    version: version(),
    scenario: 'cycles',
    ok,
    exitCode: ok ? 0 : 1,
    interrupted,
    elapsedSec: Math.round(secs * 100) / 100,
    config: {
      duration: o.duration,
      traffic: o.broadcast ? 'broadcast' : 'per-client',
      drop: dropConfig(o),
      lendMessages: o.lendMessages,
      slowClients: o.slowClients,
      slowMBps: o.slowClients > 0 ? o.slowMBps : null,
      idle: o.idle,
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
    broadcast: o.broadcast ? broadcastSummary(j) : undefined,
    idle: idle ?? undefined,
    latencyMs: j.latencyMs,
    throughput: {
      bytesReceived: j.bytesReceived,
      MBps: secs > 0 ? Math.round((mb(j.bytesReceived) / secs) * 100) / 100 : 0,
    },
    timingsMs: j.timingsMs,
    failures: j.failures,
  };
  if (workers) summary.workers = workers;
  if (histograms) {
    // For the parent of --processes N: what it merges (see Stats.mergeJSON).
    summary.histograms = j.histograms;
    summary.counters = { broadcast: j.broadcast };
  }
  return summary;
}

/** --broadcast: per-topic and per-subscriber deliveries. */
function broadcastSummary(j) {
  const b = j.broadcast;
  const byTopic = {};
  for (const t of ['video', 'audio']) {
    const k = j.frames.byKind[t];
    byTopic[t] = {
      published: b.published[t],
      delivered: k.received - k.corrupt,
      dropped: k.dropped,
      lost: k.lost,
    };
  }
  return {
    topics: ['video', 'audio'],
    published: b.published,
    subscribers: b.subscribers,
    deliveries: b.deliveries,
    delivered: byTopic.video.delivered + byTopic.audio.delivered,
    dropped: b.dropped,
    lost: b.lost,
    byTopic,
    perSubscriber: {
      withDrops: b.subscribersWithDrops,
      maxDropped: b.maxDroppedPerSubscriber,
      withLosses: b.subscribersWithLosses,
    },
  };
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
  out.push(
    `  shape        ${c.traffic === 'broadcast' ? "broadcast: each frame published once to topics 'video' and 'audio' (server.publish)" : 'a send() per client per frame'}` +
      (c.traffic === 'broadcast'
        ? c.drop
          ? `; drop policy: video bound ${c.drop.videoMaxBackpressure} B, connection (audio) ${c.drop.maxBackpressure} B`
          : '; no drop policy (every frame must reach every subscriber)'
        : '') +
      (c.slowClients
        ? `; ${c.slowClients} slow client${c.slowClients > 1 ? 's' : ''} per cycle reading ${c.slowMBps} MB/s`
        : '') +
      (c.lendMessages ? '; messages lent to the handlers (lendMessages)' : ''),
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
    `  frames       sent ${f.sent}, received ${f.received}, lost ${f.lost}, corrupt ${f.corrupt}, out of order ${f.outOfOrder}, dropped ${f.dropped} (${c.traffic === 'broadcast' ? 'dropped by node-lws for slow subscribers' : 'video skipped for slow clients'})`,
  );
  for (const k of KINDS) {
    const x = f.byKind[k];
    const l = s.latencyMs.byKind[k];
    out.push(
      `    ${k.padEnd(10)} sent ${x.sent}, received ${x.received}, lost ${x.lost}, corrupt ${x.corrupt}${k === 'video' || (k === 'audio' && c.traffic === 'broadcast') ? `, dropped ${x.dropped}` : ''}; latency ${lat(l)}`,
    );
  }
  if (s.broadcast) {
    const b = s.broadcast;
    out.push(
      `  broadcast    published video ${b.published.video}, audio ${b.published.audio}; ${b.subscribers} subscribers; deliveries ${b.deliveries}: delivered ${b.delivered}, dropped ${b.dropped} (${b.perSubscriber.withDrops} subscribers, at most ${b.perSubscriber.maxDropped} each), lost ${b.lost} (${b.perSubscriber.withLosses} subscribers)`,
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
  if (s.idle) {
    const i = s.idle;
    out.push(
      `  idle         ${i.opened} of ${i.connections} idle connections opened from ${i.holders} helper process${i.holders === 1 ? '' : 'es'}${i.openSec !== null ? ` in ${i.openSec.toFixed(1)} s` : ''}${i.failed ? `, ${i.failed} failed (${counts(i.failureCodes)})` : ''}; ${i.closedEarly} closed early; descriptors ${i.fdLimit ? `${i.fdLimit.soft}/${i.fdLimit.hard}` : '?'} (soft/hard)`,
    );
    out.push(
      `  echo         every ${i.echo.intervalMs} ms on its own connection: ${i.echo.sent} sent, ${i.echo.received} back`,
    );
    for (const [name, p] of Object.entries(i.phases)) {
      out.push(
        `    ${`${name} (${p.idle} idle)`.padEnd(18)} ${p.seconds.toFixed(1)} s: echo p50 ${fmtMs(p.echoMs.p50)}, p99 ${fmtMs(p.echoMs.p99)}, max ${fmtMs(p.echoMs.max)}; frames p50 ${fmtMs(p.frameLatencyMs.p50)}, p99 ${fmtMs(p.frameLatencyMs.p99)}; process CPU ${p.cpuPercent === null ? '-' : `${p.cpuPercent.toFixed(0)}%`}`,
      );
    }
  }
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
  exitWatchdog(
    EXIT_WATCHDOG_MS,
    (handles) =>
      `${NAME}: the process did not exit by itself ${EXIT_WATCHDOG_MS} ms after the run (active handles: ${handles}); exiting with 1\n`,
  );
}

/**
 * SIGINT / SIGTERM during a run. The first one marks the run interrupted, puts the progress line
 * in its stopping state, notes `<signal>: <stopping> (Ctrl-C again to abort)` when `stopping`
 * is given, and calls `stop(signal)`; a second one, when `abort` is given, calls it, says the run
 * was aborted and exits with 130. Returns `{ interrupted, off() }` (off removes the handlers).
 */
function trapSignals(progress, { stopping, stop, abort }) {
  const onSignal = (sig) => {
    if (!trap.interrupted) {
      trap.interrupted = true;
      progress.stopping = true;
      if (stopping) progress.note(`${sig}: ${stopping} (Ctrl-C again to abort)`);
      stop(sig);
    } else if (abort) {
      abort();
      progress.clear();
      process.stderr.write(`${NAME}: aborted\n`);
      process.exit(130);
    }
  };
  const trap = {
    interrupted: false,
    off() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return trap;
}

/**
 * An uncaught exception or unhandled rejection during a run is recorded in `stats` as an
 * 'uncaught-exception' failure and stops the run (`controller`). Returns the function that
 * removes the handlers.
 */
function trapFatal(stats, controller) {
  const onFatal = (err) => {
    stats.fail('uncaught-exception', { code: err?.code, message: err?.stack ?? String(err) });
    controller.abort();
  };
  process.on('uncaughtException', onFatal);
  process.on('unhandledRejection', onFatal);
  return () => {
    process.off('uncaughtException', onFatal);
    process.off('unhandledRejection', onFatal);
  };
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
  const signals = trapSignals(progress, {
    stopping: !o.worker && o.progress ? "stopping after this cycle's clean-up" : undefined,
    stop: () => controller.abort(),
    abort: o.worker ? undefined : () => {},
  });
  const untrapFatal = trapFatal(stats, controller);

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
    note: (text) => {
      if (o.progress) progress.note(text);
    },
    /** Time not counted against --duration (--idle: opening the idle connections). */
    excludedMs: 0,
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
        process.send({
          type: 'progress',
          snap: stats.snapshot(performance.now() - t0 - ctx.excludedMs),
        });
      }
    }, 250);
  } else if (o.progress) {
    timer = setInterval(
      () => progress.update(stats.snapshot(performance.now() - t0 - ctx.excludedMs)),
      progress.intervalMs,
    );
  }
  let elapsedMs;
  let idle;
  if (o.idle > 0) ({ elapsedMs, idle } = await runIdle(ctx));
  else elapsedMs = await runWorker(ctx);
  clearInterval(timer);
  progress.clear();
  const summary = buildSummary(o, stats, {
    elapsedMs,
    interrupted: signals.interrupted,
    clientName: client.name,
    histograms: o.worker,
    idle,
  });
  if (ipc && process.connected) process.disconnect();
  untrapFatal();
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
    followStderr(child, w, (line) => progress.note(`[worker ${i}] ${line}`));
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

  const killAll = (sig) => {
    for (const w of children) if (w.child.exitCode === null) w.child.kill(sig);
  };
  const signals = trapSignals(progress, {
    stopping: o.progress ? 'stopping the workers after their clean-up' : undefined,
    stop: killAll,
    abort: () => killAll('SIGKILL'),
  });

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
  let anyInterrupted = signals.interrupted;
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
  signals.off();
  finish(o.json ? `${JSON.stringify(summary, null, 2)}\n` : textSummary(summary), summary.exitCode);
}

// ---------------------------------------------------------------------------
// --flood
// ---------------------------------------------------------------------------

const MiB = 1024 * 1024;

function floodSummary(o, stats, directions, { elapsedMs, interrupted, clientName }) {
  const j = stats.toJSON();
  const total = { sent: 0, received: 0, lost: 0, corrupt: 0, outOfOrder: 0 };
  for (const d of directions) for (const k of Object.keys(total)) total[k] += d[k];
  const ok = j.failures.count === 0 && total.lost === 0 && total.corrupt === 0;
  return {
    tool: NAME,
    version: version(),
    scenario: 'flood',
    ok,
    exitCode: ok ? 0 : 1,
    interrupted,
    elapsedSec: Math.round(elapsedMs / 10) / 100,
    config: {
      duration: o.duration,
      direction: o.direction,
      connections: o.clients,
      messageBytes: o.messageBytes,
      handlerUs: o.handlerUs,
      receiver: o.receiver,
      client: clientName,
      receiveHighWaterMark: o.receiveHwm,
      totalReceiveLimit: o.totalReceiveLimit,
      maxRssMiB: o.maxRssMiB,
      host: o.host,
      timeoutMs: o.timeoutMs,
    },
    frames: total,
    flood: { directions },
    failures: j.failures,
  };
}

function floodText(s) {
  const c = s.config;
  const out = [];
  out.push(
    `${NAME} ${s.version}: ${s.ok ? 'OK' : 'FAILED'}${s.interrupted ? ' (interrupted: summary so far)' : ''}`,
  );
  out.push(
    `  flood        ${s.elapsedSec.toFixed(1)} s; ${c.connections} connection${c.connections > 1 ? 's' : ''} per direction; ${c.messageBytes} B binary messages as fast as TCP allows; receiver ${c.receiver} (its own process), handler ${c.handlerUs} us per message` +
      (c.receiver === 'node-lws'
        ? `; receiveHighWaterMark ${c.receiveHighWaterMark ?? 'default'}, totalReceiveLimit ${c.totalReceiveLimit ?? 'default'}`
        : ''),
  );
  for (const d of s.flood.directions) {
    const r = d.receiver;
    out.push(
      `  ${d.direction.padEnd(12)} ${d.ok ? 'ok' : 'FAILED'}: sent ${d.sent}, received ${d.received}, lost ${d.lost}, corrupt ${d.corrupt}, out of order ${d.outOfOrder}; ${d.floodSec.toFixed(1)} s flood + ${d.drainMs ?? '-'} ms drain; ${d.messagesPerSec} msg/s, ${d.MBps} MB/s`,
    );
    out.push(
      `               receiver ${r.library} pid ${r.pid}: peak RSS ${r.peakRssMiB ?? '?'} MiB (at start ${r.rssBeforeMiB ?? '?'} MiB; limit ${c.maxRssMiB} MiB)${r.peakReceivePendingMiB !== null ? `, peak receivePending ${r.peakReceivePendingMiB} MiB` : ''}; event loop lag max ${fmtMs(r.eventLoopMaxLagMs)}; queue delay ${lat(d.queueDelayMs ?? {})}`,
    );
    out.push(
      `               sender ${d.sender.library}: peak bufferedAmount ${(d.sender.peakBufferedAmount / MiB).toFixed(2)} MiB, waited for 'drain' ${d.sender.drainWaits} times (${d.sender.blockedSec.toFixed(1)} s${d.connections > 1 ? ' summed over the connections' : ''})`,
    );
  }
  out.push(
    `  failures     ${s.failures.count ? `${s.failures.count}: ${counts(s.failures.byKind)}` : 'none'}`,
  );
  for (const r of s.failures.first) {
    out.push(
      `    - ${r.what}${r.code !== undefined ? ` ${r.code}` : ''}${r.message ? `: ${r.message}` : ''}`,
    );
  }
  if (s.failures.count > s.failures.first.length) {
    out.push(`    ... and ${s.failures.count - s.failures.first.length} more`);
  }
  return `${out.join('\n')}\n`;
}

async function runFloodMain(o, lws, client) {
  const stats = new Stats();
  const controller = new AbortController();
  let current = null;
  const progress = new Progress(o, process.stderr, (snap) => {
    const st = current;
    if (!st) return `flood ${(snap.elapsedMs / 1000).toFixed(1)}s`;
    const secs = st.t0 ? (performance.now() - st.t0) / 1000 : 0;
    let sent = 0;
    for (const x of st.senders) sent += x.seq;
    const mem = st.sample();
    return (
      `flood ${st.direction} ${st.phase}${st.phase === 'flood' ? ` ${secs.toFixed(1)}s/${(st.floodMs / 1000).toFixed(1)}s` : ''}` +
      ` sent=${sent} received=${st.receiver.last.progress?.received ?? 0}` +
      (mem
        ? ` receiver rss=${(mem.rssKiB / 1024).toFixed(0)}MiB peak=${(mem.hwmKiB / 1024).toFixed(0)}MiB`
        : '') +
      (snap.failures ? ` failures=${snap.failures}` : '')
    );
  });
  const signals = trapSignals(progress, {
    stopping: o.progress ? 'stopping the flood, then the receiver' : undefined,
    stop: () => controller.abort(),
    abort: () => current?.receiver.child.kill('SIGKILL'),
  });
  const untrapFatal = trapFatal(stats, controller);
  const t0 = performance.now();
  const timer = o.progress
    ? setInterval(
        () => progress.update({ elapsedMs: performance.now() - t0, failures: stats.failureCount }),
        progress.intervalMs,
      )
    : undefined;
  const directions = await runFlood({
    o,
    lws,
    client,
    stats,
    signal: controller.signal,
    note: (text) => {
      if (o.progress) progress.note(text);
    },
    onProgress: (state) => {
      current = state;
    },
  });
  clearInterval(timer);
  progress.clear();
  signals.off();
  untrapFatal();
  const summary = floodSummary(o, stats, directions, {
    elapsedMs: performance.now() - t0,
    interrupted: signals.interrupted,
    clientName: client.name,
  });
  finish(o.json ? `${JSON.stringify(summary, null, 2)}\n` : floodText(summary), summary.exitCode);
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
  if (o.flood) {
    if (o.receiver === 'ws') {
      try {
        require.resolve('ws');
      } catch (err) {
        process.stderr.write(
          `${NAME}: --receiver ws needs the ws package (npm install ws): ${err.message}\n`,
        );
        process.exitCode = 1;
        return;
      }
    }
    return runFloodMain(o, lws, client);
  }
  if (o.idle > 0) {
    const why = checkIdleLimit(o);
    if (why) return usageError(why);
  }
  if (o.processes > 1) return runParent(o, client.name);
  return runSingle(o, lws, client);
}

module.exports = { main, buildSummary, textSummary };
