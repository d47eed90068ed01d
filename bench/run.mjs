// The benchmark behind `npm run bench`: node-lws against ws (with and without bufferutil),
// each server in its own process, driven by a native load client (bench/loadgen.c).
//
//   node bench/run.mjs [--runs N] [--quick] [--only id,id] [--spin latency|all|none]
//
// --runs N     runs of every workload (default 3); each figure is the median over the runs and
//              each node-lws/ws ratio is the median of the ratios taken within one run
// --quick      1 run, shorter windows (for development)
// --only       workload ids: echo64, echo64x16, text16k, bin1m, latency, idle10k, reuseport,
//              listenclose
// --spin       where the low-priority busy loops run that keep both cores awake (see below)
//
// Builds bench/build/{loadgen,echo-raw} with `cc -O2`, prints a table, a README-ready markdown
// table and the targets, and writes everything to .bench-results/<date>.json.
//
// Servers run on core 0 and the load client on core 1 (taskset). The machine may be shared:
// before each measurement the bench waits (within a budget) until other processes use less
// than 15% of a core, reports the CPU other processes took during each window, and measures a
// window again (at most twice) when they took 25% of a core or more.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const BUILD = path.join(HERE, 'build');
const LOADGEN = path.join(BUILD, 'loadgen');
const ECHO_RAW = path.join(BUILD, 'echo-raw');

// ---- options ---------------------------------------------------------------------------------
const argv = process.argv.slice(2);
function opt(name, dflt) {
  const i = argv.indexOf(name);
  if (i < 0) return dflt;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}
for (const a of argv) {
  if (a.startsWith('--') && !['--runs', '--quick', '--only', '--spin', '--help'].includes(a)) {
    console.error(`unknown option ${a}`);
    process.exit(1);
  }
}
if (argv.includes('--help')) {
  console.log(
    'usage: node bench/run.mjs [--runs N] [--quick] [--only id,id] [--spin latency|all|none]',
  );
  process.exit(0);
}
const QUICK = argv.includes('--quick');
const RUNS = Number(opt('--runs', QUICK ? 1 : 3));
if (!Number.isInteger(RUNS) || RUNS < 1 || RUNS > 50) throw new Error('--runs must be 1..50');
const ONLY = opt('--only', '').split(',').filter(Boolean);
const SPIN = opt('--spin', 'latency');
if (!['latency', 'all', 'none'].includes(SPIN)) throw new Error('--spin is latency, all or none');
const WARMUP_MS = QUICK ? 300 : 1000;
const DURATION_MS = QUICK ? 1500 : 4000;
const LAT_DURATION_MS = QUICK ? 2000 : 5000;
const CYCLES = QUICK ? 100 : 500;
const IDLE_CONNS = 10_000;
const CORES = os.cpus().length;
const PIN = CORES >= 2;
const SERVER_CORE = 0;
const CLIENT_CORE = 1;

// ---- helpers ---------------------------------------------------------------------------------
const log = (...a) => console.error(...a);
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function build() {
  fs.mkdirSync(BUILD, { recursive: true });
  for (const [src, out] of [
    ['loadgen.c', LOADGEN],
    ['echo-raw.c', ECHO_RAW],
  ]) {
    const srcPath = path.join(HERE, src);
    if (fs.existsSync(out) && fs.statSync(out).mtimeMs >= fs.statSync(srcPath).mtimeMs) continue;
    log(`bench: cc -O2 ${path.relative(ROOT, srcPath)} -> ${path.relative(ROOT, out)}`);
    execFileSync('cc', ['-O2', '-Wall', '-o', out, srcPath], { stdio: 'inherit' });
  }
  if (!fs.existsSync(path.join(ROOT, 'dist/index.mjs')))
    throw new Error(
      'dist/index.mjs missing: run `npm run build` (or `npm run bench`, which bootstraps)',
    );
}

/** Runs argv under `ulimit -n <hard>` and, when pinning, `taskset -c core`. */
function pinned(core, args, { env, stdio = ['pipe', 'pipe', 'pipe'] } = {}) {
  const script = `ulimit -n "$(ulimit -Hn)"; exec ${PIN ? `taskset -c ${core} ` : ''}"$@"`;
  return spawn('bash', ['-c', script, 'bash', ...args], {
    cwd: ROOT,
    env: env ?? process.env,
    stdio,
  });
}

