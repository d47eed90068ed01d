#include "js_convert.h"

namespace nlws {

std::vector<std::string> StringList(const Napi::Value& v) {
  std::vector<std::string> out;
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  return out;
}

namespace {

uint32_t U32(const Napi::Object& o, const char* name) {
  return o.Get(name).As<Napi::Number>().Uint32Value();
}

// { threshold, level, serverMaxWindowBits, clientMaxWindowBits,
//   serverNoContextTakeover, clientNoContextTakeover } or undefined (off).
DeflateOptions DeflateArg(const Napi::Value& v) {
  DeflateOptions d;
  if (!v.IsObject()) return d;
  Napi::Object o = v.As<Napi::Object>();
  d.enabled = true;
  d.threshold = U32(o, "threshold");
  d.level = o.Get("level").As<Napi::Number>().Int32Value();
  d.server_max_window_bits = o.Get("serverMaxWindowBits").As<Napi::Number>().Int32Value();
  d.client_max_window_bits = o.Get("clientMaxWindowBits").As<Napi::Number>().Int32Value();
  d.server_no_context_takeover = o.Get("serverNoContextTakeover").ToBoolean().Value();
  d.client_no_context_takeover = o.Get("clientNoContextTakeover").ToBoolean().Value();
  return d;
}

}  // namespace

ConnOptions ConnOptionsArg(const Napi::Value& v) {
  ConnOptions c;
  Napi::Object o = v.As<Napi::Object>();
  c.max_payload = static_cast<uint64_t>(o.Get("maxPayload").As<Napi::Number>().DoubleValue());
  c.high_water_mark = o.Get("highWaterMark").As<Napi::Number>().Int64Value();
  c.receive_high_water_mark = o.Get("receiveHighWaterMark").As<Napi::Number>().Int64Value();
  c.handshake_timeout_ms = U32(o, "handshakeTimeoutMs");
  c.close_timeout_ms = U32(o, "closeTimeoutMs");
  c.max_header_bytes = U32(o, "maxHeaderBytes");
  c.heartbeat_interval_ms = U32(o, "heartbeatIntervalMs");
  c.heartbeat_timeout_ms = U32(o, "heartbeatTimeoutMs");
  c.text_as_buffer = o.Get("textAsBuffer").ToBoolean().Value();
  c.lend_messages = o.Get("lendMessages").ToBoolean().Value();
  c.deflate = DeflateArg(o.Get("perMessageDeflate"));
  c.max_backpressure = o.Get("maxBackpressure").As<Napi::Number>().Int64Value();
  c.drop_on_backpressure = o.Get("dropOnBackpressure").ToBoolean().Value();
  return c;
}

ConnShared* HandleArg(ConnHandles* handles, const Napi::Value& v) {
  if (v.IsNumber()) return handles ? handles->Get(v.As<Napi::Number>().Uint32Value()) : nullptr;
  if (!v.IsExternal()) return nullptr;
  return v.As<Napi::External<ConnShared>>().Data();
}

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

}  // namespace nlws
