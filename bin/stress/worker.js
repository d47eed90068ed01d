'use strict';
// The cycle loop of node-lws-stress: one worker's run.
//
// Each cycle: listen (port 0, a random port of --port-range, or the same port
// again), connect --clients clients, stream for --cycle-ms (the server sends
// video and audio frames to every client, every client sends input frames to
// the server), stop sending, wait until every frame handed to send() has
// arrived, close the clients, `await server.close()`, check that the port is
// no longer held by this process, and start the next cycle at once.
//
// --broadcast: every client's server connection subscribes to 'video' and
// 'audio' and the server publishes each frame once (server.publish); each
// subscriber's deliveries are checked, and with --drop the frames node-lws
// dropped for it (conn.stats.dropped) are told apart from lost ones.
// --slow-clients: the first K clients of a cycle read at most --slow-mbps
// (pause()/resume()) while the server streams.

const fs = require('node:fs');
const { setTimeout: sleep } = require('node:timers/promises');
const {
  AUDIO_BYTES,
  AUDIO_INTERVAL_MS,
  BROADCAST_STREAM,
  HEADER_BYTES,
  INPUT_INTERVAL_MS,
  KIND,
  KIND_NAMES,
  decodeFrame,
  encodeFrame,
} = require('./frames');
const { mulberry32 } = require('./random');
const { ephemeralPortRange, tcpSockets } = require('./proc-net-tcp');
const { bump } = require('./stats');

const TICK_MS = 4;
const PORT_TRIES_PER_CYCLE = 20;
const MAX_CONSECUTIVE_BIND_FAILURES = 5;
/** --drop: how often the drain wait looks at frames dropped natively (they raise no event). */
const DROP_POLL_MS = 20;
const TOPICS = ['video', 'audio'];

/** --drop: the video subscription's bound (--max-backpressure, or two frames, at least 256 KiB). */
function videoBound(o) {
  return o.maxBackpressure ?? Math.max(256 * 1024, 2 * (o.videoBytes + HEADER_BYTES));
}

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

// ---------------------------------------------------------------------------

function codeOf(err) {
  return (err && (err.code ?? err.name)) || 'UNKNOWN';
}

/**
 * The worker. `ctx`: { o, lws, client, payloads, stats, signal (AbortSignal to
 * stop early), listenerPorts (Set, shared with other workers via onPort),
 * onPort(port), onFrameLatency(us)? }. Runs cycles for `durationMs` (default
 * --duration) and resolves with the time taken.
 */
