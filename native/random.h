// Unpredictable bytes: client frames' masking keys (RFC 6455 5.3) and the key
// of the tables a peer names (keyed_hash.h). A per-thread pool of 4 KiB,
// refilled with getrandom() (from /dev/urandom if the kernel refuses the
// call, as a seccomp filter may).
//
// Any thread (the pool is thread_local).
#pragma once

#include <stddef.h>

namespace nlws {

void RandomBytes(void* out, size_t n);

}  // namespace nlws
