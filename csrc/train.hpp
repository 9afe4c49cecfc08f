// fastmlp/csrc/train.hpp — the network over NumPy-owned buffers, and the batch loop.
//
// Legend: B batch rows, D input features, H_l width of layer l's output, C classes.
// Layer l maps (B, fan_in) -> (B, fan_out) with W (fan_in, fan_out) and b (fan_out,), the
// layout of scikit-learn's coefs_ / intercepts_. Hidden layers apply one activation; the
// last layer's logits go through the fused softmax cross-entropy.
//
// Every parameter and optimizer-state buffer is owned by the Python estimator and updated
// in place; this file only keeps scratch memory, allocated once per call (never per
// batch). A call runs ONE OpenMP parallel region for its whole chunk of batches, with two
// barriers per batch (the schedule is drawn in train.cpp); each output element has a
// single writer and every sum a fixed order, so the results do not depend on the thread
// count. Threads split W0, its bias and state by 32-column panels: when those buffers
// start on a 64-byte line (the estimator allocates them so) and a row is a multiple of
// 16 floats, no cache line is written by two cores.
#pragma once

#include <cstdint>
#include <vector>

#include "common.hpp"

namespace fastmlp {

struct LayerView {
  index_t fan_in = 0, fan_out = 0;
  float* W = nullptr;  // (fan_in, fan_out)
  float* b = nullptr;  // (fan_out,)
  // Optimizer state with the shapes of W and b; null when the solver does not use it.
  float* W_s1 = nullptr;  // SGD velocity, or Adam first moment
  float* b_s1 = nullptr;
  float* W_s2 = nullptr;  // Adam second moment
  float* b_s2 = nullptr;
};

struct Network {
  std::vector<LayerView> layers;  // layers[l].fan_in == layers[l-1].fan_out
  Activation hidden = Activation::ReLU;
  index_t n_inputs() const { return layers.front().fan_in; }
  index_t n_outputs() const { return layers.back().fan_out; }
};

enum class Solver : int { SGD = 0, Adam = 1 };

struct OptimConfig {
  Solver solver = Solver::SGD;
  double learning_rate = 0.01;
  double momentum = 0.0;  // SGD
  bool nesterov = false;  // SGD
  double alpha = 0.0;     // L2 penalty 0.5 * alpha * sum W^2, divided by the batch weight
  double beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-8;  // Adam
};

// The batches of one chunk: rows order[0:batch_size], order[batch_size:2*batch_size], ...
// of X (n_samples, D) C-contiguous; the last batch may be shorter.
struct BatchPlan {
  const float* X = nullptr;
  index_t n_samples = 0, n_features = 0;
  const std::int32_t* y = nullptr;      // (n_samples,), in [0, C)
  const float* sample_weight = nullptr; // (n_samples,) > 0, or null for all ones
  const std::int64_t* order = nullptr;  // (n_order,), in [0, n_samples)
  index_t n_order = 0;
  index_t batch_size = 0;
};

struct ChunkResult {
  double loss_sum = 0;     // sum over samples of w_i * CE_i, plus 0.5*alpha*|W|^2 per batch
  double weight_sum = 0;   // sum of w_i over the samples trained on
  std::int64_t n_correct = 0;   // training predictions (before each batch's update) right
  std::int64_t n_samples = 0;   // samples trained on
  std::int64_t n_batches = 0;   // batches applied
  long long t = 0;              // optimizer step count after the chunk
  bool finite = true;           // false: stopped at a batch whose loss was not finite; that
                                // batch was NOT applied
};

// Validates the plan (shapes, labels, order indices), then trains on its batches.
// Throws std::invalid_argument on bad input, before touching any parameter.
ChunkResult train_batches(const Network& net, const BatchPlan& plan, const OptimConfig& opt,
                          long long t, int n_threads);

// out (n, C) = softmax (or log-softmax) of the network's logits for X (n, D).
// Works through rows in chunks with per-thread scratch of a chunk's size.
void predict_proba(const Network& net, const float* X, index_t n, float* out, bool log,
                   int n_threads);

}  // namespace fastmlp
