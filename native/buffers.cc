#include "buffers.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

namespace nlws {

namespace {

// A block's header: its size with the header, then whether it is mapped (a
// size_t each, which keeps the bytes after it 16-byte aligned).
constexpr size_t kHeader = 16;
// Blocks whose usable size is at least this much (less the header) are
// pooled, in size classes.
constexpr size_t kPoolMin = 16 * 1024;
// Size classes of usable bytes in quarter steps between powers of two (16,
// 20, 24, 28, 32 KiB, ...): a 1 MiB message takes a 1 MiB block (with the
// header, one page more), not 2 MiB. The header comes on top of the class:
// until 2026-11-28 it counted in it, so a message of exactly 32 KiB took a
// 40 KiB block, and the 32 KiB and 64 KiB echoes' young Buffers a quarter
// more memory than their bytes (~10 MB more peak RSS).
constexpr int kClasses = 4 * 40;
// Blocks of at least this capacity are mapped (not malloc'd), so that growing
// one (a message being reassembled or inflated) moves pages instead of
// copying megabytes: mremap() costs a few microseconds whatever the size.
// BufAllocMapped() maps smaller ones too (see buffers.h).
constexpr size_t kMapMin = 1024 * 1024;
// What the pool keeps, below and from kMapMin. Large messages handed to
// JavaScript come back when V8 collects them, dozens at a time: a pool that
// cannot take a whole burst maps fresh pages for the next messages, and
// faulting them in cost a 1 MiB echo a quarter of its throughput (32 MiB
// here: 1,470 MB/s; 64 MiB: 2,070).
// Below kMapMin a class keeps kPerClass blocks, or as many as fit in
// kPerClassBytes when that is more: a string sent as text takes a block of
// three bytes per character (its UTF-8 bound), 56 KiB for 16 Ki characters,
// and 100 connections echoing those kept 100 such blocks busy. With 32 kept,
// the rest went back to malloc, which gave the top of its heap back to the
// kernel and faulted it in again: 1.5 page faults per echo.
constexpr size_t kPerClass = 32;
constexpr size_t kPerClassBytes = 8 * 1024 * 1024;
constexpr size_t kPoolMax = 32 * 1024 * 1024;
constexpr size_t kPerMappedClass = 64;
constexpr size_t kPoolMaxMapped = 64 * 1024 * 1024;

// A new block with its header written.
uint8_t* NewRaw(size_t cap, bool map) {
  uint8_t* raw;
  if (!map) {
    raw = static_cast<uint8_t*>(malloc(cap));
  } else {
    void* p = mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    raw = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
  }
  if (!raw) return nullptr;
  size_t mapped = map;
  memcpy(raw, &cap, sizeof cap);
  memcpy(raw + sizeof cap, &mapped, sizeof mapped);
  return raw;
}

bool IsMapped(const uint8_t* raw) {
  size_t mapped;
  memcpy(&mapped, raw + sizeof(size_t), sizeof mapped);
  return mapped != 0;
}

// Bytes of blocks of kPoolMin and more freed to malloc (and what
// BufNoteFreed adds) since BufReturnFreed last asked malloc to return them.
std::atomic<size_t> freed_to_malloc{0};

void DeleteRaw(uint8_t* raw, size_t cap) {
  if (IsMapped(raw)) {
    munmap(raw, cap);
    return;
  }
  free(raw);
  if (cap >= kPoolMin) freed_to_malloc.fetch_add(cap, std::memory_order_relaxed);
}

struct Pool {
  std::mutex mu;
  std::vector<uint8_t*> free[kClasses];  // raw blocks, header included; oldest first
  size_t unused[kClasses] = {};          // blocks no allocation took since the last trim
  size_t bytes = 0;                      // all the blocks kept
  size_t mapped = 0;                     // of which blocks of kMapMin and more
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: buffers may be freed at exit
  return *p;
}

// Class c holds (4 + c % 4) / 4 * 2^(c / 4) usable bytes.
size_t ClassSize(int c) {
  size_t base = size_t{1} << (c >> 2);
  return base + static_cast<size_t>(c & 3) * (base >> 2);
}

// A block of class c, header included (what the header's size says).
size_t RawSize(int c) { return ClassSize(c) + kHeader; }

// The smallest class that holds cap usable bytes.
int ClassOf(size_t cap) {
  int k = 63 - __builtin_clzll(cap);  // 2^k <= cap < 2^(k+1)
  size_t base = size_t{1} << k;
  if (cap == base) return 4 * k;
  size_t step = base >> 2;
  size_t q = (cap - base + step - 1) / step;  // 1..4
  return 4 * k + static_cast<int>(q);         // q == 4 is the next power of two
}

}  // namespace

size_t BufPooledBytes() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return p.bytes;
}

