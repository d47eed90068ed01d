// echo-raw: a tiny single-threaded epoll TCP echo server, the physical ceiling for
// bench/run.mjs (loopback TCP through one user-space copy, as a WebSocket server does).
// Usage: echo-raw [--port P] [--host 127.0.0.1]; prints {"port":P,"pid":N} on stdout and
// serves until standard input closes or SIGTERM.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (256 * 1024)
typedef struct {
  int fd;
  size_t off, len;  // bytes [off, len) of buf still to write back
  unsigned ev;
  char *buf;
} conn_t;

static int ep;

static void drop(conn_t *c) {
  close(c->fd);
  free(c->buf);
  free(c);
}

static void mod(conn_t *c, unsigned ev) {
  if (c->ev == ev) return;
  c->ev = ev;
  struct epoll_event e = {.events = ev, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

// Writes back what it owes, then reads once more if the last read filled the buffer (epoll
// is level-triggered: a short read means the socket was drained, and a read that would only
// say EAGAIN is a system call per message a server does not need). Returns 0 when the
// connection was dropped.
static int pump(conn_t *c) {
  for (;;) {
    while (c->off < c->len) {
      ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN) {
          mod(c, EPOLLOUT);  // stop reading until the peer takes what we owe it
          return 1;
        }
        if (errno == EINTR) continue;
        drop(c);
        return 0;
      }
      c->off += (size_t)w;
    }
    int drained = c->len > 0 && c->len < BUF;
    c->off = c->len = 0;
    if (drained) {
      mod(c, EPOLLIN);
      return 1;
    }
    ssize_t r = read(c->fd, c->buf, BUF);
    if (r == 0) {
      drop(c);
      return 0;
    }
    if (r < 0) {
      if (errno == EAGAIN) {
        mod(c, EPOLLIN);
        return 1;
      }
      if (errno == EINTR) continue;
      drop(c);
      return 0;
    }
    c->len = (size_t)r;
  }
}

int main(int argc, char **argv) {
  int port = 0;
  const char *host = "127.0.0.1";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port"))
      port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--host"))
      host = argv[i + 1];
  }
  signal(SIGPIPE, SIG_IGN);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &sa.sin_addr);
  if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
    perror("echo-raw: bind/listen");
    return 1;
  }
  socklen_t sl = sizeof sa;
  getsockname(ls, (struct sockaddr *)&sa, &sl);
  printf("{\"port\":%d,\"pid\":%d}\n", ntohs(sa.sin_port), (int)getpid());
  fflush(stdout);
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
  static int stdin_tag;
  struct epoll_event es = {.events = EPOLLIN, .data.ptr = &stdin_tag};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &es);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno != EINTR) return 1;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == &stdin_tag) {
        char b[64];
        if (read(0, b, sizeof b) <= 0) return 0;
      } else if (evs[i].data.ptr == NULL) {
        for (;;) {
          int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn_t *c = calloc(1, sizeof *c);
          c->fd = fd;
          c->buf = malloc(BUF);
          c->ev = EPOLLIN;
          struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
        }
      } else {
        pump((conn_t *)evs[i].data.ptr);
      }
    }
  }
}
