// Sharing a port with the web frameworks people already run: Express 5 and Fastify 5 serve
// their routes while node-lws takes WebSocket upgrades on the same port (attach() with the
// core API, and node-lws/ws written as for ws). Upgrade requests for paths node-lws does not
// take reach the framework, which answers them (404 for an unknown path).

import http from 'node:http';
import express from 'express';
import Fastify from 'fastify';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../../dist/index.mjs';
import { patternBytes, sha256 } from '../support/data.mjs';
import { closeHttp, listenHttp } from '../support/http-server.mjs';
import { collectMessages } from '../support/messages.mjs';
import { cleanupsAfterEach, exitWatchdog } from '../support/suite.mjs';
import { onceEvent } from '../support/wait.mjs';
import {
  closeClient,
  echoRoundTrip,
  WebSocket,
  wsConnect,
  wsExpectReject,
} from '../support/ws-client.mjs';

const { WebSocketServer } = await import('node-lws/ws');
const MiB = 1024 * 1024;
const cleanups = cleanupsAfterEach(test);

function echo(server) {
  server.on('connection', (conn) => {
    conn.on('error', () => {});
    conn.on('message', (data, isBinary) => conn.send(data, isBinary));
  });
}

test('Express 5: routes and WebSockets on one port, several paths, 404 for an unknown path', async () => {
  const app = express();
  app.use(express.json());
  app.get('/api/hello', (req, res) => res.json({ hello: req.query.name ?? 'world' }));
  app.post('/api/echo', (req, res) => res.json(req.body));
  const server = http.createServer(app);
  const port = await listenHttp(server);
  cleanups.push(() => closeHttp(server));
  const chat = lws.attach(server, { path: '/chat' });
  const feed = lws.attach(server, { path: '/feed', protocols: ['feed.v1'] });
  cleanups.push(
    () => chat.close(),
    () => feed.close(),
  );
  echo(chat);
  feed.on('connection', (conn, request) => {
    conn.send(`feed for ${request.httpRequest.headers['x-user']} via ${conn.protocol}`);
  });

  // HTTP routes keep working, before and after upgrades.
  const base = `http://127.0.0.1:${port}`;
  assert.equal(await (await fetch(`${base}/api/hello?name=lws`)).json(), { hello: 'lws' });
  const chatWs = await wsConnect(`ws://127.0.0.1:${port}/chat`);
  cleanups.push(() => closeClient(chatWs));
  const payload = patternBytes(2 * MiB, 4);
  assert.is(sha256((await echoRoundTrip(chatWs, payload, 10000)).data), sha256(payload));
  assert.is((await echoRoundTrip(chatWs, 'hi')).data.toString(), 'hi');
  // The first message may come in the same read as the 101: listen before the client opens.
  const feedWs = new WebSocket(`ws://127.0.0.1:${port}/feed`, ['feed.v1'], {
    headers: { 'x-user': 'ana' },
  });
  cleanups.push(() => feedWs.terminate());
  const [m] = await collectMessages(feedWs, 1);
  assert.is(m.data.toString(), 'feed for ana via feed.v1');
  const posted = await fetch(`${base}/api/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ a: 1 }),
  });
  assert.equal(await posted.json(), { a: 1 });

  // An upgrade for a path node-lws does not take: Express answers it.
  const miss = await wsExpectReject(`ws://127.0.0.1:${port}/nowhere`);
  assert.is(miss.status, 404);
  assert.match(miss.body, 'Cannot GET /nowhere');
  // An upgrade for an Express route: the route answers it.
  const route = await wsExpectReject(`ws://127.0.0.1:${port}/api/hello`);
  assert.is(route.status, 200);
  assert.equal(JSON.parse(route.body), { hello: 'world' });
  assert.is(chat.connectionCount, 1);
  assert.is(feed.connectionCount, 1);
});

test('Express 5 with node-lws/ws, written as for ws (noServer and handleUpgrade)', async () => {
  const app = express();
  app.get('/', (_req, res) => res.send('home'));
  const server = http.createServer(app);
  const wss = new WebSocketServer({ noServer: true });
  cleanups.push(() => new Promise((r) => wss.close(r)));
  server.on('upgrade', (req, socket, head) => {
    if (req.url === '/socket') {
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    } else {
      socket.destroy();
    }
  });
  wss.on('connection', (ws, req) => {
    ws.send(`welcome ${req.headers['x-name']}`);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const port = await listenHttp(server);
  cleanups.push(() => closeHttp(server));
  assert.is(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'home');
  // The welcome may come in the same read as the 101: listen before the client opens.
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket`, { headers: { 'x-name': 'bo' } });
  cleanups.push(() => ws.terminate());
  const got = collectMessages(ws, 2);
  await onceEvent(ws, 'open');
  ws.send(Buffer.from([1, 2, 3]));
  const [welcome, back] = await got;
  assert.is(welcome.data.toString(), 'welcome bo');
  assert.equal([...back.data], [1, 2, 3]);
  assert.is(wss.clients.size, 1);
});

test('Fastify 5: routes, WebSockets through fastify.server, 404 from Fastify', async () => {
  const fastify = Fastify();
  fastify.get('/health', async () => ({ ok: true }));
  await fastify.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(() => fastify.close());
  const { port } = fastify.server.address();
  const wss = lws.attach(fastify.server, {
    path: '/ws',
    verify: (request) => request.httpRequest.headers['x-key'] === 'k',
  });
  cleanups.push(() => wss.close());
  echo(wss);
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/health`)).json(), { ok: true });
  const refused = await wsExpectReject(`ws://127.0.0.1:${port}/ws`);
  assert.is(refused.status, 403);
  const connected = onceEvent(wss, 'connection');
  const ws = await wsConnect(`ws://127.0.0.1:${port}/ws`, { headers: { 'x-key': 'k' } });
  cleanups.push(() => closeClient(ws));
  const [, request] = await connected;
  assert.is(request.path, '/ws');
  assert.is((await echoRoundTrip(ws, 'fastify')).data.toString(), 'fastify');
  const miss = await wsExpectReject(`ws://127.0.0.1:${port}/elsewhere`);
  assert.is(miss.status, 404);
  assert.is(JSON.parse(miss.body).statusCode, 404);
  assert.match(JSON.parse(miss.body).message, 'GET:/elsewhere not found');
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/health`)).json(), { ok: true });
});

test('Fastify 5 with node-lws/ws in server mode', async () => {
  const fastify = Fastify();
  fastify.get('/', async () => 'root');
  await fastify.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(() => fastify.close());
  const { port } = fastify.server.address();
  const wss = new WebSocketServer({ server: fastify.server, path: '/live' });
  cleanups.push(() => new Promise((r) => wss.close(r)));
  wss.on('connection', (ws) => ws.on('message', (d) => ws.send(`live:${d}`)));
  const ws = await wsConnect(`ws://127.0.0.1:${port}/live`);
  cleanups.push(() => closeClient(ws));
  assert.is((await echoRoundTrip(ws, 'x')).data.toString(), 'live:x');
  assert.is(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'root');
});

test.after(exitWatchdog);
test.run();