/** Line reader over a child's stdout. */
function lines(child) {
  const queue = [];
  const waiters = [];
  let buf = '';
  let ended = false;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const w = waiters.shift();
      if (w) w.resolve(line);
      else queue.push(line);
      nl = buf.indexOf('\n');
    }
  });
  child.stdout.on('end', () => {
    ended = true;
    for (const w of waiters.splice(0)) w.resolve(null);
  });
  return {
    next(timeoutMs = 15_000, what = 'a line') {
      if (queue.length) return Promise.resolve(queue.shift());
      if (ended) return Promise.resolve(null);
      return new Promise((resolve, reject) => {
        const w = {
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
  };
}

function collectStderr(child) {
  let s = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    if (s.length < 20_000) s += d;
  });
  return () => s.trim();
}

const SERVERS = {
  lws: { label: 'node-lws', script: 'bench/server-lws.mjs', env: {} },
  wsbu: { label: 'ws+bufferutil', script: 'bench/server-ws.mjs', env: {} },
  ws: {
    label: 'ws (no bufferutil)',
    script: 'bench/server-ws.mjs',
    env: { WS_NO_BUFFER_UTIL: '1' },
  },
  raw: { label: 'raw TCP echo (C)', bin: ECHO_RAW, env: {} },
};

async function startServer(kind, extra = []) {
  const s = SERVERS[kind];
  const env = { ...process.env, ...s.env };
  if (!s.env.WS_NO_BUFFER_UTIL) delete env.WS_NO_BUFFER_UTIL;
  const args = s.bin ? [s.bin, ...extra] : [process.execPath, '--expose-gc', s.script, ...extra];
  const child = pinned(SERVER_CORE, args, { env });
  const err = collectStderr(child);
  const rd = lines(child);
  const exited = once(child, 'exit');
  let info;
  try {
    const line = await rd.next(15_000, `${s.label} to print its port`);
    if (line === null) {
      const lines = err()
        .split('\n')
        .filter((l) => /Error|error|errno|code/.test(l));
      throw new Error(
        `${s.label} exited before listening: ${lines.slice(0, 3).join(' | ') || err()}`,
      );
    }
    info = JSON.parse(line);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  if (kind === 'wsbu' && info.mask !== 'bufferutil')
    throw new Error(`ws+bufferutil server did not load bufferutil (mask: ${info.mask})`);
  if (kind === 'ws' && info.mask !== 'js')
    throw new Error(`ws server without bufferutil reports mask ${info.mask}`);
  return { kind, child, rd, err, exited, pid: child.pid, port: info.port, info };
}

async function stopServer(srv) {
  if (srv.child.exitCode !== null || srv.child.signalCode !== null) return;
  srv.child.stdin.end();
  const t = setTimeout(() => srv.child.kill('SIGKILL'), 3000);
  await srv.exited;
  clearTimeout(t);
}

function procStatus(pid) {
  const txt = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) =>
    Number((txt.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm')) ?? [])[1] ?? Number.NaN);
  return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
}

/** Full GC in the server; returns its process.memoryUsage() heapUsed/external afterwards. */
async function gc(srv) {
  if (srv.kind === 'raw') return {};
  srv.child.stdin.write('gc\n');
  for (;;) {
    const l = await srv.rd.next(10_000, 'gc-done');
    if (l === null) return {};
    if (l.startsWith('gc-done')) return JSON.parse(l.slice(8) || '{}');
  }
}

async function runLoadgen(args, pids, timeoutMs) {
  const child = pinned(CLIENT_CORE, [LOADGEN, ...args, '--pids', pids.join(',')]);
  child.stdin.end();
  const err = collectStderr(child);
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    out += d;
  });
  const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code, signal] = await once(child, 'exit');
  clearTimeout(t);
  const last = out.trim().split('\n').pop();
  let r;
  try {
    r = JSON.parse(last);
  } catch {
    throw new Error(
      `loadgen ${signal ? `killed (${signal}) after ${timeoutMs} ms` : `exit ${code}`}: ${err() || out}`,
    );
  }
  if (!r.ok) throw new Error(`loadgen: ${r.error} (${r.opened} connections open, ${r.msgs} msgs)`);
  return r;
}

// ---- anti-idle busy loops ---------------------------------------------------------------------
// Idle cores of this kind of VM take up to ~40 ms to wake, which wrecks latency tails. While
// measuring latency, one busy loop per core runs at SCHED_IDLE (below nice 19: it only gets a
// core nobody else wants, and is preempted at once on a wake-up), then it is stopped.
let spinners = [];
let spinMethod = 'none';
async function startSpinners() {
  if (spinners.length) return;
  // One process per loop (its CPU time is read and left out of "other processes"), ending by
  // itself after 10 minutes at the latest.
  const loop = [
    process.execPath,
    '-e',
    'const end = Date.now() + 600000; while (Date.now() < end);',
  ];
  for (let core = 0; core < Math.min(CORES, 2); core++) {
    const set = PIN ? ['taskset', '-c', String(core)] : [];
    let child = spawn('chrt', ['-i', '0', 'nice', '-n', '19', ...set, ...loop], {
      stdio: 'ignore',
    });
    const ok = await Promise.race([
      once(child, 'exit').then(() => false),
      sleep(100).then(() => true),
    ]);
    if (ok) spinMethod = 'SCHED_IDLE + nice 19 (chrt -i 0 nice -n 19)';
    else {
      child = spawn('nice', ['-n', '19', ...set, ...loop], { stdio: 'ignore' });
      spinMethod = 'nice -n 19';
    }
    spinners.push(child);
  }
  await sleep(50);
}
async function stopSpinners() {
  for (const c of spinners) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      await once(c, 'exit');
    }
  }
  spinners = [];
}
const wantSpin = (w) => SPIN === 'all' || (SPIN === 'latency' && w.spin);

