// Mutual TLS and SNI on node-lws servers, against node-lws clients, ws clients and Node's own
// tls: `tls: { requestCert, ca, rejectUnauthorized }` refuses a client without a valid
// certificate (or, with rejectUnauthorized false, reports it), puts the client's certificate on
// `conn.peerCertificate` (and verify's request); clients present one with `tls: { cert, key }`;
// `tls.sni` serves several certificates on one port chosen by the name the client sends, and
// the client's `tls.servername` picks it (a name without a certificate of its own gets the
// default, which fails the client's host name check). Certificates come from the openssl
// command (test/support/certs.mjs). The same choice as `openssl s_client -servername` sees
// it: system/openssl-sni.test.mjs.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { issueCert, issueSniCerts, makeCa, makeCert } from './support/certs.mjs';
import {
  attachEcho,
  connectFor,
  listenFor,
  nextConnection,
  transportRoundTrip,
} from './support/lws.mjs';
import { DIST_URL } from './support/paths.mjs';
import { spawnNode } from './support/proc.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { captureRejection, withTimeout } from './support/wait.mjs';
import { WebSocket } from './support/ws-client.mjs';

const HOST = '127.0.0.1';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-mtls-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

const ca = makeCa(dir, 'ca');
const otherCa = makeCa(dir, 'other-ca');
const server = issueCert(dir, 'server', ca, { cn: 'localhost', san: 'DNS:localhost,IP:127.0.0.1' });
const alice = issueCert(dir, 'alice', ca, { cn: 'client-alice', usage: 'clientAuth' });
const bob = issueCert(dir, 'bob', ca, { cn: 'client-bob', usage: 'clientAuth', pass: 'bobpass' });
const mallory = issueCert(dir, 'mallory', otherCa, { cn: 'client-mallory', usage: 'clientAuth' });
const selfSigned = makeCert(dir, 'self', { cn: 'self-signed-client', san: 'DNS:client' });
const { certA, certB, certDefault } = issueSniCerts(dir, ca);
const certWild = issueCert(dir, 'wild', ca, { cn: 'wild.example', san: 'DNS:*.wild.example' });

const cleanups = cleanupsAfterEach(test);
const listen = listenFor(cleanups, { host: HOST, port: 0 });
const client = connectFor(cleanups);

/** A ws client's outcome: 'open', or the error it failed with. */
function wsOutcome(url, options) {
  return withTimeout(
    new Promise((resolve) => {
      const ws = new WebSocket(url, options);
      ws.on('open', () => {
        ws.close();
        resolve('open');
      });
      ws.on('error', (err) => {
        ws.terminate();
        resolve(err);
      });
    }),
    5000,
    `ws client to ${url}`,
  );
}

/** The subject CN of the certificate a server sends for `servername` (Node's tls). */
function servedName(port, servername) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: HOST, port, servername, rejectUnauthorized: false }, () => {
        const cn = s.getPeerCertificate().subject?.CN;
        s.destroy();
        resolve(cn);
      });
      s.on('error', reject);
    }),
    5000,
    `TLS handshake for ${servername}`,
  );
}

const mtlsOptions = (extra = {}) => ({
  tls: { cert: server.cert, key: server.key, ca: ca.cert, requestCert: true, ...extra },
});

test('requestCert: a client without a certificate is refused, with one it is accepted and its subject readable', async () => {
  const srv = await listen(mtlsOptions());
  attachEcho(srv);
  let connections = 0;
  srv.on('connection', () => connections++);
  const url = `wss://localhost:${srv.port}/`;

  const err = await captureRejection(
    () => lws.connect(url, { tls: { ca: ca.cert } }),
    5000,
    'node-lws client without a certificate',
  );
  assert.is(err.code, 'ERR_TLS_HANDSHAKE', err.message);
  assert.match(err.message, /certificate required|handshake failure|alert/i);
  const wsErr = await wsOutcome(url, { ca: fs.readFileSync(ca.cert) });
  assert.instance(wsErr, Error, 'ws without a certificate is refused');
  assert.is(connections, 0);

  const connected = nextConnection(srv);
  const c = await client(url, { tls: { ca: ca.cert, cert: alice.cert, key: alice.key } });
  const [conn] = await connected;
  assert.is(conn.peerCertificate.subject, 'CN=client-alice');
  assert.match(conn.peerCertificate.issuer, /CN=node-lws test CA ca/);
  assert.ok(conn.authorized);
  assert.is(conn.authorizationError, undefined);
  assert.is((await transportRoundTrip(c, 'mutual')).data, 'mutual');

  // An encrypted client key with its passphrase, and a ws client with a certificate.
  const connected2 = nextConnection(srv);
  const c2 = await client(url, {
    tls: { ca: ca.cert, cert: bob.cert, key: fs.readFileSync(bob.key), passphrase: 'bobpass' },
  });
  assert.is((await connected2)[0].peerCertificate.subject, 'CN=client-bob');
  assert.is((await transportRoundTrip(c2, 'bob')).data, 'bob');
  const ok = await wsOutcome(url, {
    ca: fs.readFileSync(ca.cert),
    cert: fs.readFileSync(alice.cert),
    key: fs.readFileSync(alice.key),
  });
  assert.is(ok, 'open');
});

