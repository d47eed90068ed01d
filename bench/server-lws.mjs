// node-lws server for bench/run.mjs: prints {"pid","port","impl",...} once listening.
// Usage: node --expose-gc bench/server-lws.mjs [--port P] [--host H] [--reuse-port]
//          [--mode echo|fanout|flood] [--text-as buffer|string] [--lend-messages] [--heartbeat-ms N]
//          [--tls-cert P --tls-key P] [--attach] [--redis URL [--redis-subscribers N]]
// (see bench/server-common.mjs). Fan-out uses server.publish(topic, data, isBinary) with
// conn.subscribe(topic) when node-lws has them, else a loop over server.connections; with
// --redis, through a Redis adapter (node-lws/redis) to the other server processes too.
// --attach: a Node http.Server / https.Server listens and node-lws takes its upgrades.
import fs from 'node:fs';
import { attach, Connection, listen } from '../dist/index.mjs';
import { floodChecker, MAX_PAYLOAD, parseArgs, serve, TOPIC } from './server-common.mjs';

const o = parseArgs();
let adapter;
let subscribed; // with --redis: every server process subscribed to TOPIC in Redis
if (o.redis) {
  const { createRedisAdapter } = await import('../dist/redis.mjs');
  adapter = createRedisAdapter({ url: o.redis });
}
const common = {
  maxPayload: MAX_PAYLOAD,
  // Text as bytes unless --text-as string (text16kstr): the echo rows echo the bytes as
  // received, as ws does by default (its text messages are Buffers too); textAs: 'string'
  // (node-lws's default) decodes and re-encodes UTF-8.
  textAs: o.textAs,
  lendMessages: o.lendMessages,
  ...(o.heartbeatMs ? { heartbeat: { intervalMs: o.heartbeatMs } } : {}),
};
let httpServer;
let server;
if (o.attach) {
  // Loaded here, not up front: a server made by listen() loads neither (nor does node-lws).
  httpServer = o.tlsCert
    ? (await import('node:https')).createServer({
        cert: fs.readFileSync(o.tlsCert),
        key: fs.readFileSync(o.tlsKey),
      })
    : (await import('node:http')).createServer();
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(o.port, o.host, resolve);
  });
  server = attach(httpServer, common);
} else {
  server = await listen({
    ...(adapter ? { adapter } : {}),
    host: o.host,
    port: o.port,
    reusePort: o.reusePort,
    bindRetry: false,
    ...(o.tlsCert ? { tls: { cert: o.tlsCert, key: o.tlsKey } } : {}),
    ...common,
  });
}

const hasPublish = typeof server.publish === 'function';
const hasSubscribe = typeof Connection.prototype.subscribe === 'function';
if (o.mode === 'fanout' && hasPublish !== hasSubscribe)
  throw new Error(
    `node-lws has server.publish: ${hasPublish}, conn.subscribe: ${hasSubscribe}; the fan-out server needs both or neither`,
  );
const pubsub = hasPublish && hasSubscribe;
const flood = floodChecker(o.handlerUs, o.statsFile);

// Listeners shared by every connection (EventEmitter calls them with the connection as `this`):
// a closure per connection would cost ~75 B of V8 heap each.
function ignore() {} // a dropped client is not the benchmark's concern
function echo(d, b) {
  this.send(d, b);
}
server.on('connection', (conn, request) => {
  conn.on('error', ignore);
  if (o.mode === 'flood') {
    conn.on('message', (d) => flood.onMessage(d));
  } else if (o.mode === 'fanout' && request.path === '/pub') {
    if (pubsub) conn.on('message', (d, b) => server.publish(TOPIC, d, b));
    else
      conn.on('message', (d, b) => {
        for (const c of server.connections) if (c !== conn) c.send(d, b);
      });
  } else if (o.mode === 'fanout' && adapter) {
    conn.subscribe(TOPIC);
    // The hello is echoed once every server receives what the others publish.
    subscribed ??= import('./server-redis.mjs').then((m) =>
      m.redisSubscribers(o.redis, `${adapter.prefix}${TOPIC}`, o.redisSubscribers),
    );
    conn.on('message', (d, b) => subscribed.then(() => conn.send(d, b)));
  } else {
    if (o.mode === 'fanout' && pubsub) conn.subscribe(TOPIC);
    conn.on('message', echo);
  }
});
serve(
  {
    port: httpServer ? httpServer.address().port : server.port,
    impl: 'node-lws',
    mode: o.mode,
    textAs: o.textAs,
    accept: o.attach ? `${o.tlsCert ? 'https' : 'http'}.Server + attach()` : 'listen()',
    tls: !!o.tlsCert,
    ...(o.mode === 'fanout'
      ? {
          fanout: adapter
            ? 'publish/subscribe + node-lws/redis'
            : pubsub
              ? 'publish/subscribe'
              : 'send loop',
        }
      : {}),
  },
  async () => {
    await server.close();
    httpServer?.close();
  },
);
