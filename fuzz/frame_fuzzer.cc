// libFuzzer target for node-lws's own protocol code, the parts that need no socket:
// native/frame_reader (the receiving half of RFC 6455, with permessage-deflate),
// native/ws_frame (frame headers, masking, UTF-8, close codes) and native/http.
//
// Every input is fed to every piece (the frame reader on both sides, with and without
// deflate, whole and split at random; frame headers, masking, frame building, incremental
// UTF-8 validation, close codes, header-block scanning, HTTP request/response parsing,
// header lists, Sec-WebSocket-Key checks, base64, Sec-WebSocket-Accept, percent-decoding,
// MIME types) and each result is checked against an invariant or an independent reference
// implementation written here. A violated invariant calls __builtin_trap() via CHECK, which
// libFuzzer reports as a crash with the input saved.
//
// Build: bash scripts/fuzz.sh (clang; see fuzz/README.md for CMake).
// Run:
//   build-fuzz/frame_fuzzer -max_total_time=60 -dict=fuzz/ws.dict build-fuzz/corpus fuzz/corpus

#include <fuzzer/FuzzedDataProvider.h>
#include <openssl/sha.h>
#include <sanitizer/asan_interface.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "buffers.h"
#include "frame_reader.h"
#include "http.h"
#include "ws_frame.h"

using namespace nlws;

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "frame_fuzzer: CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      __builtin_trap();                                                                        \
    }                                                                                          \
  } while (0)

namespace {

// ---- references ---------------------------------------------------------------------------

// Strict RFC 3629 decoder. Returns the offset at which the input stops being a prefix of valid
// UTF-8 (n if it never does), and sets *complete when it ends on a character boundary.
size_t RefUtf8(const uint8_t* p, size_t n, bool* complete) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = p[i];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b == 0xE0) {
      need = 2, lo = 0xA0;
    } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
      need = 2;
    } else if (b == 0xED) {
      need = 2, hi = 0x9F;
    } else if (b == 0xF0) {
      need = 3, lo = 0x90;
    } else if (b >= 0xF1 && b <= 0xF3) {
      need = 3;
    } else if (b == 0xF4) {
      need = 3, hi = 0x8F;
    } else {
      *complete = false;
      return i;  // invalid lead byte
    }
    size_t start = i++;
    for (size_t k = 0; k < need; k++, i++) {
      if (i >= n) {
        *complete = false;
        return n;  // truncated: still a valid prefix
      }
      uint8_t c = p[i];
      uint8_t l = k == 0 ? lo : 0x80, h = k == 0 ? hi : 0xBF;
      if (c < l || c > h) {
        *complete = false;
        (void)start;
        return i;
      }
    }
  }
  *complete = true;
  return n;
}

bool RefCloseCode(uint32_t c) {
  if (c >= 3000 && c <= 4999) return true;
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014);
}

const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int B64Val(char c) {
  const char* p = static_cast<const char*>(memchr(kB64, c, 64));
  return p ? static_cast<int>(p - kB64) : -1;
}

// Strict base64 decode (padding required, canonical trailing bits); false when malformed.
bool RefB64Decode(const std::string& s, std::string* out) {
  out->clear();
  if (s.size() % 4) return false;
  for (size_t i = 0; i < s.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      char c = s[i + k];
      if (c == '=') {
        if (i + 4 != s.size() || k < 2) return false;
        v[k] = 0;
        pad++;
      } else {
        if (pad) return false;
        v[k] = B64Val(c);
        if (v[k] < 0) return false;
      }
    }
    uint32_t w = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out->push_back(static_cast<char>(w >> 16));
    if (pad < 2) out->push_back(static_cast<char>(w >> 8));
    if (pad < 1) out->push_back(static_cast<char>(w));
    if (pad == 2 && (v[1] & 0x0F)) return false;
    if (pad == 1 && (v[2] & 0x03)) return false;
  }
  return true;
}

bool RefValidKey(const std::string& key) {
  std::string raw;
  return key.size() == 24 && RefB64Decode(key, &raw) && raw.size() == 16;
}

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

