// Child processes of the bench: building the C tools, pinning to a core, reading a child's
// lines, /proc figures, and running the load client to completion.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { BUILD, CLIENT_CORE, ECHO_RAW, HERE, LOADGEN, log, PIN, ROOT } from './config.mjs';

/** Builds bench/build/{loadgen,echo-raw} when missing or older than their source. */
export function build() {
  fs.mkdirSync(BUILD, { recursive: true });
  for (const [src, out, libs] of [
    ['loadgen.c', LOADGEN, ['-lssl', '-lcrypto']], // --tls: the system's OpenSSL (libssl-dev)
    ['echo-raw.c', ECHO_RAW, []],
  ]) {
    const srcPath = path.join(HERE, src);
    if (fs.existsSync(out) && fs.statSync(out).mtimeMs >= fs.statSync(srcPath).mtimeMs) continue;
    log(`bench: cc -O2 ${path.relative(ROOT, srcPath)} -> ${path.relative(ROOT, out)}`);
    execFileSync('cc', ['-O2', '-Wall', '-o', out, srcPath, ...libs], { stdio: 'inherit' });
  }
  if (!fs.existsSync(path.join(ROOT, 'dist/index.mjs')))
    throw new Error(
      'dist/index.mjs missing: run `npm run build` (or `npm run bench`, which bootstraps)',
    );
}

export function cmdOut(cmd, args) {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return '?';
  }
}

/** Runs argv under `ulimit -n <hard>` and, when pinning, `taskset -c core`. */
export function pinned(core, args, { env, stdio = ['pipe', 'pipe', 'pipe'] } = {}) {
  const script = `ulimit -n "$(ulimit -Hn)"; exec ${PIN ? `taskset -c ${core} ` : ''}"$@"`;
  return spawn('bash', ['-c', script, 'bash', ...args], {
    cwd: ROOT,
    env: env ?? process.env,
    stdio,
  });
}

/** Line reader over a child's stdout. */
export function lines(child) {
  const queue = [];
  const waiters = [];
  let buf = '';
  let ended = false;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const w = waiters.shift();
      if (w) w.resolve(line);
      else queue.push(line);
      nl = buf.indexOf('\n');
    }
  });
  child.stdout.on('end', () => {
    ended = true;
    for (const w of waiters.splice(0)) w.resolve(null);
  });
  return {
    next(timeoutMs = 15_000, what = 'a line') {
      if (queue.length) return Promise.resolve(queue.shift());
      if (ended) return Promise.resolve(null);
      return new Promise((resolve, reject) => {
        const w = {
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
  };
}

export function collectStderr(child) {
  let s = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    if (s.length < 20_000) s += d;
  });
  return () => s.trim();
}

/** Ends a child: closes its standard input, then SIGKILL after `graceMs`. */
export async function endChild(child, graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.stdin?.end();
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

/** VmRSS and VmHWM (peak) of a process, in kB (NaN when it is gone). */
export function procStatus(pid) {
  let txt = '';
  try {
    txt = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {}
  const kb = (k) =>
    Number((txt.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm')) ?? [])[1] ?? Number.NaN);
  // RssAnon: memory the process allocated; RssFile: pages of mapped files (code) it touched.
  return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM'), anonKb: kb('RssAnon'), fileKb: kb('RssFile') };
}

/** utime + stime of a process, in clock ticks (0 when it is gone). */
export function procTicks(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/**
 * Starts bench/build/loadgen on the client core; `pids` are the server processes whose CPU it
 * reads at the edges of its window.
 */
export function startLoadgen(args, pids = []) {
  const child = pinned(CLIENT_CORE, [
    LOADGEN,
    ...args,
    ...(pids.length ? ['--pids', pids.join(',')] : []),
  ]);
  return { child, rd: lines(child), err: collectStderr(child), exited: once(child, 'exit') };
}

/** Parses a loadgen result line; throws its error. */
export function loadgenResult(line, err, what = 'loadgen') {
  let r;
  try {
    r = JSON.parse(line);
  } catch {
    throw new Error(`${what}: ${err() || line || 'no output'}`);
  }
  if (!r.ok) throw new Error(`${what}: ${r.error} (${r.opened} connections open, ${r.msgs} msgs)`);
  return r;
}

/**
 * Reads the load client's lines up to its next result line (null when its output ended); the
 * lines {"event":"window-open"} and {"event":"window-close"} go to `onEvent`.
 */
export async function nextResult(lg, timeoutMs, what, onEvent) {
  for (;;) {
    const l = await lg.rd.next(timeoutMs, what);
    if (l === null) return null;
    if (l.startsWith('{"event"')) onEvent?.(JSON.parse(l).event);
    else if (l.trim()) return l;
  }
}

/**
 * Runs the load client to completion (at most timeoutMs) and returns its result line; its
 * window events go to `onEvent` as they come.
 */
export async function runLoadgen(args, pids, timeoutMs, onEvent) {
  const lg = startLoadgen(args, pids);
  lg.child.stdin.end();
  const t = setTimeout(() => lg.child.kill('SIGKILL'), timeoutMs);
  const line = await nextResult(lg, timeoutMs + 5000, 'the load client to finish', onEvent);
  const [code, signal] = await lg.exited;
  clearTimeout(t);
  if (!line)
    throw new Error(
      `loadgen ${signal ? `killed (${signal}) after ${timeoutMs} ms` : `exit ${code}`}: ${lg.err()}`,
    );
  return loadgenResult(line, lg.err);
}
