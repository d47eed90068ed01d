// The per-environment native core: one lws context driven by its own service
// thread, and the two batched queues that connect it to JavaScript.
//
//   main thread  --Command-->  [commands_, one lws_cancel_service per batch]
//   service thread --events--> [Batch, one thread-safe-function call per batch]
//
// Only lws_cancel_service() is called off the service thread; JavaScript is
// only touched on the main thread (in DeliverEvents).
#pragma once

#include <libwebsockets.h>
#include <napi.h>
#include <openssl/ssl.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "deflate.h"
#include "timers.h"

struct ev_loop;  // libev (NLWS_WITH_LIBEV)

namespace nlws {

class Conn;
class Listener;
class Context;

// Event records: four uint32 words [type, id, a, b]. Keep in sync with lib/native.ts.
enum EventType : uint32_t {
  kEvListening = 1,       // id=server, a=port
  kEvListenError = 2,     // id=server, a=errno, b=obj(message)
  kEvListenerClosed = 3,  // id=server: the listening socket is closed, the port is free
  kEvServerClosed = 4,    // id=server: every connection of the server is gone
  kEvConnection = 5,      // id=conn, a=server, b=obj(request info)
  kEvText = 6,            // id=conn, a=arena offset, b=length
  kEvBinary = 7,          // id=conn, a=arena offset, b=length
  kEvTextObj = 8,         // id=conn, b=obj(string)
  kEvBinaryObj = 9,       // id=conn, b=obj(Buffer)
  kEvClose = 10,          // id=conn, a=code | wasClean << 16, b=obj(reason) or kNoObj
  kEvDrain = 11,          // id=conn
  kEvPing = 12,           // id=conn, a=arena offset, b=length
  kEvPong = 13,           // id=conn, a=arena offset, b=length
  kEvLog = 14,            // id=lws log level, b=obj(line)
  kEvError = 15,          // id=conn, a=close code sent, b=obj(message)
  kEvOpen = 16,           // id=conn (client): handshake done, b=obj(response info)
  kEvConnectError = 17,   // id=conn (client): a=errno or 0, b=obj({ code, message, status })
  kEvUpgrade = 18,        // id=conn, a=server, b=obj(request info; protocol = offered list)
  kEvAcceptError = 19,    // id=server, a=errno, b=obj({ code, message }): an EMFILE burst began
};
constexpr uint32_t kNoObj = 0xFFFFFFFFu;

// State one connection shares between its JS handle (main thread) and its Conn
// (service thread). Reference counted: the Conn, each queued Command and the JS
// External each hold a reference.
struct ConnShared {
  std::atomic<int> refs{1};
  std::atomic<int64_t> buffered{0};  // payload bytes accepted by send() and not yet written
  std::atomic<bool> gone{false};     // the Conn is closed; sends are dropped
  // Messages of at least this many bytes are compressed (permessage-deflate
  // negotiated); set before the connection is announced to JavaScript.
  std::atomic<uint32_t> deflate_threshold{0xFFFFFFFFu};
  uint32_t id = 0;
  int64_t high_water_mark = 0;
  bool client = false;   // frames we send must be masked
  Conn* conn = nullptr;  // service thread only

