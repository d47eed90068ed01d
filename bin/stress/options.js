'use strict';
// Command line of node-lws-stress.

const USAGE = `Usage: node-lws-stress [options]

Cycles node-lws servers up and down while clients stream media-shaped traffic
(video + audio frames from the server, small input messages from the clients),
checking every frame (sequence number, length, CRC-32) and measuring latency.

Options:
  --duration S        run for S seconds (default 30)
  --clients K         clients per cycle (default 4)
  --cycle-ms MS       how long each server lives (default 1000)
  --video-bytes N     video frame payload size (default 307200 = 300 KiB)
  --fps N             video frames per second per client, 0 for none (default 60)
                      (audio: 1,920 bytes = 480 float32 samples every 10 ms, always on;
                       input: 64 bytes from each client every 10 ms)
  --port-range A-B    listen on random explicit ports from A..B (default: port 0)
  --same-port         re-bind one port every cycle (from --port-range, or the first
                      port the kernel picked)
  --processes N       run N workers in parallel child processes (default 1)
  --host H            address to listen on and connect to (default 127.0.0.1)
  --client NAME       node-lws or ws (default node-lws when the build has a client, else ws)
  --bind-retries N    node-lws bindRetry.retries for a busy port (default 4)
  --timeout-ms MS     deadline for each wait (connect, frames in flight, close) (default 10000)
  --seed N            seed for the random port choice (default random; printed)
  --progress-ms MS    progress interval (default 250 on a terminal, 5000 otherwise)
  --no-progress       no progress output
  --json              print only a JSON summary on stdout
  -h, --help          show this help

Progress goes to stderr (one redrawn line on a terminal, plain lines otherwise);
the summary goes to stdout.

Exit status: 0 when every frame arrived intact and in order and nothing failed
unexpectedly, also after Ctrl-C (SIGINT/SIGTERM stop the run early, close every
server and client and print the summary so far; a second Ctrl-C aborts with 130);
1 on any lost or corrupt frame or unexpected failure; 2 on a bad command line.

Not failures: EADDRINUSE for a port another socket really holds (a listener, a
connection, or the TIME_WAIT of an outgoing connection: with --port-range inside
the kernel's ephemeral range this happens); video frames dropped because a
client is slow (send() returned false; audio is never dropped).
`;

class UsageError extends Error {}

const DEFAULTS = {
  duration: 30,
  clients: 4,
  cycleMs: 1000,
  videoBytes: 300 * 1024,
  fps: 60,
  portRange: null,
  samePort: false,
  processes: 1,
  host: '127.0.0.1',
  client: null,
  bindRetries: 4,
  timeoutMs: 10_000,
  seed: null,
  progressMs: null,
  progress: true,
  json: false,
  help: false,
  // Internal: set by the parent of --processes N.
  worker: false,
  workerIndex: 0,
};

const MAX_VIDEO_BYTES = 64 * 1024 * 1024 - 64;

function number(flag, text, { min, max, integer = true }) {
  if (text === undefined) throw new UsageError(`option ${flag} needs a value`);
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`option ${flag}: '${text}' is not ${integer ? 'an integer' : 'a number'}`);
  }
  if (n < min || n > max) throw new UsageError(`option ${flag}: ${n} is not in ${min}..${max}`);
  return n;
}

function portRange(flag, text) {
  if (text === undefined) throw new UsageError(`option ${flag} needs a value`);
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m) throw new UsageError(`option ${flag}: '${text}' is not a range like 32768-60999`);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (a < 1 || b > 65535 || a > b) {
    throw new UsageError(`option ${flag}: '${text}' must satisfy 1 <= A <= B <= 65535`);
  }
  return [a, b];
}

/** Parses argv (without node and the script); throws UsageError. */
function parseArgs(argv) {
  const o = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    if (eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const takesValue = ![
      '--same-port',
      '--no-progress',
      '--json',
      '--help',
      '-h',
      '--worker',
    ].includes(arg);
    if (!takesValue && value !== undefined) throw new UsageError(`option ${arg} takes no value`);
    const next = () => {
      if (value !== undefined) return value;
      const v = argv[i + 1];
      if (v === undefined || (v.startsWith('--') && v.length > 2)) {
        throw new UsageError(`option ${arg} needs a value`);
      }
      i++;
      return v;
    };
    switch (arg) {
      case '--duration':
        o.duration = number(arg, next(), { min: 0.1, max: 7 * 24 * 3600, integer: false });
        break;
      case '--clients':
        o.clients = number(arg, next(), { min: 1, max: 1000 });
        break;
      case '--cycle-ms':
        o.cycleMs = number(arg, next(), { min: 20, max: 3_600_000 });
        break;
      case '--video-bytes':
        o.videoBytes = number(arg, next(), { min: 0, max: MAX_VIDEO_BYTES });
        break;
      case '--fps':
        o.fps = number(arg, next(), { min: 0, max: 1000 });
        break;
      case '--port-range':
        o.portRange = portRange(arg, next());
        break;
      case '--same-port':
        o.samePort = true;
        break;
      case '--processes':
        o.processes = number(arg, next(), { min: 1, max: 256 });
        break;
      case '--host': {
        const h = next();
        if (h === '') throw new UsageError(`option ${arg} needs a value`);
        o.host = h;
        break;
      }
      case '--client': {
        const c = next();
        if (c !== 'node-lws' && c !== 'ws') {
          throw new UsageError(`option ${arg}: '${c}' is not one of node-lws, ws`);
        }
        o.client = c;
        break;
      }
      case '--bind-retries':
        o.bindRetries = number(arg, next(), { min: 0, max: 1000 });
        break;
      case '--timeout-ms':
        o.timeoutMs = number(arg, next(), { min: 100, max: 3_600_000 });
        break;
      case '--seed':
        o.seed = number(arg, next(), { min: 0, max: 2 ** 32 - 1 });
        break;
      case '--progress-ms':
        o.progressMs = number(arg, next(), { min: 10, max: 3_600_000 });
        break;
      case '--no-progress':
        o.progress = false;
        break;
      case '--json':
        o.json = true;
        break;
      case '-h':
      case '--help':
        o.help = true;
        break;
      case '--worker':
        o.worker = true;
        break;
      case '--worker-index':
        o.workerIndex = number(arg, next(), { min: 0, max: 255 });
        break;
      default:
        if (arg.startsWith('-')) throw new UsageError(`unknown option '${arg}'`);
        throw new UsageError(`unexpected argument '${arg}'`);
    }
  }
  return o;
}

/** The command line a worker of --processes N runs with. */
function workerArgs(o, index) {
  const a = [
    '--duration',
    String(o.duration),
    '--clients',
    String(o.clients),
    '--cycle-ms',
    String(o.cycleMs),
    '--video-bytes',
    String(o.videoBytes),
    '--fps',
    String(o.fps),
    '--host',
    o.host,
    '--bind-retries',
    String(o.bindRetries),
    '--timeout-ms',
    String(o.timeoutMs),
    '--seed',
    String((o.seed + index * 0x9e3779b9) >>> 0),
    '--json',
    '--no-progress',
    '--worker',
    '--worker-index',
    String(index),
  ];
  if (o.client) a.push('--client', o.client);
  if (o.portRange) a.push('--port-range', `${o.portRange[0]}-${o.portRange[1]}`);
  if (o.samePort) a.push('--same-port');
  return a;
}

module.exports = { DEFAULTS, USAGE, UsageError, parseArgs, workerArgs };
