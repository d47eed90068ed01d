#include "connection.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include "buffers.h"
#include "deflate.h"
#include "errors.h"
#include "listener.h"
#include "tls_client.h"

namespace nlws {

namespace {

// Complete messages up to this size are copied into the batch arena (one
// allocation per batch); larger ones are handed to JavaScript as they are.
constexpr size_t kArenaMax = 16 * 1024;
// Reassembly buffers up to this size are kept for the next message.
constexpr size_t kKeepBuffer = 16 * 1024;
constexpr int kMaxIov = 64;

uint8_t* CopyBlock(const void* p, size_t n) {
  uint8_t* b = BufAlloc(n ? n : 1);
  if (b && n) memcpy(b, p, n);
  return b;
}

}  // namespace

Conn::Conn(Context* ctx, Listener* server, int fd, std::string remote_address, int remote_port)
    : ctx_(ctx),
      server_(server),
      shared_(new ConnShared),
      fd_(fd),
      remote_address_(std::move(remote_address)),
      remote_port_(remote_port),
      max_payload_(server->config().max_payload),
      handshake_timeout_ms_(server->config().handshake_timeout_ms),
      close_timeout_ms_(server->config().close_timeout_ms),
      max_header_bytes_(server->config().max_header_bytes),
      hb_interval_ms_(server->config().heartbeat_interval_ms),
      hb_timeout_ms_(server->config().heartbeat_timeout_ms) {
  shared_->id = ctx->NextConnId();
  shared_->conn = this;
  shared_->high_water_mark = server->config().high_water_mark;
  text_as_buffer_ = server->config().text_as_buffer;
  timer_.owner = this;
}

Conn::Conn(Context* ctx, ClientConfig* cfg)
    : ctx_(ctx),
      server_(nullptr),
      shared_(cfg->shared),
      fd_(cfg->fd),
      state_(State::kConnecting),
      remote_address_(cfg->address),
      remote_port_(cfg->port),
      max_payload_(cfg->max_payload),
      handshake_timeout_ms_(cfg->timeout_ms),
      close_timeout_ms_(cfg->close_timeout_ms),
      max_header_bytes_(cfg->max_header_bytes),
      hb_interval_ms_(cfg->heartbeat_interval_ms),
      hb_timeout_ms_(cfg->heartbeat_timeout_ms),
      request_(std::move(cfg->request)),
      accept_(std::move(cfg->accept)),
      offered_(std::move(cfg->protocols)) {
  deflate_opts_ = cfg->deflate;
  text_as_buffer_ = cfg->text_as_buffer;
  if (deflate_opts_.enabled) {
    // Offer permessage-deflate: one more header before the request's blank line.
    request_.insert(request_.size() - 2, "Sec-WebSocket-Extensions: " +
                                             PerMessageDeflate::Offer(deflate_opts_) + "\r\n");
  }
  cfg->shared = nullptr;  // ours now
  cfg->fd = -1;
  shared_->conn = this;
  timer_.owner = this;
}

void Conn::StartClient(Context* ctx, ClientConfig* cfg) {
  Conn* c = new Conn(ctx, cfg);
  std::string tls_error;
  if (cfg->tls) {
    SSL_CTX* tls_ctx = ctx->ClientTlsContext(cfg->ca, &tls_error);
    if (tls_ctx)
      c->tlsc_ = TlsClient::Create(tls_ctx, cfg->host, cfg->reject_unauthorized, &tls_error);
  }
  bool tls_failed = cfg->tls && !c->tlsc_;
  delete cfg;
  if (tls_failed) {
    close(c->fd_);
    c->fd_ = -1;
    c->FailHandshake("ERR_TLS_CA", tls_error);
    c->EmitConnectError();
    delete c;
    return;
  }
  lws_adopt_desc_t d;
  memset(&d, 0, sizeof d);
  d.vh = ctx->vhost();
  d.type = LWS_ADOPT_SOCKET;
  d.fd.sockfd = c->fd_;
  d.vh_prot_name = Context::kProtocolName;
  d.opaque = c;
  c->adopting = true;
  lws* wsi = lws_adopt_descriptor_vhost_via_info(&d);
  c->adopting = false;
  if (!wsi || c->closed_in_adopt) {
    // lws closed the socket.
    c->FailHandshake("ERR_LWS", "lws could not adopt the client socket");
    c->EmitConnectError();
    delete c;
    return;
  }
  c->wsi_ = wsi;
  c->SetTimer(c->handshake_timeout_ms_);
  // Until connect() finishes, poll for POLLOUT only. Were POLLIN armed, lws
  // would read() a refused socket, which consumes SO_ERROR and leaves us with
  // no errno; this way a refusal reaches OnClosed with SO_ERROR intact.
  lws_rx_flow_control(wsi, 0);
  c->RequestWritable();
}

Conn::~Conn() {
  lws_sul_cancel(&timer_.sul);
  lws_sul_cancel(&hb_timer_.sul);
  if (counted_open_ && server_) server_->open_connections--;
  DropQueue(false);
  BufFree(msg_);
  shared_->conn = nullptr;
  shared_->gone.store(true, std::memory_order_release);
  shared_->Unref();
}

void Conn::Attach(lws* wsi) {
  if (wsi_) return;
  wsi_ = wsi;
  SetTimer(handshake_timeout_ms_);
}

// ---- timers and teardown -------------------------------------------------------

void Conn::SetTimer(uint32_t ms) {
  if (!ms) {
    lws_sul_cancel(&timer_.sul);
    return;
  }
  lws_sul_schedule(ctx_->lws_ctx(), 0, &timer_.sul, OnTimer, static_cast<lws_usec_t>(ms) * 1000);
}

void Conn::OnTimer(lws_sorted_usec_list_t* sul) {
  Conn* c = reinterpret_cast<Timer*>(sul)->owner;
  // Handshake not finished in time, or the peer never completed the close
  // handshake: drop the TCP connection.
  if (c->state_ == State::kConnecting || c->state_ == State::kHandshake) c->timed_out_ = true;
  c->Kill();
  c->ctx_->WakeSelf();
}

void Conn::Kill() {
  if (killed_ || !wsi_) return;
  killed_ = true;
  rx_stopped_ = true;
  ctx_->ScheduleKill(this);
}

void Conn::CloseSocketNow() {
  if (wsi_) lws_set_timeout(wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

void Conn::OnClosed() {
  if (adopting) {
    closed_in_adopt = true;
    return;
  }
  if (dirty) ctx_->ForgetDirty(this);
  if (kill_pending) ctx_->CancelKill(this);
  if (shared_->client && (state_ == State::kConnecting || state_ == State::kHandshake)) {
    EmitConnectError();
  } else if (state_ == State::kOpen) {
    uint16_t code;
    const std::string* reason;
    bool clean;
    if (fail_code_) {
      code = fail_code_;
      reason = &fail_reason_;
      clean = false;
    } else if (close_received_) {
      code = peer_code_;
      reason = &peer_reason_;
      clean = close_written_;
    } else {
      code = kCloseAbnormal;
      reason = &peer_reason_;  // empty
      clean = false;
    }
    uint32_t obj = reason->empty() ? kNoObj : ctx_->AddString(*reason);
    ctx_->Emit(kEvClose, shared_->id, code | (clean ? 1u << 16 : 0u), obj);
  }
  state_ = State::kClosed;
  wsi_ = nullptr;
  if (server_) {
    if (counted_open_) server_->open_connections--;
    counted_open_ = false;
    Listener* server = server_;
    server_ = nullptr;
    server->Remove(this);  // may delete the listener
  }
  delete this;
}

void Conn::FailHandshake(const char* code, std::string message, int status) {
  if (hs_error_code_.empty()) {
    hs_error_code_ = code;
    hs_error_message_ = std::move(message);
    hs_status_ = status;
  }
  Kill();
}

void Conn::EmitConnectError() {
  std::string where = (remote_address_.find(':') != std::string::npos ? "[" + remote_address_ + "]"
                                                                      : remote_address_) +
                      ":" + std::to_string(remote_port_);
  int err = connect_errno_;
  if (!hs_error_code_.empty()) {
    ctx_->Emit(kEvConnectError, shared_->id, 0,
               ctx_->AddError(hs_error_code_.c_str(), hs_error_message_, hs_status_));
    return;
  }
  if (timed_out_) {
    ctx_->Emit(kEvConnectError, shared_->id, ETIMEDOUT,
               ctx_->AddError("ETIMEDOUT",
                              std::string(state_ == State::kConnecting ? "connect" : "handshake") +
                                  " ETIMEDOUT " + where,
                              0));
    return;
  }
  if (!err && state_ == State::kConnecting && fd_ >= 0) {
    // lws saw POLLERR/POLLHUP and closed the socket; the reason is still in SO_ERROR.
    socklen_t l = sizeof err;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &l) < 0) err = 0;
  }
  if (err) {
    ctx_->Emit(
        kEvConnectError, shared_->id, static_cast<uint32_t>(err),
        ctx_->AddError(ErrnoName(err), std::string("connect ") + ErrnoName(err) + " " + where, 0));
    return;
  }
  ctx_->Emit(kEvConnectError, shared_->id, static_cast<uint32_t>(ECONNRESET),
             ctx_->AddError("ECONNRESET",
                            "The server closed the connection before the WebSocket handshake "
                            "completed (" +
                                where + ")",
                            0));
}

// ---- handshake -------------------------------------------------------------------

void Conn::QueueRequest() {
  Enqueue(OutFrame{CopyBlock(request_.data(), request_.size()), request_.size(), 0, false}, false);
  request_.clear();
  request_.shrink_to_fit();
}

void Conn::OnTlsData(const uint8_t* in, size_t len) {
  tlsc_->Feed(in, len);
  if (!tls_up_) {
    int r = tlsc_->Handshake();
    if (r < 0) {
      FailHandshake(tlsc_->code(), tlsc_->error());
      return;
    }
    if (r == 0) {
      Flush();  // handshake records out
      return;
    }
    tls_up_ = true;
    QueueRequest();
  }
  uint8_t buf[64 * 1024];
  while (!killed_) {
    int n = tlsc_->Read(buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (state_ == State::kOpen)
        Kill();  // the peer ended TLS: like a TCP close
      else
        FailHandshake(tlsc_->code(), tlsc_->error());
      return;
    }
    if (state_ == State::kHandshake)
      OnClientHandshakeData(buf, static_cast<size_t>(n));
    else if (state_ == State::kOpen && !rx_stopped_)
      ParseFrames(buf, static_cast<size_t>(n));
  }
  Flush();
}

void Conn::FlushTlsClient() {
  constexpr size_t kChunk = 64 * 1024;
  while (true) {
    // Encrypt queued frames while little ciphertext is waiting.
    while (tls_up_ && !outq_.empty() && cipher_out_.size() - cipher_off_ < 1024 * 1024) {
      OutFrame& f = outq_.front();
      int n = tlsc_->Write(f.data + head_off_, std::min(kChunk, f.len - head_off_));
      if (n < 0) {
        DropQueue(false);
        Kill();
        return;
      }
      head_off_ += static_cast<size_t>(n);
      if (head_off_ == f.len) {
        OutFrame done = f;
        outq_.pop_front();
        head_off_ = 0;
        FrameDone(done, true);
      }
      tlsc_->TakeOutput(&cipher_out_);
    }
    tlsc_->TakeOutput(&cipher_out_);
    while (cipher_off_ < cipher_out_.size()) {
      ssize_t w = send(fd_, cipher_out_.data() + cipher_off_, cipher_out_.size() - cipher_off_,
                       MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          RequestWritable();
          return;
        }
        DropQueue(false);
        Kill();
        return;
      }
      cipher_off_ += static_cast<size_t>(w);
    }
    cipher_out_.clear();
    cipher_off_ = 0;
    if (!tls_up_ || outq_.empty()) break;
  }
  if (kill_after_flush_ && outq_.empty()) Kill();
}

