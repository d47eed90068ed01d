// Every byte a connection writes goes through its Wire: one write queue
// (control frames ahead of queued data, never inside a partly written frame)
// and one of four transports behind it:
//
//   PlainWire      sendmsg() (send() for one piece) straight to the socket:
//                  many queued frames leave in one system call; a static
//                  file's body goes by sendfile(), from the page cache;
//   LwsTlsWire     server TLS: lws_write() on the lws wsi, which encrypts and
//                  keeps what the socket does not take;
//   ClientTlsWire  wss:// clients: OpenSSL over memory BIOs (tls_client.h),
//                  ciphertext sent on our own socket;
//   JsWire         a stream that lives in JavaScript (a TLS socket of Node's
//                  https.Server handed over by server.handleUpgrade, or any
//                  Duplex): bytes go to JavaScript as events.
//
// "Write everything, then close" means the same on each: Flush() reports
// kIdle only once the transport holds nothing more either.
//
// Service thread only.
#pragma once

#include <libwebsockets.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tls_client.h"

namespace nlws {

class Context;

// A frame built once and queued on many connections (publish): reference
// counted by the queues holding it, freed when the last one has written or
// dropped it. Created on the main thread with one reference, which the
// publish Command hands over; from then on only the service thread touches
// it, so the count needs no atomics.
struct SharedFrame {
  int refs = 1;
  uint8_t* block = nullptr;  // BufAlloc'd: the whole frame
  size_t len = 0;            // frame length
  // The context's send total (Context::send_held): counts `len` once,
  // however many queues hold the frame; Count() adds it, the last Unref
  // takes it off.
  std::atomic<int64_t>* held = nullptr;
  size_t header_len = 0;  // the payload is block + header_len
  uint8_t opcode = 0;
  void Ref() { refs++; }
  void Unref();  // frees at zero
  void Count(std::atomic<int64_t>* total) {
    held = total;
    held->fetch_add(static_cast<int64_t>(len), std::memory_order_relaxed);
  }
  size_t payload_len() const { return len - header_len; }
  const uint8_t* payload() const { return block + header_len; }
};

// A JavaScript value a frame's payload points into (send() of a large Buffer
// without copying it): see JsRef in batch.h. The owner releases it (FrameDone).
struct JsRef;

// One frame (or an HTTP response block) in a write queue: `head` (a frame
// header kept inline, when the payload lives elsewhere) and then `data`.
struct OutFrame {
  enum Kind : uint8_t { kData, kClose, kPing, kPong };
  const uint8_t* data = nullptr;
  size_t len = 0;
  uint8_t* block = nullptr;       // BufAlloc'd memory freed once written or dropped (or null)
  SharedFrame* shared = nullptr;  // or a shared frame, unreferenced once written or dropped
  JsRef* js = nullptr;            // or a JS Buffer, released by the owner (FrameDone)
  size_t payload = 0;             // bytes counted in ConnShared::buffered
  Kind kind = kData;
  uint8_t head_len = 0;
  uint8_t head[14];
  size_t size() const { return head_len + len; }
};

// Told about every frame that leaves the queue, written or dropped, before
// the Wire frees it.
class WireOwner {
 public:
  virtual ~WireOwner() = default;
  virtual void FrameDone(const OutFrame& f, bool written) = 0;
  // Asks the socket for one writable report (the owner then calls Flush);
  // false when there is nothing to ask yet (no socket, or a JavaScript stream
  // whose acknowledgements resume the Flush).
  virtual bool WantWritable() = 0;
};

class Wire {
 public:
  enum class Status : uint8_t {
    kIdle,     // everything is written
    kBlocked,  // the socket is full; its writable report resumes the Flush
    kBroken,   // the peer is gone: nothing more can be written
  };

  explicit Wire(WireOwner* owner) : owner_(owner) {}
  virtual ~Wire();  // the owner must have called Drop(false) first
  Wire(const Wire&) = delete;
  Wire& operator=(const Wire&) = delete;

  // Queues in order after everything queued before.
  void Push(const OutFrame& f) { data_.push_back(f); }
  // Queues a copy of a small frame (n <= kCoalesce): appended to the last
  // queued frame when that is a block of the queue's own (not shared, not a
  // JavaScript Buffer, not a close) with room up to kCoalesceBlock bytes,
  // else in a new block. Many small frames then cost one queue entry, one
  // FrameDone and one iovec, as uWS's cork buffer does. False when out of
  // memory (nothing queued).
  bool PushCopy(const uint8_t* p, size_t n, size_t payload);
  static constexpr size_t kCoalesce = 1024;
  static constexpr size_t kCoalesceBlock = 16 * 1024;
  // Queues a control frame ahead of queued data (after a partly written
  // frame and after earlier control frames). A pong replaces an earlier pong
  // that has not started to be written (RFC 6455 5.5.3: answering the
  // latest ping is enough), so a ping flood queues at most one.
  void PushControl(const OutFrame& f);
  // Writes n bytes at p at once when nothing is queued ahead of them (a
  // connection's first answer): what the socket takes needs no copy and no
  // queue entry. Returns how many bytes it took (0 when something is queued
  // or the socket takes none now), -1 when the peer is gone.
  ssize_t WriteNow(const uint8_t* p, size_t n);
  // Drops queued frames; keep_partial keeps a partly written frame (the
  // stream breaks without its end).
  void Drop(bool keep_partial);
  Status Flush();
  bool empty() const { return data_.empty() && ctrl_.empty(); }
  size_t queued_frames() const { return data_.size() + ctrl_.size(); }
  // After the last byte: the plain wire sends FIN and returns true (the
  // caller lingers until the peer closes); TLS wires return false (drop).
  virtual bool HalfClose() { return false; }
  // Sends up to `max` bytes of an open file from its current offset, for a
  // transport that can do it without copying them through this process (the
  // plain socket: sendfile()); call only once Flush() has reported kIdle.
  // kSent: *sent bytes went out (the offset moved on); kBlocked: the socket is
  // full, a writable report was asked for; kBroken: the peer is gone;
  // kFileEnded: the file is shorter than expected, or could not be read;
  // kUnsupported: this transport cannot, queue the bytes instead.
  enum class FileStatus : uint8_t { kSent, kBlocked, kBroken, kFileEnded, kUnsupported };
  virtual FileStatus SendFile(int file_fd, size_t max, size_t* sent);
  void RequestWritable();
  void WritableArrived() { want_writable_ = false; }
  // Gives back the memory of empty queues (an idle connection keeps none).
  void Trim();

