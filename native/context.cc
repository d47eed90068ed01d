#include "context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#if NLWS_WITH_LIBEV
#include <ev.h>
#endif

#include "buffers.h"
#include "connection.h"
#include "listener.h"
#include "tls_client.h"
#include "ws_protocol.h"

namespace nlws {

const char* Context::kProtocolName = "node-lws";

namespace {

thread_local Context* tls_ctx = nullptr;
// While a libev context is being tried, lws's lines are kept here instead.
thread_local std::vector<std::pair<int, std::string>>* tls_held_logs = nullptr;

}  // namespace

void LwsLogToContext(int level, const char* line) {
  if (!tls_ctx && !tls_held_logs) return;
  std::string s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (tls_held_logs)
    tls_held_logs->emplace_back(level, std::move(s));
  else
    tls_ctx->Log(level, s.c_str());
}

namespace {

// Arena-referencing and object-referencing record types (see EventType).
bool UsesArena(uint32_t type) {
  return type == kEvText || type == kEvBinary || type == kEvPing || type == kEvPong;
}
bool UsesObj(uint32_t type) {
  return type == kEvListenError || type == kEvConnection || type == kEvTextObj ||
         type == kEvBinaryObj || type == kEvClose || type == kEvLog || type == kEvError ||
         type == kEvOpen || type == kEvConnectError || type == kEvUpgrade || type == kEvAcceptError;
}

unsigned FdLimit() {
  struct rlimit rl;
  rlim_t n = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) n = rl.rlim_cur;
  // lws allocates a table with one slot per possible fd number.
  return static_cast<unsigned>(std::min<rlim_t>(std::max<rlim_t>(n, 1024), 1u << 17));
}

}  // namespace

#if NLWS_WITH_LIBEV
// Deadlines under libev: lws's timers and node-lws's TimerHeap.
//
// lws 4.1.6's libev glue keeps one ev_timer for all lws timers (lws_sul) and
// re-arms it only from its own callbacks, with ev_timer_set() + ev_timer_start()
// on a watcher that may still be running: a timer scheduled earlier than the
// one it waits for is then not seen until the later one fires (a 100 ms
// heartbeat waited for a 20 s handshake timeout). lws keeps its timers in one
// sorted list per thread, whose head is the earliest deadline; lws_wake
// follows that head after every loop iteration, and when the deadline comes
// it wakes lws (lws_cancel_service), whose idle handler then runs every timer
// that is due. The list is found through a probe entry scheduled once: a
// scheduled lws_sorted_usec_list_t points at its owner list (lws-dll2.h).
//
// heap follows Context::timers() and runs it itself.
struct Context::EvTimers {
  struct Deadline {
    ev_timer w;  // first member: the callbacks cast back
    EvTimers* self;
    lws_usec_t armed = 0;  // the deadline w is set for (or, lws_wake, has woken lws for); 0: none
  };
  Context* ctx;
  lws_dll2_owner_t* lws_list = nullptr;
  Deadline lws_wake;
  Deadline heap;

  explicit EvTimers(Context* c) : ctx(c) {
    ev_init(&lws_wake.w, OnLwsWake);
    ev_init(&heap.w, OnHeap);
    lws_wake.self = heap.self = this;
    lws_sorted_usec_list_t probe;
    memset(&probe, 0, sizeof probe);
    lws_sul_schedule(
        ctx->lws_, 0, &probe, [](lws_sorted_usec_list_t*) {}, 3600LL * 1000000);
    lws_list = const_cast<lws_dll2_owner_t*>(lws_dll2_owner(&probe.list));
    lws_sul_cancel(&probe);
  }

  lws_usec_t LwsHead() const {
    lws_dll2* h = lws_dll2_get_head(lws_list);
    return h ? lws_container_of(h, lws_sorted_usec_list_t, list)->us : 0;
  }

  // After each iteration: follow both earliest deadlines.
  void Arm() {
    lws_usec_t due = LwsHead();
    if (due != lws_wake.armed) Set(&lws_wake, due);
    due = ctx->timers_.earliest_us();
    if (due != heap.armed) Set(&heap, due);
  }

