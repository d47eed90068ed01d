// The per-environment native core: one lws context driven by its own service
// thread, and the two batched queues that connect it to JavaScript.
//
//   main thread    --Command-->  [commands_, one WakeService per batch]
//   service thread --Batch---->  [pending_, one uv_async_send (Waker) per batch]
//
// Off the service thread only wake-ups reach its loop: WakeService() (libev's
// ev_async_send, thread-safe by libev's contract, under libev; else
// lws_cancel_service()) and Stop()'s lws_cancel_service(). JavaScript is only
// touched on the main thread (delivery.cc).
//
// Receive flow control. Every event the service thread produces is charged
// to the context's receive total (rx_total_), and message events also to
// their connection (ConnShared::rx_pending). JavaScript releases the charge
// when it has consumed the event: at once after delivery, or later for
// messages it keeps (paused connections, async iterators). A connection
// stops reading above its receiveHighWaterMark and resumes at half of it;
// every connection (and every listener) stops reading above the total limit
// and resumes at half of it. TCP flow control then slows the peers down.
//
// Methods are marked with the thread that calls them.
#pragma once

#include <libwebsockets.h>
#include <napi.h>
#include <openssl/ssl.h>
#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "batch.h"
#include "conn_handles.h"
#include "conn_shared.h"
#include "options.h"
#include "timers.h"
#include "wire.h"

struct ev_loop;  // libev (NLWS_WITH_LIBEV)

