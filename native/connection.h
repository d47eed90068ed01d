// One WebSocket connection, server or client side: the state machine that
// ties its parts together.
//
//   bytes in  -> [client TLS] -> ServerHandshake / ClientHandshake (handshake.h)
//                             -> FrameReader (frame_reader.h) -> events to JS
//   frames out <- Wire (wire.h): plain, lws TLS or client TLS
//
// The Conn owns its socket (an EvSocket on the libev loop, or an lws wsi:
// server TLS, or lws's poll() loop; see ev_socket.h), its timers (handshake,
// close and heartbeat deadlines), receive flow control (it stops reading
// while JavaScript has not consumed what it was given, see context.h), and
// the closing handshake.
//
// Service thread only.
#pragma once

#include <libwebsockets.h>

#include <cstdint>
#include <memory>
#include <string>

#include "conn_shared.h"
#include "frame_reader.h"
#include "handshake.h"
#include "http_responder.h"
#include "options.h"
#include "timers.h"
#include "topics.h"
#include "wire.h"

namespace nlws {

class Context;
class EvSocket;
class Listener;
struct ConnInfo;

class Conn final : public FrameSink, public WireOwner {
 public:
  // Why reading is paused; reading resumes when no reason is left.
  enum RxPause : uint8_t {
    kRxFlow = 1,         // JavaScript holds more than receiveHighWaterMark of ours
    kRxGlobal = 2,       // the context holds more than its total limit
    kRxUser = 4,         // pause() from JavaScript
    kRxVerify = 8,       // the request head is in; JavaScript's verify() decides
    kRxInflate = 16,     // inflation budget spent: continues on the next turn
    kRxConnecting = 32,  // client: connect() is not finished (SO_ERROR must survive)
  };

  // An accepted socket of `server`; Listener has it watched (Watch). With
  // `handed_over`, a connection JavaScript handed over (server.handleUpgrade)
  // under the ConnShared it already holds; fd -1 then means a stream that
  // JavaScript pumps (JsWire) instead of a socket.
  Conn(Context* ctx, Listener* server, int fd, std::string remote_address, int remote_port,
       bool tls, ConnShared* handed_over = nullptr);
  ~Conn() override;
  // Adopts a connecting client socket (kConnect); takes ownership of cfg.
  static void StartClient(Context* ctx, ClientConfig* cfg);

  // Starts watching the socket: an EvSocket on the libev loop, or an lws wsi
  // for server TLS (`tls_vhost`, where lws encrypts) and under lws's poll()
  // loop. false: lws refused the socket (and closed it); the caller deletes
  // this.
  bool Watch(lws_vhost* tls_vhost);
  // Server TLS under libev: Watch() leaves the socket on an EvSocket until
  // the client's first TLS record (its ClientHello) is all in the kernel, and
  // only then hands it to lws. lws makes the SSL object and OpenSSL its
  // handshake buffers (~50 KB) as it adopts a socket, so a client that
  // connects and sends nothing, or part of a record, held that until
  // handshakeTimeoutMs; now it holds what a plain socket does. The socket's
  // SO_RCVLOWAT makes the loop report it only once the bytes awaited are
  // there (or the peer is gone). Deletes this when the peer closed first or
  // lws refuses the socket.
  void HelloReadable();
  // lws has this server TLS socket: its handshake counts kTlsHandshakeHeld
  // against maxPendingHeaderBytes until a request byte is decrypted.
  void CountTlsHandshake();
  // The JsWire counterpart of Watch: the connection starts without a socket.
  void AttachJs();
  // socket events (EvSocket, or lws callbacks)
  void OnReadable(const uint8_t* in, size_t len);
  void OnWritable();
  void OnClosed();  // deletes this

  // commands from JavaScript
  void Send(const OutFrame& f);
  // permessage-deflate: compresses `payload` (BufAlloc'd, bare) into one frame.
  void SendCompressed(uint8_t* payload, size_t len, uint8_t opcode);
  // close() from JavaScript (frame: the close frame, BufAlloc'd, taken);
  // discard: the queued messages are dropped first.
  void CloseFromJs(uint8_t* frame, size_t len, bool discard);
  void Terminate() { Kill(); }
  // After JavaScript's verify(): with `protocol`, or (choose) the server's
  // own pick from its protocols; `headers` (complete lines) go into the 101.
  void AcceptUpgrade(const std::string& protocol, bool choose, const std::string& headers);
  void RejectUpgrade(int status, const std::string& headers, const std::string& body);
  // Its request head is still arriving and the listener's heads hold too
  // much together (Listener::HeadPending): answered 503 and closed.
  void RefuseHead();
  // The context's unfinished input is over its limit and this connection
  // holds the most: its message is given up and the connection failed with
  // 1013 (Try Again Later).
  void FailUnfinished();
  void PauseRx(uint8_t reason);
  void ResumeRx(uint8_t reason);
  // kResumeRx from the main thread after a release: resume when JavaScript
  // holds little enough again.
  void CheckRxFlow();
  // JsWire: JavaScript's stream took n more bytes (kWireAck).
  void JsAck(size_t n);