void Conn::OnReadable(const uint8_t* in, size_t len) {
  if (killed_ || rx_stopped_) return;
  if (tlsc_ && state_ != State::kConnecting) {
    if (hb_interval_ms_) {
      last_rx_us_ = MonotonicUs();
      ping_outstanding_ = false;
    }
    OnTlsData(in, len);
    return;
  }
  if (hb_interval_ms_) {
    last_rx_us_ = MonotonicUs();
    ping_outstanding_ = false;
  }
  if (state_ == State::kHandshake || state_ == State::kVerifying) {
    if (shared_->client)
      OnClientHandshakeData(in, len);
    else
      OnHandshakeData(in, len);
    return;
  }
  if (state_ == State::kOpen) ParseFrames(in, len);
}

void Conn::OnClientHandshakeData(const uint8_t* in, size_t len) {
  size_t scan_from = hs_buf_.size() > 3 ? hs_buf_.size() - 3 : 0;
  hs_buf_.append(reinterpret_cast<const char*>(in), len);
  size_t end = FindHeaderEnd(hs_buf_.data() + scan_from, hs_buf_.size() - scan_from);
  if (end) end += scan_from;
  if ((!end && hs_buf_.size() > max_header_bytes_) || end > max_header_bytes_ + 4) {
    FailHandshake("ERR_HANDSHAKE", "The server's response headers are too large");
    return;
  }
  if (!end) return;
  HttpResponse res;
  if (!ParseHttpResponse(hs_buf_.data(), end, &res)) {
    FailHandshake("ERR_HANDSHAKE", "Malformed HTTP response to the upgrade request");
    return;
  }
  if (res.status != 101) {
    FailHandshake("ERR_HANDSHAKE",
                  "Unexpected server response: " + std::to_string(res.status) +
                      (res.reason.empty() ? "" : " " + res.reason),
                  res.status);
    return;
  }
  const std::string* upgrade = res.headers.Get("upgrade");
  const std::string* connection = res.headers.Get("connection");
  if (!upgrade || !HeaderHasToken(*upgrade, "websocket") || !connection ||
      !HeaderHasToken(*connection, "upgrade")) {
    FailHandshake("ERR_HANDSHAKE",
                  "The 101 response lacks Upgrade: websocket / Connection: Upgrade", 101);
    return;
  }
  const std::string* accept = res.headers.Get("sec-websocket-accept");
  if (!accept || *accept != accept_) {
    FailHandshake("ERR_HANDSHAKE", "Invalid Sec-WebSocket-Accept header", 101);
    return;
  }
  std::string extensions;
  for (const auto& kv : res.headers.list)
    if (kv.first == "sec-websocket-extensions")
      extensions += (extensions.empty() ? "" : ", ") + kv.second;
  if (!extensions.empty()) {
    if (!deflate_opts_.enabled) {
      FailHandshake("ERR_HANDSHAKE", "The server accepted an extension that was not offered", 101);
      return;
    }
    std::string error;
    std::unique_ptr<PerMessageDeflate> pmd =
        PerMessageDeflate::Accept(deflate_opts_, extensions, &error);
    if (!pmd) {
      FailHandshake("ERR_HANDSHAKE", error, 101);
      return;
    }
    EnableDeflate(std::move(pmd));
  }
  const std::string* proto = res.headers.Get("sec-websocket-protocol");
  std::string protocol;
  if (proto) {
    if (std::find(offered_.begin(), offered_.end(), *proto) == offered_.end()) {
      FailHandshake("ERR_PROTOCOL",
                    offered_.empty()
                        ? "The server chose a subprotocol though none was offered"
                        : "The server chose a subprotocol that was not offered: " + *proto);
      return;
    }
    protocol = *proto;
  } else if (!offered_.empty()) {
    FailHandshake("ERR_PROTOCOL", "The server accepted none of the offered subprotocols");
    return;
  }

  OpenEstablished();
  auto info = std::make_unique<ConnInfo>();
  shared_->Ref();
  info->shared = shared_;
  info->headers = std::move(res.headers.list);
  info->remote_address = remote_address_;
  info->remote_port = remote_port_;
  info->protocol = std::move(protocol);
  ctx_->Emit(kEvOpen, shared_->id, 0, ctx_->AddInfo(std::move(info)));

  std::string rest = hs_buf_.substr(end);
  hs_buf_.clear();
  hs_buf_.shrink_to_fit();
  if (!rest.empty() && !killed_)
    ParseFrames(reinterpret_cast<const uint8_t*>(rest.data()), rest.size());
}

