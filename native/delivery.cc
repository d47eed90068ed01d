// Main thread: turning the service thread's event batches into JavaScript
// values, calling the JavaScript dispatcher once per batch, and releasing the
// flow-control charge of what JavaScript consumed.
#include <string.h>

#include <algorithm>
#include <unordered_map>

#include "buffers.h"
#include "context.h"
#include "keyed_hash.h"
#include "timers.h"

namespace nlws {

namespace {

// Event delivery uses the C N-API with every status checked, not the C++
// wrappers: while a worker is being terminated any call may fail, and the
// wrappers turn a failure into a fatal error. Here a failure drops the batch.
#define NLWS_OK(call)                    \
  do {                                   \
    if ((call) != napi_ok) return false; \
  } while (0)

bool SetNamed(napi_env env, napi_value obj, const char* name, napi_value v) {
  return napi_set_named_property(env, obj, name, v) == napi_ok;
}

bool Str(napi_env env, const std::string& s, napi_value* out) {
  return napi_create_string_utf8(env, s.data(), s.size(), out) == napi_ok;
}

void FreeBlob(napi_env, void* data, void*) { BufFree(static_cast<uint8_t*>(data)); }

void FinalizeHold(napi_env, void* hold, void*) { DropHold(static_cast<LentHold*>(hold)); }

// A Buffer over `data` (BufAlloc'd) without copying; V8 frees it. V8 counts
// the bytes of every ArrayBuffer's backing store, external ones included, as
// external memory itself (ArrayBufferSweeper::Append): reporting them again
// with napi_adjust_external_memory doubled the count, and the 1 MiB echo ran
// ~15 mark-compacts a second it did not need.
bool ExternalBuffer(napi_env env, uint8_t* data, size_t len, napi_value* out) {
  NLWS_OK(napi_create_external_buffer(env, len, data, FreeBlob, nullptr, out));
  return true;
}

// Header names (lower case) -> values. Repeated headers are joined with
// ", ", as Node's http module does; in a response, Set-Cookie values stay a
// list (they may contain commas).
bool MakeHeaders(napi_env env, std::vector<std::pair<std::string, std::string>>& list,
                 bool response, napi_value* out) {
  napi_value v;
  NLWS_OK(napi_create_object(env, out));
  std::vector<std::pair<std::string, std::string>> merged;
  merged.reserve(list.size());
  std::vector<std::string> cookies;
  // Name -> place in merged, for a long list: looking each name up in merged
  // made a head of 2,000 tiny headers (what 16 KiB holds) cost the main
  // thread ~10 ms, and one of 30,000 (maxHeaderBytes 256 KiB) a second. The
  // names are the peer's: keyed, or it could choose them all for one bucket.
  std::unordered_map<std::string, size_t, KeyedHash> where;
  bool hashed = list.size() > 32;
  for (auto& kv : list) {
    if (response && kv.first == "set-cookie") {
      cookies.push_back(std::move(kv.second));
      continue;
    }
    size_t at = merged.size();
    if (hashed) {
      at = where.emplace(kv.first, merged.size()).first->second;
    } else {
      for (size_t i = 0; i < merged.size() && at == merged.size(); i++)
        if (merged[i].first == kv.first) at = i;
    }
    if (at == merged.size())
      merged.emplace_back(std::move(kv.first), std::move(kv.second));
    else
      merged[at].second.append(", ").append(kv.second);
  }
  for (const auto& kv : merged)
    if (!Str(env, kv.second, &v) || !SetNamed(env, *out, kv.first.c_str(), v)) return false;
  if (!cookies.empty()) {
    NLWS_OK(napi_create_array_with_length(env, cookies.size(), &v));
    for (size_t i = 0; i < cookies.size(); i++) {
      napi_value c;
      if (!Str(env, cookies[i], &c)) return false;
      NLWS_OK(napi_set_element(env, v, static_cast<uint32_t>(i), c));
    }
    if (!SetNamed(env, *out, "set-cookie", v)) return false;
  }
  return true;
}

bool MakeInfo(napi_env env, ConnInfo* info, ConnHandles* handles, napi_value* out) {
  napi_value o, v, headers;
  NLWS_OK(napi_create_object(env, &o));
  ConnShared* shared = info->shared;
  uint32_t h = info->table_handle ? handles->Add(shared) : 0;
  if (h) {
    NLWS_OK(napi_create_uint32(env, h, &v));
  } else {
    NLWS_OK(napi_create_external(
        env, shared, [](napi_env, void* data, void*) { static_cast<ConnShared*>(data)->Unref(); },
        nullptr, &v));
  }
  info->shared = nullptr;  // the handle (its slot, or the External) owns this reference now
  if (!SetNamed(env, o, "handle", v)) return false;
  NLWS_OK(napi_create_uint32(env, shared->id, &v));
  if (!SetNamed(env, o, "id", v) || !Str(env, info->path, &v) || !SetNamed(env, o, "path", v))
    return false;
  if (!MakeHeaders(env, info->headers, info->status != 0, &headers)) return false;
  if (!SetNamed(env, o, "headers", headers)) return false;
  if (!Str(env, info->remote_address, &v) || !SetNamed(env, o, "remoteAddress", v)) return false;
  NLWS_OK(napi_create_int32(env, info->remote_port, &v));
  if (!SetNamed(env, o, "remotePort", v)) return false;
  if (!Str(env, info->protocol, &v) || !SetNamed(env, o, "protocol", v)) return false;
  if (info->status) {
    NLWS_OK(napi_create_int32(env, info->status, &v));
    if (!SetNamed(env, o, "status", v)) return false;
  }
  if (!info->peer_cert.empty()) {
    NLWS_OK(
        napi_create_buffer_copy(env, info->peer_cert.size(), info->peer_cert.data(), nullptr, &v));
    if (!SetNamed(env, o, "peerCertificate", v)) return false;
  }
  if (!info->peer_verify_error.empty()) {
    if (!Str(env, info->peer_verify_error, &v) || !SetNamed(env, o, "authorizationError", v))
      return false;
  }
  *out = o;
  return true;
}

// *lent gets the ArrayBuffer of a kLentBuffer.
bool MakeObj(napi_env env, ObjItem& item, ConnHandles* handles, napi_value* out,
             std::vector<LentBlock>* lent) {
  switch (item.kind) {
    case ObjItem::kString:
      return Str(env, item.str, out);
    case ObjItem::kUtf8:
    case ObjItem::kAscii: {
      // kAscii (every byte below 0x80): a one-byte string, no UTF-8 decoding.
      const char* s = reinterpret_cast<const char*>(item.data);
      bool ok = (item.kind == ObjItem::kAscii
                     ? napi_create_string_latin1(env, s, item.len, out)
                     : napi_create_string_utf8(env, s, item.len, out)) == napi_ok;
      BufFree(item.data);
      item.data = nullptr;
      return ok;
    }
    case ObjItem::kBuffer: {
      if (!ExternalBuffer(env, item.data, item.len, out)) return false;
      item.data = nullptr;  // the Buffer owns it now
      return true;
    }
    case ObjItem::kLentBuffer: {
      // No finalizer: the batch still owns the bytes (see DeliverOne).
      napi_value ab;
      NLWS_OK(napi_create_external_buffer(env, item.len, item.data, nullptr, nullptr, out));
      NLWS_OK(napi_get_typedarray_info(env, *out, nullptr, nullptr, nullptr, &ab, nullptr));
      lent->push_back(LentBlock{ab, &item.data, item.data, item.len});
      return true;
    }
    case ObjItem::kInfo:
      return MakeInfo(env, item.info.get(), handles, out);
    case ObjItem::kError: {
      napi_value v;
      NLWS_OK(napi_create_object(env, out));
      if (!Str(env, item.code, &v) || !SetNamed(env, *out, "code", v)) return false;
      if (!Str(env, item.str, &v) || !SetNamed(env, *out, "message", v)) return false;
      if (item.status) {
        NLWS_OK(napi_create_int32(env, item.status, &v));
        if (!SetNamed(env, *out, "status", v)) return false;
      }
      if (item.info) {
        if (!MakeHeaders(env, item.info->headers, true, &v)) return false;
        if (!SetNamed(env, *out, "headers", v)) return false;
      }
      return true;
    }
  }
  return false;
}

// argv: [records, arena, objects]; *recs points at the records JavaScript sees
// (it marks the messages it keeps there). The arena is an array of the
// chunks' ArrayBuffers, which *lent gets too, or null when it was copied into
// the arena window. `win` is null when the windows are taken (or not given).
bool MakeBatch(napi_env env, Batch& b, ConnHandles* handles, DeliveryWindows* win,
               napi_value argv[3], uint32_t** recs, std::vector<LentBlock>* lent) {
  size_t nrec = b.recs.size();
  // A batch with external Buffers (messages over 16 KiB) gets an ArrayBuffer
  // of its own for its records all the same: V8 starts a scavenge for the
  // external bytes of young Buffers only when it allocates a backing store
  // itself, and without these the 1 MiB echo's dropped messages waited for
  // mark-compacts (test/external-memory.test.mjs).
  bool external = false;
  for (const ObjItem& o : b.objs) external |= o.kind == ObjItem::kBuffer;
  napi_value rab;
  if (win && !external && nrec <= win->recs_len) {
    // A view of the records window: no ArrayBuffer for this batch.
    NLWS_OK(napi_get_reference_value(env, win->recs_ab, &rab));
    *recs = win->recs;
  } else {
    void* data;
    NLWS_OK(napi_create_arraybuffer(env, nrec * sizeof(uint32_t), &data, &rab));
    *recs = static_cast<uint32_t*>(data);
  }
  if (nrec) memcpy(*recs, b.recs.data(), nrec * sizeof(uint32_t));
  NLWS_OK(napi_create_typedarray(env, napi_uint32_array, nrec, rab, 0, &argv[0]));

  // The arena is lent to JavaScript for the call only (JavaScript copies
  // what it keeps), so its memory is reused at once instead of waiting for
  // V8 to collect it. A small arena that no lendMessages connection has a
  // view into is copied into the window; a larger one goes over as the kept
  // ArrayBuffers over its chunks (DeliveryWindows::chunks). One that a
  // lendMessages connection has views into goes over as external
  // ArrayBuffers made for the call and detached when it returns, so that a
  // view a listener kept reads as empty: every chunk whole, the last one up
  // to its used bytes.
  NLWS_OK(napi_get_undefined(env, &argv[1]));
  if (!b.arena.empty() && win && !b.lends && b.arena.chunks.size() == 1 &&
      b.arena.used <= win->arena_len) {
    memcpy(win->arena, b.arena.chunks[0], b.arena.used);
    NLWS_OK(napi_get_null(env, &argv[1]));
  } else if (!b.arena.empty()) {
    size_t n = b.arena.chunks.size();
    if (win) win->batch++;
    NLWS_OK(napi_create_array_with_length(env, n, &argv[1]));
    for (size_t i = 0; i < n; i++) {
      napi_value ab;
      if (win && !b.lends) {
        if (!win->ChunkBuffer(env, b.arena.chunks[i], &ab)) return false;
      } else {
        size_t len = i + 1 < n ? kArenaChunk : b.arena.used;
        NLWS_OK(
            napi_create_external_arraybuffer(env, b.arena.chunks[i], len, nullptr, nullptr, &ab));
        lent->push_back(LentBlock{ab, &b.arena.chunks[i], b.arena.chunks[i], kArenaChunk});
      }
      NLWS_OK(napi_set_element(env, argv[1], static_cast<uint32_t>(i), ab));
    }
  }

  NLWS_OK(napi_get_undefined(env, &argv[2]));
  if (!b.objs.empty()) {
    NLWS_OK(napi_create_array_with_length(env, b.objs.size(), &argv[2]));
    for (size_t i = 0; i < b.objs.size(); i++) {
      napi_value v;
      if (!MakeObj(env, b.objs[i], handles, &v, lent)) return false;
      NLWS_OK(napi_set_element(env, argv[2], static_cast<uint32_t>(i), v));
    }
  }
  return true;
}

}  // namespace

bool DeliveryWindows::ChunkBuffer(napi_env env, uint8_t* chunk, napi_value* ab) {
  for (ChunkView& c : chunks)
    if (c.chunk == chunk) {
      chunk_views_reused++;
      c.batch = batch;
      return napi_get_reference_value(env, c.ab, ab) == napi_ok;
    }
  chunk_views_made++;
  NLWS_OK(napi_create_external_arraybuffer(env, chunk, kArenaChunk, nullptr, nullptr, ab));
  napi_ref ref;  // the C API, as everywhere here (see NLWS_OK)
  NLWS_OK(napi_create_reference(env, *ab, 1, &ref));
  ChunkView view{chunk, Napi::Reference<Napi::ArrayBuffer>(env, ref), batch};
  if (chunks.size() < kChunkViews) {
    chunks.push_back(std::move(view));
    return true;
  }
  // Full: the one that went over longest ago goes, detached (its chunk may be
  // anything's by now). Never one this batch already has in its arena array:
  // those went over last, and a batch has fewer chunks than the cache.
  ChunkView* lru = &chunks[0];
  for (ChunkView& c : chunks)
    if (c.batch < lru->batch) lru = &c;
  ChunkView& old = *lru;
  napi_value gone;
  if (napi_get_reference_value(env, old.ab, &gone) == napi_ok) napi_detach_arraybuffer(env, gone);
  old = std::move(view);
  return true;
}

#undef NLWS_OK

JsRef* Context::HoldLent(napi_env env, const uint8_t* p, size_t len, bool* lent) {
  *lent = false;
  if (!lent_) return nullptr;
  for (LentBlock& l : *lent_) {
    if (p < l.base || p >= l.base + l.len) continue;
    *lent = true;
    if (p + len > l.base + l.len) return nullptr;  // not all in this block: copy it
    if (!l.hold) {
      // The batch's reference: dropped when the call has returned.
      l.hold = new LentHold{*l.owner, {1}};
      *l.owner = nullptr;
    }
    l.hold->refs.fetch_add(1, std::memory_order_relaxed);
    return new JsRef{env, nullptr, l.hold};
  }
  return nullptr;
}

bool Context::Deliver(napi_env env) {
  napi_value cb = on_events_.Value();
  // A slice: other callbacks of the event loop (timers, I/O, IPC) run between
  // slices, however fast the batches come. Batches the service thread hands
  // over while this runs join the slice without waking the main thread
  // (call_pending_ stays set); once none is left, the next batch wakes it
  // anew. Returns true when the slice ran out with batches left: the caller
  // then schedules the rest for a later turn. (Until 2026-11-27 every slice
  // scheduled such a turn, which most often found nothing, and the service
  // thread woke the main thread for the next batch all the same: a
  // setImmediate() and a call into native code per batch.)
  constexpr int64_t kSliceUs = 4000;
  int64_t start = MonotonicUs();
  bool more = false;
  delivering_ = true;  // commands pushed meanwhile share one wake-up, at the end
  while (true) {
    Batch b;
    {
      std::lock_guard<std::mutex> lock(ev_mu_);
      if (pending_.empty()) {
        call_pending_ = false;  // the next batch calls anew
        break;
      }
      if (MonotonicUs() - start >= kSliceUs) {
        more = true;
        break;
      }
      b = std::move(pending_.front());
      pending_.pop_front();
    }
    DeliverOne(env, cb, b);
  }
  delivering_ = false;
  PushLocal();
  return more;
}

void Context::DeliverOne(napi_env env, napi_value cb, Batch& b) {
  // What JavaScript keeps stays charged; everything else is released.
  int64_t held_total = 0;
  std::unordered_map<uint32_t, int64_t> held;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value argv[3];
    uint32_t* recs = nullptr;
    std::vector<LentBlock> lent;
    napi_status called = napi_generic_failure;
    // The windows serve one call at a time (a delivery never nests, but
    // nothing depends on that).
    DeliveryWindows* win = windows_.recs && !windows_.busy ? &windows_ : nullptr;
    if (MakeBatch(env, b, &handles_, win, argv, &recs, &lent)) {
      napi_value global, result;
      lent_ = &lent;
      if (win) win->busy = true;
      if (napi_get_global(env, &global) == napi_ok)
        called = napi_call_function(env, global, cb, 3, argv, &result);  // a throw stays pending
      if (win) win->busy = false;
      lent_ = nullptr;
      for (size_t i = 0; i < b.recs.size(); i += 4) {
        if (!(recs[i] & kHeldBit) || !IsMessageEvent(recs[i] & ~kHeldBit)) continue;
        int64_t cost = MessageCost(recs + i);
        held_total += cost;
        held[recs[i + 1]] += cost;
      }
    }
    // What was lent (the arena, kLentBuffer messages) is freed with the batch
    // once its ArrayBuffers are detached: a lent message a listener kept
    // (lendMessages) then reads as empty. V8 refuses to detach while a throw
    // is pending or JavaScript cannot run any more (a worker being
    // terminated), and Node then aborts the process: in those cases each
    // block goes to its ArrayBuffer instead, freed when V8 collects it (or
    // never, if even that cannot be arranged: a block lost beats a view into
    // freed memory).
    //
    // A lent ArrayBuffer JavaScript detached during the call took the block
    // along: a byte stream's enqueue() (or a BYOB read) makes a new
    // ArrayBuffer over the same memory, and nothing tells us when that one
    // lets go. Such a block is kept for good (the batch's reference on its
    // hold is never dropped), for the same reason: the memory of a listener
    // that broke the lending contract, rather than a view into freed memory
    // (test/lend-messages.test.mjs).
    bool pending = false;
    if (!lent.empty()) {
      bool call_done =
          called == napi_ok && napi_is_exception_pending(env, &pending) == napi_ok && !pending;
      for (LentBlock& l : lent) {
        bool taken = false;
        if (napi_is_detached_arraybuffer(env, l.ab, &taken) == napi_ok && taken) {
          // The batch frees nothing there (BufFree skips null) and leaves the
          // hold's reference where it is.
          if (!l.hold) *l.owner = nullptr;
          lent_kept_ += static_cast<int64_t>(l.len);
        } else if (call_done) {
          napi_detach_arraybuffer(env, l.ab);
          if (l.hold) DropHold(l.hold);  // the frames written from it keep it
        } else {
          if (l.hold)
            napi_add_finalizer(env, l.ab, l.hold, FinalizeHold, nullptr, nullptr);
          else
            napi_add_finalizer(env, l.ab, *l.owner, FreeBlob, nullptr, nullptr);
          *l.owner = nullptr;  // the ArrayBuffer's (BufFree skips null)
        }
      }
    }
    napi_close_handle_scope(env, scope);
  }
  for (JsRef* r : b.releases) {
    ForgetJs(r);
    ReleaseRef(r);
  }
  b.releases.clear();
  for (RxCharge& c : b.charges) {
    int64_t bytes = c.bytes;
    if (!held.empty()) {
      auto it = held.find(c.shared->id);
      if (it != held.end()) {
        int64_t keep = std::min(bytes, it->second);
        it->second -= keep;
        bytes -= keep;
      }
    }
    ReleaseConn(c.shared, bytes);
  }
  ReleaseTotal(b.cost - held_total);
  b.Clear();
}

}  // namespace nlws
