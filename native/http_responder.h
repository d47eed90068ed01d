// Answers to HTTP requests that are not WebSocket upgrades (GET /health,
// static files, 404/426) and to refused upgrades, as complete HTTP/1.1
// responses. Every response closes the connection. No sockets: the caller
// queues the bytes, and sends a static file's body from its FileBody as the
// socket takes it: by sendfile() where the transport can (nothing of the file
// is held), else read in chunks (a client that does not read holds one chunk,
// never the whole file).
//
// Service thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "http.h"
#include "options.h"

namespace nlws {

// The whole response: head and body (no body for HEAD requests).
std::string HttpReply(int status, const char* content_type, const std::string& body,
                      const std::string& extra_headers, bool head_only = false);
// A text/plain error answer.
std::string HttpErrorReply(int status, const std::string& message,
                           const std::string& extra_headers = std::string());

// The body of a static file being answered. Owns the descriptor (closed with it).
class FileBody {
 public:
  FileBody(int fd, uint64_t size) : fd_(fd), left_(size) {}
  ~FileBody();
  FileBody(const FileBody&) = delete;
  FileBody& operator=(const FileBody&) = delete;
  uint64_t left() const { return left_; }
  // Reads the next n bytes (n <= left()) into p. False when the file ended
  // early or could not be read: the answer cannot be completed.
  bool Read(uint8_t* p, size_t n);
  // For a transport that sends from the descriptor itself (sendfile): n
  // bytes left from its offset.
  int fd() const { return fd_; }
  void Sent(size_t n) { left_ -= n; }

 private:
  int fd_;
  uint64_t left_;
};

struct HttpAnswer {
  std::string bytes;               // the head, and the body unless `file` has it
  std::unique_ptr<FileBody> file;  // a static file's body, after `bytes`
};

// The answer to a request without an upgrade.
HttpAnswer AnswerHttp(const ServerConfig& cfg, const HttpRequest& req, size_t open_connections,
                      int64_t uptime_ms);

}  // namespace nlws
