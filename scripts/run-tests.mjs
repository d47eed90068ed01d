#!/usr/bin/env node
// Test runner for node-lws.
//
// Runs every test/**/*.test.mjs file (sorted), each in its own `node <file>` child process,
// streams its output, and reads the uvu summary it prints at the end:
//
//     Total:     N      tests that ran (with .only: the .only tests)
//     Passed:    N
//     Skipped:   N      test.skip() calls, plus tests left out by .only
//
// failed = Total - Passed (uvu does not print it). A file that exits non-zero or times out
// without such a summary counts as 1 failure; a non-zero exit or a timeout after a summary
// that shows no failure also adds 1 failure. Skipped tests are not counted as passed.
//
// Usage: node scripts/run-tests.mjs [substring ...]   (only files whose path contains one)
// Env:   TEST_FILE_TIMEOUT_MS  per-file timeout (default 120000)
//
// The last line printed is exactly `N passed, N failed`. Exit code 1 if anything failed or
// no test ran.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TEST_DIR = path.join(ROOT, 'test');
const TIMEOUT_MS = Number.parseInt(process.env.TEST_FILE_TIMEOUT_MS ?? '', 10) || 120_000;
const KILL_GRACE_MS = 5_000;

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching ANSI escape sequences
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;
const stripAnsi = (s) => s.replace(ANSI, '');

function findTestFiles(dir) {
  if (!fs.existsSync(dir)) return [];
  const out = [];
  const walk = (d) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      if (ent.name === 'node_modules' || ent.name.startsWith('.')) continue;
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

/** Sum every uvu summary block (Total/Passed/Skipped on consecutive lines) in the output. */
export function parseUvuOutput(text) {
  const lines = stripAnsi(text).split(/\r?\n/);
  let found = false;
  let total = 0;
  let passed = 0;
  let skipped = 0;
  const failures = [];
  for (let i = 0; i < lines.length; i++) {
    const fail = /^\s*FAIL\s+(.*\S)\s*$/.exec(lines[i]);
    if (fail) failures.push(fail[1].replace(/\s{2,}/g, ' '));
    const t = /^\s*Total:\s+(\d+)\s*$/.exec(lines[i]);
    if (!t) continue;
    const p = /^\s*Passed:\s+(\d+)\s*$/.exec(lines[i + 1] ?? '');
    const s = /^\s*Skipped:\s+(\d+)\s*$/.exec(lines[i + 2] ?? '');
    if (!p || !s) continue;
    found = true;
    total += Number(t[1]);
    passed += Number(p[1]);
    skipped += Number(s[1]);
    i += 2;
  }
  if (!found) return null;
  return { total, passed, failed: Math.max(0, total - passed), skipped, failures };
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

function runFile(rel) {
  return new Promise((resolve) => {
    const started = Date.now();
    const env = { ...process.env };
    if (process.stdout.isTTY && env.FORCE_COLOR === undefined && env.NO_COLOR === undefined) {
      env.FORCE_COLOR = '1';
    }
    const child = spawn(process.execPath, [rel], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: process.platform !== 'win32',
    });
    current = child;
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (b) => {
      stdout += b;
      process.stdout.write(b);
    });
    child.stderr.on('data', (b) => {
      stderr += b;
      process.stderr.write(b);
    });
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
        summary: parseUvuOutput(stdout) ?? parseUvuOutput(stderr),
      });
    };
    child.on('error', (err) => finish(null, null, err));
    child.on('close', (code, signal) => finish(code, signal, null));
  });
}

function judge(r) {
  const s = r.summary;
  let passed = s ? s.passed : 0;
  let failed = s ? s.failed : 0;
  const skipped = s ? s.skipped : 0;
  const notes = [];
  const exitDesc = r.signal ? `signal ${r.signal}` : `exit code ${r.code}`;
  if (r.spawnError) {
    failed += 1;
    notes.push(`could not start: ${r.spawnError.message}`);
  } else if (r.timedOut) {
    failed += 1;
    notes.push(
      s
        ? `timed out after ${TIMEOUT_MS} ms although its summary was printed (open handles?)`
        : `timed out after ${TIMEOUT_MS} ms, killed`,
    );
  } else if (!s) {
    if (r.code === 0) notes.push('exited 0 without a uvu summary (no tests?)');
    else {
      failed += 1;
      notes.push(`${exitDesc} without a uvu summary`);
    }
  } else if (r.code !== 0 && failed === 0) {
    failed += 1;
    notes.push(`${exitDesc} although all its tests passed`);
  }
  if (s && s.failed > s.failures.length) {
    const n = s.failed - s.failures.length;
    notes.push(
      `${n} test(s) did not pass and uvu printed no FAIL for them (a before/after hook threw?)`,
    );
  }
  if (s && s.total === 0 && notes.length === 0) notes.push('ran no tests');
  if (passed < 0) passed = 0;
  return { passed, failed, skipped, notes };
}

function pad(s, n, right = false) {
  s = String(s);
  return right ? s.padStart(n) : s.padEnd(n);
}

async function main() {
  const filters = process.argv.slice(2);
  const all = findTestFiles(TEST_DIR);
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

  const results = [];
  for (const rel of files) {
    process.stdout.write(`\n=== ${rel}\n`);
    const r = await runFile(rel);
    const j = judge(r);
    for (const n of j.notes) process.stdout.write(`run-tests: ${rel}: ${n}\n`);
    results.push({ ...r, ...j });
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
    process.stdout.write(`\nTest files: ${results.length}\n${rows.join('\n')}\n`);
    const failures = results.flatMap((r) =>
      (r.summary?.failures ?? []).map((name) => `  ${r.file}: ${name}`),
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

main().catch((err) => {
  process.stderr.write(`run-tests: internal error: ${err?.stack ?? err}\n`);
  process.stdout.write('0 passed, 1 failed\n');
  process.exitCode = 1;
});
