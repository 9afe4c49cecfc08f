// The training loop: forward, fused softmax cross-entropy, backward with the optimizer
// step fused into the weight-gradient GEMM, for a chunk of batches in one parallel region.
//
// Legend: B batch rows (this batch), D input features, L layers, C classes.
#include "train.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/activation.hpp"
#include "kernels/gemm.hpp"
#include "kernels/loss.hpp"
#include "kernels/optim.hpp"

namespace fastmlp {

namespace {

// Custom GEMM epilogue of the input-gradient product dZ_{l} · W_lᵀ for the smooth
// activations: the block of the previous layer's delta is grad * f'(z), with f' taken
// from the stored activations. (ReLU's gate is the GEMM's built-in relu_gate.)
struct DeltaEpilogue {
  float* delta;      // (B, fan_in) out
  const float* act;  // (B, fan_in) activations of layer l's input
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

// Custom GEMM epilogue of the weight-gradient product act_lᵀ · dZ_l for the optimizers
// with state (momentum, Adam): the finished gradient block updates the matching block of
// W and its state, so the gradient never reaches memory. (Plain SGD goes further: the
// GEMM's descent epilogue steps W while the gradient is still in registers.)
struct UpdateEpilogue {
  const LayerView* layer;
  index_t col0;  // the product's column 0 is W's column col0
  Solver solver;
  float lr, momentum, weight_decay;
  bool nesterov;
  AdamStep adam;
  static void run(void* ctx, index_t i0, index_t j0, index_t mr, index_t nr, const float* tile,
                  index_t ldt) {
    const auto* e = static_cast<const UpdateEpilogue*>(ctx);
    const LayerView& L = *e->layer;
    for (index_t r = 0; r < mr; ++r) {
      const index_t off = (i0 + r) * L.fan_out + e->col0 + j0;
      e->step(L.W + off, tile + r * ldt, L.W_s1 ? L.W_s1 + off : nullptr,
              L.W_s2 ? L.W_s2 + off : nullptr, nr, e->weight_decay);
    }
  }
  // One optimizer step on n parameters with their state (s1, s2 may be null).
  void step(float* param, const float* grad, float* s1, float* s2, index_t n,
            float wd) const {
    if (solver == Solver::Adam)
      adam_step(param, grad, s1, s2, n, adam, wd);
    else
      sgd_step(param, grad, n, lr, s1, momentum, nesterov, wd);
  }
};

void check_plan(const Network& net, const BatchPlan& p, const OptimConfig& opt) {
  if (net.layers.empty()) throw std::invalid_argument("the network has no layers");
  for (size_t l = 0; l < net.layers.size(); ++l) {
    const LayerView& L = net.layers[l];
    if (L.fan_in <= 0 || L.fan_out <= 0 || L.W == nullptr || L.b == nullptr)
      throw std::invalid_argument("layer " + std::to_string(l) + " is empty");
    if (l > 0 && L.fan_in != net.layers[l - 1].fan_out)
      throw std::invalid_argument("layer " + std::to_string(l) + " does not chain");
    const bool need1 = opt.solver == Solver::Adam || opt.momentum != 0.0;
    const bool need2 = opt.solver == Solver::Adam;
    if ((need1 && (L.W_s1 == nullptr || L.b_s1 == nullptr)) ||
        (need2 && (L.W_s2 == nullptr || L.b_s2 == nullptr)))
      throw std::invalid_argument("layer " + std::to_string(l) + " lacks optimizer state");
  }
  if (p.n_features != net.n_inputs())
    throw std::invalid_argument("X has " + std::to_string(p.n_features) +
                                " features, the network expects " +
                                std::to_string(net.n_inputs()));
  if (p.batch_size <= 0) throw std::invalid_argument("batch_size must be positive");
  const index_t C = net.n_outputs();
  for (index_t i = 0; i < p.n_order; ++i) {
    const std::int64_t r = p.order[i];
    if (r < 0 || r >= p.n_samples)
      throw std::invalid_argument("order[" + std::to_string(i) + "] = " + std::to_string(r) +
                                  " is out of range");
    if (p.y[r] < 0 || p.y[r] >= C)
      throw std::invalid_argument("label " + std::to_string(p.y[r]) + " of sample " +
                                  std::to_string(r) + " is outside [0, " + std::to_string(C) +
                                  ")");
    if (p.sample_weight != nullptr && !(p.sample_weight[r] >= 0.0f && std::isfinite(p.sample_weight[r])))
      throw std::invalid_argument("sample weights must be finite and non-negative");
  }
}

}  // namespace

ChunkResult train_batches(const Network& net, const BatchPlan& plan, const OptimConfig& opt,
                          long long t0, int n_threads) {
  check_plan(net, plan, opt);
  ChunkResult res;
  res.t = t0;
  if (plan.n_order == 0) return res;

  const index_t L = static_cast<index_t>(net.layers.size());
  const index_t D = plan.n_features, C = net.n_outputs();
  const index_t H0 = net.layers[0].fan_out;  // width of the first layer's output
  const index_t Bmax = std::min(plan.batch_size, plan.n_order);
  const index_t n_batches = (plan.n_order + plan.batch_size - 1) / plan.batch_size;
  const int nt = n_threads > 0 ? n_threads : default_num_threads();

  // Shared scratch, once per chunk. out[l] (B, fan_out_l) is layer l's output; the last
  // one holds the logits, overwritten in place by dlogits. dz[l] (B, fan_out_l), l < L-1,
  // is the gradient at layer l's pre-activation. out[0] has two copies used by alternate
  // batches: a thread may start the next batch's first layer while another still reads
  // this batch's out[0] in its weight-gradient product.
  std::vector<aligned_vector<float>> out(L), dz(L);
  aligned_vector<float> out0_odd(Bmax * H0);
  // The batch's rows of X, gathered into one place: xs[b & 1] holds batch b. Each
  // thread copies its share of the rows of batch b + 1 while batch b is in flight.
  aligned_vector<float> xs[2] = {aligned_vector<float>(Bmax * D), aligned_vector<float>(Bmax * D)};
  for (index_t l = 0; l < L; ++l) out[l].resize(Bmax * net.layers[l].fan_out);
  for (index_t l = 0; l + 1 < L; ++l) dz[l].resize(Bmax * net.layers[l].fan_out);
  aligned_vector<double> row_loss(Bmax);
  aligned_vector<std::uint8_t> correct(Bmax);
  // W0's columns go to the threads in whole 32-wide panels, so no register tile is split.
  constexpr index_t kPanel = 32;
  const index_t n_panels0 = (H0 + kPanel - 1) / kPanel;
  // |W|^2 for the L2 term of the reported loss: one sum per panel of W0 and one for the
  // deeper layers, each on its own cache line (written by different threads).
  constexpr index_t kPad = kCacheLine / sizeof(double);
  aligned_vector<double> wsq(opt.alpha > 0 ? (n_panels0 + 1) * kPad : 0);
  index_t max_out = 0;
  for (const auto& Ly : net.layers) max_out = std::max(max_out, Ly.fan_out);
  bool stop = false;  // written by thread 0 only

  // Schedule of batch b, with two barriers (each thread ith of nth):
  //   A  layer 0 forward for the thread's own columns of W0, from xs[b & 1]
  //                                                                    -> out[0][:, own]
  //   -- barrier --
  //   B  copy its share of batch b + 1's rows into xs[(b + 1) & 1] (their last readers,
  //      batch b - 1's A and D, are behind every thread now)
  //   C  the thread's own rows: layers 1.. forward, softmax-CE, and the input-gradient
  //      products down to dz[0][own rows]                              (row-local)
  //   -- barrier --
  //   D  weight updates: W0's own columns from xs[b & 1]; deeper layers split by the
  //      GEMM's partition; biases by columns.
  // W0, the largest matrix, is read in A and written in D by the same thread only, so it
  // stays in that core's cache. The next batch's A writes only the thread's own W0 and
  // out[0] columns (out[0] alternates between two buffers), so D needs no barrier after
  // it. Fetching the randomly ordered rows from memory is the main cost outside the
  // products: each thread fetches half of them.
  FASTMLP_PARALLEL(nt)
  {
    const int ith = thread_index(), nth = team_size();
    aligned_vector<std::int32_t> yb(Bmax);
    aligned_vector<float> wb(plan.sample_weight ? Bmax : 0);
    aligned_vector<double> bias_acc(max_out);
    aligned_vector<float> bias_grad(max_out);
    long long t = t0;

    // This thread's columns of W0: whole panels.
    index_t c0, c1;
    split_range(n_panels0, ith, nth, &c0, &c1);
    c0 = std::min(H0, c0 * kPanel), c1 = std::min(H0, c1 * kPanel);

    // This thread's share of batch b's rows of X, copied into xs[b & 1]. (A software
    // prefetch of these rows a phase ahead measured no faster than the plain copy.)
    auto batch_rows = [&](index_t b, index_t* r0, index_t* r1) {
      const index_t nB = std::min(plan.batch_size, plan.n_order - b * plan.batch_size);
      split_range(nB, ith, nth, r0, r1);
      return plan.order + b * plan.batch_size;
    };
    auto gather_share = [&](index_t b) {
      index_t r0, r1;
      const std::int64_t* rows = batch_rows(b, &r0, &r1);
      float* dst = xs[b & 1].data();
      for (index_t r = r0; r < r1; ++r) {
        const float* src = plan.X + rows[r] * D;
        std::copy(src, src + D, dst + r * D);
      }
    };
    gather_share(0);
    FASTMLP_BARRIER

    for (index_t bi = 0; bi < n_batches; ++bi) {
      const index_t start = bi * plan.batch_size;
      const index_t B = std::min(plan.batch_size, plan.n_order - start);
      const std::int64_t* rows = plan.order + start;
      float* out0 = (bi & 1) ? out0_odd.data() : out[0].data();
      auto output = [&](index_t l) { return l == 0 ? out0 : out[l].data(); };
      auto grad = [&](index_t l) { return l == L - 1 ? output(l) : dz[l].data(); };

      const float* xb = xs[bi & 1].data();  // (B, D), complete since the last barrier
      for (index_t r = 0; r < B; ++r) {
        yb[r] = plan.y[rows[r]];
        if (plan.sample_weight) wb[r] = plan.sample_weight[rows[r]];
      }
      double wsum = static_cast<double>(B);
      if (plan.sample_weight) {
        wsum = 0;
        for (index_t r = 0; r < B; ++r) wsum += wb[r];
      }
      const float scale = wsum > 0 ? static_cast<float>(1.0 / wsum) : 0.0f;

      const bool more = bi + 1 < n_batches;

      // A. Layer 0 forward, own columns: out0[:, c0:c1] = f(xb · W0[:, c0:c1] + b0[c0:c1]).
      const LayerView& L0 = net.layers[0];
      if (c1 > c0) {
        GemmArgs g;
        g.m = B, g.n = c1 - c0, g.k = D;
        g.a = xb, g.lda = D;
        g.b = L0.W + c0, g.ldb = H0;
        g.c = out0 + c0, g.ldc = H0;
        g.bias = L0.b + c0;
        g.act = L > 1 ? net.hidden : Activation::Identity;
        sgemm(g, 0, 1);
      }
      FASTMLP_BARRIER
      // B. Everyone is past batch bi - 1, the last reader of xs[(bi + 1) & 1].
      if (more) gather_share(bi + 1);

      // C. Own rows r0:r1 through the rest of the network and back.
      {
        index_t r0, r1;
        split_range(B, ith, nth, &r0, &r1);
        const index_t R = r1 - r0;
        for (index_t l = 1; l < L && R > 0; ++l) {
          const LayerView& Ly = net.layers[l];
          GemmArgs g;
          g.m = R, g.n = Ly.fan_out, g.k = Ly.fan_in;
          g.a = output(l - 1) + r0 * Ly.fan_in, g.lda = Ly.fan_in;
          g.b = Ly.W, g.ldb = Ly.fan_out;
          g.c = output(l) + r0 * Ly.fan_out, g.ldc = Ly.fan_out;
          g.bias = Ly.b;
          g.act = l + 1 < L ? net.hidden : Activation::Identity;
          sgemm(g, 0, 1);
        }
        if (R > 0) {
          float* z = output(L - 1) + r0 * C;
          softmax_cross_entropy(z, C, yb.data() + r0, plan.sample_weight ? wb.data() + r0 : nullptr,
                                R, C, scale, z, C, row_loss.data() + r0, correct.data() + r0);
        }
        // dz[l-1] = (dz_l · W_lᵀ) * f'(out[l-1]), before any W changes. ReLU's gate is
        // applied by the micro-kernel as it stores; the other activations take finished
        // blocks through DeltaEpilogue.
        for (index_t l = L - 1; l >= 1 && R > 0; --l) {
          const LayerView& Ly = net.layers[l];
          float* delta = dz[l - 1].data() + r0 * Ly.fan_in;
          const float* act = output(l - 1) + r0 * Ly.fan_in;
          DeltaEpilogue de{delta, act, Ly.fan_in, net.hidden};
          GemmArgs g;
          g.m = R, g.n = Ly.fan_in, g.k = Ly.fan_out;
          g.a = grad(l) + r0 * Ly.fan_out, g.lda = Ly.fan_out;
          g.b = Ly.W, g.ldb = Ly.fan_out, g.trans_b = true;
          if (net.hidden == Activation::ReLU) {
            g.c = delta, g.ldc = Ly.fan_in;
            g.relu_gate = act, g.ld_relu_gate = Ly.fan_in;
          } else {
            g.epilogue.fn = &DeltaEpilogue::run, g.epilogue.ctx = &de;
          }
          sgemm(g, 0, 1);
        }
        if (opt.alpha > 0) {
          // |W|^2 before this batch's update, in an order that does not depend on the
          // thread count: W0 panel by panel, each by the thread that owns it (and has it
          // in cache); the deeper layers, which every thread has just read, by thread 0.
          for (index_t c = c0; c < c1; c += kPanel)
            wsq[c / kPanel * kPad] = sum_squares(L0.W + c, D, std::min(kPanel, H0 - c), H0);
          if (ith == 0) {
            double deep = 0;
            for (index_t l = 1; l < L; ++l) {
              const LayerView& Ly = net.layers[l];
              deep += sum_squares(Ly.W, Ly.fan_in, Ly.fan_out, Ly.fan_out);
            }
            wsq[n_panels0 * kPad] = deep;
          }
        }
      }
      FASTMLP_BARRIER

      // Every thread reduces the batch statistics itself, in the same order, so all agree
      // on whether to go on without another barrier.
      double bloss = 0;
      std::int64_t bcorrect = 0;
      for (index_t r = 0; r < B; ++r) bloss += row_loss[r], bcorrect += correct[r];
      if (opt.alpha > 0) {
        double sq = 0;
        for (index_t p = 0; p <= n_panels0; ++p) sq += wsq[p * kPad];
        bloss += 0.5 * opt.alpha * sq;
      }
      if (!std::isfinite(bloss)) {
        if (ith == 0) stop = true;
        break;  // every thread breaks here: nothing of this batch is applied
      }
      const float weight_decay = wsum > 0 ? static_cast<float>(opt.alpha / wsum) : 0.0f;
      const long long tb = t + 1;
      UpdateEpilogue ue{nullptr, 0, opt.solver, static_cast<float>(opt.learning_rate),
                        static_cast<float>(opt.momentum), weight_decay, opt.nesterov,
                        AdamStep::make(opt.learning_rate, opt.beta_1, opt.beta_2, opt.epsilon, tb)};


      // D. Weight updates, W_l += step(out[l-1]ᵀ · dz_l), fused into the products.
      auto update_bias = [&](const LayerView& Ly, const float* dzl, index_t j0, index_t j1) {
        if (j1 <= j0) return;
        column_sums(dzl + j0, B, j1 - j0, Ly.fan_out, bias_acc.data());
        for (index_t j = 0; j < j1 - j0; ++j) bias_grad[j] = static_cast<float>(bias_acc[j]);
        ue.step(Ly.b + j0, bias_grad.data(), Ly.b_s1 ? Ly.b_s1 + j0 : nullptr,
                Ly.b_s2 ? Ly.b_s2 + j0 : nullptr, j1 - j0, 0.0f);  // biases: no L2
      };
      // Plain SGD steps W inside the product while the gradient is in registers; the
      // other optimizers take finished blocks through UpdateEpilogue.
      auto set_update = [&](GemmArgs& g, const LayerView& Ly, index_t col0) {
        if (opt.solver == Solver::SGD && Ly.W_s1 == nullptr) {
          g.c = Ly.W + col0, g.ldc = Ly.fan_out;
          g.descent = true, g.descent_lr = ue.lr, g.descent_wd = weight_decay;
        } else {
          ue.layer = &Ly, ue.col0 = col0;
          g.epilogue.fn = &UpdateEpilogue::run, g.epilogue.ctx = &ue;
        }
      };
      for (index_t l = L - 1; l >= 1; --l) {
        const LayerView& Ly = net.layers[l];
        GemmArgs g;
        g.m = Ly.fan_in, g.n = Ly.fan_out, g.k = B;
        g.a = output(l - 1), g.lda = Ly.fan_in, g.trans_a = true;
        g.b = grad(l), g.ldb = Ly.fan_out;
        set_update(g, Ly, 0);
        sgemm(g, ith, nth);
        index_t j0, j1;
        split_range(Ly.fan_out, ith, nth, &j0, &j1);
        update_bias(Ly, grad(l), j0, j1);
      }
      if (c1 > c0) {  // W0[:, c0:c1] from the batch's rows and own columns of dz_0
        GemmArgs g;
        g.m = D, g.n = c1 - c0, g.k = B;
        g.a = xb, g.lda = D, g.trans_a = true;
        g.b = grad(0) + c0, g.ldb = H0;
        set_update(g, L0, c0);
        sgemm(g, 0, 1);
        update_bias(L0, grad(0), c0, c1);
      }
      if (ith == 0) {
        res.loss_sum += bloss;
        res.weight_sum += wsum;
        res.n_correct += bcorrect;
        res.n_samples += B;
        res.n_batches += 1;
      }
      t = tb;
    }
    if (ith == 0) res.t = t;
  }
  res.finite = !stop;
  return res;
}

void predict_proba(const Network& net, const float* X, index_t n, float* out, bool log,
                   int n_threads) {
  const index_t L = static_cast<index_t>(net.layers.size());
  const index_t C = net.n_outputs();
  constexpr index_t kChunk = 256;  // rows per block of work: scratch is kChunk * width
  const index_t n_chunks = (n + kChunk - 1) / kChunk;
  index_t width = 0;
  for (const auto& Ly : net.layers) width = std::max(width, Ly.fan_out);
  const int nt = std::max<index_t>(1, std::min<index_t>(
      n_threads > 0 ? n_threads : default_num_threads(), n_chunks));

  FASTMLP_PARALLEL(nt)
  {
    const int ith = thread_index(), nth = team_size();
    aligned_vector<float> buf0(kChunk * width), buf1(kChunk * width);
    index_t c0, c1;
    split_range(n_chunks, ith, nth, &c0, &c1);
    for (index_t c = c0; c < c1; ++c) {
      const index_t r0 = c * kChunk, R = std::min(kChunk, n - r0);
      const float* in = X + r0 * net.n_inputs();
      float* cur = buf0.data();
      float* nxt = buf1.data();
      for (index_t l = 0; l < L; ++l) {
        const LayerView& Ly = net.layers[l];
        GemmArgs g;
        g.m = R, g.n = Ly.fan_out, g.k = Ly.fan_in;
        g.a = in, g.lda = Ly.fan_in;
        g.b = Ly.W, g.ldb = Ly.fan_out;
        g.c = cur, g.ldc = Ly.fan_out;
        g.bias = Ly.b;
        g.act = l + 1 < L ? net.hidden : Activation::Identity;
        sgemm(g, 0, 1);
        in = cur;
        std::swap(cur, nxt);
      }
      softmax_rows(in, C, R, C, log, out + r0 * C, C);
    }
  }
}

}  // namespace fastmlp
