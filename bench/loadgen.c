// loadgen: a small native WebSocket / raw TCP load client for bench/run.mjs.
//
// One thread, epoll, non-blocking sockets with TCP_NODELAY, frames masked once at start-up.
// Modes:
//   ws    N connections do the RFC 6455 upgrade, then each keeps K messages in flight (closed
//         loop), or, with --rate R, messages are scheduled open-loop at R msg/s in total
//         (round-robin over the connections) and latency is taken from the scheduled time.
//   raw   the same over plain TCP against an echo server: a "message" is --size bytes of the
//         byte stream (the physical ceiling for bench/echo-raw.c).
//   idle  N connections do the upgrade, a line {"ready":true,...} is printed, and they are
//         held open until standard input closes (or --hold-ms passes), then dropped.
// Connections to 127.x come from source addresses 127.0.0.1..8 (--src-ips), so that a machine
// whose ephemeral ports are mostly in TIME_WAIT still has room for 10k connections.
// Every reply is checked: opcode, length and payload bytes (server frames must be unmasked).
// Only messages completed inside the measuring window (after --warmup-ms, for --duration-ms)
// are counted. Output: one JSON line on stdout; on any error {"ok":false,"error":...} and
// exit status 2. Bounded: connect phase <= 60 s, drain after the window <= 5 s.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MODE_WS, MODE_RAW, MODE_IDLE };
enum { ST_FREE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN };

typedef struct {
  int fd, state;
  uint32_t events;
  int dirty;
  // handshake
  char *hbuf;
  int hlen;
  size_t req_off;
  // output: out_pending bytes still to write; out_total bytes written so far (pattern position)
  uint64_t out_pending, out_total;
  // frame parser
  uint8_t hdr[14];
  int hdr_have, hdr_need, in_payload, frame_fin, frame_op, msg_op;
  uint64_t frame_left, msg_off;
  // send timestamps of messages in flight, FIFO
  uint64_t *ring;
  uint32_t rcap, rhead, rcount;
} conn_t;

// ---- configuration ----
static int mode = MODE_WS;
static const char *host = "127.0.0.1";
static int port = 0;
static int nconns = 1, inflight = 1, binary = 0, connect_batch = 256, src_ips = 8;
static uint64_t size = 64;
static double rate = 0;
static uint64_t warmup_ns = 1000000000ull, duration_ns = 3000000000ull, hold_ns = 120000000000ull;
static int npids = 0;
static int pids[16];

// ---- state ----
static conn_t *conns;
static int ep;
static uint8_t *pattern;  // `copies` identical (masked) frames back to back
static uint64_t flen, patlen;
static uint8_t *expected;  // the payload as the echo must carry it
static uint8_t *rbuf;
#define RBUF (1u << 20)
static int opened, connecting_now, next_to_connect;
static int sending = 0, measuring = 0, finished_sending = 0;
static uint64_t total_inflight = 0;
static uint64_t msgs = 0, sched_overflow = 0, ctrl_frames = 0;
static uint64_t last_done_ns = 0, max_gap_ns = 0;
static uint64_t t_start, t_warm_end, t_meas_end, t_drain_end;
// latency histogram: 1 us buckets below 100 ms, 1 ms buckets up to 100 s
#define HUS 100000
static uint32_t hist_us[HUS], hist_ms[100000];
static uint64_t lat_n = 0, lat_sum = 0, lat_max = 0;
static const char *KEY = "dGhlIHNhbXBsZSBub25jZQ==";
static const char *ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
static char request[512];
static size_t request_len;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "loadgen: %s\n", msg);
  for (char *p = msg; *p; p++)
    if (*p == '"' || *p == '\\') *p = '\'';
  printf("{\"ok\":false,\"error\":\"%s\",\"opened\":%d,\"msgs\":%llu}\n", msg, opened,
         (unsigned long long)msgs);
  fflush(stdout);
  struct linger lg = {1, 0};
  for (int i = 0; conns && i < nconns; i++)
    if (conns[i].state != ST_FREE) {
      setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(conns[i].fd);
    }
  exit(2);
}

static void set_events(conn_t *c, uint32_t ev) {
  if (c->events == ev) return;
  struct epoll_event e = {.events = ev, .data.u32 = (uint32_t)(c - conns)};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) < 0) die("epoll_ctl MOD: %s", strerror(errno));
  c->events = ev;
}

