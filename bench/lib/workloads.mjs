// The workloads of `npm run bench`: their ids (for --only), which servers each one measures,
// how one cell (workload × server) is measured, and the one-line summary of a cell.
import { FLOOD_RSS_CAP_MB, f2, IDLE_SETTLE_MS, ONLY } from './config.mjs';
import { cycleWorkload, echoWorkload, reusePortWorkload } from './echo.mjs';
import { fanoutWorkload } from './fanout.mjs';
import { floodWorkload } from './flood.mjs';
import { idleCpuWorkload, idleMemoryWorkload } from './idle.mjs';
import { describeRedisFanout, redisFanoutWorkload } from './redisfanout.mjs';

/** Servers measured by most workloads (uws is dropped when uWebSockets.js is unavailable). */
const PEERS = ['lws', 'wsbu', 'ws', 'uws'];
/** The newer rows measure ws with bufferutil only (as ws is usually installed). */
const PEERS3 = ['lws', 'wsbu', 'uws'];

export const WORKLOADS = [
  {
    id: 'echo64',
    type: 'echo',
    title: '64 B echo, 100 conns × 1 in flight',
    conns: 100,
    inflight: 1,
    size: 64,
    main: 'msgs_per_s',
    withRaw: true,
  },
  {
    id: 'echo64x16',
    type: 'echo',
    title: '64 B echo, 100 conns × 16 in flight',
    conns: 100,
    inflight: 16,
    size: 64,
    main: 'msgs_per_s',
    withRaw: true,
  },
  {
    id: 'text16k',
    type: 'echo',
    title: "16 KiB text echo, 100 conns × 1 in flight (textAs 'buffer')",
    conns: 100,
    inflight: 1,
    size: 16384,
    main: 'mb_per_s',
    withRaw: true,
  },
  {
    id: 'text16kstr',
    type: 'echo',
    title: "16 KiB text echo as JS strings, 100 conns × 1 in flight (textAs 'string')",
    conns: 100,
    inflight: 1,
    size: 16384,
    main: 'mb_per_s',
    textAs: 'string',
  },
  {
    id: 'bin1m',
    type: 'echo',
    title: '1 MiB binary echo, 10 conns × 1 in flight',
    conns: 10,
    inflight: 1,
    size: 1 << 20,
    binary: true,
    main: 'mb_per_s',
    withRaw: true,
  },
  {
    id: 'latency',
    type: 'echo',
    title: 'RTT at 20k msg/s (64 B, 100 conns, open loop)',
    conns: 100,
    size: 64,
    rate: 20_000,
    main: 'p99_us',
    spin: true,
  },
  { id: 'idle10k', type: 'idlemem', title: 'idle memory at 10,000 connections' },
  {
    id: 'reuseport',
    type: 'reuse',
    title: '64 B × 100 conns × 16 in flight, 2 node-lws processes (reusePort)',
    conns: 100,
    inflight: 16,
    size: 64,
    servers: ['lws2'],
  },
  {
    id: 'listenclose',
    type: 'cycle',
    title: 'listen+close cycle (in process)',
    spin: true,
    servers: ['lws', 'wsbu'],
  },
  ...[
    ['fanout64x100', 64, '64 B', 100, 16],
    ['fanout64x1k', 64, '64 B', 1000, 16],
    ['fanout16kx100', 16384, '16 KiB', 100, 8],
    ['fanout300kx20', 300 * 1024, '300 KiB', 20, 4],
  ].map(([id, size, sizeName, subs, window]) => ({
    id,
    type: 'fanout',
    title: `fan-out ${sizeName} × ${subs.toLocaleString('en-US')} subscribers (window ${window})`,
    size,
    subs,
    window,
    servers: PEERS3,
  })),
  ...[
    ['idlecpu2k', 2000],
    ['idlecpu10k', 10_000],
    ['idlecpu19k', 19_000],
  ].map(([id, idleConns]) => ({
    id,
    type: 'idlecpu',
    title: `${idleConns.toLocaleString('en-US')} idle conns + 1 echoing 64 B at 50/s`,
    idleConns,
    spin: true,
    servers: PEERS3,
  })),
  {
    id: 'idlehb19k',
    type: 'idlecpu',
    title: '19,000 idle conns, heartbeats every 30 s, + 1 echoing at 50/s',
    idleConns: 19_000,
    heartbeatMs: 30_000,
    spin: true,
    servers: PEERS3,
    optional: true,
  },
  {
    id: 'flood',
    type: 'flood',
    title: 'receive flood: 1 KiB messages, handler busy 50 µs each',
    servers: PEERS3,
  },
  // Issue 13: connections handed over by a Node HTTP server (attach / handleUpgrade) against
  // node-lws's own listener, and wss:// behind Node's TLS (the JavaScript pump) against lws's
  // TLS and ws on the same https.Server.
  {
    id: 'handover64x16',
    type: 'echo',
    section: 'handover',
    title: '64 B echo, 100 conns × 16 in flight: handed over by http.Server vs listen()',
    conns: 100,
    inflight: 16,
    size: 64,
    main: 'msgs_per_s',
    servers: ['lws', 'lwsat'],
  },
  {
    id: 'handover1m',
    type: 'echo',
    section: 'handover',
    title: '1 MiB binary echo, 10 conns: handed over by http.Server vs listen()',
    conns: 10,
    inflight: 1,
    size: 1 << 20,
    binary: true,
    main: 'mb_per_s',
    servers: ['lws', 'lwsat'],
  },
  {
    id: 'wss64x16',
    type: 'echo',
    section: 'handover',
    title: 'wss 64 B echo, 100 conns × 16 in flight',
    conns: 100,
    inflight: 16,
    size: 64,
    tls: true,
    main: 'msgs_per_s',
    servers: ['lwsattls', 'lwstls', 'wsbutls'],
  },
  {
    id: 'wss1m',
    type: 'echo',
    section: 'handover',
    title: 'wss 1 MiB binary echo, 10 conns',
    conns: 10,
    inflight: 1,
    size: 1 << 20,
    binary: true,
    tls: true,
    main: 'mb_per_s',
    servers: ['lwsattls', 'lwstls', 'wsbutls'],
  },
  // Cross-process fan-out through Redis (issue 12): see bench/lib/redisfanout.mjs.
  ...[
    ['redisfanout1k', 1024, '1 KiB', 16],
    ['redisfanout64k', 65536, '64 KiB', 8],
  ].map(([id, size, sizeName, window]) => ({
    id,
    type: 'redisfanout',
    title: `fan-out ${sizeName} through Redis, 2 processes × 100 subscribers (window ${window})`,
    size,
    subs: 200,
    window,
    servers: ['lwsRedis', 'sioRedis', 'lws1', 'sio1'],
  })),
  {
    id: 'redislatency',
    type: 'redisfanout',
    title: 'fan-out 1 KiB at 100 msg/s (20,000 deliveries/s), 200 subscribers: latency',
    size: 1024,
    subs: 200,
    window: 64,
    rate: 100,
    servers: ['lwsRedis', 'lws1', 'sioRedis', 'sio1'],
  },
];

