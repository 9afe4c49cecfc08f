// The training loop: forward, fused softmax cross-entropy, backward with the optimizer
// step fused into the weight-gradient GEMM, for a chunk of batches in one parallel region.
//
// Legend: B batch rows (this batch), D input features, L layers, C classes, H0 the width
// of layer 0's output. (ith, nth): this thread and the team size.
#include "train.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>

#include "barrier.hpp"
#include "kernels/dropout.hpp"
#include "kernels/gemm.hpp"
#include "kernels/loss.hpp"

namespace fastmlp {

namespace {

constexpr index_t kPad = kCacheLine / sizeof(double);  // one double per cache line
static_assert(kGemmPanel == kSumSquaresLanes,
              "a W0 panel's |W|^2 is one sum_squares block that fills its lanes exactly");

void check_state(const Network& net, const OptimConfig& opt) {
  for (size_t l = 0; l < net.layers.size(); ++l)
    for (int k = 0; k < kSlotCount; ++k) {
      const LayerView& L = net.layers[l];
      if (needs_slot(opt, static_cast<Slot>(k)) &&
          (L.W_state.slot[k] == nullptr || L.b_state.slot[k] == nullptr))
        throw std::invalid_argument("layer " + std::to_string(l) + " lacks the optimizer's '" +
                                    kSlotNames[k] + "' state");
    }
}

void check_options(const Network& net, const TrainOptions& o) {
  const size_t hidden = net.layers.size() - 1;
  if (!o.dropout.empty() && o.dropout.size() != hidden)
    throw std::invalid_argument("dropout needs one rate per hidden layer (" +
                                std::to_string(hidden) + "), got " +
                                std::to_string(o.dropout.size()));
  for (double r : o.dropout)
    if (!(r >= 0.0 && r < 1.0)) throw std::invalid_argument("dropout rates must lie in [0, 1)");
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing < 1.0))
    throw std::invalid_argument("label_smoothing must lie in [0, 1)");
  const Augmentation& a = o.augment;
  if (a.active() && (a.image.height <= 0 || a.image.width <= 0 || a.image.channels <= 0 ||
                     a.image.size() != net.n_inputs() || a.shift < 0))
    throw std::invalid_argument("augmentation needs an image geometry (H, W, C) with H * W * C "
                                "equal to the " + std::to_string(net.n_inputs()) +
                                " features, and shift >= 0");
}

void check_plan(const Network& net, const BatchPlan& p, const OptimConfig& opt,
                const TrainOptions& options) {
  check_network(net);
  check_state(net, opt);
  check_options(net, options);
  if (const char* why = invalid_config(opt)) throw std::invalid_argument(why);
  if (p.X->features() != net.n_inputs())
    throw std::invalid_argument("X has " + std::to_string(p.X->features()) +
                                " features, the network expects " +
                                std::to_string(net.n_inputs()));
  if (p.sample_rows == nullptr && p.n_samples != p.X->rows())
    throw std::invalid_argument("X and y have different lengths");
  if (p.batch_size <= 0) throw std::invalid_argument("batch_size must be positive");
  const index_t C = net.n_outputs();
  for (index_t i = 0; i < p.n_order; ++i) {
    const std::int64_t r = p.order[i];
    if (r < 0 || r >= p.n_samples)
      throw std::invalid_argument("order[" + std::to_string(i) + "] = " + std::to_string(r) +
                                  " is out of range");
    if (p.sample_rows && (p.sample_rows[r] < 0 || p.sample_rows[r] >= p.X->rows()))
      throw std::invalid_argument("sample_rows[" + std::to_string(r) + "] = " +
                                  std::to_string(p.sample_rows[r]) + " is not a row of X");
    if (p.y[r] < 0 || p.y[r] >= C)
      throw std::invalid_argument("label " + std::to_string(p.y[r]) + " of sample " +
                                  std::to_string(r) + " is outside [0, " + std::to_string(C) +
                                  ")");
    if (p.sample_weight != nullptr &&
        !(p.sample_weight[r] >= 0.0f && std::isfinite(p.sample_weight[r])))
      throw std::invalid_argument("sample weights must be finite and non-negative");
  }
}

// Scratch of one call, allocated before the parallel region. out[l] (B, H_l) is layer l's
// output; the last one holds the logits, overwritten in place by dlogits. dz[l] (B, H_l),
// l < L-1, is the gradient at layer l's pre-activation. out[0] has two copies used by
// alternate batches: a thread may start the next batch's first layer while another still
// reads this batch's out[0] in its weight-gradient product. xs[b & 1] (B, D) holds batch
// b's rows of X, gathered by all threads one batch ahead.
struct SharedScratch {
  std::vector<aligned_vector<float>> out, dz;
  aligned_vector<float> out0_odd, xs[2];
  // Hidden layers with dropout: drop[l] (B, H_l) the dropped outputs the next layer reads
  // (drop0_odd the second copy of drop[0], as for out[0]) and mask[l] which units kept.
  std::vector<aligned_vector<float>> drop;
  aligned_vector<float> drop0_odd;
  std::vector<aligned_vector<std::uint8_t>> mask;
  aligned_vector<double> row_loss;      // (B,) w_i * CE_i
  aligned_vector<std::uint8_t> correct;  // (B,)
  // |W|^2 for the L2 term of the reported loss: one sum per panel of W0 and one for the
  // deeper layers, each on its own cache line (written by different threads).
  aligned_vector<double> wsq;

