// ws echo server for bench/run.mjs: prints {"pid","port","impl","mask"} once listening, where
// "mask" tells which masking code ws loaded: "bufferutil" (native) or "js" (WS_NO_BUFFER_UTIL=1).
// Usage: node --expose-gc bench/server-ws.mjs [--port P] [--host H]
import { createRequire } from 'node:module';
import { WebSocketServer } from 'ws';
import { MAX_PAYLOAD, parseArgs, serve } from './server-common.mjs';

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
const wss = new WebSocketServer({
  host: o.host,
  port: o.port,
  perMessageDeflate: false,
  maxPayload: MAX_PAYLOAD,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.once('listening', () => {
  serve({ port: wss.address().port, impl: 'ws', mask }, () => new Promise((r) => wss.close(r)));
});
