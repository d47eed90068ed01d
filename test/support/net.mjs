// Plain TCP: free ports, listening and connecting with node's net, IPv6 loopback, and the
// machine's TCP sockets from /proc/net/tcp (parsed by the stress CLI's bin/stress/proc-net-tcp.js,
// which the published CLI needs too).
//
// Layer 1 of test/support/: imports only wait.mjs (and the CLI's parser).

import net from 'node:net';
import procNetTcp from '../../bin/stress/proc-net-tcp.js';
import { DEFAULT_TIMEOUT, withTimeout } from './wait.mjs';

/** True if this machine can listen on the IPv6 loopback ::1. */
export async function hasIPv6Loopback() {
  const srv = net.createServer();
  try {
    await withTimeout(
      new Promise((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '::1', resolve);
      }),
      2000,
      'listen on ::1',
    );
    return true;
  } catch {
    return false;
  } finally {
    if (srv.listening) await new Promise((r) => srv.close(r));
  }
}

/** Listen a plain node `net` server; resolves with it (port via `.address().port`). */
export function netListen(port = 0, host = '127.0.0.1') {
  const srv = net.createServer((s) => s.destroy());
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ port, host, exclusive: true }, () => resolve(srv));
  });
}

export function netClose(srv) {
  return new Promise((resolve) => srv.close(() => resolve()));
}

/**
 * A TCP port that was free a moment ago: listen on port 0 with `net`, read the
 * port, close. (Nothing listens on it afterwards, so a connect is refused.)
 */
export async function freePort(host = '127.0.0.1') {
  const srv = await netListen(0, host);
  const { port } = srv.address();
  await netClose(srv);
  return port;
}

/** Does a plain TCP connect to host:port succeed? (resolves true/false) */
export function tcpConnects(host, port, ms = 2000) {
  return withTimeout(
    new Promise((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => {
        s.destroy();
        resolve(false);
      });
    }),
    ms,
    `tcp connect ${host}:${port}`,
  );
}

/** Connect a plain TCP socket; resolves once connected. */
export function rawTcpConnect(port, host = '127.0.0.1', ms = DEFAULT_TIMEOUT) {
  const socket = net.connect({ host, port });
  return withTimeout(
    new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('error', reject);
    }),
    ms,
    `TCP connect to ${host}:${port}`,
  ).catch((err) => {
    socket.destroy();
    throw err;
  });
}

/**
 * All TCP sockets of the machine (from /proc/net/tcp and /proc/net/tcp6) as
 * `{ family, localAddress, localPort, remoteAddress, remotePort, state, rxQueue, txQueue, inode }`;
 * the parser is the stress CLI's (bin/stress/proc-net-tcp.js).
 */
export function tcpSockets() {
  return procNetTcp.tcpSockets() ?? [];
}

/** Listening sockets on `port` (any address, any family). */
export function listenersOn(port) {
  return tcpSockets().filter((s) => s.state === 'LISTEN' && s.localPort === port);
}
