// AVX512-BF16 kernel of the bfloat16 GEMM (gemm_bf16.hpp): vdpbf16ps on a 14 x 32 register
// tile; the vector packers of bf16.hpp and the fused SGD step and repack, all with the
// conversion instruction; and the hardware conversion the tests compare to_bf16 with. Compiled with
// -mavx512bf16 (CMakeLists.txt), called only when the CPU has it (gemm_bf16.cpp).
#include <immintrin.h>

// GCC 12 warns inside its own AVX-512 intrinsics (their pass-through operand is
// _mm512_undefined_*, which it then calls maybe-uninitialized): a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <array>
#include <cstring>
#include <utility>

#include "kernels/gemm_bf16_kernel.hpp"

namespace fastmlp {

namespace {

constexpr int kMR = 14;  // 28 accumulators + 2 B vectors of the 32 zmm, as in float32

// t (M, 32) = A (M rows from a, stride lda) · B (the pair panel at b, 32 columns), over
// np pairs. Each pair step loads the panel's two vectors once and broadcasts each row's
// pair (one 32-bit word, a broadcast load) to both.
template <int M>
void tile(index_t np, const bf16_t* a, index_t lda, const bf16_t* b, index_t ldb, float* t,
          index_t ldt) {
  // Every loop over the tile's rows unrolled, so the accumulators live in registers from
  // start to end (rolled, GCC kept them on the stack, zeroed them with rep stos and
  // copied them out: a fifth of a tile's time when K is short, as in dW = X^T G).
  __m512 c0[M], c1[M];
#pragma GCC unroll 16
  for (int r = 0; r < M; ++r) c0[r] = _mm512_setzero_ps(), c1[r] = _mm512_setzero_ps();
  // Rows from a base every third row plus 0-2 row strides (x86 scaled-index addressing),
  // as in the float32 kernel: a pointer per row spilled to the stack.
  constexpr int kBases = (M + 2) / 3;
  const bf16_t* base[kBases];
#pragma GCC unroll 8
  for (int g = 0; g < kBases; ++g) base[g] = a + 3 * g * lda;
  for (index_t q = 0; q < np; ++q) {
    const bf16_t* bq = b + q * 2 * ldb;
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bq);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bq + 32);
#pragma GCC unroll 16
    for (int r = 0; r < M; ++r) {
      std::int32_t pair;
      std::memcpy(&pair, base[r / 3] + (r % 3) * lda + 2 * q, sizeof pair);
      const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
      c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < M; ++r) {
    _mm512_storeu_ps(t + r * ldt, c0[r]);
    _mm512_storeu_ps(t + r * ldt + 16, c1[r]);
  }
}

// t (1, 32 P) = one row a · P panels of B (32 P columns), over np pairs: 2 P accumulator
// chains where tile<1> has 2, which leave vdpbf16ps waiting on its latency. Each column's
// chain is tile<M>'s, so the sums are the same bits. For one image's prediction.
template <int P>
void row_tile(index_t np, const bf16_t* a, const bf16_t* b, index_t ldb, float* t) {
  __m512 c[2 * P];
#pragma GCC unroll 8
  for (int v = 0; v < 2 * P; ++v) c[v] = _mm512_setzero_ps();
  for (index_t q = 0; q < np; ++q) {
    std::int32_t pair;
    std::memcpy(&pair, a + 2 * q, sizeof pair);
    const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
    const bf16_t* bq = b + q * 2 * ldb;
#pragma GCC unroll 8
    for (int v = 0; v < 2 * P; ++v)
      c[v] = _mm512_dpbf16_ps(c[v], av, (__m512bh)_mm512_loadu_si512(bq + 32 * v));
  }
#pragma GCC unroll 8
  for (int v = 0; v < 2 * P; ++v) _mm512_storeu_ps(t + 16 * v, c[v]);
}

using TileFn = void (*)(index_t, const bf16_t*, index_t, const bf16_t*, index_t, float*,
                        index_t);
using RowTileFn = void (*)(index_t, const bf16_t*, const bf16_t*, index_t, float*);

template <int... M>
constexpr auto tiles(std::integer_sequence<int, M...>) {
  return std::array<TileFn, sizeof...(M)>{&tile<M + 1>...};
}
const auto kTiles = tiles(std::make_integer_sequence<int, kMR>{});
constexpr int kRowPanels = kBf16BlockN / 32;  // a block's columns in one row tile
const std::array<RowTileFn, kRowPanels> kRowTiles{&row_tile<1>, &row_tile<2>, &row_tile<3>,
                                                  &row_tile<4>};
static_assert(kRowPanels == 4, "one row tile per panel count of a block");

}  // namespace

