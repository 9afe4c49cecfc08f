#include "kernels/pixels.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "isa.hpp"
#include "kernels/bf16.hpp"

namespace fastmlp {

namespace {

// The one expression of the contract (pixels.hpp); -ffp-contract=off keeps it two
// correctly rounded operations, as NumPy's float64 subtract and divide are.
inline float scaled(double v, double offset, double scale) {
  return static_cast<float>((v - offset) / scale);
}

bool is_8bit(PixelType t) { return t == PixelType::kUInt8 || t == PixelType::kInt8; }

}  // namespace

index_t pixel_size(PixelType t) {
  switch (t) {
    case PixelType::kUInt8: case PixelType::kInt8: return 1;
    case PixelType::kUInt16: case PixelType::kInt16: return 2;
    case PixelType::kFloat32: case PixelType::kUInt32: case PixelType::kInt32: return 4;
    default: return 8;
  }
}

PixelRows::PixelRows(const void* data, PixelType type, index_t n_rows, index_t n_features,
                     PixelAffine affine)
    : data_(data), type_(type), n_rows_(n_rows), n_features_(n_features),
      affine_(std::move(affine)) {
  const index_t S = affine_.n_stats();
  if (affine_.offset.size() != affine_.scale.size())
    throw std::invalid_argument("the scaler's offset and scale must have the same length");
  if (S == 0 && type != PixelType::kFloat32)
    throw std::invalid_argument("X must be float32 unless it is scaled while gathered");
  if (S > 0 && n_features % S != 0)
    throw std::invalid_argument(std::to_string(S) + " scaler statistics do not divide the " +
                                std::to_string(n_features) + " features");
  if (S > 0 && is_8bit(type)) {
    table_.resize(S * 256);
    for (index_t s = 0; s < S; ++s)
      for (int u = 0; u < 256; ++u) {
        const double v = type == PixelType::kInt8 ? static_cast<std::int8_t>(u) : u;
        table_[s * 256 + u] = scaled(v, affine_.offset[s], affine_.scale[s]);
      }
    table16_.resize(table_.size()), upper16_.resize(table_.size());
    lower16_.resize(table_.size());
    std::transform(table_.begin(), table_.end(), table16_.begin(), to_bf16);
    for (size_t i = 0; i < table_.size(); ++i) {
      std::uint32_t u;
      std::memcpy(&u, &table_[i], sizeof u);
      upper16_[i] = static_cast<std::uint16_t>(u >> 16), lower16_[i] = u & 0xFFFFu;
    }
  }
}

// Statistic s covers features j with s(j) = s (pixels.hpp); each loop below walks a row
// in memory order.
template <class T>
void PixelRows::convert(const T* src, float* dst) const {
  const index_t D = n_features_, S = affine_.n_stats();
  const double* off = affine_.offset.data();
  const double* sc = affine_.scale.data();
  if (S == 1) {
    for (index_t j = 0; j < D; ++j) dst[j] = scaled(static_cast<double>(src[j]), off[0], sc[0]);
  } else if (affine_.channels_last) {
    for (index_t j = 0; j < D; j += S)
      for (index_t s = 0; s < S; ++s)
        dst[j + s] = scaled(static_cast<double>(src[j + s]), off[s], sc[s]);
  } else {
    const index_t P = D / S;
    for (index_t s = 0; s < S; ++s)
      for (index_t p = 0; p < P; ++p)
        dst[s * P + p] = scaled(static_cast<double>(src[s * P + p]), off[s], sc[s]);
  }
}

// A row's values as runs through the tables, run(j0, n, t0, k): values j0 .. j0 + n, value
// j0 + i through table t0 + (i % k) * 256. Channels first, a run of P values for each
// statistic; otherwise one run of all D, the S statistics interleaved.
template <class Run>
void PixelRows::each_run(Run&& run) const {
  const index_t D = n_features_, S = affine_.n_stats();
  if (S > 1 && !affine_.channels_last) {
    for (index_t s = 0, P = D / S; s < S; ++s) run(s * P, P, s * 256, index_t{1});
  } else {
    run(index_t{0}, D, index_t{0}, S);
  }
}

namespace {

// The scalar lookups: dst[i] = tables[(i % k) * 256 + src[i]] for i < n (k divides n).
template <class T>
void lookup_scalar(const std::uint8_t* src, index_t n, const T* tables, index_t k, T* dst) {
  for (index_t i = 0; i < n; i += k)
    for (index_t s = 0; s < k; ++s) dst[i + s] = tables[s * 256 + src[i + s]];
}

}  // namespace

void PixelRows::convert_table(const std::uint8_t* src, float* dst) const {
  each_run([&](index_t j0, index_t n, index_t t0, index_t k) {
#if defined(FASTMLP_X86_64)
    if (active_isa() == Isa::AVX512 &&
        lookup32_avx512(src + j0, n, upper16_.data() + t0, lower16_.data() + t0, k, dst + j0))
      return;
#endif
    lookup_scalar(src + j0, n, table_.data() + t0, k, dst + j0);
  });
}

void PixelRows::row_bf16(std::int64_t r, std::uint16_t* dst, index_t kp) const {
  const auto* src = static_cast<const std::uint8_t*>(data_) + r * n_features_;
  each_run([&](index_t j0, index_t n, index_t t0, index_t k) {
#if defined(FASTMLP_X86_64)
    if (active_isa() == Isa::AVX512 &&
        lookup16_avx512(src + j0, n, table16_.data() + t0, k, dst + j0))
      return;
#endif
    lookup_scalar(src + j0, n, table16_.data() + t0, k, dst + j0);
  });
  std::fill(dst + n_features_, dst + kp, std::uint16_t{0});
}

void PixelRows::row(std::int64_t r, float* dst) const {
  const char* src = static_cast<const char*>(data_) + r * n_features_ * pixel_size(type_);
  if (plain()) {
    const float* p = reinterpret_cast<const float*>(src);
    std::copy(p, p + n_features_, dst);
    return;
  }
  switch (type_) {
    case PixelType::kUInt8:
    case PixelType::kInt8:
      return convert_table(reinterpret_cast<const std::uint8_t*>(src), dst);
    case PixelType::kFloat32: return convert(reinterpret_cast<const float*>(src), dst);
    case PixelType::kFloat64: return convert(reinterpret_cast<const double*>(src), dst);
    case PixelType::kUInt16: return convert(reinterpret_cast<const std::uint16_t*>(src), dst);
    case PixelType::kInt16: return convert(reinterpret_cast<const std::int16_t*>(src), dst);
    case PixelType::kUInt32: return convert(reinterpret_cast<const std::uint32_t*>(src), dst);
    case PixelType::kInt32: return convert(reinterpret_cast<const std::int32_t*>(src), dst);
    case PixelType::kUInt64: return convert(reinterpret_cast<const std::uint64_t*>(src), dst);
    case PixelType::kInt64: return convert(reinterpret_cast<const std::int64_t*>(src), dst);
  }
}

}  // namespace fastmlp
