// AVX-512 GEMM micro-kernels: the shared body (gemm_ukernel.inc) on 16-float zmm vectors.
// Compiled with -mavx512f/vl/bw/dq -mfma (CMakeLists.txt) and only called when the CPU
// has them (csrc/isa.cpp).
#include <immintrin.h>

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
using lanes_t = __mmask16;
inline lanes_t v_lanes(int n) { return lanes(n); }
inline vec v_load_m(const float* p, lanes_t m) { return _mm512_maskz_loadu_ps(m, p); }
inline void v_store(float* p, vec x) { _mm512_storeu_ps(p, x); }
inline void v_store_n(float* p, vec x, int n) { _mm512_mask_storeu_ps(p, lanes(n), x); }
inline vec v_bcast(const float* p) { return _mm512_set1_ps(*p); }
inline vec v_fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
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

#include "kernels/gemm_ukernel.inc"

// Block sizes, AVX-512 (one or two zmm FMAs per cycle).
//   tile 14 x 32: 28 accumulators + 2 B vectors of the 32 zmm; 28 FMAs per 2 vector loads
//        and 14 broadcasts, enough independent chains to cover the FMA latency.
//   narrow 16 x 16: for N <= 16 (the output layer's 10 columns would fill 10/32 lanes).
//   row 1 x 128: for one row (one image's prediction): 8 independent chains, where the
//        14 x 32 tile's one-row edge has 2 and waits on the FMA latency. One AMD EPYC
//        Zen 5 core, medians: 1 x 784 x 128 6.3 -> 3.1 us; 1 x 784 x 256 13.7 -> 10.8
//        us, where its 800 KB of B no longer fit in the core's L2.
//   KC 512: long k runs keep the partial-sum reloads rare; the B panel (KC x 32) streams
//        from L2 with prefetch (KC 196, whose panel stays in L1 for the next tile, measured
//        no faster). MC 112 rows of A (224 KiB at KC 512) stay in L2.
//   NC 1024 columns of packed B (2 MiB at KC 512) share the L3.
//   B is read in place below 512 rows (one thread, 784 x 256 weights: 128 rows 487 ->
//   464 us, 256 rows 936 -> 903 us against packing from 128).
constexpr GemmKernelSet kKernels{
    "avx512",
    gemm_tile<14, 2>(),
    gemm_tile<16, 1>(),
    gemm_tile<1, 8>(),
    512, 112, 1024, 512};

}  // namespace

static_assert(kGemmPanel % kKernels.wide.nr == 0 && kGemmPanel % kKernels.narrow.nr == 0,
              "thread panels must hold whole register tiles");

const GemmKernelSet& gemm_kernels_avx512() { return kKernels; }

}  // namespace fastmlp
