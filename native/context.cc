#include "context.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

#include "buffers.h"
#include "connection.h"
#include "listener.h"
#include "server_tls.h"
#include "tls_client.h"

namespace nlws {

const char* Context::kProtocolName = "node-lws";

namespace {

thread_local Context* tls_ctx = nullptr;

unsigned FdLimit() {
  struct rlimit rl;
  rlim_t n = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) n = rl.rlim_cur;
  // lws allocates a table with one slot per possible fd number.
  return static_cast<unsigned>(std::min<rlim_t>(std::max<rlim_t>(n, 1024), 1u << 17));
}

}  // namespace

void LwsLogToContext(int level, const char* line) {
  if (!tls_ctx) return;
  std::string s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  tls_ctx->Log(level, s.c_str());
}

ClientConfig::~ClientConfig() {
  if (fd >= 0) close(fd);
  if (shared) shared->Unref();
}

void DisposeCommand(Command& cmd) {
  BufFree(cmd.data);
  cmd.data = nullptr;
  if (cmd.conn) {
    if (cmd.payload) cmd.conn->buffered.fetch_sub(static_cast<int64_t>(cmd.payload));
    cmd.conn->Unref();
    cmd.conn = nullptr;
  }
  if (cmd.server) {
    if (cmd.server->fd >= 0) close(cmd.server->fd);
    delete cmd.server;
    cmd.server = nullptr;
  }
  if (cmd.client) {
    delete cmd.client;  // closes the socket if it was not handed over
    cmd.client = nullptr;
  }
  if (cmd.fd >= 0) {
    close(cmd.fd);  // kAdopt that did not run
    cmd.fd = -1;
  }
}

// ---- lifecycle (main thread) ---------------------------------------------------------

Context* Context::Create(Napi::Env env, Napi::Function on_events, std::string* error) {
  Context* ctx = new Context();
  ctx->env_ = env;
  ctx->tsfn_ = Napi::TypedThreadSafeFunction<Context, void, CallJs>::New(
      env, on_events, "node-lws:events", 0, 1, ctx);
  ctx->tsfn_.Unref(env);

  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  ctx->thread_ = std::thread(&Context::ThreadMain, ctx, error, &mu, &cv, &ready);
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return ready; });
  }
  if (!error->empty()) {
    ctx->thread_.join();
    ctx->stopped_ = true;
    ctx->tsfn_.Release();
    delete ctx;
    return nullptr;
  }
  return ctx;
}

Context::~Context() { Stop(); }

void Context::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true);
  lws_cancel_service(lws_);
  thread_.join();
  {
    std::lock_guard<std::mutex> lock(cmd_mu_);
    for (Command& c : commands_) DisposeCommand(c);
    commands_.clear();
  }
  {
    std::lock_guard<std::mutex> lock(ev_mu_);
    pending_.clear();
  }
  tsfn_.Release();
}

void Context::SetRef(bool ref) {
  if (ref == ref_ || stopped_) return;
  ref_ = ref;
  if (ref)
    tsfn_.Ref(env_);
  else
    tsfn_.Unref(env_);
}

void Context::Push(Command&& cmd) {
  if (stopped_) {
    DisposeCommand(cmd);
    return;
  }
  bool wake;
  {
    std::lock_guard<std::mutex> lock(cmd_mu_);
    commands_.push_back(std::move(cmd));
    wake = !wake_pending_;
    wake_pending_ = true;
  }
  if (!wake) return;
  if (delivering_)
    wake_deferred_ = true;  // one wake-up at the end of the batch
  else
    lws_cancel_service(lws_);
}

void Context::ReleaseConn(ConnShared* shared, int64_t bytes) {
  if (bytes <= 0) return;
  int64_t now = shared->rx_pending.fetch_sub(bytes) - bytes;
  if (now <= shared->rx_low_water && shared->rx_waiting.load() &&
      shared->rx_waiting.exchange(false) && !shared->gone.load()) {
    shared->Ref();
    Command c{};
    c.type = Command::kResumeRx;
    c.conn = shared;
    c.code = 1;  // Conn::kRxFlow
    Push(std::move(c));
  }
}

