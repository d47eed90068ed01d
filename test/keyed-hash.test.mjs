// native/keyed_hash.{h,cc}: the hash of the tables whose keys a peer chooses (header names joined
// by MakeHeaders, topic names), checked on its own.
//
// test/native/keyed-hash-check.cc is compiled with native/keyed_hash.cc (g++, AddressSanitizer
// and UndefinedBehaviorSanitizer) and run twice: SipHash-2-4 against its reference vectors; names
// computed offline to share one bucket of a std::hash table (libstdc++'s seed is fixed), which
// KeyedHash must spread; and KeyedHash of one name, which must differ between the two processes
// (a key drawn per process, not a constant an attacker can compute against).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from './support/paths.mjs';
import { spawnProcess } from './support/proc.mjs';
import { withTimeout } from './support/wait.mjs';

// Without the sanitizer runtime the ASan test harness (scripts/test-asan.sh) preloads into node:
// the compiler is not instrumented, and the check program links its own.
const { LD_PRELOAD: _preload, ...ENV } = process.env;

async function run(cmd, args, ms, label) {
  const child = spawnProcess(cmd, args, { cwd: ROOT, env: ENV });
  const exit = await withTimeout(child.exited, ms, label);
  if (exit.error) throw new Error(`${cmd}: ${exit.error.message} (g++ is part of build-essential)`);
  return { ...exit, stdout: child.stdoutText, stderr: child.stderrText };
}

test('KeyedHash: SipHash vectors, names that flood a std::hash bucket, a key per process', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-lws-keyed-hash-'));
  try {
    const bin = path.join(dir, 'keyed-hash-check');
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
        'test/native/keyed-hash-check.cc',
        'native/keyed_hash.cc',
      ],
      120000,
      'g++ keyed-hash-check',
    );
    assert.is(build.code, 0, `build failed: ${build.stderr}`);
    const keys = [];
    for (let i = 0; i < 2; i++) {
      const r = await run(bin, ['2000'], 60000, 'keyed-hash-check');
      assert.is(r.code, 0, `keyed-hash-check failed: ${r.stderr}${r.stdout}`);
      assert.match(r.stdout, /^ok SipHash-2-4 reference vectors$/m);
      const spread = r.stdout.match(
        /^ok 2000 names in one std::hash bucket of \d+; KeyedHash's largest bucket: (\d+)$/m,
      );
      assert.ok(spread, r.stdout);
      assert.ok(Number(spread[1]) <= 16, `largest bucket ${spread[1]}`);
      const key = r.stdout.match(/^key ([0-9a-f]{16})$/m);
      assert.ok(key, r.stdout);
      keys.push(key[1]);
      assert.not.match(r.stderr, /runtime error|AddressSanitizer/);
    }
    assert.is.not(keys[0], keys[1], 'two processes hash the same name alike: the key is fixed');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
