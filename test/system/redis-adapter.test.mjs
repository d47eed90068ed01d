// The Redis adapter (node-lws/redis) against a real redis-server started by the test:
// three servers — this process's main thread, a worker thread and a child process — share
// topics through one Redis: every subscriber everywhere gets every message exactly once and in
// each publisher's order, text and 1 MiB binary, and conn.publish() reaches everyone but its
// sender on every server; only topics with local subscribers are subscribed in Redis, and
// PUBSUB CHANNELS shows none left once the last subscriber leaves or the server closes; servers
// share topics only with the same prefix; one adapter per server; options are checked.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { listen } from '../../dist/index.mjs';
import { createRedisAdapter, RedisAdapter } from '../../dist/redis.mjs';
import { checkMessage } from '../fixtures/redis-node.mjs';
import { startRedis, startRedisNode } from '../support/redis.mjs';
import { cleanupsAfterEach, exitWatchdog, note } from '../support/suite.mjs';
import { captureRejection, onceEvent, thrownBy, waitFor } from '../support/wait.mjs';
import { wsConnect } from '../support/ws-client.mjs';

const cleanups = cleanupsAfterEach(test, 15_000);
let redis;

test.before(async () => {
  redis = await startRedis();
});
test.after(async () => {
  await redis?.stop();
});

/** Channels of `prefix` that Redis has subscribers for. */
async function channels(prefix) {
  return (await redis.command('PUBSUB', 'CHANNELS', `${prefix}*`)).sort();
}

/** Subscriber connections of Redis to `channel`. */
async function numsub(channel) {
  return Number((await redis.command('PUBSUB', 'NUMSUB', channel))[1]);
}

/** A ws client on `port` that records what it receives (checked with checkMessage). */
async function subscriber(port, path) {
  const ws = await wsConnect(`ws://127.0.0.1:${port}${path}`);
  cleanups.push(() => ws.terminate());
  const got = [];
  ws.on('message', (data, isBinary) => got.push(checkMessage(data, isBinary)));
  return { ws, got };
}

/** An adapter for a test: its server's close() closes it, and so does the cleanup. */
function adapterFor(options = {}) {
  const adapter = createRedisAdapter({ url: redis.url, prefix: 'node-lws-test:', ...options });
  cleanups.push(() => adapter.close());
  return adapter;
}

