'use strict';
// `node-lws-stress --idle N`: what N idle WebSocket connections cost the traffic of the same
// process. A long-lived server of this process (beside the cycling ones, on the same node-lws
// service thread) accepts the idle connections and answers an echo probe: one client sends 64
// bytes every 20 ms on its own connection. The run has two halves of --duration: the cycles
// without idle connections, then — after helper processes (idle-holder.js) have opened N
// connections to that server — the same cycles with them. For each half: the echo's round
// trip (p50/p99), the cycles' frame latency and this process's CPU (all its threads: the
// servers and the clients of the traffic).
//
// Failures: an idle connection that does not open, or closes before the end; an echo that does
// not come back in order. Latency and CPU are reported, not judged (they depend on the machine).

const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { forkHelper } = require('./child');
const { fdLimit } = require('./proc-status');
const { Histogram } = require('./stats');
const { runWorker } = require('./worker');

const HOLDER = path.join(__dirname, 'idle-holder.js');
const ECHO_INTERVAL_MS = 20;
const ECHO_BYTES = 64;
/** Connections per holder process (each holds one descriptor per connection). */
const PER_HOLDER = 10_000;
const OPEN_CONCURRENCY = 128;

/** Descriptors this process needs besides the idle connections' server ends. */
function reserveFds(o) {
  return 256 + 4 * o.clients;
}

/**
 * Raises this process's soft descriptor limit to the hard one for the run (Node normally did
 * at its start; `prlimit` covers a runtime that did not). Returns the limits, null without /proc.
 */
function raiseFdLimit() {
  const lim = fdLimit();
  if (lim && lim.soft < lim.hard && Number.isFinite(lim.hard)) {
    try {
      execFileSync('prlimit', [`--pid=${process.pid}`, `--nofile=${lim.hard}:${lim.hard}`], {
        stdio: 'ignore',
      });
    } catch {
      /* no prlimit: the check below says what is missing */
    }
    return fdLimit();
  }
  return lim;
}

/** Null when --idle N fits this process's descriptor limit, else why not (a usage error). */
function checkIdleLimit(o) {
  const lim = raiseFdLimit();
  if (!lim) return null;
  const need = o.idle + reserveFds(o);
  if (need <= lim.soft) return null;
  return `option --idle: ${o.idle} idle connections need about ${need} descriptors in this process; it may open ${lim.soft} (hard limit ${lim.hard}; raise it with ulimit -Hn as root)`;
}

function newPhase(idle) {
  return { idle, seconds: 0, cpuPercent: null, echo: new Histogram(), frames: new Histogram() };
}

function phaseJSON(p) {
  const ms = (h) => {
    const s = h.summaryMs();
    return { count: s.count, p50: s.p50, p99: s.p99, max: s.max };
  };
  return {
    idle: p.idle,
    seconds: Math.round(p.seconds * 100) / 100,
    cpuPercent: p.cpuPercent === null ? null : Math.round(p.cpuPercent * 10) / 10,
    echoMs: ms(p.echo),
    frameLatencyMs: ms(p.frames),
  };
}

function codeOf(err) {
  return (err && (err.code ?? err.name)) || 'UNKNOWN';
}

/**
 * The whole --idle run. `ctx` as for runWorker, plus note(text). Resolves with
 * `{ elapsedMs, idle }` (idle: the summary section).
 */
