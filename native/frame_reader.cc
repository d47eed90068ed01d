#include "frame_reader.h"

#include <string.h>

#include <algorithm>

#include "buffers.h"

namespace nlws {

namespace {

// Reassembly buffers up to this size are kept for the next message.
constexpr size_t kKeepBuffer = 16 * 1024;

}  // namespace

FrameReader::FrameReader(FrameSink* sink, bool client, uint64_t max_payload)
    : sink_(sink), max_payload_(max_payload), client_(client) {}

FrameReader::~FrameReader() {
  BufFree(msg_);
  BufFree(ctrl_);
}

void FrameReader::Trim() {
  if (in_message_ || in_frame_ || busy()) return;
  BufFree(msg_);
  msg_ = nullptr;
  msg_cap_ = 0;
  if (z_) {
    // The compressed input of the last message (up to 256 KiB kept between
    // messages), and the inflate stream when the peer does not keep its
    // context: a connection that once received a large compressed message
    // held them for as long as it stayed idle.
    std::vector<uint8_t>().swap(z_->in);
    z_->off = 0;
    z_->pmd->ReleaseInflate();
  }
}

void FrameReader::Abandon() {
  done_ = true;
  in_message_ = false;
  in_frame_ = false;
  frame_end_pending_ = false;
  msg_len_ = 0;
  if (z_) {
    z_->off = z_->in.size();  // nothing left to inflate
    z_->more = false;
  }
  Trim();  // between messages now: gives every buffer back
}

bool FrameReader::holds_buffer() const {
  return msg_ != nullptr || (z_ && (z_->in.capacity() > 0 || z_->pmd->holds_inflate()));
}

void FrameReader::EnableDeflate(std::unique_ptr<PerMessageDeflate> pmd) {
  if (!pmd) {
    z_.reset();
    return;
  }
  if (!z_) z_.reset(new Inflation());
  z_->pmd = std::move(pmd);
}

void FrameReader::Fail(uint16_t code, const char* why) {
  if (done_) return;
  done_ = true;
  if (z_) {
    z_->in.clear();
    z_->off = 0;
  }
  sink_->OnReadError(code, why);
}

size_t FrameReader::Feed(const uint8_t* p, size_t n) {
  if (done_) return n;
  const size_t total = n;
  if (z_) z_->budget = kInflateBudget;
  if (busy() || frame_end_pending_) {
    // Inflation left over from the previous call goes first.
    if (!Inflate()) return total;
    if (busy()) return 0;
    if (frame_end_pending_) {
      frame_end_pending_ = false;
      EndFrame();
      if (done_) return total;
    }
  }
  while (n > 0 && !done_) {
    if (yield_) {
      yield_ = false;
      return total - n;
    }
    if (!in_frame_) {
      int r;
      if (hdr_have_ == 0) {
        r = ParseFrameHeader(p, n, &fh_);
        if (r == 0) {  // n is shorter than this header
          memcpy(hdr_buf_, p, n);
          hdr_have_ = static_cast<uint8_t>(n);
          return total;
        }
        if (r > 0) {
          p += r;
          n -= static_cast<size_t>(r);
        }
      } else {
        size_t add = std::min(n, kMaxFrameHeader - hdr_have_);
        memcpy(hdr_buf_ + hdr_have_, p, add);
        r = ParseFrameHeader(hdr_buf_, hdr_have_ + add, &fh_);
        if (r == 0) {
          hdr_have_ = static_cast<uint8_t>(hdr_have_ + add);
          return total;  // add == n here
        }
        if (r > 0) {
          size_t used = static_cast<size_t>(r) - hdr_have_;
          p += used;
          n -= used;
          hdr_have_ = 0;
        }
      }
      if (r < 0) {
        Fail(kCloseProtocolError, "Frame length has its most significant bit set");
        return total;
      }
      if (!StartFrame()) return total;
      size_t len = static_cast<size_t>(fh_.length);
      bool control = (fh_.opcode & 0x8) != 0;
      if (len <= n && (control || (fh_.fin && fh_.opcode != kOpContinuation && !msg_compressed_))) {
        // The whole frame is in this read: a control frame, or an
        // unfragmented uncompressed message. Unmask it straight to where it
        // goes.
        if (control) {
          uint8_t buf[125];
          CopyPayload(buf, p, len, 0);
          p += len;
          n -= len;
          HandleControl(buf, len);
          continue;
        }
        uint8_t* room = sink_->MessageRoom(len);
        if (room) {
          CopyPayload(room, p, len, 0);
          p += len;
          n -= len;
          in_message_ = false;
          bool text = fh_.opcode == kOpText;
          if (text && !(utf8_.Feed(room, len) && utf8_.Complete())) {
            Fail(kCloseInvalidData, "Invalid UTF-8 in a text message");
            return total;
          }
          ReadMessage m{text, text && utf8_.ascii(), true, room, len};
          if (!sink_->OnMessage(m)) done_ = true;
          continue;
        }
      }
      in_frame_ = true;
      frame_remaining_ = fh_.length;
      mask_phase_ = 0;
      ctrl_len_ = 0;
      if (frame_remaining_ == 0) {
        in_frame_ = false;
        EndFrame();
        continue;
      }
    }
    if (n == 0) break;  // the header took the last byte of this read
    size_t take = static_cast<size_t>(std::min<uint64_t>(n, frame_remaining_));
    ConsumePayload(p, take);
    if (done_) return total;
    p += take;
    n -= take;
    frame_remaining_ -= take;
    if (frame_remaining_ == 0) {
      in_frame_ = false;
      if (msg_compressed_ && !(fh_.opcode & 0x8)) {
        if (fh_.fin)
          z_->in.insert(z_->in.end(), PerMessageDeflate::kTail, PerMessageDeflate::kTail + 4);
        if (!Inflate()) return total;
        if (busy()) {
          frame_end_pending_ = true;
          return total - n;
        }
      }
      EndFrame();
    } else if (busy()) {
      return total - n;  // the budget ran out inside a compressed frame
    }
  }
  yield_ = false;  // the input ended with the event that asked for it
  return total;
}

bool FrameReader::StartFrame() {
  // RSV1 marks the first frame of a compressed message (permessage-deflate).
  bool rsv1_ok = z_ && fh_.rsv == 0x4 && (fh_.opcode == kOpText || fh_.opcode == kOpBinary);
  if (fh_.rsv && !rsv1_ok) {
    Fail(kCloseProtocolError, z_ ? "RSV bits set where permessage-deflate allows none"
                                 : "RSV bits set but no extension was negotiated");
    return false;
  }
  switch (fh_.opcode) {
    case kOpContinuation:
    case kOpText:
    case kOpBinary:
    case kOpClose:
    case kOpPing:
    case kOpPong:
      break;
    default:
      Fail(kCloseProtocolError, "Unknown opcode");
      return false;
  }
  if (!client_ && !fh_.masked) {
    Fail(kCloseProtocolError, "Client frame is not masked");
    return false;
  }
  if (client_ && fh_.masked) {
    Fail(kCloseProtocolError, "Server frame is masked");
    return false;
  }
  if (fh_.opcode & 0x8) {
    if (!fh_.fin) {
      Fail(kCloseProtocolError, "Fragmented control frame");
      return false;
    }
    if (fh_.length > 125) {
      Fail(kCloseProtocolError, "Control frame payload longer than 125 bytes");
      return false;
    }
    return true;
  }
  if (fh_.opcode == kOpContinuation) {
    if (!in_message_) {
      Fail(kCloseProtocolError, "Continuation frame with no message to continue");
      return false;
    }
  } else {
    if (in_message_) {
      Fail(kCloseProtocolError, "New data frame while a fragmented message is incomplete");
      return false;
    }
    in_message_ = true;
    msg_opcode_ = fh_.opcode;
    msg_len_ = 0;
    msg_compressed_ = fh_.rsv == 0x4;
    utf8_.Reset();
  }
  if (fh_.length > max_payload_ || msg_len_ + fh_.length > max_payload_) {
    Fail(kCloseTooBig, "Message is larger than maxPayload");
    return false;
  }
  return true;
}

bool FrameReader::Reserve(size_t need, size_t hint) {
  if (need <= msg_cap_) return true;
  size_t cap = std::max(need, hint);
  if (cap < msg_cap_ * 2) cap = std::min<size_t>(msg_cap_ * 2, max_payload_);
  if (cap < need) cap = need;
  uint8_t* p = BufRealloc(msg_, cap, msg_len_);
  if (!p) {
    Fail(kCloseInternalError, "Out of memory for a message");
    return false;
  }
  msg_ = p;
  msg_cap_ = cap;
  return true;
}

void FrameReader::CopyPayload(uint8_t* dst, const uint8_t* p, size_t n, size_t phase) const {
  if (fh_.masked)
    ApplyMask(dst, p, n, fh_.mask, phase);
  else if (n)
    memcpy(dst, p, n);
}

void FrameReader::ConsumePayload(const uint8_t* p, size_t n) {
  if (fh_.opcode & 0x8) {
    if (!ctrl_) {
      ctrl_ = BufAlloc(125);
      if (!ctrl_) {
        Fail(kCloseInternalError, "Out of memory");
        return;
      }
    }
    CopyPayload(ctrl_ + ctrl_len_, p, n, mask_phase_);
    ctrl_len_ = static_cast<uint8_t>(ctrl_len_ + n);
    Advance(n);
    return;
  }
  if (msg_compressed_) {
    // Unmasked into z_->in; Inflate() takes it from there within the budget.
    size_t at = z_->in.size();
    z_->in.resize(at + n);
    CopyPayload(z_->in.data() + at, p, n, mask_phase_);
    Advance(n);
    if (frame_remaining_ > n) Inflate();  // the frame's end inflates in Feed()
    return;
  }
  // A final frame announces the whole remaining size: allocate it at once.
  size_t hint = fh_.fin ? msg_len_ + static_cast<size_t>(frame_remaining_) : 0;
  if (!Reserve(msg_len_ + n, hint)) return;
  CopyPayload(msg_ + msg_len_, p, n, mask_phase_);
  Accept(n);
}

void FrameReader::Accept(size_t n) {
  Advance(n);
  if (msg_opcode_ == kOpText && !utf8_.Feed(msg_ + msg_len_, n)) {
    Fail(kCloseInvalidData, "Invalid UTF-8 in a text message");
    return;
  }
  msg_len_ += n;
}

uint8_t* FrameReader::PayloadRoom(size_t min, size_t* n) {
  if (done_ || !in_frame_ || (fh_.opcode & 0x8) || msg_compressed_ || frame_remaining_ < min)
    return nullptr;
  size_t rest = static_cast<size_t>(frame_remaining_);
  if (!Reserve(msg_len_ + rest, fh_.fin ? msg_len_ + rest : 0)) return nullptr;
  *n = rest;
  return msg_ + msg_len_;
}

void FrameReader::PayloadArrived(size_t n) {
  uint8_t* dst = msg_ + msg_len_;
  if (fh_.masked) ApplyMask(dst, dst, n, fh_.mask, mask_phase_);
  Accept(n);
  if (done_) return;
  frame_remaining_ -= n;
  if (frame_remaining_ == 0) {
    in_frame_ = false;
    EndFrame();
  }
  yield_ = false;  // the caller stops after this read anyway
}

bool FrameReader::Inflate() {
  Inflation& z = *z_;  // set: a compressed message needs permessage-deflate
  while (z.budget > 0 && busy()) {
    size_t used = 0;
    bool more = false;
    size_t before = msg_len_;
    int r = z.pmd->Inflate(z.in.data() + z.off, z.in.size() - z.off, &used, &more, &msg_, &msg_len_,
                           &msg_cap_, max_payload_, z.budget);
    z.off += used;
    z.more = more;
    size_t produced = msg_len_ - before;
    z.budget -= std::min(z.budget, produced);
    // What was inflated is checked before the error that stopped it, so that
    // the verdict does not depend on how the input was split.
    if (msg_opcode_ == kOpText && !utf8_.Feed(msg_ + before, produced)) {
      Fail(kCloseInvalidData, "Invalid UTF-8 in a text message");
      return false;
    }
    if (r == -2) {
      Fail(kCloseTooBig, "Message inflates past maxPayload");
      return false;
    }
    if (r < 0) {
      Fail(kCloseInvalidData, "Invalid compressed data");
      return false;
    }
    if (produced == 0 && used == 0) {
      z.more = false;  // no progress possible: wait for more input
      break;
    }
  }
  if (!busy()) {
    z.in.clear();
    z.off = 0;
    if (z.in.capacity() > 256 * 1024) std::vector<uint8_t>().swap(z.in);
  }
  return true;
}

void FrameReader::EndFrame() {
  if (fh_.opcode & 0x8) {
    HandleControl(ctrl_, ctrl_len_);
    return;
  }
  if (fh_.fin) DeliverMessage();
}

void FrameReader::DeliverMessage() {
  in_message_ = false;
  bool text = msg_opcode_ == kOpText;
  if (msg_compressed_) z_->pmd->EndMessage();
  if (text && !utf8_.Complete()) {
    Fail(kCloseInvalidData, "Invalid UTF-8 in a text message");
    return;
  }
  if (!msg_) {  // an empty message still needs a buffer to point into
    msg_ = BufAlloc(1);
    msg_cap_ = msg_ ? 1 : 0;
    if (!msg_) {
      Fail(kCloseInternalError, "Out of memory for a message");
      return;
    }
  }
  ReadMessage m{text, text && utf8_.ascii(), false, msg_, msg_len_};
  bool go_on = sink_->OnMessage(m);
  if (!m.data) {  // the sink took the buffer
    msg_ = nullptr;
    msg_cap_ = 0;
  } else if (msg_cap_ > kKeepBuffer) {
    BufFree(msg_);
    msg_ = nullptr;
    msg_cap_ = 0;
  }
  msg_len_ = 0;
  if (!go_on) done_ = true;
}

void FrameReader::HandleControl(const uint8_t* payload, size_t n) {
  switch (fh_.opcode) {
    case kOpPing:
      sink_->OnPing(payload, n);
      return;
    case kOpPong:
      sink_->OnPong(payload, n);
      return;
    case kOpClose:
      break;
    default:
      return;
  }
  if (n == 1) {
    Fail(kCloseProtocolError, "Close frame with a 1-byte payload");
    return;
  }
  uint16_t code = kCloseNoStatus;
  if (n >= 2) {
    code = static_cast<uint16_t>((payload[0] << 8) | payload[1]);
    if (!IsValidCloseCode(code)) {
      Fail(kCloseProtocolError, "Invalid close code");
      return;
    }
    if (!IsValidUtf8(payload + 2, n - 2)) {
      Fail(kCloseProtocolError, "Close reason is not valid UTF-8");
      return;
    }
  }
  done_ = true;
  sink_->OnCloseFrame(code, n >= 2 ? payload + 2 : nullptr, n >= 2 ? n - 2 : 0);
}

}  // namespace nlws