  // From the server: close with 1001 (or drop a connection still in its handshake).
  void Shutdown();

  // publish/subscribe (server connections)
  void Subscribe(const std::string& topic, int64_t max_backpressure);
  void Unsubscribe(const std::string& topic);
  Topics::Memberships& memberships();
  // Queues a published frame (or its compressed variant) unless this
  // connection's backpressure policy drops it or closes the connection.
  void QueuePublished(PublishJob& job, int64_t max_backpressure);

  // From the context
  void Flush();     // writes queued frames now; once per command batch
  void Continue();  // a turn of inflation left over from the last Feed
  // About once a second: an idle connection gives back its buffers. Returns
  // whether it still holds some (a message or frames in flight).
  bool Trim();
  void CloseSocketNow();  // OnClosed runs (and deletes this) before it returns
  ConnShared* shared() const { return shared_; }
  Context* ctx() const { return ctx_; }
  Listener* server() const { return server_; }
  bool js_pumped() const { return wire_kind_ == WireKind::kJs; }  // no socket: JavaScript has it
  bool has_wsi() const { return wsi_ != nullptr; }  // lws closes it in lws_context_destroy
  bool open() const { return state_ == State::kOpen; }

  // Context bookkeeping (service thread).
  Conn* prev = nullptr;  // the context's list of every connection
  Conn* next = nullptr;
  bool dirty = false;
  bool busy = false;
  bool kill_pending = false;
  bool adopting = false;  // inside lws_adopt_*: OnClosed must not delete
  bool closed_in_adopt = false;
  bool trim_pending = true;  // on the prefix of the context's list that OnTrim walks

  // FrameSink
  uint8_t* MessageRoom(size_t len) override;
  bool OnMessage(ReadMessage& m) override;
  void OnPing(const uint8_t* p, size_t n) override;
  void YieldIfSpent();  // the receive budget is spent: the reader stops after this event
  void OnPong(const uint8_t* p, size_t n) override;
  void OnCloseFrame(uint16_t code, const uint8_t* reason, size_t n) override;
  void OnReadError(uint16_t close_code, const char* why) override;
  // WireOwner
  void FrameDone(const OutFrame& f, bool written) override;
  // Queues a copy of a complete data frame of up to Wire::kCoalesce bytes
  // (an inline frame of a send command) carrying `payload` bytes counted in
  // ConnShared::buffered.
  void SendCopy(const uint8_t* frame, size_t len, size_t payload);
  bool WantWritable() override;

 private:
  // kProxy: a client through an HTTP proxy, waiting for its answer to CONNECT.
  enum class State : uint8_t { kConnecting, kProxy, kHandshake, kVerifying, kOpen, kClosed };
  // Which Wire wire_ is: js_wire() and tls_client() cast by it, and only a
  // plain one may be read from the socket directly (ReadPayloadDirect).
  enum class WireKind : uint8_t { kPlain, kLwsTls, kTlsClient, kJs };
  // A client through an HTTP proxy, until the tunnel is up: a side allocation,
  // so that other connections do not carry it.
  struct ProxyStage {
    ProxyHandshake hs;
    std::string request;                    // the CONNECT request
    std::unique_ptr<TlsClient> tunnel_tls;  // wss: TLS once the tunnel is up
  };

