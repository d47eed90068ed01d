// The servers under test, each in its own process pinned to the server core.
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { ECHO_RAW, LEND, ROOT, SERVER_CORE } from './config.mjs';
import { collectStderr, lines, pinned } from './proc.mjs';
import { tlsArgs } from './tls.mjs';
import { locateUws } from './uws.mjs';

export const SERVERS = {
  lws: LEND
    ? {
        label: 'node-lws (lendMessages)',
        script: 'bench/server-lws.mjs',
        args: ['--lend-messages'],
        env: {},
      }
    : { label: 'node-lws', script: 'bench/server-lws.mjs', env: {} },
  wsbu: { label: 'ws+bufferutil', script: 'bench/server-ws.mjs', env: {} },
  ws: {
    label: 'ws (no bufferutil)',
    script: 'bench/server-ws.mjs',
    env: { WS_NO_BUFFER_UTIL: '1' },
  },
  uws: { label: 'uWebSockets.js', script: 'bench/server-uws.mjs', env: {} },
  raw: { label: 'raw TCP echo (C)', bin: ECHO_RAW, env: {} },
  // Upgrades handed over by a Node HTTP server (attach), and wss:// (the load client's --tls).
  lwsat: {
    label: 'node-lws, socket handed over by http.Server',
    script: 'bench/server-lws.mjs',
    args: ['--attach'],
    env: {},
  },
  lwstls: { label: 'node-lws TLS (lws)', script: 'bench/server-lws.mjs', tls: true, env: {} },
  lwsattls: {
    label: 'node-lws on https.Server (JS-pumped)',
    script: 'bench/server-lws.mjs',
    args: ['--attach'],
    tls: true,
    env: {},
  },
  wsbutls: {
    label: 'ws+bufferutil on https.Server',
    script: 'bench/server-ws.mjs',
    tls: true,
    env: {},
  },
  // The cross-process fan-out rows (bench/lib/redisfanout.mjs).
  sio: { label: 'socket.io', script: 'bench/server-sio.mjs', env: {} },
  lwsRedis: { label: 'node-lws ×2 + Redis', script: 'bench/server-lws.mjs', env: {} },
  sioRedis: { label: 'socket.io ×2 + Redis', script: 'bench/server-sio.mjs', env: {} },
  lws1: { label: 'node-lws, 1 process', script: 'bench/server-lws.mjs', env: {} },
  sio1: { label: 'socket.io, 1 process', script: 'bench/server-sio.mjs', env: {} },
};

/**
 * Whether uWebSockets.js can be measured: { ok, version, binary } or { ok: false, reason }.
 * The binary is loaded once in a throw-away process (a mismatched build may crash).
 */
export function uwsAvailability() {
  const where = locateUws();
  if (!where.ok) return where;
  const r = spawnSync(
    process.execPath,
    [
      '-e',
      'const u = require(process.argv[1]); if (typeof u.App !== "function") process.exit(4)',
      where.binary,
    ],
    { cwd: ROOT, encoding: 'utf8', timeout: 20_000 },
  );
  if (r.status !== 0)
    return {
      ok: false,
      reason: `${where.binary} does not load: ${(r.stderr || r.error?.message || `exit ${r.status ?? r.signal}`).trim().split('\n')[0]}`,
    };
  return where;
}

export async function startServer(kind, extra = []) {
  const s = SERVERS[kind];
  const env = { ...process.env, ...s.env };
  if (!s.env.WS_NO_BUFFER_UTIL) delete env.WS_NO_BUFFER_UTIL;
  const own = [...(s.args ?? []), ...(s.tls ? tlsArgs() : [])];
  const args = s.bin
    ? [s.bin, ...extra]
    : [process.execPath, '--expose-gc', s.script, ...own, ...extra];
  const child = pinned(SERVER_CORE, args, { env });
  const err = collectStderr(child);
  const rd = lines(child);
  const exited = once(child, 'exit');
  let info;
  try {
    const line = await rd.next(15_000, `${s.label} to print its port`);
    if (line === null) {
      const lines = err()
        .split('\n')
        .filter((l) => /Error|error|errno|code|server-uws/.test(l));
      throw new Error(
        `${s.label} exited before listening: ${lines.slice(0, 3).join(' | ') || err()}`,
      );
    }
    info = JSON.parse(line);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  if ((kind === 'wsbu' || kind === 'wsbutls') && info.mask !== 'bufferutil')
    throw new Error(`ws+bufferutil server did not load bufferutil (mask: ${info.mask})`);
  if (kind === 'ws' && info.mask !== 'js')
    throw new Error(`ws server without bufferutil reports mask ${info.mask}`);
  return { kind, child, rd, err, exited, pid: child.pid, port: info.port, info };
}

export async function stopServer(srv, graceMs = 3000) {
  if (srv.child.exitCode !== null || srv.child.signalCode !== null) return;
  srv.child.stdin.end();
  const t = setTimeout(() => srv.child.kill('SIGKILL'), graceMs);
  await srv.exited;
  clearTimeout(t);
}

/** Full GC in the server; returns its process.memoryUsage() heapUsed/external afterwards. */
export async function gc(srv) {
  if (srv.kind === 'raw') return {};
  srv.child.stdin.write('gc\n');
  for (;;) {
    const l = await srv.rd.next(10_000, 'gc-done');
    if (l === null) return {};
    if (l.startsWith('gc-done')) return JSON.parse(l.slice(8) || '{}');
  }
}
