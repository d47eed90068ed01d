// loadgen: a small native WebSocket / raw TCP load client for bench/run.mjs.
//
// One thread, epoll, non-blocking sockets with TCP_NODELAY, frames masked once at start-up.
// Modes:
//   ws      N connections do the RFC 6455 upgrade, then each keeps K messages in flight (closed
//           loop), or, with --rate R, messages are scheduled open-loop at R msg/s in total
//           (round-robin over the connections) and latency is taken from the scheduled time.
//   raw     the same over plain TCP against an echo server: a "message" is --size bytes of the
//           byte stream (the physical ceiling for bench/echo-raw.c).
//   idle    N connections do the upgrade, a line {"ready":true,...} is printed, and they are
//           held open until standard input closes (or --hold-ms passes), then dropped; a line
//           {"closed":true,"pings":P} follows. Pings are answered with pongs.
//   fanout  N subscriber connections (GET /sub) and one publisher (GET /pub). Each subscriber
//           first sends an 8-byte binary "hello" (all bits set) and waits for the server to
//           echo it: proof that the server has registered it. Then the publisher sends binary
//           messages of --size bytes, keeping at most --window of them not yet received by
//           every subscriber (closed loop): message s goes out once message s - window has
//           reached all N. A message carries its sequence number (8 bytes, big endian) and
//           then a pattern that depends on it; every subscriber checks every message: exactly
//           once, in order, length and every byte. A "message" in the output is one delivery
//           (one message to one subscriber); latency is publish (queued) to delivery.
//           --port2 P: subscribers 1, 3, 5, ... connect to port P instead (two server processes
//           that share their topics, e.g. through Redis; the publisher connects to --port).
//           --rate R: the publisher queues message s at start + s / R (open loop, still at
//           most --window outstanding); latency is taken from that scheduled time.
//           --proto sio: the same over Socket.IO 5 / Engine.IO 4 (GET /socket.io/?EIO=4&
//           transport=websocket&role=sub|pub): each connection sends the namespace CONNECT
//           ("40") and waits for its acknowledgement; a message is an event whose Buffer
//           argument is a binary attachment: a text frame 451-["name",{"_placeholder":...}]
//           then a binary frame; the hello is event "hello" (echoed), the publisher's messages
//           event "pub", and the binary frames are checked as above (text frames are headers;
//           Engine.IO pings "2" are answered "3").
//   flood   one connection sends binary messages of --size bytes (sequence number, 8 bytes big
//           endian, then bytes (i * 31 + 7) & 255) as fast as TCP takes them, for --duration-ms
//           or until a line (or EOF) on standard input. It then prints
//           {"ok":true,"sent":M,...} (M whole messages written) and holds the connection open
//           until standard input closes. The server checks what arrives (bench/server-*.mjs).
// --tls (ws mode): wss, OpenSSL on the same non-blocking sockets (the server's certificate is
// not verified: the bench makes its own); a "message" is the same frame, inside TLS records.
// Connections to 127.x come from source addresses 127.0.0.1..8 (--src-ips), so that a machine
// whose ephemeral ports are mostly in TIME_WAIT still has room for 19k connections.
// Every reply is checked: opcode, length and payload bytes (server frames must be unmasked).
// Only messages completed inside the measuring window (after --warmup-ms, for --duration-ms)
// are counted. Output: a line {"event":"window-open"} when the measuring window opens and
// {"event":"window-close"} when it closes, then one JSON result line on stdout; on any error
// {"ok":false,"error":...} and exit status 2. Bounded: connect phase <= 60 s, drain after the
// window <= 5 s.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { MODE_WS, MODE_RAW, MODE_IDLE, MODE_FANOUT, MODE_FLOOD };
enum { ST_FREE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN };
enum { ROLE_ECHO, ROLE_SUB, ROLE_PUB };

typedef struct {
  int fd, state, role;
  SSL *ssl;  // --tls
  int tls_up;
  uint32_t events;
  int dirty;
  // handshake
  const char *req;
  size_t req_len, req_off;
  char *hbuf;
  int hlen;
  // output: out_pending bytes still to write; out_total bytes written so far (pattern position)
  uint64_t out_pending, out_total;
  // a pong answering the last ping, written between two data frames
  uint8_t pong[131];
  int pong_len, pong_off;
  // frame parser
  uint8_t hdr[14];
  int hdr_have, hdr_need, in_payload, frame_fin, frame_op, msg_op;
  uint64_t frame_left, msg_off;
  uint8_t ctl[125];  // payload of the control frame being read
  int ctl_len;
  // send timestamps of messages in flight, FIFO
  uint64_t *ring;
  uint32_t rcap, rhead, rcount;
  // fan-out subscriber: the next sequence number due, the one being read, hello echoed
  uint64_t next_seq, cur_seq;
  int acked;
  // --proto sio: the text message being read (its start), namespace CONNECT acknowledged
  char text[256];
  int text_len, sio_ok;
} conn_t;

// ---- configuration ----
static int mode = MODE_WS;
static const char *host = "127.0.0.1";
static int port = 0;
static int nconns = 1, inflight = 1, binary = 0, connect_batch = 256, src_ips = 8, window = 4;
static uint64_t size = 64;
static double rate = 0;
static uint64_t warmup_ns = 1000000000ull, duration_ns = 3000000000ull, hold_ns = 120000000000ull;
static int npids = 0;
static int use_tls = 0;
static SSL_CTX *tls_ctx;
static int pids[16];
static int port2 = 0;      // fan-out: odd subscribers connect here (0: all on --port)
static int proto_sio = 0;  // fan-out over Socket.IO (see the top of the file)

