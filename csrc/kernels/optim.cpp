#include "kernels/optim.hpp"

#include <cmath>

namespace fastmlp {

namespace {

// The loops proper, with the arrays declared unaliased so they vectorize.
FASTMLP_SIMD_CLONES
void sgd_plain(float* FASTMLP_RESTRICT param, const float* FASTMLP_RESTRICT grad, index_t n,
               float lr, float weight_decay) {
  for (index_t i = 0; i < n; ++i) {
    const float g = grad[i] + weight_decay * param[i];
    param[i] -= lr * g;
  }
}

FASTMLP_SIMD_CLONES
void sgd_momentum(float* FASTMLP_RESTRICT param, const float* FASTMLP_RESTRICT grad,
                  float* FASTMLP_RESTRICT velocity, index_t n, float lr, float momentum,
                  bool nesterov, float weight_decay) {
  if (nesterov) {
    for (index_t i = 0; i < n; ++i) {
      const float g = grad[i] + weight_decay * param[i];
      const float v = momentum * velocity[i] - lr * g;  // new velocity
      velocity[i] = v;
      param[i] += momentum * v - lr * g;
    }
  } else {
    for (index_t i = 0; i < n; ++i) {
      const float g = grad[i] + weight_decay * param[i];
      const float v = momentum * velocity[i] - lr * g;
      velocity[i] = v;
      param[i] += v;
    }
  }
}

}  // namespace

void sgd_step(float* param, const float* grad, index_t n, float lr, float* velocity,
              float momentum, bool nesterov, float weight_decay) {
  if (velocity == nullptr)
    sgd_plain(param, grad, n, lr, weight_decay);
  else
    sgd_momentum(param, grad, velocity, n, lr, momentum, nesterov, weight_decay);
}

AdamStep AdamStep::make(double lr, double beta_1, double beta_2, double epsilon, long long t) {
  AdamStep s;
  const double td = static_cast<double>(t);
  s.lr_t = static_cast<float>(lr * std::sqrt(1.0 - std::pow(beta_2, td)) /
                              (1.0 - std::pow(beta_1, td)));
  s.beta_1 = static_cast<float>(beta_1);
  s.beta_2 = static_cast<float>(beta_2);
  s.epsilon = static_cast<float>(epsilon);
  s.one_minus_beta_1 = static_cast<float>(1.0 - beta_1);
  s.one_minus_beta_2 = static_cast<float>(1.0 - beta_2);
  return s;
}

FASTMLP_SIMD_CLONES
void adam_step(float* FASTMLP_RESTRICT param, const float* FASTMLP_RESTRICT grad,
               float* FASTMLP_RESTRICT m, float* FASTMLP_RESTRICT v, index_t n,
               const AdamStep& s, float weight_decay) {
  const float b1 = s.beta_1, b2 = s.beta_2, lr_t = s.lr_t, eps = s.epsilon;
  const float c1 = s.one_minus_beta_1, c2 = s.one_minus_beta_2;
  for (index_t i = 0; i < n; ++i) {
    const float g = grad[i] + weight_decay * param[i];
    const float mi = b1 * m[i] + c1 * g;           // first moment
    const float vi = b2 * v[i] + c2 * (g * g);     // second moment
    m[i] = mi;
    v[i] = vi;
    param[i] -= lr_t * mi / (std::sqrt(vi) + eps);
  }
}

namespace {

FASTMLP_SIMD_CLONES
double sum_squares_lanes(const float* FASTMLP_RESTRICT w, index_t rows, index_t cols,
                         index_t ld) {
  constexpr int kL = kSumSquaresLanes;
  double acc[kL] = {};
  const index_t body = cols / kL * kL;
  for (index_t i = 0; i < rows; ++i) {
    const float* row = w + i * ld;
    for (index_t j = 0; j < body; j += kL)
      for (int k = 0; k < kL; ++k) acc[k] += double(row[j + k]) * double(row[j + k]);
    for (index_t j = body; j < cols; ++j) acc[j - body] += double(row[j]) * double(row[j]);
  }
  // ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
  for (int width = kL / 2; width >= 1; width /= 2)
    for (int k = 0; k < width; ++k) acc[k] = acc[2 * k] + acc[2 * k + 1];
  return acc[0];
}

}  // namespace

double sum_squares(const float* w, index_t rows, index_t cols, index_t ld) {
  return sum_squares_lanes(w, rows, cols, ld);
}

}  // namespace fastmlp
