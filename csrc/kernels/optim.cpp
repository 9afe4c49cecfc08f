#include "kernels/optim.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace fastmlp {

bool needs_slot(const OptimConfig& c, Slot slot) {
  switch (c.solver) {
    case Solver::SGD: return slot == Slot::Velocity && c.momentum != 0.0;
    case Solver::Adam: return slot == Slot::FirstMoment || slot == Slot::SecondMoment;
  }
  return false;
}

const char* invalid_config(const OptimConfig& c) {
  // The steps compute in float32: a rate beyond its range would be infinite there.
  if (!(c.learning_rate > 0.0 && c.learning_rate <= std::numeric_limits<float>::max()))
    return "learning_rate must be positive and finite in float32";
  if (!(c.momentum >= 0.0 && c.momentum <= 1.0)) return "momentum must lie in [0, 1]";
  if (!(c.alpha >= 0.0 && std::isfinite(c.alpha))) return "alpha must be non-negative";
  if (!(c.beta_1 >= 0.0 && c.beta_1 < 1.0)) return "beta_1 must lie in [0, 1)";
  if (!(c.beta_2 >= 0.0 && c.beta_2 < 1.0)) return "beta_2 must lie in [0, 1)";
  // epsilon = 0 divides 0 by 0 where a gradient and its moments are zero.
  if (!(c.epsilon > 0.0 && std::isfinite(c.epsilon))) return "epsilon must be positive";
  if (!(c.weight_decay >= 0.0 && c.learning_rate * c.weight_decay < 1.0))
    return "weight_decay must be non-negative and learning_rate * weight_decay below 1";
  if (c.schedule == LrSchedule::Cosine &&
      !(c.warmup_steps >= 0.0 && c.total_steps >= c.warmup_steps && c.total_steps > 0.0))
    return "the cosine schedule needs 0 <= warmup_steps <= total_steps and total_steps > 0";
  return nullptr;
}

double scheduled_learning_rate(const OptimConfig& c, long long t) {
  if (c.schedule == LrSchedule::Constant) return c.learning_rate;
  const double s = static_cast<double>(t) - c.schedule_t0, warm = c.warmup_steps;
  if (warm > 0.0 && s <= warm) return c.learning_rate * (s / warm);
  const double span = c.total_steps - warm;
  const double progress = span > 0.0 ? std::min(1.0, (s - warm - 1.0) / span) : 1.0;
  return c.learning_rate * 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
}

StepRule StepRule::make(const OptimConfig& c, long long t, double batch_weight) {
  StepRule s;
  s.solver = c.solver;
  const double lr = scheduled_learning_rate(c, t);
  s.lr = static_cast<float>(lr);
  s.momentum = static_cast<float>(c.momentum);
  s.nesterov = c.nesterov;
  s.decays = c.weight_decay > 0.0;
  s.decay = static_cast<float>(1.0 - lr * c.weight_decay);
  // Plain SGD without decay is fused into the GEMM's store.
  s.stateless = c.solver == Solver::SGD && !needs_slot(c, Slot::Velocity) && !s.decays;
  s.l2 = batch_weight > 0 ? static_cast<float>(c.alpha / batch_weight) : 0.0f;
  const double td = static_cast<double>(t);
  s.lr_t = static_cast<float>(lr * std::sqrt(1.0 - std::pow(c.beta_2, td)) /
                              (1.0 - std::pow(c.beta_1, td)));
  s.beta_1 = static_cast<float>(c.beta_1);
  s.beta_2 = static_cast<float>(c.beta_2);
  s.epsilon = static_cast<float>(c.epsilon);
  s.one_minus_beta_1 = static_cast<float>(1.0 - c.beta_1);
  s.one_minus_beta_2 = static_cast<float>(1.0 - c.beta_2);
  return s;
}


namespace {

FASTMLP_SIMD_CLONES
void scale_in_place(float* FASTMLP_RESTRICT x, index_t n, float factor) {
  for (index_t i = 0; i < n; ++i) x[i] *= factor;
}

// The loops proper, with the arrays declared unaliased so they vectorize.
FASTMLP_SIMD_CLONES
void sgd_plain(float* FASTMLP_RESTRICT param, const float* FASTMLP_RESTRICT grad, index_t n,
               float lr, float l2) {
  for (index_t i = 0; i < n; ++i) {
    const float g = grad[i] + l2 * param[i];
    param[i] -= lr * g;
  }
}

FASTMLP_SIMD_CLONES
void sgd_momentum(float* FASTMLP_RESTRICT param, const float* FASTMLP_RESTRICT grad,
                  float* FASTMLP_RESTRICT velocity, index_t n, float lr, float momentum,
                  bool nesterov, float l2) {
  if (nesterov) {
    for (index_t i = 0; i < n; ++i) {
      const float g = grad[i] + l2 * param[i];
      const float v = momentum * velocity[i] - lr * g;  // new velocity
      velocity[i] = v;
      param[i] += momentum * v - lr * g;
    }
  } else {
    for (index_t i = 0; i < n; ++i) {
      const float g = grad[i] + l2 * param[i];
      const float v = momentum * velocity[i] - lr * g;
      velocity[i] = v;
      param[i] += v;
    }
  }
}

}  // namespace