// ---- state ----
static conn_t *conns;
static int ntotal;  // connections opened: nconns, plus the publisher in fan-out mode
static int ep;
static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};
static uint8_t *pattern;  // `copies` identical (masked) frames back to back
static uint64_t flen, patlen, hl;
static uint8_t hdr_tmpl[14];  // header of a data frame of `size` bytes, mask key included
static uint8_t *expected;     // the payload as the echo must carry it
static uint8_t *rbuf;
#define RBUF (1u << 20)
static int opened, connecting_now, next_to_connect;
static int sending = 0, measuring = 0, finished_sending = 0;
static uint64_t total_inflight = 0;
static uint64_t msgs = 0, sched_overflow = 0, ctrl_frames = 0, pings = 0;
static uint64_t last_done_ns = 0, max_gap_ns = 0;
static uint64_t t_start, t_warm_end, t_meas_end, t_drain_end;
// latency histogram: 1 us buckets below 100 ms, 1 ms buckets up to 100 s
#define HUS 100000
static uint32_t hist_us[HUS], hist_ms[100000];
static uint64_t lat_n = 0, lat_sum = 0, lat_max = 0;
static const char *KEY = "dGhlIHNhbXBsZSBub25jZQ==";
static const char *ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
static char req_root[512], req_sub[512], req_pub[512];
static size_t req_root_len, req_sub_len, req_pub_len;

// fan-out
#define FAN_HELLO 0xffffffffffffffffull
static conn_t *pub;           // the publisher, conns[nconns]
static uint8_t *fan_pat;      // byte i >= 8 of message s is fan_pat[fan_shift(s) + i]
static uint8_t *fan_patm;     // fan_pat masked with MASK (fan_shift is a multiple of 4)
static uint64_t pub_next;     // messages queued (the next sequence number)
static uint64_t pub_done;     // messages every subscriber has received
static uint64_t pub_written;  // messages written whole; pub_off bytes of the next one are out
static uint64_t pub_off;
static uint32_t *fan_cnt;  // [window] subscribers that received message s, at s % window
static uint64_t *fan_ts;   // [window] when message s was queued
static uint64_t fan_completed = 0, acks = 0;
// --proto sio: the publisher's text frame before each binary attachment (masked)
static uint8_t pub_pre[64];
static uint64_t pub_pre_len = 0;
static int sio_connected = 0;

// flood
static uint8_t *fl_buf;  // whole frames, sequence numbers fl_base.. from fl_off on
static uint64_t fl_len, fl_off, fl_base, fl_seq, fl_sent;
static int flooding = 0;
static int stdin_eof = 0;
static double connect_ms = 0;

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
  for (int i = 0; conns && i < ntotal; i++)
    if (conns[i].state != ST_FREE) {
      setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(conns[i].fd);
    }
  exit(2);
}

static int cid(const conn_t *c) { return (int)(c - conns); }

// send() / read() on a connection, through TLS with --tls. -1 with errno EAGAIN when the
// socket (or TLS) cannot go on now, 0 when the peer ended the stream.
static ssize_t io_send(conn_t *c, const void *p, size_t n) {
  if (!c->ssl) return send(c->fd, p, n, MSG_NOSIGNAL);
  if (n > (1u << 30)) n = 1u << 30;
  ERR_clear_error();
  int r = SSL_write(c->ssl, p, (int)n);
  if (r > 0) return r;
  int e = SSL_get_error(c->ssl, r);
  errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPIPE;
  return -1;
}

static ssize_t io_recv(conn_t *c, void *p, size_t n) {
  if (!c->ssl) return read(c->fd, p, n);
  ERR_clear_error();
  int r = SSL_read(c->ssl, p, (int)n);
  if (r > 0) return r;
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  if (e == SSL_ERROR_ZERO_RETURN) return 0;
  errno = ECONNRESET;
  return -1;
}

static void set_events(conn_t *c, uint32_t ev) {
  if (c->events == ev) return;
  struct epoll_event e = {.events = ev, .data.u32 = (uint32_t)cid(c)};
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

static size_t make_request(char *buf, size_t cap, const char *path) {
  return (size_t)snprintf(buf, cap,
                          "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n",
                          path, host, port, KEY);
}

static void start_connect(int i) {
  conn_t *c = &conns[i];
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket: %s (raise ulimit -n?)", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int p = mode == MODE_FANOUT && port2 && i < nconns && i % 2 == 1 ? port2 : port;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) die("bad host %s", host);
  if (src_ips > 1 && (ntohl(sa.sin_addr.s_addr) >> 24) == 127) {
    // Spread the connections over source addresses 127.0.0.1..N (the port is picked at
    // connect() time for the whole 4-tuple), so a machine whose ephemeral ports are mostly in
    // TIME_WAIT still has room for many connections.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i % src_ips));
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) die("bind source: %s", strerror(errno));
  }
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
    die("connect to port %d: %s", p, strerror(errno));
  c->fd = fd;
  c->state = ST_CONNECTING;
  c->hdr_need = 2;
  c->events = EPOLLOUT;
  if (mode == MODE_FANOUT) {
    c->role = i == nconns ? ROLE_PUB : ROLE_SUB;
    c->req = c->role == ROLE_PUB ? req_pub : req_sub;
    c->req_len = c->role == ROLE_PUB ? req_pub_len : req_sub_len;
  } else {
    c->req = req_root;
    c->req_len = req_root_len;
  }
  struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl ADD: %s", strerror(errno));
  connecting_now++;
}

// A masked frame of `n` <= 125 bytes into `f` (6 + n bytes); returns its length.
static int small_frame(uint8_t *f, uint8_t op, const char *data, int n) {
  f[0] = (uint8_t)(0x80 | op);
  f[1] = (uint8_t)(0x80 | n);
  memcpy(f + 2, MASK, 4);
  for (int i = 0; i < n; i++) f[6 + i] = (uint8_t)data[i] ^ MASK[i & 3];
  return 6 + n;
}

