// Fan-out (publish/subscribe): one publisher, N subscribers, every delivery checked by the load
// client (bench/loadgen.c --mode fanout: exactly once, in order, every byte).
import { setTimeout as sleep } from 'node:timers/promises';
import { DURATION_MS, WARMUP_MS } from './config.mjs';
import { summarize } from './echo.mjs';
import { otherLoad } from './machine.mjs';
import { procStatus, runLoadgen } from './proc.mjs';
import { startServer, stopServer } from './servers.mjs';

export async function fanoutWorkload(w, kind) {
  const srv = await startServer(kind, ['--mode', 'fanout']);
  try {
    await sleep(200);
    const args = ['--mode', 'fanout', '--port', String(srv.port), '--conns', String(w.subs)];
    args.push('--size', String(w.size), '--window', String(w.window));
    args.push('--warmup-ms', String(WARMUP_MS), '--duration-ms', String(DURATION_MS));
    const other = otherLoad();
    const r = await runLoadgen(args, [srv.pid], WARMUP_MS + DURATION_MS + 60_000, other.onEvent);
    if (r.missing)
      throw new Error(
        `${r.missing} deliveries still missing 5 s after the window (${r.published} messages published to ${r.subscribers} subscribers)`,
      );
    return {
      ...summarize(r, [procStatus(srv.pid)]),
      ...other.result(r),
      published: r.published,
      completed_in_window: r.completed_in_window,
      method: srv.info.fanout ?? (kind === 'uws' ? 'app.publish' : 'send loop'),
    };
  } finally {
    await stopServer(srv);
  }
}