  void Set(Deadline* d, lws_usec_t due) {
    ev_timer_stop(ctx->ev_, &d->w);
    d->armed = due;
    if (!due) return;
    lws_usec_t now = MonotonicUs();  // lws_now_usecs() is the same clock
    ev_now_update(ctx->ev_);         // the timer counts from the loop's clock
    ev_timer_set(&d->w, due > now ? static_cast<double>(due - now) / 1e6 : 0., 0.);
    ev_timer_start(ctx->ev_, &d->w);
  }

  void Stop() {
    ev_timer_stop(ctx->ev_, &lws_wake.w);
    ev_timer_stop(ctx->ev_, &heap.w);
    lws_wake.armed = heap.armed = 0;
  }

  static void OnLwsWake(struct ev_loop*, ev_timer* w, int) {
    auto* d = reinterpret_cast<Deadline*>(w);
    if (d->armed > MonotonicUs()) {  // libev's clock ran ahead: not due yet
      d->self->Set(d, d->armed);
      return;
    }
    // Due: lws runs it from its idle handler after this wake-up. `armed`
    // stays, so Arm() does not set the timer again for the same deadline.
    lws_cancel_service(d->self->ctx->lws_);
  }

  static void OnHeap(struct ev_loop*, ev_timer* w, int) {
    auto* d = reinterpret_cast<Deadline*>(w);
    d->armed = 0;  // Arm() sets it for whatever is earliest afterwards
    d->self->ctx->timers_.RunDue(MonotonicUs());
  }
};
#endif

// ---- Batch ---------------------------------------------------------------------------

void Batch::Append(Batch&& o) {
  uint32_t arena_base = static_cast<uint32_t>(arena.len);
  uint32_t obj_base = static_cast<uint32_t>(objs.size());
  size_t first = recs.size();
  recs.insert(recs.end(), o.recs.begin(), o.recs.end());
  for (size_t i = first; i < recs.size(); i += 4) {
    uint32_t type = recs[i];
    if (UsesArena(type)) recs[i + 2] += arena_base;
    if (UsesObj(type) && recs[i + 3] != kNoObj) recs[i + 3] += obj_base;
  }
  if (o.arena.len) {
    uint8_t* dst = arena.Grow(o.arena.len);
    if (dst) {
      memcpy(dst, o.arena.data, o.arena.len);
      arena.len += o.arena.len;
    }
  }
  for (ObjItem& item : o.objs) objs.push_back(std::move(item));
  blob_bytes += o.blob_bytes;
  o.objs.clear();
  o.Clear();
}

Arena& Arena::operator=(Arena&& o) noexcept {
  if (this != &o) {
    Release();
    data = o.data;
    len = o.len;
    cap = o.cap;
    o.data = nullptr;
    o.len = o.cap = 0;
  }
  return *this;
}

Arena::~Arena() { Release(); }

uint8_t* Arena::Grow(size_t n) {
  if (len + n > cap || !data) {  // (an empty message still needs a buffer to point into)
    size_t want = cap ? cap * 2 : 64 * 1024;
    while (want < len + n) want *= 2;
    uint8_t* p = BufRealloc(data, want, len);
    if (!p) return nullptr;
    data = p;
    cap = BufCapacity(p);
  }
  return data + len;
}

void Arena::Release() {
  BufFree(data);
  data = nullptr;
  len = cap = 0;
}

uint8_t* Arena::Take() {
  uint8_t* p = data;
  data = nullptr;
  len = cap = 0;
  return p;
}

void Batch::Clear() {
  for (ObjItem& item : objs) BufFree(item.blob.data);
  objs.clear();
  recs.clear();
  arena.len = 0;  // keeps the buffer for the next batch
  blob_bytes = 0;
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
}

// ---- lifecycle -------------------------------------------------------------------------

Context* Context::Create(Napi::Env env, Napi::Function on_events, LoopKind loop,
                         std::string* error) {
  Context* ctx = new Context();
  ctx->env_ = env;
  ctx->tsfn_ = Napi::TypedThreadSafeFunction<Context, void, CallJs>::New(
      env, on_events, "node-lws:events", 0, 1, ctx);
  ctx->tsfn_.Unref(env);

  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  ctx->thread_ = std::thread(&Context::ThreadMain, ctx, loop, error, &mu, &cv, &ready);
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
    pending_.Clear();
  }
  tsfn_.Release();
}