  SharedScratch(const Network& net, const TrainOptions& o, index_t Bmax, index_t n_panels0,
                bool l2)
      : out(net.layers.size()), dz(net.layers.size()), drop(net.layers.size()),
        mask(net.layers.size()) {
    const index_t L = net.n_layers(), D = net.n_inputs();
    for (index_t l = 0; l + 1 < L; ++l)
      if (o.dropout_rate(l) > 0) {
        drop[l].resize(Bmax * net.layers[l].fan_out);
        mask[l].resize(Bmax * net.layers[l].fan_out);
      }
    if (o.dropout_rate(0) > 0) drop0_odd.resize(Bmax * net.layers[0].fan_out);
    for (index_t l = 0; l < L; ++l) out[l].resize(Bmax * net.layers[l].fan_out);
    for (index_t l = 0; l + 1 < L; ++l) dz[l].resize(Bmax * net.layers[l].fan_out);
    out0_odd.resize(Bmax * net.layers[0].fan_out);
    xs[0].resize(Bmax * D), xs[1].resize(Bmax * D);
    row_loss.resize(Bmax), correct.resize(Bmax);
    wsq.resize(l2 ? (n_panels0 + 1) * kPad : 0);
  }
};

// The bfloat16 operands of one call (Precision::BFloat16), allocated with the rest of the
// scratch, zero-filled. kb = Bmax padded to kBf16KStep is the inner dimension of the
// weight gradients and the row length of the transposed inputs; row-layout operands have
// kb + kBf16MStep rows, since a thread's rows start anywhere and the AMX kernel reads whole
// 32-row tiles from there.
//   x16[b & 1]  (rows, kin_0)       batch b's rows of X        (layer 0 forward)
//   xt16[b & 1] (kin_0, kb)         their transpose            (layer 0 weight gradient)
//   in16[l]     (rows, kin_l)       layer l's input rows, l >= 1 (forward)
//   int16[l]    (kin_l, kb)         their transpose            (layer l weight gradient)
//   g16[l]      (rows, kout_l)      grad of layer l's output   (input gradient), l >= 1
//   gp16[l]     (kb/2, nout_l, 2)   its pairs                  (weight gradient)
// and each layer's Wp / Wtp (layer.hpp's LayerBf16); threads that split W0 by columns
// train their own Wp of layer 0 (ThreadScratch).
struct Bf16Scratch {
  index_t kb = 0, rows = 0;
  std::vector<LayerBf16> P;
  std::vector<aligned_vector<bf16_t>> Wp, Wtp, in16, int16, g16, gp16;
  aligned_vector<bf16_t> x16[2], xt16[2];

  Bf16Scratch(const Network& net, index_t Bmax)
      : kb(bf16_pad(Bmax, kBf16KStep)), rows(kb + kBf16MStep), P(net.layers.size()),
        Wp(net.layers.size()), Wtp(net.layers.size()), in16(net.layers.size()),
        int16(net.layers.size()), g16(net.layers.size()), gp16(net.layers.size()) {
    for (size_t l = 0; l < net.layers.size(); ++l) {
      const LayerView& L = net.layers[l];
      LayerBf16& p = P[l] = bf16_layout(L);
      Wp[l].resize(p.kin * p.nout), p.Wp = Wp[l].data();
      if (l > 0) {
        Wtp[l].resize(p.kout * p.nin), p.Wtp = Wtp[l].data();
        in16[l].resize(rows * p.kin), int16[l].resize(p.kin * kb);
        g16[l].resize(rows * p.kout);
      }
      gp16[l].resize(kb * p.nout);
    }
    for (auto* v : {&x16[0], &x16[1]}) v->resize(rows * P[0].kin);
    // kin_0 rows: the AMX kernel reads whole 32-row tiles of W0's fan_in rows
    static_assert(kBf16KStep % kBf16MStep == 0, "kin_0 must hold whole row tiles");
    for (auto* v : {&xt16[0], &xt16[1]}) v->resize(P[0].kin * kb);
    // Layer 0's Wp is packed by the threads that train their columns of it in place
    // (BatchWorker); the others train a Wp of their own.
    for (size_t l = 1; l < net.layers.size(); ++l)
      pack_layer_bf16(net.layers[l], P[l], 0, net.layers[l].fan_in, 0, net.layers[l].fan_out);
  }
  // The rows [r0, r1) of a batch of B as the operands of a layer's input: rows and
  // transpose. The thread with the batch's last rows also zeroes the transpose's columns
  // past B (a short last batch follows full ones).
  void pack_input(const float* in, index_t width, index_t kin, index_t r0, index_t r1, index_t B,
                  bf16_t* rows16, bf16_t* t16) const {
    bf16_pack_rows(in, width, r0, r1, width, kin, rows16, kin);
    bf16_pack_transposed(in, width, r0, r1, width, t16, kb);
    if (r1 == B) bf16_zero_cols(width, B, bf16_pad(B, kBf16KStep), t16, kb);
  }
  // Features [f0, f1) of all B rows of `in` (bfloat16 rows, stride ld) into the transpose
  // t16: whole rows of t16 per thread. (Each thread transposing its own batch rows writes
  // its half of every 128-byte row of t16, and the two cores' adjacent-line prefetchers
  // then fight over them: X's transpose ran 3x slower.)
  void transpose_features(const bf16_t* in, index_t ld, index_t f0, index_t f1, index_t B,
                          bf16_t* t16) const {
    if (f1 <= f0) return;
    bf16_transpose(in, ld, B, f0, f1, t16, kb);
    bf16_zero_cols(f1 - f0, B, bf16_pad(B, kBf16KStep), t16 + f0 * kb, kb);
  }
  // Rows [r0, r1) of layer l's output gradient as pairs (and zero pair rows past B).
  void pack_grad_pairs(index_t l, const float* grad, index_t width, index_t r0, index_t r1,
                       index_t B) {
    bf16_pack_pairs(grad, width, r0, r1, width, gp16[l].data(), P[l].nout);
    if (r1 == B) bf16_zero_pairs(B, bf16_pad(B, kBf16KStep), P[l].nout, gp16[l].data(), P[l].nout);
  }
};

