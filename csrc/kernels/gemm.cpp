// GEMM driver: the thread partition, the cache-block loops, packing and the run-time ISA
// dispatch around the micro-kernels (gemm_ukernel.inc, one instantiation per ISA).
//
// Legend: M, N, K as in gemm.hpp; MR x NR the register tile, KC / MC / NC the cache blocks
// of the selected kernel set (gemm_kernel.hpp). A thread owns the rectangle
// [i0, i1) x [j0, j1) of C and walks it as
//   for jc in NC-column blocks:            B block (KC, NC), packed unless usable in place
//     for pc in K blocks of <= KC:         the chain continues from the stored partial sum
//       for ic in MC-row blocks:           A block (MC, KC), packed unless usable in place
//         for jr in NR panels:             one B panel is reused by all the tiles below
//           for ir in MR tiles: micro-kernel
//         last K block: epilogue of the finished (MC, NC) block.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

#include "isa.hpp"
#include "kernels/gemm.hpp"
#include "kernels/activation.hpp"
#include "kernels/gemm_kernel.hpp"
#include "kernels/optim.hpp"

namespace fastmlp {

namespace {

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
index_t round_up(index_t a, index_t b) { return ceil_div(a, b) * b; }

const GemmKernelSet& kernels_for(Isa isa) {
#if defined(FASTMLP_X86_64)
  if (isa == Isa::AVX512) return gemm_kernels_avx512();
  if (isa == Isa::AVX2) return gemm_kernels_avx2();
#endif
  (void)isa;
  return gemm_kernels_generic();
}

std::atomic<long> g_fail_countdown{0};  // gemm_fail_workspace_request

// A per-thread scratch buffer: 64-byte aligned (one cache line, one zmm), grown to the
// largest request seen and then reused, so steady-state calls do not allocate.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(p_); }
  float* get(index_t n) {
    if (g_fail_countdown.load(std::memory_order_relaxed) > 0 &&
        g_fail_countdown.fetch_sub(1) == 1)
      throw std::bad_alloc();
    if (n > cap_) {
      std::free(p_);
      const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) & ~size_t(63);
      p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (p_ == nullptr) {
        cap_ = 0;
        throw std::bad_alloc();
      }
      cap_ = n;
    }
    return p_;
  }

 private:
  float* p_ = nullptr;
  index_t cap_ = 0;
};

}  // namespace

void gemm_fail_workspace_request(long n) { g_fail_countdown.store(n < 0 ? 0 : n); }

namespace {

struct Workspace {
  Scratch a, b, c;
};
thread_local Workspace tl_ws;

// dst (kc, NR) = op(B)[pk0 .. pk0+kc)[col .. col+nr); columns >= nr are left unset (the
// micro-kernel masks them).
void pack_b(const GemmArgs& p, index_t pk0, index_t kc, index_t col, index_t nr, index_t NR,
            float* dst) {
  if (p.trans_b) {
    // op(B)[k][j] = b[j*ldb + k]: a transpose. 4 x 4 blocks (4 contiguous k of 4 columns
    // in, 4 contiguous columns of 4 k out) halve the memory operations of a scalar copy,
    // which matters when K is small (the 64 x 10 x 256 input-gradient product).
    index_t s = 0;
    for (; s + 4 <= nr; s += 4) {
      const float* src = p.b + (col + s) * p.ldb + pk0;
      const index_t ld = p.ldb;
      index_t q = 0;
      for (; q + 4 <= kc; q += 4) {
        float blk[4][4];
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) blk[j][i] = src[i * ld + q + j];
        for (int j = 0; j < 4; ++j)
          for (int i = 0; i < 4; ++i) dst[(q + j) * NR + s + i] = blk[j][i];
      }
      for (; q < kc; ++q)
        for (int i = 0; i < 4; ++i) dst[q * NR + s + i] = src[i * ld + q];
    }
    for (; s < nr; ++s) {
      const float* src = p.b + (col + s) * p.ldb + pk0;
      for (index_t q = 0; q < kc; ++q) dst[q * NR + s] = src[q];
    }
  } else {
    for (index_t q = 0; q < kc; ++q) {
      const float* src = p.b + (pk0 + q) * p.ldb + col;
      float* d = dst + q * NR;
      for (index_t s = 0; s < nr; ++s) d[s] = src[s];
    }
  }
}

// dst (kc, MR) column-stepped: dst[q*MR + r] = op(A)[row + r][pk0 + q] for r < mr (an
// edge tile is then read by its mr-row kernel: no padding needed).
void pack_a(const GemmArgs& p, index_t pk0, index_t kc, index_t row, index_t mr, index_t MR,
            float* dst) {
  if (p.trans_a) {
    // op(A)[i][k] = a[k*lda + i]: already column-stepped, copy runs of mr.
    for (index_t q = 0; q < kc; ++q) {
      const float* src = p.a + (pk0 + q) * p.lda + row;
      float* d = dst + q * MR;
      for (index_t r = 0; r < mr; ++r) d[r] = src[r];
    }
  } else {
    for (index_t r = 0; r < mr; ++r) {
      const float* src = p.a + (row + r) * p.lda + pk0;
      for (index_t q = 0; q < kc; ++q) dst[q * MR + r] = src[q];
    }
  }
}

