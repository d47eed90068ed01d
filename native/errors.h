// Error construction shared by every native entry point.
//
// Native failures cross into JavaScript as Error objects that carry a `code`
// (the errno name for system errors, an ERR_* name otherwise), shaped like the
// errors Node's own `net` module produces.
#pragma once

#include <napi.h>

#include <string>

namespace nlws {

// "EADDRINUSE" for EADDRINUSE, ... ; "UNKNOWN" for numbers it does not know.
const char* ErrnoName(int err);

// A Node-style system error: message "<syscall> <CODE> <address>:<port>",
// properties code, errno, syscall and, when given, address and port.
Napi::Error MakeSystemError(Napi::Env env, int err, const char* syscall,
                            const std::string& address = std::string(), int port = -1);

// Error with a `code` property, e.g. MakeCodedError(env, "ERR_CLOSED", "...").
Napi::Error MakeCodedError(Napi::Env env, const char* code, const std::string& message);

// Throw a TypeError with code ERR_INVALID_ARG_TYPE; returns undefined for `return`.
Napi::Value ThrowTypeError(Napi::Env env, const std::string& message);

}  // namespace nlws
