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

#if defined(_OPENMP)
#define FASTMLP_BARRIER _Pragma("omp barrier")
#else
#define FASTMLP_BARRIER
#endif

// Custom GEMM epilogue of the input-gradient product dZ_{l} · W_lᵀ: the block of the
// previous layer's delta is grad * f'(z), with f' taken from the stored activations.
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

// Custom GEMM epilogue of the weight-gradient product act_lᵀ · dZ_l: the finished gradient
// block updates the matching block of W and its optimizer state, so the gradient is
// never written to memory.
struct UpdateEpilogue {
  const LayerView* layer;
  Solver solver;
  float lr, momentum, weight_decay;
  bool nesterov;
  AdamStep adam;
  static void run(void* ctx, index_t i0, index_t j0, index_t mr, index_t nr, const float* tile,
                  index_t ldt) {
    const auto* e = static_cast<const UpdateEpilogue*>(ctx);
    const LayerView& L = *e->layer;
    for (index_t r = 0; r < mr; ++r) {
      const index_t off = (i0 + r) * L.fan_out + j0;
      const float* g = tile + r * ldt;
      if (e->solver == Solver::Adam)
        adam_step(L.W + off, g, L.W_s1 + off, L.W_s2 + off, nr, e->adam, e->weight_decay);
      else
        sgd_step(L.W + off, g, nr, e->lr, L.W_s1 ? L.W_s1 + off : nullptr, e->momentum,
                 e->nesterov, e->weight_decay);
    }
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
  const index_t Bmax = std::min(plan.batch_size, plan.n_order);
  const index_t n_batches = (plan.n_order + plan.batch_size - 1) / plan.batch_size;

  // Scratch, once per chunk. act[l] is layer l's input (B, fan_in); act[L] holds the
  // logits, overwritten in place by dlogits. delta[l] (B, fan_in_l) for l >= 1.
  std::vector<std::vector<float>> act(L + 1), delta(L);
  act[0].resize(Bmax * D);
  for (index_t l = 0; l < L; ++l) act[l + 1].resize(Bmax * net.layers[l].fan_out);
  for (index_t l = 1; l < L; ++l) delta[l].resize(Bmax * net.layers[l].fan_in);
  std::vector<std::int32_t> yb(Bmax);
  std::vector<float> wb(plan.sample_weight ? Bmax : 0);
  std::vector<double> row_loss(Bmax);
  std::vector<std::uint8_t> correct(Bmax);
  // Squared norms of W's rows, for the L2 term of the reported loss.
  index_t n_wrows = 0;
  for (const auto& Ly : net.layers) n_wrows += Ly.fan_in;
  std::vector<double> wsq(opt.alpha > 0 ? n_wrows : 0);
  index_t max_out = 0;
  for (const auto& Ly : net.layers) max_out = std::max(max_out, Ly.fan_out);

  const int nt = n_threads > 0 ? n_threads : default_num_threads();
  // Shared results, written by thread 0 only.
  bool stop = false;

#if defined(_OPENMP)
#pragma omp parallel num_threads(nt)
#endif
  {
#if defined(_OPENMP)
    const int ith = omp_get_thread_num(), nth = omp_get_num_threads();
#else
    const int ith = 0, nth = 1;
#endif
    std::vector<double> bias_acc(max_out);  // per thread: column sums of dZ
    std::vector<float> bias_grad(max_out);
    long long t = t0;                       // optimizer steps; the same in every thread

    for (index_t bi = 0; bi < n_batches; ++bi) {
      const index_t start = bi * plan.batch_size;
      const index_t B = std::min(plan.batch_size, plan.n_order - start);
      const std::int64_t* rows = plan.order + start;

      // 1. Gather the batch: this copy is A's packing for the first layer's products.
      {
        index_t r0, r1;
        split_range(B, ith, nth, &r0, &r1);
        for (index_t r = r0; r < r1; ++r) {
          const float* src = plan.X + rows[r] * D;
          std::copy(src, src + D, act[0].data() + r * D);
          yb[r] = plan.y[rows[r]];
          if (plan.sample_weight) wb[r] = plan.sample_weight[rows[r]];
        }
      }
      FASTMLP_BARRIER

      // 2. Forward: act[l+1] = f(act[l] · W_l + b_l); logits without activation.
      for (index_t l = 0; l < L; ++l) {
        const LayerView& Ly = net.layers[l];
        GemmArgs g;
        g.m = B, g.n = Ly.fan_out, g.k = Ly.fan_in;
        g.a = act[l].data(), g.lda = Ly.fan_in;
        g.b = Ly.W, g.ldb = Ly.fan_out;
        g.c = act[l + 1].data(), g.ldc = Ly.fan_out;
        g.bias = Ly.b;
        g.act = l + 1 < L ? net.hidden : Activation::Identity;
        sgemm(g, ith, nth);
        FASTMLP_BARRIER
      }

      // 3. Loss and dlogits in place, scaled by 1 / (batch weight); |W|^2 rows if needed.
      double wsum = static_cast<double>(B);
      if (plan.sample_weight) {
        wsum = 0;  // every thread sums the same values in the same order
        for (index_t r = 0; r < B; ++r) wsum += wb[r];
      }
      const float scale = wsum > 0 ? static_cast<float>(1.0 / wsum) : 0.0f;
      {
        index_t r0, r1;
        split_range(B, ith, nth, &r0, &r1);
        float* z = act[L].data();
        softmax_cross_entropy(z + r0 * C, C, yb.data() + r0,
                              plan.sample_weight ? wb.data() + r0 : nullptr, r1 - r0, C, scale,
                              z + r0 * C, C, row_loss.data() + r0, correct.data() + r0);
        if (opt.alpha > 0) {
          split_range(n_wrows, ith, nth, &r0, &r1);
          index_t base = 0;
          for (const auto& Ly : net.layers) {
            for (index_t i = std::max(r0, base); i < std::min(r1, base + Ly.fan_in); ++i) {
              const float* w = Ly.W + (i - base) * Ly.fan_out;
              double s = 0;
              for (index_t j = 0; j < Ly.fan_out; ++j) s += double(w[j]) * w[j];
              wsq[i] = s;
            }
            base += Ly.fan_in;
          }
        }
      }
      FASTMLP_BARRIER

      // Every thread reduces the batch statistics itself, in the same order, so they all
      // agree on whether to go on without another barrier.
      double bloss = 0;
      std::int64_t bcorrect = 0;
      for (index_t r = 0; r < B; ++r) bloss += row_loss[r], bcorrect += correct[r];
      if (opt.alpha > 0) {
        double sq = 0;
        for (index_t i = 0; i < n_wrows; ++i) sq += wsq[i];
        bloss += 0.5 * opt.alpha * sq;
      }
      if (!std::isfinite(bloss)) {
        if (ith == 0) stop = true;
        break;  // all threads take this branch: nothing of this batch is applied
      }
      const float weight_decay = wsum > 0 ? static_cast<float>(opt.alpha / wsum) : 0.0f;
      const long long tb = t + 1;

      // 4. Backward, last layer first.
      for (index_t l = L - 1; l >= 0; --l) {
        const LayerView& Ly = net.layers[l];
        const float* dz = l == L - 1 ? act[L].data() : delta[l + 1].data();  // (B, fan_out)
        if (l > 0) {
          // delta_l = (dZ · Wᵀ) * f'(act_l), before W changes.
          DeltaEpilogue de{delta[l].data(), act[l].data(), Ly.fan_in, net.hidden};
          GemmArgs g;
          g.m = B, g.n = Ly.fan_in, g.k = Ly.fan_out;
          g.a = dz, g.lda = Ly.fan_out;
          g.b = Ly.W, g.ldb = Ly.fan_out, g.trans_b = true;
          g.epilogue.fn = &DeltaEpilogue::run, g.epilogue.ctx = &de;
          sgemm(g, ith, nth);
          FASTMLP_BARRIER
        }
        // W_l updated block by block from act_lᵀ · dZ.
        UpdateEpilogue ue{&Ly, opt.solver, static_cast<float>(opt.learning_rate),
                          static_cast<float>(opt.momentum), weight_decay, opt.nesterov,
                          AdamStep::make(opt.learning_rate, opt.beta_1, opt.beta_2,
                                         opt.epsilon, tb)};
        GemmArgs g;
        g.m = Ly.fan_in, g.n = Ly.fan_out, g.k = B;
        g.a = act[l].data(), g.lda = Ly.fan_in, g.trans_a = true;
        g.b = dz, g.ldb = Ly.fan_out;
        g.epilogue.fn = &UpdateEpilogue::run, g.epilogue.ctx = &ue;
        sgemm(g, ith, nth);
        // b_l from the column sums of dZ, columns split among threads.
        index_t j0, j1;
        split_range(Ly.fan_out, ith, nth, &j0, &j1);
        if (j1 > j0) {
          float* gb = bias_grad.data();
          for (index_t j = j0; j < j1; ++j) bias_acc[j] = 0;
          for (index_t r = 0; r < B; ++r)
            for (index_t j = j0; j < j1; ++j) bias_acc[j] += dz[r * Ly.fan_out + j];
          for (index_t j = j0; j < j1; ++j) gb[j - j0] = static_cast<float>(bias_acc[j]);
          if (opt.solver == Solver::Adam)
            adam_step(Ly.b + j0, gb, Ly.b_s1 + j0, Ly.b_s2 + j0, j1 - j0, ue.adam, 0.0f);
          else
            sgd_step(Ly.b + j0, gb, j1 - j0, ue.lr, Ly.b_s1 ? Ly.b_s1 + j0 : nullptr,
                     ue.momentum, opt.nesterov, 0.0f);
        }
      }
      if (ith == 0) {
        res.loss_sum += bloss;
        res.weight_sum += wsum;
        res.n_correct += bcorrect;
        res.n_samples += B;
        res.n_batches += 1;
      }
      t = tb;
      FASTMLP_BARRIER  // the next batch's gather overwrites act[0], still read above
    }
    if (ith == 0) res.t = t;
  }
  res.finite = !stop;
  return res;
}

void predict_proba(const Network& net, const float* X, index_t n, float* out, bool log,
                   int n_threads) {
  const index_t L = static_cast<index_t>(net.layers.size());
  const index_t D = net.n_inputs(), C = net.n_outputs();
  constexpr index_t kChunk = 256;  // rows per block of work: scratch is kChunk * width
  const index_t n_chunks = (n + kChunk - 1) / kChunk;
  index_t width = 0;
  for (const auto& Ly : net.layers) width = std::max(width, Ly.fan_out);
  const int nt = std::max<index_t>(1, std::min<index_t>(
      n_threads > 0 ? n_threads : default_num_threads(), n_chunks));
  (void)D;

#if defined(_OPENMP)
#pragma omp parallel num_threads(nt)
#endif
  {
#if defined(_OPENMP)
    const int ith = omp_get_thread_num(), nth = omp_get_num_threads();
#else
    const int ith = 0, nth = 1;
#endif
    std::vector<float> buf0(kChunk * width), buf1(kChunk * width);
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