void bf16_block_avx512(const Bf16GemmArgs& p, index_t i0, index_t mc, index_t j0, index_t nc,
                       float* t, index_t ldt) {
  if (mc == 1) {  // one row: the block's panels at once (nc <= kBf16BlockN)
    kRowTiles[(nc + 31) / 32 - 1](p.k / 2, p.a + i0 * p.lda, p.b + 2 * j0, p.ldb, t);
    return;
  }
  for (index_t c = 0; c < nc; c += 32)
    for (index_t r = 0; r < mc; r += kMR) {
      const int m = static_cast<int>(mc - r < kMR ? mc - r : kMR);
      kTiles[m - 1](p.k / 2, p.a + (i0 + r) * p.lda, p.lda, p.b + 2 * (j0 + c), p.ldb,
                    t + r * ldt + c, ldt);
    }
}

namespace {

// 32 floats (a masked tail: n of them) as 32 bfloat16.
inline __m512i cvt32(const float* p, int n = 32) {
  const __mmask16 lo = static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
  const __mmask16 hi =
      static_cast<__mmask16>(n >= 32 ? 0xFFFFu : n <= 16 ? 0u : (1u << (n - 16)) - 1u);
  return (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, p + 16),
                                      _mm512_maskz_loadu_ps(lo, p));
}

// The pairs (a_j, b_j) of columns j = 0..15 (half 0) or 16..31 (half 1) of two rows.
template <int half>
inline __m512i interleave(__m512i a, __m512i b) {
  alignas(64) static const std::int16_t idx[32] = {
      16 * half + 0,  32 + 16 * half + 0,  16 * half + 1,  32 + 16 * half + 1,
      16 * half + 2,  32 + 16 * half + 2,  16 * half + 3,  32 + 16 * half + 3,
      16 * half + 4,  32 + 16 * half + 4,  16 * half + 5,  32 + 16 * half + 5,
      16 * half + 6,  32 + 16 * half + 6,  16 * half + 7,  32 + 16 * half + 7,
      16 * half + 8,  32 + 16 * half + 8,  16 * half + 9,  32 + 16 * half + 9,
      16 * half + 10, 32 + 16 * half + 10, 16 * half + 11, 32 + 16 * half + 11,
      16 * half + 12, 32 + 16 * half + 12, 16 * half + 13, 32 + 16 * half + 13,
      16 * half + 14, 32 + 16 * half + 14, 16 * half + 15, 32 + 16 * half + 15};
  return _mm512_permutex2var_epi16(a, _mm512_load_si512(idx), b);
}

inline __mmask32 words(index_t n) {  // the first n of 32 16-bit lanes
  return n >= 32 ? ~__mmask32(0) : static_cast<__mmask32>((1u << n) - 1u);
}

// The 16 x 16 transpose of r[0..15] (rows of 16 floats) in place: r[j] becomes column j.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  // u[4q + k] holds, in each 128-bit lane L, element k of rows 4q..4q+3 of column block L.
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(u[i], u[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(u[i], u[4 + i], 0xDD);
    t[8 + i] = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0xDD);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
  }
}

}  // namespace

void bf16_pack_rows_avx512(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                           index_t kp, bf16_t* dst, index_t ldd) {
  for (index_t r = r0; r < r1; ++r) {
    const float* s = src + r * lds;
    bf16_t* d = dst + r * ldd;
    for (index_t c = 0; c < cols; c += 32) {
      const int n = static_cast<int>(cols - c < 32 ? cols - c : 32);
      _mm512_mask_storeu_epi16(d + c, words(n), cvt32(s + c, n));
    }
    for (index_t c = cols; c < kp; ++c) d[c] = 0;
  }
}

