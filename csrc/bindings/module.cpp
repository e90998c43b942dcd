// convforge._core: the compiled kernels. Private; the public API is convforge.functional.
// Registration only: each bind_<topic>.cpp defines its functions (arguments checked by the
// shared helpers of bindings/arrays.h).
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace convforge::bindings {

void bind_runtime(py::module_& m);
void bind_conv2d(py::module_& m);
void bind_dense(py::module_& m);
void bind_maxpool2d(py::module_& m);
void bind_relu(py::module_& m);
void bind_batchnorm(py::module_& m);
void bind_globalpool(py::module_& m);
void bind_depthwise(py::module_& m);
void bind_plan(py::module_& m);

}  // namespace convforge::bindings

PYBIND11_MODULE(_core, m) {
  using namespace convforge::bindings;
  m.doc() = "convforge compiled kernels (private: use convforge.functional)";
  bind_runtime(m);  // first: reads CONVFORGE_MAX_ISA

  bind_conv2d(m);
  bind_dense(m);
  bind_maxpool2d(m);
  bind_relu(m);
  bind_batchnorm(m);
  bind_globalpool(m);
  bind_depthwise(m);
  bind_plan(m);
}
