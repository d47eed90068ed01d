// A connection's socket watched straight on the service thread's libev loop,
// without an lws wsi.
//
// lws's wsi for an adopted raw socket is one ~950 B allocation (struct lws
// with its libev watchers), a quarter of what an idle connection cost; for a
// plain socket node-lws used none of it but readiness (it reads, writes,
// frames and times out by itself). An EvSocket is that readiness alone: one
// ev_io on the loop lws also runs on, the reads into one buffer of the
// context, and the close. A server TLS socket starts on one only until its
// ClientHello is in (WaitForHello, Conn::HelloReadable), then gets its wsi
// (lws encrypts), as every connection does under lws's poll() loop.
//
// Service thread only.
#pragma once

#include <cstdint>

#if NLWS_WITH_LIBEV
#include <ev.h>
#endif

namespace nlws {

class Conn;
class Context;

class EvSocket {
 public:
  // Watches `fd` for reading; the socket is closed with this object.
  EvSocket(Context* ctx, int fd, Conn* conn);
  ~EvSocket();
  EvSocket(const EvSocket&) = delete;
  EvSocket& operator=(const EvSocket&) = delete;

  // Reading on or off (receive flow control): off, the socket is not read and
  // the kernel's window closes.
  void SetReading(bool on);
  // One Conn::OnWritable() once the socket takes more.
  void WantWritable();
  // Server TLS: readiness goes to Conn::HelloReadable, which peeks and does
  // not read, until the socket is handed to lws (Release).
  void WaitForHello() { hello_ = true; }
  // Stops watching and gives the descriptor up (it is not closed).
  int Release();

 private:
#if NLWS_WITH_LIBEV
  static void OnIo(struct ev_loop* loop, ev_io* w, int revents);
  void Update();
  Conn* conn() const { return static_cast<Conn*>(io_.data); }
  struct ev_loop* loop() const;

  // The watcher alone, and three flags: 56 B (72 B when this also held its
  // Context and Conn, which the watcher's data and the Conn give). io_ comes
  // first, so that OnIo finds this object from its watcher.
  ev_io io_;
#endif
  bool reading_ = true;
  bool writing_ = false;
  bool hello_ = false;
};

}  // namespace nlws