namespace {

uint8_t* Alloc(size_t n, bool map) {
  size_t total = n + kHeader;
  uint8_t* raw = nullptr;
  size_t cap;
  if (total >= kPoolMin) {
    int c = ClassOf(n);
    cap = RawSize(c);
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    if (c < kClasses && !p.free[c].empty()) {
      raw = p.free[c].back();
      p.free[c].pop_back();
      p.unused[c] = std::min(p.unused[c], p.free[c].size());
      p.bytes -= cap;
      if (cap >= kMapMin) p.mapped -= cap;
    }
  } else {
    cap = total;
  }
  if (!raw) raw = NewRaw(cap, map || cap >= kMapMin);
  return raw ? raw + kHeader : nullptr;
}

}  // namespace

uint8_t* BufAlloc(size_t n) { return Alloc(n, false); }

uint8_t* BufAllocMapped(size_t n) { return Alloc(n, true); }

size_t BufCapacity(const uint8_t* p) {
  size_t cap;
  memcpy(&cap, p - kHeader, sizeof cap);
  return cap - kHeader;
}

void BufFree(uint8_t* p) {
  if (!p) return;
  uint8_t* raw = p - kHeader;
  size_t cap;
  memcpy(&cap, raw, sizeof cap);
  if (cap >= kPoolMin) {
    int c = ClassOf(cap - kHeader);  // exact: cap is RawSize(c)
    Pool& pl = pool();
    std::lock_guard<std::mutex> lock(pl.mu);
    bool big = cap >= kMapMin;
    bool room = c < kClasses &&
                (big ? pl.free[c].size() < kPerMappedClass && pl.mapped + cap <= kPoolMaxMapped
                     : pl.free[c].size() < std::max(kPerClass, kPerClassBytes / cap) &&
                           pl.bytes - pl.mapped + cap <= kPoolMax);
    if (room) {
      pl.free[c].push_back(raw);
      pl.bytes += cap;
      if (big) pl.mapped += cap;
      return;
    }
  }
  DeleteRaw(raw, cap);
}

size_t BufTrim() {
  std::vector<std::pair<uint8_t*, size_t>> drop;
  {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    for (int c = 0; c < kClasses; c++) {
      std::vector<uint8_t*>& v = p.free[c];
      size_t n = std::min(p.unused[c], v.size());
      for (size_t i = 0; i < n; i++) drop.emplace_back(v[i], RawSize(c));
      v.erase(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n));
      p.bytes -= n * RawSize(c);
      if (RawSize(c) >= kMapMin) p.mapped -= n * RawSize(c);
      p.unused[c] = v.size();
    }
  }
  size_t freed = 0;
  for (auto& d : drop) {
    DeleteRaw(d.first, d.second);
    freed += d.second;
  }
  return freed;
}

void BufNoteFreed(size_t n) { freed_to_malloc.fetch_add(n, std::memory_order_relaxed); }

bool BufReturnFreed(size_t threshold, bool burst_over, size_t* seen) {
  size_t n = freed_to_malloc.load(std::memory_order_relaxed);
  bool quiet = n == *seen;
  *seen = n;
  if (n < threshold || !(quiet || burst_over)) return false;
  // Taken whole (another context's service thread may be here too).
  freed_to_malloc.exchange(0, std::memory_order_relaxed);
  *seen = 0;
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  return true;
}

uint8_t* BufRealloc(uint8_t* p, size_t n, size_t keep) {
  if (p && BufCapacity(p) >= n) return p;
  if (p && IsMapped(p - kHeader)) {
    // Mapped: move the pages (the block stays mapped, header included).
    uint8_t* raw = p - kHeader;
    size_t old_cap = BufCapacity(p) + kHeader;
    size_t cap = RawSize(ClassOf(n));
    void* q = mremap(raw, old_cap, cap, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) return nullptr;
    memcpy(q, &cap, sizeof cap);
    return static_cast<uint8_t*>(q) + kHeader;
  }
  uint8_t* q = BufAlloc(n);
  if (!q) return nullptr;
  if (p) {
    if (keep) memcpy(q, p, keep);
    BufFree(p);
  }
  return q;
}

}  // namespace nlws