void Context::ReleaseTotal(int64_t bytes) {
  if (bytes <= 0) return;
  int64_t limit = rx_limit_.load(std::memory_order_relaxed);
  int64_t total = rx_total_.fetch_sub(bytes) - bytes;
  if (total <= limit / 2 && rx_global_waiting_.load() && rx_global_waiting_.exchange(false)) {
    Command c{};
    c.type = Command::kResumeAll;
    Push(std::move(c));
  }
}

// ---- the service thread -------------------------------------------------------------

void Context::ThreadMain(std::string* error, std::mutex* mu, std::condition_variable* cv,
                         bool* ready) {
  tls_ctx = this;
  protocols_[0].name = kProtocolName;
  protocols_[0].callback = Callback;

  lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = protocols_;
  info.user = this;
  info.pt_serv_buf_size = 256 * 1024;  // read size for raw sockets
  // OpenSSL set-up (inside Node, lws's OpenSSL calls bind to Node's own OpenSSL).
  // No OS CA store: clients verify with their own (tls_client.cc), and lws would
  // load one per context.
  // EXPLICIT_VHOSTS: the plain vhost below is created without TLS options, so
  // lws builds no client SSL_CTX for it (which leaked when worker contexts
  // coexisted); TLS servers get their own vhosts (server_tls.cc).
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS |
                 LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  info.fd_limit_per_thread = FdLimit();
  lws_ = lws_create_context(&info);
  if (lws_) {
    lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.vhost_name = "default";
    vi.port = CONTEXT_PORT_NO_LISTEN;
    vi.protocols = protocols_;
    vhost_ = lws_create_vhost(lws_, &vi);
  }
  if (!lws_ || !vhost_) {
    *error = "lws_create_context failed";
    if (lws_) lws_context_destroy(lws_);
    lws_ = nullptr;
  }
  timers_.Init(lws_);
  trim_.fire = OnTrim;
  trim_.owner = this;
  if (lws_) timers_.ScheduleIn(&trim_, 1000 * 1000);
  {
    std::lock_guard<std::mutex> lock(*mu);
    *ready = true;
  }
  cv->notify_one();
  if (!lws_) return;

  while (!stopping_.load(std::memory_order_acquire)) {
    if (lws_service(lws_, 0) < 0) break;
    RunBusy();
    FlushEvents();
    // Connections with inflation left: poll without waiting next time.
    if (!busy_.empty()) lws_cancel_service(lws_);
  }

  // Tear down on this thread: every lws call stays here.
  shutting_down_ = true;
  timers_.Clear();
  // Connections JavaScript pumps have no wsi that lws_context_destroy would close.
  for (Conn* c = conns_; c;) {
    Conn* next = c->next;
    if (c->js_pumped()) c->CloseSocketNow();  // deletes c
    c = next;
  }
  lws_context_destroy(lws_);
  for (auto& kv : listeners_) delete kv.second;
  listeners_.clear();
  for (auto& kv : client_tls_ctx_) SSL_CTX_free(kv.second);
  client_tls_ctx_.clear();
  dirty_.clear();
  busy_.clear();
  kills_.clear();
  local_.Clear();
  tls_ctx = nullptr;
}

int Context::Callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len) {
  switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
      auto* ctx = static_cast<Context*>(lws_context_user(lws_get_context(wsi)));
      if (ctx && !ctx->shutting_down_) ctx->RunCommands();
      return 0;
    }
    case LWS_CALLBACK_RAW_RX: {
      auto* c = static_cast<Conn*>(lws_get_opaque_user_data(wsi));
      if (c) c->OnReadable(static_cast<const uint8_t*>(in), len);
      return 0;
    }
    case LWS_CALLBACK_RAW_WRITEABLE: {
      auto* c = static_cast<Conn*>(lws_get_opaque_user_data(wsi));
      if (c) c->OnWritable();
      return 0;
    }
    case LWS_CALLBACK_RAW_CLOSE: {
      auto* c = static_cast<Conn*>(lws_get_opaque_user_data(wsi));
      lws_set_opaque_user_data(wsi, nullptr);
      if (c) c->OnClosed();
      return 0;
    }
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
      return OnServerTlsContext(static_cast<SSL_CTX*>(user));
    case LWS_CALLBACK_RAW_RX_FILE: {
      auto* l = static_cast<Listener*>(lws_get_opaque_user_data(wsi));
      if (l) l->Accept();
      return 0;
    }
    case LWS_CALLBACK_RAW_CLOSE_FILE: {
      auto* l = static_cast<Listener*>(lws_get_opaque_user_data(wsi));
      lws_set_opaque_user_data(wsi, nullptr);
      if (l) l->ListenerWsiClosed();
      return 0;
    }
    default:
      return 0;
  }
}

