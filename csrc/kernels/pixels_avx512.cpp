// fastmlp/csrc/kernels/pixels_avx512.cpp — the 8-bit pixels' table lookups with AVX-512
// (compiled with AVX512F/BW/VL; chosen at run time by pixels.cpp). Contract: pixels.hpp.
#include <immintrin.h>

#include <type_traits>

#include "kernels/pixels.hpp"

namespace fastmlp {

namespace {

// A 256-entry table of 16-bit words in eight registers, and 32 lookups in it at once:
// vpermt2w looks the indices up in a 64-entry quarter of the table (their low six bits),
// and their bits 6 and 7 pick the quarter.
struct Table16 {
  __m512i t[8];
  void load(const std::uint16_t* table) {
    for (int q = 0; q < 8; ++q) t[q] = _mm512_loadu_si512(table + 32 * q);
  }
  // idx: 32 indices (16-bit lanes, < 256); b6, b7: which have bit 6, bit 7 set.
  __m512i operator()(__m512i idx, __mmask32 b6, __mmask32 b7) const {
    const __m512i q0 = _mm512_permutex2var_epi16(t[0], idx, t[1]);
    const __m512i q1 = _mm512_permutex2var_epi16(t[2], idx, t[3]);
    const __m512i q2 = _mm512_permutex2var_epi16(t[4], idx, t[5]);
    const __m512i q3 = _mm512_permutex2var_epi16(t[6], idx, t[7]);
    return _mm512_mask_blend_epi16(b7, _mm512_mask_blend_epi16(b6, q0, q1),
                                   _mm512_mask_blend_epi16(b6, q2, q3));
  }
};

// The S interleaved statistics' tables (value i of a row uses table i % S), and 32
// lookups at once: each table's, kept in the lanes of its statistic. A vector starting
// at value i has phase i % S; lanes[p][s] are the lanes of statistic s at phase p.
template <int S>
struct Tables16 {
  Table16 table[S];
  __mmask32 lanes[S][S];
  explicit Tables16(const std::uint16_t* tables) {
    for (int s = 0; s < S; ++s) table[s].load(tables + 256 * s);
    for (int p = 0; p < S; ++p)
      for (int s = 0; s < S; ++s) {
        lanes[p][s] = 0;
        for (int l = 0; l < 32; ++l)
          if ((p + l) % S == s) lanes[p][s] |= __mmask32{1} << l;
      }
  }
  __m512i operator()(index_t i, __m512i idx, __mmask32 b6, __mmask32 b7) const {
    const int p = static_cast<int>(i % S);
    __m512i out = table[0](idx, b6, b7);
    for (int s = 1; s < S; ++s)
      out = _mm512_mask_blend_epi16(lanes[p][s], out, table[s](idx, b6, b7));
    return out;
  }
};

// Runs the body on each 32 pixels of src[0:n] (a masked tail): their indices as 16-bit
// lanes, the lane mask and which have bits 6 and 7.
template <class Body>
void each_32(const std::uint8_t* src, index_t n, Body&& body) {
  const __m512i bit6 = _mm512_set1_epi16(64), bit7 = _mm512_set1_epi16(128);
  for (index_t i = 0; i < n; i += 32) {
    const index_t k = n - i < 32 ? n - i : 32;
    const __mmask32 m = k == 32 ? ~__mmask32{0} : (__mmask32{1} << k) - 1;
    const __m512i idx = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, src + i));
    body(i, k, m, idx, _mm512_test_epi16_mask(idx, bit6), _mm512_test_epi16_mask(idx, bit7));
  }
}

// About 10 instructions for 32 pixels of one statistic, where the scalar loop spends 3
// memory operations on each.
template <int S>
void lookup16_s(const std::uint8_t* src, index_t n, const std::uint16_t* tables,
                std::uint16_t* dst) {
  const Tables16<S> look(tables);
  each_32(src, n, [&](index_t i, index_t, __mmask32 m, __m512i idx, __mmask32 b6, __mmask32 b7) {
    _mm512_mask_storeu_epi16(dst + i, m, look(i, idx, b6, b7));
  });
}

// A float32 is its two 16-bit halves: each looked up in its own tables, then joined.
template <int S>
void lookup32_s(const std::uint8_t* src, index_t n, const std::uint16_t* upper,
                const std::uint16_t* lower, float* dst) {
  const Tables16<S> hi(upper), lo(lower);
  each_32(src, n, [&](index_t i, index_t k, __mmask32, __m512i idx, __mmask32 b6, __mmask32 b7) {
    const __m512i h = hi(i, idx, b6, b7), l = lo(i, idx, b6, b7);
    const auto join16 = [&](float* out, index_t left, __m256i h16, __m256i l16) {
      const __mmask16 m = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
      const __m512i w = _mm512_or_si512(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h16), 16),
                                        _mm512_cvtepu16_epi32(l16));
      _mm512_mask_storeu_ps(out, m, _mm512_castsi512_ps(w));
    };
    join16(dst + i, k, _mm512_castsi512_si256(h), _mm512_castsi512_si256(l));
    if (k > 16)
      join16(dst + i + 16, k - 16, _mm512_extracti64x4_epi64(h, 1),
             _mm512_extracti64x4_epi64(l, 1));
  });
}

// f(std::integral_constant<int, S>{}) for S in 1..4; false (f not called) for any other.
template <class F>
bool with_stats(index_t S, F&& f) {
  switch (S) {
    case 1: return f(std::integral_constant<int, 1>{}), true;
    case 2: return f(std::integral_constant<int, 2>{}), true;
    case 3: return f(std::integral_constant<int, 3>{}), true;
    case 4: return f(std::integral_constant<int, 4>{}), true;
    default: return false;
  }
}

}  // namespace

bool lookup16_avx512(const std::uint8_t* src, index_t n, const std::uint16_t* tables,
                     index_t S, std::uint16_t* dst) {
  return with_stats(S, [&](auto s) { lookup16_s<s()>(src, n, tables, dst); });
}

bool lookup32_avx512(const std::uint8_t* src, index_t n, const std::uint16_t* upper,
                     const std::uint16_t* lower, index_t S, float* dst) {
  return with_stats(S, [&](auto s) { lookup32_s<s()>(src, n, upper, lower, dst); });
}

}  // namespace fastmlp