namespace nlws {

// ev.h also declares a function ev_loop(): the type needs its `struct`.
using EvLoop = struct ::ev_loop;

class Conn;
class Listener;

// Work for the service thread.
struct Command {
  enum Type : uint8_t {
    kStartServer,
    kCloseServer,
    kConnect,
    kSend,
    kClose,
    kTerminate,
    kAccept,       // text = subprotocol, text2 = extra 101 header lines
    kReject,       // code = HTTP status, text = extra header lines, text2 = body
    kPauseRx,      // pause() (code = Conn::RxPause reason)
    kResumeRx,     // resume() or a flow-control release (code = reason)
    kResumeAll,    // the receive total fell below its resume mark
    kSubscribe,    // text = topic, len = maxBackpressure for it (0: the connection's)
    kUnsubscribe,  // text = topic
    kPublish,      // id = server, text = topic, frame, conn = a connection to skip (or null)
    kAdopt,        // server.handleUpgrade: conn = a new ConnShared, fd (or -1: JsWire), data =
                   // the request head and what followed it, text = remote address, code = port
    kWireIn,       // JsWire: bytes JavaScript read from its stream (data, len); none: it ended
    kWireAck,      // JsWire: JavaScript's stream took `len` more bytes
  } type;
  uint32_t id = 0;                        // server id
  ConnShared* conn = nullptr;             // holds a reference
  uint8_t* data = nullptr;                // kSend / kClose: a complete frame, BufAlloc'd
  const uint8_t* inline_frame = nullptr;  // kSend: or len bytes in a chunk of inline frames
                                          // (Context::InlineFrame), freed with the batch
  JsRef* js = nullptr;                    // kSend of a JS Buffer without a copy: its reference
  const uint8_t* body = nullptr;          // ... the payload (in that Buffer)
  uint8_t head_len = 0;                   // ... and the frame header
  uint8_t head[14];
  size_t len = 0;                  // frame length
  size_t payload = 0;              // payload bytes counted in ConnShared::buffered
  bool compress = false;           // kSend: data is a bare payload to deflate; code = opcode
  bool discard = false;            // kClose: the queued messages are dropped first
  uint16_t code = 0;               // kClose, kReject (HTTP status), kPauseRx/kResumeRx (reason)
  std::string text;                // kAccept: subprotocol; kReject: extra header lines
  std::string text2;               // kAccept: extra 101 header lines; kReject: body
  ServerConfig* server = nullptr;  // kStartServer (owned)
  ClientConfig* client = nullptr;  // kConnect (owned)
  SharedFrame* frame = nullptr;    // kPublish (owns one reference)
  int fd = -1;                     // kAdopt: a socket descriptor, owned until adopted
};

// Frees a Command's resources (frame, references, server fd, adopted fd) without running it.
void DisposeCommand(Command& cmd);

// The event loop a context's service thread runs (see ThreadMain).
enum class LoopKind : uint8_t {
  kAuto,  // libev (epoll on Linux) when this build and the system have it, else poll
  kPoll,  // lws's own poll() loop
};

// Main thread (Context::windows_). A batch's records and arena reach
// JavaScript as ArrayBuffers made for the batch; an external one for each
// arena chunk costs Node a CallbackInfo, a cleanup hook and, when it is
// detached, a thread-safe immediate (an eventfd write), and V8 more garbage
// to scavenge. At a moderate rate (a few messages per batch) those were
// ~0.5 KB of the ~1.3 KB of garbage per 64 B echo. A batch whose records and
// arena fit is copied into these two buffers JavaScript gave at init and
// keeps (its records as a view of the first, its arena as `null`: "in the
// window"); `busy` while a call reads them.
//
// A larger arena, in a batch no lendMessages connection has a message in,
// goes over as ArrayBuffers over its chunks that are made once per chunk
// and kept (`chunks`, up to kChunkViews): the pool hands the same few
// chunks out again and again, so most batches make none and detach none.
// Detaching one made Node queue a thread-safe immediate for its
// CallbackInfo (a uv_async_send and one more turn of the loop): 23.6k a
// second in the 16 KiB echo. Between calls such an ArrayBuffer points at
// memory the pool may give to anything: nothing that outlives a call holds
// it (the runtime copies what it keeps, also for a deferred batch), and
// the one pushed out of a full cache (the least recently used) is detached.
struct DeliveryWindows {
  Napi::Reference<Napi::ArrayBuffer> recs_ab;
  uint32_t* recs = nullptr;
  size_t recs_len = 0;  // in uint32_t
  Napi::Reference<Napi::Buffer<uint8_t>> arena_buf;
  uint8_t* arena = nullptr;
  size_t arena_len = 0;
  bool busy = false;
  struct ChunkView {
    const uint8_t* chunk;
    Napi::Reference<Napi::ArrayBuffer> ab;
    uint64_t batch;  // the last batch it went over with
  };
  // More than a batch's chunks (kArenaChunks at most), so that one not in
  // the batch being made can always go.
  static constexpr size_t kChunkViews = 64;
  static_assert(kChunkViews > kArenaChunks);
  std::vector<ChunkView> chunks;
  uint64_t batch = 0;               // the batch being made (MakeBatch counts them)
  uint64_t chunk_views_made = 0;    // for tests: ArrayBuffers made for the cache
  uint64_t chunk_views_reused = 0;  // ... and calls that found one there
  // The kept ArrayBuffer over arena chunk `chunk` (made on first use).
  bool ChunkBuffer(napi_env env, uint8_t* chunk, napi_value* ab);
};

class Context {
 public:
  // Starts the service thread and creates the lws context on it. Returns null
  // and sets *error when lws could not be set up. (main thread)
  static Context* Create(Napi::Env env, Napi::Function on_events, LoopKind loop,
                         std::string* error);
  ~Context();

