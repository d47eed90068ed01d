// Hashing for the tables whose keys a peer chooses: header names (MakeHeaders
// joins repeated ones through a table) and topic names (an application that
// turns a client's "join room X" into subscribe(X) lets the client name them).
//
// libstdc++'s std::hash<std::string> is MurmurHash64A with a fixed seed, so
// anyone can compute offline names that all land in one bucket of a table of a
// known size; every lookup then walks them all. SipHash-1-3 under a key drawn
// once per process (random.h; what Rust's HashMap and CPython do) leaves an
// attacker nothing to compute against.
//
// Any thread: the key is set once, before its first use (a function-local
// static), and only read afterwards.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>

namespace nlws {

// SipHash-c-d of n bytes under a 16-byte key (c compression rounds per 8-byte
// block, d finalization rounds): SipHash-2-4 is the one with published test
// vectors, 1-3 the one KeyedHash uses.
uint64_t SipHash(int c, int d, const uint8_t key[16], const void* p, size_t n);

// Not noexcept on purpose: libstdc++ then keeps each node's hash next to it
// (as it does for std::hash<std::string>) instead of hashing the nodes of a
// bucket again on every lookup and rehash.
struct KeyedHash {
  size_t operator()(const std::string& s) const;
};

}  // namespace nlws
