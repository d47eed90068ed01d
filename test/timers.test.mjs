// native/timers.{h,cc}: the service thread's timer heap, checked on its own.
//
// test/native/timers-check.cc is compiled with native/timers.cc (g++, AddressSanitizer and
// UndefinedBehaviorSanitizer) and run: a seeded random sequence of schedules, reschedules,
// cancels, owner destructions and RunDue() calls against a reference model (size, earliest
// deadline, which timers run and in what order), and callbacks that reschedule themselves,
// cancel another timer or delete their owner.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnProcess } from './support/proc.mjs';
import { withTimeout } from './support/wait.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '..');
const SEED = Number(process.env.TIMERS_SEED ?? Math.floor(Math.random() * 2 ** 31)) >>> 0;

// Without the sanitizer runtime the ASan test harness (scripts/test-asan.sh) preloads into node:
// the compiler is not instrumented, and the check program links its own.
const { LD_PRELOAD: _preload, ...ENV } = process.env;

async function run(cmd, args, ms, label) {
  const child = spawnProcess(cmd, args, { cwd: ROOT, env: ENV });
  const exit = await withTimeout(child.exited, ms, label);
  if (exit.error) throw new Error(`${cmd}: ${exit.error.message} (g++ is part of build-essential)`);
  return { ...exit, stdout: child.stdoutText, stderr: child.stderrText };
}

test(`timer heap against a reference model (seed ${SEED})`, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-timers-'));
  try {
    const bin = path.join(dir, 'timers-check');
    const build = await run(
      process.env.CXX || 'g++',
      [
        '-std=c++17',
        '-O1',
        '-g',
        '-Wall',
        '-Wextra',
        '-Werror',
        '-fsanitize=address,undefined',
        '-fno-sanitize-recover=all',
        '-o',
        bin,
        'test/native/timers-check.cc',
        'native/timers.cc',
      ],
      120000,
      'g++ timers-check',
    );
    assert.is(build.code, 0, `build failed: ${build.stderr}`);
    const r = await run(bin, [String(SEED), '60000'], 60000, 'timers-check');
    assert.is(r.code, 0, `timers-check (TIMERS_SEED=${SEED}) failed: ${r.stderr}${r.stdout}`);
    assert.match(r.stdout, /^ok randomized: seed \d+, 60000 operations, \d+ timers ran$/m);
    assert.match(r.stdout, /^ok reentrancy: abA$/m);
    assert.match(r.stdout, /^ok owner deleted in its callback$/m);
    assert.match(r.stdout, /^ok move between heaps, heap destructor$/m);
    assert.not.match(r.stderr, /runtime error|AddressSanitizer/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
