// Server TLS: each TLS server gets its own non-listening lws vhost holding its
// certificate, key and chain; accepted sockets are adopted into it with TLS,
// and lws encrypts (LwsTlsWire in wire.h).
//
// Beyond what lws sets up, a ServerTls (owned by the Listener) holds the
// server's own TLS settings: client certificates (mutual TLS) and the extra
// certificates chosen by the name a client sends (SNI), each in an SSL_CTX of
// its own that a servername callback on the vhost's SSL_CTX switches to.
//
// Service thread.
#pragma once

#include <libwebsockets.h>
#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "options.h"

namespace nlws {

class ServerTls {
 public:
  // The SNI contexts and trust settings of cfg; null and *error when a
  // certificate or key is refused.
  static std::unique_ptr<ServerTls> Create(const ServerConfig& cfg, std::string* error);
  ~ServerTls();
  ServerTls(const ServerTls&) = delete;
  ServerTls& operator=(const ServerTls&) = delete;

  // While a Pending is alive, the vhost lws creates on this thread (through
  // CreateServerTlsVhost) is configured by `tls`.
  class Pending {
   public:
    explicit Pending(ServerTls* tls);
    ~Pending();
  };

  // The vhost's SSL_CTX, from OnServerTlsContext: client certificate
  // settings and the servername callback. False to fail the vhost.
  bool Configure(SSL_CTX* vhost_ctx);

 private:
  ServerTls() = default;
  bool ConfigureVerify(SSL_CTX* ctx);
  static int OnServername(SSL* ssl, int* alert, void* arg);

  bool request_cert_ = false;
  bool reject_unauthorized_ = true;
  std::string client_ca_;                              // PEM
  SSL_CTX* vhost_ctx_ = nullptr;                       // lws's, and a reference of ours
  std::vector<std::pair<std::string, SSL_CTX*>> sni_;  // lower-case name -> context (ours)
};

// A vhost named `name` (lws keeps the pointer: it must outlive the vhost)
// serving cfg's certificate; null and *error when lws refuses it.
lws_vhost* CreateServerTlsVhost(lws_context* ctx, const lws_protocols* protocols,
                                const ServerConfig& cfg, const char* name, std::string* error);

// LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS, while a vhost is being
// created: adds the chain and hands the SSL_CTX to the pending ServerTls (or,
// without one, pins it to its own certificate). Returns non-zero to fail the
// vhost.
int OnServerTlsContext(SSL_CTX* ssl_ctx);

// Adds the certificates in `pem` to an SSL_CTX's chain; false on failure.
bool AddChain(SSL_CTX* ssl_ctx, const std::string& pem);

// The certificate the client of a TLS connection presented (DER; empty when
// none) and, when it did not verify, OpenSSL's reason (empty when it did).
void PeerCertificate(lws* wsi, std::string* der, std::string* verify_error);

}  // namespace nlws
