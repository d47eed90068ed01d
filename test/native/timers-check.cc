// Checks native/timers.{h,cc} against a plain reference model, built and run by
// test/timers.test.mjs (g++ -fsanitize=address,undefined). Prints one line per
// check; exits non-zero with the first difference.
//
//   timers-check <seed> <operations>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../../native/timers.h"

using nlws::Timer;
using nlws::TimerHeap;

namespace {

int failures = 0;

void Check(bool ok, const std::string& what) {
  if (!ok) {
    fprintf(stderr, "FAIL: %s\n", what.c_str());
    failures++;
    exit(1);
  }
}

// ---- randomized: the heap against a reference model ----------------------------------------

struct Owner;
struct Model {
  TimerHeap heap;
  std::vector<std::unique_ptr<Owner>> owners;
  std::map<Owner*, int64_t> due;  // reference: what is scheduled, and when
  std::vector<Owner*> fired;
};

struct Owner {
  Model* m;
  Timer t;
  static void Fire(void* arg) {
    auto* o = static_cast<Owner*>(arg);
    o->m->fired.push_back(o);
  }
};

void Randomized(uint32_t seed, int ops) {
  std::mt19937 rng(seed);
  Model m;
  const int kOwners = 500;
  for (int i = 0; i < kOwners; i++) m.owners.emplace_back(new Owner{&m, {}});
  int64_t now = 1000;
  size_t ran_total = 0;
  for (int op = 0; op < ops; op++) {
    Owner* o = m.owners[rng() % kOwners].get();
    switch (rng() % 6) {
      case 0:
      case 1:
      case 2: {  // schedule / reschedule, sometimes with equal deadlines
        int64_t due = now + static_cast<int64_t>(rng() % 4 == 0 ? 50 : rng() % 10000);
        m.heap.Schedule(&o->t, due, Owner::Fire, o);
        m.due[o] = due;
        break;
      }
      case 3:
        m.heap.Cancel(&o->t);
        m.due.erase(o);
        break;
      case 4: {  // destroy the owner with its timer (~Timer cancels), make a new one
        m.due.erase(o);
        for (auto& p : m.owners)
          if (p.get() == o) p.reset(new Owner{&m, {}});
        break;
      }
      case 5: {  // time passes
        now += static_cast<int64_t>(rng() % 3000);
        m.fired.clear();
        size_t ran = m.heap.RunDue(now);
        ran_total += ran;
        std::vector<std::pair<int64_t, Owner*>> expect;
        for (auto it = m.due.begin(); it != m.due.end();) {
          if (it->second <= now) {
            expect.emplace_back(it->second, it->first);
            it = m.due.erase(it);
          } else {
            ++it;
          }
        }
        Check(ran == expect.size(), "RunDue ran " + std::to_string(ran) + ", expected " +
                                        std::to_string(expect.size()) + " at op " +
                                        std::to_string(op));
        // Fired in deadline order: every fired owner was due, deadlines never decrease.
        int64_t last = 0;
        for (Owner* f : m.fired) {
          auto e = std::find_if(expect.begin(), expect.end(),
                                [&](const auto& p) { return p.second == f; });
          Check(e != expect.end(), "a timer that was not due ran");
          Check(e->first >= last, "timers ran out of deadline order");
          last = e->first;
          Check(!f->t.scheduled(), "a timer still scheduled inside its own callback's aftermath");
        }
        break;
      }
    }
    // Invariants after every operation.
    Check(m.heap.size() == m.due.size(), "size differs from the model at op " + std::to_string(op));
    int64_t earliest = 0;
    for (auto& kv : m.due)
      if (!earliest || kv.second < earliest) earliest = kv.second;
    Check(m.heap.earliest_us() == earliest,
          "earliest differs from the model at op " + std::to_string(op));
    for (auto& p : m.owners)
      Check(p->t.scheduled() == (m.due.count(p.get()) == 1), "scheduled() differs from the model");
  }
  printf("ok randomized: seed %u, %d operations, %zu timers ran\n", seed, ops, ran_total);
}

// ---- callbacks that change the heap -------------------------------------------------------

struct Chain {
  TimerHeap* heap;
  Timer a, b, c;
  std::string log;
};

void Reentrancy() {
  TimerHeap heap;
  Chain ch{&heap, {}, {}, {}, ""};
  // a reschedules itself once for the same "now": it runs again in the same RunDue.
  static int a_runs;
  a_runs = 0;
  heap.Schedule(
      &ch.a, 10,
      [](void* arg) {
        auto* c = static_cast<Chain*>(arg);
        c->log += "a";
        Check(!c->a.scheduled(), "a timer is unscheduled when its callback runs");
        if (++a_runs == 1)
          c->heap->Schedule(
              &c->a, 20, [](void* x) { static_cast<Chain*>(x)->log += "A"; }, c);
      },
      &ch);
  // b cancels c, which was due later in the same RunDue.
  heap.Schedule(
      &ch.b, 15,
      [](void* arg) {
        auto* c = static_cast<Chain*>(arg);
        c->log += "b";
        c->heap->Cancel(&c->c);
      },
      &ch);
  heap.Schedule(
      &ch.c, 16, [](void* arg) { static_cast<Chain*>(arg)->log += "c"; }, &ch);
  size_t ran = heap.RunDue(30);
  // a at 10, b at 15 (cancels c at 16), then A at 20.
  Check(ch.log == "abA", "reentrant run order: " + ch.log);
  Check(ran == ch.log.size(), "RunDue count with reentrant changes");
  Check(heap.empty() && heap.earliest_us() == 0, "heap empty after everything ran");
  printf("ok reentrancy: %s\n", ch.log.c_str());

  // A callback that destroys its own owner.
  struct Self {
    Timer t;
  };
  auto* s = new Self;
  heap.Schedule(
      &s->t, 5, [](void* arg) { delete static_cast<Self*>(arg); }, s);
  Check(heap.RunDue(5) == 1 && heap.empty(), "callback deleting its owner");
  printf("ok owner deleted in its callback\n");

  // Moving a timer between heaps; the heap's destructor unschedules what is left.
  Timer moved;
  {
    TimerHeap other;
    other.Schedule(
        &moved, 7, [](void*) {}, nullptr);
    heap.Schedule(
        &moved, 8, [](void*) {}, nullptr);
    Check(other.empty() && heap.size() == 1, "a timer moves to the heap that schedules it");
    other.Schedule(
        &moved, 9, [](void*) {}, nullptr);
  }
  Check(!moved.scheduled() && heap.empty(), "~TimerHeap unschedules its timers");
  printf("ok move between heaps, heap destructor\n");
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t seed = argc > 1 ? static_cast<uint32_t>(strtoul(argv[1], nullptr, 10)) : 1;
  int ops = argc > 2 ? atoi(argv[2]) : 200000;
  Randomized(seed, ops);
  Reentrancy();
  return failures ? 1 : 0;
}
