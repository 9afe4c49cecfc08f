// fastmlp/csrc/barrier.hpp — the training loop's barrier between the phases of a batch.
//
// OpenMP's barrier spins before it sleeps (libgomp: some 300000 rounds, milliseconds).
// Alone on the machine that is the fastest wait, but when other busy threads share the
// cores (a second fit, the other worker of a two-job grid search, any busy process), a
// thread spinning at the barrier holds its core while the thread it waits for sits in
// the run queue, until the scheduler's time slice ends: every batch, twice. Two 2-thread
// fits on a 2-core AMD EPYC ran 48x slower per epoch than one alone (8.7 s against
// 0.18 s, bfloat16 reference run). This barrier spins for a while, then sleeps on a
// condition variable until the last thread to arrive wakes it, so the thread it waits
// for (or the other process) gets the core. How long it spins adapts: up to 100 us,
// longer than the threads of a batch drift apart when they have the cores to
// themselves (sleeping within 5 us cost a third of the epoch there), halved after every
// wait that ended asleep, down to 5 us while the cores are shared (the two fits above:
// 0.58 s an epoch at a fixed 100 us, 0.35-0.40 s at 5 us). Yielding the core at every
// round instead left the wait to the scheduler: 0.8 ms a barrier for a team of 3 threads
// on 2 cores.
//
// The barrier is also the memory fence between phases: every write a thread made before
// wait() is visible to every thread after it (the last arrival's store of `released_`,
// the others' loads of it; each arrival's fetch_add releases its own writes to the last).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "common.hpp"

namespace fastmlp {

class TeamBarrier {
 public:
  // The team size, set by one thread before the team's first wait() (and an OpenMP
  // barrier between the two).
  void set_team(int n) { n_ = n; }

  // What each thread keeps between its calls of wait().
  struct Waiter {
    bool sense = false;
    std::chrono::nanoseconds spin = kSpinMax;
  };

  // Returns once all n threads have called it.
  void wait(Waiter& me) {
    const bool sense = me.sense = !me.sense;
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);  // before the release: the next round
      released_.store(sense);                        // starts from zero
      if (sleepers_.load() > 0) {  // (seq_cst, as the sleeper's count and check below)
        std::lock_guard<std::mutex> lock(mutex_);
        woken_.notify_all();
      }
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    for (unsigned round = 1; released_.load(std::memory_order_acquire) != sense; ++round) {
      cpu_relax();
      if (round % 64 == 0 && std::chrono::steady_clock::now() - start > me.spin) {
        sleep_until_released(sense);
        me.spin = std::max<std::chrono::nanoseconds>(me.spin / 2, kSpinMin);
        return;
      }
    }
    me.spin = std::min<std::chrono::nanoseconds>(me.spin + kSpinMax / 16, kSpinMax);
  }

 private:
  static constexpr std::chrono::microseconds kSpinMax{100}, kSpinMin{5};

  // Either the releaser saw this thread's count (and notifies under the mutex, which
  // this thread holds until it waits), or this thread's check sees the release.
  void sleep_until_released(bool sense) {
    std::unique_lock<std::mutex> lock(mutex_);
    sleepers_.fetch_add(1);
    woken_.wait(lock, [&] { return released_.load() == sense; });
    sleepers_.fetch_sub(1);
  }

  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  int n_ = 1;
  alignas(kCacheLine) std::atomic<int> arrived_{0};  // each on a line of its own: the
  alignas(kCacheLine) std::atomic<bool> released_{false};  // waiters poll only this one
  alignas(kCacheLine) std::atomic<int> sleepers_{0};
  std::mutex mutex_;
  std::condition_variable woken_;
};

}  // namespace fastmlp
