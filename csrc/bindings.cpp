// fastmlp/csrc/bindings.cpp — the Python face of the C++ core, kept thin: check every
// buffer (pyarray.hpp), release the GIL, call. No math here. Enumerations and the
// optimizer configuration are read from the core's own tables, so Python spells no code.
// std::invalid_argument becomes ValueError, pybind11::type_error TypeError,
// std::bad_alloc MemoryError.
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/activation.hpp"
#include "kernels/gemm.hpp"
#include "kernels/loss.hpp"
#include "kernels/optim.hpp"
#include "pyarray.hpp"
#include "train.hpp"

namespace fastmlp {

namespace {

py::array_t<float> matmul(py::handle a, py::handle b, bool trans_a, bool trans_b, int n_threads,
                          py::object out) {
  GemmArgs g;
  auto c = product_args(a, b, trans_a, trans_b, out, &g);
  py::gil_scoped_release nogil;
  sgemm_parallel(g, n_threads);
  return c;
}

// The element-wise kernels copy their input row by row into out, then work in place.
py::array_t<float> activation(py::handle x_obj, Activation f, py::object out_obj) {
  const View<float> x = checked<float>(x_obj, "x", 2);
  auto out = out_matrix(out_obj, x.rows, x.cols, "out");
  const View<float> o = checked<float>(out, "out", 2);
  if (o.data != x.data) no_overlap(o, x, "out", "x");  // exactly in place is fine
  py::gil_scoped_release nogil;
  for (index_t r = 0; r < x.rows; ++r)
    std::copy(x.data + r * x.ld, x.data + r * x.ld + x.cols, o.data + r * x.cols);
  activation_forward(f, o.data, x.rows, x.cols, x.cols);
  return out;
}

py::array_t<float> activation_grad(py::handle g_obj, py::handle y_obj, Activation f,
                                   py::object out_obj) {
  const View<float> g = checked<float>(g_obj, "grad_out", 2), y = checked<float>(y_obj, "out", 2);
  same_shape(g, y, "grad_out", "out");
  auto out = out_matrix(out_obj, g.rows, g.cols, "grad_in");
  const View<float> o = checked<float>(out, "grad_in", 2);
  no_overlap(o, y, "grad_in", "out");
  if (o.data != g.data) no_overlap(o, g, "grad_in", "grad_out");
  py::gil_scoped_release nogil;
  for (index_t r = 0; r < g.rows; ++r)
    std::copy(g.data + r * g.ld, g.data + r * g.ld + g.cols, o.data + r * g.cols);
  activation_backward(f, o.data, g.cols, y.data, y.ld, g.rows, g.cols);
  return out;
}

py::tuple softmax_cross_entropy_py(py::handle z_obj, py::handle y_obj, float smoothing,
                                   py::object out_obj) {
  if (!(smoothing >= 0.0f && smoothing < 1.0f))
    throw std::invalid_argument("label_smoothing must lie in [0, 1)");
  const View<float> z = checked<float>(z_obj, "logits", 2);
  const View<std::int32_t> y = checked<std::int32_t>(y_obj, "labels", 1);
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
  const View<float> gv = checked<float>(grad, "grad_out", 2);
  // The gradient may overwrite the logits exactly in place (row by row), never shifted.
  if (!(gv.data == z.data && gv.ld == z.ld)) no_overlap(gv, z, "grad_out", "logits");
  std::vector<double> row_loss(z.rows);
  double total = 0;
  {
    py::gil_scoped_release nogil;
    const float scale = z.rows > 0 ? static_cast<float>(1.0 / z.rows) : 0.0f;
    softmax_cross_entropy(z.data, z.ld, y.data, nullptr, z.rows, z.cols, scale, smoothing,
                          gv.data, z.cols, row_loss.data(), nullptr);
    for (double l : row_loss) total += l;
  }
  return py::make_tuple(z.rows > 0 ? total / z.rows : 0.0, grad);
}

std::vector<py::ssize_t> shape_of(py::handle obj) {
  auto arr = py::reinterpret_borrow<py::array>(obj);
  return std::vector<py::ssize_t>(arr.shape(), arr.shape() + arr.ndim());
}

// The arrays of one element-wise optimizer step: all of param's shape, none overlapping.
std::vector<View<float>> step_arrays(const std::vector<std::pair<py::handle, const char*>>& arrs) {
  std::vector<View<float>> v;
  for (size_t i = 0; i < arrs.size(); ++i) {
    v.push_back(checked<float>(arrs[i].first, arrs[i].second, 0, i == 1 ? kRead : kWritable));
    if (shape_of(arrs[i].first) != shape_of(arrs[0].first))
      throw std::invalid_argument(std::string(arrs[i].second) +
                                  " and param must have the same shape");
    for (size_t j = 0; j < i; ++j) no_overlap(v[i], v[j], arrs[i].second, arrs[j].second);
  }
  return v;
}

// The single steps' hyperparameters, as float32 (pybind11 rounds a double beyond its
// range to infinity).
void check_step_hyperparameters(float lr, float momentum, float l2) {
  if (!(lr > 0.0f && std::isfinite(lr)))
    throw std::invalid_argument("lr must be positive and finite in float32");
  if (!(momentum >= 0.0f && momentum <= 1.0f))
    throw std::invalid_argument("momentum must lie in [0, 1]");
  if (!(l2 >= 0.0f && std::isfinite(l2)))
    throw std::invalid_argument("l2 must be non-negative and finite in float32");
}

void sgd_step_py(py::handle p, py::handle g, float lr, py::object velocity, float momentum,
                 bool nesterov, float l2) {
  check_step_hyperparameters(lr, momentum, l2);
  if (velocity.is_none() && momentum != 0.0f)
    throw std::invalid_argument("momentum != 0 needs a velocity array");
  std::vector<std::pair<py::handle, const char*>> arrs = {{p, "param"}, {g, "grad"}};
  if (!velocity.is_none()) arrs.push_back({velocity, "velocity"});
  const auto v = step_arrays(arrs);
  py::gil_scoped_release nogil;
  sgd_step(v[0].data, v[1].data, v[0].size(), lr, v.size() > 2 ? v[2].data : nullptr, momentum,
           nesterov, l2);
}

void adam_step_py(py::handle p, py::handle g, py::handle m, py::handle v, long long t,
                  const OptimConfig& c, float l2) {
  if (c.solver != Solver::Adam) throw std::invalid_argument("adam_step needs an Adam config");
  if (const char* why = invalid_config(c)) throw std::invalid_argument(why);
  if (t < 1) throw std::invalid_argument("t must be >= 1 (the step number after this step)");
  check_step_hyperparameters(1.0f, 0.0f, l2);
  const auto a = step_arrays({{p, "param"}, {g, "grad"}, {m, "m"}, {v, "v"}});
  const StepRule rule = StepRule::make(c, t, 1.0);
  if (!std::isfinite(rule.lr_t))
    throw std::invalid_argument("the bias-corrected step lr*sqrt(1-beta_2^t)/(1-beta_1^t) "
                                "overflows float32");
  py::gil_scoped_release nogil;
  adam_step(a[0].data, a[1].data, a[2].data, a[3].data, a[0].size(), rule, l2);
}

// coefs[l] (fan_in, fan_out), intercepts[l] (fan_out,); state maps a slot name to its
// (coefs-shaped, intercepts-shaped) lists.
Network make_network(const py::list& coefs, const py::list& intercepts, const py::dict& state,
                     Activation hidden, unsigned flags) {
  const size_t L = coefs.size();
  if (L == 0 || intercepts.size() != L)
    throw std::invalid_argument("coefs and intercepts must be non-empty lists of equal length");
  Network net;
  net.hidden = hidden;
  for (size_t l = 0; l < L; ++l) {
    const std::string at = "[" + std::to_string(l) + "]";
    const View<float> W = checked<float>(coefs[l], "coefs" + at, 2, flags | kContiguous);
    const View<float> b = checked<float>(intercepts[l], "intercepts" + at, 1, flags);
    if (b.cols != W.cols)
      throw std::invalid_argument("intercepts" + at + " has " + std::to_string(b.cols) +
                                  " entries, coefs" + at + " " + std::to_string(W.cols) +
                                  " columns");
    net.layers.push_back({W.rows, W.cols, W.data, b.data, {}, {}});
  }
  for (auto item : state) {
    const std::string slot = py::str(item.first);
    int k = 0;
    while (k < kSlotCount && slot != kSlotNames[k]) ++k;
    if (k == kSlotCount) throw std::invalid_argument("unknown optimizer state slot '" + slot + "'");
    const auto lists = item.second.cast<std::pair<py::list, py::list>>();
    if (lists.first.size() != L || lists.second.size() != L)
      throw std::invalid_argument("state '" + slot + "' must have one array per layer");
    for (size_t l = 0; l < L; ++l) {
      const std::string at = "state['" + slot + "'][" + std::to_string(l) + "]";
      const View<float> sw =
          checked<float>(lists.first[l], at + " (weights)", 2, kWritable | kContiguous);
      const View<float> sb = checked<float>(lists.second[l], at + " (biases)", 1, kWritable);
      LayerView& Ly = net.layers[l];
      if (sw.rows != Ly.fan_in || sw.cols != Ly.fan_out || sb.cols != Ly.fan_out)
        throw std::invalid_argument(at + " does not have the shape of its parameters");
      Ly.W_state.slot[k] = sw.data, Ly.b_state.slot[k] = sb.data;
    }
  }
  return net;
}

// steps (1,) int64 holds the optimizer's step count and totals (4,) float64 the epoch's
// sums (loss, sample weight, correct, samples); both advance here, with the GIL held and
// before Python regains control, so a KeyboardInterrupt arriving as the call returns
// cannot leave the weights trained and their step count behind.
// X: a PixelInput or a float32 array; sample_rows: None, or int64 (n_samples,) rows of X.
ChunkResult train_batches_py(py::list coefs, py::list intercepts, py::dict state, py::handle X_obj,
                             py::handle y_obj, py::object sw_obj, py::handle order_obj,
                             index_t batch_size, Activation activation,
                             const OptimConfig& optimizer, const TrainOptions& options,
                             py::handle steps_obj, py::handle totals_obj, int n_threads,
                             py::object rows_obj) {
  const Network net = make_network(coefs, intercepts, state, activation, kWritable);
  const auto X = input_of(X_obj);
  const View<std::int32_t> y = checked<std::int32_t>(y_obj, "y", 1);
  const View<std::int64_t> order = checked<std::int64_t>(order_obj, "order", 1);
  const View<std::int64_t> steps = checked<std::int64_t>(steps_obj, "steps", 1, kWritable);
  const View<double> totals = checked<double>(totals_obj, "totals", 1, kWritable);
  if (steps.cols != 1 || totals.cols != 4)
    throw std::invalid_argument("steps must have 1 entry and totals 4");
  BatchPlan plan;
  plan.X = &X->rows, plan.n_samples = y.cols, plan.y = y.data;
  if (!rows_obj.is_none()) {
    const View<std::int64_t> rows = checked<std::int64_t>(rows_obj, "sample_rows", 1);
    if (rows.cols != y.cols)
      throw std::invalid_argument("sample_rows and y have different lengths");
    plan.sample_rows = rows.data;
  }
  if (!sw_obj.is_none()) {
    const View<float> sw = checked<float>(sw_obj, "sample_weight", 1);
    if (sw.cols != y.cols)
      throw std::invalid_argument("sample_weight and y have different lengths");
    plan.sample_weight = sw.data;
  }
  plan.order = order.data, plan.n_order = order.cols, plan.batch_size = batch_size;
  ChunkResult r;
  {
    py::gil_scoped_release nogil;
    r = train_batches(net, plan, optimizer, options, steps.data[0], n_threads,
                      RunningSums{totals.data[0], totals.data[1]});
  }
  steps.data[0] = r.t;
  totals.data[0] = r.loss_sum, totals.data[1] = r.weight_sum;
  totals.data[2] += static_cast<double>(r.n_correct);
  totals.data[3] += static_cast<double>(r.n_samples);
  return r;
}

// X: a PixelInput or a float32 array; rows: None (every row) or int64 indices into X.
// bf16: None or a Bf16Weights made from these coefs; out: None or a float32 (n, n_classes)
// array written in place; check_outputs: an output that is not finite raises ValueError.
py::array_t<float> predict_proba_py(py::list coefs, py::list intercepts, py::handle X_obj,
                                    Activation activation, bool log, int n_threads,
                                    py::object rows_obj, py::object bf16_obj, py::object out_obj,
                                    bool check_outputs) {
  const Network net = make_network(coefs, intercepts, py::dict(), activation, kRead);
  const auto X = input_of(X_obj);
  View<std::int64_t> rows;
  if (!rows_obj.is_none()) rows = checked<std::int64_t>(rows_obj, "rows", 1);
  const index_t n = rows_obj.is_none() ? X->rows.rows() : rows.cols;
  if (!bf16_obj.is_none() && !py::isinstance<Bf16Weights>(bf16_obj))
    throw py::type_error("bf16 must be a Bf16Weights or None");
  const Bf16Weights* bf16 = bf16_obj.is_none() ? nullptr : bf16_obj.cast<const Bf16Weights*>();
  auto out = out_matrix(out_obj, n, net.n_outputs(), "out");
  no_overlap(out_obj, py::make_tuple(X->array), "out", "X");
  no_overlap(out_obj, coefs + intercepts, "out", "the model's weights");
  float* o = out.mutable_data();
  py::gil_scoped_release nogil;
  predict_proba(net, X->rows, rows.data, n, o, log, n_threads, bf16, check_outputs);
  return out;
}

}  // namespace

}  // namespace fastmlp

