#include "errors.h"

#include <errno.h>
#include <string.h>

namespace nlws {

const char* ErrnoName(int err) {
  switch (err) {
#define NLWS_ERRNO(name) \
  case name:             \
    return #name;
    NLWS_ERRNO(EADDRINUSE)
    NLWS_ERRNO(EADDRNOTAVAIL)
    NLWS_ERRNO(EACCES)
    NLWS_ERRNO(EPERM)
    NLWS_ERRNO(EAFNOSUPPORT)
    NLWS_ERRNO(EINVAL)
    NLWS_ERRNO(EMFILE)
    NLWS_ERRNO(ENFILE)
    NLWS_ERRNO(ENOBUFS)
    NLWS_ERRNO(ENOMEM)
    NLWS_ERRNO(ECONNREFUSED)
    NLWS_ERRNO(ECONNRESET)
    NLWS_ERRNO(ECONNABORTED)
    NLWS_ERRNO(ETIMEDOUT)
    NLWS_ERRNO(EHOSTUNREACH)
    NLWS_ERRNO(ENETUNREACH)
    NLWS_ERRNO(ENETDOWN)
    NLWS_ERRNO(EPIPE)
    NLWS_ERRNO(EAGAIN)
    NLWS_ERRNO(EINPROGRESS)
    NLWS_ERRNO(EALREADY)
    NLWS_ERRNO(EISCONN)
    NLWS_ERRNO(ENOTCONN)
    NLWS_ERRNO(EBADF)
    NLWS_ERRNO(ENOTSOCK)
    NLWS_ERRNO(EPROTONOSUPPORT)
    NLWS_ERRNO(EOPNOTSUPP)
    NLWS_ERRNO(EINTR)
    NLWS_ERRNO(ENOENT)
    NLWS_ERRNO(ENOSPC)
    NLWS_ERRNO(ENAMETOOLONG)
    NLWS_ERRNO(ENOTDIR)
    NLWS_ERRNO(EROFS)
    NLWS_ERRNO(ELOOP)
#undef NLWS_ERRNO
    default:
      return "UNKNOWN";
  }
}

Napi::Error MakeSystemError(Napi::Env env, int err, const char* syscall, const std::string& address,
                            int port) {
  const char* code = ErrnoName(err);
  std::string message = std::string(syscall) + " " + code;
  if (!address.empty()) {
    bool v6 = address.find(':') != std::string::npos;
    message += " ";
    message += v6 && port >= 0 ? "[" + address + "]" : address;
    if (port >= 0) message += ":" + std::to_string(port);
  }
  message += std::string(" (") + strerror(err) + ")";
  Napi::Error e = Napi::Error::New(env, message);
  Napi::Object o = e.Value();
  o.Set("code", code);
  // Node reports errno as a negative number (libuv style); so do we.
  o.Set("errno", Napi::Number::New(env, -err));
  o.Set("syscall", syscall);
  if (!address.empty()) o.Set("address", address);
  if (port >= 0) o.Set("port", Napi::Number::New(env, port));
  return e;
}

Napi::Error MakeCodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", code);
  return e;
}

Napi::Value ThrowTypeError(Napi::Env env, const std::string& message) {
  Napi::TypeError e = Napi::TypeError::New(env, message);
  e.Value().Set("code", "ERR_INVALID_ARG_TYPE");
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

}  // namespace nlws