// Rows ld floats apart map to few cache sets when ld * 4 bytes is a multiple of 4 KiB
// (the L1's way size): a 14-row A tile or a B panel read in place would then evict itself
// (a 1024 x 1024 operand runs 30% slower). Such operands are packed.
bool conflicting_stride(index_t ld) { return (ld * index_t(sizeof(float))) % 4096 == 0; }

// The register tile for this product: the narrow one when N fits in it, the row tile
// for a product of one row, the wide one otherwise.
const GemmTile& tile_for(const GemmKernelSet& ks, index_t m, index_t n) {
  if (n <= ks.narrow.nr) return ks.narrow;
  return m <= ks.row.mr ? ks.row : ks.wide;
}

// Operands already in a layout the micro-kernel reads: a row-major B (NN, TN) gives its
// panels in place (stride ldb); a transposed A (TN) gives column-stepped tiles in place
// (stride lda) and a row-major A (NN, NT) row-stepped tiles (stride lda). Packing costs
// about a copy of the operand per call, which a batch of 64 rows does not win back
// (the 64 x 784 x 256 forward runs 10% faster with A and B in place); it pays when
// the stride thrashes the cache, and for B when many rows reuse each panel (a packed
// panel stays in L1: +15-60% on AVX2 from 256 rows; on AVX-512 the in-place panel,
// streamed from L2 with prefetch, is 2-5% faster up to 512 rows: ks.pack_b_rows).
// A transposed B (NT, TT) is always packed. Edges run in place: the last A tile with
// its own m-row kernel, the last B panel with masked loads (the 10-column output
// layer's weights are read without a copy).
struct InPlace {
  bool a, b;
};
InPlace operands_in_place(const GemmKernelSet& ks, const GemmArgs& p, index_t M) {
  return {!conflicting_stride(p.lda),
          !p.trans_b && !conflicting_stride(p.ldb) && M < ks.pack_b_rows};
}

// The epilogue the micro-kernel applies as it stores the last K run of the panel at
// column col: the descent step, the ReLU gate (its pointer is set per tile), or bias
// and/or ReLU; null when there is none or it is applied afterwards.
const GemmStoreOp* store_op(const GemmArgs& p, index_t col, GemmStoreOp* op) {
  if (p.descent) {
    op->descent = true, op->lr = p.descent_lr, op->wd = p.descent_wd;
    return op;
  }
  if (p.relu_gate != nullptr) {
    op->ldgate = p.ld_relu_gate;
    return op;
  }
  if (p.bias != nullptr || p.act == Activation::ReLU) {
    op->bias = p.bias != nullptr ? p.bias + col : nullptr;
    op->relu = p.act == Activation::ReLU;
    return op;
  }
  return nullptr;
}

