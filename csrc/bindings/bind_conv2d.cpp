#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "dispatch/dispatch.h"

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

// The forced algorithm's name, or "" for the default choice.
std::string algorithm_name(const py::object& algorithm) {
  if (algorithm.is_none()) return "";
  if (!py::isinstance<py::str>(algorithm)) throw py::type_error("algorithm must be a str or None");
  return algorithm.cast<std::string>();
}

// Chooses the pass's algorithm (ValueError if a forced one cannot run) and runs it without the
// GIL. The choice reads the inputs (finiteness) and writes nothing, so a refused call leaves
// every output untouched.
template <class T>
void run_conv2d(ConvPass pass, const ConvShape& s, const ConvTensors<T>& t, const std::string& forced) {
  std::string error;
  {
    py::gil_scoped_release release;
    if (const ConvAlgo<T>* algo = choose_conv2d_algorithm<T>(pass, s, t, forced.c_str(), &error)) algo->run(s, t);
  }
  if (!error.empty()) throw py::value_error(error);
}

std::array<int64_t, 4> dims4(const py::array& a) { return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)}; }

template <class T>
py::array_t<T> fwd(const py::array& x, const py::array& w, const py::object& b, const Pair& stride, const Quad& padding,
                   const Pair& dilation, const py::object& out, bool relu, const py::object& algorithm) {
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
  const std::string forced = algorithm_name(algorithm);
  py::array_t<T> y = output_array<T, 4>(out, "out", {s.mb, s.oc, s.oh, s.ow});
  ConvTensors<T> t;
  t.src = static_cast<const T*>(x.data()), t.wei = static_cast<const T*>(w.data()), t.bias = bias;
  t.dst = y.mutable_data();
  run_conv2d(ConvPass::fwd, s, t, forced);
  return y;
}

template <class T>
py::array_t<T> bwd_data(const py::array& dy, const py::array& w, const std::array<int64_t, 4>& x_shape,
                        const Pair& stride, const Quad& padding, const Pair& dilation, const py::object& out,
                        const py::object& algorithm) {
  check_input<T>(dy, "dy", 4);
  check_input<T>(w, "w", 4);
  const ConvShape s = conv_shape(x_shape, dims4(w), stride, padding, dilation);
  const std::array<int64_t, 4> want{s.mb, s.oc, s.oh, s.ow};
  if (dims4(dy) != want)
    throw py::value_error("dy must have the shape of conv2d's output (" + std::to_string(s.mb) + ", " +
                          std::to_string(s.oc) + ", " + std::to_string(s.oh) + ", " + std::to_string(s.ow) +
                          "), got " + shape_str(dy));
  const std::string forced = algorithm_name(algorithm);
  py::array_t<T> dx = output_array<T, 4>(out, "out", x_shape);
  ConvTensors<T> t;
  t.diff_dst = static_cast<const T*>(dy.data()), t.wei = static_cast<const T*>(w.data());
  t.diff_src = dx.mutable_data();
  run_conv2d(ConvPass::bwd_data, s, t, forced);
  return dx;
}

template <class T>
py::tuple bwd_weights(const py::array& dy, const py::array& x, const std::array<int64_t, 4>& w_shape,
                      const Pair& stride, const Quad& padding, const Pair& dilation, bool need_bias,
                      const py::object& out_w, const py::object& out_b, const py::object& algorithm) {
  check_input<T>(dy, "dy", 4);
  check_input<T>(x, "x", 4);
  const ConvShape s = conv_shape(dims4(x), w_shape, stride, padding, dilation);
  const std::array<int64_t, 4> want{s.mb, s.oc, s.oh, s.ow};
  if (dims4(dy) != want)
    throw py::value_error("dy must have the shape of conv2d's output (" + std::to_string(s.mb) + ", " +
                          std::to_string(s.oc) + ", " + std::to_string(s.oh) + ", " + std::to_string(s.ow) +
                          "), got " + shape_str(dy));
  const std::string forced = algorithm_name(algorithm);
  py::array_t<T> dw = output_array<T, 4>(out_w, "out_w", w_shape);
  py::object db_obj = py::none();
  T* pdb = nullptr;
  if (need_bias) {
    py::array_t<T> db = output_array<T, 1>(out_b, "out_b", {s.oc});
    pdb = db.mutable_data();
    db_obj = db;
  }
  ConvTensors<T> t;
  t.diff_dst = static_cast<const T*>(dy.data()), t.src = static_cast<const T*>(x.data());
  t.diff_wei = dw.mutable_data(), t.diff_bias = pdb;
  run_conv2d(ConvPass::bwd_weights, s, t, forced);
  return py::make_tuple(dw, db_obj);
}

}  // namespace

