// Echo workloads (closed loop and open-loop latency), reusePort, and the listen+close cycle.
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { CYCLES, DURATION_MS, LAT_DURATION_MS, SERVER_CORE, WARMUP_MS } from './config.mjs';
import { otherLoad } from './machine.mjs';
import { collectStderr, pinned, procStatus, runLoadgen } from './proc.mjs';
import { startServer, stopServer } from './servers.mjs';

const MB = 1e6;

export function loadArgs(w, port) {
  const a = ['--mode', w.raw ? 'raw' : 'ws', '--port', String(port), '--conns', String(w.conns)];
  a.push('--inflight', String(w.inflight ?? 1), '--size', String(w.size));
  if (w.binary) a.push('--binary');
  if (w.tls) a.push('--tls');
  if (w.rate) a.push('--rate', String(w.rate));
  a.push(
    '--warmup-ms',
    String(WARMUP_MS),
    '--duration-ms',
    String(w.rate ? LAT_DURATION_MS : DURATION_MS),
  );
  return a;
}

/** The figures of one load client run; `stats` are the servers' /proc statuses. */
export function summarize(r, stats) {
  const cpu = r.server_cpu_s.reduce((a, b) => a + b, 0);
  return {
    msgs_per_s: r.msgs_per_s,
    mb_per_s: r.bytes_per_s / MB,
    p50_us: r.lat_us.p50,
    p99_us: r.lat_us.p99,
    p999_us: r.lat_us.p999,
    max_us: r.lat_us.max,
    cpu_us_per_msg: r.msgs ? (cpu * 1e6) / r.msgs : Number.NaN,
    server_cpu_pct: (100 * cpu) / r.seconds,
    server_cpu_split_s: r.server_cpu_s,
    client_cpu_pct: (100 * r.client_cpu_s) / r.seconds,
    max_gap_ms: r.max_gap_ms,
    unanswered: r.unanswered,
    sched_overflow: r.sched_overflow,
    msgs: r.msgs,
    seconds: r.seconds,
    peak_rss_mb: stats.reduce((a, s) => a + s.hwmKb, 0) / 1024,
  };
}

/** Text as JS strings (text16kstr): every server hands the handler a string and sends it back. */
const serverArgs = (w) => (w.textAs ? ['--text-as', w.textAs] : []);

export async function echoWorkload(w, kind) {
  const srv = await startServer(kind, kind === 'raw' ? [] : serverArgs(w));
  try {
    await sleep(200);
    const timeout = WARMUP_MS + (w.rate ? LAT_DURATION_MS : DURATION_MS) + 30_000;
    const other = otherLoad();
    const r = await runLoadgen(loadArgs(w, srv.port), [srv.pid], timeout, other.onEvent);
    const st = procStatus(srv.pid);
    return { ...summarize(r, [st]), ...other.result(r) };
  } finally {
    await stopServer(srv);
  }
}

export async function reusePortWorkload(w) {
  const a = await startServer('lws', ['--reuse-port']);
  let b;
  try {
    b = await startServer('lws', ['--reuse-port', '--port', String(a.port)]);
    await sleep(200);
    const other = otherLoad();
    const r = await runLoadgen(
      loadArgs(w, a.port),
      [a.pid, b.pid],
      WARMUP_MS + DURATION_MS + 30_000,
      other.onEvent,
    );
    return { ...summarize(r, [procStatus(a.pid), procStatus(b.pid)]), ...other.result(r) };
  } finally {
    if (b) await stopServer(b);
    await stopServer(a);
  }
}

export async function cycleWorkload(impl) {
  const child = pinned(SERVER_CORE, [
    process.execPath,
    'bench/cycle.mjs',
    '--impl',
    impl,
    '--cycles',
    String(CYCLES),
  ]);
  child.stdin.end();
  const err = collectStderr(child);
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    out += d;
  });
  const t = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const [code] = await once(child, 'exit');
  clearTimeout(t);
  if (code !== 0) throw new Error(`cycle.mjs --impl ${impl} exit ${code}: ${err()}`);
  return JSON.parse(out.trim().split('\n').pop());
}
