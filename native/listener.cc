#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "connection.h"
#include "errors.h"

namespace nlws {

namespace {

void FormatAddress(const sockaddr_storage& ss, std::string* host, int* port) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    *port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    *port = ntohs(a->sin6_port);
  } else {
    *port = 0;
  }
  *host = buf;
}

}  // namespace

Listener::Listener(Context* ctx, ServerConfig* cfg) : ctx_(ctx), cfg_(cfg) {}

Listener::~Listener() {
  lws_sul_cancel(&resume_timer_.sul);
  if (spare_fd_ >= 0) close(spare_fd_);
  if (!started_ && cfg_->fd >= 0) close(cfg_->fd);
  delete cfg_;
}

bool Listener::Start(std::string* error) {
  vhost_ = ctx_->vhost();
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
  spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);  // -1 is survivable: see RefuseOne
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

void Listener::Accept() {
  if (closing_) return;
  for (int i = 0; i < 128; i++) {
    sockaddr_storage ss;
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
      lws_rx_flow_control(wsi_, 0);
      resume_timer_.owner = this;
      lws_sul_schedule(ctx_->lws_ctx(), 0, &resume_timer_.sul, ResumeAccept, 100 * 1000);
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
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string host;
    int port = 0;
    FormatAddress(ss, &host, &port);

    Conn* conn = new Conn(ctx_, this, fd, std::move(host), port);
    conn->tls = !cfg_->tls_cert.empty();
    Add(conn);
    lws_adopt_desc_t d;
    memset(&d, 0, sizeof d);
    d.vh = vhost_;
    d.type = static_cast<lws_adoption_type>(
        cfg_->tls_cert.empty() ? LWS_ADOPT_SOCKET : LWS_ADOPT_SOCKET | LWS_ADOPT_ALLOW_SSL);
    d.fd.sockfd = fd;
    d.vh_prot_name = Context::kProtocolName;
    d.opaque = conn;
    conn->adopting = true;
    lws* wsi = lws_adopt_descriptor_vhost_via_info(&d);
    conn->adopting = false;
    if (!wsi || conn->closed_in_adopt) {
      // lws closed the socket; the connection never reached JavaScript.
      Remove(conn);
      delete conn;
      ctx_->Log(LLL_WARN, "lws could not adopt an accepted socket");
      continue;
    }
    conn->Attach(wsi);
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
    // Read what the client already sent (a request fits; a client that keeps
    // sending is not waited for), so that close() ends with a FIN after the
    // answer rather than a reset that could discard it.
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

void Listener::ResumeAccept(lws_sorted_usec_list_t* sul) {
  Listener* l = reinterpret_cast<decltype(resume_timer_)*>(sul)->owner;
  if (l->wsi_ && !l->closing_) lws_rx_flow_control(l->wsi_, 1);
}

void Listener::Close() {
  if (closing_) return;
  closing_ = true;
  lws_sul_cancel(&resume_timer_.sul);
  if (spare_fd_ >= 0) close(spare_fd_);
  spare_fd_ = -1;
  if (wsi_) {
    // Synchronous: lws closes the listening fd before this returns, so the
    // port is free before JavaScript hears about it.
    lws_set_timeout(wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    wsi_ = nullptr;
  }
  cfg_->fd = -1;
  ctx_->Emit(kEvListenerClosed, cfg_->id);
  // Shutdown() may close a connection synchronously; iterate over a copy.
  std::vector<Conn*> conns(conns_.begin(), conns_.end());
  for (Conn* c : conns) c->Shutdown();
  if (conns_.empty()) ctx_->ServerClosed(this);
}

void Listener::ListenerWsiClosed() { wsi_ = nullptr; }

void Listener::Add(Conn* c) { c->server_it = conns_.insert(conns_.end(), c); }

void Listener::Remove(Conn* c) {
  conns_.erase(c->server_it);
  if (closing_ && conns_.empty()) ctx_->ServerClosed(this);
}

// ---- main thread: bind ------------------------------------------------------------

Napi::Value Bind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) return ThrowTypeError(env, "bind: options object expected");
  Napi::Object o = info[0].As<Napi::Object>();
  std::string host = o.Get("host").As<Napi::String>().Utf8Value();
  int port = o.Get("port").As<Napi::Number>().Int32Value();
  bool reuse_addr = o.Get("reuseAddr").ToBoolean().Value();
  bool reuse_port = o.Get("reusePort").ToBoolean().Value();
  bool ipv6_only = o.Get("ipv6Only").ToBoolean().Value();
  int backlog = o.Get("backlog").As<Napi::Number>().Int32Value();

  sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t sl;
  int family;
  auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    family = AF_INET;
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<uint16_t>(port));
    sl = sizeof *a4;
  } else if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    family = AF_INET6;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(port));
    sl = sizeof *a6;
  } else {
    Napi::Error e = MakeCodedError(env, "ERR_INVALID_IP_ADDRESS", "Invalid IP address: " + host);
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }

  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    MakeSystemError(env, errno, "socket", host, port).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int one = 1;
  const char* failed = nullptr;
  if (reuse_addr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
    failed = "setsockopt";
  if (!failed && reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
    failed = "setsockopt";
  if (!failed && family == AF_INET6) {
    int v6only = ipv6_only ? 1 : 0;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0)
      failed = "setsockopt";
  }
  if (!failed && bind(fd, reinterpret_cast<sockaddr*>(&ss), sl) < 0) failed = "bind";
  if (!failed && listen(fd, backlog) < 0) failed = "listen";
  if (!failed) {
    sl = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) < 0) failed = "getsockname";
  }
  if (failed) {
    int err = errno;
    close(fd);
    MakeSystemError(env, err, failed, host, port).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string bound;
  int bound_port = 0;
  FormatAddress(ss, &bound, &bound_port);
  Napi::Object r = Napi::Object::New(env);
  r.Set("fd", fd);
  r.Set("port", bound_port);
  r.Set("address", bound);
  r.Set("family", family == AF_INET6 ? "IPv6" : "IPv4");
  return r;
}

// JS: closeFd(fd) — for a bound socket that never reached the service thread.
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd >= 0) close(fd);
  return info.Env().Undefined();
}

}  // namespace nlws
