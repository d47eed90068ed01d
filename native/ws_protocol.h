// RFC 6455 building blocks with no I/O and no lws: frame headers, masking,
// incremental UTF-8 validation, close-code rules and the HTTP/1.1 upgrade
// handshake. Everything here is pure and runs on the service thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

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
};

constexpr size_t kMaxFrameHeader = 14;  // 2 + 8 (length) + 4 (mask)

struct FrameHeader {
  bool fin = false;
  uint8_t rsv = 0;  // the three RSV bits, shifted down to 0..7
  uint8_t opcode = 0;
  bool masked = false;
  uint64_t length = 0;
  uint8_t mask[4] = {0, 0, 0, 0};
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

// A malloc'd, complete, final frame carrying payload; masked with a fresh
// random key when `masked` (client side). Returns null when out of memory.
uint8_t* NewFrame(bool masked, uint8_t opcode, const uint8_t* payload, size_t len,
                  size_t* frame_len);

// Four unpredictable bytes for a client frame's masking key (RFC 6455 5.3),
// from a per-thread pool refilled with getrandom().
void RandomMask(uint8_t out[4]);

// Incremental UTF-8 validator (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF). Feed fails as soon as the bytes seen cannot begin
// valid UTF-8, so a bad fragment is caught before the message completes.
class Utf8Validator {
 public:
  bool Feed(const uint8_t* p, size_t n);
  bool Complete() const { return remaining_ == 0; }
  void Reset() {
    remaining_ = 0;
    lo_ = 0x80;
    hi_ = 0xBF;
  }

 private:
  uint8_t remaining_ = 0;
  uint8_t lo_ = 0x80;
  uint8_t hi_ = 0xBF;
};

bool IsValidUtf8(const uint8_t* p, size_t n);

// Close codes a peer may put on the wire (RFC 6455 7.4, IANA registry).
bool IsValidCloseCode(uint32_t code);

// ---- HTTP/1.1 upgrade handshake ------------------------------------------

struct HttpHeaders {
  // Names lower-cased; values trimmed. Repeated headers are kept in order.
  std::vector<std::pair<std::string, std::string>> list;
  const std::string* Get(const char* lower_name) const;
};

struct HttpRequest {
  std::string method;
  std::string target;
  int version_minor = 1;  // HTTP/1.x
  HttpHeaders headers;
};

struct HttpResponse {
  int version_minor = 1;
  int status = 0;
  std::string reason;
  HttpHeaders headers;
};

// Position just past the "\r\n\r\n" that ends a header block, or 0 when the
// block is not complete yet.
size_t FindHeaderEnd(const char* p, size_t n);

// Parse a complete header block (as delimited by FindHeaderEnd).
bool ParseHttpRequest(const char* p, size_t n, HttpRequest* out);
bool ParseHttpResponse(const char* p, size_t n, HttpResponse* out);

// Is `token` one of the comma-separated tokens of value (case-insensitive)?
bool HeaderHasToken(const std::string& value, const char* token);

// Splits a comma-separated header value into trimmed, non-empty items.
std::vector<std::string> SplitHeaderList(const std::string& value);

// A Sec-WebSocket-Key must be the base64 encoding of 16 bytes.
bool IsValidWebSocketKey(const std::string& key);

// base64(SHA-1(key + GUID)), the Sec-WebSocket-Accept value.
std::string WebSocketAccept(const std::string& key);

std::string Base64Encode(const uint8_t* p, size_t n);

// "Bad Request" for 400 and so on ("Unknown" otherwise).
const char* HttpStatusText(int status);

// Content-Type for a file name, by extension ("application/octet-stream" otherwise).
const char* MimeType(const std::string& path);

// Percent-decodes a URL path; false on a malformed escape or a NUL byte.
bool PercentDecode(const std::string& in, std::string* out);

// Microseconds on the monotonic clock.
int64_t MonotonicUs();

}  // namespace nlws