// The columns [c0, c1) of W0 that thread ith of nth owns: whole panels, so no register
// tile is split.
void own_columns0(const Network& net, int ith, int nth, index_t* c0, index_t* c1) {
  const index_t H0 = net.layers[0].fan_out;
  split_range((H0 + kGemmPanel - 1) / kGemmPanel, ith, nth, c0, c1);
  *c0 = std::min(H0, *c0 * kGemmPanel), *c1 = std::min(H0, *c1 * kGemmPanel);
}

// One thread's own scratch: the batch's labels and weights, the bias gradient, a scaled
// row of X on its way to augmentation, and, when several threads split W0 by columns,
// this thread's columns of W0 and of its optimizer state (layer_columns) and in
// bfloat16 their Wp (bf16_columns).
struct ThreadScratch {
  aligned_vector<std::int32_t> yb;
  aligned_vector<float> wb, bias_grad, pixels;
  aligned_vector<double> bias_acc;
  aligned_vector<float> w0, w0_state[kSlotCount];
  aligned_vector<bf16_t> wp0;
  ThreadScratch(const Network& net, index_t Bmax, bool weighted, bool scaled_augmented,
                index_t own_w0, index_t own_wp0)
      : yb(Bmax), wb(weighted ? Bmax : 0), bias_grad(net.widest()),
        pixels(scaled_augmented ? net.n_inputs() : 0), bias_acc(net.widest()), w0(own_w0),
        wp0(own_wp0) {
    for (int k = 0; k < kSlotCount; ++k)
      if (own_w0 > 0 && net.layers[0].W_state.slot[k] != nullptr) w0_state[k].resize(own_w0);
  }
  ParamState w0_slots() {
    ParamState s;
    for (int k = 0; k < kSlotCount; ++k)
      s.slot[k] = w0_state[k].empty() ? nullptr : w0_state[k].data();
    return s;
  }
};

// What one batch is, as every thread sees it.
struct Batch {
  index_t index, B;
  std::uint64_t step;        // the optimizer step this batch is: keys its random draws
  const std::int64_t* rows;  // (B,) indices into X
  const float* x;            // (B, D) gathered rows
  double weight;             // total sample weight
};

// A thread's part of the A-D schedule (see train_batches).
class BatchWorker {
 public:
  BatchWorker(const Network& net, const BatchPlan& plan, const TrainOptions& options,
              long long t0, SharedScratch& s, Bf16Scratch* bf, ThreadScratch& own, int ith,
              int nth)
      : net_(net), plan_(plan), opt_(options), t0_(t0), s_(s), bf_(bf), own_(own), ith_(ith),
        nth_(nth), w0_(net.layers[0]) {
    own_columns0(net, ith, nth, &c0_, &c1_);
    // (A team smaller than asked for gives larger shares than own.w0 was sized for: they
    // are trained in place.)
    own_w0_ = !own.w0.empty() &&
              static_cast<index_t>(own.w0.size()) == net.layers[0].fan_in * (c1_ - c0_);
    if (own_w0_) w0_ = layer_columns(net.layers[0], c0_, c1_, own.w0.data(), own.w0_slots());
    if (bf != nullptr && own_w0_) {
      p0_ = bf16_columns(w0_, own.wp0.data());
    } else if (bf != nullptr) {  // this thread's columns of the shared Wp, which it alone reads
      p0_ = bf->P[0];
      pack_layer_bf16(w0_, p0_, 0, w0_.fan_in, c0_, c1_);
    }
  }
  // Writes this thread's columns of W0 home, at the end of the chunk.
  void finish() {
    if (own_w0_) copy_columns_back(w0_, net_.layers[0]);
  }

  index_t n_panels0() const { return (net_.layers[0].fan_out + kGemmPanel - 1) / kGemmPanel; }
  void gather_share(index_t bi);
  Batch begin(index_t bi);
  void forward_own_columns(const Batch& b);
  void own_rows_through_network(const Batch& b);
  double batch_loss(const Batch& b, double alpha, std::int64_t* n_correct) const;
  void update(const Batch& b, const StepRule& rule);

 private:
  index_t B(index_t bi) const {
    return std::min(plan_.batch_size, plan_.n_order - bi * plan_.batch_size);
  }
  std::uint64_t step_of(index_t bi) const { return static_cast<std::uint64_t>(t0_ + bi + 1); }
  // Layer l's activations f(z), before any dropout.
  float* act(const Batch& b, index_t l) const {
    return l == 0 && (b.index & 1) ? s_.out0_odd.data() : s_.out[l].data();
  }
  // What the next layer reads: the dropped activations where the layer has dropout.
  float* output(const Batch& b, index_t l) const {
    if (opt_.dropout_rate(l) == 0.0f) return act(b, l);
    return l == 0 && (b.index & 1) ? s_.drop0_odd.data() : s_.drop[l].data();
  }
  float* grad(const Batch& b, index_t l) const {
    return l == net_.n_layers() - 1 ? act(b, l) : s_.dz[l].data();
  }
  DropoutKey dropout_key(const Batch& b, index_t l) const {
    return {opt_.seed, b.step, l, opt_.dropout_rate(l)};
  }
  // Dropout of layer l's rows r0.. (R of them), columns j0:j1, after its forward.
  void drop_rows(const Batch& b, index_t l, index_t r0, index_t R, index_t j0, index_t j1) {
    if (opt_.dropout_rate(l) == 0.0f) return;
    const index_t H = net_.layers[l].fan_out;
    dropout_forward(act(b, l) + r0 * H, output(b, l) + r0 * H, s_.mask[l].data() + r0 * H, H,
                    b.rows + r0, R, j0, j1, dropout_key(b, l));
  }
  void weight_squares();
  void loss_rows(const Batch& b, index_t r0, index_t R);
  // The gradient through layer l's dropout, rows r0.. (R of them) of delta.
  void drop_grad(const Batch& b, index_t l, float* delta, index_t r0, index_t R) {
    if (opt_.dropout_rate(l) == 0.0f) return;
    const index_t H = net_.layers[l].fan_out;
    dropout_backward(delta, s_.mask[l].data() + r0 * H, H, R, H, dropout_key(b, l).scale());
  }
  void rows_through_network_bf16(const Batch& b, index_t r0, index_t r1);

