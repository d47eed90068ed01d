'use strict';
// Command line of node-lws-stress.

const USAGE = `Usage: node-lws-stress [options]

Cycles node-lws servers up and down while clients stream media-shaped traffic
(video + audio frames from the server, small input messages from the clients),
checking every frame (sequence number, length, CRC-32) and measuring latency.

Options:
  --duration S        run for S seconds (default 30)
  --clients K         clients per cycle (default 4; --flood: connections per direction,
                      default 1)
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

Traffic shape (with the cycles above):
  --broadcast         deliver video and audio through publish/subscribe, as the media
                      server does: every client subscribes to 'video' and 'audio' and the
                      server publishes each frame once (server.publish) instead of a
                      send() loop per client; per-subscriber deliveries are checked
  --drop              with --broadcast: backpressurePolicy 'drop', video subscribed with
                      maxBackpressure --max-backpressure, the connection (audio) bound 4x
                      that; frames dropped for a slow subscriber are counted, not failures
  --max-backpressure N  with --drop: the video bound in bytes (default 2 video frames,
                      at least 256 KiB)
  --lend-messages     the server (and node-lws clients) with lendMessages: true, each
                      message lent to the handler for the call instead of handed over
  --slow-clients K    K clients of each cycle read at most --slow-mbps while the server
                      streams (pause()/resume()); they catch up when it stops
  --slow-mbps R       reading rate of a slow client in MB/s (default 4)
  --idle N            hold N idle WebSocket connections open to a server of the same
                      process (from helper processes) during the second half of the run,
                      and compare the first half (without) with the second (with): an echo
                      every 20 ms on its own connection (p50/p99), frame latency, process CPU

Receive flood (instead of the cycles):
  --flood             a sender writes binary messages as fast as TCP allows to a receiver
                      in its own process whose message handler is slow; reports the
                      receiver's peak RSS (VmHWM), messages sent/received/lost/out of order
                      and the sender's peak bufferedAmount (TCP backpressure reaching it)
  --direction D       to-server (a client floods a server), to-client (a server floods a
                      client) or both, one after the other, --duration split between them
                      (default both)
  --handler-us N      the receiver's handler busy-waits N microseconds per message (default 50)
  --message-bytes N   message size in bytes (default 1024)
  --receiver NAME     node-lws or ws (default node-lws)
  --receive-hwm N     the node-lws receiver's receiveHighWaterMark in bytes
                      (default: the library's)
  --total-receive-limit N  the node-lws receiver's configure({ totalReceiveLimit }) in
                      bytes (default: the library's)
  --max-rss-mb N      the receiver's peak RSS above N MiB is a failure (default 512)
                      (after the flood the receiver gets --timeout-ms plus twice its handler's
                       time for the messages it still had to take to report them all)

Progress goes to stderr (one redrawn line on a terminal, plain lines otherwise);
the summary goes to stdout.

Exit status: 0 when every frame arrived intact and in order and nothing failed
unexpectedly, also after Ctrl-C (SIGINT/SIGTERM stop the run early, close every
server and client and print the summary so far; a second Ctrl-C aborts with 130);
1 on any lost or corrupt frame or unexpected failure; 2 on a bad command line.
--broadcast: a subscriber missing a published frame is a failure unless --drop is on
and node-lws counted it as dropped for that subscriber (conn.stats.dropped).
--idle: every idle connection must open and stay open, and every echo must come back
(latency and CPU are reported, not judged). --flood: every message must arrive exactly
once, in order and intact, and the receiver's peak RSS must stay within --max-rss-mb.

Not failures: EADDRINUSE for a port another socket really holds (a listener, a
connection, or the TIME_WAIT of an outgoing connection: with --port-range inside
the kernel's ephemeral range this happens); video frames dropped because a
client is slow (send() returned false; audio is never dropped); with --drop,
frames node-lws dropped for a slow subscriber.
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
  // Traffic shape.
  broadcast: false,
  drop: false,
  lendMessages: false,
  maxBackpressure: null,
  slowClients: 0,
  slowMBps: 4,
  idle: 0,
  // Receive flood.
  flood: false,
  direction: 'both',
  handlerUs: 50,
  messageBytes: 1024,
  receiver: 'node-lws',
  receiveHwm: null,
  totalReceiveLimit: null,
  maxRssMiB: 512,
  // Internal: set by the parent of --processes N.
  worker: false,
  workerIndex: 0,
};

const MAX_VIDEO_BYTES = 64 * 1024 * 1024 - 64;
/** A flood message carries the 32-byte frame header and at least 32 bytes of payload. */
const MIN_FLOOD_MESSAGE = 64;

function number(flag, text, { min, max, integer = true }) {
  if (text === undefined) throw new UsageError(`option ${flag} needs a value`);
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`option ${flag}: '${text}' is not ${integer ? 'an integer' : 'a number'}`);
  }
  if (n < min || n > max) throw new UsageError(`option ${flag}: ${n} is not in ${min}..${max}`);
  return n;
}

/** The flags of the cycles that do not apply to --flood. */
const CYCLE_ONLY = [
  '--cycle-ms',
  '--video-bytes',
  '--fps',
  '--port-range',
  '--same-port',
  '--processes',
  '--bind-retries',
  '--seed',
  '--broadcast',
  '--drop',
  '--lend-messages',
  '--max-backpressure',
  '--slow-clients',
  '--slow-mbps',
  '--idle',
];
/** The flags that only apply to --flood. */
const FLOOD_ONLY = [
  '--direction',
  '--handler-us',
  '--message-bytes',
  '--receiver',
  '--receive-hwm',
  '--total-receive-limit',
  '--max-rss-mb',
];

function oneOf(flag, text, values) {
  if (!values.includes(text)) {
    throw new UsageError(`option ${flag}: '${text}' is not one of ${values.join(', ')}`);
  }
  return text;
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
  const given = new Set();
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
      '--broadcast',
      '--drop',
      '--lend-messages',
      '--flood',
    ].includes(arg);
    given.add(arg);
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
      case '--broadcast':
        o.broadcast = true;
        break;
      case '--drop':
        o.drop = true;
        break;
      case '--lend-messages':
        o.lendMessages = true;
        break;
      case '--max-backpressure':
        o.maxBackpressure = number(arg, next(), { min: 1024, max: 2 ** 40 });
        break;
      case '--slow-clients':
        o.slowClients = number(arg, next(), { min: 0, max: 1000 });
        break;
      case '--slow-mbps':
        o.slowMBps = number(arg, next(), { min: 0.01, max: 100_000, integer: false });
        break;
      case '--idle':
        o.idle = number(arg, next(), { min: 0, max: 1_000_000 });
        break;
      case '--flood':
        o.flood = true;
        break;
      case '--direction':
        o.direction = oneOf(arg, next(), ['to-server', 'to-client', 'both']);
        break;
      case '--handler-us':
        o.handlerUs = number(arg, next(), { min: 0, max: 1_000_000 });
        break;
      case '--message-bytes':
        o.messageBytes = number(arg, next(), { min: MIN_FLOOD_MESSAGE, max: 16 * 1024 * 1024 });
        break;
      case '--receiver':
        o.receiver = oneOf(arg, next(), ['node-lws', 'ws']);
        break;
      case '--receive-hwm':
        o.receiveHwm = number(arg, next(), { min: 1, max: 2 ** 40 });
        break;
      case '--total-receive-limit':
        o.totalReceiveLimit = number(arg, next(), { min: 64 * 1024, max: 2 ** 45 });
        break;
      case '--max-rss-mb':
        o.maxRssMiB = number(arg, next(), { min: 16, max: 1024 * 1024 });
        break;
      case '--worker-index':
        o.workerIndex = number(arg, next(), { min: 0, max: 255 });
        break;
      default:
        if (arg.startsWith('-')) throw new UsageError(`unknown option '${arg}'`);
        throw new UsageError(`unexpected argument '${arg}'`);
    }
  }
  checkCombinations(o, given);
  return o;
}

/** Flags that need or exclude others. */
function checkCombinations(o, given) {
  const requires = (flag, needed, ok) => {
    if (given.has(flag) && !ok) throw new UsageError(`option ${flag} needs ${needed}`);
  };
  if (o.flood) {
    for (const flag of CYCLE_ONLY) {
      if (given.has(flag)) throw new UsageError(`option ${flag} does not apply to --flood`);
    }
    if (!given.has('--clients')) o.clients = 1;
    if (o.receiver === 'ws') {
      for (const flag of ['--receive-hwm', '--total-receive-limit']) {
        if (given.has(flag)) throw new UsageError(`option ${flag} needs --receiver node-lws`);
      }
    }
    return;
  }
  for (const flag of FLOOD_ONLY) requires(flag, '--flood', false);
  requires('--drop', '--broadcast', o.broadcast);
  requires('--max-backpressure', '--drop', o.drop);
  requires('--slow-mbps', '--slow-clients', o.slowClients > 0);
  if (o.slowClients > o.clients) {
    throw new UsageError(
      `option --slow-clients: ${o.slowClients} is more than --clients ${o.clients}`,
    );
  }
  if (o.idle > 0 && o.processes > 1) {
    throw new UsageError('option --idle runs in one process: it does not combine with --processes');
  }
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
  if (o.broadcast) a.push('--broadcast');
  if (o.drop) a.push('--drop');
  if (o.lendMessages) a.push('--lend-messages');
  if (o.maxBackpressure !== null) a.push('--max-backpressure', String(o.maxBackpressure));
  if (o.slowClients > 0) a.push('--slow-clients', String(o.slowClients));
  if (o.slowClients > 0) a.push('--slow-mbps', String(o.slowMBps));
  return a;
}

module.exports = { DEFAULTS, USAGE, UsageError, parseArgs, workerArgs };
