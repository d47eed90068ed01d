// Events from the service thread to JavaScript, in batches.
//
// The service thread appends events to its own Batch (Context::events()) and,
// once per service iteration, hands the whole Batch over to the main thread
// under a lock (one owner at a time). delivery.cc turns a Batch into JS values
// on the main thread and frees it there.
//
// A record is four uint32 words [type, id, a, b]; keep the numbers in sync
// with lib/native.ts (test/native-events.test.mjs checks them).
#pragma once

#include <node_api.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace nlws {

struct ConnShared;

enum EventType : uint32_t {
  kEvListening = 1,       // id=server, a=port
  kEvListenError = 2,     // id=server, a=errno, b=obj(message)
  kEvListenerClosed = 3,  // id=server: the listening socket is closed, the port is free
  kEvServerClosed = 4,    // id=server: every connection of the server is gone
  kEvConnection = 5,      // id=conn, a=server, b=obj(request info)
  kEvText = 6,            // id=conn, a=arena offset, b=length
  kEvBinary = 7,          // id=conn, a=arena offset, b=length
  kEvTextObj = 8,         // id=conn, a=length in bytes, b=obj(string, or Buffer with textAs buffer)
  kEvBinaryObj = 9,       // id=conn, a=length in bytes, b=obj(Buffer)
  kEvClose = 10,          // id=conn, a=code | wasClean << 16, b=obj(reason) or kNoObj
  kEvDrain = 11,          // id=conn
  kEvPing = 12,           // id=conn, a=arena offset, b=length
  kEvPong = 13,           // id=conn, a=arena offset, b=length
  kEvLog = 14,            // id=lws log level, b=obj(line)
  kEvError = 15,          // id=conn, a=close code sent, b=obj(message)
  kEvOpen = 16,           // id=conn (client): handshake done, b=obj(response info)
  kEvConnectError = 17,   // id=conn (client, or a handed-over server connection that never
                          // opened): a=errno or 0, b=obj({ code, message, status })
  kEvUpgrade = 18,        // id=conn, a=server, b=obj(request info; protocol = offered list)
  kEvAcceptError = 19,    // id=server, a=errno, b=obj({ code, message }): an EMFILE burst began
  kEvWireOut = 20,        // id=conn (JsWire): a=length, b=obj(Buffer): bytes for its stream
  kEvWireCtl = 21,        // id=conn (JsWire): a=WireCtl: pause / resume reading, end, destroy
  kEvTextAscii = 22,      // kEvText whose bytes are all below 0x80 (decoded as one-byte)
};
constexpr uint32_t kEvLast = kEvTextAscii;

// What kEvWireCtl asks JavaScript to do with the stream of a JsWire connection.
enum WireCtl : uint32_t {
  kWirePause = 1,    // stop reading it (receive flow control)
  kWireResume = 2,   // read it again
  kWireEnd = 3,      // end() it after the bytes already handed over (our FIN)
  kWireDestroy = 4,  // destroy() it: the connection is gone
};

// The names lib/native.ts gives them (Ev), for the test that checks both agree.
struct EventName {
  const char* name;
  uint32_t type;
};
constexpr EventName kEventNames[] = {
    {"Listening", kEvListening},
    {"ListenError", kEvListenError},
    {"ListenerClosed", kEvListenerClosed},
    {"ServerClosed", kEvServerClosed},
    {"Connection", kEvConnection},
    {"Text", kEvText},
    {"Binary", kEvBinary},
    {"TextObj", kEvTextObj},
    {"BinaryObj", kEvBinaryObj},
    {"Close", kEvClose},
    {"Drain", kEvDrain},
    {"Ping", kEvPing},
    {"Pong", kEvPong},
    {"Log", kEvLog},
    {"Error", kEvError},
    {"Open", kEvOpen},
    {"ConnectError", kEvConnectError},
    {"Upgrade", kEvUpgrade},
    {"AcceptError", kEvAcceptError},
    {"WireOut", kEvWireOut},
    {"WireCtl", kEvWireCtl},
    {"TextAscii", kEvTextAscii},
};
constexpr uint32_t kNoObj = 0xFFFFFFFFu;
// JavaScript sets this bit in a message record's type word when it keeps the
// message for later (paused, or waiting in an async iterator): its bytes stay
// counted until JavaScript releases them (see flow control in context.h).
constexpr uint32_t kHeldBit = 0x80000000u;
// What a received event costs beyond its payload, for flow control.
constexpr int64_t kEventCost = 64;

// Arena-referencing and object-referencing record types.
inline bool UsesArena(uint32_t type) {
  return type == kEvText || type == kEvTextAscii || type == kEvBinary || type == kEvPing ||
         type == kEvPong;
}
inline bool IsMessageEvent(uint32_t type) {
  return UsesArena(type) || type == kEvTextObj || type == kEvBinaryObj;
}
// Flow-control cost of a message record (payload bytes plus kEventCost).
inline int64_t MessageCost(const uint32_t* rec) {
  uint32_t type = rec[0] & ~kHeldBit;
  size_t len = UsesArena(type) ? rec[3] : rec[2];
  return static_cast<int64_t>(len) + kEventCost;
}

// The request (server) or response (client) a connection was opened with,
// turned into a JS object on the main thread.
struct ConnInfo {
  ConnShared* shared = nullptr;  // owns one reference until handed to JS
  // JavaScript gets the reference as a ConnHandles handle (a server connection
  // announced with kEvConnection), not as an External.
  bool table_handle = false;
  std::string path;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string remote_address;
  int remote_port = 0;
  std::string protocol;
  // Client: the status of the upgrade response (its Set-Cookie headers reach
  // JavaScript as a list, as Node's http gives them); 0 for a request.
  int status = 0;
  // Server TLS with client certificates: the client's certificate (DER;
  // empty: none) and why it did not verify (empty: it did).
  std::string peer_cert;
  std::string peer_verify_error;
  ~ConnInfo();
};

