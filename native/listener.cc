#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connection.h"
#include "errors.h"
#include "socket.h"

namespace nlws {

Listener::Listener(Context* ctx, ServerConfig* cfg) : ctx_(ctx), cfg_(cfg) {}

Listener::~Listener() {
  ctx_->timers().Cancel(&retry_);
  if (spare_fd_ >= 0) close(spare_fd_);
  if (!started_ && cfg_->fd >= 0) close(cfg_->fd);
  RemoveSocketFile();  // context teardown: lws has closed the fd by now
  delete cfg_;
}

void Listener::RemoveSocketFile() {
  if (cfg_->unix_path.empty()) return;
  RemoveUnixSocket(cfg_->unix_path, cfg_->unix_dev, cfg_->unix_ino);
  cfg_->unix_path.clear();
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
    tls_ = ServerTls::Create(*cfg_, error);
    if (tls_) {
      ServerTls::Pending pending(tls_.get());
      vhost_ = ctx_->ServerTlsVhost(*cfg_, error);
    } else {
      vhost_ = nullptr;
    }
    // The key material is in the SSL_CTXs now; do not keep a copy.
    std::fill(cfg_->tls_key.begin(), cfg_->tls_key.end(), '\0');
    cfg_->tls_key.clear();
    cfg_->tls_passphrase.clear();
    for (ServerConfig::SniCert& sc : cfg_->tls_sni) std::fill(sc.key.begin(), sc.key.end(), '\0');
    cfg_->tls_sni.clear();
    if (!vhost_) {
      close(cfg_->fd);
      cfg_->fd = -1;
      RemoveSocketFile();
      started_ = true;
      return false;
    }
  }
  spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);  // -1 is survivable: see RefuseOne
  started_ = true;
  started_us = MonotonicUs();
  wsi_ = ctx_->Adopt(nullptr, LWS_ADOPT_RAW_FILE_DESC, cfg_->fd, this);
  if (!wsi_) {
    // lws does not close a file descriptor it failed to adopt.
    close(cfg_->fd);
    cfg_->fd = -1;
    RemoveSocketFile();
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
    memset(&ss, 0, sizeof ss);  // an unnamed Unix peer fills in no path at all
    socklen_t sl = sizeof ss;
    int fd = accept4(cfg_->fd, reinterpret_cast<sockaddr*>(&ss), &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if ((err == EMFILE || err == ENFILE) && RefuseOne(err)) continue;
      // Out of memory, or of descriptors with none in reserve: stop polling the
      // listener for a while rather than spinning on a socket that stays readable.
      std::string line = "accept() on server " + std::to_string(cfg_->id) +
                         " failed: " + ErrnoName(err) + "; pausing accepts for 100 ms";
      ctx_->Log(LLL_WARN, line.c_str());
      backoff_ = true;
      UpdatePolling();
      ctx_->timers().Schedule(&retry_, MonotonicUs() + 100 * 1000, ResumeAccept, this);
      return;
    }
    if (fd_burst_) {
      std::string line = "server " + std::to_string(cfg_->id) +
                         ": descriptors available again, accepting; " + std::to_string(refused_) +
                         " client(s) were refused while the process was out of them";
      ctx_->Log(LLL_WARN, line.c_str());
      fd_burst_ = false;
      refused_ = 0;
    }
    int one = 1;
    if (ss.ss_family != AF_UNIX) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string host;
    int port = 0;
    FormatAddress(ss, &host, &port);

    if (AdoptSocket(fd, std::move(host), port, tls, nullptr)) ctx_->CheckRxTotal();
  }
}

