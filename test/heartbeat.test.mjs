// Heartbeats. Server side: `heartbeat: { intervalMs, timeoutMs }` pings a
// silent connection and drops it (1006) when the ping goes unanswered; pongs
// and any other traffic count as liveness. Client side: connect() with a
// heartbeat against a raw server that never answers pings, and against a
// node-lws server (which answers pings by itself).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { connClosed, listenFor, nextConnection, transportRoundTrip } from './support/lws.mjs';
import { OP, rawWsServer, rawWsUpgrade } from './support/raw-ws.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { onceEvent, waitFor, withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';
const HB = { intervalMs: 100, timeoutMs: 100 };

// ---------------------------------------------------------------------------
// Bookkeeping
// ---------------------------------------------------------------------------

const cleanups = cleanupsAfterEach(test);

const listen = listenFor(cleanups, { host: HOST, port: 0 });

function track(peer) {
  cleanups.push(async () => peer.destroy());
  return peer;
}

/** A raw client upgraded on a heartbeat server, with its server-side Connection. */
async function rawPair(server, peerOptions = {}) {
  const connP = nextConnection(server);
  const peer = track(await rawWsUpgrade(server.port, peerOptions));
  const [conn] = await connP;
  conn.errors = [];
  conn.on('error', (e) => conn.errors.push(e));
  return { peer, conn };
}

function describePeer(peer) {
  return `pings ${peer.pings}, frames ${peer.log.map((f) => f.opcode).join(',')}, closed ${peer.isClosed}`;
}

// ---------------------------------------------------------------------------
// Server heartbeat
// ---------------------------------------------------------------------------

test('server heartbeat: a client that answers pings stays connected for > 5 intervals', async () => {
  const server = await listen({ heartbeat: HB });
  const { peer, conn } = await rawPair(server, { autoPong: true });
  let closed = false;
  conn.on('close', () => {
    closed = true;
  });
  const t0 = peer.headAt;
  // The pings themselves are the clock: 7 pings take at least 6 intervals.
  await peer.until(
    () => {
      if (peer.isClosed) throw new Error(`dropped although it answered: ${describePeer(peer)}`);
      return peer.pings >= 7;
    },
    5000,
    '7 heartbeat pings',
  );
  const elapsed = performance.now() - t0;
  assert.ok(elapsed > 5 * HB.intervalMs, `7 pings after ${elapsed.toFixed(0)} ms`);
  assert.is(peer.isClosed, false);
  assert.is(closed, false);
  assert.is(conn.isOpen, true);
  assert.equal(conn.errors, []);
  // The pings are well-formed server frames: unmasked, final, empty or short.
  const pings = peer.log.filter((f) => f.opcode === OP.ping);
  assert.ok(pings.length >= 7);
  for (const f of pings) {
    assert.is(f.masked, false, 'server frames are not masked');
    assert.is(f.fin, true);
    assert.ok(f.payload.length <= 125);
  }
  // Spaced about one interval apart (pong → next ping after intervalMs), not a flood.
  const gaps = pings.slice(1).map((f, i) => f.at - pings[i].at);
  assert.ok(
    gaps.every((g) => g >= HB.intervalMs * 0.7),
    `ping gaps (ms): ${gaps.map((g) => g.toFixed(0)).join(' ')}`,
  );
  // Only pings arrived: no close frame.
  assert.equal(
    peer.log.filter((f) => f.opcode !== OP.ping),
    [],
  );
  // Still usable.
  conn.send('alive');
  const msg = await peer.nextFrame(2000, 'text frame', OP.text);
  assert.is(msg.payload.toString(), 'alive');
});

test('server heartbeat: a client that never answers is dropped with 1006 in ~200 ms', async () => {
  const server = await listen({ heartbeat: HB });
  const { peer, conn } = await rawPair(server, { autoPong: false });
  const t0 = peer.headAt;
  const c = await connClosed(conn, 3000);
  const elapsed = performance.now() - t0;
  assert.is(c.code, 1006, `close: ${JSON.stringify(c)}`);
  assert.is(c.wasClean, false);
  assert.ok(
    elapsed >= 2 * HB.intervalMs * 0.9 && elapsed <= 1500,
    `dropped ${elapsed.toFixed(0)} ms after the upgrade (interval 100 + timeout 100)`,
  );
  await withTimeout(peer.closed, 2000, 'TCP close of the silent client');
  assert.ok(peer.pings >= 1, `the client was pinged before the drop: ${describePeer(peer)}`);
  assert.is(conn.isOpen, false);
  assert.is(server.connectionCount, 0);
});

