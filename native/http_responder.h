// Answers to HTTP requests that are not WebSocket upgrades (GET /health,
// static files, 404/426) and to refused upgrades, as complete HTTP/1.1
// responses. Every response closes the connection. No sockets: the caller
// queues the bytes.
//
// Service thread (static files are read here, from the page cache, up to
// 64 MiB).
#pragma once

#include <cstdint>
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
// The answer to a request without an upgrade.
std::string AnswerHttp(const ServerConfig& cfg, const HttpRequest& req, size_t open_connections,
                       int64_t uptime_ms);

}  // namespace nlws