static uint64_t cpu_ticks(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  // fields after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
  // utime(14) stime(15)
  unsigned long long ut = 0, st = 0;
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return 0;
  return ut + st;
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void start_connect(int i) {
  conn_t *c = &conns[i];
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket: %s (raise ulimit -n?)", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) die("bad host %s", host);
  if (src_ips > 1 && (ntohl(sa.sin_addr.s_addr) >> 24) == 127) {
    // Spread the connections over source addresses 127.0.0.1..N (the port is picked at
    // connect() time for the whole 4-tuple), so a machine whose ephemeral ports are mostly in
    // TIME_WAIT still has room for 10k connections.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i % src_ips));
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) die("bind source: %s", strerror(errno));
  }
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
    die("connect: %s", strerror(errno));
  c->fd = fd;
  c->state = ST_CONNECTING;
  c->hdr_need = 2;
  c->events = EPOLLOUT;
  struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl ADD: %s", strerror(errno));
  connecting_now++;
}

static void conn_opened(conn_t *c) {
  c->state = ST_OPEN;
  free(c->hbuf);
  c->hbuf = NULL;
  connecting_now--;
  opened++;
  set_events(c, EPOLLIN);
}

static void record_latency(uint64_t ns) {
  uint64_t us = ns / 1000;
  if (us < HUS)
    hist_us[us]++;
  else if (us / 1000 < 100000)
    hist_ms[us / 1000]++;
  else
    hist_ms[99999]++;
  lat_n++;
  lat_sum += us;
  if (us > lat_max) lat_max = us;
}

static uint64_t percentile(double p) {
  if (!lat_n) return 0;
  uint64_t rank = (uint64_t)(p * (double)lat_n);
  if (rank >= lat_n) rank = lat_n - 1;
  uint64_t seen = 0;
  for (uint64_t i = 0; i < HUS; i++) {
    seen += hist_us[i];
    if (seen > rank) return i;
  }
  for (uint64_t i = 100; i < 100000; i++) {
    seen += hist_ms[i];
    if (seen > rank) return i * 1000;
  }
  return lat_max;
}

// Queue one more message on c, sent at (or scheduled for) `ts`.
static int enqueue(conn_t *c, uint64_t ts) {
  if (c->rcount == c->rcap) {
    sched_overflow++;
    return 0;
  }
  c->ring[(c->rhead + c->rcount) % c->rcap] = ts;
  c->rcount++;
  c->out_pending += flen;
  total_inflight++;
  return 1;
}

static void flush(conn_t *c) {
  while (c->out_pending) {
    uint64_t pos = c->out_total % patlen;
    uint64_t n = patlen - pos;
    if (n > c->out_pending) n = c->out_pending;
    ssize_t w = send(c->fd, pattern + pos, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        set_events(c, EPOLLIN | EPOLLOUT);
        return;
      }
      if (errno == EINTR) continue;
      die("send on connection %d: %s", (int)(c - conns), strerror(errno));
    }
    c->out_pending -= (uint64_t)w;
    c->out_total += (uint64_t)w;
  }
  set_events(c, EPOLLIN);
}

static void message_done(conn_t *c, uint64_t now) {
  if (c->rcount == 0) die("reply without a request on connection %d", (int)(c - conns));
  uint64_t ts = c->ring[c->rhead];
  c->rhead = (c->rhead + 1) % c->rcap;
  c->rcount--;
  total_inflight--;
  if (measuring) {
    msgs++;
    record_latency(now > ts ? now - ts : 0);
    if (last_done_ns && now - last_done_ns > max_gap_ns) max_gap_ns = now - last_done_ns;
    last_done_ns = now;
  }
  if (sending && rate <= 0) enqueue(c, now);
}