  // ---- main thread ----
  // Queues a command for the service thread. While the listeners run
  // (Deliver), commands gather without a lock and cross in one batch when
  // the delivery ends.
  void Push(Command&& cmd);
  // Room for a frame of up to `max` bytes in the chunks of inline frames
  // while the listeners run (null otherwise, or when max is over
  // kInlineFrameMax): a small send then costs no allocation of its own here
  // and no free on the service thread, which copies the frame into the
  // connection's write queue. KeepInline() the length used, then Push a
  // kSend with inline_frame = the pointer returned.
  static constexpr size_t kInlineFrameMax = 1024;
  uint8_t* InlineFrame(size_t max);
  void KeepInline(size_t used) { local_used_ += used; }
  void SetRef(bool ref);
  void Stop();  // joins the service thread; idempotent
  bool stopped() const { return stopped_; }
  // "libev" or "poll", and the kernel interface under it ("epoll", "poll", ...);
  // fixed once Create() returned.
  const char* loop_name() const { return ev_ ? "libev" : "poll"; }
  const char* loop_backend() const { return backend_; }
  // Why libev was asked for and the poll loop runs instead; empty otherwise.
  const std::string& fallback_reason() const { return fallback_reason_; }
  // JavaScript consumed `bytes` it had been charged for: by a connection
  // (ReleaseConn) and in the context's total (ReleaseTotal); Release does both.
  void ReleaseConn(ConnShared* shared, int64_t bytes);
  void ReleaseTotal(int64_t bytes);
  void Release(ConnShared* shared, int64_t bytes) {
    ReleaseConn(shared, bytes);
    ReleaseTotal(bytes);
  }
  void SetReceiveLimit(int64_t bytes) { rx_limit_.store(bytes); }
  // Input held for messages not complete yet, over every connection
  // (FrameReader::held): bounded by totalUnfinishedLimit.
  void SetUnfinishedLimit(int64_t bytes) { unfinished_limit_.store(bytes); }
  int64_t unfinished() const { return unfinished_total_.load(std::memory_order_relaxed); }
  // c's reader now holds `held` bytes (*slot: c's place in holders_, kept
  // by c). Past the limit, the connection holding the most is failed with
  // 1013 (Try Again Later) until the total fits again: many peers that each
  // send most of a large message cannot make the process hold maxPayload per
  // connection.
  void SetUnfinished(Conn* c, uint32_t* slot, size_t held);
  // ---- what is held to send, over every connection (totalSendLimit) ----
  // Counted once per piece of storage, not per connection: a copied
  // message's payload, a JavaScript Buffer a frame points into (once however
  // many connections share its JsRef), a published frame (SharedFrame::Count).
  // A connection's bufferedAmount counts all three, so the sum of those
  // overstates what a broadcast holds.
  void SetSendLimit(int64_t bytes) { tx_limit_.store(bytes, std::memory_order_relaxed); }
  int64_t send_held() const { return tx_total_.load(std::memory_order_relaxed); }
  std::atomic<int64_t>* send_total() { return &tx_total_; }
  // Main thread: storage of a message queued now (a copy, a new JsRef).
  void AddSendHeld(int64_t n) { tx_total_.fetch_add(n, std::memory_order_relaxed); }
  // Service thread: storage given back (or a copy made); reaches the total
  // once per turn of the loop (FlushEvents).
  void NoteSendHeld(int64_t d) { tx_delta_ += d; }
  // Whether a message for cs is refused (its backpressurePolicy applies):
  // the total with `adding` more bytes is over the limit and cs already
  // holds (`buffered`) at least its share of the limit (the limit divided
  // by the connections open) and at least its highWaterMark (below which
  // send() tells the application to go on). The connections behind stop
  // growing; the others hold at most the limit together, or their
  // high-water marks. `service`: called on the service thread (adds the
  // bytes not yet in the total).
  bool OverSendLimit(const ConnShared* cs, int64_t buffered, int64_t adding, bool service) const;
  // Main thread: the JsRef of one of the last few Buffers sent without a
  // copy, when `data`/`len` are that Buffer's and a queued frame still uses
  // it (one more user taken); null otherwise. A loop sending one Buffer (or
  // one of a few) to many connections then makes one reference per Buffer
  // and counts its bytes once. ForgetJs: r is being deleted.
  JsRef* ReuseJs(const uint8_t* data, size_t len);
  void RememberJs(JsRef* r, const uint8_t* data, size_t len);
  void ForgetJs(JsRef* r);
  // Gives back a user ReuseJs took for a message then refused.
  void UnuseJs(JsRef* r);
  // Service thread: a queued frame no longer uses r; the last user hands
  // it back to the main thread (and takes its bytes off the send total).
  void ReleaseJs(JsRef* r);
  // Bytes charged to the receive total: events not yet consumed by JavaScript.
  int64_t receive_pending() const { return rx_total_.load(); }
  const DeliveryWindows& windows() const { return windows_; }  // main thread; for tests
  // Bytes of lent blocks kept for good: JavaScript detached their
  // ArrayBuffer during the call (DeliverOne). Main thread.
  int64_t lent_kept() const { return lent_kept_; }
  // OnTrim's turns and the connections it visited (any thread; for tests).
  uint64_t trim_runs() const { return trim_runs_.load(std::memory_order_relaxed); }
  uint64_t trim_visits() const { return trim_visits_.load(std::memory_order_relaxed); }
  uint64_t trim_returns() const { return trim_returns_.load(std::memory_order_relaxed); }
  // Hands pending batches to JavaScript, for at most a few milliseconds.
  // Returns true when that slice ran out with batches left: the caller then
  // lets the event loop turn (timers, I/O) and calls again (lib/runtime.ts:
  // setImmediate); meanwhile the service thread wakes the main thread no
  // further. Finding none left, it lets the next batch wake the main thread.
  bool Deliver(napi_env env);
  // The end of a delivery: the commands its listeners pushed cross to the
  // service thread under one lock, with one wake-up.
  void PushLocal();
  // The JS function that schedules the rest of a delivery.
  void SetScheduler(napi_env env, napi_value schedule);
  // JavaScript's two buffers that a small batch is copied into instead of
  // ArrayBuffers made for it (see DeliveryWindows).
  void SetWindows(napi_env env, napi_value recs, napi_value arena);
  bool delivering() const { return delivering_; }
  // Whether p points into a block lent to JavaScript right now (*lent: the
  // arena chunks and kLentBuffer messages of the batch whose listeners are
  // running), and if so a hold on that block for a frame to be written from
  // it without a copy (null when [p, p + len) is not all in it: copy it).
  JsRef* HoldLent(napi_env env, const uint8_t* p, size_t len, bool* lent);