 protected:
  // Hands bytes to the transport; returns how many it took, -1 when the
  // peer is gone. *full: it will take no more until POLLOUT.
  virtual ssize_t Write(const iovec* iov, int n, bool* full) = 0;
  // Sends what the transport holds already; 1 done, 0 not yet, -1 broken.
  virtual int Drain() { return 1; }

 private:
  // The vector-with-a-moving-head queue: allocates nothing while empty,
  // which matters at 10,000 idle connections.
  class Queue {
   public:
    bool empty() const { return head_ == v_.size(); }
    size_t size() const { return v_.size() - head_; }
    OutFrame& operator[](size_t i) { return v_[head_ + i]; }
    OutFrame& back() { return v_.back(); }
    void push_back(const OutFrame& f) { v_.push_back(f); }
    OutFrame& emplace_back() { return v_.emplace_back(); }
    void pop_back();
    void pop_front();
    void Release() {
      if (empty()) {
        std::vector<OutFrame>().swap(v_);
        head_ = 0;
      }
    }

   private:
    void Compact();
    std::vector<OutFrame> v_;
    size_t head_ = 0;
  };

  OutFrame* At(size_t i);  // i-th frame in write order
  void Pop();              // removes the first frame in write order
  void Done(const OutFrame& f, bool written);

  WireOwner* owner_;
  Queue data_;
  Queue ctrl_;
  size_t off_ = 0;             // bytes of the first frame in write order already written
  bool partial_data_ = false;  // that frame is data_[0] (written before ctrl_)
  bool want_writable_ = false;
};

class PlainWire : public Wire {
 public:
  PlainWire(WireOwner* owner, int fd) : Wire(owner), fd_(fd) {}
  bool HalfClose() override;
  FileStatus SendFile(int file_fd, size_t max, size_t* sent) override;

 protected:
  ssize_t Write(const iovec* iov, int n, bool* full) override;

 private:
  int fd_;
};

class LwsTlsWire : public Wire {
 public:
  using Wire::Wire;
  void Attach(lws* wsi) { wsi_ = wsi; }

 protected:
  ssize_t Write(const iovec* iov, int n, bool* full) override;
  int Drain() override;

 private:
  lws* wsi_ = nullptr;
};

class ClientTlsWire : public Wire {
 public:
  ClientTlsWire(WireOwner* owner, int fd, std::unique_ptr<TlsClient> tls)
      : Wire(owner), fd_(fd), tls_(std::move(tls)) {}
  TlsClient* tls() const { return tls_.get(); }
  // Application data may flow once the TLS handshake is done.
  void SetUp() { up_ = true; }
  bool up() const { return up_; }

 protected:
  ssize_t Write(const iovec* iov, int n, bool* full) override;
  int Drain() override;

 private:
  int fd_;
  std::unique_ptr<TlsClient> tls_;
  bool up_ = false;
  std::string cipher_;  // ciphertext waiting for the socket
  size_t cipher_off_ = 0;
};

// JsWire: Write() copies the bytes into one buffer and hands it to
// JavaScript (kEvWireOut), which writes it to its stream and acknowledges it
// (Ack, from a kWireAck command) as soon as the stream took it: write()
// returned true, or 'drain' followed a false. At most kJsWireWindow bytes are
// unacknowledged; past that the transport is full, as a socket is at EAGAIN,
// and the next Ack resumes the Flush. Events keep their order, so everything
// handed over is written to the stream before the end() that HalfClose() asks
// for: "flush then close" holds as on the other wires.
//
// The stream's reading is JavaScript's too: SetReading() asks it to pause or
// resume (receive flow control), Closed() to destroy it.
class JsWire : public Wire {
 public:
  static constexpr size_t kJsWireWindow = 1024 * 1024;

  JsWire(WireOwner* owner, Context* ctx, uint32_t id) : Wire(owner), ctx_(ctx), id_(id) {}
  // Ends the stream after the bytes already handed over, then lingers as
  // PlainWire does (the peer's end arrives as the end of the input).
  bool HalfClose() override;
  void Ack(size_t n) { unacked_ = n < unacked_ ? unacked_ - n : 0; }
  void SetReading(bool on);
  void Closed();  // the connection is gone: JavaScript destroys the stream

 protected:
  ssize_t Write(const iovec* iov, int n, bool* full) override;

 private:
  Context* ctx_;
  uint32_t id_;
  size_t unacked_ = 0;  // handed to JavaScript, not yet taken by its stream
};

// Gives back the blocks of PushCopy() this thread keeps for reuse that no
// flush needed since the previous call; returns the bytes freed. Called by the
// service thread about once a second.
size_t TrimWireBlocks();
// The bytes those blocks take on every thread (any thread may ask).
size_t WireCachedBytes();

// Frees what a frame owns (its block, or its reference to a shared frame; a
// JsRef is the owner's to release).
void ReleaseFrame(OutFrame& f);

}  // namespace nlws