static void parse(conn_t *c, const uint8_t *p, size_t n, uint64_t now) {
  int ci = (int)(c - conns);
  while (n > 0) {
    if (mode == MODE_RAW) {
      uint64_t take = size - c->msg_off;
      if (take > n) take = n;
      if (memcmp(p, expected + c->msg_off, take) != 0)
        die("raw echo mismatch on connection %d at byte %llu", ci, (unsigned long long)c->msg_off);
      c->msg_off += take;
      p += take;
      n -= take;
      if (c->msg_off == size) {
        c->msg_off = 0;
        message_done(c, now);
      }
      continue;
    }
    if (!c->in_payload) {
      while (n > 0 && c->hdr_have < c->hdr_need) {
        c->hdr[c->hdr_have++] = *p++;
        n--;
        if (c->hdr_have == 2) {
          if (c->hdr[1] & 0x80) die("masked frame from the server on connection %d", ci);
          if (c->hdr[0] & 0x70) die("RSV bits set on connection %d", ci);
          int l7 = c->hdr[1] & 0x7f;
          c->hdr_need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
        }
      }
      if (c->hdr_have < c->hdr_need) return;
      uint64_t len = c->hdr[1] & 0x7f;
      if (len == 126) len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
      if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | c->hdr[2 + i];
      }
      c->frame_fin = c->hdr[0] >> 7;
      c->frame_op = c->hdr[0] & 0x0f;
      c->frame_left = len;
      c->in_payload = 1;
      c->hdr_have = 0;
      c->hdr_need = 2;
      int op = c->frame_op;
      if (op >= 8) {
        if (len > 125 || !c->frame_fin) die("bad control frame on connection %d", ci);
        if (op == 8) die("server sent a close frame on connection %d", ci);
        if (op != 9 && op != 10) die("unknown opcode %d on connection %d", op, ci);
        ctrl_frames++;
      } else if (op == 0) {
        if (!c->msg_op) die("continuation without a message on connection %d", ci);
      } else if (op == 1 || op == 2) {
        if (c->msg_op) die("new message inside a fragmented one on connection %d", ci);
        int want = binary ? 2 : 1;
        if (op != want) die("opcode %d, expected %d, on connection %d", op, want, ci);
        c->msg_op = op;
        c->msg_off = 0;
      } else {
        die("unknown opcode %d on connection %d", op, ci);
      }
    }
    uint64_t take = c->frame_left < n ? c->frame_left : n;
    if (c->frame_op < 8 && take) {
      if (c->msg_off + take > size)
        die("reply longer than %llu bytes on connection %d", (unsigned long long)size, ci);
      if (memcmp(p, expected + c->msg_off, take) != 0)
        die("payload mismatch on connection %d at byte %llu", ci, (unsigned long long)c->msg_off);
      c->msg_off += take;
    }
    p += take;
    n -= take;
    c->frame_left -= take;
    if (c->frame_left == 0) {
      c->in_payload = 0;
      if (c->frame_op < 8 && c->frame_fin) {
        if (c->msg_off != size)
          die("reply of %llu bytes, expected %llu, on connection %d",
              (unsigned long long)c->msg_off, (unsigned long long)size, ci);
        c->msg_op = 0;
        c->msg_off = 0;
        message_done(c, now);
      }
    }
  }
}

static void on_handshake_readable(conn_t *c) {
  int ci = (int)(c - conns);
  ssize_t r = read(c->fd, c->hbuf + c->hlen, 2047 - c->hlen);
  if (r == 0) die("server closed connection %d during the handshake", ci);
  if (r < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    die("read during handshake: %s", strerror(errno));
  }
  c->hlen += (int)r;
  c->hbuf[c->hlen] = 0;
  char *end = strstr(c->hbuf, "\r\n\r\n");
  if (!end) {
    if (c->hlen >= 2047) die("handshake response too long on connection %d", ci);
    return;
  }
  if (strncmp(c->hbuf, "HTTP/1.1 101", 12) != 0)
    die("upgrade refused on connection %d: %.40s", ci, c->hbuf);
  if (!strstr(c->hbuf, ACCEPT)) die("wrong Sec-WebSocket-Accept on connection %d", ci);
  size_t head = (size_t)(end + 4 - c->hbuf);
  size_t extra = (size_t)c->hlen - head;
  uint8_t tmp[2048];
  memcpy(tmp, end + 4, extra);
  conn_opened(c);
  if (extra) parse(c, tmp, extra, now_ns());
}

