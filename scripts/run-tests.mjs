#!/usr/bin/env node
// Test runner for node-lws.
//
// Runs every test/**/*.test.mjs file (sorted), each in its own child process, streams its
// output, and gets the file's counts from uvu itself, not from the printed text: the child is
// this script in `--child` mode, which queues the file's suites the way uvu's own CLI does
// (UVU_DEFER), runs them with uvu's exec(), and writes what each suite runner returned
// (ran, passed, skipped, the names of the tests that failed) as JSON to a result file after
// every suite and once more at the end ("done": true).
//
//   passed  = tests that ran and passed
//   failed  = tests that ran and did not pass (a before/after hook that throws fails the suite)
//   skipped = test.skip() calls plus tests left out by .only; never counted as passed
//
// A file that crashes, exits non-zero or times out before its result is complete counts as
// 1 failure on top of what it had finished; so does a non-zero exit or a timeout after a
// complete result that shows no failure.
//
// Usage: node scripts/run-tests.mjs [--fast] [substring ...]
//   --fast       leave out the system tests (test/system/: Chromium, Python, soak, prebuild,
//                package tarball, stress CLI, network fuzz, media-server end to end)
//   substring    only files whose path contains one of them
// Env:   TEST_FILE_TIMEOUT_MS  per-file timeout (default 120000)
//        RUN_TESTS_DIR        the folder to search instead of test/ (folders named fixtures/
//                             are never searched, so test/fixtures/ can hold files that fail)
//
// Prints a per-file table; the last line printed is exactly `N passed, N failed`. Exit code 1
// if anything failed or no test ran.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '..');
// RUN_TESTS_DIR: another folder to take the *.test.mjs files from (the runner's own tests).
const TEST_DIR = path.resolve(ROOT, process.env.RUN_TESTS_DIR || 'test');
/** Files under this folder are system tests; `--fast` leaves them out. */
const SYSTEM_DIR = 'test/system/';
const TIMEOUT_MS = Number.parseInt(process.env.TEST_FILE_TIMEOUT_MS ?? '', 10) || 120_000;
const KILL_GRACE_MS = 5_000;

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching ANSI escape sequences
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;
const stripAnsi = (s) => s.replace(ANSI, '');

// ---------------------------------------------------------------------------
// Child mode: run one test file under uvu and write its result as JSON
// ---------------------------------------------------------------------------

/**
 * The failed tests of one suite, from the error report uvu's suite runner returns (one block
 * per failed test, each starting with the FAIL badge, the suite name if any, and the quoted
 * test name; the next line is the error message). Names are for the summary only: the counts
 * come from the runner's numbers.
 */