void bf16_pack_pairs_avx512(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                            bf16_t* dst, index_t ldb) {
  index_t r = r0;
  for (; r < r1 && (r & 1); ++r)  // an odd first row: its pair's other half is not ours
    for (index_t c = 0; c < cols; ++c)
      dst[(r / 2) * 2 * ldb + 2 * c + 1] = to_bf16(src[r * lds + c]);
  for (; r + 2 <= r1; r += 2) {
    const float* s0 = src + r * lds;
    const float* s1 = s0 + lds;
    bf16_t* d = dst + (r / 2) * 2 * ldb;
    for (index_t c = 0; c < cols; c += 32) {
      const int n = static_cast<int>(cols - c < 32 ? cols - c : 32);
      const __m512i a = cvt32(s0 + c, n), b = cvt32(s1 + c, n);
      // columns c..c+15 then c+16..c+31: 2 bfloat16 each
      _mm512_mask_storeu_epi16(d + 2 * c, words(2 * n), interleave<0>(a, b));
      if (n > 16) _mm512_mask_storeu_epi16(d + 2 * c + 32, words(2 * n - 32), interleave<1>(a, b));
    }
  }
  for (; r < r1; ++r)  // a last row without its partner
    for (index_t c = 0; c < cols; ++c) dst[(r / 2) * 2 * ldb + 2 * c] = to_bf16(src[r * lds + c]);
}

// Wᵀ's pair layout is a transpose of 32-bit words: the pair (k, k+1) of source row j
// is word (k/2, j) of dst. So 16 rows x 32 columns at a time: each row converted to 16
// words, the 16 x 16 words transposed (transpose16 moves 32-bit lanes, whatever they
// hold), each word row stored as 64 contiguous bytes. A last block of fewer than 16 rows
// and the columns past cols (zero pairs up to kp) go the same way through masks: a
// layer of 10 outputs has no full 32 columns, and the update's epilogue packs 14-row
// tiles, which the scalar loop took 3% of a bfloat16 epoch to write. Only an odd kp's
// last half pair is written element by element.
void bf16_pack_pairs_transposed_avx512(const float* src, index_t lds, index_t r0, index_t r1,
                                       index_t cols, index_t kp, bf16_t* dst, index_t ldb) {
  const index_t whole = kp / 2;  // pair rows written whole
  for (index_t j = r0; j < r1; j += 16) {
    const int h = static_cast<int>(r1 - j < 16 ? r1 - j : 16);
    const __mmask32 row_words = words(2 * h);
    for (index_t k = 0; k < 2 * whole; k += 32) {
      const index_t left = cols - k;
      const int n = static_cast<int>(left <= 0 ? 0 : left < 32 ? left : 32);
      __m512 blk[16];
#pragma GCC unroll 16
      for (int q = 0; q < 16; ++q)
        blk[q] = q < h ? _mm512_castsi512_ps(cvt32(src + (j + q) * lds + k, n))
                       : _mm512_setzero_ps();
      transpose16(blk);
      const index_t w_end = whole - k / 2 < 16 ? whole - k / 2 : 16;
      for (index_t w = 0; w < w_end; ++w)
        _mm512_mask_storeu_epi16(dst + (k / 2 + w) * 2 * ldb + 2 * j, row_words,
                                 _mm512_castps_si512(blk[w]));
    }
    if (kp & 1)
      for (index_t q = j; q < j + h; ++q)
        dst[whole * 2 * ldb + 2 * q] = kp - 1 < cols ? to_bf16(src[q * lds + kp - 1]) : 0;
  }
}

