// Out of file descriptors on accept() (EMFILE): clients beyond the limit hear at once.
//
// A server runs in a child process whose descriptor limit is lowered (bash `ulimit -n`). The test
// opens WebSocket clients until the server is out of descriptors, then:
//   - every client beyond the limit is answered 503 (and closed) at once: none waits in the
//     listen queue for its own timeout;
//   - the connections already open keep echoing;
//   - the server reports the burst once: one 'error' event with code 'EMFILE', syscall 'accept',
//     and a warning line to its logger;
//   - when some clients close, new clients are accepted again (and the logger hears so).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DIST_URL } from './support/paths.mjs';
import { spawnProcess } from './support/proc.mjs';
import { cleanupsAfterEach, exitWatchdog } from './support/suite.mjs';
import { withTimeout } from './support/wait.mjs';
import { echoRoundTrip, WebSocket } from './support/ws-client.mjs';

const LIMIT = 64;
const HOST = '127.0.0.1';
const cleanups = cleanupsAfterEach(test);

const SERVER = `
  const fs = await import('node:fs');
  const lws = await import(${JSON.stringify(DIST_URL)});
  const out = (o) => console.log(JSON.stringify(o));
  const server = await lws.listen({
    host: '127.0.0.1',
    port: 0,
    logger: (level, msg) => out({ log: level, msg }),
  });
  server.on('error', (e) => out({ error: { code: e.code, errno: e.errno, syscall: e.syscall, message: e.message } }));
  server.on('connection', (c) => {
    c.on('message', (d, b) => c.send(d, b));
    c.on('close', () => out({ closed: true }));
  });
  // readdir holds one descriptor of its own while it lists.
  out({ port: server.port, fds: fs.readdirSync('/proc/self/fd').length - 1 });
  // Stdin closing ends the child: the server closes and nothing keeps the process alive.
  process.stdin.on('end', () => server.close());
  process.stdin.resume();
`;

/** Connects; resolves { ws } once open, or { status, error } when refused or closed first. */
function attempt(url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on('open', () => resolve({ ws }));
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode });
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => resolve({ error: err.code ?? err.message }));
    ws.on('close', () => resolve({ error: 'closed' }));
  });
}

test(`ulimit -n ${LIMIT}: clients beyond it get 503 at once; open ones keep working; accepting resumes`, async () => {
  const child = spawnProcess(
    'bash',
    ['-c', `ulimit -n ${LIMIT} && exec "$0" --input-type=module -e "$1"`, process.execPath, SERVER],
    { stdin: 'pipe' },
  );
  cleanups.push(async () => {
    child.stdin.end();
    await child.stop();
  });
  const info = JSON.parse(await child.line((l) => l.includes('"port"'), 10000, 'server port'));
  const url = `ws://${HOST}:${info.port}`;
  const headroom = LIMIT - info.fds;
  assert.ok(headroom > 5 && headroom < LIMIT, `server has ${info.fds} descriptors open at start`);

  // Fill the server up: every client until the first refusal is accepted.
  const open = [];
  let refused = null;
  for (let i = 0; i < headroom + 5 && !refused; i++) {
    const r = await withTimeout(attempt(url), 3000, `client ${i + 1}: open or refused at once`);
    if (r.ws) open.push(r.ws);
    else refused = r;
  }
  cleanups.push(() => {
    for (const ws of open) ws.terminate();
  });
  assert.ok(refused, `no client was refused after ${open.length} (headroom ${headroom})`);
  assert.is(refused.status, 503, `the first client beyond the limit: ${JSON.stringify(refused)}`);
  // At most a few descriptors besides the sockets (the reserve, lws/Node housekeeping).
  assert.ok(open.length >= headroom - 3, `only ${open.length} accepted of ${headroom} free`);

  // More clients beyond the limit: each one is answered at once, none hangs in the queue.
  const more = await withTimeout(
    Promise.all(Array.from({ length: 5 }, () => attempt(url))),
    3000,
    'five more clients refused at once',
  );
  for (const r of more) assert.is(r.status, 503, JSON.stringify(r));

  // The open connections are served throughout.
  assert.is((await echoRoundTrip(open[0], 'still here')).data, 'still here');
  assert.is((await echoRoundTrip(open.at(-1), 'me too')).data, 'me too');

  // One 'error' event for the whole burst, and a warning to the logger.
  const err = JSON.parse(await child.line((l) => l.includes('"error"'), 5000, "'error' event"));
  assert.equal(
    { code: err.error.code, errno: err.error.errno, syscall: err.error.syscall },
    { code: 'EMFILE', errno: -24, syscall: 'accept' },
  );
  await child.line(
    (l) => l.includes('"log"') && l.includes('EMFILE'),
    5000,
    'logger warning for EMFILE',
  );

  // Free three descriptors: once the server has closed those sockets, new clients get in.
  for (const ws of open.splice(0, 3)) ws.close();
  for (let i = 0; i < 3; i++) await child.line((l) => l.includes('"closed"'), 5000, 'closes');
  const again = [];
  for (let i = 0; i < 2; i++) {
    const r = await withTimeout(attempt(url), 3000, 'a new client after others closed');
    assert.ok(r.ws, `refused after descriptors were freed: ${JSON.stringify(r)}`);
    again.push(r.ws);
    open.push(r.ws);
  }
  assert.is((await echoRoundTrip(again[1], 'back')).data, 'back');
  await child.line(
    (l) => l.includes('"log"') && l.includes('accepting; '),
    5000,
    'logger line: accepting again',
  );
  assert.not.ok(
    child.stdoutText.split('\n').filter((l) => l.includes('"error"')).length > 1,
    `more than one 'error' event in one burst:\n${child.stdoutText}`,
  );

  for (const ws of open.splice(0)) ws.close();
  child.stdin.end();
  const exit = await withTimeout(child.exited, 10000, 'server child exit');
  assert.is(exit.code, 0, child.stderrText);
});

exitWatchdog(10000);
test.run();
