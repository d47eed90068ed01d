// Module entry: one Addon instance per Node environment (main thread or
// worker), holding that environment's Context. An environment cleanup hook
// stops the service thread before the environment goes away.
#include <arpa/inet.h>
#include <errno.h>
#include <napi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "buffers.h"
#include "connection.h"
#include "context.h"
#include "errors.h"
#include "listener.h"
#include "ws_protocol.h"

namespace nlws {

namespace {

void LwsLogSink(int level, const char* line);

std::vector<std::string> StringList(const Napi::Value& v) {
  std::vector<std::string> out;
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  return out;
}

// { threshold, level, serverMaxWindowBits, clientMaxWindowBits,
//   serverNoContextTakeover, clientNoContextTakeover } or undefined (off).
DeflateOptions DeflateArg(const Napi::Value& v) {
  DeflateOptions d;
  if (!v.IsObject()) return d;
  Napi::Object o = v.As<Napi::Object>();
  d.enabled = true;
  d.threshold = o.Get("threshold").As<Napi::Number>().Uint32Value();
  d.level = o.Get("level").As<Napi::Number>().Int32Value();
  d.server_max_window_bits = o.Get("serverMaxWindowBits").As<Napi::Number>().Int32Value();
  d.client_max_window_bits = o.Get("clientMaxWindowBits").As<Napi::Number>().Int32Value();
  d.server_no_context_takeover = o.Get("serverNoContextTakeover").ToBoolean().Value();
  d.client_no_context_takeover = o.Get("clientNoContextTakeover").ToBoolean().Value();
  return d;
}

ConnShared* HandleArg(const Napi::Value& v) {
  if (!v.IsExternal()) return nullptr;
  return v.As<Napi::External<ConnShared>>().Data();
}

// Payload bytes of a string, Buffer, TypedArray, DataView or ArrayBuffer.
bool PayloadOf(napi_env env, napi_value v, const uint8_t** data, size_t* len) {
  bool is;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t count, offset;
    void* p;
    napi_value ab;
    if (napi_get_typedarray_info(env, v, &type, &count, &p, &ab, &offset) != napi_ok) return false;
    size_t elem = 1;
    switch (type) {
      case napi_int16_array:
      case napi_uint16_array:
        elem = 2;
        break;
      case napi_int32_array:
      case napi_uint32_array:
      case napi_float32_array:
        elem = 4;
        break;
      case napi_float64_array:
      case napi_bigint64_array:
      case napi_biguint64_array:
        elem = 8;
        break;
      default:
        break;
    }
    *data = static_cast<const uint8_t*>(p);
    *len = count * elem;
    return true;
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) {
    void* p;
    napi_value ab;
    size_t offset;
    if (napi_get_dataview_info(env, v, len, &p, &ab, &offset) != napi_ok) return false;
    *data = static_cast<const uint8_t*>(p);
    return true;
  }
  if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
    void* p;
    if (napi_get_arraybuffer_info(env, v, &p, len) != napi_ok) return false;
    *data = static_cast<const uint8_t*>(p);
    return true;
  }
  return false;
}

}  // namespace

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) : env_(env) {
    DefineAddon(exports, {
                             InstanceMethod("init", &Addon::InitContext),
                             InstanceMethod("bind", &Addon::BindSocket),
                             InstanceMethod("closeFd", &Addon::CloseFdM),
                             InstanceMethod("startServer", &Addon::StartServer),
                             InstanceMethod("closeServer", &Addon::CloseServer),
                             InstanceMethod("connect", &Addon::Connect),
                             InstanceMethod("send", &Addon::Send),
                             InstanceMethod("ping", &Addon::Ping),
                             InstanceMethod("close", &Addon::Close),
                             InstanceMethod("terminate", &Addon::Terminate),
                             InstanceMethod("accept", &Addon::Accept),
                             InstanceMethod("reject", &Addon::Reject),
                             InstanceMethod("bufferedAmount", &Addon::BufferedAmount),
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

  Context* Ctx(Napi::Env env) {
    if (!ctx_ || ctx_->stopped()) {
      MakeCodedError(env, "ERR_NOT_INITIALIZED", "node-lws: the native context is not running")
          .ThrowAsJavaScriptException();
      return nullptr;
    }
    return ctx_;
  }

  // init(onEvents, logLevel, loop: 'auto' | 'poll')
  Napi::Value InitContext(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (ctx_) return env.Undefined();
    if (!info[0].IsFunction()) return ThrowTypeError(env, "init: callback expected");
    if (info[1].IsNumber()) lws_set_log_level(info[1].As<Napi::Number>().Int32Value(), LwsLogSink);
    LoopKind loop = LoopKind::kAuto;
    if (info[2].IsString() && info[2].As<Napi::String>().Utf8Value() == "poll")
      loop = LoopKind::kPoll;
    std::string error;
    ctx_ = Context::Create(env, info[0].As<Napi::Function>(), loop, &error);
    if (!ctx_) {
      MakeCodedError(env, "ERR_LWS_INIT", "node-lws: " + error).ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }

  Napi::Value BindSocket(const Napi::CallbackInfo& info) { return Bind(info); }
  Napi::Value CloseFdM(const Napi::CallbackInfo& info) { return CloseFd(info); }

  // startServer(id, fd, { maxPayload, highWaterMark, handshakeTimeoutMs,
  //                       closeTimeoutMs, maxHeaderBytes, protocols })
  Napi::Value StartServer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Context* ctx = Ctx(env);
    if (!ctx) return env.Undefined();
    auto* cfg = new ServerConfig();
    cfg->id = info[0].As<Napi::Number>().Uint32Value();
    cfg->fd = info[1].As<Napi::Number>().Int32Value();
    Napi::Object o = info[2].As<Napi::Object>();
    cfg->max_payload = static_cast<uint64_t>(o.Get("maxPayload").As<Napi::Number>().DoubleValue());
    cfg->high_water_mark = o.Get("highWaterMark").As<Napi::Number>().Int64Value();
    cfg->handshake_timeout_ms = o.Get("handshakeTimeoutMs").As<Napi::Number>().Uint32Value();
    cfg->close_timeout_ms = o.Get("closeTimeoutMs").As<Napi::Number>().Uint32Value();
    cfg->max_header_bytes = o.Get("maxHeaderBytes").As<Napi::Number>().Uint32Value();
    cfg->protocols = StringList(o.Get("protocols"));
    cfg->verify = o.Get("verify").ToBoolean().Value();
    cfg->max_connections = o.Get("maxConnections").As<Napi::Number>().Uint32Value();
    cfg->allowed_origins = StringList(o.Get("allowedOrigins"));
    cfg->path = o.Get("path").As<Napi::String>().Utf8Value();
    cfg->health = o.Get("health").ToBoolean().Value();
    cfg->static_root = o.Get("staticRoot").As<Napi::String>().Utf8Value();
    cfg->static_index = o.Get("staticIndex").As<Napi::String>().Utf8Value();
    cfg->heartbeat_interval_ms = o.Get("heartbeatIntervalMs").As<Napi::Number>().Uint32Value();
    cfg->heartbeat_timeout_ms = o.Get("heartbeatTimeoutMs").As<Napi::Number>().Uint32Value();
    cfg->deflate = DeflateArg(o.Get("perMessageDeflate"));
    cfg->tls_cert = o.Get("tlsCert").As<Napi::String>().Utf8Value();
    cfg->tls_key = o.Get("tlsKey").As<Napi::String>().Utf8Value();
    cfg->tls_passphrase = o.Get("tlsPassphrase").As<Napi::String>().Utf8Value();
    cfg->tls_chain = o.Get("tlsChain").As<Napi::String>().Utf8Value();
    cfg->text_as_buffer = o.Get("textAsBuffer").ToBoolean().Value();
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

  // connect({ address, port, request, accept, protocols, maxPayload, highWaterMark,
  //           timeoutMs, closeTimeoutMs, maxHeaderBytes }) -> { handle, id }
  // Starts a non-blocking connect() here and hands the socket to the service
  // thread. An immediate failure (ECONNREFUSED on loopback, ENETUNREACH, ...)
  // throws a system error at once.
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Context* ctx = Ctx(env);
    if (!ctx) return env.Undefined();
    if (!info[0].IsObject()) return ThrowTypeError(env, "connect: options object expected");
    Napi::Object o = info[0].As<Napi::Object>();
    std::string address = o.Get("address").As<Napi::String>().Utf8Value();
    int port = o.Get("port").As<Napi::Number>().Int32Value();

    sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET, address.c_str(), &a4->sin_addr) == 1) {
      a4->sin_family = AF_INET;
      a4->sin_port = htons(static_cast<uint16_t>(port));
      sl = sizeof *a4;
    } else if (inet_pton(AF_INET6, address.c_str(), &a6->sin6_addr) == 1) {
      a6->sin6_family = AF_INET6;
      a6->sin6_port = htons(static_cast<uint16_t>(port));
      sl = sizeof *a6;
    } else {
      MakeCodedError(env, "ERR_INVALID_IP_ADDRESS", "Invalid IP address: " + address)
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    bool tls = o.Get("tls").ToBoolean().Value();  // wss: TLS over this same socket
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      MakeSystemError(env, errno, "socket", address, port).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, reinterpret_cast<sockaddr*>(&ss), sl) < 0 && errno != EINPROGRESS) {
      int err = errno;
      close(fd);
      MakeSystemError(env, err, "connect", address, port).ThrowAsJavaScriptException();
      return env.Undefined();
    }

    auto* shared = new ConnShared();
    shared->id = ctx->NextConnId();
    shared->client = true;
    shared->high_water_mark = o.Get("highWaterMark").As<Napi::Number>().Int64Value();
    auto* cfg = new ClientConfig();
    cfg->shared = shared;  // the reference created with it
    cfg->fd = fd;
    cfg->address = address;
    cfg->port = port;
    cfg->request = o.Get("request").As<Napi::String>().Utf8Value();
    cfg->accept = o.Get("accept").As<Napi::String>().Utf8Value();
    cfg->protocols = StringList(o.Get("protocols"));
    cfg->heartbeat_interval_ms = o.Get("heartbeatIntervalMs").As<Napi::Number>().Uint32Value();
    cfg->heartbeat_timeout_ms = o.Get("heartbeatTimeoutMs").As<Napi::Number>().Uint32Value();
    cfg->max_payload = static_cast<uint64_t>(o.Get("maxPayload").As<Napi::Number>().DoubleValue());
    cfg->timeout_ms = o.Get("timeoutMs").As<Napi::Number>().Uint32Value();
    cfg->close_timeout_ms = o.Get("closeTimeoutMs").As<Napi::Number>().Uint32Value();
    cfg->max_header_bytes = o.Get("maxHeaderBytes").As<Napi::Number>().Uint32Value();
    cfg->deflate = DeflateArg(o.Get("perMessageDeflate"));
    cfg->text_as_buffer = o.Get("textAsBuffer").ToBoolean().Value();
    cfg->tls = tls;
    if (tls) {
      cfg->host = o.Get("host").As<Napi::String>().Utf8Value();
      cfg->ca = o.Get("ca").As<Napi::String>().Utf8Value();
      cfg->reject_unauthorized = o.Get("rejectUnauthorized").ToBoolean().Value();
    }

    shared->Ref();  // for the JS handle
    Napi::Object r = Napi::Object::New(env);
    r.Set("handle", Napi::External<ConnShared>::New(env, shared,
                                                    [](Napi::Env, ConnShared* s) { s->Unref(); }));
    r.Set("id", Napi::Number::New(env, shared->id));
    Command c{};
    c.type = Command::kConnect;
    c.client = cfg;
    ctx->Push(std::move(c));
    return r;
  }

  // ping(handle, data): a ping frame after the messages already queued.
  Napi::Value Ping(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ConnShared* cs = HandleArg(info[0]);
    if (!cs) return ThrowTypeError(env, "ping: connection handle expected");
    Context* ctx = Ctx(env);
    if (!ctx || cs->gone.load()) return env.Undefined();
    const uint8_t* data = nullptr;
    size_t len = 0;
    if (!info[1].IsUndefined() && !PayloadOf(env, info[1], &data, &len))
      return ThrowTypeError(env, "ping: Buffer expected");
    if (len > 125) {
      MakeCodedError(env, "ERR_OUT_OF_RANGE", "A ping payload is at most 125 bytes")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t flen;
    uint8_t* frame = NewFrame(cs->client, kOpPing, data, len, &flen);
    if (!frame) return OutOfMemory(env);
    PushFrame(ctx, cs, Command::kSend, frame, flen);
    return env.Undefined();
  }

  // Queues a control frame built here (ping, close) for the service thread.
  static void PushFrame(Context* ctx, ConnShared* cs, Command::Type type, uint8_t* frame,
                        size_t flen, uint16_t code = 0) {
    cs->Ref();
    Command c{};
    c.type = type;
    c.conn = cs;
    c.data = frame;
    c.len = flen;
    c.code = code;
    ctx->Push(std::move(c));
  }

  // send(handle, data, isBinary, maxBackpressure) -> bufferedAmount after
  // queueing; -1 when the connection is already gone, -2 when the message would
  // take bufferedAmount past maxBackpressure (nothing queued in either case).
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ConnShared* cs = HandleArg(info[0]);
    if (!cs) return ThrowTypeError(env, "send: connection handle expected");
    if (cs->gone.load(std::memory_order_acquire)) return Napi::Number::New(env, -1);
    Context* ctx = Ctx(env);
    if (!ctx) return env.Undefined();
    napi_value v = info[1];
    // info[3]: maxBackpressure (0: none). Over it, nothing is copied or queued: -2.
    int64_t limit = info.Length() > 3 && info[3].IsNumber()
                        ? static_cast<int64_t>(info[3].As<Napi::Number>().DoubleValue())
                        : 0;
    napi_valuetype t;
    napi_typeof(env, v, &t);
    uint8_t* frame;
    size_t hl, len;
    uint32_t threshold = cs->deflate_threshold.load(std::memory_order_acquire);
    if (threshold != 0xFFFFFFFFu) {
      // permessage-deflate: large messages go bare to the service thread,
      // which compresses them (off the JavaScript thread) and frames them.
      const uint8_t* data = nullptr;
      bool is_string = t == napi_string;
      if (is_string) {
        if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) return env.Undefined();
      } else if (!PayloadOf(env, v, &data, &len)) {
        return ThrowTypeError(env, "send: string, Buffer, ArrayBuffer or ArrayBufferView expected");
      }
      if (len >= threshold) {
        if (limit && cs->buffered.load() + static_cast<int64_t>(len) > limit)
          return Napi::Number::New(env, -2);
        uint8_t* payload = BufAlloc(len + 1);
        if (!payload) return OutOfMemory(env);
        size_t copied;
        if (is_string)
          napi_get_value_string_utf8(env, v, reinterpret_cast<char*>(payload), len + 1, &copied);
        else if (len)
          memcpy(payload, data, len);
        bool binary = !is_string && info[2].ToBoolean().Value();
        int64_t buffered =
            cs->buffered.fetch_add(static_cast<int64_t>(len), std::memory_order_acq_rel) +
            static_cast<int64_t>(len);
        cs->Ref();
        Command c{};
        c.type = Command::kSend;
        c.conn = cs;
        c.data = payload;
        c.len = len;
        c.payload = len;
        c.compress = true;
        c.code = binary ? kOpBinary : kOpText;
        ctx->Push(std::move(c));
        return Napi::Number::New(env, static_cast<double>(buffered));
      }
    }
    if (t == napi_string) {
      // One encoding pass: the UTF-16 length is known at once, and UTF-8 needs
      // at most 3 bytes per UTF-16 unit. Write the payload after the largest
      // header that bound allows; move it down if the real header is smaller.
      size_t units;
      if (napi_get_value_string_utf16(env, v, nullptr, 0, &units) != napi_ok)
        return env.Undefined();
      size_t bound = units * 3;
      if (limit && cs->buffered.load() + static_cast<int64_t>(units) > limit)
        return Napi::Number::New(env, -2);
      size_t hmax = FrameHeaderSize(bound, cs->client);
      frame = BufAlloc(hmax + bound + 1);
      if (!frame) return OutOfMemory(env);
      napi_get_value_string_utf8(env, v, reinterpret_cast<char*>(frame + hmax), bound + 1, &len);
      hl = FrameHeaderSize(len, cs->client);
      if (hl < hmax && len) memmove(frame + hl, frame + hmax, len);
      if (cs->client) {
        uint8_t mask[4];
        RandomMask(mask);
        EncodeFrameHeader(frame, true, kOpText, len, mask);
        ApplyMask(frame + hl, frame + hl, len, mask, 0);
      } else {
        EncodeFrameHeader(frame, true, kOpText, len, nullptr);
      }
    } else {
      const uint8_t* data;
      if (!PayloadOf(env, v, &data, &len))
        return ThrowTypeError(env, "send: string, Buffer, ArrayBuffer or ArrayBufferView expected");
      if (limit && cs->buffered.load() + static_cast<int64_t>(len) > limit)
        return Napi::Number::New(env, -2);
      hl = FrameHeaderSize(len, cs->client);
      frame = BufAlloc(hl + len);
      if (!frame) return OutOfMemory(env);
      bool binary = info[2].ToBoolean().Value();
      uint8_t opcode = binary ? kOpBinary : kOpText;
      if (cs->client) {
        uint8_t mask[4];
        RandomMask(mask);
        EncodeFrameHeader(frame, true, opcode, len, mask);
        ApplyMask(frame + hl, data, len, mask, 0);  // copy and mask in one pass
      } else {
        EncodeFrameHeader(frame, true, opcode, len, nullptr);
        if (len) memcpy(frame + hl, data, len);
      }
    }
    int64_t buffered =
        cs->buffered.fetch_add(static_cast<int64_t>(len), std::memory_order_acq_rel) +
        static_cast<int64_t>(len);
    cs->Ref();
    Command c{};
    c.type = Command::kSend;
    c.conn = cs;
    c.data = frame;
    c.len = hl + len;
    c.payload = len;
    ctx->Push(std::move(c));
    return Napi::Number::New(env, static_cast<double>(buffered));
  }

  // close(handle, code, reason): code 0 sends a close frame with no payload.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ConnShared* cs = HandleArg(info[0]);
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
    PushFrame(ctx, cs, Command::kClose, frame, flen, static_cast<uint16_t>(code));
    return env.Undefined();
  }

  // The common head of a call on one connection: its handle, the running
  // context, and a Command holding a reference to the connection. False when
  // there is nothing to do (a TypeError is pending for a bad handle).
  bool BeginConnCommand(const Napi::CallbackInfo& info, const char* what, Command::Type type,
                        Command* c, Context** ctx) {
    ConnShared* cs = HandleArg(info[0]);
    if (!cs) {
      ThrowTypeError(info.Env(), std::string(what) + ": connection handle expected");
      return false;
    }
    *ctx = Ctx(info.Env());
    if (!*ctx || cs->gone.load()) return false;
    cs->Ref();
    c->type = type;
    c->conn = cs;
    return true;
  }

  Napi::Value Terminate(const Napi::CallbackInfo& info) {
    Command c{};
    Context* ctx;
    if (BeginConnCommand(info, "terminate", Command::kTerminate, &c, &ctx)) ctx->Push(std::move(c));
    return info.Env().Undefined();
  }

  // accept(handle, protocol): completes an upgrade held for verify().
  Napi::Value Accept(const Napi::CallbackInfo& info) {
    Command c{};
    Context* ctx;
    if (BeginConnCommand(info, "accept", Command::kAccept, &c, &ctx)) {
      c.text = info[1].As<Napi::String>().Utf8Value();
      ctx->Push(std::move(c));
    }
    return info.Env().Undefined();
  }

  // reject(handle, status, headerLines, body): answers an upgrade with an HTTP status.
  Napi::Value Reject(const Napi::CallbackInfo& info) {
    Command c{};
    Context* ctx;
    if (BeginConnCommand(info, "reject", Command::kReject, &c, &ctx)) {
      c.code = static_cast<uint16_t>(info[1].As<Napi::Number>().Uint32Value());
      c.text = info[2].As<Napi::String>().Utf8Value();
      c.text2 = info[3].As<Napi::String>().Utf8Value();
      ctx->Push(std::move(c));
    }
    return info.Env().Undefined();
  }

  Napi::Value BufferedAmount(const Napi::CallbackInfo& info) {
    ConnShared* cs = HandleArg(info[0]);
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

  static Napi::Value OutOfMemory(Napi::Env env) {
    MakeCodedError(env, "ERR_OUT_OF_MEMORY", "node-lws: out of memory")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }

  napi_env env_;
  Context* ctx_ = nullptr;
};

namespace {
void LwsLogSink(int level, const char* line) { LwsLogToContext(level, line); }
}  // namespace

}  // namespace nlws

using NodeLwsAddon = nlws::Addon;
NODE_API_ADDON(NodeLwsAddon)
