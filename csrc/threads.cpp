// Fork detection for resolve_threads (common.hpp).
//
// A forked child inherits the parent's memory, including the OpenMP runtime's record of
// its worker threads, but not the threads: the child's first parallel region would wait
// for them forever (multiprocessing's default "fork" start method does exactly this
// after the parent trained with two threads). The handler below marks every child, and
// the child then runs single-threaded; results are the same, since they never depend on
// the thread count.
#include <atomic>

#include "common.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace fastmlp {

namespace {

std::atomic<bool> g_forked{false};

#if defined(__unix__) || defined(__APPLE__)
void mark_child() { g_forked.store(true, std::memory_order_relaxed); }

// Registered when the library is loaded, before any thread can have started.
[[maybe_unused]] const bool g_registered = pthread_atfork(nullptr, nullptr, &mark_child) == 0;
#endif

}  // namespace

bool in_forked_child() { return g_forked.load(std::memory_order_relaxed); }

}  // namespace fastmlp
