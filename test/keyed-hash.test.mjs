// native/keyed_hash.{h,cc}: the hash of the tables whose keys a peer chooses (header names joined
// by MakeHeaders, topic names), checked on its own.
//
// test/native/keyed-hash-check.cc is compiled with native/keyed_hash.cc and native/random.cc
// (g++, AddressSanitizer and UndefinedBehaviorSanitizer) and run twice: SipHash-2-4 against its reference vectors; names
// computed offline to share one bucket of a std::hash table (libstdc++'s seed is fixed), which
// KeyedHash must spread; and KeyedHash of one name, which must differ between the two processes
// (a key drawn per process, not a constant an attacker can compute against).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { withNativeCheck } from './support/native-check.mjs';

test('KeyedHash: SipHash vectors, names that flood a std::hash bucket, a key per process', async () => {
  await withNativeCheck(
    'keyed-hash-check',
    ['native/keyed_hash.cc', 'native/random.cc'],
    async (exec) => {
      const keys = [];
      for (let i = 0; i < 2; i++) {
        const r = await exec(['2000'], 60000);
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
    },
  );
});

test.run();
