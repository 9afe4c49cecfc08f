// One linear layer: forward, input gradient and fused update, each one GEMM with the
// matching epilogue. Legend as in layer.hpp.
#include "layer.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/activation.hpp"
#include "kernels/gemm.hpp"
#include "kernels/gemm_bf16.hpp"

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
      const index_t row = (i0 + r) * L.w_ld(), col = e->col0 + j0;
      ParamState s;
      for (int k = 0; k < kSlotCount; ++k)
        s.slot[k] = L.W_state.slot[k] ? L.slot_col(k, col) + row : nullptr;
      e->rule->apply(L.w_col(col) + row, tile + r * ldt, s, nr, /*is_weight=*/true);
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

namespace {

// The epilogue of each product, spelled once for both precisions (the operands are the
// caller's).
GemmArgs forward_epilogue(const LayerView& L, index_t rows, index_t j0, index_t j1,
                          Activation act, float* out) {
  GemmArgs g;
  g.m = rows, g.n = j1 - j0, g.k = L.fan_in;
  g.c = out + j0, g.ldc = L.fan_out;
  g.bias = L.b + j0;
  g.act = act;
  return g;
}

GemmArgs input_grad_epilogue(const LayerView& L, const float* act_in, index_t rows,
                             Activation f, float* delta, DeltaEpilogue* de) {
  GemmArgs g;
  g.m = rows, g.n = L.fan_in, g.k = L.fan_out;
  *de = DeltaEpilogue{delta, act_in, L.fan_in, f};
  if (f == Activation::ReLU) {  // applied by the micro-kernel as it stores
    g.c = delta, g.ldc = L.fan_in;
    g.relu_gate = act_in, g.ld_relu_gate = L.fan_in;
  } else {
    g.epilogue.fn = &DeltaEpilogue::run, g.epilogue.ctx = de;
  }
  return g;
}

GemmArgs update_epilogue(const LayerView& L, index_t batch, index_t j0, index_t j1,
                         const StepRule& rule, UpdateEpilogue* ue) {
  GemmArgs g;
  g.m = L.fan_in, g.n = j1 - j0, g.k = batch;
  *ue = UpdateEpilogue{&L, j0, &rule};
  if (rule.stateless) {  // plain SGD steps W while the gradient is in registers
    g.c = L.w_col(j0), g.ldc = L.w_ld();
    g.descent = true, g.descent_lr = rule.lr, g.descent_wd = rule.l2;
  } else {
    g.epilogue.fn = &UpdateEpilogue::run, g.epilogue.ctx = ue;
  }
  return g;
}

// Wp's part of pack_layer_bf16.
void pack_pairs_bf16(const LayerView& L, const LayerBf16& P, index_t i0, index_t i1, index_t j0,
                     index_t j1) {
  bf16_pack_pairs(L.w_col(j0), L.w_ld(), i0, i1, j1 - j0, P.wp_col(j0), P.nout);
  if (i1 == L.fan_in)  // the zero rows past fan_in, this block's columns only
    bf16_zero_pairs(L.fan_in, P.kin, j1 - j0, P.wp_col(j0), P.nout);
}

// Wtp's part of pack_layer_bf16: Wᵀ's pair rows are W's columns, so the block's columns
// j0.. (even: blocks start on whole tiles) are pair rows j0.. of Wtp.
void pack_transposed_bf16(const LayerView& L, const LayerBf16& P, index_t i0, index_t i1,
                          index_t j0, index_t j1) {
  const index_t kp = j1 == L.fan_out ? P.kout - j0 : j1 - j0;  // + the zero rows past fan_out
  bf16_pack_pairs_transposed(L.w_col(j0), L.w_ld(), i0, i1, j1 - j0, kp, P.Wtp + j0 * P.nin,
                             P.nin);
}

// The bfloat16 update's epilogue: the step (as float32 training does it), then the new
// block of W into the layer's bfloat16 layouts.
struct RepackEpilogue {
  const GemmArgs* step;
  const LayerView* layer;
  const LayerBf16* P;
  index_t col0;
  static void run(void* ctx, index_t i0, index_t j0, index_t mr, index_t nr, const float* tile,
                  index_t ldt) {
    const auto* e = static_cast<const RepackEpilogue*>(ctx);
    // Two rows at a time (one pair row of Wp): each is packed while still in L1, right
    // after its step (a whole block's step, then its pack, read W from L2 twice). Wᵀ's
    // pairs once for the block (at most 64 x 128 floats, still in L2): the vector packer
    // transposes 16 rows at a time (given two, it fell to its scalar edge loop: 15% of a
    // 784-512-512-10 bfloat16 profile).
    const GemmArgs& g = *e->step;
    const LayerView& L = *e->layer;
    const LayerBf16& P = *e->P;
    const index_t col = e->col0 + j0;
    if (g.descent) {  // plain SGD: step and W's pairs in one pass (i0 is even: whole tiles)
      bf16_sgd_step_pack(g.c + i0 * g.ldc + j0, g.ldc, tile, ldt, mr, nr, g.descent_lr,
                         g.descent_wd, P.wp_col(col) + (i0 / 2) * 2 * P.nout, 2 * P.nout);
    } else {
      for (index_t r = 0; r < mr; r += 2) {
        const index_t h = std::min<index_t>(2, mr - r), i = i0 + r;
        gemm_store_block(g, i, j0, h, nr, tile + r * ldt, ldt);
        pack_pairs_bf16(L, P, i, i + h, col, col + nr);
      }
    }
    if (P.Wtp != nullptr) pack_transposed_bf16(L, P, i0, i0 + mr, col, col + nr);
  }
};

}  // namespace

