// The checked-array helpers of pyarray.hpp that are not templates.
#include "pyarray.hpp"

#include "kernels/gemm.hpp"

namespace fastmlp {

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
