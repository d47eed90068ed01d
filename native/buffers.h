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
// The same, but a block the pool cannot supply is mapped whatever its size,
// so that it goes back to the kernel when freed beyond what the pool keeps,
// not to the malloc arena of the thread that allocated it. For blocks one
// thread takes and another frees while that other thread allocates the
// copies of their contents: the batch arena's chunks (malloc'd, a burst of
// them stayed in the service thread's arena while JavaScript's copies took
// as much again on the main thread).
uint8_t* BufAllocMapped(size_t n);
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
// Memory freed to malloc outside these buffers (zlib's streams), counted
// like the pooled blocks malloc gets back (any thread).
void BufNoteFreed(size_t n);
// Once a burst is over, asks malloc to give the memory freed to it back to
// the system (glibc's malloc_trim: the free pages of every arena, not only
// the top of each) and returns true: when at least `threshold` bytes went
// back to malloc since the last time (blocks of 16 KiB and more the pool gave
// back or could not keep, and what BufNoteFreed counted), and either
// `burst_over` (the pool gave blocks back: none had been used for a second)
// or nothing was freed since the previous call (*seen: the count then, kept
// by the caller). malloc keeps memory freed below the top of an arena
// resident, and the service thread's arena holds a burst's blocks and zlib
// streams between the small allocations that outlive them; under a steady
// load what is freed is soon taken again, and returning it would only fault
// it in again. About once a second, from a service thread.
bool BufReturnFreed(size_t threshold, bool burst_over, size_t* seen);

}  // namespace nlws
