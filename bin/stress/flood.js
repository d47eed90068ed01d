'use strict';
// `node-lws-stress --flood`: the receive-side attack. For each direction (to-server: clients of
// this process flood a server in a receiver process; to-client: a server of this process floods
// clients in a receiver process) the sender writes binary messages as fast as TCP allows —
// send() until it returns false, then wait for 'drain' — for its share of --duration, then
// sends an end marker ('end <count>', text) on each connection. The receiver's handler checks
// every message and busy-waits --handler-us; the receiver reports what it got once every
// connection's end marker has arrived.
//
// Measured per direction: messages sent / received / lost / corrupt / out of order, the
// receiver's peak RSS (/proc/<pid>/status VmHWM of the receiver process, read by this process)
// and, for a node-lws receiver, its peak nativeMemory().receivePending; how late a 10 ms timer
// of the receiver ran at worst (its event loop kept busy by deliveries); the sender's peak
// bufferedAmount and the time it spent waiting for 'drain' (TCP backpressure reaching it).

const path = require('node:path');
const { setImmediate: immediate } = require('node:timers/promises');
const { forkHelper } = require('./child');
const { HEADER_BYTES, KIND, createPayloads, encodeFrame } = require('./frames');
const { Histogram } = require('./stats');
const { procStatus } = require('./proc-status');

const RECEIVER = path.join(__dirname, 'flood-receiver.js');
/** The sender yields to the event loop this often while send() keeps returning true. */
const SLICE_MS = 10;
/** How often this process samples the receiver's RSS. */
const SAMPLE_MS = 100;
/** After a drain timeout, how long the receiver gets to answer { type: 'report' }. */
const REPORT_MS = 5000;

const MiB = 1024 * 1024;
const round = (v, d = 1) => (v === null ? null : Math.round(v * 10 ** d) / 10 ** d);

function codeOf(err) {
  return (err && (err.code ?? err.name)) || 'UNKNOWN';
}

/**
 * Resolves on 'drain' or 'close' of `t`, after `ms`, or when the run is stopped (`stops`: the
 * set of wake-ups one abort listener calls, so that many connections add one listener).
 */
function drainOr(t, ms, stops) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      t.off('drain', done);
      t.off('close', done);
      stops.delete(done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    t.on('drain', done);
    t.on('close', done);
    stops.add(done);
  });
}

/** Assumed cost of checking one message when --handler-us is below it (microseconds). */
const MIN_HANDLER_US = 5;

/** Waits until `t` emits 'close' (or `ms` pass); true when it did. */
function closed(t, isClosed, ms) {
  if (isClosed()) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(isClosed()), ms);
    t.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * One direction. `ctx`: { o, lws, client, stats, signal, note(text), onProgress(state) }.
 * Returns the direction's summary.
 */
