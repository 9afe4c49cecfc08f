// fastmlp/csrc/bindings_testing.cpp — `_core.testing`: hooks that only the tests use,
// kept out of the production binding. They reach the GEMM's reference, its built-in
// epilogues one by one, an exact thread count, a counting custom epilogue, dropout masks,
// augmented and scaled rows.
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>

#include <string>
#include <utility>
#include <vector>

#include "barrier.hpp"
#include "kernels/augment.hpp"
#include "kernels/dropout.hpp"
#include "kernels/gemm.hpp"
#include "kernels/gemm_bf16.hpp"
#include "kernels/gemm_bf16_kernel.hpp"
#include "kernels/gemm_kernel.hpp"
#include "pyarray.hpp"

namespace fastmlp {

namespace {

// The product delivered through a custom TileEpilogue that copies each finished block
// into C and counts deliveries, so a test sees every element arrive exactly once and
// inside the matrix.
struct CountingEpilogue {
  float* c;
  std::int32_t* count;
  index_t m, n;
  bool out_of_range = false;  // written only under the lock below
  static void run(void* ctx, index_t i0, index_t j0, index_t mr, index_t nr, const float* tile,
                  index_t ldt) {
    auto* e = static_cast<CountingEpilogue*>(ctx);
    if (i0 < 0 || j0 < 0 || mr < 1 || nr < 1 || i0 + mr > e->m || j0 + nr > e->n) {
#if defined(_OPENMP)
#pragma omp critical(fastmlp_counting_epilogue)
#endif
      e->out_of_range = true;
      return;
    }
    for (index_t r = 0; r < mr; ++r)
      for (index_t s = 0; s < nr; ++s) {
        // One writer per element is the contract under test; a violation shows as a
        // count other than 1 (or, if two threads raced on it, a wrong product).
        e->c[(i0 + r) * e->n + j0 + s] = tile[r * ldt + s];
        e->count[(i0 + r) * e->n + j0 + s] += 1;
      }
  }
};

void check_counts(const CountingEpilogue& ce, const std::vector<std::int32_t>& count) {
  if (ce.out_of_range) throw std::runtime_error("matmul: a tile outside the product");
  for (index_t e = 0; e < ce.m * ce.n; ++e)
    if (count[e] != 1)
      throw std::runtime_error("matmul: element (" + std::to_string(e / ce.n) + ", " +
                               std::to_string(e % ce.n) + ") delivered " +
                               std::to_string(count[e]) + " times");
}

// Exactly one epilogue: bias/activation, descent (lr, wd) on W held in out, the ReLU
// gate, or the counting tile epilogue.
void set_epilogue(GemmArgs* g, const py::object& bias, Activation act, bool tile_epilogue,
                  const py::object& descent, const py::object& relu_gate, bool has_out) {
  const int n_special = !descent.is_none() + !relu_gate.is_none() + tile_epilogue;
  if (n_special > 1 || (n_special == 1 && (!bias.is_none() || act != Activation::Identity)))
    throw std::invalid_argument("descent, relu_gate and tile_epilogue: each one replaces bias, "
                                "activation and the other two");
  g->act = act;
  if (!bias.is_none()) {
    const View<float> b = checked<float>(bias, "bias", 1);
    if (b.cols != g->n)
      throw std::invalid_argument("bias has " + std::to_string(b.cols) + " entries, the " +
                                  "product has " + std::to_string(g->n) + " columns");
    g->bias = b.data;
  }
  if (!descent.is_none()) {
    if (!has_out) throw std::invalid_argument("descent updates out in place: pass out");
    const auto lw = descent.cast<std::pair<float, float>>();
    g->descent = true, g->descent_lr = lw.first, g->descent_wd = lw.second;
  }
  if (!relu_gate.is_none()) {
    const View<float> gate = checked<float>(relu_gate, "relu_gate", 2, kContiguous);
    if (gate.rows != g->m || gate.cols != g->n)
      throw std::invalid_argument("relu_gate must have the product's shape (" +
                                  std::to_string(g->m) + ", " + std::to_string(g->n) + ")");
    View<float> c;
    c.data = g->c, c.rows = g->m, c.cols = c.ld = g->n;
    no_overlap(c, gate, "out", "relu_gate");
    g->relu_gate = gate.data, g->ld_relu_gate = gate.ld;
  }
}

py::array_t<float> matmul(py::handle a, py::handle b, bool trans_a, bool trans_b, int n_threads,
                          bool reference, py::object out, py::object bias, Activation act,
                          bool tile_epilogue, bool exact_threads, py::object descent,
                          py::object relu_gate) {
  GemmArgs g;
  auto c = product_args(a, b, trans_a, trans_b, out, &g);
  set_epilogue(&g, bias, act, tile_epilogue, descent, relu_gate, !out.is_none());
  std::vector<std::int32_t> count;
  CountingEpilogue ce{g.c, nullptr, g.m, g.n};
  if (tile_epilogue) {
    count.assign(static_cast<size_t>(g.m * g.n), 0);
    ce.count = count.data();
    g.epilogue.fn = &CountingEpilogue::run, g.epilogue.ctx = &ce;
  }
  {
    py::gil_scoped_release nogil;
    if (reference)
      gemm_reference(g);
    else
      sgemm_parallel(g, n_threads, !exact_threads);
  }
  if (tile_epilogue) check_counts(ce, count);
  return c;
}

// A bfloat16 kernel by name, or a clear error when this CPU (or its OS) does not run it.
Bf16Kernel bf16_kernel_from(const std::string& name) {
  Bf16Kernel k;
  if (!parse_bf16_kernel(name.c_str(), &k))
    throw std::invalid_argument(std::string("kernel must be ") + bf16_kernel_names() +
                                ", got '" + name + "'");
  if (static_cast<int>(k) > static_cast<int>(detected_bf16_kernel()))
    throw std::invalid_argument("this CPU lacks the " + name + " kernel (best: " +
                                bf16_kernel_name(detected_bf16_kernel()) + ")");
  return k;
}

// op(a) · op(b) with bfloat16 operands through the packers of bf16.hpp and one kernel.
// The padding the contract lets the kernels read (rows past M of A, columns past N of B)
// holds NaN, so a kernel that let it into a delivered sum fails the tests.
py::array_t<float> bf16_matmul(py::handle a, py::handle b, bool trans_a, bool trans_b,
                               const std::string& kernel, int n_threads, py::object out,
                               py::object bias, Activation act, bool tile_epilogue,
                               py::object descent, py::object relu_gate, int repeat) {
  GemmArgs g;
  auto c = product_args(a, b, trans_a, trans_b, out, &g);
  set_epilogue(&g, bias, act, tile_epilogue, descent, relu_gate, !out.is_none());
  if (repeat < 1 || (repeat > 1 && (tile_epilogue || !descent.is_none())))
    throw std::invalid_argument("repeat (for timing the kernel alone) must be >= 1, and 1 "
                                "with descent or tile_epilogue");
  const Bf16Kernel kind = bf16_kernel_from(kernel);
  const index_t M = g.m, N = g.n, K = g.k, Kp = bf16_pad(K, kBf16KStep);
  const index_t Mp = bf16_pad(M, kBf16MStep), Np = bf16_pad(N, kBf16NStep);
  const bf16_t nan = 0x7FC0;
  std::vector<bf16_t> A(static_cast<size_t>(Mp * Kp), nan), B(static_cast<size_t>(Kp * Np), nan);
  if (trans_a) {  // a (K, M)
    bf16_pack_transposed(g.a, g.lda, 0, K, M, A.data(), Kp);
    bf16_zero_cols(M, K, Kp, A.data(), Kp);
  } else {
    bf16_pack_rows(g.a, g.lda, 0, M, K, Kp, A.data(), Kp);
  }
  if (trans_b) {  // b (N, K)
    bf16_pack_pairs_transposed(g.b, g.ldb, 0, N, K, Kp, B.data(), Np);
  } else {
    bf16_pack_pairs(g.b, g.ldb, 0, K, N, B.data(), Np);
    bf16_zero_pairs(K, Kp, Np, B.data(), Np);
  }
  Bf16GemmArgs p;
  p.m = M, p.n = N, p.k = Kp, p.a = A.data(), p.lda = Kp, p.b = B.data(), p.ldb = Np, p.epi = g;
  std::vector<std::int32_t> count;
  CountingEpilogue ce{g.c, nullptr, g.m, g.n};
  if (tile_epilogue) {
    count.assign(static_cast<size_t>(g.m * g.n), 0);
    ce.count = count.data();
    p.epi.epilogue.fn = &CountingEpilogue::run, p.epi.epilogue.ctx = &ce;
  }
  {
    py::gil_scoped_release nogil;
    if (kind == Bf16Kernel::Reference) {
      bgemm_reference(p);
    } else {
      const Bf16Kernel before = active_bf16_kernel();
      set_bf16_kernel(kind);
      const int nt = resolve_threads(n_threads);
      FASTMLP_PARALLEL(nt)
      for (int r = 0; r < repeat; ++r) bgemm(p, thread_index(), team_size());
      set_bf16_kernel(before);
    }
  }
  if (tile_epilogue) check_counts(ce, count);
  return c;
}

// Rows [r0, r1) of x (rows, cols) packed by one packer ("rows", "transposed", "pairs" or
// "pairs_transposed"), scalar loops or the packer the core uses, into a buffer of `size`
// bfloat16 poisoned with 0xFFFF (a NaN), so untouched and touched elements both show.
// kp: the padded inner dimension of "rows" and "pairs_transposed" (-1: cols padded to
// kBf16KStep; "pairs_transposed" also takes the odd and unpadded ones training packs).
py::array_t<std::uint16_t> bf16_pack(py::handle x_obj, const std::string& layout, index_t r0,
                                     index_t r1, index_t ld, index_t size, bool scalar,
                                     index_t kp) {
  const View<float> x = checked<float>(x_obj, "x", 2, kContiguous);
  if (r0 < 0 || r1 < r0 || r1 > x.rows) throw std::invalid_argument("bad row range");
  if (kp == -1) kp = bf16_pad(x.cols, kBf16KStep);
  if (kp < x.cols || (layout == "rows" && kp != bf16_pad(x.cols, kBf16KStep)))
    throw std::invalid_argument("kp must be >= cols (and cols padded for 'rows')");
  const index_t need = layout == "rows"               ? x.rows * ld
                       : layout == "transposed"       ? x.cols * ld
                       : layout == "pairs_transposed" ? (kp + 1) / 2 * 2 * ld
                                                      : (x.rows + 1) / 2 * 2 * ld;
  if ((layout == "rows" && ld < kp) || (layout == "transposed" && ld < x.rows) ||
      (layout == "pairs" && ld < x.cols) || (layout == "pairs_transposed" && ld < x.rows) ||
      size < need)
    throw std::invalid_argument("ld or size too small for the layout");
  py::array_t<std::uint16_t> out(static_cast<py::ssize_t>(size));
  bf16_t* d = out.mutable_data();
  std::fill(d, d + size, bf16_t(0xFFFF));
  if (layout == "rows")
    (scalar ? bf16_pack_rows_scalar : bf16_pack_rows)(x.data, x.ld, r0, r1, x.cols, kp, d, ld);
  else if (layout == "transposed")
    (scalar ? bf16_pack_transposed_scalar
            : bf16_pack_transposed)(x.data, x.ld, r0, r1, x.cols, d, ld);
  else if (layout == "pairs")
    (scalar ? bf16_pack_pairs_scalar : bf16_pack_pairs)(x.data, x.ld, r0, r1, x.cols, d, ld);
  else if (layout == "pairs_transposed")  // the K padding: zero pairs up to kp
    (scalar ? bf16_pack_pairs_transposed_scalar
            : bf16_pack_pairs_transposed)(x.data, x.ld, r0, r1, x.cols, kp, d, ld);
  else
    throw std::invalid_argument(
        "layout must be 'rows', 'transposed', 'pairs' or 'pairs_transposed'");
  return out;
}

py::array_t<std::uint16_t> bf16_round(py::handle x_obj, bool hardware) {
  const View<float> x = checked<float>(x_obj, "x", 0);
  if (hardware) bf16_kernel_from("avx512bf16");
  py::array_t<std::uint16_t> out(static_cast<py::ssize_t>(x.size()));
  if (hardware)
    bf16_convert_hardware(x.data, x.size(), out.mutable_data());
  else
    for (index_t i = 0; i < x.size(); ++i) out.mutable_data()[i] = to_bf16(x.data[i]);
  return out;
}

// s + a[0]·b[0] + a[1]·b[1] per row, the vdpbf16ps step, emulated or by the instruction.
py::array_t<float> bf16_dot_pairs(py::array_t<std::uint16_t, py::array::c_style> a,
                                  py::array_t<std::uint16_t, py::array::c_style> b,
                                  py::array_t<float, py::array::c_style> s, bool hardware) {
  const index_t n = s.size();
  if (a.size() != 2 * n || b.size() != 2 * n) throw std::invalid_argument("a, b must be (n, 2)");
  if (hardware) bf16_kernel_from("avx512bf16");
  py::array_t<float> out(static_cast<py::ssize_t>(n));
  for (index_t i = 0; i < n; ++i) {
    const bf16_t* pa = a.data() + 2 * i;
    const bf16_t* pb = b.data() + 2 * i;
    out.mutable_data()[i] =
        hardware ? bf16_dot_pair_hardware(pa, pb, s.data()[i])
                 : bf16_fma(pa[0], pb[0], bf16_fma(pa[1], pb[1], s.data()[i]));
  }
  return out;
}

// The keep mask of `width` units of hidden layer `layer` for the given samples at `step`.
py::array_t<std::uint8_t> dropout_mask(std::uint64_t seed, std::uint64_t step, py::handle samples,
                                       index_t layer, index_t width, float rate) {
  const View<std::int64_t> s = checked<std::int64_t>(samples, "samples", 1);
  py::array_t<std::uint8_t> mask(
      {static_cast<py::ssize_t>(s.cols), static_cast<py::ssize_t>(width)});
  std::vector<float> h(static_cast<size_t>(s.cols * width), 1.0f), out(h.size());
  dropout_forward(h.data(), out.data(), mask.mutable_data(), width, s.data, s.cols, 0, width,
                  DropoutKey{seed, step, layer, rate});
  return mask;
}

// The rows of X the training loop would gather for these samples at `step`, augmented,
// with each row's draw (dy, dx, flip).
py::tuple augment_rows(py::handle X_obj, py::handle samples, std::uint64_t seed,
                       std::uint64_t step, std::tuple<index_t, index_t, index_t, bool> image,
                       index_t shift, bool flip) {
  const View<float> X = checked<float>(X_obj, "X", 2, kContiguous);
  const View<std::int64_t> s = checked<std::int64_t>(samples, "samples", 1);
  Augmentation a;
  a.image = {std::get<0>(image), std::get<1>(image), std::get<2>(image), std::get<3>(image)};
  a.shift = shift, a.flip = flip;
  if (a.image.size() != X.cols || shift < 0) throw std::invalid_argument("bad geometry");
  auto out = new_matrix(s.cols, X.cols);
  py::array_t<std::int64_t> draws({static_cast<py::ssize_t>(s.cols), py::ssize_t(3)});
  for (index_t r = 0; r < s.cols; ++r) {
    if (s.data[r] < 0 || s.data[r] >= X.rows) throw std::invalid_argument("sample out of range");
    const AugmentDraw d = augment_draw(a, seed, step, s.data[r]);
    augment_image(X.data + s.data[r] * X.cols, out.mutable_data() + r * X.cols, a.image, d);
    draws.mutable_at(r, 0) = d.dy, draws.mutable_at(r, 1) = d.dx, draws.mutable_at(r, 2) = d.flip;
  }
  return py::make_tuple(out, draws);
}

// Rows `rows` of a PixelInput as the network's float32 input, written into out (n, D),
// which the test poisons first.
void pixel_rows(py::handle X_obj, py::handle rows_obj, py::handle out_obj) {
  const auto X = input_of(X_obj);
  const View<std::int64_t> rows = checked<std::int64_t>(rows_obj, "rows", 1);
  const View<float> out = checked<float>(out_obj, "out", 2, kWritable | kContiguous);
  if (out.rows != rows.cols || out.cols != X->rows.features())
    throw std::invalid_argument("out must be (len(rows), D)");
  for (index_t r = 0; r < rows.cols; ++r)
    if (rows.data[r] < 0 || rows.data[r] >= X->rows.rows())
      throw std::invalid_argument("row out of range");
  for (index_t r = 0; r < rows.cols; ++r) X->rows.row(rows.data[r], out.data + r * out.cols);
}

// The same rows as bfloat16 read straight from 8-bit pixels (PixelRows::row_bf16), each
// padded to kp >= D; returned (len(rows), kp + 3), poisoned with 0xFFFF (a NaN) first, so
// a write past kp shows.
py::array_t<std::uint16_t> pixel_rows_bf16(py::handle X_obj, py::handle rows_obj, index_t kp) {
  const auto X = input_of(X_obj);
  const View<std::int64_t> rows = checked<std::int64_t>(rows_obj, "rows", 1);
  if (!X->rows.reads_bf16())
    throw std::invalid_argument("these pixels are not read straight to bfloat16");
  if (kp < X->rows.features()) throw std::invalid_argument("kp must be at least D");
  for (index_t r = 0; r < rows.cols; ++r)
    if (rows.data[r] < 0 || rows.data[r] >= X->rows.rows())
      throw std::invalid_argument("row out of range");
  const index_t ld = kp + 3;
  py::array_t<std::uint16_t> out(
      {static_cast<py::ssize_t>(rows.cols), static_cast<py::ssize_t>(ld)});
  std::fill(out.mutable_data(), out.mutable_data() + out.size(), std::uint16_t{0xFFFF});
  for (index_t r = 0; r < rows.cols; ++r)
    X->rows.row_bf16(rows.data[r], out.mutable_data() + r * ld, kp);
  return out;
}

// The bfloat16 update's fused SGD step and repack on W (h, n) in place, with the step
// s (h, n): the core's (the vector one where the CPU has AVX512-BF16) or the scalar loop.
// Returns Wp's pair rows, ((h + 1) / 2, 2n + 6) bfloat16 poisoned with 0xFFFF (a NaN), so
// a write past a pair row shows.
py::array_t<std::uint16_t> sgd_step_pack(py::handle w_obj, py::handle s_obj, float lr,
                                         float l2, bool scalar) {
  const View<float> w = checked<float>(w_obj, "W", 2, kWritable | kContiguous);
  const View<float> s = checked<float>(s_obj, "s", 2, kContiguous);
  if (s.rows != w.rows || s.cols != w.cols)
    throw std::invalid_argument("W and s must have the same shape");
  const index_t ldwp = 2 * w.cols + 6;
  py::array_t<std::uint16_t> out({static_cast<py::ssize_t>((w.rows + 1) / 2),
                                  static_cast<py::ssize_t>(ldwp)});
  std::fill(out.mutable_data(), out.mutable_data() + out.size(), bf16_t(0xFFFF));
  (scalar ? bf16_sgd_step_pack_scalar : fastmlp::bf16_sgd_step_pack)(
      w.data, w.ld, s.data, s.ld, w.rows, w.cols, lr, l2, out.mutable_data(), ldwp);
  return out;
}

// `rounds` rounds of the training loop's barrier on a team of n_threads (more than the
// cores exercises its sleeping wait): in round r every thread writes r into its slot,
// waits, reads every slot, waits again. Returns the team size and how many reads saw a
// slot other than r (0 unless the barrier let a thread through early or its writes
// were not yet visible).
std::pair<int, long long> barrier_rounds(int n_threads, long long rounds) {
  if (n_threads < 1 || n_threads > kMaxThreads || rounds < 0)
    throw std::invalid_argument("n_threads must be in [1, MAX_THREADS] and rounds >= 0");
  struct alignas(kCacheLine) Slot {
    std::atomic<long long> v{-1};
  };
  std::vector<Slot> slot(static_cast<size_t>(n_threads));
  TeamBarrier barrier;
  int team = 1;
  long long wrong = 0;
  py::gil_scoped_release nogil;
  FASTMLP_PARALLEL(n_threads)
  {
    const int ith = thread_index(), nth = team_size();
    if (ith == 0) barrier.set_team(nth), team = nth;
    FASTMLP_BARRIER
    TeamBarrier::Waiter me;
    long long mine = 0;
    for (long long r = 0; r < rounds; ++r) {
      slot[ith].v.store(r, std::memory_order_relaxed);
      barrier.wait(me);
      for (int j = 0; j < nth; ++j)
        mine += slot[j].v.load(std::memory_order_relaxed) != r;
      barrier.wait(me);
    }
#if defined(_OPENMP)
#pragma omp atomic
#endif
    wrong += mine;
  }
  return {team, wrong};
}

}  // namespace

void bind_testing(py::module_& core) {
  py::module_ t = core.def_submodule("testing", "test-only hooks of the compiled core");
  t.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::kw_only(), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("n_threads") = 0, py::arg("reference") = false,
        py::arg("out") = py::none(), py::arg("bias") = py::none(),
        py::arg("activation") = Activation::Identity, py::arg("tile_epilogue") = false,
        py::arg("exact_threads") = false, py::arg("descent") = py::none(),
        py::arg("relu_gate") = py::none());
  t.def("bf16_matmul", &bf16_matmul, py::arg("a"), py::arg("b"), py::kw_only(),
        py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("kernel") = "reference",
        py::arg("n_threads") = 0, py::arg("out") = py::none(), py::arg("bias") = py::none(),
        py::arg("activation") = Activation::Identity, py::arg("tile_epilogue") = false,
        py::arg("descent") = py::none(), py::arg("relu_gate") = py::none(),
        py::arg("repeat") = 1);
  t.def("bf16_pack", &bf16_pack, py::arg("x"), py::arg("layout"), py::kw_only(), py::arg("r0"),
        py::arg("r1"), py::arg("ld"), py::arg("size"), py::arg("scalar") = false,
        py::arg("kp") = -1);
  t.def("bf16_round", &bf16_round, py::arg("x"), py::kw_only(), py::arg("hardware") = false);
  t.def("bf16_dot_pairs", &bf16_dot_pairs, py::arg("a"), py::arg("b"), py::arg("s"),
        py::kw_only(), py::arg("hardware") = false);
  t.def("dropout_mask", &dropout_mask, py::arg("seed"), py::arg("step"), py::arg("samples"),
        py::arg("layer"), py::arg("width"), py::arg("rate"));
  t.def("augment_rows", &augment_rows, py::arg("X"), py::arg("samples"), py::kw_only(),
        py::arg("seed"), py::arg("step"), py::arg("image"), py::arg("shift"), py::arg("flip"));
  t.def("pixel_rows", &pixel_rows, py::arg("X"), py::arg("rows"), py::arg("out"));
  t.def("pixel_rows_bf16", &pixel_rows_bf16, py::arg("X"), py::arg("rows"), py::arg("kp"));
  t.def("bf16_sgd_step_pack", &sgd_step_pack, py::arg("W"), py::arg("s"), py::kw_only(),
        py::arg("lr"), py::arg("l2"), py::arg("scalar") = false);
  t.def("barrier_rounds", &barrier_rounds, py::arg("n_threads"), py::arg("rounds"));
  t.def("fail_workspace_request", &gemm_fail_workspace_request, py::arg("n"),
        "the n-th GEMM packing-buffer request from now throws as if memory ran out; 0 "
        "disarms");
}

}  // namespace fastmlp
