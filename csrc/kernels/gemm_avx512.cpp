// AVX-512 GEMM micro-kernels: the shared body (gemm_ukernel.inc) on 16-float zmm vectors.
// Compiled with -mavx512f/vl/bw/dq -mfma (CMakeLists.txt) and only called when the CPU
// has them (csrc/cpu.cpp).
#include <immintrin.h>

#include "kernels/gemm_kernel.hpp"

namespace fastmlp {

namespace {

// Block sizes, AVX-512. MR x NR = 14 x 32: 28 accumulators + 2 B vectors of the 32 zmm.
// KC: a 14-row A panel (KC*56 B) plus a 32-column B panel (KC*128 B) stay within the
// 32 KiB L1 between reuses; MC x KC of A fits in L2 (1 MiB); NC bounds the packed B block.
constexpr int kMR = 14, kNV = 2, kVL = 16;
constexpr index_t kKC = 256, kMC = 112, kNC = 1024;

using vec = __m512;

inline __mmask16 lanes(int n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF)
                 : static_cast<__mmask16>(n <= 0 ? 0u : (1u << n) - 1u);
}
inline vec v_zero() { return _mm512_setzero_ps(); }
inline vec v_load(const float* p) { return _mm512_loadu_ps(p); }
inline vec v_load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
inline void v_store(float* p, vec x) { _mm512_storeu_ps(p, x); }
inline void v_store_n(float* p, vec x, int n) { _mm512_mask_storeu_ps(p, lanes(n), x); }
inline vec v_bcast(const float* p) { return _mm512_set1_ps(*p); }
inline vec v_fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
inline vec v_add(vec a, vec b) { return _mm512_add_ps(a, b); }
inline vec v_relu(vec x) {
  const vec z = _mm512_setzero_ps();
  return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, z, _CMP_LT_OQ), z);
}
inline void v_prefetch(const float* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
}

#include "kernels/gemm_ukernel.inc"

constexpr GemmKernelSet kSet{"avx512 14x32", kMR,          kNV * kVL,       kKC, kMC,
                             kNC,            &gemm_ukernel<false>, &gemm_ukernel<true>};

}  // namespace

const GemmKernelSet& gemm_kernels_avx512() { return kSet; }

}  // namespace fastmlp
