#include "kernels/dropout.hpp"

#include "kernels/random.hpp"

namespace fastmlp {

void dropout_forward(const float* h, float* out, std::uint8_t* mask, index_t ld,
                     const std::int64_t* samples, index_t rows, index_t j0, index_t j1,
                     const DropoutKey& key) {
  // rate * 2^32 rounded down: keep iff bits >= threshold (rate 0 keeps everything).
  const std::uint64_t threshold = static_cast<std::uint64_t>(double(key.rate) * 4294967296.0);
  const float scale = key.scale();
  const std::uint64_t stream = dropout_stream(key.layer);
  for (index_t r = 0; r < rows; ++r) {
    const std::uint64_t k =
        sample_key(key.seed, key.step, static_cast<std::uint64_t>(samples[r]), stream);
    const index_t o = r * ld;
    for (index_t j = j0; j < j1; ++j) {
      const bool keep = (unit_bits(k, static_cast<std::uint64_t>(j)) >> 32) >= threshold;
      mask[o + j] = keep;
      out[o + j] = keep ? h[o + j] * scale : 0.0f;
    }
  }
}

FASTMLP_SIMD_CLONES
void dropout_backward(float* FASTMLP_RESTRICT delta, const std::uint8_t* FASTMLP_RESTRICT mask,
                      index_t ld, index_t rows, index_t cols, float scale) {
  for (index_t r = 0; r < rows; ++r)
    for (index_t j = 0; j < cols; ++j)
      delta[r * ld + j] = mask[r * ld + j] ? delta[r * ld + j] * scale : 0.0f;
}

}  // namespace fastmlp