static void conn_opened(conn_t *c) {
  c->state = ST_OPEN;
  free(c->hbuf);
  c->hbuf = NULL;
  connecting_now--;
  opened++;
  set_events(c, EPOLLIN);
  if (proto_sio) {
    // Socket.IO: CONNECT to the main namespace (a fresh socket takes 8 bytes at once).
    uint8_t f[16];
    int n = small_frame(f, 1, "40", 2);
    if (send(c->fd, f, (size_t)n, MSG_NOSIGNAL) != n)
      die("could not send the Socket.IO CONNECT on connection %d", cid(c));
  }
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

// ---- output ----
// After a failed send on c: 1 when the socket is full (EAGAIN), EPOLLOUT then armed so that
// the write goes on when there is room.
static int socket_full(conn_t *c) {
  if (errno != EAGAIN && errno != EWOULDBLOCK) return 0;
  set_events(c, EPOLLIN | EPOLLOUT);
  return 1;
}

// Writes the pending pong, if any; returns 0 when the socket is full (EPOLLOUT is then armed).
static int write_pong(conn_t *c) {
  while (c->pong_off < c->pong_len) {
    ssize_t w = io_send(c, c->pong + c->pong_off, (size_t)(c->pong_len - c->pong_off));
    if (w < 0) {
      if (socket_full(c)) return 0;
      if (errno == EINTR) continue;
      die("send pong on connection %d: %s", cid(c), strerror(errno));
    }
    c->pong_off += (int)w;
  }
  c->pong_off = c->pong_len = 0;
  return 1;
}

// ws/raw: writes the queued frames; the pong goes out between two frames.
static void flush(conn_t *c) {
  for (;;) {
    if (c->pong_len && c->out_total % flen == 0 && !write_pong(c)) return;
    if (!c->out_pending) break;
    uint64_t pos = c->out_total % patlen;
    uint64_t n = patlen - pos;
    if (n > c->out_pending) n = c->out_pending;
    ssize_t w = io_send(c, pattern + pos, n);
    if (w < 0) {
      if (socket_full(c)) return;
      if (errno == EINTR) continue;
      die("send on connection %d: %s", cid(c), strerror(errno));
    }
    c->out_pending -= (uint64_t)w;
    c->out_total += (uint64_t)w;
  }
  set_events(c, EPOLLIN);
}

static uint64_t fan_shift(uint64_t seq) { return 4 * (seq % 64); }

// Header and the masked sequence number of message `seq`, into `head` (hl + 8 bytes).
static void seq_head(uint8_t *head, uint64_t seq) {
  memcpy(head, hdr_tmpl, hl);
  for (int k = 0; k < 8; k++) head[hl + k] = (uint8_t)(seq >> (56 - 8 * k)) ^ MASK[k & 3];
}

// fan-out publisher: writes messages pub_written..pub_next-1, pong between two of them.
static void flush_pub(conn_t *c) {
  for (;;) {
    if (c->pong_len && pub_off == 0 && !write_pong(c)) return;
    if (pub_written == pub_next) break;
    uint8_t head[32];
    seq_head(head, pub_written);
    struct iovec iov[3];
    int n = 0;
    uint64_t hlen = hl + 8;
    // --proto sio: the event's text frame first (pub_pre_len is 0 otherwise)
    if (pub_off < pub_pre_len) iov[n++] = (struct iovec){pub_pre + pub_off, pub_pre_len - pub_off};
    uint64_t o = pub_off > pub_pre_len ? pub_off - pub_pre_len : 0;  // offset in the frame
    if (o < hlen) iov[n++] = (struct iovec){head + o, hlen - o};
    uint64_t body_off = o < hlen ? 8 : o - hl;  // payload offset
    iov[n++] = (struct iovec){fan_patm + fan_shift(pub_written) + body_off, size - body_off};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
    if (w < 0) {
      if (socket_full(c)) return;
      if (errno == EINTR) continue;
      die("send on the publisher: %s", strerror(errno));
    }
    pub_off += (uint64_t)w;
    if (pub_off == pub_pre_len + flen) {
      pub_written++;
      pub_off = 0;
    }
  }
  set_events(c, EPOLLIN);
}

// flood: refills fl_buf with whole frames and writes it until told to stop.
static void flush_flood(conn_t *c) {
  for (;;) {
    if (fl_off == fl_len) {
      if (c->pong_len && !write_pong(c)) return;
      if (!flooding) break;
      uint64_t per = fl_len / flen;
      for (uint64_t k = 0; k < per; k++) seq_head(fl_buf + k * flen, fl_seq + k);
      fl_base = fl_seq;
      fl_seq += per;
      fl_off = 0;
    }
    ssize_t w = send(c->fd, fl_buf + fl_off, fl_len - fl_off, MSG_NOSIGNAL);
    if (w < 0) {
      if (socket_full(c)) return;
      if (errno == EINTR) continue;
      die("send on the flood connection: %s", strerror(errno));
    }
    fl_off += (uint64_t)w;
    fl_sent = fl_base + fl_off / flen;
  }
  set_events(c, EPOLLIN);
}

static void flush_conn(conn_t *c) {
  if (mode == MODE_WS || mode == MODE_RAW)
    flush(c);
  else if (c->role == ROLE_PUB)
    flush_pub(c);
  else if (mode == MODE_FLOOD)
    flush_flood(c);
  else if (write_pong(c))
    set_events(c, EPOLLIN);
}

static void queue_pong(conn_t *c) {
  pings++;
  if (c->pong_off) return;  // one is half written: that one answers this ping too
  int n = c->ctl_len;
  c->pong[0] = 0x8a;
  c->pong[1] = (uint8_t)(0x80 | n);
  memcpy(c->pong + 2, MASK, 4);
  for (int i = 0; i < n; i++) c->pong[6 + i] = c->ctl[i] ^ MASK[i & 3];
  c->pong_len = 6 + n;
  if (!(c->events & EPOLLOUT)) flush_conn(c);
}

// --proto sio: answers an Engine.IO ping ("2") with a pong ("3"), between two messages.
static void queue_sio_pong(conn_t *c) {
  pings++;
  if (c->pong_off) return;
  c->pong_len = small_frame(c->pong, 1, "3", 1);
  if (!(c->events & EPOLLOUT)) flush_conn(c);
}

// --proto sio: a whole text message (Engine.IO / Socket.IO packet) from the server.
static void sio_text(conn_t *c) {
  const char *t = c->text;
  int n = c->text_len;
  c->text_len = 0;
  if (n >= 2 && t[0] == '4' && t[1] == '0') {
    if (!c->sio_ok) {
      c->sio_ok = 1;
      sio_connected++;
    }
  } else if (n == 1 && t[0] == '2') {
    queue_sio_pong(c);
  } else if (n >= 2 && t[0] == '4' && (t[1] == '1' || t[1] == '4')) {
    die("Socket.IO %s on connection %d: %.100s", t[1] == '1' ? "disconnect" : "connect error",
        cid(c), t);
  }
  // '0{...}' (Engine.IO open), '451-[...]' (the header of a binary event, whose attachment is
  // the next binary message): nothing to do.
}

// ---- ws/raw echo ----
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

static void note_done(uint64_t now, uint64_t ts) {
  msgs++;
  record_latency(now > ts ? now - ts : 0);
  if (last_done_ns && now - last_done_ns > max_gap_ns) max_gap_ns = now - last_done_ns;
  last_done_ns = now;
}

static void echo_done(conn_t *c, uint64_t now) {
  if (c->rcount == 0) die("reply without a request on connection %d", cid(c));
  uint64_t ts = c->ring[c->rhead];
  c->rhead = (c->rhead + 1) % c->rcap;
  c->rcount--;
  total_inflight--;
  if (measuring) note_done(now, ts);
  if (sending && rate <= 0) enqueue(c, now);
}

// ---- fan-out ----
// When message `seq` is due with --rate.
static uint64_t pub_due(uint64_t seq) { return t_start + (uint64_t)((double)seq * 1e9 / rate); }

static void pub_fill(uint64_t now) {
  if (!sending) return;
  uint64_t before = pub_next;
  while (pub_next < pub_done + (uint64_t)window) {
    uint64_t at = now;
    if (rate > 0) {
      at = pub_due(pub_next);
      if (at > now) break;
    }
    fan_ts[pub_next % (uint64_t)window] = at;
    fan_cnt[pub_next % (uint64_t)window] = 0;
    pub_next++;
  }
  if (pub_next != before && !(pub->events & EPOLLOUT)) flush_pub(pub);
}

static void fan_delivered(conn_t *c, uint64_t now) {
  uint64_t s = c->cur_seq;
  if (s == FAN_HELLO) {
    if (c->acked) die("subscriber %d: a second hello echo", cid(c));
    c->acked = 1;
    acks++;
    return;
  }
  c->next_seq++;
  uint64_t slot = s % (uint64_t)window;
  fan_cnt[slot]++;
  if (measuring) note_done(now, fan_ts[slot]);
  while (pub_done < pub_next && fan_cnt[pub_done % (uint64_t)window] == (uint32_t)nconns) {
    pub_done++;
    if (measuring) fan_completed++;
  }
}

// Checks bytes [c->msg_off, c->msg_off + n) of a subscriber's message.
static void fan_payload(conn_t *c, const uint8_t *p, uint64_t n) {
  int ci = cid(c);
  if (c->role == ROLE_PUB) die("the publisher received a message");
  while (n && c->msg_off < 8) {
    c->cur_seq = (c->cur_seq << 8) | *p++;
    n--;
    if (++c->msg_off == 8) {
      uint64_t s = c->cur_seq;
      if (s == FAN_HELLO) {
        if (c->acked) die("subscriber %d: hello echoed twice", ci);
      } else if (!c->acked) {
        die("subscriber %d: message %llu before the echo of its hello", ci, (unsigned long long)s);
      } else if (s != c->next_seq) {
        die("subscriber %d: message %llu where %llu was due (%s)", ci, (unsigned long long)s,
            (unsigned long long)c->next_seq,
            s < c->next_seq ? "duplicated or reordered"
            : s >= pub_next ? "never published"
                            : "lost or reordered");
      }
    }
  }
  if (!n) return;
  if (c->cur_seq == FAN_HELLO) die("subscriber %d: hello echo longer than 8 bytes", ci);
  if (c->msg_off + n > size)
    die("subscriber %d: message longer than %llu bytes", ci, (unsigned long long)size);
  if (memcmp(p, fan_pat + fan_shift(c->cur_seq) + c->msg_off, n) != 0)
    die("subscriber %d: message %llu corrupted near byte %llu", ci, (unsigned long long)c->cur_seq,
        (unsigned long long)c->msg_off);
  c->msg_off += n;
}

// ---- frames from the server ----
static void message_end(conn_t *c, uint64_t now) {
  int ci = cid(c);
  if (proto_sio && c->msg_op == 1) {
    sio_text(c);
    return;
  }
  if (mode == MODE_FANOUT) {
    uint64_t want = c->cur_seq == FAN_HELLO ? 8 : size;
    if (c->msg_off != want)
      die("subscriber %d: message of %llu bytes, expected %llu", ci, (unsigned long long)c->msg_off,
          (unsigned long long)want);
    fan_delivered(c, now);
    c->cur_seq = 0;
  } else if (mode == MODE_WS) {
    if (c->msg_off != size)
      die("reply of %llu bytes, expected %llu, on connection %d", (unsigned long long)c->msg_off,
          (unsigned long long)size, ci);
    echo_done(c, now);
  } else if (mode == MODE_FLOOD) {
    die("the server sent a message on the flood connection");
  }
  // idle: data messages are not expected, and ignored
}

static void payload(conn_t *c, const uint8_t *p, uint64_t n) {
  int ci = cid(c);
  if (proto_sio && c->msg_op == 1) {
    uint64_t room = sizeof c->text - 1 - (uint64_t)c->text_len;
    uint64_t k = n < room ? n : room;  // the start of a long text is enough
    memcpy(c->text + c->text_len, p, k);
    c->text_len += (int)k;
    c->text[c->text_len] = 0;
    return;
  }
  if (mode == MODE_FANOUT) {
    fan_payload(c, p, n);
    return;
  }
  if (mode != MODE_WS) return;
  if (c->msg_off + n > size)
    die("reply longer than %llu bytes on connection %d", (unsigned long long)size, ci);
  if (memcmp(p, expected + c->msg_off, n) != 0)
    die("payload mismatch on connection %d at byte %llu", ci, (unsigned long long)c->msg_off);
  c->msg_off += n;
}

static void parse(conn_t *c, const uint8_t *p, size_t n, uint64_t now) {
  int ci = cid(c);
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
        echo_done(c, now);
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
        c->ctl_len = 0;
      } else if (op == 0) {
        if (!c->msg_op) die("continuation without a message on connection %d", ci);
      } else if (op == 1 || op == 2) {
        if (c->msg_op) die("new message inside a fragmented one on connection %d", ci);
        int want = binary ? 2 : 1;
        if (mode != MODE_IDLE && op != want && !(proto_sio && op == 1))
          die("opcode %d, expected %d, on connection %d", op, want, ci);
        c->msg_op = op;
        c->msg_off = 0;
        c->text_len = 0;
      } else {
        die("unknown opcode %d on connection %d", op, ci);
      }
    }
    uint64_t take = c->frame_left < n ? c->frame_left : n;
    if (c->frame_op >= 8) {
      memcpy(c->ctl + c->ctl_len, p, take);
      c->ctl_len += (int)take;
    } else if (take) {
      payload(c, p, take);
    }
    p += take;
    n -= take;
    c->frame_left -= take;
    if (c->frame_left == 0) {
      c->in_payload = 0;
      if (c->frame_op == 9) queue_pong(c);
      if (c->frame_op < 8 && c->frame_fin) {
        message_end(c, now);
        c->msg_op = 0;
        c->msg_off = 0;
      }
    }
  }
}