// ---- other load on the machine -------------------------------------------------------------
// The machine may be shared. /proc/stat counts busy time per CPU (niced processes included);
// the anti-idle loops' own CPU time is read from /proc/<pid>/stat and left out.
function cpuStat() {
  const f = fs
    .readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
  // Every busy tick, less the anti-idle loops' own ticks.
  let spin = 0;
  for (const c of spinners) spin += procTicks(c.pid);
  return {
    busy: user + nice + system + irq + softirq - spin,
    steal,
    total: f.slice(0, 8).reduce((a, b) => a + b, 0),
    idle: idle + iowait,
  };
}
function procTicks(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}
const TICK = Number(cmdOut('getconf', ['CLK_TCK'])) || 100;
let quietBudgetMs = QUICK ? 10_000 : 180_000;
const quietLog = [];
/** Waits (within a budget) until the machine's other processes use < 15% of a core. */
async function waitQuiet(what) {
  const t0 = Date.now();
  for (;;) {
    const a = cpuStat();
    await sleep(400);
    const b = cpuStat();
    const busyCores = (b.busy - a.busy) / TICK / 0.4;
    if (busyCores < 0.15) break;
    if (Date.now() - t0 > Math.min(30_000, quietBudgetMs)) {
      quietLog.push(`${what} (${(100 * busyCores).toFixed(0)}%)`);
      break;
    }
  }
  const waited = Date.now() - t0;
  quietBudgetMs = Math.max(0, quietBudgetMs - waited);
  if (waited > 1500)
    log(
      `bench: waited ${(waited / 1000).toFixed(1)} s for other processes to go quiet before ${what}`,
    );
}

// ---- workloads -------------------------------------------------------------------------------
const MB = 1e6;
const WS_SERVERS = ['lws', 'wsbu', 'ws'];

function loadArgs(w, port) {
  const a = ['--mode', w.raw ? 'raw' : 'ws', '--port', String(port), '--conns', String(w.conns)];
  a.push('--inflight', String(w.inflight ?? 1), '--size', String(w.size));
  if (w.binary) a.push('--binary');
  if (w.rate) a.push('--rate', String(w.rate));
  a.push(
    '--warmup-ms',
    String(WARMUP_MS),
    '--duration-ms',
    String(w.rate ? LAT_DURATION_MS : DURATION_MS),
  );
  return a;
}

/** Samples /proc/stat at the start and end of the measuring window (timers, ±a few ms). */
function watchOtherLoad(durationMs) {
  let a;
  let b;
  const t1 = setTimeout(() => {
    a = cpuStat();
  }, WARMUP_MS + 50);
  const t2 = setTimeout(
    () => {
      b = cpuStat();
    },
    WARMUP_MS + durationMs - 50,
  );
  return {
    result(r) {
      clearTimeout(t1);
      clearTimeout(t2);
      if (!a || !b) return {};
      const secs = (durationMs - 100) / 1000;
      const busy = (b.busy - a.busy) / TICK / secs;
      const ours = (r.server_cpu_s.reduce((x, y) => x + y, 0) + r.client_cpu_s) / r.seconds;
      return {
        other_cpu_pct: Math.max(0, 100 * (busy - ours)),
        steal_pct: (100 * (b.steal - a.steal)) / TICK / secs,
      };
    },
  };
}

function summarize(r, srvs) {
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
    peak_rss_mb: srvs.reduce((a, s) => a + s.hwmKb, 0) / 1024,
  };
}

async function echoWorkload(w, kind) {
  const srv = await startServer(kind);
  try {
    await sleep(200);
    const timeout = WARMUP_MS + (w.rate ? LAT_DURATION_MS : DURATION_MS) + 30_000;
    const other = watchOtherLoad(w.rate ? LAT_DURATION_MS : DURATION_MS);
    const r = await runLoadgen(loadArgs(w, srv.port), [srv.pid], timeout);
    const st = procStatus(srv.pid);
    return { ...summarize(r, [st]), ...other.result(r) };
  } finally {
    await stopServer(srv);
  }
}

async function reusePortWorkload(w) {
  const a = await startServer('lws', ['--reuse-port']);
  let b;
  try {
    b = await startServer('lws', ['--reuse-port', '--port', String(a.port)]);
    await sleep(200);
    const other = watchOtherLoad(DURATION_MS);
    const r = await runLoadgen(
      loadArgs(w, a.port),
      [a.pid, b.pid],
      WARMUP_MS + DURATION_MS + 30_000,
    );
    return { ...summarize(r, [procStatus(a.pid), procStatus(b.pid)]), ...other.result(r) };
  } finally {
    if (b) await stopServer(b);
    await stopServer(a);
  }
}

