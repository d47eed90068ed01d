// wss:// behind Node's own TLS: an https.Server serves a page and hands its WebSocket upgrades
// to node-lws (attach), whose JavaScript pump carries the bytes of each TLS socket. Three
// independent clients talk to it: the `ws` package (verifying the certificate), Python's
// `websockets` (its ssl module) and headless Chromium.

import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../../dist/index.mjs';
import { makeCert } from '../support/certs.mjs';
import { chromiumPageResult } from '../support/chromium.mjs';
import { patternBytes, sha256 } from '../support/data.mjs';
import { closeHttp, listenHttp } from '../support/http-server.mjs';
import { connClosed } from '../support/lws.mjs';
import { spawnProcess } from '../support/proc.mjs';
import { findPythonWebsockets } from '../support/python.mjs';
import { cleanupsAfterEach, exitWatchdog, note } from '../support/suite.mjs';
import { onceEvent, withTimeout } from '../support/wait.mjs';
import { closeClient, echoRoundTrip, wsConnect } from '../support/ws-client.mjs';

const MiB = 1024 * 1024;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-wss-'));
const TLS = makeCert(dir, 'server');
const cleanups = cleanupsAfterEach(test, 10000);
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

const PAGE = `<!doctype html><meta charset="utf-8"><title>wss via https.Server</title>
<script>
window.__result = new Promise((resolve, reject) => {
  const ws = new WebSocket('wss://' + location.host + '/ws', 'chat');
  ws.binaryType = 'arraybuffer';
  const got = [];
  ws.onopen = () => {
    ws.send('from chromium');
    ws.send(new Uint8Array(300000).map((_, i) => i & 255));
  };
  ws.onmessage = (ev) => {
    got.push(typeof ev.data === 'string' ? ev.data : ev.data.byteLength + ':' + new Uint8Array(ev.data)[299999]);
    if (got.length === 2) ws.close(4005, 'page done');
  };
  ws.onclose = (ev) => resolve({ protocol: ws.protocol, extensions: ws.extensions, got, code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
  ws.onerror = () => reject(new Error('websocket error'));
});
</script>`;

/** An https.Server serving PAGE, with a node-lws server attached on /ws (echo). */
async function wssServer(options = {}) {
  const server = https.createServer(
    { key: fs.readFileSync(TLS.key), cert: fs.readFileSync(TLS.cert) },
    (_req, res) => {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(PAGE);
    },
  );
  const port = await listenHttp(server);
  cleanups.push(() => closeHttp(server));
  const lwsServer = lws.attach(server, { path: '/ws', protocols: ['chat'], ...options });
  cleanups.push(() => lwsServer.close());
  lwsServer.on('connection', (conn) => {
    conn.on('error', () => {});
    conn.on('message', (data, isBinary) => conn.send(data, isBinary));
  });
  return { server, port, lwsServer };
}

test('ws client, certificate verified: echo up to 8 MiB, close both ways', async () => {
  const { port, lwsServer } = await wssServer({ perMessageDeflate: true });
  const connected = onceEvent(lwsServer, 'connection');
  const ws = await wsConnect(`wss://localhost:${port}/ws`, {
    ca: fs.readFileSync(TLS.cert),
    perMessageDeflate: true,
  });
  cleanups.push(() => closeClient(ws));
  const [conn, request] = await connected;
  assert.ok(request.httpRequest.socket.encrypted, 'the request came over TLS');
  assert.is(ws.extensions, 'permessage-deflate');
  for (const size of [1, 70000, 8 * MiB]) {
    const payload = patternBytes(size, size);
    const reply = await echoRoundTrip(ws, payload, 20000, `${size} B`);
    assert.is(sha256(reply.data), sha256(payload), `${size} B intact`);
  }
  const closed = connClosed(conn);
  await closeClient(ws, 4100, 'ws done');
  assert.equal(await closed, { code: 4100, reason: 'ws done', wasClean: true });
});

test('Python websockets over wss (ssl with the test CA)', async () => {
  const { python, version } = await findPythonWebsockets();
  note(`python websockets ${version}`);
  const { port } = await wssServer();
  const script = path.join(dir, 'client.py');
  fs.writeFileSync(
    script,
    `
import asyncio, hashlib, json, ssl, sys
import websockets

async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    uri = 'wss://localhost:%s/ws' % sys.argv[1]
    async with websockets.connect(uri, ssl=ctx, subprotocols=['chat'], max_size=None) as ws:
        out = {'subprotocol': ws.subprotocol}
        await ws.send('py text')
        out['text'] = await asyncio.wait_for(ws.recv(), 10)
        blob = bytes(range(256)) * 4096
        await ws.send(blob)
        back = await asyncio.wait_for(ws.recv(), 10)
        out['binary'] = [len(back), hashlib.sha256(back).hexdigest() == hashlib.sha256(blob).hexdigest()]
        await ws.close(4003, 'py bye')
        out['close'] = [ws.close_code, ws.close_reason]
    print(json.dumps(out), flush=True)

asyncio.run(main())
`,
  );
  const child = spawnProcess(python, [script, String(port), TLS.cert]);
  cleanups.push(() => child.stop());
  const line = await child.line(undefined, 20000, 'python result');
  await withTimeout(child.exited, 10000, 'python exit');
  assert.is(child.exitCode, 0, child.stderrText);
  assert.equal(JSON.parse(line), {
    subprotocol: 'chat',
    text: 'py text',
    binary: [256 * 4096, true],
    close: [4003, 'py bye'],
  });
});

test('Chromium: a page from the https.Server opens wss to the same origin', async () => {
  const { port, lwsServer } = await wssServer();
  const closed = onceEvent(lwsServer, 'connection').then(([conn]) => connClosed(conn, 20000));
  const result = await chromiumPageResult(`https://localhost:${port}/`, {
    ignoreHTTPSErrors: true,
    ms: 30000,
  });
  assert.equal(result, {
    protocol: 'chat',
    extensions: '',
    got: ['from chromium', `300000:${299999 & 255}`],
    code: 4005,
    reason: 'page done',
    wasClean: true,
  });
  assert.equal(await closed, { code: 4005, reason: 'page done', wasClean: true });
});

test.after(exitWatchdog);
test.run();