// ---- connections ----
static void on_readable(conn_t *c);

static void on_handshake_readable(conn_t *c) {
  int ci = cid(c);
  ssize_t r = io_recv(c, c->hbuf + c->hlen, 2047 - (size_t)c->hlen);
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
  if (c->ssl && SSL_pending(c->ssl)) on_readable(c);
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
  if (use_tls && !c->tls_up) {
    if (!c->ssl) {
      c->ssl = SSL_new(tls_ctx);
      if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) die("SSL_new failed");
    }
    ERR_clear_error();
    int r = SSL_connect(c->ssl);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ)
        set_events(c, EPOLLIN);
      else if (e == SSL_ERROR_WANT_WRITE)
        set_events(c, EPOLLOUT);
      else
        die("TLS handshake on connection %d failed: %s", cid(c),
            ERR_reason_error_string(ERR_get_error()));
      return;
    }
    c->tls_up = 1;
  }
  while (c->req_off < c->req_len) {
    ssize_t w = io_send(c, c->req + c->req_off, c->req_len - c->req_off);
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
  // TLS may hold the response already (epoll would not say so).
  if (c->ssl && SSL_pending(c->ssl)) on_handshake_readable(c);
}

static void on_readable(conn_t *c) {
  for (;;) {
    ssize_t r = io_recv(c, rbuf, RBUF);
    if (r == 0) die("server closed connection %d", cid(c));
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      die("read on connection %d: %s", cid(c), strerror(errno));
    }
    parse(c, rbuf, (size_t)r, now_ns());
    // TLS: read until it says "want more" (records it holds are invisible to epoll).
    if ((size_t)r < RBUF && !c->ssl) return;
  }
}

