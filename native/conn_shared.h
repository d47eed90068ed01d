// The part of a connection both threads touch.
//
// A Conn (service thread) and its JS handle (main thread) each hold a
// reference, as does every queued Command and every RxCharge in a batch; the
// last Unref deletes it. Fields are atomics or set once before the connection
// is announced to JavaScript.
#pragma once

#include <atomic>
#include <cstdint>

namespace nlws {

class Conn;

struct ConnShared {
  // Fields in order of size, so that no padding lies between them: an idle
  // connection holds one of these (64 B, 88 B before).
  // Send side: payload bytes accepted by send() and not yet written.
  std::atomic<int64_t> buffered{0};
  // Receive side (flow control): bytes of received events charged to this
  // connection and not yet consumed by JavaScript. The service thread stops
  // reading above the high-water mark; it sets rx_waiting, and whichever
  // thread then sees the total at or below rx_low_water resumes reading
  // (the main thread through a kResumeRx command).
  std::atomic<int64_t> rx_pending{0};
  int64_t rx_low_water = 0;
  int64_t high_water_mark = 0;
  Conn* conn = nullptr;  // service thread only
  std::atomic<int> refs{1};
  // Published messages dropped under the 'drop' backpressure policy.
  std::atomic<uint32_t> dropped{0};
  // Messages of at least this many bytes are compressed (permessage-deflate
  // negotiated); set before the connection is announced to JavaScript.
  std::atomic<uint32_t> deflate_threshold{0xFFFFFFFFu};
  uint32_t id = 0;
  std::atomic<bool> gone{false};  // the Conn is closed; sends are dropped
  std::atomic<bool> rx_waiting{false};
  bool client = false;  // frames we send must be masked
  // A large Buffer may be sent from where it lies, JavaScript's memory, until
  // written (Addon::Send): only on a plain socket, where no code of ours reads
  // that memory, only the kernel's send. If JavaScript detaches its
  // ArrayBuffer meanwhile (a transfer, a byte stream) and the memory is freed,
  // the send fails with EFAULT and the connection drops. Over TLS (OpenSSL
  // encrypts it on the service thread) or a JavaScript stream (JsWire copies
  // it) that read would crash the process, so those connections copy. Set
  // before the connection is announced.
  bool send_in_place = false;

  void Ref() { refs.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
};

}  // namespace nlws
