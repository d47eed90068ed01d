#include "socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
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

bool UnixAddress(const std::string& path, sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof *ss);
  auto* un = reinterpret_cast<sockaddr_un*>(ss);
  static_assert(sizeof un->sun_path > kMaxUnixPath, "sun_path holds kMaxUnixPath + NUL");
  if (path.empty() || path.size() > kMaxUnixPath || path.find('\0') != std::string::npos)
    return false;
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
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
  } else if (ss.ss_family == AF_UNIX) {
    const auto* a = reinterpret_cast<const sockaddr_un*>(&ss);
    *port = 0;
    *host = std::string(a->sun_path, strnlen(a->sun_path, sizeof a->sun_path));
    return;
  } else {
    *port = 0;
  }
  *host = buf;
}

namespace {

int ListenUnix(const ListenSpec& spec, Bound* out, const char** syscall) {
  sockaddr_storage ss;
  socklen_t sl;
  *syscall = "bind";
  if (!UnixAddress(spec.path, &ss, &sl))
    return spec.path.size() > kMaxUnixPath ? ENAMETOOLONG : EINVAL;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *syscall = "socket";
    return errno;
  }
  const char* failed = nullptr;
  struct stat st;
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), sl) < 0) {
    failed = "bind";
  } else if (lstat(spec.path.c_str(), &st) < 0) {
    failed = "lstat";
  } else if (listen(fd, spec.backlog) < 0) {
    failed = "listen";
    int err = errno;
    unlink(spec.path.c_str());  // ours: bind() just created it
    errno = err;
  }
  if (failed) {
    int err = errno;
    close(fd);
    *syscall = failed;
    return err;
  }
  out->fd = fd;
  out->address = spec.path;
  out->port = 0;
  out->dev = static_cast<uint64_t>(st.st_dev);
  out->ino = static_cast<uint64_t>(st.st_ino);
  return 0;
}

}  // namespace

void RemoveUnixSocket(const std::string& path, uint64_t dev, uint64_t ino) {
  struct stat st;
  if (path.empty() || lstat(path.c_str(), &st) < 0) return;
  if (!S_ISSOCK(st.st_mode) || static_cast<uint64_t>(st.st_dev) != dev ||
      static_cast<uint64_t>(st.st_ino) != ino)
    return;
  unlink(path.c_str());
}

int ListenSocket(const ListenSpec& spec, Bound* out, const char** syscall) {
  if (!spec.path.empty()) return ListenUnix(spec, out, syscall);
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
  if (ss.ss_family != AF_UNIX) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) < 0 && errno != EINPROGRESS) {
    *err = errno;
    *syscall = "connect";
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace nlws
