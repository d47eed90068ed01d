#include "timers.h"

#include <time.h>

namespace nlws {

int64_t MonotonicUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

Timer::~Timer() {
  if (heap_) heap_->Cancel(this);
}

TimerHeap::~TimerHeap() {
  for (Entry& e : heap_) e.timer->heap_ = nullptr;
  heap_.clear();
}

void TimerHeap::Place(size_t i, Entry e) {
  heap_[i] = e;
  e.timer->index_ = i;
}

void TimerHeap::SiftUp(size_t i) {
  Entry e = heap_[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap_[parent].due_us <= e.due_us) break;
    Place(i, heap_[parent]);
    i = parent;
  }
  Place(i, e);
}

void TimerHeap::SiftDown(size_t i) {
  Entry e = heap_[i];
  size_t n = heap_.size();
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_[child + 1].due_us < heap_[child].due_us) child++;
    if (e.due_us <= heap_[child].due_us) break;
    Place(i, heap_[child]);
    i = child;
  }
  Place(i, e);
}

void TimerHeap::RemoveAt(size_t i) {
  Timer* t = heap_[i].timer;
  t->heap_ = nullptr;
  Entry last = heap_.back();
  heap_.pop_back();
  if (i == heap_.size()) return;  // it was the last entry
  Place(i, last);
  if (i > 0 && heap_[(i - 1) / 2].due_us > last.due_us)
    SiftUp(i);
  else
    SiftDown(i);
}

void TimerHeap::Schedule(Timer* t, int64_t due_us, Timer::Callback cb, void* arg) {
  t->cb_ = cb;
  t->arg_ = arg;
  if (t->heap_ && t->heap_ != this) t->heap_->Cancel(t);
  if (t->heap_ == this) {
    size_t i = t->index_;
    int64_t old = heap_[i].due_us;
    heap_[i].due_us = due_us;
    if (due_us < old)
      SiftUp(i);
    else if (due_us > old)
      SiftDown(i);
    return;
  }
  t->heap_ = this;
  heap_.push_back(Entry{due_us, t});
  SiftUp(heap_.size() - 1);
}

void TimerHeap::Cancel(Timer* t) {
  if (t->heap_ != this) return;
  RemoveAt(t->index_);
}

size_t TimerHeap::RunDue(int64_t now_us) {
  size_t ran = 0;
  while (!heap_.empty() && heap_[0].due_us <= now_us) {
    Timer* t = heap_[0].timer;
    RemoveAt(0);
    ran++;
    t->cb_(t->arg_);  // may free t's owner: t is not touched after this
  }
  return ran;
}

}  // namespace nlws