bool RefPercentDecode(const std::string& in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); i++) {
    char c = in[i];
    if (c == '\0') return false;
    if (c != '%') {
      out->push_back(c);
      continue;
    }
    if (i + 2 >= in.size() || !IsHex(in[i + 1]) || !IsHex(in[i + 2])) return false;
    int v = HexVal(in[i + 1]) * 16 + HexVal(in[i + 2]);
    if (v == 0) return false;
    out->push_back(static_cast<char>(v));
    i += 2;
  }
  return true;
}

bool IsTchar(unsigned char c) {
  if (c <= 32 || c >= 127) return false;
  return !strchr("()<>@,;:\\\"/[]?={} \t", c);
}

void CheckHeaders(const HttpHeaders& h) {
  for (const auto& kv : h.list) {
    CHECK(!kv.first.empty());
    for (unsigned char c : kv.first) {
      CHECK(IsTchar(c));
      CHECK(!(c >= 'A' && c <= 'Z'));  // lower-cased
    }
    for (unsigned char c : kv.second) CHECK(c == '\t' || (c >= 32 && c != 127));
    if (!kv.second.empty()) {
      CHECK(kv.second.front() != ' ' && kv.second.front() != '\t');
      CHECK(kv.second.back() != ' ' && kv.second.back() != '\t');
    }
    const std::string* got = h.Get(kv.first.c_str());
    CHECK(got != nullptr);
  }
}

// A heap copy of p[0..n) followed by `slack` bytes of the input that follow it, poisoned:
// a parser given (copy, n) that reads copy[n] or beyond hits ASan even when the caller's
// buffer is longer. Freed by the destructor.
struct Fenced {
  uint8_t* buf;
  size_t n, slack;
  Fenced(const uint8_t* p, size_t n_, const uint8_t* rest, size_t slack_) : n(n_), slack(slack_) {
    buf = static_cast<uint8_t*>(malloc(n + slack + 1));
    if (n) memcpy(buf, p, n);
    if (slack) memcpy(buf + n, rest, slack);
    ASAN_POISON_MEMORY_REGION(buf + n, slack + 1);
  }
  ~Fenced() {
    ASAN_UNPOISON_MEMORY_REGION(buf + n, slack + 1);
    free(buf);
  }
  const char* c() const { return reinterpret_cast<const char*>(buf); }
};

// ---- pieces -------------------------------------------------------------------------------

void FuzzFrameHeader(const uint8_t* d, size_t n) {
  FrameHeader h;
  Fenced f(d, n < kMaxFrameHeader ? n : kMaxFrameHeader, d, 0);
  size_t m = f.n;
  int r = ParseFrameHeader(f.buf, m, &h);
  CHECK(r == -1 || r == 0 || (r >= 2 && r <= 14));
  if (r > 0) CHECK(static_cast<size_t>(r) <= m);
  if (r == -1) {
    CHECK(m >= 10 && (f.buf[1] & 0x7F) == 127 && (f.buf[2] & 0x80));
    return;
  }
  if (r == 0) {
    // Needs more bytes: only when the header really is longer than what was given.
    if (m >= 2) {
      size_t want = 2 +
                    ((f.buf[1] & 0x7F) == 126   ? 2
                     : (f.buf[1] & 0x7F) == 127 ? 8
                                                : 0) +
                    ((f.buf[1] & 0x80) ? 4 : 0);
      CHECK(want > m);
    }
    return;
  }
  CHECK(h.fin == ((f.buf[0] & 0x80) != 0));
  CHECK(h.rsv == ((f.buf[0] >> 4) & 7));
  CHECK(h.opcode == (f.buf[0] & 0x0F));
  CHECK(h.masked == ((f.buf[1] & 0x80) != 0));
  CHECK((h.length >> 63) == 0);
  // Every shorter prefix asks for more bytes.
  for (int k = 0; k < r; k++) {
    FrameHeader h2;
    CHECK(ParseFrameHeader(f.buf, k, &h2) == 0);
  }
  // A minimal header re-encodes to the same bytes.
  bool minimal = FrameHeaderSize(h.length, h.masked) == static_cast<size_t>(r);
  if (minimal && h.rsv == 0) {
    uint8_t out[kMaxFrameHeader];
    size_t len = EncodeFrameHeader(out, h.fin, h.opcode, h.length, h.masked ? h.mask : nullptr);
    CHECK(len == static_cast<size_t>(r));
    CHECK(memcmp(out, f.buf, len) == 0);
  }
}