// Creates the lws context and its plain vhost, on libev or on lws's poll()
// loop. false: nothing is left behind; *why says what failed.
bool Context::CreateLws(bool libev, std::string* why) {
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
  // coexisted); TLS servers get their own vhosts (ServerTlsVhost).
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS |
                 LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  info.fd_limit_per_thread = FdLimit();
#if NLWS_WITH_LIBEV
  void* loops[1] = {nullptr};
  if (libev) {
    // A loop of this thread's own, handed to lws as a foreign loop: lws then
    // installs no SIGINT watcher (it would with a loop of its own), and never
    // runs or destroys the loop; ThreadMain runs it and destroys it after lws.
    // No signal mask changes, no environment, no inotify or timerfd: only the
    // descriptors and timers lws gives it.
    ev_ = ev_loop_new(EVFLAG_NOENV | EVFLAG_NOSIGMASK | EVFLAG_NOINOTIFY | EVFLAG_NOTIMERFD);
    if (!ev_) {
      *why = "ev_loop_new failed";
      return false;
    }
    loops[0] = ev_;
    info.foreign_loops = loops;
    info.options |= LWS_SERVER_OPTION_LIBEV;
  }
#else
  if (libev) {
    *why = "this build of node-lws has no libev support";
    return false;
  }
#endif
  lws_ = lws_create_context(&info);
  if (lws_) {
    lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.vhost_name = "default";
    vi.port = CONTEXT_PORT_NO_LISTEN;
    vi.protocols = protocols_;
    vhost_ = lws_create_vhost(lws_, &vi);
  }
  if (lws_ && vhost_) {
#if NLWS_WITH_LIBEV
    if (ev_) {
      ev_timers_ = new EvTimers(this);
      switch (ev_backend(ev_)) {
        case EVBACKEND_EPOLL:
          backend_ = "epoll";
          break;
        case EVBACKEND_KQUEUE:
          backend_ = "kqueue";
          break;
        case EVBACKEND_POLL:
          backend_ = "poll";
          break;
        case EVBACKEND_SELECT:
          backend_ = "select";
          break;
        default:
          backend_ = "other";
      }
    }
#endif
    return true;
  }
  *why = lws_ ? "lws_create_vhost failed" : "lws_create_context failed";
  if (lws_) lws_context_destroy(lws_);
  lws_ = nullptr;
  vhost_ = nullptr;
#if NLWS_WITH_LIBEV
  if (ev_) ev_loop_destroy(ev_);
  ev_ = nullptr;
#endif
  return false;
}

void Context::ThreadMain(LoopKind loop, std::string* error, std::mutex* mu,
                         std::condition_variable* cv, bool* ready) {
  tls_ctx = this;
  protocols_[0].name = kProtocolName;
  protocols_[0].callback = Callback;

  bool created = false;
#if NLWS_WITH_LIBEV
  if (loop != LoopKind::kPoll) {
    // lws's lines about a plugin it could not load are held, and summed up in
    // one line below if the poll loop takes over.
    std::vector<std::pair<int, std::string>> held;
    tls_held_logs = &held;
    std::string why;
    created = CreateLws(true, &why);
    tls_held_logs = nullptr;
    if (created) {
      for (auto& l : held) Log(l.first, l.second.c_str());
    } else {
      for (auto& l : held)
        if (l.first & LLL_ERR) why = l.second;  // the last error line says the most
      fallback_reason_ = "the libev event loop could not start (" + why +
                         "); using lws's poll() loop, whose cost grows with the number of open "
                         "connections. Debian/Ubuntu: apt-get install libwebsockets-evlib-ev";
    }
  }
#endif
  if (!created) {
    std::string why;
    created = CreateLws(false, &why);
    if (!created) *error = why;
  }
  {
    std::lock_guard<std::mutex> lock(*mu);
    *ready = true;
  }
  cv->notify_one();
  if (!lws_) return;

  while (!stopping_.load(std::memory_order_acquire)) {
#if NLWS_WITH_LIBEV
    if (ev_) {
      // One iteration: epoll_wait, then the callbacks of what is ready (lws
      // services those sockets and its timers), then back here.
      ev_run(ev_, EVRUN_ONCE);
      FlushEvents();
      ev_timers_->Arm();
      continue;
    }
#endif
    if (lws_service(lws_, 0) < 0) break;
    FlushEvents();
    ArmHeapSul();
  }

  // Tear down on this thread: every lws call stays here.
  shutting_down_ = true;
  // With a foreign libev loop this is complete when it returns (no second
  // call, unlike libuv): lws stops its watchers and timer on our loop.
#if NLWS_WITH_LIBEV
  if (ev_timers_) ev_timers_->Stop();
#endif
  lws_sul_cancel(&heap_sul_.sul);
  lws_context_destroy(lws_);
#if NLWS_WITH_LIBEV
  delete ev_timers_;
  ev_timers_ = nullptr;
  if (ev_) ev_loop_destroy(ev_);
  ev_ = nullptr;
#endif
  for (auto& kv : listeners_) delete kv.second;
  listeners_.clear();
  for (auto& kv : client_tls_ctx_) SSL_CTX_free(kv.second);
  client_tls_ctx_.clear();
  dirty_.clear();
  kills_.clear();
  local_.Clear();
  tls_ctx = nullptr;
}