using namespace fastmlp;

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastmlp's compiled core (private: use fastmlp.kernels and the estimators)";
  bind_types(m);
  // Positional (five arguments): keyword parsing would cost more than a tiny product.
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("trans_a"), py::arg("trans_b"),
        py::arg("n_threads"), py::arg("out") = py::none());
  m.def("activation", &activation, py::arg("x"), py::arg("act"), py::arg("out") = py::none());
  m.def("activation_backward", &activation_grad, py::arg("grad_out"), py::arg("out"),
        py::arg("act"), py::arg("grad_in") = py::none());
  m.def("softmax_cross_entropy", &softmax_cross_entropy_py, py::arg("logits"), py::arg("labels"),
        py::kw_only(), py::arg("label_smoothing") = 0.0f, py::arg("grad_out") = py::none());
  m.def("sgd_step", &sgd_step_py, py::arg("param"), py::arg("grad"), py::kw_only(), py::arg("lr"),
        py::arg("velocity"), py::arg("momentum"), py::arg("nesterov"), py::arg("l2"));
  m.def("adam_step", &adam_step_py, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
        py::kw_only(), py::arg("t"), py::arg("config"), py::arg("l2"));
  m.def("train_batches", &train_batches_py, py::kw_only(), py::arg("coefs"), py::arg("intercepts"),
        py::arg("state"), py::arg("X"), py::arg("y"), py::arg("sample_weight"), py::arg("order"),
        py::arg("batch_size"), py::arg("activation"), py::arg("optimizer"), py::arg("options"),
        py::arg("steps"), py::arg("totals"), py::arg("n_threads"),
        py::arg("sample_rows") = py::none());
  m.def("predict_proba", &predict_proba_py, py::arg("coefs"), py::arg("intercepts"), py::arg("X"),
        py::kw_only(), py::arg("activation"), py::arg("log"), py::arg("n_threads"),
        py::arg("rows") = py::none(), py::arg("bf16") = py::none(), py::arg("out") = py::none(),
        py::arg("check_outputs") = true);
  py::class_<Bf16Weights>(m, "Bf16Weights", "a network's weights laid out for bfloat16 products")
      .def(py::init([](py::list coefs, py::list intercepts) {
             const Network net =
                 make_network(coefs, intercepts, py::dict(), Activation::ReLU, kRead);
             py::gil_scoped_release nogil;
             return std::make_unique<Bf16Weights>(net);
           }), py::arg("coefs"), py::arg("intercepts"));
  bind_machine(m);
  bind_testing(m);
}
