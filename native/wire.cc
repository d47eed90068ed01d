#include "wire.h"

#include <errno.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>

#include "buffers.h"
#include "context.h"

namespace nlws {

namespace {

constexpr int kMaxIov = 64;
// Neighbouring pieces of frames up to Wire::kCoalesce bytes are copied side
// by side into the flush's scratch block and handed over as one iovec: the
// kernel pays per iovec (and a TLS wire per record), so 16 queued 64 B frames
// cost one segment instead of 16. Larger pieces, and a small one with no
// small neighbour, are handed over where they lie.
constexpr size_t kScratch = 16 * 1024;
// A new block of PushCopy() starts with room for a few more small frames.
constexpr size_t kCoalesceFirst = 1024;

// Blocks of kCoalesceFirst bytes, kept by the thread that freed them: a busy
// fan-out takes one per subscriber per flush and gives it back when written
// (malloc and free were 3% of a 64 B fan-out). At most kBlockCacheMax are
// kept; TrimWireBlocks() gives back those no flush needed for a second. Any
// BufAlloc'd block of that capacity will do (a frame's blocks never come
// from BufAllocMapped).
constexpr size_t kBlockCacheMax = 1024;
// What every thread's cache keeps, for nativeMemory().pooled (any thread).
std::atomic<size_t> g_cached_bytes{0};
struct BlockCache {
  std::vector<uint8_t*> free;
  size_t low = 0;  // the fewest kept since the last trim
  ~BlockCache() {
    for (uint8_t* b : free) BufFree(b);
    g_cached_bytes.fetch_sub(free.size() * kCoalesceFirst, std::memory_order_relaxed);
  }
};
thread_local BlockCache t_blocks;

uint8_t* TakeBlock() {
  BlockCache& c = t_blocks;
  if (c.free.empty()) return BufAlloc(kCoalesceFirst);
  uint8_t* b = c.free.back();
  c.free.pop_back();
  c.low = std::min(c.low, c.free.size());
  g_cached_bytes.fetch_sub(kCoalesceFirst, std::memory_order_relaxed);
  return b;
}

void FreeBlock(uint8_t* b) {
  BlockCache& c = t_blocks;
  if (b && BufCapacity(b) == kCoalesceFirst && c.free.size() < kBlockCacheMax) {
    c.free.push_back(b);
    g_cached_bytes.fetch_add(kCoalesceFirst, std::memory_order_relaxed);
  } else {
    BufFree(b);
  }
}

constexpr size_t kTlsChunk = 64 * 1024;
constexpr size_t kMaxCipherBacklog = 1024 * 1024;

}  // namespace

void SharedFrame::Unref() {
  if (--refs > 0) return;
  if (held) held->fetch_sub(static_cast<int64_t>(len), std::memory_order_relaxed);
  BufFree(block);
  delete this;
}

size_t WireCachedBytes() { return g_cached_bytes.load(std::memory_order_relaxed); }

size_t TrimWireBlocks() {
  BlockCache& c = t_blocks;
  size_t n = c.low;
  for (size_t i = 0; i < n; i++) BufFree(c.free[i]);
  c.free.erase(c.free.begin(), c.free.begin() + static_cast<std::ptrdiff_t>(n));
  g_cached_bytes.fetch_sub(n * kCoalesceFirst, std::memory_order_relaxed);
  c.low = c.free.size();
  if (c.free.empty()) std::vector<uint8_t*>().swap(c.free);
  return n * kCoalesceFirst;
}

void ReleaseFrame(OutFrame& f) {
  FreeBlock(f.block);
  f.block = nullptr;
  if (f.shared) f.shared->Unref();
  f.shared = nullptr;
}

// ---- Queue ------------------------------------------------------------------------

void Wire::Queue::pop_back() {
  v_.pop_back();
  Compact();
}

void Wire::Queue::pop_front() {
  head_++;
  Compact();
}

void Wire::Queue::Compact() {
  if (head_ == v_.size()) {
    v_.clear();
    head_ = 0;
    if (v_.capacity() > 64) std::vector<OutFrame>().swap(v_);  // give back a burst's memory
  } else if (head_ > 32 && head_ * 2 > v_.size()) {
    v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

// ---- write order --------------------------------------------------------------------

Wire::~Wire() = default;

OutFrame* Wire::At(size_t i) {
  if (partial_data_) {
    if (i == 0) return &data_[0];
    i--;
    if (i < ctrl_.size()) return &ctrl_[i];
    i -= ctrl_.size();
    return i + 1 < data_.size() ? &data_[i + 1] : nullptr;
  }
  if (i < ctrl_.size()) return &ctrl_[i];
  i -= ctrl_.size();
  return i < data_.size() ? &data_[i] : nullptr;
}

void Wire::Pop() {
  if (partial_data_) {
    data_.pop_front();
    partial_data_ = false;
  } else if (!ctrl_.empty()) {
    ctrl_.pop_front();
  } else {
    data_.pop_front();
  }
}

void Wire::Done(const OutFrame& f, bool written) {
  OutFrame copy = f;
  owner_->FrameDone(copy, written);
  ReleaseFrame(copy);
}

bool Wire::PushCopy(const uint8_t* p, size_t n, size_t payload) {
  if (!data_.empty()) {
    OutFrame& b = data_.back();
    if (b.kind == OutFrame::kData && b.block && b.data == b.block && !b.shared && !b.js &&
        b.head_len == 0 && b.len + n <= kCoalesceBlock) {
      if (BufCapacity(b.block) < b.len + n) {
        // Bytes already written stay counted in off_: only the pointer moves.
        size_t want = std::min(kCoalesceBlock, std::max(b.len + n, 2 * BufCapacity(b.block)));
        uint8_t* grown = BufRealloc(b.block, want, b.len);
        if (!grown) return false;
        b.block = grown;
        b.data = grown;
      }
      memcpy(b.block + b.len, p, n);
      b.len += n;
      b.payload += payload;
      return true;
    }
  }
  uint8_t* block = n <= kCoalesceFirst ? TakeBlock() : BufAlloc(n);
  if (!block) return false;
  memcpy(block, p, n);
  OutFrame& f = data_.emplace_back();
  f.data = block;
  f.block = block;
  f.len = n;
  f.payload = payload;
  return true;
}

void Wire::PushControl(const OutFrame& f) {
  if (f.kind == OutFrame::kPong) {
    // The first control frame may be partly written: it stays.
    size_t first = (off_ > 0 && !partial_data_) ? 1 : 0;
    for (size_t i = first; i < ctrl_.size(); i++) {
      if (ctrl_[i].kind != OutFrame::kPong) continue;
      OutFrame old = ctrl_[i];
      ctrl_[i] = f;
      Done(old, false);
      return;
    }
  }
  ctrl_.push_back(f);
}

void Wire::Drop(bool keep_partial) {
  bool keep = keep_partial && off_ > 0;
  bool keep_data = keep && partial_data_;
  bool keep_ctrl = keep && !partial_data_;
  while (ctrl_.size() > (keep_ctrl ? 1u : 0u)) {
    OutFrame f = ctrl_.back();
    ctrl_.pop_back();
    Done(f, false);
  }
  while (data_.size() > (keep_data ? 1u : 0u)) {
    OutFrame f = data_.back();
    data_.pop_back();
    Done(f, false);
  }
  if (!keep) {
    off_ = 0;
    partial_data_ = false;
  }
}

void Wire::Trim() {
  data_.Release();
  ctrl_.Release();
}

Wire::FileStatus Wire::SendFile(int, size_t, size_t*) { return FileStatus::kUnsupported; }

void Wire::RequestWritable() {
  if (!want_writable_) want_writable_ = owner_->WantWritable();
}

ssize_t Wire::WriteNow(const uint8_t* p, size_t n) {
  if (!empty() || Drain() != 1) return 0;
  iovec iov{const_cast<uint8_t*>(p), n};
  bool full = false;
  return Write(&iov, 1, &full);
}

Wire::Status Wire::Flush() {
  while (true) {
    int d = Drain();
    if (d < 0) return Status::kBroken;
    if (d == 0) {
      RequestWritable();
      return Status::kBlocked;
    }
    if (empty()) return Status::kIdle;
    // The scratch block lives for this Write() only: every transport copies
    // or sends what it takes before returning, and what it does not take is
    // still in the queue, where the next Flush() finds it.
    static thread_local uint8_t scratch[kScratch];
    size_t used = 0;
    iovec iov[kMaxIov];
    int cnt = 0;
    bool last_ours = false;  // iov[cnt - 1] may be copied
    // A piece is copied only to join a neighbour: a lone one (a block of
    // PushCopy()'d frames, say) is handed over where it lies. Never the rest
    // of a JavaScript Buffer sent without a copy (`ours` false): JavaScript
    // may have detached and freed it, which only the kernel may find out
    // (EFAULT), not a memcpy here (ConnShared::send_in_place).
    auto add = [&](const uint8_t* p, size_t n, bool ours) {
      if (ours && n <= Wire::kCoalesce && cnt > 0) {
        iovec& last = iov[cnt - 1];
        auto* lp = static_cast<uint8_t*>(last.iov_base);
        auto at = reinterpret_cast<uintptr_t>(lp) - reinterpret_cast<uintptr_t>(scratch);
        bool in_scratch = at < kScratch;
        if (in_scratch && lp + last.iov_len == scratch + used && used + n <= kScratch) {
          memcpy(scratch + used, p, n);
          last.iov_len += n;
          used += n;
          return;
        }
        if (!in_scratch && last_ours && last.iov_len <= Wire::kCoalesce &&
            used + last.iov_len + n <= kScratch) {
          memcpy(scratch + used, lp, last.iov_len);
          memcpy(scratch + used + last.iov_len, p, n);
          last.iov_base = scratch + used;
          used += last.iov_len + n;
          last.iov_len += n;
          return;
        }
      }
      iov[cnt].iov_base = const_cast<uint8_t*>(p);
      iov[cnt++].iov_len = n;
      last_ours = ours;
    };
    OutFrame* f;
    for (size_t i = 0; cnt + 2 <= kMaxIov && (f = At(i)) != nullptr; i++) {
      size_t skip = i == 0 ? off_ : 0;
      if (skip < f->head_len) {
        add(f->head + skip, f->head_len - skip, true);
        skip = 0;
      } else {
        skip -= f->head_len;
      }
      if (f->len > skip) add(f->data + skip, f->len - skip, f->js == nullptr);
    }
    bool full = false;
    ssize_t w = Write(iov, cnt, &full);
    if (w < 0) return Status::kBroken;
    size_t left = static_cast<size_t>(w);
    while (left > 0) {
      OutFrame* first = At(0);
      size_t rem = first->size() - off_;
      if (left < rem) {
        off_ += left;
        partial_data_ = partial_data_ || ctrl_.empty();
        break;
      }
      left -= rem;
      OutFrame done = *first;
      Pop();
      off_ = 0;
      Done(done, true);
    }
    if (w == 0 || full) {
      if (full) RequestWritable();
      return Status::kBlocked;
    }
  }
}

// ---- transports -------------------------------------------------------------------

ssize_t PlainWire::Write(const iovec* iov, int n, bool* full) {
  size_t total = 0;
  for (int i = 0; i < n; i++) total += iov[i].iov_len;
  struct msghdr mh = {};
  mh.msg_iov = const_cast<iovec*>(iov);
  mh.msg_iovlen = static_cast<size_t>(n);
  ssize_t w;
  do {
    // One piece (coalesced small frames, most often) goes by send(): the
    // kernel then has no msghdr and iovec array to copy in and check.
    w = n == 1 ? send(fd_, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
               : sendmsg(fd_, &mh, MSG_NOSIGNAL);
  } while (w < 0 && errno == EINTR);
  if (w < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *full = true;
      return 0;
    }
    return -1;  // EPIPE, ECONNRESET, ...: the peer is gone
  }
  if (static_cast<size_t>(w) < total) *full = true;
  return w;
}

Wire::FileStatus PlainWire::SendFile(int file_fd, size_t max, size_t* sent) {
  // The kernel moves the bytes from the page cache to the socket: a client
  // that stops reading holds nothing of the file in this process. SIGPIPE
  // (sendfile has no MSG_NOSIGNAL) is ignored by Node and by lws.
  ssize_t w;
  do {
    w = sendfile(fd_, file_fd, nullptr, max);
  } while (w < 0 && errno == EINTR);
  if (w > 0) {
    *sent = static_cast<size_t>(w);
    return FileStatus::kSent;
  }
  if (w == 0) return FileStatus::kFileEnded;  // end of file before the length announced
  switch (errno) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
      RequestWritable();
      return FileStatus::kBlocked;
    case EINVAL:
    case ENOSYS:
      return FileStatus::kUnsupported;  // a file sendfile() cannot read: read() it
    case EIO:
    case ENOMEM:
      return FileStatus::kFileEnded;
    default:
      return FileStatus::kBroken;  // EPIPE, ECONNRESET, ...: the peer is gone
  }
}

bool PlainWire::HalfClose() {
  shutdown(fd_, SHUT_WR);
  return true;
}

ssize_t LwsTlsWire::Write(const iovec* iov, int n, bool* full) {
  // lws_write() encrypts and keeps what the socket does not take; chunks
  // keep that copy small.
  size_t taken = 0;
  for (int i = 0; i < n; i++) {
    auto* p = static_cast<unsigned char*>(iov[i].iov_base);
    size_t left = iov[i].iov_len;
    while (left > 0) {
      if (lws_send_pipe_choked(wsi_)) {
        *full = true;
        return static_cast<ssize_t>(taken);
      }
      size_t c = std::min(kTlsChunk, left);
      if (lws_write(wsi_, p, c, LWS_WRITE_RAW) < 0) return -1;
      p += c;
      left -= c;
      taken += c;
    }
  }
  return static_cast<ssize_t>(taken);
}

int LwsTlsWire::Drain() { return lws_send_pipe_choked(wsi_) ? 0 : 1; }

int ClientTlsWire::Drain() {
  tls_->TakeOutput(&cipher_);
  while (cipher_off_ < cipher_.size()) {
    ssize_t w = send(fd_, cipher_.data() + cipher_off_, cipher_.size() - cipher_off_, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    cipher_off_ += static_cast<size_t>(w);
  }
  cipher_.clear();
  cipher_off_ = 0;
  return 1;
}

ssize_t ClientTlsWire::Write(const iovec* iov, int n, bool* full) {
  if (!up_) return 0;  // the handshake is not done: application data waits
  size_t taken = 0;
  for (int i = 0; i < n; i++) {
    auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
    size_t left = iov[i].iov_len;
    while (left > 0) {
      if (cipher_.size() - cipher_off_ >= kMaxCipherBacklog) {
        int d = Drain();
        if (d < 0) return -1;
        if (d == 0) {
          *full = true;
          return static_cast<ssize_t>(taken);
        }
      }
      int r = tls_->Write(p, std::min(kTlsChunk, left));
      if (r < 0) return -1;
      tls_->TakeOutput(&cipher_);
      p += r;
      left -= static_cast<size_t>(r);
      taken += static_cast<size_t>(r);
    }
  }
  return static_cast<ssize_t>(taken);
}

ssize_t JsWire::Write(const iovec* iov, int n, bool* full) {
  if (unacked_ >= kJsWireWindow) {
    *full = true;
    return 0;
  }
  size_t total = 0;
  for (int i = 0; i < n; i++) total += iov[i].iov_len;
  size_t take = std::min(total, kJsWireWindow - unacked_);
  uint8_t* block = BufAlloc(take ? take : 1);
  if (!block) return -1;
  size_t off = 0;
  for (int i = 0; i < n && off < take; i++) {
    size_t c = std::min(iov[i].iov_len, take - off);
    memcpy(block + off, iov[i].iov_base, c);
    off += c;
  }
  // The Buffer JavaScript gets owns the block from here.
  ctx_->Emit(kEvWireOut, id_, static_cast<uint32_t>(take),
             ctx_->AddBlob(ObjItem::kBuffer, block, take));
  unacked_ += take;
  if (take < total) *full = true;
  return static_cast<ssize_t>(take);
}

bool JsWire::HalfClose() {
  ctx_->Emit(kEvWireCtl, id_, kWireEnd);
  return true;
}

void JsWire::SetReading(bool on) { ctx_->Emit(kEvWireCtl, id_, on ? kWireResume : kWirePause); }

void JsWire::Closed() { ctx_->Emit(kEvWireCtl, id_, kWireDestroy); }

}  // namespace nlws
