// fastmlp/csrc/kernels/activation.hpp — element-wise activations, forward and backward.
//
// Matrices are (rows, cols) row-major with leading dimension ld (elements); only the
// rows x cols block is touched. Single-threaded: callers split rows among threads.
// The backward pass is written in terms of the activation's OUTPUT y = f(z), which is
// what the training loop keeps:
//   ReLU:      f'(z) = [y > 0]        Logistic: f'(z) = y (1 - y)
//   Tanh:      f'(z) = 1 - y^2        Identity: f'(z) = 1
#pragma once

#include "common.hpp"

namespace fastmlp {

struct ActivationName {
  Activation activation;
  const char* name;   // the estimator's `activation` parameter
  const char* label;  // as a layer in an architecture or a model summary
};
constexpr ActivationName kActivations[] = {{Activation::Identity, "identity", "Identity"},
                                           {Activation::ReLU, "relu", "ReLU"},
                                           {Activation::Logistic, "logistic", "Sigmoid"},
                                           {Activation::Tanh, "tanh", "Tanh"}};

// x <- f(x), in place.
void activation_forward(Activation act, float* x, index_t rows, index_t cols, index_t ld);

// grad <- grad * f'(z), where y = f(z) is given; in place on grad.
void activation_backward(Activation act, float* grad, index_t ldg, const float* y, index_t ldy,
                         index_t rows, index_t cols);

}  // namespace fastmlp