#define STDIN_TAG 0xffffffffu

static void handle(struct epoll_event *e) {
  if (e->data.u32 == STDIN_TAG) return;  // handled by the caller
  conn_t *c = &conns[e->data.u32];
  if (c->state == ST_CONNECTING) {
    // (EPOLLIN is armed only while a TLS handshake waits for the server.)
    if (e->events & (EPOLLOUT | EPOLLIN | EPOLLERR | EPOLLHUP)) on_connect_writable(c);
    return;
  }
  if (c->state == ST_HANDSHAKE) {
    if (e->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_handshake_readable(c);
    return;
  }
  if (e->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
  if (e->events & EPOLLOUT) flush_conn(c);
  if ((mode == MODE_WS || mode == MODE_RAW) && rate <= 0 && c->out_pending &&
      !(c->events & EPOLLOUT))
    flush(c);
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

static void watch_stdin(void) {
  struct epoll_event e = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e);
}

// Reads standard input after an event on it; returns 1 on EOF or error.
static int stdin_closed(void) {
  char b[64];
  ssize_t r = read(0, b, sizeof b);
  if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
    epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
    stdin_eof = 1;
    return 1;
  }
  return 0;
}

static void drop_all(void) {
  struct linger lg = {1, 0};
  for (int i = 0; i < ntotal; i++) {
    setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(conns[i].fd);
  }
}

// Serves events until standard input closes or `end` passes.
static void hold_until_stdin_closes(uint64_t end) {
  struct epoll_event evs[1024];
  while (!stdin_eof) {
    uint64_t now = now_ns();
    if (now >= end) return;
    int n = wait_events(evs, 1024, end - now);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u32 != STDIN_TAG)
        handle(&evs[i]);
      else if (stdin_closed())
        return;
    }
  }
}

// ---- output of a measured run ----
typedef struct {
  uint64_t ticks0[16], ticks1[16];
  double cpu0, cpu1;
  uint64_t t0, t1;
} window_t;