test('requestCert: certificates from another CA, or self-signed, are refused', async () => {
  const srv = await listen(mtlsOptions());
  let connections = 0;
  srv.on('connection', () => connections++);
  const url = `wss://localhost:${srv.port}/`;
  for (const [label, cert] of [
    ['another CA', mallory],
    ['self-signed', selfSigned],
  ]) {
    const err = await captureRejection(
      () => lws.connect(url, { tls: { ca: ca.cert, cert: cert.cert, key: cert.key } }),
      5000,
      label,
    );
    assert.is(err.code, 'ERR_TLS_HANDSHAKE', `${label}: ${err.message}`);
  }
  assert.is(connections, 0);
});

test('requestCert with rejectUnauthorized: false: every client gets in, authorized says which verified', async () => {
  const seen = [];
  const srv = await listen({
    ...mtlsOptions({ rejectUnauthorized: false }),
    verify: (req) => {
      seen.push([req.peerCertificate?.subject, req.authorized, req.authorizationError]);
      return true;
    },
  });
  const url = `wss://localhost:${srv.port}/`;
  const conns = [];
  srv.on('connection', (conn) => conns.push(conn));
  await client(url, { tls: { ca: ca.cert } });
  await client(url, { tls: { ca: ca.cert, cert: mallory.cert, key: mallory.key } });
  await client(url, { tls: { ca: ca.cert, cert: alice.cert, key: alice.key } });
  assert.is(seen.length, 3);
  assert.equal(seen[0], [undefined, false, 'no client certificate']);
  assert.equal(seen[1].slice(0, 2), ['CN=client-mallory', false]);
  assert.match(seen[1][2], /issuer|verify|certificate/i);
  assert.equal(seen[2], ['CN=client-alice', true, undefined]);
  assert.equal(
    conns.map((c) => c.authorized),
    [false, false, true],
  );
});

test('a server without requestCert sees no client certificate, even when one is offered', async () => {
  const srv = await listen({ tls: { cert: server.cert, key: server.key } });
  const connected = nextConnection(srv);
  await client(`wss://localhost:${srv.port}/`, {
    tls: { ca: ca.cert, cert: alice.cert, key: alice.key },
  });
  const [conn] = await connected;
  assert.is(conn.peerCertificate, undefined);
  assert.is(conn.authorized, false);
});

test('bad client certificate options fail connect() clearly', async () => {
  const srv = await listen({ tls: { cert: server.cert, key: server.key } });
  const url = `wss://localhost:${srv.port}/`;
  for (const [label, t, code] of [
    ['cert without key', { cert: alice.cert }, 'ERR_INVALID_ARG_VALUE'],
    ['a key that is not a key', { cert: alice.cert, key: alice.cert }, 'ERR_TLS_CERT'],
    ['wrong passphrase', { cert: bob.cert, key: bob.key, passphrase: 'nope' }, 'ERR_TLS_CERT'],
    ['key of another certificate', { cert: alice.cert, key: mallory.key }, 'ERR_TLS_CERT'],
    ['missing file', { cert: path.join(dir, 'nope.crt'), key: alice.key }, 'ERR_TLS_CERT'],
  ]) {
    const err = await captureRejection(
      () => lws.connect(url, { tls: { ca: ca.cert, ...t } }),
      5000,
      label,
    );
    assert.is(err.code, code, `${label}: ${err.code} ${err.message}`);
  }
});

// ---------------------------------------------------------------------------
// SNI
// ---------------------------------------------------------------------------

const sniTls = (extra = {}) => ({
  cert: certDefault.cert,
  key: certDefault.key,
  sni: {
    'a.example': { cert: certA.cert, key: certA.key },
    'B.Example': { cert: fs.readFileSync(certB.cert), key: fs.readFileSync(certB.key) },
    '*.wild.example': { cert: certWild.cert, key: certWild.key },
  },
  ...extra,
});

test('SNI: each name gets its certificate on one port; the client servername picks it', async () => {
  const srv = await listen({ tls: sniTls() });
  attachEcho(srv);
  assert.is(await servedName(srv.port, 'a.example'), 'a.example');
  assert.is(await servedName(srv.port, 'b.example'), 'b.example', 'names match without case');
  assert.is(await servedName(srv.port, 'x.wild.example'), 'wild.example');
  assert.is(await servedName(srv.port, 'c.example'), 'default.example');
  assert.is(await servedName(srv.port, 'deep.x.wild.example'), 'default.example');

  const url = `wss://${HOST}:${srv.port}/`;
  for (const name of ['a.example', 'b.example', 'x.wild.example', 'default.example']) {
    const c = await client(url, { tls: { ca: ca.cert, servername: name } });
    assert.is((await transportRoundTrip(c, name)).data, name);
  }
  const ok = await wsOutcome(url, { ca: fs.readFileSync(ca.cert), servername: 'b.example' });
  assert.is(ok, 'open', 'ws client with servername b.example');
});

