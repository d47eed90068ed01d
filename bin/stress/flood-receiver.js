'use strict';
// The receiving end of `node-lws-stress --flood`, in its own process (forked by flood.js) so
// that its peak RSS (/proc/<pid>/status VmHWM) is the receiver's alone.
//
// Talks to its parent over IPC:
//   parent -> { type: 'start', role: 'server' | 'client', receiver: 'node-lws' | 'ws', host, url,
//               connections, messageBytes, handlerUs, receiveHwm, totalReceiveLimit, timeoutMs }
//   child  -> { type: 'ready', port, rssKiB }          listening (server) or connected (client)
//   child  -> { type: 'progress', received, receivePending }   every 250 ms
//   parent -> { type: 'report' }                        asks for 'done' now (a drain timed out)
//   child  -> { type: 'done', conns, latency, peakReceivePending, maxLagMs, status }
//                                                       every connection got its end marker
//                                                       ('end <count>', a text message) or closed
//   parent -> { type: 'exit' }                          close everything and exit 0
//   child  -> { type: 'error', message }                could not listen or connect
//
// Every binary message is a frame of frames.js (stream id = connection index): the handler
// checks it (intact, exactly once, in order) and then busy-waits until --handler-us have
// passed since it was called, like a slow application.

const path = require('node:path');
const { HEADER_BYTES, createPayloads, decodeFrame } = require('./frames');
const { Histogram } = require('./stats');
const { procStatus } = require('./proc-status');

const ROOT = path.resolve(__dirname, '..', '..');
const PROGRESS_MS = 250;
/** The event-loop lag probe: a timer of this period, its largest delay is reported. */
const LAG_PROBE_MS = 10;

function send(m) {
  if (process.connected) process.send(m);
}

function newConn() {
  return {
    received: 0,
    good: 0,
    corrupt: 0,
    outOfOrder: 0,
    bytes: 0,
    next: 0,
    ended: null,
    closed: false,
    closeCode: null,
    firstError: null,
  };
}

