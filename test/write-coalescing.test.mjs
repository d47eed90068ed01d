// The write queue coalesces small frames (native/wire.cc): published frames of up to 1 KiB are
// copied side by side into one block, and small pieces of other frames are gathered into one
// iovec per write. These tests hold a connection's socket full (a raw client that stops
// reading) while published, sent and pinged frames of mixed sizes pile up, with the peer's
// pings answered by pongs that jump the queue, so that every write is partial somewhere; then
// they read everything and check each frame: whole, in call order, the pongs only between
// frames, bufferedAmount back to 0 and 'drain' heard. Over plain TCP and over TLS.
// A small send() from a listener is written into the delivery's batch of inline frames
// (native/context.cc, Context::InlineFrame): strings of every UTF-8 width around the size
// bound, Buffers and large sends from listeners and from outside them must keep call order.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeCert } from './support/certs.mjs';
import { listenFor } from './support/lws.mjs';
import { acceptFor, OP, RawWsPeer, rawWsUpgrade, upgradeRequest } from './support/raw-ws.mjs';
import { cleanupsAfterEach } from './support/suite.mjs';
import { onceEvent, waitFor } from './support/wait.mjs';
import { wsConnect } from './support/ws-client.mjs';

const cleanups = cleanupsAfterEach(test);
const listen = listenFor(cleanups, { host: '127.0.0.1', port: 0 });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-coalesce-'));
const cert = makeCert(dir, 'main');
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A raw client over TLS that has upgraded (101 and Accept checked). */
async function rawWssUpgrade(port) {
  const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  cleanups.push(() => socket.destroy());
  await onceEvent(socket, 'secureConnect', 5000, 'TLS handshake');
  const peer = new RawWsPeer(socket);
  peer.key = crypto.randomBytes(16).toString('base64');
  socket.write(upgradeRequest(port, { host: '127.0.0.1', path: '/', key: peer.key }));
  const head = await peer.waitHead();
  assert.is(head.status, 101, `upgrade response: ${head.startLine}`);
  assert.is(head.headers['sec-websocket-accept'], acceptFor(peer.key));
  return peer;
}

/** Payload i: `size` bytes, the index in the first 4, the rest a pattern of i. */
function payload(i, size) {
  const b = Buffer.alloc(size, i & 0xff);
  if (size >= 4) b.writeUInt32LE(i, 0);
  return b;
}

