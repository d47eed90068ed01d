// node-lws echo server for bench/run.mjs: prints {"pid","port","impl"} once listening.
// Usage: node --expose-gc bench/server-lws.mjs [--port P] [--host H] [--reuse-port]
import { listen } from '../dist/index.mjs';
import { MAX_PAYLOAD, parseArgs, serve } from './server-common.mjs';

const o = parseArgs();
const server = await listen({
  host: o.host,
  port: o.port,
  reusePort: o.reusePort,
  maxPayload: MAX_PAYLOAD,
  bindRetry: false,
  // Echo the bytes as received, as ws does by default (its text messages are
  // Buffers too); the default, textAs: 'string', decodes and re-encodes UTF-8.
  textAs: process.env.NODE_LWS_BENCH_TEXT_AS === 'string' ? 'string' : 'buffer',
});
server.on('connection', (conn) => {
  conn.on('message', (d, b) => conn.send(d, b));
  conn.on('error', () => {}); // a dropped client is not the benchmark's concern
});
serve({ port: server.port, impl: 'node-lws' }, () => server.close());
