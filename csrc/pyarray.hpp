// fastmlp/csrc/pyarray.hpp — the binding's one checked view of a NumPy array, shared by
// bindings.cpp and bindings_testing.cpp. Nothing is converted or copied: an array the
// core reads or writes must already have the dtype, dimensions and strides it needs,
// so a wrong one is an error (TypeError for the type, ValueError for the rest) instead
// of a silently updated copy.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "common.hpp"
#include "kernels/pixels.hpp"

namespace fastmlp {

namespace py = pybind11;

// A checked array seen as rows x cols with unit inner stride and row stride ld. Arrays
// asked for with ndim 0 (any dimensions, C-contiguous) are seen flat: 1 x size.
template <class T>
struct View {
  T* data = nullptr;
  index_t rows = 0, cols = 0, ld = 0;
  index_t size() const { return rows * cols; }
  const char* begin() const { return reinterpret_cast<const char*>(data); }
  const char* end() const {  // one past the last byte read
    return size() == 0 ? begin() : begin() + ((rows - 1) * ld + cols) * sizeof(T);
  }
};

enum ArrayFlags : unsigned { kRead = 0, kWritable = 1, kContiguous = 2 };

template <class T>
const char* dtype_name();
template <> inline const char* dtype_name<float>() { return "float32"; }
template <> inline const char* dtype_name<double>() { return "float64"; }
template <> inline const char* dtype_name<std::int32_t>() { return "int32"; }
template <> inline const char* dtype_name<std::int64_t>() { return "int64"; }

// obj as a View<T>: ndim 1 or 2 (0: any, C-contiguous); the last axis contiguous; with
// kWritable writable, with kContiguous no row padding.
template <class T>
View<T> checked(const py::handle& obj, const std::string& name, int ndim, unsigned flags = kRead) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(name + " must be a NumPy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  // Native byte order T (dtype objects compare by value: an unpickled float32 is new).
  if (!py::detail::npy_api::get().PyArray_EquivTypes_(arr.dtype().ptr(), py::dtype::of<T>().ptr()))
    throw py::type_error(name + " must have dtype " + dtype_name<T>() + ", got " +
                         std::string(py::str(arr.dtype())));
  if ((flags & kWritable) && !arr.writeable())
    throw std::invalid_argument(name + " must be writable");
  View<T> v;
  v.data = static_cast<T*>(const_cast<void*>(arr.data()));
  if (ndim == 0) {
    if (!(arr.flags() & py::array::c_style))
      throw std::invalid_argument(name + " must be C-contiguous");
    v.rows = 1, v.cols = v.ld = static_cast<index_t>(arr.size());
    return v;
  }
  if (arr.ndim() != ndim)
    throw std::invalid_argument(name + " must be " + std::to_string(ndim) + "-dimensional, got " +
                                std::to_string(arr.ndim()) + " dimensions");
  v.rows = ndim == 2 ? arr.shape(0) : 1;
  v.cols = v.ld = arr.shape(ndim - 1);
  if (arr.size() == 0) return v;  // nothing is read; empty arrays may have any strides
  const auto isz = static_cast<py::ssize_t>(sizeof(T));
  if (v.cols > 1 && arr.strides(ndim - 1) != isz)
    throw std::invalid_argument(name + " must be contiguous along its last axis");
  if (ndim == 2 && v.rows > 1) {
    if (arr.strides(0) % isz != 0 || arr.strides(0) / isz < v.cols)
      throw std::invalid_argument(name + " has an unsupported row stride");
    v.ld = arr.strides(0) / isz;
  }
  if ((flags & kContiguous) && v.rows > 1 && v.ld != v.cols)
    throw std::invalid_argument(name + " must be C-contiguous");
  return v;
}

template <class T, class U>
void same_shape(const View<T>& a, const View<U>& b, const std::string& na, const std::string& nb) {
  if (a.rows != b.rows || a.cols != b.cols)
    throw std::invalid_argument(na + " and " + nb + " must have the same shape");
}

// Whether the bytes [a0, a1) and [b0, b1) share one (an empty span shares none).
inline bool bytes_overlap(const char* a0, const char* a1, const char* b0, const char* b1) {
  return a0 < a1 && b0 < b1 && b0 < a1 && a0 < b1;
}

// An array written must not share memory with one read: the kernels stream through
// both and would read what they already overwrote.
template <class T, class U>
void no_overlap(const View<T>& out, const View<U>& in, const std::string& nout,
                const std::string& nin) {
  if (bytes_overlap(out.begin(), out.end(), in.begin(), in.end()))
    throw std::invalid_argument(nout + " must not overlap " + nin);
}

// std::invalid_argument "<nout> must not overlap <what>" when the span of out's bytes
// meets that of any NumPy array of `arrays`; nothing when out is None. All of them
// already checked (out by out_matrix, the arrays by make_network or input_of).
void no_overlap(const py::object& out, const py::iterable& arrays, const std::string& nout,
                const std::string& what);

py::array_t<float> new_matrix(index_t rows, index_t cols);

// The destination of a kernel: a new (rows, cols) array when out is None, else the
// caller's writable C-contiguous float32 array of exactly that shape (written in place).
py::array_t<float> out_matrix(const py::object& out, index_t rows, index_t cols,
                              const std::string& name);

struct GemmArgs;
// The product op(a) · op(b) into out (None: a new array), checked: shapes agree, out
// overlaps neither operand. Fills g's operands and c; the epilogue is left to the caller.
py::array_t<float> product_args(const py::handle& a, const py::handle& b, bool trans_a,
                                bool trans_b, const py::object& out, GemmArgs* g);

// The images a core call reads (_core.PixelInput): X (N, D) C-contiguous of any real
// dtype, with the affine a fitted PixelScaler applies to it, checked once per fit. The
// object keeps X alive for as long as the rows point into it.
struct PixelInput {
  py::object array;
  PixelRows rows;
};
// offset and scale: float64 (S,) each, finite, scale > 0; or both None for float32 X
// read as it is.
std::shared_ptr<PixelInput> pixel_input(py::handle X, py::object offset, py::object scale,
                                        bool channels_last);
// X as given to train_batches or predict_proba: a PixelInput, or a float32 array.
std::shared_ptr<PixelInput> input_of(py::handle X);

// Register the core's enums and structs, and what the core detected of the machine
// (bindings_types.cpp).
void bind_types(py::module_& core);
void bind_machine(py::module_& core);
// Registers the test-only module `_core.testing` (bindings_testing.cpp).
void bind_testing(py::module_& core);

}  // namespace fastmlp
