#include "wire.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>

#include "buffers.h"
#include "context.h"

namespace nlws {

namespace {

constexpr int kMaxIov = 64;
constexpr size_t kTlsChunk = 64 * 1024;
constexpr size_t kMaxCipherBacklog = 1024 * 1024;

}  // namespace

void SharedFrame::Unref() {
  if (--refs > 0) return;
  BufFree(block);
  delete this;
}

void ReleaseFrame(OutFrame& f) {
  BufFree(f.block);
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

void Wire::RequestWritable() {
  if (!want_writable_) want_writable_ = owner_->WantWritable();
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
    iovec iov[kMaxIov];
    int cnt = 0;
    OutFrame* f;
    for (size_t i = 0; cnt + 2 <= kMaxIov && (f = At(i)) != nullptr; i++) {
      size_t skip = i == 0 ? off_ : 0;
      if (skip < f->head_len) {
        iov[cnt].iov_base = f->head + skip;
        iov[cnt++].iov_len = f->head_len - skip;
        skip = 0;
      } else {
        skip -= f->head_len;
      }
      if (f->len > skip) {
        iov[cnt].iov_base = const_cast<uint8_t*>(f->data) + skip;
        iov[cnt++].iov_len = f->len - skip;
      }
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
    w = sendmsg(fd_, &mh, MSG_NOSIGNAL);
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
