#include "context.h"

#include <pthread.h>
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
#include "server_tls.h"
#include "tls_client.h"

namespace nlws {

const char* Context::kProtocolName = "node-lws";

namespace {

thread_local Context* tls_ctx = nullptr;
// While a libev context is being tried, lws's lines are kept here instead.
thread_local std::vector<std::pair<int, std::string>>* tls_held_logs = nullptr;

unsigned FdLimit() {
  struct rlimit rl;
  rlim_t n = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) n = rl.rlim_cur;
  // lws allocates a table with one slot per possible fd number.
  return static_cast<unsigned>(std::min<rlim_t>(std::max<rlim_t>(n, 1024), 1u << 17));
}

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

ClientConfig::~ClientConfig() {
  if (fd >= 0) close(fd);
  if (shared) shared->Unref();
}

void DisposeCommand(Command& cmd) {
  BufFree(cmd.data);
  cmd.data = nullptr;
  if (cmd.js) {
    // Never run: disposed on the main thread (Push after Stop, or Stop itself).
    if (cmd.js->users.fetch_sub(1, std::memory_order_acq_rel) == 1) ReleaseRef(cmd.js);
    cmd.js = nullptr;
  }
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
  if (cmd.frame) {
    cmd.frame->Unref();
    cmd.frame = nullptr;
  }
  if (cmd.fd >= 0) {
    close(cmd.fd);  // kAdopt that did not run
    cmd.fd = -1;
  }
}

// ---- lifecycle (main thread) ---------------------------------------------------------

Context* Context::Create(Napi::Env env, Napi::Function on_events, LoopKind loop,
                         std::string* error) {
  Context* ctx = new Context();
  ctx->env_ = env;
  ctx->on_events_ = Napi::Persistent(on_events);
  ctx->resource_ = Napi::Persistent(Napi::Object::New(env));
  napi_value name;
  napi_create_string_utf8(env, "node-lws:events", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, ctx->resource_.Value(), name, &ctx->async_ctx_);
  uv_loop_t* uv = nullptr;
  napi_get_uv_event_loop(env, &uv);
  ctx->waker_ = new Waker();
  ctx->waker_->ctx = ctx;
  uv_async_init(uv, &ctx->waker_->async, OnWake);
  ctx->waker_->async.data = ctx->waker_;
  uv_unref(reinterpret_cast<uv_handle_t*>(&ctx->waker_->async));
  napi_add_async_cleanup_hook(env, OnWakerCleanup, ctx->waker_, &ctx->waker_->hook);

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
    ctx->ReleaseWaker();
    delete ctx;
    return nullptr;
  }
  return ctx;
}

namespace {
// One chunk of inline frames: a pool class of BufAlloc (16 KiB).
constexpr size_t kInlineChunk = 16 * 1024;

void FreeChunks(std::vector<uint8_t*>* chunks) {
  for (uint8_t* ch : *chunks) BufFree(ch);
  chunks->clear();
}
}  // namespace

Context::~Context() { Stop(); }

void Context::Stop() {
  if (stopped_) return;
  stopped_ = true;
  for (RecentJs& e : recent_js_) e = RecentJs();
  stopping_.store(true);
  lws_cancel_service(lws_);
  thread_.join();
  {
    std::lock_guard<std::mutex> lock(cmd_mu_);
    for (Command& c : commands_) DisposeCommand(c);
    commands_.clear();
    FreeChunks(&cmd_chunks_);
  }
  for (Command& c : local_cmds_) DisposeCommand(c);
  local_cmds_.clear();
  FreeChunks(&local_chunks_);
  {
    std::lock_guard<std::mutex> lock(ev_mu_);
    pending_.clear();
  }
  ReleaseWaker();
}

void Context::ReleaseWaker() {
  if (waker_) waker_->ctx = nullptr;  // the environment's teardown closes it
  waker_ = nullptr;
  if (async_ctx_) napi_async_destroy(env_, async_ctx_);
  async_ctx_ = nullptr;
  on_events_.Reset();
  resource_.Reset();
}

