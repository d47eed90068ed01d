// The benchmark behind `npm run bench`: node-lws against ws (with and without bufferutil) and
// uWebSockets.js, each server in its own process, driven by a native load client
// (bench/loadgen.c).
//
//   node bench/run.mjs [--runs N] [--quick] [--only id,id] [--spin latency|all|none] [--lend]
//
// --runs N     runs of every workload (default 3); each figure is the median over the runs and
//              each node-lws/peer ratio is the median of the ratios taken within one run
// --quick      1 run, shorter windows (for development)
// --only       workload ids (below); the optional ones run only when named here
// --spin       where the low-priority busy loops run that keep both cores awake (see below)
// --lend       the node-lws column's server uses lendMessages: true (the handler gets each
//              message as a Buffer valid while it runs, as uWS lends its ArrayBuffer, instead
//              of one it may keep); the node-lws column is labelled so
//
// Workloads (id: what; servers):
//   echo64, echo64x16   64 B echo, 100 conns × 1 / 16 in flight; node-lws, ws+bufferutil, ws,
//                       uWS, and a raw TCP echo in C (bench/echo-raw.c) on the same byte load
//   text16k             16 KiB text echo, text handed over as bytes (node-lws textAs 'buffer',
//                       ws's Buffer, uWS's ArrayBuffer); + raw TCP echo
//   text16kstr          16 KiB text echo, text handed over as a JS string and sent back as one
//                       (node-lws textAs 'string', its default; ws and uWS decode to a string)
//   bin1m               1 MiB binary echo, 10 conns; + raw TCP echo (the loopback ceiling)
//   latency             64 B round trips at 20k msg/s, open loop, 100 conns
//   idle10k             memory per idle connection at 10,000 connections, right after they open
//                       and again after 20 s without traffic
//   reuseport           two node-lws processes on one port (reusePort)
//   listenclose         listen + close cycle, in process (node-lws, ws)
//   fanout64x100, fanout64x1k, fanout16kx100, fanout300kx20
//                       publish/subscribe: 1 publisher, N subscribers, binary messages; node-lws
//                       (server.publish + conn.subscribe when it has them, else a loop over
//                       server.connections calling send()), ws+bufferutil (a loop over its
//                       subscribers calling send()), uWS (ws.subscribe + app.publish). Closed
//                       loop: the publisher sends message s once message s − W has reached
//                       every subscriber (W = 16 for 64 B, 8 for 16 KiB, 4 for 300 KiB), so at
//                       most W messages per subscriber are in the server at once. Each
//                       subscriber first has an 8-byte hello echoed (proof the server has it
//                       registered). Every delivery is checked by the load client: exactly
//                       once, in order (a sequence number per message), length, every byte.
//                       Reported: deliveries/s (messages × subscribers), publish → delivery
//                       latency, server CPU per delivery, server peak RSS.
//   idlecpu2k, idlecpu10k, idlecpu19k
//                       2,000 / 10,000 / 19,000 idle connections held by the load client, plus
//                       one connection echoing 64 B at 50 round trips/s: server CPU over the
//                       window (/proc/<pid>/stat utime+stime), echo p50/p99; node-lws,
//                       ws+bufferutil, uWS
//   idlehb19k           (optional) idlecpu19k with heartbeats every 30 s, measured over one
//                       interval + 8 s; the CPU added is taken against idlecpu19k of the same run
//   flood               receive flood: 1 KiB binary messages as fast as TCP takes them for a few
//                       seconds, to a handler that busy-waits 50 µs per message and checks each
//                       one (exactly once, in order, intact); peak RSS, messages delivered. The
//                       sender stops early when the server's RSS passes 1 GiB (that server is
//                       then killed, not drained); node-lws, ws+bufferutil, uWS
//   redisfanout1k, redisfanout64k
//                       cross-process fan-out through Redis: 2 server processes × 100
//                       subscribers, the publisher on the first (loadgen --port2), 1 KiB / 64 KiB,
//                       closed loop (window 16 / 4); node-lws with node-lws/redis against
//                       socket.io 4 + @socket.io/redis-adapter (loadgen --proto sio); a
//                       redis-server of its own per cell (bench/lib/redisfanout.mjs)
//   redislatency        the same at 100 msg/s (open loop), 1 KiB: publish → delivery latency
//                       through Redis next to one process without Redis (node-lws, socket.io)
//
// uWebSockets.js comes from the optional dev dependency @trufflesuite/uws-js-unofficial (a
// registry build of it): without it the bench runs, says why the uWS column is missing, and
// leaves it out.
//
// Builds bench/build/{loadgen,echo-raw} with `cc -O2`, prints a table, a README-ready markdown
// table and the targets, and writes everything to .bench-results/<date>.json.
//
// Servers run on core 0 and the load client on core 1 (taskset). The machine may be shared:
// before each measurement the bench waits (within a budget) until other processes use less
// than 15% of a core, reports the CPU other processes took during each window, and measures a
// window again (at most twice) when they took 25% of a core or more.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CLIENT_CORE,
  CORES,
  CYCLES,
  DURATION_MS,
  FLOOD_DRAIN_MS,
  FLOOD_MS,
  HELP,
  IDLE_ECHO_MS,
  LAT_DURATION_MS,
  log,
  PIN,
  QUICK,
  ROOT,
  RUNS,
  SERVER_CORE,
  SPIN,
  USAGE,
  WARMUP_MS,
} from './lib/config.mjs';
import {
  getSpinMethod,
  quietLog,
  startSpinners,
  stopSpinners,
  waitQuiet,
  wantSpin,
} from './lib/machine.mjs';
import { build, cmdOut } from './lib/proc.mjs';
import { buildReport } from './lib/report.mjs';
import { SERVERS, uwsAvailability } from './lib/servers.mjs';
import { UWS_PACKAGE } from './lib/uws.mjs';
import { describe, kindsFor, measure, selectWorkloads } from './lib/workloads.mjs';

