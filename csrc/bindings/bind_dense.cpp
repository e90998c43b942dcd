// Dense (Keras's Dense without its activation): forward, backward-data, backward-weights.
#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "dispatch/dispatch.h"

namespace convforge::bindings {
namespace {

DenseShape dense_shape(int64_t batch, int64_t in_features, int64_t units) {
  DenseShape s;
  s.mb = batch, s.ic = in_features, s.oc = units;
  const std::string err = check_dense_shape(s);
  if (!err.empty()) throw py::value_error(err);
  return s;
}

template <class T>
py::array fwd(const py::array& x, const py::array& w, const py::object& b, const py::object& out) {
  check_input<T>(x, "x", 2);
  check_input<T>(w, "w", 2);
  if (w.shape(0) != x.shape(1))
    throw py::value_error("dense: x has " + std::to_string(x.shape(1)) + " features but w expects " +
                          std::to_string(w.shape(0)) + " (w has shape " + shape_str(w) + " = (in_features, units))");
  const DenseShape s = dense_shape(x.shape(0), x.shape(1), w.shape(1));
  py::array barr;
  const T* bias = optional_input<T>(b, "b", {s.oc}, "shape", &barr);
  std::vector<Input> inputs{{x, "x"}, {w, "w"}};
  if (bias != nullptr) inputs.push_back({barr, "b"});
  py::array_t<T> y = make_output<T>(out, "out", {s.mb, s.oc}, inputs);
  const auto kernel = dense_fwd_kernel<T>().fn;
  const T *px = data_of<T>(x), *pw = data_of<T>(w);
  T* py_ = y.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, px, pw, bias, py_);
  }
  return std::move(y);
}

template <class T>
py::array bwd_data(const py::array& dy, const py::array& w, const py::object& out) {
  check_input<T>(dy, "dy", 2);
  check_input<T>(w, "w", 2);
  if (dy.shape(1) != w.shape(1))
    throw py::value_error("dense: dy has " + std::to_string(dy.shape(1)) + " units but w has " +
                          std::to_string(w.shape(1)) + " (w has shape " + shape_str(w) + " = (in_features, units))");
  const DenseShape s = dense_shape(dy.shape(0), w.shape(0), w.shape(1));
  py::array_t<T> dx = make_output<T>(out, "out", {s.mb, s.ic}, {{dy, "dy"}, {w, "w"}});
  const auto kernel = dense_bwd_data_kernel<T>().fn;
  const T *pdy = data_of<T>(dy), *pw = data_of<T>(w);
  T* pdx = dx.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, pdy, pw, pdx);
  }
  return std::move(dx);
}

template <class T>
py::tuple bwd_weights(const py::array& dy, const py::array& x, bool need_bias, const py::object& out_w,
                      const py::object& out_b) {
  check_input<T>(dy, "dy", 2);
  check_input<T>(x, "x", 2);
  if (dy.shape(0) != x.shape(0))
    throw py::value_error("dense: dy must have the shape of the output (batch, units) with batch " +
                          std::to_string(x.shape(0)) + " as in x, got " + shape_str(dy));
  const DenseShape s = dense_shape(x.shape(0), x.shape(1), dy.shape(1));
  py::array_t<T> dw = make_output<T>(out_w, "out_w", {s.ic, s.oc}, {{dy, "dy"}, {x, "x"}});
  py::object db_obj = py::none();
  T* pdb = nullptr;
  if (need_bias) {
    py::array_t<T> db = make_output<T>(out_b, "out_b", {s.oc}, {{dy, "dy"}, {x, "x"}, {dw, "out_w"}});
    pdb = db.mutable_data();
    db_obj = db;
  }
  const auto kernel = dense_bwd_weights_kernel<T>().fn;
  const T *pdy = data_of<T>(dy), *px = data_of<T>(x);
  T* pdw = dw.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, pdy, px, pdw, pdb);
  }
  return py::make_tuple(dw, db_obj);
}

}  // namespace

void bind_dense(py::module_& m) {
  m.def(
      "dense_fwd",
      [](const py::array& x, const py::array& w, const py::object& b, const py::object& out) {
        return with_dtype(x, "x", [&](auto tag) { return fwd<decltype(tag)>(x, w, b, out); });
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("out") = py::none(),
      "y[N,U] = x[N,I] @ w[I,U] + b[U] (Keras's Dense without its activation).");
  m.def(
      "dense_bwd_data",
      [](const py::array& dy, const py::array& w, const py::object& out) {
        return with_dtype(dy, "dy", [&](auto tag) { return bwd_data<decltype(tag)>(dy, w, out); });
      },
      py::arg("dy"), py::arg("w"), py::arg("out") = py::none(), "dx[N,I] = dy[N,U] @ w[I,U]^T.");
  m.def(
      "dense_bwd_weights",
      [](const py::array& dy, const py::array& x, bool need_bias, const py::object& out_w, const py::object& out_b) {
        return with_dtype(dy, "dy",
                          [&](auto tag) { return bwd_weights<decltype(tag)>(dy, x, need_bias, out_w, out_b); });
      },
      py::arg("dy"), py::arg("x"), py::arg("need_bias"), py::arg("out_w") = py::none(), py::arg("out_b") = py::none(),
      "(dw[I,U] = x^T @ dy, db[U] = dy summed over the batch, or None).");
}

}  // namespace convforge::bindings
