#include "kernels/activation.hpp"

#include <cmath>

namespace fastmlp {

namespace {

// Numerically safe logistic: exp never overflows.
inline float logistic(float z) {
  if (z >= 0.0f) return 1.0f / (1.0f + std::exp(-z));
  const float e = std::exp(z);
  return e / (1.0f + e);
}

}  // namespace

void activation_forward(Activation act, float* x, index_t rows, index_t cols, index_t ld) {
  for (index_t r = 0; r < rows; ++r) {
    float* row = x + r * ld;
    switch (act) {
      case Activation::Identity: return;
      case Activation::ReLU:
        // max(x, 0) written so NaN propagates instead of silently becoming 0.
        for (index_t j = 0; j < cols; ++j) row[j] = row[j] < 0.0f ? 0.0f : row[j];
        break;
      case Activation::Logistic:
        for (index_t j = 0; j < cols; ++j) row[j] = logistic(row[j]);
        break;
      case Activation::Tanh:
        for (index_t j = 0; j < cols; ++j) row[j] = std::tanh(row[j]);
        break;
    }
  }
}

void activation_backward(Activation act, float* grad, index_t ldg, const float* y, index_t ldy,
                         index_t rows, index_t cols) {
  for (index_t r = 0; r < rows; ++r) {
    float* g = grad + r * ldg;
    const float* o = y + r * ldy;
    switch (act) {
      case Activation::Identity: return;
      case Activation::ReLU:
        for (index_t j = 0; j < cols; ++j) g[j] = o[j] > 0.0f ? g[j] : 0.0f;
        break;
      case Activation::Logistic:
        for (index_t j = 0; j < cols; ++j) g[j] *= o[j] * (1.0f - o[j]);
        break;
      case Activation::Tanh:
        for (index_t j = 0; j < cols; ++j) g[j] *= 1.0f - o[j] * o[j];
        break;
    }
  }
}

}  // namespace fastmlp