async function pileUpAndRead(secure) {
  const server = await listen(secure ? { tls: { cert: cert.cert, key: cert.key } } : {});
  const connP = onceEvent(server, 'connection', 5000, 'server connection');
  const peer = secure ? await rawWssUpgrade(server.port) : await rawWsUpgrade(server.port);
  cleanups.push(() => peer.socket.destroy());
  const [conn] = await connP;
  peer.socket.pause(); // stops reading: the server's socket fills and stays full
  conn.subscribe('t');
  let drains = 0;
  conn.on('drain', () => drains++);

  // What the peer must read, in this order: [opcode, payload].
  const expected = [];
  let i = 0;
  let sawFalse = false;
  // Turn after turn until well past what the kernel buffers hold (several MiB on loopback).
  while (conn.bufferedAmount < 4 * 1024 * 1024 && i < 200_000) {
    for (let k = 0; k < 64; k++, i++) {
      const kind = i % 11;
      if (kind === 7) {
        // A large send (referenced, not copied) between the small frames.
        const p = payload(i, 20_000 + (i % 5));
        if (!conn.send(p)) sawFalse = true;
        expected.push([OP.binary, p]);
      } else if (kind === 9) {
        const p = payload(i, 4 + (i % 100));
        conn.ping(p);
        expected.push([OP.ping, p]);
      } else if (kind % 2 === 0) {
        // Published: 1 B to ~1.2 KiB, across the 1 KiB copy threshold.
        const p = payload(i, 1 + ((i * 37) % 1200));
        assert.is(server.publish('t', p), 1);
        expected.push([OP.binary, p]);
      } else {
        const p = `m${i}:${'x'.repeat(i % 300)}`;
        if (!conn.send(p)) sawFalse = true;
        expected.push([OP.text, Buffer.from(p)]);
      }
    }
    // The peer pings while it does not read: pongs go ahead of queued data, never into a frame.
    peer.send({ opcode: OP.ping, payload: Buffer.from(`p${i}`) });
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(sawFalse, 'send() reported backpressure at least once');
  assert.ok(conn.bufferedAmount > 1024 * 1024, `buffered ${conn.bufferedAmount}`);

  peer.socket.resume();
  const data = () => peer.frames.filter((f) => f.opcode !== OP.pong);
  await waitFor(() => data().length >= expected.length || peer.parseError, {
    timeout: 60_000,
    label: 'every frame read',
    describe: () => `${data().length} of ${expected.length}`,
  });
  assert.is(peer.parseError, null);
  const got = data();
  assert.is(got.length, expected.length);
  for (let j = 0; j < expected.length; j++) {
    const f = got[j];
    const [op, p] = expected[j];
    if (f.opcode !== op || !f.fin || f.rsv !== 0 || f.masked || !f.payload.equals(p))
      assert.unreachable(
        `frame ${j}: opcode ${f.opcode} fin ${f.fin} length ${f.length}, expected opcode ${op} length ${p.length}`,
      );
  }
  const pongs = peer.frames.filter((f) => f.opcode === OP.pong);
  assert.ok(pongs.length >= 1, 'the peer got a pong');
  for (const f of pongs) assert.match(f.payload.toString(), /^p\d+$/);
  await waitFor(() => conn.bufferedAmount === 0, { label: 'bufferedAmount back to 0' });
  await waitFor(() => drains > 0, { label: "'drain'" });
  assert.ok(conn.isOpen);
}

test('plain: small published, sent and pinged frames behind a full socket arrive whole, in order', async () => {
  await pileUpAndRead(false);
});

test('TLS: the same over wss', async () => {
  await pileUpAndRead(true);
});

test("a listener's small sends (inline frames) keep call order with every other send", async () => {
  const server = await listen();
  const connP = onceEvent(server, 'connection', 5000, 'server connection');
  const ws = await wsConnect(`ws://127.0.0.1:${server.port}/`);
  cleanups.push(() => ws.terminate());
  const [conn] = await connP;
  const got = [];
  ws.on('message', (d, isBinary) => got.push(isBinary ? Buffer.from(d) : d.toString()));
  // Strings of 1-, 2-, 3- and 4-byte characters whose UTF-8 bound (3 bytes per UTF-16 unit)
  // falls on both sides of the 1 KiB inline limit, Buffers across it, and a large Buffer.
  const chars = ['a', '\u00e9', '\u20ac', '\u{1f600}'];
  const expected = [];
  let n = 0;
  const burst = (tag) => {
    for (let k = 0; k < 40; k++, n++) {
      let m;
      if (k % 8 === 7) m = payload(n, 20_000);
      else if (k % 2 === 0) m = payload(n, (n * 53) % 1100);
      else m = `${tag}${n}:${chars[n % 4].repeat((n * 29) % 400)}`;
      assert.ok(conn.send(m) !== undefined);
      expected.push(m);
    }
  };
  let triggers = 0;
  conn.on('message', () => {
    triggers++;
    burst('L'); // inside the delivery
    setImmediate(() => burst('I')); // outside it, racing the next delivery's sends
  });
  for (let i = 0; i < 30; i++) ws.send(`go${i}`);
  await waitFor(() => triggers === 30 && got.length === expected.length, {
    timeout: 20_000,
    label: 'every reply',
    describe: () => `${got.length} of ${expected.length}`,
  });
  for (let j = 0; j < expected.length; j++) {
    const e = expected[j];
    const g = got[j];
    const same = typeof e === 'string' ? g === e : Buffer.isBuffer(g) && g.equals(e);
    if (!same) assert.unreachable(`message ${j} differs (expected ${String(e).slice(0, 20)}…)`);
  }
});

test.run();
