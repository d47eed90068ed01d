// The Redis adapter when Redis fails, against a real redis-server: killed (SIGKILL) and started
// again on the same port mid-run — delivery resumes, each side counts what it could not send
// (`dropped`) and what it never got (`lost`, exactly the gaps its subscribers see), nothing
// crashes and this process's fds are back where they were; unreachable at start — listen()
// works for local traffic, the adapter reports it once (ERR_ADAPTER_UNAVAILABLE) and connects
// (subscribing what was subscribed meanwhile) once Redis is there; an outage nobody listens for
// is one process warning, and the server re-emits it when it has an 'error' listener; close()
// while Redis is down leaves no socket behind, and the process exits by itself.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { listen } from '../../dist/index.mjs';
import { createRedisAdapter } from '../../dist/redis.mjs';
import { checkMessage } from '../fixtures/redis-node.mjs';
import { freePort } from '../support/net.mjs';
import { describeFds, openFds } from '../support/proc.mjs';
import { startRedis, startRedisNode } from '../support/redis.mjs';
import { cleanupsAfterEach, exitWatchdog, note } from '../support/suite.mjs';
import { onceEvent, waitFor } from '../support/wait.mjs';
import { wsConnect } from '../support/ws-client.mjs';

const cleanups = cleanupsAfterEach(test, 15_000);
const FAST = { minDelayMs: 20, maxDelayMs: 200 };

/** A ws client on `port` that records what it receives (checked with checkMessage). */
async function subscriber(port, path) {
  const ws = await wsConnect(`ws://127.0.0.1:${port}${path}`);
  cleanups.push(() => ws.terminate());
  const got = [];
  ws.on('message', (data, isBinary) => got.push(checkMessage(data, isBinary)));
  return { ws, got, from: (name) => got.filter((m) => m.from === name) };
}

/** The baseline of this process's fds, once node-lws's native context (its own fds) exists. */
async function fdBaseline() {
  await (await listen({ host: '127.0.0.1', port: 0 })).close();
  return openFds();
}

async function fdsBackTo(baseline, label) {
  await waitFor(() => openFds() === baseline, {
    timeout: 5000,
    label,
    describe: () => `${openFds()} open, ${baseline} before: ${describeFds()}`,
  });
}

test('Redis killed and restarted mid-run: delivery resumes, losses counted, no crash, fds back', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const numsub = async () =>
    Number((await redis.command('PUBSUB', 'NUMSUB', 'node-lws-test:live'))[1]);
  await numsub();
  const before = await fdBaseline();
  const M = await startRedisNode('main', { url: redis.url, name: 'M' });
  cleanups.push(() => M.close());
  const P = await startRedisNode('child', { url: redis.url, name: 'P' });
  cleanups.push(() => P.close());
  await M.waitEvent('adapter-ready', 10_000);
  await P.waitEvent('adapter-ready', 10_000);
  const onM = [];
  const onP = [];
  for (let k = 0; k < 3; k++) onM.push(await subscriber(M.port, '/?topics=live'));
  for (let k = 0; k < 2; k++) onP.push(await subscriber(P.port, '/?topics=live'));
  await waitFor(async () => (await numsub()) === 2, { label: 'both adapters subscribed' });

  // Both servers publish a message every 2 ms for the whole test.
  await M.call('stream', { topic: 'live', intervalMs: 2 });
  await P.call('stream', { topic: 'live', intervalMs: 2 });
  await waitFor(() => onM.every((s) => s.from('P').length >= 50), { label: 'traffic flows' });
  const fdsUp = openFds();

  await redis.kill();
  const mDown = await M.waitEvent('adapter-error', 10_000);
  const pDown = await P.waitEvent('adapter-error', 10_000);
  assert.is(mDown.code, 'ERR_ADAPTER_UNAVAILABLE');
  assert.is(pDown.code, 'ERR_ADAPTER_UNAVAILABLE');
  // While Redis is down: publishes to other servers are dropped and counted; local delivery goes on.
  await waitFor(async () => (await P.call('stats')).stats.dropped >= 20, { label: 'P drops' });
  const localBefore = onM[0].from('M').length;
  await waitFor(() => onM[0].from('M').length >= localBefore + 20, {
    label: "M's own subscribers still get M's messages",
  });
  assert.not.ok((await M.call('stats')).connected);

  await redis.start();
  const mEvents = M.events.length;
  await M.waitEvent('adapter-ready', 10_000, M.events.indexOf(mDown));
  await P.waitEvent('adapter-ready', 10_000, P.events.indexOf(pDown));
  const resumedAt = onM[0].from('P').length;
  await waitFor(() => onM.every((s) => s.from('P').length >= resumedAt + 50), {
    timeout: 10_000,
    label: "P's messages reach M again",
  });
  await waitFor(() => onP.every((s) => s.got.filter((m) => m.from === 'M').length >= 50), {
    label: "M's messages reach P",
  });
  await numsub(); // the test's own Redis connection is back too, as before the kill
  await fdsBackTo(fdsUp, 'fds as before the kill (old Redis sockets closed, new ones open)');

  const fromP = (await P.call('stop')).published;
  const fromM = (await M.call('stop')).published;
  await waitFor(
    () =>
      onM.every((s) => s.from('P').at(-1)?.seq === fromP - 1) &&
      onP.every((s) => s.from('M').at(-1)?.seq === fromM - 1),
    { label: 'the last message of each stream' },
  );
  const mStats = (await M.call('stats')).stats;
  const pStats = (await P.call('stats')).stats;
  for (const [subs, from, published, stats, name] of [
    [onM, 'P', fromP, mStats, 'M'],
    [onP, 'M', fromM, pStats, 'P'],
  ]) {
    for (const s of subs) {
      const seqs = s.from(from).map((m) => m.seq);
      assert.ok(
        seqs.every((q, i) => i === 0 || q > seqs[i - 1]),
        `${name}: ${from}'s messages in order, none twice`,
      );
      const missing = published - seqs.length;
      assert.ok(missing > 0, `${name}: some of ${from}'s messages were lost in the outage`);
      assert.is(
        stats.lost,
        missing,
        `${name}: stats.lost counts exactly what its subscribers miss`,
      );
    }
    assert.is(stats.reconnects, 1, `${name}: one reconnection`);
    assert.ok(stats.dropped > 0, `${name}: dropped publishes counted`);
  }
  assert.is(M.events.slice(mEvents).filter((e) => e.event === 'adapter-error').length, 0);
  assert.is(
    M.events.filter((e) => e.code === 'ERR_ADAPTER_UNAVAILABLE').length,
    1,
    'reported once',
  );
  note(
    `outage: M dropped ${mStats.dropped}, lost ${mStats.lost} of ${fromP}; P dropped ${pStats.dropped}, lost ${pStats.lost} of ${fromM}`,
  );

  await M.close();
  await P.close();
  assert.is(await P.exited, 0, 'the child process ended normally');
  for (const s of [...onM, ...onP]) s.ws.terminate();
  await redis.command('PING');
  await fdsBackTo(before, 'fds back to the baseline after close');
});

