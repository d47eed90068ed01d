// The certificate of the bench's wss:// servers: self-signed (RSA 2048, CN localhost), made
// once with the openssl command into bench/build/tls/. The load client does not verify it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BUILD } from './config.mjs';

const DIR = path.join(BUILD, 'tls');

/** ['--tls-cert', PATH, '--tls-key', PATH] for a server, made on first use. */
export function tlsArgs() {
  const cert = path.join(DIR, 'server.crt');
  const key = path.join(DIR, 'server.key');
  if (!fs.existsSync(cert) || !fs.existsSync(key)) {
    fs.mkdirSync(DIR, { recursive: true });
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '3650',
        '-subj',
        '/CN=localhost',
      ],
      { stdio: 'ignore' },
    );
  }
  return ['--tls-cert', cert, '--tls-key', key];
}
