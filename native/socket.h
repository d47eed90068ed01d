// Sockets node-lws creates itself: listening sockets (bind with the real
// errno) and connecting client sockets, and the address conversions both
// need. Plain POSIX, no lws and no N-API: any thread (bind and connect run on
// the main thread so that their errors reach JavaScript at once; accepted
// addresses are formatted on the service thread).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace nlws {

// An IP literal and a port as a socket address; false when `host` is not one.
bool ParseAddress(const std::string& host, int port, sockaddr_storage* ss, socklen_t* len);
// A Unix domain socket address for `path`; false when it does not fit in
// sun_path (at most kMaxUnixPath bytes) or contains a NUL byte.
bool UnixAddress(const std::string& path, sockaddr_storage* ss, socklen_t* len);
constexpr size_t kMaxUnixPath = 107;
// The textual address and port of an IPv4 or IPv6 socket address (a Unix
// socket's path, port 0).
void FormatAddress(const sockaddr_storage& ss, std::string* host, int* port);

struct ListenSpec {
  std::string host;  // an IP literal
  std::string path;  // a Unix socket path instead of host and port (when not empty)
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
  // A Unix socket: the file bind() created (see RemoveUnixSocket).
  uint64_t dev = 0;
  uint64_t ino = 0;
};

// socket() + options + bind() + listen(). Returns 0, or an errno with
// *syscall naming the call that failed ("socket", "bind", ...); EINVAL with
// *syscall null when host is not an IP literal. A Unix socket path that is
// too long is ENAMETOOLONG ("bind"); an existing file at the path is
// EADDRINUSE, as bind() reports it (lib/server.ts tells the cases apart).
int ListenSocket(const ListenSpec& spec, Bound* out, const char** syscall);

// Removes the socket file a listener created at `path`, unless the path now
// names another file (another process's socket, or anything else).
void RemoveUnixSocket(const std::string& path, uint64_t dev, uint64_t ino);

// A non-blocking TCP socket (TCP_NODELAY) or Unix socket with connect()
// started. Returns the fd, or -1 with *err and *syscall set (an immediate
// refusal on loopback, or a Unix path with no listener, comes back here at
// once).
int ConnectSocket(const sockaddr_storage& ss, socklen_t len, int* err, const char** syscall);

}  // namespace nlws
