// conv2d's three passes and its algorithm query. Each call builds the plan (the completed
// ConvShape) once, checks every array, then chooses the pass's algorithm and runs it.
#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "dispatch/dispatch.h"

namespace convforge::bindings {
namespace {

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;

ConvShape conv_plan(const Quad& x, const Quad& w, const Pair& stride, const Quad& padding, const Pair& dilation) {
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

Quad dims4(const py::array& a) { return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)}; }

void check_dy(const py::array& dy, const ConvShape& s) {
  if (dims4(dy) != Quad{s.mb, s.oc, s.oh, s.ow})
    throw py::value_error("dy must have the shape of conv2d's output (" + std::to_string(s.mb) + ", " +
                          std::to_string(s.oc) + ", " + std::to_string(s.oh) + ", " + std::to_string(s.ow) +
                          "), got " + shape_str(dy));
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
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    if (const ConvAlgo<T>* algo = choose_conv2d_algorithm<T>(pass, s, t, forced.c_str(), &error)) algo->run(s, t);
  }
  if (!error.empty()) throw py::value_error(error);
}

template <class T>
py::array fwd(const py::array& x, const py::array& w, const py::object& b, const Pair& stride, const Quad& padding,
              const Pair& dilation, const py::object& out, bool relu, const py::object& algorithm) {
  check_input<T>(x, "x", 4);
  check_input<T>(w, "w", 4);
  ConvShape s = conv_plan(dims4(x), dims4(w), stride, padding, dilation);
  s.relu = relu;
  py::array barr;
  const T* bias = optional_input<T>(b, "b", {s.oc}, "shape", &barr);
  const std::string forced = algorithm_name(algorithm);
  std::vector<Input> inputs{{x, "x"}, {w, "w"}};
  if (bias != nullptr) inputs.push_back({barr, "b"});
  py::array_t<T> y = make_output<T>(out, "out", {s.mb, s.oc, s.oh, s.ow}, inputs);
  ConvTensors<T> t;
  t.src = data_of<T>(x), t.wei = data_of<T>(w), t.bias = bias, t.dst = y.mutable_data();
  run_conv2d(ConvPass::fwd, s, t, forced);
  return std::move(y);
}

template <class T>
py::array bwd_data(const py::array& dy, const py::array& w, const Quad& x_shape, const Pair& stride,
                   const Quad& padding, const Pair& dilation, const py::object& out, const py::object& algorithm) {
  check_input<T>(dy, "dy", 4);
  check_input<T>(w, "w", 4);
  const ConvShape s = conv_plan(x_shape, dims4(w), stride, padding, dilation);
  check_dy(dy, s);
  const std::string forced = algorithm_name(algorithm);
  py::array_t<T> dx = make_output<T>(out, "out", {x_shape.begin(), x_shape.end()}, {{dy, "dy"}, {w, "w"}});
  ConvTensors<T> t;
  t.diff_dst = data_of<T>(dy), t.wei = data_of<T>(w), t.diff_src = dx.mutable_data();
  run_conv2d(ConvPass::bwd_data, s, t, forced);
  return std::move(dx);
}

template <class T>
py::tuple bwd_weights(const py::array& dy, const py::array& x, const Quad& w_shape, const Pair& stride,
                      const Quad& padding, const Pair& dilation, bool need_bias, const py::object& out_w,
                      const py::object& out_b, const py::object& algorithm) {
  check_input<T>(dy, "dy", 4);
  check_input<T>(x, "x", 4);
  const ConvShape s = conv_plan(dims4(x), w_shape, stride, padding, dilation);
  check_dy(dy, s);
  const std::string forced = algorithm_name(algorithm);
  py::array_t<T> dw = make_output<T>(out_w, "out_w", {w_shape.begin(), w_shape.end()}, {{dy, "dy"}, {x, "x"}});
  py::object db_obj = py::none();
  T* pdb = nullptr;
  if (need_bias) {
    py::array_t<T> db = make_output<T>(out_b, "out_b", {s.oc}, {{dy, "dy"}, {x, "x"}, {dw, "out_w"}});
    pdb = db.mutable_data();
    db_obj = db;
  }
  ConvTensors<T> t;
  t.diff_dst = data_of<T>(dy), t.src = data_of<T>(x), t.diff_wei = dw.mutable_data(), t.diff_bias = pdb;
  run_conv2d(ConvPass::bwd_weights, s, t, forced);
  return py::make_tuple(dw, db_obj);
}

py::dict algorithms(const Quad& x_shape, const Quad& w_shape, const Pair& stride, const Quad& padding,
                    const Pair& dilation, const std::string& dtype) {
  if (dtype != "float32" && dtype != "float64")
    throw py::value_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
  const ConvShape s = conv_plan(x_shape, w_shape, stride, padding, dilation);
  py::dict out;
  for (ConvPass pass : {ConvPass::fwd, ConvPass::bwd_data, ConvPass::bwd_weights}) {
    const std::vector<std::string> names = dtype == "float32" ? applicable_conv2d_algorithms<float>(pass, s, {})
                                                              : applicable_conv2d_algorithms<double>(pass, s, {});
    out[conv_pass_name(pass)] = py::tuple(py::cast(names));
  }
  return out;
}

}  // namespace

void bind_conv2d(py::module_& m) {
  m.def(
      "conv2d_fwd",
      [](const py::array& x, const py::array& w, const py::object& b, const Pair& stride, const Quad& padding,
         const Pair& dilation, const py::object& out, bool relu, const py::object& algorithm) {
        return with_dtype(x, "x", [&](auto tag) {
          return fwd<decltype(tag)>(x, w, b, stride, padding, dilation, out, relu, algorithm);
        });
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("out") = py::none(), py::arg("relu") = false, py::arg("algorithm") = py::none(),
      "y[N,K,OH,OW] = conv2d(x[N,C,H,W], w[K,C,R,S]) + b[K], then max(y, 0) if relu; padding is (top, bottom, "
      "left, right); algorithm forces one of conv2d_algorithms()['fwd'].");
  m.def(
      "conv2d_bwd_data",
      [](const py::array& dy, const py::array& w, const Quad& x_shape, const Pair& stride, const Quad& padding,
         const Pair& dilation, const py::object& out, const py::object& algorithm) {
        return with_dtype(dy, "dy", [&](auto tag) {
          return bwd_data<decltype(tag)>(dy, w, x_shape, stride, padding, dilation, out, algorithm);
        });
      },
      py::arg("dy"), py::arg("w"), py::arg("x_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("out") = py::none(), py::arg("algorithm") = py::none(),
      "dx = gradient of conv2d with respect to its input.");
  m.def(
      "conv2d_bwd_weights",
      [](const py::array& dy, const py::array& x, const Quad& w_shape, const Pair& stride, const Quad& padding,
         const Pair& dilation, bool need_bias, const py::object& out_w, const py::object& out_b,
         const py::object& algorithm) {
        return with_dtype(dy, "dy", [&](auto tag) {
          return bwd_weights<decltype(tag)>(dy, x, w_shape, stride, padding, dilation, need_bias, out_w, out_b,
                                            algorithm);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("w_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("need_bias"), py::arg("out_w") = py::none(), py::arg("out_b") = py::none(),
      py::arg("algorithm") = py::none(),
      "(dw, db or None) = gradients of conv2d with respect to its weights and bias.");
  m.def("conv2d_algorithms", &algorithms, py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("dtype") = "float32",
        "{pass: names of the algorithms that apply, best-first} on the active ISA, for finite data.");
}

}  // namespace convforge::bindings
