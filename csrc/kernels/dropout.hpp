// fastmlp/csrc/kernels/dropout.hpp — inverted dropout of a hidden layer's activations.
//
// Legend: R rows (samples), H the layer's width; matrices row-major with row stride H.
// Unit j of sample s at step t is kept when the top 32 bits of
// unit_bits(sample_key(seed, t, s, dropout_stream(layer)), j) are >= rate * 2^32
// (kernels/random.hpp), so a mask never depends on the thread that draws it. Kept units
// are scaled by 1 / (1 - rate), so the layer's expected output is unchanged and
// inference needs no dropout at all. Single-threaded over the given block.
#pragma once

#include <cstdint>

#include "common.hpp"

namespace fastmlp {

struct DropoutKey {
  std::uint64_t seed = 0, step = 0;
  index_t layer = 0;
  float rate = 0.0f;  // in [0, 1)
  float scale() const { return 1.0f / (1.0f - rate); }
};

// For r < rows and j0 <= j < j1 (samples[r] the sample's index in the data):
//   mask[r][j] = keep(samples[r], j),   out[r][j] = mask ? h[r][j] * scale : 0.
void dropout_forward(const float* h, float* out, std::uint8_t* mask, index_t ld,
                     const std::int64_t* samples, index_t rows, index_t j0, index_t j1,
                     const DropoutKey& key);

// delta[r][j] = mask[r][j] ? delta[r][j] * scale : 0 for the (rows, cols) block: the
// gradient through the dropout, delta coming in as the gradient at the undropped
// activations' pre-activation.
void dropout_backward(float* delta, const std::uint8_t* mask, index_t ld, index_t rows,
                      index_t cols, float scale);

}  // namespace fastmlp
