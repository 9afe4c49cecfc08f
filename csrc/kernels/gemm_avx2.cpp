// AVX2+FMA GEMM micro-kernels: the shared body (gemm_ukernel.inc) on 8-float ymm vectors.
// Compiled with -mavx2 -mfma (CMakeLists.txt) and only called when the CPU has them
// (csrc/isa.cpp).
#include <immintrin.h>

#include <utility>

#include "kernels/gemm.hpp"
#include "kernels/gemm_kernel.hpp"

namespace fastmlp {

namespace {

constexpr int kVL = 8;

using vec = __m256;

// mask(n): lanes < n all ones. A window into {-1 x 8, 0 x 8}.
alignas(64) constexpr std::int32_t kMaskWindow[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                      0,  0,  0,  0,  0,  0,  0,  0};
inline __m256i lanes(int n) {
  n = n < 0 ? 0 : (n > 8 ? 8 : n);
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskWindow + 8 - n));
}
inline vec v_zero() { return _mm256_setzero_ps(); }
inline vec v_load(const float* p) { return _mm256_loadu_ps(p); }
inline vec v_load_n(const float* p, int n) { return _mm256_maskload_ps(p, lanes(n)); }
// vmaskmovps is slower than a plain load: masked B loads only in the last panel.
using lanes_t = __m256i;
inline lanes_t v_lanes(int n) { return lanes(n); }
inline vec v_load_m(const float* p, lanes_t m) { return _mm256_maskload_ps(p, m); }
inline void v_store(float* p, vec x) { _mm256_storeu_ps(p, x); }
inline void v_store_n(float* p, vec x, int n) { _mm256_maskstore_ps(p, lanes(n), x); }
inline vec v_bcast(const float* p) { return _mm256_broadcast_ss(p); }
inline vec v_fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
inline vec v_add(vec a, vec b) { return _mm256_add_ps(a, b); }
inline vec v_mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
inline vec v_sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
inline vec v_relu(vec x) {
  const vec z = _mm256_setzero_ps();
  return _mm256_blendv_ps(x, z, _mm256_cmp_ps(x, z, _CMP_LT_OQ));
}
inline vec v_gate(vec s, vec o) {
  return _mm256_and_ps(s, _mm256_cmp_ps(o, _mm256_setzero_ps(), _CMP_GT_OQ));
}
// always_inline: GCC treats a prefetch as a const call and may drop an out-of-line one.
inline __attribute__((always_inline)) void v_prefetch(const float* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
}

#include "kernels/gemm_ukernel.inc"

// Block sizes, AVX2 (two ymm FMAs per cycle).
//   tile 6 x 16: 12 accumulators + 2 B vectors + 1 broadcast of the 16 ymm; 12 FMAs per
//        2 vector loads and 6 broadcasts. Also used for narrow products (10 columns
//        fill 10/16 lanes either way).
//   row 1 x 64: for one row (one image's prediction): 8 independent chains where the
//        6 x 16 tile's one-row edge has 2 (1 x 784 x 256 on one AMD EPYC Zen 3 core:
//        34 -> 18 us, median; tiles of 2..5 rows bought nothing over the edge tiles).
//   KC 512, MC 96, NC 1024: as for AVX-512 (the B panel streams from L2, A block in L2).
//   B is packed from 128 rows (the packed panel stays in L1).
constexpr GemmKernelSet kSet{
    "avx2",
    gemm_tile<6, 2>(),
    gemm_tile<6, 2>(),
    gemm_tile<1, 8>(),
    512, 96, 1024, 128};

}  // namespace

static_assert(kGemmPanel % kSet.wide.nr == 0 && kGemmPanel % kSet.narrow.nr == 0,
              "thread panels must hold whole register tiles");

const GemmKernelSet& gemm_kernels_avx2() { return kSet; }

}  // namespace fastmlp
