// Node's own modules that only some features need, loaded on first use: importing node-lws and
// running a plain server loads neither TLS nor crypto, HTTP, DNS or worker_threads (~2.6 MB of
// RSS and ~9 ms of import in a process that uses none of them). Main thread.
import type * as Crypto from 'node:crypto';
import type * as Dns from 'node:dns/promises';
import type * as Http from 'node:http';
import type * as Tls from 'node:tls';
import type * as WorkerThreads from 'node:worker_threads';

let crypto: typeof Crypto | undefined;
let dns: typeof Dns | undefined;
let http: typeof Http | undefined;
let tls: typeof Tls | undefined;
let workerThreads: typeof WorkerThreads | undefined;

export const nodeCrypto = (): typeof Crypto => (crypto ??= require('node:crypto'));
export const nodeDns = (): typeof Dns => (dns ??= require('node:dns/promises'));
export const nodeHttp = (): typeof Http => (http ??= require('node:http'));
export const nodeTls = (): typeof Tls => (tls ??= require('node:tls'));
export const nodeWorkerThreads = (): typeof WorkerThreads =>
  (workerThreads ??= require('node:worker_threads'));

let rootPem: string | undefined;
/** Node's own root certificates as one PEM: the default trust for wss:// clients and for client
 * certificates (requestCert), as for https. Joined once. */
export const nodeRootCertificates = (): string =>
  (rootPem ??= nodeTls().rootCertificates.join('\n'));
