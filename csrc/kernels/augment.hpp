// fastmlp/csrc/kernels/augment.hpp — random shifts and horizontal flips of images, applied
// while the training loop gathers a batch's rows (no extra pass over memory).
//
// Legend: H, W, C the image's height, width and channels; a row of X holds one image,
// channels last (H, W, C) or first (C, H, W). A sample's draw at step t comes from
// sample_key(seed, t, sample, kAugmentStream) (kernels/random.hpp): dy and dx uniform in
// [-shift, shift], flip with probability 1/2 when flips are on. The augmented image is
//   out[y][x] = in[clamp(y - dy)][flip ? W - 1 - clamp(x - dx) : clamp(x - dx)]
// (per channel), clamp to [0, H-1] / [0, W-1]: the image moves by (dy, dx), mirrored
// first when flipped, and the border pixels fill what moved in.
#pragma once

#include <cstdint>

#include "common.hpp"

namespace fastmlp {

struct ImageGeometry {
  index_t height = 0, width = 0, channels = 1;
  bool channels_first = false;
  index_t size() const { return height * width * channels; }
};

struct Augmentation {
  ImageGeometry image;
  index_t shift = 0;  // pixels, in each axis
  bool flip = false;
  bool active() const { return shift > 0 || flip; }
};

struct AugmentDraw {
  index_t dy = 0, dx = 0;
  bool flip = false;
};

AugmentDraw augment_draw(const Augmentation& a, std::uint64_t seed, std::uint64_t step,
                         std::int64_t sample);

// dst (H*W*C,) = src augmented by d, as above. dst must not alias src.
void augment_image(const float* src, float* dst, const ImageGeometry& g, const AugmentDraw& d);

}  // namespace fastmlp
