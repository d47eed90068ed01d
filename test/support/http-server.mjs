// Node HTTP and HTTPS servers for the tests of upgrades handed over from them (handleUpgrade,
// attach, node-lws/ws): listening on port 0 and closed after the test, with every socket.
//
// Layer 1 of test/support/: imports only wait.mjs.

import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { Duplex } from 'node:stream';
import { withTimeout } from './wait.mjs';

/** Listen `server` on 127.0.0.1 port 0; resolves with its port. */
export async function listenHttp(server, host = '127.0.0.1') {
  await withTimeout(
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, resolve);
    }),
    5000,
    'http server listen',
  );
  return server.address().port;
}

/** Close `server` and every connection it still has (upgraded or not). */
export async function closeHttp(server) {
  if (!server.listening) return;
  const closed = new Promise((resolve) => server.close(() => resolve()));
  server.closeAllConnections?.();
  await withTimeout(closed, 5000, 'http server close');
}

/**
 * An http.Server (or https.Server with `tls: { key, cert }` file paths) listening on port 0,
 * closed after the test through `cleanups`. `onRequest` answers plain requests (default: 200
 * "http ok"). Resolves with `{ server, port, url(path, scheme) }`.
 */
export function httpServerFor(cleanups) {
  return async ({ tls, onRequest } = {}) => {
    const handler =
      onRequest ??
      ((_req, res) => {
        res.setHeader('content-type', 'text/plain');
        res.end('http ok');
      });
    const server = tls
      ? https.createServer(
          { key: fs.readFileSync(tls.key), cert: fs.readFileSync(tls.cert) },
          handler,
        )
      : http.createServer(handler);
    const port = await listenHttp(server);
    cleanups.push(() => closeHttp(server));
    const scheme = tls ? 'wss' : 'ws';
    return {
      server,
      port,
      url: (path = '/', s = scheme) => `${s}://127.0.0.1:${port}${path}`,
    };
  };
}

/**
 * A Duplex of the application over `socket` (not a net.Socket itself): what handleUpgrade()
 * gets when an upgrade arrives through some other stream layer.
 */
export function wrapInDuplex(socket) {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy();
      cb(err);
    },
  });
  socket.on('data', (c) => {
    if (!d.push(c)) socket.pause();
  });
  socket.on('end', () => d.push(null));
  socket.on('close', () => d.destroy());
  socket.on('error', (err) => d.destroy(err));
  return d;
}

/**
 * A GET with `get` (http.get or https.get) by a reader that stops for `pauseMs` after every MiB
 * it takes; resolves with `{ res, body }` once the response has ended.
 */
export function slowGet(get, options, pauseMs, label = 'a slow GET') {
  return withTimeout(
    new Promise((resolve, reject) => {
      get(options, (res) => {
        const chunks = [];
        let sinceRest = 0;
        res.on('data', (c) => {
          chunks.push(c);
          sinceRest += c.length;
          if (sinceRest >= 1 << 20) {
            sinceRest = 0;
            res.pause();
            setTimeout(() => res.resume(), pauseMs);
          }
        });
        res.on('end', () => resolve({ res, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      }).on('error', reject);
    }),
    20_000,
    label,
  );
}
