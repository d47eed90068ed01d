// Checks native/keyed_hash.{h,cc}, built and run by test/keyed-hash.test.mjs (g++
// -fsanitize=address,undefined). Prints one line per check; exits non-zero with the first
// failure.
//
//   keyed-hash-check <names>
//
// 1. SipHash-2-4 against the reference test vectors (key 00..0f, message 00..n-1).
// 2. <names> header-like names computed to share one bucket of a std::unordered_map keyed by
//    std::hash (what an attacker can do offline: its seed is fixed), then put in a table keyed by
//    KeyedHash, whose largest bucket must stay small.
// 3. "key <hex>": KeyedHash of a fixed name, which the test compares between two processes.
#include <stdio.h>
#include <stdlib.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "../../native/keyed_hash.h"

using nlws::KeyedHash;
using nlws::SipHash;

namespace {

void Check(bool ok, const std::string& what) {
  if (!ok) {
    fprintf(stderr, "FAIL: %s\n", what.c_str());
    exit(1);
  }
}

// SipHash-2-4 reference outputs (github.com/veorq/SipHash, vectors.h), as little-endian 64-bit
// values, for messages of these lengths.
struct Vector {
  size_t len;
  uint64_t out;
};
const Vector kVectors[] = {
    {0, 0x726fdb47dd0e0e31ULL},  {1, 0x74f839c593dc67fdULL},  {2, 0x0d6c8009d9a94f5aULL},
    {7, 0xab0200f58b01d137ULL},  {8, 0x93f5f5799a932462ULL},  {15, 0xa129ca6149be45e5ULL},
    {16, 0x3f2acc7f57c29bdbULL}, {63, 0x958a324ceb064572ULL},
};

std::string Name(unsigned long i) {
  char b[24];
  snprintf(b, sizeof b, "x-%lx", i);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = argc > 1 ? strtoul(argv[1], nullptr, 10) : 2000;

  uint8_t key[16], msg[64];
  for (int i = 0; i < 16; i++) key[i] = static_cast<uint8_t>(i);
  for (int i = 0; i < 64; i++) msg[i] = static_cast<uint8_t>(i);
  for (const Vector& v : kVectors) {
    uint64_t got = SipHash(2, 4, key, msg, v.len);
    char what[96];
    snprintf(what, sizeof what, "SipHash-2-4 of %zu bytes: %016llx, expected %016llx", v.len,
             static_cast<unsigned long long>(got), static_cast<unsigned long long>(v.out));
    Check(got == v.out, what);
  }
  printf("ok SipHash-2-4 reference vectors\n");

  // The bucket count a std::hash table of n names ends with, then n names for one of its buckets.
  std::unordered_map<std::string, int> plain;
  for (size_t i = 0; i < n; i++) plain.emplace(Name(~static_cast<unsigned long>(i)), 0);
  size_t buckets = plain.bucket_count();
  std::hash<std::string> fixed;
  std::vector<std::string> names;
  for (unsigned long i = 0; names.size() < n; i++) {
    std::string s = Name(i);
    if (fixed(s) % buckets == 0) names.push_back(s);
  }
  std::unordered_map<std::string, int> attacked;
  for (const std::string& s : names) attacked.emplace(s, 0);
  Check(attacked.bucket_count() == buckets, "the std::hash table ends with the predicted size");
  Check(attacked.bucket_size(attacked.bucket(names[0])) == n,
        "every computed name is in one bucket of the std::hash table");

  std::unordered_map<std::string, int, KeyedHash> keyed;
  for (const std::string& s : names) keyed.emplace(s, 0);
  size_t largest = 0;
  for (size_t b = 0; b < keyed.bucket_count(); b++) {
    size_t k = keyed.bucket_size(b);
    if (k > largest) largest = k;
  }
  // n names over ~n buckets: the largest bucket of a random function holds ~log n / log log n.
  Check(largest <= 16, "KeyedHash spreads them: largest bucket " + std::to_string(largest));
  printf("ok %zu names in one std::hash bucket of %zu; KeyedHash's largest bucket: %zu\n", n,
         buckets, largest);

  printf("key %016llx\n", static_cast<unsigned long long>(KeyedHash()("sec-websocket-key")));
  return 0;
}
