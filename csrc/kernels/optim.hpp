// fastmlp/csrc/kernels/optim.hpp — the optimizers: solvers, their configuration, their
// state slots and the one step rule the training loop applies; and the flat step loops.
//
// A new optimizer is added here (and in optim.cpp): a Solver value and its name in
// kSolvers, its hyperparameters in OptimConfig and kOptimFields, the state slots it needs
// in needs_slot, its per-step constants in StepRule::make and its loop in
// StepRule::apply. The binding and the Python side read all of it from these tables.
//
// The coupled L2 penalty. The MLP's loss adds 0.5 * alpha * |W|^2 divided by the batch's
// total sample weight, so the gradient every step sees is
//   g = grad + l2 * param,    l2 = alpha / batch_weight   (weights; biases get l2 = 0)
// Formulas follow scikit-learn's MLP optimizers term by term, so a step there and here
// agree to float32 rounding. The loops are single-threaded: callers split ranges among
// threads; the training loop calls them from the weight-gradient GEMM's epilogue, one
// block at a time.
#pragma once

#include "common.hpp"

namespace fastmlp {

// --- solvers, configuration, state ---------------------------------------------------

enum class Solver : int { SGD = 0, Adam = 1 };

struct SolverName {
  Solver solver;
  const char* name;  // the estimator's `solver` parameter
};
constexpr SolverName kSolvers[] = {{Solver::SGD, "sgd"}, {Solver::Adam, "adam"}};

// The learning rate of each step: constant, or a linear warmup then a cosine decay to 0.
enum class LrSchedule : int { Constant = 0, Cosine = 1 };
constexpr const char* kScheduleNames[] = {"constant", "cosine"};

struct OptimConfig {
  Solver solver = Solver::SGD;
  double learning_rate = 0.01;
  double momentum = 0.0;  // SGD
  bool nesterov = false;  // SGD
  double alpha = 0.0;     // coupled L2 penalty 0.5 * alpha * |W|^2 / batch weight
  double beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-8;  // Adam
  // Decoupled weight decay (both solvers; AdamW for Adam): before each step, weights
  // (not biases) shrink as W <- W * (1 - lr_t * weight_decay), lr_t the step's rate.
  double weight_decay = 0.0;
  // Cosine schedule over the steps of one fit: step s = t - schedule_t0 (1-based) runs at
  //   lr * s / warmup_steps                                   for s <= warmup_steps
  //   lr * (1 + cos(pi * (s - warmup_steps - 1) / (total_steps - warmup_steps))) / 2
  // after it (0 once s passes total_steps).
  LrSchedule schedule = LrSchedule::Constant;
  double warmup_steps = 0.0, total_steps = 0.0, schedule_t0 = 0.0;
};

// The real-valued hyperparameters by name, for the binding (one entry per field).
struct OptimField {
  const char* name;
  double OptimConfig::*member;
};
constexpr OptimField kOptimFields[] = {
    {"learning_rate", &OptimConfig::learning_rate}, {"momentum", &OptimConfig::momentum},
    {"alpha", &OptimConfig::alpha},                 {"beta_1", &OptimConfig::beta_1},
    {"beta_2", &OptimConfig::beta_2},               {"epsilon", &OptimConfig::epsilon},
    {"weight_decay", &OptimConfig::weight_decay},   {"warmup_steps", &OptimConfig::warmup_steps},
    {"total_steps", &OptimConfig::total_steps},     {"schedule_t0", &OptimConfig::schedule_t0}};

// Per-parameter optimizer state, each slot an array with the parameter's shape.
enum class Slot : int { Velocity = 0, FirstMoment = 1, SecondMoment = 2 };
constexpr int kSlotCount = 3;
constexpr const char* kSlotNames[kSlotCount] = {"velocity", "first_moment", "second_moment"};

// Whether the solver of `c` reads and writes `slot` (SGD's velocity only with momentum).
bool needs_slot(const OptimConfig& c, Slot slot);

// Invalid hyperparameters as a message (nullptr when valid): learning_rate > 0 and
// finite in float32, 0 <= momentum <= 1, alpha >= 0, 0 <= beta < 1, epsilon > 0,
// 0 <= weight_decay with lr * weight_decay < 1, 0 <= warmup_steps <= total_steps.
const char* invalid_config(const OptimConfig& c);

// The learning rate of step t (1-based, as counted by the optimizer) under c's schedule.
double scheduled_learning_rate(const OptimConfig& c, long long t);

// The state of one parameter array: slot pointers (null where the solver needs none).
struct ParamState {
  float* slot[kSlotCount] = {};
  float* operator[](Slot s) const { return slot[static_cast<int>(s)]; }
};

// The per-step constants of one optimizer step (a batch), and the step itself.
struct StepRule {
  Solver solver = Solver::SGD;
  float lr = 0.0f, momentum = 0.0f;
  bool nesterov = false;
  float l2 = 0.0f;     // applied to weights only
  float decay = 1.0f;  // 1 - lr * weight_decay: weights are multiplied by it first
  bool decays = false;
  // Adam: lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) and the decay rates. 1 - beta is
  // rounded once from double: 1.0f - float(0.999) would be off by 1.3e-5 (1.7e-4 for
  // 0.9999), far more than float32 rounding.
  float lr_t = 0.0f, beta_1 = 0.0f, beta_2 = 0.0f, epsilon = 0.0f;
  float one_minus_beta_1 = 0.0f, one_minus_beta_2 = 0.0f;

  // Step t (1-based, the step count after this step) on a batch of total sample weight
  // batch_weight.
  static StepRule make(const OptimConfig& c, long long t, double batch_weight);
  // Plain SGD (no state slot): the GEMM can fuse the step into its store.
  bool stateless = false;
  // One step on n parameters: weights (is_weight, with the L2 term) or biases.
  void apply(float* param, const float* grad, const ParamState& state, index_t n,
             bool is_weight) const;
};

// --- the flat loops --------------------------------------------------------------------

// SGD with optional (Nesterov) momentum, g = grad + l2 * param.
//   v <- momentum * v - lr * g
//   param += nesterov ? momentum * v - lr * g : v
// With velocity null: param -= lr * g.
void sgd_step(float* param, const float* grad, index_t n, float lr, float* velocity,
              float momentum, bool nesterov, float l2);

//   m <- beta_1 m + (1 - beta_1) g
//   v <- beta_2 v + (1 - beta_2) g^2
//   param -= lr_t * m / (sqrt(v) + epsilon)
void adam_step(float* param, const float* grad, float* m, float* v, index_t n,
               const StepRule& s, float l2);

// Sum of w^2 over a (rows, cols) block with row stride ld, in double: the L2 term of the
// reported loss. Lane k of kSumSquaresLanes accumulates the elements with j % lanes == k,
// rows in order, and the lanes are combined in a fixed tree, so the result is the same
// on every instruction set (the order is the code's, not the vectorizer's). Any shape;
// a 32-column block fills the lanes exactly.
constexpr int kSumSquaresLanes = 32;
double sum_squares(const float* w, index_t rows, index_t cols, index_t ld);

// sum[j] = a[0][j] + a[1][j] + ... + a[rows-1][j] in double, rows in order, for the cols
// columns of a (row stride ld): a bias gradient from the batch's deltas. Vectorized
// across columns only, so every sum has this order on every instruction set.
void column_sums(const float* a, index_t rows, index_t cols, index_t ld, double* sum);

// True when none of the n floats is NaN or infinite: prediction's check of its input,
// block by block in the threads that read it, after the block's products (a pass of
// its own over X cost a sixth of a float32 predict call).
bool all_finite(const float* x, index_t n);

}  // namespace fastmlp