static void window_open(window_t *w) {
  for (int i = 0; i < npids; i++) w->ticks0[i] = cpu_ticks(pids[i]);
  w->cpu0 = self_cpu_s();
  w->t0 = now_ns();
  measuring = 1;
  last_done_ns = w->t0;
  printf("{\"event\":\"window-open\"}\n");
  fflush(stdout);
}

static void window_close(window_t *w) {
  w->t1 = now_ns();
  for (int i = 0; i < npids; i++) w->ticks1[i] = cpu_ticks(pids[i]);
  w->cpu1 = self_cpu_s();
  if (w->t1 - last_done_ns > max_gap_ns) max_gap_ns = w->t1 - last_done_ns;
  measuring = 0;
  printf("{\"event\":\"window-close\"}\n");
  fflush(stdout);
}

// The run's phases at time `now`: the window opens when the warm-up is over; at its end it closes
// and sending stops (what is in flight may still drain).
static void window_step(window_t *w, uint64_t now) {
  if (!measuring && !finished_sending && now >= t_warm_end) window_open(w);
  if (measuring && now >= t_meas_end) {
    window_close(w);
    sending = 0;
    finished_sending = 1;
  }
}

static void print_result(const window_t *w, uint64_t unanswered, const char *extra) {
  double secs = (double)(w->t1 - w->t0) / 1e9;
  long clk = sysconf(_SC_CLK_TCK);
  static const char *names[] = {"ws", "raw", "idle", "fanout", "flood"};
  printf(
      "{\"ok\":true,\"mode\":\"%s\",\"conns\":%d,\"inflight\":%d,\"size\":%llu,\"binary\":%s,"
      "\"rate\":%.0f,\"connect_ms\":%.1f,\"seconds\":%.4f,\"msgs\":%llu,\"msgs_per_s\":%.1f,"
      "\"bytes_per_s\":%.1f,\"lat_us\":{\"n\":%llu,\"mean\":%.1f,\"p50\":%llu,\"p90\":%llu,"
      "\"p99\":%llu,\"p999\":%llu,\"max\":%llu},\"max_gap_ms\":%.2f,\"unanswered\":%llu,"
      "\"sched_overflow\":%llu,\"ctrl_frames\":%llu,\"pings\":%llu,\"client_cpu_s\":%.3f,"
      "\"clk_tck\":%ld%s,\"server_cpu_s\":[",
      names[mode], nconns, inflight, (unsigned long long)size, binary ? "true" : "false", rate,
      connect_ms, secs, (unsigned long long)msgs, (double)msgs / secs,
      (double)msgs * (double)size / secs, (unsigned long long)lat_n,
      lat_n ? (double)lat_sum / (double)lat_n : 0.0, (unsigned long long)percentile(0.5),
      (unsigned long long)percentile(0.9), (unsigned long long)percentile(0.99),
      (unsigned long long)percentile(0.999), (unsigned long long)lat_max, (double)max_gap_ns / 1e6,
      (unsigned long long)unanswered, (unsigned long long)sched_overflow,
      (unsigned long long)ctrl_frames, (unsigned long long)pings, w->cpu1 - w->cpu0, clk, extra);
  for (int i = 0; i < npids; i++)
    printf("%s%.3f", i ? "," : "", (double)(w->ticks1[i] - w->ticks0[i]) / (double)clk);
  printf("]}\n");
  fflush(stdout);
}

// ---- the modes after the connect phase ----
static void run_idle(void) {
  printf("{\"ready\":true,\"opened\":%d,\"connect_ms\":%.1f}\n", opened, connect_ms);
  fflush(stdout);
  watch_stdin();
  hold_until_stdin_closes(now_ns() + hold_ns);
  drop_all();
  printf("{\"closed\":true,\"pings\":%llu}\n", (unsigned long long)pings);
  fflush(stdout);
}

