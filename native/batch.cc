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
    data = o.data;
    len = o.len;
    cap = o.cap;
    o.data = nullptr;
    o.len = o.cap = 0;
  }
  return *this;
}

Arena::~Arena() { Release(); }

uint8_t* Arena::Room(size_t n) {
  if (len + n > cap || !data) {  // (an empty message still needs a buffer to point into)
    // One block the size of a whole batch at once, from the pool: growing one
    // step by step copied it and touched fresh pages at every batch.
    size_t want = cap ? cap * 2 : kArenaHandOver;
    while (want < len + n) want *= 2;
    uint8_t* p = BufRealloc(data, want, len);
    if (!p) return nullptr;
    data = p;
    cap = BufCapacity(p);
  }
  return data + len;
}

void Arena::Release() {
  BufFree(data);
  data = nullptr;
  len = cap = 0;
}

uint8_t* Arena::Take() {
  uint8_t* p = data;
  data = nullptr;
  len = cap = 0;
  return p;
}

void Batch::Clear() {
  objs.clear();
  recs.clear();
  for (RxCharge& c : charges) c.shared->Unref();
  charges.clear();
  // Deliver deletes the references on the main thread first; what is left
  // here belongs to an environment being torn down, where V8 frees the values.
  for (JsRef* r : releases) delete r;
  releases.clear();
  arena.len = 0;
  cost = 0;
}

}  // namespace nlws
