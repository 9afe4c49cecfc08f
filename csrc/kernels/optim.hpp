// fastmlp/csrc/kernels/optim.hpp — optimizer steps: flat loops over n parameters.
//
// All arrays have n elements and are updated in place. The gradient seen by the step is
//   g = grad + weight_decay * param
// (L2 regularization folded in, as the MLP's loss 0.5 * alpha * |W|^2 / batch implies).
// Formulas follow scikit-learn's MLP optimizers term by term, so a step there and here
// agree to float32 rounding. Single-threaded: callers split ranges among threads; the
// training loop calls these from the weight-gradient GEMM's epilogue, one block at a time.
#pragma once

#include "common.hpp"

namespace fastmlp {

// SGD with optional (Nesterov) momentum. velocity may be null when momentum == 0.
//   v <- momentum * v - lr * g
//   param += nesterov ? momentum * v - lr * g : v
// With velocity null: param -= lr * g.
void sgd_step(float* param, const float* grad, index_t n, float lr, float* velocity,
              float momentum, bool nesterov, float weight_decay);

// Adam's per-step constants; t is the 1-based step number after this step.
struct AdamStep {
  float lr_t;      // lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
  float beta_1, beta_2, epsilon;
  // 1 - beta rounded once from double: 1.0f - float(0.999) would be off by 1.3e-5
  // (1.7e-4 for 0.9999), far more than float32 rounding.
  float one_minus_beta_1, one_minus_beta_2;
  static AdamStep make(double lr, double beta_1, double beta_2, double epsilon, long long t);
};

//   m <- beta_1 m + (1 - beta_1) g
//   v <- beta_2 v + (1 - beta_2) g^2
//   param -= lr_t * m / (sqrt(v) + epsilon)
void adam_step(float* param, const float* grad, float* m, float* v, index_t n, const AdamStep& s,
               float weight_decay);

// Sum of w^2 over a (rows, cols) block with row stride ld, in double: the L2 term of the
// reported loss. Lane k of kSumSquaresLanes accumulates the elements with j % lanes == k,
// rows in order, and the lanes are combined in a fixed tree, so the result is the same
// on every instruction set (the order is the code's, not the vectorizer's). Any shape;
// a 32-column block fills the lanes exactly.
constexpr int kSumSquaresLanes = 32;

// sum[j] = a[0][j] + a[1][j] + ... + a[rows-1][j] in double, rows in order, for the cols
// columns of a (row stride ld): a bias gradient from the batch's deltas. Vectorized
// across columns only, so every sum has this order on every instruction set.
void column_sums(const float* a, index_t rows, index_t cols, index_t ld, double* sum);
double sum_squares(const float* w, index_t rows, index_t cols, index_t ld);

}  // namespace fastmlp
