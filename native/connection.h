// One WebSocket connection on the service thread.
//
// lws owns the socket and its poll loop (the wsi is a raw socket); this class
// speaks RFC 6455 on top: the HTTP upgrade, frame parsing with unmasking and
// UTF-8 validation, message reassembly up to maxPayload, control frames, the
// close handshake, and a write queue flushed with writev() straight to the
// socket so that many queued messages leave in one system call.
#pragma once

#include <libwebsockets.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "context.h"
#include "tls_client.h"
#include "ws_protocol.h"

namespace nlws {

class Listener;

struct OutFrame {
  uint8_t* data;  // malloc'd, freed once written
  size_t len;
  size_t payload;         // bytes counted in ConnShared::buffered
  bool close;             // a close frame
  bool priority = false;  // a control frame that jumped the queue
};

// The write queue: a vector with a moving head. Unlike std::deque it
// allocates nothing until the first frame, which matters at 10,000 idle
// connections.
class FrameQueue {
 public:
  bool empty() const { return head_ == v_.size(); }
  size_t size() const { return v_.size() - head_; }
  OutFrame& front() { return v_[head_]; }
  OutFrame& back() { return v_.back(); }
  OutFrame& operator[](size_t i) { return v_[head_ + i]; }
  std::vector<OutFrame>::iterator begin() {
    return v_.begin() + static_cast<std::ptrdiff_t>(head_);
  }
  std::vector<OutFrame>::iterator end() { return v_.end(); }
  void push_back(const OutFrame& f) { v_.push_back(f); }
  void insert(size_t pos, const OutFrame& f) {
    v_.insert(v_.begin() + static_cast<std::ptrdiff_t>(head_ + pos), f);
  }
  void pop_back() {
    v_.pop_back();
    Compact();
  }
  void pop_front() {
    head_++;
    Compact();
  }

