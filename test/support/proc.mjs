// This process and the processes a test starts: open fds and threads (for leak checks), and
// child processes whose output a test reads line by line.
//
// Layer 1 of test/support/: imports only wait.mjs.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
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