test('Redis unreachable at start: listen() works locally, one error, connects once Redis is there', async () => {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const before = await fdBaseline();
  const adapter = createRedisAdapter({ url, reconnect: FAST });
  const errors = [];
  adapter.on('error', (err) => errors.push(err));
  const server = await listen({ host: '127.0.0.1', port: 0, adapter });
  cleanups.push(() => server.close());
  assert.is(errors.length, 1, 'reported during listen()');
  assert.is(errors[0].code, 'ERR_ADAPTER_UNAVAILABLE');
  assert.is(errors[0].cause?.code, 'ECONNREFUSED');
  assert.not.ok(adapter.connected);
  server.on('connection', (c) => c.subscribe('x'));
  const sub = await subscriber(server.port, '/');
  await waitFor(() => server.subscriberCount('x') === 1, { label: 'subscribed' });
  assert.is(server.publish('x', 'local|1'), 1, 'local subscribers get it');
  await waitFor(() => sub.got.length === 1, { label: 'local delivery' });
  assert.is(adapter.stats.dropped, 1, 'not queued for Redis: dropped');

  const redis = await startRedis({ port });
  cleanups.push(() => redis.stop());
  await onceEvent(adapter, 'ready', 10_000, 'the adapter connects');
  assert.is(errors.length, 1, 'still one error after the retries');
  // 'x' was subscribed while Redis was away: it is subscribed now.
  assert.equal(await redis.command('PUBSUB', 'CHANNELS', 'node-lws:*'), ['node-lws:x']);
  const other = await listen({ host: '127.0.0.1', port: 0, adapter: createRedisAdapter({ url }) });
  cleanups.push(() => other.close());
  other.publish('x', 'remote|1');
  await waitFor(() => sub.got.length === 2, { label: 'remote delivery' });
  assert.equal(sub.got[1], { from: 'remote', seq: 1, binary: false });
  await other.close();
  await server.close();
  sub.ws.terminate();
  await redis.stop();
  await fdsBackTo(before, 'fds back to the baseline');
});

test("an outage nobody listens for is one process warning; a server 'error' listener gets it", async () => {
  const warnings = [];
  const onWarning = (w) => {
    if (w.name === 'NodeLwsAdapterWarning') warnings.push(w);
  };
  process.on('warning', onWarning);
  cleanups.push(() => process.off('warning', onWarning));
  const port = await freePort();
  const before = await fdBaseline();
  // Unreachable, nobody listening: a warning, no crash.
  const quiet = await listen({
    host: '127.0.0.1',
    port: 0,
    adapter: createRedisAdapter({ url: `redis://127.0.0.1:${port}`, reconnect: FAST }),
  });
  cleanups.push(() => quiet.close());
  await waitFor(() => warnings.length === 1, { label: 'one warning' });
  assert.is(warnings[0].code, 'ERR_ADAPTER_UNAVAILABLE');
  // close() while the adapter keeps retrying: no socket left behind.
  await quiet.close();
  await fdsBackTo(before, 'fds back after closing an adapter that never connected');

  // Up, then killed: the server's 'error' listener gets the outage.
  const redis = await startRedis({ port });
  cleanups.push(() => redis.stop());
  const server = await listen({
    host: '127.0.0.1',
    port: 0,
    adapter: createRedisAdapter({ url: redis.url, reconnect: FAST }),
  });
  cleanups.push(() => server.close());
  assert.ok(server.adapter.connected);
  const serverError = onceEvent(server, 'error', 10_000, "the server's 'error'");
  await redis.kill();
  const [err] = await serverError;
  assert.is(err.code, 'ERR_ADAPTER_UNAVAILABLE');
  assert.is(warnings.length, 1, 'no warning when the server has a listener');
  await server.close();
  await redis.stop();
  await fdsBackTo(before, 'fds back to the baseline');
});

test.after(exitWatchdog);
test.run();