if (HELP) {
  console.log(USAGE);
  process.exit(0);
}
const selected = selectWorkloads();

function versionOf(pkg) {
  try {
    return JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8'))
      .version;
  } catch {
    return '?';
  }
}

/** What is being measured: the addon file and dist/ as they are now, and the git state. */
function buildId() {
  const hash = (f) => {
    try {
      return createHash('sha256')
        .update(fs.readFileSync(path.resolve(ROOT, f)))
        .digest('hex')
        .slice(0, 12);
    } catch {
      return 'missing';
    }
  };
  // NODE_LWS_BINDING (another build of the addon, as lib/native.ts loads it) is what the
  // servers load when it is set: its hash is the one that says what was measured.
  const override = process.env.NODE_LWS_BINDING;
  return {
    addon: override
      ? `${hash(override)} (NODE_LWS_BINDING=${override})`
      : hash('build/Release/node_lws.node'),
    dist: `${hash('dist/index.js')}/${hash('dist/connection.js')}`,
  };
}

build();
const uws = { package: UWS_PACKAGE, ...uwsAvailability() };
if (!uws.ok) log(`bench: uWebSockets.js column unavailable: ${uws.reason}`);
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
  uws: uws.ok ? `${uws.package} ${uws.version}` : `unavailable: ${uws.reason}`,
  cc: cmdOut('cc', ['-dumpfullversion']),
  runs: RUNS,
  quick: QUICK,
  warmupMs: WARMUP_MS,
  durationMs: DURATION_MS,
  latencyDurationMs: LAT_DURATION_MS,
  idleEchoMs: IDLE_ECHO_MS,
  floodMs: FLOOD_MS,
  floodDrainMs: FLOOD_DRAIN_MS,
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
    const spin = wantSpin(w);
    if (spin) await startSpinners();
    for (const kind of kindsFor(w, run, uws.ok)) {
      const label = kind === 'lws2' ? 'node-lws ×2' : SERVERS[kind].label;
      let best;
      // A window in which other processes took a quarter of a core or more is measured again
      // (at most twice per cell, within a budget); the quietest attempt is kept.
      for (let attempt = 0; ; attempt++) {
        await waitQuiet(`${w.id} ${kind}`);
        const t0 = Date.now();
        let r;
        try {
          r = await measure(w, kind);
        } catch (e) {
          r = { error: e.message };
        }
        log(
          `[run ${run + 1}/${RUNS}] ${w.id.padEnd(13)} ${label.padEnd(19)} ${describe(w, r)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
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

const warnings = [];
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
meta.spinMethod = getSpinMethod();
const report = buildReport({ runs, selected, meta, uws, errors, warnings });

const resultsDir = path.join(ROOT, '.bench-results');
fs.mkdirSync(resultsDir, { recursive: true });
const file = path.join(resultsDir, `${meta.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
fs.writeFileSync(
  file,
  `${JSON.stringify({ meta, uws, workloads: selected, runs, ...report.json }, null, 2)}\n`,
);
console.log(
  `${report.text}\nResults written to ${path.relative(ROOT, file)} (${((Date.now() - started.getTime()) / 1000).toFixed(0)} s in all).`,
);
