// Batch normalisation over (N, C, ...): training forward (batch statistics), inference forward
// (given statistics) and backward. Arrays checked like every op's (bindings/arrays.h).
#include "bindings/channel_args.h"
#include "dispatch/dispatch.h"

namespace convforge::bindings {
namespace {

void check_eps(double eps) {
  if (!(eps > 0) || eps != eps || eps > 1e300) throw py::value_error("eps must be a finite number > 0");
}

template <class T>
py::tuple fwd_training(const py::array& x, const py::object& gamma, const py::object& beta, double eps, bool relu,
                       const py::object& out, const py::object& out_mean, const py::object& out_var) {
  const ChannelShape s = channel_shape<T>(x, "x");
  check_eps(eps);
  std::vector<Input> inputs{{x, "x"}};
  py::array garr, barr;
  const T* g = channel_vector<T>(gamma, "gamma", s.c, &garr, &inputs);
  const T* b = channel_vector<T>(beta, "beta", s.c, &barr, &inputs);
  py::array_t<T> y = make_output<T>(out, "out", dims_of(x), inputs);
  inputs.push_back({y, "out"});
  py::array_t<T> mean = make_output<T>(out_mean, "out_mean", {s.c}, inputs);
  inputs.push_back({mean, "out_mean"});
  py::array_t<T> var = make_output<T>(out_var, "out_var", {s.c}, inputs);
  const auto kernel = batchnorm_fwd_training_kernel<T>().fn;
  const T* px = data_of<T>(x);
  T *py_ = y.mutable_data(), *pm = mean.mutable_data(), *pv = var.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, px, g, b, eps, relu, py_, pm, pv);
  }
  return py::make_tuple(y, mean, var);
}

template <class T>
py::array fwd_inference(const py::array& x, const py::array& mean, const py::array& var, const py::object& gamma,
                        const py::object& beta, double eps, const py::object& out) {
  const ChannelShape s = channel_shape<T>(x, "x");
  check_eps(eps);
  // Elementwise with the same index: out may be x itself (in place), never a shifted view of it.
  std::vector<Input> inputs{{x, "x", true}};
  py::array marr, varr, garr, barr;
  const T* pm = channel_vector<T>(mean, "mean", s.c, &marr, &inputs);
  const T* pv = channel_vector<T>(var, "var", s.c, &varr, &inputs);
  const T* g = channel_vector<T>(gamma, "gamma", s.c, &garr, &inputs);
  const T* b = channel_vector<T>(beta, "beta", s.c, &barr, &inputs);
  py::array_t<T> y = make_output<T>(out, "out", dims_of(x), inputs);
  const auto kernel = batchnorm_fwd_inference_kernel<T>().fn;
  const T* px = data_of<T>(x);
  T* py_ = y.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, px, pm, pv, g, b, eps, py_);
  }
  return std::move(y);
}