  const Network& net_;
  const BatchPlan& plan_;
  const TrainOptions& opt_;
  const long long t0_;
  SharedScratch& s_;
  Bf16Scratch* const bf_;  // null in float32
  ThreadScratch& own_;
  const int ith_, nth_;
  index_t c0_ = 0, c1_ = 0;  // this thread's columns of W0
  LayerView w0_;             // layer 0 as this thread trains it: its own columns, or whole
  LayerBf16 p0_;             // and its bfloat16 Wp (bfloat16 only)
  bool own_w0_ = false;      // w0_ holds this thread's columns in own_.w0 (and p0_ in wp0)
};

// This thread's share of batch bi's rows of X, scaled and augmented into xs[bi & 1].
// (A software prefetch of these rows a phase ahead measured no faster than the plain
// copy; prefetching the row kAhead rows down while copying this one keeps several rows in
// flight from memory: about 5% of a bfloat16 epoch on an AMD EPYC, nothing measurable in
// float32.)
void BatchWorker::gather_share(index_t bi) {
  const PixelRows& X = *plan_.X;
  const index_t D = X.features();
  const std::int64_t* samples = plan_.order + bi * plan_.batch_size;
  index_t r0, r1;
  split_range(B(bi), ith_, nth_, &r0, &r1);
  float* dst = s_.xs[bi & 1].data();
  const Augmentation& aug = opt_.augment;
  // bfloat16 reads only x16: a plain row goes there straight from X, without the copy,
  // and 8-bit pixels through their bfloat16 table, without a float32 row in between (the
  // detour made a bfloat16 epoch of 8-bit Fashion-MNIST 20% slower on an AMD EPYC).
  const bool direct = bf_ != nullptr && X.plain() && !aug.active();
  const bool tabulated = bf_ != nullptr && X.reads_bf16() && !aug.active();
  const auto row_of = [&](index_t r) {
    const std::int64_t s = samples[r];
    return plan_.sample_rows ? plan_.sample_rows[s] : s;
  };
  constexpr index_t kAhead = 8;
  // the first rows; then each row's prefetch is issued kAhead rows before
  for (index_t r = r0; r < std::min(r1, r0 + kAhead); ++r)
    prefetch_bytes(X.row_data(row_of(r)), X.row_bytes());
  for (index_t r = r0; r < r1; ++r) {
    const std::int64_t s = samples[r], row = row_of(r);
    float* out = dst + r * D;
    if (r + kAhead < r1) prefetch_bytes(X.row_data(row_of(r + kAhead)), X.row_bytes());
    bf16_t* const out16 = bf_ != nullptr ? bf_->x16[bi & 1].data() + r * bf_->P[0].kin : nullptr;
    if (direct) {
      bf16_pack_rows(X.plain_row(row), D, 0, 1, D, bf_->P[0].kin, out16, bf_->P[0].kin);
      continue;
    }
    if (tabulated) {
      X.row_bf16(row, out16, bf_->P[0].kin);
      continue;
    }
    if (!aug.active()) {
      X.row(row, out);
    } else {
      const float* src = X.plain() ? X.plain_row(row) : own_.pixels.data();
      if (!X.plain()) X.row(row, own_.pixels.data());
      augment_image(src, out, aug.image, augment_draw(aug, opt_.seed, step_of(bi), s));
    }
    if (bf_ != nullptr) bf16_pack_rows(out, D, 0, 1, D, bf_->P[0].kin, out16, bf_->P[0].kin);
  }
}

// Every thread reads the batch's labels, weights and total weight itself.
Batch BatchWorker::begin(index_t bi) {
  Batch b{bi, B(bi), step_of(bi), plan_.order + bi * plan_.batch_size, s_.xs[bi & 1].data(),
          0.0};
  for (index_t r = 0; r < b.B; ++r) own_.yb[r] = plan_.y[b.rows[r]];
  b.weight = static_cast<double>(b.B);
  if (plan_.sample_weight) {
    b.weight = 0;
    for (index_t r = 0; r < b.B; ++r) {
      own_.wb[r] = plan_.sample_weight[b.rows[r]];
      b.weight += own_.wb[r];
    }
  }
  return b;
}

// A. out[0][:, own] = f(x · W0[:, own] + b0[own]), then its dropout.
void BatchWorker::forward_own_columns(const Batch& b) {
  if (bf_ != nullptr)
    linear_forward_bf16(w0_, p0_, bf_->x16[b.index & 1].data(), bf_->P[0].kin, b.B, c0_, c1_,
                        net_.activation_of(0), act(b, 0));
  else
    linear_forward(w0_, b.x, b.B, c0_, c1_, net_.activation_of(0), act(b, 0));
  drop_rows(b, 0, 0, b.B, c0_, c1_);
}

// C. The thread's own rows through layers 1.., the softmax cross-entropy, and the
// input-gradient products down to dz[0][own rows], before any W changes.
void BatchWorker::own_rows_through_network(const Batch& b) {
  const index_t L = net_.n_layers();
  index_t r0, r1;
  split_range(b.B, ith_, nth_, &r0, &r1);
  const index_t R = r1 - r0;
  if (bf_ != nullptr) {
    rows_through_network_bf16(b, r0, r1);
  } else if (R > 0) {
    for (index_t l = 1; l < L; ++l) {
      const LayerView& Ly = net_.layers[l];
      linear_forward(Ly, output(b, l - 1) + r0 * Ly.fan_in, R, 0, Ly.fan_out,
                     net_.activation_of(l), act(b, l) + r0 * Ly.fan_out);
      if (l + 1 < L) drop_rows(b, l, r0, R, 0, Ly.fan_out);
    }
    loss_rows(b, r0, R);
    for (index_t l = L - 1; l >= 1; --l) {  // f' from the undropped activations
      const LayerView& Ly = net_.layers[l];
      float* delta = s_.dz[l - 1].data() + r0 * Ly.fan_in;
      linear_input_grad(Ly, grad(b, l) + r0 * Ly.fan_out, act(b, l - 1) + r0 * Ly.fan_in, R,
                        net_.hidden, delta);
      drop_grad(b, l - 1, delta, r0, R);
    }
  }
  if (!s_.wsq.empty()) weight_squares();
}

