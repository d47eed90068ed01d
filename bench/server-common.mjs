// Shared by bench/server-{lws,ws,uws}.mjs: argument parsing, the receive-flood checker and the
// control channel to bench/run.mjs. The server prints one JSON line ({port, pid, ...}) on stdout
// once it listens; on standard input, a line "gc" runs a full GC (node --expose-gc) and answers
// "gc-done {heapUsed, external}"; standard input closing (the bench ended or died) or SIGTERM
// ends the process, and so does a safety timer, so a server never outlives its benchmark.
//
// Arguments (every server):
//   --port P --host H       where to listen (port 0: any free port)
//   --reuse-port            SO_REUSEPORT (node-lws only)
//   --mode echo|fanout|flood
//       echo    send every message back on its connection, same opcode
//       fanout  GET /pub is the publisher: each of its messages goes to every subscriber
//               (GET /sub); a subscriber's own messages are echoed to it (the load client's
//               "hello", which proves the subscriber is registered)
//       flood   every message goes to a handler that checks it (sequence number and pattern,
//               see bench/loadgen.c --mode flood) and busy-waits --handler-us in all
//   --text-as buffer|string text messages reach the handler as bytes (default) or as a JS
//               string, which is sent back as a string
//   --lend-messages         node-lws only: lendMessages: true (messages reach the handler as
//                           Buffers valid while it runs, not as Buffers it may keep)
//   --heartbeat-ms N        ping idle connections every N ms (0: off, the default)
//   --handler-us N          flood mode: time the handler spends per message (default 50)
//   --stats-file PATH       flood mode: where the checker keeps its counts (JSON, rewritten in
//                           place every 256 messages and every 50 ms), readable while the
//                           server's event loop is busy
//   --tls-cert P --tls-key P  serve wss:// with this certificate and key (PEM files)
//   --attach                node-lws only: a Node http.Server (https.Server with --tls-*)
//                           listens, and node-lws takes its upgrades (attach(): a plain socket
//                           is handed over to node-lws, a TLS socket is pumped by JavaScript)
//   --redis URL             fanout mode: share the topic with the other server processes on this
//                           Redis (node-lws: node-lws/redis; socket.io: @socket.io/redis-adapter)
//   --redis-subscribers N   with --redis: a subscriber's hello is echoed once N servers are
//                           subscribed to the topic in Redis (so that no message is published
//                           before every server receives it); default 1
import fs from 'node:fs';

export function parseArgs(argv = process.argv.slice(2)) {
  const o = {
    port: 0,
    host: '127.0.0.1',
    reusePort: false,
    mode: 'echo',
    textAs: 'buffer',
    lendMessages: false,
    heartbeatMs: 0,
    handlerUs: 50,
    statsFile: '',
    tlsCert: '',
    tlsKey: '',
    attach: false,
    redis: '',
    redisSubscribers: 1,
  };
  const num = (i) => {
    const v = Number(argv[i]);
    if (!Number.isInteger(v) || v < 0) throw new Error(`${argv[i - 1]} needs an integer >= 0`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') o.port = num(++i);
    else if (a === '--host') o.host = argv[++i];
    else if (a === '--reuse-port') o.reusePort = true;
    else if (a === '--mode') o.mode = argv[++i];
    else if (a === '--text-as') o.textAs = argv[++i];
    else if (a === '--lend-messages') o.lendMessages = true;
    else if (a === '--heartbeat-ms') o.heartbeatMs = num(++i);
    else if (a === '--handler-us') o.handlerUs = num(++i);
    else if (a === '--stats-file') o.statsFile = argv[++i];
    else if (a === '--tls-cert') o.tlsCert = argv[++i];
    else if (a === '--tls-key') o.tlsKey = argv[++i];
    else if (a === '--attach') o.attach = true;
    else if (a === '--redis') o.redis = argv[++i];
    else if (a === '--redis-subscribers') o.redisSubscribers = num(++i);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!['echo', 'fanout', 'flood'].includes(o.mode))
    throw new Error(`--mode is echo, fanout or flood, not ${o.mode}`);
  if (!['buffer', 'string'].includes(o.textAs))
    throw new Error(`--text-as is buffer or string, not ${o.textAs}`);
  if (!o.tlsCert !== !o.tlsKey) throw new Error('--tls-cert and --tls-key go together');
  return o;
}

/**
 * The receive-flood checker: messages carry a sequence number (8 bytes, big endian) and then
 * bytes (i * 31 + 7) & 255. `onMessage` checks one (exactly once, in order, intact), then
 * busy-waits until `handlerUs` have passed since it was called. The counts go to `statsFile`.
 */
export function floodChecker(handlerUs, statsFile) {
  const budget = BigInt(handlerUs) * 1000n;
  let pattern = Buffer.alloc(0);
  const stats = { received: 0, bytes: 0, next: 0, errors: 0, firstError: null };
  const fd = statsFile ? fs.openSync(statsFile, 'w') : -1;
  let written = -1;
  const save = () => {
    if (fd < 0 || written === stats.received) return;
    written = stats.received;
    fs.writeSync(fd, JSON.stringify(stats).padEnd(512), 0);
  };
  if (fd >= 0) setInterval(save, 50).unref();
  const fail = (what) => {
    stats.errors++;
    stats.firstError ??= `message ${stats.received}: ${what}`;
  };
  return {
    /** @param {Uint8Array} data */
    onMessage(data) {
      const t0 = process.hrtime.bigint();
      const buf = Buffer.isBuffer(data)
        ? data
        : Buffer.from(data.buffer, data.byteOffset, data.length);
      if (pattern.length !== buf.length) {
        pattern = Buffer.alloc(buf.length);
        for (let i = 0; i < buf.length; i++) pattern[i] = (i * 31 + 7) & 255;
      }
      if (buf.length < 16) fail(`${buf.length} bytes`);
      else {
        const seq = buf.readUInt32BE(0) * 2 ** 32 + buf.readUInt32BE(4);
        if (seq !== stats.next)
          fail(
            `sequence number ${seq} where ${stats.next} was due (${seq < stats.next ? 'duplicated or reordered' : 'lost or reordered'})`,
          );
        stats.next = seq + 1;
        if (buf.compare(pattern, 8, buf.length, 8, buf.length) !== 0) fail('payload corrupted');
      }
      stats.received++;
      stats.bytes += buf.length;
      if (stats.received % 256 === 0) save();
      while (process.hrtime.bigint() - t0 < budget);
    },
  };
}

export function serve(info, shutdown) {
  process.stdout.write(`${JSON.stringify({ pid: process.pid, ...info })}\n`);
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    buf += chunk;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === 'gc') {
        globalThis.gc?.();
        const m = process.memoryUsage();
        process.stdout.write(
          `gc-done ${JSON.stringify({ heapUsed: m.heapUsed, external: m.external })}\n`,
        );
      }
      nl = buf.indexOf('\n');
    }
  });
  const quit = () => {
    Promise.resolve(shutdown?.()).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.stdin.on('end', quit);
  process.on('SIGTERM', quit);
  setTimeout(quit, 30 * 60 * 1000).unref();
}

export const MAX_PAYLOAD = 64 * 1024 * 1024;
/** The topic of the fan-out workloads (node-lws publish/subscribe and uWebSockets.js). */
export const TOPIC = 'bench';
