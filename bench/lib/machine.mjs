// The machine around the bench: the anti-idle busy loops, and the CPU other processes take.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLIENT_CORE, CORES, log, PIN, QUICK, SPIN, SPIN_CORES, WAKE } from './config.mjs';
import { cmdOut, procTicks } from './proc.mjs';

// ---- wake-up control ---------------------------------------------------------------------------
// Idle cores of this kind of VM take up to ~40 ms to wake, which wrecks latency tails. While
// measuring latency, the bench holds /dev/cpu_dma_latency at 0 (PM QoS: the cores' idle loop
// polls instead of halting, and nothing else runs on them), or, where that cannot be opened (not
// root) or with --wake loop, runs one busy loop per core at SCHED_IDLE (below nice 19: it only
// gets a core nobody else wants). The loop is not neutral: on a host of 2026-11-27 (kernel 6.18)
// the one on the server's core took node-lws's p99 at 20k msg/s from ~120 µs to 1.6-2.4 ms, its
// service thread and JavaScript thread handing work to each other on that core, while the
// single-threaded servers moved little.
let spinners = [];
let qosFd = null;
let spinMethod = 'none';
let qosError = null;
export const getSpinMethod = () => spinMethod;

export async function startSpinners() {
  if (spinners.length || qosFd !== null) return;
  if (WAKE === 'qos' && qosError === null) {
    try {
      qosFd = fs.openSync('/dev/cpu_dma_latency', 'w');
      fs.writeSync(qosFd, Buffer.alloc(4)); // an int32 0: no idle state with any exit latency
      spinMethod = 'PM QoS (/dev/cpu_dma_latency held at 0: idle cores poll instead of halting)';
      return;
    } catch (e) {
      if (qosFd !== null) fs.closeSync(qosFd);
      qosFd = null;
      qosError = e.code ?? String(e);
      log(
        `bench: /dev/cpu_dma_latency: ${qosError}; busy loops at SCHED_IDLE keep the cores awake instead`,
      );
    }
  }
  // One process per loop (its CPU time is read and left out of "other processes"), ending by
  // itself after 10 minutes at the latest.
  const loop = [
    process.execPath,
    '-e',
    'const end = Date.now() + 600000; while (Date.now() < end);',
  ];
  const cores = SPIN_CORES === 'client' ? [CLIENT_CORE] : [0, 1].slice(0, Math.min(CORES, 2));
  for (const core of cores) {
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

export async function stopSpinners() {
  if (qosFd !== null) {
    fs.closeSync(qosFd); // the request ends with the file
    qosFd = null;
  }
  for (const c of spinners) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      await once(c, 'exit');
    }
  }
  spinners = [];
}

export const wantSpin = (w) => SPIN === 'all' || (SPIN === 'latency' && w.spin);

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

export const TICK = Number(cmdOut('getconf', ['CLK_TCK'])) || 100;
let quietBudgetMs = QUICK ? 10_000 : 180_000;
export const quietLog = [];

/** Waits (within a budget) until the machine's other processes use < 15% of a core. */
export async function waitQuiet(what) {
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

/**
 * The CPU other processes take during the load client's measuring window: pass `onEvent` to
 * runLoadgen (it samples /proc/stat when the client says the window opens and closes), then
 * `result(r)` with the client's result (server and client CPU seconds in the window) returns
 * that CPU in % of a core, and the steal time.
 */
export function otherLoad() {
  let a;
  let b;
  let ta;
  let tb;
  return {
    onEvent(event) {
      if (event === 'window-open') {
        a = cpuStat();
        ta = performance.now();
      } else if (event === 'window-close') {
        b = cpuStat();
        tb = performance.now();
      }
    },
    result(r) {
      if (!a || !b || tb - ta < 50) return {};
      const secs = (tb - ta) / 1000;
      const busy = (b.busy - a.busy) / TICK / secs;
      const ours = (r.server_cpu_s.reduce((x, y) => x + y, 0) + r.client_cpu_s) / r.seconds;
      return {
        other_cpu_pct: Math.max(0, 100 * (busy - ours)),
        steal_pct: (100 * (b.steal - a.steal)) / TICK / secs,
      };
    },
  };
}
