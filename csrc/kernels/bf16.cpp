// The bfloat16 packers of bf16.hpp: plain loops over to_bf16, vectorized by the compiler
// (one clone per instruction set, all rounding alike: integer operations only), or the
// AVX512-BF16 versions (gemm_bf16_avx512.cpp) where the CPU has the conversion
// instruction; the tests compare the two bitwise.
#include "kernels/bf16.hpp"

#include "kernels/gemm_bf16_kernel.hpp"
#include "kernels/optim.hpp"

namespace fastmlp {

namespace {

// The vector packers need the conversion instruction (AVX512-BF16); decided once.
bool vector_packers() {
#if defined(FASTMLP_X86_64)
  static const bool has = detected_bf16_kernel() != Bf16Kernel::Reference;
  return has;
#else
  return false;
#endif
}

}  // namespace

void bf16_pack_rows(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                    index_t kp, bf16_t* dst, index_t ldd) {
#if defined(FASTMLP_X86_64)
  if (vector_packers()) return bf16_pack_rows_avx512(src, lds, r0, r1, cols, kp, dst, ldd);
#endif
  bf16_pack_rows_scalar(src, lds, r0, r1, cols, kp, dst, ldd);
}

FASTMLP_SIMD_CLONES
bool bf16_all_finite(const bf16_t* x, index_t n) {
  int bad = 0;  // or-ed, branch-free, so the loop vectorizes
  for (index_t i = 0; i < n; ++i) bad |= (x[i] & 0x7F80u) == 0x7F80u;
  return bad == 0;
}

FASTMLP_SIMD_CLONES
void bf16_pack_rows_scalar(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                           index_t kp, bf16_t* dst, index_t ldd) {
  for (index_t r = r0; r < r1; ++r) {
    const float* s = src + r * lds;
    bf16_t* d = dst + r * ldd;
    for (index_t c = 0; c < cols; ++c) d[c] = to_bf16(s[c]);
    for (index_t c = cols; c < kp; ++c) d[c] = 0;
  }
}

void bf16_pack_transposed(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                          bf16_t* dst, index_t ldd) {
#if defined(FASTMLP_X86_64)
  if (vector_packers()) return bf16_pack_transposed_avx512(src, lds, r0, r1, cols, dst, ldd);
#endif
  bf16_pack_transposed_scalar(src, lds, r0, r1, cols, dst, ldd);
}

// 8 x 8 blocks: 8 source rows are read together so each destination row is written in
// runs of 8 elements instead of one element per cache line.
FASTMLP_SIMD_CLONES
void bf16_pack_transposed_scalar(const float* src, index_t lds, index_t r0, index_t r1,
                                 index_t cols, bf16_t* dst, index_t ldd) {
  constexpr index_t kB = 8;
  index_t r = r0;
  for (; r + kB <= r1; r += kB)
    for (index_t c = 0; c < cols; ++c)
      for (index_t q = 0; q < kB; ++q) dst[c * ldd + r + q] = to_bf16(src[(r + q) * lds + c]);
  for (; r < r1; ++r)
    for (index_t c = 0; c < cols; ++c) dst[c * ldd + r] = to_bf16(src[r * lds + c]);
}

// Two source rows at a time (a pair row of B: contiguous 32-bit words); a row without
// its partner in [r0, r1) alone.
void bf16_pack_pairs(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                     bf16_t* dst, index_t ldb) {
#if defined(FASTMLP_X86_64)
  if (vector_packers()) return bf16_pack_pairs_avx512(src, lds, r0, r1, cols, dst, ldb);
#endif
  bf16_pack_pairs_scalar(src, lds, r0, r1, cols, dst, ldb);
}

FASTMLP_SIMD_CLONES
void bf16_pack_pairs_scalar(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                            bf16_t* dst, index_t ldb) {
  for (index_t r = r0; r < r1;) {
    bf16_t* d = dst + (r / 2) * 2 * ldb;
    const float* s0 = src + r * lds;
    if ((r & 1) == 0 && r + 1 < r1) {
      const float* s1 = s0 + lds;
      for (index_t c = 0; c < cols; ++c) {
        d[2 * c] = to_bf16(s0[c]);
        d[2 * c + 1] = to_bf16(s1[c]);
      }
      r += 2;
      continue;
    }
    for (index_t c = 0; c < cols; ++c) d[2 * c + (r & 1)] = to_bf16(s0[c]);
    ++r;
  }
}

void bf16_pack_pairs_transposed(const float* src, index_t lds, index_t r0, index_t r1,
                                index_t cols, index_t kp, bf16_t* dst, index_t ldb) {
#if defined(FASTMLP_X86_64)
  if (vector_packers())
    return bf16_pack_pairs_transposed_avx512(src, lds, r0, r1, cols, kp, dst, ldb);
#endif
  bf16_pack_pairs_transposed_scalar(src, lds, r0, r1, cols, kp, dst, ldb);
}

FASTMLP_SIMD_CLONES
void bf16_pack_pairs_transposed_scalar(const float* src, index_t lds, index_t r0, index_t r1,
                                       index_t cols, index_t kp, bf16_t* dst, index_t ldb) {
  for (index_t j = r0; j < r1; ++j) {
    const float* s = src + j * lds;
    for (index_t k = 0; k < cols; ++k) dst[(k / 2) * 2 * ldb + 2 * j + (k & 1)] = to_bf16(s[k]);
    for (index_t k = cols; k < kp; ++k) dst[(k / 2) * 2 * ldb + 2 * j + (k & 1)] = 0;
  }
}

void bf16_transpose(const bf16_t* src, index_t lds, index_t rows, index_t c0, index_t c1,
                    bf16_t* dst, index_t ldd) {
#if defined(FASTMLP_X86_64)
  if (vector_packers()) return bf16_transpose_avx512(src, lds, rows, c0, c1, dst, ldd);
#endif
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = c0; c < c1; ++c) dst[c * ldd + r] = src[r * lds + c];
}

