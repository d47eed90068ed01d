#include "server_tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>
#include <strings.h>

#include <algorithm>

namespace nlws {

namespace {

// The server whose vhost is being created (lws calls back from inside
// lws_create_vhost on this thread).
thread_local const ServerConfig* pending_cfg = nullptr;
thread_local ServerTls* pending_tls = nullptr;

std::string LastSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return std::string("unknown error");
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Every certificate of a PEM text; the caller frees them.
std::vector<X509*> ReadCerts(const std::string& pem) {
  std::vector<X509*> out;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return out;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) out.push_back(cert);
  BIO_free(bio);
  ERR_clear_error();  // the read loop ends on an expected "no start line"
  return out;
}

// node-lws speaks HTTP/1.1 only: choose it when the client offers it, as the
// lws vhost does (vi.alpn), and no protocol otherwise.
int SelectHttp11(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                 unsigned int inlen, void*) {
  static const unsigned char kHttp11[] = "\x08http/1.1";
  unsigned char* sel = nullptr;
  if (SSL_select_next_proto(&sel, outlen, kHttp11, sizeof kHttp11 - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

// An SSL_CTX serving one certificate (an SNI entry), set up as lws sets up
// its vhosts' contexts.
SSL_CTX* NewSniContext(const ServerConfig::SniCert& sc, std::string* error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    *error = "SSL_CTX_new failed: " + LastSslError();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_alpn_select_cb(ctx, SelectHttp11, nullptr);
  bool ok = false;
  std::vector<X509*> leaf = ReadCerts(sc.cert);
  BIO* bio = BIO_new_mem_buf(sc.key.data(), static_cast<int>(sc.key.size()));
  EVP_PKEY* key = bio ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr;
  if (bio) BIO_free(bio);
  if (leaf.empty()) {
    *error = "no certificate in tls.sni['" + sc.name + "'].cert";
  } else if (!key) {
    *error = "cannot read tls.sni['" + sc.name + "'].key: " + LastSslError();
  } else if (SSL_CTX_use_certificate(ctx, leaf[0]) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
             SSL_CTX_check_private_key(ctx) != 1) {
    *error = "tls.sni['" + sc.name + "']: " + LastSslError();
  } else if (!AddChain(ctx, sc.chain)) {
    *error = "tls.sni['" + sc.name + "']: the chain was refused: " + LastSslError();
  } else {
    ok = true;
  }
  for (X509* c : leaf) X509_free(c);
  if (key) EVP_PKEY_free(key);
  if (!ok) {
    SSL_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

bool NameMatches(const std::string& pattern, const char* name) {
  if (strcasecmp(pattern.c_str(), name) == 0) return true;
  // "*.example.com" matches exactly one more label: "a.example.com".
  if (pattern.size() < 3 || pattern[0] != '*' || pattern[1] != '.') return false;
  const char* dot = strchr(name, '.');
  return dot && dot != name && strcasecmp(dot + 1, pattern.c_str() + 2) == 0;
}

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

// ---- ServerTls ---------------------------------------------------------------------

std::unique_ptr<ServerTls> ServerTls::Create(const ServerConfig& cfg, std::string* error) {
  std::unique_ptr<ServerTls> t(new ServerTls());
  t->request_cert_ = cfg.tls_request_cert;
  t->reject_unauthorized_ = cfg.tls_reject_unauthorized;
  t->client_ca_ = cfg.tls_client_ca;
  for (const ServerConfig::SniCert& sc : cfg.tls_sni) {
    SSL_CTX* ctx = NewSniContext(sc, error);
    if (!ctx) return nullptr;  // the destructor frees the ones made so far
    t->sni_.emplace_back(sc.name, ctx);
    if (!t->ConfigureVerify(ctx)) {
      *error = "tls.ca: no certificate could be used to verify clients";
      return nullptr;
    }
  }
  return t;
}

ServerTls::~ServerTls() {
  // The vhost (and its SSL_CTX) usually outlives this server: its callback
  // must not find us any more. At context teardown lws has destroyed the
  // vhost already; our own reference keeps the SSL_CTX valid until here.
  // Connections that switched to an SNI context hold their own reference.
  if (vhost_ctx_) {
    SSL_CTX_set_tlsext_servername_arg(vhost_ctx_, nullptr);
    SSL_CTX_free(vhost_ctx_);
  }
  for (auto& kv : sni_) SSL_CTX_free(kv.second);
}

ServerTls::Pending::Pending(ServerTls* tls) { pending_tls = tls; }
ServerTls::Pending::~Pending() { pending_tls = nullptr; }

bool ServerTls::ConfigureVerify(SSL_CTX* ctx) {
  if (!request_cert_) return true;
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int loaded = 0;
  for (X509* cert : ReadCerts(client_ca_)) {
    if (X509_STORE_add_cert(store, cert) == 1) loaded++;
    SSL_CTX_add_client_CA(ctx, cert);  // named in the CertificateRequest
    X509_free(cert);
  }
  ERR_clear_error();
  if (!loaded && reject_unauthorized_) return false;
  static const unsigned char kSessionContext[] = "node-lws";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  if (reject_unauthorized_) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else {
    // Ask for a certificate and accept any (or none); the verify result
    // stays readable with SSL_get_verify_result (PeerCertificate).
    SSL_CTX_set_verify(
        ctx, SSL_VERIFY_PEER, +[](int, X509_STORE_CTX*) { return 1; });
  }
  return true;
}

bool ServerTls::Configure(SSL_CTX* vhost_ctx) {
  SSL_CTX_up_ref(vhost_ctx);
  vhost_ctx_ = vhost_ctx;
  if (!ConfigureVerify(vhost_ctx)) return false;
  SSL_CTX_set_tlsext_servername_callback(vhost_ctx, OnServername);
  SSL_CTX_set_tlsext_servername_arg(vhost_ctx, this);
  return true;
}

int ServerTls::OnServername(SSL* ssl, int*, void* arg) {
  // Each TLS server has its own vhost, none of them listening in lws's sense
  // (port 0): lws's own callback would pick "the first vhost on that port",
  // another server's certificate. This one chooses among this server's own
  // certificates; a name it does not know gets the default one.
  auto* self = static_cast<ServerTls*>(arg);
  if (!self || self->sni_.empty()) return SSL_TLSEXT_ERR_OK;
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name || !*name) return SSL_TLSEXT_ERR_OK;
  SSL_CTX* found = nullptr;
  for (const auto& kv : self->sni_)  // exact names first, then wildcards
    if (kv.first[0] != '*' && NameMatches(kv.first, name)) found = found ? found : kv.second;
  for (const auto& kv : self->sni_)
    if (!found && kv.first[0] == '*' && NameMatches(kv.first, name)) found = kv.second;
  if (found) SSL_set_SSL_CTX(ssl, found);
  return SSL_TLSEXT_ERR_OK;
}

// ---- the vhost ---------------------------------------------------------------------

int OnServerTlsContext(SSL_CTX* ssl_ctx) {
  // lws loads only the first certificate of a PEM from memory: the rest of
  // the chain (intermediates, tls.ca) goes in here.
  if (pending_cfg && !AddChain(ssl_ctx, pending_cfg->tls_chain)) return 1;  // listen() rejects
  if (pending_tls) return pending_tls->Configure(ssl_ctx) ? 0 : 1;
  // No ServerTls: serve this context's own certificate, whatever the SNI says.
  SSL_CTX_set_tlsext_servername_callback(
      ssl_ctx, +[](SSL*, int*, void*) { return SSL_TLSEXT_ERR_OK; });
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
  pending_cfg = &cfg;
  lws_vhost* vh = lws_create_vhost(ctx, &vi);
  pending_cfg = nullptr;
  if (!vh) *error = "lws rejected the TLS certificate, key or chain";
  return vh;
}

// ---- connections -------------------------------------------------------------------

void PeerCertificate(lws* wsi, std::string* der, std::string* verify_error) {
  der->clear();
  verify_error->clear();
  SSL* ssl = wsi ? lws_get_ssl(wsi) : nullptr;
  if (!ssl) return;
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return;
  int n = i2d_X509(cert, nullptr);
  if (n > 0) {
    der->resize(static_cast<size_t>(n));
    auto* p = reinterpret_cast<unsigned char*>(&(*der)[0]);
    i2d_X509(cert, &p);
  }
  X509_free(cert);
  long v = SSL_get_verify_result(ssl);
  if (v != X509_V_OK) *verify_error = X509_verify_cert_error_string(v);
}

}  // namespace nlws