  // ---- service thread ----
  lws_context* lws_ctx() const { return lws_; }
  // The libev loop, or null under lws's poll() loop.
  EvLoop* ev() const { return ev_; }
  // Where EvSockets read into (kReadSize bytes; libev loop only): one buffer
  // per context, as lws reads raw sockets into one per thread; what a read
  // put there is processed before the next read.
  uint8_t* read_buffer() const { return read_buf_.get(); }
  static constexpr size_t kReadSize = 256 * 1024;  // and lws's read size (pt_serv_buf_size)
  lws_vhost* vhost() const { return vhost_; }
  const lws_protocols* protocols() const { return protocols_; }
  // Connection timers (handshake, close, heartbeat): O(log n) to (re)schedule,
  // driven by one deadline of the loop. Prefer it to lws_sul_schedule(), whose
  // sorted list costs O(n) per schedule (timers.h).
  TimerHeap& timers() { return timers_; }
  // An OpenSSL client context trusting the CAs in `ca` (PEM), cached per CA set.
  SSL_CTX* ClientTlsContext(const std::string& ca, std::string* error);
  // A vhost serving TLS with this certificate; null (and *error set) when lws refuses it.
  lws_vhost* ServerTlsVhost(const ServerConfig& cfg, std::string* error);
  // Hands `fd` to lws as `type` (LWS_ADOPT_SOCKET, with LWS_ADOPT_ALLOW_SSL on a TLS vhost, or
  // LWS_ADOPT_RAW_FILE_DESC) on `vh` (the plain vhost when null), bound to node-lws's protocol
  // with `opaque` as its user data. Null when lws refused it: lws closes a socket it failed to
  // adopt, not a file descriptor.
  lws* Adopt(lws_vhost* vh, int type, int fd, void* opaque);
  Batch& events() { return local_; }
  // Room for n (<= kArenaChunk) more bytes in the batch arena (see
  // Arena::Room). A full arena is handed over first: a batch holds about
  // 1 MiB of messages at most.
  uint8_t* ArenaRoom(size_t n);
  uint32_t NextConnId() { return last_conn_id_.fetch_add(1, std::memory_order_relaxed) + 1; }
  bool shutting_down() const { return shutting_down_; }
  // A connection is made (counted in OverSendLimit's shares) and put on
  // the list OnTrim walks; Forget() undoes both.
  void Register(Conn* c) {
    conn_count_.fetch_add(1, std::memory_order_relaxed);
    AddConn(c);
  }
  // c has read or written since OnTrim last saw it, so it may hold buffers
  // to give back: OnTrim visits it (see conns_).
  void NoteBuffers(Conn* c);
  void MarkDirty(Conn* conn);
  void MarkBusy(Conn* conn);  // conn->Continue() on the next turn of the loop
  void Forget(Conn* conn);    // conn is being deleted: off every list, uncounted
  // Closes conn's socket at the end of this service iteration (see RunKills).
  void ScheduleKill(Conn* conn);
  void ServerClosed(Listener* l);   // a listener has no connections left and is closing
  void ShutdownConns(Listener* l);  // closes every connection of l with 1001
  // Receive flow control: charges a received event (its bytes plus
  // kEventCost) to its connection in the current batch, where its release
  // will find it, and (CheckRxTotal) compares the context's total with its
  // limit.
  void Charge(ConnShared* shared, int64_t bytes);
  void CheckRxTotal();
  bool rx_global_paused() const { return rx_global_paused_; }