// 16 x 16 blocks through float32 and back: exact for every value to_bf16 makes (no
// signaling NaN, no denormal), and the float transpose is already here.
void bf16_transpose_avx512(const bf16_t* src, index_t lds, index_t rows, index_t c0,
                           index_t c1, bf16_t* dst, index_t ldd) {
  index_t r = 0;
  for (; r + 16 <= rows; r += 16) {
    index_t c = c0;
    for (; c + 16 <= c1; c += 16) {
      __m512 blk[16];
      for (int q = 0; q < 16; ++q)
        blk[q] = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(src + (r + q) * lds + c))), 16));
      transpose16(blk);
      for (int j = 0; j < 16; ++j)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + (c + j) * ldd + r),
                            (__m256i)_mm512_cvtneps_pbh(blk[j]));
    }
    for (; c < c1; ++c)
      for (int q = 0; q < 16; ++q) dst[c * ldd + r + q] = src[(r + q) * lds + c];
  }
  for (; r < rows; ++r)
    for (index_t c = c0; c < c1; ++c) dst[c * ldd + r] = src[r * lds + c];
}

// The step as sgd_plain writes it: g = s + l2 * w; w -= lr * g (separate multiplies and
// adds, no contraction), 16 columns of a pair of rows at a time, then both rows
// converted and interleaved, while they are in registers. One call per register tile (a
// call per pair of rows measured the same: the step waits on W's memory traffic, not calls).
void bf16_sgd_step_pack_avx512(float* W, index_t ldw, const float* s, index_t lds, index_t h,
                               index_t n, float lr, float l2, bf16_t* wp, index_t ldwp) {
  const __m512 vlr = _mm512_set1_ps(lr), vl2 = _mm512_set1_ps(l2);
  const auto step = [&](float* w, const float* g, __mmask16 m) {
    const __m512 x = _mm512_maskz_loadu_ps(m, w);
    const __m512 grad = _mm512_add_ps(_mm512_maskz_loadu_ps(m, g), _mm512_mul_ps(vl2, x));
    const __m512 y = _mm512_sub_ps(x, _mm512_mul_ps(vlr, grad));
    _mm512_mask_storeu_ps(w, m, y);
    return y;
  };
  for (index_t p = 0; p < h; p += 2) {
    float* w0 = W + p * ldw;
    const float* s0 = s + p * lds;
    bf16_t* d = wp + (p / 2) * ldwp;
    for (index_t c = 0; c < n; c += 16) {
      const int k = static_cast<int>(n - c < 16 ? n - c : 16);
      const __mmask16 m = static_cast<__mmask16>(k == 16 ? 0xFFFFu : (1u << k) - 1u);
      const __m512 y0 = step(w0 + c, s0 + c, m);
      const __m512 y1 = p + 1 < h ? step(w0 + ldw + c, s0 + lds + c, m) : _mm512_setzero_ps();
      // [row 0's 16 | row 1's 16] -> pairs (row 0, row 1) of each column
      const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(y1, y0);
      const __m512i pairs = interleave<0>(both, _mm512_shuffle_i64x2(both, both, 0x4E));
      _mm512_mask_storeu_epi16(d + 2 * c, words(2 * k), pairs);  // odd h: zero partners
    }
  }
}

void bf16_pack_transposed_avx512(const float* src, index_t lds, index_t r0, index_t r1,
                                 index_t cols, bf16_t* dst, index_t ldd) {
  index_t r = r0;
  for (; r + 16 <= r1; r += 16) {
    index_t c = 0;
    for (; c + 16 <= cols; c += 16) {
      __m512 blk[16];
      for (int q = 0; q < 16; ++q) blk[q] = _mm512_loadu_ps(src + (r + q) * lds + c);
      transpose16(blk);
      for (int j = 0; j < 16; ++j)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + (c + j) * ldd + r),
                            (__m256i)_mm512_cvtneps_pbh(blk[j]));
    }
    for (; c < cols; ++c)
      for (int q = 0; q < 16; ++q) dst[c * ldd + r + q] = to_bf16(src[(r + q) * lds + c]);
  }
  for (; r < r1; ++r)
    for (index_t c = 0; c < cols; ++c) dst[c * ldd + r] = to_bf16(src[r * lds + c]);
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
