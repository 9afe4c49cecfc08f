// fastmlp/csrc/kernels/bf16.hpp — bfloat16 numbers and the operand layouts of the bfloat16
// GEMM (gemm_bf16.hpp): rounding from float32, and the packers that lay float32 matrices
// out as the kernels read them.
//
// A bfloat16 is the upper half of a float32: 1 sign, 8 exponent and 7 mantissa bits,
// stored as a uint16_t. to_bf16 rounds the way the AVX512-BF16 conversion instruction
// (vcvtne2ps2bf16) does, so the vector packers and this scalar definition agree bitwise:
//   zero or denormal -> zero of the same sign (denormals are flushed);
//   infinity         -> infinity;
//   NaN              -> a quiet NaN (upper half, quiet bit set);
//   otherwise        -> round to nearest even (a value past bfloat16's largest rounds to
//                       infinity).
//
// Operand layouts (K is a multiple of kBf16KStep: the packers write zeros past the
// matrix's own inner dimension, so the padding adds exact zeros to every sum):
//   rows   A (M, K) row-major, row stride lda elements: A[i][k] at a[i*lda + k];
//   pairs  B (K, N) "pair-interleaved": B[k][j] at b[(k/2)*2*ldb + 2*j + (k%2)], so the
//          two k of a pair are one 32-bit word and a 16-column vector is one load; ldb is
//          the padded column count (a multiple of kBf16NStep).
//
// Threads: every packer takes a range of the source's rows (r0, r1) so threads can
// share one matrix; distinct ranges write distinct bfloat16 elements.
#pragma once

#include <cstdint>
#include <cstring>

#include "common.hpp"

namespace fastmlp {

using bf16_t = std::uint16_t;

// The inner dimension of every bfloat16 product is padded to a multiple of this (one AMX
// tile row: 32 bfloat16 = 64 bytes), its column count to kBf16NStep, its row count to
// kBf16MStep (readable rows; AMX loads whole 16-row tiles, two at a time).
constexpr index_t kBf16KStep = 32;
constexpr index_t kBf16NStep = 32;
constexpr index_t kBf16MStep = 32;

inline index_t bf16_pad(index_t n, index_t step) { return (n + step - 1) / step * step; }

// Branch-free, so the packers' loops vectorize (integer operations only: every clone of
// them rounds alike). Infinity needs no case of its own: adding the bias to 0x7F800000
// does not carry into the upper half.
inline bf16_t to_bf16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  const std::uint32_t mag = u & 0x7FFFFFFFu;
  const std::uint32_t nearest = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const std::uint32_t r = mag < 0x00800000u   ? (u >> 16) & 0x8000u   // zero, denormal
                          : mag > 0x7F800000u ? (u >> 16) | 0x0040u   // NaN, quieted
                                              : nearest;
  return static_cast<bf16_t>(r);
}

// Whether none of x[0:n] is an infinity or a NaN (exponent bits all ones).
bool bf16_all_finite(const bf16_t* x, index_t n);

inline float from_bf16(bf16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// rows: dst[r*ldd + c] = to_bf16(src[r*lds + c]) for r in [r0, r1), c < cols, and 0 for
// cols <= c < kp (kp <= ldd, the padded inner dimension).
void bf16_pack_rows(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                    index_t kp, bf16_t* dst, index_t ldd);

// rows of a transpose: dst[c*ldd + r] = to_bf16(src[r*lds + c]) for r in [r0, r1),
// c < cols (A = Sᵀ for the weight gradient; its inner dimension is S's rows).
void bf16_pack_transposed(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                          bf16_t* dst, index_t ldd);

// dst[c*ldd + r] = src[r*lds + c] for r < rows, c in [c0, c1): a transpose of bfloat16
// rows (exact: a copy).
void bf16_transpose(const bf16_t* src, index_t lds, index_t rows, index_t c0, index_t c1,
                    bf16_t* dst, index_t ldd);

// pairs of S (K, N): B = S, element (r, c) for r in [r0, r1), c < cols, into the pair
// layout with ldb columns.
void bf16_pack_pairs(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                     bf16_t* dst, index_t ldb);

// pairs of Sᵀ for S (N, K): B[k][j] = S[j][k], for S's rows j in [r0, r1), k < cols and
// zeros for cols <= k < kp (the input gradient's Wᵀ); kp >= cols, odd or even (with an
// odd kp the last pair row gets its first halves only).
void bf16_pack_pairs_transposed(const float* src, index_t lds, index_t r0, index_t r1,
                                index_t cols, index_t kp, bf16_t* dst, index_t ldb);

// The plain SGD step of h rows of W (the first an even row of the matrix) and their new
// values as the pair rows of Wp, in one pass over each pair of rows (r, r+1):
// W[r][c] -= lr * (s[r][c] + l2 * W[r][c]) for c < n (sgd_step's operations, so the two
// agree bitwise), then wp[(r/2)*ldwp + 2c + r%2] = to_bf16(W[r][c]); with h odd, the last
// pair row's partner halves are zeros (the padding row past an odd fan_in). ldwp: Wp's
// pair-row stride (2 * nout). The bfloat16 update's epilogue for stateless SGD, one call
// per register tile.
void bf16_sgd_step_pack(float* W, index_t ldw, const float* s, index_t lds, index_t h,
                        index_t n, float lr, float l2, bf16_t* wp, index_t ldwp);

// The portable loops behind the packers and the fused step above (the tests' oracle for
// the vector ones).
void bf16_pack_rows_scalar(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                           index_t kp, bf16_t* dst, index_t ldd);
void bf16_pack_transposed_scalar(const float* src, index_t lds, index_t r0, index_t r1,
                                 index_t cols, bf16_t* dst, index_t ldd);
void bf16_pack_pairs_scalar(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                            bf16_t* dst, index_t ldb);
void bf16_pack_pairs_transposed_scalar(const float* src, index_t lds, index_t r0, index_t r1,
                                       index_t cols, index_t kp, bf16_t* dst, index_t ldb);
void bf16_sgd_step_pack_scalar(float* W, index_t ldw, const float* s, index_t lds, index_t h,
                               index_t n, float lr, float l2, bf16_t* wp, index_t ldwp);

// Zero rows [r0, r1), columns [0, cols), of a pair-layout B, and columns [c0, c1) of rows
// [0, rows) of a rows-layout A: the K padding past a matrix's (or a short batch's) rows.
void bf16_zero_pairs(index_t r0, index_t r1, index_t cols, bf16_t* dst, index_t ldb);
void bf16_zero_cols(index_t rows, index_t c0, index_t c1, bf16_t* dst, index_t ldd);

}  // namespace fastmlp
