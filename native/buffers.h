// Frame and message buffers. Large ones (>= 16 KiB) are kept in a small pool
// and reused instead of going back to the kernel: on this kind of machine the
// page faults of a fresh 1 MiB mmap cost more than the copy into it. Blocks of
// 1 MiB and more are mapped, and grow with mremap() (no copy).
// Thread-safe: frames are allocated on the main thread and freed on the
// service thread, and message buffers the other way round.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nlws {

uint8_t* BufAlloc(size_t n);
// Grows (or keeps) a buffer from BufAlloc, keeping its first `keep` bytes.
uint8_t* BufRealloc(uint8_t* p, size_t n, size_t keep);
void BufFree(uint8_t* p);
size_t BufCapacity(const uint8_t* p);
// Bytes of free buffers the pool keeps for reuse (any thread).
size_t BufPooledBytes();
// Gives back to the system the pooled buffers no allocation took since the
// previous call; returns the bytes freed. Called about once a second, so a
// burst's memory is returned soon after the burst (any thread).
size_t BufTrim();

}  // namespace nlws
