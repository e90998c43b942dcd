#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "dispatch/dispatch.h"
#include "kernels/conv2d/conv2d_winograd_mode.h"

namespace convforge::bindings {
namespace {

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;

ConvShape conv_shape(const std::array<int64_t, 4>& x, const std::array<int64_t, 4>& w, const Pair& stride,
                     const Quad& padding, const Pair& dilation) {
  ConvShape s;
  s.mb = x[0], s.ic = x[1], s.ih = x[2], s.iw = x[3];
  s.oc = w[0], s.kh = w[2], s.kw = w[3];
  s.sh = stride[0], s.sw = stride[1];
  s.pt = padding[0], s.pb = padding[1], s.pl = padding[2], s.pr = padding[3];
  s.dh = dilation[0], s.dw = dilation[1];
  if (w[1] != x[1])
    throw py::value_error("conv2d: x has " + std::to_string(x[1]) + " channels but w expects " + std::to_string(w[1]));
  const std::string err = complete_conv_shape(s);
  if (!err.empty()) throw py::value_error(err);
  return s;
}

std::array<int64_t, 4> dims4(const py::array& a) { return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)}; }

template <class T>
py::array_t<T> fwd(const py::array& x, const py::array& w, const py::object& b, const Pair& stride, const Quad& padding,
                   const Pair& dilation, const py::object& out, bool relu) {
  check_input<T>(x, "x", 4);
  check_input<T>(w, "w", 4);
  ConvShape s = conv_shape(dims4(x), dims4(w), stride, padding, dilation);
  s.relu = relu;
  const T* bias = nullptr;
  py::array barr;
  if (!b.is_none()) {
    if (!py::isinstance<py::array>(b)) throw py::type_error("b must be a numpy.ndarray or None");
    barr = py::reinterpret_borrow<py::array>(b);
    check_input<T>(barr, "b", 1);
    if (barr.shape(0) != s.oc)
      throw py::value_error("b must have shape (" + std::to_string(s.oc) + ",) to match w, got " + shape_str(barr));
    bias = static_cast<const T*>(barr.data());
  }
  py::array_t<T> y = output_array<T, 4>(out, "out", {s.mb, s.oc, s.oh, s.ow});
  const auto kernel = conv2d_fwd_kernel<T>().fn;
  const T* px = static_cast<const T*>(x.data());
  const T* pw = static_cast<const T*>(w.data());
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(s, px, pw, bias, py_);
  }
  return y;
}

template <class T>
py::array_t<T> bwd_data(const py::array& dy, const py::array& w, const std::array<int64_t, 4>& x_shape,
                        const Pair& stride, const Quad& padding, const Pair& dilation, const py::object& out) {
  check_input<T>(dy, "dy", 4);
  check_input<T>(w, "w", 4);
  const ConvShape s = conv_shape(x_shape, dims4(w), stride, padding, dilation);
  const std::array<int64_t, 4> want{s.mb, s.oc, s.oh, s.ow};
  if (dims4(dy) != want)
    throw py::value_error("dy must have the shape of conv2d's output (" + std::to_string(s.mb) + ", " +
                          std::to_string(s.oc) + ", " + std::to_string(s.oh) + ", " + std::to_string(s.ow) +
                          "), got " + shape_str(dy));
  py::array_t<T> dx = output_array<T, 4>(out, "out", x_shape);
  const auto kernel = conv2d_bwd_data_kernel<T>().fn;
  const T* pdy = static_cast<const T*>(dy.data());
  const T* pw = static_cast<const T*>(w.data());
  T* pdx = dx.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(s, pdy, pw, pdx);
  }
  return dx;
}