// |W|^2 before this batch's update, in an order that does not depend on the thread
// count: W0 panel by panel, each by the thread that owns it (and has it in cache); the
// deeper layers, which every thread has just read, by thread 0.
void BatchWorker::weight_squares() {
  const index_t H0 = w0_.fan_out;
  for (index_t c = c0_; c < c1_; c += kGemmPanel)
    s_.wsq[c / kGemmPanel * kPad] =
        sum_squares(w0_.w_col(c), w0_.fan_in, std::min(kGemmPanel, H0 - c), w0_.w_ld());
  if (ith_ != 0) return;
  double deep = 0;
  for (index_t l = 1; l < net_.n_layers(); ++l) {
    const LayerView& Ly = net_.layers[l];
    deep += sum_squares(Ly.W, Ly.fan_in, Ly.fan_out, Ly.fan_out);
  }
  s_.wsq[n_panels0() * kPad] = deep;
}

// Rows r0.. (R of them) of the logits -> their softmax cross-entropy gradient, in place,
// with each row's weighted loss and whether it was right.
void BatchWorker::loss_rows(const Batch& b, index_t r0, index_t R) {
  const index_t L = net_.n_layers(), C = net_.n_outputs();
  float* z = act(b, L - 1) + r0 * C;
  const float scale = b.weight > 0 ? static_cast<float>(1.0 / b.weight) : 0.0f;
  softmax_cross_entropy(z, C, own_.yb.data() + r0,
                        plan_.sample_weight ? own_.wb.data() + r0 : nullptr, R, C, scale,
                        static_cast<float>(opt_.label_smoothing), z, C,
                        s_.row_loss.data() + r0, s_.correct.data() + r0);
}

// C in bfloat16: as own_rows_through_network, each product's operands packed from the
// thread's rows as they become final (every row's loss and gradient stay float32). The
// packs the weight gradients read in D (int16, gp16) are complete after the barrier.
void BatchWorker::rows_through_network_bf16(const Batch& b, index_t r0, index_t r1) {
  const index_t L = net_.n_layers(), R = r1 - r0, D = net_.n_inputs();
  Bf16Scratch& bf = *bf_;
  index_t f0, f1;  // this thread's features of X's transpose, in blocks of 16
  split_range((D + 15) / 16, ith_, nth_, &f0, &f1);
  bf.transpose_features(bf.x16[b.index & 1].data(), bf.P[0].kin, std::min(D, f0 * 16),
                        std::min(D, f1 * 16), b.B, bf.xt16[b.index & 1].data());
  for (index_t l = 1; l < L; ++l) {
    const LayerView& Ly = net_.layers[l];
    const LayerBf16& P = bf.P[l];
    bf.pack_input(output(b, l - 1), Ly.fan_in, P.kin, r0, r1, b.B, bf.in16[l].data(),
                  bf.int16[l].data());
    if (R > 0)
      linear_forward_bf16(Ly, P, bf.in16[l].data() + r0 * P.kin, P.kin, R, 0, Ly.fan_out,
                          net_.activation_of(l), act(b, l) + r0 * Ly.fan_out);
    if (l + 1 < L) drop_rows(b, l, r0, R, 0, Ly.fan_out);
  }
  if (R > 0) loss_rows(b, r0, R);
  for (index_t l = L - 1; l >= 1; --l) {  // f' from the undropped activations
    const LayerView& Ly = net_.layers[l];
    const LayerBf16& P = bf.P[l];
    bf.pack_grad_pairs(l, grad(b, l), Ly.fan_out, r0, r1, b.B);
    bf16_pack_rows(grad(b, l), Ly.fan_out, r0, r1, Ly.fan_out, P.kout, bf.g16[l].data(), P.kout);
    if (R == 0) continue;
    float* delta = s_.dz[l - 1].data() + r0 * Ly.fan_in;
    linear_input_grad_bf16(Ly, P, bf.g16[l].data() + r0 * P.kout, P.kout,
                           act(b, l - 1) + r0 * Ly.fan_in, R, net_.hidden, delta);
    drop_grad(b, l - 1, delta, r0, R);
  }
  bf.pack_grad_pairs(0, grad(b, 0), net_.layers[0].fan_out, r0, r1, b.B);
}

// The batch's loss (with the L2 term) and correct count, reduced by every thread in the
// same order, so all agree on whether to go on without another barrier.
double BatchWorker::batch_loss(const Batch& b, double alpha, std::int64_t* n_correct) const {
  double loss = 0;
  std::int64_t correct = 0;
  for (index_t r = 0; r < b.B; ++r) loss += s_.row_loss[r], correct += s_.correct[r];
  if (!s_.wsq.empty()) {
    double sq = 0;
    for (index_t p = 0; p <= n_panels0(); ++p) sq += s_.wsq[p * kPad];
    loss += 0.5 * alpha * sq;
  }
  *n_correct = correct;
  return loss;
}

