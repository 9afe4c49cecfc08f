// AVX512-BF16 kernel of the bfloat16 GEMM (gemm_bf16.hpp): vdpbf16ps on a 14 x 32 register
// tile, and the hardware conversion the tests compare to_bf16 with. Compiled with
// -mavx512bf16 (CMakeLists.txt), called only when the CPU has it (gemm_bf16.cpp).
#include <immintrin.h>

#include <array>
#include <cstring>
#include <utility>

#include "kernels/gemm_bf16_kernel.hpp"

namespace fastmlp {

namespace {

constexpr int kMR = 14;  // 28 accumulators + 2 B vectors of the 32 zmm, as in float32

// t (M, 32) = A (M rows from a, stride lda) · B (the pair panel at b, 32 columns), over
// np pairs. Each pair step loads the panel's two vectors once and broadcasts each row's
// pair (one 32-bit word) into the instruction's memory operand.
template <int M>
void tile(index_t np, const bf16_t* a, index_t lda, const bf16_t* b, index_t ldb, float* t,
          index_t ldt) {
  __m512 c0[M], c1[M];
  for (int r = 0; r < M; ++r) c0[r] = _mm512_setzero_ps(), c1[r] = _mm512_setzero_ps();
  for (index_t q = 0; q < np; ++q) {
    const bf16_t* bq = b + q * 2 * ldb;
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bq);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bq + 32);
    for (int r = 0; r < M; ++r) {
      std::int32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * q, sizeof pair);
      const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
      c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
    }
  }
  for (int r = 0; r < M; ++r) {
    _mm512_storeu_ps(t + r * ldt, c0[r]);
    _mm512_storeu_ps(t + r * ldt + 16, c1[r]);
  }
}

using TileFn = void (*)(index_t, const bf16_t*, index_t, const bf16_t*, index_t, float*,
                        index_t);

template <int... M>
constexpr auto tiles(std::integer_sequence<int, M...>) {
  return std::array<TileFn, sizeof...(M)>{&tile<M + 1>...};
}
const auto kTiles = tiles(std::make_integer_sequence<int, kMR>{});

}  // namespace

void bf16_block_avx512(const Bf16GemmArgs& p, index_t i0, index_t mc, index_t j0, index_t nc,
                       float* t, index_t ldt) {
  for (index_t c = 0; c < nc; c += 32)
    for (index_t r = 0; r < mc; r += kMR) {
      const int m = static_cast<int>(mc - r < kMR ? mc - r : kMR);
      kTiles[m - 1](p.k / 2, p.a + (i0 + r) * p.lda, p.lda, p.b + 2 * (j0 + c), p.ldb,
                    t + r * ldt + c, ldt);
    }
}

void bf16_convert_hardware(const float* src, index_t n, bf16_t* dst) {
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
  for (; i < n; ++i) {
    float in[16] = {src[i]};
    bf16_t out[16];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(in)));
    dst[i] = out[0];
  }
}

float bf16_dot_pair_hardware(const bf16_t a[2], const bf16_t b[2], float s) {
  std::int32_t pa, pb;
  std::memcpy(&pa, a, sizeof pa);
  std::memcpy(&pb, b, sizeof pb);
  const __m512 r = _mm512_dpbf16_ps(_mm512_set1_ps(s), (__m512bh)_mm512_set1_epi32(pa),
                                    (__m512bh)_mm512_set1_epi32(pb));
  return _mm512_cvtss_f32(r);
}

}  // namespace fastmlp
