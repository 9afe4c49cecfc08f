// fastmlp/csrc/kernels/pixels.hpp — the network's float32 input, read from the user's
// pixels in their own dtype while a batch is gathered, so no float32 copy of X is made.
//
// Legend: N rows of X, D features per row (H*W*C), S the scaler's statistics (1, or one
// per channel C), P = D / S pixels per channel.
//
// Row r of X (N, D) C-contiguous, of any PixelType, becomes
//   x[j] = float32((double(X[r, j]) - offset[s(j)]) / scale[s(j)])
// computed in double and rounded once: the very expression PixelScaler.transform
// evaluates, so a fused fit is bitwise equal to a pipeline's. s(j) is 0 when S == 1,
// j % S for channels-last rows (H, W, C) and j / P for channels-first rows (C, H, W).
// For 8-bit types the S * 256 possible values are tabulated once (same expression), and
// so are their bfloat16 roundings (to_bf16), which bfloat16 training reads straight from
// the pixels (row_bf16: a table lookup, no float32 row in between).
// Without an affine (S == 0) X must be float32 and is read as it is.
//
// Nothing here validates values: the caller checks that the affine is finite with
// scale > 0 and that no row can scale beyond the float32 range.
#pragma once

#include <cstdint>
#include <vector>

#include "common.hpp"

namespace fastmlp {

enum class PixelType : int {
  kFloat32, kFloat64, kUInt8, kInt8, kUInt16, kInt16, kUInt32, kInt32, kUInt64, kInt64
};

// Bytes per value of each PixelType.
index_t pixel_size(PixelType t);

// The per-statistic affine of a fitted PixelScaler: offset and scale (S,) each.
struct PixelAffine {
  std::vector<double> offset, scale;
  bool channels_last = true;  // how a row's features map to the S statistics
  index_t n_stats() const { return static_cast<index_t>(scale.size()); }
};

class PixelRows {
 public:
  // data (n_rows, n_features) of `type`, C-contiguous, outliving this object. An empty
  // affine needs kFloat32. Throws std::invalid_argument if S does not divide D.
  PixelRows(const void* data, PixelType type, index_t n_rows, index_t n_features,
            PixelAffine affine);

  index_t rows() const { return n_rows_; }
  index_t features() const { return n_features_; }
  // The rows are the network's input as stored (float32, no affine): read them in place.
  bool plain() const { return affine_.n_stats() == 0; }
  const float* plain_row(std::int64_t r) const {
    return static_cast<const float*>(data_) + r * n_features_;
  }
  // Where row r's values are stored, and their size in bytes (for prefetching).
  const void* row_data(std::int64_t r) const {
    return static_cast<const char*>(data_) + r * row_bytes();
  }
  std::size_t row_bytes() const {
    return static_cast<std::size_t>(n_features_ * pixel_size(type_));
  }
  // dst (D,) = row r of X as the network's input. r in [0, N) is not checked.
  void row(std::int64_t r, float* dst) const;
  // Whether row_bf16 can read X: 8-bit pixels (tabulated).
  bool reads_bf16() const { return !table16_.empty(); }
  // dst (kp,), kp >= D = to_bf16 of row(r)'s values, then zeros. Needs reads_bf16().
  void row_bf16(std::int64_t r, std::uint16_t* dst, index_t kp) const;

 private:
  template <class T>
  void convert(const T* src, float* dst) const;
  void convert_table(const std::uint8_t* src, float* dst) const;
  template <class Run>
  void each_run(Run&& run) const;

  const void* data_;
  PixelType type_;
  index_t n_rows_, n_features_;
  PixelAffine affine_;
  std::vector<float> table_;  // (S, 256) for 8-bit types: value v of statistic s at s*256 + v
  // to_bf16 of table_, and table_'s upper and lower 16 bits (the vector lookups' tables).
  std::vector<std::uint16_t> table16_, upper16_, lower16_;
};

#if defined(FASTMLP_X86_64)
// dst[i] = tables[(i % S) * 256 + src[i]] for i < n (n a multiple of S): S interleaved
// statistics' tables of 256 entries (pixels_avx512.cpp, AVX512BW), of 16-bit words, or
// of float32s given as their upper and lower 16 bits. False, with nothing written, for
// S > 4 (the scalar loop's).
bool lookup16_avx512(const std::uint8_t* src, index_t n, const std::uint16_t* tables,
                     index_t S, std::uint16_t* dst);
bool lookup32_avx512(const std::uint8_t* src, index_t n, const std::uint16_t* upper,
                     const std::uint16_t* lower, index_t S, float* dst);
#endif

}  // namespace fastmlp