void FuzzEncodeRoundTrip(FuzzedDataProvider& fdp) {
  bool fin = fdp.ConsumeBool();
  uint8_t opcode = fdp.ConsumeIntegralInRange<uint8_t>(0, 15);
  uint64_t length;
  switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      length = fdp.ConsumeIntegralInRange<uint64_t>(0, 200);
      break;
    case 1:
      length = fdp.ConsumeIntegralInRange<uint64_t>(65530, 65540);
      break;
    default:
      length = fdp.ConsumeIntegral<uint64_t>() >> 1;  // top bit clear: representable
  }
  uint8_t mask[4];
  bool masked = fdp.ConsumeBool();
  for (auto& b : mask) b = fdp.ConsumeIntegral<uint8_t>();
  uint8_t out[kMaxFrameHeader];
  size_t len = EncodeFrameHeader(out, fin, opcode, length, masked ? mask : nullptr);
  CHECK(len == FrameHeaderSize(length, masked));
  FrameHeader h;
  CHECK(ParseFrameHeader(out, len, &h) == static_cast<int>(len));
  CHECK(h.fin == fin && h.opcode == opcode && h.rsv == 0 && h.masked == masked);
  CHECK(h.length == length);
  if (masked) CHECK(memcmp(h.mask, mask, 4) == 0);
}

void FuzzMask(FuzzedDataProvider& fdp, const uint8_t* d, size_t n) {
  uint8_t mask[4];
  for (auto& b : mask) b = fdp.ConsumeIntegral<uint8_t>();
  size_t phase = fdp.ConsumeIntegralInRange<size_t>(0, 7);
  std::vector<uint8_t> a(d, d + n), b(n), c(d, d + n);
  ApplyMask(b.data(), a.data(), n, mask, phase);
  for (size_t i = 0; i < n; i++) CHECK(b[i] == (d[i] ^ mask[(phase + i) & 3]));
  // In place, in two pieces with the phase carried over: same result.
  size_t cut = n ? fdp.ConsumeIntegralInRange<size_t>(0, n) : 0;
  ApplyMask(c.data(), c.data(), cut, mask, phase);
  ApplyMask(c.data() + cut, c.data() + cut, n - cut, mask, phase + cut);
  CHECK(c == b);
  // Masking twice is the identity.
  ApplyMask(c.data(), c.data(), n, mask, phase);
  CHECK(c == a);
}

void FuzzNewFrame(FuzzedDataProvider& fdp, const uint8_t* d, size_t n) {
  bool masked = fdp.ConsumeBool();
  uint8_t opcode = fdp.ConsumeIntegralInRange<uint8_t>(0, 15);
  size_t flen = 0;
  uint8_t* f = NewFrame(masked, opcode, d, n, &flen);
  CHECK(f != nullptr);
  FrameHeader h;
  int hl = ParseFrameHeader(f, flen, &h);
  CHECK(hl > 0 && static_cast<size_t>(hl) + n == flen);
  CHECK(h.fin && h.opcode == opcode && h.masked == masked && h.length == n && h.rsv == 0);
  std::vector<uint8_t> payload(f + hl, f + flen);
  if (masked) ApplyMask(payload.data(), payload.data(), n, h.mask, 0);
  CHECK(n == 0 || memcmp(payload.data(), d, n) == 0);
  BufFree(f);
}

void FuzzUtf8(FuzzedDataProvider& fdp, const uint8_t* d, size_t n) {
  bool ref_complete = false;
  size_t ref_err = RefUtf8(d, n, &ref_complete);
  bool ref_ok = ref_err == n;
  // One shot.
  Utf8Validator one;
  bool fed = one.Feed(d, n);
  CHECK(fed == ref_ok);
  if (fed) CHECK(one.Complete() == ref_complete);
  CHECK(IsValidUtf8(d, n) == (ref_ok && ref_complete));
  // Random splits: fails exactly at the piece containing the first bad byte.
  Utf8Validator v;
  size_t off = 0;
  bool failed = false;
  while (off < n) {
    size_t k = fdp.ConsumeIntegralInRange<size_t>(0, n - off);
    if (fdp.remaining_bytes() == 0) k = n - off;
    Fenced piece(d + off, k, d + off + k, 0);
    bool ok = v.Feed(piece.buf, k);
    if (!ok) {
      CHECK(!ref_ok && ref_err >= off && ref_err < off + k);
      failed = true;
      break;
    }
    CHECK(ref_err >= off + k || ref_ok);
    off += k;
  }
  if (!failed) {
    CHECK(ref_ok);
    CHECK(v.Complete() == ref_complete);
  }
  v.Reset();
  CHECK(v.Complete());
  CHECK(v.Feed(d, n) == ref_ok);
}

