#include "ws_frame.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NLWS_AVX2 1
#endif

#include <cctype>

#include "buffers.h"
#include "random.h"

namespace nlws {

int ParseFrameHeader(const uint8_t* p, size_t n, FrameHeader* h) {
  if (n < 2) return 0;
  h->fin = (p[0] & 0x80) != 0;
  h->rsv = (p[0] >> 4) & 0x7;
  h->opcode = p[0] & 0x0F;
  h->masked = (p[1] & 0x80) != 0;
  uint64_t len = p[1] & 0x7F;
  size_t pos = 2;
  if (len == 126) {
    if (n < 4) return 0;
    len = (uint64_t(p[2]) << 8) | p[3];
    pos = 4;
  } else if (len == 127) {
    if (n < 10) return 0;
    len = 0;
    for (int i = 0; i < 8; i++) len = (len << 8) | p[2 + i];
    if (len >> 63) return -1;
    pos = 10;
  }
  if (h->masked) {
    if (n < pos + 4) return 0;
    memcpy(h->mask, p + pos, 4);
    pos += 4;
  }
  h->length = len;
  return static_cast<int>(pos);
}

size_t EncodeFrameHeader(uint8_t* out, bool fin, uint8_t opcode, uint64_t length,
                         const uint8_t* mask) {
  out[0] = static_cast<uint8_t>((fin ? 0x80 : 0) | (opcode & 0x0F));
  uint8_t mbit = mask ? 0x80 : 0;
  size_t pos;
  if (length < 126) {
    out[1] = static_cast<uint8_t>(mbit | length);
    pos = 2;
  } else if (length <= 0xFFFF) {
    out[1] = mbit | 126;
    out[2] = static_cast<uint8_t>(length >> 8);
    out[3] = static_cast<uint8_t>(length);
    pos = 4;
  } else {
    out[1] = mbit | 127;
    for (int i = 0; i < 8; i++) out[2 + i] = static_cast<uint8_t>(length >> (56 - 8 * i));
    pos = 10;
  }
  if (mask) {
    memcpy(out + pos, mask, 4);
    pos += 4;
  }
  return pos;
}

#if NLWS_AVX2
namespace {

// 128 bytes a step with 32-byte registers, for CPUs that have them (checked
// once at run time; the addon is built for baseline x86-64). m: the mask
// repeated, starting at this call's phase. Returns how many bytes it did.
__attribute__((target("avx2"))) size_t MaskAvx2(uint8_t* dst, const uint8_t* src, size_t n,
                                                const uint8_t m[32]) {
  const __m256i mv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m));
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    const __m256i* s = reinterpret_cast<const __m256i*>(src + i);
    __m256i* d = reinterpret_cast<__m256i*>(dst + i);
    __m256i a = _mm256_loadu_si256(s), b = _mm256_loadu_si256(s + 1);
    __m256i c = _mm256_loadu_si256(s + 2), e = _mm256_loadu_si256(s + 3);
    _mm256_storeu_si256(d, _mm256_xor_si256(a, mv));
    _mm256_storeu_si256(d + 1, _mm256_xor_si256(b, mv));
    _mm256_storeu_si256(d + 2, _mm256_xor_si256(c, mv));
    _mm256_storeu_si256(d + 3, _mm256_xor_si256(e, mv));
  }
  return i;
}

bool HasAvx2() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));
  return has;
}

}  // namespace
#endif

void ApplyMask(uint8_t* dst, const uint8_t* src, size_t n, const uint8_t mask[4], size_t phase) {
  // The mask from this phase on, repeated over 32 bytes: one 4-byte word
  // stored 8 times (every call pays this, 64 B messages and pongs too).
  const uint8_t r[4] = {mask[phase & 3], mask[(phase + 1) & 3], mask[(phase + 2) & 3],
                        mask[(phase + 3) & 3]};
  uint8_t m[32];
  for (int k = 0; k < 32; k += 4) memcpy(m + k, r, 4);
  size_t i = 0;
#if NLWS_AVX2
  if (n >= 128 && HasAvx2()) i = MaskAvx2(dst, src, n, m);
#endif
#if defined(__SSE2__)
  // 64 bytes a step: at -O2 the compiler leaves the 8-byte loop below
  // scalar, and unmasking a 1 MiB message was 15% of the service thread.
  const __m128i mv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m));
  for (; i + 64 <= n; i += 64) {  // i is a multiple of 64: m still starts at the phase
    const __m128i* s = reinterpret_cast<const __m128i*>(src + i);
    __m128i* d = reinterpret_cast<__m128i*>(dst + i);
    __m128i a = _mm_loadu_si128(s), b = _mm_loadu_si128(s + 1);
    __m128i c = _mm_loadu_si128(s + 2), e = _mm_loadu_si128(s + 3);
    _mm_storeu_si128(d, _mm_xor_si128(a, mv));
    _mm_storeu_si128(d + 1, _mm_xor_si128(b, mv));
    _mm_storeu_si128(d + 2, _mm_xor_si128(c, mv));
    _mm_storeu_si128(d + 3, _mm_xor_si128(e, mv));
  }
