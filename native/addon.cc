// Module entry and the N-API surface: one Addon instance per Node environment
// (main thread or worker) holding that environment's Context. Every method
// turns its arguments into a Command for the service thread (or answers at
// once); an environment cleanup hook stops the service thread before the
// environment goes away.
//
// Main thread.
#include <errno.h>
#include <fcntl.h>
#include <napi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "buffers.h"
#include "context.h"
#include "errors.h"
#include "js_convert.h"
#include "socket.h"
#include "wire.h"
#include "ws_frame.h"

namespace nlws {

namespace {

void LwsLogSink(int level, const char* line) { LwsLogToContext(level, line); }

constexpr uint16_t kRxUser = 4;  // Conn::kRxUser (connection.h is service-thread code)
// Buffers of at least this size are sent without copying on a server's plain
// socket (ConnShared::send_in_place): the reference costs less than the copy
// from here up (echo of 16 KiB +10%, 8 KiB +4%, 4 KiB within the noise, in
// alternating runs against 64 KiB).
constexpr size_t kZeroCopyMin = 8 * 1024;

}  // namespace

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) : env_(env) {
    DefineAddon(exports, {
                             InstanceMethod("init", &Addon::InitContext),
                             InstanceMethod("deliverPending", &Addon::DeliverPending),
                             InstanceMethod("bind", &Addon::Bind),
                             InstanceMethod("closeFd", &Addon::CloseFd),
                             InstanceMethod("startServer", &Addon::StartServer),
                             InstanceMethod("closeServer", &Addon::CloseServer),
                             InstanceMethod("connect", &Addon::Connect),
                             InstanceMethod("send", &Addon::Send),
                             InstanceMethod("ping", &Addon::Ping),
                             InstanceMethod("pong", &Addon::Pong),
                             InstanceMethod("adopt", &Addon::Adopt),
                             InstanceMethod("wireInput", &Addon::WireInput),
                             InstanceMethod("wireAck", &Addon::WireAck),
                             InstanceMethod("close", &Addon::Close),
                             InstanceMethod("terminate", &Addon::Terminate),
                             InstanceMethod("accept", &Addon::Accept),
                             InstanceMethod("reject", &Addon::Reject),
                             InstanceMethod("eventTypes", &Addon::EventTypes),
                             InstanceMethod("subscribe", &Addon::Subscribe),
                             InstanceMethod("unsubscribe", &Addon::Unsubscribe),
                             InstanceMethod("publish", &Addon::Publish),
                             InstanceMethod("pause", &Addon::Pause),
                             InstanceMethod("resume", &Addon::Resume),
                             InstanceMethod("release", &Addon::Release),
                             InstanceMethod("dispose", &Addon::Dispose),
                             InstanceMethod("setReceiveLimit", &Addon::SetReceiveLimit),
                             InstanceMethod("setUnfinishedLimit", &Addon::SetUnfinishedLimit),
                             InstanceMethod("setSendLimit", &Addon::SetSendLimit),
                             InstanceMethod("memoryStats", &Addon::MemoryStats),
                             InstanceMethod("serviceCounters", &Addon::ServiceCounters),
                             InstanceMethod("bufferedAmount", &Addon::BufferedAmount),
                             InstanceMethod("dropped", &Addon::Dropped),
                             InstanceMethod("setRef", &Addon::SetRef),
                             InstanceMethod("setLogLevel", &Addon::SetLogLevel),
                             InstanceMethod("eventLoop", &Addon::EventLoop),
                         });
    napi_add_env_cleanup_hook(env, Cleanup, this);
  }

  ~Addon() {
    napi_remove_env_cleanup_hook(env_, Cleanup, this);
    if (ctx_) {
      ctx_->Stop();
      delete ctx_;
    }
  }

 private:
  static void Cleanup(void* arg) {
    auto* self = static_cast<Addon*>(arg);
    if (self->ctx_) self->ctx_->Stop();
  }

  // The table server connections' handles are in (see HandleArg); null before init.
  ConnHandles* Handles() { return ctx_ ? &ctx_->handles() : nullptr; }

  Context* Ctx(Napi::Env env) {
    if (!ctx_ || ctx_->stopped()) {
      MakeCodedError(env, "ERR_NOT_INITIALIZED", "node-lws: the native context is not running")
          .ThrowAsJavaScriptException();
      return nullptr;
    }
    return ctx_;
  }

  static Napi::Value OutOfMemory(Napi::Env env) {
    MakeCodedError(env, "ERR_OUT_OF_MEMORY", "node-lws: out of memory")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }

  // init(onEvents, logLevel, scheduleDelivery, loop: 'auto' | 'poll', recsWindow, arenaWindow):
  // scheduleDelivery() must arrange for deliverPending() to be called in a later turn of the
  // event loop; the windows (a Uint32Array and a Buffer JavaScript keeps) take small batches
  // (DeliveryWindows in context.h).
  Napi::Value InitContext(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (ctx_) return env.Undefined();
    if (!info[0].IsFunction() || !info[2].IsFunction())
      return ThrowTypeError(env, "init: callbacks expected");
    if (info[1].IsNumber()) lws_set_log_level(info[1].As<Napi::Number>().Int32Value(), LwsLogSink);
    LoopKind loop = LoopKind::kAuto;
    if (info[3].IsString() && info[3].As<Napi::String>().Utf8Value() == "poll")
      loop = LoopKind::kPoll;
    std::string error;
    ctx_ = Context::Create(env, info[0].As<Napi::Function>(), loop, &error);
    if (!ctx_) {
      MakeCodedError(env, "ERR_LWS_INIT", "node-lws: " + error).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    ctx_->SetScheduler(env, info[2]);
    if (info[4].IsTypedArray() &&
        info[4].As<Napi::TypedArray>().TypedArrayType() == napi_uint32_array &&
        info[4].As<Napi::TypedArray>().ByteOffset() == 0 && info[5].IsBuffer())
      ctx_->SetWindows(env, info[4], info[5]);
    return env.Undefined();
  }

  // deliverPending(): the rest of a delivery that gave the event loop a turn.
  Napi::Value DeliverPending(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ctx_ || ctx_->stopped()) return Napi::Boolean::New(env, false);
    return Napi::Boolean::New(env, ctx_->Deliver(env));
  }

  // bind({ host, port, reuseAddr, reusePort, ipv6Only, backlog, path })
  //   -> { fd, port, address, family, dev, ino }; throws a system error (code,
  //   errno, syscall, address, port). A non-empty `path` binds a Unix socket
  //   there (family 'Unix'; dev and ino, as decimal strings, name the file).
  Napi::Value Bind(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) return ThrowTypeError(env, "bind: options object expected");
    Napi::Object o = info[0].As<Napi::Object>();
    ListenSpec spec;
    if (o.Get("path").IsString()) spec.path = o.Get("path").As<Napi::String>().Utf8Value();
    if (spec.path.empty()) {
      spec.host = o.Get("host").As<Napi::String>().Utf8Value();
      spec.port = o.Get("port").As<Napi::Number>().Int32Value();
    }
    spec.reuse_addr = o.Get("reuseAddr").ToBoolean().Value();
    spec.reuse_port = o.Get("reusePort").ToBoolean().Value();
    spec.ipv6_only = o.Get("ipv6Only").ToBoolean().Value();
    spec.backlog = o.Get("backlog").As<Napi::Number>().Int32Value();
    Bound bound;
    const char* syscall;
    int err = ListenSocket(spec, &bound, &syscall);
    if (err && !syscall) {
      MakeCodedError(env, "ERR_INVALID_IP_ADDRESS", "Invalid IP address: " + spec.host)
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (err) {
      if (spec.path.empty())
        MakeSystemError(env, err, syscall, spec.host, spec.port).ThrowAsJavaScriptException();
      else
        MakeSystemError(env, err, syscall, spec.path, -1).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("fd", bound.fd);
    r.Set("port", bound.port);
    r.Set("address", bound.address);
    r.Set("family", !spec.path.empty() ? "Unix" : bound.ipv6 ? "IPv6" : "IPv4");
    r.Set("dev", std::to_string(bound.dev));
    r.Set("ino", std::to_string(bound.ino));
    return r;
  }

  // closeFd(fd, path?, dev?, ino?): for a bound socket that never reached the
  // service thread; a Unix socket's file goes with it.
  Napi::Value CloseFd(const Napi::CallbackInfo& info) {
    int fd = info[0].As<Napi::Number>().Int32Value();
    if (fd >= 0) close(fd);
    if (info.Length() > 3 && info[1].IsString())
      RemoveUnixSocket(info[1].As<Napi::String>().Utf8Value(),
                       std::stoull(info[2].As<Napi::String>().Utf8Value()),
                       std::stoull(info[3].As<Napi::String>().Utf8Value()));
    return info.Env().Undefined();
  }

  // startServer(id, fd, { conn, protocols, verify, maxConnections, maxPendingHeaderBytes,
  //                       allowedOrigins, path, health, staticRoot, staticIndex, upgradeHeaders,
  //                       unixPath, unixDev, unixIno, tls* })
  Napi::Value StartServer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Context* ctx = Ctx(env);
    if (!ctx) return env.Undefined();
    auto* cfg = new ServerConfig();
    cfg->id = info[0].As<Napi::Number>().Uint32Value();
    cfg->fd = info[1].As<Napi::Number>().Int32Value();
    Napi::Object o = info[2].As<Napi::Object>();
    cfg->conn = ConnOptionsArg(o.Get("conn"));
    cfg->protocols = StringList(o.Get("protocols"));
    cfg->verify = o.Get("verify").ToBoolean().Value();
    cfg->max_connections = o.Get("maxConnections").As<Napi::Number>().Uint32Value();
    cfg->max_pending_header_bytes =
        static_cast<size_t>(o.Get("maxPendingHeaderBytes").As<Napi::Number>().Int64Value());
    cfg->allowed_origins = StringList(o.Get("allowedOrigins"));
    cfg->path = o.Get("path").As<Napi::String>().Utf8Value();
    cfg->health = o.Get("health").ToBoolean().Value();
    cfg->static_root = o.Get("staticRoot").As<Napi::String>().Utf8Value();
    cfg->static_index = o.Get("staticIndex").As<Napi::String>().Utf8Value();
    cfg->tls_cert = o.Get("tlsCert").As<Napi::String>().Utf8Value();
    cfg->tls_key = o.Get("tlsKey").As<Napi::String>().Utf8Value();
    cfg->tls_passphrase = o.Get("tlsPassphrase").As<Napi::String>().Utf8Value();
    cfg->tls_chain = o.Get("tlsChain").As<Napi::String>().Utf8Value();
    cfg->upgrade_headers = o.Get("upgradeHeaders").As<Napi::String>().Utf8Value();
    cfg->unix_path = o.Get("unixPath").As<Napi::String>().Utf8Value();
    if (!cfg->unix_path.empty()) {
      cfg->unix_dev = std::stoull(o.Get("unixDev").As<Napi::String>().Utf8Value());
      cfg->unix_ino = std::stoull(o.Get("unixIno").As<Napi::String>().Utf8Value());
    }
    cfg->tls_request_cert = o.Get("tlsRequestCert").ToBoolean().Value();
    cfg->tls_reject_unauthorized = o.Get("tlsRejectUnauthorized").ToBoolean().Value();
    cfg->tls_client_ca = o.Get("tlsClientCa").As<Napi::String>().Utf8Value();
    Napi::Value sni = o.Get("tlsSni");
    if (sni.IsArray()) {
      Napi::Array a = sni.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Object e = a.Get(i).As<Napi::Object>();
        ServerConfig::SniCert sc;
        sc.name = e.Get("name").As<Napi::String>().Utf8Value();
        sc.cert = e.Get("cert").As<Napi::String>().Utf8Value();
        sc.key = e.Get("key").As<Napi::String>().Utf8Value();
        sc.chain = e.Get("chain").As<Napi::String>().Utf8Value();
        cfg->tls_sni.push_back(std::move(sc));
      }
    }
    Command c{};
    c.type = Command::kStartServer;
    c.server = cfg;
    ctx->Push(std::move(c));
    return env.Undefined();
  }

  Napi::Value CloseServer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Context* ctx = Ctx(env);
    if (!ctx) return env.Undefined();
    Command c{};
    c.type = Command::kCloseServer;
    c.id = info[0].As<Napi::Number>().Uint32Value();
    ctx->Push(std::move(c));
    return env.Undefined();
  }

  // connect({ address, port, socketPath, request, accept, protocols, conn,
  //           proxyRequest, tls, host, ca, rejectUnauthorized, cert, key })
  //   -> { handle, id }
  // Starts a non-blocking connect() here (to `socketPath` when it is not
  // empty) and hands the socket to the service thread. An immediate failure
  // (ECONNREFUSED on loopback, ENETUNREACH, ENOENT, ...) throws a system
  // error at once. With `proxyRequest`, address and port are the proxy's and
  // the CONNECT request goes first.
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Context* ctx = Ctx(env);
    if (!ctx) return env.Undefined();
    if (!info[0].IsObject()) return ThrowTypeError(env, "connect: options object expected");
    Napi::Object o = info[0].As<Napi::Object>();
    std::string socket_path;
    if (o.Get("socketPath").IsString())
      socket_path = o.Get("socketPath").As<Napi::String>().Utf8Value();
    std::string address = socket_path;
    int port = 0;
    sockaddr_storage ss;
    socklen_t sl;
    if (!socket_path.empty()) {
      if (!UnixAddress(socket_path, &ss, &sl)) {
        MakeSystemError(env, socket_path.size() > kMaxUnixPath ? ENAMETOOLONG : EINVAL, "connect",
                        socket_path, -1)
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
    } else {
      address = o.Get("address").As<Napi::String>().Utf8Value();
      port = o.Get("port").As<Napi::Number>().Int32Value();
      if (!ParseAddress(address, port, &ss, &sl)) {
        MakeCodedError(env, "ERR_INVALID_IP_ADDRESS", "Invalid IP address: " + address)
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    int err;
    const char* syscall;
    int fd = ConnectSocket(ss, sl, &err, &syscall);
    if (fd < 0) {
      MakeSystemError(env, err, syscall, address, socket_path.empty() ? port : -1)
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto* cfg = new ClientConfig();
    cfg->conn = ConnOptionsArg(o.Get("conn"));
    auto* shared = new ConnShared();
    shared->id = ctx->NextConnId();
    shared->client = true;
    shared->high_water_mark = cfg->conn.high_water_mark;
    cfg->shared = shared;  // the reference created with it
    cfg->fd = fd;
    cfg->address = address;
    cfg->port = port;
    cfg->unix_socket = !socket_path.empty();
    cfg->request = o.Get("request").As<Napi::String>().Utf8Value();
    cfg->accept = o.Get("accept").As<Napi::String>().Utf8Value();
    cfg->protocols = StringList(o.Get("protocols"));
    if (o.Get("proxyRequest").IsString())
      cfg->proxy_request = o.Get("proxyRequest").As<Napi::String>().Utf8Value();
    cfg->tls = o.Get("tls").ToBoolean().Value();  // wss: TLS over this same socket
    if (cfg->tls) {
      cfg->host = o.Get("host").As<Napi::String>().Utf8Value();
      cfg->ca = o.Get("ca").As<Napi::String>().Utf8Value();
      cfg->reject_unauthorized = o.Get("rejectUnauthorized").ToBoolean().Value();
      if (o.Get("cert").IsString()) {
        cfg->cert = o.Get("cert").As<Napi::String>().Utf8Value();
        cfg->key = o.Get("key").As<Napi::String>().Utf8Value();
      }
    }
    Napi::Object r = HandleObject(env, shared);
    Command c{};
    c.type = Command::kConnect;
    c.client = cfg;
    ctx->Push(std::move(c));
    return r;
  }

  // The Fill of (New|Write)FrameFilled for the string v: its UTF-8, at most
  // bound bytes, written at dst.
  static auto Utf8Into(napi_env env, napi_value v, size_t bound) {
    return [env, v, bound](uint8_t* dst) {
      size_t n = 0;
      napi_get_value_string_utf8(env, v, reinterpret_cast<char*>(dst), bound + 1, &n);
      return n;
    };
  }

  // A text frame of the string v (units UTF-16 code units long), encoded to
  // UTF-8 straight into the frame: at most 3 bytes per unit. *len: its
  // payload length.
  static uint8_t* StringFrame(napi_env env, napi_value v, size_t units, bool masked, size_t* flen,
                              size_t* len) {
    return NewFrameFilled(masked, kOpText, units * 3, Utf8Into(env, v, units * 3), flen, len);
  }

  // { handle, id } for JavaScript: the handle holds one more reference to
  // the connection, dropped when V8 collects it. A plain N-API finalizer:
  // node-addon-api's External::New with a finalizer allocates a closure
  // holder per handle, which an idle connection pays for (~56 B).
  static Napi::Object HandleObject(Napi::Env env, ConnShared* shared) {
    napi_value handle;
    NAPI_THROW_IF_FAILED(
        env,
        napi_create_external(
            env, shared,
            [](napi_env, void* data, void*) { static_cast<ConnShared*>(data)->Unref(); }, nullptr,
            &handle),
        Napi::Object());
    shared->Ref();
    Napi::Object r = Napi::Object::New(env);
    r.Set("handle", handle);
    r.Set("id", Napi::Number::New(env, shared->id));
    return r;
  }

  // Queues a frame built here (data, ping, close) for the service thread;
  // discard: a close that drops the queued messages first.
  static void PushFrame(Context* ctx, ConnShared* cs, Command::Type type, uint8_t* frame,
                        size_t flen, size_t payload, uint16_t code, bool discard = false) {
    cs->Ref();
    Command c{};
    c.type = type;
    c.conn = cs;
    c.data = frame;
    c.len = flen;
    c.payload = payload;
    c.code = code;
    c.discard = discard;
    ctx->Push(std::move(c));
  }

  // Queues c (its data filled in) as a send of len payload bytes on cs;
  // returns bufferedAmount after it. A copy's payload joins the send total
  // here (a JsRef's bytes when it is made).
  static Napi::Value QueueSend(Napi::Env env, Context* ctx, ConnShared* cs, Command c, size_t len) {
    if (!c.js) ctx->AddSendHeld(static_cast<int64_t>(len));
    int64_t buffered =
        cs->buffered.fetch_add(static_cast<int64_t>(len), std::memory_order_acq_rel) +
        static_cast<int64_t>(len);
    cs->Ref();
    c.type = Command::kSend;
    c.conn = cs;
    c.payload = len;
    ctx->Push(std::move(c));
    return Napi::Number::New(env, static_cast<double>(buffered));
  }

  // send(handle, data, isBinary, maxBackpressure) -> bufferedAmount after
  // queueing; -1 when the connection is already gone, -2 when the message would
  // take bufferedAmount past maxBackpressure, -3 when the context holds more
  // than totalSendLimit to send and this connection its share of it
  // (Context::OverSendLimit); nothing is queued in those cases.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ConnShared* cs = HandleArg(Handles(), info[0]);
    if (!cs) return ThrowTypeError(env, "send: connection handle expected");
    if (cs->gone.load(std::memory_order_acquire)) return Napi::Number::New(env, -1);
    Context* ctx = Ctx(env);
    if (!ctx) return env.Undefined();
    napi_value v = info[1];
    // info[3]: maxBackpressure (0: none). Over it, nothing is copied or queued: -2.
    int64_t limit = info.Length() > 3 && info[3].IsNumber()
                        ? static_cast<int64_t>(info[3].As<Napi::Number>().DoubleValue())
                        : 0;
    // 0, or why a message of n bytes, `adding` of them new storage, is refused.
    auto refused = [&](size_t n, size_t adding) {
      int64_t buffered = cs->buffered.load();
      if (limit && buffered + static_cast<int64_t>(n) > limit) return -2;
      if (ctx->OverSendLimit(cs, buffered, static_cast<int64_t>(adding), false)) return -3;
      return 0;
    };
    napi_valuetype t;
    napi_typeof(env, v, &t);
    bool is_string = t == napi_string;
    const uint8_t* data = nullptr;
    size_t len = 0;
    if (!is_string && !PayloadOf(env, v, &data, &len))
      return ThrowTypeError(env, "send: string, Buffer, ArrayBuffer or ArrayBufferView expected");
    uint8_t opcode = !is_string && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value()
                         ? kOpBinary
                         : kOpText;

    uint32_t threshold = cs->deflate_threshold.load(std::memory_order_acquire);
    if (threshold != 0xFFFFFFFFu) {
      // permessage-deflate: large messages go bare to the service thread,
      // which compresses them (off the JavaScript thread) and frames them.
      if (is_string && napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok)
        return env.Undefined();
      if (len >= threshold) {
        if (int why = refused(len, len)) return Napi::Number::New(env, why);
        uint8_t* payload = BufAlloc(len + 1);
        if (!payload) return OutOfMemory(env);
        size_t copied;
        if (is_string)
          napi_get_value_string_utf8(env, v, reinterpret_cast<char*>(payload), len + 1, &copied);
        else if (len)
          memcpy(payload, data, len);
        Command c{};
        c.data = payload;
        c.len = len;
        c.compress = true;
        c.code = opcode;
        return QueueSend(env, ctx, cs, std::move(c), len);
      }
    }
    if (!is_string && !cs->client && len >= kZeroCopyMin) {
      // A large Buffer is not copied on a plain socket: the frame points into
      // it until it is written (the caller must not change it meanwhile, as
      // with a socket). Elsewhere code of ours would read it, and JavaScript
      // may free it under us (ConnShared::send_in_place): copied below.
      // A message lent to the listeners (lendMessages) is taken back when they
      // return: the frame holds the lent block (ours) instead of the Buffer,
      // on any connection.
      // A Buffer sent to many connections (one of the last few sent without
      // a copy) shares one reference, counted once in the send total.
      JsRef* ref = cs->send_in_place ? ctx->ReuseJs(data, len) : nullptr;
      if (int why = refused(len, ref ? 0 : len)) {
        if (ref) ctx->UnuseJs(ref);
        return Napi::Number::New(env, why);
      }
      bool lent = false;
      if (!ref) {
        ref = ctx->HoldLent(env, data, len, &lent);
        if (!lent && cs->send_in_place) {
          ref = new JsRef{env, nullptr};
          if (napi_create_reference(env, v, 1, &ref->ref) != napi_ok) {
            delete ref;
            return OutOfMemory(env);
          }
        }
        if (ref) {
          ref->bytes = static_cast<int64_t>(len);
          ctx->AddSendHeld(ref->bytes);
          ctx->RememberJs(ref, data, len);
        }
      }
      if (ref) {
        Command c{};
        c.js = ref;
        c.body = data;
        c.len = len;
        c.head_len = static_cast<uint8_t>(EncodeFrameHeader(c.head, true, opcode, len, nullptr));
        return QueueSend(env, ctx, cs, std::move(c), len);
      }
      // Not a plain socket, or lent but not all in one lent block: copied below.
    }
    size_t units = 0;
    if (is_string) {
      // One encoding pass: UTF-8 needs at most 3 bytes per UTF-16 unit.
      if (napi_get_value_string_utf16(env, v, nullptr, 0, &units) != napi_ok)
        return env.Undefined();
      if (int why = refused(units, units)) return Napi::Number::New(env, why);
    } else {
      if (int why = refused(len, len)) return Napi::Number::New(env, why);
    }
    // A small frame sent from a listener goes into the delivery's chunk of
    // inline frames; any other gets a block of its own.
    size_t max = is_string ? units * 3 : len;
    size_t room = FrameHeaderSize(max, cs->client) + max + 1;
    uint8_t* inline_at = ctx->InlineFrame(room);
    uint8_t* frame = inline_at ? inline_at : BufAlloc(room);
    if (!frame) return OutOfMemory(env);
    size_t flen =
        is_string ? WriteFrameFilled(frame, cs->client, kOpText, max, Utf8Into(env, v, max), &len)
                  : WriteFrame(frame, cs->client, opcode, data, len);
    Command c{};
    if (inline_at) {
      ctx->KeepInline(flen);
      c.inline_frame = inline_at;
    } else {
      c.data = frame;
    }
    c.len = flen;
    return QueueSend(env, ctx, cs, std::move(c), len);
  }

  // ping(handle, data) / pong(handle, data): a control frame after the
  // messages already queued.
  Napi::Value Ping(const Napi::CallbackInfo& info) { return Control(info, "ping", kOpPing); }
  Napi::Value Pong(const Napi::CallbackInfo& info) { return Control(info, "pong", kOpPong); }

  Napi::Value Control(const Napi::CallbackInfo& info, const char* what, uint8_t opcode) {
    Napi::Env env = info.Env();
    ConnShared* cs = HandleArg(Handles(), info[0]);
    if (!cs) return ThrowTypeError(env, std::string(what) + ": connection handle expected");
    Context* ctx = Ctx(env);
    if (!ctx || cs->gone.load()) return env.Undefined();
    const uint8_t* data = nullptr;
    size_t len = 0;
    if (!info[1].IsUndefined() && !PayloadOf(env, info[1], &data, &len))
      return ThrowTypeError(env, std::string(what) + ": Buffer expected");
    if (len > 125) {
      MakeCodedError(env, "ERR_OUT_OF_RANGE",
                     std::string("A ") + what + " payload is at most 125 bytes")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t flen;
    uint8_t* frame = NewFrame(cs->client, opcode, data, len, &flen);
    if (!frame) return OutOfMemory(env);
    PushFrame(ctx, cs, Command::kSend, frame, flen, 0, opcode);
    return env.Undefined();
  }

  // adopt(serverId, fd, head, remoteAddress, remotePort) -> { handle, id }
  // server.handleUpgrade: hands an upgrade request Node's HTTP server parsed
  // to server `serverId`. fd >= 0 is the descriptor of Node's socket: it is
  // dup()ed here, and the caller then destroys Node's handle (closing only
  // Node's copy). fd < 0: JavaScript keeps its stream and pumps the bytes
  // (wireInput / wireAck, kEvWireOut / kEvWireCtl). `head`: the request head
  // rebuilt from Node's request, and every byte read after it.
  Napi::Value Adopt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Context* ctx = Ctx(env);
    if (!ctx) return env.Undefined();
    uint32_t server = info[0].As<Napi::Number>().Uint32Value();
    int node_fd = info[1].As<Napi::Number>().Int32Value();
    const uint8_t* head = nullptr;
    size_t head_len = 0;
    if (!PayloadOf(env, info[2], &head, &head_len))
      return ThrowTypeError(env, "adopt: Buffer expected");
    std::string address = info[3].As<Napi::String>().Utf8Value();
    int port = info[4].As<Napi::Number>().Int32Value();
    int fd = -1;
    if (node_fd >= 0) {
      int type = 0;
      socklen_t tl = sizeof type;
      if (getsockopt(node_fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM) {
        MakeCodedError(env, "ERR_INVALID_ARG_VALUE", "adopt: not a stream socket")
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
      fd = fcntl(node_fd, F_DUPFD_CLOEXEC, 3);
      if (fd < 0) {
        MakeSystemError(env, errno, "dup").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      int flags = fcntl(fd, F_GETFL);
      if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    uint8_t* copy = BufAlloc(head_len ? head_len : 1);
    if (!copy) {
      if (fd >= 0) close(fd);
      return OutOfMemory(env);
    }
    if (head_len) memcpy(copy, head, head_len);
    auto* shared = new ConnShared();  // this reference goes with the command
    shared->id = ctx->NextConnId();
    Napi::Object r = HandleObject(env, shared);
    Command c{};
    c.type = Command::kAdopt;
    c.id = server;
    c.conn = shared;
    c.fd = fd;
    c.data = copy;
    c.len = head_len;
    c.text = std::move(address);
    c.code = static_cast<uint16_t>(port);
    ctx->Push(std::move(c));
    return r;
  }

  // wireInput(handle, data): bytes JavaScript read from the stream of a
  // connection it pumps (a Buffer, or an array of them, sent as one batch);
  // null: the stream ended.
  Napi::Value WireInput(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ConnShared* cs = HandleArg(Handles(), info[0]);
    if (!cs) return ThrowTypeError(env, "wireInput: connection handle expected");
    Context* ctx = Ctx(env);
    if (!ctx || cs->gone.load()) return env.Undefined();
    uint8_t* copy = nullptr;
    size_t total = 0;
    if (!info[1].IsNull() && !info[1].IsUndefined()) {
      std::vector<std::pair<const uint8_t*, size_t>> parts;
      if (info[1].IsArray()) {
        Napi::Array a = info[1].As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); i++) {
          const uint8_t* p;
          size_t n;
          if (!PayloadOf(env, a.Get(i), &p, &n))
            return ThrowTypeError(env, "wireInput: Buffers expected");
          parts.emplace_back(p, n);
          total += n;
        }
      } else {
        const uint8_t* p;
        size_t n;
        if (!PayloadOf(env, info[1], &p, &n))
          return ThrowTypeError(env, "wireInput: Buffer expected");
        parts.emplace_back(p, n);
        total = n;
      }
      if (total == 0) return env.Undefined();  // nothing read; an end is null
      copy = BufAlloc(total);
      if (!copy) return OutOfMemory(env);
      size_t off = 0;
      for (const auto& part : parts) {
        if (part.second) memcpy(copy + off, part.first, part.second);
        off += part.second;
      }
    }
    cs->Ref();
    Command c{};
    c.type = Command::kWireIn;
    c.conn = cs;
    c.data = copy;
    c.len = total;
    ctx->Push(std::move(c));
    return env.Undefined();
  }

  // wireAck(handle, bytes): the stream took `bytes` more of what kEvWireOut handed over.
  Napi::Value WireAck(const Napi::CallbackInfo& info) {
    return ConnCommand(info, "wireAck", Command::kWireAck, [&](Command& c) {
      c.len = static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue());
    });
  }

  // close(handle, code, reason, discard): code 0 sends a close frame with no
  // payload; discard drops the messages still queued first.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ConnShared* cs = HandleArg(Handles(), info[0]);
    if (!cs) return ThrowTypeError(env, "close: connection handle expected");
    Context* ctx = Ctx(env);
    if (!ctx || cs->gone.load()) return env.Undefined();
    uint32_t code = info[1].As<Napi::Number>().Uint32Value();
    std::string reason = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    if (reason.size() > 123) reason.resize(123);
    uint8_t payload[125];
    size_t plen = 0;
    if (code) {
      payload[0] = static_cast<uint8_t>(code >> 8);
      payload[1] = static_cast<uint8_t>(code);
      memcpy(payload + 2, reason.data(), reason.size());
      plen = 2 + reason.size();
    }
    size_t flen;
    uint8_t* frame = NewFrame(cs->client, kOpClose, payload, plen, &flen);
    if (!frame) return OutOfMemory(env);
    // Not ToBoolean(): coercion fails (and throws) in an environment being
    // torn down, where a worker's transports still close.
    bool discard = info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
    PushFrame(ctx, cs, Command::kClose, frame, flen, 0, static_cast<uint16_t>(code), discard);
    return env.Undefined();
  }

  // A call on one connection (its handle: info[0]): a Command of `type` holding a reference to
  // the connection, completed by `fill`, goes to the service thread. Nothing happens when the
  // context is not running or the connection is gone; a bad handle throws a TypeError.
  template <typename Fill>
  Napi::Value ConnCommand(const Napi::CallbackInfo& info, const char* what, Command::Type type,
                          Fill fill) {
    ConnShared* cs = HandleArg(Handles(), info[0]);
    if (!cs) return ThrowTypeError(info.Env(), std::string(what) + ": connection handle expected");
    Context* ctx = Ctx(info.Env());
    if (!ctx || cs->gone.load()) return info.Env().Undefined();
    cs->Ref();
    Command c{};
    c.type = type;
    c.conn = cs;
    fill(c);
    ctx->Push(std::move(c));
    return info.Env().Undefined();
  }

  Napi::Value Terminate(const Napi::CallbackInfo& info) {
    return ConnCommand(info, "terminate", Command::kTerminate, [](Command&) {});
  }

  // accept(handle, protocol, headerLines): completes an upgrade held for
  // verify(); protocol null: the server's own choice from its `protocols`.
  // headerLines ("Name: value\r\n"...) go into the 101 response.
  Napi::Value Accept(const Napi::CallbackInfo& info) {
    return ConnCommand(info, "accept", Command::kAccept, [&](Command& c) {
      if (info[1].IsString())
        c.text = info[1].As<Napi::String>().Utf8Value();
      else
        c.code = 1;  // choose
      if (info.Length() > 2 && info[2].IsString()) c.text2 = info[2].As<Napi::String>().Utf8Value();
    });
  }

  // eventTypes() -> { Listening: 1, ... }: the numbers of batch.h, for a test.
  Napi::Value EventTypes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    for (const EventName& e : kEventNames) o.Set(e.name, e.type);
    return o;
  }

  // reject(handle, status, headerLines, body): answers an upgrade with an HTTP status.
  Napi::Value Reject(const Napi::CallbackInfo& info) {
    return ConnCommand(info, "reject", Command::kReject, [&](Command& c) {
      c.code = static_cast<uint16_t>(info[1].As<Napi::Number>().Uint32Value());
      c.text = info[2].As<Napi::String>().Utf8Value();
      c.text2 = info[3].As<Napi::String>().Utf8Value();
    });
  }

  // subscribe(handle, topic, maxBackpressure) / unsubscribe(handle, topic)
  Napi::Value Subscribe(const Napi::CallbackInfo& info) {
    return ConnCommand(info, "subscribe", Command::kSubscribe, [&](Command& c) {
      c.text = info[1].As<Napi::String>().Utf8Value();
      c.len = static_cast<size_t>(info[2].As<Napi::Number>().Int64Value());
    });
  }

  Napi::Value Unsubscribe(const Napi::CallbackInfo& info) {
    return ConnCommand(info, "unsubscribe", Command::kUnsubscribe,
                       [&](Command& c) { c.text = info[1].As<Napi::String>().Utf8Value(); });
  }

  // publish(serverId, topic, data, isBinary, skipHandle?): the frame is built
  // once, here, and crosses to the service thread once, whatever the number
  // of subscribers; every subscriber's queue points at it.
  Napi::Value Publish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Context* ctx = Ctx(env);
    if (!ctx) return env.Undefined();
    uint32_t server = info[0].As<Napi::Number>().Uint32Value();
    std::string topic = info[1].As<Napi::String>().Utf8Value();
    napi_value v = info[2];
    napi_valuetype t;
    napi_typeof(env, v, &t);
    bool is_string = t == napi_string;
    const uint8_t* data = nullptr;
    size_t len = 0;
    if (!is_string && !PayloadOf(env, v, &data, &len))
      return ThrowTypeError(env,
                            "publish: string, Buffer, ArrayBuffer or ArrayBufferView expected");
    uint8_t opcode = !is_string && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value()
                         ? kOpBinary
                         : kOpText;
    uint8_t* block;
    size_t flen;
    if (is_string) {
      size_t units;
      if (napi_get_value_string_utf16(env, v, nullptr, 0, &units) != napi_ok)
        return env.Undefined();
      block = StringFrame(env, v, units, false, &flen, &len);
    } else {
      block = NewFrame(false, opcode, data, len, &flen);
    }
    if (!block) return OutOfMemory(env);
    auto* frame = new SharedFrame();
    frame->block = block;
    frame->len = flen;
    frame->header_len = flen - len;
    frame->opcode = opcode;
    frame->Count(ctx->send_total());
    Command c{};
    c.type = Command::kPublish;
    c.id = server;
    c.text = std::move(topic);
    c.frame = frame;
    ConnShared* skip = info.Length() > 4 ? HandleArg(Handles(), info[4]) : nullptr;
    if (skip) {
      skip->Ref();
      c.conn = skip;
    }
    ctx->Push(std::move(c));
    return env.Undefined();
  }

  // pause(handle) / resume(handle): stop or restart reading the socket.
  Napi::Value Pause(const Napi::CallbackInfo& info) {
    return ConnCommand(info, "pause", Command::kPauseRx, [](Command& c) { c.code = kRxUser; });
  }

  Napi::Value Resume(const Napi::CallbackInfo& info) {
    return ConnCommand(info, "resume", Command::kResumeRx, [](Command& c) { c.code = kRxUser; });
  }

  // release(handle, bytes): JavaScript consumed messages it had kept (marked
  // with kHeldBit when they were delivered).
  // release(null, bytes): of a connection that is gone (the context's total only).
  Napi::Value Release(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ConnShared* cs = HandleArg(Handles(), info[0]);
    if (!cs && !info[0].IsNull()) return ThrowTypeError(env, "release: connection handle expected");
    int64_t bytes = static_cast<int64_t>(info[1].As<Napi::Number>().DoubleValue());
    if (!ctx_ || ctx_->stopped()) return env.Undefined();
    if (cs)
      ctx_->Release(cs, bytes);
    else
      ctx_->ReleaseTotal(bytes);
    return env.Undefined();
  }

  // setReceiveLimit(bytes): the context's receive total (see context.h).
  Napi::Value SetReceiveLimit(const Napi::CallbackInfo& info) {
    if (ctx_) ctx_->SetReceiveLimit(static_cast<int64_t>(info[0].As<Napi::Number>().DoubleValue()));
    return info.Env().Undefined();
  }

  // setUnfinishedLimit(bytes): the context's bound on unfinished input (see context.h).
  Napi::Value SetUnfinishedLimit(const Napi::CallbackInfo& info) {
    if (ctx_)
      ctx_->SetUnfinishedLimit(static_cast<int64_t>(info[0].As<Napi::Number>().DoubleValue()));
    return info.Env().Undefined();
  }

  // setSendLimit(bytes): the context's bound on what is held to send (see context.h).
  Napi::Value SetSendLimit(const Napi::CallbackInfo& info) {
    if (ctx_) ctx_->SetSendLimit(static_cast<int64_t>(info[0].As<Napi::Number>().DoubleValue()));
    return info.Env().Undefined();
  }

  // dispose(handle): JavaScript is done with a server connection's handle
  // (ConnHandles); a no-op for an External, which V8 collects.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (info[0].IsNumber()) {
      ConnHandles* h = Handles();
      if (!h || !h->Dispose(info[0].As<Napi::Number>().Uint32Value()))
        return ThrowTypeError(info.Env(), "dispose: live connection handle expected");
    }
    return info.Env().Undefined();
  }

  // memoryStats() -> { receivePending, unfinished, pooled, handles }
  Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("receivePending",
          Napi::Number::New(env, ctx_ ? static_cast<double>(ctx_->receive_pending()) : 0));
    r.Set("unfinished", Napi::Number::New(env, ctx_ ? static_cast<double>(ctx_->unfinished()) : 0));
    r.Set("sending", Napi::Number::New(env, ctx_ ? static_cast<double>(ctx_->send_held()) : 0));
    r.Set("pooled",
          Napi::Number::New(env, static_cast<double>(BufPooledBytes() + WireCachedBytes())));
    r.Set("handles",
          Napi::Number::New(env, ctx_ ? static_cast<double>(ctx_->handles().live()) : 0));
    r.Set("lentKept", Napi::Number::New(env, ctx_ ? static_cast<double>(ctx_->lent_kept()) : 0));
    return r;
  }

  // serviceCounters() -> { trimRuns, trimVisits, trimReturns }: the service
  // thread's once-a-second trim, the connections it visited, and the turns
  // that had malloc give freed memory back to the system (tests).
  Napi::Value ServiceCounters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("trimRuns", Napi::Number::New(env, ctx_ ? static_cast<double>(ctx_->trim_runs()) : 0));
    r.Set("trimVisits",
          Napi::Number::New(env, ctx_ ? static_cast<double>(ctx_->trim_visits()) : 0));
    r.Set("trimReturns",
          Napi::Number::New(env, ctx_ ? static_cast<double>(ctx_->trim_returns()) : 0));
    // Main thread: the kept ArrayBuffers over arena chunks (DeliveryWindows).
    const DeliveryWindows* w = ctx_ ? &ctx_->windows() : nullptr;
    r.Set("chunkViewsMade",
          Napi::Number::New(env, w ? static_cast<double>(w->chunk_views_made) : 0));
    r.Set("chunkViewsReused",
          Napi::Number::New(env, w ? static_cast<double>(w->chunk_views_reused) : 0));
    return r;
  }

  // dropped(handle): published messages the 'drop' policy skipped.
  Napi::Value Dropped(const Napi::CallbackInfo& info) {
    ConnShared* cs = HandleArg(Handles(), info[0]);
    if (!cs) return ThrowTypeError(info.Env(), "dropped: connection handle expected");
    return Napi::Number::New(info.Env(), cs->dropped.load());
  }

  Napi::Value BufferedAmount(const Napi::CallbackInfo& info) {
    ConnShared* cs = HandleArg(Handles(), info[0]);
    if (!cs) return ThrowTypeError(info.Env(), "bufferedAmount: connection handle expected");
    return Napi::Number::New(info.Env(), static_cast<double>(cs->buffered.load()));
  }

  Napi::Value SetRef(const Napi::CallbackInfo& info) {
    if (ctx_) ctx_->SetRef(info[0].ToBoolean().Value());
    return info.Env().Undefined();
  }

  // eventLoop() -> { loop: 'libev' | 'poll', backend: 'epoll' | 'poll' | ..., fallback } of
  // the running context (fallback: why libev could not start, or null), or null before init.
  Napi::Value EventLoop(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ctx_ || ctx_->stopped()) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("loop", ctx_->loop_name());
    o.Set("backend", ctx_->loop_backend());
    if (ctx_->fallback_reason().empty())
      o.Set("fallback", env.Null());
    else
      o.Set("fallback", ctx_->fallback_reason());
    return o;
  }

  Napi::Value SetLogLevel(const Napi::CallbackInfo& info) {
    lws_set_log_level(info[0].As<Napi::Number>().Int32Value(), LwsLogSink);
    return info.Env().Undefined();
  }

  napi_env env_;
  Context* ctx_ = nullptr;
};

}  // namespace nlws

using NodeLwsAddon = nlws::Addon;
NODE_API_ADDON(NodeLwsAddon)
