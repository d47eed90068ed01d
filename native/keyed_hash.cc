#include "keyed_hash.h"

#include <string.h>

#include "random.h"

namespace nlws {

namespace {

inline uint64_t Rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;  // little-endian hosts only (x86-64, arm64), as SipHash specifies
}

struct State {
  uint64_t v0, v1, v2, v3;
  void Round() {
    v0 += v1;
    v1 = Rotl(v1, 13);
    v1 ^= v0;
    v0 = Rotl(v0, 32);
    v2 += v3;
    v3 = Rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = Rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = Rotl(v1, 17);
    v1 ^= v2;
    v2 = Rotl(v2, 32);
  }
};

struct Key {
  uint8_t bytes[16];
  Key() { RandomBytes(bytes, sizeof bytes); }
};

const uint8_t* ProcessKey() {
  static const Key key;
  return key.bytes;
}

}  // namespace

uint64_t SipHash(int c, int d, const uint8_t key[16], const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint64_t k0 = Load64(key), k1 = Load64(key + 8);
  State s{k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL, k0 ^ 0x6c7967656e657261ULL,
          k1 ^ 0x7465646279746573ULL};
  const uint8_t* end = p + (n & ~static_cast<size_t>(7));
  for (; p != end; p += 8) {
    uint64_t m = Load64(p);
    s.v3 ^= m;
    for (int i = 0; i < c; i++) s.Round();
    s.v0 ^= m;
  }
  // The last block: the 0-7 bytes left, and the length's low byte on top.
  uint64_t last = static_cast<uint64_t>(n) << 56;
  for (size_t i = 0; i < (n & 7); i++) last |= static_cast<uint64_t>(p[i]) << (8 * i);
  s.v3 ^= last;
  for (int i = 0; i < c; i++) s.Round();
  s.v0 ^= last;
  s.v2 ^= 0xff;
  for (int i = 0; i < d; i++) s.Round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

size_t KeyedHash::operator()(const std::string& s) const {
  return static_cast<size_t>(SipHash(1, 3, ProcessKey(), s.data(), s.size()));
}

}  // namespace nlws
