#include "ev_socket.h"

#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>

#include <type_traits>

#include "connection.h"
#include "context.h"

namespace nlws {

#if NLWS_WITH_LIBEV

EvSocket::EvSocket(Context* ctx, int fd, Conn* conn) {
  static_assert(std::is_standard_layout<EvSocket>::value && offsetof(EvSocket, io_) == 0,
                "OnIo finds the EvSocket at its watcher's address");
  ev_io_init(&io_, OnIo, fd, EV_READ);
  io_.data = conn;
  ev_io_start(ctx->ev(), &io_);
}

// The Conn outlives its EvSocket (it owns it), and so does the Context.
struct ev_loop* EvSocket::loop() const {
  return conn()->ctx()->ev();
}

EvSocket::~EvSocket() {
  ev_io_stop(loop(), &io_);
  if (io_.fd >= 0) close(io_.fd);
}

int EvSocket::Release() {
  ev_io_stop(loop(), &io_);
  int fd = io_.fd;
  io_.fd = -1;
  return fd;
}

void EvSocket::SetReading(bool on) {
  if (reading_ == on) return;
  reading_ = on;
  Update();
}

void EvSocket::WantWritable() {
  if (writing_) return;
  writing_ = true;
  Update();
}

void EvSocket::Update() {
  int events = (reading_ ? EV_READ : 0) | (writing_ ? EV_WRITE : 0);
  if (events == (io_.events & (EV_READ | EV_WRITE)) && ev_is_active(&io_)) return;
  // libev only touches epoll once per loop iteration, for the final mask.
  struct ev_loop* l = loop();
  ev_io_stop(l, &io_);
  ev_io_set(&io_, io_.fd, events);
  if (events) ev_io_start(l, &io_);
}

void EvSocket::OnIo(struct ev_loop*, ev_io* w, int revents) {
  auto* s = reinterpret_cast<EvSocket*>(w);  // io_ is its first member
  Conn* conn = s->conn();
  if ((revents & EV_WRITE) && s->writing_) {
    s->writing_ = false;
    s->Update();
    conn->OnWritable();  // never deletes conn: closing waits for Context::RunKills
  }
  if (!(revents & EV_READ) || !s->reading_) return;
  if (s->hello_) {
    conn->HelloReadable();  // may delete conn, and s with it
    return;
  }
  uint8_t* buf = conn->ctx()->read_buffer();
  ssize_t n;
  do {
    n = recv(w->fd, buf, Context::kReadSize, 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    conn->OnReadable(buf, static_cast<size_t>(n));
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  // The peer closed (or reset) the connection, as lws reports LWS_CALLBACK_RAW_CLOSE.
  conn->CloseSocketNow();  // deletes conn, and s with it
}

#else

// Without libev every socket is an lws wsi (Conn::Watch never makes one of these).
EvSocket::EvSocket(Context*, int fd, Conn*) { close(fd); }
EvSocket::~EvSocket() = default;
int EvSocket::Release() { return -1; }
void EvSocket::SetReading(bool) {}
void EvSocket::WantWritable() {}

#endif

}  // namespace nlws