// D. W_l <- step(out[l-1]ᵀ · dz_l): deeper layers split by the GEMM's partition, their
// biases by columns; W0's own columns from the gathered rows.
void BatchWorker::update(const Batch& b, const StepRule& rule) {
  double* acc = own_.bias_acc.data();
  float* g = own_.bias_grad.data();
  const index_t kb = bf16_pad(b.B, kBf16KStep);  // the bfloat16 products' inner dimension
  for (index_t l = net_.n_layers() - 1; l >= 1; --l) {
    const LayerView& Ly = net_.layers[l];
    if (bf_ != nullptr)
      linear_update_weights_bf16(Ly, bf_->P[l], bf_->int16[l].data(), bf_->kb,
                                 bf_->gp16[l].data(), bf_->P[l].nout, kb, 0, Ly.fan_out, rule,
                                 ith_, nth_);
    else
      linear_update_weights(Ly, output(b, l - 1), grad(b, l), b.B, 0, Ly.fan_out, rule, ith_,
                            nth_);
    index_t j0, j1;
    split_range(Ly.fan_out, ith_, nth_, &j0, &j1);
    linear_update_bias(Ly, grad(b, l), b.B, j0, j1, rule, acc, g);
  }
  const LayerView& L0 = net_.layers[0];
  if (bf_ != nullptr) {
    linear_update_weights_bf16(w0_, p0_, bf_->xt16[b.index & 1].data(), bf_->kb,
                               bf_->gp16[0].data(), bf_->P[0].nout, kb, c0_, c1_, rule, 0, 1);
  } else {
    linear_update_weights(w0_, b.x, grad(b, 0), b.B, c0_, c1_, rule, 0, 1);
  }
  linear_update_bias(L0, grad(b, 0), b.B, c0_, c1_, rule, acc, g);
}

// Prediction's scratch, sized to the work (at most `rows` rows per block), allocated
// before the parallel region: two activation buffers per thread, the block's rows of
// X as float32 unless X is read in place (plain rows in order) or straight to bfloat16
// (8-bit pixels, PixelRows::reads_bf16), and in bfloat16 one
// rows-layout operand per thread (rows + kBf16MStep rows: the AMX kernel reads whole
// tiles) as wide as the widest padded layer input.
struct PredictScratch {
  const bool reads16;  // X's rows go straight to layer 0's bfloat16 operand (input16)
  std::vector<aligned_vector<float>> act, xin;
  std::vector<aligned_vector<bf16_t>> in16;
  index_t ld16 = 0;
  PredictScratch(const Network& net, const PixelRows& X, const std::int64_t* order,
                 index_t rows, int nt, const Bf16Weights* bf16)
      : reads16(bf16 != nullptr && X.reads_bf16()), act(2 * static_cast<size_t>(nt)),
        xin((X.plain() && !order) || reads16 ? 0 : nt), in16(bf16 != nullptr ? nt : 0) {
    for (auto& v : act) v.resize(rows * net.widest());
    for (auto& v : xin) v.resize(rows * X.features());
    if (bf16 != nullptr)
      for (const LayerBf16& p : bf16->P) ld16 = std::max(ld16, p.kin);
    for (auto& v : in16) v.resize((rows + kBf16MStep) * ld16);
  }
  // X's rows r0..r0+R (or order[r0..]) as the network's float32 input.
  const float* input(const PixelRows& X, const std::int64_t* order, index_t r0, index_t R,
                     int ith) {
    if (xin.empty()) return X.plain_row(r0);
    float* dst = xin[ith].data();
    for (index_t r = 0; r < R; ++r) X.row(order ? order[r0 + r] : r0 + r, dst + r * X.features());
    return dst;
  }
  // The same rows straight into thread ith's in16, as layer 0's operand (kin wide).
  void input16(const PixelRows& X, const std::int64_t* order, index_t r0, index_t R, int ith,
               index_t kin) {
    for (index_t r = 0; r < R; ++r)
      X.row_bf16(order ? order[r0 + r] : r0 + r, in16[ith].data() + r * kin, kin);
  }
};

// One block of R rows through layer l, thread ith's share of it: float32, or bfloat16
// operands packed from `in` (all of them: in16 is the thread's own), or already in in16
// when `in` is null.
void predict_layer(const Network& net, index_t l, const float* in, index_t R, float* out,
                   const Bf16Weights* bf16, bf16_t* in16, int ith, int nth) {
  const LayerView& Ly = net.layers[l];
  if (bf16 == nullptr) {
    linear_forward(Ly, in, R, 0, Ly.fan_out, net.activation_of(l), out, ith, nth);
    return;
  }
  const LayerBf16& P = bf16->P[l];
  if (in != nullptr) bf16_pack_rows(in, Ly.fan_in, 0, R, Ly.fan_in, P.kin, in16, P.kin);
  linear_forward_bf16(Ly, P, in16, P.kin, R, 0, Ly.fan_out, net.activation_of(l), out, ith,
                      nth);
}

// Multiply-adds of one row through the network.
double weights_per_row(const Network& net) {
  double w = 0;
  for (const LayerView& L : net.layers) w += static_cast<double>(L.fan_in) * L.fan_out;
  return w;
}

// Where predict_proba's threads record what stops the call (each flag only ever set,
// by any thread; read after the team has joined).
struct PredictStatus {
  bool failed = false;          // an allocation in a GEMM's packing buffers (a few MiB)
  bool bad_input = false;       // every input row checked: the caller does not scan X
  bool bad_outputs = false;     // a probability that is infinite or NaN
  static void set(bool& flag) {
#if defined(_OPENMP)
#pragma omp atomic write
#endif
    flag = true;
  }
};

