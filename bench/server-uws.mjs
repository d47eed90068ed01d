// uWebSockets.js server for bench/run.mjs: prints {"pid","port","impl","version",...} once
// listening. uWebSockets.js comes from the dev dependency @trufflesuite/uws-js-unofficial
// (bench/lib/uws.mjs), which the bench can do without; its native binary is loaded directly, never the package's JavaScript
// fallback. Exits with status 3 and a message on stderr when it is not available.
// Usage: node --expose-gc bench/server-uws.mjs [--port P] [--host H]
//          [--mode echo|fanout|flood] [--text-as buffer|string] [--heartbeat-ms N]
// (see bench/server-common.mjs).
// - echo: send back what arrives, same opcode (text as received, or with --text-as string
//   decoded to a JS string and sent back as one).
// - fanout: subscribers (GET /sub) ws.subscribe(topic) on open; the publisher's (GET /pub)
//   messages go out with app.publish(topic, message, isBinary).
// - Limits: messages up to 64 MiB, backpressure up to 1 GiB per connection (uWS drops messages
//   beyond maxBackpressure, 64 KiB by default: the closed-loop loads here never come near it),
//   idle timeout off. With --heartbeat-ms N: sendPingsAutomatically and the idleTimeout whose
//   pings come every N ms or a little more (see uwsIdleTimeout).
import { createRequire } from 'node:module';
import { locateUws } from './lib/uws.mjs';
import { floodChecker, MAX_PAYLOAD, parseArgs, serve, TOPIC } from './server-common.mjs';

const where = locateUws();
if (!where.ok) {
  process.stderr.write(`server-uws: ${where.reason}\n`);
  process.exit(3);
}
const uWS = createRequire(import.meta.url)(where.binary);

/**
 * uWS has no ping interval: with sendPingsAutomatically it pings a connection that has been
 * silent for idleTimeout - margin seconds and closes it when another margin passes without a
 * word; the margin is 4, 8 or 16 s, the largest that leaves idleTimeout - margin >= 2 * margin
 * (an idleTimeout of 8 pings every ~4 s here). Returns the smallest idleTimeout, a multiple of
 * 4 s (its timer granularity), whose pings come no sooner than every `intervalS` seconds.
 */
function uwsIdleTimeout(intervalS) {
  const margin = (t) => {
    let m = 4;
    while (t - 2 * m >= 2 * m && m < 16) m *= 2;
    return m;
  };
  let t = 8;
  while (t - margin(t) < intervalS) t += 4;
  return t;
}

const o = parseArgs();
if (o.reusePort) throw new Error('--reuse-port: not with uWebSockets.js');
const flood = floodChecker(o.handlerUs, o.statsFile);
const idleTimeout = o.heartbeatMs ? uwsIdleTimeout(o.heartbeatMs / 1000) : 0;
const common = {
  compression: uWS.DISABLED,
  maxPayloadLength: MAX_PAYLOAD,
  maxBackpressure: 1024 * 1024 * 1024,
  closeOnBackpressureLimit: false,
  idleTimeout,
  sendPingsAutomatically: idleTimeout > 0,
};
// ws.send() returns 2 when uWS dropped the message (backpressure over maxBackpressure): the
// load client then reports the reply missing.

const app = uWS.App();
if (o.mode === 'flood') {
  app.ws('/*', { ...common, message: (_ws, msg) => flood.onMessage(new Uint8Array(msg)) });
} else if (o.mode === 'fanout') {
  app.ws('/pub', {
    ...common,
    message: (_ws, msg, isBinary) => app.publish(TOPIC, msg, isBinary),
  });
  app.ws('/sub', {
    ...common,
    open: (ws) => ws.subscribe(TOPIC),
    message: (ws, msg, isBinary) => ws.send(msg, isBinary),
  });
} else if (o.textAs === 'string') {
  app.ws('/*', {
    ...common,
    message: (ws, msg, isBinary) =>
      ws.send(isBinary ? msg : Buffer.from(msg).toString('utf8'), isBinary),
  });
} else {
  app.ws('/*', { ...common, message: (ws, msg, isBinary) => ws.send(msg, isBinary) });
}

app.listen(o.host, o.port, (listenSocket) => {
  if (!listenSocket) {
    process.stderr.write(`server-uws: cannot listen on ${o.host}:${o.port}\n`);
    process.exit(1);
  }
  serve(
    {
      port: uWS.us_socket_local_port(listenSocket),
      impl: 'uWebSockets.js',
      version: where.version,
      mode: o.mode,
      textAs: o.textAs,
      idleTimeout,
    },
    () => uWS.us_listen_socket_close(listenSocket),
  );
});