void Context::RunCommands() {
  {
    std::lock_guard<std::mutex> lock(cmd_mu_);
    running_.swap(commands_);
    wake_pending_ = false;
  }
  for (Command& c : running_) {
    RunCommand(c);
    DisposeCommand(c);
  }
  running_.clear();
  FlushDirty();
}

void Context::RunCommand(Command& c) {
  Conn* conn = c.conn ? c.conn->conn : nullptr;
  switch (c.type) {
    case Command::kStartServer: {
      uint32_t id = c.server->id;
      Listener* l = new Listener(this, c.server);
      c.server = nullptr;
      std::string error;
      if (l->Start(&error)) {
        listeners_[id] = l;
        Emit(kEvListening, id);
        if (rx_global_paused_) l->PauseAccept(true);
      } else {
        delete l;
        Emit(kEvListenError, id, 0, AddString(error));
      }
      return;
    }
    case Command::kCloseServer: {
      auto it = listeners_.find(c.id);
      if (it == listeners_.end()) {
        Emit(kEvListenerClosed, c.id);
        Emit(kEvServerClosed, c.id);
        return;
      }
      it->second->Close();  // may delete the listener
      return;
    }
    case Command::kConnect: {
      ClientConfig* cfg = c.client;
      c.client = nullptr;
      Conn::StartClient(this, cfg);  // takes ownership
      return;
    }
    case Command::kSend: {
      if (!conn) return;  // DisposeCommand frees the frame and its accounting
      if (c.compress) {
        conn->SendCompressed(c.data, c.len, static_cast<uint8_t>(c.code));
      } else {
        OutFrame f;
        f.data = c.data;
        f.block = c.data;
        f.len = c.len;
        f.payload = c.payload;
        f.kind = c.code == kOpPing ? OutFrame::kPing : OutFrame::kData;
        conn->Send(f);
      }
      c.data = nullptr;
      c.payload = 0;
      return;
    }
    case Command::kClose:
      if (!conn) return;
      conn->CloseFromJs(c.data, c.len);
      c.data = nullptr;
      return;
    case Command::kTerminate:
      if (conn) conn->Terminate();
      return;
    case Command::kAccept:
      if (conn) conn->AcceptUpgrade(c.text, c.code == 1, c.text2);
      return;
    case Command::kReject:
      if (conn) conn->RejectUpgrade(c.code, c.text, c.text2);
      return;
    case Command::kPauseRx:
      if (conn) conn->PauseRx(static_cast<uint8_t>(c.code));
      return;
    case Command::kResumeRx:
      if (!conn) return;
      if (c.code == Conn::kRxFlow)
        conn->CheckRxFlow();
      else
        conn->ResumeRx(static_cast<uint8_t>(c.code));
      return;
    case Command::kAdopt: {
      auto it = listeners_.find(c.id);
      if (it == listeners_.end() || it->second->closing()) {
        // The server closed meanwhile: DisposeCommand closes the socket.
        Emit(kEvConnectError, c.conn->id, 0,
             AddError("ERR_SERVER_CLOSED", "The server was closed before the upgrade", 0));
        return;
      }
      int fd = c.fd;
      c.fd = -1;  // the listener's now
      it->second->Adopt(c.conn, fd, std::move(c.text), c.code, c.data, c.len);
      CheckRxTotal();
      return;
    }
    case Command::kWireIn:
      if (!conn) return;
      if (c.len)
        conn->OnReadable(c.data, c.len);
      else
        conn->Terminate();  // the stream ended: as when lws sees a socket close
      return;
    case Command::kWireAck:
      if (conn) conn->JsAck(c.len);
      return;
    case Command::kResumeAll:
      if (rx_global_paused_ &&
          rx_total_.load() + local_.cost <= rx_limit_.load(std::memory_order_relaxed) / 2)
        ResumeAll();
      else if (rx_global_paused_)
        rx_global_waiting_.store(true);  // not low enough yet (charged since): wait again
      return;
  }
}

