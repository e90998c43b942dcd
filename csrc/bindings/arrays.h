// Argument checks shared by every binding: inputs (check_input, optional_input), outputs
// (make_output: dtype, shape, contiguity, writeable, no overlap with any input) and the dtype
// switch (with_dtype). The Python layer (convforge.functional) already normalises and validates
// with friendlier wording; these checks make the private _core safe on its own: wrong input here
// is a ValueError/TypeError, never a crash, and nothing is written before every check passed.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/gil.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace convforge::bindings {

namespace py = pybind11;

template <class T>
const char* dtype_name() {
  if constexpr (std::is_integral_v<T>) return "int64";  // the only integer output: pooling indices
  return sizeof(T) == 4 ? "float32" : "float64";
}

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// dtype equality, not identity: a float32 dtype that went through pickle, deepcopy or
// newbyteorder('=') is an equal but distinct object. Byte-swapped dtypes are not equivalent.
template <class T>
bool has_dtype(const py::array& a) {
  return py::detail::npy_api::get().PyArray_EquivTypes_(a.dtype().ptr(), py::dtype::of<T>().ptr());
}

// A C-contiguous, aligned, native-endian T array of `ndim` dimensions, or TypeError/ValueError.
template <class T>
void check_input(const py::array& a, const char* name, py::ssize_t ndim) {
  if (!has_dtype<T>(a))
    throw py::type_error(std::string(name) + " must be " + dtype_name<T>() +
                         (std::is_integral_v<T> ? "" : " like the other arrays") + ", got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + " must have " + std::to_string(ndim) + " dimensions, got shape " +
                          shape_str(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous (np.ascontiguousarray)");
  // A view made at an odd byte offset of a uint8 buffer: dereferencing it is undefined behaviour.
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(name) + " must be aligned to its itemsize (np.require(a, requirements='A'))");
}

// An input array and its argument name, for the overlap checks of make_output.
struct Input {
  const py::array& array;
  const char* name;
  bool may_alias = false;  // `out` may be exactly this array (an elementwise op in place)
};

inline std::string dims_str(const int64_t* dims, std::size_t n) {
  std::string s = "(";
  for (std::size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (n == 1 ? ",)" : ")");
}

// ValueError if `out`'s bytes overlap `in`'s: the kernels read their inputs while they write (a
// matrix product into its own operand would read what it has overwritten). With may_alias, `out`
// may be `in` itself (same first byte and size), never a shifted part of it.
inline void check_no_overlap(const py::array& out, const char* out_name, const Input& in) {
  const char* o = static_cast<const char*>(out.data());
  const char* i = static_cast<const char*>(in.array.data());
  const auto on = static_cast<std::ptrdiff_t>(out.nbytes()), inn = static_cast<std::ptrdiff_t>(in.array.nbytes());
  if (in.may_alias && o == i && on == inn) return;
  if (on > 0 && inn > 0 && o < i + inn && i < o + on)
    throw py::value_error(std::string(out_name) + " must not share memory with " + in.name +
                          (in.may_alias ? " (except by being " + std::string(in.name) + " itself)" : ""));
}

// The output of one op: `out` if given, once checked (a T numpy array of exactly `shape`,
// C-contiguous, aligned, writeable, sharing no memory with any of `inputs`), else a new array.
// Checks only, writes nothing: a refused call leaves every array as it was. Ops with several
// outputs pass the outputs made before as inputs of the next, so outputs never overlap either.
template <class T>
py::array_t<T> make_output(const py::object& out, const char* name, const std::vector<int64_t>& shape,
                           const std::vector<Input>& inputs) {
  if (out.is_none()) return py::array_t<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  if (!py::isinstance<py::array>(out))
    throw py::type_error(std::string(name) + " must be a numpy.ndarray or None, got " +
                         std::string(py::str(py::type::of(out).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(out);
  check_input<T>(a, name, static_cast<py::ssize_t>(shape.size()));
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (a.shape(static_cast<py::ssize_t>(i)) != shape[i])
      throw py::value_error(std::string(name) + " must have shape " + dims_str(shape.data(), shape.size()) +
                            ", got " + shape_str(a));
  }
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only");
  for (const Input& in : inputs) check_no_overlap(a, name, in);
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

// An optional input (a bias, a gate): None gives null; else a checked T array of `shape`
// ("<name> must have <what> <shape>" when not), kept alive in *keep.
template <class T>
const T* optional_input(const py::object& obj, const char* name, const std::vector<int64_t>& shape,
                        const char* what, py::array* keep) {
  if (obj.is_none()) return nullptr;
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy.ndarray or None");
  *keep = py::reinterpret_borrow<py::array>(obj);
  check_input<T>(*keep, name, static_cast<py::ssize_t>(shape.size()));
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (keep->shape(static_cast<py::ssize_t>(i)) != shape[i])
      throw py::value_error(std::string(name) + " must have " + what + " " + dims_str(shape.data(), shape.size()) +
                            ", got " + shape_str(*keep));
  }
  return static_cast<const T*>(keep->data());
}

// f(float{}) or f(double{}) by the dtype of `a` (the op's first array); TypeError otherwise.
template <class F>
auto with_dtype(const py::array& a, const char* name, F&& f) {
  if (has_dtype<float>(a)) return f(float{});
  if (has_dtype<double>(a)) return f(double{});
  throw py::type_error(std::string(name) + " must be float32 or float64, got " + std::string(py::str(a.dtype())));
}

template <class T>
const T* data_of(const py::array& a) {
  return static_cast<const T*>(a.data());
}

}  // namespace convforge::bindings
