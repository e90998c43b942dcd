// Argument checks shared by the per-channel bindings (batchnorm, global pooling), on top of
// the helpers every binding uses (bindings/arrays.h).
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
  // Empty batches never reach here: convforge.functional answers them without a kernel call.
  if (s.size() == 0) throw py::value_error(std::string(name) + " is empty, shape " + shape_str(x));
  return s;
}

// A per-channel vector (C,) of dtype T, or null for None; kept alive in *keep and added to
// *inputs (for the out= overlap checks) when given.
template <class T>
const T* channel_vector(const py::object& v, const char* name, int64_t c, py::array* keep,
                        std::vector<Input>* inputs) {
  const T* p = optional_input<T>(v, name, {c}, "one value per channel, shape", keep);
  if (p != nullptr) inputs->push_back({*keep, name});
  return p;
}

inline std::vector<int64_t> dims_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

}  // namespace convforge::bindings
