// Cross-process fan-out through Redis (issue 12): 2 server processes × 100 subscribers each, one
// publisher on the first, every message reaching the second through Redis; node-lws with its
// Redis adapter (node-lws/redis) against socket.io 4 with @socket.io/redis-adapter, the same
// topology, the same load client (bench/loadgen.c --mode fanout --port2, --proto sio for
// socket.io), every delivery checked (exactly once, in order, every byte). The latency row runs
// open loop at a moderate rate and adds each server in one process without Redis, the
// in-process figure the cross-process p99 is held against.
//
// Kinds: lwsRedis / sioRedis (2 processes + Redis), lws1 / sio1 (1 process, no Redis). The
// servers and redis-server run on the server core, the load client on the other; the server CPU
// figures include redis-server's.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  REDIS_SERVER,
  randomRedisPort,
  redisServerArgs,
  requireRedisServer,
} from '../../scripts/redis-server.mjs';
import { DURATION_MS, f0, f2, LAT_DURATION_MS, median, SERVER_CORE, WARMUP_MS } from './config.mjs';
import { summarize } from './echo.mjs';
import { otherLoad } from './machine.mjs';
import { pinned, procStatus, runLoadgen } from './proc.mjs';
import { SERVERS, startServer, stopServer } from './servers.mjs';

/** The kinds of the cross-process rows: which server script, how many processes, Redis or not. */
export const REDIS_KINDS = {
  lwsRedis: { base: 'lws', procs: 2, redis: true },
  sioRedis: { base: 'sio', procs: 2, redis: true },
  lws1: { base: 'lws', procs: 1, redis: false },
  sio1: { base: 'sio', procs: 1, redis: false },
};

/** redis-server on the server core, on a free port below 32768, no persistence. */
async function startRedis() {
  requireRedisServer();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-bench-redis-'));
  for (let attempt = 0; attempt < 8; attempt++) {
    const port = randomRedisPort();
    const child = pinned(SERVER_CORE, [REDIS_SERVER, ...redisServerArgs(port, dir)]);
    let out = '';
    const ready = await new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), 10_000);
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('Ready to accept connections')) {
          clearTimeout(t);
          resolve(true);
        }
      });
      child.once('exit', () => {
        clearTimeout(t);
        resolve(false);
      });
    });
    if (ready) {
      // Its pid (bash execs redis-server through taskset, which execs too: the same process).
      return {
        url: `redis://127.0.0.1:${port}`,
        pid: child.pid,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGKILL');
            await new Promise((r) => child.once('exit', r));
          }
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    child.kill('SIGKILL');
    if (!/in use/i.test(out)) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(
        `redis-server did not start: ${out.trim().split('\n').slice(-3).join(' | ')}`,
      );
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  throw new Error('redis-server: no free port found');
}

export async function redisFanoutWorkload(w, kind) {
  const k = REDIS_KINDS[kind];
  const redis = k.redis ? await startRedis() : undefined;
  const servers = [];
  try {
    const extra = ['--mode', 'fanout'];
    if (redis) extra.push('--redis', redis.url, '--redis-subscribers', String(k.procs));
    for (let i = 0; i < k.procs; i++) servers.push(await startServer(k.base, extra));
    await sleep(200);
    const args = ['--mode', 'fanout', '--port', String(servers[0].port)];
    if (servers[1]) args.push('--port2', String(servers[1].port));
    if (k.base === 'sio') args.push('--proto', 'sio');
    args.push('--conns', String(w.subs), '--size', String(w.size), '--window', String(w.window));
    if (w.rate) args.push('--rate', String(w.rate));
    const duration = w.rate ? LAT_DURATION_MS : DURATION_MS;
    args.push('--warmup-ms', String(WARMUP_MS), '--duration-ms', String(duration));
    const pids = servers.map((s) => s.pid);
    if (redis) pids.push(redis.pid);
    const other = otherLoad();
    const r = await runLoadgen(args, pids, WARMUP_MS + duration + 60_000, other.onEvent);
    if (r.missing)
      throw new Error(
        `${r.missing} deliveries still missing 5 s after the window (${r.published} messages published to ${r.subscribers} subscribers)`,
      );
    return {
      ...summarize(
        r,
        pids.map((pid) => procStatus(pid)),
      ),
      ...other.result(r),
      published: r.published,
      method: servers[0].info.fanout,
    };
  } finally {
    for (const s of servers) await stopServer(s);
    await redis?.stop();
  }
}

/** One line for the progress log. */
export function describeRedisFanout(r) {
  return `${Math.round(r.msgs_per_s).toLocaleString('en-US')} deliveries/s (${r.method}), p50 ${r.p50_us} us, p99 ${r.p99_us} us, servers + Redis ${r.cpu_us_per_msg.toFixed(2)} us/delivery (${r.server_cpu_pct.toFixed(0)}% CPU), RSS ${r.peak_rss_mb.toFixed(0)} MB, client ${r.client_cpu_pct.toFixed(0)}% CPU, others ${r.other_cpu_pct?.toFixed(0) ?? '?'}% CPU`;
}