// This thread's rectangle, all K. See the loop sketch at the top of the file.
void gemm_rect(const GemmKernelSet& ks, const GemmTile& tile, const GemmArgs& p,
               const Rect& R) {
  const index_t MR = tile.mr, NR = tile.nr, K = p.k;
  const index_t M = R.i1 - R.i0, N = R.j1 - R.j0;
  const bool custom = p.epilogue.fn != nullptr;

  // K runs of equal length (no short tail run); K == 0 is one empty run that stores zeros.
  const index_t nkb = K > 0 ? ceil_div(K, ks.kc) : 1;
  const index_t kcmax = K > 0 ? ceil_div(K, nkb) : 0;
  const index_t ncmax = std::min(round_up(ks.nc, NR), round_up(N, NR));
  const index_t mcmax = std::min(round_up(ks.mc, MR), round_up(M, MR));

  const InPlace in_place = operands_in_place(ks, p, M);
  const bool b_in_place = in_place.b, a_in_place = in_place.a;

  Workspace& ws = tl_ws;
  float* const bbuf = ws.b.get(std::max<index_t>(kcmax, 1) * ncmax);
  float* const abuf = ws.a.get(std::max<index_t>(kcmax, 1) * mcmax);
  // Custom epilogue: sums go to a scratch block, handed over when complete. With several
  // K runs the partial sums of every row of the rectangle live there between runs.
  index_t ldt = 0, trows = 0;
  float* tbuf = nullptr;
  if (custom) {
    ldt = ncmax;
    trows = nkb > 1 ? M : mcmax;
    tbuf = ws.c.get(trows * ldt);
  }
  // Built-in epilogue applied in the micro-kernel when it is bias and/or ReLU, or the
  // descent step (sgemm routes descent through scratch when K needs several runs).
  const bool inline_epi = !custom && (p.descent || p.relu_gate != nullptr ||
                                      p.act == Activation::Identity ||
                                      p.act == Activation::ReLU);
  const bool post_epi = !custom && !inline_epi;

  for (index_t jc = R.j0; jc < R.j1; jc += ncmax) {
    const index_t nc = std::min(ncmax, R.j1 - jc);
    const index_t npanel = ceil_div(nc, NR);
    for (index_t kb = 0; kb < nkb; ++kb) {
      const index_t pk0 = K * kb / nkb, kc = K * (kb + 1) / nkb - pk0;
      const bool first = kb == 0, last = kb == nkb - 1;
      // B panels of this (jc, pc): packed ones at bbuf + t*kc*NR.
      for (index_t t = 0; t < npanel; ++t) {
        const index_t col = jc + t * NR, nr = std::min(NR, jc + nc - col);
        if (!b_in_place) pack_b(p, pk0, kc, col, nr, NR, bbuf + t * kc * NR);
      }
      for (index_t ic = R.i0; ic < R.i1; ic += mcmax) {
        const index_t mc = std::min(mcmax, R.i1 - ic);
        const index_t ntile = ceil_div(mc, MR);
        if (!a_in_place) {
          for (index_t u = 0; u < ntile; ++u) {
            const index_t row = ic + u * MR, mr = std::min(MR, ic + mc - row);
            pack_a(p, pk0, kc, row, mr, MR, abuf + u * kc * MR);
          }
        }
        const index_t trow0 = custom && nkb > 1 ? R.i0 : ic;  // tbuf's first row
        for (index_t t = 0; t < npanel; ++t) {
          const index_t col = jc + t * NR, nr = std::min(NR, jc + nc - col);
          const float* bp;
          index_t bs;
          if (b_in_place) {
            bp = p.b + pk0 * p.ldb + col, bs = p.ldb;
          } else {
            bp = bbuf + t * kc * NR, bs = NR;
          }
          GemmStoreOp op;
          const GemmStoreOp* opp = inline_epi && last ? store_op(p, col, &op) : nullptr;
          for (index_t u = 0; u < ntile; ++u) {
            const index_t row = ic + u * MR, mr = std::min(MR, ic + mc - row);
            float* cp;
            index_t ldc;
            if (custom) {
              cp = tbuf + (row - trow0) * ldt + (col - jc), ldc = ldt;
            } else {
              cp = p.c + row * p.ldc + col, ldc = p.ldc;
            }
            const int m = static_cast<int>(mr), n = static_cast<int>(nr);
            if (opp != nullptr && p.relu_gate != nullptr)
              op.gate = p.relu_gate + row * p.ld_relu_gate + col;
            if (!a_in_place) {
              tile.a_col[m](kc, abuf + u * kc * MR, MR, bp, bs, cp, ldc, m, n, !first, opp);
            } else if (p.trans_a) {
              tile.a_col[m](kc, p.a + pk0 * p.lda + row, p.lda, bp, bs, cp, ldc, m, n, !first,
                            opp);
            } else {
              tile.a_row[m](kc, p.a + row * p.lda + pk0, p.lda, bp, bs, cp, ldc, m, n, !first,
                            opp);
            }
          }
        }
        if (last && custom) {
          p.epilogue.fn(p.epilogue.ctx, ic, jc, mc, nc, tbuf + (ic - trow0) * ldt, ldt);
        } else if (last && post_epi) {
          float* cb = p.c + ic * p.ldc + jc;
          gemm_store_block(p, ic, jc, mc, nc, cb, p.ldc);  // in place: c = act(c + bias)
        }
      }
    }
  }
}

}  // namespace

// Thread ith's rectangle of C. The grid of MR x NR tiles is cut into pm x pn contiguous
// pieces (pm * pn = nth); the cut with the fewest tiles in the largest piece wins, ties go
// to cutting the dimension with more tiles (M for the 784 x 256 weight gradient, N for a
// 64 x 256 batch product). Depends only on (M, N, tile, ith, nth): deterministic.
Rect gemm_partition(index_t M, index_t N, index_t MR, index_t NR, int ith, int nth) {
  const index_t mt = ceil_div(M, MR), nt = ceil_div(N, NR);
  int best_pm = 1;
  index_t best_cost = -1;
  for (int pm = 1; pm <= nth; ++pm) {
    if (nth % pm != 0) continue;
    const int pn = nth / pm;
    const index_t cost = ceil_div(mt, pm) * ceil_div(nt, pn);
    const bool tie_prefers = (mt >= nt) == (pm > best_pm);
    if (best_cost < 0 || cost < best_cost || (cost == best_cost && tie_prefers)) {
      best_cost = cost;
      best_pm = pm;
    }
  }
  const int pn = nth / best_pm;
  index_t t0, t1, u0, u1;
  split_range(mt, ith / pn, best_pm, &t0, &t1);
  split_range(nt, ith % pn, pn, &u0, &u1);
  return {std::min(t0 * MR, M), std::min(t1 * MR, M), std::min(u0 * NR, N),
          std::min(u1 * NR, N)};
}

