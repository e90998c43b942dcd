// Depthwise conv2d (groups = C, depth multiplier M): forward and the two backward passes, one
// kernel each. Arrays checked like every op's (bindings/arrays.h).
#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "dispatch/dispatch.h"

namespace convforge::bindings {
namespace {

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;
using Shape4 = std::array<int64_t, 4>;  // an array's (N, C, H, W) or (K, 1, KH, KW)

// Weights (C * multiplier, 1, KH, KW), PyTorch's layout for groups = C.
ConvShape depthwise_shape(const Shape4& x, const Shape4& w, const Pair& stride, const Quad& padding,
                          const Pair& dilation) {
  if (w[1] != 1 || x[1] < 1 || w[0] < 1 || w[0] % x[1] != 0)
    throw py::value_error("depthwise_conv2d: w must have shape (C * depth_multiplier, 1, KH, KW) with C = " +
                          std::to_string(x[1]) + " channels of x, got (" + std::to_string(w[0]) + ", " +
                          std::to_string(w[1]) + ", " + std::to_string(w[2]) + ", " + std::to_string(w[3]) + ")");
  ConvShape s;
  s.mb = x[0], s.ic = x[1], s.ih = x[2], s.iw = x[3];
  s.oc = w[0], s.kh = w[2], s.kw = w[3];
  s.sh = stride[0], s.sw = stride[1];
  s.pt = padding[0], s.pb = padding[1], s.pl = padding[2], s.pr = padding[3];
  s.dh = dilation[0], s.dw = dilation[1];
  std::string err = complete_conv_shape(s);
  if (!err.empty()) throw py::value_error("depthwise_" + err);
  return s;
}

Shape4 dims4(const py::array& a) { return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)}; }

void check_dy(const py::array& dy, const ConvShape& s) {
  const Shape4 want{s.mb, s.oc, s.oh, s.ow};
  if (dims4(dy) != want)
    throw py::value_error("dy must have the shape of depthwise_conv2d's output (" + std::to_string(s.mb) + ", " +
                          std::to_string(s.oc) + ", " + std::to_string(s.oh) + ", " + std::to_string(s.ow) +
                          "), got " + shape_str(dy));
}

template <class T>
py::array fwd(const py::array& x, const py::array& w, const py::object& b, const Pair& stride, const Quad& padding,
              const Pair& dilation, const py::object& out) {
  check_input<T>(x, "x", 4);
  check_input<T>(w, "w", 4);
  const ConvShape s = depthwise_shape(dims4(x), dims4(w), stride, padding, dilation);
  py::array barr;
  const T* bias = optional_input<T>(b, "b", {s.oc}, "shape (to match w)", &barr);
  std::vector<Input> inputs{{x, "x"}, {w, "w"}};
  if (bias != nullptr) inputs.push_back({barr, "b"});
  py::array_t<T> y = make_output<T>(out, "out", {s.mb, s.oc, s.oh, s.ow}, inputs);
  const auto kernel = depthwise_conv2d_fwd_kernel<T>().fn;
  const T *px = data_of<T>(x), *pw = data_of<T>(w);
  T* py_ = y.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, px, pw, bias, py_);
  }
  return y;
}

template <class T>
py::array bwd_data(const py::array& dy, const py::array& w, const Shape4& x_shape, const Pair& stride,
                   const Quad& padding, const Pair& dilation, const py::object& out) {
  check_input<T>(dy, "dy", 4);
  check_input<T>(w, "w", 4);
  const ConvShape s = depthwise_shape(x_shape, dims4(w), stride, padding, dilation);
  check_dy(dy, s);
  py::array_t<T> dx = make_output<T>(out, "out", {x_shape.begin(), x_shape.end()}, {{dy, "dy"}, {w, "w"}});
  const auto kernel = depthwise_conv2d_bwd_data_kernel<T>().fn;
  const T *pdy = data_of<T>(dy), *pw = data_of<T>(w);
  T* pdx = dx.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, pdy, pw, pdx);
  }
  return dx;
}

template <class T>
py::tuple bwd_weights(const py::array& dy, const py::array& x, const Shape4& w_shape, const Pair& stride,
                      const Quad& padding, const Pair& dilation, bool need_bias, const py::object& out_w,
                      const py::object& out_b) {
  check_input<T>(dy, "dy", 4);
  check_input<T>(x, "x", 4);
  const ConvShape s = depthwise_shape(dims4(x), w_shape, stride, padding, dilation);
  check_dy(dy, s);
  py::array_t<T> dw = make_output<T>(out_w, "out_w", {w_shape.begin(), w_shape.end()}, {{dy, "dy"}, {x, "x"}});
  py::object db_obj = py::none();
  T* pdb = nullptr;
  if (need_bias) {
    py::array_t<T> db = make_output<T>(out_b, "out_b", {s.oc}, {{dy, "dy"}, {x, "x"}, {dw, "out_w"}});
    pdb = db.mutable_data();
    db_obj = db;
  }
  const auto kernel = depthwise_conv2d_bwd_weights_kernel<T>().fn;
  const T *pdy = data_of<T>(dy), *px = data_of<T>(x);
  T* pdw = dw.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, pdy, px, pdw, pdb);
  }
  return py::make_tuple(dw, db_obj);
}

}  // namespace

void bind_depthwise(py::module_& m) {
  m.def(
      "depthwise_conv2d_fwd",
      [](const py::array& x, const py::array& w, const py::object& b, const Pair& stride, const Quad& padding,
         const Pair& dilation, const py::object& out) {
        return with_dtype(x, "x", [&](auto tag) {
          return fwd<decltype(tag)>(x, w, b, stride, padding, dilation, out);
        });
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("out") = py::none(),
      "y[N, C*M, OH, OW]: each channel of x[N, C, H, W] convolved with its M filters w[C*M, 1, KH, KW], + b.");
  m.def(
      "depthwise_conv2d_bwd_data",
      [](const py::array& dy, const py::array& w, const Shape4& x_shape, const Pair& stride, const Quad& padding,
         const Pair& dilation, const py::object& out) {
        return with_dtype(dy, "dy", [&](auto tag) {
          return bwd_data<decltype(tag)>(dy, w, x_shape, stride, padding, dilation, out);
        });
      },
      py::arg("dy"), py::arg("w"), py::arg("x_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("out") = py::none(), "dx = gradient of depthwise_conv2d with respect to its input.");
  m.def(
      "depthwise_conv2d_bwd_weights",
      [](const py::array& dy, const py::array& x, const Shape4& w_shape, const Pair& stride, const Quad& padding,
         const Pair& dilation, bool need_bias, const py::object& out_w, const py::object& out_b) {
        return with_dtype(dy, "dy", [&](auto tag) {
          return bwd_weights<decltype(tag)>(dy, x, w_shape, stride, padding, dilation, need_bias, out_w, out_b);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("w_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("need_bias"), py::arg("out_w") = py::none(), py::arg("out_b") = py::none(),
      "(dw, db or None) = gradients of depthwise_conv2d with respect to its weights and bias.");
}

}  // namespace convforge::bindings
