#include "bindings/channel_args.h"
#include "dispatch/dispatch.h"

namespace convforge::bindings {
namespace {

void check_eps(double eps) {
  if (!(eps > 0) || eps != eps || eps > 1e300) throw py::value_error("eps must be a finite number > 0");
}

template <class T>
py::tuple fwd_training(const py::array& x, const py::object& gamma, const py::object& beta, double eps,
                       const py::object& out, const py::object& out_mean, const py::object& out_var) {
  const ChannelShape s = channel_shape<T>(x, "x");
  check_eps(eps);
  const T* g = channel_vector<T>(gamma, "gamma", s.c);
  const T* b = channel_vector<T>(beta, "beta", s.c);
  py::array_t<T> y = output_like<T>(out, "out", x);
  check_no_overlap(y, "out", x, "x");
  py::array_t<T> mean = output_array<T, 1>(out_mean, "out_mean", {s.c});
  py::array_t<T> var = output_array<T, 1>(out_var, "out_var", {s.c});
  const auto kernel = batchnorm_fwd_training_kernel<T>().fn;
  const T* px = static_cast<const T*>(x.data());
  T *py_ = y.mutable_data(), *pm = mean.mutable_data(), *pv = var.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(s, px, g, b, eps, py_, pm, pv);
  }
  return py::make_tuple(y, mean, var);
}

template <class T>
py::array fwd_inference(const py::array& x, const py::array& mean, const py::array& var, const py::object& gamma,
                        const py::object& beta, double eps, const py::object& out) {
  const ChannelShape s = channel_shape<T>(x, "x");
  check_eps(eps);
  const T* pm = channel_vector<T>(mean, "mean", s.c);
  const T* pv = channel_vector<T>(var, "var", s.c);
  const T* g = channel_vector<T>(gamma, "gamma", s.c);
  const T* b = channel_vector<T>(beta, "beta", s.c);
  py::array_t<T> y = output_like<T>(out, "out", x);
  // In place is fine (elementwise, same index); a partial overlap is not.
  if (y.data() != x.data()) check_no_overlap(y, "out", x, "x");
  const auto kernel = batchnorm_fwd_inference_kernel<T>().fn;
  const T* px = static_cast<const T*>(x.data());
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(s, px, pm, pv, g, b, eps, py_);
  }
  return y;
}

template <class T>
py::tuple bwd(const py::array& dy, const py::array& x, const py::array& mean, const py::array& var,
              const py::object& gamma, double eps, bool need_input_grad, const py::object& out,
              const py::object& out_gamma, const py::object& out_beta) {
  const ChannelShape s = channel_shape<T>(x, "x");
  check_input<T>(dy, "dy", x.ndim());
  for (py::ssize_t i = 0; i < x.ndim(); ++i)
    if (dy.shape(i) != x.shape(i)) throw py::value_error("dy must have the shape of x " + shape_str(x) + ", got " + shape_str(dy));
  check_eps(eps);
  const T* pm = channel_vector<T>(mean, "mean", s.c);
  const T* pv = channel_vector<T>(var, "var", s.c);
  const T* g = channel_vector<T>(gamma, "gamma", s.c);
  py::object dx_obj = py::none();
  T* pdx = nullptr;
  if (need_input_grad) {
    py::array_t<T> dx = output_like<T>(out, "out", x);
    check_no_overlap(dx, "out", x, "x");
    check_no_overlap(dx, "out", dy, "dy");
    pdx = dx.mutable_data();
    dx_obj = dx;
  }
  py::array_t<T> dg = output_array<T, 1>(out_gamma, "out_gamma", {s.c});
  py::array_t<T> db = output_array<T, 1>(out_beta, "out_beta", {s.c});
  const auto kernel = batchnorm_bwd_kernel<T>().fn;
  const T *pdy = static_cast<const T*>(dy.data()), *px = static_cast<const T*>(x.data());
  T *pdg = dg.mutable_data(), *pdb = db.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(s, pdy, px, pm, pv, g, eps, pdx, pdg, pdb);
  }
  return py::make_tuple(dx_obj, dg, db);
}

}  // namespace

void bind_batchnorm(py::module_& m) {
  m.def(
      "batchnorm_fwd_training",
      [](const py::array& x, const py::object& gamma, const py::object& beta, double eps, const py::object& out,
         const py::object& out_mean, const py::object& out_var) {
        return is_float32(x, "x") ? fwd_training<float>(x, gamma, beta, eps, out, out_mean, out_var)
                                  : fwd_training<double>(x, gamma, beta, eps, out, out_mean, out_var);
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("eps"), py::arg("out") = py::none(),
      py::arg("out_mean") = py::none(), py::arg("out_var") = py::none(),
      "(y, mean, var): x (N, C, ...) normalised with its per-channel batch mean and biased variance, "
      "then * gamma + beta (None: 1 / 0).");
  m.def(
      "batchnorm_fwd_inference",
      [](const py::array& x, const py::array& mean, const py::array& var, const py::object& gamma,
         const py::object& beta, double eps, const py::object& out) {
        return is_float32(x, "x") ? fwd_inference<float>(x, mean, var, gamma, beta, eps, out)
                                  : fwd_inference<double>(x, mean, var, gamma, beta, eps, out);
      },
      py::arg("x"), py::arg("mean"), py::arg("var"), py::arg("gamma"), py::arg("beta"), py::arg("eps"),
      py::arg("out") = py::none(), "(x - mean) / sqrt(var + eps) * gamma + beta per channel; out may be x.");
  m.def(
      "batchnorm_bwd",
      [](const py::array& dy, const py::array& x, const py::array& mean, const py::array& var,
         const py::object& gamma, double eps, bool need_input_grad, const py::object& out,
         const py::object& out_gamma, const py::object& out_beta) {
        return is_float32(x, "x") ? bwd<float>(dy, x, mean, var, gamma, eps, need_input_grad, out, out_gamma, out_beta)
                                  : bwd<double>(dy, x, mean, var, gamma, eps, need_input_grad, out, out_gamma, out_beta);
      },
      py::arg("dy"), py::arg("x"), py::arg("mean"), py::arg("var"), py::arg("gamma"), py::arg("eps"),
      py::arg("need_input_grad") = true, py::arg("out") = py::none(), py::arg("out_gamma") = py::none(),
      py::arg("out_beta") = py::none(),
      "(dx or None, dgamma, dbeta) of batchnorm_fwd_training, given its batch mean and var.");
}

}  // namespace convforge::bindings