template <class T>
py::tuple bwd(const py::array& dy, const py::array& x, const py::array& mean, const py::array& var,
              const py::object& gamma, double eps, bool need_input_grad, const py::object& out,
              const py::object& out_gamma, const py::object& out_beta, const py::object& beta, bool relu) {
  const ChannelShape s = channel_shape<T>(x, "x");
  check_input<T>(dy, "dy", x.ndim());
  for (py::ssize_t i = 0; i < x.ndim(); ++i)
    if (dy.shape(i) != x.shape(i)) throw py::value_error("dy must have the shape of x " + shape_str(x) + ", got " + shape_str(dy));
  check_eps(eps);
  // dx may be dy itself: the kernel finishes every channel's sums (its first pass) before it
  // writes, and then reads dy[i] before it writes dx[i]. Never x: the ReLU mask is recomputed
  // from x as the pass goes.
  std::vector<Input> inputs{{dy, "dy", true}, {x, "x"}};
  py::array marr, varr, garr;
  const T* pm = channel_vector<T>(mean, "mean", s.c, &marr, &inputs);
  const T* pv = channel_vector<T>(var, "var", s.c, &varr, &inputs);
  const T* g = channel_vector<T>(gamma, "gamma", s.c, &garr, &inputs);
  py::array barr;
  const T* b = channel_vector<T>(beta, "beta", s.c, &barr, &inputs);
  py::array_t<T> dx;  // outlives `inputs`, which refers to it
  py::object dx_obj = py::none();
  T* pdx = nullptr;
  if (need_input_grad) {
    dx = make_output<T>(out, "out", dims_of(x), inputs);
    inputs.push_back({dx, "out"});
    pdx = dx.mutable_data();
    dx_obj = dx;
  }
  py::array_t<T> dg = make_output<T>(out_gamma, "out_gamma", {s.c}, inputs);
  inputs.push_back({dg, "out_gamma"});
  py::array_t<T> db = make_output<T>(out_beta, "out_beta", {s.c}, inputs);
  const auto kernel = batchnorm_bwd_kernel<T>().fn;
  const T *pdy = data_of<T>(dy), *px = data_of<T>(x);
  T *pdg = dg.mutable_data(), *pdb = db.mutable_data();
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    kernel(s, pdy, px, pm, pv, g, b, relu, eps, pdx, pdg, pdb);
  }
  return py::make_tuple(dx_obj, dg, db);
}

}  // namespace

void bind_batchnorm(py::module_& m) {
  m.def(
      "batchnorm_fwd_training",
      [](const py::array& x, const py::object& gamma, const py::object& beta, double eps, const py::object& out,
         const py::object& out_mean, const py::object& out_var, bool relu) {
        return with_dtype(x, "x", [&](auto tag) {
          return fwd_training<decltype(tag)>(x, gamma, beta, eps, relu, out, out_mean, out_var);
        });
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("eps"), py::arg("out") = py::none(),
      py::arg("out_mean") = py::none(), py::arg("out_var") = py::none(), py::arg("relu") = false,
      "(y, mean, var): x (N, C, ...) normalised with its per-channel batch mean and biased variance, "
      "then * gamma + beta (None: 1 / 0); with relu, max(y, 0) (a ReLU after the layer, fused).");
  m.def(
      "batchnorm_fwd_inference",
      [](const py::array& x, const py::array& mean, const py::array& var, const py::object& gamma,
         const py::object& beta, double eps, const py::object& out) {
        return with_dtype(x, "x", [&](auto tag) {
          return fwd_inference<decltype(tag)>(x, mean, var, gamma, beta, eps, out);
        });
      },
      py::arg("x"), py::arg("mean"), py::arg("var"), py::arg("gamma"), py::arg("beta"), py::arg("eps"),
      py::arg("out") = py::none(), "(x - mean) / sqrt(var + eps) * gamma + beta per channel; out may be x.");
  m.def(
      "batchnorm_bwd",
      [](const py::array& dy, const py::array& x, const py::array& mean, const py::array& var,
         const py::object& gamma, double eps, bool need_input_grad, const py::object& out,
         const py::object& out_gamma, const py::object& out_beta, const py::object& beta, bool relu) {
        return with_dtype(x, "x", [&](auto tag) {
          return bwd<decltype(tag)>(dy, x, mean, var, gamma, eps, need_input_grad, out, out_gamma, out_beta, beta,
                                    relu);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("mean"), py::arg("var"), py::arg("gamma"), py::arg("eps"),
      py::arg("need_input_grad") = true, py::arg("out") = py::none(), py::arg("out_gamma") = py::none(),
      py::arg("out_beta") = py::none(), py::arg("beta") = py::none(), py::arg("relu") = false,
      "(dx or None, dgamma, dbeta) of batchnorm_fwd_training, given its batch mean and var; with relu, of "
      "batchnorm_fwd_training(relu=True) (dy the ReLU's output gradient; beta as given to the forward).");
}

}  // namespace convforge::bindings