// Under poll: one lws timer at the heap's earliest deadline. Its callback runs
// inside lws_service(), before poll(), like any lws timer; what the heap's
// callbacks do is flushed because they call WakeSelf() as they would from a
// timer of their own.
void Context::ArmHeapSul() {
  int64_t due = timers_.earliest_us();
  if (due == heap_sul_armed_) return;
  heap_sul_armed_ = due;
  if (!due) {
    lws_sul_cancel(&heap_sul_.sul);
    return;
  }
  heap_sul_.owner = this;
  int64_t now = MonotonicUs();
  lws_sul_schedule(lws_, 0, &heap_sul_.sul, OnHeapSul, due > now ? due - now : 0);
}

void Context::OnHeapSul(lws_sorted_usec_list_t* sul) {
  Context* ctx = reinterpret_cast<decltype(heap_sul_)*>(sul)->owner;
  ctx->heap_sul_armed_ = 0;
  ctx->timers_.RunDue(MonotonicUs());
  ctx->ArmHeapSul();  // lws runs it in this same pass if it is already due
}

void Context::SetRef(bool ref) {
  if (ref == ref_ || stopped_) return;
  ref_ = ref;
  if (ref)
    tsfn_.Ref(env_);
  else
    tsfn_.Unref(env_);
}

// ---- main -> service ---------------------------------------------------------------------

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
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS: {
      // Each TLS server has its own vhost, none of them listening in lws's
      // sense (port 0). lws's SNI callback would pick "the first vhost on
      // that port" for a client that sends SNI: another server's certificate.
      // Each SSL_CTX serves its own certificate, whatever the SNI says.
      SSL_CTX_set_tlsext_servername_callback(
          static_cast<SSL_CTX*>(user), +[](SSL*, int*, void*) { return SSL_TLSEXT_ERR_OK; });
      // lws loads only the first certificate of a PEM from memory: the rest
      // of the chain (intermediates, tls.ca) goes in here.
      auto* ctx = static_cast<Context*>(lws_context_user(lws_get_context(wsi)));
      if (ctx && ctx->pending_chain_ &&
          !AddChain(static_cast<SSL_CTX*>(user), *ctx->pending_chain_))
        return 1;  // fails the vhost: listen() rejects
      return 0;
    }
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
  switch (c.type) {
    case Command::kStartServer: {
      uint32_t id = c.server->id;
      Listener* l = new Listener(this, c.server);
      c.server = nullptr;
      std::string error;
      if (l->Start(&error)) {
        listeners_[id] = l;
        Emit(kEvListening, id);
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
      Conn* conn = c.conn->conn;
      if (!conn) return;  // DisposeCommand frees the frame and its accounting
      if (c.compress)
        conn->SendCompressed(c.data, c.len, static_cast<uint8_t>(c.code));
      else
        conn->Send(c.data, c.len, c.payload);
      c.data = nullptr;
      c.payload = 0;
      return;
    }
    case Command::kClose: {
      Conn* conn = c.conn->conn;
      if (!conn) return;
      conn->CloseFromJs(c.data, c.len, c.code);
      c.data = nullptr;
      return;
    }
    case Command::kTerminate: {
      Conn* conn = c.conn->conn;
      if (conn) conn->Terminate();
      return;
    }
    case Command::kAccept: {
      Conn* conn = c.conn->conn;
      if (conn) conn->AcceptUpgrade(c.text);
      return;
    }
    case Command::kReject: {
      Conn* conn = c.conn->conn;
      if (conn) conn->RejectUpgrade(c.code, c.text, c.text2);
      return;
    }
  }
}

