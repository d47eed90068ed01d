// The opening handshake (RFC 6455 section 4), both sides, with no I/O.
//
// ServerHandshake collects a request head, checks it against RFC 6455 and
// the server's admission rules (path, Origin, maxConnections,
// maxHeaderBytes, subprotocols, permessage-deflate) and says what to answer.
// ClientHandshake checks the server's response to our upgrade request.
// Both live only until the connection is open; the Conn frees them then.
//
// Service thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "deflate.h"
#include "http.h"
#include "options.h"

namespace nlws {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

class Conn;

// A request whose head is still arriving, among its listener's such requests
// (ordered oldest first) with the bytes counted for it against
// maxPendingHeaderBytes (Listener::HeadPending / HeadDone).
struct PendingHead {
  Conn* conn = nullptr;
  size_t counted = 0;
  bool listed = false;  // among them
};

// What a TLS handshake in progress holds once lws has the socket: the SSL
// object (7.6 KB), OpenSSL's handshake buffer (21.8 KB) and record buffers
// (16.6 KB), and buffered BIOs (4 KB), as heaptrack measured them.
constexpr size_t kTlsHandshakeHeld = 48 * 1024;

class ServerHandshake {
 public:
  enum class Result : uint8_t {
    kMore,     // the request head is not complete yet
    kHttp,     // a request without an upgrade: request() for the HTTP responder
    kReject,   // answer status() with message() and extra_headers()
    kUpgrade,  // an acceptable upgrade (JavaScript may still verify it)
  };

  ServerHandshake(std::string remote_address, int remote_port)
      : remote_address(std::move(remote_address)), remote_port(remote_port) {}

  // Feeds request bytes. open_connections: the server's open WebSocket
  // connections (for maxConnections).
  Result Feed(const uint8_t* p, size_t n, const ServerConfig& cfg, size_t open_connections);

  const HttpRequest& request() const { return req_; }
  HttpRequest& mutable_request() { return req_; }
  // Bytes the unfinished head holds (its buffer's capacity), after kMore.
  size_t held() const { return head_.capacity(); }
  PendingHead pending;  // its place in the listener's list while the head arrives
  // Server TLS: lws has the socket and its TLS handshake is not done (no
  // request byte decrypted yet); `pending` counts kTlsHandshakeHeld meanwhile.
  bool tls_handshake = false;
  int status() const { return status_; }
  const std::string& message() const { return message_; }
  const std::string& extra_headers() const { return extra_; }

  // What kUpgrade found.
  std::string remote_address;
  int remote_port;
  std::string key;
  std::string offered;       // Sec-WebSocket-Protocol values, joined with ", "
  std::string ext_response;  // Sec-WebSocket-Extensions to answer; empty: none
  std::unique_ptr<PerMessageDeflate> pmd;
  std::string rest;  // bytes the client sent right behind its request

 private:
  Result Reject(int status, const char* message, const char* extra = "");

  std::string head_;
  size_t scanned_ = 0;  // bytes of head_ checked for bare LF line ends
  HttpRequest req_;
  int status_ = 0;
  std::string message_;
  std::string extra_;
};

// The subprotocol to select: the first one the client offers that the server
// accepts; empty when none.
std::string ChooseProtocol(const std::vector<std::string>& accepted, const std::string& offered);

// The 101 response; extra_headers are complete header lines ("Name: value\r\n").
std::string UpgradeResponse(const std::string& key, const std::string& protocol,
                            const std::string& ext_response, const std::string& extra_headers);

// The proxy's answer to our CONNECT request (a client through an HTTP proxy):
// a 2xx opens the tunnel, anything else fails the connection.
class ProxyHandshake {
 public:
  enum class Result : uint8_t { kMore, kFail, kTunnel };

  Result Feed(const uint8_t* p, size_t n, size_t max_header_bytes);

  // kFail
  std::string error_code;
  std::string error_message;
  int error_status = 0;
  HeaderList headers;  // of a refusal (e.g. Proxy-Authenticate)
  // kTunnel: bytes already received through the tunnel
  std::string rest;

 private:
  Result Fail(const char* code, std::string message, int status = 0);
  std::string buf_;
};

class ClientHandshake {
 public:
  enum class Result : uint8_t { kMore, kFail, kOpen };

  ClientHandshake(std::string request, std::string accept, std::vector<std::string> offered,
                  DeflateOptions offer);

  Result Feed(const uint8_t* p, size_t n, size_t max_header_bytes);

  // The request to send (with the permessage-deflate offer when enabled).
  std::string request;
  std::string address;  // the server's (or its Unix socket's path), for error messages
  int port = 0;
  bool unix_socket = false;
  int connect_errno = 0;  // connect() failed with this (SO_ERROR)
  // kFail
  std::string error_code;
  std::string error_message;
  int error_status = 0;
  HeaderList error_headers;  // of a response that refused the upgrade
  // kOpen
  int status = 0;
  std::string protocol;
  HeaderList headers;
  std::unique_ptr<PerMessageDeflate> pmd;
  std::string rest;  // frames the server sent right behind its response

 private:
  Result Fail(const char* code, std::string message, int status = 0);

  std::string accept_;
  std::vector<std::string> offered_;
  DeflateOptions offer_;
  std::string buf_;
};

}  // namespace nlws
