// fastmlp/csrc/common.hpp — types shared by every kernel.
//
// Index arithmetic is 64-bit everywhere (index_t): a million 28x28 images already overflow
// 32-bit element offsets once they are float32 activations of a wide layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

// Element-wise loops worth vectorizing for the machine at hand: GCC builds one clone per
// instruction set and the loader picks the best the CPU runs (never -march=native). The
// clones compute bitwise-identical results: fp-contraction is off, so every clone does
// the same IEEE multiplies, adds, divides and square roots.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FASTMLP_SIMD_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FASTMLP_SIMD_CLONES
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FASTMLP_RESTRICT __restrict__
#else
#define FASTMLP_RESTRICT
#endif

namespace fastmlp {

using index_t = std::int64_t;

// A hint to start reading n bytes from p into the L2 cache, a 64-byte line at a time.
// (Not into L1: on an Intel Xeon each L1 prefetch holds one of the core's few line-fill
// buffers until its line arrives from memory. One thread gathering random 3-KiB rows ran
// at 6.0 GB/s with them, 7.8 GB/s with no prefetch, 9.5 GB/s into L2; in training the
// bfloat16 gather phase took 12% less time, the float32 one 3%.)
inline void prefetch_bytes(const void* p, std::size_t n) {
#if defined(__GNUC__) || defined(__clang__)
  const char* c = static_cast<const char*>(p);
  for (std::size_t o = 0; o < n; o += 64) __builtin_prefetch(c + o, 0, 2);
#else
  (void)p, (void)n;
#endif
}

// Hidden-layer activations; their names are in kernels/activation.hpp.
enum class Activation : int { Identity = 0, ReLU = 1, Logistic = 2, Tanh = 3 };

// Threads available to a parallel region opened by fastmlp when the caller asked for
// "all": OpenMP's own setting, which OMP_NUM_THREADS and threadpoolctl both adjust.
inline int default_num_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// The largest team fastmlp opens. Results do not depend on the thread count, so a larger
// request (n_threads=100000, OMP_NUM_THREADS=100000) is clamped instead of handed to the
// OpenMP runtime, which crashes or exits the process on such counts.
constexpr int kMaxThreads = 256;

// True in a process forked from one that had started OpenMP threads (threads.cpp): the
// runtime's thread pool does not survive fork(), and a parallel region in the child
// waits forever for it, so the child runs every region on its own thread.
bool in_forked_child();

// The team size of a parallel region asked for n_threads (<= 0: all of OpenMP's).
inline int resolve_threads(int n_threads) {
  if (in_forked_child()) return 1;
  const int n = n_threads > 0 ? n_threads : default_num_threads();
  return n < 1 ? 1 : n > kMaxThreads ? kMaxThreads : n;
}

// OpenMP spelled once: a parallel region of n threads, a barrier, and who am I in it.
// Without OpenMP the region is the calling thread alone and barriers are no-ops.
#if defined(_OPENMP)
#define FASTMLP_PRAGMA(x) _Pragma(#x)
#define FASTMLP_PARALLEL(n) FASTMLP_PRAGMA(omp parallel num_threads(n))
#define FASTMLP_BARRIER FASTMLP_PRAGMA(omp barrier)
inline int thread_index() { return omp_get_thread_num(); }
inline int team_size() { return omp_get_num_threads(); }
#else
#define FASTMLP_PARALLEL(n)
#define FASTMLP_BARRIER
inline int thread_index() { return 0; }
inline int team_size() { return 1; }
#endif

// Buffers that threads share are split between them at offsets that are multiples of
// 64 bytes (a column block of a 256-wide layer, a block of rows); starting them on a
// cache line means no line is written by two cores in the same phase. A line written by
// both ping-pongs between their caches on every batch ("false sharing"): in the training
// loop that made whole runs up to 1.5x slower, depending on where malloc put a buffer.
constexpr std::size_t kCacheLine = 64;

template <class T>
struct CacheAlignedAllocator {
  using value_type = T;
  CacheAlignedAllocator() = default;
  template <class U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kCacheLine)));
  }
  void deallocate(T* p, std::size_t) noexcept {
    ::operator delete(p, std::align_val_t(kCacheLine));
  }
  template <class U>
  bool operator==(const CacheAlignedAllocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const CacheAlignedAllocator<U>&) const noexcept { return false; }
};

// A std::vector whose data starts on a cache line.
template <class T>
using aligned_vector = std::vector<T, CacheAlignedAllocator<T>>;

// Split [0, n) into nth contiguous ranges; range ith is [begin, end). Static and
// deterministic: the same (n, nth) always gives the same ranges.
inline void split_range(index_t n, int ith, int nth, index_t* begin, index_t* end) {
  const index_t base = n / nth, rem = n % nth;
  *begin = ith * base + (ith < rem ? ith : rem);
  *end = *begin + base + (ith < rem ? 1 : 0);
}

}  // namespace fastmlp
