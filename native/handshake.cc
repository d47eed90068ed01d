#include "handshake.h"

#include <string.h>

#include <algorithm>

namespace nlws {

namespace {

// Every value of a header that may appear once, or null when it is absent;
// *repeated when it appears more than once.
const std::string* Single(const HttpHeaders& h, const char* name, bool* repeated) {
  const std::string* found = nullptr;
  for (const auto& kv : h.list) {
    if (kv.first != name) continue;
    if (found) *repeated = true;
    found = &kv.second;
  }
  return found;
}

std::string JoinValues(const HttpHeaders& h, const char* name) {
  std::string out;
  for (const auto& kv : h.list) {
    if (kv.first != name) continue;
    if (!out.empty()) out += ", ";
    out += kv.second;
  }
  return out;
}

// Appends the bytes that arrived to `buf`, a header block being read, and returns the position
// just past its blank line, or 0 while it is not complete. Of what `buf` held before, only its
// last 3 bytes are scanned again.
size_t AppendHeaderBytes(std::string* buf, const uint8_t* in, size_t len) {
  size_t scan_from = buf->size() > 3 ? buf->size() - 3 : 0;
  buf->append(reinterpret_cast<const char*>(in), len);
  size_t end = FindHeaderEnd(buf->data() + scan_from, buf->size() - scan_from);
  return end ? end + scan_from : 0;
}

// Is the header block in `buf` (complete at `end`, or not yet when `end` is 0) larger than
// max_header_bytes, its blank line not counted?
bool HeaderTooLarge(const std::string& buf, size_t end, size_t max_header_bytes) {
  return (!end && buf.size() > max_header_bytes) || end > max_header_bytes + 4;
}

}  // namespace

ServerHandshake::Result ServerHandshake::Reject(int status, const char* message,
                                                const char* extra) {
  status_ = status;
  message_ = message;
  extra_ = extra;
  return Result::kReject;
}

ServerHandshake::Result ServerHandshake::Feed(const uint8_t* p, size_t n, const ServerConfig& cfg,
                                              size_t open_connections) {
  size_t max_header_bytes = cfg.conn.max_header_bytes;
  size_t end = AppendHeaderBytes(&head_, p, n);
  // Lines must end with CRLF (RFC 9112 2.2 lets a server reject a bare LF):
  // answer at once rather than wait for a blank line that never comes.
  size_t limit = end ? end : head_.size();
  for (size_t i = scanned_; i < limit; i++) {
    if (head_[i] == '\n' && (i == 0 || head_[i - 1] != '\r'))
      return Reject(400, "Malformed HTTP request: lines must end with CRLF");
  }
  scanned_ = limit;
  if (HeaderTooLarge(head_, end, max_header_bytes))
    return Reject(431, "Request headers are larger than maxHeaderBytes");
  if (!end) return Result::kMore;

  if (!ParseHttpRequest(head_.data(), end, &req_)) return Reject(400, "Malformed HTTP request");
  rest = head_.substr(end);
  head_.clear();
  head_.shrink_to_fit();
  bool repeated = false;
  const std::string* upgrade = Single(req_.headers, "upgrade", &repeated);
  if (!upgrade) return Result::kHttp;
  if (!HeaderHasToken(*upgrade, "websocket"))
    return Reject(400, "Unsupported Upgrade header: expected websocket");
  if (req_.method != "GET") return Reject(400, "A WebSocket upgrade must use GET");
  if (req_.version_minor < 1) return Reject(400, "A WebSocket upgrade needs HTTP/1.1");
  const std::string* connection = req_.headers.Get("connection");
  if (!connection || !HeaderHasToken(*connection, "upgrade"))
    return Reject(400, "Missing Connection: Upgrade");
  // RFC 6455 11.3.1 and 11.3.5: Sec-WebSocket-Key and Sec-WebSocket-Version
  // must not appear more than once.
  const std::string* version = Single(req_.headers, "sec-websocket-version", &repeated);
  if (repeated)
    return Reject(400, "Sec-WebSocket-Version appears more than once",
                  "Sec-WebSocket-Version: 13\r\n");
  if (!version)
    return Reject(400, "Missing Sec-WebSocket-Version", "Sec-WebSocket-Version: 13\r\n");
  if (*version != "13")
    return Reject(426, "Unsupported WebSocket version: only 13 is supported",
                  "Sec-WebSocket-Version: 13\r\n");
  const std::string* k = Single(req_.headers, "sec-websocket-key", &repeated);
  if (repeated) return Reject(400, "Sec-WebSocket-Key appears more than once");
  if (!k || !IsValidWebSocketKey(*k)) return Reject(400, "Missing or invalid Sec-WebSocket-Key");
  if (!cfg.path.empty() && req_.target.substr(0, req_.target.find('?')) != cfg.path)
    return Reject(404, "No WebSocket endpoint at this path");
  if (!cfg.allowed_origins.empty()) {
    const std::string* origin = req_.headers.Get("origin");
    if (!origin || std::find(cfg.allowed_origins.begin(), cfg.allowed_origins.end(), *origin) ==
                       cfg.allowed_origins.end())
      return Reject(403, "Origin not allowed");
  }
  if (cfg.max_connections && open_connections >= cfg.max_connections)
    return Reject(503, "Too many connections", "Retry-After: 1\r\n");

  key = *k;
  offered = JoinValues(req_.headers, "sec-websocket-protocol");
  if (cfg.conn.deflate.enabled) {
    std::string offers = JoinValues(req_.headers, "sec-websocket-extensions");
    if (!offers.empty())
      pmd = PerMessageDeflate::Negotiate(cfg.conn.deflate, offers, &ext_response);
  }
  return Result::kUpgrade;
}

std::string ChooseProtocol(const std::vector<std::string>& accepted, const std::string& offered) {
  if (accepted.empty()) return std::string();
  for (const std::string& p : SplitHeaderList(offered))
    if (std::find(accepted.begin(), accepted.end(), p) != accepted.end()) return p;
  return std::string();
}

std::string UpgradeResponse(const std::string& key, const std::string& protocol,
                            const std::string& ext_response, const std::string& extra_headers) {
  // Built in one allocation, its pieces appended in place.
  static constexpr char kHead[] =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ";
  static constexpr char kProtocol[] = "Sec-WebSocket-Protocol: ";
  static constexpr char kExtensions[] = "Sec-WebSocket-Extensions: ";
  const std::string accept = WebSocketAccept(key);
  // sizeof counts each literal's NUL: room for the "\r\n" after its value.
  std::string resp;
  resp.reserve(sizeof kHead + accept.size() + 1 +
               (protocol.empty() ? 0 : sizeof kProtocol + protocol.size() + 1) +
               (ext_response.empty() ? 0 : sizeof kExtensions + ext_response.size() + 1) +
               extra_headers.size() + 2);
  resp.append(kHead).append(accept).append("\r\n");
  if (!protocol.empty()) resp.append(kProtocol).append(protocol).append("\r\n");
  if (!ext_response.empty()) resp.append(kExtensions).append(ext_response).append("\r\n");
  resp.append(extra_headers).append("\r\n");
  return resp;
}

// ---- proxy -------------------------------------------------------------------------

ProxyHandshake::Result ProxyHandshake::Fail(const char* code, std::string message, int status) {
  error_code = code;
  error_message = std::move(message);
  error_status = status;
  buf_.clear();
  buf_.shrink_to_fit();
  return Result::kFail;
}

ProxyHandshake::Result ProxyHandshake::Feed(const uint8_t* in, size_t len,
                                            size_t max_header_bytes) {
  size_t end = AppendHeaderBytes(&buf_, in, len);
  if (HeaderTooLarge(buf_, end, max_header_bytes))
    return Fail("ERR_PROXY_TUNNEL",
                "The proxy's response to CONNECT is larger than maxHeaderBytes (" +
                    std::to_string(max_header_bytes) + " bytes)");
  if (!end) return Result::kMore;
  HttpResponse res;
  if (!ParseHttpResponse(buf_.data(), end, &res))
    return Fail("ERR_PROXY_TUNNEL", "Malformed HTTP response from the proxy to CONNECT");
  if (res.status < 200 || res.status > 299) {
    headers = std::move(res.headers.list);
    std::string why = std::to_string(res.status) + (res.reason.empty() ? "" : " " + res.reason);
    // 407 is the proxy's own; some proxies (tinyproxy) answer bad credentials with 401.
    if (res.status == 407 || res.status == 401)
      return Fail("ERR_PROXY_AUTH_REQUIRED",
                  "The proxy requires authentication, or refused the credentials (" + why + ")",
                  res.status);
    return Fail("ERR_PROXY_TUNNEL", "The proxy refused the tunnel: " + why, res.status);
  }
  rest = buf_.substr(end);
  buf_.clear();
  buf_.shrink_to_fit();
  return Result::kTunnel;
}

// ---- client ------------------------------------------------------------------------

ClientHandshake::ClientHandshake(std::string req, std::string accept,
                                 std::vector<std::string> offered, DeflateOptions offer)
    : request(std::move(req)),
      accept_(std::move(accept)),
      offered_(std::move(offered)),
      offer_(offer) {
  if (offer_.enabled) {
    // Offer permessage-deflate: one more header before the request's blank line.
    request.insert(request.size() - 2,
                   "Sec-WebSocket-Extensions: " + PerMessageDeflate::Offer(offer_) + "\r\n");
  }
}

ClientHandshake::Result ClientHandshake::Fail(const char* code, std::string message, int status) {
  error_code = code;
  error_message = std::move(message);
  error_status = status;
  return Result::kFail;
}

ClientHandshake::Result ClientHandshake::Feed(const uint8_t* in, size_t len,
                                              size_t max_header_bytes) {
  size_t end = AppendHeaderBytes(&buf_, in, len);
  if (HeaderTooLarge(buf_, end, max_header_bytes))
    return Fail("ERR_HANDSHAKE", "The server's response headers are too large");
  if (!end) return Result::kMore;
  HttpResponse res;
  if (!ParseHttpResponse(buf_.data(), end, &res))
    return Fail("ERR_HANDSHAKE", "Malformed HTTP response to the upgrade request");
  if (res.status != 101) {
    error_headers = std::move(res.headers.list);
    return Fail("ERR_HANDSHAKE",
                "Unexpected server response: " + std::to_string(res.status) +
                    (res.reason.empty() ? "" : " " + res.reason),
                res.status);
  }
  const std::string* upgrade = res.headers.Get("upgrade");
  const std::string* connection = res.headers.Get("connection");
  if (!upgrade || !HeaderHasToken(*upgrade, "websocket") || !connection ||
      !HeaderHasToken(*connection, "upgrade"))
    return Fail("ERR_HANDSHAKE", "The 101 response lacks Upgrade: websocket / Connection: Upgrade",
                101);
  const std::string* accept = res.headers.Get("sec-websocket-accept");
  if (!accept || *accept != accept_)
    return Fail("ERR_HANDSHAKE", "Invalid Sec-WebSocket-Accept header", 101);
  std::string extensions = JoinValues(res.headers, "sec-websocket-extensions");
  if (!extensions.empty()) {
    if (!offer_.enabled)
      return Fail("ERR_HANDSHAKE", "The server accepted an extension that was not offered", 101);
    std::string error;
    pmd = PerMessageDeflate::Accept(offer_, extensions, &error);
    if (!pmd) return Fail("ERR_HANDSHAKE", error, 101);
  }
  const std::string* proto = res.headers.Get("sec-websocket-protocol");
  if (proto) {
    if (std::find(offered_.begin(), offered_.end(), *proto) == offered_.end()) {
      return Fail("ERR_PROTOCOL",
                  offered_.empty()
                      ? "The server chose a subprotocol though none was offered"
                      : "The server chose a subprotocol that was not offered: " + *proto);
    }
    protocol = *proto;
  } else if (!offered_.empty()) {
    return Fail("ERR_PROTOCOL", "The server accepted none of the offered subprotocols");
  }
  status = res.status;
  headers = std::move(res.headers.list);
  rest = buf_.substr(end);
  buf_.clear();
  buf_.shrink_to_fit();
  return Result::kOpen;
}

}  // namespace nlws