SSL_CTX* Context::ClientTlsContext(const std::string& ca, std::string* error) {
  auto it = client_tls_ctx_.find(ca);
  if (it != client_tls_ctx_.end()) return it->second;
  SSL_CTX* ctx = NewClientTlsContext(ca, error);
  if (ctx) client_tls_ctx_[ca] = ctx;  // kept for the context's lifetime
  return ctx;
}

bool AddChain(SSL_CTX* ssl_ctx, const std::string& pem) {
  if (pem.empty()) return true;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  bool ok = true;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add_extra_chain_cert(ssl_ctx, cert) != 1) {  // takes ownership on success
      X509_free(cert);
      ok = false;
      break;
    }
  }
  BIO_free(bio);
  ERR_clear_error();  // the read loop ends on an expected "no start line"
  return ok;
}

lws_vhost* Context::ServerTlsVhost(const ServerConfig& cfg, std::string* error) {
  lws_context_creation_info vi;
  memset(&vi, 0, sizeof vi);
  vhost_names_.push_back("node-lws-tls-" + std::to_string(++vhost_serial_));
  vi.vhost_name = vhost_names_.back().c_str();
  vi.port = CONTEXT_PORT_NO_LISTEN_SERVER;
  vi.protocols = protocols_;
  vi.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
  vi.server_ssl_cert_mem = cfg.tls_cert.data();
  vi.server_ssl_cert_mem_len = static_cast<unsigned int>(cfg.tls_cert.size());
  vi.server_ssl_private_key_mem = cfg.tls_key.data();
  vi.server_ssl_private_key_mem_len = static_cast<unsigned int>(cfg.tls_key.size());
  if (!cfg.tls_passphrase.empty()) vi.ssl_private_key_password = cfg.tls_passphrase.c_str();
  vi.alpn = "http/1.1";             // node-lws speaks HTTP/1.1 only; lws would offer h2 first
  pending_chain_ = &cfg.tls_chain;  // read by the callback lws_create_vhost makes
  lws_vhost* vh = lws_create_vhost(lws_, &vi);
  pending_chain_ = nullptr;
  if (!vh) *error = "lws rejected the TLS certificate, key or chain";
  return vh;
}

void Context::ServerClosed(Listener* l) {
  uint32_t id = l->id();
  Emit(kEvServerClosed, id);
  listeners_.erase(id);
  delete l;
}

void Context::MarkDirty(Conn* conn) {
  if (conn->dirty) return;
  conn->dirty = true;
  dirty_.push_back(conn);
}

void Context::ForgetDirty(Conn* conn) {
  auto it = std::find(dirty_.begin(), dirty_.end(), conn);
  if (it != dirty_.end()) dirty_.erase(it);
  conn->dirty = false;
}

void Context::ScheduleKill(Conn* conn) {
  if (conn->kill_pending) return;
  conn->kill_pending = true;
  kills_.push_back(conn);
}

