// fastmlp/csrc/bindings.cpp — the Python face of the C++ core, kept thin: check every
// buffer (dtype, shape, strides, writability), release the GIL, call. No math here.
// std::invalid_argument becomes ValueError, pybind11::type_error TypeError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"
#include "cpu.hpp"
#include "kernels/activation.hpp"
#include "kernels/gemm.hpp"
#include "kernels/loss.hpp"
#include "kernels/optim.hpp"
#include "train.hpp"

namespace py = pybind11;
using namespace fastmlp;

namespace {

// A checked view of a NumPy array: rows x cols with unit inner stride and row stride ld.
template <class T>
struct View {
  T* data = nullptr;
  index_t rows = 0, cols = 0, ld = 0;
  index_t size() const { return rows * cols; }
};

template <class T>
const char* dtype_name();
template <> const char* dtype_name<float>() { return "float32"; }
template <> const char* dtype_name<std::int32_t>() { return "int32"; }
template <> const char* dtype_name<std::int64_t>() { return "int64"; }

// Native-byte-order T (dtype objects compare by value: an unpickled float32 is a new one).
template <class T>
bool same_dtype(const py::array& arr) {
  return py::detail::npy_api::get().PyArray_EquivTypes_(arr.dtype().ptr(),
                                                        py::dtype::of<T>().ptr());
}

// ndim 1 or 2; the last axis must be contiguous; writable arrays are never copied.
template <class T>
View<T> view(const py::handle& obj, const char* name, int ndim, bool writable) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a NumPy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!same_dtype<T>(arr))
    throw py::type_error(std::string(name) + " must have dtype " + dtype_name<T>() + ", got " +
                         std::string(py::str(arr.dtype())));
  if (arr.ndim() != ndim)
    throw std::invalid_argument(std::string(name) + " must be " + std::to_string(ndim) +
                                "-dimensional, got " + std::to_string(arr.ndim()) + " dimensions");
  if (writable && !arr.writeable())
    throw std::invalid_argument(std::string(name) + " must be writable");
  View<T> v;
  v.rows = ndim == 2 ? arr.shape(0) : 1;
  v.cols = arr.shape(ndim - 1);
  const auto isz = static_cast<py::ssize_t>(sizeof(T));
  v.ld = v.cols;
  v.data = static_cast<T*>(const_cast<void*>(arr.data()));
  if (arr.size() == 0) return v;  // nothing is read; empty arrays may have any strides
  if (v.cols > 1 && arr.strides(ndim - 1) != isz)
    throw std::invalid_argument(std::string(name) + " must be contiguous along its last axis");
  if (ndim == 2 && v.rows > 1) {
    if (arr.strides(0) % isz != 0 || arr.strides(0) / isz < v.cols)
      throw std::invalid_argument(std::string(name) + " has an unsupported row stride");
    v.ld = arr.strides(0) / isz;
  }
  return v;
}

template <class T>
View<T> contiguous(const py::handle& obj, const char* name, int ndim, bool writable) {
  View<T> v = view<T>(obj, name, ndim, writable);
  if (v.rows > 1 && v.ld != v.cols)
    throw std::invalid_argument(std::string(name) + " must be C-contiguous");
  return v;
}

void same_shape(const View<float>& a, const View<float>& b, const char* na, const char* nb) {
  if (a.rows != b.rows || a.cols != b.cols)
    throw std::invalid_argument(std::string(na) + " and " + nb + " must have the same shape");
}

Activation to_activation(int a) {
  if (a < 0 || a > 3) throw std::invalid_argument("unknown activation code " + std::to_string(a));
  return static_cast<Activation>(a);
}

