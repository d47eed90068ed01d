// TLS for wss:// client connections, with OpenSSL over memory BIOs.
//
// lws 4.1.6 cannot make a raw TLS client connection: for method "RAW" it calls
// SSL_connect() before the socket exists (connect.c, without async DNS). So
// the client connects its own socket (which also gives the exact errno of a
// refusal) and runs TLS itself: ciphertext from lws's raw reads goes in with
// Feed(), plaintext comes out of Read(); Write() encrypts and TakeOutput()
// hands the ciphertext to the socket. Inside Node these OpenSSL calls bind to
// Node's own OpenSSL, as lws's do.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace nlws {

// An SSL_CTX trusting the CAs in `ca_pem`; null and *error on failure.
SSL_CTX* NewClientTlsContext(const std::string& ca_pem, std::string* error);

class TlsClient {
 public:
  // `host` is sent as SNI (unless it is an IP literal) and checked against the
  // certificate when `verify`. `cert` (PEM: the leaf, then its chain) and
  // `key` (PEM, unencrypted), when not empty, are this connection's client
  // certificate: set on the SSL object, so that no SSL_CTX (they are cached
  // per CA set) keeps a private key. Null, *error and *code on failure.
  static std::unique_ptr<TlsClient> Create(SSL_CTX* ctx, const std::string& host, bool verify,
                                           const std::string& cert, const std::string& key,
                                           std::string* error, const char** code);
  ~TlsClient();

  void Feed(const uint8_t* p, size_t n);
  // 1: handshake done; 0: needs more input; -1: failed (see error(), code()).
  int Handshake();
  // Plaintext bytes read (> 0); 0: none buffered; -1: failed or closed by the peer.
  int Read(uint8_t* out, size_t n);
  // Encrypts; returns the bytes consumed, or -1.
  int Write(const uint8_t* p, size_t n);
  // Appends the ciphertext waiting to be sent to *out.
  void TakeOutput(std::string* out);
  bool has_output() const;

  const std::string& error() const { return error_; }
  const char* code() const { return code_; }

 private:
  TlsClient() = default;
  void SetError(int ret);

  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
  bool verify_ = true;
  std::string error_;
  const char* code_ = "ERR_TLS_HANDSHAKE";
};

}  // namespace nlws