export function failuresOf(report) {
  if (typeof report !== 'string') return [];
  const out = [];
  const lines = stripAnsi(report).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*FAIL\s+(?:([^\s"].*?)\s+)?"(.*)"\s*$/.exec(lines[i]);
    if (!m) continue;
    const name = m[1] ? `${m[1].trim()} > ${m[2]}` : m[2];
    out.push({ name, message: (lines[i + 1] ?? '').trim() });
  }
  return out;
}

async function childMain(resultFile, testFile) {
  const result = { file: testFile, suites: [], done: false, error: null };
  const save = () => {
    const tmp = `${resultFile}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(result));
    fs.renameSync(tmp, resultFile);
  };
  save();
  // As uvu's own CLI does (uvu/run): queue the suites instead of running them at once.
  globalThis.UVU_DEFER = 1;
  globalThis.UVU_INDEX = 0;
  const uvu = await import('uvu');
  globalThis.UVU_QUEUE.push([null]);
  try {
    await import(pathToFileURL(path.resolve(ROOT, testFile)).href);
  } catch (err) {
    result.error = `loading failed: ${err?.stack ?? err}`;
    save();
    process.stderr.write(`run-tests: ${testFile}: ${result.error}\n`);
    process.exitCode = 1;
    return;
  }
  // Each queued entry (after the group's name) is one suite's runner; it resolves with
  // [errors || true, passed, skipped, ran].
  for (const group of globalThis.UVU_QUEUE) {
    for (let i = 1; i < group.length; i++) {
      const run = group[i];
      group[i] = async () => {
        const r = await run();
        const [report, passed, skipped, ran] = r;
        result.suites.push({ ran, passed, skipped, failures: failuresOf(report) });
        save();
        return r;
      };
    }
  }
  try {
    await uvu.exec();
  } catch (err) {
    // An after() hook that throws escapes uvu's suite runner.
    result.error = `uvu stopped: ${err?.stack ?? err}`;
    save();
    process.stderr.write(`run-tests: ${testFile}: ${result.error}\n`);
    process.exitCode = 1;
    return;
  }
  result.done = true;
  save();
}

// ---------------------------------------------------------------------------
// Runner mode
// ---------------------------------------------------------------------------

function findTestFiles(dir) {
  if (!fs.existsSync(dir)) return [];
  const out = [];
  const walk = (d) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      if (ent.name === 'node_modules' || ent.name === 'fixtures' || ent.name.startsWith('.'))
        continue;
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) walk(p);
      else if (ent.isFile() && ent.name.endsWith('.test.mjs')) out.push(p);
    }
  };
  walk(dir);
  return out
    .map((p) => path.relative(ROOT, p).split(path.sep).join('/'))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The child's result file, or null when it is missing or unreadable. */
function readResult(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

/** Sum of a result's suites: { ran, passed, failed, skipped, failures }. */
export function summarize(result) {
  const s = { ran: 0, passed: 0, failed: 0, skipped: 0, failures: [] };
  for (const suite of result?.suites ?? []) {
    s.ran += suite.ran;
    s.passed += suite.passed;
    s.failed += Math.max(0, suite.ran - suite.passed);
    s.skipped += suite.skipped;
    s.failures.push(...suite.failures);
  }
  return s;
}

let current = null; // the running child, for SIGINT/SIGTERM clean-up

function killTree(child, signal) {
  try {
    process.kill(-child.pid, signal); // whole process group (child is detached)
  } catch {
    try {
      child.kill(signal);
    } catch {}
  }
}

function runFile(rel, resultFile) {
  return new Promise((resolve) => {
    const started = Date.now();
    const env = { ...process.env };
    if (process.stdout.isTTY && env.FORCE_COLOR === undefined && env.NO_COLOR === undefined) {
      env.FORCE_COLOR = '1';
    }
    const child = spawn(process.execPath, [SELF, '--child', resultFile, rel], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: process.platform !== 'win32',
    });
    current = child;
    let timedOut = false;
    child.stdout.on('data', (b) => process.stdout.write(b));
    child.stderr.on('data', (b) => process.stderr.write(b));
    let killTimer;
    const timer = setTimeout(() => {
      timedOut = true;
      killTree(child, 'SIGTERM');
      killTimer = setTimeout(() => killTree(child, 'SIGKILL'), KILL_GRACE_MS);
    }, TIMEOUT_MS);
    const finish = (code, signal, spawnError) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      current = null;
      // Anything the file left running in its process group goes with it.
      if (!timedOut) killTree(child, 'SIGKILL');
      resolve({
        file: rel,
        code,
        signal,
        spawnError,
        timedOut,
        ms: Date.now() - started,
        result: readResult(resultFile),
      });
    };
    child.on('error', (err) => finish(null, null, err));
    child.on('close', (code, signal) => finish(code, signal, null));
  });
}

export function judge(r) {
  const res = r.result;
  const s = summarize(res);
  const complete = res?.done === true;
  let failed = s.failed;
  const notes = [];
  const exitDesc = r.signal ? `signal ${r.signal}` : `exit code ${r.code}`;
  if (r.spawnError) {
    failed += 1;
    notes.push(`could not start: ${r.spawnError.message}`);
  } else if (r.timedOut) {
    failed += 1;
    notes.push(
      complete
        ? `timed out after ${TIMEOUT_MS} ms although its tests had finished (open handles?)`
        : `timed out after ${TIMEOUT_MS} ms, killed`,
    );
  } else if (!complete) {
    failed += 1;
    const why = res?.error?.split('\n')[0] ?? (res ? 'crashed' : 'no result written');
    notes.push(`${exitDesc} before its tests finished (${why})`);
  } else if (r.code !== 0 && failed === 0) {
    failed += 1;
    notes.push(`${exitDesc} although all its tests passed`);
  }
  if (s.failed > s.failures.length) {
    const n = s.failed - s.failures.length;
    notes.push(`${n} test(s) did not pass and uvu reported no failure for them (a hook threw?)`);
  }
  if (complete && s.ran === 0 && notes.length === 0) notes.push('ran no tests');
  return { passed: s.passed, failed, skipped: s.skipped, failures: s.failures, notes };
}

function pad(s, n, right = false) {
  s = String(s);
  return right ? s.padStart(n) : s.padEnd(n);
}

async function main(argv) {
  const fast = argv.includes('--fast');
  const filters = argv.filter((a) => a !== '--fast');
  let all = findTestFiles(TEST_DIR);
  if (fast) all = all.filter((f) => !f.startsWith(SYSTEM_DIR));
  const files = filters.length ? all.filter((f) => filters.some((x) => f.includes(x))) : all;

  const onSignal = (sig) => {
    if (current) killTree(current, 'SIGKILL');
    process.stdout.write(`\nrun-tests: interrupted by ${sig}\n`);
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  if (files.length === 0) {
    process.stdout.write(
      filters.length
        ? `run-tests: no test file matches ${filters.map((f) => JSON.stringify(f)).join(', ')}\n`
        : 'run-tests: no test/**/*.test.mjs files found\n',
    );
  }

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-run-tests-'));
  const results = [];
  try {
    for (const [i, rel] of files.entries()) {
      process.stdout.write(`\n=== ${rel}\n`);
      const r = await runFile(rel, path.join(tmp, `${i}.json`));
      const j = judge(r);
      for (const n of j.notes) process.stdout.write(`run-tests: ${rel}: ${n}\n`);
      results.push({ ...r, ...j });
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const r of results) {
    passed += r.passed;
    failed += r.failed;
    skipped += r.skipped;
  }

  if (results.length) {
    const w = Math.max(4, ...results.map((r) => r.file.length));
    const rows = [
      `${pad('file', w)}  ${pad('passed', 6, true)}  ${pad('failed', 6, true)}  ${pad('skipped', 7, true)}  ${pad('time', 8, true)}  status`,
    ];
    for (const r of results) {
      const status = r.failed ? 'FAIL' : r.passed ? 'ok' : 'EMPTY';
      rows.push(
        `${pad(r.file, w)}  ${pad(r.passed, 6, true)}  ${pad(r.failed, 6, true)}  ${pad(r.skipped, 7, true)}  ${pad(`${(r.ms / 1000).toFixed(1)}s`, 8, true)}  ${status}${r.notes.length ? ` (${r.notes.join('; ')})` : ''}`,
      );
    }
    process.stdout.write(
      `\nTest files: ${results.length}${fast ? ' (--fast: system tests left out)' : ''}\n${rows.join('\n')}\n`,
    );
    const failures = results.flatMap((r) =>
      r.failures.map((f) => `  ${r.file}: ${f.name}${f.message ? ` — ${f.message}` : ''}`),
    );
    if (failures.length) process.stdout.write(`\nFailed tests:\n${failures.join('\n')}\n`);
    if (skipped) process.stdout.write(`\n${skipped} skipped (not counted as passed)\n`);
  }
  if (passed + failed === 0) {
    process.stdout.write('run-tests: no test ran\n');
  }

  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  process.exitCode = failed > 0 || passed + failed === 0 ? 1 : 0;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

const args = process.argv.slice(2);
if (path.resolve(process.argv[1] ?? '') !== SELF) {
  // Imported (e.g. by a test of the runner itself): do nothing.
} else if (args[0] === '--child') {
  childMain(args[1], args[2]).catch((err) => {
    process.stderr.write(`run-tests: child internal error: ${err?.stack ?? err}\n`);
    process.exitCode = 1;
  });
} else {
  main(args).catch((err) => {
    process.stderr.write(`run-tests: internal error: ${err?.stack ?? err}\n`);
    process.stdout.write('0 passed, 1 failed\n');
    process.exitCode = 1;
  });
}