  void Ref() { refs.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
};

// What a listening server needs on the service thread.
struct ServerConfig {
  uint32_t id = 0;
  int fd = -1;
  uint64_t max_payload = 0;
  int64_t high_water_mark = 0;
  uint32_t handshake_timeout_ms = 0;
  uint32_t close_timeout_ms = 0;
  uint32_t max_header_bytes = 0;
  std::vector<std::string> protocols;
  bool verify = false;           // JavaScript decides each upgrade (kEvUpgrade -> kAccept/kReject)
  uint32_t max_connections = 0;  // 0: no limit; beyond it, 503
  std::vector<std::string> allowed_origins;  // empty: any Origin
  std::string path;         // empty: upgrades on any path; else only this one (404 otherwise)
  bool health = false;      // GET /health answers JSON
  std::string static_root;  // real path of a folder served over HTTP; empty: none
  std::string static_index;
  uint32_t heartbeat_interval_ms = 0;
  uint32_t heartbeat_timeout_ms = 0;
  DeflateOptions deflate;
  // TLS: PEM text; empty cert means plain TCP.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_passphrase;
  std::string tls_chain;        // PEM: intermediate / CA certificates sent after the leaf
  bool text_as_buffer = false;  // large text messages reach JavaScript as Buffers
};

// A client connection to start: the socket is already connecting.
struct ClientConfig {
  ConnShared* shared = nullptr;  // owns one reference
  int fd = -1;
  std::string address;
  int port = 0;
  std::string request;  // the HTTP upgrade request, sent once connected
  std::string accept;   // the Sec-WebSocket-Accept value to expect
  std::vector<std::string> protocols;
  uint64_t max_payload = 0;
  uint32_t timeout_ms = 0;  // connect + handshake
  uint32_t close_timeout_ms = 0;
  uint32_t max_header_bytes = 0;
  uint32_t heartbeat_interval_ms = 0;
  uint32_t heartbeat_timeout_ms = 0;
  // wss: TLS over our own socket (tls_client.h).
  bool tls = false;
  std::string host;  // SNI and certificate host name
  std::string ca;    // PEM: the CAs to trust (Node's root certificates unless given)
  bool reject_unauthorized = true;
  DeflateOptions deflate;  // offered when enabled
  bool text_as_buffer = false;
  ~ClientConfig();
};

// The request a connection was upgraded with, turned into a JS object on the main thread.
struct ConnInfo {
  ConnShared* shared = nullptr;  // owns one reference until handed to JS
  std::string path;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string remote_address;
  int remote_port = 0;
  std::string protocol;
  ~ConnInfo() {
    if (shared) shared->Unref();
  }
};

// A heap block handed to JavaScript without copying.
struct Blob {
  uint8_t* data = nullptr;  // malloc'd
  size_t len = 0;
};

struct ObjItem {
  enum Kind : uint8_t { kString, kBuffer, kUtf8, kInfo, kError } kind;
  std::string str;  // kString, kError (message)
  Blob blob;
  std::unique_ptr<ConnInfo> info;
  std::string code = std::string();  // kError
  int status = 0;                    // kError: HTTP status of a refused handshake
};

// Bytes of a batch's small messages: a pooled buffer (see buffers.h), grown
// without zero-filling and handed to JavaScript as it is.
struct Arena {
  uint8_t* data = nullptr;
  size_t len = 0;
  size_t cap = 0;
  Arena() = default;
  Arena(Arena&& o) noexcept : data(o.data), len(o.len), cap(o.cap) {
    o.data = nullptr, o.len = o.cap = 0;
  }
  Arena& operator=(Arena&& o) noexcept;
  ~Arena();
  bool empty() const { return len == 0; }
  size_t size() const { return len; }
  // Room for n more bytes at data + len; returns that pointer (null: out of memory).
  uint8_t* Grow(size_t n);
  void Release();   // frees the buffer
  uint8_t* Take();  // hands the buffer over (caller frees with BufFree)
};

// One batch of events for JavaScript.
struct Batch {
  std::vector<uint32_t> recs;
  Arena arena;  // payloads of small messages, referenced by offset
  std::vector<ObjItem> objs;
  size_t blob_bytes = 0;

  Batch() = default;
  Batch(Batch&&) = default;
  Batch& operator=(Batch&&) = default;
  bool Empty() const { return recs.empty(); }
  void Append(Batch&& other);  // fixes up offsets and object indexes
  void Clear();
  ~Batch() { Clear(); }
};

// Work for the service thread.
struct Command {
  enum Type : uint8_t {
    kStartServer,
    kCloseServer,
    kConnect,
    kSend,
    kClose,
    kTerminate,
    kAccept,  // text = subprotocol
    kReject,  // code = HTTP status, text = extra header lines, text2 = body
  } type;
  uint32_t id = 0;                 // server id
  ConnShared* conn = nullptr;      // holds a reference
  uint8_t* data = nullptr;         // kSend / kClose: a complete frame, malloc'd
  size_t len = 0;                  // frame length
  size_t payload = 0;              // payload bytes counted in ConnShared::buffered
  bool compress = false;           // kSend: data is a bare payload to deflate; code = opcode
  uint16_t code = 0;               // kClose, kReject (HTTP status)
  std::string text;                // kAccept: subprotocol; kReject: extra header lines
  std::string text2;               // kReject: body
  ServerConfig* server = nullptr;  // kStartServer (owned)
  ClientConfig* client = nullptr;  // kConnect (owned)
};

// The event loop a context's service thread runs (see ThreadMain).
enum class LoopKind : uint8_t {
  kAuto,  // libev (epoll on Linux) when this build and the system have it, else poll
  kPoll,  // lws's own poll() loop
};

class Context {
 public:
  // Starts the service thread and creates the lws context on it. Returns null
  // and sets *error when lws could not be set up.
  static Context* Create(Napi::Env env, Napi::Function on_events, LoopKind loop,
                         std::string* error);
  ~Context();

