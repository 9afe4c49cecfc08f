// AVX-512 GEMM micro-kernels: the shared body (gemm_ukernel.inc) on 16-float zmm vectors.
// Compiled with -mavx512f/vl/bw/dq -mfma (CMakeLists.txt) and only called when the CPU
// has them (csrc/isa.cpp).
#include <immintrin.h>

#include <atomic>
#include <utility>

#include "kernels/gemm.hpp"
#include "kernels/gemm_kernel.hpp"

namespace fastmlp {

namespace {

constexpr int kVL = 16;

using vec = __m512;

inline __mmask16 lanes(int n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF)
                 : static_cast<__mmask16>(n <= 0 ? 0u : (1u << n) - 1u);
}
inline vec v_zero() { return _mm512_setzero_ps(); }
inline vec v_load(const float* p) { return _mm512_loadu_ps(p); }
inline vec v_load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
// A masked load costs what a plain one does: every B load is masked, no second k loop.
using lanes_t = __mmask16;
constexpr bool kMaskedLoadsFree = true;
inline lanes_t v_lanes(int n) { return lanes(n); }
inline vec v_load_m(const float* p, lanes_t m) { return _mm512_maskz_loadu_ps(m, p); }
inline void v_store(float* p, vec x) { _mm512_storeu_ps(p, x); }
inline void v_store_n(float* p, vec x, int n) { _mm512_mask_storeu_ps(p, lanes(n), x); }
inline vec v_bcast(const float* p) { return _mm512_set1_ps(*p); }
inline vec v_fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
// c + b * (*p in every lane) with the broadcast folded into the FMA's memory operand.
// Same multiply-add, same rounding as v_fma(v_bcast(p), b, c); which is faster depends on
// the core (the two kernel sets below).
inline __attribute__((always_inline)) vec v_fma_bcast(const float* p, vec b, vec c) {
  __asm__("vfmadd231ps %1%{1to16%}, %2, %0" : "+v"(c) : "m"(*p), "v"(b));
  return c;
}
inline vec v_add(vec a, vec b) { return _mm512_add_ps(a, b); }
inline vec v_mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
inline vec v_sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
inline vec v_relu(vec x) {
  const vec z = _mm512_setzero_ps();
  return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, z, _CMP_LT_OQ), z);
}
inline vec v_gate(vec s, vec o) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(o, _mm512_setzero_ps(), _CMP_GT_OQ), s);
}
// always_inline: GCC treats a prefetch as a const call and may drop an out-of-line one.
inline __attribute__((always_inline)) void v_prefetch(const float* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
}

// The micro-kernel twice, with the A value broadcast two ways; one instruction stream
// per tile either way, so results are the same bit for bit.
//   folded: into each FMA's memory operand. On Intel (Sapphire Rapids) two folded loads
//     cost less than the vbroadcastss GCC emits for a row's two FMAs (64 x 784 x 128:
//     116.7 -> 114.5 us, 784 x 64 x 128 TN: 123 -> 121 us, one thread).
//   registers: one vbroadcastss per row. On AMD (Zen 5) 28 folded loads per 28 FMAs
//     outrun the two 512-bit loads a cycle: 64 x 784 x 256 141 -> 123 us, 1008 x 1024 x
//     1024 170 -> 177 GFLOP/s, one thread.
namespace folded {
constexpr bool kFmaBcastMem = true;
#include "kernels/gemm_ukernel.inc"
}  // namespace folded
namespace registers {
constexpr bool kFmaBcastMem = false;
#include "kernels/gemm_ukernel.inc"
}  // namespace registers

// Block sizes, AVX-512 (one zmm FMA per cycle on 2 x 256-bit pipes or a 512-bit one).
//   tile 14 x 32: 28 accumulators + 2 B vectors of the 32 zmm; 28 FMAs per 2 vector loads
//        and 14 broadcasts, enough independent chains to cover the FMA latency.
//   narrow 16 x 16: for N <= 16 (the output layer's 10 columns would fill 10/32 lanes).
//   KC 512: long k runs keep the partial-sum reloads rare; the B panel (KC x 32) streams
//        from L2 with prefetch. MC 112 rows of A (224 KiB at KC 512) stay in L2.
//   NC 1024 columns of packed B (2 MiB at KC 512) share the L3.
//   B is read in place below 512 rows (one thread, 784 x 256 weights: 128 rows 487 ->
//   464 us, 256 rows 936 -> 903 us against packing from 128).
constexpr GemmKernelSet kFolded{
    "avx512",
    folded::gemm_tile<14, 2>(),
    folded::gemm_tile<16, 1>(),
    512, 112, 1024, 512};
constexpr GemmKernelSet kRegisters{
    "avx512",
    registers::gemm_tile<14, 2>(),
    registers::gemm_tile<16, 1>(),
    512, 112, 1024, 512};

// -1: by CPU vendor (folded on Intel); else the Avx512Broadcast asked for.
std::atomic<int> g_broadcast{-1};

bool folds() {
  const int b = g_broadcast.load(std::memory_order_relaxed);
  if (b >= 0) return b == static_cast<int>(Avx512Broadcast::Folded);
  static const bool intel = [] {
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") != 0;
  }();
  return intel;
}

}  // namespace

static_assert(kGemmPanel % kFolded.wide.nr == 0 && kGemmPanel % kFolded.narrow.nr == 0,
              "thread panels must hold whole register tiles");

const GemmKernelSet& gemm_kernels_avx512() { return folds() ? kFolded : kRegisters; }

void set_avx512_broadcast(Avx512Broadcast b) {
  g_broadcast.store(b == Avx512Broadcast::ByCpu ? -1 : static_cast<int>(b),
                    std::memory_order_relaxed);
}

}  // namespace fastmlp