// accept() failed with EMFILE/ENFILE. Left in the listen queue, the client
// would wait until its own timeout; instead the reserve descriptor is closed to
// make room for it, it is answered 503 (plain HTTP servers; TLS ones just
// close) and closed, and the reserve is reopened. The first refusal of a burst
// is reported to JavaScript. false: no reserve to use (the caller pauses).
bool Listener::RefuseOne(int err) {
  if (spare_fd_ < 0) spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (spare_fd_ < 0) return false;
  close(spare_fd_);
  spare_fd_ = -1;
  int fd = accept4(cfg_->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  int accept_err = errno;
  if (fd >= 0) {
    // Read what the client already sent, at most 16 KiB (a request fits; a
    // client that keeps sending is not waited for), so that close() ends with
    // a FIN after the answer rather than a reset that could discard it.
    char buf[4096];
    for (int i = 0; i < 4 && recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0; i++) {
    }
    if (cfg_->tls_cert.empty()) {
      static const char kBusy[] =
          "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
          "Content-Type: text/plain\r\nContent-Length: 31\r\n\r\n"
          "Server out of file descriptors\n";
      // Best effort: an empty socket buffer takes it at once; if not, the close says it.
      ssize_t sent = send(fd, kBusy, sizeof kBusy - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
      (void)sent;
    }
    shutdown(fd, SHUT_WR);
    close(fd);
    refused_++;
  }
  spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return accept_err != EMFILE && accept_err != ENFILE;  // EAGAIN: the loop sees it
  if (!fd_burst_) {
    fd_burst_ = true;
    std::string msg = std::string("accept() failed: ") + ErrnoName(err) + " (" + strerror(err) +
                      "); clients are answered 503 and closed until descriptors are free again";
    ctx_->Emit(kEvAcceptError, cfg_->id, static_cast<uint32_t>(err),
               ctx_->AddError(ErrnoName(err), msg, 0));
    ctx_->Log(LLL_WARN, ("server " + std::to_string(cfg_->id) + ": " + msg).c_str());
  }
  return true;
}

Conn* Listener::AdoptSocket(int fd, std::string host, int port, bool tls, ConnShared* handed_over) {
  Conn* conn = new Conn(ctx_, this, fd, std::move(host), port, tls, handed_over);
  conns_++;
  if (!conn->Watch(tls ? vhost_ : nullptr)) {
    // lws closed the socket; the connection never reached JavaScript.
    delete conn;  // ConnGone() follows
    ctx_->Log(LLL_WARN, "lws could not adopt an accepted socket");
    return nullptr;
  }
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

void Listener::HeadPending(PendingHead* h, Conn* c, size_t held) {
  if (!h->listed) {
    // Oldest first means connected first: ids rise with each accept. One
    // turn of the loop may read the first bytes of several new connections,
    // and libev runs their watchers newest first, so a head is ordered by its
    // id, not by when its first bytes came (until 2026-11-28 the newest of
    // such a turn were the ones refused). By a tree, not a walk back from the
    // newest: connections whose first bytes came newest first cost the walk
    // all the others each (16,000 of them held the service thread 0.6 s).
    h->conn = c;
    h->listed = true;
    heads_.emplace(c->shared()->id, h);
  }
  head_bytes_ += held - h->counted;
  h->counted = held;
  size_t limit = cfg_->max_pending_header_bytes;
  if (head_bytes_ <= limit) return;
  if (!heads_refused_) {
    std::string line = "server " + std::to_string(cfg_->id) +
                       ": unfinished TLS handshakes and request heads hold more than "
                       "maxPendingHeaderBytes (" +
                       std::to_string(limit) +
                       " bytes); the oldest are closed (a request begun is answered 503)";
    ctx_->Log(LLL_WARN, line.c_str());
  }
  while (head_bytes_ > limit && !heads_.empty()) {
    PendingHead* first = heads_.begin()->second;
    Conn* oldest = first->conn;
    heads_refused_++;
    HeadDone(first);       // reports the burst if that brings the heads under half the limit
    oldest->RefuseHead();  // may be c itself
  }
}

void Listener::HeadDone(PendingHead* h) {
  if (!h->listed) return;
  heads_.erase(h->conn->shared()->id);
  head_bytes_ -= h->counted;
  *h = PendingHead();
  if (heads_refused_ && head_bytes_ <= cfg_->max_pending_header_bytes / 2) {
    std::string line = "server " + std::to_string(cfg_->id) + ": " +
                       std::to_string(heads_refused_) +
                       " unfinished TLS handshake(s) or request(s) were closed to keep within "
                       "maxPendingHeaderBytes";
    ctx_->Log(LLL_WARN, line.c_str());
    heads_refused_ = 0;
  }
}

void Listener::ResumeAccept(void* arg) {
  auto* l = static_cast<Listener*>(arg);
  l->backoff_ = false;
  l->UpdatePolling();
}

void Listener::Close() {
  if (closing_) return;
  closing_ = true;
  ctx_->timers().Cancel(&retry_);
  if (spare_fd_ >= 0) close(spare_fd_);
  spare_fd_ = -1;
  if (wsi_) {
    // Synchronous: lws closes the listening fd before this returns, so the
    // port is free before JavaScript hears about it.
    lws_set_timeout(wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    wsi_ = nullptr;
  }
  cfg_->fd = -1;
  RemoveSocketFile();  // the path is free as the port would be
  ctx_->Emit(kEvListenerClosed, cfg_->id);
  if (conns_ == 0) {
    ctx_->ServerClosed(this);  // deletes this
    return;
  }
  ctx_->ShutdownConns(this);  // may delete this (ConnGone)
}

void Listener::ListenerWsiClosed() { wsi_ = nullptr; }

void Listener::Publish(const std::string& topic, SharedFrame* frame, ConnShared* skip) {
  const Topics::Topic* t = topics_.Find(topic);
  if (!t) return;
  PublishJob job(frame, skip, &deflaters_);
  // Queueing never changes the subscriber list (a connection that must close
  // for backpressure only queues its close frame).
  for (const Topics::Topic::Sub& s : t->subs)
    if (s.conn->shared() != skip) s.conn->QueuePublished(job, s.max_backpressure);
}

void Listener::ConnGone() {
  conns_--;
  if (closing_ && conns_ == 0) ctx_->ServerClosed(this);
}

}  // namespace nlws
