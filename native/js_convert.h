// Conversions from the JavaScript values lib/ passes (already validated and
// normalised there) to the native option structs, and the small argument
// helpers every N-API entry point uses.
//
// Main thread.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "conn_handles.h"
#include "conn_shared.h"
#include "options.h"

namespace nlws {

std::vector<std::string> StringList(const Napi::Value& v);
// { maxPayload, highWaterMark, receiveHighWaterMark, handshakeTimeoutMs,
//   closeTimeoutMs, maxHeaderBytes, heartbeatIntervalMs, heartbeatTimeoutMs,
//   textAsBuffer, perMessageDeflate } (lib/options.ts: NativeConnOptions)
ConnOptions ConnOptionsArg(const Napi::Value& v);
// The connection a handle JavaScript holds stands for (a ConnHandles handle,
// or an External); null when v is not a live one.
ConnShared* HandleArg(ConnHandles* handles, const Napi::Value& v);
// Payload bytes of a Buffer, TypedArray, DataView or ArrayBuffer.
bool PayloadOf(napi_env env, napi_value v, const uint8_t** data, size_t* len);

}  // namespace nlws