py::array_t<float> new_matrix(index_t rows, index_t cols) {
  return py::array_t<float>({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
}

// The destination of a kernel: a new (rows, cols) array when out is None, else the
// caller's writable C-contiguous float32 array of exactly that shape (written in place,
// never copied, so a wrong dtype is an error instead of a silently updated copy).
py::array_t<float> out_matrix(const py::object& out, index_t rows, index_t cols,
                              const char* name) {
  if (out.is_none()) return new_matrix(rows, cols);
  const View<float> o = contiguous<float>(out, name, 2, true);
  if (o.rows != rows || o.cols != cols)
    throw std::invalid_argument(std::string(name) + " has shape (" + std::to_string(o.rows) +
                                ", " + std::to_string(o.cols) + "), expected (" +
                                std::to_string(rows) + ", " + std::to_string(cols) + ")");
  return py::reinterpret_borrow<py::array_t<float>>(out);
}

// Inputs must not share memory with the array written.
void no_overlap(const py::array& out, const py::handle& in, const char* name) {
  auto a = py::reinterpret_borrow<py::array>(in);
  const char* o0 = static_cast<const char*>(out.data());
  const char* o1 = o0 + out.nbytes();
  const char* i0 = static_cast<const char*>(a.data());
  const char* i1 = i0 + (a.size() ? (a.shape(0) - 1) * a.strides(0) + a.nbytes() / a.shape(0) : 0);
  if (out.nbytes() > 0 && a.size() > 0 && i0 < o1 && o0 < i1)
    throw std::invalid_argument(std::string("out must not overlap ") + name);
}

// --- kernels -------------------------------------------------------------------------

// Test hook of matmul(tile_epilogue=True): the product delivered through the custom
// TileEpilogue, which copies each finished block into C and counts deliveries, so a test
// can see that every element arrives exactly once and inside the matrix.
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

py::array_t<float> matmul(py::handle a_obj, py::handle b_obj, bool trans_a, bool trans_b,
                          int n_threads, bool reference, py::object out, py::object bias_obj,
                          int act, bool tile_epilogue, bool exact_threads,
                          py::object descent, py::object relu_gate) {
  const View<float> a = view<float>(a_obj, "a", 2, false);
  const View<float> b = view<float>(b_obj, "b", 2, false);
  const index_t m = trans_a ? a.cols : a.rows, ka = trans_a ? a.rows : a.cols;
  const index_t kb = trans_b ? b.cols : b.rows, n = trans_b ? b.rows : b.cols;
  if (ka != kb)
    throw std::invalid_argument("matmul: inner dimensions differ: op(a) is (" +
                                std::to_string(m) + ", " + std::to_string(ka) + "), op(b) is (" +
                                std::to_string(kb) + ", " + std::to_string(n) + ")");
  auto c = out_matrix(out, m, n, "out");
  if (!out.is_none()) no_overlap(c, a_obj, "a"), no_overlap(c, b_obj, "b");
  GemmArgs g;
  g.m = m, g.n = n, g.k = ka;
  g.a = a.data, g.lda = a.ld, g.trans_a = trans_a;
  g.b = b.data, g.ldb = b.ld, g.trans_b = trans_b;
  g.c = c.mutable_data(), g.ldc = n;
  g.act = to_activation(act);
  if (!bias_obj.is_none()) {
    const View<float> bias = contiguous<float>(bias_obj, "bias", 1, false);
    if (bias.cols != n)
      throw std::invalid_argument("bias has " + std::to_string(bias.cols) + " entries, the "
                                  "product has " + std::to_string(n) + " columns");
    g.bias = bias.data;
  }
  if (!descent.is_none()) {  // (lr, wd): out holds W and takes one plain SGD step
    if (out.is_none()) throw std::invalid_argument("descent updates out in place: pass out");
    if (g.bias != nullptr || g.act != Activation::Identity || tile_epilogue)
      throw std::invalid_argument("descent replaces bias, activation and tile_epilogue");
    auto lw = descent.cast<std::pair<float, float>>();
    g.descent = true, g.descent_lr = lw.first, g.descent_wd = lw.second;
  }
  if (!relu_gate.is_none()) {  // the ReLU-backward epilogue through these outputs
    if (g.bias != nullptr || g.act != Activation::Identity || tile_epilogue || g.descent)
      throw std::invalid_argument("relu_gate replaces bias, activation, descent and "
                                  "tile_epilogue");
    const View<float> gate = contiguous<float>(relu_gate, "relu_gate", 2, false);
    if (gate.rows != m || gate.cols != n)
      throw std::invalid_argument("relu_gate must have the product's shape (" +
                                  std::to_string(m) + ", " + std::to_string(n) + ")");
    no_overlap(c, relu_gate, "relu_gate");
    g.relu_gate = gate.data, g.ld_relu_gate = gate.ld;
  }
  std::vector<std::int32_t> count;
  CountingEpilogue ce{g.c, nullptr, m, n};
  if (tile_epilogue) {
    if (g.bias != nullptr || g.act != Activation::Identity)
      throw std::invalid_argument("tile_epilogue replaces bias and activation");
    count.assign(static_cast<size_t>(m * n), 0);
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
  if (tile_epilogue) {
    if (ce.out_of_range) throw std::runtime_error("matmul: a tile outside the product");
    for (index_t e = 0; e < m * n; ++e)
      if (count[e] != 1)
        throw std::runtime_error("matmul: element (" + std::to_string(e / n) + ", " +
                                 std::to_string(e % n) + ") delivered " +
                                 std::to_string(count[e]) + " times");
  }
  return c;
}

py::array_t<float> activation(py::handle x_obj, int act, py::object out_obj) {
  const View<float> x = view<float>(x_obj, "x", 2, false);
  const Activation f = to_activation(act);
  auto out = out_matrix(out_obj, x.rows, x.cols, "out");
  float* o = out.mutable_data();
  py::gil_scoped_release nogil;
  for (index_t r = 0; r < x.rows; ++r)
    std::copy(x.data + r * x.ld, x.data + r * x.ld + x.cols, o + r * x.cols);
  activation_forward(f, o, x.rows, x.cols, x.cols);
  return out;
}

py::array_t<float> activation_grad(py::handle g_obj, py::handle y_obj, int act,
                                   py::object out_obj) {
  const View<float> g = view<float>(g_obj, "grad_out", 2, false);
  const View<float> y = view<float>(y_obj, "out", 2, false);
  same_shape(g, y, "grad_out", "out");
  const Activation f = to_activation(act);
  auto out = out_matrix(out_obj, g.rows, g.cols, "grad_in");
  if (!out_obj.is_none()) no_overlap(out, y_obj, "out");
  float* o = out.mutable_data();
  py::gil_scoped_release nogil;
  for (index_t r = 0; r < g.rows; ++r)
    std::copy(g.data + r * g.ld, g.data + r * g.ld + g.cols, o + r * g.cols);
  activation_backward(f, o, g.cols, y.data, y.ld, g.rows, g.cols);
  return out;
}

py::tuple softmax_cross_entropy_py(py::handle z_obj, py::handle y_obj, py::object out_obj) {
  const View<float> z = view<float>(z_obj, "logits", 2, false);
  const View<std::int32_t> y = contiguous<std::int32_t>(y_obj, "labels", 1, false);
  if (y.cols != z.rows)
    throw std::invalid_argument("labels has " + std::to_string(y.cols) + " entries, logits " +
                                std::to_string(z.rows) + " rows");
  if (z.cols < 1) throw std::invalid_argument("logits must have at least one column");
  for (index_t i = 0; i < y.cols; ++i)
    if (y.data[i] < 0 || y.data[i] >= z.cols)
      throw std::invalid_argument("labels[" + std::to_string(i) + "] = " +
                                  std::to_string(y.data[i]) + " is outside [0, " +
                                  std::to_string(z.cols) + ")");
  auto grad = out_matrix(out_obj, z.rows, z.cols, "grad_out");
  std::vector<double> row_loss(z.rows);
  double total = 0;
  {
    py::gil_scoped_release nogil;
    const float scale = z.rows > 0 ? static_cast<float>(1.0 / z.rows) : 0.0f;
    softmax_cross_entropy(z.data, z.ld, y.data, nullptr, z.rows, z.cols, scale,
                          grad.mutable_data(), z.cols, row_loss.data(), nullptr);
    for (double l : row_loss) total += l;
  }
  const double mean = z.rows > 0 ? total / z.rows : 0.0;
  return py::make_tuple(mean, grad);
}

// Any-dimensional C-contiguous float32 buffer, seen flat (for the element-wise steps).
struct Flat {
  float* data;
  index_t size;
  std::vector<py::ssize_t> shape;
};

Flat flat(const py::handle& obj, const char* name, bool writable) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a NumPy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!same_dtype<float>(arr))
    throw py::type_error(std::string(name) + " must have dtype float32, got " +
                         std::string(py::str(arr.dtype())));
  if (!(arr.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) + " must be C-contiguous");
  if (writable && !arr.writeable())
    throw std::invalid_argument(std::string(name) + " must be writable");
  Flat f{static_cast<float*>(const_cast<void*>(arr.data())), static_cast<index_t>(arr.size()),
         std::vector<py::ssize_t>(arr.shape(), arr.shape() + arr.ndim())};
  return f;
}

void same_shape(const Flat& a, const Flat& b, const char* na, const char* nb) {
  if (a.shape != b.shape)
    throw std::invalid_argument(std::string(na) + " and " + nb + " must have the same shape");
}

void sgd_step_py(py::handle p_obj, py::handle g_obj, float lr, py::handle v_obj, float momentum,
                 bool nesterov, float weight_decay) {
  const Flat p = flat(p_obj, "param", true), g = flat(g_obj, "grad", false);
  same_shape(p, g, "param", "grad");
  float* vel = nullptr;
  if (!v_obj.is_none()) {
    const Flat v = flat(v_obj, "velocity", true);
    same_shape(p, v, "param", "velocity");
    vel = v.data;
  } else if (momentum != 0.0f) {
    throw std::invalid_argument("momentum != 0 needs a velocity array");
  }
  py::gil_scoped_release nogil;
  sgd_step(p.data, g.data, p.size, lr, vel, momentum, nesterov, weight_decay);
}

void adam_step_py(py::handle p_obj, py::handle g_obj, py::handle m_obj, py::handle v_obj,
                  long long t, double lr, double beta_1, double beta_2, double epsilon,
                  float weight_decay) {
  const Flat p = flat(p_obj, "param", true), g = flat(g_obj, "grad", false);
  const Flat m = flat(m_obj, "m", true), v = flat(v_obj, "v", true);
  same_shape(p, g, "param", "grad");
  same_shape(p, m, "param", "m");
  same_shape(p, v, "param", "v");
  if (t < 1) throw std::invalid_argument("t must be >= 1 (the step number after this step)");
  const AdamStep s = AdamStep::make(lr, beta_1, beta_2, epsilon, t);
  py::gil_scoped_release nogil;
  adam_step(p.data, g.data, m.data, v.data, p.size, s, weight_decay);
}

// --- network -------------------------------------------------------------------------

// coefs[l] (fan_in, fan_out), intercepts[l] (fan_out,), and optional state lists.
Network make_network(const py::list& coefs, const py::list& intercepts, const py::object& s1W,
                     const py::object& s1b, const py::object& s2W, const py::object& s2b,
                     int act, bool writable) {
  const size_t L = coefs.size();
  if (L == 0 || intercepts.size() != L)
    throw std::invalid_argument("coefs and intercepts must be non-empty lists of equal length");
  auto state = [&](const py::object& lst, size_t l, const char* name, bool mat) -> py::handle {
    if (lst.is_none()) return py::handle();
    py::list ls = lst.cast<py::list>();
    if (ls.size() != L) throw std::invalid_argument(std::string(name) + " has the wrong length");
    (void)mat;
    return ls[l];
  };
  Network net;
  net.hidden = to_activation(act);
  for (size_t l = 0; l < L; ++l) {
    const View<float> W = contiguous<float>(coefs[l], "coefs[l]", 2, writable);
    const View<float> b = contiguous<float>(intercepts[l], "intercepts[l]", 1, writable);
    if (b.cols != W.cols)
      throw std::invalid_argument("intercepts[" + std::to_string(l) + "] does not match coefs");
    LayerView Ly;
    Ly.fan_in = W.rows, Ly.fan_out = W.cols, Ly.W = W.data, Ly.b = b.data;
    auto bind = [&](const py::object& lw, const py::object& lb, float** pw, float** pb,
                    const char* nw, const char* nb) {
      py::handle hw = state(lw, l, nw, true), hb = state(lb, l, nb, false);
      if (!hw || !hb) return;
      const View<float> sw = contiguous<float>(hw, nw, 2, true);
      const View<float> sb = contiguous<float>(hb, nb, 1, true);
      same_shape(W, sw, "coefs[l]", nw);
      same_shape(b, sb, "intercepts[l]", nb);
      *pw = sw.data, *pb = sb.data;
    };
    bind(s1W, s1b, &Ly.W_s1, &Ly.b_s1, "state1_coefs[l]", "state1_intercepts[l]");
    bind(s2W, s2b, &Ly.W_s2, &Ly.b_s2, "state2_coefs[l]", "state2_intercepts[l]");
    net.layers.push_back(Ly);
  }
  return net;
}

py::dict train_batches_py(py::list coefs, py::list intercepts, py::object s1W, py::object s1b,
                          py::object s2W, py::object s2b, py::handle X_obj, py::handle y_obj,
                          py::object sw_obj, py::handle order_obj, index_t batch_size, int act,
                          int solver, double lr, double momentum, bool nesterov, double alpha,
                          double beta_1, double beta_2, double epsilon, long long t,
                          int n_threads) {
  const Network net = make_network(coefs, intercepts, s1W, s1b, s2W, s2b, act, true);
  const View<float> X = contiguous<float>(X_obj, "X", 2, false);
  const View<std::int32_t> y = contiguous<std::int32_t>(y_obj, "y", 1, false);
  const View<std::int64_t> order = contiguous<std::int64_t>(order_obj, "order", 1, false);
  if (y.cols != X.rows) throw std::invalid_argument("X and y have different lengths");
  BatchPlan plan;
  plan.X = X.data, plan.n_samples = X.rows, plan.n_features = X.cols;
  plan.y = y.data;
  if (!sw_obj.is_none()) {
    const View<float> sw = contiguous<float>(sw_obj, "sample_weight", 1, false);
    if (sw.cols != X.rows) throw std::invalid_argument("sample_weight has the wrong length");
    plan.sample_weight = sw.data;
  }
  plan.order = order.data, plan.n_order = order.cols;
  plan.batch_size = batch_size;
  if (solver != 0 && solver != 1) throw std::invalid_argument("unknown solver code");
  OptimConfig opt;
  opt.solver = static_cast<Solver>(solver);
  opt.learning_rate = lr, opt.momentum = momentum, opt.nesterov = nesterov, opt.alpha = alpha;
  opt.beta_1 = beta_1, opt.beta_2 = beta_2, opt.epsilon = epsilon;
  ChunkResult r;
  {
    py::gil_scoped_release nogil;
    r = train_batches(net, plan, opt, t, n_threads);
  }
  py::dict d;
  d["loss_sum"] = r.loss_sum;
  d["weight_sum"] = r.weight_sum;
  d["n_correct"] = r.n_correct;
  d["n_samples"] = r.n_samples;
  d["n_batches"] = r.n_batches;
  d["t"] = r.t;
  d["finite"] = r.finite;
  return d;
}

py::array_t<float> predict_proba_py(py::list coefs, py::list intercepts, py::handle X_obj,
                                    int act, bool log, int n_threads) {
  const Network net = make_network(coefs, intercepts, py::none(), py::none(), py::none(),
                                   py::none(), act, false);
  const View<float> X = contiguous<float>(X_obj, "X", 2, false);
  if (X.cols != net.n_inputs())
    throw std::invalid_argument("X has " + std::to_string(X.cols) + " features, the network " +
                                "expects " + std::to_string(net.n_inputs()));
  auto out = new_matrix(X.rows, net.n_outputs());
  float* o = out.mutable_data();
  py::gil_scoped_release nogil;
  predict_proba(net, X.data, X.rows, o, log, n_threads);
  return out;
}

Isa parse_isa(const std::string& s) {
  if (s == "avx512") return Isa::AVX512;
  if (s == "avx2") return Isa::AVX2;
  if (s == "generic") return Isa::Generic;
  throw std::invalid_argument("isa must be 'avx512', 'avx2' or 'generic', got '" + s + "'");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastmlp's compiled core (private: use fastmlp.kernels and the estimators)";
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("trans_a"), py::arg("trans_b"),
        py::arg("n_threads"), py::arg("reference") = false, py::arg("out") = py::none(),
        py::arg("bias") = py::none(), py::arg("activation") = 0,
        py::arg("tile_epilogue") = false, py::arg("exact_threads") = false,
        py::arg("descent") = py::none(), py::arg("relu_gate") = py::none());
  m.def("activation", &activation, py::arg("x"), py::arg("act"), py::arg("out") = py::none());
  m.def("activation_backward", &activation_grad, py::arg("grad_out"), py::arg("out"),
        py::arg("act"), py::arg("grad_in") = py::none());
  m.def("softmax_cross_entropy", &softmax_cross_entropy_py, py::arg("logits"), py::arg("labels"),
        py::arg("grad_out") = py::none());
  m.def("sgd_step", &sgd_step_py, py::arg("param"), py::arg("grad"), py::arg("lr"),
        py::arg("velocity"), py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"));
  m.def("adam_step", &adam_step_py, py::arg("param"), py::arg("grad"), py::arg("m"),
        py::arg("v"), py::arg("t"), py::arg("lr"), py::arg("beta_1"), py::arg("beta_2"),
        py::arg("epsilon"), py::arg("weight_decay"));
  m.def("train_batches", &train_batches_py);
  m.def("predict_proba", &predict_proba_py, py::arg("coefs"), py::arg("intercepts"),
        py::arg("X"), py::arg("activation"), py::arg("log"), py::arg("n_threads"));
  m.def("detected_isa", [] { return std::string(isa_name(detected_isa())); });
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("set_isa", [](const std::string& s) { set_isa(parse_isa(s)); }, py::arg("isa"));
  m.def("max_threads", &default_num_threads);
#if defined(_OPENMP)
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}
