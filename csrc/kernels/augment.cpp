#include "kernels/augment.hpp"

#include <algorithm>

#include "kernels/random.hpp"

namespace fastmlp {

AugmentDraw augment_draw(const Augmentation& a, std::uint64_t seed, std::uint64_t step,
                         std::int64_t sample) {
  const std::uint64_t bits =
      unit_bits(sample_key(seed, step, static_cast<std::uint64_t>(sample), kAugmentStream), 0);
  AugmentDraw d;
  if (a.shift > 0) {  // 21 bits each: the modulo's bias is below 1e-5 for any shift used
    const std::uint64_t span = 2 * static_cast<std::uint64_t>(a.shift) + 1;
    d.dy = static_cast<index_t>((bits & 0x1FFFFF) % span) - a.shift;
    d.dx = static_cast<index_t>(((bits >> 21) & 0x1FFFFF) % span) - a.shift;
  }
  d.flip = a.flip && (bits >> 63) != 0;
  return d;
}

void augment_image(const float* src, float* dst, const ImageGeometry& g, const AugmentDraw& d) {
  const index_t H = g.height, W = g.width, C = g.channels;
  auto src_x = [&](index_t x) {
    const index_t cx = std::clamp<index_t>(x - d.dx, 0, W - 1);
    return d.flip ? W - 1 - cx : cx;
  };
  for (index_t y = 0; y < H; ++y) {
    const index_t sy = std::clamp<index_t>(y - d.dy, 0, H - 1);
    if (g.channels_first) {
      for (index_t c = 0; c < C; ++c)
        for (index_t x = 0; x < W; ++x)
          dst[(c * H + y) * W + x] = src[(c * H + sy) * W + src_x(x)];
    } else if (C == 1) {  // grayscale: a float a pixel, without a copy call for each
      const float* row = src + sy * W;
      float* out = dst + y * W;
      for (index_t x = 0; x < W; ++x) out[x] = row[src_x(x)];
    } else {
      for (index_t x = 0; x < W; ++x) {
        const float* p = src + (sy * W + src_x(x)) * C;
        std::copy(p, p + C, dst + (y * W + x) * C);
      }
    }
  }
}

}  // namespace fastmlp
