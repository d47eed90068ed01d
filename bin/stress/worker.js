'use strict';
// The cycle loop of node-lws-stress: one worker's run.
//
// Each cycle: listen (port 0, a random port of --port-range, or the same port
// again), connect --clients clients, stream for --cycle-ms (the server sends
// video and audio frames to every client, every client sends input frames to
// the server), stop sending, wait until every frame handed to send() has
// arrived, close the clients, `await server.close()`, check that the port is
// no longer held by this process, and start the next cycle at once.

const fs = require('node:fs');
const { setTimeout: sleep } = require('node:timers/promises');
const {
  AUDIO_BYTES,
  AUDIO_INTERVAL_MS,
  HEADER_BYTES,
  INPUT_INTERVAL_MS,
  KIND,
  KIND_NAMES,
  decodeFrame,
  encodeFrame,
} = require('./frames');
const { tcpSockets } = require('./proc-net-tcp');
const { bump } = require('./stats');

const TICK_MS = 4;
const PORT_TRIES_PER_CYCLE = 20;
const MAX_CONSECUTIVE_BIND_FAILURES = 5;

// ---------------------------------------------------------------------------
// /proc: who holds a port (to tell a busy port from a bind bug)
// ---------------------------------------------------------------------------

/** TCP sockets whose local port is `port` (see proc-net-tcp.js), or null without /proc. */
function socketsOnPort(port) {
  return tcpSockets({ port });
}