void Context::OnWake(uv_async_t* async) {
  Context* ctx = static_cast<Waker*>(async->data)->ctx;
  if (!ctx || ctx->stopped_) return;
  napi_env env = ctx->env_;
  napi_handle_scope hs;
  if (napi_open_handle_scope(env, &hs) != napi_ok) return;
  // A callback scope, as node::MakeCallback opens: process.nextTick() callbacks and microtasks
  // queued by the listeners run when it closes.
  napi_callback_scope cs;
  bool scoped =
      napi_open_callback_scope(env, ctx->resource_.Value(), ctx->async_ctx_, &cs) == napi_ok;
  if (ctx->Deliver(env) && !ctx->schedule_.IsEmpty()) {
    napi_value global, result;
    if (napi_get_global(env, &global) == napi_ok)
      napi_call_function(env, global, ctx->schedule_.Value(), 0, nullptr, &result);
  }
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value err;
    if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
  }
  if (scoped) napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
}

void Context::OnWakerCleanup(napi_async_cleanup_hook_handle hook, void* arg) {
  (void)hook;
  auto* w = static_cast<Waker*>(arg);
  if (w->ctx) w->ctx->Stop();  // joins the service thread: nothing wakes this handle after it
  uv_close(reinterpret_cast<uv_handle_t*>(&w->async), [](uv_handle_t* h) {
    auto* w = static_cast<Waker*>(h->data);
    napi_remove_async_cleanup_hook(w->hook);
    delete w;
  });
}

void Context::SetRef(bool ref) {
  if (ref == ref_ || stopped_) return;
  ref_ = ref;
  if (!waker_) return;
  if (ref)
    uv_ref(reinterpret_cast<uv_handle_t*>(&waker_->async));
  else
    uv_unref(reinterpret_cast<uv_handle_t*>(&waker_->async));
}

#if NLWS_WITH_LIBEV
// The main thread wakes the service thread through an ev_async of ours rather
// than lws_cancel_service(): lws's libev glue followed each wake-up of its own
// fd with non-blocking polls (epoll_wait, timeout 0) until one came back empty,
// after every batch of commands.
struct Context::EvWake {
  ev_async w;  // first member: OnWake casts back
  Context* ctx;
  static void OnWake(struct ev_loop*, ev_async* w, int) {
    Context* ctx = reinterpret_cast<EvWake*>(w)->ctx;
    if (!ctx->shutting_down_) ctx->RunCommands();
  }
};
#endif

void Context::WakeService() {
#if NLWS_WITH_LIBEV
  if (ev_wake_) {
    ev_async_send(ev_, &ev_wake_->w);
    return;
  }
#endif
  lws_cancel_service(lws_);
}

void Context::Push(Command&& cmd) {
  if (stopped_) {
    DisposeCommand(cmd);
    return;
  }
  if (delivering_) {
    local_cmds_.push_back(std::move(cmd));  // PushLocal hands them over
    return;
  }
  bool wake;
  {
    std::lock_guard<std::mutex> lock(cmd_mu_);
    commands_.push_back(std::move(cmd));
    wake = !wake_pending_;
    wake_pending_ = true;
  }
  if (wake) WakeService();
}

uint8_t* Context::InlineFrame(size_t max) {
  if (!delivering_ || max > kInlineFrameMax) return nullptr;
  if (local_chunks_.empty() || local_used_ + max > kInlineChunk) {
    uint8_t* ch = BufAlloc(kInlineChunk);
    if (!ch) return nullptr;
    local_chunks_.push_back(ch);
    local_used_ = 0;
  }
  return local_chunks_.back() + local_used_;
}

