// What JavaScript configures, as the service thread reads it. Filled on the
// main thread (js_convert.cc) from objects that lib/ validated and
// normalised, then handed to the service thread inside a Command and never
// changed again.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "deflate.h"

namespace nlws {

struct ConnShared;

// Limits and timings of one connection: one struct for server and client
// connections (lib/options.ts: connOptions()).
struct ConnOptions {
  uint64_t max_payload = 64 * 1024 * 1024;
  int64_t high_water_mark = 1024 * 1024;         // send: send() returns false above it
  int64_t receive_high_water_mark = 256 * 1024;  // receive: stop reading above it
  uint32_t handshake_timeout_ms = 10000;
  uint32_t close_timeout_ms = 5000;
  uint32_t max_header_bytes = 16 * 1024;
  uint32_t heartbeat_interval_ms = 0;  // 0: no heartbeat
  uint32_t heartbeat_timeout_ms = 0;
  bool text_as_buffer = false;  // large text messages reach JavaScript as Buffers
  bool lend_messages = false;   // large message Buffers are lent for the call (kLentBuffer)
  DeflateOptions deflate;       // server: what to accept; client: what to offer
  // Publish (the service thread queues it): past this many buffered bytes a
  // message is dropped (drop_on_backpressure) or the connection closed with
  // 1008. 0: no bound. send() applies the same rule on the main thread.
  int64_t max_backpressure = 0;
  bool drop_on_backpressure = false;
};

// A listening server.
struct ServerConfig {
  uint32_t id = 0;
  int fd = -1;
  ConnOptions conn;
  std::vector<std::string> protocols;
  bool verify = false;           // JavaScript decides each upgrade (kEvUpgrade -> kAccept/kReject)
  uint32_t max_connections = 0;  // 0: no limit; beyond it, 503
  // What the request heads still arriving may hold together; past it the
  // oldest is answered 503 and closed.
  size_t max_pending_header_bytes = 8 * 1024 * 1024;
  std::vector<std::string> allowed_origins;  // empty: any Origin
  std::string path;         // empty: upgrades on any path; else only this one (404 otherwise)
  bool health = false;      // GET /health answers JSON
  std::string static_root;  // real path of a folder served over HTTP; empty: none
  std::string static_index;
  // Header lines ("Name: value\r\n") added to every 101 response.
  std::string upgrade_headers;
  // A Unix socket server: the socket file to remove on close (empty: TCP).
  std::string unix_path;
  uint64_t unix_dev = 0;
  uint64_t unix_ino = 0;
  // TLS: PEM text; an empty cert means plain TCP.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_passphrase;
  std::string tls_chain;  // PEM: intermediate / CA certificates sent after the leaf
  // Client certificates (mutual TLS): ask for one; refuse a client without a
  // valid one (reject_unauthorized) or let JavaScript see the verify result.
  bool tls_request_cert = false;
  bool tls_reject_unauthorized = true;
  std::string tls_client_ca;  // PEM: the CAs client certificates must chain to
  // More certificates chosen by the server name a client sends (SNI).
  struct SniCert {
    std::string name;  // a host name, or "*.example.com"
    std::string cert;  // PEM: the leaf
    std::string key;   // PEM, unencrypted
    std::string chain;
  };
  std::vector<SniCert> tls_sni;
};

// A client connection to start: its socket is already connecting.
struct ClientConfig {
  ConnShared* shared = nullptr;  // owns one reference
  int fd = -1;
  std::string address;  // an IP literal, or the path of a Unix socket (unix_socket)
  int port = 0;
  bool unix_socket = false;
  std::string request;  // the HTTP upgrade request, sent once connected
  std::string accept;   // the Sec-WebSocket-Accept value to expect
  std::vector<std::string> protocols;
  ConnOptions conn;  // handshake_timeout_ms covers connect + handshake
  // Through an HTTP proxy: the CONNECT request to send first (empty: direct);
  // address and port are then the proxy's.
  std::string proxy_request;
  // wss: TLS over our own socket (tls_client.h).
  bool tls = false;
  std::string host;  // SNI and certificate host name
  std::string ca;    // PEM: the CAs to trust (Node's root certificates unless given)
  bool reject_unauthorized = true;
  std::string cert;  // PEM: a client certificate (mutual TLS); empty: none
  std::string key;   // PEM, unencrypted: its key
  ~ClientConfig();   // closes fd and drops the reference when not handed over
};

}  // namespace nlws
