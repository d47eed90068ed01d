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

const RSA_KEY = ['-newkey', 'rsa:2048'];
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];
/** openssl's arguments for a new key: encrypted with `pass` if given, else unencrypted. */
const keyCipher = (pass) => (pass ? ['-passout', `pass:${pass}`] : ['-nodes']);

/**
 * `openssl req` with a new key (`keyArgs`, encrypted with `pass` if given) at `key` for `cn`:
 * a signing request at `out`, or with `selfSigned` (`-x509` and its options) a certificate.
 */
function newKey({ key, out, cn, keyArgs, pass, selfSigned = [] }) {
  const subject = ['-subj', `/CN=${cn}`, '-keyout', key, '-out', out];
  openssl(['req', ...selfSigned, ...keyArgs, ...keyCipher(pass), ...subject]);
}

/**
 * A self-signed certificate for `cn` at `cert` with a new key (`keyArgs`, `pass`) at `key`,
 * valid for two days, with each of `extensions` added (`-addext`).
 */
function selfSign({ key, cert, cn, keyArgs, pass, extensions = [] }) {
  const x509 = ['-x509', '-days', '2', ...extensions.flatMap((e) => ['-addext', e])];
  newKey({ key, out: cert, cn, keyArgs, pass, selfSigned: x509 });
}

/**
 * A new key (`keyArgs`, `pass`) and a certificate for `cn` signed by `ca` (`{ cert, key }`) with
 * the extensions of `section` in `extfile`, as `name`.key / .csr / .crt in `dir`. Returns
 * `{ cert, key }` paths.
 */
function issue(dir, name, { cn, keyArgs, pass, ca, extfile, section }) {
  const f = (suffix) => path.join(dir, `${name}.${suffix}`);
  newKey({ key: f('key'), out: f('csr'), cn, keyArgs, pass });
  const signer = ['-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2'];
  const exts = ['-extfile', extfile, '-extensions', section];
  openssl(['x509', '-req', '-in', f('csr'), ...signer, ...exts, '-out', f('crt')]);
  return { cert: f('crt'), key: f('key') };
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
  const keyArgs = ec ? EC_KEY : RSA_KEY;
  selfSign({ key, cert, cn, keyArgs, pass, extensions: [`subjectAltName=${san}`] });
  return { key, cert };
}

/**
 * root CA -> intermediate CA -> leaf for localhost / 127.0.0.1, in `dir`. Returns the paths
 * `{ root, inter, leaf, key }` (key: the leaf's).
 */
export function makeChain(dir) {
  const f = (n) => path.join(dir, n);
  const extfile = f('ext.cnf');
  fs.writeFileSync(
    extfile,
    '[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n' +
      '[leaf]\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n',
  );
  const root = { cert: f('root.crt'), key: f('root.key') };
  selfSign({ ...root, cn: 'node-lws test root', keyArgs: RSA_KEY });
  const inter = issue(dir, 'inter', {
    cn: 'node-lws test intermediate',
    keyArgs: RSA_KEY,
    ca: root,
    extfile,
    section: 'ca',
  });
  const leaf = issue(dir, 'leaf', {
    cn: 'localhost',
    keyArgs: RSA_KEY,
    ca: inter,
    extfile,
    section: 'leaf',
  });
  return { root: root.cert, inter: inter.cert, leaf: leaf.cert, key: leaf.key };
}

/** A self-signed CA (EC P-256) in `dir`. Returns `{ cert, key }` paths. */
export function makeCa(dir, name, { cn = `node-lws test CA ${name}` } = {}) {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.crt`);
  const extensions = ['basicConstraints=critical,CA:TRUE', 'keyUsage=keyCertSign,cRLSign'];
  selfSign({ key, cert, cn, keyArgs: EC_KEY, extensions });
  return { cert, key };
}

/**
 * A certificate for `cn` (EC P-256 key) issued by `ca` (from makeCa): a server certificate
 * for the names in `san` (`usage: 'serverAuth'`) or a client certificate (`'clientAuth'`);
 * the key encrypted with `pass` if given. Returns `{ cert, key }` paths.
 */
export function issueCert(dir, name, ca, { cn = name, san, usage = 'serverAuth', pass } = {}) {
  const extfile = path.join(dir, `${name}.ext`);
  fs.writeFileSync(
    extfile,
    `[leaf]\nbasicConstraints=CA:FALSE\nextendedKeyUsage=${usage}\n${san ? `subjectAltName=${san}\n` : ''}`,
  );
  return issue(dir, name, { cn, keyArgs: EC_KEY, pass, ca, extfile, section: 'leaf' });
}

/**
 * The certificates of the SNI tests, issued by `ca` (from makeCa) in `dir`: a.example, b.example
 * and default.example (the default one), each for its own DNS name. Returns
 * `{ certA, certB, certDefault }`, each `{ cert, key }` paths.
 */
export function issueSniCerts(dir, ca) {
  const issue = (name) =>
    issueCert(dir, name, ca, { cn: `${name}.example`, san: `DNS:${name}.example` });
  return { certA: issue('a'), certB: issue('b'), certDefault: issue('default') };
}