 private:
  void Compact() {
    if (head_ == v_.size()) {
      v_.clear();
      head_ = 0;
      if (v_.capacity() > 64) std::vector<OutFrame>().swap(v_);  // give back a burst's memory
    } else if (head_ > 32 && head_ * 2 > v_.size()) {
      v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  std::vector<OutFrame> v_;
  size_t head_ = 0;
};

class Conn {
 public:
  Conn(Context* ctx, Listener* server, int fd, std::string remote_address, int remote_port);
  ~Conn();

  // Adopts a connecting client socket (kConnect); takes ownership of cfg.
  static void StartClient(Context* ctx, ClientConfig* cfg);

  // lws callbacks
  void Attach(lws* wsi);
  void OnReadable(const uint8_t* in, size_t len);
  void OnWritable();
  void OnClosed();  // deletes this

  // commands from JavaScript
  void Send(uint8_t* frame, size_t len, size_t payload);
  // permessage-deflate: compress `payload` (malloc'd, bare) and queue it as one frame.
  void SendCompressed(uint8_t* payload, size_t len, uint8_t opcode);
  void CloseFromJs(uint8_t* frame, size_t len, uint16_t code);
  void Terminate();
  void AcceptUpgrade(const std::string& protocol);  // after JavaScript's verify()
  void RejectUpgrade(int status, const std::string& headers, const std::string& body);

  // From the server: close with 1001 (or drop a connection still in its handshake).
  void Shutdown();

  void Flush();  // writes queued frames now; called once per command batch
  void FlushTls();
  void CloseSocketNow();  // LWS_TO_KILL_SYNC: OnClosed runs (and deletes this) before it returns
  ConnShared* shared() const { return shared_; }
  std::list<Conn*>::iterator server_it;
  bool dirty = false;
  bool kill_pending = false;
  bool tls = false;       // server side: lws does TLS, bytes go through lws_write()
  bool adopting = false;  // inside lws_adopt_*: OnClosed must not delete
  bool closed_in_adopt = false;

 private:
  enum class State : uint8_t { kConnecting, kHandshake, kVerifying, kOpen, kClosed };

  explicit Conn(Context* ctx, ClientConfig* cfg);

  // handshake
  void OnHandshakeData(const uint8_t* in, size_t len);
  void OnClientHandshakeData(const uint8_t* in, size_t len);
  void QueueRequest();
  void OnTlsData(const uint8_t* in, size_t len);  // wss client: ciphertext in
  void FlushTlsClient();
  void FailHandshake(const char* code, std::string message, int status = 0);
  void EmitConnectError();
  void RejectHandshake(int status, const char* message, const char* extra_headers = "");
  // An HTTP response, then the connection closes once it is written.
  void SendHttp(int status, const char* content_type, const uint8_t* body, size_t body_len,
                const std::string& extra_headers, bool head_only);
  void ServeHttp(const HttpRequest& req);  // requests without an upgrade
  void ServeStatic(const std::string& target, bool head_only);
  void CompleteUpgrade(const std::string& protocol);
  void OpenEstablished();  // state kOpen: heartbeat, counters
  void StartHeartbeat();
  static void OnHeartbeat(lws_sorted_usec_list_t* sul);
  // frames
  void ParseFrames(const uint8_t* p, size_t n);
  bool StartFrame(size_t available);
  void ConsumePayload(const uint8_t* p, size_t n);
  void EndFrame();
  void DeliverMessage();
  void HandleControl();
  void EnableDeflate(std::unique_ptr<PerMessageDeflate> pmd);
  // close
  void Fail(uint16_t code, const char* why);  // sends a close frame, then drops TCP
  void QueueClose(uint16_t code, const std::string& reason, bool priority);
  void CloseHandshakeDone();
  // output
  void Enqueue(OutFrame f, bool priority);
  void RequestWritable();
  void Kill();
  void SetTimer(uint32_t ms);
  static void OnTimer(lws_sorted_usec_list_t* sul);
  void DropQueue(bool keep_head);
  void FrameDone(const OutFrame& f, bool written);
  void Reserve(size_t need, size_t total_hint);

  Context* ctx_;
  Listener* server_;
  ConnShared* shared_;
  lws* wsi_ = nullptr;
  int fd_;
  State state_ = State::kHandshake;
  std::string remote_address_;
  int remote_port_;
  uint64_t max_payload_;
  uint32_t handshake_timeout_ms_;
  uint32_t close_timeout_ms_;
  uint32_t max_header_bytes_;

  // server: between kEvUpgrade and kAccept/kReject
  std::string path_;
  std::string key_;
  std::vector<std::pair<std::string, std::string>> req_headers_;
  std::string pending_rx_;  // bytes that arrived while JavaScript decided

  // heartbeat
  uint32_t hb_interval_ms_ = 0;
  uint32_t hb_timeout_ms_ = 0;
  int64_t last_rx_us_ = 0;
  int64_t ping_at_us_ = 0;
  bool ping_outstanding_ = false;
  struct HbTimer {
    lws_sorted_usec_list_t sul;  // first member: the lws callback casts back
    Conn* owner;
  } hb_timer_ = {};
  bool counted_open_ = false;  // counted in the server's open connections

  // client only
  std::string request_;
  std::string accept_;
  std::vector<std::string> offered_;
  int connect_errno_ = 0;
  std::unique_ptr<TlsClient> tlsc_;  // wss client
  bool tls_up_ = false;
  std::string cipher_out_;
  size_t cipher_off_ = 0;
  bool timed_out_ = false;
  std::string hs_error_code_;
  std::string hs_error_message_;
  int hs_status_ = 0;

  // handshake input
  std::string hs_buf_;

  // frame parser
  uint8_t hdr_buf_[kMaxFrameHeader];
  size_t hdr_have_ = 0;
  FrameHeader fh_;
  bool in_frame_ = false;
  uint64_t frame_remaining_ = 0;
  size_t mask_phase_ = 0;
  bool rx_stopped_ = false;
  // message being assembled
  bool in_message_ = false;
  uint8_t msg_opcode_ = 0;
  uint8_t* msg_ = nullptr;
  size_t msg_len_ = 0;
  size_t msg_cap_ = 0;
  Utf8Validator utf8_;
  bool msg_compressed_ = false;
  bool text_as_buffer_ = false;  // textAs: 'buffer'
  std::unique_ptr<PerMessageDeflate> pmd_;
  DeflateOptions deflate_opts_;  // client: what was offered
  std::string ext_response_;     // server: the Sec-WebSocket-Extensions answer
  std::vector<uint8_t> scratch_;
  // control frame payload
  uint8_t ctrl_[125];
  size_t ctrl_len_ = 0;

  // output
  FrameQueue outq_;
  size_t head_off_ = 0;  // bytes of outq_.front() already written
  bool want_writable_ = false;
  bool kill_after_flush_ = false;
  bool lingering_ = false;  // our FIN is sent; waiting for the peer's
  bool killed_ = false;

  // close handshake
  bool close_sent_ = false;     // a close frame is queued or written
  bool close_written_ = false;  // ... and fully written
  bool close_received_ = false;
  uint16_t peer_code_ = kCloseNoStatus;
  std::string peer_reason_;
  uint16_t fail_code_ = 0;  // we failed the connection with this code
  std::string fail_reason_;

  struct Timer {
    lws_sorted_usec_list_t sul;  // first member: the lws callback casts back
    Conn* owner;
  } timer_ = {};
};

}  // namespace nlws