// Rows r0 .. r0+R of the call through the network by the calling thread (ith of a team
// sharing out blocks of rows), or, with `shared`, by the whole team: each thread computes
// its share of every layer's columns (sgemm's partition splits them for so few rows), a
// barrier between layers, and thread 0 the softmax. One image's 784 x 256 weights are
// then read by two cores, each from its own cache, not streamed from memory into one.
// Every element is the same fma chain either way (gemm.hpp), so results are identical.
void predict_block(const Network& net, const PixelRows& X, const std::int64_t* rows,
                   index_t r0, index_t R, bool shared, PredictScratch& scratch, bool log,
                   float* out, const Bf16Weights* bf16, bool check_outputs,
                   PredictStatus& status) {
  const int ith = thread_index(), nth = shared ? team_size() : 1;
  const int home = shared ? 0 : ith;  // whose activation buffers the block uses
  bf16_t* in16 = bf16 != nullptr ? scratch.in16[ith].data() : nullptr;
  // bfloat16 reads 8-bit pixels straight into layer 0's operand (no float32 rows): their
  // values are finite by construction, so there is no input to check.
  const bool tabulated = scratch.reads16;
  if (tabulated) scratch.input16(X, rows, r0, R, ith, bf16->P[0].kin);
  const float* in = tabulated ? nullptr : scratch.input(X, rows, r0, R, ith);
  const float* x = in;
  float* cur = scratch.act[2 * home].data();
  float* nxt = scratch.act[2 * home + 1].data();
  const bool checker = (!shared || ith == 0) && !tabulated;  // who checks the input rows
  for (index_t l = 0; l < net.n_layers(); ++l) {
    try {
      predict_layer(net, l, in, R, cur, bf16, in16, shared ? ith : 0, nth);
    } catch (const std::bad_alloc&) {  // an exception must not leave the region
      PredictStatus::set(status.failed);
    }
    // The rows are checked where they are in this core's cache. bfloat16: their packed
    // copy, which layer 0's product has just read, half the bytes (the float32 rows are
    // evicted by then: their check took 4% of the call); only a block with a value that
    // is not finite in bfloat16 is checked again in float32 (the value may be finite
    // there, past bfloat16's largest). float32: after the products, which bring the rows
    // into L2 as they run (a check first waited on memory, 2 ms of a 17 ms call).
    if (l == 0 && bf16 != nullptr && checker &&
        !bf16_all_finite(in16, R * bf16->P[0].kin) && !all_finite(x, R * X.features()))
      PredictStatus::set(status.bad_input);
    if (shared) {
      FASTMLP_BARRIER  // layer l's columns are all written before any is read
    }
    in = cur;
    std::swap(cur, nxt);
  }
  if (shared && ith != 0) return;
  const index_t C = net.n_outputs();
  softmax_rows(in, C, R, C, log, out + r0 * C, C);
  if (check_outputs && !all_finite(out + r0 * C, R * C)) PredictStatus::set(status.bad_outputs);
  if (bf16 == nullptr && !all_finite(x, R * X.features()))
    PredictStatus::set(status.bad_input);
}

void check_bf16_weights(const Network& net, const Bf16Weights& w) {
  bool same = w.shapes.size() == net.layers.size();
  for (size_t l = 0; same && l < net.layers.size(); ++l)
    same = w.shapes[l] == std::make_pair(net.layers[l].fan_in, net.layers[l].fan_out);
  if (!same) throw std::invalid_argument("the bfloat16 weights were made for another network");
}

// Runs one phase of a batch; a thread that runs out of memory in it (a GEMM's packing
// buffers grow on first use, inside the region) records that instead of throwing, since
// an exception must not leave an OpenMP region. All threads read the record after the
// next barrier and stop together. Records alternate by batch: a phase of batch b and the
// update of batch b - 1 write record b % 2, read after batch b's second barrier, so a
// fast thread's update cannot reach a slow thread still reading.
template <class Phase>
void guarded(std::atomic<bool>& out_of_memory, Phase&& phase) {
  try {
    phase();
  } catch (const std::bad_alloc&) {
    out_of_memory.store(true, std::memory_order_relaxed);
  }
}

}  // namespace

// Schedule of batch b, with two barriers (each thread ith of nth):
//   A  layer 0 forward for the thread's own columns of W0, from xs[b & 1] -> out[0][:, own]
//   -- barrier --
//   B  copy its share of batch b + 1's rows into xs[(b + 1) & 1] (their last readers,
//      batch b - 1's A and D, are behind every thread now)
//   C  the thread's own rows: layers 1.. forward, softmax-CE, and the input-gradient
//      products down to dz[0][own rows]                                    (row-local)
//   -- barrier --
//   D  weight updates: W0's own columns from xs[b & 1]; deeper layers split by the
//      GEMM's partition; biases by columns.
// W0, the largest matrix (and in bfloat16 its Wp), is read in A and written in D by the
// same thread only, in buffers of that thread's own (layer_columns), so it stays in that
// core's cache. The next batch's A writes only the thread's own W0 and
// out[0] columns (out[0] alternates between two buffers), so D needs no barrier after
// it. Fetching the randomly ordered rows from memory is the main cost outside the
// products: each thread fetches half of them.
ChunkResult train_batches(const Network& net, const BatchPlan& plan, const OptimConfig& opt,
                          const TrainOptions& options, long long t0, int n_threads,
                          RunningSums sums) {
  check_plan(net, plan, opt, options);
  ChunkResult res;
  res.t = t0;
  res.loss_sum = sums.loss, res.weight_sum = sums.weight;
  if (plan.n_order == 0) return res;
  const index_t Bmax = std::min(plan.batch_size, plan.n_order);
  const index_t n_batches = (plan.n_order + plan.batch_size - 1) / plan.batch_size;
  const int nt = resolve_threads(n_threads);
  const index_t n_panels0 = (net.layers[0].fan_out + kGemmPanel - 1) / kGemmPanel;
  SharedScratch shared(net, options, Bmax, n_panels0, opt.alpha > 0);
  std::unique_ptr<Bf16Scratch> bf16;
  if (options.precision == Precision::BFloat16) bf16 = std::make_unique<Bf16Scratch>(net, Bmax);
  std::vector<ThreadScratch> own;
  own.reserve(nt);
  for (int i = 0; i < nt; ++i) {
    index_t c0 = 0, c1 = 0;  // several threads: each trains its columns of W0 in own buffers
    if (nt > 1) own_columns0(net, i, nt, &c0, &c1);
    const index_t fan_in = net.layers[0].fan_in, cols = c1 - c0;
    own.emplace_back(net, Bmax, plan.sample_weight != nullptr,
                     !plan.X->plain() && options.augment.active(), fan_in * cols,
                     bf16 && cols > 0 ? bf16_columns_size(fan_in, cols) : 0);
  }
  bool stop = false;  // written by thread 0 only
  std::atomic<bool> out_of_memory[2] = {false, false};  // see guarded()
  TeamBarrier barrier;  // the two of every batch (barrier.hpp: why not OpenMP's)

  FASTMLP_PARALLEL(nt)
  {
    BatchWorker w(net, plan, options, t0, shared, bf16.get(), own[thread_index()],
                  thread_index(), team_size());
    if (thread_index() == 0) barrier.set_team(team_size());
    TeamBarrier::Waiter me;
    long long t = t0;
    guarded(out_of_memory[0], [&] { w.gather_share(0); });
    FASTMLP_BARRIER
    for (index_t bi = 0; bi < n_batches; ++bi) {
      std::atomic<bool>& oom = out_of_memory[bi & 1];
      const Batch b = w.begin(bi);
      guarded(oom, [&] { w.forward_own_columns(b); });  // A
      barrier.wait(me);
      guarded(oom, [&] {
        if (bi + 1 < n_batches) w.gather_share(bi + 1);  // B
        w.own_rows_through_network(b);                   // C
      });
      barrier.wait(me);
      if (oom.load(std::memory_order_relaxed)) break;  // every thread: the chunk is void
      std::int64_t n_correct = 0;
      const double loss = w.batch_loss(b, opt.alpha, &n_correct);
      if (!std::isfinite(loss)) {
        if (thread_index() == 0) stop = true;
        break;  // every thread breaks here: nothing of this batch is applied
      }
      guarded(out_of_memory[(bi + 1) & 1],
              [&] { w.update(b, StepRule::make(opt, t + 1, b.weight)); });  // D
      if (thread_index() == 0) {
        res.loss_sum += loss, res.weight_sum += b.weight, res.n_correct += n_correct;
        res.n_samples += b.B, res.n_batches += 1;
      }
      ++t;
    }
    if (thread_index() == 0) res.t = t;
    w.finish();
  }
  // Out of memory: the parameters are partly updated; the caller discards them.
  if (out_of_memory[0] || out_of_memory[1]) throw std::bad_alloc();
  res.finite = !stop;
  return res;
}

