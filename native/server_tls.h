// Server TLS: each TLS server gets its own non-listening lws vhost holding its
// certificate, key and chain; accepted sockets are adopted into it with TLS,
// and lws encrypts (LwsTlsWire in wire.h).
//
// Service thread.
#pragma once

#include <libwebsockets.h>
#include <openssl/ssl.h>

#include <string>

#include "options.h"

namespace nlws {

// A vhost named `name` (lws keeps the pointer: it must outlive the vhost)
// serving cfg's certificate; null and *error when lws refuses it.
lws_vhost* CreateServerTlsVhost(lws_context* ctx, const lws_protocols* protocols,
                                const ServerConfig& cfg, const char* name, std::string* error);

// LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS, while a vhost is being
// created: adds the chain and pins the SSL_CTX to its own certificate.
// Returns non-zero to fail the vhost.
int OnServerTlsContext(SSL_CTX* ssl_ctx);

// Adds the certificates in `pem` to an SSL_CTX's chain; false on failure.
bool AddChain(SSL_CTX* ssl_ctx, const std::string& pem);

}  // namespace nlws
