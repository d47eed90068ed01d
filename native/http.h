// HTTP/1.1 as the WebSocket handshake needs it, with no I/O: header blocks,
// request and response parsing, header lists, the Sec-WebSocket-Key/Accept
// pair, status texts, MIME types and URL path decoding. Pure functions: any
// thread (used on the service thread by the handshake and the HTTP responder).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nlws {

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

}  // namespace nlws
