// ws server for bench/run.mjs: prints {"pid","port","impl","mask",...} once listening, where
// "mask" tells which masking code ws loaded: "bufferutil" (native) or "js" (WS_NO_BUFFER_UTIL=1).
// Usage: node --expose-gc bench/server-ws.mjs [--port P] [--host H]
//          [--mode echo|fanout|flood] [--text-as buffer|string] [--heartbeat-ms N]
//          [--tls-cert P --tls-key P]   (wss: ws on an https.Server)
// (see bench/server-common.mjs). Fan-out is a loop over the subscribers calling send(); the
// heartbeat is the one ws documents: every N ms, terminate the clients that did not answer the
// previous ping, ping the others.
import fs from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import { WebSocketServer } from 'ws';
import { floodChecker, MAX_PAYLOAD, parseArgs, serve } from './server-common.mjs';

const require = createRequire(import.meta.url);
let mask = 'js';
if (!process.env.WS_NO_BUFFER_UTIL) {
  try {
    const bu = require('bufferutil');
    mask = /native code/.test(String(bu.mask)) ? 'bufferutil' : 'bufferutil-fallback-js';
  } catch {
    mask = 'js (bufferutil not loadable)';
  }
}

const o = parseArgs();
if (o.reusePort) throw new Error('--reuse-port: not with ws');
if (o.attach) throw new Error('--attach: node-lws only');
const tlsServer = o.tlsCert
  ? https.createServer({ cert: fs.readFileSync(o.tlsCert), key: fs.readFileSync(o.tlsKey) })
  : undefined;
const wss = new WebSocketServer({
  ...(tlsServer ? { server: tlsServer } : { host: o.host, port: o.port }),
  perMessageDeflate: false,
  maxPayload: MAX_PAYLOAD,
});
tlsServer?.listen(o.port, o.host);
const flood = floodChecker(o.handlerUs, o.statsFile);
const subscribers = new Set();
const alive = new WeakSet();

// Listeners shared by every connection (EventEmitter calls them with the socket as `this`),
// as in the node-lws server: a closure per connection would cost V8 heap on each.
function ignore() {} // a dropped client is not the benchmark's concern
function markAlive() {
  alive.add(this);
}
function unsubscribe() {
  subscribers.delete(this);
}
function echo(data, isBinary) {
  this.send(data, { binary: isBinary });
}
function echoText(data, isBinary) {
  this.send(isBinary ? data : data.toString(), { binary: isBinary });
}
wss.on('connection', (ws, req) => {
  ws.on('error', ignore);
  if (o.heartbeatMs) {
    alive.add(ws);
    ws.on('pong', markAlive);
  }
  if (o.mode === 'flood') {
    ws.on('message', (data) => flood.onMessage(data));
  } else if (o.mode === 'fanout' && req.url === '/pub') {
    ws.on('message', (data, isBinary) => {
      for (const s of subscribers) s.send(data, { binary: isBinary });
    });
  } else {
    if (o.mode === 'fanout') {
      subscribers.add(ws);
      ws.on('close', unsubscribe);
    }
    ws.on('message', o.textAs === 'string' ? echoText : echo);
  }
});
if (o.heartbeatMs) {
  const timer = setInterval(() => {
    for (const ws of wss.clients) {
      if (!alive.has(ws)) {
        ws.terminate();
        continue;
      }
      alive.delete(ws);
      ws.ping();
    }
  }, o.heartbeatMs);
  wss.on('close', () => clearInterval(timer));
}
wss.once('listening', () => {
  serve(
    {
      port: wss.address().port,
      impl: 'ws',
      mask,
      mode: o.mode,
      textAs: o.textAs,
      tls: !!tlsServer,
    },
    () =>
      new Promise((r) => {
        wss.close(r);
        tlsServer?.close();
      }),
  );
});