void linear_forward(const LayerView& L, const float* in, index_t rows, index_t j0, index_t j1,
                    Activation act, float* out, int ith, int nth) {
  if (j1 <= j0 || rows <= 0) return;
  GemmArgs g = forward_epilogue(L, rows, j0, j1, act, out);
  g.a = in, g.lda = L.fan_in;
  g.b = L.w_col(j0), g.ldb = L.w_ld();
  sgemm(g, ith, nth);
}

void linear_input_grad(const LayerView& L, const float* grad_out, const float* act_in,
                       index_t rows, Activation f, float* delta) {
  if (rows <= 0) return;
  DeltaEpilogue de;
  GemmArgs g = input_grad_epilogue(L, act_in, rows, f, delta, &de);
  g.a = grad_out, g.lda = L.fan_out;
  g.b = L.w_col(0), g.ldb = L.w_ld(), g.trans_b = true;  // a whole layer
  sgemm(g, 0, 1);
}

void linear_update_weights(const LayerView& L, const float* in, const float* grad,
                           index_t batch, index_t j0, index_t j1, const StepRule& rule,
                           int ith, int nth) {
  if (j1 <= j0) return;
  UpdateEpilogue ue;
  GemmArgs g = update_epilogue(L, batch, j0, j1, rule, &ue);
  g.a = in, g.lda = L.fan_in, g.trans_a = true;
  g.b = grad + j0, g.ldb = L.fan_out;
  sgemm(g, ith, nth);
}

namespace {

// dst[i*ldd + j] = src[i*lds + j] for i < rows, j < cols.
void copy_block(const float* src, index_t lds, index_t rows, index_t cols, float* dst,
                index_t ldd) {
  for (index_t i = 0; i < rows; ++i) std::copy(src + i * lds, src + i * lds + cols, dst + i * ldd);
}

// Columns [j0, j0 + cols) of W and of its state slots, from one view of a layer to another.
void copy_columns(const LayerView& src, const LayerView& dst, index_t j0, index_t cols) {
  copy_block(src.w_col(j0), src.w_ld(), src.fan_in, cols, dst.w_col(j0), dst.w_ld());
  for (int k = 0; k < kSlotCount; ++k)
    if (dst.W_state.slot[k] != nullptr)
      copy_block(src.slot_col(k, j0), src.w_ld(), src.fan_in, cols, dst.slot_col(k, j0),
                 dst.w_ld());
}

}  // namespace