static void run_echo(void) {
  struct epoll_event evs[1024];
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
  window_t w = {0};
  int *dirty = malloc((size_t)nconns * sizeof(int));
  int ndirty = 0;
  for (;;) {
    uint64_t now = now_ns();
    window_step(&w, now);
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
          dirty[ndirty++] = cid(c);
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
  print_result(&w, total_inflight, "");
}

static void run_fanout(void) {
  struct epoll_event evs[1024];
  uint64_t t0 = now_ns();
  if (proto_sio) {
    // Socket.IO: every connection's namespace CONNECT acknowledged before anything else.
    while (sio_connected < ntotal) {
      int n = wait_events(evs, 1024, 100000000ull);
      for (int i = 0; i < n; i++) handle(&evs[i]);
      if (now_ns() - t0 > 30000000000ull)
        die("only %d of %d Socket.IO connections acknowledged within 30 s", sio_connected, ntotal);
    }
  }
  // Every subscriber says hello; the server's echo proves it has registered the subscriber.
  uint8_t hello[96];
  int hello_len = 0;
  if (proto_sio) {
    static const char ev[] = "451-[\"hello\",{\"_placeholder\":true,\"num\":0}]";
    hello_len = small_frame(hello, 1, ev, (int)strlen(ev));
  }
  uint8_t *h = hello + hello_len;
  h[0] = 0x82;
  h[1] = 0x88;
  memcpy(h + 2, MASK, 4);
  for (int k = 0; k < 8; k++) h[6 + k] = 0xff ^ MASK[k & 3];
  hello_len += 14;
  for (int i = 0; i < nconns; i++)
    if (send(conns[i].fd, hello, (size_t)hello_len, MSG_NOSIGNAL) != hello_len)
      die("could not send the hello on subscriber %d", i);
  t0 = now_ns();
  while (acks < (uint64_t)nconns) {
    int n = wait_events(evs, 1024, 100000000ull);
    for (int i = 0; i < n; i++) handle(&evs[i]);
    if (now_ns() - t0 > 30000000000ull)
      die("only %llu of %d subscribers had their hello echoed within 30 s",
          (unsigned long long)acks, nconns);
  }
  t_start = now_ns();
  t_warm_end = t_start + warmup_ns;
  t_meas_end = t_warm_end + duration_ns;
  t_drain_end = t_meas_end + 5000000000ull;
  sending = 1;
  window_t w = {0};
  pub_fill(t_start);
  for (;;) {
    uint64_t now = now_ns();
    window_step(&w, now);
    if (finished_sending && (pub_done == pub_next || now >= t_drain_end)) break;
    uint64_t timeout = 100000000ull;
    if (!finished_sending) {
      uint64_t edge = measuring ? t_meas_end : t_warm_end;
      timeout = edge > now ? edge - now : 0;
      if (rate > 0 && pub_next < pub_done + (uint64_t)window) {
        uint64_t due = pub_due(pub_next);
        uint64_t until = due > now ? due - now : 0;
        if (until < timeout) timeout = until;
      }
    }
    int n = wait_events(evs, 1024, timeout);
    for (int i = 0; i < n; i++) handle(&evs[i]);
    pub_fill(now_ns());
  }
  uint64_t missing = 0;
  for (int i = 0; i < nconns; i++) missing += pub_next - conns[i].next_seq;
  char extra[256];
  snprintf(extra, sizeof extra,
           ",\"subscribers\":%d,\"window\":%d,\"published\":%llu,\"completed_in_window\":%llu,"
           "\"missing\":%llu,\"proto\":\"%s\",\"port2\":%d",
           nconns, window, (unsigned long long)pub_next, (unsigned long long)fan_completed,
           (unsigned long long)missing, proto_sio ? "sio" : "ws", port2);
  print_result(&w, pub_next - pub_done, extra);
}

static void run_flood(void) {
  struct epoll_event evs[1024];
  uint64_t per = (256 * 1024) / flen;
  if (per < 1) per = 1;
  fl_len = per * flen;
  fl_buf = malloc(fl_len);
  for (uint64_t k = 0; k < per; k++)
    for (uint64_t i = 8; i < size; i++)
      fl_buf[k * flen + hl + i] = (uint8_t)(i * 31 + 7) ^ MASK[i & 3];
  fl_off = fl_len;  // empty: the first flush fills it
  watch_stdin();
  window_t w = {0};
  window_open(&w);
  uint64_t end = w.t0 + duration_ns;
  const char *why = "time";
  flooding = 1;
  flush_flood(&conns[0]);
  for (;;) {
    uint64_t now = now_ns();
    if (now >= end) break;
    int n = wait_events(evs, 1024, end - now);
    int stop = 0;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u32 == STDIN_TAG) {
        stdin_closed();
        stop = 1;
      } else {
        handle(&evs[i]);
      }
    }
    if (stop) {
      why = "stdin";
      break;
    }
  }
  flooding = 0;
  window_close(&w);
  // Finish the frame being written (so that the stream ends on a message boundary), for at
  // most 2 s: fl_len is cut at the end of that frame.
  uint64_t whole = (fl_off + flen - 1) / flen * flen;
  fl_len = whole;
  uint64_t until = now_ns() + 2000000000ull;
  while (fl_off < fl_len && now_ns() < until) {
    int n = wait_events(evs, 1024, 100000000ull);
    for (int i = 0; i < n; i++)
      if (evs[i].data.u32 != STDIN_TAG) handle(&evs[i]);
  }
  msgs = fl_sent;
  char extra[160];
  snprintf(extra, sizeof extra, ",\"sent\":%llu,\"stopped_by\":\"%s\",\"partial_frame\":%s",
           (unsigned long long)fl_sent, why, fl_off < fl_len ? "true" : "false");
  print_result(&w, 0, extra);
  hold_until_stdin_closes(now_ns() + hold_ns);
  drop_all();
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [--mode ws|raw|idle|fanout|flood] [--host 127.0.0.1]\n"
          "  [--conns N] [--inflight K] [--size BYTES] [--binary] [--rate MSG_PER_S]\n"
          "  [--window W] [--warmup-ms MS] [--duration-ms MS] [--hold-ms MS]\n"
          "  [--connect-batch N] [--src-ips N] [--pids PID,PID] [--tls]\n"
          "  fanout: [--port2 P] [--proto ws|sio]\n");
  exit(1);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (i++, 1))
    if (ARG("--mode")) {
      mode = !strcmp(v, "ws")       ? MODE_WS
             : !strcmp(v, "raw")    ? MODE_RAW
             : !strcmp(v, "idle")   ? MODE_IDLE
             : !strcmp(v, "fanout") ? MODE_FANOUT
             : !strcmp(v, "flood")  ? MODE_FLOOD
                                    : -1;
      if (mode < 0) usage();
    } else if (ARG("--host"))
      host = v;
    else if (ARG("--port"))
      port = atoi(v);
    else if (ARG("--port2"))
      port2 = atoi(v);
    else if (ARG("--proto")) {
      if (strcmp(v, "ws") && strcmp(v, "sio")) usage();
      proto_sio = !strcmp(v, "sio");
    } else if (ARG("--conns"))
      nconns = atoi(v);
    else if (ARG("--inflight"))
      inflight = atoi(v);
    else if (ARG("--size"))
      size = strtoull(v, NULL, 10);
    else if (ARG("--rate"))
      rate = atof(v);
    else if (ARG("--window"))
      window = atoi(v);
    else if (ARG("--warmup-ms"))
      warmup_ns = strtoull(v, NULL, 10) * 1000000ull;
    else if (ARG("--duration-ms"))
      duration_ns = strtoull(v, NULL, 10) * 1000000ull;
    else if (ARG("--hold-ms"))
      hold_ns = strtoull(v, NULL, 10) * 1000000ull;
    else if (ARG("--connect-batch"))
      connect_batch = atoi(v);
    else if (ARG("--src-ips"))
      src_ips = atoi(v);
    else if (ARG("--pids")) {
      char *s = strdup(v);
      for (char *t = strtok(s, ","); t && npids < 16; t = strtok(NULL, ","))
        pids[npids++] = atoi(t);
    } else if (!strcmp(a, "--binary"))
      binary = 1;
    else if (!strcmp(a, "--tls"))
      use_tls = 1;
    else
      usage();