  void Emit(uint32_t type, uint32_t id, uint32_t a = 0, uint32_t b = 0);
  // Copies n (<= kArenaChunk) bytes into the batch arena and sets *place
  // (ArenaPlace); false when out of memory.
  bool AddArena(const uint8_t* p, size_t n, uint32_t* place);
  uint32_t AddString(std::string s);
  uint32_t AddBlob(ObjItem::Kind kind, uint8_t* data, size_t len);  // takes ownership
  uint32_t AddInfo(std::unique_ptr<ConnInfo> info);
  uint32_t AddError(const char* code, std::string message, int status);
  void Log(int level, const char* line);

  // Main thread: the handles of server connections JavaScript holds.
  ConnHandles& handles() { return handles_; }

  static const char* kProtocolName;

 private:
  Context() = default;
  void ThreadMain(LoopKind loop, std::string* error, std::mutex* mu, std::condition_variable* cv,
                  bool* ready);
  bool CreateLws(bool libev, std::string* why);
  void ArmHeapSul();
  static void OnHeapSul(lws_sorted_usec_list_t* sul);
  static int Callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len);
  void RunCommands();
  void RunCommand(Command& cmd);
  void FlushDirty();
  void RunBusy();
  void RunKills();
  void FlushEvents();
  void HandOver();  // local_ to the main thread
  void PauseAll();
  void ResumeAll();
  static void OnWake(uv_async_t* async);
  static void OnWakerCleanup(napi_async_cleanup_hook_handle hook, void* arg);
  void ReleaseWaker();
  void DeliverOne(napi_env env, napi_value cb, Batch& b);
  void AddConn(Conn* c);  // the front of conns_
  void RemoveConn(Conn* c);
  static void OnTrim(void* ctx);

  std::thread thread_;
  lws_context* lws_ = nullptr;
  lws_vhost* vhost_ = nullptr;
  EvLoop* ev_ = nullptr;  // the libev loop this thread owns (a "foreign" loop to lws); or null
  struct EvTimers;        // context.cc: lws's and timers_' deadlines under libev
  EvTimers* ev_timers_ = nullptr;
  struct EvWake;  // context.cc: the main thread's wake-up of this loop under libev
  EvWake* ev_wake_ = nullptr;
  void WakeService();  // main thread: the service thread runs the queued commands soon
  struct {
    lws_sorted_usec_list_t sul;  // first member: the lws callback casts back
    Context* owner;
  } heap_sul_ = {};  // drives timers_ under poll
  int64_t heap_sul_armed_ = 0;
  const char* backend_ = "poll";
  std::string fallback_reason_;
  lws_protocols protocols_[2] = {};
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;
  bool shutting_down_ = false;

  // main -> service
  std::mutex cmd_mu_;
  std::vector<Command> commands_;
  // Chunks (BufAlloc'd) holding the inline frames of commands_: owned by
  // whoever holds the commands, freed once they have run or been disposed.
  std::vector<uint8_t*> cmd_chunks_;
  bool wake_pending_ = false;
  std::vector<Command> running_;          // service thread
  std::vector<uint8_t*> running_chunks_;  // service thread: the inline frames of running_
  // Main thread, while delivering: commands (and the chunks of their inline
  // frames, the last one filled up to local_used_) pushed by the listeners,
  // handed over under one lock at the end (PushLocal).
  std::vector<Command> local_cmds_;
  std::vector<uint8_t*> local_chunks_;
  size_t local_used_ = 0;

