// fastmlp/csrc/layer.hpp — one linear layer over NumPy-owned buffers, and the network.
//
// Legend: R rows (samples) of a product, B rows of a batch, fan_in / fan_out the layer's
// input and output widths. Layer l maps (R, fan_in) -> (R, fan_out) with W (fan_in,
// fan_out) and b (fan_out,), the layout of scikit-learn's coefs_ / intercepts_; every
// activation matrix is row-major with its width as row stride. The three operations are
// the three products of training: forward X·W (NN), input gradient G·Wᵀ (NT) and weight
// update Xᵀ·G (TN) with the optimizer step fused into its epilogue. Training and
// prediction share them, so a layer is spelled once.
//
// Threads: each function computes the share of one thread. The (ith, nth) rule of the
// GEMM holds: every output element has exactly one writer, every sum a fixed order, so
// results do not depend on the thread count. The functions trust their arguments;
// check_network validates a network once, before any of them runs.
#pragma once

#include "common.hpp"
#include "kernels/optim.hpp"

namespace fastmlp {

struct LayerView {
  index_t fan_in = 0, fan_out = 0;
  float* W = nullptr;  // (fan_in, fan_out)
  float* b = nullptr;  // (fan_out,)
  ParamState W_state, b_state;  // optimizer slots with the shapes of W and b
};

struct Network {
  std::vector<LayerView> layers;  // layers[l].fan_in == layers[l-1].fan_out
  Activation hidden = Activation::ReLU;
  index_t n_inputs() const { return layers.front().fan_in; }
  index_t n_outputs() const { return layers.back().fan_out; }
  index_t n_layers() const { return static_cast<index_t>(layers.size()); }
  // The activation applied to layer l's output: `hidden`, none on the logits.
  Activation activation_of(index_t l) const {
    return l + 1 < n_layers() ? hidden : Activation::Identity;
  }
  index_t widest() const;  // the largest fan_out
};

// Throws std::invalid_argument unless the network is non-empty, every layer has positive
// sizes and buffers, and each layer's fan_in is the previous layer's fan_out.
void check_network(const Network& net);

// out[:, j0:j1] = act(in · W[:, j0:j1] + b[j0:j1]), on the calling thread.
//   in (R, fan_in), out (R, fan_out): only columns j0:j1 are written.
void linear_forward(const LayerView& layer, const float* in, index_t rows, index_t j0,
                    index_t j1, Activation act, float* out);

// delta = (grad_out · Wᵀ) * f'(z), f' taken from the layer's INPUT activations act_in =
// f(z) (the previous layer's outputs), on the calling thread. Reads W before any update.
//   grad_out (R, fan_out), act_in (R, fan_in), delta (R, fan_in).
void linear_input_grad(const LayerView& layer, const float* grad_out, const float* act_in,
                       index_t rows, Activation f, float* delta);

// W[:, j0:j1] <- step(W[:, j0:j1], inᵀ · grad[:, j0:j1]): thread ith's share of that
// product and of its fused optimizer step (the gradient never reaches memory).
//   in (B, fan_in), grad (B, fan_out).
void linear_update_weights(const LayerView& layer, const float* in, const float* grad,
                           index_t batch, index_t j0, index_t j1, const StepRule& rule,
                           int ith, int nth);

// b[j0:j1] <- step(b[j0:j1], column sums of grad[:, j0:j1]) on the calling thread; acc
// (double) and g (float) are scratch of at least j1 - j0 entries.
void linear_update_bias(const LayerView& layer, const float* grad, index_t batch, index_t j0,
                        index_t j1, const StepRule& rule, double* acc, float* g);

}  // namespace fastmlp