#undef ARG
  }
  if (port <= 0 || nconns <= 0 || inflight <= 0 || size == 0 || connect_batch <= 0 || window <= 0 ||
      src_ips <= 0)
    usage();
  if ((port2 || proto_sio) && mode != MODE_FANOUT) usage();
  if (mode == MODE_FANOUT || mode == MODE_FLOOD) {
    binary = 1;
    if (size < 16) {
      fprintf(stderr, "loadgen: --size must be at least 16 in %s mode\n",
              mode == MODE_FLOOD ? "flood" : "fanout");
      exit(1);
    }
  }
  if (mode == MODE_FLOOD) nconns = 1;
  if (use_tls && mode != MODE_WS) {
    fprintf(stderr, "loadgen: --tls is for --mode ws only\n");
    exit(1);
  }
  signal(SIGPIPE, SIG_IGN);
  if (use_tls) {
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx) die("SSL_CTX_new failed");
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }

  // Payload, as echoed: printable ASCII for text (valid UTF-8), all byte values for binary.
  expected = malloc(size);
  for (uint64_t i = 0; i < size; i++)
    expected[i] = binary || mode == MODE_RAW ? (uint8_t)(i * 31 + 7) : (uint8_t)('a' + i % 26);
  // Frame header, mask key included.
  hl = 0;
  if (mode != MODE_RAW) {
    hdr_tmpl[hl++] = 0x80 | (binary ? 2 : 1);
    if (size < 126)
      hdr_tmpl[hl++] = 0x80 | (uint8_t)size;
    else if (size < 65536) {
      hdr_tmpl[hl++] = 0x80 | 126;
      hdr_tmpl[hl++] = (uint8_t)(size >> 8);
      hdr_tmpl[hl++] = (uint8_t)size;
    } else {
      hdr_tmpl[hl++] = 0x80 | 127;
      for (int i = 7; i >= 0; i--) hdr_tmpl[hl++] = (uint8_t)(size >> (8 * i));
    }
    memcpy(hdr_tmpl + hl, MASK, 4);
    hl += 4;
  }
  flen = hl + size;
  if (mode == MODE_WS || mode == MODE_RAW) {
    // One frame, masked once; `copies` of it back to back so a burst goes out in one send().
    uint64_t copies = rate > 0 ? 16 : (uint64_t)inflight;
    if (copies * flen > (1u << 20)) copies = (1u << 20) / flen;
    if (copies < 1) copies = 1;
    patlen = copies * flen;
    pattern = malloc(patlen);
    for (uint64_t k = 0; k < copies; k++) {
      uint8_t *f = pattern + k * flen;
      memcpy(f, hdr_tmpl, hl);
      for (uint64_t i = 0; i < size; i++)
        f[hl + i] = expected[i] ^ (mode == MODE_RAW ? 0 : MASK[i & 3]);
    }
  }
  if (mode == MODE_FANOUT) {
    uint64_t n = size + 4 * 64;
    fan_pat = malloc(n);
    fan_patm = malloc(n);
    for (uint64_t j = 0; j < n; j++) {
      fan_pat[j] = (uint8_t)(j * 131 + (j >> 8) * 7 + 11);
      fan_patm[j] = fan_pat[j] ^ MASK[j & 3];
    }
    fan_cnt = calloc((size_t)window, sizeof *fan_cnt);
    fan_ts = calloc((size_t)window, sizeof *fan_ts);
  }
  rbuf = malloc(RBUF);
  req_root_len = make_request(req_root, sizeof req_root, "/");
  req_sub_len = make_request(req_sub, sizeof req_sub,
                             proto_sio ? "/socket.io/?EIO=4&transport=websocket&role=sub" : "/sub");
  req_pub_len = make_request(req_pub, sizeof req_pub,
                             proto_sio ? "/socket.io/?EIO=4&transport=websocket&role=pub" : "/pub");
  if (proto_sio) {
    static const char ev[] = "451-[\"pub\",{\"_placeholder\":true,\"num\":0}]";
    pub_pre_len = (uint64_t)small_frame(pub_pre, 1, ev, (int)strlen(ev));
  }

  ntotal = nconns + (mode == MODE_FANOUT ? 1 : 0);
  conns = calloc((size_t)ntotal, sizeof *conns);
  uint32_t rcap = rate > 0 ? 4096 : (uint32_t)inflight;
  if (mode == MODE_WS || mode == MODE_RAW)
    for (int i = 0; i < nconns; i++) {
      conns[i].ring = malloc(rcap * sizeof(uint64_t));
      conns[i].rcap = rcap;
    }
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event evs[1024];

  // ---- connect phase: at most connect_batch connects/handshakes at a time ----
  uint64_t t0 = now_ns();
  while (opened < ntotal) {
    // Fan-out: the publisher connects once every subscriber is open.
    int limit = mode == MODE_FANOUT && opened < nconns ? nconns : ntotal;
    while (next_to_connect < limit && connecting_now < connect_batch)
      start_connect(next_to_connect++);
    int n = wait_events(evs, 1024, 100000000ull);
    for (int i = 0; i < n; i++) handle(&evs[i]);
    if (now_ns() - t0 > 60000000000ull)
      die("connect phase timed out: %d of %d connections open", opened, ntotal);
  }
  connect_ms = (double)(now_ns() - t0) / 1e6;
  if (mode == MODE_FANOUT) pub = &conns[nconns];

  switch (mode) {
    case MODE_IDLE:
      run_idle();
      return 0;
    case MODE_FANOUT:
      run_fanout();
      break;
    case MODE_FLOOD:
      run_flood();
      return 0;
    default:
      run_echo();
  }
  drop_all();
  return 0;
}