async function runIdle(ctx) {
  const { o, lws, client, stats, signal } = ctx;
  const note = ctx.note ?? (() => {});
  const started = performance.now();
  const fail = (what, extra = {}) => stats.fail(what, extra);
  const idle = {
    connections: o.idle,
    holders: 0,
    opened: 0,
    failed: 0,
    failureCodes: {},
    openSec: null,
    closedEarly: 0,
    openAtEnd: null,
    fdLimit: fdLimit(),
    echo: { intervalMs: ECHO_INTERVAL_MS, sent: 0, received: 0, lost: 0 },
  };
  const phases = { without: newPhase(0), with: newPhase(o.idle) };
  const result = () => ({
    elapsedMs: performance.now() - started,
    idle: { ...idle, phases: { without: phaseJSON(phases.without), with: phaseJSON(phases.with) } },
  });

  let server;
  try {
    server = await lws.listen({ host: o.host, port: 0, backlog: 4096 });
  } catch (err) {
    fail('idle-listen', { code: codeOf(err), message: err.message });
    return result();
  }
  let phase = null;
  let closing = false;
  let serverSide = 0; // idle connections open on the server
  let onServerSide = null;
  server.on('connection', (conn, request) => {
    conn.on('error', () => {});
    if (request.path.startsWith('/echo')) {
      conn.on('message', (data, isBinary) => {
        if (conn.isOpen) conn.send(data, isBinary);
      });
      return;
    }
    serverSide++;
    onServerSide?.();
    conn.on('close', (code, reason) => {
      serverSide--;
      onServerSide?.();
      if (!closing) {
        idle.closedEarly++;
        fail('idle-closed', {
          code,
          message: `an idle connection closed during the run: ${reason}`,
        });
      }
    });
  });
  /** Waits until `cond()` holds (checked on each idle open/close), at most `ms`. */
  const serverSideUntil = (cond, ms) =>
    new Promise((resolve) => {
      if (cond()) return resolve(true);
      const timer = setTimeout(() => {
        onServerSide = null;
        resolve(cond());
      }, ms);
      onServerSide = () => {
        if (cond()) {
          clearTimeout(timer);
          onServerSide = null;
          resolve(true);
        }
      };
    });

  // The echo probe.
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  const url = `ws://${host}:${server.port}`;
  let echo = null;
  let echoNext = 0;
  let echoTimer;
  let onEcho = null;
  try {
    echo = await client.connect(`${url}/echo`, { timeoutMs: o.timeoutMs });
    echo.on('error', () => {});
    echo.on('message', (data) => {
      const now = process.hrtime.bigint();
      if (!Buffer.isBuffer(data) || data.length !== ECHO_BYTES) {
        fail('echo-corrupt', { message: `an echo of ${data.length} bytes` });
        return;
      }
      const seq = data.readUInt32LE(0);
      if (seq !== echoNext) {
        fail('echo-order', { message: `echo ${seq} where ${echoNext} was due` });
      }
      echoNext = seq + 1;
      idle.echo.received++;
      phase?.echo.record(Number(now - data.readBigUInt64LE(8)) / 1000);
      onEcho?.();
    });
    echoTimer = setInterval(() => {
      if (!echo.isOpen) return;
      const b = Buffer.alloc(ECHO_BYTES);
      b.writeUInt32LE(idle.echo.sent, 0);
      b.writeBigUInt64LE(process.hrtime.bigint(), 8);
      echo.send(b);
      idle.echo.sent++;
    }, ECHO_INTERVAL_MS);
  } catch (err) {
    fail('echo-connect', { code: codeOf(err), message: err.message });
  }

  const runPhase = async (p, ms) => {
    phase = p;
    ctx.onFrameLatency = (us) => p.frames.record(us);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await runWorker(ctx, ms);
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    p.seconds = wallMs / 1000;
    p.cpuPercent = wallMs > 0 ? ((cpu.user + cpu.system) / 1000 / wallMs) * 100 : null;
    phase = null;
    ctx.onFrameLatency = undefined;
  };

  const holders = [];
  try {
    const half = (o.duration * 1000) / 2;
    await runPhase(phases.without, half);
    if (!signal.aborted) {
      // Open the idle connections (not timed as part of either half).
      const t0 = performance.now();
      const soft = idle.fdLimit?.soft ?? 1024;
      const perHolder = Math.max(1, Math.min(PER_HOLDER, soft - 128));
      idle.holders = Math.ceil(o.idle / perHolder);
      note(`opening ${o.idle} idle connections from ${idle.holders} helper process(es)`);
      for (let i = 0; i < idle.holders; i++) {
        const count = Math.min(perHolder, o.idle - i * perHolder);
        const h = forkHelper(HOLDER, { onNote: note, label: 'idle holder' });
        h.send({
          type: 'open',
          host: o.host,
          port: server.port,
          path: '/idle',
          count,
          concurrency: OPEN_CONCURRENCY,
          timeoutMs: o.timeoutMs,
        });
        holders.push(h);
      }
      const opened = await Promise.all(
        holders.map((h) => h.next(['opened'], o.timeoutMs + perHolder * 10)),
      );
      opened.forEach((m, i) => {
        if (!m) {
          fail('idle-connect', { message: `idle holder ${holders[i].child.pid} did not report` });
          return;
        }
        idle.opened += m.ok;
        idle.failed += m.failed;
        for (const [c, n] of Object.entries(m.codes)) {
          idle.failureCodes[c] = (idle.failureCodes[c] ?? 0) + n;
        }
        if (m.failed > 0) {
          fail('idle-connect', { message: `${m.failed} idle connections failed: ${m.firstError}` });
        }
      });
      const arrived = await serverSideUntil(() => serverSide >= idle.opened, o.timeoutMs);
      if (!arrived) {
        fail('idle-connect', {
          message: `the server has ${serverSide} of ${idle.opened} idle connections`,
        });
      }
      idle.openSec = Math.round(performance.now() - t0) / 1000;
      ctx.excludedMs = performance.now() - t0;
      if (!signal.aborted) {
        note(`${serverSide} idle connections open; measuring with them`);
        await runPhase(phases.with, half);
      }
    }
  } finally {
    // The echoes in flight come back; then everything closes, idle connections first.
    clearInterval(echoTimer);
    if (echo?.isOpen && idle.echo.received < idle.echo.sent) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, o.timeoutMs);
        onEcho = () => {
          if (idle.echo.received >= idle.echo.sent) {
            clearTimeout(timer);
            resolve();
          }
        };
      });
      onEcho = null;
    }
    idle.echo.lost = idle.echo.sent - idle.echo.received;
    if (idle.echo.lost > 0) {
      fail('echo-lost', {
        message: `${idle.echo.lost} of ${idle.echo.sent} echoes never came back`,
      });
    }
    idle.openAtEnd = serverSide;
    closing = true;
    for (const h of holders) h.send({ type: 'close' });
    for (const h of holders) {
      const ex = await h.waitExit(o.timeoutMs);
      if (ex.killed || ex.code !== 0) {
        fail('idle-holder', {
          code: ex.code ?? ex.signal,
          message: `idle holder ${h.child.pid} ${ex.killed ? 'did not exit; killed' : `exited with ${ex.code ?? ex.signal}`}; stderr: ${h.stderrTail.trim().slice(-300)}`,
        });
      }
    }
    if (!(await serverSideUntil(() => serverSide === 0, o.timeoutMs))) {
      fail('idle-close', { message: `${serverSide} idle connections still open on the server` });
    }
    if (echo?.isOpen) echo.close(1000, 'done');
    await server.close();
  }
  return result();
}

module.exports = { checkIdleLimit, runIdle };