test('server heartbeat: traffic counts as liveness (data, pings ignored) — until it stops', async () => {
  const server = await listen({ heartbeat: HB });
  const { peer, conn } = await rawPair(server, { autoPong: false });
  const received = [];
  conn.on('message', (d) => received.push(d));
  let closedAt;
  const closeP = connClosed(conn, 5000).then((c) => {
    closedAt = performance.now();
    return c;
  });
  let n = 0;
  const timer = setInterval(() => peer.send({ opcode: OP.text, payload: `tick ${n++}` }), 40);
  cleanups.push(async () => clearInterval(timer));
  const t0 = peer.headAt;
  await waitFor(
    () => {
      if (closedAt !== undefined)
        throw new Error(`dropped although it sent data: ${describePeer(peer)}`);
      return received.length >= 15 && performance.now() - t0 > 6 * HB.intervalMs;
    },
    { timeout: 5000, label: '15 messages over > 6 intervals' },
  );
  assert.is(peer.isClosed, false);
  assert.is(conn.isOpen, true);
  assert.equal(received.slice(0, 3), ['tick 0', 'tick 1', 'tick 2']);
  // Stop talking: the heartbeat (which was running all along) now drops it.
  clearInterval(timer);
  const tStop = performance.now();
  const c = await closeP;
  assert.is(c.code, 1006);
  const after = closedAt - tStop;
  assert.ok(after <= 1500, `dropped ${after.toFixed(0)} ms after the traffic stopped`);
  assert.ok(after >= 100, `dropped only ${after.toFixed(0)} ms after the traffic stopped`);
});

test('server heartbeat off (the default): a silent client is never pinged', async () => {
  const server = await listen({});
  const { peer, conn } = await rawPair(server, { autoPong: false });
  const hb = await listen({ heartbeat: HB });
  // A heartbeat server next to it is the clock: wait until its silent client is dropped.
  const other = await rawPair(hb, { autoPong: false });
  await connClosed(other.conn, 3000);
  assert.is(peer.pings, 0);
  assert.is(peer.isClosed, false);
  assert.is(conn.isOpen, true);
});

// ---------------------------------------------------------------------------
// Client heartbeat
// ---------------------------------------------------------------------------

test('client heartbeat against a raw server that never answers pings → close 1006', async () => {
  const raw = await rawWsServer();
  cleanups.push(() => raw.close());
  const client = await lws.connect(`ws://${HOST}:${raw.port}/`, { heartbeat: HB });
  const tOpen = performance.now();
  cleanups.push(async () => client.terminate());
  client.on('error', () => {});
  const closeP = onceEvent(client, 'close', 3000, "client 'close' after unanswered pings");
  const peer = await raw.nextPeer();
  const [code, reason, wasClean] = await closeP;
  const elapsed = performance.now() - tOpen;
  assert.is(code, 1006, `close ${code} ${reason}`);
  assert.is(wasClean, false);
  assert.ok(
    elapsed >= 2 * HB.intervalMs * 0.9 && elapsed <= 1500,
    `client closed ${elapsed.toFixed(0)} ms after open (interval 100 + timeout 100)`,
  );
  // The raw server saw the client's pings: masked, as client frames must be.
  await withTimeout(peer.closed, 2000, 'TCP close at the raw server');
  const pings = peer.log.filter((f) => f.opcode === OP.ping);
  assert.ok(pings.length >= 1, describePeer(peer));
  for (const f of pings) assert.is(f.masked, true, 'client frames are masked');
  assert.is(client.readyState, 'closed');
});

test('client heartbeat against a raw server that answers pings stays open > 5 intervals', async () => {
  const raw = await rawWsServer({ autoPong: true });
  cleanups.push(() => raw.close());
  const client = await lws.connect(`ws://${HOST}:${raw.port}/`, { heartbeat: HB });
  cleanups.push(async () => client.terminate());
  let closed;
  client.on('close', (code) => {
    closed = code;
  });
  const tOpen = performance.now();
  const peer = await raw.nextPeer();
  await peer.until(
    () => {
      if (closed !== undefined) throw new Error(`client closed (${closed}): ${describePeer(peer)}`);
      return peer.pings >= 7;
    },
    5000,
    '7 client pings',
  );
  assert.ok(performance.now() - tOpen > 5 * HB.intervalMs);
  assert.is(closed, undefined);
  assert.is(client.readyState, 'open');
});

test('client heartbeat against a node-lws server (auto pong) stays open > 5 intervals', async () => {
  const server = await listen({});
  const connP = nextConnection(server);
  const client = await lws.connect(`ws://${HOST}:${server.port}/`, { heartbeat: HB });
  cleanups.push(async () => client.terminate());
  const tOpen = performance.now();
  const [conn] = await connP;
  conn.on('message', (d) => conn.send(d));
  let closed;
  client.on('close', (code) => {
    closed = code;
  });
  let serverPings = 0;
  let clientPongs = 0;
  conn.on('ping', () => serverPings++);
  client.on('pong', () => clientPongs++);
  await waitFor(
    () => {
      if (closed !== undefined) throw new Error(`client closed with ${closed}`);
      return serverPings >= 7 && clientPongs >= 6;
    },
    {
      timeout: 5000,
      label: 'heartbeat pings answered by the node-lws server',
      describe: () => `server saw ${serverPings} pings, client saw ${clientPongs} pongs`,
    },
  );
  const elapsed = performance.now() - tOpen;
  assert.ok(elapsed > 5 * HB.intervalMs, `after ${elapsed.toFixed(0)} ms`);
  assert.is(closed, undefined);
  assert.is(client.readyState, 'open');
  assert.is(conn.isOpen, true);
  const r = await transportRoundTrip(client, 'still open');
  assert.is(r.data, 'still open');
});

test.after(exitWatchdog);
test.run();
