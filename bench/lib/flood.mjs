// Receive flood: one connection sends 1 KiB binary messages as fast as TCP takes them to a
// server whose handler spends 50 µs on each; the server checks every message (sequence number
// and pattern, bench/server-common.mjs floodChecker) and keeps its counts in a file, readable
// even while its event loop is busy. The sender stops after FLOOD_MS, or at once when the
// server's RSS passes FLOOD_RSS_CAP_MB; the server then gets up to FLOOD_DRAIN_MS to handle
// what it has taken in. A server over the cap is killed, not drained.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FLOOD_DRAIN_MS, FLOOD_MS, FLOOD_RSS_CAP_MB } from './config.mjs';
import { endChild, loadgenResult, nextResult, procStatus, startLoadgen } from './proc.mjs';
import { startServer, stopServer } from './servers.mjs';

const SIZE = 1024;
const HANDLER_US = 50;

function readStats(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return { received: 0, errors: 0, firstError: null };
  }
}

export async function floodWorkload(kind) {
  const statsFile = path.join(os.tmpdir(), `node-lws-bench-flood-${process.pid}-${kind}.json`);
  fs.rmSync(statsFile, { force: true });
  const srv = await startServer(kind, [
    '--mode',
    'flood',
    '--handler-us',
    String(HANDLER_US),
    '--stats-file',
    statsFile,
  ]);
  const capKb = FLOOD_RSS_CAP_MB * 1024;
  let capped = false;
  let capAtMs;
  let lg;
  let poll;
  try {
    await sleep(200);
    lg = startLoadgen(
      ['--mode', 'flood', '--port', String(srv.port), '--size', String(SIZE)].concat([
        '--duration-ms',
        String(FLOOD_MS),
      ]),
      [srv.pid],
    );
    const t0 = Date.now();
    poll = setInterval(() => {
      if (!capped && procStatus(srv.pid).rssKb > capKb) {
        capped = true;
        capAtMs = Date.now() - t0;
        lg.child.stdin.write('stop\n');
      }
    }, 50);
    const line = await nextResult(lg, FLOOD_MS + 15_000, 'the flood to end');
    const r = loadgenResult(line, lg.err, 'loadgen flood');
    const sendMs = Date.now() - t0;
    // The server handles what it has taken in: until every message is in, the drain time is
    // up, or its RSS passes the cap.
    const t1 = Date.now();
    let s = readStats(statsFile);
    while (!capped && s.received < r.sent && Date.now() - t1 < FLOOD_DRAIN_MS) {
      await sleep(100);
      s = readStats(statsFile);
    }
    clearInterval(poll);
    const st = procStatus(srv.pid);
    return {
      sent: r.sent,
      sent_per_s: r.sent / r.seconds,
      send_ms: sendMs,
      delivered: s.received,
      delivered_ms: Date.now() - t0,
      all_delivered: s.received === r.sent && s.errors === 0,
      in_order: s.errors === 0,
      errors: s.errors,
      first_error: s.firstError,
      capped,
      cap_at_ms: capAtMs,
      stopped_by: r.stopped_by,
      peak_rss_mb: st.hwmKb / 1024,
    };
  } finally {
    clearInterval(poll);
    if (capped) srv.child.kill('SIGKILL'); // its backlog would take minutes
    if (lg) await endChild(lg.child, 2000);
    await stopServer(srv, 1000);
    fs.rmSync(statsFile, { force: true });
  }
}
