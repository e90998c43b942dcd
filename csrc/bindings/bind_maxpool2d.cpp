#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "dispatch/dispatch.h"

namespace convforge::bindings {
namespace {

using Pair = std::array<int64_t, 2>;

PoolShape pool_shape(const std::array<int64_t, 4>& x, const Pair& kernel, const Pair& stride, const Pair& padding,
                     const Pair& out_hw) {
  PoolShape s;
  s.mb = x[0], s.c = x[1], s.ih = x[2], s.iw = x[3];
  s.kh = kernel[0], s.kw = kernel[1], s.sh = stride[0], s.sw = stride[1];
  s.ph = padding[0], s.pw = padding[1], s.oh = out_hw[0], s.ow = out_hw[1];
  const std::string err = check_pool_shape(s);
  if (!err.empty()) throw py::value_error(err);
  return s;
}

template <class T>
py::object fwd(const py::array& x, const Pair& kernel, const Pair& stride, const Pair& padding, const Pair& out_hw,
               bool return_indices, const py::object& out, const py::object& out_indices) {
  check_input<T>(x, "x", 4);
  const PoolShape s = pool_shape({x.shape(0), x.shape(1), x.shape(2), x.shape(3)}, kernel, stride, padding, out_hw);
  py::array_t<T> y = output_array<T, 4>(out, "out", {s.mb, s.c, s.oh, s.ow});
  py::object idx_obj = py::none();
  int64_t* pidx = nullptr;
  if (return_indices) {
    py::array_t<int64_t> idx;
    if (out_indices.is_none()) {
      idx = py::array_t<int64_t>(std::vector<py::ssize_t>{s.mb, s.c, s.oh, s.ow});
    } else {
      // Checked before the cast: any other object read as an array is a wild pointer.
      if (!py::isinstance<py::array>(out_indices)) throw py::type_error("out_indices must be a numpy.ndarray");
      py::array a = py::reinterpret_borrow<py::array>(out_indices);
      if (!has_dtype<int64_t>(a) || a.ndim() != 4 || !(a.flags() & py::array::c_style) ||
          !(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) || !a.writeable() || a.shape(0) != s.mb ||
          a.shape(1) != s.c || a.shape(2) != s.oh || a.shape(3) != s.ow)
        throw py::value_error("out_indices must be a writable C-contiguous int64 array of the output's shape");
      idx = py::reinterpret_borrow<py::array_t<int64_t>>(a);
    }
    pidx = idx.mutable_data();
    idx_obj = idx;
  }
  const auto kernel_fn = maxpool2d_fwd_kernel<T>(s).fn;
  const T* px = static_cast<const T*>(x.data());
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release release;
    kernel_fn(s, px, py_, pidx);
  }
  if (return_indices) return py::make_tuple(y, idx_obj);
  return std::move(y);
}

template <class T>
py::array_t<T> bwd(const py::array& dy, const py::array& indices, const std::array<int64_t, 4>& x_shape,
                   const py::object& out, const py::object& gate) {
  check_input<T>(dy, "dy", 4);
  if (!has_dtype<int64_t>(indices))
    throw py::type_error("indices must be int64 (as returned by max_pool2d), got " +
                         std::string(py::str(indices.dtype())));
  if (indices.ndim() != 4 || !(indices.flags() & py::array::c_style) ||
      !(indices.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error("indices must be a C-contiguous, aligned 4-D array, got shape " + shape_str(indices));
  for (int i = 0; i < 4; ++i) {
    if (indices.shape(i) != dy.shape(i))
      throw py::value_error("indices must have the shape of dy " + shape_str(dy) + ", got " + shape_str(indices));
  }
  // H and W bounded like every other dimension (check_pool_shape), so that H*W cannot overflow.
  constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;
  if (x_shape[0] != dy.shape(0) || x_shape[1] != dy.shape(1) || x_shape[2] < 1 || x_shape[3] < 1 ||
      x_shape[2] > kMaxDim || x_shape[3] > kMaxDim)
    throw py::value_error("input_shape must be (N, C, H, W) with the N and C of dy " + shape_str(dy) +
                          " and 1 <= H, W <= 2147483647");
  PoolShape s;
  s.mb = x_shape[0], s.c = x_shape[1], s.ih = x_shape[2], s.iw = x_shape[3];
  s.oh = dy.shape(2), s.ow = dy.shape(3);
  const int64_t plane = s.ih * s.iw;
  const int64_t* pidx = static_cast<const int64_t*>(indices.data());
  const T* pgate = nullptr;
  py::array garr;
  if (!gate.is_none()) {
    if (!py::isinstance<py::array>(gate)) throw py::type_error("gate must be a numpy.ndarray or None");
    garr = py::reinterpret_borrow<py::array>(gate);
    check_input<T>(garr, "gate", 4);
    for (int i = 0; i < 4; ++i) {
      if (garr.shape(i) != x_shape[static_cast<std::size_t>(i)])
        throw py::value_error("gate must have the input's shape, got " + shape_str(garr));
    }
    pgate = static_cast<const T*>(garr.data());
  }
  py::array_t<T> dx = output_array<T, 4>(out, "out", x_shape);
  if (pgate != nullptr) check_no_overlap(dx, "out", garr, "gate");
  const auto kernel_fn = maxpool2d_bwd_kernel<T>().fn;
  const T* pdy = static_cast<const T*>(dy.data());
  T* pdx = dx.mutable_data();
  int64_t bad_plane;
  {
    py::gil_scoped_release release;
    bad_plane = kernel_fn(s, pdy, pidx, pgate, pdx);
  }
  // The kernel checked every index and wrote nothing outside dx; name the first bad one.
  if (bad_plane >= 0) {
    for (int64_t i = bad_plane * s.oh * s.ow;; ++i) {
      if (pidx[i] < 0 || pidx[i] >= plane)
        throw py::value_error("indices[" + std::to_string(i) + "] = " + std::to_string(pidx[i]) +
                              " is outside the input plane of " + std::to_string(s.ih) + "x" + std::to_string(s.iw) +
                              " (valid: 0.." + std::to_string(plane - 1) + ")");
    }
  }
  return dx;
}

}  // namespace

void bind_maxpool2d(py::module_& m) {
  m.def(
      "maxpool2d_fwd",
      [](const py::array& x, const Pair& kernel, const Pair& stride, const Pair& padding, const Pair& out_hw,
         bool return_indices, const py::object& out, const py::object& out_indices) -> py::object {
        return is_float32(x, "x") ? fwd<float>(x, kernel, stride, padding, out_hw, return_indices, out, out_indices)
                                  : fwd<double>(x, kernel, stride, padding, out_hw, return_indices, out, out_indices);
      },
      py::arg("x"), py::arg("kernel"), py::arg("stride"), py::arg("padding"), py::arg("out_hw"),
      py::arg("return_indices"), py::arg("out") = py::none(), py::arg("out_indices") = py::none(),
      "Max-pooling of NCHW x; with return_indices also the argmax (flat position in each input plane).");
  m.def(
      "maxpool2d_bwd",
      [](const py::array& dy, const py::array& indices, const std::array<int64_t, 4>& x_shape,
         const py::object& out, const py::object& gate) -> py::array {
        return is_float32(dy, "dy") ? py::array(bwd<float>(dy, indices, x_shape, out, gate))
                                    : py::array(bwd<double>(dy, indices, x_shape, out, gate));
      },
      py::arg("dy"), py::arg("indices"), py::arg("x_shape"), py::arg("out") = py::none(),
      py::arg("gate") = py::none(),
      "dx: dy scattered (added) onto zeros of x_shape at the argmax indices; with gate (the pool's input, "
      "a ReLU's output) only where gate > 0: that ReLU's backward, fused. An index outside its input "
      "plane raises ValueError; nothing is ever written outside dx (whose contents are then unspecified).");
}

}  // namespace convforge::bindings
