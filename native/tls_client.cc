#include "tls_client.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

namespace nlws {

namespace {

std::string LastSslError() {
  unsigned long e = ERR_get_error();
  if (!e) return std::string();
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

bool IsIpLiteral(const std::string& host) {
  unsigned char tmp[16];
  return inet_pton(AF_INET, host.c_str(), tmp) == 1 || inet_pton(AF_INET6, host.c_str(), tmp) == 1;
}

}  // namespace

SSL_CTX* NewClientTlsContext(const std::string& ca_pem, std::string* error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    *error = "SSL_CTX_new failed: " + LastSslError();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  BIO* bio = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
  int loaded = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, cert) == 1) loaded++;
    X509_free(cert);
  }
  BIO_free(bio);
  ERR_clear_error();  // the read loop ends on an expected "no start line"
  if (!loaded) {
    SSL_CTX_free(ctx);
    *error = "no CA certificate could be read from tls.ca";
    return nullptr;
  }
  return ctx;
}

namespace {

// The client certificate (and its chain) and key on one SSL object.
bool UseClientCertificate(SSL* ssl, const std::string& cert_pem, const std::string& key_pem,
                          std::string* error) {
  BIO* bio = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* leaf = bio ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
  bool ok = leaf && SSL_use_certificate(ssl, leaf) == 1;
  if (leaf) X509_free(leaf);
  while (ok) {
    X509* extra = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    if (!extra) break;
    if (SSL_add0_chain_cert(ssl, extra) != 1) {  // takes ownership on success
      X509_free(extra);
      ok = false;
    }
  }
  if (bio) BIO_free(bio);
  ERR_clear_error();  // the read loop ends on an expected "no start line"
  if (!ok) {
    *error = "tls.cert: no usable certificate";
    return false;
  }
  bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = bio ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr;
  if (bio) BIO_free(bio);
  ok = key && SSL_use_PrivateKey(ssl, key) == 1 && SSL_check_private_key(ssl) == 1;
  if (key) EVP_PKEY_free(key);
  if (!ok) *error = "tls.key: " + LastSslError();
  return ok;
}

}  // namespace

std::unique_ptr<TlsClient> TlsClient::Create(SSL_CTX* ctx, const std::string& host, bool verify,
                                             const std::string& cert, const std::string& key,
                                             std::string* error, const char** code) {
  *code = "ERR_TLS_HANDSHAKE";
  std::unique_ptr<TlsClient> t(new TlsClient());
  t->verify_ = verify;
  t->ssl_ = SSL_new(ctx);
  t->rbio_ = BIO_new(BIO_s_mem());
  t->wbio_ = BIO_new(BIO_s_mem());
  if (!t->ssl_ || !t->rbio_ || !t->wbio_) {
    if (t->rbio_ && !t->ssl_) BIO_free(t->rbio_);
    if (t->wbio_ && !t->ssl_) BIO_free(t->wbio_);
    *error = "TLS set-up failed: " + LastSslError();
    return nullptr;
  }
  SSL_set_bio(t->ssl_, t->rbio_, t->wbio_);
  SSL_set_connect_state(t->ssl_);
  if (!cert.empty() && !UseClientCertificate(t->ssl_, cert, key, error)) {
    *code = "ERR_TLS_CERT";
    return nullptr;
  }
  bool ip = IsIpLiteral(host);
  if (!ip) SSL_set_tlsext_host_name(t->ssl_, host.c_str());
  if (verify) {
    SSL_set_verify(t->ssl_, SSL_VERIFY_PEER, nullptr);
    X509_VERIFY_PARAM* param = SSL_get0_param(t->ssl_);
    if (ip)
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    else
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  } else {
    SSL_set_verify(t->ssl_, SSL_VERIFY_NONE, nullptr);
  }
  return t;
}

TlsClient::~TlsClient() {
  if (ssl_) SSL_free(ssl_);  // frees both BIOs
}

void TlsClient::Feed(const uint8_t* p, size_t n) {
  if (n) BIO_write(rbio_, p, static_cast<int>(n));
}

void TlsClient::SetError(int ret) {
  int err = SSL_get_error(ssl_, ret);
  long verify = SSL_get_verify_result(ssl_);
  std::string detail = LastSslError();
  if (verify_ && verify != X509_V_OK) {
    code_ = "ERR_TLS_CERT_VERIFY";
    error_ = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
    return;
  }
  code_ = "ERR_TLS_HANDSHAKE";
  if (!detail.empty())
    error_ = "TLS error: " + detail;
  else if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL)
    error_ = "the server closed the TLS connection";
  else
    error_ = "TLS error " + std::to_string(err);
}

int TlsClient::Handshake() {
  int r = SSL_do_handshake(ssl_);
  if (r == 1) return 1;
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
  SetError(r);
  return -1;
}

int TlsClient::Read(uint8_t* out, size_t n) {
  int r = SSL_read(ssl_, out, static_cast<int>(n));
  if (r > 0) return r;
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
  SetError(r);
  return -1;
}

int TlsClient::Write(const uint8_t* p, size_t n) {
  if (!n) return 0;
  int r = SSL_write(ssl_, p, static_cast<int>(n));
  if (r > 0) return r;
  SetError(r);
  return -1;
}

bool TlsClient::has_output() const { return BIO_ctrl_pending(wbio_) > 0; }

void TlsClient::TakeOutput(std::string* out) {
  size_t pending = BIO_ctrl_pending(wbio_);
  if (!pending) return;
  size_t old = out->size();
  out->resize(old + pending);
  int got = BIO_read(wbio_, &(*out)[old], static_cast<int>(pending));
  out->resize(old + (got > 0 ? static_cast<size_t>(got) : 0));
}

}  // namespace nlws
