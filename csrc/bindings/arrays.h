// Argument checks shared by the bindings. The Python layer (convforge.functional) already
// normalises and validates with friendlier wording; these checks make the private _core safe
// on its own: wrong input here is a ValueError/TypeError, never a crash.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/gil.h"

#include <array>
#include <cstdint>
#include <string>

namespace convforge::bindings {

namespace py = pybind11;

template <class T>
const char* dtype_name() {
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
    throw py::type_error(std::string(name) + " must be " + dtype_name<T>() + " like the other arrays, got " +
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

// `out` if given (checked: dtype, exact shape, C-contiguous, writable), else a new array.
template <class T, std::size_t N>
py::array_t<T> output_array(const py::object& out, const char* name, const std::array<int64_t, N>& shape) {
  if (out.is_none()) {
    std::vector<py::ssize_t> dims(shape.begin(), shape.end());
    return py::array_t<T>(dims);
  }
  if (!py::isinstance<py::array>(out)) throw py::type_error(std::string(name) + " must be a numpy.ndarray");
  py::array a = py::reinterpret_borrow<py::array>(out);
  check_input<T>(a, name, static_cast<py::ssize_t>(N));
  for (std::size_t i = 0; i < N; ++i) {
    if (a.shape(static_cast<py::ssize_t>(i)) != shape[i]) {
      std::string want = "(";
      for (std::size_t j = 0; j < N; ++j) want += (j ? ", " : "") + std::to_string(shape[j]);
      throw py::value_error(std::string(name) + " must have shape " + want + "), got " + shape_str(a));
    }
  }
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only");
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

// ValueError if the output's bytes overlap an input's: the kernels read their inputs while
// they write (a matrix product into its own operand would read what it has overwritten).
inline void check_no_overlap(const py::array& out, const char* out_name, const py::array& in, const char* in_name) {
  const char* o = static_cast<const char*>(out.data());
  const char* i = static_cast<const char*>(in.data());
  if (out.nbytes() > 0 && in.nbytes() > 0 && o < i + in.nbytes() && i < o + out.nbytes())
    throw py::value_error(std::string(out_name) + " must not share memory with " + in_name);
}

// True for float32, false for float64; TypeError otherwise.
inline bool is_float32(const py::array& a, const char* name) {
  if (has_dtype<float>(a)) return true;
  if (has_dtype<double>(a)) return false;
  throw py::type_error(std::string(name) + " must be float32 or float64, got " + std::string(py::str(a.dtype())));
}

}  // namespace convforge::bindings