/**
 * The report's section for these rows: its table, its targets, its markdown. `runs[i][id][kind]`
 * as bench/run.mjs keeps them.
 */
export function redisFanoutReport(runs, selected) {
  const ws = selected.filter((w) => w.type === 'redisfanout');
  if (!ws.length) return { lines: [], targets: [], md: [] };
  const get = (run, id, kind, key) => {
    const r = run[id]?.[kind];
    return r && !r.error ? r[key] : Number.NaN;
  };
  const med = (id, kind, key) => median(runs.map((run) => get(run, id, kind, key)));
  const ratio = (id, key, a, b) =>
    median(runs.map((run) => get(run, id, a, key) / get(run, id, b, key)));
  const label = (kind) => SERVERS[kind].label;
  const lines = [];
  const md = [];
  const targets = [];
  const tab = [['workload / metric', ...Object.keys(REDIS_KINDS).map(label), 'lws÷sio']];
  for (const w of ws) {
    tab.push([w.title, '', '', '', '', '']);
    const metrics = [
      ['deliveries (/s) ↑', 'msgs_per_s', f0],
      ['p50 publish → delivery (µs) ↓', 'p50_us', f0],
      ['p99 publish → delivery (µs) ↓', 'p99_us', f0],
      ['servers + Redis CPU per delivery (µs) ↓', 'cpu_us_per_msg', f2],
      ['servers + Redis peak RSS (MB) ↓', 'peak_rss_mb', f0],
      ['load client CPU (%)', 'client_cpu_pct', f0],
      ["other processes' CPU during the window (%)", 'other_cpu_pct', f0],
    ];
    for (const [name, key, fmt] of metrics) {
      const cells = Object.keys(REDIS_KINDS).map((kind) =>
        w.servers.includes(kind) ? fmt(med(w.id, kind, key)) : '',
      );
      const r = ratio(w.id, key, 'lwsRedis', 'sioRedis');
      tab.push([`  ${name}`, ...cells, /CPU \(%\)|other/.test(name) ? '' : `${f2(r)}×`]);
    }
    const rows = Object.keys(REDIS_KINDS).filter((k) => w.servers.includes(k));
    md.push(
      `| ${w.title} | ${rows.map((k) => `${label(k)}: ${f0(med(w.id, k, 'msgs_per_s'))} deliveries/s, p99 ${f0(med(w.id, k, 'p99_us'))} µs`).join('; ')} |`,
    );
    if (!w.rate) {
      const r = ratio(w.id, 'msgs_per_s', 'lwsRedis', 'sioRedis');
      targets.push({
        name: `issue 12: ${w.title}: node-lws ≥ 3× socket.io + redis-adapter deliveries/s`,
        ok: r >= 3,
        detail: `${f2(r)}× (${f0(med(w.id, 'lwsRedis', 'msgs_per_s'))} vs ${f0(med(w.id, 'sioRedis', 'msgs_per_s'))}/s; load client at ${f0(med(w.id, 'lwsRedis', 'client_cpu_pct'))}% CPU for node-lws)`,
      });
    } else {
      const diff = median(
        runs.map((run) => get(run, w.id, 'lwsRedis', 'p99_us') - get(run, w.id, 'lws1', 'p99_us')),
      );
      targets.push({
        name: `issue 12: ${w.title}: node-lws p99 through Redis within 2 ms of one process`,
        ok: diff <= 2000,
        detail: `${f0(med(w.id, 'lwsRedis', 'p99_us'))} vs ${f0(med(w.id, 'lws1', 'p99_us'))} µs (+${f0(diff)} µs; socket.io ${f0(med(w.id, 'sioRedis', 'p99_us'))} vs ${f0(med(w.id, 'sio1', 'p99_us'))} µs)`,
      });
    }
  }
  const widths = tab[0].map((_, i) => Math.max(...tab.map((t) => t[i].length)));
  lines.push('Cross-process fan-out through Redis (issue 12):');
  for (const [i, t] of tab.entries()) {
    lines.push(t.map((c, j) => (j === 0 ? c.padEnd(widths[j]) : c.padStart(widths[j]))).join('  '));
    if (i === 0) lines.push(widths.map((n) => '-'.repeat(n)).join('  '));
  }
  lines.push(
    "2 processes × 100 subscribers: the publisher is on the first process, so every message reaches the second one's 100 subscribers through Redis. node-lws: server.publish() with a Redis adapter (node-lws/redis); socket.io: io.to(room).emit() with @socket.io/redis-adapter; same load client, every delivery checked. Both server processes and redis-server share the server core; CPU and RSS figures are theirs together.",
  );
  return { lines, targets, md };
}