  Conn(Context* ctx, ClientConfig* cfg);
  // input
  void Input(const uint8_t* p, size_t n);
  void ReadTls(const uint8_t* in, size_t len);  // wss client: ciphertext in
  void Stash(const uint8_t* p, size_t n);
  void ReadPayloadDirect();  // the rest of a large payload, from the socket into the message
  void UseDeflate(std::unique_ptr<PerMessageDeflate> pmd);
  void Pump();  // feeds stashed input while reading is not paused
  void SetRxPause(uint8_t bits);
  void ChargeRx();
  // handshake
  void ServerInput(const uint8_t* p, size_t n);
  void ClientInput(const uint8_t* p, size_t n);
  void ProxyInput(const uint8_t* p, size_t n);
  void StartHandshake();  // client: TLS (if any) then the upgrade request
  void CompleteUpgrade(const std::string& protocol, const std::string& headers);
  void AddPeerCertificate(ConnInfo* info);
  void OpenEstablished();
  void SendHttpAndClose(const std::string& response);
  void SendHttpAndClose(HttpAnswer answer);
  // Once the socket has taken all before it: the next chunk of the static
  // file being answered, sent from the file (sendfile) or else read and
  // queued. False when the socket is full (its writable report goes on) or
  // the connection is done for (killed).
  bool SendFileChunk();
  void EmitConnectError();
  void EmitHandoverEnd();  // a handed-over connection closed before it opened
  bool HasTransport() const { return sock_ || wsi_ || js_pumped(); }
  JsWire* js_wire() const { return js_pumped() ? static_cast<JsWire*>(wire_.get()) : nullptr; }
  ClientTlsWire* tls_client() const {  // a wss client's wire, once TLS runs on the socket
    return wire_kind_ == WireKind::kTlsClient ? static_cast<ClientTlsWire*>(wire_.get()) : nullptr;
  }
  void FailConnect(const char* code, std::string message, int status = 0);
  void QueueBlock(const std::string& bytes);
  // heartbeat and deadlines
  void StartHeartbeat();
  static void OnHeartbeat(void* conn);
  static void OnDeadline(void* conn);
  void SetDeadline(uint32_t ms);
  // close
  void Fail(uint16_t code, const char* why);  // sends a close frame, then drops TCP
  void QueueClose(uint16_t code, const std::string& reason);
  void CloseHandshakeDone();
  void Kill();
  void DropQueue(bool keep_partial);
  // A published message of `payload` bytes (`adding` of them new storage):
  // true when it may be queued; false past this subscription's limit or the
  // context's totalSendLimit (Context::OverSendLimit), and then it is
  // dropped (counted) or the connection closes with 1008.
  bool AdmitBackpressure(size_t payload, int64_t limit, int64_t adding);
  // Applies tx_unsettled_ to ConnShared::buffered (one atomic for a whole
  // flush, none when it wrote what it queued) and reports 'drain' when that
  // brings it down to the high-water mark.
  void Settle();
  // Reports reader_.held() to the context's total of unfinished input (which
  // may fail this connection or another one).
  void NoteUnfinished();

  Context* ctx_;
  Listener* server_;
  ConnShared* shared_;
  // A server connection's listener's; a client's own (deleted with it:
  // no second pointer to own them, every server connection would carry it).
  const ConnOptions* opts_;
  std::unique_ptr<EvSocket> sock_;  // the socket on the libev loop; or
  lws* wsi_ = nullptr;              // lws's wsi for it (closed by lws)
  int fd_;
  // 1 + this connection's place in the context's list of unfinished input
  // (Context::SetUnfinished); 0: it holds none. Next to fd_: they share 8 bytes.
  uint32_t unfinished_slot_ = 0;
  FrameReader reader_;
  std::unique_ptr<Wire> wire_;
  std::unique_ptr<ServerHandshake> server_hs_;   // until open or answered
  std::unique_ptr<ClientHandshake> client_hs_;   // until open
  std::unique_ptr<ProxyStage> proxy_;            // through a proxy: until the tunnel is up
  std::unique_ptr<std::string> stash_;           // input not processed yet
  std::unique_ptr<Topics::Memberships> topics_;  // server: the topics subscribed to
  std::unique_ptr<FileBody> file_;               // an HTTP answer's static file, still to send
  Timer deadline_;
  Timer heartbeat_;
  int64_t last_rx_us_ = 0;
  int64_t ping_at_us_ = 0;
  int64_t rx_charge_ = 0;                // received bytes to charge to shared_ after this read
  int64_t tx_unsettled_ = 0;             // payload queued (+) and written or dropped (-) on this
                                         // thread, not yet in shared_->buffered (Settle)
  std::unique_ptr<std::string> reason_;  // reported with 'close': the peer's, or our failure's
  uint16_t peer_code_ = kCloseNoStatus;
  uint16_t fail_code_ = 0;  // we failed the connection with this code
  State state_ = State::kHandshake;
  WireKind wire_kind_ = WireKind::kPlain;
  uint8_t rx_pause_ = 0;  // RxPause bits
  bool rx_off_ = false;   // the socket is not polled for reading while this is set
  bool killed_ = false;
  bool timed_out_ = false;
  bool ping_outstanding_ = false;
  bool counted_open_ = false;  // counted in the server's open connections
  bool text_as_buffer_ = false;
  bool close_sent_ = false;     // a close frame is queued or written
  bool close_written_ = false;  // ... and fully written
  bool close_received_ = false;
  bool kill_after_flush_ = false;
  bool lingering_ = false;  // our FIN is sent; waiting for the peer's

  bool lws_timeout_cleared_ = false;  // lws's own pending timeout (see OnReadable)

  // Handed over by JavaScript (kAdopt): it hears how a connection that never opened ended.
  bool handed_over_ = false;
  uint16_t answered_ = 0;  // the HTTP status answered instead of an upgrade
};

}  // namespace nlws
