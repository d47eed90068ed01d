// SNI as an independent TLS client sees it: `openssl s_client -servername NAME` against a
// node-lws server with `tls.sni` prints the subject of the certificate the server chose: each
// of two names gets its own, an unknown name the default one. Also the client certificate a
// server with requestCert asks for, as s_client reports the request (the CA names it accepts).

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { issueSniCerts, makeCa } from '../support/certs.mjs';
import { listenFor } from '../support/lws.mjs';
import { cleanupsAfterEach, exitWatchdog } from '../support/suite.mjs';
import { withTimeout } from '../support/wait.mjs';

const HOST = '127.0.0.1';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-sni-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

const ca = makeCa(dir, 'ca');
const { certA, certB, certDefault } = issueSniCerts(dir, ca);

const cleanups = cleanupsAfterEach(test);
const listen = listenFor(cleanups, { host: HOST, port: 0 });

/** `openssl s_client` against the server; resolves with its output (stdout + stderr). */
function sClient(port, args) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const child = execFile(
        'openssl',
        ['s_client', '-connect', `${HOST}:${port}`, '-CAfile', ca.cert, ...args],
        { timeout: 10000 },
        (err, stdout, stderr) => {
          if (err && err.code === 'ENOENT') {
            reject(
              new Error(
                "openssl not found: install Debian's openssl (apt-get install openssl, or run bash scripts/bootstrap.sh)",
              ),
            );
            return;
          }
          resolve(`${stdout}\n${stderr}`);
        },
      );
      child.stdin.end(); // s_client exits once stdin ends after the handshake
    }),
    15000,
    `openssl s_client ${args.join(' ')}`,
  );
}

/** The subject CN s_client printed for the server's certificate. */
function subjectCn(output) {
  const m = /^subject=.*?CN\s*=\s*([^,\n/]+)/m.exec(output);
  return m ? m[1].trim() : undefined;
}

test('openssl s_client -servername: two names, two certificates, one port; others get the default', async () => {
  const server = await listen({
    tls: {
      cert: certDefault.cert,
      key: certDefault.key,
      sni: {
        'a.example': { cert: certA.cert, key: certA.key },
        'b.example': { cert: certB.cert, key: certB.key },
      },
    },
  });
  for (const [name, expected] of [
    ['a.example', 'a.example'],
    ['b.example', 'b.example'],
    ['c.example', 'default.example'],
  ]) {
    const out = await sClient(server.port, ['-servername', name, '-verify_hostname', name]);
    assert.is(subjectCn(out), expected, `certificate for ${name}:\n${out}`);
    // The chain verifies against the CA; the host name check only for the names it is for.
    assert.match(out, /Verify return code: (0 \(ok\)|62 \(hostname mismatch\))/);
    if (expected === name) assert.match(out, /Verify return code: 0 \(ok\)/, `${name}:\n${out}`);
    else assert.match(out, /hostname mismatch/, `${name}:\n${out}`);
  }
  const out = await sClient(server.port, ['-noservername']);
  assert.is(subjectCn(out), 'default.example', `no SNI at all:\n${out}`);
});

test('openssl s_client sees a server with requestCert ask for a certificate from its CA', async () => {
  const server = await listen({
    tls: { cert: certA.cert, key: certA.key, ca: ca.cert, requestCert: true },
  });
  const out = await sClient(server.port, ['-servername', 'a.example', '-tls1_2']);
  assert.match(
    out,
    /Acceptable client certificate CA names\s*\n\s*CN\s*=\s*node-lws test CA ca/,
    out,
  );
});

test.after(exitWatchdog);
test.run();
