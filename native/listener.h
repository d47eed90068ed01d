// Listening sockets owned by node-lws, not by lws.
//
// Bind() runs on the main thread: socket(), SO_REUSEADDR / SO_REUSEPORT as
// asked, bind(), listen(), with the real errno reported. The listening fd is
// then handed to the service thread, where lws polls it as a raw file
// descriptor and Listener::Accept() adopts each accepted socket into lws.
// Closing the Listener closes the fd at once, so the port is free before
// JavaScript hears that the server closed.
#pragma once

#include <napi.h>

#include <list>
#include <string>

#include "context.h"

namespace nlws {

class Conn;

class Listener {
 public:
  Listener(Context* ctx, ServerConfig* cfg);  // takes ownership of cfg
  ~Listener();

  // Service thread.
  bool Start(std::string* error);  // adopts the fd into lws; false (fd closed) on failure
  void Accept();
  void Close();  // stops listening now, closes connections with 1001
  void ListenerWsiClosed();
  void Add(Conn* c);
  void Remove(Conn* c);

  uint32_t id() const { return cfg_->id; }
  const ServerConfig& config() const { return *cfg_; }
  bool closing() const { return closing_; }
  size_t connections() const { return conns_.size(); }
  size_t open_connections = 0;  // upgraded (WebSocket) connections, for maxConnections
  int64_t started_us = 0;

 private:
  static void ResumeAccept(lws_sorted_usec_list_t* sul);
  bool RefuseOne(int err);  // out of descriptors: accept one client and close it at once

  Context* ctx_;
  ServerConfig* cfg_;
  lws* wsi_ = nullptr;
  lws_vhost* vhost_ = nullptr;  // the context's, or this server's TLS vhost
  bool closing_ = false;
  std::list<Conn*> conns_;
  bool started_ = false;
  struct {
    lws_sorted_usec_list_t sul;  // first member: the lws callback casts back
    Listener* owner;
  } resume_timer_ = {};
  // A descriptor kept in reserve (/dev/null) for accept() failing with EMFILE/ENFILE: closed to
  // make room for one accept, whose client is answered (503) and closed at once, then reopened.
  int spare_fd_ = -1;
  bool fd_burst_ = false;  // out of descriptors since the last accept that succeeded
  uint64_t refused_ = 0;   // clients refused in this burst
};

// JS: bind({ host, port, family, reuseAddr, reusePort, ipv6Only, backlog })
//   -> { fd, port }; throws a system error (code, errno, syscall, address, port).
Napi::Value Bind(const Napi::CallbackInfo& info);
Napi::Value CloseFd(const Napi::CallbackInfo& info);

}  // namespace nlws