void Conn::SendHttp(int status, const char* content_type, const uint8_t* body, size_t body_len,
                    const std::string& extra_headers, bool head_only) {
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + HttpStatusText(status) +
                     "\r\nConnection: close\r\nContent-Type: " + content_type +
                     "\r\nContent-Length: " + std::to_string(body_len) + "\r\n" + extra_headers +
                     "\r\n";
  size_t send_body = head_only ? 0 : body_len;
  uint8_t* block = BufAlloc(head.size() + send_body + 1);
  if (!block) {
    Kill();
    return;
  }
  memcpy(block, head.data(), head.size());
  if (send_body) memcpy(block + head.size(), body, send_body);
  rx_stopped_ = true;
  hs_buf_.clear();
  hs_buf_.shrink_to_fit();
  Enqueue(OutFrame{block, head.size() + send_body, 0, false}, false);
  kill_after_flush_ = true;
  SetTimer(close_timeout_ms_);  // a client that never reads cannot hold the socket
  Flush();
}

void Conn::RejectHandshake(int status, const char* message, const char* extra_headers) {
  std::string body = std::string(message) + "\n";
  SendHttp(status, "text/plain; charset=utf-8", reinterpret_cast<const uint8_t*>(body.data()),
           body.size(), extra_headers, false);
}

