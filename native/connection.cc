#include "connection.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "buffers.h"
#include "context.h"
#include "errors.h"
#include "ev_socket.h"
#include "http_responder.h"
#include "listener.h"
#include "server_tls.h"

namespace nlws {

namespace {

constexpr int kTlsHeader = 5;  // a TLS record's header: type, version, length

// Complete messages up to this size are copied into the batch arena (no
// allocation of their own); larger ones are handed to JavaScript as they are.
constexpr size_t kArenaMax = 16 * 1024;
static_assert(kArenaMax <= kArenaChunk, "a message in the arena fits in one chunk");

uint8_t* CopyBlock(const void* p, size_t n) {
  uint8_t* b = BufAlloc(n ? n : 1);
  if (b && n) memcpy(b, p, n);
  return b;
}

}  // namespace

// ---- construction ------------------------------------------------------------------

Conn::Conn(Context* ctx, Listener* server, int fd, std::string remote_address, int remote_port,
           bool tls, ConnShared* handed_over)
    : ctx_(ctx),
      server_(server),
      shared_(handed_over ? handed_over : new ConnShared),
      opts_(&server->config().conn),
      fd_(fd),
      reader_(this, false, server->config().conn.max_payload),
      handed_over_(handed_over != nullptr) {
  if (handed_over) {
    // JavaScript made it (and its id) when it handed the request over; it
    // reads none of the fields set below before the connection is announced.
    shared_->Ref();
  } else {
    shared_->id = ctx->NextConnId();
  }
  shared_->conn = this;
  shared_->high_water_mark = opts_->high_water_mark;
  shared_->rx_low_water = opts_->receive_high_water_mark / 2;
  text_as_buffer_ = opts_->text_as_buffer;
  if (tls) {
    wire_.reset(new LwsTlsWire(this));
    wire_kind_ = WireKind::kLwsTls;
  } else if (fd >= 0) {
    wire_.reset(new PlainWire(this, fd));
    shared_->send_in_place = true;
  } else {
    wire_.reset(new JsWire(this, ctx, shared_->id));
    wire_kind_ = WireKind::kJs;
  }
  server_hs_.reset(new ServerHandshake(std::move(remote_address), remote_port));
  ctx->Register(this);
}

Conn::Conn(Context* ctx, ClientConfig* cfg)
    : ctx_(ctx),
      server_(nullptr),
      shared_(cfg->shared),
      opts_(new ConnOptions(cfg->conn)),  // a client's own: ~Conn deletes them
      fd_(cfg->fd),
      reader_(this, true, cfg->conn.max_payload),
      state_(State::kConnecting) {
  client_hs_.reset(new ClientHandshake(std::move(cfg->request), std::move(cfg->accept),
                                       std::move(cfg->protocols), cfg->conn.deflate));
  client_hs_->address = cfg->address;
  client_hs_->port = cfg->port;
  client_hs_->unix_socket = cfg->unix_socket;
  if (!cfg->proxy_request.empty()) {
    proxy_.reset(new ProxyStage());
    proxy_->request = std::move(cfg->proxy_request);
  }
  cfg->shared = nullptr;  // ours now
  cfg->fd = -1;
  shared_->conn = this;
  shared_->rx_low_water = opts_->receive_high_water_mark / 2;
  text_as_buffer_ = opts_->text_as_buffer;
  ctx->Register(this);
}

void Conn::StartClient(Context* ctx, ClientConfig* cfg) {
  Conn* c = new Conn(ctx, cfg);
  std::string tls_error;
  std::unique_ptr<TlsClient> tls;
  const char* tls_code = "ERR_TLS_CA";
  if (cfg->tls) {
    SSL_CTX* tls_ctx = ctx->ClientTlsContext(cfg->ca, &tls_error);
    if (tls_ctx)
      tls = TlsClient::Create(tls_ctx, cfg->host, cfg->reject_unauthorized, cfg->cert, cfg->key,
                              &tls_error, &tls_code);
    // The key is in the SSL object now; do not keep a copy.
    std::fill(cfg->key.begin(), cfg->key.end(), '\0');
    cfg->key.clear();
  }
  bool tls_failed = cfg->tls && !tls;
  if (tls && c->proxy_) {
    // The CONNECT exchange is plain text: TLS starts once the tunnel is up.
    c->proxy_->tunnel_tls = std::move(tls);
    c->wire_.reset(new PlainWire(c, c->fd_));
  } else if (tls) {
    c->wire_.reset(new ClientTlsWire(c, c->fd_, std::move(tls)));
    c->wire_kind_ = WireKind::kTlsClient;
  } else {
    c->wire_.reset(new PlainWire(c, c->fd_));
  }
  delete cfg;
  if (tls_failed) {
    close(c->fd_);
    c->fd_ = -1;
    c->FailConnect(tls_code, tls_error);
    c->EmitConnectError();
    delete c;
    return;
  }
  // Until connect() finishes, poll for POLLOUT only. Were POLLIN armed, a
  // read() of a refused socket would consume SO_ERROR and leave us with no
  // errno; this way a refusal reaches OnWritable with SO_ERROR intact.
  c->rx_pause_ = kRxConnecting;  // Watch applies it
  if (!c->Watch(nullptr)) {
    c->FailConnect("ERR_LWS", "lws could not adopt the client socket");
    c->EmitConnectError();
    delete c;
    return;
  }
  c->wire_->RequestWritable();
}

Conn::~Conn() {
  bool client = shared_->client;
  if (server_hs_) server_->HeadDone(&server_hs_->pending);
  if (unfinished_slot_) ctx_->SetUnfinished(this, &unfinished_slot_, 0);
  if (topics_ && server_) server_->topics().LeaveAll(topics_.get());
  ctx_->timers().Cancel(&deadline_);
  ctx_->timers().Cancel(&heartbeat_);
  ctx_->Forget(this);
  if (counted_open_ && server_) server_->open_connections--;
  if (wire_) wire_->Drop(false);
  Settle();
  wire_.reset();
  shared_->conn = nullptr;
  shared_->gone.store(true, std::memory_order_release);
  shared_->Unref();
  if (client) delete opts_;          // a server connection's are its listener's
  if (server_) server_->ConnGone();  // may delete the listener: last
}

bool Conn::Watch(lws_vhost* tls_vhost) {
  if (ctx_->ev()) {
    sock_.reset(new EvSocket(ctx_, fd_, this));
    if (tls_vhost) {
      int lowat = kTlsHeader;
      setsockopt(fd_, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
      sock_->WaitForHello();
    }
  } else {
    adopting = true;
    int type = tls_vhost ? LWS_ADOPT_SOCKET | LWS_ADOPT_ALLOW_SSL : LWS_ADOPT_SOCKET;
    lws* wsi = ctx_->Adopt(tls_vhost, type, fd_, this);
    adopting = false;
    if (!wsi || closed_in_adopt) return false;  // lws closed the socket
    wsi_ = wsi;
    if (wire_kind_ == WireKind::kLwsTls) static_cast<LwsTlsWire*>(wire_.get())->Attach(wsi);
  }
  SetDeadline(opts_->handshake_timeout_ms);
  if (rx_pause_) SetRxPause(rx_pause_);        // paused before the socket was watched
  if (tls_vhost && wsi_) CountTlsHandshake();  // lws's poll() loop: adopted at once
  return true;
}

void Conn::HelloReadable() {
  uint8_t h[kTlsHeader];
  ssize_t n;
  do {
    n = recv(fd_, h, sizeof h, MSG_PEEK);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n <= 0) {
    CloseSocketNow();  // closed or reset before its first record: deletes this
    return;
  }
  // A handshake record's length is in its header; anything else is not
  // TLS, and lws fails it at once.
  int need = kTlsHeader;
  if (n == kTlsHeader && h[0] == 22) need += h[3] << 8 | h[4];
  int avail = 0;
  if (n < need && ioctl(fd_, FIONREAD, &avail) == 0 && avail < need) {
    // Not all there: ask for a report once it is, unless the peer has sent
    // everything it will (a FIN keeps the socket readable).
    tcp_info ti{};
    socklen_t tl = sizeof ti;
    if (getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 && ti.tcpi_state != TCP_ESTABLISHED) {
      CloseSocketNow();
      return;
    }
    setsockopt(fd_, SOL_SOCKET, SO_RCVLOWAT, &need, sizeof need);
    return;
  }
  int lowat = 1;
  setsockopt(fd_, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
  int fd = sock_->Release();
  sock_.reset();
  adopting = true;
  lws* wsi = ctx_->Adopt(server_->tls_vhost(), LWS_ADOPT_SOCKET | LWS_ADOPT_ALLOW_SSL, fd, this);
  adopting = false;
  if (!wsi || closed_in_adopt) {
    // lws closed the socket; the connection never reached JavaScript.
    if (!wsi) ctx_->Log(LLL_WARN, "lws could not adopt an accepted socket");
    OnClosed();  // deletes this
    return;
  }
  wsi_ = wsi;
  static_cast<LwsTlsWire*>(wire_.get())->Attach(wsi);
  if (rx_pause_) SetRxPause(rx_pause_);
  CountTlsHandshake();
}

void Conn::CountTlsHandshake() {
  // The handshake's memory counts with the request heads still arriving
  // (maxPendingHeaderBytes) until the first request byte is decrypted: many
  // clients that send a ClientHello and stop cannot hold ~50 KB each.
  server_hs_->tls_handshake = true;
  server_->HeadPending(&server_hs_->pending, this, kTlsHandshakeHeld);  // may refuse this one
}

void Conn::AttachJs() {
  SetDeadline(opts_->handshake_timeout_ms);
  if (rx_pause_) SetRxPause(rx_pause_);
}

// ---- timers and teardown -------------------------------------------------------

void Conn::SetDeadline(uint32_t ms) {
  if (!ms)
    ctx_->timers().Cancel(&deadline_);
  else
    ctx_->timers().Schedule(&deadline_, MonotonicUs() + static_cast<int64_t>(ms) * 1000, OnDeadline,
                            this);
}

void Conn::OnDeadline(void* arg) {
  auto* c = static_cast<Conn*>(arg);
  // Handshake not finished in time, or the peer never completed the close
  // handshake (or the lingering close): drop the TCP connection.
  if (c->state_ == State::kConnecting || c->state_ == State::kProxy ||
      c->state_ == State::kHandshake)
    c->timed_out_ = true;
  c->Kill();
}

void Conn::Kill() {
  if (killed_ || !HasTransport()) return;
  killed_ = true;
  ctx_->ScheduleKill(this);
}

void Conn::CloseSocketNow() {
  if (sock_) {
    OnClosed();  // deleting this closes the socket
  } else if (wsi_) {
    lws_set_timeout(wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
  } else if (JsWire* js = js_wire()) {
    js->Closed();  // JavaScript destroys its stream
    OnClosed();
  }
}

void Conn::OnClosed() {
  if (adopting) {
    closed_in_adopt = true;
    return;
  }
  if (shared_->client && state_ != State::kOpen && state_ != State::kClosed) {
    EmitConnectError();
  } else if (state_ == State::kVerifying) {
    // JavaScript was told of this upgrade (kEvUpgrade) and never of a
    // connection: this close lets it forget the request.
    ctx_->Emit(kEvClose, shared_->id, kCloseAbnormal, kNoObj);
    if (handed_over_) EmitHandoverEnd();  // and handleUpgrade() reports its end
  } else if (state_ == State::kOpen) {
    uint16_t code;
    bool clean;
    if (fail_code_) {
      code = fail_code_;
      clean = false;
    } else if (close_received_) {
      code = peer_code_;
      clean = close_written_;
    } else {
      code = kCloseAbnormal;
      reason_.reset();
      clean = false;
    }
    uint32_t obj = !reason_ || reason_->empty() ? kNoObj : ctx_->AddString(*reason_);
    ctx_->Emit(kEvClose, shared_->id, code | (clean ? 1u << 16 : 0u), obj);
  } else if (handed_over_) {
    EmitHandoverEnd();
  }
  state_ = State::kClosed;
  wsi_ = nullptr;
  delete this;
}

void Conn::FailConnect(const char* code, std::string message, int status) {
  if (client_hs_ && client_hs_->error_code.empty()) {
    client_hs_->error_code = code;
    client_hs_->error_message = std::move(message);
    client_hs_->error_status = status;
  }
  Kill();
}

void Conn::EmitConnectError() {
  ClientHandshake& hs = *client_hs_;
  std::string where =
      hs.unix_socket
          ? hs.address
          : (hs.address.find(':') != std::string::npos ? "[" + hs.address + "]" : hs.address) +
                ":" + std::to_string(hs.port);
  int err = hs.connect_errno;
  if (!hs.error_code.empty()) {
    uint32_t obj = ctx_->AddError(hs.error_code.c_str(), hs.error_message, hs.error_status);
    if (!hs.error_headers.empty()) {
      // The refusing response's headers (e.g. Proxy-Authenticate, Set-Cookie).
      auto info = std::make_unique<ConnInfo>();
      info->headers = std::move(hs.error_headers);
      ctx_->events().objs[obj].info = std::move(info);
    }
    ctx_->Emit(kEvConnectError, shared_->id, 0, obj);
    return;
  }
  if (timed_out_) {
    const char* stage = state_ == State::kConnecting ? "connect"
                        : state_ == State::kProxy    ? "proxy CONNECT"
                                                     : "handshake";
    ctx_->Emit(kEvConnectError, shared_->id, ETIMEDOUT,
               ctx_->AddError("ETIMEDOUT", std::string(stage) + " ETIMEDOUT " + where, 0));
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
  if (state_ == State::kProxy) {
    ctx_->Emit(kEvConnectError, shared_->id, 0,
               ctx_->AddError(
                   "ERR_PROXY_TUNNEL",
                   "The proxy closed the connection before answering CONNECT (" + where + ")", 0));
    return;
  }
  ctx_->Emit(kEvConnectError, shared_->id, static_cast<uint32_t>(ECONNRESET),
             ctx_->AddError("ECONNRESET",
                            "The server closed the connection before the WebSocket handshake "
                            "completed (" +
                                where + ")",
                            0));
}

void Conn::EmitHandoverEnd() {
  uint32_t obj;
  if (answered_) {
    obj = ctx_->AddError("ERR_UPGRADE_REFUSED",
                         "The upgrade request was answered with HTTP " + std::to_string(answered_),
                         answered_);
  } else if (timed_out_) {
    obj = ctx_->AddError("ETIMEDOUT",
                         "The upgrade request was not complete within the handshake timeout", 0);
  } else {
    obj = ctx_->AddError("ECONNRESET", "The connection closed before the upgrade completed", 0);
  }
  ctx_->Emit(kEvConnectError, shared_->id, 0, obj);
}

// ---- input and receive flow control ----------------------------------------------------

void Conn::OnReadable(const uint8_t* in, size_t len) {
  if (killed_) return;
  if (!lws_timeout_cleared_ && wsi_) {
    // lws arms its "establish" timeout when it adopts a socket with TLS and never clears
    // it for a raw socket (set past every deadline of ours: Context::CreateLws). Deadlines
    // are ours (handshake, close, heartbeat): lws's goes once data flows.
    lws_timeout_cleared_ = true;
    lws_set_timeout(wsi_, NO_PENDING_TIMEOUT, 0);
  }
  if (opts_->heartbeat_interval_ms) {
    last_rx_us_ = MonotonicUs();
    ping_outstanding_ = false;
  }
  if (wire_kind_ == WireKind::kTlsClient && state_ != State::kConnecting)
    ReadTls(in, len);
  else
    Input(in, len);
  ChargeRx();
}

void Conn::Stash(const uint8_t* p, size_t n) {
  if (!n) return;
  if (!stash_) stash_.reset(new std::string());
  stash_->append(reinterpret_cast<const char*>(p), n);
}

void Conn::Input(const uint8_t* p, size_t n) {
  if (n == 0 || killed_) return;
  if (lingering_ || kill_after_flush_ || fail_code_) {
    stash_.reset();  // closing: what the peer still sends is discarded
    return;
  }
  if (rx_pause_ || (stash_ && !stash_->empty())) {
    Stash(p, n);  // in order, after what is already waiting
    return;
  }
  switch (state_) {
    case State::kProxy:
      ProxyInput(p, n);
      return;
    case State::kHandshake:
      if (shared_->client)
        ClientInput(p, n);
      else
        ServerInput(p, n);
      return;
    case State::kOpen: {
      if (!trim_pending) ctx_->NoteBuffers(this);
      size_t used = reader_.Feed(p, n);
      if (used < n || reader_.busy()) {
        // The inflation budget ran out, or the receive budget (the reader
        // yielded): the rest waits for the next turn of the service loop, so
        // that other connections are served meanwhile; by then ChargeRx has
        // paused reading if JavaScript has not caught up.
        Stash(p + used, n - used);
        PauseRx(kRxInflate);
        ctx_->MarkBusy(this);
      } else {
        ReadPayloadDirect();
      }
      NoteUnfinished();
      return;
    }
    default:
      return;
  }
}

void Conn::ReadPayloadDirect() {
  // What the last read brought went through the read buffer; the rest of a
  // large payload goes from the socket straight into the message and is
  // unmasked there while it is still in cache. The 1 MiB echo spent 22% of the service
  // thread unmasking out of lws's buffer into the message. Plain sockets
  // only (the reader stops at the frame's end, so this reads nothing the
  // message does not need), and never while reading is paused.
  constexpr size_t kDirectMin = 64 * 1024;
  constexpr size_t kDirectChunk = 128 * 1024;
  if (wire_kind_ != WireKind::kPlain || fd_ < 0) return;
  size_t want = 0;
  uint8_t* room;
  while (!rx_pause_ && !killed_ && (room = reader_.PayloadRoom(kDirectMin, &want))) {
    want = std::min(want, kDirectChunk);
    ssize_t got = recv(fd_, room, want, MSG_DONTWAIT);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return;  // nothing yet, or end/error: the next readiness report says which
    reader_.PayloadArrived(static_cast<size_t>(got));
    if (static_cast<size_t>(got) < want) return;
  }
}

void Conn::Pump() {
  while (!rx_pause_ && !killed_ && stash_ && !stash_->empty()) {
    std::unique_ptr<std::string> s = std::move(stash_);
    Input(reinterpret_cast<const uint8_t*>(s->data()), s->size());  // may stash the rest again
  }
}

void Conn::SetRxPause(uint8_t bits) {
  rx_pause_ = bits;
  bool want = bits != 0;
  if (want != rx_off_ && HasTransport() && !killed_) {
    rx_off_ = want;
    if (sock_)
      sock_->SetReading(!want);
    else if (JsWire* js = js_wire())
      js->SetReading(!want);
    else
      lws_rx_flow_control(wsi_, want ? 0 : 1);
  }
}

void Conn::PauseRx(uint8_t reason) { SetRxPause(rx_pause_ | reason); }

void Conn::ResumeRx(uint8_t reason) {
  if (!(rx_pause_ & reason)) return;
  rx_pause_ &= static_cast<uint8_t>(~reason);
  if (!rx_pause_) {
    if (opts_->heartbeat_interval_ms) {
      // Time spent paused does not count against the peer.
      last_rx_us_ = MonotonicUs();
      ping_outstanding_ = false;
    }
    Pump();  // input stashed while paused goes first
    ChargeRx();
  }
  SetRxPause(rx_pause_);
}

void Conn::Continue() {
  if (killed_) return;
  rx_pause_ &= static_cast<uint8_t>(~kRxInflate);  // the socket stays paused meanwhile
  if (reader_.busy() || state_ == State::kOpen) {
    size_t used = reader_.Feed(nullptr, 0);  // the inflation left over
    (void)used;
    NoteUnfinished();
    if (reader_.busy()) {
      rx_pause_ |= kRxInflate;
      ctx_->MarkBusy(this);
      ChargeRx();
      return;
    }
  }
  if (!rx_pause_) Pump();
  ChargeRx();
  SetRxPause(rx_pause_);
}

void Conn::CheckRxFlow() {
  if (!(rx_pause_ & kRxFlow)) return;
  if (shared_->rx_pending.load() <= shared_->rx_low_water) {
    ResumeRx(kRxFlow);
    return;
  }
  shared_->rx_waiting.store(true);
  if (shared_->rx_pending.load() <= shared_->rx_low_water && shared_->rx_waiting.exchange(false))
    ResumeRx(kRxFlow);
}

void Conn::ChargeRx() {
  // The batches carry the charge already (Context::Charge); this is the
  // connection's running total.
  if (rx_charge_) shared_->rx_pending.fetch_add(rx_charge_);
  rx_charge_ = 0;
  ctx_->CheckRxTotal();  // may pause every connection, this one too
  if (killed_) return;
  if (!(rx_pause_ & kRxFlow) && shared_->rx_pending.load() > opts_->receive_high_water_mark) {
    PauseRx(kRxFlow);
    shared_->rx_waiting.store(true);
    // JavaScript may have released everything before it saw the flag.
    if (shared_->rx_pending.load() <= shared_->rx_low_water && shared_->rx_waiting.exchange(false))
      ResumeRx(kRxFlow);
  }
}

void Conn::ReadTls(const uint8_t* in, size_t len) {
  ClientTlsWire* tw = tls_client();
  TlsClient* t = tw->tls();
  t->Feed(in, len);
  if (!tw->up()) {
    int r = t->Handshake();
    if (r < 0) {
      FailConnect(t->code(), t->error());
      return;
    }
    if (r == 0) {
      Flush();  // handshake records out
      return;
    }
    tw->SetUp();
    QueueBlock(client_hs_->request);
  }
  uint8_t buf[64 * 1024];
  while (!killed_) {
    int n = t->Read(buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (state_ == State::kOpen)
        Kill();  // the peer ended TLS: like a TCP close
      else
        FailConnect(t->code(), t->error());
      return;
    }
    Input(buf, static_cast<size_t>(n));
  }
  Flush();
}

// ---- handshake -------------------------------------------------------------------

void Conn::QueueBlock(const std::string& bytes) {
  uint8_t* b = CopyBlock(bytes.data(), bytes.size());
  if (!b) {
    Kill();
    return;
  }
  OutFrame f;
  f.data = b;
  f.block = b;
  f.len = bytes.size();
  wire_->Push(f);
}

void Conn::SendHttpAndClose(const std::string& response) {
  SendHttpAndClose(HttpAnswer{response, nullptr});
}

void Conn::SendHttpAndClose(HttpAnswer answer) {
  // "HTTP/1.1 404 ...": what a handed-over connection reports to JavaScript.
  if (answer.bytes.size() > 12) answered_ = static_cast<uint16_t>(atoi(answer.bytes.c_str() + 9));
  QueueBlock(answer.bytes);
  file_ = std::move(answer.file);
  server_hs_.reset();
  stash_.reset();
  kill_after_flush_ = true;
  // A client that never reads cannot hold the socket: this long without
  // taking a byte (each chunk of a file sets it again), and it is closed.
  SetDeadline(opts_->close_timeout_ms);
  Flush();
}

bool Conn::SendFileChunk() {
  // One chunk at a time, when the socket has taken the one before. A plain
  // socket takes it from the file itself: a client that does not read holds
  // nothing here. Otherwise (TLS, a JavaScript stream) it is read into a
  // block and queued: such a client holds that much, never the whole file.
  constexpr size_t kFileChunk = 64 * 1024;
  size_t n = static_cast<size_t>(std::min<uint64_t>(file_->left(), kFileChunk));
  size_t sent = 0;
  uint8_t* b = nullptr;
  switch (wire_->SendFile(file_->fd(), n, &sent)) {
    case Wire::FileStatus::kSent:
      file_->Sent(sent);
      if (!file_->left()) file_.reset();
      SetDeadline(opts_->close_timeout_ms);
      return true;
    case Wire::FileStatus::kBlocked:
      return false;  // OnWritable goes on
    case Wire::FileStatus::kBroken:
      DropQueue(false);
      file_.reset();
      Kill();
      return false;
    case Wire::FileStatus::kFileEnded:
      break;
    case Wire::FileStatus::kUnsupported:
      b = BufAlloc(n);
      if (b && file_->Read(b, n)) break;
      BufFree(b);
      b = nullptr;
      break;
  }
  if (!b) {
    // Shorter than the Content-Length sent (or out of memory): closing
    // without the rest is how the client learns that the body is not whole.
    file_.reset();
    Kill();
    return false;
  }
  if (!file_->left()) file_.reset();
  OutFrame f;
  f.data = b;
  f.block = b;
  f.len = n;
  wire_->Push(f);
  SetDeadline(opts_->close_timeout_ms);
  return true;
}

void Conn::ServerInput(const uint8_t* p, size_t n) {
  const ServerConfig& cfg = server_->config();
  ServerHandshake& hs = *server_hs_;
  hs.tls_handshake = false;  // a request byte decrypted: the TLS handshake is done
  ServerHandshake::Result result = hs.Feed(p, n, cfg, server_->open_connections);
  if (result == ServerHandshake::Result::kMore) {
    server_->HeadPending(&hs.pending, this, hs.held());  // may refuse this one
    return;
  }
  server_->HeadDone(&hs.pending);
  switch (result) {
    case ServerHandshake::Result::kMore:
      return;
    case ServerHandshake::Result::kReject:
      SendHttpAndClose(HttpErrorReply(hs.status(), hs.message(), hs.extra_headers()));
      return;
    case ServerHandshake::Result::kHttp:
      SendHttpAndClose(AnswerHttp(cfg, hs.request(), server_->open_connections,
                                  (MonotonicUs() - server_->started_us) / 1000));
      return;
    case ServerHandshake::Result::kUpgrade:
      break;
  }
  if (hs.pmd) UseDeflate(std::move(hs.pmd));
  // Frames the client sent right behind its request wait until the
  // connection is open.
  Stash(reinterpret_cast<const uint8_t*>(hs.rest.data()), hs.rest.size());
  hs.rest.clear();
  if (cfg.verify) {
    // JavaScript decides (verify / handleProtocols); kAccept or kReject
    // follows. Nothing more is read meanwhile.
    state_ = State::kVerifying;
    PauseRx(kRxVerify);
    auto info = std::make_unique<ConnInfo>();
    shared_->Ref();
    info->shared = shared_;
    info->path = hs.request().target;
    info->headers = hs.request().headers.list;
    info->remote_address = hs.remote_address;
    info->remote_port = hs.remote_port;
    info->protocol = hs.offered;
    AddPeerCertificate(info.get());
    ctx_->Emit(kEvUpgrade, shared_->id, server_->id(), ctx_->AddInfo(std::move(info)));
    return;
  }
  CompleteUpgrade(ChooseProtocol(cfg.protocols, hs.offered), std::string());
}

void Conn::NoteUnfinished() {
  size_t held = reader_.held();
  if (held || unfinished_slot_) ctx_->SetUnfinished(this, &unfinished_slot_, held);
}

void Conn::FailUnfinished() {
  reader_.Abandon();  // the context has taken it off its list already
  Fail(kCloseTryAgainLater, "The server holds too much unfinished input (totalUnfinishedLimit)");
}

void Conn::RefuseHead() {
  if (killed_) return;  // closing already; ~Conn is near
  if (server_hs_ && server_hs_->tls_handshake) {
    Kill();  // no TLS session to answer over yet
    return;
  }
  SendHttpAndClose(HttpErrorReply(503, "Too many unfinished requests", "Retry-After: 1\r\n"));
}

void Conn::AddPeerCertificate(ConnInfo* info) {
  if (server_->config().tls_request_cert)
    PeerCertificate(wsi_, &info->peer_cert, &info->peer_verify_error);
}

void Conn::AcceptUpgrade(const std::string& protocol, bool choose, const std::string& headers) {
  if (state_ != State::kVerifying || killed_) return;
  const ServerConfig& cfg = server_->config();
  if (cfg.max_connections && server_->open_connections >= cfg.max_connections) {
    SendHttpAndClose(HttpErrorReply(503, "Too many connections", "Retry-After: 1\r\n"));
    return;
  }
  CompleteUpgrade(choose ? ChooseProtocol(cfg.protocols, server_hs_->offered) : protocol, headers);
  ResumeRx(kRxVerify);
  ChargeRx();
}

void Conn::RejectUpgrade(int status, const std::string& headers, const std::string& body) {
  if (state_ != State::kVerifying || killed_) return;
  SendHttpAndClose(HttpReply(status, "text/plain; charset=utf-8", body, headers));
}

void Conn::CompleteUpgrade(const std::string& protocol, const std::string& headers) {
  ServerHandshake& hs = *server_hs_;
  std::string response = UpgradeResponse(hs.key, protocol, hs.ext_response,
                                         server_->config().upgrade_headers + headers);
  // On a plain socket the 101 goes out at once (an empty socket buffer takes
  // it whole): no copy of it and no write queue storage. Queued, the queue's
  // storage stayed until the trim freed it a second later, a hole per
  // connection among the blocks that stay in the service thread's malloc
  // arena: at 10,000 idle connections the arena held 1.15 MB free between
  // them, 0.18 MB since.
  ssize_t sent =
      wire_kind_ == WireKind::kPlain
          ? wire_->WriteNow(reinterpret_cast<const uint8_t*>(response.data()), response.size())
          : 0;
  if (sent < static_cast<ssize_t>(response.size()))
    QueueBlock(sent > 0 ? response.substr(static_cast<size_t>(sent)) : response);
  OpenEstablished();
  auto info = std::make_unique<ConnInfo>();
  shared_->Ref();
  info->shared = shared_;
  info->path = std::move(hs.mutable_request().target);
  info->headers = std::move(hs.mutable_request().headers.list);
  info->remote_address = std::move(hs.remote_address);
  info->remote_port = hs.remote_port;
  info->protocol = protocol;
  info->table_handle = true;
  AddPeerCertificate(info.get());
  ctx_->Emit(kEvConnection, shared_->id, server_->id(), ctx_->AddInfo(std::move(info)));
  server_hs_.reset();
  Flush();
  Pump();  // frames that came with the request
}

// permessage-deflate was negotiated: the reader inflates, and send() on the
// main thread hands messages from the threshold on to be compressed here.
void Conn::UseDeflate(std::unique_ptr<PerMessageDeflate> pmd) {
  shared_->deflate_threshold.store(pmd->threshold(), std::memory_order_release);
  reader_.EnableDeflate(std::move(pmd));
}

void Conn::ClientInput(const uint8_t* p, size_t n) {
  ClientHandshake& hs = *client_hs_;
  switch (hs.Feed(p, n, opts_->max_header_bytes)) {
    case ClientHandshake::Result::kMore:
      return;
    case ClientHandshake::Result::kFail:
      Kill();  // EmitConnectError reports hs.error_*
      return;
    case ClientHandshake::Result::kOpen:
      break;
  }
  if (hs.pmd) UseDeflate(std::move(hs.pmd));
  OpenEstablished();
  auto info = std::make_unique<ConnInfo>();
  shared_->Ref();
  info->shared = shared_;
  info->headers = std::move(hs.headers);
  info->status = hs.status;
  info->remote_address = hs.address;
  info->remote_port = hs.port;
  info->protocol = std::move(hs.protocol);
  ctx_->Emit(kEvOpen, shared_->id, 0, ctx_->AddInfo(std::move(info)));
  std::string rest = std::move(hs.rest);
  client_hs_.reset();
  if (!rest.empty()) Input(reinterpret_cast<const uint8_t*>(rest.data()), rest.size());
}

void Conn::ProxyInput(const uint8_t* p, size_t n) {
  ProxyHandshake& ph = proxy_->hs;
  switch (ph.Feed(p, n, opts_->max_header_bytes)) {
    case ProxyHandshake::Result::kMore:
      return;
    case ProxyHandshake::Result::kFail:
      client_hs_->error_headers = std::move(ph.headers);
      FailConnect(ph.error_code.c_str(), ph.error_message, ph.error_status);
      return;
    case ProxyHandshake::Result::kTunnel:
      break;
  }
  std::string rest = std::move(ph.rest);
  std::unique_ptr<TlsClient> tunnel_tls = std::move(proxy_->tunnel_tls);
  proxy_.reset();
  if (tunnel_tls) {
    if (!wire_->empty()) {
      // Impossible with a proxy that answered after reading our request.
      FailConnect("ERR_PROXY_TUNNEL", "The proxy answered before it had the whole CONNECT request");
      return;
    }
    // From here every byte on the socket is TLS.
    wire_->Drop(false);
    wire_.reset(new ClientTlsWire(this, fd_, std::move(tunnel_tls)));
    wire_kind_ = WireKind::kTlsClient;
  }
  StartHandshake();
  if (!rest.empty() && !killed_) {
    if (wire_kind_ == WireKind::kTlsClient)
      ReadTls(reinterpret_cast<const uint8_t*>(rest.data()), rest.size());
    else
      Input(reinterpret_cast<const uint8_t*>(rest.data()), rest.size());
  }
}

void Conn::StartHandshake() {
  state_ = State::kHandshake;
  if (wire_kind_ == WireKind::kTlsClient) {
    ReadTls(nullptr, 0);  // sends the ClientHello
    return;
  }
  QueueBlock(client_hs_->request);
  Flush();
}

void Conn::OpenEstablished() {
  state_ = State::kOpen;
  SetDeadline(0);
  if (server_) {
    server_->open_connections++;
    counted_open_ = true;
  }
  StartHeartbeat();
}

// ---- heartbeat ------------------------------------------------------------------

void Conn::StartHeartbeat() {
  if (!opts_->heartbeat_interval_ms) return;
  last_rx_us_ = MonotonicUs();
  ctx_->timers().Schedule(&heartbeat_,
                          last_rx_us_ + static_cast<int64_t>(opts_->heartbeat_interval_ms) * 1000,
                          OnHeartbeat, this);
}

void Conn::OnHeartbeat(void* arg) {
  auto* c = static_cast<Conn*>(arg);
  if (c->state_ != State::kOpen || c->killed_) return;
  int64_t now = MonotonicUs();
  int64_t interval = static_cast<int64_t>(c->opts_->heartbeat_interval_ms) * 1000;
  int64_t timeout = static_cast<int64_t>(c->opts_->heartbeat_timeout_ms) * 1000;
  int64_t next;
  if (c->rx_pause_ & (kRxFlow | kRxGlobal | kRxUser | kRxInflate)) {
    // We are not reading, so the peer's silence says nothing: judge it only
    // once reading resumes (ResumeRx restarts the clock).
    c->ping_outstanding_ = false;
    c->last_rx_us_ = now;
    next = interval;
  } else if (c->ping_outstanding_) {
    if (now - c->ping_at_us_ >= timeout) {
      // Silent past the timeout: drop it; 'close' reports 1006.
      c->Kill();
      return;
    }
    next = c->ping_at_us_ + timeout - now;
  } else if (now - c->last_rx_us_ >= interval) {
    if (!c->close_sent_) {
      size_t flen;
      uint8_t* f = NewFrame(c->shared_->client, kOpPing, nullptr, 0, &flen);
      if (f) {
        OutFrame of;
        of.data = f;
        of.block = f;
        of.len = flen;
        of.kind = OutFrame::kPing;
        c->wire_->PushControl(of);
        c->ctx_->MarkDirty(c);
      }
    }
    c->ping_outstanding_ = true;
    c->ping_at_us_ = now;
    next = timeout;
  } else {
    next = c->last_rx_us_ + interval - now;
  }
  c->ctx_->timers().Schedule(&c->heartbeat_, now + std::max<int64_t>(next, 1000), OnHeartbeat, c);
}

// ---- frames in (FrameSink) ------------------------------------------------------------

uint8_t* Conn::MessageRoom(size_t len) {
  if (len > kArenaMax) return nullptr;
  return ctx_->ArenaRoom(len);
}

bool Conn::OnMessage(ReadMessage& m) {
  uint32_t id = shared_->id;
  uint32_t len = static_cast<uint32_t>(m.len);
  if (m.len <= kArenaMax) {
    uint32_t off;
    if (m.in_room) {
      Batch& b = ctx_->events();
      off = b.arena.Commit(m.len);
      b.cost += static_cast<int64_t>(m.len);
    } else if (!ctx_->AddArena(m.data, m.len, &off)) {
      Fail(kCloseInternalError, "Out of memory for a message");
      return false;
    }
    if (opts_->lend_messages) ctx_->events().lends = true;
    ctx_->Emit(!m.text ? kEvBinary : m.ascii ? kEvTextAscii : kEvText, id, off, len);
  } else {
    // Handed over as it is: pooled buffers are not shrunk.
    ObjItem::Kind kind = !m.text || text_as_buffer_
                             ? (opts_->lend_messages ? ObjItem::kLentBuffer : ObjItem::kBuffer)
                         : m.ascii ? ObjItem::kAscii
                                   : ObjItem::kUtf8;
    uint32_t obj = ctx_->AddBlob(kind, m.data, m.len);
    m.data = nullptr;
    ctx_->Emit(m.text ? kEvTextObj : kEvBinaryObj, id, len, obj);
  }
  int64_t cost = static_cast<int64_t>(m.len) + kEventCost;
  ctx_->Charge(shared_, cost);
  rx_charge_ += cost;
  YieldIfSpent();
  return !killed_;
}

// A read may hold far more events than the receive budget (a 256 KiB read
// holds ~43,000 empty pings): the reader stops at the budget, and the rest of
// the read waits, stashed, like any input behind a pause.
void Conn::YieldIfSpent() {
  if (shared_->rx_pending.load(std::memory_order_relaxed) + rx_charge_ >
      opts_->receive_high_water_mark)
    reader_.Yield();
}

void Conn::OnPing(const uint8_t* p, size_t n) {
  if (!close_sent_) {
    size_t flen;
    uint8_t* f = NewFrame(shared_->client, kOpPong, p, n, &flen);
    if (f) {
      OutFrame of;
      of.data = f;
      of.block = f;
      of.len = flen;
      of.kind = OutFrame::kPong;
      wire_->PushControl(of);  // replaces a pong not yet on the wire
      ctx_->MarkDirty(this);
    }
  }
  uint32_t off;
  if (!ctx_->AddArena(p, n, &off)) {
    Fail(kCloseInternalError, "Out of memory");
    return;
  }
  ctx_->Emit(kEvPing, shared_->id, off, static_cast<uint32_t>(n));
  ctx_->Charge(shared_, static_cast<int64_t>(n) + kEventCost);
  rx_charge_ += static_cast<int64_t>(n) + kEventCost;
  YieldIfSpent();
}

void Conn::OnPong(const uint8_t* p, size_t n) {
  uint32_t off;
  if (!ctx_->AddArena(p, n, &off)) {
    Fail(kCloseInternalError, "Out of memory");
    return;
  }
  ctx_->Emit(kEvPong, shared_->id, off, static_cast<uint32_t>(n));
  ctx_->Charge(shared_, static_cast<int64_t>(n) + kEventCost);
  rx_charge_ += static_cast<int64_t>(n) + kEventCost;
  YieldIfSpent();
}

void Conn::OnCloseFrame(uint16_t code, const uint8_t* reason, size_t n) {
  close_received_ = true;
  peer_code_ = code;
  reason_.reset(new std::string(reinterpret_cast<const char*>(reason), n));
  if (!close_sent_) {
    // Echo the code and reason; frames already queued go out first.
    QueueClose(code == kCloseNoStatus ? 0 : code, *reason_);
    SetDeadline(opts_->close_timeout_ms);
  }
  CloseHandshakeDone();
  ctx_->MarkDirty(this);
}

void Conn::OnReadError(uint16_t close_code, const char* why) { Fail(close_code, why); }

// ---- close -------------------------------------------------------------------------

void Conn::QueueClose(uint16_t code, const std::string& reason) {
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
  OutFrame of;
  of.data = f;
  of.block = f;
  of.len = flen;
  of.kind = OutFrame::kClose;
  wire_->Push(of);
}

void Conn::Fail(uint16_t code, const char* why) {
  if (fail_code_ || killed_) return;
  fail_code_ = code;
  reason_.reset(new std::string(why));
  stash_.reset();
  ctx_->Emit(kEvError, shared_->id, code, ctx_->AddString(why));
  if (state_ != State::kOpen || close_written_) {
    Kill();
    return;
  }
  if (!close_sent_) {
    DropQueue(true);  // nothing may follow the close frame
    QueueClose(code, why);
  }
  kill_after_flush_ = true;
  SetDeadline(opts_->close_timeout_ms);
  ctx_->MarkDirty(this);
}

void Conn::CloseHandshakeDone() {
  if (!(close_received_ && close_written_)) return;
  if (shared_->client) {
    // The server closes the TCP connection first (RFC 6455 7.1.1); wait for it.
    SetDeadline(opts_->close_timeout_ms);
    return;
  }
  kill_after_flush_ = true;
  ctx_->MarkDirty(this);
}

void Conn::CloseFromJs(uint8_t* frame, size_t len, bool discard) {
  if (close_sent_ || killed_ || state_ != State::kOpen) {
    BufFree(frame);
    return;
  }
  close_sent_ = true;
  if (discard) DropQueue(true);
  OutFrame of;
  of.data = frame;
  of.block = frame;
  of.len = len;
  of.kind = OutFrame::kClose;
  wire_->Push(of);
  SetDeadline(opts_->close_timeout_ms);
  ctx_->MarkDirty(this);
}

void Conn::Shutdown() {
  if (state_ != State::kOpen) {
    Kill();
    return;
  }
  if (!close_sent_) {
    QueueClose(kCloseGoingAway, std::string());
    SetDeadline(opts_->close_timeout_ms);
    ctx_->MarkDirty(this);
  }
}

bool Conn::Trim() {
  if (killed_ || !HasTransport()) return false;
  bool sending = !wire_->empty();
  if (!sending) wire_->Trim();
  reader_.Trim();
  NoteUnfinished();
  return sending || reader_.holds_buffer();
}

// ---- publish/subscribe -------------------------------------------------------------

Topics::Memberships& Conn::memberships() {
  if (!topics_) topics_.reset(new Topics::Memberships());
  return *topics_;
}

void Conn::Subscribe(const std::string& topic, int64_t max_backpressure) {
  if (!server_ || killed_ || state_ == State::kClosed) return;
  server_->topics().Subscribe(this, &memberships(), topic, max_backpressure);
}

void Conn::Unsubscribe(const std::string& topic) {
  if (!server_ || !topics_) return;
  server_->topics().Unsubscribe(this, topics_.get(), topic);
  if (topics_->empty()) topics_.reset();
}

bool Conn::AdmitBackpressure(size_t payload, int64_t limit, int64_t adding) {
  int64_t buffered = shared_->buffered.load() + tx_unsettled_;
  bool over_mine = limit && buffered + static_cast<int64_t>(payload) > limit;
  if (!over_mine && !ctx_->OverSendLimit(shared_, buffered, adding, true)) return true;
  if (opts_->drop_on_backpressure) {
    shared_->dropped.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  // As send() does under the 'close' policy (past the send total, the
  // queued messages are given back at once).
  if (!over_mine) DropQueue(true);
  QueueClose(kClosePolicy,
             over_mine ? "Send buffer over maxBackpressure" : "Send buffers over totalSendLimit");
  SetDeadline(opts_->close_timeout_ms);
  ctx_->MarkDirty(this);
  return false;
}

void Conn::QueuePublished(PublishJob& job, int64_t max_backpressure) {
  int64_t limit = max_backpressure ? max_backpressure : opts_->max_backpressure;
  if (close_sent_ || killed_ || state_ != State::kOpen) return;
  SharedFrame* f = job.plain();
  size_t payload = f->payload_len();
  PerMessageDeflate* pmd = reader_.pmd();
  if (pmd && payload >= pmd->threshold()) {
    if (!pmd->independent()) {
      // This connection's compressor keeps context: a frame of its own.
      if (!AdmitBackpressure(payload, limit, static_cast<int64_t>(payload))) return;
      uint8_t* copy = BufAlloc(payload + 1);
      if (!copy) return;
      memcpy(copy, f->payload(), payload);
      tx_unsettled_ += static_cast<int64_t>(payload);
      ctx_->NoteSendHeld(static_cast<int64_t>(payload));
      SendCompressed(copy, payload, f->opcode);
      return;
    }
    f = job.Compressed(pmd->deflate_bits(), pmd->level());
    if (!f) {
      Fail(kCloseInternalError, "Compression failed");
      return;
    }
  }
  // A small frame is copied (its payload adds to the send total); a large
  // one is referenced, counted once already.
  bool copy = f->len <= Wire::kCoalesce;
  if (!AdmitBackpressure(payload, limit, copy ? static_cast<int64_t>(payload) : 0)) return;
  if (copy) {
    // A small frame is copied next to the frames queued before it (one
    // iovec, one FrameDone for the lot) rather than referenced.
    if (!wire_->PushCopy(f->block, f->len, payload)) return;
    tx_unsettled_ += static_cast<int64_t>(payload);
    ctx_->NoteSendHeld(static_cast<int64_t>(payload));
    ctx_->MarkDirty(this);
    return;
  }
  tx_unsettled_ += static_cast<int64_t>(payload);
  f->Ref();
  OutFrame of;
  of.data = f->block;
  of.len = f->len;
  of.shared = f;
  of.payload = payload;
  wire_->Push(of);
  ctx_->MarkDirty(this);
}

// ---- frames out --------------------------------------------------------------------

void Conn::Send(const OutFrame& f) {
  if (close_sent_ || killed_ || state_ != State::kOpen) {
    OutFrame dropped = f;
    FrameDone(dropped, false);
    Settle();
    ReleaseFrame(dropped);
    return;
  }
  wire_->Push(f);
  ctx_->MarkDirty(this);
}

void Conn::SendCopy(const uint8_t* frame, size_t len, size_t payload) {
  if (close_sent_ || killed_ || state_ != State::kOpen || !wire_->PushCopy(frame, len, payload)) {
    tx_unsettled_ -= static_cast<int64_t>(payload);  // dropped
    ctx_->NoteSendHeld(-static_cast<int64_t>(payload));
    Settle();
    return;
  }
  ctx_->MarkDirty(this);
}

void Conn::SendCompressed(uint8_t* payload, size_t len, uint8_t opcode) {
  OutFrame bare;
  bare.block = payload;
  bare.payload = len;
  if (close_sent_ || killed_ || state_ != State::kOpen || !reader_.pmd()) {
    FrameDone(bare, false);
    Settle();
    ReleaseFrame(bare);
    return;
  }
  PerMessageDeflate* pmd = reader_.pmd();
  std::vector<uint8_t> z;
  // Without context takeover on our side (serverNoContextTakeover), a
  // message does not depend on the ones before: the listener's stream for
  // this window and level compresses it, reset after each one, and the
  // connection never makes a deflate stream of its own (~260 KiB).
  bool ok = server_ && pmd->independent()
                ? server_->deflaters().Compress(pmd->deflate_bits(), pmd->level(), payload, len, &z)
                : pmd->Deflate(payload, len, &z);
  if (!ok) {
    FrameDone(bare, false);
    Settle();
    ReleaseFrame(bare);
    Fail(kCloseInternalError, "Compression failed");
    return;
  }
  BufFree(payload);
  size_t flen;
  uint8_t* f = NewFrame(shared_->client, opcode, z.data(), z.size(), &flen, true);
  if (!f) {
    bare.block = nullptr;
    FrameDone(bare, false);
    Settle();
    Fail(kCloseInternalError, "Out of memory");
    return;
  }
  OutFrame of;
  of.data = f;
  of.block = f;
  of.len = flen;
  of.payload = len;
  wire_->Push(of);
  ctx_->MarkDirty(this);
}

void Conn::FrameDone(const OutFrame& f, bool written) {
  if (f.js)
    ctx_->ReleaseJs(f.js);
  else if (!f.shared && f.payload)
    ctx_->NoteSendHeld(-static_cast<int64_t>(f.payload));  // a copy of its own
  if (f.kind == OutFrame::kClose && written) {
    close_written_ = true;
    CloseHandshakeDone();
  }
  tx_unsettled_ -= static_cast<int64_t>(f.payload);
}

void Conn::Settle() {
  if (!tx_unsettled_) return;
  int64_t d = tx_unsettled_;
  tx_unsettled_ = 0;
  int64_t prev = shared_->buffered.fetch_add(d, std::memory_order_acq_rel);
  int64_t hwm = shared_->high_water_mark;
  if (d < 0 && prev > hwm && prev + d <= hwm) ctx_->Emit(kEvDrain, shared_->id);
}

void Conn::DropQueue(bool keep_partial) {
  wire_->Drop(keep_partial);
  Settle();
}

void Conn::JsAck(size_t n) {
  JsWire* js = js_wire();
  if (!js) return;
  js->Ack(n);
  OnWritable();
}

bool Conn::WantWritable() {
  if (sock_)
    sock_->WantWritable();
  else if (wsi_)
    lws_callback_on_writable(wsi_);
  else
    return false;  // JavaScript's stream: JsAck resumes the Flush
  return true;
}

void Conn::OnWritable() {
  wire_->WritableArrived();
  if (state_ == State::kConnecting) {
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &l) < 0) err = errno;
    if (err) {
      client_hs_->connect_errno = err;
      Kill();
      return;
    }
    // The state first: ResumeRx may feed input that arrived meanwhile.
    if (proxy_) {
      state_ = State::kProxy;
      QueueBlock(proxy_->request);
      std::string().swap(proxy_->request);
      ResumeRx(kRxConnecting);
      Flush();
      return;
    }
    state_ = State::kHandshake;
    ResumeRx(kRxConnecting);
    StartHandshake();
    return;
  }
  Flush();
}

void Conn::Flush() {
  if (killed_ || !HasTransport() || state_ == State::kConnecting) return;
  if (!trim_pending) ctx_->NoteBuffers(this);
  // A file goes out in at most this many chunks per turn: a client that
  // reads as fast as the loopback takes it does not hold up the others.
  int file_chunks = 16;
  for (;;) {
    Wire::Status s = wire_->Flush();
    Settle();
    if (s == Wire::Status::kBroken) {
      // The peer is gone (EPIPE, ECONNRESET, ...): nothing more can be sent.
      DropQueue(false);
      file_.reset();
      Kill();
      return;
    }
    if (s != Wire::Status::kIdle) return;
    if (!file_) break;
    if (file_chunks-- == 0 && WantWritable()) return;  // OnWritable goes on next turn
    if (!SendFileChunk()) return;
  }
  if (!kill_after_flush_ || lingering_) return;
  if (wire_->HalfClose()) {
    // Lingering close (RFC 9112 9.6): our FIN is sent; discard what the peer
    // still sends until it closes too (or a short timer runs out). Closing at
    // once would turn unread input into a reset that can destroy the
    // response or close frame just sent.
    lingering_ = true;
    stash_.reset();
    SetRxPause(0);  // read (and discard) whatever else holds reading
    SetDeadline(std::min<uint32_t>(opts_->close_timeout_ms, 2000));
  } else {
    Kill();
  }
}

}  // namespace nlws