void bf16_zero_pairs(index_t r0, index_t r1, index_t cols, bf16_t* dst, index_t ldb) {
  for (index_t r = r0; r < r1; ++r) {
    bf16_t* d = dst + (r / 2) * 2 * ldb + (r & 1);
    for (index_t c = 0; c < cols; ++c) d[2 * c] = 0;
  }
}

void bf16_zero_cols(index_t rows, index_t c0, index_t c1, bf16_t* dst, index_t ldd) {
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = c0; c < c1; ++c) dst[r * ldd + c] = 0;
}

void bf16_sgd_step_pack(float* W, index_t ldw, const float* s, index_t lds, index_t h,
                        index_t n, float lr, float l2, bf16_t* wp, index_t ldwp) {
#if defined(FASTMLP_X86_64)
  if (vector_packers())
    return bf16_sgd_step_pack_avx512(W, ldw, s, lds, h, n, lr, l2, wp, ldwp);
#endif
  bf16_sgd_step_pack_scalar(W, ldw, s, lds, h, n, lr, l2, wp, ldwp);
}

void bf16_sgd_step_pack_scalar(float* W, index_t ldw, const float* s, index_t lds, index_t h,
                               index_t n, float lr, float l2, bf16_t* wp, index_t ldwp) {
  for (index_t p = 0; p < h; p += 2)
    for (index_t r = p; r < p + 2; ++r) {
      if (r < h) sgd_step(W + r * ldw, s + r * lds, n, lr, nullptr, 0.0f, false, l2);
      bf16_t* d = wp + (p / 2) * ldwp + (r - p);
      for (index_t c = 0; c < n; ++c) d[2 * c] = r < h ? to_bf16(W[r * ldw + c]) : 0;
    }
}

}  // namespace fastmlp