test('three servers (main thread, worker, child process) on one Redis: every message once, in order, text and 1 MiB binary', async () => {
  const names = ['M', 'W', 'P'];
  const nodes = [];
  for (const [i, where] of ['main', 'worker', 'child'].entries()) {
    const node = await startRedisNode(where, { url: redis.url, name: names[i] });
    cleanups.push(() => node.close());
    nodes.push(node);
  }
  for (const node of nodes) await node.waitEvent('adapter-ready', 10_000);
  // Three subscribers per server; on P, one more that publishes with conn.publish().
  const subs = [];
  for (const node of nodes)
    for (let k = 0; k < 3; k++)
      subs.push({ node, ...(await subscriber(node.port, '/?topics=room')) });
  const sender = {
    node: nodes[2],
    ...(await subscriber(nodes[2].port, '/pub?to=room&topics=room')),
  };
  subs.push(sender);
  // Every adapter's subscriber connection has subscribed 'room' in Redis.
  await waitFor(async () => (await numsub('node-lws-test:room')) === 3, {
    label: 'three adapters subscribed in Redis',
  });

  // Each server publishes 60 messages (every tenth 1 MiB binary), all at once; the sender 30.
  const COUNT = 60;
  const MIB = 1 << 20;
  const results = await Promise.all([
    ...nodes.map((node, from) =>
      node.call('publish', {
        topic: 'room',
        from,
        count: COUNT,
        binaryEvery: 10,
        binarySize: MIB,
      }),
    ),
    (async () => {
      for (let i = 0; i < 30; i++) sender.ws.send(`client|${i}`);
    })(),
  ]);
  for (const [i, r] of results.slice(0, 3).entries())
    assert.is(r.local, COUNT * (i === 2 ? 4 : 3), `${names[i]}: local subscribers per publish`);
  const expected = (s) => 3 * COUNT + (s === sender ? 0 : 30);
  await waitFor(() => subs.every((s) => s.got.length >= expected(s)), {
    timeout: 30_000,
    label: 'every subscriber has every message',
    describe: () => subs.map((s) => s.got.length).join(','),
  });
  // A fence from each server: once a subscriber has the other servers' fences, Redis has sent
  // its own server every echo of that server's earlier messages, so a duplicate would be here.
  await Promise.all(
    nodes.map((node) => node.call('publish', { topic: 'room', count: 1, start: 1e6 })),
  );
  await waitFor(() => subs.every((s) => s.got.length >= expected(s) + 3), {
    timeout: 10_000,
    label: 'the fences',
    describe: () => subs.map((s) => s.got.length).join(','),
  });

  for (const [i, s] of subs.entries()) {
    const label = `subscriber ${i} on ${s.node.name}`;
    const errors = s.got.filter((m) => m.error);
    assert.equal(errors, [], `${label}: messages intact`);
    assert.is(s.got.length, expected(s) + 3, `${label}: no message twice`);
    const by = new Map();
    for (const m of s.got) {
      const from = m.binary ? names[m.from] : m.from;
      if (!by.has(from)) by.set(from, []);
      by.get(from).push(m);
    }
    for (const name of names) {
      const seqs = by.get(name).map((m) => m.seq);
      assert.equal(
        seqs,
        [...Array(COUNT).keys(), 1e6],
        `${label}: ${name}'s messages once each, in order`,
      );
      for (const m of by.get(name))
        if (m.seq % 10 === 9 && m.seq < COUNT)
          assert.ok(m.binary && m.size === MIB, `${label}: ${name} ${m.seq} is 1 MiB binary`);
    }
    if (s === sender) assert.not.ok(by.has('client'), 'the sender does not get its own messages');
    else
      assert.equal(
        by.get('client').map((m) => m.seq),
        [...Array(30).keys()],
        `${label}: the sender's messages`,
      );
  }
  for (const node of nodes) {
    const { stats } = await node.call('stats');
    assert.is(stats.dropped, 0, `${node.name}: dropped`);
    assert.is(stats.lost, 0, `${node.name}: lost`);
    assert.is(stats.invalid, 0, `${node.name}: invalid`);
    assert.ok(
      stats.echoes > 0,
      `${node.name}: its own messages came back from Redis and were ignored`,
    );
    note(`${node.name} (${node.where}): ${JSON.stringify(stats)}`);
  }
});

