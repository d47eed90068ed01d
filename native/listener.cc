#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connection.h"
#include "errors.h"
#include "socket.h"

namespace nlws {

Listener::Listener(Context* ctx, ServerConfig* cfg) : ctx_(ctx), cfg_(cfg) {
  retry_.fire = ResumeAccept;
  retry_.owner = this;
}

Listener::~Listener() {
  ctx_->timers().Cancel(&retry_);
  if (!started_ && cfg_->fd >= 0) close(cfg_->fd);
  delete cfg_;
}

bool Listener::Start(std::string* error) {
  vhost_ = ctx_->vhost();
  if (cfg_->fd < 0) {
    // No socket of its own: connections come only through Adopt().
    started_ = true;
    started_us = MonotonicUs();
    return true;
  }
  if (!cfg_->tls_cert.empty()) {
    vhost_ = ctx_->ServerTlsVhost(*cfg_, error);
    // The key material is in lws's SSL_CTX now; do not keep a copy.
    std::fill(cfg_->tls_key.begin(), cfg_->tls_key.end(), '\0');
    cfg_->tls_key.clear();
    cfg_->tls_passphrase.clear();
    if (!vhost_) {
      close(cfg_->fd);
      cfg_->fd = -1;
      started_ = true;
      return false;
    }
  }
  lws_adopt_desc_t d;
  memset(&d, 0, sizeof d);
  d.vh = ctx_->vhost();
  d.type = LWS_ADOPT_RAW_FILE_DESC;
  d.fd.filefd = cfg_->fd;
  d.vh_prot_name = Context::kProtocolName;
  d.opaque = this;
  started_ = true;
  started_us = MonotonicUs();
  wsi_ = lws_adopt_descriptor_vhost_via_info(&d);
  if (!wsi_) {
    // lws does not close a file descriptor it failed to adopt.
    close(cfg_->fd);
    cfg_->fd = -1;
    *error = "lws could not adopt the listening socket";
    return false;
  }
  return true;
}

void Listener::UpdatePolling() {
  if (wsi_ && !closing_) lws_rx_flow_control(wsi_, paused_ || backoff_ ? 0 : 1);
}

void Listener::PauseAccept(bool pause) {
  if (paused_ == pause) return;
  paused_ = pause;
  UpdatePolling();
}

void Listener::Accept() {
  if (closing_ || paused_) return;
  bool tls = !cfg_->tls_cert.empty();
  for (int i = 0; i < 128 && !ctx_->rx_global_paused(); i++) {
    sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(cfg_->fd, reinterpret_cast<sockaddr*>(&ss), &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      // Out of descriptors or memory: stop polling the listener for a while
      // rather than spinning on a socket that stays readable.
      std::string line = "accept() on server " + std::to_string(cfg_->id) +
                         " failed: " + ErrnoName(err) + "; pausing accepts for 100 ms";
      ctx_->Log(LLL_WARN, line.c_str());
      backoff_ = true;
      UpdatePolling();
      ctx_->timers().ScheduleIn(&retry_, 100 * 1000);
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string host;
    int port = 0;
    FormatAddress(ss, &host, &port);

    if (AdoptSocket(fd, std::move(host), port, tls, nullptr)) ctx_->CheckRxTotal();
  }
}

Conn* Listener::AdoptSocket(int fd, std::string host, int port, bool tls, ConnShared* handed_over) {
  Conn* conn = new Conn(ctx_, this, fd, std::move(host), port, tls, handed_over);
  conns_++;
  lws_adopt_desc_t d;
  memset(&d, 0, sizeof d);
  d.vh = tls ? vhost_ : ctx_->vhost();
  d.type = static_cast<lws_adoption_type>(tls ? LWS_ADOPT_SOCKET | LWS_ADOPT_ALLOW_SSL
                                              : LWS_ADOPT_SOCKET);
  d.fd.sockfd = fd;
  d.vh_prot_name = Context::kProtocolName;
  d.opaque = conn;
  conn->adopting = true;
  lws* wsi = lws_adopt_descriptor_vhost_via_info(&d);
  conn->adopting = false;
  if (!wsi || conn->closed_in_adopt) {
    // lws closed the socket; the connection never reached JavaScript.
    delete conn;  // ConnGone() follows
    ctx_->Log(LLL_WARN, "lws could not adopt an accepted socket");
    return nullptr;
  }
  conn->Attach(wsi);
  return conn;
}

void Listener::Adopt(ConnShared* shared, int fd, std::string remote_address, int remote_port,
                     const uint8_t* head, size_t len) {
  uint32_t id = shared->id;
  Conn* conn;
  if (fd >= 0) {
    conn = AdoptSocket(fd, std::move(remote_address), remote_port, false, shared);
  } else {
    conn = new Conn(ctx_, this, -1, std::move(remote_address), remote_port, false, shared);
    conns_++;
    conn->AttachJs();
  }
  if (!conn) {
    ctx_->Emit(kEvConnectError, id, 0,
               ctx_->AddError("ERR_LWS", "lws could not adopt the handed-over socket", 0));
    return;
  }
  // Accept() takes no socket during a global receive pause; this one is taken
  // already, so it waits (its head stashed) until the pause ends.
  if (ctx_->rx_global_paused()) conn->PauseRx(Conn::kRxGlobal);
  if (len) conn->OnReadable(head, len);
}

void Listener::ResumeAccept(Timer* t) {
  auto* l = static_cast<Listener*>(t->owner);
  l->backoff_ = false;
  l->UpdatePolling();
}

void Listener::Close() {
  if (closing_) return;
  closing_ = true;
  ctx_->timers().Cancel(&retry_);
  if (wsi_) {
    // Synchronous: lws closes the listening fd before this returns, so the
    // port is free before JavaScript hears about it.
    lws_set_timeout(wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    wsi_ = nullptr;
  }
  cfg_->fd = -1;
  ctx_->Emit(kEvListenerClosed, cfg_->id);
  if (conns_ == 0) {
    ctx_->ServerClosed(this);  // deletes this
    return;
  }
  ctx_->ShutdownConns(this);  // may delete this (ConnGone)
}

void Listener::ListenerWsiClosed() { wsi_ = nullptr; }

void Listener::ConnGone() {
  conns_--;
  if (closing_ && conns_ == 0) ctx_->ServerClosed(this);
}

}  // namespace nlws
