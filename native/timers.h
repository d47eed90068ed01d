// Timers of a service thread: a binary min-heap of deadlines.
//
// lws 4.1.6 keeps its timers (lws_sul) in one sorted linked list, and every
// lws_sul_schedule() walks it from the head to find its place: with 19,000
// heartbeat timers one reschedule took ~1.5 ms (a cache miss per entry), and
// a heartbeat every 30 s on each of them would need more than a core. Here a
// schedule, reschedule or cancel is O(log n) on a contiguous array, and the
// earliest deadline is O(1); the Context drives the whole heap with one
// deadline of its event loop (Context::timers()).
//
// Service thread only; no locking. A Timer is embedded in its owner, which
// must Cancel() it (or let ~Timer do it) before it goes away.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <vector>

namespace nlws {

// Microseconds on the monotonic clock, as lws_now_usecs() counts them (any thread).
int64_t MonotonicUs();

class TimerHeap;

class Timer {
 public:
  using Callback = void (*)(void* arg);

  Timer() = default;
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer();  // cancels

  bool scheduled() const { return heap_ != nullptr; }

 private:
  friend class TimerHeap;
  TimerHeap* heap_ = nullptr;
  size_t index_ = 0;
  Callback cb_ = nullptr;
  void* arg_ = nullptr;
};

class TimerHeap {
 public:
  TimerHeap() = default;
  TimerHeap(const TimerHeap&) = delete;
  TimerHeap& operator=(const TimerHeap&) = delete;
  ~TimerHeap();  // unschedules what is left, without running it

  // (Re)schedules t to run cb(arg) at due_us (MonotonicUs() clock). A timer
  // scheduled on another heap is moved here.
  void Schedule(Timer* t, int64_t due_us, Timer::Callback cb, void* arg);
  void Cancel(Timer* t);  // no-op when not scheduled

  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  int64_t earliest_us() const { return heap_.empty() ? 0 : heap_[0].due_us; }  // 0: none

  // Runs every timer due at or before now_us, earliest first. Each is
  // unscheduled before its callback runs; a callback may schedule or cancel
  // any timer (itself included). A timer a callback schedules for now_us or
  // earlier also runs in this call. Returns how many ran.
  size_t RunDue(int64_t now_us);

 private:
  struct Entry {
    int64_t due_us;  // kept here only: comparisons stay in this array
    Timer* timer;
  };
  void Place(size_t i, Entry e);  // heap_[i] = e, and the timer learns its index
  void SiftUp(size_t i);
  void SiftDown(size_t i);
  void RemoveAt(size_t i);

  std::vector<Entry> heap_;
};

}  // namespace nlws