test('only topics with local subscribers are subscribed in Redis; PUBSUB CHANNELS shows none stale', async () => {
  const adapter = adapterFor({ prefix: 'node-lws-chan:' });
  const server = await listen({ host: '127.0.0.1', port: 0, adapter });
  cleanups.push(() => server.close());
  const conns = [];
  server.on('connection', (c) => conns.push(c));
  for (let i = 0; i < 3; i++) await subscriber(server.port, '/');
  await waitFor(() => conns.length === 3, { label: 'three connections' });
  assert.equal(await channels('node-lws-chan:'), [], 'nothing subscribed yet');
  conns[0].subscribe('a');
  conns[1].subscribe('a');
  conns[1].subscribe('b');
  conns[2].subscribe('c');
  conns[2].subscribe('d');
  const all = ['node-lws-chan:a', 'node-lws-chan:b', 'node-lws-chan:c', 'node-lws-chan:d'];
  await waitFor(async () => (await channels('node-lws-chan:')).length === 4, {
    label: 'four channels',
  });
  assert.equal(await channels('node-lws-chan:'), all);
  conns[0].unsubscribe('a'); // conns[1] still has it
  conns[1].unsubscribe('b'); // the last one
  await waitFor(async () => !(await channels('node-lws-chan:')).includes('node-lws-chan:b'), {
    label: 'b unsubscribed',
  });
  assert.equal(await channels('node-lws-chan:'), [
    'node-lws-chan:a',
    'node-lws-chan:c',
    'node-lws-chan:d',
  ]);
  // A closed connection leaves its topics.
  const closed = onceEvent(conns[2], 'close', 5000, 'conns[2] closes');
  conns[2].close();
  await closed;
  await waitFor(async () => (await channels('node-lws-chan:')).length === 1, {
    label: 'c, d gone',
  });
  assert.equal(await channels('node-lws-chan:'), ['node-lws-chan:a']);
  // Subscribe and leave again in one turn: Redis ends where the server ends.
  conns[0].subscribe('e');
  conns[0].unsubscribe('e');
  conns[0].subscribe('f');
  await waitFor(async () => (await channels('node-lws-chan:')).length === 2, { label: 'a, f' });
  assert.equal(await channels('node-lws-chan:'), ['node-lws-chan:a', 'node-lws-chan:f']);
  // close() closes the adapter: no channel and no connection of it left in Redis.
  await server.close();
  assert.equal(await channels('node-lws-chan:'), []);
  const clients = String(await redis.command('CLIENT', 'LIST'));
  assert.not.match(
    clients,
    /name=node-lws-(publish|subscribe)/,
    'the adapter connections are closed',
  );
  assert.not.ok(adapter.connected);
});

test('servers share topics only with the same prefix; a publish with no local subscriber still goes out', async () => {
  const [a1, a2, b] = [
    adapterFor({ prefix: 'p1:' }),
    adapterFor({ prefix: 'p1:' }),
    adapterFor({ prefix: 'p2:' }),
  ];
  const servers = [];
  for (const adapter of [a1, a2, b]) {
    const s = await listen({ host: '127.0.0.1', port: 0, adapter });
    cleanups.push(() => s.close());
    s.on('connection', (c) => c.subscribe('t'));
    servers.push(s);
  }
  assert.ok(a1.connected && a2.connected && b.connected, 'listen() resolved once connected');
  const subs = [];
  for (const s of servers.slice(1)) subs.push(await subscriber(s.port, '/'));
  await waitFor(async () => (await numsub('p1:t')) === 1 && (await numsub('p2:t')) === 1, {
    label: 'p1:t and p2:t subscribed',
  });
  // servers[0] has no subscriber of its own: 0 local, and the message still reaches servers[1].
  assert.is(servers[0].subscriberCount('t'), 0);
  assert.is(servers[0].publish('t', 'x|1'), 0);
  await waitFor(() => subs[0].got.length === 1, { label: 'same prefix gets it' });
  assert.equal(subs[0].got, [{ from: 'x', seq: 1, binary: false }]);
  // A fence through p2: by then a wrongly routed p1 message would have arrived.
  await waitFor(() => a1.stats.published === 1, { label: 'Redis acknowledged' });
  const s3 = await listen({ host: '127.0.0.1', port: 0, adapter: adapterFor({ prefix: 'p2:' }) });
  cleanups.push(() => s3.close());
  s3.publish('t', 'fence|0');
  await waitFor(() => subs[1].got.length === 1, { label: 'the p2 fence' });
  assert.equal(
    subs[1].got,
    [{ from: 'fence', seq: 0, binary: false }],
    'p2 never saw the p1 message',
  );
  assert.is(a1.stats.published, 1);
  assert.is(a2.stats.received, 1);
  assert.is(b.stats.received, 1);
});