async function runDirection(ctx, direction, floodMs) {
  const { o, lws, client, stats, signal } = ctx;
  const payloads = createPayloads(o.messageBytes - HEADER_BYTES);
  const d = {
    direction,
    ok: false,
    connections: o.clients,
    floodSec: 0,
    drainMs: null,
    sent: 0,
    received: 0,
    lost: 0,
    corrupt: 0,
    outOfOrder: 0,
    messagesPerSec: 0,
    MBps: 0,
    receiver: {
      library: o.receiver,
      pid: null,
      rssBeforeMiB: null,
      peakRssMiB: null,
      peakReceivePendingMiB: null,
      eventLoopMaxLagMs: null,
      exitCode: null,
    },
    sender: {
      library: direction === 'to-server' ? client.name : 'node-lws',
      peakBufferedAmount: 0,
      drainWaits: 0,
      blockedSec: 0,
    },
    queueDelayMs: null,
  };
  const failuresBefore = stats.failureCount;
  const fail = (what, extra = {}) =>
    stats.fail(what, { ...extra, message: `${direction}: ${extra.message ?? ''}` });

  const r = forkHelper(RECEIVER, { onNote: ctx.note, label: 'receiver', latestOnly: ['progress'] });
  d.receiver.pid = r.child.pid;
  let peakHwmKiB = 0;
  const sample = () => {
    const st = procStatus(r.child.pid);
    if (st && st.hwmKiB > peakHwmKiB) peakHwmKiB = st.hwmKiB;
    return st;
  };
  const sampler = setInterval(sample, SAMPLE_MS);
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  const senders = []; // { t, index, seq, isClosed }
  let server = null;

  const state = { direction, phase: 'setup', t0: 0, floodMs, senders, receiver: r, sample };
  ctx.onProgress(state);
  try {
    const startMsg = {
      type: 'start',
      receiver: o.receiver,
      host: o.host,
      connections: o.clients,
      messageBytes: o.messageBytes,
      handlerUs: o.handlerUs,
      receiveHwm: o.receiveHwm,
      totalReceiveLimit: o.totalReceiveLimit,
      timeoutMs: o.timeoutMs,
    };
    if (direction === 'to-server') {
      r.send({ ...startMsg, role: 'server' });
      const ready = await r.next(['ready', 'error'], o.timeoutMs);
      if (!ready || ready.type === 'error') {
        fail('receiver-start', { message: ready?.message ?? 'the receiver did not listen' });
        return d;
      }
      d.receiver.rssBeforeMiB = ready.status ? round(ready.status.rssKiB / 1024) : null;
      for (let i = 0; i < o.clients; i++) {
        try {
          const t = await client.connect(`ws://${host}:${ready.port}/flood?c=${i}`, {
            timeoutMs: o.timeoutMs,
          });
          const s = { t, index: i, seq: 0, closed: false };
          t.on('close', () => {
            s.closed = true;
          });
          t.on('error', (err) => fail('sender-error', { code: codeOf(err), message: err.message }));
          senders.push(s);
        } catch (err) {
          fail('connect', { code: codeOf(err), message: err.message });
          return d;
        }
      }
    } else {
      server = await lws.listen({ host: o.host, port: 0 });
      const byIndex = new Map();
      let onConn = null;
      server.on('connection', (conn, request) => {
        const m = /[?&]c=(\d+)/.exec(request.path);
        const i = m ? Number(m[1]) : -1;
        if (i < 0 || i >= o.clients || byIndex.has(i)) {
          conn.close(1008, 'unknown');
          return;
        }
        const s = { t: conn, index: i, seq: 0, closed: false };
        conn.on('close', () => {
          s.closed = true;
        });
        conn.on('error', (err) =>
          fail('sender-error', { code: codeOf(err), message: err.message }),
        );
        byIndex.set(i, s);
        onConn?.();
      });
      r.send({ ...startMsg, role: 'client', url: `ws://${host}:${server.port}/flood` });
      const ready = await r.next(['ready', 'error'], o.timeoutMs + o.clients * 100);
      if (!ready || ready.type === 'error') {
        fail('receiver-start', { message: ready?.message ?? 'the receiver did not connect' });
        return d;
      }
      d.receiver.rssBeforeMiB = ready.status ? round(ready.status.rssKiB / 1024) : null;
      if (byIndex.size < o.clients) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, o.timeoutMs);
          onConn = () => {
            if (byIndex.size === o.clients) {
              clearTimeout(timer);
              resolve();
            }
          };
        });
      }
      if (byIndex.size < o.clients) {
        fail('connect', {
          message: `${byIndex.size} of ${o.clients} receiver connections arrived`,
        });
        return d;
      }
      for (let i = 0; i < o.clients; i++) senders.push(byIndex.get(i));
    }

    // Flood.
    const stops = new Set();
    const onAbort = () => {
      for (const wake of [...stops]) wake();
    };
    signal.addEventListener('abort', onAbort);
    state.phase = 'flood';
    state.t0 = performance.now();
    const until = state.t0 + floodMs;
    const floodOne = async (s) => {
      const { t } = s;
      while (!signal.aborted && !s.closed && performance.now() < until) {
        const sliceEnd = Math.min(until, performance.now() + SLICE_MS);
        let ok = true;
        do {
          try {
            ok = t.send(encodeFrame(payloads, KIND.video, s.seq, s.index));
          } catch (err) {
            if (!s.closed) fail('send-threw', { code: codeOf(err), message: err.message });
            return;
          }
          s.seq++;
          if (!ok || (s.seq & 63) === 0) {
            const b = t.bufferedAmount;
            if (b > d.sender.peakBufferedAmount) d.sender.peakBufferedAmount = b;
          }
        } while (ok && performance.now() < sliceEnd);
        if (!ok) {
          d.sender.drainWaits++;
          const w0 = performance.now();
          await drainOr(t, until - w0, stops);
          d.sender.blockedSec += (performance.now() - w0) / 1000;
        } else await immediate();
      }
    };
    await Promise.all(senders.map(floodOne));
    signal.removeEventListener('abort', onAbort);
    const stopped = performance.now();
    d.floodSec = round((stopped - state.t0) / 1000, 2);
    for (const s of senders) {
      d.sent += s.seq;
      if (!s.closed && s.t.isOpen) {
        try {
          s.t.send(`end ${s.seq}`);
        } catch (err) {
          fail('send-threw', { code: codeOf(err), message: err.message });
        }
      } else fail('sender-closed', { message: `connection ${s.index} closed during the flood` });
    }

    // Drain: the receiver works through what TCP and node-lws still hold: --timeout-ms plus
    // twice what its handler needs for the messages it had not had when the sender stopped
    // (with many connections the kernel's socket buffers alone hold a lot).
    state.phase = 'drain';
    const behind = d.sent - (r.last.progress?.received ?? 0);
    const drainBudgetMs =
      o.timeoutMs + Math.ceil((behind * 2 * Math.max(o.handlerUs, MIN_HANDLER_US)) / 1000);
    let done = await r.next(['done'], drainBudgetMs);
    if (done) d.drainMs = Math.round(performance.now() - stopped);
    else {
      fail('timeout', {
        message: `the receiver had reported ${r.last.progress?.received ?? 'nothing'} of ${d.sent} messages ${drainBudgetMs} ms after the sender stopped`,
      });
      r.send({ type: 'report' });
      done = await r.next(['done'], REPORT_MS);
    }
    sample();
    if (!done) {
      fail('receiver-hung', { message: 'the receiver did not report its counts' });
      return d;
    }
    if (done.peakReceivePending !== null) {
      d.receiver.peakReceivePendingMiB = round(done.peakReceivePending / MiB, 2);
    }
    d.receiver.eventLoopMaxLagMs = done.maxLagMs;
    if (done.status && done.status.hwmKiB > peakHwmKiB) peakHwmKiB = done.status.hwmKiB;
    const delay = Histogram.fromJSON(done.latency).summaryMs();
    d.queueDelayMs = { p50: delay.p50, p99: delay.p99, max: delay.max };
    done.conns.forEach((c, i) => {
      const sent = senders[i]?.seq ?? 0;
      d.received += c.received;
      d.corrupt += c.corrupt;
      d.outOfOrder += c.outOfOrder;
      const lost = Math.max(0, sent - c.good - c.corrupt - c.outOfOrder);
      d.lost += lost;
      if (c.firstError)
        fail('corrupt-or-out-of-order', { message: `connection ${i}: ${c.firstError}` });
      if (lost > 0) fail('lost', { message: `connection ${i}: ${lost} of ${sent} messages` });
      if (c.ended !== null && c.ended !== sent) {
        fail('end-marker', {
          message: `connection ${i}: the end marker says ${c.ended}, sent ${sent}`,
        });
      }
    });
    const secs = d.floodSec + (d.drainMs ?? 0) / 1000;
    d.messagesPerSec = secs > 0 ? Math.round(d.received / secs) : 0;
    d.MBps = secs > 0 ? round((d.received * o.messageBytes) / 1e6 / secs, 2) : 0;
  } finally {
    // Close: the senders first (the receiver answers the closing handshakes), then its process.
    state.phase = 'closing';
    for (const s of senders) {
      if (!s.closed && s.t.isOpen) s.t.close(1000, 'flood over');
    }
    for (const s of senders) {
      if (!(await closed(s.t, () => s.closed, o.timeoutMs))) {
        fail('close-timeout', { message: `connection ${s.index} did not close` });
        s.t.terminate();
      }
    }
    if (server) await server.close();
    r.send({ type: 'exit' });
    const ex = await r.waitExit(o.timeoutMs);
    clearInterval(sampler);
    if (ex.killed) {
      fail('receiver-exit', { message: `receiver ${r.child.pid} did not exit; killed` });
    } else if (ex.code !== 0) {
      fail('receiver-exit', {
        code: ex.code ?? ex.signal,
        message: `receiver ${r.child.pid} exited with ${ex.code ?? ex.signal}${ex.error ? ` (${ex.error.message})` : ''}; stderr: ${r.stderrTail.trim().slice(-500)}`,
      });
    }
    d.receiver.exitCode = r.exit?.code ?? null;
    d.receiver.peakRssMiB = peakHwmKiB ? round(peakHwmKiB / 1024) : null;
    if (d.receiver.peakRssMiB !== null && d.receiver.peakRssMiB > o.maxRssMiB) {
      fail('rss', {
        message: `the receiver's peak RSS ${d.receiver.peakRssMiB} MiB is over --max-rss-mb ${o.maxRssMiB}`,
      });
    }
    d.sender.blockedSec = round(d.sender.blockedSec, 2);
    d.ok = stats.failureCount === failuresBefore;
    state.phase = 'done';
  }
  return d;
}

/** Runs every direction of --direction; resolves with their summaries. */
async function runFlood(ctx) {
  const { o } = ctx;
  const dirs = o.direction === 'both' ? ['to-server', 'to-client'] : [o.direction];
  const floodMs = (o.duration * 1000) / dirs.length;
  const out = [];
  for (const dir of dirs) {
    if (ctx.signal.aborted && out.length > 0) break;
    out.push(await runDirection(ctx, dir, floodMs));
  }
  return out;
}

module.exports = { runFlood };
