#include "random.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

namespace nlws {

namespace {

// Fills p with n bytes: getrandom() (which waits, once per boot, until the
// kernel's pool is ready), else /dev/urandom. A process with neither has no
// unpredictable bytes to give: it stops with a message rather than mask
// frames or key tables predictably.
void Fill(uint8_t* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = getrandom(p + got, n - got, 0);
    if (k > 0) {
      got += static_cast<size_t>(k);
    } else if (k < 0 && errno != EINTR) {
      break;
    }
  }
  if (got == n) return;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  while (fd >= 0 && got < n) {
    ssize_t k = read(fd, p + got, n - got);
    if (k > 0)
      got += static_cast<size_t>(k);
    else if (k == 0 || errno != EINTR)
      break;
  }
  if (fd >= 0) close(fd);
  if (got == n) return;
  fprintf(stderr, "node-lws: no random bytes (getrandom() and /dev/urandom both failed)\n");
  abort();
}

}  // namespace

void RandomBytes(void* out, size_t n) {
  thread_local uint8_t pool[4096];
  thread_local size_t pos = sizeof pool;
  uint8_t* o = static_cast<uint8_t*>(out);
  while (n) {
    if (pos == sizeof pool) {
      Fill(pool, sizeof pool);
      pos = 0;
    }
    size_t take = n < sizeof pool - pos ? n : sizeof pool - pos;
    memcpy(o, pool + pos, take);
    pos += take;
    o += take;
    n -= take;
  }
}

}  // namespace nlws
