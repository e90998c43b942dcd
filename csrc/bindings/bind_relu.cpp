// ReLU forward and backward, GELU forward and backward and erf, and the sum of two arrays: elementwise, any
// shape, viewed flat;
// `out` may be an input itself (in place), never a shifted view of one. Softmax of the rows of
// a 2-D array, likewise.
#include "bindings/arrays.h"
#include "dispatch/dispatch.h"
#include "kernels/kernels.h"

namespace convforge::bindings {
namespace {

std::vector<int64_t> dims(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

// y = kernel(x), elementwise: the forward passes of relu and gelu.
template <class T>
py::array elementwise_fwd(const py::array& x, const py::object& out, void (*kernel)(int64_t, const T*, T*)) {
  check_input<T>(x, "x", x.ndim());
  py::array_t<T> y = make_output<T>(out, "out", dims(x), {{x, "x", true}});
  const int64_t n = x.size();
  const T* px = data_of<T>(x);
  T* py_ = y.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(n, px, py_);
  }
  return std::move(y);
}

// dx = kernel(dy, x), elementwise: the backward passes of relu and gelu.
template <class T>
py::array elementwise_bwd(const py::array& dy, const py::array& x, const py::object& out,
                          void (*kernel)(int64_t, const T*, const T*, T*)) {
  check_input<T>(dy, "dy", dy.ndim());
  check_input<T>(x, "x", dy.ndim());
  for (py::ssize_t i = 0; i < x.ndim(); ++i)
    if (dy.shape(i) != x.shape(i)) throw py::value_error("dy must have the shape of x " + shape_str(x) + ", got " + shape_str(dy));
  py::array_t<T> dx = make_output<T>(out, "out", dims(x), {{dy, "dy", true}, {x, "x", true}});
  const int64_t n = x.size();
  const T *pdy = data_of<T>(dy), *px = data_of<T>(x);
  T* pdx = dx.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(n, pdy, px, pdx);
  }
  return std::move(dx);
}

template <class T>
py::array add(const py::array& a, const py::array& b, const py::object& out, bool relu, const py::object& gate) {
  check_input<T>(a, "a", a.ndim());
  check_input<T>(b, "b", a.ndim());
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    if (b.shape(i) != a.shape(i)) throw py::value_error("b must have the shape of a " + shape_str(a) + ", got " + shape_str(b));
  const bool gated = !gate.is_none();
  py::array g;  // default-constructed: an empty float64 array, not a null handle
  if (gated) {
    if (relu) throw py::value_error("add takes relu=True or a gate, not both");
    if (!py::isinstance<py::array>(gate))
      throw py::type_error("gate must be a numpy.ndarray or None, got " + std::string(py::str(py::type::of(gate).attr("__name__"))));
    g = py::reinterpret_borrow<py::array>(gate);
    check_input<T>(g, "gate", a.ndim());
    for (py::ssize_t i = 0; i < a.ndim(); ++i)
      if (g.shape(i) != a.shape(i))
        throw py::value_error("gate must have the shape of a " + shape_str(a) + ", got " + shape_str(g));
  }
  std::vector<Input> inputs{{a, "a", true}, {b, "b", true}};
  if (gated) inputs.push_back({g, "gate", true});
  py::array_t<T> y = make_output<T>(out, "out", dims(a), inputs);
  const int64_t n = a.size();
  const T *pa = data_of<T>(a), *pb = data_of<T>(b), *pg = gated ? data_of<T>(g) : nullptr;
  T* py_ = y.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    add__ref(n, pa, pb, pg, relu, py_);
  }
  return std::move(y);
}

template <class T>
py::array softmax_fwd(const py::array& x, const py::object& out) {
  check_input<T>(x, "x", 2);
  if (x.shape(1) < 1) throw py::value_error("x must have at least one column, got shape " + shape_str(x));
  py::array_t<T> y = make_output<T>(out, "out", dims(x), {{x, "x", true}});
  const auto kernel = softmax_fwd_kernel<T>().fn;
  const int64_t rows = x.shape(0), n = x.shape(1);
  const T* px = data_of<T>(x);
  T* py_ = y.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(rows, n, px, py_);
  }
  return std::move(y);
}