namespace {

// c = s + bias, then max(c, 0) as activation_forward writes it (NaN stays NaN), in one
// vectorized pass: the bfloat16 products deliver every block through here.
FASTMLP_SIMD_CLONES
void store_row(const float* t, const float* bias, bool relu, float* c, index_t n) {
  for (index_t s = 0; s < n; ++s) {
    const float v = bias != nullptr ? t[s] + bias[s] : t[s];
    c[s] = relu && v < 0.0f ? 0.0f : v;
  }
}

// c = o > 0 ? s : 0 (activation_backward's ReLU rule, so the two agree bitwise) in one
// vectorized pass: the ReLU gate of every input-gradient block. (A copy, then
// activation_backward per row, in scalar code: 4% of a bfloat16 epoch.)
FASTMLP_SIMD_CLONES
void gate_row(const float* t, const float* o, float* c, index_t n) {
  for (index_t s = 0; s < n; ++s) c[s] = o[s] > 0.0f ? t[s] : 0.0f;
}

}  // namespace

void gemm_store_block(const GemmArgs& p, index_t i0, index_t j0, index_t mr, index_t nr,
                      const float* tile, index_t ldt) {
  if (p.epilogue.fn != nullptr) {
    p.epilogue.fn(p.epilogue.ctx, i0, j0, mr, nr, tile, ldt);
    return;
  }
  for (index_t r = 0; r < mr; ++r) {
    float* crow = p.c + (i0 + r) * p.ldc + j0;
    const float* trow = tile + r * ldt;
    if (p.descent) {
      sgd_step(crow, trow, nr, p.descent_lr, nullptr, 0.0f, false, p.descent_wd);
      continue;
    }
    if (p.relu_gate != nullptr) {
      gate_row(trow, p.relu_gate + (i0 + r) * p.ld_relu_gate + j0, crow, nr);
      continue;
    }
    if (p.act == Activation::Identity || p.act == Activation::ReLU) {
      store_row(trow, p.bias != nullptr ? p.bias + j0 : nullptr, p.act == Activation::ReLU,
                crow, nr);
      continue;
    }
    if (p.bias != nullptr) {
      for (index_t s = 0; s < nr; ++s) crow[s] = trow[s] + p.bias[j0 + s];
    } else {
      for (index_t s = 0; s < nr; ++s) crow[s] = trow[s];
    }
    activation_forward(p.act, crow, 1, nr, p.ldc);
  }
}

void sgemm(const GemmArgs& p, int ith, int nth) {
  if (p.m <= 0 || p.n <= 0 || ith < 0 || ith >= nth) return;
  const GemmKernelSet& ks = kernels_for(active_isa());
  const GemmTile& tile = tile_for(ks, p.m, p.n);
  const Rect R = gemm_partition(p.m, p.n, tile.mr, tile.nr, ith, nth);
  if (R.i1 <= R.i0 || R.j1 <= R.j0) return;
  if (p.descent && p.epilogue.fn == nullptr && p.k > ks.kc) {
    // Several K runs: the partial sums cannot live in c, which holds W. Keep them in
    // scratch and step W once they are complete.
    GemmArgs q = p;
    q.epilogue.ctx = const_cast<GemmArgs*>(&p);
    q.epilogue.fn = [](void* ctx, index_t i0, index_t j0, index_t mr, index_t nr,
                       const float* t, index_t ldt) {
      gemm_store_block(*static_cast<const GemmArgs*>(ctx), i0, j0, mr, nr, t, ldt);
    };
    gemm_rect(ks, tile, q, R);
    return;
  }
  gemm_rect(ks, tile, p, R);
}

void sgemm_parallel(const GemmArgs& p, int n_threads, bool small_serial) {
  int nt = resolve_threads(n_threads);
  // Opening and joining a parallel region costs a few microseconds, and much more when
  // another process holds a core (the join waits for a descheduled thread): products
  // below 1 MFLOP (the 64 x 256 x 10 output layer, ~6 us) run on this thread.
  const double flops = 2.0 * static_cast<double>(p.m) * static_cast<double>(p.n) *
                       static_cast<double>(p.k > 0 ? p.k : 1);
  if (small_serial && flops < 1.0e6) nt = 1;
  if (nt > 1) {
    FASTMLP_PARALLEL(nt)
    sgemm(p, thread_index(), team_size());
    return;
  }
  sgemm(p, 0, 1);
}

}  // namespace fastmlp