template <class T>
py::tuple bwd_weights(const py::array& dy, const py::array& x, const std::array<int64_t, 4>& w_shape,
                      const Pair& stride, const Quad& padding, const Pair& dilation, bool need_bias,
                      const py::object& out_w, const py::object& out_b) {
  check_input<T>(dy, "dy", 4);
  check_input<T>(x, "x", 4);
  const ConvShape s = conv_shape(dims4(x), w_shape, stride, padding, dilation);
  const std::array<int64_t, 4> want{s.mb, s.oc, s.oh, s.ow};
  if (dims4(dy) != want)
    throw py::value_error("dy must have the shape of conv2d's output (" + std::to_string(s.mb) + ", " +
                          std::to_string(s.oc) + ", " + std::to_string(s.oh) + ", " + std::to_string(s.ow) +
                          "), got " + shape_str(dy));
  py::array_t<T> dw = output_array<T, 4>(out_w, "out_w", w_shape);
  py::object db_obj = py::none();
  T* pdb = nullptr;
  if (need_bias) {
    py::array_t<T> db = output_array<T, 1>(out_b, "out_b", {s.oc});
    pdb = db.mutable_data();
    db_obj = db;
  }
  const auto kernel = conv2d_bwd_weights_kernel<T>().fn;
  const T* pdy = static_cast<const T*>(dy.data());
  const T* px = static_cast<const T*>(x.data());
  T* pdw = dw.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(s, pdy, px, pdw, pdb);
  }
  return py::make_tuple(dw, db_obj);
}

}  // namespace

void bind_conv2d(py::module_& m) {
  m.def(
      "conv2d_fwd",
      [](const py::array& x, const py::array& w, const py::object& b, const Pair& stride, const Quad& padding,
         const Pair& dilation, const py::object& out, bool relu) -> py::array {
        return is_float32(x, "x") ? py::array(fwd<float>(x, w, b, stride, padding, dilation, out, relu))
                                  : py::array(fwd<double>(x, w, b, stride, padding, dilation, out, relu));
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("out") = py::none(), py::arg("relu") = false,
      "y[N,K,OH,OW] = conv2d(x[N,C,H,W], w[K,C,R,S]) + b[K], then max(y, 0) if relu; padding is (top, bottom, "
      "left, right).");
  m.def(
      "conv2d_bwd_data",
      [](const py::array& dy, const py::array& w, const std::array<int64_t, 4>& x_shape, const Pair& stride,
         const Quad& padding, const Pair& dilation, const py::object& out) -> py::array {
        return is_float32(dy, "dy") ? py::array(bwd_data<float>(dy, w, x_shape, stride, padding, dilation, out))
                                    : py::array(bwd_data<double>(dy, w, x_shape, stride, padding, dilation, out));
      },
      py::arg("dy"), py::arg("w"), py::arg("x_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("out") = py::none(), "dx = gradient of conv2d with respect to its input.");
  m.def(
      "conv2d_bwd_weights",
      [](const py::array& dy, const py::array& x, const std::array<int64_t, 4>& w_shape, const Pair& stride,
         const Quad& padding, const Pair& dilation, bool need_bias, const py::object& out_w,
         const py::object& out_b) -> py::tuple {
        return is_float32(dy, "dy")
                   ? bwd_weights<float>(dy, x, w_shape, stride, padding, dilation, need_bias, out_w, out_b)
                   : bwd_weights<double>(dy, x, w_shape, stride, padding, dilation, need_bias, out_w, out_b);
      },
      py::arg("dy"), py::arg("x"), py::arg("w_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("need_bias"), py::arg("out_w") = py::none(), py::arg("out_b") = py::none(),
      "(dw, db or None) = gradients of conv2d with respect to its weights and bias.");
  m.def(
      "_set_conv2d_winograd",
      [](const std::string& mode) {
        if (mode == "auto") {
          set_winograd_mode(WinogradMode::automatic);
        } else if (mode == "on") {
          set_winograd_mode(WinogradMode::always);
        } else if (mode == "off") {
          set_winograd_mode(WinogradMode::never);
        } else {
          throw py::value_error("mode must be one of 'auto', 'on', 'off', got '" + mode + "'");
        }
      },
      py::arg("mode"),
      "Winograd for 3x3 unit-stride conv2d forward/backward-data: 'auto' (heuristic), 'on' (wherever it "
      "applies, float64 too), 'off' (tests and benchmarks).");
  m.def("_conv2d_winograd", [] {
    switch (winograd_mode()) {
      case WinogradMode::always: return std::string("on");
      case WinogradMode::never: return std::string("off");
      default: return std::string("auto");
    }
  });
}

}  // namespace convforge::bindings
