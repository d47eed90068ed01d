#include "deflate.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <algorithm>

#include "buffers.h"
#include "http.h"

namespace nlws {

namespace {

// zlib's allocations go through these, which count what each stream frees
// (BufNoteFreed: it decides when malloc is asked to return memory). A 16-byte
// header, which keeps malloc's alignment, holds the size.
constexpr size_t kZHeader = 16;

voidpf ZAlloc(voidpf, uInt items, uInt size) {
  size_t n = static_cast<size_t>(items) * size;
  auto* raw = static_cast<uint8_t*>(malloc(n + kZHeader));
  if (!raw) return Z_NULL;
  memcpy(raw, &n, sizeof n);
  return raw + kZHeader;
}

void ZFree(voidpf, voidpf p) {
  if (!p) return;
  uint8_t* raw = static_cast<uint8_t*>(p) - kZHeader;
  size_t n;
  memcpy(&n, raw, sizeof n);
  free(raw);
  BufNoteFreed(n + kZHeader);
}

// A stream whose allocations are counted, ready for deflateInit2/inflateInit2.
void Counted(z_stream* z) {
  *z = z_stream{};
  z->zalloc = ZAlloc;
  z->zfree = ZFree;
}

// One whole message through z (final, Z_SYNC_FLUSH) into *out, without the
// 00 00 ff ff the flush ends with (RFC 7692 7.2.1). The caller resets z when
// its messages do not share a context.
bool CompressMessage(z_stream* z, const uint8_t* in, size_t n, std::vector<uint8_t>* out) {
  out->resize(deflateBound(z, static_cast<uLong>(n)) + 16);
  z->next_in = const_cast<Bytef*>(in);
  z->avail_in = static_cast<uInt>(n);
  size_t produced = 0;
  while (true) {
    z->next_out = out->data() + produced;
    z->avail_out = static_cast<uInt>(out->size() - produced);
    int r = deflate(z, Z_SYNC_FLUSH);
    produced = out->size() - z->avail_out;
    if (r != Z_OK && r != Z_BUF_ERROR) return false;
    if (z->avail_out > 0) break;
    out->resize(out->size() * 2);
  }
  if (produced >= 4) produced -= 4;
  out->resize(produced);
  return true;
}

struct Param {
  std::string name;
  std::string value;
  bool has_value = false;
};

// "permessage-deflate; a; b=1" -> name and params; false on bad syntax.
bool ParseExtension(const std::string& ext, std::string* name, std::vector<Param>* params) {
  params->clear();
  size_t pos = 0;
  auto next = [&](std::string* part) {
    size_t semi = ext.find(';', pos);
    size_t end = semi == std::string::npos ? ext.size() : semi;
    size_t b = pos, e = end;
    while (b < e && (ext[b] == ' ' || ext[b] == '\t')) b++;
    while (e > b && (ext[e - 1] == ' ' || ext[e - 1] == '\t')) e--;
    *part = ext.substr(b, e - b);
    pos = semi == std::string::npos ? ext.size() + 1 : semi + 1;
  };
  next(name);
  if (name->empty()) return false;
  while (pos <= ext.size()) {
    std::string part;
    next(&part);
    if (part.empty()) return false;
    Param p;
    size_t eq = part.find('=');
    if (eq == std::string::npos) {
      p.name = part;
    } else {
      p.name = part.substr(0, eq);
      p.value = part.substr(eq + 1);
      if (p.value.size() >= 2 && p.value.front() == '"' && p.value.back() == '"')
        p.value = p.value.substr(1, p.value.size() - 2);
      p.has_value = true;
    }
    while (!p.name.empty() && (p.name.back() == ' ' || p.name.back() == '\t')) p.name.pop_back();
    params->push_back(p);
  }
  return true;
}

bool WindowBits(const std::string& v, int* out) {
  if (v.empty() || v.size() > 2) return false;
  for (char c : v)
    if (c < '0' || c > '9') return false;
  int n = atoi(v.c_str());
  if (n < 8 || n > 15) return false;
  *out = n;
  return true;
}

}  // namespace

std::unique_ptr<PerMessageDeflate> PerMessageDeflate::Negotiate(const DeflateOptions& opts,
                                                                const std::string& offers,
                                                                std::string* response) {
  if (!opts.enabled) return nullptr;
  for (const std::string& ext : SplitHeaderList(offers)) {
    std::string name;
    std::vector<Param> params;
    if (!ParseExtension(ext, &name, &params) || strcasecmp(name.c_str(), "permessage-deflate"))
      continue;
    bool ok = true, seen[4] = {false, false, false, false};
    bool server_nct = opts.server_no_context_takeover;
    bool client_nct = opts.client_no_context_takeover;
    int server_bits = opts.server_max_window_bits;
    int client_bits = 15;
    bool client_bits_offered = false;
    for (const Param& p : params) {
      if (p.name == "server_no_context_takeover" && !p.has_value && !seen[0]) {
        seen[0] = server_nct = true;
      } else if (p.name == "client_no_context_takeover" && !p.has_value && !seen[1]) {
        seen[1] = client_nct = true;
      } else if (p.name == "server_max_window_bits" && !seen[2]) {
        int bits;
        seen[2] = true;
        if (!p.has_value || !WindowBits(p.value, &bits))
          ok = false;
        else if (bits < server_bits)
          server_bits = bits;
      } else if (p.name == "client_max_window_bits" && !seen[3]) {
        seen[3] = client_bits_offered = true;
        int bits = 15;
        if (p.has_value && !WindowBits(p.value, &bits)) ok = false;
        client_bits = bits;
      } else {
        ok = false;  // unknown or repeated parameter: decline this offer
      }
    }
    if (!ok) continue;
    if (client_bits_offered && opts.client_max_window_bits < client_bits)
      client_bits = opts.client_max_window_bits;
    std::unique_ptr<PerMessageDeflate> d(new PerMessageDeflate());
    d->opts_ = opts;
    d->deflate_bits_ = server_bits;
    d->inflate_bits_ = client_bits;
    d->deflate_reset_ = server_nct;
    d->inflate_reset_ = client_nct;
    *response = "permessage-deflate";
    if (server_nct) *response += "; server_no_context_takeover";
    if (client_nct) *response += "; client_no_context_takeover";
    if (server_bits < 15 || seen[2])
      *response += "; server_max_window_bits=" + std::to_string(server_bits);
    if (client_bits_offered && client_bits < 15)
      *response += "; client_max_window_bits=" + std::to_string(client_bits);
    return d;
  }
  return nullptr;
}

std::string PerMessageDeflate::Offer(const DeflateOptions& opts) {
  std::string s = "permessage-deflate";
  if (opts.server_no_context_takeover) s += "; server_no_context_takeover";
  if (opts.client_no_context_takeover) s += "; client_no_context_takeover";
  if (opts.server_max_window_bits < 15)
    s += "; server_max_window_bits=" + std::to_string(opts.server_max_window_bits);
  s += opts.client_max_window_bits < 15
           ? "; client_max_window_bits=" + std::to_string(opts.client_max_window_bits)
           : "; client_max_window_bits";
  return s;
}

std::unique_ptr<PerMessageDeflate> PerMessageDeflate::Accept(const DeflateOptions& opts,
                                                             const std::string& response,
                                                             std::string* error) {
  std::vector<std::string> exts = SplitHeaderList(response);
  std::string name;
  std::vector<Param> params;
  if (exts.size() != 1 || !ParseExtension(exts[0], &name, &params) ||
      strcasecmp(name.c_str(), "permessage-deflate")) {
    *error = "The server accepted an extension that was not offered: " + response;
    return nullptr;
  }
  std::unique_ptr<PerMessageDeflate> d(new PerMessageDeflate());
  d->opts_ = opts;
  d->inflate_bits_ = 15;
  d->deflate_bits_ = opts.client_max_window_bits;
  d->inflate_reset_ = false;
  d->deflate_reset_ = opts.client_no_context_takeover;
  for (const Param& p : params) {
    int bits;
    if (p.name == "server_no_context_takeover" && !p.has_value) {
      d->inflate_reset_ = true;
    } else if (p.name == "client_no_context_takeover" && !p.has_value) {
      d->deflate_reset_ = true;
    } else if (p.name == "server_max_window_bits" && p.has_value && WindowBits(p.value, &bits)) {
      d->inflate_bits_ = bits;
    } else if (p.name == "client_max_window_bits" && p.has_value && WindowBits(p.value, &bits) &&
               bits <= opts.client_max_window_bits) {
      d->deflate_bits_ = bits;
    } else {
      *error = "Invalid permessage-deflate response: " + response;
      return nullptr;
    }
  }
  return d;
}

// The zlib streams are made on first use, not when the extension is agreed:
// a deflate stream allocates ~260 KiB (its window, hash chains and pending
// buffer), and both made at the upgrade cost every connection ~208 KB of
// RSS, so connections that never compress a message, or never receive a
// compressed one, do not pay for it.
bool PerMessageDeflate::EnsureDeflate() {
  if (out_ok_) return true;
  // zlib does not support raw deflate with an 8-bit window: use 9 (still
  // within what the peer can inflate).
  int dbits = deflate_bits_ < 9 ? 9 : deflate_bits_;
  Counted(&out_);
  if (deflateInit2(&out_, opts_.level, Z_DEFLATED, -dbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return false;
  out_ok_ = true;
  return true;
}

bool PerMessageDeflate::EnsureInflate() {
  if (in_ok_) return true;
  // Inflating with the largest window accepts anything a smaller one made.
  Counted(&in_);
  if (inflateInit2(&in_, -15) != Z_OK) return false;
  in_ok_ = true;
  return true;
}

PerMessageDeflate::~PerMessageDeflate() {
  if (in_ok_) inflateEnd(&in_);
  if (out_ok_) deflateEnd(&out_);
}

const uint8_t PerMessageDeflate::kTail[4] = {0x00, 0x00, 0xff, 0xff};

int PerMessageDeflate::Inflate(const uint8_t* in, size_t n, size_t* used, bool* more, uint8_t** out,
                               size_t* out_len, size_t* out_cap, size_t limit, size_t budget) {
  *used = n;
  *more = false;
  if (ended_) return 0;  // after BFINAL: ignored
  if (!EnsureInflate()) return -1;
  in_.next_in = const_cast<Bytef*>(in);
  in_.avail_in = static_cast<uInt>(n);
  size_t produced = 0;
  bool filled = false;  // the last call used all the output room: zlib may hold more
  while ((in_.avail_in > 0 || filled) && produced < budget) {
    if (*out_len == *out_cap) {
      // Bounded by maxPayload: a small frame that inflates past it (a
      // decompression bomb) stops here.
      if (*out_cap >= limit) return -2;
      size_t cap = *out_cap ? *out_cap * 2 : 16 * 1024;
      if (cap > limit) cap = limit;
      uint8_t* p = BufRealloc(*out, cap, *out_len);
      if (!p) return -1;
      *out = p;
      *out_cap = cap;
    }
    size_t room = std::min(*out_cap - *out_len, budget - produced);
    in_.next_out = *out + *out_len;
    in_.avail_out = static_cast<uInt>(room);
    int r = inflate(&in_, Z_SYNC_FLUSH);
    size_t got = room - in_.avail_out;
    *out_len += got;
    produced += got;
    if (r == Z_NEED_DICT || r == Z_DATA_ERROR || r == Z_MEM_ERROR || r == Z_STREAM_ERROR) return -1;
    if (r == Z_STREAM_END) {
      ended_ = true;  // the peer set BFINAL: nothing may follow in this message
      return 0;
    }
    filled = in_.avail_out == 0;
    if (r == Z_BUF_ERROR && !filled) break;  // no progress possible: input used up
  }
  *used = n - in_.avail_in;
  *more = in_.avail_in > 0 || filled;
  return 0;
}

void PerMessageDeflate::ReleaseInflate() {
  if (!holds_inflate()) return;
  inflateEnd(&in_);
  in_ = z_stream{};
  in_ok_ = false;
}

void PerMessageDeflate::EndMessage() {
  if (in_ok_ && (inflate_reset_ || ended_)) inflateReset(&in_);
  ended_ = false;
}

bool PerMessageDeflate::Deflate(const uint8_t* in, size_t n, std::vector<uint8_t>* out) {
  if (!EnsureDeflate() || !CompressMessage(&out_, in, n, out)) return false;
  if (deflate_reset_) deflateReset(&out_);
  return true;
}

SharedDeflaters::~SharedDeflaters() {
  for (auto& e : entries_) deflateEnd(&e->z);
}

bool SharedDeflaters::Compress(int window_bits, int level, const uint8_t* in, size_t n,
                               std::vector<uint8_t>* out) {
  Entry* e = nullptr;
  for (auto& x : entries_)
    if (x->bits == window_bits && x->level == level) e = x.get();
  if (!e) {
    auto fresh = std::make_unique<Entry>();
    fresh->bits = window_bits;
    fresh->level = level;
    Counted(&fresh->z);
    if (deflateInit2(&fresh->z, level, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      return false;
    e = fresh.get();
    entries_.push_back(std::move(fresh));
  }
  bool ok = CompressMessage(&e->z, in, n, out);
  deflateReset(&e->z);  // shared: every message starts without context
  return ok;
}

}  // namespace nlws
