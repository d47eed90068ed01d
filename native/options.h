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
  std::vector<std::string> allowed_origins;  // empty: any Origin
  std::string path;         // empty: upgrades on any path; else only this one (404 otherwise)
  bool health = false;      // GET /health answers JSON
  std::string static_root;  // real path of a folder served over HTTP; empty: none
  std::string static_index;
  // TLS: PEM text; an empty cert means plain TCP.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_passphrase;
  std::string tls_chain;  // PEM: intermediate / CA certificates sent after the leaf
};

// A client connection to start: its socket is already connecting.
struct ClientConfig {
  ConnShared* shared = nullptr;  // owns one reference
  int fd = -1;
  std::string address;
  int port = 0;
  std::string request;  // the HTTP upgrade request, sent once connected
  std::string accept;   // the Sec-WebSocket-Accept value to expect
  std::vector<std::string> protocols;
  ConnOptions conn;  // handshake_timeout_ms covers connect + handshake
  // wss: TLS over our own socket (tls_client.h).
  bool tls = false;
  std::string host;  // SNI and certificate host name
  std::string ca;    // PEM: the CAs to trust (Node's root certificates unless given)
  bool reject_unauthorized = true;
  ~ClientConfig();  // closes fd and drops the reference when not handed over
};

}  // namespace nlws