void bind_conv2d(py::module_& m) {
  m.def(
      "conv2d_fwd",
      [](const py::array& x, const py::array& w, const py::object& b, const Pair& stride, const Quad& padding,
         const Pair& dilation, const py::object& out, bool relu, const py::object& algorithm) -> py::array {
        return is_float32(x, "x") ? py::array(fwd<float>(x, w, b, stride, padding, dilation, out, relu, algorithm))
                                  : py::array(fwd<double>(x, w, b, stride, padding, dilation, out, relu, algorithm));
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("out") = py::none(), py::arg("relu") = false, py::arg("algorithm") = py::none(),
      "y[N,K,OH,OW] = conv2d(x[N,C,H,W], w[K,C,R,S]) + b[K], then max(y, 0) if relu; padding is (top, bottom, "
      "left, right).");
  m.def(
      "conv2d_bwd_data",
      [](const py::array& dy, const py::array& w, const std::array<int64_t, 4>& x_shape, const Pair& stride,
         const Quad& padding, const Pair& dilation, const py::object& out, const py::object& algorithm) -> py::array {
        return is_float32(dy, "dy")
                   ? py::array(bwd_data<float>(dy, w, x_shape, stride, padding, dilation, out, algorithm))
                   : py::array(bwd_data<double>(dy, w, x_shape, stride, padding, dilation, out, algorithm));
      },
      py::arg("dy"), py::arg("w"), py::arg("x_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("out") = py::none(), py::arg("algorithm") = py::none(), "dx = gradient of conv2d with respect to its input.");
  m.def(
      "conv2d_bwd_weights",
      [](const py::array& dy, const py::array& x, const std::array<int64_t, 4>& w_shape, const Pair& stride,
         const Quad& padding, const Pair& dilation, bool need_bias, const py::object& out_w,
         const py::object& out_b, const py::object& algorithm) -> py::tuple {
        return is_float32(dy, "dy")
                   ? bwd_weights<float>(dy, x, w_shape, stride, padding, dilation, need_bias, out_w, out_b, algorithm)
                   : bwd_weights<double>(dy, x, w_shape, stride, padding, dilation, need_bias, out_w, out_b, algorithm);
      },
      py::arg("dy"), py::arg("x"), py::arg("w_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("need_bias"), py::arg("out_w") = py::none(), py::arg("out_b") = py::none(),
      py::arg("algorithm") = py::none(),
      "(dw, db or None) = gradients of conv2d with respect to its weights and bias.");
  m.def(
      "conv2d_algorithms",
      [](const std::array<int64_t, 4>& x_shape, const std::array<int64_t, 4>& w_shape, const Pair& stride,
         const Quad& padding, const Pair& dilation, const std::string& dtype) -> py::dict {
        if (dtype != "float32" && dtype != "float64")
          throw py::value_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
        const ConvShape s = conv_shape(x_shape, w_shape, stride, padding, dilation);
        py::dict out;
        for (ConvPass pass : {ConvPass::fwd, ConvPass::bwd_data, ConvPass::bwd_weights}) {
          const std::vector<std::string> names = dtype == "float32"
                                                     ? applicable_conv2d_algorithms<float>(pass, s, {})
                                                     : applicable_conv2d_algorithms<double>(pass, s, {});
          out[conv_pass_name(pass)] = py::tuple(py::cast(names));
        }
        return out;
      },
      py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("dtype") = "float32",
      "{pass: names of the algorithms that apply, best-first} on the active ISA, for finite data.");
}

}  // namespace convforge::bindings
