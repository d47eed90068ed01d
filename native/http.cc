#include "http.h"

#include <libwebsockets.h>
#include <string.h>
#include <strings.h>

#include <algorithm>
#include <cctype>

namespace nlws {

const std::string* HttpHeaders::Get(const char* lower_name) const {
  for (const auto& kv : list)
    if (kv.first == lower_name) return &kv.second;
  return nullptr;
}

size_t FindHeaderEnd(const char* p, size_t n) {
  if (n < 4) return 0;
  const void* hit = memmem(p, n, "\r\n\r\n", 4);
  if (!hit) return 0;
  return static_cast<size_t>(static_cast<const char*>(hit) - p) + 4;
}

namespace {

bool IsTokenChar(unsigned char c) {
  if (c <= 32 || c >= 127) return false;
  return !strchr("()<>@,;:\\\"/[]?={} \t", c);
}

std::string Trim(const char* b, const char* e) {
  while (b < e && (*b == ' ' || *b == '\t')) b++;
  while (e > b && (e[-1] == ' ' || e[-1] == '\t')) e--;
  return std::string(b, e);
}

// Parses "Name: value" lines from p (after the start line) up to the blank line.
bool ParseHeaderLines(const char* p, const char* end, HttpHeaders* out) {
  // One allocation for the list, not one per doubling (a browser's upgrade
  // has ~15 header lines): a connection's handshake makes fewer temporaries.
  out->list.reserve(out->list.size() + static_cast<size_t>(std::count(p, end, '\n')));
  while (p < end) {
    const char* eol = static_cast<const char*>(memmem(p, end - p, "\r\n", 2));
    if (!eol) return false;
    if (eol == p) return true;  // blank line: end of headers
    const char* colon = static_cast<const char*>(memchr(p, ':', eol - p));
    if (!colon || colon == p) return false;
    std::string name;
    name.reserve(colon - p);
    for (const char* c = p; c < colon; c++) {
      if (!IsTokenChar(static_cast<unsigned char>(*c))) return false;
      name.push_back(static_cast<char>(tolower(static_cast<unsigned char>(*c))));
    }
    for (const char* c = colon + 1; c < eol; c++) {
      unsigned char u = static_cast<unsigned char>(*c);
      if ((u < 32 && u != '\t') || u == 127) return false;
    }
    out->list.emplace_back(std::move(name), Trim(colon + 1, eol));
    p = eol + 2;
  }
  return false;
}

}  // namespace

bool ParseHttpRequest(const char* p, size_t n, HttpRequest* out) {
  const char* end = p + n;
  const char* eol = static_cast<const char*>(memmem(p, n, "\r\n", 2));
  if (!eol) return false;
  const char* sp1 = static_cast<const char*>(memchr(p, ' ', eol - p));
  if (!sp1 || sp1 == p) return false;
  const char* sp2 = static_cast<const char*>(memchr(sp1 + 1, ' ', eol - sp1 - 1));
  if (!sp2 || sp2 == sp1 + 1) return false;
  for (const char* c = p; c < sp1; c++)
    if (!IsTokenChar(static_cast<unsigned char>(*c))) return false;
  out->method.assign(p, sp1);
  out->target.assign(sp1 + 1, sp2);
  for (unsigned char c : out->target)
    if (c <= 32 || c == 127) return false;
  std::string version(sp2 + 1, eol);
  if (version.size() != 8 || version.compare(0, 7, "HTTP/1.") != 0 ||
      !isdigit(static_cast<unsigned char>(version[7])))
    return false;
  out->version_minor = version[7] - '0';
  return ParseHeaderLines(eol + 2, end, &out->headers);
}

bool ParseHttpResponse(const char* p, size_t n, HttpResponse* out) {
  const char* end = p + n;
  const char* eol = static_cast<const char*>(memmem(p, n, "\r\n", 2));
  if (!eol || eol - p < 12) return false;
  if (memcmp(p, "HTTP/1.", 7) != 0 || !isdigit(static_cast<unsigned char>(p[7])) || p[8] != ' ')
    return false;
  out->version_minor = p[7] - '0';
  if (!isdigit(static_cast<unsigned char>(p[9])) || !isdigit(static_cast<unsigned char>(p[10])) ||
      !isdigit(static_cast<unsigned char>(p[11])))
    return false;
  out->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  if (eol - p > 12) {
    if (p[12] != ' ') return false;
    out->reason.assign(p + 13, eol);
  }
  return ParseHeaderLines(eol + 2, end, &out->headers);
}

bool HeaderHasToken(const std::string& value, const char* token) {
  for (const std::string& item : SplitHeaderList(value))
    if (strcasecmp(item.c_str(), token) == 0) return true;
  return false;
}

std::vector<std::string> SplitHeaderList(const std::string& value) {
  std::vector<std::string> items;
  const char* p = value.data();
  const char* end = p + value.size();
  while (p < end) {
    const char* comma = static_cast<const char*>(memchr(p, ',', end - p));
    const char* stop = comma ? comma : end;
    std::string item = Trim(p, stop);
    if (!item.empty()) items.push_back(std::move(item));
    p = comma ? comma + 1 : end;
  }
  return items;
}

bool IsValidWebSocketKey(const std::string& key) {
  // 16 bytes -> 22 base64 characters and "==".
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 22; i++)
    if (!strchr(kAlphabet, key[i]) || key[i] == '\0') return false;
  // The last character carries 2 data bits; the other 4 must be zero.
  const char* pos = strchr(kAlphabet, key[21]);
  return ((pos - kAlphabet) & 0x0F) == 0;
}

std::string Base64Encode(const uint8_t* p, size_t n) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8) | p[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (n - i == 1) {
    uint32_t v = uint32_t(p[i]) << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out += "==";
  } else if (n - i == 2) {
    uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

std::string WebSocketAccept(const std::string& key) {
  std::string input = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[20];
  lws_SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  return Base64Encode(digest, sizeof digest);
}

const char* MimeType(const std::string& path) {
  size_t dot = path.rfind('.');
  size_t slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
    return "application/octet-stream";
  std::string ext = path.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  static const struct {
    const char* ext;
    const char* type;
  } kTypes[] = {
      {"html", "text/html; charset=utf-8"},
      {"htm", "text/html; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"},
      {"mjs", "text/javascript; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},
      {"json", "application/json"},
      {"map", "application/json"},
      {"txt", "text/plain; charset=utf-8"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"svg", "image/svg+xml"},
      {"ico", "image/x-icon"},
      {"webp", "image/webp"},
      {"wasm", "application/wasm"},
      {"woff2", "font/woff2"},
      {"mp4", "video/mp4"},
      {"webm", "video/webm"},
      {"wav", "audio/wav"},
  };
  for (const auto& t : kTypes)
    if (ext == t.ext) return t.type;
  return "application/octet-stream";
}

bool PercentDecode(const std::string& in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); i++) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size() || !isxdigit(static_cast<unsigned char>(in[i + 1])) ||
          !isxdigit(static_cast<unsigned char>(in[i + 2])))
        return false;
      int v = std::stoi(in.substr(i + 1, 2), nullptr, 16);
      if (v == 0) return false;
      out->push_back(static_cast<char>(v));
      i += 2;
    } else {
      if (c == '\0') return false;
      out->push_back(c);
    }
  }
  return true;
}

const char* HttpStatusText(int status) {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

}  // namespace nlws
