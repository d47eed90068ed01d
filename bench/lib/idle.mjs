// Idle connections: memory per connection (idle10k), and server CPU plus the latency of one
// echo connection next to 2,000 / 10,000 / 19,000 idle ones (idlecpu*, idlehb19k).
import { setTimeout as sleep } from 'node:timers/promises';
import { IDLE_CONNS, IDLE_ECHO_MS, IDLE_SETTLE_MS, QUICK, WARMUP_MS } from './config.mjs';
import { otherLoad } from './machine.mjs';
import { endChild, procStatus, runLoadgen, startLoadgen } from './proc.mjs';
import { gc, startServer, stopServer } from './servers.mjs';

/**
 * Opens `conns` upgraded connections from the load client (on the client core) and holds them
 * for at most `holdMs`, answering pings. `close()` drops them and returns the client's last
 * line: {"closed":true,"pings":N}, or {"ok":false,"error":...} when the server closed one of
 * them meanwhile.
 */
export async function holdIdle(port, conns, holdMs) {
  const lg = startLoadgen([
    '--mode',
    'idle',
    '--port',
    String(port),
    '--conns',
    String(conns),
    '--hold-ms',
    String(holdMs),
  ]);
  let ready;
  try {
    const line = await lg.rd.next(90_000, `the load client to open ${conns} connections`);
    try {
      ready = JSON.parse(line);
    } catch {}
    if (!ready?.ready) throw new Error(`loadgen idle: ${ready?.error ?? (line || lg.err())}`);
  } catch (e) {
    await endChild(lg.child, 0);
    throw e;
  }
  let closed;
  return {
    ready,
    async close() {
      if (closed) return closed;
      lg.child.stdin.end();
      let last = null;
      for (;;) {
        const l = await lg.rd.next(15_000, 'the idle connections to close').catch(() => null);
        if (l === null) break;
        if (l.trim()) last = l;
      }
      await endChild(lg.child, 1000);
      try {
        closed = JSON.parse(last);
      } catch {
        closed = { ok: false, error: lg.err() || 'the load client ended without a word' };
      }
      return closed;
    },
  };
}

export async function idleMemoryWorkload(kind) {
  const srv = await startServer(kind);
  let holder;
  try {
    await sleep(300);
    const heap0 = await gc(srv);
    await sleep(300);
    const before = procStatus(srv.pid);
    holder = await holdIdle(srv.port, IDLE_CONNS, 120_000);
    const ready = holder.ready;
    await sleep(1000); // let the server finish delivering 'connection' events
    const heap1 = await gc(srv);
    await sleep(500);
    const after = procStatus(srv.pid);
    // The same connections once the server has been idle for a while (see IDLE_SETTLE_MS).
    await sleep(IDLE_SETTLE_MS);
    const heap2 = await gc(srv);
    await sleep(500);
    const settled = procStatus(srv.pid);
    return {
      conns: ready.opened,
      connect_ms: ready.connect_ms,
      rss_before_mb: before.rssKb / 1024,
      rss_after_mb: after.rssKb / 1024,
      rss_settled_mb: settled.rssKb / 1024,
      bytes_per_conn: ((after.rssKb - before.rssKb) * 1024) / ready.opened,
      bytes_per_conn_settled: ((settled.rssKb - before.rssKb) * 1024) / ready.opened,
      // The RSS growth split: memory allocated, and pages of the program's files (its code)
      // first touched while the connections opened, a cost paid once, not per connection.
      anon_bytes_per_conn: ((after.anonKb - before.anonKb) * 1024) / ready.opened,
      file_bytes_per_conn: ((after.fileKb - before.fileKb) * 1024) / ready.opened,
      js_heap_per_conn: (heap1.heapUsed - heap0.heapUsed) / ready.opened,
      js_heap_per_conn_settled: (heap2.heapUsed - heap0.heapUsed) / ready.opened,
      external_per_conn: (heap1.external - heap0.external) / ready.opened,
      peak_rss_mb: after.hwmKb / 1024,
    };
  } finally {
    await holder?.close();
    await stopServer(srv);
  }
}

/**
 * `w.idleConns` idle connections, then one more connection echoing 64 B at 50 round trips/s
 * (open loop) for IDLE_ECHO_MS, or, with `w.heartbeatMs`, for one heartbeat interval + 8 s so
 * that the window holds every idle connection's first ping. Server CPU is read from
 * /proc/<pid>/stat by the load client at the window's edges.
 */
export async function idleCpuWorkload(w, kind) {
  const hb = w.heartbeatMs ?? 0;
  const srv = await startServer(kind, hb ? ['--heartbeat-ms', String(hb)] : []);
  const durationMs = hb ? hb + 8000 : IDLE_ECHO_MS;
  let holder;
  try {
    await sleep(200);
    holder = await holdIdle(srv.port, w.idleConns, WARMUP_MS + durationMs + 180_000);
    await sleep(QUICK ? 1000 : 2000); // the server finishes taking the connections in
    const other = otherLoad();
    const args = ['--mode', 'ws', '--port', String(srv.port), '--conns', '1', '--size', '64'];
    args.push('--rate', '50', '--warmup-ms', String(WARMUP_MS));
    args.push('--duration-ms', String(durationMs));
    const r = await runLoadgen(args, [srv.pid], WARMUP_MS + durationMs + 30_000, other.onEvent);
    const st = procStatus(srv.pid);
    const closed = await holder.close();
    if (!closed.closed)
      throw new Error(`the idle connections did not stay open: ${closed.error ?? '?'}`);
    const cpu = r.server_cpu_s.reduce((a, b) => a + b, 0);
    return {
      idle_conns: holder.ready.opened,
      connect_ms: holder.ready.connect_ms,
      server_cpu_pct: (100 * cpu) / r.seconds,
      p50_us: r.lat_us.p50,
      p99_us: r.lat_us.p99,
      max_us: r.lat_us.max,
      max_gap_ms: r.max_gap_ms,
      msgs: r.msgs,
      seconds: r.seconds,
      unanswered: r.unanswered,
      sched_overflow: r.sched_overflow,
      client_cpu_pct: (100 * r.client_cpu_s) / r.seconds,
      peak_rss_mb: st.hwmKb / 1024,
      pings_per_conn: closed.pings / holder.ready.opened,
      ...other.result(r),
    };
  } finally {
    await holder?.close();
    await stopServer(srv);
  }
}
