// fastmlp/csrc/train.hpp — the batch loop of training, and prediction, over a Network.
//
// Legend: B batch rows, D input features, H_l width of layer l's output, C classes.
//
// Every parameter and optimizer-state buffer is owned by the Python estimator and updated
// in place; this file only keeps scratch memory, allocated once per call before any
// thread starts (never per batch), so an allocation failure is a std::bad_alloc from the
// calling thread. A call runs ONE OpenMP parallel region for its whole chunk of batches,
// with two barriers per batch (the A-D schedule, drawn in train.cpp and csrc/README.md);
// each output element has a single writer and every sum a fixed order, so the results
// do not depend on the thread count. Threads split W0, its bias and state by column
// panels of kGemmPanel: when those buffers start on a 64-byte line (the estimator
// allocates them so) and a row is a multiple of 16 floats, no cache line is written by
// two cores.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "common.hpp"
#include "kernels/augment.hpp"
#include "kernels/optim.hpp"
#include "kernels/pixels.hpp"
#include "layer.hpp"

namespace fastmlp {

// The batches of one chunk: samples order[0:batch_size], order[batch_size:2*batch_size],
// ...; the last batch may be shorter. Sample s is row sample_rows[s] of X (row s when
// sample_rows is null), so a subset of X trains without a copy; labels, weights and the
// random draws belong to the sample.
struct BatchPlan {
  const PixelRows* X = nullptr;            // (N, D), scaled while gathered
  const std::int64_t* sample_rows = nullptr;  // (n_samples,), in [0, N), or null
  index_t n_samples = 0;
  const std::int32_t* y = nullptr;       // (n_samples,), in [0, C)
  const float* sample_weight = nullptr;  // (n_samples,) >= 0, or null for all ones
  const std::int64_t* order = nullptr;   // (n_order,), in [0, n_samples)
  index_t n_order = 0;
  index_t batch_size = 0;
};

// What training adds to the plain network: regularization and augmentation, all of it
// drawn from `seed` by counter (kernels/random.hpp), so bitwise reproducible.
struct TrainOptions {
  std::uint64_t seed = 0;
  std::vector<double> dropout;   // a rate in [0, 1) per hidden layer, or empty for none
  double label_smoothing = 0.0;  // in [0, 1)
  Augmentation augment;          // shifts and flips of the gathered rows
  Precision precision = Precision::Float32;  // of the products (layer.hpp)
  float dropout_rate(index_t layer) const {
    return layer < static_cast<index_t>(dropout.size()) ? static_cast<float>(dropout[layer])
                                                        : 0.0f;
  }
};

// The epoch's running sums, which a chunk continues batch by batch: where the caller cuts
// an epoch into chunks (by timing) then never changes how a sum rounds.
struct RunningSums {
  double loss = 0, weight = 0;
};

struct ChunkResult {
  double loss_sum = 0;    // sums.loss + over samples w_i * CE_i, + 0.5*alpha*|W|^2 per batch
  double weight_sum = 0;  // sums.weight + sum of w_i over the samples trained on
  std::int64_t n_correct = 0;  // training predictions (before each batch's update) right
  std::int64_t n_samples = 0;  // samples trained on
  std::int64_t n_batches = 0;  // batches applied
  long long t = 0;             // optimizer step count after the chunk
  bool finite = true;          // false: stopped at a batch whose loss was not finite; that
                               // batch was NOT applied
};

// Validates the network, the optimizer state the solver needs, the configuration, the
// options and the plan (shapes, labels, order indices, weights), then trains on its
// batches; batch b is optimizer step t + b + 1, which keys its random draws.
// Throws std::invalid_argument on bad input, before touching any parameter, and
// std::bad_alloc when memory runs out, with the parameters partly updated.
ChunkResult train_batches(const Network& net, const BatchPlan& plan, const OptimConfig& opt,
                          const TrainOptions& options, long long t, int n_threads,
                          RunningSums sums = {});

// A network's weights as bfloat16 prediction reads them (LayerBf16's Wp, per layer), made
// once per fitted model and kept by the caller: predict_proba checks that they match the
// network's shapes (std::invalid_argument), not their values.
struct Bf16Weights {
  std::vector<LayerBf16> P;
  std::vector<aligned_vector<bf16_t>> Wp;
  std::vector<std::pair<index_t, index_t>> shapes;  // (fan_in, fan_out) per layer
  explicit Bf16Weights(const Network& net);
};

// out (n, C) = softmax (or log-softmax) of the network's logits for rows rows[0:n] of X
// (rows 0..n-1 when rows is null). Validates the network, X's width and the rows first,
// and X's values as it reads them (std::invalid_argument on NaN or infinity; out is then
// partly written). With check_outputs, an output that is not finite (the logits overflow
// float32: weights not finite, or too large for these inputs) is std::invalid_argument too.
// With `bf16` (made from this network) the products are bfloat16.
void predict_proba(const Network& net, const PixelRows& X, const std::int64_t* rows, index_t n,
                   float* out, bool log, int n_threads, const Bf16Weights* bf16 = nullptr,
                   bool check_outputs = true);

}  // namespace fastmlp
