// Sockets node-lws creates itself: listening sockets (bind with the real
// errno) and connecting client sockets, and the address conversions both
// need. Plain POSIX, no lws and no N-API: any thread (bind and connect run on
// the main thread so that their errors reach JavaScript at once; accepted
// addresses are formatted on the service thread).
#pragma once

#include <sys/socket.h>

#include <string>

namespace nlws {

// An IP literal and a port as a socket address; false when `host` is not one.
bool ParseAddress(const std::string& host, int port, sockaddr_storage* ss, socklen_t* len);
// The textual address and port of an IPv4 or IPv6 socket address.
void FormatAddress(const sockaddr_storage& ss, std::string* host, int* port);

struct ListenSpec {
  std::string host;  // an IP literal
  int port = 0;
  bool reuse_addr = true;
  bool reuse_port = false;
  bool ipv6_only = false;
  int backlog = 511;
};

struct Bound {
  int fd = -1;
  std::string address;
  int port = 0;
  bool ipv6 = false;
};

// socket() + options + bind() + listen(). Returns 0, or an errno with
// *syscall naming the call that failed ("socket", "bind", ...); EINVAL with
// *syscall null when host is not an IP literal.
int ListenSocket(const ListenSpec& spec, Bound* out, const char** syscall);

// A non-blocking TCP socket (TCP_NODELAY) with connect() started. Returns the
// fd, or -1 with *err and *syscall set (an immediate refusal on loopback
// comes back here at once).
int ConnectSocket(const sockaddr_storage& ss, socklen_t len, int* err, const char** syscall);

}  // namespace nlws