void FuzzCloseCodes(const uint8_t* d, size_t n) {
  for (size_t i = 0; i + 1 < n && i < 64; i += 2) {
    uint32_t code = (uint32_t(d[i]) << 8) | d[i + 1];
    CHECK(IsValidCloseCode(code) == RefCloseCode(code));
  }
  if (n >= 4) {
    uint32_t c;
    memcpy(&c, d, 4);
    CHECK(IsValidCloseCode(c) == RefCloseCode(c));
  }
}

void FuzzHttp(FuzzedDataProvider& fdp, const uint8_t* d, size_t n) {
  // Header-block scanning on a fenced copy.
  {
    Fenced f(d, n, nullptr, 0);
    size_t e = FindHeaderEnd(f.c(), n);
    if (e) {
      CHECK(e >= 4 && e <= n && memcmp(f.c() + e - 4, "\r\n\r\n", 4) == 0);
      for (size_t i = 0; i + 4 < e; i++) CHECK(memcmp(f.c() + i, "\r\n\r\n", 4) != 0);
    } else {
      for (size_t i = 0; i + 4 <= n; i++) CHECK(memcmp(f.c() + i, "\r\n\r\n", 4) != 0);
    }
  }
  // Parse a prefix; the bytes after it are poisoned, so reading past the length is caught.
  size_t len = n ? fdp.ConsumeIntegralInRange<size_t>(0, n) : 0;
  if (fdp.ConsumeBool()) {
    Fenced f(d, n, nullptr, 0);
    size_t e = FindHeaderEnd(f.c(), n);
    if (e) len = e;
  }
  Fenced f(d, len, d + len, n - len);
  HttpRequest req;
  if (ParseHttpRequest(f.c(), len, &req)) {
    CHECK(!req.method.empty() && !req.target.empty());
    for (unsigned char c : req.method) CHECK(IsTchar(c));
    for (unsigned char c : req.target) CHECK(c > 32 && c != 127);
    CHECK(req.version_minor >= 0 && req.version_minor <= 9);
    CheckHeaders(req.headers);
    HttpRequest again;
    CHECK(ParseHttpRequest(f.c(), len, &again));
    CHECK(again.method == req.method && again.target == req.target &&
          again.headers.list == req.headers.list);
    std::string path;
    (void)PercentDecode(req.target, &path);
  }
  HttpResponse res;
  if (ParseHttpResponse(f.c(), len, &res)) {
    CHECK(res.status >= 0 && res.status <= 999);
    CHECK(res.version_minor >= 0 && res.version_minor <= 9);
    CheckHeaders(res.headers);
    CHECK(HttpStatusText(res.status) != nullptr);
  }
}

void FuzzHeaderLists(const uint8_t* d, size_t n) {
  std::string value(reinterpret_cast<const char*>(d), n);
  std::vector<std::string> items = SplitHeaderList(value);
  std::string joined;
  for (const std::string& it : items) {
    CHECK(!it.empty());
    CHECK(it.find(',') == std::string::npos);
    CHECK(it.front() != ' ' && it.front() != '\t' && it.back() != ' ' && it.back() != '\t');
    if (it.find('\0') == std::string::npos) CHECK(HeaderHasToken(value, it.c_str()));
    if (!joined.empty()) joined += ", ";
    joined += it;
  }
  CHECK(SplitHeaderList(joined) == items);
  (void)HeaderHasToken(value, "websocket");
  (void)HeaderHasToken(value, "");
}

