// fastmlp/csrc/kernels/random.hpp — counter-based random bits for dropout masks and
// image augmentation.
//
// A draw is a hash of what it is for — (seed, step, sample, stream, unit) — so it never
// depends on which thread draws it, in which order, or where the sample sits in its
// batch: training with any thread count, any chunking of the batches, gives the same
// masks and the same shifted images. The hash is SplitMix64's finalizer chained over the
// key's parts (each part is mixed in, then the whole is scrambled again).
#pragma once

#include <cstdint>

namespace fastmlp {

inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The key of one sample's draws at one step; `stream` separates what they are for.
inline std::uint64_t sample_key(std::uint64_t seed, std::uint64_t step, std::uint64_t sample,
                                std::uint64_t stream) {
  return mix64(mix64(mix64(mix64(seed) ^ step) ^ sample) ^ stream);
}

// 64 random bits for `unit` (e.g. a hidden unit) under a sample key.
inline std::uint64_t unit_bits(std::uint64_t key, std::uint64_t unit) { return mix64(key ^ unit); }

// Streams: 0 for augmentation, 1 + l for the dropout of hidden layer l.
constexpr std::uint64_t kAugmentStream = 0;
inline std::uint64_t dropout_stream(std::int64_t layer) {
  return 1 + static_cast<std::uint64_t>(layer);
}

}  // namespace fastmlp
