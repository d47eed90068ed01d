#include "socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

namespace nlws {

bool ParseAddress(const std::string& host, int port, sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof *ss);
  auto* a4 = reinterpret_cast<sockaddr_in*>(ss);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof *a4;
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof *a6;
    return true;
  }
  return false;
}

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

int ListenSocket(const ListenSpec& spec, Bound* out, const char** syscall) {
  sockaddr_storage ss;
  socklen_t sl;
  *syscall = nullptr;
  if (!ParseAddress(spec.host, spec.port, &ss, &sl)) return EINVAL;
  int family = ss.ss_family;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *syscall = "socket";
    return errno;
  }
  int one = 1;
  const char* failed = nullptr;
  if (spec.reuse_addr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
    failed = "setsockopt";
  if (!failed && spec.reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
    failed = "setsockopt";
  if (!failed && family == AF_INET6) {
    int v6only = spec.ipv6_only ? 1 : 0;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0)
      failed = "setsockopt";
  }
  if (!failed && bind(fd, reinterpret_cast<sockaddr*>(&ss), sl) < 0) failed = "bind";
  if (!failed && listen(fd, spec.backlog) < 0) failed = "listen";
  if (!failed) {
    sl = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) < 0) failed = "getsockname";
  }
  if (failed) {
    int err = errno;
    close(fd);
    *syscall = failed;
    return err;
  }
  out->fd = fd;
  out->ipv6 = family == AF_INET6;
  FormatAddress(ss, &out->address, &out->port);
  return 0;
}

int ConnectSocket(const sockaddr_storage& ss, socklen_t len, int* err, const char** syscall) {
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errno;
    *syscall = "socket";
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) < 0 && errno != EINPROGRESS) {
    *err = errno;
    *syscall = "connect";
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace nlws