void FuzzKeys(const uint8_t* d, size_t n) {
  // Any 24-byte window as a key: agrees with a strict base64 reference.
  std::string key(reinterpret_cast<const char*>(d), n < 24 ? n : 24);
  CHECK(IsValidWebSocketKey(key) == RefValidKey(key));
  // 16 bytes of input encode to a valid key that decodes back to them.
  if (n >= 16) {
    std::string k = Base64Encode(d, 16);
    CHECK(IsValidWebSocketKey(k));
    std::string raw;
    CHECK(RefB64Decode(k, &raw) && raw.size() == 16 && memcmp(raw.data(), d, 16) == 0);
  }
  // Base64 of everything round-trips.
  std::string enc = Base64Encode(d, n);
  CHECK(enc.size() == (n + 2) / 3 * 4);
  std::string dec;
  CHECK(RefB64Decode(enc, &dec) && dec.size() == n && (n == 0 || memcmp(dec.data(), d, n) == 0));
  // Sec-WebSocket-Accept against OpenSSL's SHA-1.
  std::string input = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  CHECK(WebSocketAccept(key) == Base64Encode(digest, sizeof digest));
}

void FuzzPercent(const uint8_t* d, size_t n) {
  std::string in(reinterpret_cast<const char*>(d), n), out, ref;
  bool ok = PercentDecode(in, &out);
  bool rok = RefPercentDecode(in, &ref);
  CHECK(ok == rok);
  if (ok) {
    CHECK(out == ref);
    CHECK(out.size() <= in.size());
    CHECK(out.find('\0') == std::string::npos);
  }
  const char* mime = MimeType(in);
  CHECK(mime != nullptr && *mime != '\0');
}

// ---- the frame reader --------------------------------------------------------------------

// Records what the reader reports, checking each report on the way.
struct RecordingSink : FrameSink {
  std::vector<std::string> events;
  std::vector<uint8_t> room;
  bool give_room = false;
  bool take = false;
  bool done = false;
  uint64_t max_payload = 0;
  FrameReader* reader = nullptr;  // set: yield after every yield_every-th event, as Conn does
  size_t yield_every = 0;         // when its receive budget is spent
  size_t seen = 0;

  void Report(std::string e) {
    events.push_back(std::move(e));
    if (reader && yield_every && ++seen % yield_every == 0) reader->Yield();
  }

  uint8_t* MessageRoom(size_t len) override {
    CHECK(!done);
    if (!give_room) return nullptr;
    room.assign(len + 1, 0xAA);
    return room.data();
  }
  bool OnMessage(ReadMessage& m) override {
    CHECK(!done);
    CHECK(m.data != nullptr);
    CHECK(m.len <= max_payload);
    if (m.in_room) CHECK(give_room && m.data == room.data());
    if (m.text) {
      CHECK(IsValidUtf8(m.data, m.len));
      bool ascii = true;
      for (size_t i = 0; i < m.len; i++) ascii = ascii && m.data[i] < 0x80;
      CHECK(m.ascii == ascii);
    }
    Report(std::string(m.text ? "T" : "B") +
           std::string(reinterpret_cast<const char*>(m.data), m.len));
    if (!m.in_room && take) {
      BufFree(m.data);
      m.data = nullptr;
    }
    return true;
  }
  void OnPing(const uint8_t* p, size_t n) override {
    CHECK(!done && n <= 125);
    Report("P" + std::string(reinterpret_cast<const char*>(p), n));
  }
  void OnPong(const uint8_t* p, size_t n) override {
    CHECK(!done && n <= 125);
    Report("O" + std::string(reinterpret_cast<const char*>(p), n));
  }
  void OnCloseFrame(uint16_t code, const uint8_t* reason, size_t n) override {
    CHECK(!done);
    CHECK(code == kCloseNoStatus || IsValidCloseCode(code));
    CHECK(n <= 123 && IsValidUtf8(reason, n));
    done = true;
    events.push_back("C" + std::to_string(code));
  }
  void OnReadError(uint16_t code, const char* why) override {
    CHECK(!done);
    CHECK(code == kCloseProtocolError || code == kCloseInvalidData || code == kCloseTooBig ||
          code == kCloseInternalError);
    CHECK(why && *why);
    done = true;
    events.push_back("E" + std::to_string(code));
  }
};