async function idleWorkload(kind) {
  const srv = await startServer(kind);
  try {
    await sleep(300);
    const heap0 = await gc(srv);
    await sleep(300);
    const before = procStatus(srv.pid);
    const args = ['--mode', 'idle', '--port', String(srv.port), '--conns', String(IDLE_CONNS)];
    const child = pinned(CLIENT_CORE, [LOADGEN, ...args, '--hold-ms', '120000']);
    const err = collectStderr(child);
    const rd = lines(child);
    const exited = once(child, 'exit');
    try {
      const line = await rd.next(90_000, 'the load client to open 10k connections');
      const ready = line && JSON.parse(line);
      if (!ready?.ready) throw new Error(`loadgen idle: ${line ?? err()}`);
      await sleep(1000); // let the server finish delivering 'connection' events
      const heap1 = await gc(srv);
      await sleep(500);
      const after = procStatus(srv.pid);
      return {
        conns: ready.opened,
        connect_ms: ready.connect_ms,
        rss_before_mb: before.rssKb / 1024,
        rss_after_mb: after.rssKb / 1024,
        bytes_per_conn: ((after.rssKb - before.rssKb) * 1024) / ready.opened,
        js_heap_per_conn: (heap1.heapUsed - heap0.heapUsed) / ready.opened,
        external_per_conn: (heap1.external - heap0.external) / ready.opened,
        peak_rss_mb: after.hwmKb / 1024,
      };
    } finally {
      child.stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
  } finally {
    await stopServer(srv);
  }
}

async function cycleWorkload(impl) {
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

const WORKLOADS = [
  {
    id: 'echo64',
    title: '64 B echo, 100 conns × 1 in flight',
    conns: 100,
    inflight: 1,
    size: 64,
    main: 'msgs_per_s',
  },
  {
    id: 'echo64x16',
    title: '64 B echo, 100 conns × 16 in flight',
    conns: 100,
    inflight: 16,
    size: 64,
    main: 'msgs_per_s',
  },
  {
    id: 'text16k',
    title: '16 KiB text echo, 100 conns × 1 in flight',
    conns: 100,
    inflight: 1,
    size: 16384,
    main: 'mb_per_s',
  },
  {
    id: 'bin1m',
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
    title: 'RTT at 20k msg/s (64 B, 100 conns, open loop)',
    conns: 100,
    size: 64,
    rate: 20_000,
    main: 'p99_us',
    spin: true,
  },
  { id: 'idle10k', title: 'idle memory at 10,000 connections', idle: true },
  {
    id: 'reuseport',
    title: '64 B × 100 conns × 16 in flight, 2 node-lws processes (reusePort)',
    conns: 100,
    inflight: 16,
    size: 64,
    reuse: true,
  },
  { id: 'listenclose', title: 'listen+close cycle (in process)', cycle: true, spin: true },
];
const selected = WORKLOADS.filter((w) => !ONLY.length || ONLY.includes(w.id));
if (!selected.length)
  throw new Error(`--only matched no workload (ids: ${WORKLOADS.map((w) => w.id).join(', ')})`);

// ---- main ------------------------------------------------------------------------------------
function versionOf(pkg) {
  try {
    return JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8'))
      .version;
  } catch {
    return '?';
  }
}
function cmdOut(cmd, args) {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return '?';
  }
}

/** What is being measured: the addon file and dist/ as they are now, and the git state. */
function buildId() {
  const hash = (f) => {
    try {
      return createHash('sha256')
        .update(fs.readFileSync(path.join(ROOT, f)))
        .digest('hex')
        .slice(0, 12);
    } catch {
      return 'missing';
    }
  };
  return {
    addon: hash('build/Release/node_lws.node'),
    dist: `${hash('dist/index.js')}/${hash('dist/connection.js')}`,
  };
}

build();
const started = new Date();
const buildAtStart = buildId();
const gitHead = cmdOut('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
const gitDirty = cmdOut('git', [
  '-C',
  ROOT,
  'status',
  '--porcelain',
  '--',
  'native',
  'lib',
  'binding.gyp',
])
  .split('\n')
  .filter((l) => l.trim()).length;
const meta = {
  date: started.toISOString(),
  node: process.version,
  cores: CORES,
  cpu: os.cpus()[0]?.model ?? '?',
  kernel: os.release(),
  memGiB: Math.round(os.totalmem() / 2 ** 30),
  libwebsockets: cmdOut('pkg-config', ['--modversion', 'libwebsockets']),
  ws: versionOf('ws'),
  bufferutil: versionOf('bufferutil'),
  cc: cmdOut('cc', ['-dumpfullversion']),
  runs: RUNS,
  quick: QUICK,
  warmupMs: WARMUP_MS,
  durationMs: DURATION_MS,
  latencyDurationMs: LAT_DURATION_MS,
  cycles: CYCLES,
  pinning: PIN
    ? `servers on core ${SERVER_CORE} (taskset -c ${SERVER_CORE}), load client on core ${CLIENT_CORE} (taskset -c ${CLIENT_CORE})`
    : 'none (fewer than 2 cores)',
  spin: SPIN,
  nofile: Number(cmdOut('bash', ['-c', 'ulimit -Hn'])),
  git: `${gitHead}${gitDirty ? ` + ${gitDirty} uncommitted file(s) in native/ lib/` : ''}`,
  build: buildAtStart,
};
log(`bench: ${RUNS} run(s) of ${selected.map((w) => w.id).join(', ')}${QUICK ? ' (quick)' : ''}`);

const runs = []; // runs[i][workloadId][serverKind] = result | {error}
let retryBudget = QUICK ? 3 : 24;
let retried = 0;
const errors = [];
for (let run = 0; run < RUNS; run++) {
  const res = {};
  runs.push(res);
  for (const w of selected) {
    res[w.id] = {};
    // Rotate the order of the servers from run to run so no one always goes first.
    const kinds = w.reuse ? ['lws2'] : w.cycle ? ['lws', 'wsbu'] : [...WS_SERVERS];
    if (!w.reuse && !w.cycle)
      for (let k = 0; k < run % kinds.length; k++) kinds.push(kinds.shift());
    if (w.withRaw) kinds.push('raw');
    const spin = wantSpin(w);
    if (spin) await startSpinners();
    for (const kind of kinds) {
      const label = kind === 'lws2' ? 'node-lws ×2' : SERVERS[kind].label;
      let best;
      // A window in which other processes took a quarter of a core or more is measured again
      // (at most twice per cell, within a budget); the quietest attempt is kept.
      for (let attempt = 0; ; attempt++) {
        await waitQuiet(`${w.id} ${kind}`);
        const t0 = Date.now();
        let r;
        try {
          if (w.idle) r = await idleWorkload(kind);
          else if (w.cycle) r = await cycleWorkload(kind === 'lws' ? 'lws' : 'ws');
          else if (w.reuse) r = await reusePortWorkload(w);
          else if (kind === 'raw')
            r = await echoWorkload({ ...w, raw: true, binary: false }, 'raw');
          else r = await echoWorkload(w, kind);
        } catch (e) {
          r = { error: e.message };
        }
        const show = r.error
          ? `ERROR ${r.error}`
          : w.idle
            ? `${(r.bytes_per_conn / 1024).toFixed(2)} KiB/conn (RSS ${r.rss_before_mb.toFixed(1)} -> ${r.rss_after_mb.toFixed(1)} MB; V8 heap ${Math.round(r.js_heap_per_conn)} B/conn), connect ${Math.round(r.connect_ms)} ms`
            : w.cycle
              ? `median ${r.median_ms.toFixed(3)} ms, p99 ${r.p99_ms.toFixed(3)} ms`
              : `${Math.round(r.msgs_per_s).toLocaleString('en-US')} msg/s, ${r.mb_per_s.toFixed(1)} MB/s, p50 ${r.p50_us} us, p99 ${r.p99_us} us, ` +
                `server ${r.cpu_us_per_msg.toFixed(2)} us/msg (${r.server_cpu_pct.toFixed(0)}% CPU), RSS ${r.peak_rss_mb.toFixed(0)} MB, ` +
                `client ${r.client_cpu_pct.toFixed(0)}% CPU, max gap ${r.max_gap_ms.toFixed(1)} ms, others ${r.other_cpu_pct?.toFixed(0) ?? '?'}% CPU`;
        log(
          `[run ${run + 1}/${RUNS}] ${w.id.padEnd(11)} ${label.padEnd(19)} ${show} (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
        );
        if (
          !best ||
          (best.error && !r.error) ||
          (!r.error && (r.other_cpu_pct ?? 0) < (best.other_cpu_pct ?? 0))
        )
          best = r;
        const noisy = !r.error && (r.other_cpu_pct ?? 0) >= 25;
        if (!noisy || attempt >= 2 || retryBudget <= 0) break;
        retryBudget--;
        retried++;
        log(
          `bench: other processes took ${r.other_cpu_pct.toFixed(0)}% of a core in that window: measuring again`,
        );
      }
      if (best.error) errors.push(`run ${run + 1}, ${w.id}, ${kind}: ${best.error}`);
      res[w.id][kind] = best;
    }
    if (spin) await stopSpinners();
  }
}
await stopSpinners();

// ---- summary ---------------------------------------------------------------------------------
const get = (run, wid, kind, key) => {
  const r = run[wid]?.[kind];
  return r && !r.error ? r[key] : Number.NaN;
};
const med = (wid, kind, key) => median(runs.map((run) => get(run, wid, kind, key)));
const ratio = (wid, kind, key, other = 'wsbu', otherKey = key) =>
  median(runs.map((run) => get(run, wid, kind, key) / get(run, wid, other, otherKey)));

const rows = []; // { group, label, unit, better, lws, wsbu, ws, rBu, rWs, fmt }
function row(w, label, key, unit, better, fmt) {
  rows.push({
    wid: w.id,
    group: w.title,
    label,
    key,
    unit,
    better,
    lws: med(w.id, 'lws', key),
    wsbu: med(w.id, 'wsbu', key),
    ws: med(w.id, 'ws', key),
    rBu: ratio(w.id, 'lws', key, 'wsbu'),
    rWs: ratio(w.id, 'lws', key, 'ws'),
    fmt,
  });
}
const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const has = (id) => selected.some((w) => w.id === id);
const W = Object.fromEntries(WORKLOADS.map((w) => [w.id, w]));
for (const w of selected) {
  if (w.reuse || w.cycle || w.idle) continue;
  if (w.id === 'latency') {
    row(w, 'p50 RTT', 'p50_us', 'µs', 'lower', f0);
    row(w, 'p99 RTT', 'p99_us', 'µs', 'lower', f0);
    row(w, 'p99.9 RTT', 'p999_us', 'µs', 'lower', f0);
  } else if (w.main === 'msgs_per_s') row(w, 'throughput', 'msgs_per_s', 'msg/s', 'higher', f0);
  else row(w, 'throughput', 'mb_per_s', 'MB/s', 'higher', f1);
  row(w, 'server CPU per message', 'cpu_us_per_msg', 'µs', 'lower', f2);
  row(w, 'server peak RSS', 'peak_rss_mb', 'MB', 'lower', f1);
  row(w, 'load client CPU', 'client_cpu_pct', '%', 'info', f0);
  row(w, "other processes' CPU during the window", 'other_cpu_pct', '%', 'info', f0);
}
if (has('idle10k')) {
  row(W.idle10k, 'idle memory per connection (RSS)', 'bytes_per_conn', 'B', 'lower', f0);
  row(W.idle10k, '  of which V8 heap (after GC)', 'js_heap_per_conn', 'B', 'info', f0);
}
if (has('listenclose')) row(W.listenclose, 'listen+close median', 'median_ms', 'ms', 'lower', f3);

const rawMb = med('bin1m', 'raw', 'mb_per_s');
const wsbuOfRaw = median(
  runs.map((run) => get(run, 'bin1m', 'wsbu', 'mb_per_s') / get(run, 'bin1m', 'raw', 'mb_per_s')),
);
const lwsOfRaw = median(
  runs.map((run) => get(run, 'bin1m', 'lws', 'mb_per_s') / get(run, 'bin1m', 'raw', 'mb_per_s')),
);
const reuse = has('reuseport')
  ? {
      one: med('echo64x16', 'lws', 'msgs_per_s'),
      two: med('reuseport', 'lws2', 'msgs_per_s'),
      ratio: median(
        runs.map(
          (run) =>
            get(run, 'reuseport', 'lws2', 'msgs_per_s') /
            get(run, 'echo64x16', 'lws', 'msgs_per_s'),
        ),
      ),
      split: runs.map((run) => run.reuseport?.lws2?.server_cpu_split_s).filter(Boolean),
      cpuPerMsg: med('reuseport', 'lws2', 'cpu_us_per_msg'),
      rss: med('reuseport', 'lws2', 'peak_rss_mb'),
    }
  : undefined;

// Largest peak RSS over the throughput/latency workloads, per server (per run, then median).
const rssIds = selected.filter((w) => !w.reuse && !w.cycle && !w.idle).map((w) => w.id);
const maxRss = (run, kind) => Math.max(...rssIds.map((id) => get(run, id, kind, 'peak_rss_mb')));
const peakRss = rssIds.length
  ? {
      fmt: f1,
      lws: median(runs.map((run) => maxRss(run, 'lws'))),
      wsbu: median(runs.map((run) => maxRss(run, 'wsbu'))),
      ws: median(runs.map((run) => maxRss(run, 'ws'))),
      rBu: median(runs.map((run) => maxRss(run, 'lws') / maxRss(run, 'wsbu'))),
    }
  : undefined;

// ---- targets ---------------------------------------------------------------------------------
const targets = [];
function target(name, value, ok, detail) {
  if (value === undefined) return;
  targets.push({
    name,
    ok: Number.isFinite(value) || typeof value === 'boolean' ? ok : false,
    detail,
  });
}
const R = (wid, key) => rows.find((r) => r.wid === wid && r.key === key);
if (has('echo64')) {
  const r = R('echo64', 'msgs_per_s').rBu;
  target('64 B 1-in-flight ≥ 1.5× ws+bufferutil', r, r >= 1.5, `${f2(r)}×`);
}
if (has('echo64x16')) {
  const r = R('echo64x16', 'msgs_per_s').rBu;
  target('64 B 16-in-flight ≥ 2.0× ws+bufferutil', r, r >= 2.0, `${f2(r)}×`);
}
if (has('text16k')) {
  const r = R('text16k', 'mb_per_s').rBu;
  target('16 KiB text ≥ 1.3× ws+bufferutil', r, r >= 1.3, `${f2(r)}×`);
}
if (has('bin1m')) {
  const r = R('bin1m', 'mb_per_s').rBu;
  target('1 MiB binary ≥ 1.0× ws+bufferutil', r, r >= 1.0, `${f2(r)}×`);
  target(
    '1 MiB binary ≥ 50% of raw loopback TCP echo',
    lwsOfRaw,
    lwsOfRaw >= 0.5,
    `${f1(100 * lwsOfRaw)}% of ${f1(rawMb)} MB/s`,
  );
}
{
  const rssRows = rows.filter((r) => r.key === 'peak_rss_mb');
  if (rssRows.length) {
    const worse = rssRows.filter((r) => !(r.lws < r.wsbu));
    target(
      'server peak RSS below ws+bufferutil (every throughput/latency workload)',
      true,
      worse.length === 0,
      worse.length
        ? `not below in: ${worse.map((r) => `${r.wid} ${f1(r.lws)} vs ${f1(r.wsbu)} MB`).join('; ')}`
        : rssRows.map((r) => `${r.wid} ${f1(r.lws)}/${f1(r.wsbu)}`).join(', '),
    );
  }
}
if (has('latency')) {
  const r = R('latency', 'p99_us');
  target(
    'p99 RTT at 20k msg/s ≤ ws+bufferutil',
    r.lws,
    r.lws <= r.wsbu,
    `${f0(r.lws)} vs ${f0(r.wsbu)} µs`,
  );
}
if (has('idle10k')) {
  const r = R('idle10k', 'bytes_per_conn');
  target(
    'idle memory/conn ≤ 1/3 of ws+bufferutil',
    r.lws,
    r.lws <= r.wsbu / 3,
    `${f0(r.lws)} vs ${f0(r.wsbu)} B (${f2(r.rBu)}×)`,
  );
}
if (has('listenclose')) {
  const r = R('listenclose', 'median_ms');
  target('listen+close median ≤ 1 ms', r.lws, r.lws <= 1, `${f3(r.lws)} ms`);
}

// ---- print -----------------------------------------------------------------------------------
const out = [];
const p = (s = '') => out.push(s);
p(`node-lws benchmark — ${meta.date}`);
p(
  `node-lws under test: git ${meta.git}; addon sha256 ${meta.build.addon}, dist ${meta.build.dist}`,
);
p(
  `Node ${meta.node}, ${meta.cores} cores (${meta.cpu}), ${meta.memGiB} GiB, Linux ${meta.kernel}, libwebsockets ${meta.libwebsockets}, ws ${meta.ws}, bufferutil ${meta.bufferutil}, cc ${meta.cc}`,
);
p(
  `Each figure: median of ${RUNS} run(s); each ratio: median of the per-run ratios node-lws ÷ other, taken in the same run.`,
);
p(
  `Windows: ${WARMUP_MS} ms warm-up, then ${DURATION_MS} ms measured (${LAT_DURATION_MS} ms for latency); a fresh server process per workload and server.`,
);
p(`Pinning: ${meta.pinning}.`);
p(
  `Wake-up control: ${SPIN === 'none' ? 'none' : `one busy loop per core at ${spinMethod === 'none' ? 'SCHED_IDLE + nice 19' : spinMethod} while measuring ${SPIN === 'all' ? 'every workload' : 'latency and listen+close'}, stopped afterwards`} (idle cores of this VM take up to ~40 ms to wake).`,
);
p(
  'Load client: bench/loadgen.c (epoll, non-blocking, pre-masked frames, closed loop N conns × K in flight; replies checked for opcode, length and payload).',
);
p('Not included: uWebSockets.js (not on the npm registry, so not installable here).');
p();
const heads = [
  'workload / metric',
  'node-lws',
  'ws+bufferutil',
  'ws (no bufferutil)',
  'lws÷ws+bu',
  'lws÷ws',
];
const tab = [heads];
let lastGroup = '';
for (const r of rows) {
  if (r.group !== lastGroup) {
    tab.push([r.group, '', '', '', '', '']);
    lastGroup = r.group;
  }
  const arrow = r.better === 'higher' ? ' ↑' : r.better === 'lower' ? ' ↓' : '';
  const rat = (x) => (r.better === 'info' || !Number.isFinite(x) ? '' : `${f2(x)}×`);
  tab.push([
    `  ${r.label} (${r.unit})${arrow}`,
    r.fmt(r.lws),
    r.fmt(r.wsbu),
    r.fmt(r.ws),
    rat(r.rBu),
    rat(r.rWs),
  ]);
}
if (has('bin1m')) {
  tab.push([
    `  % of a raw C TCP echo on the same load (${f1(rawMb)} MB/s) ↑`,
    f1(100 * lwsOfRaw),
    f1(100 * wsbuOfRaw),
    '',
    '',
    '',
  ]);
}
if (reuse) {
  tab.push([W.reuseport.title, '', '', '', '', '']);
  tab.push(['  1 process (msg/s, from the 16-in-flight row)', f0(reuse.one), '', '', '', '']);
  tab.push([
    '  2 processes on one port (msg/s) ↑',
    f0(reuse.two),
    '',
    '',
    `${f2(reuse.ratio)}× of 1`,
    '',
  ]);
  tab.push(['  2 processes: server CPU per message (µs) ↓', f2(reuse.cpuPerMsg), '', '', '', '']);
  tab.push(['  2 processes: peak RSS, both (MB) ↓', f1(reuse.rss), '', '', '', '']);
}
const widths = heads.map((_, i) => Math.max(...tab.map((t) => t[i].length)));
for (const [i, t] of tab.entries()) {
  p(t.map((c, j) => (j === 0 ? c.padEnd(widths[j]) : c.padStart(widths[j]))).join('  '));
  if (i === 0) p(widths.map((wd) => '-'.repeat(wd)).join('  '));
}
if (reuse) {
  p();
  p(
    `reusePort: both processes pinned to core ${SERVER_CORE} like every server (2 cores: the other one is the load client's), so this shows the kernel spreading connections over two processes on one core, not a second core's worth of gain. Server CPU seconds per process, per run: ${reuse.split.map((s) => s.map((x) => x.toFixed(2)).join(' / ')).join('; ')}.`,
  );
}
const idleRuns = runs.map((run) => run.idle10k).filter(Boolean);
if (idleRuns.length) {
  p();
  p(
    `Idle memory: RSS of the server after 10,000 upgraded, idle connections minus its RSS before, both after a full GC, divided by 10,000. Connect times (ms): ${WS_SERVERS.map((k) => `${SERVERS[k].label} ${f0(median(idleRuns.map((x) => x[k]?.connect_ms)))}`).join(', ')}.`,
  );
}
p();
p('Targets (node-lws vs ws+bufferutil, same run):');
for (const t of targets) p(`  ${t.ok ? 'MET    ' : 'NOT MET'}  ${t.name}: ${t.detail}`);
const warnings = [];
for (const [i, run] of runs.entries())
  for (const [wid, byKind] of Object.entries(run))
    for (const [kind, r] of Object.entries(byKind)) {
      if (!r || r.error) continue;
      if (r.max_gap_ms > 250)
        warnings.push(
          `run ${i + 1} ${wid} ${kind}: no echo completed for ${r.max_gap_ms.toFixed(0)} ms (stall)`,
        );
      if (r.unanswered)
        warnings.push(
          `run ${i + 1} ${wid} ${kind}: ${r.unanswered} messages unanswered 5 s after the window`,
        );
      if (r.sched_overflow)
        warnings.push(
          `run ${i + 1} ${wid} ${kind}: ${r.sched_overflow} scheduled messages dropped (server far behind)`,
        );
      if (r.other_cpu_pct > 15)
        warnings.push(
          `run ${i + 1} ${wid} ${kind}: other processes used ${r.other_cpu_pct.toFixed(0)}% of a core during the window (machine not quiet)`,
        );
      if (r.steal_pct > 5)
        warnings.push(`run ${i + 1} ${wid} ${kind}: ${r.steal_pct.toFixed(0)}% steal time`);
      if (r.client_cpu_pct > 90)
        warnings.push(
          `run ${i + 1} ${wid} ${kind}: load client at ${r.client_cpu_pct.toFixed(0)}% CPU (it may be the bottleneck)`,
        );
    }
const buildAtEnd = buildId();
if (buildAtEnd.addon !== buildAtStart.addon || buildAtEnd.dist !== buildAtStart.dist)
  warnings.push(
    `the node-lws build changed during the run (addon ${buildAtStart.addon} -> ${buildAtEnd.addon}, dist ${buildAtStart.dist} -> ${buildAtEnd.dist}): server processes started after the change ran the new one`,
  );
if (retried)
  warnings.push(
    `${retried} window(s) measured again because other processes were busy during them (the quietest attempt is kept)`,
  );
if (quietLog.length)
  warnings.push(
    `${quietLog.length} window(s) started while other processes kept the machine busy (the ${QUICK ? 10 : 180} s budget for waiting was used up); the "other processes' CPU" rows show how busy`,
  );
if (errors.length || warnings.length) {
  p();
  p('Errors and warnings:');
  for (const e of errors) p(`  ERROR ${e}`);
  for (const e of warnings) p(`  ${e}`);
}

// Markdown for the README: the headline rows only.
const md = [];
md.push(
  `| workload (${meta.cores} cores; server and load client pinned to one core each; median of ${RUNS}) | node-lws | ws + bufferutil | ws | node-lws ÷ ws+bufferutil |`,
);
md.push('| --- | ---: | ---: | ---: | ---: |');
const mdRow = (name, r, fmt = r?.fmt) => {
  if (!r) return;
  md.push(
    `| ${name} | ${fmt(r.lws)} | ${fmt(r.wsbu)} | ${fmt(r.ws)} | ${Number.isFinite(r.rBu) ? `${f2(r.rBu)}×` : ''} |`,
  );
};
mdRow('64 B echo, 100 conns × 1 in flight (msg/s)', R('echo64', 'msgs_per_s'));
mdRow('64 B echo, 100 conns × 16 in flight (msg/s)', R('echo64x16', 'msgs_per_s'));
mdRow('16 KiB text echo, 100 conns (MB/s)', R('text16k', 'mb_per_s'));
mdRow('1 MiB binary echo, 10 conns (MB/s)', R('bin1m', 'mb_per_s'));
mdRow('p50 round trip at 20k msg/s, 64 B, 100 conns (µs)', R('latency', 'p50_us'));
mdRow('p99 round trip at 20k msg/s (µs)', R('latency', 'p99_us'));
mdRow('server CPU per 64 B echo, 16 in flight (µs)', R('echo64x16', 'cpu_us_per_msg'));
mdRow('server CPU per 1 MiB echo (µs)', R('bin1m', 'cpu_us_per_msg'), f0);
if (peakRss) mdRow('server peak RSS, largest over the workloads (MB)', peakRss);
mdRow(
  'memory per idle connection at 10,000 connections (KiB)',
  R('idle10k', 'bytes_per_conn'),
  (x) => (Number.isFinite(x) ? (x / 1024).toFixed(1) : 'n/a'),
);
mdRow('listen + close, in process, median (ms)', R('listenclose', 'median_ms'));
md.push('');
if (has('bin1m'))
  md.push(
    `The ceiling: a C epoll echo server on loopback TCP moves ${f1(rawMb)} MB/s under the same 1 MiB load; node-lws reaches ${f1(100 * lwsOfRaw)}% of it, ws + bufferutil ${f1(100 * wsbuOfRaw)}%.`,
  );
if (reuse)
  md.push(
    `reusePort: two node-lws processes sharing one port (both on the server core) echo ${f0(reuse.two)} msg/s on the 64 B × 16-in-flight load, ${f2(reuse.ratio)}× one process.`,
  );
p();
p('Markdown (for README.md):');
p();
for (const l of md) p(l);
p();
p(
  `Date ${meta.date}; Node ${meta.node}; ${meta.cores} cores; ${meta.pinning}; uWebSockets.js not included (not on the npm registry).`,
);

const resultsDir = path.join(ROOT, '.bench-results');
fs.mkdirSync(resultsDir, { recursive: true });
const file = path.join(resultsDir, `${meta.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
fs.writeFileSync(
  file,
  `${JSON.stringify({ meta: { ...meta, spinMethod }, workloads: selected, runs, rows, rawMbPerS: rawMb, lwsOfRaw, reusePort: reuse, targets, errors, warnings, markdown: md.join('\n') }, null, 2)}\n`,
);
p(
  `Results written to ${path.relative(ROOT, file)} (${((Date.now() - started.getTime()) / 1000).toFixed(0)} s in all).`,
);
console.log(out.join('\n'));
