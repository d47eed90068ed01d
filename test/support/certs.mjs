// Certificates for the TLS tests, made with Debian's openssl command into a folder the test
// owns: self-signed ones (RSA or EC, optionally with an encrypted key), a root CA ->
// intermediate CA -> leaf chain, and a CA issuing server and client certificates (mutual TLS,
// several names on one port).
//
// Layer 1 of test/support/: imports nothing from the suite.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** Run openssl; a failure says which command failed and that openssl must be installed. */
export function openssl(args) {
  try {
    execFileSync('openssl', args, { stdio: 'pipe' });
  } catch (err) {
    throw new Error(
      `openssl ${args.join(' ')} failed (is Debian's openssl installed? apt-get install openssl): ${err.message}`,
    );
  }
}

/**
 * A self-signed certificate in `dir` for `cn` with subjectAltName `san`: an RSA 2048 key, or an
 * EC P-256 key with `ec`; the key encrypted with `pass` if given. Returns `{ key, cert }` paths.
 */
export function makeCert(
  dir,
  name,
  { cn = 'localhost', san = 'DNS:localhost,IP:127.0.0.1', ec = false, pass } = {},
) {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.crt`);
  const keyArgs = ec
    ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']
    : ['-newkey', 'rsa:2048'];
  const encArgs = pass ? ['-passout', `pass:${pass}`] : ['-nodes'];
  openssl([
    'req',
    '-x509',
    ...keyArgs,
    ...encArgs,
    '-subj',
    `/CN=${cn}`,
    '-days',
    '2',
    '-keyout',
    key,
    '-out',
    cert,
    '-addext',
    `subjectAltName=${san}`,
  ]);
  return { key, cert };
}

/**
 * root CA -> intermediate CA -> leaf for localhost / 127.0.0.1, in `dir`. Returns the paths
 * `{ root, inter, leaf, key }` (key: the leaf's).
 */
export function makeChain(dir) {
  const f = (n) => path.join(dir, n);
  const ext = f('ext.cnf');
  fs.writeFileSync(
    ext,
    '[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n' +
      '[leaf]\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n',
  );
  openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=node-lws test root',
    '-days',
    '2',
    '-keyout',
    f('root.key'),
    '-out',
    f('root.crt'),
  ]);
  // A key and a signing request for `cn`, signed by `ca` with the extensions of `section`.
  const issue = (name, cn, ca, section) => {
    openssl(
      ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`].concat([
        '-keyout',
        f(`${name}.key`),
        '-out',
        f(`${name}.csr`),
      ]),
    );
    openssl([
      'x509',
      '-req',
      '-in',
      f(`${name}.csr`),
      '-CA',
      f(`${ca}.crt`),
      '-CAkey',
      f(`${ca}.key`),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      ext,
      '-extensions',
      section,
      '-out',
      f(`${name}.crt`),
    ]);
  };
  issue('inter', 'node-lws test intermediate', 'root', 'ca');
  issue('leaf', 'localhost', 'inter', 'leaf');
  return { root: f('root.crt'), inter: f('inter.crt'), leaf: f('leaf.crt'), key: f('leaf.key') };
}

/** A self-signed CA (EC P-256) in `dir`. Returns `{ cert, key }` paths. */
export function makeCa(dir, name, { cn = `node-lws test CA ${name}` } = {}) {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.crt`);
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-subj',
    `/CN=${cn}`,
    '-days',
    '2',
    '-keyout',
    key,
    '-out',
    cert,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=keyCertSign,cRLSign',
  ]);
  return { cert, key };
}

/**
 * A certificate for `cn` (EC P-256 key) issued by `ca` (from makeCa): a server certificate
 * for the names in `san` (`usage: 'serverAuth'`) or a client certificate (`'clientAuth'`);
 * the key encrypted with `pass` if given. Returns `{ cert, key }` paths.
 */
export function issueCert(dir, name, ca, { cn = name, san, usage = 'serverAuth', pass } = {}) {
  const f = (n) => path.join(dir, n);
  const ext = f(`${name}.ext`);
  fs.writeFileSync(
    ext,
    `[leaf]\nbasicConstraints=CA:FALSE\nextendedKeyUsage=${usage}\n${san ? `subjectAltName=${san}\n` : ''}`,
  );
  openssl([
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    ...(pass ? ['-passout', `pass:${pass}`] : ['-nodes']),
    '-subj',
    `/CN=${cn}`,
    '-keyout',
    f(`${name}.key`),
    '-out',
    f(`${name}.csr`),
  ]);
  openssl([
    'x509',
    '-req',
    '-in',
    f(`${name}.csr`),
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    ext,
    '-extensions',
    'leaf',
    '-out',
    f(`${name}.crt`),
  ]);
  return { cert: f(`${name}.crt`), key: f(`${name}.key`) };
}