void Conn::ServeHttp(const HttpRequest& req) {
  const ServerConfig& cfg = server_->config();
  bool get = req.method == "GET";
  bool head = req.method == "HEAD";
  std::string path = req.target.substr(0, req.target.find('?'));
  if (cfg.health && (get || head) && path == "/health") {
    int64_t uptime_ms = (MonotonicUs() - server_->started_us) / 1000;
    std::string body =
        "{\"status\":\"ok\",\"connections\":" + std::to_string(server_->open_connections) +
        ",\"uptimeMs\":" + std::to_string(uptime_ms) + "}";
    SendHttp(200, "application/json", reinterpret_cast<const uint8_t*>(body.data()), body.size(),
             "Cache-Control: no-store\r\n", head);
    return;
  }
  if (!cfg.static_root.empty() && (get || head)) {
    ServeStatic(req.target, head);
    return;
  }
  if (cfg.health || !cfg.static_root.empty()) {
    RejectHandshake(404, "Not found");
    return;
  }
  RejectHandshake(426, "This endpoint only accepts WebSocket connections",
                  "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
}

void Conn::ServeStatic(const std::string& target, bool head_only) {
  const ServerConfig& cfg = server_->config();
  std::string raw = target.substr(0, target.find_first_of("?#"));
  std::string rel;
  if (raw.empty() || raw[0] != '/' || !PercentDecode(raw, &rel)) {
    RejectHandshake(400, "Bad request path");
    return;
  }
  // No "." or ".." segment may appear, encoded or not.
  for (size_t i = 0; i <= rel.size();) {
    size_t j = rel.find('/', i);
    if (j == std::string::npos) j = rel.size();
    std::string seg = rel.substr(i, j - i);
    if (seg == "." || seg == "..") {
      RejectHandshake(404, "Not found");
      return;
    }
    i = j + 1;
  }
  std::string file = cfg.static_root + rel;
  if (!rel.empty() && rel.back() == '/') file += cfg.static_index;
  // Resolve symlinks: whatever the path names must lie inside the root.
  char resolved[PATH_MAX];
  struct stat st;
  for (int pass = 0; pass < 2; pass++) {
    if (!realpath(file.c_str(), resolved)) {
      RejectHandshake(404, "Not found");
      return;
    }
    std::string real(resolved);
    if (real != cfg.static_root &&
        real.compare(0, cfg.static_root.size() + 1, cfg.static_root + "/") != 0) {
      RejectHandshake(404, "Not found");
      return;
    }
    if (stat(resolved, &st) < 0) {
      RejectHandshake(404, "Not found");
      return;
    }
    if (S_ISDIR(st.st_mode) && pass == 0) {
      file = real + "/" + cfg.static_index;
      continue;
    }
    break;
  }
  if (!S_ISREG(st.st_mode)) {
    RejectHandshake(404, "Not found");
    return;
  }
  constexpr off_t kMaxStatic = 64 * 1024 * 1024;
  if (st.st_size > kMaxStatic) {
    RejectHandshake(413, "File too large to serve");
    return;
  }
  // Small files from the page cache: read here, on the service thread.
  int fd = open(resolved, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    RejectHandshake(404, "Not found");
    return;
  }
  std::string body;
  body.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < body.size()) {
    ssize_t n = read(fd, &body[got], body.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  body.resize(got);
  SendHttp(200, MimeType(resolved), reinterpret_cast<const uint8_t*>(body.data()), body.size(),
           "X-Content-Type-Options: nosniff\r\n", head_only);
}

void Conn::OnHandshakeData(const uint8_t* in, size_t len) {
  const ServerConfig& cfg = server_->config();
  if (state_ == State::kVerifying) {
    // The client sent more before JavaScript decided; keep it, within reason.
    if (pending_rx_.size() + len > max_payload_ + 64 * 1024) {
      Kill();
      return;
    }
    pending_rx_.append(reinterpret_cast<const char*>(in), len);
    return;
  }
  size_t max_header_bytes = max_header_bytes_;
  size_t scan_from = hs_buf_.size() > 3 ? hs_buf_.size() - 3 : 0;
  hs_buf_.append(reinterpret_cast<const char*>(in), len);
  size_t end = FindHeaderEnd(hs_buf_.data() + scan_from, hs_buf_.size() - scan_from);
  if (end) end += scan_from;
  if ((!end && hs_buf_.size() > max_header_bytes) || end > max_header_bytes + 4) {
    RejectHandshake(431, "Request headers are larger than maxHeaderBytes");
    return;
  }
  if (!end) return;

  HttpRequest req;
  if (!ParseHttpRequest(hs_buf_.data(), end, &req)) {
    RejectHandshake(400, "Malformed HTTP request");
    return;
  }
  const std::string* upgrade = req.headers.Get("upgrade");
  if (!upgrade) {
    ServeHttp(req);
    return;
  }
  if (!HeaderHasToken(*upgrade, "websocket")) {
    RejectHandshake(400, "Unsupported Upgrade header: expected websocket");
    return;
  }
  if (req.method != "GET") {
    RejectHandshake(400, "A WebSocket upgrade must use GET");
    return;
  }
  if (req.version_minor < 1) {
    RejectHandshake(400, "A WebSocket upgrade needs HTTP/1.1");
    return;
  }
  const std::string* connection = req.headers.Get("connection");
  if (!connection || !HeaderHasToken(*connection, "upgrade")) {
    RejectHandshake(400, "Missing Connection: Upgrade");
    return;
  }
  const std::string* version = req.headers.Get("sec-websocket-version");
  if (!version) {
    RejectHandshake(400, "Missing Sec-WebSocket-Version", "Sec-WebSocket-Version: 13\r\n");
    return;
  }
  if (*version != "13") {
    RejectHandshake(426, "Unsupported WebSocket version: only 13 is supported",
                    "Sec-WebSocket-Version: 13\r\n");
    return;
  }
  const std::string* key = req.headers.Get("sec-websocket-key");
  if (!key || !IsValidWebSocketKey(*key)) {
    RejectHandshake(400, "Missing or invalid Sec-WebSocket-Key");
    return;
  }
  if (!cfg.path.empty() && req.target.substr(0, req.target.find('?')) != cfg.path) {
    RejectHandshake(404, "No WebSocket endpoint at this path");
    return;
  }
  if (!cfg.allowed_origins.empty()) {
    const std::string* origin = req.headers.Get("origin");
    if (!origin || std::find(cfg.allowed_origins.begin(), cfg.allowed_origins.end(), *origin) ==
                       cfg.allowed_origins.end()) {
      RejectHandshake(403, "Origin not allowed");
      return;
    }
  }
  if (cfg.max_connections && server_->open_connections >= cfg.max_connections) {
    RejectHandshake(503, "Too many connections", "Retry-After: 1\r\n");
    return;
  }

  std::string offered;
  for (const auto& kv : req.headers.list) {
    if (kv.first != "sec-websocket-protocol") continue;
    if (!offered.empty()) offered += ", ";
    offered += kv.second;
  }
  if (cfg.deflate.enabled) {
    std::string offers;
    for (const auto& kv : req.headers.list)
      if (kv.first == "sec-websocket-extensions")
        offers += (offers.empty() ? "" : ", ") + kv.second;
    if (!offers.empty())
      EnableDeflate(PerMessageDeflate::Negotiate(cfg.deflate, offers, &ext_response_));
  }
  key_ = *key;
  path_ = std::move(req.target);
  req_headers_ = std::move(req.headers.list);
  pending_rx_ = hs_buf_.substr(end);  // frames the client sent right behind its request
  hs_buf_.clear();
  hs_buf_.shrink_to_fit();

  if (cfg.verify) {
    // JavaScript decides (verify / handleProtocols); kAccept or kReject follows.
    state_ = State::kVerifying;
    auto info = std::make_unique<ConnInfo>();
    shared_->Ref();
    info->shared = shared_;
    info->path = path_;
    info->headers = req_headers_;
    info->remote_address = remote_address_;
    info->remote_port = remote_port_;
    info->protocol = offered;
    ctx_->Emit(kEvUpgrade, shared_->id, server_->id(), ctx_->AddInfo(std::move(info)));
    return;
  }

  // Subprotocol: the first one the client offers that the server accepts.
  std::string protocol;
  if (!cfg.protocols.empty()) {
    for (const std::string& p : SplitHeaderList(offered)) {
      if (std::find(cfg.protocols.begin(), cfg.protocols.end(), p) != cfg.protocols.end()) {
        protocol = p;
        break;
      }
    }
  }
  CompleteUpgrade(protocol);
}

void Conn::AcceptUpgrade(const std::string& protocol) {
  if (state_ != State::kVerifying || killed_) return;
  const ServerConfig& cfg = server_->config();
  if (cfg.max_connections && server_->open_connections >= cfg.max_connections) {
    RejectHandshake(503, "Too many connections", "Retry-After: 1\r\n");
    return;
  }
  CompleteUpgrade(protocol);
}

void Conn::RejectUpgrade(int status, const std::string& headers, const std::string& body) {
  if (state_ != State::kVerifying || killed_) return;
  SendHttp(status, "text/plain; charset=utf-8", reinterpret_cast<const uint8_t*>(body.data()),
           body.size(), headers, false);
}

void Conn::CompleteUpgrade(const std::string& protocol) {
  std::string resp =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      WebSocketAccept(key_) + "\r\n";
  if (!protocol.empty()) resp += "Sec-WebSocket-Protocol: " + protocol + "\r\n";
  if (!ext_response_.empty()) resp += "Sec-WebSocket-Extensions: " + ext_response_ + "\r\n";
  resp += "\r\n";
  Enqueue(OutFrame{CopyBlock(resp.data(), resp.size()), resp.size(), 0, false}, false);
  OpenEstablished();

  auto info = std::make_unique<ConnInfo>();
  shared_->Ref();
  info->shared = shared_;
  info->path = std::move(path_);
  info->headers = std::move(req_headers_);
  info->remote_address = remote_address_;
  info->remote_port = remote_port_;
  info->protocol = protocol;
  ctx_->Emit(kEvConnection, shared_->id, server_->id(), ctx_->AddInfo(std::move(info)));
  Flush();

  std::string rest;
  rest.swap(pending_rx_);
  if (!rest.empty() && !killed_)
    ParseFrames(reinterpret_cast<const uint8_t*>(rest.data()), rest.size());
}

void Conn::OpenEstablished() {
  state_ = State::kOpen;
  SetTimer(0);
  if (server_) {
    server_->open_connections++;
    counted_open_ = true;
  }
  StartHeartbeat();
}

// ---- heartbeat ------------------------------------------------------------------

void Conn::StartHeartbeat() {
  if (!hb_interval_ms_) return;
  hb_timer_.owner = this;
  last_rx_us_ = MonotonicUs();
  lws_sul_schedule(ctx_->lws_ctx(), 0, &hb_timer_.sul, OnHeartbeat,
                   static_cast<lws_usec_t>(hb_interval_ms_) * 1000);
}

void Conn::OnHeartbeat(lws_sorted_usec_list_t* sul) {
  Conn* c = reinterpret_cast<HbTimer*>(sul)->owner;
  if (c->state_ != State::kOpen || c->killed_) return;
  int64_t now = MonotonicUs();
  int64_t interval = static_cast<int64_t>(c->hb_interval_ms_) * 1000;
  int64_t timeout = static_cast<int64_t>(c->hb_timeout_ms_) * 1000;
  int64_t next;
  if (c->ping_outstanding_) {
    if (now - c->ping_at_us_ >= timeout) {
      // Silent past the timeout: drop it; 'close' reports 1006.
      c->Kill();
      c->ctx_->WakeSelf();
      return;
    }
    next = c->ping_at_us_ + timeout - now;
  } else if (now - c->last_rx_us_ >= interval) {
    if (!c->close_sent_) {
      size_t flen;
      uint8_t* f = NewFrame(c->shared_->client, kOpPing, nullptr, 0, &flen);
      if (f) {
        c->Enqueue(OutFrame{f, flen, 0, false}, true);
        c->ctx_->MarkDirty(c);
        c->ctx_->WakeSelf();
      }
    }
    c->ping_outstanding_ = true;
    c->ping_at_us_ = now;
    next = timeout;
  } else {
    next = c->last_rx_us_ + interval - now;
  }
  lws_sul_schedule(c->ctx_->lws_ctx(), 0, &c->hb_timer_.sul, OnHeartbeat,
                   static_cast<lws_usec_t>(std::max<int64_t>(next, 1000)));
}

// ---- frames in -----------------------------------------------------------------

void Conn::ParseFrames(const uint8_t* p, size_t n) {
  while (n > 0 && !rx_stopped_) {
    if (!in_frame_) {
      int r;
      if (hdr_have_ == 0) {
        r = ParseFrameHeader(p, n, &fh_);
        if (r == 0) {  // n is shorter than this header
          memcpy(hdr_buf_, p, n);
          hdr_have_ = n;
          return;
        }
        if (r > 0) {
          p += r;
          n -= static_cast<size_t>(r);
        }
      } else {
        size_t add = std::min(n, kMaxFrameHeader - hdr_have_);
        memcpy(hdr_buf_ + hdr_have_, p, add);
        r = ParseFrameHeader(hdr_buf_, hdr_have_ + add, &fh_);
        if (r == 0) {
          hdr_have_ += add;
          return;  // add == n here
        }
        if (r > 0) {
          size_t used = static_cast<size_t>(r) - hdr_have_;
          p += used;
          n -= used;
          hdr_have_ = 0;
        }
      }
      if (r < 0) {
        Fail(kCloseProtocolError, "Frame length has its most significant bit set");
        return;
      }
      if (!StartFrame(n)) return;

      // Fast path: a whole unfragmented small message is in this read. Unmask
      // it straight into the batch arena.
      if (fh_.opcode != kOpContinuation && !(fh_.opcode & 0x8) && fh_.fin && !msg_compressed_ &&
          fh_.length <= kArenaMax && fh_.length <= n) {
        size_t len = static_cast<size_t>(fh_.length);
        Batch& b = ctx_->events();
        size_t off = b.arena.len;
        uint8_t* dst = b.arena.Grow(len);
        if (!dst) {
          Fail(kCloseInternalError, "Out of memory for a message");
          return;
        }
        b.arena.len += len;
        if (len && fh_.masked)
          ApplyMask(dst, p, len, fh_.mask, 0);
        else if (len)
          memcpy(dst, p, len);
        in_message_ = false;
        if (fh_.opcode == kOpText && !IsValidUtf8(dst, len)) {
          b.arena.len = off;
          Fail(kCloseInvalidData, "Invalid UTF-8 in a text message");
          return;
        }
        ctx_->Emit(fh_.opcode == kOpText ? kEvText : kEvBinary, shared_->id,
                   static_cast<uint32_t>(off), static_cast<uint32_t>(len));
        p += len;
        n -= len;
        continue;
      }
      in_frame_ = true;
      frame_remaining_ = fh_.length;
      mask_phase_ = 0;
      ctrl_len_ = 0;
      if (frame_remaining_ == 0) {
        in_frame_ = false;
        EndFrame();
        continue;
      }
    }
    size_t take = static_cast<size_t>(std::min<uint64_t>(n, frame_remaining_));
    ConsumePayload(p, take);
    if (rx_stopped_) return;
    p += take;
    n -= take;
    frame_remaining_ -= take;
    if (frame_remaining_ == 0) {
      in_frame_ = false;
      EndFrame();
    }
  }
}

bool Conn::StartFrame(size_t available) {
  (void)available;
  // RSV1 marks the first frame of a compressed message (permessage-deflate).
  bool rsv1_ok = pmd_ && fh_.rsv == 0x4 && (fh_.opcode == kOpText || fh_.opcode == kOpBinary);
  if (fh_.rsv && !rsv1_ok) {
    Fail(kCloseProtocolError, pmd_ ? "RSV bits set where permessage-deflate allows none"
                                   : "RSV bits set but no extension was negotiated");
    return false;
  }
  switch (fh_.opcode) {
    case kOpContinuation:
    case kOpText:
    case kOpBinary:
    case kOpClose:
    case kOpPing:
    case kOpPong:
      break;
    default:
      Fail(kCloseProtocolError, "Unknown opcode");
      return false;
  }
  if (!shared_->client && !fh_.masked) {
    Fail(kCloseProtocolError, "Client frame is not masked");
    return false;
  }
  if (shared_->client && fh_.masked) {
    Fail(kCloseProtocolError, "Server frame is masked");
    return false;
  }
  if (fh_.opcode & 0x8) {
    if (!fh_.fin) {
      Fail(kCloseProtocolError, "Fragmented control frame");
      return false;
    }
    if (fh_.length > 125) {
      Fail(kCloseProtocolError, "Control frame payload longer than 125 bytes");
      return false;
    }
    return true;
  }
  if (fh_.opcode == kOpContinuation) {
    if (!in_message_) {
      Fail(kCloseProtocolError, "Continuation frame with no message to continue");
      return false;
    }
  } else {
    if (in_message_) {
      Fail(kCloseProtocolError, "New data frame while a fragmented message is incomplete");
      return false;
    }
    in_message_ = true;
    msg_opcode_ = fh_.opcode;
    msg_len_ = 0;
    msg_compressed_ = fh_.rsv == 0x4;
    utf8_.Reset();
  }
  if (fh_.length > max_payload_ || msg_len_ + fh_.length > max_payload_) {
    Fail(kCloseTooBig, "Message is larger than maxPayload");
    return false;
  }
  return true;
}

void Conn::Reserve(size_t need, size_t total_hint) {
  if (need <= msg_cap_) return;
  size_t cap = std::max(need, total_hint);
  if (cap < msg_cap_ * 2) cap = std::min<size_t>(msg_cap_ * 2, max_payload_);
  if (cap < need) cap = need;
  uint8_t* p = BufRealloc(msg_, cap, msg_len_);
  if (!p) {
    Fail(kCloseInternalError, "Out of memory for a message");
    return;
  }
  msg_ = p;
  msg_cap_ = cap;
}

void Conn::ConsumePayload(const uint8_t* p, size_t n) {
  if (fh_.opcode & 0x8) {
    if (fh_.masked)
      ApplyMask(ctrl_ + ctrl_len_, p, n, fh_.mask, mask_phase_);
    else
      memcpy(ctrl_ + ctrl_len_, p, n);
    ctrl_len_ += n;
    mask_phase_ += n;
    return;
  }
  if (msg_compressed_) {
    scratch_.resize(n);
    if (fh_.masked)
      ApplyMask(scratch_.data(), p, n, fh_.mask, mask_phase_);
    else
      memcpy(scratch_.data(), p, n);
    mask_phase_ += n;
    size_t before = msg_len_;
    bool last = fh_.fin && frame_remaining_ == n;
    int r = pmd_->Inflate(scratch_.data(), n, last, &msg_, &msg_len_, &msg_cap_, max_payload_);
    if (r == -2) {
      Fail(kCloseTooBig, "Message inflates past maxPayload");
      return;
    }
    if (r < 0) {
      Fail(kCloseInvalidData, "Invalid compressed data");
      return;
    }
    if (msg_opcode_ == kOpText && !utf8_.Feed(msg_ + before, msg_len_ - before)) {
      Fail(kCloseInvalidData, "Invalid UTF-8 in a text message");
      return;
    }
    return;
  }
  // A final frame announces the whole remaining size: allocate it at once.
  size_t hint = fh_.fin ? msg_len_ + static_cast<size_t>(frame_remaining_) : 0;
  Reserve(msg_len_ + n, hint);
  if (rx_stopped_) return;
  uint8_t* dst = msg_ + msg_len_;
  if (fh_.masked)
    ApplyMask(dst, p, n, fh_.mask, mask_phase_);
  else
    memcpy(dst, p, n);
  mask_phase_ += n;
  if (msg_opcode_ == kOpText && !utf8_.Feed(dst, n)) {
    Fail(kCloseInvalidData, "Invalid UTF-8 in a text message");
    return;
  }
  msg_len_ += n;
}

void Conn::EndFrame() {
  if (fh_.opcode & 0x8) {
    HandleControl();
    return;
  }
  if (fh_.fin && msg_compressed_ && fh_.length == 0) {
    // An empty final frame: the tail still has to go through the inflater.
    int r = pmd_->Inflate(nullptr, 0, true, &msg_, &msg_len_, &msg_cap_, max_payload_);
    if (r < 0) {
      Fail(r == -2 ? kCloseTooBig : kCloseInvalidData,
           r == -2 ? "Message inflates past maxPayload" : "Invalid compressed data");
      return;
    }
  }
  if (fh_.fin) DeliverMessage();
}

void Conn::DeliverMessage() {
  in_message_ = false;
  bool text = msg_opcode_ == kOpText;
  if (text && !utf8_.Complete()) {
    Fail(kCloseInvalidData, "Invalid UTF-8 in a text message");
    return;
  }
  if (msg_len_ <= kArenaMax) {
    uint32_t off = ctx_->AddArena(msg_, msg_len_);
    ctx_->Emit(text ? kEvText : kEvBinary, shared_->id, off, static_cast<uint32_t>(msg_len_));
    if (msg_cap_ > kKeepBuffer) {
      BufFree(msg_);
      msg_ = nullptr;
      msg_cap_ = 0;
    }
  } else {
    uint8_t* data = msg_;  // handed over as it is: pooled buffers are not shrunk
    uint32_t obj =
        ctx_->AddBlob(text && !text_as_buffer_ ? ObjItem::kUtf8 : ObjItem::kBuffer, data, msg_len_);
    ctx_->Emit(text ? kEvTextObj : kEvBinaryObj, shared_->id, 0, obj);
    msg_ = nullptr;
    msg_cap_ = 0;
  }
  msg_len_ = 0;
}

void Conn::HandleControl() {
  switch (fh_.opcode) {
    case kOpPing: {
      if (!close_sent_) {
        size_t flen;
        uint8_t* f = NewFrame(shared_->client, kOpPong, ctrl_, ctrl_len_, &flen);
        if (f) {
          Enqueue(OutFrame{f, flen, 0, false}, true);
          ctx_->MarkDirty(this);
        }
      }
      uint32_t off = ctx_->AddArena(ctrl_, ctrl_len_);
      ctx_->Emit(kEvPing, shared_->id, off, static_cast<uint32_t>(ctrl_len_));
      return;
    }
    case kOpPong: {
      uint32_t off = ctx_->AddArena(ctrl_, ctrl_len_);
      ctx_->Emit(kEvPong, shared_->id, off, static_cast<uint32_t>(ctrl_len_));
      return;
    }
    case kOpClose:
      break;
    default:
      return;
  }
  rx_stopped_ = true;
  if (ctrl_len_ == 1) {
    Fail(kCloseProtocolError, "Close frame with a 1-byte payload");
    return;
  }
  uint16_t code = kCloseNoStatus;
  if (ctrl_len_ >= 2) {
    code = static_cast<uint16_t>((ctrl_[0] << 8) | ctrl_[1]);
    if (!IsValidCloseCode(code)) {
      Fail(kCloseProtocolError, "Invalid close code");
      return;
    }
    if (!IsValidUtf8(ctrl_ + 2, ctrl_len_ - 2)) {
      Fail(kCloseProtocolError, "Close reason is not valid UTF-8");
      return;
    }
    peer_reason_.assign(reinterpret_cast<const char*>(ctrl_ + 2), ctrl_len_ - 2);
  }
  close_received_ = true;
  peer_code_ = code;
  if (!close_sent_) {
    // Echo the code and reason; frames already queued go out first.
    QueueClose(code == kCloseNoStatus ? 0 : code, peer_reason_, false);
    SetTimer(close_timeout_ms_);
  }
  CloseHandshakeDone();
  ctx_->MarkDirty(this);
}

// ---- close -------------------------------------------------------------------------

void Conn::QueueClose(uint16_t code, const std::string& reason, bool priority) {
  uint8_t payload[125];
  size_t plen = 0;
  if (code) {
    payload[0] = static_cast<uint8_t>(code >> 8);
    payload[1] = static_cast<uint8_t>(code);
    size_t rlen = std::min<size_t>(reason.size(), 123);
    memcpy(payload + 2, reason.data(), rlen);
    plen = 2 + rlen;
  }
  size_t flen;
  uint8_t* f = NewFrame(shared_->client, kOpClose, payload, plen, &flen);
  if (!f) {
    Kill();
    return;
  }
  close_sent_ = true;
  Enqueue(OutFrame{f, flen, 0, true}, priority);
}

void Conn::Fail(uint16_t code, const char* why) {
  if (fail_code_ || killed_) return;
  rx_stopped_ = true;
  fail_code_ = code;
  fail_reason_ = why;
  ctx_->Emit(kEvError, shared_->id, code, ctx_->AddString(why));
  if (state_ != State::kOpen || close_written_) {
    Kill();
    return;
  }
  if (!close_sent_) {
    DropQueue(true);  // nothing may follow the close frame
    QueueClose(code, why, false);
  }
  kill_after_flush_ = true;
  SetTimer(close_timeout_ms_);
  ctx_->MarkDirty(this);
}

void Conn::CloseHandshakeDone() {
  if (!(close_received_ && close_written_)) return;
  if (shared_->client) {
    // The server closes the TCP connection first (RFC 6455 7.1.1); wait for it.
    SetTimer(close_timeout_ms_);
    return;
  }
  // RFC 6455 7.1.1: the server closes the TCP connection first.
  kill_after_flush_ = true;
  ctx_->MarkDirty(this);
}

void Conn::CloseFromJs(uint8_t* frame, size_t len, uint16_t code) {
  (void)code;
  if (close_sent_ || killed_ || state_ != State::kOpen) {
    BufFree(frame);
    return;
  }
  close_sent_ = true;
  Enqueue(OutFrame{frame, len, 0, true}, false);
  SetTimer(close_timeout_ms_);
  ctx_->MarkDirty(this);
}

void Conn::Terminate() { Kill(); }

void Conn::Shutdown() {
  if (state_ != State::kOpen) {
    Kill();
    return;
  }
  if (!close_sent_) {
    QueueClose(kCloseGoingAway, std::string(), false);
    SetTimer(close_timeout_ms_);
    ctx_->MarkDirty(this);
  }
}

// ---- frames out --------------------------------------------------------------------

void Conn::Send(uint8_t* frame, size_t len, size_t payload) {
  if (close_sent_ || killed_ || state_ != State::kOpen) {
    FrameDone(OutFrame{frame, len, payload, false}, false);
    return;
  }
  Enqueue(OutFrame{frame, len, payload, false}, false);
  ctx_->MarkDirty(this);
}

void Conn::EnableDeflate(std::unique_ptr<PerMessageDeflate> pmd) {
  if (!pmd) return;
  pmd_ = std::move(pmd);
  shared_->deflate_threshold.store(pmd_->threshold(), std::memory_order_release);
}

void Conn::SendCompressed(uint8_t* payload, size_t len, uint8_t opcode) {
  if (close_sent_ || killed_ || state_ != State::kOpen || !pmd_) {
    FrameDone(OutFrame{payload, len, len, false}, false);
    return;
  }
  std::vector<uint8_t> z;
  if (!pmd_->Deflate(payload, len, &z)) {
    FrameDone(OutFrame{payload, len, len, false}, false);
    Fail(kCloseInternalError, "Compression failed");
    return;
  }
  size_t flen;
  uint8_t* f = NewFrame(shared_->client, opcode, z.data(), z.size(), &flen);
  BufFree(payload);
  if (!f) {
    Fail(kCloseInternalError, "Out of memory");
    return;
  }
  f[0] |= 0x40;  // RSV1: compressed
  Enqueue(OutFrame{f, flen, len, false}, false);
  ctx_->MarkDirty(this);
}

void Conn::Enqueue(OutFrame f, bool priority) {
  if (!priority) {
    outq_.push_back(f);
    return;
  }
  // Ahead of queued data, but after a frame already partly on the wire and
  // after earlier control frames (pongs answer pings in order).
  f.priority = true;
  size_t pos = head_off_ > 0 ? 1 : 0;
  while (pos < outq_.size() && outq_[pos].priority) pos++;
  outq_.insert(pos, f);
}

void Conn::FrameDone(const OutFrame& f, bool written) {
  if (f.close && written) {
    close_written_ = true;
    CloseHandshakeDone();
  }
  if (f.payload) {
    int64_t prev =
        shared_->buffered.fetch_sub(static_cast<int64_t>(f.payload), std::memory_order_acq_rel);
    int64_t hwm = shared_->high_water_mark;
    if (prev > hwm && prev - static_cast<int64_t>(f.payload) <= hwm)
      ctx_->Emit(kEvDrain, shared_->id);
  }
  BufFree(f.data);
}

void Conn::DropQueue(bool keep_head) {
  // keep_head: a frame partly on the wire must be finished, or the stream breaks.
  size_t keep = keep_head && head_off_ > 0 && !outq_.empty() ? 1 : 0;
  while (outq_.size() > keep) {
    OutFrame f = outq_.back();
    outq_.pop_back();
    FrameDone(f, false);
  }
  if (!keep) head_off_ = 0;
}

void Conn::RequestWritable() {
  if (want_writable_ || !wsi_) return;
  want_writable_ = true;
  lws_callback_on_writable(wsi_);
}

void Conn::OnWritable() {
  want_writable_ = false;
  if (state_ == State::kConnecting && !tls) {
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &l) < 0) err = errno;
    if (err) {
      connect_errno_ = err;
      Kill();
      return;
    }
    state_ = State::kHandshake;
    lws_rx_flow_control(wsi_, 1);
    if (tlsc_) {
      OnTlsData(nullptr, 0);  // sends the ClientHello
      return;
    }
    QueueRequest();
  }
  Flush();
}