LayerView layer_columns(const LayerView& L, index_t j0, index_t j1, float* W_own,
                        const ParamState& state_own) {
  LayerView v = L;
  v.ldw = j1 - j0, v.col0 = j0;
  v.W = W_own;
  for (int k = 0; k < kSlotCount; ++k)
    v.W_state.slot[k] = L.W_state.slot[k] != nullptr ? state_own.slot[k] : nullptr;
  copy_columns(L, v, j0, j1 - j0);
  return v;
}

void copy_columns_back(const LayerView& own, const LayerView& L) {
  copy_columns(own, L, own.col0, own.w_ld());
}

index_t bf16_columns_size(index_t fan_in, index_t cols) {
  return bf16_pad(fan_in, kBf16KStep) * bf16_pad(cols, kBf16NStep);
}

LayerBf16 bf16_columns(const LayerView& own, bf16_t* Wp_own) {
  LayerBf16 p;
  p.kin = bf16_pad(own.fan_in, kBf16KStep), p.nout = bf16_pad(own.w_ld(), kBf16NStep);
  p.col0 = own.col0, p.Wp = Wp_own;
  pack_layer_bf16(own, p, 0, own.fan_in, own.col0, own.col0 + own.w_ld());
  return p;
}

LayerBf16 bf16_layout(const LayerView& L) {
  LayerBf16 p;
  p.kin = bf16_pad(L.fan_in, kBf16KStep), p.kout = bf16_pad(L.fan_out, kBf16KStep);
  p.nin = bf16_pad(L.fan_in, kBf16NStep), p.nout = bf16_pad(L.fan_out, kBf16NStep);
  return p;
}

void pack_layer_bf16(const LayerView& L, const LayerBf16& P, index_t i0, index_t i1, index_t j0,
                     index_t j1) {
  pack_pairs_bf16(L, P, i0, i1, j0, j1);
  if (P.Wtp != nullptr) pack_transposed_bf16(L, P, i0, i1, j0, j1);
}

void linear_forward_bf16(const LayerView& L, const LayerBf16& P, const bf16_t* in16,
                         index_t ld_in, index_t rows, index_t j0, index_t j1, Activation act,
                         float* out, int ith, int nth) {
  if (j1 <= j0 || rows <= 0) return;
  Bf16GemmArgs p;
  p.epi = forward_epilogue(L, rows, j0, j1, act, out);
  p.m = rows, p.n = j1 - j0, p.k = P.kin;
  p.a = in16, p.lda = ld_in, p.b = P.wp_col(j0), p.ldb = P.nout;
  bgemm(p, ith, nth);
}

void linear_input_grad_bf16(const LayerView& L, const LayerBf16& P, const bf16_t* grad16,
                            index_t ld_grad, const float* act_in, index_t rows, Activation f,
                            float* delta) {
  if (rows <= 0) return;
  DeltaEpilogue de;
  Bf16GemmArgs p;
  p.epi = input_grad_epilogue(L, act_in, rows, f, delta, &de);
  p.m = rows, p.n = L.fan_in, p.k = P.kout;
  p.a = grad16, p.lda = ld_grad, p.b = P.Wtp, p.ldb = P.nin;
  bgemm(p, 0, 1);
}

void linear_update_weights_bf16(const LayerView& L, const LayerBf16& P, const bf16_t* int16,
                                index_t ld_in, const bf16_t* gradp, index_t ld_gradp,
                                index_t kb, index_t j0, index_t j1, const StepRule& rule,
                                int ith, int nth) {
  if (j1 <= j0) return;
  UpdateEpilogue ue;
  const GemmArgs step = update_epilogue(L, kb, j0, j1, rule, &ue);
  RepackEpilogue re{&step, &L, &P, j0};
  Bf16GemmArgs p;
  p.epi.epilogue.fn = &RepackEpilogue::run, p.epi.epilogue.ctx = &re;
  p.m = L.fan_in, p.n = j1 - j0, p.k = kb;
  p.a = int16, p.lda = ld_in, p.b = gradp + 2 * j0, p.ldb = ld_gradp;
  bgemm(p, ith, nth);
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
