// This process and the processes a test starts: open fds and threads (for leak checks), and
// child processes whose output a test reads line by line.
//
// Layer 1 of test/support/: imports only wait.mjs.

import { fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TIMEOUT, withTimeout } from './wait.mjs';

/** Number of open file descriptors of this process. */
export function openFds() {
  return fs.readdirSync('/proc/self/fd').length;
}
/** List of open file descriptors with their targets (for failure messages). */
export function describeFds() {
  const out = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target = '?';
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      /* raced */
    }
    out.push(`${fd}->${target}`);
  }
  return out.join(' ');
}
/** Number of threads of this process (from /proc/self/status). */
export function threadCount() {
  const m = /^Threads:\s+(\d+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no Threads: line in /proc/self/status');
  return Number(m[1]);
}

/**
 * Spawn `command` with `args`; returns the child with helpers:
 *  - `child.stdoutText` / `child.stderrText`: accumulated output;
 *  - `child.exited`: promise of `{ code, signal, at, error? }` once the process exited and its
 *    output ended (`at`: performance.now() at its 'exit' event; `error`: it could not start);
 *  - `child.line(predicate?, ms?, label?)`: promise of the next stdout line matching
 *    `predicate` (a line a waiter took is not returned again); rejects if the child exits first;
 *  - `child.stop(ms?)`: SIGKILL unless it has exited, and wait for `exited`.
 */
export function spawnProcess(command, args, { stdin = 'ignore', env, cwd } = {}) {
  const child = spawn(command, args, {
    stdio: [stdin, 'pipe', 'pipe'],
    env: env ?? process.env,
    cwd,
  });
  child.stdoutText = '';
  child.stderrText = '';
  const lineWaiters = [];
  let pending = '';
  const lines = [];
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    child.stdoutText += chunk;
    pending += chunk;
    for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      const w = lineWaiters.find((x) => x.predicate(line));
      if (w) {
        lineWaiters.splice(lineWaiters.indexOf(w), 1);
        w.resolve(line);
      } else lines.push(line);
    }
  });
  child.stderr.on('data', (chunk) => {
    child.stderrText += chunk;
  });
  child.spawnError = null;
  let exitAt = 0;
  child.once('exit', () => {
    exitAt = performance.now();
  });
  child.exited = new Promise((resolve) => {
    child.once('close', (code, signal) =>
      resolve({ code, signal, at: exitAt || performance.now() }),
    );
    child.once('error', (err) => {
      child.spawnError = err;
      resolve({ code: null, signal: null, error: err, at: 0 });
    });
  });
  child.line = (predicate = () => true, ms = DEFAULT_TIMEOUT, label = 'child stdout line') => {
    const found = lines.find(predicate);
    if (found !== undefined) {
      lines.splice(lines.indexOf(found), 1);
      return Promise.resolve(found);
    }
    const p = new Promise((resolve, reject) => {
      const w = { predicate, resolve };
      lineWaiters.push(w);
      child.exited.then(({ code, signal, error }) => {
        const idx = lineWaiters.indexOf(w);
        if (idx >= 0) {
          lineWaiters.splice(idx, 1);
          reject(
            new Error(
              `${command} exited (code ${code}, signal ${signal}${error ? `, ${error.message}` : ''}) before ${label}; stdout: ${child.stdoutText.trim()}; stderr: ${child.stderrText.trim()}`,
            ),
          );
        }
      });
    });
    return withTimeout(p, ms, `${label}; ${command} stderr so far: ${child.stderrText.trim()}`);
  };
  child.stop = async (ms = DEFAULT_TIMEOUT) => {
    if (child.exitCode === null && child.signalCode === null && !child.spawnError)
      child.kill('SIGKILL');
    return withTimeout(child.exited, ms, `${command} exit after SIGKILL`);
  };
  return child;
}

/** spawnProcess() for this node binary. */
export function spawnNode(args, options) {
  return spawnProcess(process.execPath, args, options);
}

/**
 * A node-lws server in a process of its own (test/fixtures/server-process.mjs), listening with
 * `options` (JSON-serialisable listen() options) on 127.0.0.1: for tests whose figure is the
 * server's RSS. `stats()` is { rss, sockets } (bytes, descriptors opened since it listened);
 * `signal(name)` sends it a signal (SIGSTOP / SIGCONT: hold its loop while clients arrive);
 * `stop()` ends it.
 */
export async function startServerProcess(options) {
  const child = fork(
    fileURLToPath(new URL('../fixtures/server-process.mjs', import.meta.url)),
    [JSON.stringify(options)],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  const next = (label) =>
    withTimeout(new Promise((resolve) => child.once('message', resolve)), 10_000, label);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGCONT'); // a stopped process takes SIGTERM only once it runs again
      child.kill();
      await withTimeout(exited, 10_000, 'the server process to exit').catch(() => {});
    }
  };
  try {
    const { port } = await next('the server process to listen');
    return {
      port,
      stats() {
        const reply = next('the server process to report its RSS');
        child.send('stats');
        return reply;
      },
      signal(name) {
        child.kill(name);
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
