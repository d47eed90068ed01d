// Check programs for native/ files that stand on their own (test/native/*-check.cc): compiled
// with g++ under AddressSanitizer and UndefinedBehaviorSanitizer into a temporary folder, and run.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './paths.mjs';
import { spawnProcess } from './proc.mjs';
import { withTimeout } from './wait.mjs';

// Without the sanitizer runtime the ASan test harness (scripts/test-asan.sh) preloads into node:
// the compiler is not instrumented, and the check program links its own.
const { LD_PRELOAD: _preload, ...ENV } = process.env;

async function run(cmd, args, ms, label) {
  const child = spawnProcess(cmd, args, { cwd: ROOT, env: ENV });
  const exit = await withTimeout(child.exited, ms, label);
  if (exit.error) throw new Error(`${cmd}: ${exit.error.message} (g++ is part of build-essential)`);
  return { ...exit, stdout: child.stdoutText, stderr: child.stderrText };
}

/**
 * Builds test/native/<name>.cc with `sources` (paths from the repository's root) and calls
 * `body(exec)`, where `exec(args, ms)` runs the program and resolves to `{ code, stdout, stderr }`.
 * Throws with the compiler's output when the build fails; removes the program afterwards.
 */
export async function withNativeCheck(name, sources, body) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `node-lws-${name}-`));
  try {
    const bin = path.join(dir, name);
    const flags = ['-std=c++17', '-O1', '-g', '-Wall', '-Wextra', '-Werror'];
    flags.push('-fsanitize=address,undefined', '-fno-sanitize-recover=all');
    const build = await run(
      process.env.CXX || 'g++',
      [...flags, '-o', bin, `test/native/${name}.cc`, ...sources],
      120000,
      `g++ ${name}`,
    );
    if (build.code !== 0) throw new Error(`building ${name} failed: ${build.stderr}`);
    await body((args, ms) => run(bin, args, ms, name));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
