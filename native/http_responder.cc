#include "http_responder.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

namespace nlws {

namespace {

std::string HttpHead(int status, const char* content_type, uint64_t content_length,
                     const std::string& extra_headers) {
  return "HTTP/1.1 " + std::to_string(status) + " " + HttpStatusText(status) +
         "\r\nConnection: close\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(content_length) + "\r\n" + extra_headers + "\r\n";
}

}  // namespace

std::string HttpReply(int status, const char* content_type, const std::string& body,
                      const std::string& extra_headers, bool head_only) {
  std::string out = HttpHead(status, content_type, body.size(), extra_headers);
  if (!head_only) out += body;
  return out;
}

FileBody::~FileBody() { close(fd_); }

bool FileBody::Read(uint8_t* p, size_t n) {
  while (n) {
    ssize_t got = read(fd_, p, n);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
    left_ -= static_cast<uint64_t>(got);
  }
  return true;
}

std::string HttpErrorReply(int status, const std::string& message,
                           const std::string& extra_headers) {
  return HttpReply(status, "text/plain; charset=utf-8", message + "\n", extra_headers);
}

namespace {

HttpAnswer ServeStatic(const ServerConfig& cfg, const std::string& target, bool head_only) {
  std::string raw = target.substr(0, target.find_first_of("?#"));
  std::string rel;
  if (raw.empty() || raw[0] != '/' || !PercentDecode(raw, &rel))
    return {HttpErrorReply(400, "Bad request path")};
  // No "." or ".." segment may appear, encoded or not.
  for (size_t i = 0; i <= rel.size();) {
    size_t j = rel.find('/', i);
    if (j == std::string::npos) j = rel.size();
    std::string seg = rel.substr(i, j - i);
    if (seg == "." || seg == "..") return {HttpErrorReply(404, "Not found")};
    i = j + 1;
  }
  std::string file = cfg.static_root + rel;
  if (!rel.empty() && rel.back() == '/') file += cfg.static_index;
  // Resolve symlinks: whatever the path names must lie inside the root.
  char resolved[PATH_MAX];
  struct stat st;
  for (int pass = 0; pass < 2; pass++) {
    if (!realpath(file.c_str(), resolved)) return {HttpErrorReply(404, "Not found")};
    std::string real(resolved);
    if (real != cfg.static_root &&
        real.compare(0, cfg.static_root.size() + 1, cfg.static_root + "/") != 0)
      return {HttpErrorReply(404, "Not found")};
    if (stat(resolved, &st) < 0) return {HttpErrorReply(404, "Not found")};
    if (S_ISDIR(st.st_mode) && pass == 0) {
      file = real + "/" + cfg.static_index;
      continue;
    }
    break;
  }
  if (!S_ISREG(st.st_mode)) return {HttpErrorReply(404, "Not found")};
  // A GET serves the file opened here, at the size it has then; its body is
  // sent as the socket takes it (Conn::SendFileChunk).
  int fd = -1;
  if (!head_only) {
    fd = open(resolved, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return {HttpErrorReply(404, "Not found")};
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
      close(fd);
      return {HttpErrorReply(404, "Not found")};
    }
  }
  HttpAnswer a;
  a.bytes = HttpHead(200, MimeType(resolved), static_cast<uint64_t>(st.st_size),
                     "X-Content-Type-Options: nosniff\r\n");
  if (fd >= 0 && st.st_size > 0)
    a.file.reset(new FileBody(fd, static_cast<uint64_t>(st.st_size)));
  else if (fd >= 0)
    close(fd);
  return a;
}

}  // namespace

HttpAnswer AnswerHttp(const ServerConfig& cfg, const HttpRequest& req, size_t open_connections,
                      int64_t uptime_ms) {
  bool get = req.method == "GET";
  bool head = req.method == "HEAD";
  std::string path = req.target.substr(0, req.target.find('?'));
  if (cfg.health && (get || head) && path == "/health") {
    std::string body = "{\"status\":\"ok\",\"connections\":" + std::to_string(open_connections) +
                       ",\"uptimeMs\":" + std::to_string(uptime_ms) + "}";
    return {HttpReply(200, "application/json", body, "Cache-Control: no-store\r\n", head)};
  }
  if (!cfg.static_root.empty() && (get || head)) return ServeStatic(cfg, req.target, head);
  if (cfg.health || !cfg.static_root.empty()) return {HttpErrorReply(404, "Not found")};
  return {HttpErrorReply(426, "This endpoint only accepts WebSocket connections",
                         "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n")};
}

}  // namespace nlws