/** Socket inodes of this process. */
function ownSocketInodes() {
  const set = new Set();
  let fds;
  try {
    fds = fs.readdirSync('/proc/self/fd');
  } catch {
    return set;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`));
      if (m) set.add(m[1]);
    } catch {
      /* closed meanwhile */
    }
  }
  return set;
}

/**
 * Why was `port` busy? `{ holder, explained }`. Explained: a listener, a live
 * connection, or a TIME_WAIT of an outgoing connection (its remote port is one
 * of the stress servers', or the port was never a stress server's): SO_REUSEADDR
 * cannot override those. Not explained: nothing holds it, or only TIME_WAIT
 * sockets of a stress server's own accepted connections (SO_REUSEADDR must
 * allow re-binding over those).
 */
function classifyBusyPort(port, listenerPorts) {
  const socks = socketsOnPort(port);
  if (socks === null) return { holder: 'unknown (no /proc)', explained: true };
  if (socks.length === 0) return { holder: 'none', explained: false };
  if (socks.some((s) => s.state === 'LISTEN')) return { holder: 'listener', explained: true };
  const live = socks.find((s) => s.state !== 'TIME_WAIT');
  if (live) return { holder: `connection (${live.state})`, explained: true };
  if (socks.some((s) => listenerPorts.has(s.remotePort))) {
    return { holder: 'TIME_WAIT of an outgoing connection', explained: true };
  }
  if (!listenerPorts.has(port)) return { holder: 'TIME_WAIT (foreign)', explained: true };
  return { holder: 'TIME_WAIT of its own accepted connections', explained: false };
}

function ephemeralRange() {
  try {
    const [a, b] = fs
      .readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (a > 0 && b >= a) return [a, b];
  } catch {
    /* not Linux */
  }
  return [32768, 60999];
}

// ---------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG for the port choice. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function codeOf(err) {
  return (err && (err.code ?? err.name)) || 'UNKNOWN';
}

/**
 * The worker. `ctx`: { o, lws, client, payloads, stats, signal (AbortSignal to
 * stop early), listenerPorts (Set, shared with other workers via onPort),
 * onPort(port) }. Resolves when the run is over.
 */
async function runWorker(ctx) {
  const { o, stats, signal } = ctx;
  const started = performance.now();
  const deadline = started + o.duration * 1000;
  ctx.random = prng(o.seed);
  ctx.ephemeral = ephemeralRange();
  ctx.samePort = null;
  ctx.portsSeen = new Set();
  ctx.bindFailuresInARow = 0;
  for (let index = 1; !signal.aborted; index++) {
    const left = deadline - performance.now();
    if (left <= 0 || (index > 1 && left < Math.min(50, o.cycleMs))) break;
    await runCycle(ctx, index, Math.min(o.cycleMs, left));
    if (ctx.bindFailuresInARow >= MAX_CONSECUTIVE_BIND_FAILURES) {
      stats.fail('gave-up', {
        message: `${ctx.bindFailuresInARow} cycles in a row could not listen; stopping`,
      });
      break;
    }
  }
  return performance.now() - started;
}

function choosePort(ctx) {
  const { o } = ctx;
  if (o.samePort && ctx.samePort !== null) return ctx.samePort;
  if (o.portRange) {
    const [a, b] = o.portRange;
    return a + Math.floor(ctx.random() * (b - a + 1));
  }
  return 0;
}

/** Listens for one cycle; null when no server could be started (already counted). */
async function bindServer(ctx, index) {
  const { o, stats, lws } = ctx;
  const tries =
    o.portRange && !(o.samePort && ctx.samePort !== null)
      ? Math.min(PORT_TRIES_PER_CYCLE, o.portRange[1] - o.portRange[0] + 1)
      : 1;
  let lastHolder = '';
  for (let t = 0; t < tries; t++) {
    const port = choosePort(ctx);
    const t0 = performance.now();
    try {
      const server = await lws.listen({
        host: o.host,
        port,
        bindRetry: {
          retries: o.bindRetries,
          onRetry: ({ error }) => {
            stats.bind.retries++;
            bump(stats.bind.retryCodes, codeOf(error));
          },
        },
      });
      stats.timings.listen.record((performance.now() - t0) * 1000);
      stats.bind.ok++;
      stats.bind.portsUsed++;
      if (!ctx.portsSeen.has(server.port)) {
        ctx.portsSeen.add(server.port);
        stats.bind.distinctPorts++;
      }
      stats.bind.maxAttempts = Math.max(stats.bind.maxAttempts, server.bindAttempts);
      if (server.port >= ctx.ephemeral[0] && server.port <= ctx.ephemeral[1]) {
        stats.bind.portsInEphemeralRange++;
      }
      if (port !== 0 && server.port !== port) {
        stats.fail('bind-wrong-port', { cycle: index, port, message: `got port ${server.port}` });
      }
      if (o.samePort) ctx.samePort = server.port;
      if (!ctx.listenerPorts.has(server.port)) {
        ctx.listenerPorts.add(server.port);
        ctx.onPort?.(server.port);
      }
      ctx.bindFailuresInARow = 0;
      return server;
    } catch (err) {
      const code = codeOf(err);
      bump(stats.bind.failures, code);
      if (code === 'EADDRINUSE' && port !== 0) {
        const c = classifyBusyPort(port, ctx.listenerPorts);
        bump(stats.bind.holders, c.holder);
        if (c.explained) {
          lastHolder = c.holder;
          stats.bind.failuresExplained++;
          continue;
        }
        stats.fail('bind', {
          cycle: index,
          port,
          code,
          message: `${err.message}; attempts ${err.attempts ?? '?'}; held by: ${c.holder}`,
        });
      } else {
        stats.fail('bind', { cycle: index, port, code, message: err.message });
      }
      ctx.bindFailuresInARow++;
      return null;
    }
  }
  // Every try hit a port that is really busy (or, for --same-port, the one port was).
  if (!(o.samePort && ctx.samePort !== null)) {
    stats.fail('bind', {
      cycle: index,
      code: 'EADDRINUSE',
      message: `no free port in ${tries} ${tries === 1 ? 'try' : 'tries'} in ${o.portRange.join('-')} (last held by: ${lastHolder})`,
    });
  }
  ctx.bindFailuresInARow++;
  await sleep(50);
  return null;
}

function newRec() {
  return { sent: 0, next: 0, good: 0, corrupt: 0 };
}

async function runCycle(ctx, index, streamMs) {
  const { o, stats, payloads, client, signal } = ctx;
  const failuresBefore = stats.failureCount;
  stats.cycles++;
  const server = await bindServer(ctx, index);
  if (!server) {
    if (stats.failureCount > failuresBefore) stats.cyclesFailed++;
    return;
  }
  const port = server.port;
  const fail = (what, extra = {}) => stats.fail(what, { cycle: index, port, ...extra });

  let phase = 'connect'; // connect -> stream -> drain -> closing -> closed
  let pending = 0; // frames handed to send() and not arrived yet
  let onSettled = null; // wakes the drain / close waits
  const wake = () => onSettled?.();

  const clients = [];
  for (let id = 0; id < o.clients; id++) {
    clients.push({
      id,
      t: null,
      t0: 0,
      inputTicks: 0,
      open: false,
      closeInfo: null,
      s: null, // the server side
      recs: { video: newRec(), audio: newRec(), input: newRec() },
    });
  }

  const receive = (cl, data, side) => {
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    const f = decodeFrame(payloads, data);
    let kindName = KIND_NAMES[f.kind];
    const wrongDirection =
      f.kind !== 0 && (side === 'server') !== (f.kind === KIND.input) ? 'wrong-direction' : '';
    if (!kindName || wrongDirection) {
      kindName =
        side === 'server' ? 'input' : bytes > AUDIO_BYTES + HEADER_BYTES ? 'video' : 'audio';
    }
    const k = stats.kinds[kindName];
    const rec = cl.recs[kindName];
    k.received++;
    k.bytes += bytes;
    pending--;
    const why = f.ok
      ? wrongDirection || (f.streamId !== cl.id ? `wrong-stream ${f.streamId}` : '')
      : f.why;
    if (why) {
      k.corrupt++;
      rec.corrupt++;
      fail('corrupt-frame', {
        message: `${kindName} seq ${f.seq} to ${side} of client ${cl.id}: ${why} (${bytes} bytes)`,
      });
    } else {
      if (f.seq === rec.next) rec.good++;
      else {
        k.outOfOrder++;
        fail('out-of-order', {
          message: `${kindName} to ${side} of client ${cl.id}: seq ${f.seq}, expected ${rec.next}`,
        });
      }
      rec.next = Math.max(rec.next, f.seq + 1);
      stats.latency[kindName].record(Number(process.hrtime.bigint() - f.sentAt) / 1000);
    }
    if (pending <= 0) wake();
  };

  const send = (transport, cl, kind, id) => {
    const name = KIND_NAMES[kind];
    const rec = cl.recs[name];
    const frame = encodeFrame(payloads, kind, rec.sent, id);
    let ok;
    try {
      ok = transport.send(frame);
    } catch (err) {
      fail('send-threw', { code: codeOf(err), message: err.message });
      return false;
    }
    rec.sent++;
    stats.kinds[name].sent++;
    pending++;
    return ok;
  };

  server.on('error', (err) => fail('server-error', { code: codeOf(err), message: err.message }));
  server.on('connection', (conn, request) => {
    const m = /[?&]c=(\d+)/.exec(request.path);
    const cl = m ? clients[Number(m[1])] : undefined;
    if (!cl || cl.s) {
      fail('server-unknown-connection', { message: `path ${request.path}` });
      conn.close(1008, 'unknown');
      return;
    }
    const s = { conn, t0: performance.now(), videoTicks: 0, audioTicks: 0, blocked: false };
    s.closed = false;
    cl.s = s;
    conn.on('drain', () => {
      s.blocked = false;
    });
    conn.on('message', (data) => receive(cl, data, 'server'));
    conn.on('error', (err) =>
      fail('server-connection-error', { code: codeOf(err), message: err.message }),
    );
    conn.on('close', (code, reason) => {
      s.closed = true;
      if (phase !== 'closing') {
        fail('server-connection-closed-early', {
          code,
          message: `client ${cl.id} in phase ${phase}: ${code} ${reason}`,
        });
      }
      wake();
    });
  });

  // Connect.
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  const connectOne = (cl) =>
    new Promise((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        const e = new Error(`connect() still pending after ${o.timeoutMs + 1000} ms`);
        e.code = 'ERR_CONNECT_HUNG';
        reject(e);
      }, o.timeoutMs + 1000);
      const t0 = performance.now();
      client.connect(`ws://${host}:${port}/stream?c=${cl.id}`, { timeoutMs: o.timeoutMs }).then(
        (t) => {
          if (timedOut) {
            t.terminate();
            return;
          }
          clearTimeout(timer);
          stats.timings.connect.record((performance.now() - t0) * 1000);
          resolve(t);
        },
        (err) => {
          if (timedOut) return;
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  const results = await Promise.allSettled(clients.map(connectOne));
  results.forEach((r, id) => {
    const cl = clients[id];
    if (r.status === 'rejected') {
      bump(stats.connect.failures, codeOf(r.reason));
      fail('connect', { code: codeOf(r.reason), message: r.reason?.message });
      return;
    }
    stats.connect.ok++;
    const t = r.value;
    cl.t = t;
    cl.open = true;
    cl.t0 = performance.now();
    t.on('message', (data) => receive(cl, data, 'client'));
    t.on('error', (err) => fail('client-error', { code: codeOf(err), message: err.message }));
    t.on('close', (code, reason) => {
      cl.open = false;
      cl.closeInfo = { code, reason };
      if (phase !== 'closing') {
        fail('client-closed-early', {
          code,
          message: `client ${cl.id} in phase ${phase}: ${code} ${reason}`,
        });
      } else if (code !== 1000) {
        fail('client-close-code', { code, message: `client ${cl.id}: ${code} ${reason}` });
      }
      wake();
    });
  });

  // Stream.
  phase = 'stream';
  const tick = () => {
    const now = performance.now();
    for (const cl of clients) {
      const s = cl.s;
      if (s && !s.closed && s.conn.isOpen) {
        const el = now - s.t0;
        if (o.fps > 0) {
          const due = Math.floor((el * o.fps) / 1000) + 1;
          while (s.videoTicks < due) {
            s.videoTicks++;
            if (s.blocked) stats.kinds.video.dropped++;
            else if (!send(s.conn, cl, KIND.video, cl.id)) s.blocked = true;
          }
        }
        const audioDue = Math.floor(el / AUDIO_INTERVAL_MS) + 1;
        while (s.audioTicks < audioDue) {
          s.audioTicks++;
          // Audio is never dropped; a false return only stops video until 'drain'.
          if (!send(s.conn, cl, KIND.audio, cl.id)) s.blocked = true;
        }
      }
      if (cl.open && cl.t.isOpen) {
        const due = Math.floor((now - cl.t0) / INPUT_INTERVAL_MS) + 1;
        while (cl.inputTicks < due) {
          cl.inputTicks++;
          send(cl.t, cl, KIND.input, cl.id);
        }
      }
    }
  };
  const ticker = setInterval(tick, TICK_MS);
  tick();
  try {
    await sleep(streamMs, undefined, { signal });
  } catch {
    /* stopped early (SIGINT) */
  }
  clearInterval(ticker);

  // Wait for every frame in flight.
  phase = 'drain';
  const waitUntil = async (cond, label) => {
    if (cond()) return true;
    let timer;
    const ok = await new Promise((resolve) => {
      onSettled = () => {
        if (cond()) resolve(true);
      };
      timer = setTimeout(() => resolve(cond()), o.timeoutMs);
    });
    clearTimeout(timer);
    onSettled = null;
    if (!ok) fail('timeout', { message: label() });
    return ok;
  };
  await waitUntil(
    () => pending <= 0,
    () => `${pending} frames still in flight ${o.timeoutMs} ms after the senders stopped`,
  );
  for (const cl of clients) {
    if (cl.t && !cl.s) fail('server-missed-connection', { message: `client ${cl.id}` });
  }

  // Close: the clients first, then the server.
  phase = 'closing';
  for (const cl of clients) {
    if (cl.open) {
      try {
        cl.t.close(1000, 'cycle end');
      } catch (err) {
        fail('client-close-threw', { code: codeOf(err), message: err.message });
      }
    }
  }
  const allClosed = () => clients.every((cl) => !cl.open && (!cl.s || cl.s.closed));
  const closedInTime = await waitUntil(
    allClosed,
    () =>
      `closing handshakes not finished after ${o.timeoutMs} ms: ${clients
        .filter((cl) => cl.open || (cl.s && !cl.s.closed))
        .map(
          (cl) =>
            `client ${cl.id} (client ${cl.open ? 'open' : 'closed'}, server ${cl.s?.closed ? 'closed' : 'open'})`,
        )
        .join(', ')}`,
  );
  if (!closedInTime) for (const cl of clients) if (cl.open) cl.t.terminate();

  const c0 = performance.now();
  let closeTimer;
  const closed = await Promise.race([
    server.close().then(() => true),
    new Promise((resolve) => {
      closeTimer = setTimeout(() => resolve(false), o.timeoutMs);
    }),
  ]);
  clearTimeout(closeTimer);
  phase = 'closed';
  if (!closed) {
    fail('server-close-timeout', { message: `server.close() pending after ${o.timeoutMs} ms` });
  } else {
    stats.timings.serverClose.record((performance.now() - c0) * 1000);
    if (server.connectionCount !== 0) {
      fail('connections-after-close', { message: `${server.connectionCount} left` });
    }
    // close() must free the port before it resolves.
    const socks = socketsOnPort(port);
    if (socks) {
      const own = ownSocketInodes();
      const held = socks.filter((s) => s.state === 'LISTEN' && own.has(s.inode));
      if (held.length) fail('port-held-after-close', { message: 'still listening after close()' });
    }
  }

  // Account: a frame handed to send() that did not arrive intact and in order is lost.
  for (const cl of clients) {
    for (const name of ['video', 'audio', 'input']) {
      const r = cl.recs[name];
      const lost = Math.max(0, r.sent - r.good - r.corrupt);
      if (lost > 0) {
        stats.kinds[name].lost += lost;
        fail('lost', { message: `${lost} of ${r.sent} ${name} frames of client ${cl.id}` });
      }
    }
  }
  if (stats.failureCount > failuresBefore) stats.cyclesFailed++;
}

module.exports = { runWorker, classifyBusyPort, socketsOnPort };