async function runWorker(ctx, durationMs = ctx.o.duration * 1000) {
  const { o, stats, signal } = ctx;
  const started = performance.now();
  const deadline = started + durationMs;
  ctx.random = mulberry32(o.seed);
  ctx.ephemeral = ephemeralPortRange();
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
        ...(o.drop
          ? { backpressurePolicy: 'drop', maxBackpressure: 4 * videoBound(o) }
          : undefined),
        lendMessages: o.lendMessages,
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

/**
 * One client's frames of one kind: sent (for --broadcast: published while it was subscribed),
 * next sequence number due, arrived intact and in order (--drop: after a gap too), corrupt.
 */
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
  let pending = 0; // frames handed to send() and not arrived yet (not the published ones)
  const topicSeq = { video: 0, audio: 0 }; // --broadcast: frames published per topic
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
      slow: id < o.slowClients,
      slowBytes: 0,
      slowTimer: null,
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
    const published = o.broadcast && side === 'client';
    const stream = published ? BROADCAST_STREAM : cl.id;
    if (!published) pending--;
    const why = f.ok
      ? wrongDirection || (f.streamId !== stream ? `wrong-stream ${f.streamId}` : '')
      : f.why;
    if (why) {
      k.corrupt++;
      rec.corrupt++;
      fail('corrupt-frame', {
        message: `${kindName} seq ${f.seq} to ${side} of client ${cl.id}: ${why} (${bytes} bytes)`,
      });
    } else {
      if (f.seq === rec.next) rec.good++;
      else if (published && o.drop && f.seq > rec.next) {
        // node-lws dropped the frames in between for this slow subscriber: accountSubscriber()
        // checks their number against conn.stats.dropped.
        rec.good++;
      } else {
        k.outOfOrder++;
        fail('out-of-order', {
          message: `${kindName} to ${side} of client ${cl.id}: seq ${f.seq}, expected ${rec.next}`,
        });
      }
      rec.next = Math.max(rec.next, f.seq + 1);
      const us = Number(process.hrtime.bigint() - f.sentAt) / 1000;
      stats.latency[kindName].record(us);
      ctx.onFrameLatency?.(us);
    }
    wake();
  };

  /** --broadcast: one frame to every subscriber of its topic. */
  const publish = (kind) => {
    const name = KIND_NAMES[kind];
    const seq = topicSeq[name]++;
    const frame = encodeFrame(payloads, kind, seq, BROADCAST_STREAM);
    let queued;
    try {
      queued = server.publish(name, frame, true);
    } catch (err) {
      fail('publish-threw', { code: codeOf(err), message: err.message });
      return;
    }
    stats.broadcast.published[name]++;
    let subscribers = 0;
    for (const cl of clients) {
      if (cl.s?.subscribed && !cl.s.closed) {
        subscribers++;
        cl.recs[name].sent++;
        stats.kinds[name].sent++;
      }
    }
    if (queued !== subscribers) {
      fail('publish-count', {
        message: `publish('${name}') seq ${seq} queued for ${queued} connections; ${subscribers} are subscribed`,
      });
    }
  };

  /** --slow-clients: pause a slow client that has read more than its rate allows so far. */
  const slowRate = (o.slowMBps * 1e6) / 1000; // bytes per ms
  const throttle = (cl, bytes) => {
    if (!cl.slow || phase !== 'stream') return;
    cl.slowBytes += bytes;
    const ahead = cl.slowBytes / slowRate - (performance.now() - cl.t0);
    if (ahead > 1 && cl.slowTimer === null && cl.open) {
      cl.t.pause();
      cl.slowTimer = setTimeout(() => {
        cl.slowTimer = null;
        if (cl.open) cl.t.resume();
      }, ahead);
    }
  };
  const unthrottle = () => {
    for (const cl of clients) {
      if (cl.slowTimer !== null) {
        clearTimeout(cl.slowTimer);
        cl.slowTimer = null;
        if (cl.open) cl.t.resume();
      }
    }
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
    s.subscribed = false;
    cl.s = s;
    if (o.broadcast) {
      // Due from now on: what is published from here (normally everything, from seq 0).
      for (const name of TOPICS) cl.recs[name].next = topicSeq[name];
      try {
        conn.subscribe('audio');
        conn.subscribe('video', o.drop ? { maxBackpressure: videoBound(o) } : undefined);
        s.subscribed = true;
        stats.broadcast.subscribers++;
      } catch (err) {
        fail('subscribe-threw', { code: codeOf(err), message: err.message });
      }
    }
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
      client
        .connect(`ws://${host}:${port}/stream?c=${cl.id}`, {
          timeoutMs: o.timeoutMs,
          lendMessages: o.lendMessages,
        })
        .then(
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
    t.on('message', (data) => {
      receive(cl, data, 'client');
      if (cl.slow) throttle(cl, typeof data === 'string' ? Buffer.byteLength(data) : data.length);
    });
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
  const streamT0 = performance.now();
  const bc = { videoTicks: 0, audioTicks: 0 };
  const tick = () => {
    const now = performance.now();
    if (o.broadcast) {
      const el = now - streamT0;
      if (o.fps > 0) {
        const due = Math.floor((el * o.fps) / 1000) + 1;
        while (bc.videoTicks < due) {
          bc.videoTicks++;
          publish(KIND.video);
        }
      }
      const audioDue = Math.floor(el / AUDIO_INTERVAL_MS) + 1;
      while (bc.audioTicks < audioDue) {
        bc.audioTicks++;
        publish(KIND.audio);
      }
    }
    for (const cl of clients) {
      const s = cl.s;
      if (!o.broadcast && s && !s.closed && s.conn.isOpen) {
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

  // Wait for every frame in flight (slow clients read at full speed from here).
  phase = 'drain';
  unthrottle();
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
  // --broadcast: a subscriber is settled when every frame published to it arrived or was
  // dropped for it natively (--drop; drops raise no event, hence the poll), or it closed.
  const unsettled = () =>
    clients.filter((cl) => {
      if (!cl.s?.subscribed || cl.s.closed || !cl.open) return false;
      let missing = 0;
      for (const name of TOPICS) {
        const r = cl.recs[name];
        missing += r.sent - r.good - r.corrupt;
      }
      return missing > (o.drop ? cl.s.conn.stats.dropped : 0);
    });
  const poll = o.broadcast && o.drop ? setInterval(wake, DROP_POLL_MS) : undefined;
  await waitUntil(
    () => pending <= 0 && (!o.broadcast || unsettled().length === 0),
    () =>
      `${pending} sent frames still in flight ${o.timeoutMs} ms after the senders stopped` +
      (o.broadcast ? `; ${unsettled().length} subscribers still missing published frames` : ''),
  );
  clearInterval(poll);
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
    if (o.broadcast && cl.s?.subscribed) accountSubscriber(ctx, cl, fail);
    for (const name of o.broadcast ? ['input'] : ['video', 'audio', 'input']) {
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

/**
 * --broadcast: what one subscriber missed. Without --drop every published frame must arrive.
 * With it, the missing ones must be exactly those node-lws counted as dropped for this
 * connection (conn.stats.dropped; attributed to video first, as the policy drops video
 * first); a frame missing beyond that count is lost.
 */
function accountSubscriber(ctx, cl, fail) {
  const { o, stats } = ctx;
  const b = stats.broadcast;
  const nativeDropped = cl.s.conn.stats.dropped;
  const missing = {};
  let missingAll = 0;
  let expected = 0;
  for (const name of TOPICS) {
    const r = cl.recs[name];
    missing[name] = Math.max(0, r.sent - r.good - r.corrupt);
    missingAll += missing[name];
    expected += r.sent;
  }
  b.deliveries += expected;
  let droppedLeft = o.drop ? nativeDropped : 0;
  let lost = 0;
  for (const name of TOPICS) {
    const d = Math.min(missing[name], droppedLeft);
    droppedLeft -= d;
    const k = stats.kinds[name];
    k.sent -= d; // never written to this subscriber
    k.dropped += d;
    k.lost += missing[name] - d;
    lost += missing[name] - d;
  }
  const dropped = missingAll - lost;
  b.dropped += dropped;
  b.lost += lost;
  if (dropped > 0) b.subscribersWithDrops++;
  b.maxDroppedPerSubscriber = Math.max(b.maxDroppedPerSubscriber, dropped);
  if (lost > 0) {
    b.subscribersWithLosses++;
    fail('lost', {
      message: `client ${cl.id} missed ${lost} published frames (video ${missing.video}, audio ${missing.audio} missing of ${cl.recs.video.sent} + ${cl.recs.audio.sent}; ${o.drop ? `node-lws dropped ${nativeDropped}` : 'no drop policy'})`,
    });
  }
  if (!o.drop && nativeDropped > 0) {
    fail('dropped-without-policy', {
      message: `client ${cl.id}: conn.stats.dropped is ${nativeDropped} without a drop policy`,
    });
  }
  if (o.drop && nativeDropped > missingAll) {
    fail('drop-count', {
      message: `client ${cl.id}: node-lws counted ${nativeDropped} dropped, but only ${missingAll} published frames are missing`,
    });
  }
}

module.exports = { runWorker, classifyBusyPort, socketsOnPort };