void Context::CancelKill(Conn* conn) {
  auto it = std::find(kills_.begin(), kills_.end(), conn);
  if (it != kills_.end()) kills_.erase(it);
  conn->kill_pending = false;
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

// ---- service -> main ----------------------------------------------------------------------

void Context::Emit(uint32_t type, uint32_t id, uint32_t a, uint32_t b) {
  local_.recs.insert(local_.recs.end(), {type, id, a, b});
}

uint32_t Context::AddArena(const uint8_t* p, size_t n) {
  size_t off = local_.arena.len;
  uint8_t* dst = local_.arena.Grow(n);
  if (!dst) return 0;  // out of memory: the message reads as empty
  if (n) memcpy(dst, p, n);
  local_.arena.len += n;
  return static_cast<uint32_t>(off);
}

uint32_t Context::AddString(std::string s) {
  ObjItem item{ObjItem::kString, std::move(s), Blob{}, nullptr};
  local_.objs.push_back(std::move(item));
  return static_cast<uint32_t>(local_.objs.size() - 1);
}

uint32_t Context::AddBlob(ObjItem::Kind kind, uint8_t* data, size_t len) {
  ObjItem item{kind, std::string(), Blob{data, len}, nullptr};
  local_.objs.push_back(std::move(item));
  local_.blob_bytes += len;
  return static_cast<uint32_t>(local_.objs.size() - 1);
}

uint32_t Context::AddError(const char* code, std::string message, int status) {
  ObjItem item{ObjItem::kError, std::move(message), Blob{}, nullptr};
  item.code = code;
  item.status = status;
  local_.objs.push_back(std::move(item));
  return static_cast<uint32_t>(local_.objs.size() - 1);
}

uint32_t Context::AddInfo(std::unique_ptr<ConnInfo> info) {
  ObjItem item{ObjItem::kInfo, std::string(), Blob{}, std::move(info)};
  local_.objs.push_back(std::move(item));
  return static_cast<uint32_t>(local_.objs.size() - 1);
}

void Context::Log(int level, const char* line) { Emit(kEvLog, level, 0, AddString(line)); }

void Context::FlushEvents() {
  FlushDirty();
  RunKills();
  if (local_.Empty()) return;
  bool call;
  {
    std::lock_guard<std::mutex> lock(ev_mu_);
    if (pending_.Empty())
      std::swap(pending_, local_);
    else
      pending_.Append(std::move(local_));
    call = !call_pending_;
    call_pending_ = true;
  }
  local_.Clear();
  if (call && tsfn_.NonBlockingCall() != napi_ok) {
    std::lock_guard<std::mutex> lock(ev_mu_);
    call_pending_ = false;
  }
}

void Context::CallJs(Napi::Env env, Napi::Function cb, Context* ctx, void* unused) {
  (void)unused;
  if (!env || !ctx) return;
  ctx->DeliverEvents(env, cb);
}

namespace {

// Event delivery uses the C N-API with every status checked, not the C++
// wrappers: while a worker is being terminated any call may fail, and the
// wrappers turn a failure into a fatal error. Here a failure drops the batch.
#define NLWS_OK(call)                    \
  do {                                   \
    if ((call) != napi_ok) return false; \
  } while (0)

bool SetNamed(napi_env env, napi_value obj, const char* name, napi_value v) {
  return napi_set_named_property(env, obj, name, v) == napi_ok;
}

bool Str(napi_env env, const std::string& s, napi_value* out) {
  return napi_create_string_utf8(env, s.data(), s.size(), out) == napi_ok;
}

void FreeBlob(napi_env env, void* data, void* hint) {
  int64_t len = static_cast<int64_t>(reinterpret_cast<uintptr_t>(hint));
  int64_t ignored;
  napi_adjust_external_memory(env, -len, &ignored);
  BufFree(static_cast<uint8_t*>(data));
}

bool MakeInfo(napi_env env, ConnInfo* info, napi_value* out) {
  napi_value o, v, headers;
  NLWS_OK(napi_create_object(env, &o));
  ConnShared* shared = info->shared;
  NLWS_OK(napi_create_external(
      env, shared, [](napi_env, void* data, void*) { static_cast<ConnShared*>(data)->Unref(); },
      nullptr, &v));
  info->shared = nullptr;  // the External owns this reference now
  if (!SetNamed(env, o, "handle", v)) return false;
  NLWS_OK(napi_create_uint32(env, shared->id, &v));
  if (!SetNamed(env, o, "id", v) || !Str(env, info->path, &v) || !SetNamed(env, o, "path", v))
    return false;
  NLWS_OK(napi_create_object(env, &headers));
  // Repeated headers are joined with ", ", as Node's http module does.
  std::vector<std::pair<std::string, std::string>> merged;
  for (auto& kv : info->headers) {
    auto it = std::find_if(merged.begin(), merged.end(),
                           [&](const auto& m) { return m.first == kv.first; });
    if (it == merged.end())
      merged.emplace_back(std::move(kv.first), std::move(kv.second));
    else
      it->second += ", " + kv.second;
  }
  for (const auto& kv : merged)
    if (!Str(env, kv.second, &v) || !SetNamed(env, headers, kv.first.c_str(), v)) return false;
  if (!SetNamed(env, o, "headers", headers)) return false;
  if (!Str(env, info->remote_address, &v) || !SetNamed(env, o, "remoteAddress", v)) return false;
  NLWS_OK(napi_create_int32(env, info->remote_port, &v));
  if (!SetNamed(env, o, "remotePort", v)) return false;
  if (!Str(env, info->protocol, &v) || !SetNamed(env, o, "protocol", v)) return false;
  *out = o;
  return true;
}

bool MakeObj(napi_env env, ObjItem& item, napi_value* out) {
  switch (item.kind) {
    case ObjItem::kString:
      return Str(env, item.str, out);
    case ObjItem::kUtf8: {
      bool ok = napi_create_string_utf8(env, reinterpret_cast<const char*>(item.blob.data),
                                        item.blob.len, out) == napi_ok;
      BufFree(item.blob.data);
      item.blob.data = nullptr;
      return ok;
    }
    case ObjItem::kBuffer: {
      size_t len = item.blob.len;
      NLWS_OK(napi_create_external_buffer(env, len, item.blob.data, FreeBlob,
                                          reinterpret_cast<void*>(static_cast<uintptr_t>(len)),
                                          out));
      item.blob.data = nullptr;  // the Buffer owns it now
      int64_t ignored;
      napi_adjust_external_memory(env, static_cast<int64_t>(len), &ignored);
      return true;
    }
    case ObjItem::kInfo:
      return MakeInfo(env, item.info.get(), out);
    case ObjItem::kError: {
      napi_value v;
      NLWS_OK(napi_create_object(env, out));
      if (!Str(env, item.code, &v) || !SetNamed(env, *out, "code", v)) return false;
      if (!Str(env, item.str, &v) || !SetNamed(env, *out, "message", v)) return false;
      if (item.status) {
        NLWS_OK(napi_create_int32(env, item.status, &v));
        if (!SetNamed(env, *out, "status", v)) return false;
      }
      return true;
    }
  }
  return false;
}

bool MakeBatch(napi_env env, Batch& b, napi_value argv[3]) {
  size_t nrec = b.recs.size();
  void* data;
  napi_value rab;
  NLWS_OK(napi_create_arraybuffer(env, nrec * sizeof(uint32_t), &data, &rab));
  memcpy(data, b.recs.data(), nrec * sizeof(uint32_t));
  NLWS_OK(napi_create_typedarray(env, napi_uint32_array, nrec, rab, 0, &argv[0]));

  NLWS_OK(napi_get_undefined(env, &argv[1]));
  if (!b.arena.empty()) {
    if (b.arena.len <= 4096) {
      void* copy;  // small: a copy is cheaper than an external buffer
      NLWS_OK(napi_create_buffer_copy(env, b.arena.len, b.arena.data, &copy, &argv[1]));
    } else {
      size_t len = b.arena.len;
      uint8_t* data = b.arena.Take();  // no copy: JavaScript slices it
      NLWS_OK(napi_create_external_buffer(env, len, data, FreeBlob,
                                          reinterpret_cast<void*>(static_cast<uintptr_t>(len)),
                                          &argv[1]));
      int64_t ignored;
      napi_adjust_external_memory(env, static_cast<int64_t>(len), &ignored);
    }
  }

  NLWS_OK(napi_get_undefined(env, &argv[2]));
  if (!b.objs.empty()) {
    NLWS_OK(napi_create_array_with_length(env, b.objs.size(), &argv[2]));
    for (size_t i = 0; i < b.objs.size(); i++) {
      napi_value v;
      if (!MakeObj(env, b.objs[i], &v)) return false;
      NLWS_OK(napi_set_element(env, argv[2], static_cast<uint32_t>(i), v));
    }
  }
  return true;
}

#undef NLWS_OK

}  // namespace

void Context::DeliverEvents(Napi::Env env, Napi::Function cb) {
  Batch b;
  {
    std::lock_guard<std::mutex> lock(ev_mu_);
    std::swap(b, pending_);
    call_pending_ = false;
  }
  if (b.Empty()) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[3];
  if (MakeBatch(env, b, argv)) {
    napi_value global, result;
    delivering_ = true;
    if (napi_get_global(env, &global) == napi_ok)
      napi_call_function(env, global, cb, 3, argv, &result);  // a throw stays pending
    delivering_ = false;
  }
  napi_close_handle_scope(env, scope);
  if (wake_deferred_) {
    wake_deferred_ = false;
    if (!stopped_) lws_cancel_service(lws_);
  }
}

}  // namespace nlws
