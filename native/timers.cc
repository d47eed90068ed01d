#include "timers.h"

#include <time.h>

namespace nlws {

int64_t MonotonicUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

TimerHeap::~TimerHeap() { Clear(); }

void TimerHeap::Clear() {
  for (Timer* t : heap_) t->index = Timer::kIdle;
  heap_.clear();
  if (lws_ && armed_at_) lws_sul_cancel(&sul_.sul);
  armed_at_ = 0;
}

void TimerHeap::Up(uint32_t i) {
  Timer* t = heap_[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (heap_[parent]->at_us <= t->at_us) break;
    Place(i, heap_[parent]);
    i = parent;
  }
  Place(i, t);
}

void TimerHeap::Down(uint32_t i) {
  Timer* t = heap_[i];
  uint32_t n = static_cast<uint32_t>(heap_.size());
  while (true) {
    uint32_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_[c + 1]->at_us < heap_[c]->at_us) c++;
    if (t->at_us <= heap_[c]->at_us) break;
    Place(i, heap_[c]);
    i = c;
  }
  Place(i, t);
}

void TimerHeap::Schedule(Timer* t, int64_t at_us) {
  if (t->scheduled()) {
    int64_t old = t->at_us;
    t->at_us = at_us;
    if (at_us < old)
      Up(t->index);
    else
      Down(t->index);
  } else {
    t->at_us = at_us;
    heap_.push_back(t);
    Up(static_cast<uint32_t>(heap_.size() - 1));
  }
  if (!running_) Arm();
}

void TimerHeap::Cancel(Timer* t) {
  if (!t->scheduled()) return;
  uint32_t i = t->index;
  t->index = Timer::kIdle;
  Timer* last = heap_.back();
  heap_.pop_back();
  if (last != t) {
    Place(i, last);
    Up(i);
    Down(last->index);
  }
  // The sul stays armed for the old earliest deadline; when it fires early it
  // runs nothing and re-arms (cheaper than moving it on every cancel).
}

void TimerHeap::Arm() {
  if (heap_.empty() || !lws_) return;
  int64_t next = heap_[0]->at_us;
  if (armed_at_ && armed_at_ <= next) return;  // fires in time; RunDue re-arms
  armed_at_ = next;
  sul_.owner = this;
  int64_t delay = next - MonotonicUs();
  if (delay < 1) delay = 1;
  lws_sul_schedule(lws_, 0, &sul_.sul, OnSul, static_cast<lws_usec_t>(delay));
}

void TimerHeap::OnSul(lws_sorted_usec_list_t* sul) {
  TimerHeap* h = reinterpret_cast<decltype(sul_)*>(sul)->owner;
  h->armed_at_ = 0;
  h->RunDue();
}

void TimerHeap::RunDue() {
  running_ = true;
  int64_t now = MonotonicUs();
  bool fired = false;
  while (!heap_.empty() && heap_[0]->at_us <= now) {
    Timer* t = heap_[0];
    Cancel(t);
    fired = true;
    t->fire(t);  // may schedule or cancel any timer, or free its owner
  }
  running_ = false;
  Arm();
  // lws runs timers just before it polls: make that poll return at once so
  // that what the timers did is written and reported now.
  if (fired && lws_) lws_cancel_service(lws_);
}

}  // namespace nlws