std::unique_ptr<PerMessageDeflate> FuzzDeflate(bool client, bool no_context_takeover) {
  DeflateOptions o;
  o.enabled = true;
  o.server_no_context_takeover = no_context_takeover;
  o.client_no_context_takeover = no_context_takeover;
  std::string response, error;
  std::unique_ptr<PerMessageDeflate> server =
      PerMessageDeflate::Negotiate(o, PerMessageDeflate::Offer(o), &response);
  CHECK(server != nullptr);
  if (!client) return server;
  std::unique_ptr<PerMessageDeflate> c = PerMessageDeflate::Accept(o, response, &error);
  CHECK(c != nullptr);
  return c;
}

// Feeds everything, in pieces of the given sizes, taking the rest again when the reader
// stops for its inflation budget or because the sink yielded (as Conn does on the next turn
// of the service loop). direct_min > 0: after each piece, payload the reader asks for with
// PayloadRoom(direct_min) is copied straight into it in pieces of the next sizes, as Conn
// reads a plain socket.
void FeedReader(FrameReader& r, const uint8_t* d, size_t n, const std::vector<size_t>& cuts,
                size_t direct_min = 0) {
  size_t off = 0;
  for (size_t i = 0; off < n; i++) {
    size_t k = i < cuts.size() ? std::min(cuts[i], n - off) : n - off;
    if (k == 0) k = 1;
    size_t used = 0;
    int spins = 0;
    while (used < k) {
      size_t u = r.Feed(d + off + used, k - used);
      used += u;
      CHECK(used <= k);
      if (u == 0) CHECK(++spins < 100000);
    }
    off += k;
    size_t want = 0;
    uint8_t* room;
    while (direct_min && off < n && !r.busy() && (room = r.PayloadRoom(direct_min, &want))) {
      CHECK(want >= direct_min);
      size_t take = std::min(want, n - off);
      if (++i < cuts.size()) take = std::min(take, cuts[i]);
      memcpy(room, d + off, take);
      r.PayloadArrived(take);
      off += take;
    }
  }
  for (int spins = 0; r.busy(); spins++) {
    CHECK(r.Feed(nullptr, 0) == 0);
    CHECK(spins < 100000);
  }
}

void FuzzReader(FuzzedDataProvider& fdp, const uint8_t* d, size_t n) {
  bool client = fdp.ConsumeBool();
  bool deflate = fdp.ConsumeBool();
  bool nct = fdp.ConsumeBool();
  uint64_t max_payload = fdp.ConsumeIntegralInRange<uint64_t>(0, 1 << 20);
  size_t yield_every = fdp.ConsumeIntegralInRange<size_t>(0, 4);
  size_t direct_min = fdp.ConsumeIntegralInRange<size_t>(0, 64);
  std::vector<size_t> cuts;
  while (cuts.size() < 64 && fdp.remaining_bytes() > 0)
    cuts.push_back(fdp.ConsumeIntegralInRange<size_t>(1, 300));

  RecordingSink whole, split;
  whole.max_payload = split.max_payload = max_payload;
  whole.give_room = true;
  split.take = true;
  FrameReader a(&whole, client, max_payload);
  FrameReader b(&split, client, max_payload);
  split.reader = &b;
  split.yield_every = yield_every;
  if (deflate) {
    a.EnableDeflate(FuzzDeflate(client, nct));
    b.EnableDeflate(FuzzDeflate(client, nct));
  }
  FeedReader(a, d, n, {});
  FeedReader(b, d, n, cuts, direct_min);
  // However the bytes arrive (through Feed or straight into the message), wherever the
  // messages go, and wherever the sink yields, the reports are the same.
  CHECK(whole.events == split.events);
  CHECK(a.done() == b.done());
  CHECK(a.done() == whole.done);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // RFC 6455 section 1.3's example.
  CHECK(WebSocketAccept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1 << 16) return -1;  // keep executions fast; nothing here needs more
  FuzzedDataProvider fdp(data, size);
  {
    FuzzedDataProvider reader_fdp(data, size);
    FuzzReader(reader_fdp, data, size);
  }
  FuzzFrameHeader(data, size);
  FuzzEncodeRoundTrip(fdp);
  FuzzMask(fdp, data, size);
  FuzzNewFrame(fdp, data, size);
  FuzzUtf8(fdp, data, size);
  FuzzCloseCodes(data, size);
  FuzzHttp(fdp, data, size);
  FuzzHeaderLists(data, size);
  FuzzKeys(data, size);
  FuzzPercent(data, size);
  return 0;
}