#endif
  uint64_t m64;
  memcpy(&m64, m, 8);
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, src + i, 8);
    v ^= m64;
    memcpy(dst + i, &v, 8);
  }
  for (; i < n; i++) dst[i] = src[i] ^ m[i & 7];
}

uint8_t* BufAllocForFrame(size_t n) { return BufAlloc(n); }

uint8_t* NewFrame(bool masked, uint8_t opcode, const uint8_t* payload, size_t len,
                  size_t* frame_len, bool compressed) {
  uint8_t* f = BufAlloc(FrameHeaderSize(len, masked) + len + 1);
  if (!f) return nullptr;
  *frame_len = WriteFrame(f, masked, opcode, payload, len);
  if (compressed) f[0] |= 0x40;  // RSV1 (permessage-deflate)
  return f;
}

size_t WriteFrame(uint8_t* f, bool masked, uint8_t opcode, const uint8_t* payload, size_t len) {
  size_t hl = FrameHeaderSize(len, masked);
  uint8_t mask[4];
  if (masked) RandomMask(mask);
  EncodeFrameHeader(f, true, opcode, len, masked ? mask : nullptr);
  if (masked)
    ApplyMask(f + hl, payload, len, mask, 0);
  else if (len)
    memcpy(f + hl, payload, len);
  return hl + len;
}

void RandomMask(uint8_t out[4]) { RandomBytes(out, 4); }

bool Utf8Validator::Feed(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (remaining_ == 0) {
      // ASCII fast path: 64 bytes a step (SSE2), then eight at a time.
#if defined(__SSE2__)
      while (i + 64 <= n) {
        const __m128i* q = reinterpret_cast<const __m128i*>(p + i);
        __m128i any = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(q), _mm_loadu_si128(q + 1)),
                                   _mm_or_si128(_mm_loadu_si128(q + 2), _mm_loadu_si128(q + 3)));
        if (_mm_movemask_epi8(any)) break;
        i += 64;
      }
#endif
      while (i + 8 <= n) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        if (v & 0x8080808080808080ULL) break;
        i += 8;
      }
      if (i >= n) break;
      uint8_t b = p[i++];
      if (b < 0x80) continue;
      non_ascii_ = true;
      lo_ = 0x80;
      hi_ = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) {
        remaining_ = 1;
      } else if (b == 0xE0) {
        remaining_ = 2;
        lo_ = 0xA0;
      } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
        remaining_ = 2;
      } else if (b == 0xED) {
        remaining_ = 2;
        hi_ = 0x9F;
      } else if (b == 0xF0) {
        remaining_ = 3;
        lo_ = 0x90;
      } else if (b >= 0xF1 && b <= 0xF3) {
        remaining_ = 3;
      } else if (b == 0xF4) {
        remaining_ = 3;
        hi_ = 0x8F;
      } else {
        return false;
      }
    } else {
      uint8_t b = p[i++];
      if (b < lo_ || b > hi_) return false;
      remaining_--;
      lo_ = 0x80;
      hi_ = 0xBF;
    }
  }
  return true;
}

bool IsValidUtf8(const uint8_t* p, size_t n) {
  Utf8Validator v;
  return v.Feed(p, n) && v.Complete();
}

bool IsValidCloseCode(uint32_t code) {
  if (code >= 3000 && code <= 4999) return true;
  switch (code) {
    case 1000:
    case 1001:
    case 1002:
    case 1003:
    case 1007:
    case 1008:
    case 1009:
    case 1010:
    case 1011:
    case 1012:
    case 1013:
    case 1014:
      return true;
    default:
      return false;
  }
}

}  // namespace nlws
