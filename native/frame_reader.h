// The receiving half of RFC 6455 for one connection, with no socket: frame
// headers, unmasking, message reassembly up to maxPayload, UTF-8 validation
// (also across fragments), control frames and permessage-deflate inflation.
// What it finds it reports to a FrameSink; what it gets is whatever bytes
// arrived, split anywhere.
//
// Inflation is bounded per Feed() call: a message that inflates to more than
// kInflateBudget bytes takes several calls (busy() says so), so that one
// connection's decompression bomb cannot hold the service thread while other
// connections wait.
//
// Service thread (and the libFuzzer harness in fuzz/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "deflate.h"
#include "ws_frame.h"

namespace nlws {

// A complete message, as the reader hands it to the sink.
struct ReadMessage {
  bool text;
  bool ascii;     // text: every byte < 0x80
  bool in_room;   // data is the sink's MessageRoom() memory
  uint8_t* data;  // not in_room: the reader's BufAlloc'd buffer; the sink may take it (set
                  // data = nullptr; it then frees it with BufFree)
  size_t len;
};

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // Memory for a small unfragmented message that arrived whole in one read:
  // the reader unmasks it straight into it. Null: use the reader's buffer.
  // Nothing is committed until OnMessage.
  virtual uint8_t* MessageRoom(size_t len) = 0;
  // Returns false to stop reading (the connection is being dropped).
  virtual bool OnMessage(ReadMessage& m) = 0;
  virtual void OnPing(const uint8_t* p, size_t n) = 0;
  virtual void OnPong(const uint8_t* p, size_t n) = 0;
  // A valid close frame (code kCloseNoStatus when it had no payload). The
  // reader reads nothing more afterwards.
  virtual void OnCloseFrame(uint16_t code, const uint8_t* reason, size_t n) = 0;
  // A protocol violation: fail the connection with this close code. The
  // reader reads nothing more afterwards.
  virtual void OnReadError(uint16_t close_code, const char* why) = 0;
};

class FrameReader {
 public:
  static constexpr size_t kInflateBudget = 128 * 1024;

  // client: frames come from a server (unmasked); else from a client (masked).
  FrameReader(FrameSink* sink, bool client, uint64_t max_payload);
  ~FrameReader();
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;

  void EnableDeflate(std::unique_ptr<PerMessageDeflate> pmd);
  bool deflate() const { return z_ != nullptr; }
  PerMessageDeflate* pmd() const { return z_ ? z_->pmd.get() : nullptr; }

  // Parses up to n bytes; returns how many it consumed. Fewer than n when
  // this call's inflate budget ran out (busy() is then true: call again with
  // the rest, or with nothing), or when the sink called Yield() (call again
  // with the rest). After a close frame or an error it consumes everything
  // and reports nothing more.
  size_t Feed(const uint8_t* p, size_t n);
  // From a sink callback: stop after the event being reported. A read of
  // 256 KiB holds ~43,000 empty pings; the sink yields when its receive
  // budget is spent, so one read never queues more than that budget.
  void Yield() { yield_ = true; }
  bool busy() const { return z_ && (z_->off < z_->in.size() || z_->more); }
  bool done() const { return done_; }  // a close frame or an error was seen
  // Between messages: gives back the reassembly buffer kept for the next one.
  void Trim();
  bool holds_buffer() const;  // what Trim() may give back later
  // Bytes of input held for messages not delivered yet: the reassembly
  // buffer (its capacity) and compressed bytes waiting to be inflated.
  size_t held() const { return msg_cap_ + (z_ ? z_->in.capacity() : 0); }
  // Gives up the message being assembled and everything held for it, and
  // reads nothing more (the connection is being failed).
  void Abandon();

  // Reading a large payload straight into the message, for a caller that owns a
  // plain socket: when at least `min` payload bytes of an uncompressed data
  // frame are still to come, returns where they go (*n: how many); null
  // otherwise. The caller reads into it and reports what arrived with
  // PayloadArrived(), which unmasks in place and delivers the message at its
  // end; nothing is committed before that.
  uint8_t* PayloadRoom(size_t min, size_t* n);
  void PayloadArrived(size_t n);

 private:
  bool StartFrame();
  void ConsumePayload(const uint8_t* p, size_t n);
  bool Inflate();  // drains z_->in within the budget; false on error
  void EndFrame();
  void DeliverMessage();
  void HandleControl(const uint8_t* payload, size_t n);
  // Copies n payload bytes of the current frame from p to dst, unmasked when the frame is masked
  // (`phase`: how far into the payload they start).
  void CopyPayload(uint8_t* dst, const uint8_t* p, size_t n, size_t phase) const;
  // n unmasked payload bytes are at msg_ + msg_len_: validates and counts them.
  void Accept(size_t n);
  // n more payload bytes of this frame were unmasked.
  void Advance(size_t n) { mask_phase_ = static_cast<uint8_t>((mask_phase_ + n) & 3); }
  void Fail(uint16_t code, const char* why);
  bool Reserve(size_t need, size_t hint);

  FrameSink* sink_;
  uint64_t max_payload_;
  bool client_;
  bool done_ = false;
  bool yield_ = false;  // Yield() was called: Feed() returns at the next event boundary
  // frame being parsed
  uint8_t hdr_have_ = 0;
  uint8_t hdr_buf_[kMaxFrameHeader];
  bool in_frame_ = false;
  bool frame_end_pending_ = false;  // payload all read; its inflation is not finished
  // Narrow fields packed into what would be padding (a Conn holds its reader): the mask phase
  // is only ever used modulo 4, and a control frame's payload is at most 125 bytes.
  uint8_t mask_phase_ = 0;  // how far into the payload, modulo 4
  uint8_t ctrl_len_ = 0;    // bytes of the split control frame in ctrl_
  FrameHeader fh_;
  uint64_t frame_remaining_ = 0;
  // message being assembled
  bool in_message_ = false;
  bool msg_compressed_ = false;
  uint8_t msg_opcode_ = 0;
  Utf8Validator utf8_;
  uint8_t* msg_ = nullptr;  // BufAlloc'd
  size_t msg_len_ = 0;
  size_t msg_cap_ = 0;
  // a control frame split across reads
  uint8_t* ctrl_ = nullptr;  // 125 bytes, allocated on first use
  // permessage-deflate, once negotiated: a side allocation, so that the
  // connections without it (most of them) do not carry its state
  struct Inflation {
    std::unique_ptr<PerMessageDeflate> pmd;
    std::vector<uint8_t> in;  // unmasked compressed bytes not yet inflated
    size_t off = 0;
    bool more = false;  // zlib may hold more output for input it took
    size_t budget = 0;  // inflated bytes this Feed() may still produce
  };
  std::unique_ptr<Inflation> z_;
};

}  // namespace nlws