async function start(m) {
  const lws = m.receiver === 'node-lws' ? require(path.join(ROOT, 'dist', 'index.js')) : null;
  const WebSocket = m.receiver === 'ws' ? require('ws') : null;
  if (lws && m.totalReceiveLimit !== null)
    lws.configure({ totalReceiveLimit: m.totalReceiveLimit });
  const payloads = createPayloads(m.messageBytes - HEADER_BYTES);
  const budget = BigInt(m.handlerUs) * 1000n;
  const conns = Array.from({ length: m.connections }, newConn);
  const latency = new Histogram();
  let peakReceivePending = 0;
  let reported = false;
  // How late a 10 ms timer ran at worst: how long JavaScript was kept busy by deliveries.
  let maxLagMs = 0;
  let lastProbe = performance.now();
  const lagProbe = setInterval(() => {
    const now = performance.now();
    maxLagMs = Math.max(maxLagMs, now - lastProbe - LAG_PROBE_MS);
    lastProbe = now;
  }, LAG_PROBE_MS);
  const samplePending = () => {
    if (!lws) return 0;
    const p = lws.nativeMemory().receivePending;
    if (p > peakReceivePending) peakReceivePending = p;
    return p;
  };
  const totalReceived = () => conns.reduce((a, c) => a + c.received, 0);

  const report = () => {
    if (reported) return;
    reported = true;
    samplePending();
    send({
      type: 'done',
      conns,
      latency: latency.toJSON(),
      peakReceivePending: lws ? peakReceivePending : null,
      // The probe's own wait counts too: 'done' may come in the middle of a long block.
      maxLagMs:
        Math.round(Math.max(maxLagMs, performance.now() - lastProbe - LAG_PROBE_MS) * 10) / 10,
      status: procStatus(process.pid),
    });
  };
  const checkDone = () => {
    if (conns.every((c) => c.ended !== null || c.closed)) report();
  };

  const onMessage = (c, index, data, isBinary) => {
    const t0 = process.hrtime.bigint();
    if (!isBinary) {
      const text = typeof data === 'string' ? data : data.toString();
      const mm = /^end (\d+)$/.exec(text);
      if (mm) {
        c.ended = Number(mm[1]);
        checkDone();
      } else {
        c.corrupt++;
        c.firstError ??= `unexpected text message ${JSON.stringify(text.slice(0, 40))}`;
      }
      return;
    }
    c.received++;
    c.bytes += data.length;
    const f = decodeFrame(payloads, data);
    if (!f.ok || f.streamId !== index) {
      c.corrupt++;
      c.firstError ??= `message ${c.received}: ${f.ok ? `stream ${f.streamId}` : f.why}`;
    } else {
      if (f.seq === c.next) c.good++;
      else {
        c.outOfOrder++;
        c.firstError ??= `sequence number ${f.seq} where ${c.next} was due`;
      }
      c.next = f.seq + 1;
      latency.record(Number(t0 - f.sentAt) / 1000);
    }
    if ((c.received & 255) === 0) samplePending();
    while (process.hrtime.bigint() - t0 < budget);
  };
  const onClose = (c, code) => {
    c.closed = true;
    c.closeCode = code;
    checkDone();
  };

  let closeAll = async () => {};
  try {
    if (m.role === 'server') {
      const indexOf = (p) => {
        const mm = /[?&]c=(\d+)/.exec(p ?? '');
        const i = mm ? Number(mm[1]) : -1;
        return i >= 0 && i < conns.length ? i : -1;
      };
      if (lws) {
        const server = await lws.listen({
          host: m.host,
          port: 0,
          ...(m.receiveHwm !== null ? { receiveHighWaterMark: m.receiveHwm } : undefined),
        });
        server.on('connection', (conn, request) => {
          const i = indexOf(request.path);
          if (i < 0) return conn.close(1008, 'unknown');
          const c = conns[i];
          conn.on('message', (data, isBinary) => onMessage(c, i, data, isBinary));
          conn.on('close', (code) => onClose(c, code));
          conn.on('error', () => {});
        });
        closeAll = () => server.close();
        send({ type: 'ready', port: server.port, status: procStatus(process.pid) });
      } else {
        const wss = new WebSocket.WebSocketServer({
          host: m.host,
          port: 0,
          perMessageDeflate: false,
          maxPayload: 256 * 1024 * 1024,
        });
        await new Promise((resolve, reject) => {
          wss.once('listening', resolve);
          wss.once('error', reject);
        });
        wss.on('connection', (ws, req) => {
          const i = indexOf(req.url);
          if (i < 0) return ws.close(1008, 'unknown');
          const c = conns[i];
          ws.on('message', (data, isBinary) => onMessage(c, i, data, isBinary));
          ws.on('close', (code) => onClose(c, code));
          ws.on('error', () => {});
        });
        closeAll = () =>
          new Promise((resolve) => {
            for (const ws of wss.clients) ws.terminate();
            wss.close(() => resolve());
          });
        send({ type: 'ready', port: wss.address().port, status: procStatus(process.pid) });
      }
    } else {
      const open = [];
      for (let i = 0; i < conns.length; i++) {
        const c = conns[i];
        const url = `${m.url}?c=${i}`;
        if (lws) {
          const t = await lws.connect(url, {
            timeoutMs: m.timeoutMs,
            ...(m.receiveHwm !== null ? { receiveHighWaterMark: m.receiveHwm } : undefined),
          });
          t.on('message', (data, isBinary) => onMessage(c, i, data, isBinary));
          t.on('close', (code) => onClose(c, code));
          t.on('error', () => {});
          open.push(() => t.terminate());
        } else {
          const ws = new WebSocket(url, {
            perMessageDeflate: false,
            maxPayload: 256 * 1024 * 1024,
            handshakeTimeout: m.timeoutMs,
          });
          await new Promise((resolve, reject) => {
            ws.once('open', resolve);
            ws.once('error', reject);
          });
          ws.on('message', (data, isBinary) => onMessage(c, i, data, isBinary));
          ws.on('close', (code) => onClose(c, code));
          ws.on('error', () => {});
          open.push(() => ws.terminate());
        }
      }
      closeAll = async () => {
        for (const close of open) close();
      };
      send({ type: 'ready', port: 0, status: procStatus(process.pid) });
    }
  } catch (err) {
    send({ type: 'error', message: `${err.code ? `${err.code}: ` : ''}${err.message}` });
    return;
  }

  const timer = setInterval(() => {
    send({ type: 'progress', received: totalReceived(), receivePending: samplePending() });
  }, PROGRESS_MS);

  process.on('message', async (msg) => {
    if (msg?.type === 'report') report();
    else if (msg?.type === 'exit') {
      clearInterval(timer);
      clearInterval(lagProbe);
      try {
        await closeAll();
      } finally {
        process.exit(0);
      }
    }
  });
}

if (require.main === module) {
  // The parent handles Ctrl-C (the terminal sends SIGINT to the whole process group) and
  // tells this process when to stop; a parent that is gone ends it.
  process.on('SIGINT', () => {});
  process.on('disconnect', () => process.exit(0));
  process.once('message', (m) => {
    if (m?.type === 'start') start(m);
  });
}