template <class T>
py::array erf(const py::array& x) {
  check_input<T>(x, "x", x.ndim());
  py::array_t<double> y(dims(x));
  const int64_t n = x.size();
  const T* px = data_of<T>(x);
  double* py_ = y.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    erf__ref(n, px, py_);
  }
  return std::move(y);
}

}  // namespace

void bind_relu(py::module_& m) {
  m.def(
      "relu_fwd",
      [](const py::array& x, const py::object& out) {
        return with_dtype(x, "x", [&](auto tag) {
          using T = decltype(tag);
          return elementwise_fwd<T>(x, out, relu_fwd_kernel<T>().fn);
        });
      },
      py::arg("x"), py::arg("out") = py::none(), "max(x, 0) elementwise; NaN propagates; out may be x.");
  m.def(
      "relu_bwd",
      [](const py::array& dy, const py::array& x, const py::object& out) {
        return with_dtype(dy, "dy", [&](auto tag) {
          using T = decltype(tag);
          return elementwise_bwd<T>(dy, x, out, relu_bwd_kernel<T>().fn);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("out") = py::none(), "dy where x > 0, else 0; out may be dy or x.");
  m.def(
      "add",
      [](const py::array& a, const py::array& b, const py::object& out, bool relu, const py::object& gate) {
        return with_dtype(a, "a", [&](auto tag) { return add<decltype(tag)>(a, b, out, relu, gate); });
      },
      py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::arg("relu") = false, py::arg("gate") = py::none(),
      "a + b elementwise (same shape and dtype, no broadcasting), on threads; relu: max(a + b, 0) as\n"
      "relu_fwd (NaN kept, -0 -> +0); gate: a + b where gate > 0, else 0 (relu_bwd of the sum);\n"
      "out may be a, b or gate.");
  m.def(
      "gelu_fwd",
      [](const py::array& x, const py::object& out) {
        return with_dtype(x, "x", [&](auto tag) {
          using T = decltype(tag);
          return elementwise_fwd<T>(x, out, gelu_fwd_kernel<T>().fn);
        });
      },
      py::arg("x"), py::arg("out") = py::none(),
      "GELU's exact form x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2))) elementwise, on threads; out may be x.\n"
      "float32: within 0.51 ulp (evaluated in double), the same bits on every ISA; float64: with the C\n"
      "library's erf, each operation of that expression rounded as NumPy rounds it.");
  m.def(
      "gelu_bwd",
      [](const py::array& dy, const py::array& x, const py::object& out) {
        return with_dtype(dy, "dy", [&](auto tag) {
          using T = decltype(tag);
          return elementwise_bwd<T>(dy, x, out, gelu_bwd_kernel<T>().fn);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("out") = py::none(),
      "dy * (Phi(x) + x * phi(x)), GELU's gradient (phi the normal density), elementwise, on threads;\n"
      "float32 evaluated in double, float64 with the C library's erf; out may be dy or x.");
  m.def(
      "erf",
      [](const py::array& x) { return with_dtype(x, "x", [&](auto tag) { return erf<decltype(tag)>(x); }); },
      py::arg("x"), "The C library's erf of each value, in double (math.erf's), on threads: a new float64 array.");
  m.def(
      "softmax_fwd",
      [](const py::array& x, const py::object& out) {
        return with_dtype(x, "x", [&](auto tag) { return softmax_fwd<decltype(tag)>(x, out); });
      },
      py::arg("x"), py::arg("out") = py::none(),
      "Softmax of each row of a 2-D array: exp(x - max) / sum (the sum in double); out may be x.");
}

}  // namespace convforge::bindings