/** Workloads to run: those named by --only, else every one not marked optional. */
export function selectWorkloads() {
  const ids = WORKLOADS.map((w) => w.id);
  const unknown = ONLY.filter((id) => !ids.includes(id));
  if (unknown.length)
    throw new Error(`--only: no workload ${unknown.join(', ')} (ids: ${ids.join(', ')})`);
  return WORKLOADS.filter((w) => (ONLY.length ? ONLY.includes(w.id) : !w.optional));
}

/** The servers of workload `w` in run `run` (rotated from run to run), raw TCP echo last. */
export function kindsFor(w, run, uwsOk) {
  const kinds = (w.servers ?? PEERS).filter((k) => k !== 'uws' || uwsOk);
  if (w.type !== 'reuse' && w.type !== 'cycle')
    for (let k = 0; k < run % kinds.length; k++) kinds.push(kinds.shift());
  if (w.withRaw) kinds.push('raw');
  return kinds;
}

/** Measures one cell. */
export function measure(w, kind) {
  switch (w.type) {
    case 'idlemem':
      return idleMemoryWorkload(kind);
    case 'cycle':
      return cycleWorkload(kind === 'lws' ? 'lws' : 'ws');
    case 'reuse':
      return reusePortWorkload(w);
    case 'fanout':
      return fanoutWorkload(w, kind);
    case 'idlecpu':
      return idleCpuWorkload(w, kind);
    case 'flood':
      return floodWorkload(kind);
    case 'redisfanout':
      return redisFanoutWorkload(w, kind);
    default:
      return kind === 'raw'
        ? echoWorkload({ ...w, raw: true, binary: false }, 'raw')
        : echoWorkload(w, kind);
  }
}

