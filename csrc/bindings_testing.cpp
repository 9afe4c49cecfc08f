// fastmlp/csrc/bindings_testing.cpp — `_core.testing`: hooks that only the tests use,
// kept out of the production binding. They reach the GEMM's reference, its built-in
// epilogues one by one, an exact thread count, a counting custom epilogue, dropout masks,
// augmented and scaled rows.
#include <pybind11/stl.h>

#include <string>
#include <utility>
#include <vector>

#include "kernels/augment.hpp"
#include "kernels/dropout.hpp"
#include "kernels/gemm.hpp"
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

// The keep mask of `width` units of hidden layer `layer` for the given samples at `step`.
py::array_t<std::uint8_t> dropout_mask(std::uint64_t seed, std::uint64_t step, py::handle samples,
                                       index_t layer, index_t width, float rate) {
  const View<std::int64_t> s = checked<std::int64_t>(samples, "samples", 1);
  py::array_t<std::uint8_t> mask({static_cast<py::ssize_t>(s.cols), static_cast<py::ssize_t>(width)});
  std::vector<float> h(static_cast<size_t>(s.cols * width), 1.0f), out(h.size());
  dropout_forward(h.data(), out.data(), mask.mutable_data(), width, s.data, s.cols, 0, width,
                  DropoutKey{seed, step, layer, rate});
  return mask;
}

// The rows of X the training loop would gather for these samples at `step`, augmented,
// with each row's draw (dy, dx, flip).
py::tuple augment_rows(py::handle X_obj, py::handle samples, std::uint64_t seed, std::uint64_t step,
                       std::tuple<index_t, index_t, index_t, bool> image, index_t shift, bool flip) {
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

}  // namespace

void bind_testing(py::module_& core) {
  py::module_ t = core.def_submodule("testing", "test-only hooks of the compiled core");
  t.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::kw_only(), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("n_threads") = 0, py::arg("reference") = false,
        py::arg("out") = py::none(), py::arg("bias") = py::none(),
        py::arg("activation") = Activation::Identity, py::arg("tile_epilogue") = false,
        py::arg("exact_threads") = false, py::arg("descent") = py::none(),
        py::arg("relu_gate") = py::none());
  t.def("dropout_mask", &dropout_mask, py::arg("seed"), py::arg("step"), py::arg("samples"),
        py::arg("layer"), py::arg("width"), py::arg("rate"));
  t.def("augment_rows", &augment_rows, py::arg("X"), py::arg("samples"), py::kw_only(),
        py::arg("seed"), py::arg("step"), py::arg("image"), py::arg("shift"), py::arg("flip"));
  t.def("pixel_rows", &pixel_rows, py::arg("X"), py::arg("rows"), py::arg("out"));
}

}  // namespace fastmlp
