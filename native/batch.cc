#include "batch.h"

#include "buffers.h"
#include "conn_shared.h"

namespace nlws {

ConnInfo::~ConnInfo() {
  if (shared) shared->Unref();
}

ObjItem::~ObjItem() { BufFree(data); }

ObjItem::ObjItem(ObjItem&& o) noexcept
    : kind(o.kind),
      str(std::move(o.str)),
      data(o.data),
      len(o.len),
      info(std::move(o.info)),
      code(std::move(o.code)),
      status(o.status) {
  o.data = nullptr;
}

Arena& Arena::operator=(Arena&& o) noexcept {
  if (this != &o) {
    Release();
    chunks = std::move(o.chunks);
    used = o.used;
    o.chunks.clear();
    o.used = 0;
  }
  return *this;
}

Arena::~Arena() { Release(); }

uint8_t* Arena::Room(size_t n) {
  if (chunks.empty() || used + n > kArenaChunk) {
    uint8_t* p = BufAllocMapped(kArenaChunk);  // see buffers.h
    if (!p) return nullptr;
    chunks.push_back(p);
    used = 0;
  }
  return chunks.back() + used;
}

void Arena::Release() {
  for (uint8_t* p : chunks) BufFree(p);
  chunks.clear();
  used = 0;
}

void DropHold(LentHold* h) {
  if (h->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  BufFree(h->block);
  delete h;
}

void ReleaseRef(JsRef* r) {
  if (r->hold)
    DropHold(r->hold);
  else
    napi_delete_reference(r->env, r->ref);
  delete r;
}

void Batch::Clear() {
  objs.clear();
  recs.clear();
  for (RxCharge& c : charges) c.shared->Unref();
  charges.clear();
  // Deliver releases them on the main thread first; what is left here
  // belongs to an environment being torn down, where V8 frees the values.
  for (JsRef* r : releases) {
    if (r->hold) DropHold(r->hold);
    delete r;
  }
  releases.clear();
  arena.Release();
  cost = 0;
  lends = false;
}

}  // namespace nlws