static void on_connect_writable(conn_t *c) {
  int err = 0;
  socklen_t l = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
  if (err) die("connect to %s:%d: %s", host, port, strerror(err));
  if (mode == MODE_RAW) {
    conn_opened(c);
    return;
  }
  while (c->req_off < request_len) {
    ssize_t w = send(c->fd, request + c->req_off, request_len - c->req_off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN) return;
      die("send handshake: %s", strerror(errno));
    }
    c->req_off += (size_t)w;
  }
  c->hbuf = malloc(2048);
  c->hlen = 0;
  c->state = ST_HANDSHAKE;
  set_events(c, EPOLLIN);
}

static void on_readable(conn_t *c) {
  for (;;) {
    ssize_t r = read(c->fd, rbuf, RBUF);
    if (r == 0) die("server closed connection %d", (int)(c - conns));
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      die("read on connection %d: %s", (int)(c - conns), strerror(errno));
    }
    if (mode == MODE_IDLE) continue;
    parse(c, rbuf, (size_t)r, now_ns());
    if ((size_t)r < RBUF) return;
  }
}

static void handle(struct epoll_event *e) {
  if (e->data.u32 == 0xffffffffu) return;  // stdin, handled by the caller
  conn_t *c = &conns[e->data.u32];
  if (c->state == ST_CONNECTING) {
    if (e->events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connect_writable(c);
    return;
  }
  if (c->state == ST_HANDSHAKE) {
    if (e->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_handshake_readable(c);
    return;
  }
  if (e->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
  if (mode != MODE_IDLE && (e->events & EPOLLOUT)) flush(c);
  if (mode != MODE_IDLE && rate <= 0 && c->out_pending && !(c->events & EPOLLOUT)) flush(c);
}

static int wait_events(struct epoll_event *evs, int max, uint64_t timeout_ns) {
  struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000ull),
                        .tv_nsec = (long)(timeout_ns % 1000000000ull)};
  int n = epoll_pwait2(ep, evs, max, &ts, NULL);
  if (n < 0 && errno == ENOSYS)
    n = epoll_wait(ep, evs, max, (int)((timeout_ns + 999999) / 1000000));
  if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
  return n < 0 ? 0 : n;
}

static void usage(void) {
  fprintf(
      stderr,
      "usage: loadgen --port P [--mode ws|raw|idle] [--host 127.0.0.1] [--conns N]\n"
      "  [--inflight K] [--size BYTES] [--binary] [--rate MSG_PER_S] [--warmup-ms MS]\n"
      "  [--duration-ms MS] [--hold-ms MS] [--connect-batch N] [--src-ips N] [--pids PID,PID]\n");
  exit(1);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (i++, 1))
    if (ARG("--mode")) {
      mode = !strcmp(v, "ws")     ? MODE_WS
             : !strcmp(v, "raw")  ? MODE_RAW
             : !strcmp(v, "idle") ? MODE_IDLE
                                  : -1;
      if (mode < 0) usage();
    } else if (ARG("--host"))
      host = v;
    else if (ARG("--port"))
      port = atoi(v);
    else if (ARG("--conns"))
      nconns = atoi(v);
    else if (ARG("--inflight"))
      inflight = atoi(v);
    else if (ARG("--size"))
      size = strtoull(v, NULL, 10);
    else if (ARG("--rate"))
      rate = atof(v);
    else if (ARG("--warmup-ms"))
      warmup_ns = strtoull(v, NULL, 10) * 1000000ull;
    else if (ARG("--duration-ms"))
      duration_ns = strtoull(v, NULL, 10) * 1000000ull;
    else if (ARG("--hold-ms"))
      hold_ns = strtoull(v, NULL, 10) * 1000000ull;
    else if (ARG("--connect-batch"))
      connect_batch = atoi(v);
    else if (ARG("--pids")) {
      char *s = strdup(v);
      for (char *t = strtok(s, ","); t && npids < 16; t = strtok(NULL, ","))
        pids[npids++] = atoi(t);
    } else if (!strcmp(a, "--binary"))
      binary = 1;
    else
      usage();
#undef ARG
  }
  if (port <= 0 || nconns <= 0 || inflight <= 0 || size == 0 || connect_batch <= 0) usage();
  signal(SIGPIPE, SIG_IGN);

  // Payload, as echoed: printable ASCII for text (valid UTF-8), all byte values for binary.
  expected = malloc(size);
  for (uint64_t i = 0; i < size; i++)
    expected[i] = binary || mode == MODE_RAW ? (uint8_t)(i * 31 + 7) : (uint8_t)('a' + i % 26);
  // One frame, masked once; `copies` of it back to back so a burst goes out in one send().
  uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  uint8_t hdr[14];
  size_t hl = 0;
  if (mode != MODE_RAW) {
    hdr[hl++] = 0x80 | (binary ? 2 : 1);
    if (size < 126)
      hdr[hl++] = 0x80 | (uint8_t)size;
    else if (size < 65536) {
      hdr[hl++] = 0x80 | 126;
      hdr[hl++] = (uint8_t)(size >> 8);
      hdr[hl++] = (uint8_t)size;
    } else {
      hdr[hl++] = 0x80 | 127;
      for (int i = 7; i >= 0; i--) hdr[hl++] = (uint8_t)(size >> (8 * i));
    }
    memcpy(hdr + hl, mask, 4);
    hl += 4;
  }
  flen = hl + size;
  uint64_t copies = rate > 0 ? 16 : (uint64_t)inflight;
  if (copies * flen > (1u << 20)) copies = (1u << 20) / flen;
  if (copies < 1) copies = 1;
  patlen = copies * flen;
  pattern = malloc(patlen);
  for (uint64_t k = 0; k < copies; k++) {
    uint8_t *f = pattern + k * flen;
    memcpy(f, hdr, hl);
    for (uint64_t i = 0; i < size; i++)
      f[hl + i] = expected[i] ^ (mode == MODE_RAW ? 0 : mask[i & 3]);
  }
  rbuf = malloc(RBUF);
  request_len = (size_t)snprintf(request, sizeof request,
                                 "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                                 "Sec-WebSocket-Version: 13\r\n\r\n",
                                 host, port, KEY);

  conns = calloc((size_t)nconns, sizeof *conns);
  uint32_t rcap = rate > 0 ? 4096 : (uint32_t)inflight;
  if (mode != MODE_IDLE)
    for (int i = 0; i < nconns; i++) {
      conns[i].ring = malloc(rcap * sizeof(uint64_t));
      conns[i].rcap = rcap;
    }
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event evs[1024];

  // ---- connect phase: at most connect_batch connects/handshakes at a time ----
  uint64_t t0 = now_ns();
  while (opened < nconns) {
    while (next_to_connect < nconns && connecting_now < connect_batch)
      start_connect(next_to_connect++);
    int n = wait_events(evs, 1024, 100000000ull);
    for (int i = 0; i < n; i++) handle(&evs[i]);
    if (now_ns() - t0 > 60000000000ull)
      die("connect phase timed out: %d of %d connections open", opened, nconns);
  }
  double connect_ms = (double)(now_ns() - t0) / 1e6;

  if (mode == MODE_IDLE) {
    printf("{\"ready\":true,\"opened\":%d,\"connect_ms\":%.1f}\n", opened, connect_ms);
    fflush(stdout);
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = 0xffffffffu};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e);
    uint64_t end = now_ns() + hold_ns;
    for (;;) {
      uint64_t now = now_ns();
      if (now >= end) break;
      int n = wait_events(evs, 1024, end - now);
      int stop = 0;
      for (int i = 0; i < n; i++) {
        if (evs[i].data.u32 == 0xffffffffu) {
          char b[64];
          if (read(0, b, sizeof b) <= 0) stop = 1;
        } else {
          handle(&evs[i]);
        }
      }
      if (stop) break;
    }
    struct linger lg = {1, 0};
    for (int i = 0; i < nconns; i++) {
      setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(conns[i].fd);
    }
    return 0;
  }

  // ---- load phase ----
  t_start = now_ns();
  t_warm_end = t_start + warmup_ns;
  t_meas_end = t_warm_end + duration_ns;
  t_drain_end = t_meas_end + 5000000000ull;
  sending = 1;
  uint64_t sched_j = 0, next_at = t_start;
  double ns_per_msg = rate > 0 ? 1e9 / rate : 0;
  if (rate <= 0)
    for (int i = 0; i < nconns; i++) {
      for (int k = 0; k < inflight; k++) enqueue(&conns[i], t_start);
      flush(&conns[i]);
    }
  uint64_t ticks0[16] = {0}, ticks1[16] = {0};
  double cpu0 = 0, cpu1 = 0;
  uint64_t meas_t0 = 0, meas_t1 = 0;
  int *dirty = malloc((size_t)nconns * sizeof(int));
  int ndirty = 0;
  for (;;) {
    uint64_t now = now_ns();
    if (!measuring && !finished_sending && now >= t_warm_end) {
      for (int i = 0; i < npids; i++) ticks0[i] = cpu_ticks(pids[i]);
      cpu0 = self_cpu_s();
      meas_t0 = now_ns();
      measuring = 1;
      last_done_ns = meas_t0;
    }
    if (measuring && now >= t_meas_end) {
      meas_t1 = now_ns();
      for (int i = 0; i < npids; i++) ticks1[i] = cpu_ticks(pids[i]);
      cpu1 = self_cpu_s();
      if (meas_t1 - last_done_ns > max_gap_ns) max_gap_ns = meas_t1 - last_done_ns;
      measuring = 0;
      sending = 0;
      finished_sending = 1;
    }
    if (finished_sending && (total_inflight == 0 || now >= t_drain_end)) break;
    uint64_t timeout = 100000000ull;
    if (!finished_sending) {
      uint64_t edge = measuring ? t_meas_end : t_warm_end;
      timeout = edge > now ? edge - now : 0;
    }
    if (rate > 0 && sending) {
      while (next_at <= now) {
        conn_t *c = &conns[sched_j % (uint64_t)nconns];
        if (enqueue(c, next_at) && !c->dirty) {
          c->dirty = 1;
          dirty[ndirty++] = (int)(c - conns);
        }
        sched_j++;
        next_at = t_start + (uint64_t)((double)sched_j * ns_per_msg);
      }
      for (int i = 0; i < ndirty; i++) {
        conn_t *c = &conns[dirty[i]];
        c->dirty = 0;
        if (!(c->events & EPOLLOUT)) flush(c);
      }
      ndirty = 0;
      uint64_t until = next_at - now;
      if (until < timeout) timeout = until;
    }
    int n = wait_events(evs, 1024, timeout);
    for (int i = 0; i < n; i++) handle(&evs[i]);
  }
  double secs = (double)(meas_t1 - meas_t0) / 1e9;
  long clk = sysconf(_SC_CLK_TCK);
  printf(
      "{\"ok\":true,\"mode\":\"%s\",\"conns\":%d,\"inflight\":%d,\"size\":%llu,\"binary\":%s,"
      "\"rate\":%.0f,\"connect_ms\":%.1f,\"seconds\":%.4f,\"msgs\":%llu,\"msgs_per_s\":%.1f,"
      "\"bytes_per_s\":%.1f,\"lat_us\":{\"n\":%llu,\"mean\":%.1f,\"p50\":%llu,\"p90\":%llu,"
      "\"p99\":%llu,\"p999\":%llu,\"max\":%llu},\"max_gap_ms\":%.2f,\"unanswered\":%llu,"
      "\"sched_overflow\":%llu,\"ctrl_frames\":%llu,\"client_cpu_s\":%.3f,\"clk_tck\":%ld,"
      "\"server_cpu_s\":[",
      mode == MODE_WS ? "ws" : "raw", nconns, inflight, (unsigned long long)size,
      binary ? "true" : "false", rate, connect_ms, secs, (unsigned long long)msgs,
      (double)msgs / secs, (double)msgs * (double)size / secs, (unsigned long long)lat_n,
      lat_n ? (double)lat_sum / (double)lat_n : 0.0, (unsigned long long)percentile(0.5),
      (unsigned long long)percentile(0.9), (unsigned long long)percentile(0.99),
      (unsigned long long)percentile(0.999), (unsigned long long)lat_max, (double)max_gap_ns / 1e6,
      (unsigned long long)total_inflight, (unsigned long long)sched_overflow,
      (unsigned long long)ctrl_frames, cpu1 - cpu0, clk);
  for (int i = 0; i < npids; i++)
    printf("%s%.3f", i ? "," : "", (double)(ticks1[i] - ticks0[i]) / (double)clk);
  printf("]}\n");
  fflush(stdout);
  struct linger lg = {1, 0};
  for (int i = 0; i < nconns; i++) {
    setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(conns[i].fd);
  }
  return 0;
}
