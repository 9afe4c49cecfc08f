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
#include "kernels/bf16.hpp"
#include "kernels/optim.hpp"

namespace fastmlp {

struct LayerView {
  index_t fan_in = 0, fan_out = 0;
  float* W = nullptr;  // (fan_in, fan_out), or the columns [col0, col0 + ldw) of it
  float* b = nullptr;  // (fan_out,)
  ParamState W_state, b_state;  // optimizer slots laid out as W, and with b's shape
  // W's row stride (0: fan_out) and the first column it holds: a whole layer, or a
  // thread's own columns of W in a buffer of their own (layer_columns).
  index_t ldw = 0, col0 = 0;
  index_t w_ld() const { return ldw > 0 ? ldw : fan_out; }
  // Column j of W's row 0, and of a state slot's (col0 <= j).
  float* w_col(index_t j) const { return W + (j - col0); }
  float* slot_col(int k, index_t j) const {
    return W_state.slot[k] != nullptr ? W_state.slot[k] + (j - col0) : nullptr;
  }
};

// The arithmetic of the products: float32 (the FMA chains of gemm.hpp), or bfloat16
// operands with float32 sums (gemm_bf16.hpp) against float32 master weights.
enum class Precision : int { Float32 = 0, BFloat16 = 1 };
constexpr const char* kPrecisionNames[] = {"float32", "bfloat16"};  // the public names

// A layer's weights as the bfloat16 products read them, remade from W after every update:
//   Wp  (kin/2, nout, 2)  pairs of W       (forward: in · W)
//   Wtp (kout/2, nin, 2)  pairs of Wᵀ      (input gradient: grad · Wᵀ), null for layer 0
// kin, kout: fan_in, fan_out padded to kBf16KStep (the padding rows are zeros); nin, nout
// padded to kBf16NStep.
struct LayerBf16 {
  bf16_t* Wp = nullptr;
  bf16_t* Wtp = nullptr;
  index_t kin = 0, kout = 0, nin = 0, nout = 0;
  index_t col0 = 0;  // the first of W's columns Wp holds (all, or a thread's own)
  bf16_t* wp_col(index_t j) const { return Wp + 2 * (j - col0); }  // column j's pair row 0
};

// Columns [j0, j1) of a whole layer's weights and their optimizer state, copied into
// buffers of their own (W_own (fan_in, j1 - j0), state_own[k] likewise where the layer
// has slot k), as the layer a thread trains those columns through; copy_columns_back
// writes them home. Two cores stepping the two halves of every row of one W0 ran 15%
// slower than with each half in its own buffer: each core's L2 prefetcher pulled lines
// of the other's half.
LayerView layer_columns(const LayerView& layer, index_t j0, index_t j1, float* W_own,
                        const ParamState& state_own);
void copy_columns_back(const LayerView& own, const LayerView& layer);

// The bfloat16 Wp of such a layer's own columns, packed into Wp_own (P.kin x P.nout pairs,
// bf16_columns_size(fan_in, columns) of them); no Wᵀ (a first layer has no input gradient).
index_t bf16_columns_size(index_t fan_in, index_t cols);
LayerBf16 bf16_columns(const LayerView& own, bf16_t* Wp_own);

// The padded sizes of a layer's bfloat16 layouts (the buffers are the caller's).
LayerBf16 bf16_layout(const LayerView& layer);

// Lays W out as P's Wp (and Wtp when set): rows [i0, i1), columns [j0, j1) of W, on the
// calling thread. The padding rows are written with the block that reaches them.
void pack_layer_bf16(const LayerView& layer, const LayerBf16& P, index_t i0, index_t i1,
                     index_t j0, index_t j1);

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

// out[:, j0:j1] = act(in · W[:, j0:j1] + b[j0:j1]): thread ith's share of it (sgemm's
// partition; the calling thread does it all by default).
//   in (R, fan_in), out (R, fan_out): only columns j0:j1 are written.
void linear_forward(const LayerView& layer, const float* in, index_t rows, index_t j0,
                    index_t j1, Activation act, float* out, int ith = 0, int nth = 1);

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

// The same three operations with bfloat16 operands (gemm_bf16.hpp). Operands in the
// layouts of bf16.hpp: in16 (rows, P.kin) rows of the layer's input; grad16 (rows,
// P.kout) rows of grad_out; int16 (fan_in, kb) rows of inᵀ and gradp (kb, ld_gradp) pairs
// of grad (all the layer's columns), kb the batch padded to kBf16KStep. The update also
// remakes P from the new W.
void linear_forward_bf16(const LayerView& layer, const LayerBf16& P, const bf16_t* in16,
                         index_t ld_in, index_t rows, index_t j0, index_t j1, Activation act,
                         float* out, int ith = 0, int nth = 1);
void linear_input_grad_bf16(const LayerView& layer, const LayerBf16& P, const bf16_t* grad16,
                            index_t ld_grad, const float* act_in, index_t rows, Activation f,
                            float* delta);
void linear_update_weights_bf16(const LayerView& layer, const LayerBf16& P, const bf16_t* int16,
                                index_t ld_in, const bf16_t* gradp, index_t ld_gradp,
                                index_t kb, index_t j0, index_t j1, const StepRule& rule,
                                int ith, int nth);

}  // namespace fastmlp