test("SNI: a name without its own certificate fails the client's host name check", async () => {
  const srv = await listen({ tls: sniTls() });
  const url = `wss://${HOST}:${srv.port}/`;
  const err = await captureRejection(
    () => lws.connect(url, { tls: { ca: ca.cert, servername: 'c.example' } }),
    5000,
    'servername with no certificate',
  );
  assert.is(err.code, 'ERR_TLS_CERT_VERIFY', err.message);
  assert.match(err.message, /hostname|mismatch/i);
  // Without servername, the host of the URL (an IP here) is what is checked.
  const noName = await captureRejection(
    () => lws.connect(url, { tls: { ca: ca.cert } }),
    5000,
    'IP host against the default certificate',
  );
  assert.is(noName.code, 'ERR_TLS_CERT_VERIFY', noName.message);
});

test('SNI with requestCert: client certificates are required whatever the name', async () => {
  const srv = await listen({ tls: sniTls({ ca: ca.cert, requestCert: true }) });
  const url = `wss://${HOST}:${srv.port}/`;
  const err = await captureRejection(
    () => lws.connect(url, { tls: { ca: ca.cert, servername: 'a.example' } }),
    5000,
    'no client certificate under a.example',
  );
  assert.is(err.code, 'ERR_TLS_HANDSHAKE', err.message);
  const connected = nextConnection(srv);
  await client(url, {
    tls: { ca: ca.cert, servername: 'a.example', cert: alice.cert, key: alice.key },
  });
  const [conn] = await connected;
  assert.is(conn.peerCertificate.subject, 'CN=client-alice');
  assert.ok(conn.authorized);
});

test('bad SNI options fail listen() clearly', async () => {
  for (const [label, sni, code] of [
    [
      'a name with a space',
      { 'a b': { cert: certA.cert, key: certA.key } },
      'ERR_INVALID_ARG_VALUE',
    ],
    [
      'a key of another certificate',
      { 'a.example': { cert: certA.cert, key: certB.key } },
      'ERR_TLS_CERT',
    ],
    ['no key', { 'a.example': { cert: certA.cert } }, 'ERR_INVALID_ARG_TYPE'],
    ['not an object', { 'a.example': 'x' }, 'ERR_INVALID_ARG_TYPE'],
  ]) {
    const err = await captureRejection(
      () => lws.listen({ host: HOST, tls: sniTls({ sni }) }),
      5000,
      label,
    );
    assert.is(err.code, code, `${label}: ${err.code} ${err.message}`);
  }
});

test('a worker torn down with an SNI + requestCert server and a client still open ends cleanly', async () => {
  // worker.terminate() runs the environment's teardown (unlike process.exit()): the native
  // context goes with every listener, connection and SSL_CTX still open. (lws frees the vhost's
  // SSL_CTX before the listener's own TLS state goes, which therefore holds a reference.)
  const tls = {
    cert: certDefault.cert,
    key: certDefault.key,
    ca: ca.cert,
    requestCert: true,
    sni: { 'a.example': certA, 'b.example': certB },
  };
  const clientTls = { ca: ca.cert, servername: 'a.example', cert: alice.cert, key: alice.key };
  const workerCode = `
const { parentPort } = require('node:worker_threads');
import(${JSON.stringify(DIST_URL)}).then(async (lws) => {
  const server = await lws.listen({ host: '127.0.0.1', port: 0, tls: ${JSON.stringify(tls)} });
  server.on('connection', (c) => c.on('message', (d) => c.send(d)));
  const client = await lws.connect('wss://127.0.0.1:' + server.port + '/', { tls: ${JSON.stringify(clientTls)} });
  client.once('message', () => parentPort.postMessage('ready'));
  client.send('x');
});`;
  const child = spawnNode([
    '-e',
    `
const { Worker } = require('node:worker_threads');
const w = new Worker(${JSON.stringify(workerCode)}, { eval: true });
w.on('error', (e) => { console.error('worker error', e); process.exitCode = 2; });
w.once('message', async () => { await w.terminate(); console.log('terminated'); });
`,
  ]);
  cleanups.push(() => child.stop());
  await child.line((l) => l === 'terminated', 15000, 'worker terminated');
  const ex = await withTimeout(child.exited, 10000, 'child exit');
  assert.is(ex.code, 0, `exit code ${ex.code}, signal ${ex.signal}, stderr: ${child.stderrText}`);
  assert.is(child.stderrText.trim(), '', 'nothing on stderr');
});

test.after(exitWatchdog);
test.run();