  // ---- main thread ----
  void Push(Command&& cmd);
  void SetRef(bool ref);
  void Stop();  // joins the service thread; idempotent
  bool stopped() const { return stopped_; }
  // "libev" or "poll", and the kernel interface under it ("epoll", "poll", ...);
  // fixed once Create() returned.
  const char* loop_name() const { return ev_ ? "libev" : "poll"; }
  const char* loop_backend() const { return backend_; }
  // Why libev was asked for and the poll loop runs instead; empty otherwise.
  const std::string& fallback_reason() const { return fallback_reason_; }

  // ---- service thread ----
  lws_context* lws_ctx() const { return lws_; }
  lws_vhost* vhost() const { return vhost_; }
  // An OpenSSL client context trusting the CAs in `ca` (PEM), cached per CA set.
  SSL_CTX* ClientTlsContext(const std::string& ca, std::string* error);
  // A vhost serving TLS with this certificate; null (and *error set) when lws refuses it.
  lws_vhost* ServerTlsVhost(const ServerConfig& cfg, std::string* error);
  Batch& events() { return local_; }
  // Connection timers (handshake, close, heartbeat): O(log n) to (re)schedule,
  // driven by one deadline of the loop. Prefer it to lws_sul_schedule(), whose
  // sorted list costs O(n) per schedule (timers.h).
  TimerHeap& timers() { return timers_; }
  uint32_t NextConnId() { return last_conn_id_.fetch_add(1, std::memory_order_relaxed) + 1; }
  bool shutting_down() const { return shutting_down_; }
  void MarkDirty(Conn* conn);
  // Closes conn's socket at the end of this service iteration (see RunKills).
  void ScheduleKill(Conn* conn);
  void CancelKill(Conn* conn);
  // From lws timer callbacks. In the poll loop they run just before poll():
  // make poll() return at once so that what the timer did is flushed. Under
  // libev they run inside ev_run(), which returns to FlushEvents() right after.
  void WakeSelf() {
    if (!ev_) lws_cancel_service(lws_);
  }
  void ForgetDirty(Conn* conn);
  void ServerClosed(Listener* l);  // a listener has no connections left and is closing

  void Emit(uint32_t type, uint32_t id, uint32_t a = 0, uint32_t b = 0);
  uint32_t AddArena(const uint8_t* p, size_t n);  // returns the offset
  uint32_t AddString(std::string s);
  uint32_t AddBlob(ObjItem::Kind kind, uint8_t* data, size_t len);  // takes ownership
  uint32_t AddInfo(std::unique_ptr<ConnInfo> info);
  uint32_t AddError(const char* code, std::string message, int status);
  void Log(int level, const char* line);

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
  void RunKills();
  void FlushEvents();
  static void CallJs(Napi::Env env, Napi::Function cb, Context* ctx, void* unused);
  void DeliverEvents(Napi::Env env, Napi::Function cb);

  std::thread thread_;
  lws_context* lws_ = nullptr;
  lws_vhost* vhost_ = nullptr;
  ev_loop* ev_ = nullptr;  // the libev loop this thread owns (a "foreign" loop to lws); or null
  struct EvTimers;         // context.cc: lws's and timers_' deadlines under libev
  EvTimers* ev_timers_ = nullptr;
  TimerHeap timers_;  // service thread
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
  bool wake_pending_ = false;
  std::vector<Command> running_;  // service thread

  // service -> main
  std::mutex ev_mu_;
  Batch pending_;
  bool call_pending_ = false;
  Batch local_;                 // service thread
  bool delivering_ = false;     // main thread: inside DeliverEvents
  bool wake_deferred_ = false;  // main thread: a wake-up waits for the end of delivery
  Napi::TypedThreadSafeFunction<Context, void, CallJs> tsfn_;
  bool ref_ = false;
  napi_env env_ = nullptr;

  // service thread state
  std::atomic<uint32_t> last_conn_id_{0};  // any thread
  std::unordered_map<uint32_t, Listener*> listeners_;
  std::vector<Conn*> dirty_;
  std::vector<Conn*> kills_;
  std::unordered_map<std::string, SSL_CTX*> client_tls_ctx_;
  uint32_t vhost_serial_ = 0;
  std::list<std::string> vhost_names_;  // lws keeps pointers to vhost names

 public:
  const std::string* pending_chain_ = nullptr;  // during ServerTlsVhost only
};

// Adds the certificates in `pem` to an SSL_CTX's chain; false on failure.
bool AddChain(SSL_CTX* ssl_ctx, const std::string& pem);

// lws log lines emitted on a service thread become kEvLog events of its context.
void LwsLogToContext(int level, const char* line);

// Frees a Command's resources (frame, references, server fd) without running it.
void DisposeCommand(Command& cmd);

}  // namespace nlws
