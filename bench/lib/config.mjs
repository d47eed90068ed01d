// The bench's command line, windows and paths (see the header of bench/run.mjs).
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = path.resolve(HERE, '..');
export const BUILD = path.join(HERE, 'build');
export const LOADGEN = path.join(BUILD, 'loadgen');
export const ECHO_RAW = path.join(BUILD, 'echo-raw');

export const USAGE =
  'usage: node bench/run.mjs [--runs N] [--quick] [--only id,id] [--spin latency|all|none] [--wake qos|loop] [--spin-cores both|client] [--lend]';
const OPTIONS = [
  '--runs',
  '--quick',
  '--only',
  '--spin',
  '--wake',
  '--spin-cores',
  '--lend',
  '--help',
];

const argv = process.argv.slice(2);
function opt(name, dflt) {
  const i = argv.indexOf(name);
  if (i < 0) return dflt;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}
for (const a of argv) {
  if (a.startsWith('--') && !OPTIONS.includes(a)) {
    console.error(`unknown option ${a}`);
    process.exit(1);
  }
}
export const HELP = argv.includes('--help');
export const QUICK = argv.includes('--quick');
/** The node-lws server with lendMessages: true (messages lent to the handler for the call). */
export const LEND = argv.includes('--lend');
export const RUNS = Number(opt('--runs', QUICK ? 1 : 3));
if (!Number.isInteger(RUNS) || RUNS < 1 || RUNS > 50) throw new Error('--runs must be 1..50');
export const ONLY = opt('--only', '').split(',').filter(Boolean);
export const SPIN = opt('--spin', 'latency');
if (!['latency', 'all', 'none'].includes(SPIN)) throw new Error('--spin is latency, all or none');
// How idle cores are kept quick to wake (see machine.mjs): PM QoS (the default, when
// /dev/cpu_dma_latency can be written), or busy loops at SCHED_IDLE.
export const WAKE = opt('--wake', 'qos');
if (!['qos', 'loop'].includes(WAKE)) throw new Error('--wake is qos or loop');
// Where the anti-idle loops run: both cores (the default), or the load client's only (the server's
// core then idles between wake-ups; see machine.mjs).
export const SPIN_CORES = opt('--spin-cores', 'both');
if (!['both', 'client'].includes(SPIN_CORES)) throw new Error('--spin-cores is both or client');

// Windows (ms).
export const WARMUP_MS = QUICK ? 300 : 1000;
export const DURATION_MS = QUICK ? 1500 : 4000;
export const LAT_DURATION_MS = QUICK ? 2000 : 5000;
/** Idle-connection rows: the 50 round trips/s echo is measured this long. */
export const IDLE_ECHO_MS = QUICK ? 3000 : 10_000;
// idle10k measures again after this long without traffic: by then V8 has given back the young
// generation it grew while the connections were accepted (its memory reducer starts ~8 s after
// allocation slows down).
export const IDLE_SETTLE_MS = QUICK ? 3000 : 20_000;
/** Receive flood: the client sends this long (at most). */
export const FLOOD_MS = QUICK ? 2000 : 4000;
/** Receive flood: then the server gets this long to handle what it has taken in. */
export const FLOOD_DRAIN_MS = QUICK ? 3000 : 5000;
/** Receive flood: the sender stops when the server's RSS passes this. */
export const FLOOD_RSS_CAP_MB = 1024;
export const CYCLES = QUICK ? 100 : 500;
export const IDLE_CONNS = 10_000;

export const CORES = os.cpus().length;
export const PIN = CORES >= 2;
export const SERVER_CORE = 0;
export const CLIENT_CORE = 1;

export const log = (...a) => console.error(...a);
export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
export const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
export const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
export const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
export const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
