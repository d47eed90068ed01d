// A server connection's JavaScript object holds its native side through a handle from a table
// (native/conn_handles.h), given back as soon as JavaScript hears that the connection closed,
// instead of an N-API External that V8 collects some day: nativeMemory().handles
// counts the ones held. Every way a connection ends gives its handle back, and a handle given
// back is refused, never followed.
import { createRequire } from 'node:module';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { openClients } from './support/lws.mjs';
import { withTimeout } from './support/wait.mjs';

const require = createRequire(import.meta.url);
const { binding } = require('../dist/native.js');

const HOST = '127.0.0.1';
const N = 200;

/** N node-lws clients of `server`, and the server's N connections once they are announced. */
const open = (server, n = N) => openClients(server, n);

function closed(conns) {
  return Promise.all(conns.map((c) => new Promise((r) => c.once('close', r))));
}

test('every connection closed by its client gives its handle back', async () => {
  const base = lws.nativeMemory().handles;
  const server = await lws.listen({ host: HOST, port: 0 });
  try {
    const { clients, conns } = await open(server);
    assert.is(lws.nativeMemory().handles, base + N, 'one handle per open connection');
    // Each handle leads to its own connection: every client hears its own number back.
    const heard = clients.map((cl) => new Promise((r) => cl.once('message', r)));
    for (let i = 0; i < N; i++) conns[i].send(String(i));
    const replies = await withTimeout(Promise.all(heard), 20000, 'every reply');
    const got = new Set(replies.map(Number));
    assert.is(got.size, N, 'N distinct connections answered');
    const gone = closed(conns);
    for (const cl of clients) cl.close(1000, 'bye');
    await withTimeout(gone, 20000, "every server connection's close");
    assert.is(lws.nativeMemory().handles, base, 'every handle given back');
    for (const c of conns) {
      assert.throws(
        () => c.send('late'),
        (e) => e.code === 'ERR_CONNECTION_CLOSED',
      );
      assert.is(c.bufferedAmount, 0);
      assert.is(c.stats.dropped, 0);
    }
  } finally {
    await server.close();
  }
});

test('closing the server, and terminate(), give every handle back', async () => {
  const base = lws.nativeMemory().handles;
  const server = await lws.listen({ host: HOST, port: 0 });
  const { clients, conns } = await open(server, 50);
  assert.is(lws.nativeMemory().handles, base + 50);
  const gone = closed(conns);
  for (const c of conns.slice(0, 10)) c.terminate();
  await server.close();
  await withTimeout(gone, 20000, "every server connection's close");
  for (const cl of clients) cl.terminate();
  assert.is(lws.nativeMemory().handles, base, 'every handle given back');
});

test('a handle given back is refused, not followed', async () => {
  const server = await lws.listen({ host: HOST, port: 0 });
  try {
    let handle;
    const announced = new Promise((resolve) =>
      server.once('connection', (c) => {
        handle = c.nativeHandle;
        resolve(c);
      }),
    );
    const client = await lws.connect(`ws://${HOST}:${server.port}/`);
    const conn = await withTimeout(announced, 10000, 'the connection');
    assert.type(handle, 'number', "a server connection's handle is a table handle");
    assert.is(binding.bufferedAmount(handle), 0, 'live: it answers');
    const gone = new Promise((r) => conn.once('close', r));
    client.close(1000);
    await withTimeout(gone, 10000, "the server connection's close");
    assert.is(conn.nativeHandle, undefined, 'the connection no longer holds it');
    assert.throws(() => binding.bufferedAmount(handle), /connection handle expected/);
    assert.throws(() => binding.send(handle, 'x', false, 0), /connection handle expected/);
    assert.throws(() => binding.dispose(handle), /live connection handle expected/);
    // The next connection takes the slot back (the table reuses the last slot freed) under a
    // new generation: the old handle still finds nothing.
    const next = new Promise((r) => server.once('connection', r));
    const client2 = await lws.connect(`ws://${HOST}:${server.port}/`);
    const conn2 = await withTimeout(next, 10000, 'the second connection');
    const handle2 = conn2.nativeHandle;
    assert.is(handle2 % 2 ** 22, handle % 2 ** 22, 'the same slot');
    assert.is.not(handle2, handle, 'another generation');
    assert.is(binding.bufferedAmount(handle2), 0);
    assert.throws(() => binding.bufferedAmount(handle), /connection handle expected/);
    client2.terminate();
    // A number that was never issued: the same.
    assert.throws(() => binding.dispose(123), /live connection handle expected/);
    assert.throws(() => binding.bufferedAmount(2 ** 31 - 1), /connection handle expected/);
  } finally {
    await server.close();
  }
});

test.run();
