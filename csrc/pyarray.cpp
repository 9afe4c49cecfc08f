// The checked-array helpers of pyarray.hpp that are not templates.
#include "pyarray.hpp"

#include <cmath>
#include <utility>

#include "kernels/gemm.hpp"

namespace fastmlp {

namespace {

template <class T>
bool has_dtype(const py::array& a) {
  return py::detail::npy_api::get().PyArray_EquivTypes_(a.dtype().ptr(), py::dtype::of<T>().ptr());
}

// X's dtype as a PixelType: any real dtype in native byte order, bool and float16 excepted
// (the estimator converts those).
PixelType pixel_type(const py::array& a) {
  const std::pair<bool (*)(const py::array&), PixelType> types[] = {
      {has_dtype<float>, PixelType::kFloat32},        {has_dtype<double>, PixelType::kFloat64},
      {has_dtype<std::uint8_t>, PixelType::kUInt8},   {has_dtype<std::int8_t>, PixelType::kInt8},
      {has_dtype<std::uint16_t>, PixelType::kUInt16}, {has_dtype<std::int16_t>, PixelType::kInt16},
      {has_dtype<std::uint32_t>, PixelType::kUInt32}, {has_dtype<std::int32_t>, PixelType::kInt32},
      {has_dtype<std::uint64_t>, PixelType::kUInt64}, {has_dtype<std::int64_t>, PixelType::kInt64}};
  for (const auto& t : types)
    if (t.first(a)) return t.second;
  throw py::type_error("X must have a real dtype of native byte order (uint8 ... int64, float32 "
                       "or float64), got " + std::string(py::str(a.dtype())));
}

std::vector<double> statistics(const py::object& obj, const char* name) {
  const View<double> v = checked<double>(obj, name, 1);
  std::vector<double> out(v.data, v.data + v.cols);
  for (double x : out)
    if (!std::isfinite(x)) throw std::invalid_argument(std::string(name) + " must be finite");
  return out;
}

}  // namespace

std::shared_ptr<PixelInput> pixel_input(py::handle X, py::object offset, py::object scale,
                                        bool channels_last) {
  if (!py::isinstance<py::array>(X)) throw py::type_error("X must be a NumPy array");
  auto arr = py::reinterpret_borrow<py::array>(X);
  if (arr.ndim() != 2) throw std::invalid_argument("X must be 2-dimensional");
  if (!(arr.flags() & py::array::c_style)) throw std::invalid_argument("X must be C-contiguous");
  PixelAffine affine;
  affine.channels_last = channels_last;
  if (offset.is_none() != scale.is_none())
    throw std::invalid_argument("offset and scale must be given together");
  if (!offset.is_none()) {
    affine.offset = statistics(offset, "offset"), affine.scale = statistics(scale, "scale");
    if (affine.scale.empty()) throw std::invalid_argument("scale must not be empty");
    for (double s : affine.scale)
      if (!(s > 0)) throw std::invalid_argument("scale must be positive");
  } else if (!has_dtype<float>(arr)) {
    throw py::type_error("X must have dtype float32, got " + std::string(py::str(arr.dtype())));
  }
  const PixelType type = pixel_type(arr);
  return std::make_shared<PixelInput>(PixelInput{
      py::reinterpret_borrow<py::object>(X),
      PixelRows(arr.data(), type, arr.shape(0), arr.shape(1), std::move(affine))});
}

std::shared_ptr<PixelInput> input_of(py::handle X) {
  if (py::isinstance<PixelInput>(X)) return X.cast<std::shared_ptr<PixelInput>>();
  return pixel_input(X, py::none(), py::none(), true);
}

void no_overlap(const py::object& out_obj, const py::iterable& arrays, const std::string& nout,
                const std::string& what) {
  if (out_obj.is_none()) return;
  const auto span = [](const py::handle& h) {  // contiguous arrays: their nbytes in a row
    const auto a = py::reinterpret_borrow<py::array>(h);
    const auto* p = static_cast<const char*>(a.data());
    return std::make_pair(p, p + a.nbytes());
  };
  const auto o = span(out_obj);
  for (const py::handle& h : arrays) {
    const auto b = span(h);
    if (bytes_overlap(o.first, o.second, b.first, b.second))
      throw std::invalid_argument(nout + " must not overlap " + what);
  }
}

py::array_t<float> new_matrix(index_t rows, index_t cols) {
  return py::array_t<float>({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
}

py::array_t<float> out_matrix(const py::object& out, index_t rows, index_t cols,
                              const std::string& name) {
  if (out.is_none()) return new_matrix(rows, cols);
  const View<float> o = checked<float>(out, name, 2, kWritable | kContiguous);
  if (o.rows != rows || o.cols != cols)
    throw std::invalid_argument(name + " has shape (" + std::to_string(o.rows) + ", " +
                                std::to_string(o.cols) + "), expected (" + std::to_string(rows) +
                                ", " + std::to_string(cols) + ")");
  return py::reinterpret_borrow<py::array_t<float>>(out);
}

py::array_t<float> product_args(const py::handle& a_obj, const py::handle& b_obj, bool trans_a,
                                bool trans_b, const py::object& out, GemmArgs* g) {
  const View<float> a = checked<float>(a_obj, "a", 2), b = checked<float>(b_obj, "b", 2);
  const index_t m = trans_a ? a.cols : a.rows, ka = trans_a ? a.rows : a.cols;
  const index_t kb = trans_b ? b.cols : b.rows, n = trans_b ? b.rows : b.cols;
  if (ka != kb)
    throw std::invalid_argument("matmul: inner dimensions differ: op(a) is (" + std::to_string(m) +
                                ", " + std::to_string(ka) + "), op(b) is (" + std::to_string(kb) +
                                ", " + std::to_string(n) + ")");
  auto c = out_matrix(out, m, n, "out");
  if (!out.is_none()) {  // a new array overlaps nothing
    const View<float> cv = checked<float>(c, "out", 2);
    no_overlap(cv, a, "out", "a"), no_overlap(cv, b, "out", "b");
  }
  g->m = m, g->n = n, g->k = ka;
  g->a = a.data, g->lda = a.ld, g->trans_a = trans_a;
  g->b = b.data, g->ldb = b.ld, g->trans_b = trans_b;
  g->c = c.mutable_data(), g->ldc = n;
  return c;
}

}  // namespace fastmlp
