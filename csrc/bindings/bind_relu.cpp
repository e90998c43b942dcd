#include "bindings/arrays.h"
#include "dispatch/dispatch.h"

namespace convforge::bindings {
namespace {

// ReLU is elementwise: any shape, viewed flat.
template <class T>
py::array relu_fwd(const py::array& x, const py::object& out) {
  check_input<T>(x, "x", x.ndim());
  py::array y;
  if (out.is_none()) {
    y = py::array(x.dtype(), std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  } else {
    if (!py::isinstance<py::array>(out)) throw py::type_error("out must be a numpy.ndarray");
    y = py::reinterpret_borrow<py::array>(out);
    check_input<T>(y, "out", x.ndim());
    for (py::ssize_t i = 0; i < x.ndim(); ++i)
      if (y.shape(i) != x.shape(i)) throw py::value_error("out must have the shape of x " + shape_str(x) + ", got " + shape_str(y));
    if (!y.writeable()) throw py::value_error("out is read-only");
  }
  const auto kernel = relu_fwd_kernel<T>().fn;
  const int64_t n = x.size();
  const T* px = static_cast<const T*>(x.data());
  T* py_ = static_cast<T*>(y.mutable_data());
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(n, px, py_);
  }
  return y;
}

template <class T>
py::array relu_bwd(const py::array& dy, const py::array& x, const py::object& out) {
  check_input<T>(dy, "dy", dy.ndim());
  check_input<T>(x, "x", dy.ndim());
  for (py::ssize_t i = 0; i < x.ndim(); ++i)
    if (dy.shape(i) != x.shape(i)) throw py::value_error("dy must have the shape of x " + shape_str(x) + ", got " + shape_str(dy));
  py::array dx;
  if (out.is_none()) {
    dx = py::array(x.dtype(), std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  } else {
    if (!py::isinstance<py::array>(out)) throw py::type_error("out must be a numpy.ndarray");
    dx = py::reinterpret_borrow<py::array>(out);
    check_input<T>(dx, "out", x.ndim());
    if (!dx.writeable()) throw py::value_error("out is read-only");
    for (py::ssize_t i = 0; i < x.ndim(); ++i)
      if (dx.shape(i) != x.shape(i)) throw py::value_error("out must have the shape of x");
  }
  const auto kernel = relu_bwd_kernel<T>().fn;
  const int64_t n = x.size();
  const T* pdy = static_cast<const T*>(dy.data());
  const T* px = static_cast<const T*>(x.data());
  T* pdx = static_cast<T*>(dx.mutable_data());
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(n, pdy, px, pdx);
  }
  return dx;
}

}  // namespace

void bind_relu(py::module_& m) {
  m.def(
      "relu_fwd",
      [](const py::array& x, const py::object& out) {
        return is_float32(x, "x") ? relu_fwd<float>(x, out) : relu_fwd<double>(x, out);
      },
      py::arg("x"), py::arg("out") = py::none(), "max(x, 0) elementwise; NaN propagates; out may be x.");
  m.def(
      "relu_bwd",
      [](const py::array& dy, const py::array& x, const py::object& out) {
        return is_float32(dy, "dy") ? relu_bwd<float>(dy, x, out) : relu_bwd<double>(dy, x, out);
      },
      py::arg("dy"), py::arg("x"), py::arg("out") = py::none(), "dy where x > 0, else 0.");
}

}  // namespace convforge::bindings
