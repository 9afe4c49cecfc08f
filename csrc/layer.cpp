// One linear layer: forward, input gradient and fused update, each one GEMM with the
// matching epilogue. Legend as in layer.hpp.
#include "layer.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/activation.hpp"
#include "kernels/gemm.hpp"

namespace fastmlp {

namespace {

// Custom epilogue of the input-gradient product for the smooth activations: the block of
// delta is grad * f'(z), with f' from the stored activations. (ReLU's gate is the GEMM's
// built-in relu_gate.)
struct DeltaEpilogue {
  float* delta;      // (R, fan_in) out
  const float* act;  // (R, fan_in) the layer's input activations
  index_t ld;        // fan_in
  Activation f;
  static void run(void* ctx, index_t i0, index_t j0, index_t mr, index_t nr, const float* tile,
                  index_t ldt) {
    const auto* e = static_cast<const DeltaEpilogue*>(ctx);
    for (index_t r = 0; r < mr; ++r) {
      float* d = e->delta + (i0 + r) * e->ld + j0;
      std::copy(tile + r * ldt, tile + r * ldt + nr, d);
      activation_backward(e->f, d, e->ld, e->act + (i0 + r) * e->ld + j0, e->ld, 1, nr);
    }
  }
};

// Custom epilogue of the weight-gradient product for the optimizers with state: the
// finished gradient block updates the matching block of W and its state slots.
struct UpdateEpilogue {
  const LayerView* layer;
  index_t col0;  // the product's column 0 is W's column col0
  const StepRule* rule;
  static void run(void* ctx, index_t i0, index_t j0, index_t mr, index_t nr, const float* tile,
                  index_t ldt) {
    const auto* e = static_cast<const UpdateEpilogue*>(ctx);
    const LayerView& L = *e->layer;
    for (index_t r = 0; r < mr; ++r) {
      const index_t off = (i0 + r) * L.fan_out + e->col0 + j0;
      ParamState s;
      for (int k = 0; k < kSlotCount; ++k)
        s.slot[k] = L.W_state.slot[k] ? L.W_state.slot[k] + off : nullptr;
      e->rule->apply(L.W + off, tile + r * ldt, s, nr, /*is_weight=*/true);
    }
  }
};

}  // namespace

index_t Network::widest() const {
  index_t w = 0;
  for (const LayerView& l : layers) w = std::max(w, l.fan_out);
  return w;
}

void check_network(const Network& net) {
  if (net.layers.empty()) throw std::invalid_argument("the network has no layers");
  for (size_t l = 0; l < net.layers.size(); ++l) {
    const LayerView& L = net.layers[l];
    const std::string name = "layer " + std::to_string(l);
    if (L.fan_in <= 0 || L.fan_out <= 0 || L.W == nullptr || L.b == nullptr)
      throw std::invalid_argument(name + " is empty");
    if (l > 0 && L.fan_in != net.layers[l - 1].fan_out)
      throw std::invalid_argument(name + " takes " + std::to_string(L.fan_in) +
                                  " inputs, but layer " + std::to_string(l - 1) + " has " +
                                  std::to_string(net.layers[l - 1].fan_out) + " outputs");
  }
}

void linear_forward(const LayerView& L, const float* in, index_t rows, index_t j0, index_t j1,
                    Activation act, float* out) {
  if (j1 <= j0 || rows <= 0) return;
  GemmArgs g;
  g.m = rows, g.n = j1 - j0, g.k = L.fan_in;
  g.a = in, g.lda = L.fan_in;
  g.b = L.W + j0, g.ldb = L.fan_out;
  g.c = out + j0, g.ldc = L.fan_out;
  g.bias = L.b + j0;
  g.act = act;
  sgemm(g, 0, 1);
}

void linear_input_grad(const LayerView& L, const float* grad_out, const float* act_in,
                       index_t rows, Activation f, float* delta) {
  if (rows <= 0) return;
  DeltaEpilogue de{delta, act_in, L.fan_in, f};
  GemmArgs g;
  g.m = rows, g.n = L.fan_in, g.k = L.fan_out;
  g.a = grad_out, g.lda = L.fan_out;
  g.b = L.W, g.ldb = L.fan_out, g.trans_b = true;
  if (f == Activation::ReLU) {  // applied by the micro-kernel as it stores
    g.c = delta, g.ldc = L.fan_in;
    g.relu_gate = act_in, g.ld_relu_gate = L.fan_in;
  } else {
    g.epilogue.fn = &DeltaEpilogue::run, g.epilogue.ctx = &de;
  }
  sgemm(g, 0, 1);
}

void linear_update_weights(const LayerView& L, const float* in, const float* grad,
                           index_t batch, index_t j0, index_t j1, const StepRule& rule,
                           int ith, int nth) {
  if (j1 <= j0) return;
  UpdateEpilogue ue{&L, j0, &rule};
  GemmArgs g;
  g.m = L.fan_in, g.n = j1 - j0, g.k = batch;
  g.a = in, g.lda = L.fan_in, g.trans_a = true;
  g.b = grad + j0, g.ldb = L.fan_out;
  if (rule.stateless) {  // plain SGD steps W while the gradient is in registers
    g.c = L.W + j0, g.ldc = L.fan_out;
    g.descent = true, g.descent_lr = rule.lr, g.descent_wd = rule.l2;
  } else {
    g.epilogue.fn = &UpdateEpilogue::run, g.epilogue.ctx = &ue;
  }
  sgemm(g, ith, nth);
}

void linear_update_bias(const LayerView& L, const float* grad, index_t batch, index_t j0,
                        index_t j1, const StepRule& rule, double* acc, float* g) {
  if (j1 <= j0) return;
  column_sums(grad + j0, batch, j1 - j0, L.fan_out, acc);
  for (index_t j = 0; j < j1 - j0; ++j) g[j] = static_cast<float>(acc[j]);
  ParamState s;
  for (int k = 0; k < kSlotCount; ++k)
    s.slot[k] = L.b_state.slot[k] ? L.b_state.slot[k] + j0 : nullptr;
  rule.apply(L.b + j0, g, s, j1 - j0, /*is_weight=*/false);
}

}  // namespace fastmlp