// A lent block that send() writes from without a copy (lendMessages): freed
// when the batch that lent it is done and every frame that points into it is
// written or dropped, whichever comes last. One reference each.
struct LentHold {
  uint8_t* block;
  std::atomic<int> refs;
};
void DropHold(LentHold* h);

// A block of a batch lent to JavaScript while its listeners run (an arena
// chunk, or a kLentBuffer message): its ArrayBuffer, detached when the call
// returns, and where the batch keeps the block, which it frees afterwards
// (unless a send() took a hold on it: then the hold owns it).
struct LentBlock {
  napi_value ab;
  uint8_t** owner;
  const uint8_t* base;
  size_t len;
  LentHold* hold = nullptr;
};

// A value for JavaScript that does not fit in a record.
struct ObjItem {
  // kLentBuffer: a kBuffer lent to JavaScript for the call only (lendMessages):
  // the batch keeps owning data and frees it after the call (delivery.cc).
  enum Kind : uint8_t {
    kString,
    kBuffer,
    kLentBuffer,
    kUtf8,
    kAscii,
    kInfo,
    kError
  } kind = kString;
  std::string str;          // kString; kError: message
  uint8_t* data = nullptr;  // kBuffer, kUtf8, kAscii: BufAlloc'd bytes, owned until handed to JS
                            // (kLentBuffer: owned by the batch throughout)
  size_t len = 0;
  std::unique_ptr<ConnInfo> info;  // kInfo; kError: the refusing response's headers, if any
  std::string code;                // kError
  int status = 0;                  // kError: HTTP status of a refused handshake
  ~ObjItem();
  ObjItem() = default;
  ObjItem(ObjItem&& o) noexcept;
  ObjItem& operator=(ObjItem&&) = delete;
};

// The bytes of a batch's small messages, in chunks of kArenaChunk bytes
// (pooled buffers, see buffers.h) that are handed to JavaScript as they are,
// for the call only. A message never spans two chunks; its place in the batch
// is ArenaPlace(chunk, offset). Chunks, not one block per batch: the batches
// that wait for JavaScript each kept a 1 MiB block resident for what were
// often a few KiB of messages (10 such blocks, 9 MB of RSS, in the 16 KiB echo).
// One 64 KiB pool class; mapped (BufAllocMapped), and with the block's header
// what is used of it stays within 16 pages.
constexpr size_t kArenaChunk = 64 * 1024 - 64;
// A batch is handed over once its arena has this many full chunks (~1 MiB).
constexpr size_t kArenaChunks = 16;

constexpr uint32_t ArenaPlace(size_t chunk, size_t offset) {
  return static_cast<uint32_t>(chunk << 16 | offset);
}

struct Arena {
  std::vector<uint8_t*> chunks;  // BufAlloc'd, kArenaChunk bytes each
  size_t used = 0;               // bytes used in the last chunk

  Arena() = default;
  Arena(Arena&& o) noexcept : chunks(std::move(o.chunks)), used(o.used) {
    o.chunks.clear();
    o.used = 0;
  }
  Arena& operator=(Arena&& o) noexcept;
  ~Arena();
  bool empty() const { return chunks.empty(); }
  // Whether n more bytes would need a chunk beyond the kArenaChunks a batch holds.
  bool Full(size_t n) const { return chunks.size() >= kArenaChunks && used + n > kArenaChunk; }
  // Room for n (<= kArenaChunk) more bytes, in the last chunk or a new one;
  // null when out of memory. An empty message still gets a place to point at.
  uint8_t* Room(size_t n);
  // The n bytes at Room(n) are taken: their place.
  uint32_t Commit(size_t n) {
    uint32_t place = ArenaPlace(chunks.size() - 1, used);
    used += n;
    return place;
  }
  void Release();  // frees the chunks
};

// A JavaScript value kept alive while native code uses its memory (a Buffer
// sent without copying), or a hold on a lent block (`ref` null). Created and
// deleted on the main thread. Every queued frame that points into it is one
// of its `users` (the same Buffer sent to many connections in a row shares
// one JsRef: Context::ReuseJs); whoever drops the last user owns it then,
// and the service thread hands it back in Batch::releases.
struct JsRef {
  napi_env env;
  napi_ref ref;
  LentHold* hold = nullptr;
  std::atomic<int> users{1};
  int64_t bytes = 0;  // what it counts in the context's send total (Context::send_held)
};
// Lets go of what r keeps (main thread) and deletes it.
void ReleaseRef(JsRef* r);

// Received bytes a connection was charged for in this batch (flow control):
// released on the main thread once JavaScript has consumed them.
struct RxCharge {
  ConnShared* shared;  // holds a reference
  int64_t bytes;
};

// One batch of events for JavaScript.
struct Batch {
  std::vector<uint32_t> recs;
  Arena arena;  // payloads of small messages, referenced by offset
  std::vector<ObjItem> objs;
  std::vector<RxCharge> charges;
  std::vector<JsRef*> releases;  // deleted by Context::Deliver (main thread)
  int64_t cost = 0;              // what this batch counts in the context's receive total
  // A connection with lendMessages has a message in the arena: JavaScript
  // makes views into it, so the arena goes over as the chunks themselves
  // (detached after the call), never copied into the arena window.
  bool lends = false;

  Batch() = default;
  Batch(Batch&&) = default;
  Batch& operator=(Batch&&) = default;
  ~Batch() { Clear(); }
  bool Empty() const { return recs.empty() && charges.empty() && releases.empty(); }
  void Clear();
};

}  // namespace nlws
