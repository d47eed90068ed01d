// Main thread only: the handles JavaScript holds for server connections.
//
// A server connection's handle is a small positive integer, slot | generation
// << kSlotBits, instead of an N-API External with a finalizer: an External
// costs an idle connection ~180 B (N-API's reference with its finalizer, a
// weak global handle, the External itself) and V8 a weak callback when it is
// collected. A slot holds one reference to its ConnShared from Add() until
// JavaScript disposes of the handle (the Connection detaches when it hears
// that the connection closed) or the table is destroyed with the context
// (joined service thread: the last references go on the main thread). A handle that was
// disposed of, or never issued, finds nothing (its generation no longer
// matches), so a stale one is refused rather than followed.
#pragma once

#include <cstdint>
#include <vector>

#include "conn_shared.h"

namespace nlws {

class ConnHandles {
 public:
  static constexpr uint32_t kSlotBits = 22;  // 4 Mi slots
  static constexpr uint32_t kSlotMask = (1u << kSlotBits) - 1;
  static constexpr uint32_t kGenMask = (1u << (31 - kSlotBits)) - 1;  // handles stay int32

  ConnHandles() = default;
  ConnHandles(const ConnHandles&) = delete;
  ConnHandles& operator=(const ConnHandles&) = delete;
  ~ConnHandles() {
    for (Slot& s : slots_)
      if (s.cs) s.cs->Unref();
  }

  // Takes over one reference to cs; returns its handle (never 0), or 0 when
  // every slot is taken (the caller keeps the reference then).
  uint32_t Add(ConnShared* cs) {
    uint32_t i;
    if (!free_.empty()) {
      i = free_.back();
      free_.pop_back();
    } else {
      if (slots_.size() > kSlotMask) return 0;
      i = static_cast<uint32_t>(slots_.size());
      slots_.push_back(Slot{nullptr, 0});
    }
    Slot& s = slots_[i];
    s.gen = s.gen == kGenMask ? 1 : s.gen + 1;  // generation 0 is never issued
    s.cs = cs;
    return s.gen << kSlotBits | i;
  }

  // The connection of a handle JavaScript passed in; nullptr when it is not live.
  ConnShared* Get(uint32_t handle) const {
    uint32_t i = handle & kSlotMask;
    if (i >= slots_.size()) return nullptr;
    const Slot& s = slots_[i];
    return s.gen == handle >> kSlotBits ? s.cs : nullptr;
  }

  // Drops the slot's reference; false when the handle was not live.
  bool Dispose(uint32_t handle) {
    ConnShared* cs = Get(handle);
    if (!cs) return false;
    uint32_t i = handle & kSlotMask;
    slots_[i].cs = nullptr;
    free_.push_back(i);
    cs->Unref();
    return true;
  }

  size_t live() const { return slots_.size() - free_.size(); }

 private:
  struct Slot {
    ConnShared* cs;
    uint32_t gen;  // of the handle issued last for this slot
  };
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
};

}  // namespace nlws
