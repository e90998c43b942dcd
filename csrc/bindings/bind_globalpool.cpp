// Global average and max pooling of (N, C, H, W) to (N, C), and their backward passes. Arrays
// checked like every op's (bindings/arrays.h).
#include <pybind11/stl.h>

#include "bindings/channel_args.h"
#include "dispatch/dispatch.h"

namespace convforge::bindings {
namespace {

using Shape4 = std::array<int64_t, 4>;

template <class T>
ChannelShape image_shape(const py::array& x) {
  if (x.ndim() != 4) throw py::value_error("x must have 4 dimensions (N, C, H, W), got shape " + shape_str(x));
  return channel_shape<T>(x, "x");
}

// The forward input shape given to a backward: (N, C) must match dy's, H and W >= 1.
ChannelShape shape_from(const py::array& dy, const Shape4& input_shape) {
  if (dy.ndim() != 2) throw py::value_error("dy must have 2 dimensions (N, C), got shape " + shape_str(dy));
  if (input_shape[0] != dy.shape(0) || input_shape[1] != dy.shape(1) || input_shape[2] < 1 || input_shape[3] < 1 ||
      input_shape[2] > (int64_t{1} << 31) || input_shape[3] > (int64_t{1} << 31))
    throw py::value_error("input_shape must be (N, C, H, W) with N, C = " + shape_str(dy) + " of dy and H, W >= 1");
  ChannelShape s;
  s.mb = input_shape[0], s.c = input_shape[1], s.hw = input_shape[2] * input_shape[3];
  return s;
}

template <class T>
py::array avg_fwd(const py::array& x, const py::object& out) {
  const ChannelShape s = image_shape<T>(x);
  py::array_t<T> y = make_output<T>(out, "out", {s.mb, s.c}, {{x, "x"}});
  const auto kernel = global_avg_pool2d_fwd_kernel<T>().fn;
  const T* px = data_of<T>(x);
  T* py_ = y.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, px, py_);
  }
  return y;
}

template <class T>
py::array avg_bwd(const py::array& dy, const Shape4& input_shape, const py::object& out) {
  check_input<T>(dy, "dy", 2);
  const ChannelShape s = shape_from(dy, input_shape);
  py::array_t<T> dx = make_output<T>(out, "out", {input_shape.begin(), input_shape.end()}, {{dy, "dy"}});
  const auto kernel = global_avg_pool2d_bwd_kernel<T>().fn;
  const T* pdy = data_of<T>(dy);
  T* pdx = dx.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, pdy, pdx);
  }
  return dx;
}

template <class T>
py::object max_fwd(const py::array& x, bool return_indices, const py::object& out, const py::object& out_indices) {
  const ChannelShape s = image_shape<T>(x);
  py::array_t<T> y = make_output<T>(out, "out", {s.mb, s.c}, {{x, "x"}});
  py::array_t<int64_t> idx;
  int64_t* pidx = nullptr;
  if (return_indices) {
    idx = make_output<int64_t>(out_indices, "out_indices", {s.mb, s.c}, {{x, "x"}, {y, "out"}});
    pidx = idx.mutable_data();
  }
  const auto kernel = global_max_pool2d_fwd_kernel<T>().fn;
  const T* px = data_of<T>(x);
  T* py_ = y.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, px, py_, pidx);
  }
  if (return_indices) return py::make_tuple(y, idx);
  return std::move(y);
}

template <class T>
py::array max_bwd(const py::array& dy, const py::array& indices, const Shape4& input_shape, const py::object& out) {
  check_input<T>(dy, "dy", 2);
  const ChannelShape s = shape_from(dy, input_shape);
  if (!has_dtype<int64_t>(indices) || indices.ndim() != 2 || !(indices.flags() & py::array::c_style) ||
      !(indices.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::type_error("indices must be a C-contiguous int64 array (N, C) as returned by global_max_pool2d");
  if (indices.shape(0) != dy.shape(0) || indices.shape(1) != dy.shape(1))
    throw py::value_error("indices must have the shape of dy " + shape_str(dy) + ", got " + shape_str(indices));
  py::array_t<T> dx =
      make_output<T>(out, "out", {input_shape.begin(), input_shape.end()}, {{dy, "dy"}, {indices, "indices"}});
  const auto kernel = global_max_pool2d_bwd_kernel<T>().fn;
  const T* pdy = data_of<T>(dy);
  const int64_t* pidx = static_cast<const int64_t*>(indices.data());
  T* pdx = dx.mutable_data();
  int64_t bad;
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    bad = kernel(s, pdy, pidx, pdx);
  }
  if (bad >= 0)
    throw py::value_error("indices[" + std::to_string(bad / s.c) + ", " + std::to_string(bad % s.c) +
                          "] is outside the plane of H*W = " + std::to_string(s.hw) +
                          " values: pass the indices global_max_pool2d returned");
  return dx;
}

}  // namespace

void bind_globalpool(py::module_& m) {
  m.def(
      "global_avg_pool2d_fwd",
      [](const py::array& x, const py::object& out) {
        return with_dtype(x, "x", [&](auto tag) { return avg_fwd<decltype(tag)>(x, out); });
      },
      py::arg("x"), py::arg("out") = py::none(), "y[N, C] = mean of x[N, C, :, :] (summed in double).");
  m.def(
      "global_avg_pool2d_bwd",
      [](const py::array& dy, const Shape4& input_shape, const py::object& out) {
        return with_dtype(dy, "dy", [&](auto tag) { return avg_bwd<decltype(tag)>(dy, input_shape, out); });
      },
      py::arg("dy"), py::arg("input_shape"), py::arg("out") = py::none(), "dx[N, C, :, :] = dy[N, C] / (H * W).");
  m.def(
      "global_max_pool2d_fwd",
      [](const py::array& x, bool return_indices, const py::object& out, const py::object& out_indices) {
        return with_dtype(x, "x", [&](auto tag) {
          return max_fwd<decltype(tag)>(x, return_indices, out, out_indices);
        });
      },
      py::arg("x"), py::arg("return_indices") = false, py::arg("out") = py::none(),
      py::arg("out_indices") = py::none(),
      "y[N, C] = max of x[N, C, :, :] (first maximum; NaN wins), and its position h * W + w.");
  m.def(
      "global_max_pool2d_bwd",
      [](const py::array& dy, const py::array& indices, const Shape4& input_shape, const py::object& out) {
        return with_dtype(dy, "dy", [&](auto tag) { return max_bwd<decltype(tag)>(dy, indices, input_shape, out); });
      },
      py::arg("dy"), py::arg("indices"), py::arg("input_shape"), py::arg("out") = py::none(),
      "dx: dy[N, C] at each plane's recorded maximum, 0 elsewhere.");
}

}  // namespace convforge::bindings
