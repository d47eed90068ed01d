// examples/cluster end to end, with a real redis-server: 4 worker processes on one port
// (reusePort) with the Redis adapter, the media source pushing video and audio into one of them,
// 400 node-lws clients spread by the kernel over all four (each gets some), every client
// receiving intact frames published in whichever worker holds the source. Then that worker is
// SIGKILLed: the primary replaces it (no listen() fails), the source and the killed worker's
// clients reconnect (the client's reconnect option) to the survivors or the replacement, and
// every client receives again. SIGTERM then stops the cluster cleanly: no channel left in Redis.

import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from '../../dist/index.mjs';
import { KIND_VIDEO, openFrame } from '../../examples/media-server/public/protocol.mjs';
import { ROOT } from '../support/paths.mjs';
import { spawnNode } from '../support/proc.mjs';
import { startRedis } from '../support/redis.mjs';
import { cleanupsAfterEach, exitWatchdog, note } from '../support/suite.mjs';
import { waitFor, withTimeout } from '../support/wait.mjs';

const cleanups = cleanupsAfterEach(test, 15_000);
const CLUSTER = path.join(ROOT, 'examples', 'cluster', 'cluster.mjs');
const CLIENTS = 400;

/** The primary's JSON lines so far. */
function eventsOf(child) {
  return child.stdoutText
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
}

/** A media client: which worker serves it (from 'hello' or 'pong'), what it received. */
async function viewer(port) {
  const c = await connect(`ws://127.0.0.1:${port}/ws`, {
    protocols: ['acip'],
    reconnect: { retries: 100, minDelayMs: 50, maxDelayMs: 500 },
  });
  const v = { c, pid: 0, video: 0, audio: 0, corrupt: 0, reordered: 0, opens: 0, last: {} };
  c.on('error', () => {});
  c.on('message', (data, isBinary) => {
    if (!isBinary) {
      const m = JSON.parse(data);
      if (m.type === 'hello' || m.type === 'pong') v.pid = m.pid;
      return;
    }
    const { ok, header } = openFrame(data);
    if (!ok) {
      v.corrupt++;
      return;
    }
    if (header.seq <= (v.last[header.kind] ?? -1)) v.reordered++;
    v.last[header.kind] = header.seq;
    if (header.kind === KIND_VIDEO) v.video++;
    else v.audio++;
  });
  c.on('reconnecting', () => {
    v.pid = 0;
    v.last = {}; // order is per connection
  });
  c.on('open', () => {
    v.opens++;
  });
  // The worker's 'hello' may come before this listener (it is sent on accept): ask again.
  c.send(JSON.stringify({ type: 'ping' }));
  return v;
}

test('4 processes on one port, 400 clients over all of them; a killed worker is replaced and its clients receive again', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const child = spawnNode([
    CLUSTER,
    '--json',
    '--workers',
    '4',
    '--port',
    '0',
    '--host',
    '127.0.0.1',
    '--redis',
    redis.url,
    '--fps',
    '10',
    '--width',
    '32',
    '--height',
    '18',
    '--status-ms',
    '0',
  ]);
  cleanups.push(() => child.stop());
  const events = (name) => eventsOf(child).filter((e) => e.event === name);
  await waitFor(() => events('listening').length === 4 && events('ingest').length === 1, {
    timeout: 20_000,
    label: 'four workers listening and the source connected',
    describe: () => `${child.stdoutText}\n${child.stderrText}`,
  });
  const ports = new Set(events('listening').map((e) => e.port));
  assert.is(ports.size, 1, 'every worker on the same port');
  const [port] = ports;

  const viewers = [];
  for (let i = 0; i < CLIENTS; i += 50)
    viewers.push(...(await Promise.all(Array.from({ length: 50 }, () => viewer(port)))));
  cleanups.push(() => {
    for (const v of viewers) v.c.terminate();
  });
  await waitFor(() => viewers.every((v) => v.pid && v.video >= 2 && v.audio >= 10), {
    timeout: 20_000,
    label: 'every client identified its worker and receives video and audio',
    describe: () =>
      `${viewers.filter((v) => !v.pid || v.video < 2 || v.audio < 10).length} not yet`,
  });
  const byPid = new Map();
  for (const v of viewers) byPid.set(v.pid, (byPid.get(v.pid) ?? 0) + 1);
  const workerPids = new Set(events('listening').map((e) => e.pid));
  assert.equal(new Set(byPid.keys()), workerPids, 'clients on all four workers');
  note(`clients per worker: ${[...byPid.values()].join(', ')}`);

  // Kill the worker the source feeds (the hardest case: every client loses frames until the
  // source reconnects, and that worker's clients lose their connection too).
  const victim = events('ingest').at(-1).pid;
  const victims = viewers.filter((v) => v.pid === victim);
  const before = viewers.map((v) => ({ video: v.video, audio: v.audio }));
  process.kill(victim, 'SIGKILL');
  await waitFor(() => events('exit').some((e) => e.pid === victim), { label: "the worker's exit" });
  await waitFor(() => events('listening').length === 5, {
    timeout: 10_000,
    label: 'a replacement worker listening',
  });
  assert.is(events('listening')[4].port, port, 'the replacement takes the same port');
  await waitFor(
    () =>
      victims.every((v) => v.pid && v.pid !== victim) &&
      viewers.every((v, i) => v.video >= before[i].video + 3 && v.audio >= before[i].audio + 20),
    {
      timeout: 20_000,
      label: "the killed worker's clients reconnected and every client receives again",
      describe: () =>
        `${victims.filter((v) => !v.pid || v.pid === victim).length} of ${victims.length} victims not back; ${
          viewers.filter((v, i) => v.video < before[i].video + 3 || v.audio < before[i].audio + 20)
            .length
        } clients waiting for frames; ${child.stdoutText.split('\n').slice(-5).join(' | ')}`,
    },
  );
  assert.ok(victims.length > 0, 'the killed worker had clients');
  assert.ok(
    victims.every((v) => v.opens >= 1),
    "the killed worker's clients reconnected with the reconnect option",
  );
  assert.ok(
    events('source-open').some((e) => e.reconnects >= 1),
    'the source reconnected',
  );
  assert.equal(events('listen-failed'), [], 'no listen() failed while a worker restarted');
  assert.is(
    viewers.reduce((n, v) => n + v.corrupt, 0),
    0,
    'every frame intact',
  );
  assert.is(
    viewers.reduce((n, v) => n + v.reordered, 0),
    0,
    'frames in order on each connection',
  );
  note(
    `killed pid ${victim} with ${victims.length} clients; they went to ${[
      ...new Set(victims.map((v) => v.pid)),
    ].join(', ')}`,
  );

  for (const v of viewers) v.c.close();
  child.kill('SIGTERM');
  const exit = await withTimeout(child.exited, 15_000, 'the cluster to stop');
  assert.is(exit.code, 0, `exit code (stderr: ${child.stderrText})`);
  assert.equal(events('stopped').at(-1), { event: 'stopped', replaced: 1, listenFailures: 0 });
  assert.equal(await redis.command('PUBSUB', 'CHANNELS', 'node-lws:*'), [], 'no channel left');
});

test.after(exitWatchdog);
test.run();
