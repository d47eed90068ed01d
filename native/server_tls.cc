#include "server_tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <string.h>

namespace nlws {

namespace {

// The chain of the vhost being created (lws calls back from inside
// lws_create_vhost on this thread).
thread_local const std::string* pending_chain = nullptr;

}  // namespace

bool AddChain(SSL_CTX* ssl_ctx, const std::string& pem) {
  if (pem.empty()) return true;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  bool ok = true;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add_extra_chain_cert(ssl_ctx, cert) != 1) {  // takes ownership on success
      X509_free(cert);
      ok = false;
      break;
    }
  }
  BIO_free(bio);
  ERR_clear_error();  // the read loop ends on an expected "no start line"
  return ok;
}

int OnServerTlsContext(SSL_CTX* ssl_ctx) {
  // Each TLS server has its own vhost, none of them listening in lws's sense
  // (port 0). lws's SNI callback would pick "the first vhost on that port"
  // for a client that sends SNI: another server's certificate. Each SSL_CTX
  // serves its own certificate, whatever the SNI says.
  SSL_CTX_set_tlsext_servername_callback(
      ssl_ctx, +[](SSL*, int*, void*) { return SSL_TLSEXT_ERR_OK; });
  // lws loads only the first certificate of a PEM from memory: the rest of
  // the chain (intermediates, tls.ca) goes in here.
  if (pending_chain && !AddChain(ssl_ctx, *pending_chain)) return 1;  // listen() rejects
  return 0;
}

lws_vhost* CreateServerTlsVhost(lws_context* ctx, const lws_protocols* protocols,
                                const ServerConfig& cfg, const char* name, std::string* error) {
  lws_context_creation_info vi;
  memset(&vi, 0, sizeof vi);
  vi.vhost_name = name;
  vi.port = CONTEXT_PORT_NO_LISTEN_SERVER;
  vi.protocols = protocols;
  vi.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
  vi.server_ssl_cert_mem = cfg.tls_cert.data();
  vi.server_ssl_cert_mem_len = static_cast<unsigned int>(cfg.tls_cert.size());
  vi.server_ssl_private_key_mem = cfg.tls_key.data();
  vi.server_ssl_private_key_mem_len = static_cast<unsigned int>(cfg.tls_key.size());
  if (!cfg.tls_passphrase.empty()) vi.ssl_private_key_password = cfg.tls_passphrase.c_str();
  vi.alpn = "http/1.1";  // node-lws speaks HTTP/1.1 only; lws would offer h2 first
  pending_chain = &cfg.tls_chain;
  lws_vhost* vh = lws_create_vhost(ctx, &vi);
  pending_chain = nullptr;
  if (!vh) *error = "lws rejected the TLS certificate, key or chain";
  return vh;
}

}  // namespace nlws
