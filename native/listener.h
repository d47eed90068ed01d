// A listening socket owned by node-lws, not by lws.
//
// socket.cc binds it on the main thread (with the real errno); the fd is then
// handed to the service thread, where lws polls it as a raw file descriptor
// and Accept() adopts each accepted socket into lws as a Conn. Closing the
// Listener closes the fd at once (and removes a Unix socket's file), so the
// address is free before JavaScript hears that the server closed.
//
// A server without a socket of its own (fd -1: createServer() / attach() in
// JavaScript) only gets connections through Adopt(): upgrade requests Node's
// HTTP server parsed and JavaScript handed over (server.handleUpgrade). Any
// server may take those.
//
// Service thread.
#pragma once

#include <libwebsockets.h>

#include <map>
#include <memory>
#include <string>

#include "context.h"
#include "deflate.h"
#include "server_tls.h"
#include "timers.h"
#include "topics.h"

namespace nlws {

class Conn;
struct PendingHead;

class Listener {
 public:
  Listener(Context* ctx, ServerConfig* cfg);  // takes ownership of cfg
  ~Listener();

  bool Start(std::string* error);  // adopts the fd into lws; false (fd closed) on failure
  void Accept();
  // A connection handed over by JavaScript (kAdopt), with the ConnShared
  // JavaScript already holds: a socket whose descriptor is ours now (fd >= 0),
  // or a stream JavaScript pumps (fd < 0: JsWire). `head` holds the request
  // head and whatever followed it; it is fed before anything else is read.
  void Adopt(ConnShared* shared, int fd, std::string remote_address, int remote_port,
             const uint8_t* head, size_t len);
  void Close();  // stops listening now, closes connections with 1001
  void ListenerWsiClosed();
  // Stops (or resumes) accepting while the context's receive total is over
  // its limit: new clients wait in the kernel's listen queue.
  void PauseAccept(bool pause);
  void ConnGone();  // one of this server's connections was deleted
  // A request head is still arriving (or, on a TLS server, its TLS handshake
  // is: kTlsHandshakeHeld) and now holds `held` bytes: counts it (at the end
  // of the list the first time). While they hold more than
  // maxPendingHeaderBytes together, the oldest is closed (answered 503 once
  // its request has begun): an honest head usually arrives in one read and
  // an honest handshake within a round trip, one that trickles in or stalls
  // is the first to go.
  void HeadPending(PendingHead* h, Conn* c, size_t held);
  void HeadDone(PendingHead* h);  // complete, refused, or its socket closed
  Topics& topics() { return topics_; }
  SharedDeflaters& deflaters() { return deflaters_; }  // service thread
  // Queues one frame on every subscriber of `topic` but `skip`.
  void Publish(const std::string& topic, SharedFrame* frame, ConnShared* skip);

  uint32_t id() const { return cfg_->id; }
  // The vhost its TLS connections are adopted into (null for plain servers).
  lws_vhost* tls_vhost() const { return tls_ ? vhost_ : nullptr; }
  const ServerConfig& config() const { return *cfg_; }
  bool closing() const { return closing_; }
  size_t open_connections = 0;  // upgraded (WebSocket) connections, for maxConnections
  int64_t started_us = 0;

 private:
  static void ResumeAccept(void* listener);
  void UpdatePolling();
  bool RefuseOne(int err);  // out of descriptors: accept one client and close it at once
  void RemoveSocketFile();  // a Unix socket server's file, once
  // Adopts an accepted socket into lws as a Conn; null (socket closed) when lws refuses it.
  Conn* AdoptSocket(int fd, std::string host, int port, bool tls, ConnShared* handed_over);

  Context* ctx_;
  ServerConfig* cfg_;
  std::unique_ptr<ServerTls> tls_;  // TLS settings beyond lws's vhost
  lws* wsi_ = nullptr;
  lws_vhost* vhost_ = nullptr;  // the context's, or this server's TLS vhost
  size_t conns_ = 0;            // connections not yet deleted
  bool closing_ = false;
  bool started_ = false;
  bool paused_ = false;   // PauseAccept
  bool backoff_ = false;  // accept() failed: retry after a moment
  Timer retry_;
  // A descriptor kept in reserve (/dev/null) for accept() failing with EMFILE/ENFILE: closed to
  // make room for one accept, whose client is answered (503) and closed at once, then reopened.
  int spare_fd_ = -1;
  bool fd_burst_ = false;  // out of descriptors since the last accept that succeeded
  uint64_t refused_ = 0;   // clients refused in this burst
  // Request heads still arriving (HeadPending), oldest first.
  // Connection ids rise with each accept (wrapping at 2^32: the ids of the
  // heads pending at one time are far less than 2^31 apart).
  struct OlderId {
    bool operator()(uint32_t a, uint32_t b) const { return static_cast<int32_t>(a - b) < 0; }
  };
  std::map<uint32_t, PendingHead*, OlderId> heads_;  // oldest first
  size_t head_bytes_ = 0;                            // what they hold together
  uint64_t heads_refused_ = 0;                       // closed since the heads last fit
  Topics topics_;
  SharedDeflaters deflaters_;  // for compressed frames shared by subscribers
};

}  // namespace nlws