/** One line about a measured cell, for the progress log. */
export function describe(w, r) {
  if (r.error) return `ERROR ${r.error}`;
  const others = `others ${r.other_cpu_pct?.toFixed(0) ?? '?'}% CPU`;
  switch (w.type) {
    case 'redisfanout':
      return describeRedisFanout(r);
    case 'idlemem':
      return `${(r.bytes_per_conn / 1024).toFixed(2)} KiB/conn (RSS ${r.rss_before_mb.toFixed(1)} -> ${r.rss_after_mb.toFixed(1)} MB; V8 heap ${Math.round(r.js_heap_per_conn)} B/conn), ${(r.bytes_per_conn_settled / 1024).toFixed(2)} KiB/conn after ${IDLE_SETTLE_MS / 1000} s idle, connect ${Math.round(r.connect_ms)} ms`;
    case 'cycle':
      return `median ${r.median_ms.toFixed(3)} ms, p99 ${r.p99_ms.toFixed(3)} ms`;
    case 'idlecpu':
      return `${r.idle_conns} idle: server ${r.server_cpu_pct.toFixed(1)}% CPU, echo p50 ${r.p50_us} us, p99 ${r.p99_us} us, max ${r.max_us} us, RSS ${r.peak_rss_mb.toFixed(0)} MB, ${f2(r.pings_per_conn)} pings/conn, connect ${Math.round(r.connect_ms)} ms, ${others}`;
    case 'flood':
      return `${r.delivered.toLocaleString('en-US')} of ${r.sent.toLocaleString('en-US')} delivered${r.in_order ? ' in order' : `, ${r.errors} ERRORS (${r.first_error})`}, peak RSS ${r.peak_rss_mb.toFixed(0)} MB${r.capped ? ` (passed the ${FLOOD_RSS_CAP_MB} MB cap ${r.cap_at_ms} ms after the start: sender stopped, server killed)` : ''}, sent for ${r.send_ms} ms`;
    case 'fanout':
      return `${Math.round(r.msgs_per_s).toLocaleString('en-US')} deliveries/s (${r.method}), p50 ${r.p50_us} us, p99 ${r.p99_us} us, server ${r.cpu_us_per_msg.toFixed(2)} us/delivery (${r.server_cpu_pct.toFixed(0)}% CPU), RSS ${r.peak_rss_mb.toFixed(0)} MB, client ${r.client_cpu_pct.toFixed(0)}% CPU, ${others}`;
    default:
      return (
        `${Math.round(r.msgs_per_s).toLocaleString('en-US')} msg/s, ${r.mb_per_s.toFixed(1)} MB/s, p50 ${r.p50_us} us, p99 ${r.p99_us} us, ` +
        `server ${r.cpu_us_per_msg.toFixed(2)} us/msg (${r.server_cpu_pct.toFixed(0)}% CPU), RSS ${r.peak_rss_mb.toFixed(0)} MB, ` +
        `client ${r.client_cpu_pct.toFixed(0)}% CPU, max gap ${r.max_gap_ms.toFixed(1)} ms, ${others}`
      );
  }
}