void Context::PushLocal() {
  if (stopped_) {
    for (Command& c : local_cmds_) DisposeCommand(c);
    local_cmds_.clear();
    FreeChunks(&local_chunks_);
    return;
  }
  if (local_cmds_.empty()) return;
  bool wake;
  {
    std::lock_guard<std::mutex> lock(cmd_mu_);
    if (commands_.empty()) {
      commands_.swap(local_cmds_);
    } else {
      for (Command& c : local_cmds_) commands_.push_back(std::move(c));
    }
    cmd_chunks_.insert(cmd_chunks_.end(), local_chunks_.begin(), local_chunks_.end());
    wake = !wake_pending_;
    wake_pending_ = true;
  }
  local_cmds_.clear();
  local_chunks_.clear();
  local_used_ = 0;
  // A burst's capacity is not kept (an idle server holds none).
  if (local_cmds_.capacity() > 4096) std::vector<Command>().swap(local_cmds_);
  if (wake) WakeService();
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

// Creates the lws context and its plain vhost, on libev or on lws's poll()
// loop. false: nothing is left behind; *why says what failed.
bool Context::CreateLws(bool libev, std::string* why) {
  lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = protocols_;
  info.user = this;
  info.pt_serv_buf_size = kReadSize;  // read size for raw sockets
  // OpenSSL set-up (inside Node, lws's OpenSSL calls bind to Node's own OpenSSL).
  // No OS CA store: clients verify with their own (tls_client.cc), and lws would
  // load one per context.
  // EXPLICIT_VHOSTS: the plain vhost below is created without TLS options, so
  // lws builds no client SSL_CTX for it (which leaked when worker contexts
  // coexisted); TLS servers get their own vhosts (server_tls.cc).
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS |
                 LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  info.fd_limit_per_thread = FdLimit();
  // lws arms this timeout (5 s by default) when it adopts a TLS socket and again once
  // SSL_accept() is done, and drops the socket when it runs out: a wss:// handshake
  // slower than 5 s failed whatever handshakeTimeoutMs said. Every accepted socket
  // has node-lws's own deadline (handshakeTimeoutMs, at most 2^31-1 ms, ~24.9 days)
  // from the moment it is accepted, so lws's is set past any of them. node-lws's
  // wsis are raw sockets: lws's other uses of it (its HTTP and client roles, the
  // staged shutdown of non-raw wsis) do not arise.
  info.timeout_secs = 30 * 24 * 3600;
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
      ev_wake_ = new EvWake();
      ev_wake_->ctx = this;
      ev_async_init(&ev_wake_->w, EvWake::OnWake);
      ev_async_start(ev_, &ev_wake_->w);        // before the main thread hears we are ready
      read_buf_.reset(new uint8_t[kReadSize]);  // not touched (resident) until read into
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
  pthread_setname_np(pthread_self(), "node-lws");  // as top -H, perf and gdb show it
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
#else
  (void)loop;
#endif
  if (!created) {
    std::string why;
    created = CreateLws(false, &why);
    if (!created) *error = why;
  }
  if (created) timers_.Schedule(&trim_, MonotonicUs() + 1000 * 1000, OnTrim, this);
  {
    std::lock_guard<std::mutex> lock(*mu);
    *ready = true;
  }
  cv->notify_one();
  if (!lws_) return;

  while (!stopping_.load(std::memory_order_acquire)) {
#if NLWS_WITH_LIBEV
    if (ev_) {
      // One iteration: epoll_wait (without waiting while connections have
      // inflation left), then the callbacks of what is ready (lws services
      // those sockets and its timers; the heap runs its due timers), then
      // back here to flush what they produced.
      ev_run(ev_, busy_.empty() ? EVRUN_ONCE : EVRUN_NOWAIT);
      RunBusy();
      FlushEvents();
      ev_timers_->Arm();
      continue;
    }
#endif
    if (lws_service(lws_, 0) < 0) break;
    RunBusy();
    FlushEvents();
    ArmHeapSul();
    // Connections with inflation left: poll without waiting next time.
    if (!busy_.empty()) lws_cancel_service(lws_);
  }

  // Tear down on this thread: every lws call stays here.
  shutting_down_ = true;
  // Connections without a wsi (an EvSocket, or a stream JavaScript pumps) are not
  // lws's to close.
  for (Conn* c = conns_; c;) {
    Conn* next = c->next;
    if (!c->has_wsi()) c->CloseSocketNow();  // deletes c
    c = next;
  }
  timers_.Cancel(&trim_);
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
  if (ev_wake_) ev_async_stop(ev_, &ev_wake_->w);
  delete ev_wake_;
  ev_wake_ = nullptr;
  if (ev_) ev_loop_destroy(ev_);
  ev_ = nullptr;
#endif
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

// Under poll: one lws timer at the heap's earliest deadline. Its callback runs
// inside lws_service(), before poll(), like any lws timer; when the heap ran
// anything, poll() is made to return at once so that it is flushed.
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
  if (ctx->timers_.RunDue(MonotonicUs())) lws_cancel_service(ctx->lws_);
  ctx->ArmHeapSul();  // lws runs it in this same pass if it is already due
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
    running_chunks_.swap(cmd_chunks_);
    wake_pending_ = false;
  }
  for (Command& c : running_) {
    // A copy's payload counts in the send total until its frame is done; a
    // send the connection did not take (it is gone) gives it back here.
    bool copy = c.type == Command::kSend && !c.js;
    RunCommand(c);
    if (copy && c.payload) NoteSendHeld(-static_cast<int64_t>(c.payload));
    DisposeCommand(c);
  }
  running_.clear();
  FreeChunks(&running_chunks_);  // every frame in them is copied or dropped
  if (running_.capacity() > 4096) std::vector<Command>().swap(running_);
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
      if (!conn) {  // DisposeCommand frees the frame and its accounting
        if (c.js) ReleaseJs(c.js);
        c.js = nullptr;
        return;
      }
      if (c.inline_frame) {
        conn->SendCopy(c.inline_frame, c.len, c.payload);
        c.payload = 0;
        return;
      }
      if (c.js) {
        OutFrame f;
        memcpy(f.head, c.head, c.head_len);
        f.head_len = c.head_len;
        f.data = c.body;
        f.len = c.len;
        f.js = c.js;
        f.payload = c.payload;
        c.js = nullptr;
        c.payload = 0;
        conn->Send(f);
        return;
      }
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
      conn->CloseFromJs(c.data, c.len, c.discard);
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
    case Command::kSubscribe:
      if (conn) conn->Subscribe(c.text, static_cast<int64_t>(c.len));
      return;
    case Command::kUnsubscribe:
      if (conn) conn->Unsubscribe(c.text);
      return;
    case Command::kPublish: {
      auto it = listeners_.find(c.id);
      if (it != listeners_.end()) it->second->Publish(c.text, c.frame, c.conn);
      return;  // DisposeCommand drops the command's reference to the frame
    }
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

lws* Context::Adopt(lws_vhost* vh, int type, int fd, void* opaque) {
  lws_adopt_desc_t d;
  memset(&d, 0, sizeof d);
  d.vh = vh ? vh : vhost_;
  d.type = static_cast<lws_adoption_type>(type);
  if (type & LWS_ADOPT_SOCKET)
    d.fd.sockfd = fd;
  else
    d.fd.filefd = fd;
  d.vh_prot_name = kProtocolName;
  d.opaque = opaque;
  return lws_adopt_descriptor_vhost_via_info(&d);
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
  c->trim_pending = true;
  c->prev = nullptr;
  c->next = conns_;
  if (conns_) conns_->prev = c;
  conns_ = c;
}

void Context::NoteBuffers(Conn* c) {
  if (c->trim_pending) return;
  RemoveConn(c);
  AddConn(c);  // sets trim_pending
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
  conn_count_.fetch_sub(1, std::memory_order_relaxed);
}

bool Context::OverSendLimit(const ConnShared* cs, int64_t buffered, int64_t adding,
                            bool service) const {
  int64_t limit = tx_limit_.load(std::memory_order_relaxed);
  int64_t total = tx_total_.load(std::memory_order_relaxed) + adding + (service ? tx_delta_ : 0);
  if (total <= limit) return false;
  uint32_t n = conn_count_.load(std::memory_order_relaxed);
  return buffered >= std::max(limit / (n ? n : 1), cs->high_water_mark);
}

void Context::ReleaseJs(JsRef* r) {
  if (r->users.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  tx_delta_ -= r->bytes;
  local_.releases.push_back(r);
}

JsRef* Context::ReuseJs(const uint8_t* data, size_t len) {
  if (stopped_) return nullptr;
  for (RecentJs& e : recent_js_) {
    if (!e.ref || e.data != data || e.len != len) continue;
    // The service thread may be dropping its last user right now: a JsRef at
    // zero is on its way back here, never taken up again.
    JsRef* r = e.ref;
    int n = r->users.load(std::memory_order_acquire);
    while (n > 0) {
      if (r->users.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel)) return r;
    }
    e = RecentJs();
    return nullptr;
  }
  return nullptr;
}

void Context::UnuseJs(JsRef* r) {
  if (r->users.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // The service thread let go of it meanwhile: it is ours to release.
  tx_total_.fetch_sub(r->bytes, std::memory_order_relaxed);
  ForgetJs(r);
  ReleaseRef(r);
}

void Context::RememberJs(JsRef* r, const uint8_t* data, size_t len) {
  recent_js_[recent_next_] = RecentJs{r, data, len};
  recent_next_ = (recent_next_ + 1) % kRecentJs;
}

void Context::ForgetJs(JsRef* r) {
  for (RecentJs& e : recent_js_)
    if (e.ref == r) e = RecentJs();
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

void Context::SetUnfinished(Conn* c, uint32_t* slot, size_t held) {
  size_t before = *slot ? holders_[*slot - 1].held : 0;
  if (held == before) return;
  int64_t total = unfinished_total_.load(std::memory_order_relaxed) + static_cast<int64_t>(held) -
                  static_cast<int64_t>(before);
  if (!held) {
    RemoveHolder(slot);
  } else if (*slot) {
    holders_[*slot - 1].held = held;
  } else {
    holders_.push_back(UnfinishedHolder{c, slot, held});
    *slot = static_cast<uint32_t>(holders_.size());
  }
  if (held > before) {
    int64_t limit = unfinished_limit_.load(std::memory_order_relaxed);
    while (total > limit && !holders_.empty()) {
      size_t largest = 0;
      for (size_t i = 1; i < holders_.size(); i++)
        if (holders_[i].held > holders_[largest].held) largest = i;
      UnfinishedHolder h = holders_[largest];
      total -= static_cast<int64_t>(h.held);
      RemoveHolder(h.slot);
      h.conn->FailUnfinished();  // gives its input up
    }
  }
  // Stored once: nativeMemory() never sees a total over the limit on its way down.
  unfinished_total_.store(total, std::memory_order_relaxed);
}

void Context::RemoveHolder(uint32_t* slot) {
  UnfinishedHolder last = holders_.back();  // takes its place
  holders_[*slot - 1] = last;
  *last.slot = *slot;
  holders_.pop_back();
  *slot = 0;
  // Its storage, grown in a burst of large messages, would otherwise stay
  // near the top of the arena and keep what those messages freed below it
  // from going back to the system.
  if (holders_.empty()) std::vector<UnfinishedHolder>().swap(holders_);
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
  if (local_.arena.Full(n)) HandOver();
  return local_.arena.Room(n);
}

bool Context::AddArena(const uint8_t* p, size_t n, uint32_t* place) {
  uint8_t* dst = ArenaRoom(n);
  if (!dst) return false;
  if (n) memcpy(dst, p, n);
  *place = local_.arena.Commit(n);
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
  if (tx_delta_) {
    tx_total_.fetch_add(tx_delta_, std::memory_order_relaxed);
    tx_delta_ = 0;
  }
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
  if (call) uv_async_send(&waker_->async);  // outside ev_mu_: see Waker
}

void Context::OnTrim(void* arg) {
  auto* ctx = static_cast<Context*>(arg);
  bool pool_gave_back = BufTrim() > 0;
  TrimWireBlocks();
  // The connections that read or wrote since the last turn are the list's
  // prefix (NoteBuffers; new ones start there). Those that still hold buffers
  // go back to its front; the others stay where they are, now behind it.
  uint64_t visits = 0;
  for (Conn* c = ctx->conns_; c && c->trim_pending;) {
    Conn* next = c->next;
    visits++;
    c->trim_pending = false;
    if (c->Trim()) ctx->NoteBuffers(c);
    c = next;
  }
  ctx->trim_visits_.fetch_add(visits, std::memory_order_relaxed);
  // What the burst gave back to malloc (its blocks, zlib streams that ended)
  // goes back to the system once it is over and adds up to kReturnFreed:
  // malloc_trim took 0.1-0.9 ms here, not a cost to pay every second.
  constexpr size_t kReturnFreed = 1024 * 1024;
  if (BufReturnFreed(kReturnFreed, pool_gave_back, &ctx->freed_seen_))
    ctx->trim_returns_.fetch_add(1, std::memory_order_relaxed);
  ctx->trim_runs_.fetch_add(1, std::memory_order_relaxed);
  ctx->timers_.Schedule(&ctx->trim_, MonotonicUs() + 1000 * 1000, OnTrim, ctx);
}

void Context::SetWindows(napi_env env, napi_value recs, napi_value arena) {
  Napi::Uint32Array r(env, recs);
  Napi::Buffer<uint8_t> a(env, arena);
  windows_.recs_ab = Napi::Persistent(r.ArrayBuffer());
  windows_.recs = r.Data();
  windows_.recs_len = r.ElementLength();
  windows_.arena_buf = Napi::Persistent(a);
  windows_.arena = a.Data();
  windows_.arena_len = a.Length();
}

void Context::SetScheduler(napi_env env, napi_value schedule) {
  schedule_ = Napi::Persistent(Napi::Function(env, schedule));
}

}  // namespace nlws
