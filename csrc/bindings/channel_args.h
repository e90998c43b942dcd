// Argument checks shared by the per-channel bindings (batchnorm, global pooling).
#pragma once

#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "kernels/channel_ops.h"

namespace convforge::bindings {

// (N, C, ...) -> mb = N, c = C, hw = the product of the rest (1 for (N, C)).
template <class T>
ChannelShape channel_shape(const py::array& x, const char* name) {
  if (x.ndim() < 2)
    throw py::value_error(std::string(name) + " must have at least 2 dimensions (N, C, ...), got shape " +
                          shape_str(x));
  check_input<T>(x, name, x.ndim());
  ChannelShape s;
  s.mb = x.shape(0), s.c = x.shape(1), s.hw = 1;
  for (py::ssize_t i = 2; i < x.ndim(); ++i) s.hw *= x.shape(i);
  if (s.size() == 0) throw py::value_error(std::string(name) + " is empty, shape " + shape_str(x));
  return s;
}

// A per-channel vector (C,) of dtype T, or null for None.
template <class T>
const T* channel_vector(const py::object& v, const char* name, int64_t c) {
  if (v.is_none()) return nullptr;
  if (!py::isinstance<py::array>(v)) throw py::type_error(std::string(name) + " must be a numpy.ndarray or None");
  const auto a = py::reinterpret_borrow<py::array>(v);
  check_input<T>(a, name, 1);
  if (a.shape(0) != c)
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(c) + ",), one value per channel, got " +
                          shape_str(a));
  return static_cast<const T*>(a.data());
}

// `out` (checked like output_array) or a new array, with the shape of `like`.
template <class T>
py::array_t<T> output_like(const py::object& out, const char* name, const py::array& like) {
  std::vector<py::ssize_t> dims(like.shape(), like.shape() + like.ndim());
  if (out.is_none()) return py::array_t<T>(dims);
  if (!py::isinstance<py::array>(out)) throw py::type_error(std::string(name) + " must be a numpy.ndarray");
  auto a = py::reinterpret_borrow<py::array>(out);
  check_input<T>(a, name, like.ndim());
  for (py::ssize_t i = 0; i < like.ndim(); ++i)
    if (a.shape(i) != like.shape(i))
      throw py::value_error(std::string(name) + " must have shape " + shape_str(like) + ", got " + shape_str(a));
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only");
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

}  // namespace convforge::bindings