SSL_CTX* Context::ClientTlsContext(const std::string& ca, std::string* error) {
  auto it = client_tls_ctx_.find(ca);
  if (it != client_tls_ctx_.end()) return it->second;
  SSL_CTX* ctx = NewClientTlsContext(ca, error);
  if (ctx) client_tls_ctx_[ca] = ctx;  // kept for the context's lifetime
  return ctx;
}

lws_vhost* Context::ServerTlsVhost(const ServerConfig& cfg, std::string* error) {
  vhost_names_.push_back("node-lws-tls-" + std::to_string(++vhost_serial_));
  return CreateServerTlsVhost(lws_, protocols_, cfg, vhost_names_.back().c_str(), error);
}

void Context::ServerClosed(Listener* l) {
  uint32_t id = l->id();
  Emit(kEvServerClosed, id);
  listeners_.erase(id);
  delete l;
}

void Context::ShutdownConns(Listener* l) {
  for (Conn* c = conns_; c; c = c->next)
    if (c->server() == l) c->Shutdown();  // never deletes synchronously
}

// ---- connection lists ----------------------------------------------------------------

void Context::AddConn(Conn* c) {
  c->prev = nullptr;
  c->next = conns_;
  if (conns_) conns_->prev = c;
  conns_ = c;
}

void Context::RemoveConn(Conn* c) {
  if (c->prev)
    c->prev->next = c->next;
  else if (conns_ == c)
    conns_ = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
}

void Context::MarkDirty(Conn* conn) {
  if (conn->dirty) return;
  conn->dirty = true;
  dirty_.push_back(conn);
}

void Context::MarkBusy(Conn* conn) {
  if (conn->busy) return;
  conn->busy = true;
  busy_.push_back(conn);
}

void Context::Forget(Conn* conn) {
  auto drop = [conn](std::vector<Conn*>& v) {
    auto it = std::find(v.begin(), v.end(), conn);
    if (it != v.end()) v.erase(it);
  };
  if (conn->dirty) drop(dirty_);
  if (conn->busy) drop(busy_);
  if (conn->kill_pending) drop(kills_);
  conn->dirty = conn->busy = conn->kill_pending = false;
  RemoveConn(conn);
}

void Context::ScheduleKill(Conn* conn) {
  if (conn->kill_pending) return;
  conn->kill_pending = true;
  kills_.push_back(conn);
}

// Closing synchronously here, between two lws_service() calls, rather than
// with LWS_TO_KILL_ASYNC: an async kill runs inside lws's timer processing just
// before poll(), and the close events it produces would wait for the next
// unrelated wake-up.
void Context::RunKills() {
  while (!kills_.empty()) {
    Conn* c = kills_.back();
    kills_.pop_back();
    c->kill_pending = false;
    c->CloseSocketNow();  // deletes c
  }
}

void Context::FlushDirty() {
  while (!dirty_.empty()) {
    std::vector<Conn*> list;
    list.swap(dirty_);
    for (Conn* c : list) {
      c->dirty = false;
      c->Flush();
    }
  }
}

void Context::RunBusy() {
  if (busy_.empty()) return;
  std::vector<Conn*> list;
  list.swap(busy_);
  for (Conn* c : list) c->busy = false;
  for (Conn* c : list) c->Continue();  // may mark itself busy again
}

// ---- receive flow control (service thread) ------------------------------------------------

void Context::Charge(ConnShared* shared, int64_t bytes) {
  if (!local_.charges.empty() && local_.charges.back().shared == shared) {
    local_.charges.back().bytes += bytes;
    return;
  }
  shared->Ref();
  local_.charges.push_back(RxCharge{shared, bytes});
}

void Context::CheckRxTotal() {
  if (rx_global_paused_) return;
  if (rx_total_.load() + local_.cost <= rx_limit_.load(std::memory_order_relaxed)) return;
  PauseAll();
}

void Context::PauseAll() {
  rx_global_paused_ = true;
  for (Conn* c = conns_; c; c = c->next) c->PauseRx(Conn::kRxGlobal);
  for (auto& kv : listeners_) kv.second->PauseAccept(true);
  rx_global_waiting_.store(true);
  // The main thread may have released everything before it saw the flag.
  if (rx_total_.load() + local_.cost <= rx_limit_.load(std::memory_order_relaxed) / 2 &&
      rx_global_waiting_.exchange(false))
    ResumeAll();
}

