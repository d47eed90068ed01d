// permessage-deflate (RFC 7692): negotiation and the per-connection zlib
// streams. Service thread only (the fuzz harness drives it too).
#pragma once

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nlws {

struct DeflateOptions {
  bool enabled = false;
  uint32_t threshold = 1024;  // smaller messages are sent uncompressed
  int level = 1;
  int server_max_window_bits = 15;
  int client_max_window_bits = 15;
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
};

class PerMessageDeflate {
 public:
  // Server: picks the first acceptable offer in a Sec-WebSocket-Extensions
  // value. Returns null when there is none; *response is the header value.
  static std::unique_ptr<PerMessageDeflate> Negotiate(const DeflateOptions& opts,
                                                      const std::string& offers,
                                                      std::string* response);
  // Client: the offer to send.
  static std::string Offer(const DeflateOptions& opts);
  // Client: accepts the server's response to our offer; null and *error if invalid.
  static std::unique_ptr<PerMessageDeflate> Accept(const DeflateOptions& opts,
                                                   const std::string& response, std::string* error);
  ~PerMessageDeflate();

  // Inflates compressed message bytes into *out (grown as needed, never past
  // `limit`), producing at most `budget` bytes. Sets *used to the input bytes
  // consumed and *more when zlib may have more output for them (call again,
  // with the rest of the input or none). Returns 0, -1 on corrupt data, -2
  // when the message would pass `limit`. End each message's input with kTail
  // (RFC 7692 7.2.2), then call EndMessage().
  int Inflate(const uint8_t* in, size_t n, size_t* used, bool* more, uint8_t** out, size_t* out_len,
              size_t* out_cap, size_t limit, size_t budget);
  void EndMessage();
  static const uint8_t kTail[4];
  // Between messages: ends the inflate stream when the peer does not keep its
  // context (the next compressed message makes a new one).
  void ReleaseInflate();
  // An inflate stream ReleaseInflate() would end.
  bool holds_inflate() const { return in_ok_ && inflate_reset_; }

  // Compresses one message (final, tail removed) into *out.
  bool Deflate(const uint8_t* in, size_t n, std::vector<uint8_t>* out);

  uint32_t threshold() const { return opts_.threshold; }
  // Our messages do not depend on earlier ones (server: no context
  // takeover on our side), so one compressed frame can serve every
  // connection with the same window and level (publish).
  bool independent() const { return deflate_reset_; }
  int deflate_bits() const { return deflate_bits_ < 9 ? 9 : deflate_bits_; }
  int level() const { return opts_.level; }

 private:
  PerMessageDeflate() = default;
  bool EnsureDeflate();  // out_, made on the first message compressed
  bool EnsureInflate();  // in_, made on the first compressed message received

  DeflateOptions opts_;
  // Window bits and takeover as agreed for each direction.
  int inflate_bits_ = 15;
  int deflate_bits_ = 15;
  bool inflate_reset_ = false;  // the peer does not keep its context
  bool deflate_reset_ = false;  // we do not keep ours
  z_stream in_ = {};
  z_stream out_ = {};
  bool in_ok_ = false;
  bool out_ok_ = false;
  bool ended_ = false;  // the peer set BFINAL: the rest of this message is ignored
};

// Compressors for frames shared by several connections (publish): one zlib
// stream per window size and level, reset after every message.
class SharedDeflaters {
 public:
  SharedDeflaters() = default;
  SharedDeflaters(const SharedDeflaters&) = delete;
  SharedDeflaters& operator=(const SharedDeflaters&) = delete;
  ~SharedDeflaters();
  // One whole message, final, tail removed (RFC 7692 7.2.1).
  bool Compress(int window_bits, int level, const uint8_t* in, size_t n, std::vector<uint8_t>* out);

 private:
  struct Entry {
    int bits;
    int level;
    z_stream z;
  };
  std::vector<std::unique_ptr<Entry>> entries_;
};

}  // namespace nlws
