'use strict';
// A helper process of node-lws-stress (the flood receiver, the idle-connection holders): forked
// with an IPC channel, its stderr lines passed on, its messages awaited by type.

const { fork } = require('node:child_process');

/**
 * Passes each line `child` writes on stderr to `onLine` once it is complete, and keeps the last
 * 2,000 characters in `holder.stderrTail` (for a failure report).
 */
function followStderr(child, holder, onLine) {
  child.stderr.setEncoding('utf8');
  let partial = '';
  child.stderr.on('data', (d) => {
    holder.stderrTail = (holder.stderrTail + d).slice(-2000);
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop();
    for (const line of lines) onLine(line);
  });
}

/**
 * Forks `file`. Returns `{ child, next(types, ms), send(m), exited, exit, stderrTail, last }`:
 * `next` resolves with the next message whose type is in `types` (kept if it came earlier), or
 * null after `ms` or when the process is gone; `last[type]` is the latest message of a type in
 * `latestOnly` (progress reports), never queued.
 */
function forkHelper(file, { onNote = () => {}, label = 'helper', latestOnly = [] } = {}) {
  const child = fork(file, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  const h = { child, messages: [], waiters: [], stderrTail: '', exit: null, last: {} };
  h.exited = new Promise((resolve) => {
    const done = (exit) => {
      if (h.exit) return;
      h.exit = exit;
      for (const w of h.waiters.splice(0)) w.resolve(null);
      resolve(exit);
    };
    child.once('exit', (code, signal) => done({ code, signal }));
    child.once('error', (err) => done({ code: null, signal: null, error: err }));
  });
  followStderr(child, h, (line) => onNote(`[${label} ${child.pid}] ${line}`));
  child.on('message', (m) => {
    if (latestOnly.includes(m?.type)) {
      h.last[m.type] = m;
      return;
    }
    const w = h.waiters.find((x) => x.types.includes(m?.type));
    if (w) {
      h.waiters.splice(h.waiters.indexOf(w), 1);
      w.resolve(m);
    } else h.messages.push(m);
  });
  h.next = (types, ms) => {
    const i = h.messages.findIndex((m) => types.includes(m?.type));
    if (i >= 0) return Promise.resolve(h.messages.splice(i, 1)[0]);
    if (h.exit) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        h.waiters.splice(h.waiters.indexOf(w), 1);
        resolve(null);
      }, ms);
      const w = {
        types,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      h.waiters.push(w);
    });
  };
  h.send = (m) => {
    if (child.connected) child.send(m, () => {});
  };
  /** Waits up to `ms` for the exit; kills it (SIGKILL) after that. Resolves with the exit. */
  h.waitExit = async (ms) => {
    let timer;
    const ex = await Promise.race([
      h.exited,
      new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), ms);
      }),
    ]);
    clearTimeout(timer);
    if (ex) return ex;
    child.kill('SIGKILL');
    const killed = await h.exited;
    return { ...killed, killed: true };
  };
  return h;
}

module.exports = { followStderr, forkHelper };