void sgd_step(float* param, const float* grad, index_t n, float lr, float* velocity,
              float momentum, bool nesterov, float l2) {
  if (velocity == nullptr)
    sgd_plain(param, grad, n, lr, l2);
  else
    sgd_momentum(param, grad, velocity, n, lr, momentum, nesterov, l2);
}

FASTMLP_SIMD_CLONES
void adam_step(float* FASTMLP_RESTRICT param, const float* FASTMLP_RESTRICT grad,
               float* FASTMLP_RESTRICT m, float* FASTMLP_RESTRICT v, index_t n,
               const StepRule& s, float l2) {
  const float b1 = s.beta_1, b2 = s.beta_2, lr_t = s.lr_t, eps = s.epsilon;
  const float c1 = s.one_minus_beta_1, c2 = s.one_minus_beta_2;
  for (index_t i = 0; i < n; ++i) {
    const float g = grad[i] + l2 * param[i];
    const float mi = b1 * m[i] + c1 * g;           // first moment
    const float vi = b2 * v[i] + c2 * (g * g);     // second moment
    m[i] = mi;
    v[i] = vi;
    param[i] -= lr_t * mi / (std::sqrt(vi) + eps);
  }
}

// Lane k accumulates the squares of the elements with j % kL == k, row after row: each
// lane's sum is in the same order on every ISA, and vector lanes never mix.
FASTMLP_SIMD_CLONES
double sum_squares(const float* FASTMLP_RESTRICT w, index_t rows, index_t cols, index_t ld) {
  constexpr int kL = kSumSquaresLanes;
  alignas(64) double lanes[kL] = {};
#if defined(__GNUC__) || defined(__clang__)
  // Eight-double vectors, written with the compiler's vector extensions so the lane
  // structure is the code's: one zmm per vector on AVX-512, two ymm on AVX2.
  typedef float v8f __attribute__((vector_size(32)));
  typedef double v8d __attribute__((vector_size(64)));
  constexpr int kV = kL / 8;
  v8d acc[kV] = {};
  for (index_t i = 0; i < rows; ++i) {
    const float* row = w + i * ld;
    auto add = [&](const float* x) {
#pragma GCC unroll 4
      for (int q = 0; q < kV; ++q) {
        v8f xf;
        std::memcpy(&xf, x + 8 * q, sizeof xf);
        const v8d d = __builtin_convertvector(xf, v8d);
        acc[q] += d * d;
      }
    };
    index_t j = 0;
    for (; j + kL <= cols; j += kL) add(row + j);
    if (j < cols) {  // the ragged end, padded with zeros (+0 changes no sum)
      alignas(32) float x[kL] = {};
      for (index_t s = j; s < cols; ++s) x[s - j] = row[s];
      add(x);
    }
  }
  std::memcpy(lanes, acc, sizeof lanes);
#else
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) lanes[j % kL] += double(w[i * ld + j]) * w[i * ld + j];
#endif
  // Pairwise: ((a0 + a1) + (a2 + a3)) + ..., halving the lanes each round.
  for (int width = kL / 2; width >= 1; width /= 2)
    for (int k = 0; k < width; ++k) lanes[k] = lanes[2 * k] + lanes[2 * k + 1];
  return lanes[0];
}

FASTMLP_SIMD_CLONES
void column_sums(const float* FASTMLP_RESTRICT a, index_t rows, index_t cols, index_t ld,
                 double* FASTMLP_RESTRICT sum) {
  for (index_t j = 0; j < cols; ++j) sum[j] = 0.0;
  for (index_t r = 0; r < rows; ++r)
    for (index_t j = 0; j < cols; ++j) sum[j] += a[r * ld + j];
}

void StepRule::apply(float* param, const float* grad, const ParamState& state, index_t n,
                     bool is_weight) const {
  const float penalty = is_weight ? l2 : 0.0f;  // biases are not penalized
  if (is_weight && decays) scale_in_place(param, n, decay);
  switch (solver) {
    case Solver::SGD:
      sgd_step(param, grad, n, lr, state[Slot::Velocity], momentum, nesterov, penalty);
      return;
    case Solver::Adam:
      adam_step(param, grad, state[Slot::FirstMoment], state[Slot::SecondMoment], n, *this,
                penalty);
      return;
  }
}

FASTMLP_SIMD_CLONES
bool all_finite(const float* x, index_t n) {
  // |x| <= FLT_MAX is false for NaN and infinity; or-ing the lanes keeps the loop
  // branch-free, so it vectorizes.
  int bad = 0;
  for (index_t i = 0; i < n; ++i) bad |= !(std::fabs(x[i]) <= 3.40282347e38f);
  return bad == 0;
}

}  // namespace fastmlp