void Conn::FlushTls() {
  // Through lws_write(): it encrypts, and buffers what the socket does not
  // take. Chunks keep that buffering (a copy) small.
  constexpr size_t kChunk = 64 * 1024;
  while (!outq_.empty()) {
    if (lws_send_pipe_choked(wsi_)) {
      RequestWritable();
      return;
    }
    OutFrame& f = outq_.front();
    size_t n = std::min(kChunk, f.len - head_off_);
    if (lws_write(wsi_, f.data + head_off_, n, LWS_WRITE_RAW) < 0) {
      DropQueue(false);
      Kill();
      return;
    }
    head_off_ += n;
    if (head_off_ == f.len) {
      OutFrame done = f;
      outq_.pop_front();
      head_off_ = 0;
      FrameDone(done, true);
    }
  }
  if (kill_after_flush_) {
    if (lws_partial_buffered(wsi_)) {
      RequestWritable();  // lws still holds encrypted bytes: wait for them
      return;
    }
    Kill();
  }
}

void Conn::Flush() {
  if (killed_ || !wsi_) return;
  if (tls) {
    if (state_ != State::kConnecting) FlushTls();
    return;
  }
  if (tlsc_) {
    if (state_ != State::kConnecting) FlushTlsClient();
    return;
  }
  while (!outq_.empty()) {
    struct iovec iov[kMaxIov];
    int cnt = 0;
    size_t total = 0;
    for (auto it = outq_.begin(); it != outq_.end() && cnt < kMaxIov; ++it, ++cnt) {
      size_t skip = cnt == 0 ? head_off_ : 0;
      iov[cnt].iov_base = it->data + skip;
      iov[cnt].iov_len = it->len - skip;
      total += it->len - skip;
    }
    struct msghdr mh = {};
    mh.msg_iov = iov;
    mh.msg_iovlen = static_cast<size_t>(cnt);
    ssize_t w = sendmsg(fd_, &mh, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        RequestWritable();
        return;
      }
      // The peer is gone (EPIPE, ECONNRESET, ...): nothing more can be sent.
      DropQueue(false);
      Kill();
      return;
    }
    size_t left = static_cast<size_t>(w);
    while (left > 0) {
      OutFrame& f = outq_.front();
      size_t rem = f.len - head_off_;
      if (left >= rem) {
        left -= rem;
        OutFrame done = f;
        outq_.pop_front();
        head_off_ = 0;
        FrameDone(done, true);
      } else {
        head_off_ += left;
        left = 0;
      }
    }
    if (static_cast<size_t>(w) < total) {
      RequestWritable();
      return;
    }
  }
  if (kill_after_flush_ && !lingering_) {
    // Lingering close (RFC 9112 9.6): send our FIN, then discard what the
    // peer still sends until it closes too (or a short timer runs out).
    // Closing at once would turn unread input into a reset that can destroy
    // the response or close frame just sent.
    lingering_ = true;
    rx_stopped_ = true;
    shutdown(fd_, SHUT_WR);
    SetTimer(std::min<uint32_t>(close_timeout_ms_, 2000));
  }
}

}  // namespace nlws
