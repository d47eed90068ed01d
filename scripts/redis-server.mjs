// Debian's redis-server as the tests (test/support/redis.mjs) and the Redis benchmark
// (bench/lib/redisfanout.mjs) start it: in the foreground on a port below 32768 (outside the
// kernel's ephemeral range), bound to 127.0.0.1, with no persistence, in a folder of its own.

import fs from 'node:fs';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** Throws, naming the line that installs it, when redis-server is not installed. */
export function requireRedisServer() {
  if (!fs.existsSync(REDIS_SERVER))
    throw new Error(
      `${REDIS_SERVER} not found: install Debian's redis-server (apt-get install redis-server, or run bash scripts/bootstrap.sh)`,
    );
}

/** A port below 32768 chosen at random (another one is tried if something holds it). */
export function randomRedisPort() {
  return 20000 + Math.floor(Math.random() * 12000);
}

/** redis-server's arguments: `port` on 127.0.0.1, no persistence, `dir` its folder, log to stdout. */
export function redisServerArgs(port, dir) {
  return [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--daemonize',
    'no',
    '--logfile',
    '',
  ];
}