  // service -> main
  std::mutex ev_mu_;
  std::deque<Batch> pending_;  // handed over whole: no copying of arenas
  bool call_pending_ = false;
  Batch local_;                             // service thread
  std::unique_ptr<uint8_t[]> read_buf_;     // service thread: see read_buffer()
  bool delivering_ = false;                 // main thread: inside Deliver
  std::vector<LentBlock>* lent_ = nullptr;  // main thread: of the batch being delivered
  ConnHandles handles_;                     // main thread
  // The main thread's wake-up: a uv_async_t on its loop. uv_async_send() is safe from any thread
  // and holds no lock while it wakes the main thread. (A thread-safe function signals its
  // uv_async inside its queue's mutex: with both threads on one core, the woken main thread
  // preempted the service thread in that lock and blocked on it; at 20k msg/s that was 4.07
  // instead of 2.97 context switches and 0.94 instead of no futex calls per message.) The waker
  // outlives the Context until the environment's teardown closes it (OnWakerCleanup, an async
  // cleanup hook: Node waits for the close).
  struct Waker {
    uv_async_t async;
    Context* ctx = nullptr;  // null once the Context stopped (main thread)
    napi_async_cleanup_hook_handle hook = nullptr;
  };
  Waker* waker_ = nullptr;  // set before the service thread starts, cleared after it ends
  Napi::FunctionReference on_events_;  // JS: runtime.onEvents, which Deliver() calls
  Napi::ObjectReference resource_;     // the async resource of the deliveries' callback scopes
  napi_async_context async_ctx_ = nullptr;
  Napi::FunctionReference schedule_;  // JS: setImmediate(() => binding.deliverPending())
  DeliveryWindows windows_;           // main thread
  int64_t lent_kept_ = 0;             // main thread: see lent_kept()
  bool ref_ = false;
  napi_env env_ = nullptr;

  // receive flow control (see above)
  std::atomic<int64_t> rx_total_{0};
  std::atomic<int64_t> rx_limit_{64 * 1024 * 1024};
  // unfinished input (SetUnfinished); the total is written on the service
  // thread only. holders_: the connections that hold some, in no order, so
  // that finding the largest past the limit reads one array rather than
  // every connection.
  std::atomic<int64_t> unfinished_total_{0};
  std::atomic<int64_t> unfinished_limit_{256 * 1024 * 1024};
  struct UnfinishedHolder {
    Conn* conn;
    uint32_t* slot;  // the Conn's 1-based index into holders_
    size_t held;
  };
  std::vector<UnfinishedHolder> holders_;
  void RemoveHolder(uint32_t* slot);  // *slot: 1-based; set to 0
  // what is held to send (see send_held)
  std::atomic<int64_t> tx_total_{0};
  std::atomic<int64_t> tx_limit_{256 * 1024 * 1024};
  std::atomic<uint32_t> conn_count_{0};  // written by the service thread
  int64_t tx_delta_ = 0;                 // service thread: not in tx_total_ yet
  // main thread (ReuseJs): the Buffers last sent without a copy, newest
  // written over the oldest; a few, for a loop that sends each connection
  // one of several (a video variant per viewer, say)
  struct RecentJs {
    JsRef* ref = nullptr;
    const uint8_t* data = nullptr;
    size_t len = 0;
  };
  static constexpr int kRecentJs = 4;
  RecentJs recent_js_[kRecentJs];
  int recent_next_ = 0;
  std::atomic<bool> rx_global_waiting_{false};  // the service thread waits for a kResumeAll
  bool rx_global_paused_ = false;               // service thread

  // service thread state
  std::atomic<uint32_t> last_conn_id_{0};  // any thread
  std::unordered_map<uint32_t, Listener*> listeners_;
  // Every connection (intrusive list), those with trim_pending first: OnTrim
  // walks that prefix only, so idle connections cost it nothing (it walked all
  // of them once a second, ~2 ms a turn at 19,000 on the service thread).
  Conn* conns_ = nullptr;
  std::vector<Conn*> dirty_;
  std::vector<Conn*> busy_;
  std::vector<Conn*> kills_;
  TimerHeap timers_;
  Timer trim_;                          // gives buffers back after a burst, once a second (OnTrim)
  std::atomic<uint64_t> trim_runs_{0};  // written by the service thread only
  std::atomic<uint64_t> trim_visits_{0};
  std::atomic<uint64_t> trim_returns_{0};  // turns that had malloc return memory (BufReturnFreed)
  size_t freed_seen_ = 0;                  // BufReturnFreed's count at the last turn
  std::unordered_map<std::string, SSL_CTX*> client_tls_ctx_;
  uint32_t vhost_serial_ = 0;
  std::list<std::string> vhost_names_;  // lws keeps pointers to vhost names
};

// lws log lines emitted on a service thread become kEvLog events of its context.
void LwsLogToContext(int level, const char* line);

}  // namespace nlws
