// The RFC 6455 wire format, with no I/O and no lws: frame headers, masking,
// frame building, incremental UTF-8 validation and close-code rules. Pure
// functions: any thread (frames are built on the main thread by send() and on
// the service thread for control frames).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace nlws {

enum Opcode : uint8_t {
  kOpContinuation = 0x0,
  kOpText = 0x1,
  kOpBinary = 0x2,
  kOpClose = 0x8,
  kOpPing = 0x9,
  kOpPong = 0xA,
};

// Close codes node-lws itself sends.
enum CloseCode : uint16_t {
  kCloseNormal = 1000,
  kCloseGoingAway = 1001,
  kCloseProtocolError = 1002,
  kCloseUnsupported = 1003,
  kCloseNoStatus = 1005,  // never sent: reported when a close frame had no code
  kCloseAbnormal = 1006,  // never sent: reported when no close frame arrived
  kCloseInvalidData = 1007,
  kClosePolicy = 1008,
  kCloseTooBig = 1009,
  kCloseInternalError = 1011,
  kCloseTryAgainLater = 1013,  // IANA registry: the server is overloaded
};

constexpr size_t kMaxFrameHeader = 14;  // 2 + 8 (length) + 4 (mask)

struct FrameHeader {
  bool fin = false;
  uint8_t rsv = 0;  // the three RSV bits, shifted down to 0..7
  uint8_t opcode = 0;
  bool masked = false;
  uint8_t mask[4] = {0, 0, 0, 0};  // before length: the struct is 16 bytes, not 24
  uint64_t length = 0;
};

// Parses a frame header from the first n bytes of p.
// Returns the header length (2..14), 0 when more bytes are needed, or -1 when
// the 64-bit length has its most significant bit set (a protocol error).
int ParseFrameHeader(const uint8_t* p, size_t n, FrameHeader* h);

// Writes a frame header; returns its length. mask may be null (server frames).
size_t EncodeFrameHeader(uint8_t* out, bool fin, uint8_t opcode, uint64_t length,
                         const uint8_t* mask);

// Header length EncodeFrameHeader will produce.
inline size_t FrameHeaderSize(uint64_t length, bool masked) {
  size_t n = length < 126 ? 2 : length <= 0xFFFF ? 4 : 10;
  return masked ? n + 4 : n;
}

// dst[i] = src[i] ^ mask[(phase + i) & 3]. dst may equal src.
void ApplyMask(uint8_t* dst, const uint8_t* src, size_t n, const uint8_t mask[4], size_t phase);

// A BufAlloc'd, complete, final frame carrying payload; masked with a fresh
// random key when `masked` (client side); RSV1 set when `compressed`. Returns
// null when out of memory.
uint8_t* NewFrame(bool masked, uint8_t opcode, const uint8_t* payload, size_t len,
                  size_t* frame_len, bool compressed = false);

// The same, for a payload of at most max_len bytes that `fill(dst)` writes
// and whose real length it returns (a string being encoded, say).
template <typename Fill>
uint8_t* NewFrameFilled(bool masked, uint8_t opcode, size_t max_len, Fill fill, size_t* frame_len,
                        size_t* payload_len);

// The same two, written at f (room for FrameHeaderSize(max_len, masked) +
// max_len + 1 bytes) instead of a new block: return the frame's length.
size_t WriteFrame(uint8_t* f, bool masked, uint8_t opcode, const uint8_t* payload, size_t len);
template <typename Fill>
size_t WriteFrameFilled(uint8_t* f, bool masked, uint8_t opcode, size_t max_len, Fill fill,
                        size_t* payload_len);

void RandomMask(uint8_t out[4]);
uint8_t* BufAllocForFrame(size_t n);  // BufAlloc (buffers.h), for the template below

template <typename Fill>
uint8_t* NewFrameFilled(bool masked, uint8_t opcode, size_t max_len, Fill fill, size_t* frame_len,
                        size_t* payload_len) {
  uint8_t* f = BufAllocForFrame(FrameHeaderSize(max_len, masked) + max_len + 1);
  if (!f) return nullptr;
  *frame_len = WriteFrameFilled(f, masked, opcode, max_len, fill, payload_len);
  return f;
}

template <typename Fill>
size_t WriteFrameFilled(uint8_t* f, bool masked, uint8_t opcode, size_t max_len, Fill fill,
                        size_t* payload_len) {
  // Write the payload after the largest header max_len allows; move it down
  // when the real header is smaller.
  size_t hmax = FrameHeaderSize(max_len, masked);
  size_t len = fill(f + hmax);
  size_t hl = FrameHeaderSize(len, masked);
  if (hl < hmax && len) memmove(f + hl, f + hmax, len);
  uint8_t mask[4];
  if (masked) RandomMask(mask);
  EncodeFrameHeader(f, true, opcode, len, masked ? mask : nullptr);
  if (masked) ApplyMask(f + hl, f + hl, len, mask, 0);
  *payload_len = len;
  return hl + len;
}

// Four unpredictable bytes for a client frame's masking key (RFC 6455 5.3)
// (random.h).
void RandomMask(uint8_t out[4]);

// Incremental UTF-8 validator (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF). Feed fails as soon as the bytes seen cannot begin
// valid UTF-8, so a bad fragment is caught before the message completes.
class Utf8Validator {
 public:
  bool Feed(const uint8_t* p, size_t n);
  bool Complete() const { return remaining_ == 0; }
  bool ascii() const { return !non_ascii_; }  // no byte >= 0x80 since Reset()
  void Reset() {
    remaining_ = 0;
    non_ascii_ = false;
    lo_ = 0x80;
    hi_ = 0xBF;
  }

 private:
  uint8_t remaining_ = 0;
  uint8_t lo_ = 0x80;
  uint8_t hi_ = 0xBF;
  bool non_ascii_ = false;
};

bool IsValidUtf8(const uint8_t* p, size_t n);

// Close codes a peer may put on the wire (RFC 6455 7.4, IANA registry).
bool IsValidCloseCode(uint32_t code);

}  // namespace nlws
