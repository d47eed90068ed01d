// Deadlines on the service thread: a binary min-heap of timers driven by one
// lws sul that is always set for the earliest deadline.
//
// lws keeps its suls in a sorted linked list, so scheduling one costs a walk
// over every other sul; with a heartbeat timer per connection that walk grew
// with the connection count. Here scheduling, moving and cancelling a timer
// cost O(log n) and a wake-up touches only the timers that are due.
//
// Service thread only.
#pragma once

#include <libwebsockets.h>

#include <cstdint>
#include <vector>

namespace nlws {

// Microseconds on the monotonic clock (any thread).
int64_t MonotonicUs();

class TimerHeap;

// Embedded in its owner; `fire` is called with it when it is due.
struct Timer {
  static constexpr uint32_t kIdle = 0xFFFFFFFFu;
  int64_t at_us = 0;
  void (*fire)(Timer*) = nullptr;
  void* owner = nullptr;
  uint32_t index = kIdle;  // position in the heap; kIdle when not scheduled
  bool scheduled() const { return index != kIdle; }
};

class TimerHeap {
 public:
  TimerHeap() = default;
  TimerHeap(const TimerHeap&) = delete;
  TimerHeap& operator=(const TimerHeap&) = delete;
  ~TimerHeap();

  void Init(lws_context* ctx) { lws_ = ctx; }
  // (Re)schedules t to fire at `at_us` (MonotonicUs time).
  void Schedule(Timer* t, int64_t at_us);
  void ScheduleIn(Timer* t, int64_t delay_us) { Schedule(t, MonotonicUs() + delay_us); }
  void Cancel(Timer* t);
  size_t size() const { return heap_.size(); }
  // Drops every timer without firing (context teardown).
  void Clear();

 private:
  static void OnSul(lws_sorted_usec_list_t* sul);
  void RunDue();
  void Arm();
  void Up(uint32_t i);
  void Down(uint32_t i);
  void Place(uint32_t i, Timer* t) {
    heap_[i] = t;
    t->index = i;
  }

  lws_context* lws_ = nullptr;
  std::vector<Timer*> heap_;
  struct {
    lws_sorted_usec_list_t sul;  // first member: the lws callback casts back
    TimerHeap* owner;
  } sul_ = {};
  int64_t armed_at_ = 0;  // deadline the sul is set for; 0: not set
  bool running_ = false;  // inside RunDue
};

}  // namespace nlws