test('one adapter per server; a closed adapter is refused; options are checked', async () => {
  const adapter = adapterFor();
  const server = await listen({ host: '127.0.0.1', port: 0, adapter });
  cleanups.push(() => server.close());
  assert.is(server.adapter, adapter);
  const inUse = await captureRejection(() => listen({ host: '127.0.0.1', port: 0, adapter }));
  assert.is(inUse.code, 'ERR_ADAPTER_IN_USE');
  await server.close();
  assert.not.ok(adapter.connected);
  const closed = await captureRejection(() => listen({ host: '127.0.0.1', port: 0, adapter }));
  assert.is(closed.code, 'ERR_ADAPTER_CLOSED');
  // A listen() that fails (a busy port) leaves the adapter free for another server.
  const fresh = adapterFor();
  const busy = await captureRejection(() =>
    listen({ host: '127.0.0.1', port: 0, adapter: fresh, socketPath: '/nonexistent/x.sock' }),
  );
  assert.ok(busy.code, `listen failed with ${busy.code}`);
  const again = await listen({ host: '127.0.0.1', port: 0, adapter: fresh });
  cleanups.push(() => again.close());
  assert.ok(fresh.connected);

  const bad = await captureRejection(() => listen({ adapter: { publish() {} } }));
  assert.is(bad.code, 'ERR_INVALID_ARG_TYPE');
  assert.match(bad.message, /adapter/);
  const cases = [
    [{ url: 'http://127.0.0.1' }, 'ERR_INVALID_ARG_VALUE'],
    [{ url: 42 }, 'ERR_INVALID_ARG_TYPE'],
    [{ url: redis.url, client: {} }, 'ERR_INVALID_ARG_VALUE'],
    [{ client: {} }, 'ERR_INVALID_ARG_TYPE'],
    [{ prefix: 1 }, 'ERR_INVALID_ARG_TYPE'],
    [{ reconnect: { minDelayMs: 0 } }, 'ERR_OUT_OF_RANGE'],
    [{ reconnect: { minDelayMs: 500, maxDelayMs: 100 } }, 'ERR_OUT_OF_RANGE'],
    [{ connectTimeoutMs: -1 }, 'ERR_OUT_OF_RANGE'],
    [null, 'ERR_INVALID_ARG_TYPE'],
  ];
  for (const [options, code] of cases) {
    const err = thrownBy(() => createRedisAdapter(options), JSON.stringify(options));
    assert.is(err.code, code, JSON.stringify(options));
  }
  assert.ok(createRedisAdapter({ url: redis.url }) instanceof RedisAdapter);
});

test('a given redis client publishes (and stays open); the adapter subscribes on its own duplicate', async () => {
  const { createClient } = await import('redis');
  const client = createClient({ url: redis.url });
  client.on('error', () => {});
  await client.connect();
  cleanups.push(() => client.isOpen && client.disconnect());
  const adapter = createRedisAdapter({ client, prefix: 'node-lws-client:' });
  const server = await listen({ host: '127.0.0.1', port: 0, adapter });
  cleanups.push(() => server.close());
  const other = await listen({
    host: '127.0.0.1',
    port: 0,
    adapter: adapterFor({ prefix: 'node-lws-client:' }),
  });
  cleanups.push(() => other.close());
  other.on('connection', (c) => c.subscribe('t'));
  server.on('connection', (c) => c.subscribe('t'));
  const [mine, theirs] = [await subscriber(server.port, '/'), await subscriber(other.port, '/')];
  await waitFor(async () => (await numsub('node-lws-client:t')) === 2, {
    label: 'both subscribed',
  });
  server.publish('t', 'given|1');
  other.publish('t', 'other|1');
  await waitFor(() => mine.got.length === 2 && theirs.got.length === 2, { label: 'both ways' });
  assert.equal(mine.got.map((m) => m.from).sort(), ['given', 'other']);
  assert.equal(theirs.got.map((m) => m.from).sort(), ['given', 'other']);
  await server.close();
  assert.ok(client.isReady, "the given client is the caller's: still open after close()");
  assert.is(await client.ping(), 'PONG');
  assert.equal(
    await channels('node-lws-client:'),
    ['node-lws-client:t'],
    "only the other server's subscription is left",
  );
});

test.after(exitWatchdog);
test.run();