void Context::ResumeAll() {
  rx_global_paused_ = false;
  for (auto& kv : listeners_) kv.second->PauseAccept(false);
  // Resuming may read stashed input, charge, and pause everything again.
  for (Conn* c = conns_; c && !rx_global_paused_;) {
    Conn* next = c->next;
    c->ResumeRx(Conn::kRxGlobal);  // may close (and delete) c
    c = next;
  }
}

// ---- service -> main ------------------------------------------------------------------

void Context::Emit(uint32_t type, uint32_t id, uint32_t a, uint32_t b) {
  local_.recs.insert(local_.recs.end(), {type, id, a, b});
  local_.cost += kEventCost;
}

uint8_t* Context::ArenaRoom(size_t n) {
  constexpr size_t kArenaHandOver = 1024 * 1024;
  if (local_.arena.len > 0 && local_.arena.len + n > kArenaHandOver) HandOver();
  return local_.arena.Room(n);
}

bool Context::AddArena(const uint8_t* p, size_t n, uint32_t* offset) {
  uint8_t* dst = ArenaRoom(n);
  if (!dst) return false;
  *offset = static_cast<uint32_t>(local_.arena.len);
  if (n) memcpy(dst, p, n);
  local_.arena.len += n;
  local_.cost += static_cast<int64_t>(n);
  return true;
}

uint32_t Context::AddString(std::string s) {
  local_.cost += static_cast<int64_t>(s.size());
  ObjItem item;
  item.kind = ObjItem::kString;
  item.str = std::move(s);
  local_.objs.push_back(std::move(item));
  return static_cast<uint32_t>(local_.objs.size() - 1);
}

uint32_t Context::AddBlob(ObjItem::Kind kind, uint8_t* data, size_t len) {
  local_.cost += static_cast<int64_t>(len);
  ObjItem item;
  item.kind = kind;
  item.data = data;
  item.len = len;
  local_.objs.push_back(std::move(item));
  return static_cast<uint32_t>(local_.objs.size() - 1);
}

uint32_t Context::AddError(const char* code, std::string message, int status) {
  local_.cost += static_cast<int64_t>(message.size());
  ObjItem item;
  item.kind = ObjItem::kError;
  item.str = std::move(message);
  item.code = code;
  item.status = status;
  local_.objs.push_back(std::move(item));
  return static_cast<uint32_t>(local_.objs.size() - 1);
}

uint32_t Context::AddInfo(std::unique_ptr<ConnInfo> info) {
  int64_t size = 256 + static_cast<int64_t>(info->path.size());
  for (const auto& kv : info->headers)
    size += static_cast<int64_t>(kv.first.size() + kv.second.size());
  local_.cost += size;
  ObjItem item;
  item.kind = ObjItem::kInfo;
  item.info = std::move(info);
  local_.objs.push_back(std::move(item));
  return static_cast<uint32_t>(local_.objs.size() - 1);
}

void Context::Log(int level, const char* line) { Emit(kEvLog, level, 0, AddString(line)); }

void Context::FlushEvents() {
  FlushDirty();
  RunKills();
  HandOver();
}

void Context::HandOver() {
  if (local_.Empty()) return;
  rx_total_.fetch_add(local_.cost);
  bool call;
  {
    std::lock_guard<std::mutex> lock(ev_mu_);
    pending_.push_back(std::move(local_));
    call = !call_pending_;
    call_pending_ = true;
  }
  local_ = Batch();
  if (call && tsfn_.NonBlockingCall() != napi_ok) {
    std::lock_guard<std::mutex> lock(ev_mu_);
    call_pending_ = false;
  }
}

void Context::OnTrim(Timer* t) {
  auto* ctx = static_cast<Context*>(t->owner);
  BufTrim();
  ctx->timers_.ScheduleIn(&ctx->trim_, 1000 * 1000);
}

void Context::CallJs(Napi::Env env, Napi::Function cb, Context* ctx, void* unused) {
  (void)unused;
  if (!env || !ctx) return;
  ctx->Deliver(env, cb);
}

}  // namespace nlws