Bf16Weights::Bf16Weights(const Network& net) : P(net.layers.size()), Wp(net.layers.size()) {
  check_network(net);
  for (size_t l = 0; l < net.layers.size(); ++l) {
    const LayerView& L = net.layers[l];
    LayerBf16& p = P[l] = bf16_layout(L);
    Wp[l].resize(p.kin * p.nout), p.Wp = Wp[l].data();
    pack_layer_bf16(L, p, 0, L.fan_in, 0, L.fan_out);
    shapes.emplace_back(L.fan_in, L.fan_out);
  }
}

void predict_proba(const Network& net, const PixelRows& X, const std::int64_t* rows, index_t n,
                   float* out, bool log, int n_threads, const Bf16Weights* bf16,
                   bool check_outputs) {
  check_network(net);
  if (bf16 != nullptr) check_bf16_weights(net, *bf16);
  if (X.features() != net.n_inputs())
    throw std::invalid_argument("X has " + std::to_string(X.features()) + " features, the " +
                                "network expects " + std::to_string(net.n_inputs()));
  if (rows == nullptr && n != X.rows()) throw std::invalid_argument("n must be X's row count");
  for (index_t i = 0; rows && i < n; ++i)
    if (rows[i] < 0 || rows[i] >= X.rows())
      throw std::invalid_argument("rows[" + std::to_string(i) + "] = " + std::to_string(rows[i]) +
                                  " is not a row of X");
  constexpr index_t kChunk = 256;  // rows per block of work
  constexpr double kSharedBlockFlops = 4.0e5;
  const index_t n_chunks = (n + kChunk - 1) / kChunk;
  if (n_chunks == 0) return;
  const int available = resolve_threads(n_threads);
  // One block and several threads: the team shares the block's products when they are
  // large enough to repay the barriers. On two AMD EPYC Zen 5 cores (AVX-512), medians:
  // one image of a 784-256-10 network (0.4 MFLOP) 11.7 us on one core, 8.6 us on two;
  // 784-128-10 (0.2 MFLOP) 5.1 and 6.2 us; four images of 784-64-10 (0.4 MFLOP) 5.3 us
  // either way; 0.8 MFLOP and more gain 15-40%. bfloat16 products run twice as fast on
  // half the bytes: from twice the work (784-256-10: one image 9.9 us on one core, 9.3
  // on two; two images 9.4 and 8.3 us).
  const double flops = 2.0 * static_cast<double>(n) * weights_per_row(net);
  const bool shared = n_chunks == 1 && available > 1 &&
                      flops >= (bf16 != nullptr ? 2.0 : 1.0) * kSharedBlockFlops;
  const int nt = shared ? available : static_cast<int>(std::min<index_t>(available, n_chunks));
  PredictScratch scratch(net, X, rows, std::min(kChunk, n), nt, bf16);
  PredictStatus status;

  FASTMLP_PARALLEL(nt)
  {
    if (shared) {
      predict_block(net, X, rows, 0, n, true, scratch, log, out, bf16, check_outputs, status);
    } else {
      index_t c0, c1;
      split_range(n_chunks, thread_index(), team_size(), &c0, &c1);
      for (index_t c = c0; c < c1; ++c) {
        const index_t r0 = c * kChunk;
        predict_block(net, X, rows, r0, std::min(kChunk, n - r0), false, scratch, log, out,
                      bf16, check_outputs, status);
      }
    }
  }
  if (status.failed) throw std::bad_alloc();
  if (status.bad_input) throw std::invalid_argument("Input X contains NaN or infinity.");
  if (status.bad_outputs)
    throw std::invalid_argument(
        "the model's outputs overflow float32 (an infinite or NaN probability): its weights "
        "are not finite, or too large for these inputs");
}

}  // namespace fastmlp
